"""Native ingest: decoder cost, in-process request handling, and a short socket run.

With ``--benchmark-disable`` (the default) each case runs once as a smoke test. The full
cross-process benchmark is ``gateway.bench_ingest.run_ingest_bench()``
(``python -m gateway.bench_ingest``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from gateway import _native, wire
from gateway.bench_ingest import load_generator
from gateway.ingest import NativeIngestEndpoint
from gateway.scoring import DEFAULT_RULES_PATH, ScoringEngine, TransactionGenerator

TXS = TransactionGenerator(3, accounts=5000).batch(256)
RULES = Path(DEFAULT_RULES_PATH).read_text(encoding="utf-8")


@pytest.fixture
def native_endpoint() -> Iterator[NativeIngestEndpoint]:
    ctx: zmq.Context[Any] = zmq.Context()
    ep = NativeIngestEndpoint(ctx, "tcp://127.0.0.1:*", ScoringEngine(RULES, "bench"),
                              node_name="bench", region="bench")
    try:
        yield ep
    finally:
        ep.close()
        ctx.destroy(0)


def test_native_decode_batch_64(benchmark: Any) -> None:
    body = msgspec.msgpack.encode(wire.ScoreRequest(1, 1, TXS[:64]))
    code, _kind, _rid, n = benchmark(_native.ingest_decode, body)
    assert (code, n) == (0, 64)


def test_native_process_single(benchmark: Any, native_endpoint: NativeIngestEndpoint) -> None:
    body = msgspec.msgpack.encode(wire.ScoreRequest(1, 9, TXS[:1]))
    reply = benchmark(native_endpoint._native.process_one, body)
    assert reply.startswith(b"\x94\xa6scored")


def test_native_ingest_socket_run(benchmark: Any,
                                  native_endpoint: NativeIngestEndpoint) -> None:
    native_endpoint.start()
    txs = [msgspec.msgpack.encode(tx) for tx in TXS]
    r = benchmark.pedantic(load_generator, args=(native_endpoint.url,),
                           kwargs={"requests": 2000, "txs": txs, "connections": 2,
                                   "window": 64, "timeout_s": 30}, rounds=1, iterations=1)
    assert r["scored"] == 2000 and r["errors"] == 0
