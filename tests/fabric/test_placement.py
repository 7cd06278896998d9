"""Trusted-data placement without an event loop or a network: a lossy, reordering,
duplicating channel between a sender and a receiver converges with no loss, no duplicate
and no gap, and a snapshot resync follows every gap and reconnection."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import wire
from gateway.fabric import (
    PlacementReceiver,
    PlacementSender,
    PutRejected,
    SenderState,
    SendPut,
    SendSync,
    collapse,
)


class ListOutbox:
    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int]] = []
        self.last = 0

    def add(self, account: int, level: int) -> None:
        self.last += 1
        self.rows.append((self.last, account, level))

    def after(self, seq: int, limit: int) -> list[tuple[int, int, int]]:
        return [r for r in self.rows if r[0] > seq][:limit]

    def prune(self, upto: int) -> None:
        self.rows = [r for r in self.rows if r[0] > upto]

    def first_seq(self) -> int | None:
        return self.rows[0][0] if self.rows else None


class Home:
    """A receiver with a state and an apply log, as the node keeps them."""

    def __init__(self) -> None:
        self.rx = PlacementReceiver(0)
        self.state: dict[int, int] = {}
        self.log: list[tuple[int, int]] = []  # (before, after) ranges applied

    def put(self, put: SendPut) -> wire.TrustAck:
        res = self.rx.on_put(put.base, put.upto, put.snapshot, list(put.entries))
        for e in res.apply:
            self.state[e.account] = e.level
        if res.after > res.before:
            self.log.append((res.before, res.after))
        self.rx.commit(res)
        return wire.TrustAck(1, 0, 0, self.rx.applied, res.resync)


def test_snapshot_after_sync_then_increments() -> None:
    box = ListOutbox()
    for a, lvl in [(1, 3), (2, 3), (1, 5), (3, 1)]:
        box.add(a, lvl)
    tx = PlacementSender(box)
    assert tx.on_link_up(0.0) == [SendSync()]
    (snap,) = tx.on_ack(0, False, 0.1)
    assert isinstance(snap, SendPut) and snap.snapshot and (snap.base, snap.upto) == (0, 4)
    assert [(e.account, e.level) for e in snap.entries] == [(2, 3), (1, 5), (3, 1)]
    home = Home()
    ack = home.put(snap)
    assert tx.on_ack(ack.applied, ack.resync, 0.2) == []
    assert tx.state is SenderState.READY and box.rows == []
    box.add(4, 2)
    box.add(4, 0)
    (inc,) = tx.on_new_entries(0.3)
    assert isinstance(inc, SendPut) and not inc.snapshot and [e.seq for e in inc.entries] == [
        5, 6]
    ack = home.put(inc)
    tx.on_ack(ack.applied, ack.resync, 0.4)
    assert home.state == {1: 5, 2: 3, 3: 1, 4: 0}
    assert home.log == [(0, 4), (4, 6)]


def test_gap_asks_for_resync_and_repeats_apply_nothing() -> None:
    home = Home()
    e = [wire.TrustEntry(i, 100 + i, 1) for i in range(1, 6)]
    assert home.put(SendPut(0, 2, False, tuple(e[:2]))).applied == 2
    gap = home.put(SendPut(3, 5, False, tuple(e[3:])))
    assert gap.resync and gap.applied == 2 and home.log == [(0, 2)]
    again = home.put(SendPut(0, 3, False, tuple(e[:3])))
    assert again.applied == 3 and home.log == [(0, 2), (2, 3)]
    with pytest.raises(PutRejected):
        home.rx.on_put(3, 5, False, [e[3]])  # increments must reach upto
    with pytest.raises(PutRejected):
        home.rx.on_put(3, 5, True, [e[0]])  # outside (base, upto]


def test_lost_at_home_is_counted() -> None:
    box = ListOutbox()
    for a in range(5):
        box.add(a, 1)
    box.prune(3)  # acked earlier, the home then lost them
    tx = PlacementSender(box)
    tx.on_link_up(0.0)
    (snap,) = tx.on_ack(0, False, 0.1)
    assert isinstance(snap, SendPut) and tx.lost == 3
    assert collapse([(1, 7, 1), (2, 7, 2)]) == (wire.TrustEntry(2, 7, 2),)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 120))
def test_lossy_channel_converges_without_loss_duplicate_or_gap(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    box = ListOutbox()
    tx = PlacementSender(box, ack_timeout_s=1.0, batch=7)
    home = Home()
    expected: dict[int, int] = {}
    wire_to_home: list[object] = []
    wire_to_sender: list[wire.TrustAck] = []
    now = 0.0
    link_up = False
    added = 0
    for _ in range(4000):
        now += 0.1
        if added < n and rnd.random() < 0.3:
            acct, lvl = rnd.randrange(20), rnd.randrange(0, 4)
            box.add(acct, lvl)
            expected[acct] = lvl
            added += 1
            wire_to_home += tx.on_new_entries(now)
        if rnd.random() < 0.02:  # the link flaps: what is in flight may be lost
            link_up = not link_up
            if link_up:
                wire_to_home += tx.on_link_up(now)
            else:
                tx.on_link_down()
                wire_to_home.clear()
                wire_to_sender.clear()
        wire_to_home += tx.tick(now)
        if not link_up:
            continue
        if wire_to_home and rnd.random() < 0.7:
            msg = wire_to_home.pop(rnd.randrange(len(wire_to_home)))  # reorders
            if rnd.random() < 0.1:
                continue  # lost
            if rnd.random() < 0.1:
                wire_to_home.append(msg)  # duplicated
            if isinstance(msg, SendSync):
                wire_to_sender.append(wire.TrustAck(1, 0, 0, home.rx.applied, False))
            else:
                assert isinstance(msg, SendPut)
                wire_to_sender.append(home.put(msg))
        if wire_to_sender and rnd.random() < 0.7:
            ack = wire_to_sender.pop(0)
            wire_to_home += tx.on_ack(ack.applied, ack.resync, now)
        if added == n and not box.rows and home.rx.applied == box.last:
            break
    # heal for good and let it settle
    if not link_up:
        wire_to_home = list(tx.on_link_up(now))
        wire_to_sender = []
    for _ in range(2000):
        now += 0.1
        wire_to_home += tx.tick(now)
        while wire_to_home:
            msg = wire_to_home.pop(0)
            ack = (wire.TrustAck(1, 0, 0, home.rx.applied, False) if isinstance(msg, SendSync)
                   else home.put(msg))  # type: ignore[arg-type]
            wire_to_home += tx.on_ack(ack.applied, ack.resync, now)
        if not box.rows:
            break
    assert home.rx.applied == box.last == n
    assert home.state == expected  # nothing lost
    chain = 0
    for before, after in home.log:  # no gap, no overlap: each seq applied exactly once
        assert before == chain
        chain = after
    assert chain == n
