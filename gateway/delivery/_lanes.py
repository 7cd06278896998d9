"""Which lane a device's next message comes from: strict priority with an anti-starvation
share for the lower lanes.

Rules kept here:
- The critical lane is never passed over: when it has something to send, it goes first.
- Among the other lanes the highest ready lane goes first, except that a ready lane passed
  over ``share`` times in a row gets the next pick (so bulk traffic still moves, slowly,
  under a steady stream of high alerts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

CRITICAL: Final = 0
DEFAULT_SHARE: Final = 8  # a lower lane gets at least one pick in share + 1


class LaneScheduler:
    """Per device; ``pick`` is called once per send opportunity."""

    __slots__ = ("_passed", "share")

    def __init__(self, lanes: int, *, share: int = DEFAULT_SHARE) -> None:
        if share < 1:
            raise ValueError("share must be >= 1")
        self.share = share
        self._passed = [0] * lanes

    def pick(self, ready: Sequence[bool]) -> int | None:
        """The lane to send from, or None when no lane is ready."""
        if ready[CRITICAL]:
            return CRITICAL
        passed = self._passed
        first = -1
        starved = -1
        for lane in range(1, len(ready)):
            if not ready[lane]:
                passed[lane] = 0
                continue
            if first < 0:
                first = lane
            elif passed[lane] >= self.share and (starved < 0 or passed[lane] > passed[starved]):
                starved = lane
        if first < 0:
            return None
        chosen = starved if starved >= 0 else first
        for lane in range(1, len(ready)):
            if ready[lane] and lane != chosen:
                passed[lane] += 1
        passed[chosen] = 0
        return chosen
