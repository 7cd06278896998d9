"""The relay's sans-IO streams, without an event loop: a window of requests in flight per
lane, acknowledgements, rewinds after a timeout, a refusal or a link change, the
receiver's continuity check (a lost request is never overtaken, a repeat never journaled
twice), the memory cap with the database read back, and the most urgent lane first."""

from __future__ import annotations

from gateway.fabric import (
    RelayItem,
    RelayReceiver,
    RelaySender,
    RelayStream,
    SendRelay,
    relay_key,
)


class ListOutbox:
    """The origin's journaled alerts: (lane, item), in alert id order."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, RelayItem]] = []
        self.reads = 0

    def add(self, lane: int, alert_id: int) -> RelayItem:
        item = RelayItem(alert_id, (), b"x" * 10)
        self.rows.append((lane, item))
        return item

    def after(self, lane: int, alert_id: int, limit: int) -> list[RelayItem]:
        self.reads += 1
        return [i for ln, i in self.rows if ln == lane and i.alert_id > alert_id][:limit]


def ids(req: object) -> list[int]:
    return [i.alert_id for i in req.items]  # type: ignore[attr-defined]


def test_window_acks_and_resends() -> None:
    box = ListOutbox()
    s = RelayStream(1, box, acked=2, batch=3, window=2, ack_timeout_s=1.0)
    for n in range(1, 12):
        box.add(1, n)  # 1 and 2 were acknowledged before
    first = s.next(0.0)
    second = s.next(0.0)
    assert first is not None and ids(first) == [3, 4, 5] and first.after == 0
    assert second is not None and ids(second) == [6, 7, 8] and second.after == 5
    assert s.next(0.1) is None and s.in_flight == 2  # the window is full
    assert s.on_ack(5) == 3 and s.in_flight == 1
    third = s.next(0.2)
    assert third is not None and ids(third) == [9, 10, 11] and third.after == 8
    s.tick(1.5)  # the oldest unanswered in time: everything out goes again from acked
    again = s.next(1.5)
    assert again is not None and ids(again) == [6, 7, 8] and again.after == 0
    assert s.resent == 1 and again.generation == third.generation + 1
    s.on_link_change()
    assert s.resent == 2 and ids(s.next(2.0)) == [6, 7, 8]  # type: ignore[arg-type]
    assert s.on_ack(8) == 3 and s.on_ack(11) == 3  # a late answer still counts
    assert s.acked == 11 and s.in_flight == 0 and s.next(2.1) is None
    s.on_new(box.add(1, 12))  # live: appended without reading the database
    reads = box.reads
    req = s.next(2.2)
    assert req is not None and ids(req) == [12] and box.reads == reads
    assert not s.on_refused(req.generation - 1, 0.5, 3.0)  # an older generation's: ignored
    assert s.on_refused(req.generation, 0.5, 3.0)  # busy: again from acked, later
    s.on_new(box.add(1, 13))
    assert s.next(3.1) is None and ids(s.next(3.5)) == [12, 13]  # type: ignore[arg-type]


class Receiver:
    """The destination as the shell runs it: the continuity check, then each alert
    journaled once by its relay key, answered with the request's last id."""

    def __init__(self) -> None:
        self.check = RelayReceiver()
        self.journal: list[int] = []  # origin alert ids in the order journaled
        self.keys: set[str] = set()
        self.gaps = 0

    def take(self, req: SendRelay) -> int | None:
        """The acknowledged ``upto``, or None for a gap refusal."""
        if not self.check.continues("eu", req.lane, req.after):
            self.gaps += 1
            return None
        for item in req.items:
            key = relay_key("eu", item.alert_id)
            if key not in self.keys:
                self.keys.add(key)
                self.journal.append(item.alert_id)
        self.check.on_held("eu", req.lane, req.items[-1].alert_id)
        return req.items[-1].alert_id


def deliver(s: RelayStream, rx: Receiver, reqs: list[SendRelay], now: float) -> None:
    for req in reqs:
        upto = rx.take(req)
        if upto is None:
            s.on_refused(req.generation, 0.0, now)
        else:
            s.on_ack(upto)


def test_a_lost_middle_request_never_lets_later_alerts_overtake_it() -> None:
    box = ListOutbox()
    s = RelayStream(2, box, acked=0, batch=2, window=4, ack_timeout_s=1.0)
    for n in range(1, 11):
        box.add(2, n)
    rx = Receiver()
    out = list(iter(lambda: s.next(0.0), None))
    assert [ids(r) for r in out] == [[1, 2], [3, 4], [5, 6], [7, 8]]
    lost = out.pop(1)  # [3, 4] vanishes with a replaced connection
    deliver(s, rx, out, 0.1)
    assert rx.journal == [1, 2] and rx.gaps == 2  # 5..8 refused: they follow 3, 4
    assert s.acked == 2 and lost.generation != s.generation
    while (req := s.next(0.2)) is not None:  # resent from acked, and the rest
        deliver(s, rx, [req], 0.2)
    assert rx.journal == list(range(1, 11)) and s.acked == 10


def test_a_repeated_request_is_not_journaled_twice() -> None:
    box = ListOutbox()
    s = RelayStream(0, box, acked=0, batch=3, window=2, ack_timeout_s=1.0)
    for n in range(1, 7):
        box.add(0, n)
    rx = Receiver()
    first, second = s.next(0.0), s.next(0.0)
    assert first is not None and second is not None
    assert rx.take(first) == 3 and rx.take(second) == 6  # journaled; the answers are lost
    s.tick(2.0)  # unanswered: both go again
    again = list(iter(lambda: s.next(2.0), None))
    assert [ids(r) for r in again] == [[1, 2, 3], [4, 5, 6]]
    deliver(s, rx, [*again, second], 2.1)  # and an old copy arrives once more
    assert rx.journal == [1, 2, 3, 4, 5, 6] and s.acked == 6 and s.in_flight == 0


def test_backlog_beyond_the_cap_is_read_back_from_the_database() -> None:
    box = ListOutbox()
    s = RelayStream(0, box, acked=0, cap=4, batch=2)
    assert s.next(0.0) is None and s.complete
    for n in range(1, 11):
        s.on_new(box.add(0, n))  # more than the cap arrive while the peer is away
    assert len(s.pending) == 4 and not s.complete
    got: list[int] = []
    now = 0.0
    while (req := s.next(now)) is not None:
        got += ids(req)
        s.on_ack(req.items[-1].alert_id)
        now += 0.1
    assert got == list(range(1, 11))  # each once, in order
    s.on_new(box.add(0, 5))  # a late hook for one already read back is ignored
    assert s.next(now) is None


def test_lanes_are_independent_and_most_urgent_first() -> None:
    box = ListOutbox()
    sender = RelaySender("us", box, [0, 0, 0, 0])
    for n in range(1, 5):
        box.add(3, n)  # bulk backlog
    box.add(0, 5)
    box.add(2, 6)
    reqs = sender.next(0.0)
    assert [(r.lane, ids(r)) for r in reqs] == [(0, [5]), (2, [6]), (3, [1, 2, 3, 4])]
    sender.streams[3].on_ack(4)
    assert sender.acked == [0, 0, 0, 4] and sender.backlog == 2
    assert relay_key("eu", 5) == "relay:eu:5"
