"""An incident's escalation ladder as a sans-IO machine.

The steps (recipients resolved) are frozen when the incident opens. Step *i* is due
``after_s`` after the opening; when it is due its condition is checked once:

- ``unacknowledged``: no recipient has acknowledged yet; after a fired step with
  ``require_all``, every recipient of such steps must have acknowledged;
- ``unresolved``: the incident is still open;
- ``always``.

A step whose condition does not hold is skipped. Once the incident is resolved every
remaining step is skipped. Which channels a step tries, and in what order, is the shell's
business (``mode`` first / all); the ladder only says when and to whom.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.incident._oncall import Step


@dataclass(frozen=True, slots=True)
class Fire:
    index: int
    step: Step


@dataclass(frozen=True, slots=True)
class Skip:
    index: int
    reason: str  # acknowledged | resolved


@dataclass(slots=True)
class Ladder:
    steps: Sequence[Step]
    opened_ms: int
    next_index: int = 0  # steps before this one were fired or skipped
    fired: list[int] = field(default_factory=list)

    def recipients_fired(self) -> set[str]:
        return {o for i in self.fired for o in self.steps[i].to}

    def acknowledged(self, acked: Iterable[str]) -> bool:
        """The incident counts as acknowledged for the ladder."""
        who = set(acked)
        if not who:
            return False
        for i in self.fired:
            st = self.steps[i]
            if st.require_all and not set(st.to) <= who:
                return False
        return True

    def deadline_ms(self) -> int | None:
        if self.next_index >= len(self.steps):
            return None
        return self.opened_ms + int(self.steps[self.next_index].after_s * 1000)

    def due(self, now_ms: int, acked: Iterable[str], resolved: bool) -> list[Fire | Skip]:
        """Steps that came due by ``now_ms``, in order; each is returned once."""
        out: list[Fire | Skip] = []
        who = set(acked)
        while True:
            deadline = self.deadline_ms()
            if deadline is None or (deadline > now_ms and not resolved):
                return out
            i = self.next_index
            st = self.steps[i]
            self.next_index += 1
            if resolved:
                out.append(Skip(i, "resolved"))
            elif st.when == "unacknowledged" and self.acknowledged(who):
                out.append(Skip(i, "acknowledged"))
            else:
                self.fired.append(i)
                out.append(Fire(i, st))


__all__ = ["Fire", "Ladder", "Skip"]
