"""The producer SDK and the native load generator against a native ingest endpoint."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from ingest_helpers import TX, encode, new_engine, transactions, wait_stats

from gateway import wire
from gateway.bench_ingest import load_generator
from gateway.client import open_producer
from gateway.errors import BusyError, ErrorCode, RemoteError
from gateway.ingest import NativeIngestEndpoint

pytestmark = pytest.mark.anyio


async def test_score_and_score_many_in_order(anyio_backend: Any,
                                             endpoint: NativeIngestEndpoint) -> None:
    txs = transactions(300)
    async with open_producer(endpoint.url, timeout=5) as p:
        assert (await p.ping()).node == "test-node"
        first = await p.score_one(txs[0])
        rest = await p.score_many(txs[1:], batch=16, in_flight=4)
    expected = new_engine().score_batch(txs)
    assert [first, *rest] == expected


async def test_remote_error_is_typed(anyio_backend: Any,
                                     endpoint: NativeIngestEndpoint) -> None:
    async with open_producer(endpoint.url, timeout=5) as p:
        with pytest.raises(ValueError):
            await p.score([])
        conn = p._conn
        reply = await conn.request_raw(5, encode(["score", 1, 5, [TX[:11]]]), timeout=5)
        assert isinstance(reply, wire.Error) and reply.code == ErrorCode.MALFORMED
        # msgspec does not validate on construction: the node refuses the negative amount
        bad = wire.Transaction("x", 1, 2, -5, "EUR", wire.Channel.CARD, 1, "", "", "", "", 1)
        with pytest.raises(RemoteError) as info:
            await p.score([bad])
        assert info.value.name == "MALFORMED"
        assert len(await p.score([transactions(1)[0]])) == 1  # the next one is served


async def test_busy_is_retried_then_raised(anyio_backend: Any,
                                           endpoint: NativeIngestEndpoint) -> None:
    async with open_producer(endpoint.url, timeout=5, busy_retries=2,
                             max_retry_after_ms=1) as p:
        with endpoint.handover():
            with pytest.raises(BusyError) as info:
                await p.score(transactions(1))
            assert info.value.retry_after_ms == 20
            assert p.busy_replies == 3
        assert len(await p.score(transactions(2))) == 2


async def test_score_many_raises_first_failure(anyio_backend: Any,
                                               endpoint: NativeIngestEndpoint) -> None:
    async with open_producer(endpoint.url, timeout=5, busy_retries=0) as p:
        with endpoint.handover(), pytest.raises(BusyError):
            await p.score_many(transactions(100), batch=10, in_flight=3)


def test_load_generator_counts_every_reply(endpoint: NativeIngestEndpoint) -> None:
    txs = [encode(tx) for tx in transactions(64)]
    r = load_generator(endpoint.url, requests=2000, batch=4, connections=2, window=32,
                       txs=txs, timeout_s=30)
    assert (r["sent"], r["scored"], r["decisions"]) == (2000, 2000, 8000)
    assert r["errors"] == r["missing"] == r["busy"] == 0
    assert r["lat_count"] == 2000 and r["p99_ms"] >= r["p50_ms"] > 0
    wait_stats(endpoint, lambda s: s["decisions"] == 8000)


def test_load_generator_paced(endpoint: NativeIngestEndpoint) -> None:
    txs = [encode(tx) for tx in transactions(16)]
    r = load_generator(endpoint.url, requests=500, rate=5000.0, connections=1, window=64,
                       txs=txs, timeout_s=30)
    assert r["scored"] == 500 and r["missing"] == 0
    # paced: the run cannot be shorter than the schedule (499 intervals of 0.2 ms)
    assert r["elapsed_ns"] >= 499 * 200_000


def test_load_generator_sees_busy(endpoint: NativeIngestEndpoint) -> None:
    txs = [encode(tx) for tx in transactions(4)]
    with endpoint.handover():
        r = load_generator(endpoint.url, requests=50, connections=1, window=8, txs=txs,
                           timeout_s=30)
    assert r["busy"] == 50 and r["scored"] == 0


async def test_producer_in_flight_bounded_in_time(anyio_backend: Any,
                                                  endpoint: NativeIngestEndpoint) -> None:
    with anyio.fail_after(20):
        async with open_producer(endpoint.url) as p:
            out = await p.score_many(transactions(2000), batch=64, in_flight=8)
    assert len(out) == 2000
