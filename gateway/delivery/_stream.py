"""One device's view of its officer's stream: what was sent, what the device confirmed,
what to send next and when to send again.

Rules kept here:
- Per lane, ``acked <= sent``; the device confirms cumulatively (``received`` cursors) and
  everything after ``acked`` may have to be sent again.
- Flow control: the non-critical lanes together keep at most ``window`` messages
  unconfirmed, and the critical lane has a window of its own, so a critical alert is never
  held back by other lanes' traffic and no ZeroMQ pipe holds more than a few of them.
- Redelivery: when a lane's oldest unconfirmed message has waited ``rto_ms``, the lane
  goes back to ``acked`` and sends again (go-back-N, in order). The wait doubles with each
  attempt up to ``max_rto_ms``; progress resets it. The device drops what it already has.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.delivery._lanes import CRITICAL, DEFAULT_SHARE, LaneScheduler


class DeviceStream:
    __slots__ = ("_base_rto", "_max_rto", "_others", "_rto", "_sched", "acked", "attempt",
                 "critical_window", "deadline", "lanes", "sent", "window")

    def __init__(self, cursors: Sequence[int], *, window: int = 32, critical_window: int = 32,
                 rto_ms: int = 1000, max_rto_ms: int = 30_000,
                 share: int = DEFAULT_SHARE) -> None:
        if window < 1 or critical_window < 1:
            raise ValueError("windows must be >= 1")
        self.lanes = len(cursors)
        self.acked = list(cursors)
        self.sent = list(cursors)
        self.window = window
        self.critical_window = critical_window
        self._base_rto = rto_ms
        self._max_rto = max_rto_ms
        self._rto = [rto_ms] * self.lanes
        self.attempt = [0] * self.lanes
        self.deadline: list[int | None] = [None] * self.lanes
        self._sched = LaneScheduler(self.lanes, share=share)
        self._others = 0  # unconfirmed messages of the non-critical lanes

    def in_flight(self, lane: int) -> int:
        return self.sent[lane] - self.acked[lane]

    def _recount(self) -> None:
        self._others = sum(self.sent[i] - self.acked[i] for i in range(1, self.lanes))

    def next(self, heads: Sequence[int], now_ms: int) -> tuple[int, int, int] | None:
        """The next message to send as ``(lane, seq, attempt)``, or None (nothing, or the
        windows are full). ``heads`` are the lanes' last committed sequence numbers."""
        sent = self.sent
        others_free = self._others < self.window
        ready = [sent[i] < heads[i] and (others_free if i != CRITICAL
                                         else sent[i] - self.acked[i] < self.critical_window)
                 for i in range(self.lanes)]
        lane = self._sched.pick(ready)
        if lane is None:
            return None
        seq = sent[lane] + 1
        sent[lane] = seq
        if lane != CRITICAL:
            self._others += 1
        if self.deadline[lane] is None:
            self.deadline[lane] = now_ms + self._rto[lane]
        return lane, seq, self.attempt[lane] + 1

    def received(self, cursors: Sequence[int], now_ms: int) -> int:
        """The device holds everything up to ``cursors``; how many messages that confirmed."""
        progress = 0
        for lane in range(min(self.lanes, len(cursors))):
            c = cursors[lane]
            if c <= self.acked[lane]:
                continue
            progress += c - self.acked[lane]
            self.acked[lane] = c
            if c > self.sent[lane]:  # it had them from an earlier session
                self.sent[lane] = c
            self.attempt[lane] = 0
            self._rto[lane] = self._base_rto
            self.deadline[lane] = (now_ms + self._base_rto if self.sent[lane] > c else None)
        if progress:
            self._recount()
        return progress

    def resume(self, cursors: Sequence[int]) -> None:
        """The device saw a gap: send everything after ``cursors`` again."""
        for lane in range(min(self.lanes, len(cursors))):
            self.acked[lane] = self.sent[lane] = cursors[lane]
            self.deadline[lane] = None
        self._recount()

    def due(self, now_ms: int) -> list[int]:
        """Lanes whose oldest unconfirmed message timed out; they start over from ``acked``."""
        out = []
        for lane in range(self.lanes):
            d = self.deadline[lane]
            if d is not None and d <= now_ms and self.sent[lane] > self.acked[lane]:
                self.sent[lane] = self.acked[lane]
                self.attempt[lane] += 1
                self._rto[lane] = min(self._rto[lane] * 2, self._max_rto)
                self.deadline[lane] = None
                out.append(lane)
        if out:
            self._recount()
        return out

    def backlog(self, heads: Sequence[int]) -> int:
        """Messages committed for the officer that this device has not confirmed."""
        return sum(max(0, heads[i] - self.acked[i]) for i in range(self.lanes))
