"""Cross-region alerts: the origin's streams of alerts towards the nodes of other regions.

Rules (time in seconds is passed in; nothing here waits, sends or reads a database):

- The origin node's journaled alerts are the outbox: there is no second copy to lose. Per
  destination region and per **lane** there is one stream: the origin's own alerts (not
  alerts relayed to it) of that lane, in ``alert_id`` order. Its position ``acked`` is the
  highest ``alert_id`` the destination has journaled (kept by the shell; a position that is
  behind only causes repeats, which the destination recognises).
- Up to ``window`` requests are in flight per stream, each with up to ``batch`` alerts
  following the previous request's. The answer names the highest alert now durable at the
  destination; those are dropped. A request carries ``after``: the last alert of the
  request before it while that one is unanswered, else 0 (it follows ``acked``, which the
  destination holds). The destination refuses a request whose ``after`` it does not hold
  (``RELAY_GAP``), so when a request is lost or refused, the later ones cannot overtake it.
- A refusal (``busy``, a gap, an error), a request unanswered after ``ack_timeout``, or a
  link going down **rewinds** the stream: everything in flight is forgotten and the stream
  goes again from ``acked`` (once the link is up, and after the refusal's delay). Each
  rewind starts a new *generation*; refusals of requests of an older generation are
  ignored (their rewind happened), acknowledgements always count.
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
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from gateway import wire

CAP: Final = 4096  # alerts per stream held in memory
BATCH_BYTES: Final = 256 * 1024  # encoded alerts per request at most (frames stay < 1 MiB)
WINDOW: Final = 8  # requests in flight per stream


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
    after: int = 0  # the stream's alert before items[0] if still unanswered, else 0
    generation: int = 0  # of the stream when sent (pass it back to on_refused)


class RelayStream:
    """One (destination, lane) stream; see the module docstring."""

    def __init__(self, lane: int, outbox: RelayOutbox, acked: int, *, cap: int = CAP,
                 batch: int = wire.MAX_RELAY_ALERTS, window: int = WINDOW,
                 ack_timeout_s: float = 5.0) -> None:
        self.lane = lane
        self.outbox = outbox
        self.acked = acked
        self.cap = cap
        self.batch = batch
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self.pending: collections.deque[RelayItem] = collections.deque()  # after acked
        self.tail = acked  # highest alert id in memory (or acked)
        self.complete = False  # memory holds every relayable alert after acked
        # requests out, oldest first: (their highest alert id, when sent)
        self.flights: collections.deque[tuple[int, float]] = collections.deque()
        self._sent_n = 0  # pending[:_sent_n] are in flight
        self.generation = 0
        self._retry_at = 0.0
        self.sent = 0
        self.resent = 0  # rewinds that dropped requests in flight

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
        """The next request to send now, if any (call only while the link is up; call
        again until None to fill the window)."""
        if len(self.flights) >= self.window or now < self._retry_at:
            return None
        self._refill()
        items: list[RelayItem] = []
        size = 0
        for item in itertools.islice(self.pending, self._sent_n, None):
            if len(items) >= self.batch or (items and size + len(item.body) > BATCH_BYTES):
                break
            items.append(item)
            size += len(item.body)
        if not items:
            return None
        after = self.flights[-1][0] if self.flights else 0
        self._sent_n += len(items)
        self.flights.append((items[-1].alert_id, now))
        self.sent += len(items)
        return SendRelay(self.lane, tuple(items), after, self.generation)

    def on_ack(self, upto: int) -> int:
        """The destination journaled everything up to ``upto`` (an answer of any
        generation); how many alerts were dropped from memory."""
        dropped = 0
        while self.pending and self.pending[0].alert_id <= upto:
            self.pending.popleft()
            dropped += 1
        self._sent_n = max(0, self._sent_n - dropped)
        while self.flights and self.flights[0][0] <= upto:
            self.flights.popleft()
        self.acked = max(self.acked, upto)
        return dropped

    def on_refused(self, generation: int, retry_after_s: float, now: float) -> bool:
        """A request of ``generation`` was refused (busy, a gap, an error): go again from
        ``acked`` after ``retry_after_s``. False (nothing done) for an older generation."""
        if generation != self.generation:
            return False
        self._rewind()
        self._retry_at = now + retry_after_s
        return True

    def on_link_change(self) -> None:
        """The link went down or came (back) up: what was in flight goes again."""
        self._rewind()

    def tick(self, now: float) -> None:
        if self.flights and now - self.flights[0][1] >= self.ack_timeout_s:
            self._rewind()

    def _rewind(self) -> None:
        if self.flights:
            self.resent += 1
        self.flights.clear()
        self._sent_n = 0
        self.generation += 1

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self.flights)

    @property
    def backlog(self) -> int:
        """Alerts held in memory not yet acknowledged (more may wait in the database)."""
        return len(self.pending)


class RelayReceiver:
    """The destination's continuity check: per (origin, lane), the highest origin alert id
    journaled here (or appended, to be committed in order) since this process started.

    A request with ``after`` = 0 follows what the destination acknowledged and is taken;
    otherwise its ``after`` must be held here. After a restart nothing is held: the origin
    says hello again, rewinds, and its first request has ``after`` = 0."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], int] = {}

    def continues(self, origin: str, lane: int, after: int) -> bool:
        """Whether a request of ``origin``'s ``lane`` stream with ``after`` may be taken."""
        return after <= self._held.get((origin, lane), 0)

    def on_held(self, origin: str, lane: int, upto: int) -> None:
        """A taken request's alerts, up to ``upto``, are journaled (or appended)."""
        key = (origin, lane)
        if upto > self._held.get(key, 0):
            self._held[key] = upto


class RelaySender:
    """The streams towards one destination region, one per lane."""

    def __init__(self, region: str, outbox: RelayOutbox, acked: Sequence[int], *,
                 cap: int = CAP, window: int = WINDOW, ack_timeout_s: float = 5.0) -> None:
        self.region = region
        self.streams = [RelayStream(lane, outbox, acked[lane], cap=cap, window=window,
                                    ack_timeout_s=ack_timeout_s)
                        for lane in range(wire.LANES)]

    def on_new(self, lane: int, item: RelayItem) -> None:
        self.streams[lane].on_new(item)

    def next(self, now: float) -> list[SendRelay]:
        """Requests to send now, most urgent lane first (each lane's window filled)."""
        out = []
        for stream in self.streams:
            while (req := stream.next(now)) is not None:
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


__all__ = ["BATCH_BYTES", "CAP", "WINDOW", "RelayItem", "RelayOutbox", "RelayReceiver",
           "RelaySender", "RelayStream", "SendRelay", "relay_key"]
