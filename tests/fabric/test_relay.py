"""The relay's sans-IO streams, without an event loop: one request in flight per lane,
acknowledgements, resends after a timeout or a link change, the memory cap with the
database read back, and the most urgent lane first."""

from __future__ import annotations

from gateway.fabric import RelayItem, RelaySender, RelayStream, relay_key


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


def test_one_request_in_flight_acks_and_resends() -> None:
    box = ListOutbox()
    s = RelayStream(1, box, acked=2, batch=3, ack_timeout_s=1.0)
    for n in range(1, 8):
        box.add(1, n)  # 1 and 2 were acknowledged before
    first = s.next(0.0)
    assert first is not None and ids(first) == [3, 4, 5]
    assert s.next(0.1) is None  # one in flight
    assert s.on_ack(4) == 2 and s.in_flight == 5  # partial: still waiting for 5
    s.tick(1.5)  # no answer in time: sent again from the acknowledged position
    again = s.next(1.5)
    assert again is not None and ids(again) == [5, 6, 7] and s.resent == 1
    s.on_link_change()
    assert ids(s.next(2.0)) == [5, 6, 7]  # type: ignore[arg-type]
    assert s.on_ack(7) == 3 and s.acked == 7 and s.in_flight is None
    assert s.next(2.1) is None
    s.on_new(box.add(1, 8))  # live: appended without reading the database
    reads = box.reads
    assert ids(s.next(2.2)) == [8] and box.reads == reads  # type: ignore[arg-type]
    s.on_ack(8)
    s.on_busy(0.5, 3.0)
    s.on_new(box.add(1, 9))
    assert s.next(3.1) is None and ids(s.next(3.5)) == [9]  # type: ignore[arg-type]


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
