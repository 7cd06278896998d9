"""The native ingest thread over real sockets on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
import zmq
from ingest_helpers import (
    RULES,
    TX,
    DealerFactory,
    encode,
    make_endpoint,
    new_engine,
    transactions,
    wait_stats,
)

from gateway import _native, wire
from gateway.errors import ErrorCode, NativeError
from gateway.ingest import AlertRecord, IngestSettings, NativeIngestEndpoint


def score_body(rid: int, txs: list[wire.Transaction]) -> bytes:
    return encode(wire.ScoreRequest(1, rid, txs))


def test_decisions_equal_python_engine(dealer: DealerFactory,
                                       endpoint: NativeIngestEndpoint) -> None:
    txs = transactions(600)
    d = dealer(endpoint.url)
    for rid, i in enumerate(range(0, len(txs), 7)):  # pipelined: send all, then read
        d.send(score_body(rid, txs[i:i + 7]))
    replies = [d.recv() for _ in range(0, len(txs), 7)]
    assert [r.rid for r in replies] == list(range(len(replies)))
    got = [dec for r in replies for dec in r.decisions]
    expected = [new_engine_decision for new_engine_decision in
                _python_decisions(txs, [7] * (len(txs) // 7 + 1))]
    assert got == expected
    s = wait_stats(endpoint, lambda s: s["decisions"] == len(txs))
    assert s["score_requests"] == len(replies)
    assert sum(s["outcome"]) == len(txs)


def _python_decisions(txs: list[wire.Transaction], sizes: list[int]) -> list[wire.Decision]:
    engine = new_engine()
    out: list[wire.Decision] = []
    i = 0
    for n in sizes:
        if i >= len(txs):
            break
        out += engine.score_batch(txs[i:i + n])
        i += n
    return out


def test_malformed_then_good_is_served(dealer: DealerFactory,
                                       endpoint: NativeIngestEndpoint) -> None:
    d = dealer(endpoint.url)
    bad = [
        (b"\xc1", ErrorCode.MALFORMED, 0),
        (encode(["score", 2, 4, [TX]]), ErrorCode.UNSUPPORTED_VERSION, 4),
        (encode(["score", 1, 5, [TX[:11]]]), ErrorCode.MALFORMED, 5),
        (encode(["score", 1, 6, [[*TX[:3], "x", *TX[4:]]]]), ErrorCode.MALFORMED, 6),
        (encode(["score", 1, 7, [TX] * (wire.MAX_BATCH + 1)]), ErrorCode.TOO_LARGE, 7),
        (encode(["score", 1, 8, []]), ErrorCode.INVALID, 8),
        (encode(["status", 1, 9]), ErrorCode.WRONG_ENDPOINT, 9),
        (b"", ErrorCode.EMPTY_MESSAGE, 0),
    ]
    for body, code, rid in bad:
        reply = d.request(body)
        assert isinstance(reply, wire.Error)
        assert (reply.code, reply.name, reply.rid) == (int(code), code.name, rid)
        good = d.request(encode(["score", 1, 100 + rid, [TX]]))
        assert isinstance(good, wire.ScoreReply) and good.rid == 100 + rid
    d.send(encode(["ping", 1, 3]), b"second frame")
    reply = d.recv()
    assert isinstance(reply, wire.Error) and reply.code == ErrorCode.TOO_MANY_FRAMES
    pong = d.request(encode(["ping", 1, 77]))
    assert isinstance(pong, wire.Pong) and (pong.rid, pong.node) == (77, "test-node")
    errors = wait_stats(endpoint, lambda s: s["pings"] == 1)["errors"]
    assert errors[ErrorCode.MALFORMED] == 3 and errors[ErrorCode.TOO_MANY_FRAMES] == 1


def test_handover_pauses_scoring_with_busy(dealer: DealerFactory,
                                           endpoint: NativeIngestEndpoint) -> None:
    d = dealer(endpoint.url)
    tx = transactions(1)[0]
    with endpoint.handover() as engine:
        reply = d.request(score_body(1, [tx]))
        assert isinstance(reply, wire.Busy) and reply.retry_after_ms == 20
        assert isinstance(d.request(encode(["ping", 1, 2])), wire.Pong)
        engine.score(tx)  # the engine is ours while paused
        assert wait_stats(endpoint, lambda s: s["paused"] == 1)
    reply = d.request(score_body(3, [tx]))
    assert isinstance(reply, wire.ScoreReply)
    s = wait_stats(endpoint, lambda s: s["decisions"] == 1)
    assert (s["busy"], s["busy_paused"]) == (1, 1)


def test_rule_ids_follow_a_reload_under_handover(dealer: DealerFactory,
                                                 endpoint: NativeIngestEndpoint) -> None:
    d = dealer(endpoint.url)
    acct = 4242
    frozen = wire.Transaction("f1", acct, 1, 10, "EUR", wire.Channel.CARD, 1, "", "", "", "", 1)
    with endpoint.handover() as engine:
        engine.load_rules(RULES, "reloaded.toml")
        engine.freeze_account(acct)
    reply = d.request(score_body(1, [frozen]))
    assert isinstance(reply, wire.ScoreReply)
    dec = reply.decisions[0]
    assert dec.ruleset_version == 2 and dec.fired == ("@frozen",)
    assert dec.outcome is not wire.Outcome.ALLOW


def test_busy_when_alert_queue_is_full(dealer: DealerFactory, zctx: zmq.Context[Any]) -> None:
    engine = new_engine()
    acct = 99
    engine.freeze_account(acct)  # every payment of it is refused: one alert each
    ep = make_endpoint(zctx, engine, IngestSettings(alert_queue=2048, alert_hwm=1))
    ep.start()
    try:
        d = dealer(ep.url)
        tx = wire.Transaction("a", acct, 1, 10, "EUR", wire.Channel.CARD, 1, "", "", "", "", 1)
        kinds = []
        for rid in range(40):  # nobody drains the alert socket
            kinds.append(type(d.request(score_body(rid, [tx] * 256))))
            if kinds[-1] is wire.Busy:
                break
        assert wire.Busy in kinds
        wait_stats(ep, lambda s: s["busy_alerts"] >= 1 and s["alert_queue"] > 0)
        # draining the alerts makes room again
        got: list[AlertRecord] = []
        ep.alerts.drain_nowait(lambda b: got.extend(ep.decode_alerts(b)), 100)
        assert got and all(r.account == acct for r in got)
    finally:
        ep.close()


@pytest.mark.anyio
async def test_alerts_reach_the_control_plane(dealer: DealerFactory, anyio_backend: Any,
                                              zctx: zmq.Context[Any]) -> None:
    engine = new_engine()
    engine.freeze_account(7)
    ep = make_endpoint(zctx, engine)
    ep.start()
    got: list[AlertRecord] = []
    done = anyio.Event()

    def on_alert(rec: AlertRecord) -> None:
        got.append(rec)
        if len(got) == 3:
            done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ep.serve_alerts, on_alert)
            d = dealer(ep.url)
            tx = wire.Transaction("ab-1", 7, 5, 1234, "CHF", wire.Channel.WEB, 4829, "dev",
                                  "10.0.0.1", "CH", "Bern", 1_700_000_000_123)
            ok = wire.Transaction("ok-1", 8, 5, 10, "CHF", wire.Channel.WEB, 4829, "dev",
                                  "10.0.0.1", "CH", "Bern", 1_700_000_000_123)
            reply = await anyio.to_thread.run_sync(d.request, score_body(11, [tx, ok, tx, tx]))
            assert isinstance(reply, wire.ScoreReply)
            with anyio.fail_after(5):
                await done.wait()
            tg.cancel_scope.cancel()
    finally:
        ep.close()
    rec = got[0]
    assert (rec.rid, rec.account, rec.amount, rec.currency, rec.country) == (
        11, 7, 1234, "CHF", "CH")
    assert rec.channel is wire.Channel.WEB and rec.mcc == 4829
    assert rec.decision.tx_id == "ab-1" and rec.decision.fired == ("@frozen",)
    assert rec.decision == reply.decisions[0]


def test_stop_start_and_pause_when_stopped(dealer: DealerFactory,
                                           zctx: zmq.Context[Any]) -> None:
    ep = make_endpoint(zctx)
    try:
        with ep.handover() as engine:  # not started: the engine is simply ours
            engine.score(transactions(1)[0])
        ep.start()
        d = dealer(ep.url)
        assert isinstance(d.request(encode(["ping", 1, 1])), wire.Pong)
        ep.stop()
        assert ep.stats()["running"] == 0  # joined: the final counters are published
        ep.start()
        assert isinstance(d.request(encode(["ping", 1, 2])), wire.Pong)
    finally:
        ep.close()
    with pytest.raises(Exception, match="closed"):
        ep.start()


def test_counters_are_flat_ints(dealer: DealerFactory,
                                endpoint: NativeIngestEndpoint) -> None:
    d = dealer(endpoint.url)
    d.request(score_body(1, transactions(3)))
    d.request(b"\xc1")
    c = endpoint.counters(fresh=True)  # counts every reply already received
    assert c["decisions"] == 3 and c["ingest_errors.MALFORMED"] == 1
    assert c["ingest_messages"] == 2 and c["score_requests"] == 1
    assert sum(v for k, v in c.items() if k.startswith("decisions.")) == 3
    assert c["ingest_service_p99_ns_now"] > 0
    assert all(isinstance(v, int) for v in c.values())


def test_native_status_is_a_typed_error() -> None:
    with pytest.raises(NativeError, match="invalid argument"):
        _native.NativeIngest(router=0, alerts=None, engine=new_engine().native.ptr,
                             node_name="n", region="r", frozen_rule_id="@frozen")


def test_publish_counters_adds_deltas(dealer: DealerFactory,
                                      endpoint: NativeIngestEndpoint) -> None:
    from gateway.counters import Counters

    counters = Counters()
    d = dealer(endpoint.url)
    d.request(score_body(1, transactions(2)))
    endpoint.publish_counters(counters, fresh=True)
    d.request(score_body(2, transactions(3)))
    endpoint.publish_counters(counters, fresh=True)
    endpoint.publish_counters(counters, fresh=True)
    assert counters.get("decisions") == 5 and counters.get("score_requests") == 2
    assert "ingest_alert_queue_now" in counters.gauge_names()


@pytest.mark.anyio
async def test_serve_runs_thread_alerts_monitor_and_publishes(
        anyio_backend: Any, dealer: DealerFactory, zctx: zmq.Context[Any]) -> None:
    from gateway.counters import Counters

    engine = new_engine()
    engine.freeze_account(5)
    ep = make_endpoint(zctx, engine)
    counters = Counters()
    got: list[AlertRecord] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: ep.serve(counters, got.append, publish_every=0.01))
            d = dealer(ep.url)
            tx = wire.Transaction("z", 5, 1, 10, "EUR", wire.Channel.ATM, 6011, "", "", "", "", 1)
            reply = await anyio.to_thread.run_sync(d.request, score_body(3, [tx]))
            assert isinstance(reply, wire.ScoreReply)
            with anyio.fail_after(5):
                while not (got and counters.get("ingest_peers_accepted")
                           and counters.get("decisions") == 1):
                    await anyio.sleep(0.005)
            tg.cancel_scope.cancel()
        assert not ep.running and counters.get("decisions.block") + counters.get(
            "decisions.block_and_freeze") == 1
    finally:
        ep.close()


def test_longest_tx_id_survives_reply_and_alert(dealer: DealerFactory,
                                                zctx: zmq.Context[Any]) -> None:
    engine = new_engine()
    engine.freeze_account(3)
    ep = make_endpoint(zctx, engine)
    ep.start()
    try:
        tx_id = "\U0001d11e" * wire.MAX_ID_LEN  # 64 characters, 256 bytes of UTF-8
        tx = wire.Transaction(tx_id, 3, 1, 10, "EUR", wire.Channel.POS, 1, "", "", "", "", 1)
        reply = dealer(ep.url).request(score_body(1, [tx]))
        assert isinstance(reply, wire.ScoreReply) and reply.decisions[0].tx_id == tx_id
        got: list[AlertRecord] = []
        end = time.monotonic() + 5.0
        while not got and time.monotonic() < end:  # bounded drain of the alert socket
            ep.alerts.drain_nowait(lambda b: got.extend(ep.decode_alerts(b)))
        assert got and got[0].decision == reply.decisions[0]
    finally:
        ep.close()


def test_overload_sheds_backlog_with_busy(dealer: DealerFactory,
                                          zctx: zmq.Context[Any]) -> None:
    ep = make_endpoint(zctx, settings=IngestSettings(burst=4, max_backlog_ms=1))
    try:
        d = dealer(ep.url)
        n = 3000
        body = score_body(1, transactions(16))
        for _ in range(n):  # queued while the thread is not yet running
            d.send(body)
        ep.start()
        kinds = [type(d.recv()) for _ in range(n)]  # every request gets exactly one reply
        assert set(kinds) <= {wire.ScoreReply, wire.Busy} and wire.Busy in kinds
        s = wait_stats(ep, lambda s: s["score_requests"] + s["busy"] == n)
        assert s["busy_overload"] == kinds.count(wire.Busy)
        # once drained, the next request is served
        assert isinstance(d.request(score_body(2, transactions(1))), wire.ScoreReply)
    finally:
        ep.close()
