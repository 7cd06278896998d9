"""The sans-IO delivery machines, without an event loop: lanes, device streams, presence."""

from __future__ import annotations

import pytest

from gateway import wire
from gateway.delivery import DeviceStream, LaneScheduler, PresenceTracker

ALL = [True, True, True, True]


def test_critical_is_never_passed_over() -> None:
    s = LaneScheduler(4, share=2)
    assert all(s.pick(ALL) == 0 for _ in range(1000))


def test_strict_priority_with_anti_starvation_share() -> None:
    s = LaneScheduler(4, share=3)
    picks = [s.pick([False, True, True, True]) for _ in range(40)]
    assert picks[:3] == [1, 1, 1]
    # lanes 2 and 3 each get a turn, and high still gets the most
    assert picks.count(1) > picks.count(2) > 0 and picks.count(3) > 0
    assert picks.count(1) >= 20


def test_nothing_ready() -> None:
    assert LaneScheduler(4).pick([False] * 4) is None


def test_share_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LaneScheduler(4, share=0)


def test_window_bounds_unconfirmed_and_critical_has_its_own() -> None:
    st = DeviceStream([0, 0, 0, 0], window=4, critical_window=2)
    heads = [0, 0, 0, 100]
    sent = []
    while (n := st.next(heads, 0)) is not None:
        sent.append(n)
    assert [(lane, seq) for lane, seq, _ in sent] == [(3, 1), (3, 2), (3, 3), (3, 4)]
    # bulk window full; a critical still goes, up to its own window
    heads[0] = 5
    assert st.next(heads, 0) == (0, 1, 1)
    assert st.next(heads, 0) == (0, 2, 1)
    assert st.next(heads, 0) is None
    assert st.received([2, 0, 0, 4], 10) == 6
    assert st.next(heads, 10) == (0, 3, 1)
    assert st.backlog(heads) == 3 + 96


def test_redelivery_goes_back_and_backs_off() -> None:
    st = DeviceStream([0, 0, 0, 0], window=8, rto_ms=100, max_rto_ms=300)
    heads = [0, 3, 0, 0]
    while st.next(heads, 0) is not None:
        pass
    assert st.due(99) == []
    assert st.due(100) == [1]
    again = [st.next(heads, 100) for _ in range(3)]
    assert again == [(1, 1, 2), (1, 2, 2), (1, 3, 2)]
    assert st.due(299) == [] and st.due(300) == [1]  # waited twice as long
    while st.next(heads, 300) is not None:
        pass
    assert st.due(700) == [1]  # capped at max_rto_ms (300)
    st.received([0, 3, 0, 0], 800)
    assert st.attempt[1] == 0 and st.deadline[1] is None


def test_confirmation_past_sent_skips_ahead_and_resume_restarts() -> None:
    st = DeviceStream([0, 0, 0, 0])
    heads = [0, 10, 0, 0]
    st.next(heads, 0)
    st.received([0, 7, 0, 0], 1)  # the device had them from an earlier session
    assert st.next(heads, 1) == (1, 8, 1)
    st.resume([0, 2, 0, 0])
    assert st.next(heads, 2) == (1, 3, 1)


def test_presence_transitions() -> None:
    p = PresenceTracker(offline_after_ms=1000)
    e = p.beat("alice", "phone", away=False, now_ms=0)
    assert e is not None and e.state is wire.PresenceState.ONLINE
    assert p.beat("alice", "phone", away=False, now_ms=500) is None
    e = p.beat("alice", "phone", away=True, now_ms=600)
    assert e is not None and e.state is wire.PresenceState.AWAY
    assert p.officer_state("alice") is wire.PresenceState.AWAY
    p.beat("alice", "desk", away=False, now_ms=700)
    assert p.officer_state("alice") is wire.PresenceState.ONLINE
    gone = p.expire(1600)
    assert [(g.device, g.state) for g in gone] == [("phone", wire.PresenceState.OFFLINE)]
    assert p.online_officers() == {"alice"}
    e = p.leave("alice", "desk", now_ms=1700)
    assert e is not None and e.last_seen_ms == 1700
    assert p.online_officers() == set()
    assert p.state("bob", "x") is wire.PresenceState.OFFLINE
