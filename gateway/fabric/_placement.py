"""Trusted-data placement: changes loaded at any node reach the account's home node.

In the manner of the Clustered Hashmap Protocol (ZeroMQ guide, chapter 5), but point to
point and acknowledged, never over PUB. Each node keeps, per destination region, a durable
*outbox*: a stream of sequenced changes ``(seq, account, level)``, seq 1, 2, 3, ... never
reused (the stream is named by a random id made with the node's database). The home keeps,
per origin stream, the highest sequence number it has applied (durably, together with the
changes).

Rules:

- Sender: after every (re)connection, and whenever the receiver reports a gap, it first asks
  the receiver where it is (``trust_sync``), then sends a **snapshot**: the latest change of
  each account among the outbox entries after that point, as ``(base, upto]``. After that
  it sends **increments**: the next outbox entries as they are, ``(base, upto]`` contiguous.
  One message is in flight at a time; no answer within ``ack_timeout`` means reconnect.
- Receiver: a put ``(base, upto]`` with ``base > applied`` is a gap: nothing is applied and
  the answer asks for a resync. Otherwise the entries with ``seq > applied`` are applied,
  ``applied`` becomes ``max(applied, upto)``, and only then (durably) the ack goes back, so
  a repeat applies nothing twice and a loss is detected by the next put.
- The sender deletes outbox entries once acked. If the receiver reports an ``applied``
  below what the sender already deleted (the home lost data it had acknowledged, e.g.
  restored from an old backup), those changes are gone: :attr:`PlacementSender.lost`
  counts them and the stream continues.

No I/O here: the outbox is an object handed in (SQLite in the node, a list in tests) and
time is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from gateway import wire

BATCH: Final = 1024  # outbox entries read per put


class Outbox(Protocol):
    """The sender's durable stream of changes towards one region."""

    def after(self, seq: int, limit: int) -> list[tuple[int, int, int]]:
        """Up to ``limit`` entries ``(seq, account, level)`` with a larger seq, ascending."""
        ...

    def prune(self, upto: int) -> None:
        """Forget the entries up to ``upto`` (acknowledged)."""
        ...

    def first_seq(self) -> int | None:
        """The lowest seq still held, or None when empty."""
        ...


class SenderState(enum.Enum):
    IDLE = "idle"  # link down
    SYNCING = "syncing"  # trust_sync sent, waiting for the receiver's position
    READY = "ready"  # in step, nothing in flight
    SENDING = "sending"  # a put in flight


@dataclass(frozen=True, slots=True)
class SendSync:
    pass


@dataclass(frozen=True, slots=True)
class SendPut:
    base: int
    upto: int
    snapshot: bool
    entries: tuple[wire.TrustEntry, ...]


PlacementAction = SendSync | SendPut


def collapse(rows: Sequence[tuple[int, int, int]]) -> tuple[wire.TrustEntry, ...]:
    """The latest change of each account among ``rows``, in seq order."""
    latest: dict[int, tuple[int, int, int]] = {}
    for row in rows:
        latest[row[1]] = row
    return tuple(wire.TrustEntry(seq, acct, lvl) for seq, acct, lvl in
                 sorted(latest.values()))


class PlacementSender:
    """The sending end of one stream (this node -> one home region)."""

    def __init__(self, outbox: Outbox, *, ack_timeout_s: float = 5.0,
                 batch: int = BATCH) -> None:
        self.outbox = outbox
        self.ack_timeout_s = ack_timeout_s
        self.batch = batch
        self.state = SenderState.IDLE
        self.acked = 0  # the receiver's last reported position
        self._snapshot_next = True
        self._sent_at = 0.0
        self._in_flight: tuple[int, int] | None = None
        self.lost = 0
        self.puts = 0
        self.snapshots = 0
        self.resyncs = 0

    def on_link_up(self, now: float) -> list[PlacementAction]:
        return self._sync(now)

    def on_link_down(self) -> None:
        self.state = SenderState.IDLE
        self._in_flight = None

    def _sync(self, now: float) -> list[PlacementAction]:
        self.state = SenderState.SYNCING
        self._in_flight = None
        self._snapshot_next = True
        self._sent_at = now
        return [SendSync()]

    def on_ack(self, applied: int, resync: bool, now: float) -> list[PlacementAction]:
        if self.state is SenderState.IDLE:
            return []
        first = self.outbox.first_seq()
        if first is not None and applied < first - 1:
            self.lost += first - 1 - applied  # deleted here after an ack the home forgot
        if self.state is SenderState.SYNCING:
            self._snapshot_next = True
        elif resync:
            self.resyncs += 1
            return self._sync(now)
        elif self._in_flight is not None and applied < self._in_flight[1]:
            return self._sync(now)  # the put was not (fully) applied: start over
        self.acked = applied
        self.outbox.prune(applied)
        self._in_flight = None
        self.state = SenderState.READY
        return self._next(now)

    def on_new_entries(self, now: float) -> list[PlacementAction]:
        return self._next(now) if self.state is SenderState.READY else []

    def _next(self, now: float) -> list[PlacementAction]:
        rows = self.outbox.after(self.acked, self.batch)
        if not rows:
            return []
        upto = rows[-1][0]
        if self._snapshot_next:
            entries = collapse(rows)
            self.snapshots += 1
        else:
            entries = tuple(wire.TrustEntry(*row) for row in rows)
        base = self.acked
        put = SendPut(base, upto, self._snapshot_next, entries)
        self._snapshot_next = False
        self._in_flight = (base, upto)
        self._sent_at = now
        self.state = SenderState.SENDING
        self.puts += 1
        return [put]

    def tick(self, now: float) -> list[PlacementAction]:
        if self.state in (SenderState.SYNCING, SenderState.SENDING) and (
                now - self._sent_at >= self.ack_timeout_s):
            return self._sync(now)
        return []


@dataclass(frozen=True, slots=True)
class PutResult:
    apply: tuple[wire.TrustEntry, ...]  # to apply durably before acking
    before: int
    after: int
    resync: bool


class PutRejected(ValueError):
    """A put that contradicts itself (entries outside ``(base, upto]``, or increments that
    are not contiguous): a remote protocol error."""


class PlacementReceiver:
    """The receiving end of one origin stream at the home node."""

    def __init__(self, applied: int) -> None:
        self.applied = applied

    def on_put(self, base: int, upto: int, snapshot: bool,
               entries: Sequence[wire.TrustEntry]) -> PutResult:
        if upto < base:
            raise PutRejected(f"upto {upto} below base {base}")
        prev = base
        for e in entries:
            if not base < e.seq <= upto or e.seq <= prev:
                raise PutRejected(f"entry seq {e.seq} outside ({base}, {upto}] or unordered")
            if not snapshot and e.seq != prev + 1:
                raise PutRejected(f"increment seq {e.seq} after {prev}: not contiguous")
            prev = e.seq
        if not snapshot and prev != upto:
            raise PutRejected(f"increments end at {prev}, not at upto {upto}")
        if base > self.applied:
            return PutResult((), self.applied, self.applied, True)
        fresh = tuple(e for e in entries if e.seq > self.applied)
        before = self.applied
        return PutResult(fresh, before, max(before, upto), False)

    def commit(self, result: PutResult) -> None:
        """The result was applied durably: move the position."""
        self.applied = max(self.applied, result.after)


__all__ = ["BATCH", "Outbox", "PlacementAction", "PlacementReceiver", "PlacementSender",
           "PutRejected", "PutResult", "SendPut", "SendSync", "SenderState", "collapse"]
