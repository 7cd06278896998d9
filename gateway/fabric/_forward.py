"""Forwarded transactions: the origin's table of requests waiting for home regions, and the
home's record of forwards already scored.

Rules (time in seconds is passed in; nothing here waits or sends):

- A producer's request with transactions homed elsewhere becomes one *forward* per home
  region (the transactions of that region, in request order). Its local transactions are
  scored only once every forward has its decisions (the shell does that on
  :class:`Complete`), so a request refused on the way has applied nothing at this node.
- A request is sent only when the links to all its home regions are up. Otherwise, by
  policy: ``error`` refuses it at once with ``REGION_UNAVAILABLE``; ``busy`` answers
  ``busy``; ``queue`` holds it (at most ``queue_limit`` requests, each at most ``queue_s``,
  then ``REGION_UNAVAILABLE``); nothing of a refused or expired request was sent anywhere.
- A forward keeps its id (``fid``) for life and is sent again with the same id when its link
  comes back up or the home asked it to retry (``busy``); the home scores each
  ``(origin, epoch, fid)`` at most once (:class:`ForwardDedup`) and answers repeats from
  its record, so repeats never duplicate a decision.
- A sent request unanswered after ``timeout_s`` is answered ``FORWARD_TIMEOUT`` (the home
  may have applied it) and forgotten; a late answer is counted, not delivered.
- At most ``max_in_flight`` requests are held (queued or sent); more get ``busy``.
- A request whose transactions span several home regions is not atomic across them: when
  one home refuses its part, another may have applied its own (the error says so).
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway import wire
from gateway.errors import ErrorCode

CONTROL_RID_BASE: Final = 1 << 62  # fids stay below; the shell's control requests above


class Policy(enum.Enum):
    ERROR = "error"
    BUSY = "busy"
    QUEUE = "queue"


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    on_partition: Policy = Policy.ERROR
    queue_limit: int = 1000
    queue_s: float = 2.0
    timeout_s: float = 5.0
    busy_retry_ms: int = 100
    max_in_flight: int = 10_000


@dataclass(frozen=True, slots=True)
class SendForward:
    region: str
    fid: int
    txs: tuple[wire.Transaction, ...]


@dataclass(frozen=True, slots=True)
class Complete:
    token: object
    decisions: tuple[wire.Decision | None, ...]  # by request position; None: local


@dataclass(frozen=True, slots=True)
class Refuse:
    token: object
    reply: wire.Busy | wire.Error
    reason: str  # counter label


ForwardAction = SendForward | Complete | Refuse


@dataclass(slots=True, eq=False)
class _Forward:
    fid: int
    region: str
    positions: list[int]
    txs: tuple[wire.Transaction, ...]
    request: _Request
    decisions: list[wire.Decision] | None = None
    retry_at: float | None = None


@dataclass(slots=True, eq=False)
class _Request:
    key: int
    token: object
    rid: int
    n: int
    deadline: float
    forwards: dict[str, _Forward] = field(default_factory=dict)
    pending: int = 0
    sent: bool = False


def _error(rid: int, code: ErrorCode, message: str) -> wire.Error:
    return wire.Error(wire.PROTOCOL_VERSION, rid, int(code), code.name, message)


class ForwardTable:
    """Origin side: requests waiting for their home regions (see the module docstring)."""

    def __init__(self, settings: ForwardSettings, *, first_fid: int = 1) -> None:
        self.settings = settings
        self._next_fid = first_fid
        self._queued: collections.OrderedDict[int, _Request] = collections.OrderedDict()
        self._sent: collections.OrderedDict[int, _Request] = collections.OrderedDict()
        self._by_fid: dict[int, _Forward] = {}
        self._retry: list[_Forward] = []
        self._ids = 0
        self.late = 0  # answers for forwards no longer waited for

    @property
    def queued(self) -> int:
        return len(self._queued)

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    def open(self, token: object, rid: int, txs: Sequence[wire.Transaction],
             homes: Sequence[str], local: str, is_up: Callable[[str], bool],
             now: float) -> list[ForwardAction]:
        """A producer's request; ``homes[i]`` is the home region of ``txs[i]``."""
        s = self.settings
        if len(self._queued) + len(self._sent) >= s.max_in_flight:
            return [Refuse(token, wire.Busy(wire.PROTOCOL_VERSION, rid, s.busy_retry_ms),
                           "max_in_flight")]
        groups: dict[str, list[int]] = {}
        for i, home in enumerate(homes):
            if home != local:
                groups.setdefault(home, []).append(i)
        if not groups:
            return [Complete(token, (None,) * len(txs))]
        down = sorted(r for r in groups if not is_up(r))
        if down and s.on_partition is not Policy.QUEUE:
            if s.on_partition is Policy.BUSY:
                return [Refuse(token, wire.Busy(wire.PROTOCOL_VERSION, rid, s.busy_retry_ms),
                               "partition_busy")]
            return [Refuse(token, _error(rid, ErrorCode.REGION_UNAVAILABLE,
                                         f"home region {', '.join(down)} unreachable; nothing"
                                         " was applied"), "region_unavailable")]
        if down and len(self._queued) >= s.queue_limit:
            return [Refuse(token, wire.Busy(wire.PROTOCOL_VERSION, rid, s.busy_retry_ms),
                           "queue_full")]
        self._ids += 1
        key = self._ids
        req = _Request(key, token, rid, len(txs), now + (s.queue_s if down else s.timeout_s))
        for region, positions in groups.items():
            fwd = _Forward(self._next_fid, region, positions,
                           tuple(txs[i] for i in positions), req)
            self._next_fid += 1
            req.forwards[region] = fwd
        req.pending = len(req.forwards)
        if down:
            self._queued[key] = req
            return []
        return self._send(key, req, now)

    def _send(self, key: int, req: _Request, now: float) -> list[ForwardAction]:
        req.sent = True
        req.deadline = now + self.settings.timeout_s
        self._sent[key] = req
        out: list[ForwardAction] = []
        for fwd in req.forwards.values():
            self._by_fid[fwd.fid] = fwd
            out.append(SendForward(fwd.region, fwd.fid, fwd.txs))
        return out

    def _drop(self, req: _Request) -> None:
        for fwd in req.forwards.values():
            self._by_fid.pop(fwd.fid, None)
        self._sent.pop(req.key, None)
        self._queued.pop(req.key, None)

    def on_reply(self, region: str, fid: int, reply: wire.ScoreReply | wire.Busy | wire.Error,
                 now: float) -> list[ForwardAction]:
        """The home's answer to forward ``fid``."""
        fwd = self._by_fid.get(fid)
        if fwd is None or fwd.region != region or fwd.decisions is not None:
            self.late += 1
            return []
        req = fwd.request
        if isinstance(reply, wire.Busy):
            fwd.retry_at = now + reply.retry_after_ms / 1000
            self._retry.append(fwd)
            return []
        if isinstance(reply, wire.ScoreReply) and len(reply.decisions) == len(fwd.txs) and all(
                d.tx_id == t.tx_id for d, t in zip(reply.decisions, fwd.txs, strict=True)):
            fwd.decisions = list(reply.decisions)
            req.pending -= 1
            if req.pending:
                return []
            self._drop(req)
            decisions: list[wire.Decision | None] = [None] * req.n
            for f in req.forwards.values():
                assert f.decisions is not None
                for pos, d in zip(f.positions, f.decisions, strict=True):
                    decisions[pos] = d
            return [Complete(req.token, tuple(decisions))]
        self._drop(req)
        others = " (transactions homed in other regions may have been applied)" if len(
            req.forwards) > 1 else ""
        if isinstance(reply, wire.Error):
            err = wire.Error(wire.PROTOCOL_VERSION, req.rid, reply.code, reply.name,
                             f"home region {region}: {reply.message}{others}")
        else:
            err = _error(req.rid, ErrorCode.INTERNAL,
                         f"home region {region} answered decisions that do not match the "
                         f"{len(fwd.txs)} transactions sent{others}")
        return [Refuse(req.token, err, "remote_error")]

    def on_link_up(self, region: str, is_up: Callable[[str], bool],
                   now: float) -> list[ForwardAction]:
        """Send again what was sent to ``region``; send queued requests now reachable."""
        out: list[ForwardAction] = []
        for req in self._sent.values():
            fwd = req.forwards.get(region)
            if fwd is not None and fwd.decisions is None:
                fwd.retry_at = None
                out.append(SendForward(region, fwd.fid, fwd.txs))
        out += self._release_queued(is_up, now)
        return out

    def _release_queued(self, is_up: Callable[[str], bool], now: float) -> list[ForwardAction]:
        out: list[ForwardAction] = []
        ready = [k for k, r in self._queued.items() if all(is_up(g) for g in r.forwards)]
        for key in ready:
            out += self._send(key, self._queued.pop(key), now)
        return out

    def tick(self, is_up: Callable[[str], bool], now: float) -> list[ForwardAction]:
        """Expire what waited too long; retry forwards the home answered ``busy``."""
        out: list[ForwardAction] = []
        while self._queued:
            key, req = next(iter(self._queued.items()))
            if req.deadline > now:
                break
            del self._queued[key]
            out.append(Refuse(req.token, _error(
                req.rid, ErrorCode.REGION_UNAVAILABLE,
                f"home region {', '.join(sorted(g for g in req.forwards if not is_up(g)))} "
                f"unreachable for {self.settings.queue_s:g} s; nothing was applied"),
                "queue_expired"))
        while self._sent:
            key, req = next(iter(self._sent.items()))
            if req.deadline > now:
                break
            self._drop(req)
            waiting = sorted(f.region for f in req.forwards.values() if f.decisions is None)
            out.append(Refuse(req.token, _error(
                req.rid, ErrorCode.FORWARD_TIMEOUT,
                f"home region {', '.join(waiting)} did not answer within "
                f"{self.settings.timeout_s:g} s; it may have applied the transactions"),
                "timeout"))
        if self._retry:
            keep: list[_Forward] = []
            for fwd in self._retry:
                if self._by_fid.get(fwd.fid) is not fwd or fwd.retry_at is None:
                    continue
                if fwd.retry_at <= now and is_up(fwd.region):
                    fwd.retry_at = None
                    out.append(SendForward(fwd.region, fwd.fid, fwd.txs))
                else:
                    keep.append(fwd)
            self._retry = keep
        if self._queued:
            out += self._release_queued(is_up, now)
        return out


class Seen(enum.Enum):
    NEW = "new"  # score it
    PENDING = "pending"  # being scored: the answer goes out when ready


@dataclass(slots=True)
class _Origin:
    epoch: int
    replies: collections.OrderedDict[int, bytes | None] = field(
        default_factory=collections.OrderedDict)


class ForwardDedup:
    """Home side: each ``(origin, epoch, fid)`` is scored at most once; repeats get the
    recorded answer. Keeps the last ``capacity`` forwards of each origin's current epoch
    (an origin's new epoch, i.e. a restart, drops the old one's record)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.capacity = capacity
        self._origins: dict[str, _Origin] = {}

    def begin(self, origin: str, epoch: int, fid: int) -> Seen | bytes:
        st = self._origins.get(origin)
        if st is None or st.epoch != epoch:
            st = self._origins[origin] = _Origin(epoch)
        if fid in st.replies:
            reply = st.replies[fid]
            return Seen.PENDING if reply is None else reply
        st.replies[fid] = None
        while len(st.replies) > self.capacity:
            st.replies.popitem(last=False)
        return Seen.NEW

    def finish(self, origin: str, epoch: int, fid: int, reply: bytes | None) -> None:
        """Record the answer; ``None`` forgets the forward (nothing was applied: busy)."""
        st = self._origins.get(origin)
        if st is None or st.epoch != epoch:
            return
        if reply is None:
            st.replies.pop(fid, None)
        elif fid in st.replies:
            st.replies[fid] = reply


__all__ = ["CONTROL_RID_BASE", "Complete", "ForwardAction", "ForwardDedup", "ForwardSettings",
           "ForwardTable", "Policy", "Refuse", "Seen", "SendForward"]
