"""Forwarded requests without an event loop: partition policies, bounds, retransmission
with the same id, timeouts, order and completeness of mixed batches, home-side dedup."""

from __future__ import annotations

import pytest

from gateway import wire
from gateway.errors import ErrorCode
from gateway.fabric import (
    Complete,
    ForwardDedup,
    ForwardSettings,
    ForwardTable,
    Policy,
    Refuse,
    Seen,
    SendForward,
)


def tx(i: int, account: int) -> wire.Transaction:
    return wire.Transaction(f"tx-{i}", account, 1, 100, "EUR", wire.Channel.CARD, 0, "", "",
                            "", "", 0)


def decision(t: wire.Transaction) -> wire.Decision:
    return wire.Decision(t.tx_id, wire.Outcome.ALLOW, None, 0, wire.ScoringPath.FULL, (), 1)


def scored(fid: int, txs: tuple[wire.Transaction, ...]) -> wire.ScoreReply:
    return wire.ScoreReply(1, fid, [decision(t) for t in txs])


UP = {"eu": True, "us": True, "ap": True}


def is_up(region: str) -> bool:
    return UP[region]


@pytest.fixture(autouse=True)
def _all_up() -> None:
    UP.update(eu=True, us=True, ap=True)


def test_mixed_batch_completes_in_request_order() -> None:
    table = ForwardTable(ForwardSettings())
    txs = [tx(0, 1), tx(1, 2), tx(2, 3), tx(3, 4), tx(4, 5)]
    homes = ["eu", "us", "eu", "ap", "us"]
    sends = table.open("tok", 9, txs, homes, "eu", is_up, 0.0)
    assert [(s.region, [t.tx_id for t in s.txs]) for s in sends
            if isinstance(s, SendForward)] == [("us", ["tx-1", "tx-4"]), ("ap", ["tx-3"])]
    us, ap = sends
    assert isinstance(us, SendForward) and isinstance(ap, SendForward)
    assert table.on_reply("ap", ap.fid, scored(ap.fid, ap.txs), 0.1) == []
    (done,) = table.on_reply("us", us.fid, scored(us.fid, us.txs), 0.2)
    assert isinstance(done, Complete) and done.token == "tok"
    assert [d.tx_id if d else None for d in done.decisions] == [None, "tx-1", None, "tx-3",
                                                                 "tx-4"]
    assert table.in_flight == 0
    # a repeated answer is late, not a second completion
    assert table.on_reply("us", us.fid, scored(us.fid, us.txs), 0.3) == []
    assert table.late == 1


@pytest.mark.parametrize(("policy", "expect"), [(Policy.ERROR, "error"), (Policy.BUSY, "busy")])
def test_partition_refuses_before_anything_is_sent(policy: Policy, expect: str) -> None:
    table = ForwardTable(ForwardSettings(on_partition=policy, busy_retry_ms=50))
    UP["us"] = False
    (refuse,) = table.open("t", 4, [tx(0, 1), tx(1, 2)], ["eu", "us"], "eu", is_up, 0.0)
    assert isinstance(refuse, Refuse) and refuse.reply.rid == 4
    if expect == "busy":
        assert isinstance(refuse.reply, wire.Busy) and refuse.reply.retry_after_ms == 50
    else:
        assert isinstance(refuse.reply, wire.Error)
        assert refuse.reply.code == ErrorCode.REGION_UNAVAILABLE
        assert "nothing was applied" in refuse.reply.message
    assert table.in_flight == table.queued == 0


def test_queue_holds_until_heal_or_expiry_and_is_bounded() -> None:
    table = ForwardTable(ForwardSettings(on_partition=Policy.QUEUE, queue_limit=2, queue_s=2.0))
    UP["us"] = False
    assert table.open("a", 1, [tx(0, 1)], ["us"], "eu", is_up, 0.0) == []
    assert table.open("b", 2, [tx(1, 1)], ["us"], "eu", is_up, 1.0) == []
    (full,) = table.open("c", 3, [tx(2, 1)], ["us"], "eu", is_up, 1.0)
    assert isinstance(full, Refuse) and isinstance(full.reply, wire.Busy)
    (expired,) = table.tick(is_up, 2.0)
    assert isinstance(expired, Refuse) and expired.token == "a"
    assert isinstance(expired.reply, wire.Error)
    assert expired.reply.code == ErrorCode.REGION_UNAVAILABLE
    UP["us"] = True
    (send,) = table.on_link_up("us", is_up, 2.5)
    assert isinstance(send, SendForward) and send.txs[0].tx_id == "tx-1"
    (done,) = table.on_reply("us", send.fid, scored(send.fid, send.txs), 2.6)
    assert isinstance(done, Complete) and done.token == "b"


def test_in_flight_is_resent_with_the_same_id_and_times_out() -> None:
    table = ForwardTable(ForwardSettings(timeout_s=10.0))
    (send,) = table.open("t", 1, [tx(0, 1)], ["us"], "eu", is_up, 0.0)
    assert isinstance(send, SendForward)
    UP["us"] = False
    UP["us"] = True
    (again,) = table.on_link_up("us", is_up, 3.0)
    assert isinstance(again, SendForward) and again.fid == send.fid
    (busy_retry,) = [a for a in table.on_reply("us", send.fid, wire.Busy(1, send.fid, 100),
                                                 3.1)] or [None]
    assert busy_retry is None
    (retry,) = table.tick(is_up, 3.3)
    assert isinstance(retry, SendForward) and retry.fid == send.fid
    (timeout,) = table.tick(is_up, 10.0)
    assert isinstance(timeout, Refuse) and isinstance(timeout.reply, wire.Error)
    assert timeout.reply.code == ErrorCode.FORWARD_TIMEOUT
    assert table.in_flight == 0


def test_home_error_fails_the_request_and_bounds() -> None:
    table = ForwardTable(ForwardSettings(max_in_flight=1))
    (send,) = table.open("t", 7, [tx(0, 1)], ["us"], "eu", is_up, 0.0)
    assert isinstance(send, SendForward)
    (busy,) = table.open("u", 8, [tx(1, 1)], ["us"], "eu", is_up, 0.0)
    assert isinstance(busy, Refuse) and busy.reason == "max_in_flight"
    err = wire.Error(1, send.fid, int(ErrorCode.WRONG_REGION), "WRONG_REGION", "not here")
    (refuse,) = table.on_reply("us", send.fid, err, 0.1)
    assert isinstance(refuse, Refuse) and isinstance(refuse.reply, wire.Error)
    assert refuse.reply.rid == 7 and refuse.reply.name == "WRONG_REGION"
    # all local: complete at once
    (done,) = table.open("v", 9, [tx(2, 1)], ["eu"], "eu", is_up, 0.2)
    assert done == Complete("v", (None,))


def test_dedup_scores_each_forward_once_per_epoch() -> None:
    dedup = ForwardDedup(capacity=2)
    assert dedup.begin("us", 1, 10) is Seen.NEW
    assert dedup.begin("us", 1, 10) is Seen.PENDING
    dedup.finish("us", 1, 10, b"reply")
    assert dedup.begin("us", 1, 10) == b"reply"
    assert dedup.begin("us", 1, 11) is Seen.NEW
    dedup.finish("us", 1, 11, None)  # busy: not applied, score it when it comes again
    assert dedup.begin("us", 1, 11) is Seen.NEW
    assert dedup.begin("us", 2, 10) is Seen.NEW  # the origin restarted
    assert dedup.begin("ap", 1, 10) is Seen.NEW


def test_decisions_that_do_not_match_the_forward_fail_the_request() -> None:
    table = ForwardTable(ForwardSettings())
    (send,) = table.open("t", 3, [tx(0, 1), tx(1, 2)], ["us", "us"], "eu", is_up, 0.0)
    assert isinstance(send, SendForward)
    swapped = wire.ScoreReply(1, send.fid, [decision(send.txs[1]), decision(send.txs[0])])
    (refuse,) = table.on_reply("us", send.fid, swapped, 0.1)
    assert isinstance(refuse, Refuse) and isinstance(refuse.reply, wire.Error)
    assert refuse.reply.rid == 3 and refuse.reply.code == ErrorCode.INTERNAL
