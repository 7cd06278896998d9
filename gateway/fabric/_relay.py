"""Cross-region alerts: the origin's streams of alerts towards the nodes of other regions.

Rules (time in seconds is passed in; nothing here waits, sends or reads a database):

- The origin node's journaled alerts are the outbox: there is no second copy to lose. Per
  destination region and per **lane** there is one stream: the origin's own alerts (not
  alerts relayed to it) of that lane, in ``alert_id`` order. Its position ``acked`` is the
  highest ``alert_id`` the destination has journaled (kept by the shell; a position that is
  behind only causes repeats, which the destination recognises).
- One request is in flight per stream: up to ``batch`` alerts after ``acked``. The answer
  names the highest alert now durable at the destination; those are dropped and the next
  request goes. A stream's request unanswered after ``ack_timeout``, or cut by a link
  going down, is sent again (the same alerts from ``acked``) once the link is up.
- The lanes are independent streams and are served most urgent first, so a critical
  alert never waits behind high, normal or bulk ones, on the link or in a backlog.
- The destination journals each alert with the idempotency key
  ``relay:<origin region>:<origin alert_id>``: a repeat finds the key and is not raised
  twice. It answers only once everything of the request is durable.
- At most ``cap`` alerts per stream are held in memory; a longer backlog (a peer away for
  long) stays in the origin's database and is read back in pages as the stream drains.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from gateway import wire

CAP: Final = 4096  # alerts per stream held in memory
BATCH_BYTES: Final = 256 * 1024  # encoded alerts per request at most (frames stay < 1 MiB)


def relay_key(origin: str, alert_id: int) -> str:
    """The idempotency key of a relayed alert at its destination."""
    return f"relay:{origin}:{alert_id}"


@dataclass(frozen=True, slots=True)
class RelayItem:
    alert_id: int  # at the origin
    recipients: tuple[str, ...]  # the officers it went to at the origin
    body: bytes  # the encoded wire.Alert


class RelayOutbox(Protocol):
    """The origin's durable alerts, read back when a stream's memory runs dry."""

    def after(self, lane: int, alert_id: int, limit: int) -> list[RelayItem]:
        """Up to ``limit`` relayable alerts of ``lane`` with a larger id, ascending."""
        ...


@dataclass(frozen=True, slots=True)
class SendRelay:
    lane: int
    items: tuple[RelayItem, ...]


class RelayStream:
    """One (destination, lane) stream; see the module docstring."""

    def __init__(self, lane: int, outbox: RelayOutbox, acked: int, *, cap: int = CAP,
                 batch: int = wire.MAX_RELAY_ALERTS, ack_timeout_s: float = 5.0) -> None:
        self.lane = lane
        self.outbox = outbox
        self.acked = acked
        self.cap = cap
        self.batch = batch
        self.ack_timeout_s = ack_timeout_s
        self.pending: collections.deque[RelayItem] = collections.deque()
        self.tail = acked  # highest alert id in memory (or acked)
        self.complete = False  # memory holds every relayable alert after acked
        self.in_flight: int | None = None  # the highest alert id of the request out
        self._sent_at = 0.0
        self._retry_at = 0.0
        self.sent = 0
        self.resent = 0

    def on_new(self, item: RelayItem) -> None:
        """An alert of this lane became durable at the origin."""
        if item.alert_id <= self.tail:
            return  # already read back from the database
        if self.complete and len(self.pending) < self.cap:
            self.pending.append(item)
            self.tail = item.alert_id
        else:
            self.complete = False  # read it back from the database later

    def _refill(self) -> None:
        if self.complete or len(self.pending) >= self.cap // 2:
            return
        want = self.cap - len(self.pending)
        rows = self.outbox.after(self.lane, self.tail, want)
        for row in rows:
            self.pending.append(row)
            self.tail = row.alert_id
        if len(rows) < want:
            self.complete = True

    def next(self, now: float) -> SendRelay | None:
        """The request to send now, if any (call only while the link is up)."""
        if self.in_flight is not None or now < self._retry_at:
            return None
        self._refill()
        if not self.pending:
            return None
        items: list[RelayItem] = []
        size = 0
        for item in self.pending:
            if len(items) >= self.batch or (items and size + len(item.body) > BATCH_BYTES):
                break
            items.append(item)
            size += len(item.body)
        self.in_flight = items[-1].alert_id
        self._sent_at = now
        self.sent += len(items)
        return SendRelay(self.lane, tuple(items))

    def on_ack(self, upto: int) -> int:
        """The destination journaled everything up to ``upto``; how many were dropped."""
        dropped = 0
        while self.pending and self.pending[0].alert_id <= upto:
            self.pending.popleft()
            dropped += 1
        self.acked = max(self.acked, upto)
        if self.in_flight is not None and upto >= self.in_flight:
            self.in_flight = None
        return dropped

    def on_busy(self, retry_after_s: float, now: float) -> None:
        self.in_flight = None
        self._retry_at = now + retry_after_s

    def on_link_change(self) -> None:
        """The link went down or came (back) up: what was in flight goes again."""
        if self.in_flight is not None:
            self.resent += 1
        self.in_flight = None

    def tick(self, now: float) -> None:
        if self.in_flight is not None and now - self._sent_at >= self.ack_timeout_s:
            self.in_flight = None
            self.resent += 1

    @property
    def backlog(self) -> int:
        """Alerts held in memory not yet acknowledged (more may wait in the database)."""
        return len(self.pending)


class RelaySender:
    """The streams towards one destination region, one per lane."""

    def __init__(self, region: str, outbox: RelayOutbox, acked: Sequence[int], *,
                 cap: int = CAP, ack_timeout_s: float = 5.0) -> None:
        self.region = region
        self.streams = [RelayStream(lane, outbox, acked[lane], cap=cap,
                                    ack_timeout_s=ack_timeout_s)
                        for lane in range(wire.LANES)]

    def on_new(self, lane: int, item: RelayItem) -> None:
        self.streams[lane].on_new(item)

    def next(self, now: float) -> list[SendRelay]:
        """Requests to send now, most urgent lane first."""
        out = []
        for stream in self.streams:
            req = stream.next(now)
            if req is not None:
                out.append(req)
        return out

    def on_link_change(self) -> None:
        for stream in self.streams:
            stream.on_link_change()

    def tick(self, now: float) -> None:
        for stream in self.streams:
            stream.tick(now)

    @property
    def acked(self) -> list[int]:
        return [s.acked for s in self.streams]

    @property
    def backlog(self) -> int:
        return sum(s.backlog for s in self.streams)


__all__ = ["BATCH_BYTES", "CAP", "RelayItem", "RelayOutbox", "RelaySender", "RelayStream",
           "SendRelay", "relay_key"]
