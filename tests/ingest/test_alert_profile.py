"""Alert records of the native ingest carry the account's profile."""

from __future__ import annotations

import time
from typing import Any

import zmq
from ingest_helpers import DealerFactory, encode, make_endpoint, transactions

from gateway import wire
from gateway.alert_content import tx_summary_from_transaction
from gateway.ingest import AlertRecord, NativeIngestEndpoint, tx_summary_from_record
from gateway.scoring import ScoringEngine

# every payment steps up (one alert each); large ones are blocked, so not learned
RULES = """
[thresholds]
step_up = 30
block = 70
block_and_freeze = 1000

[[rules]]
id = "ALL"
score = 30
when = { amount = { ge = 0 } }

[[rules]]
id = "BIG"
score = 40
when = { amount = { ge = 50000 } }
"""


def _engine() -> ScoringEngine:
    return ScoringEngine(RULES, "profile.toml", max_accounts=1 << 12)


def _collect(ep: NativeIngestEndpoint, n: int, timeout: float = 5.0) -> list[AlertRecord]:
    got: list[AlertRecord] = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:  # bounded drain of the alert socket
        ep.alerts.drain_nowait(lambda b: got.extend(ep.decode_alerts(b)))
    assert len(got) == n, f"{len(got)} of {n} alert records"
    return got


def _score_body(rid: int, txs: list[wire.Transaction]) -> bytes:
    return encode(wire.ScoreRequest(1, rid, txs))


def test_profiles_equal_the_python_engines(dealer: DealerFactory,
                                          zctx: zmq.Context[Any]) -> None:
    txs = transactions(300, seed=3)
    ep = make_endpoint(zctx, _engine())
    ep.start()
    try:
        d = dealer(ep.url)
        for rid, t in enumerate(txs):  # one payment per request, pipelined
            d.send(_score_body(rid, [t]))
        for _ in txs:
            assert isinstance(d.recv(), wire.ScoreReply)
        got = _collect(ep, len(txs))
    finally:
        ep.close()
    ref = _engine()
    for rec, t in zip(got, txs, strict=True):
        ref.score(t)
        assert rec.decision.tx_id == t.tx_id
        assert rec.profile is not None and rec.profile == ref.profile(t.account, t.ts_ms)
    assert any(r.profile is not None and r.profile.tx_count > 1 for r in got)
    assert any(r.decision.outcome is wire.Outcome.BLOCK for r in got)


def test_a_batch_reports_the_state_after_the_request(dealer: DealerFactory,
                                                     zctx: zmq.Context[Any]) -> None:
    t0 = 1_700_000_000_000
    pays = [wire.Transaction(f"p{i}", 11, 2, 1000 * (i + 1), "EUR", wire.Channel.CARD, 5411,
                             f"dev-{i}", "", "DE", "Berlin", t0 + 1000 * i) for i in range(3)]
    ep = make_endpoint(zctx, _engine())
    ep.start()
    try:
        reply = dealer(ep.url).request(_score_body(1, pays))
        assert isinstance(reply, wire.ScoreReply)
        got = _collect(ep, 3)
    finally:
        ep.close()
    ref = _engine()
    ref.score_batch(pays)
    for rec, t in zip(got, pays, strict=True):
        assert rec.profile == ref.profile(11, t.ts_ms)
        assert rec.profile is not None and rec.profile.tx_count == 3
    # baseline 1000 -> 1125 -> 1359; three devices learned; all in one 10 s bucket
    assert got[0].profile == wire.AccountProfile(3, 6000, 3, 6000, 3, 6000, 1359, 3, 3)


def test_frozen_account_without_state_has_no_profile(dealer: DealerFactory,
                                                     zctx: zmq.Context[Any]) -> None:
    engine = _engine()
    engine.score(wire.Transaction("before", 21, 2, 500, "EUR", wire.Channel.WEB, 5411, "d",
                                  "", "FR", "Paris", 1_000))
    engine.freeze_account(20)  # never paid
    engine.freeze_account(21)  # paid once before the freeze
    ep = make_endpoint(zctx, engine)
    ep.start()
    try:
        txs = [wire.Transaction(f"f{a}", a, 2, 10, "EUR", wire.Channel.WEB, 5411, "", "",
                                "", "", 7_201_000) for a in (20, 21)]  # 2 h later
        assert isinstance(dealer(ep.url).request(_score_body(1, txs)), wire.ScoreReply)
        no_state, known = _collect(ep, 2)
    finally:
        ep.close()
    assert no_state.account == 20 and no_state.profile is None
    assert known.account == 21 and known.profile == wire.AccountProfile(
        0, 0, 0, 0, 1, 500, 500, 1, 1)
    assert known.decision.fired == ("@frozen",)


def test_tx_summary_of_a_record_matches_the_request(dealer: DealerFactory,
                                                    zctx: zmq.Context[Any]) -> None:
    t = wire.Transaction("sum-1", 31, 77, 123_456, "CHF", wire.Channel.TRANSFER, 4829,
                         "dev", "10.0.0.1", "CH", "Bern", 1_700_000_000_123)
    ep = make_endpoint(zctx, _engine())
    ep.start()
    try:
        assert isinstance(dealer(ep.url).request(_score_body(1, [t])), wire.ScoreReply)
        (rec,) = _collect(ep, 1)
    finally:
        ep.close()
    assert tx_summary_from_record(rec) == tx_summary_from_transaction(t)
