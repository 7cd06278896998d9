"""Ingest benchmark: a node's ingest endpoint in a subprocess, the native load generator here.

``run_ingest_bench()`` returns one dict (see its docstring). The server side is
``python -m gateway.bench_ingest serve --mode native|python``: the same engine, rules and
transactions either served by the native ingest thread or by the node's Python path (the
anyio :class:`~gateway.transport.RouterEndpoint` owner loop with ``EndpointCodec`` and
``ScoringEngine.score_batch``), for the ratio. It prints ``READY <url>`` once bound, serves
until its stdin closes, then prints its counters as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
import zmq

from gateway import _native, wire
from gateway.codec import Endpoint, EndpointCodec
from gateway.counters import Counters
from gateway.errors import ProtocolError
from gateway.ingest import NativeIngestEndpoint, ensure_libzmq, percentile_ns
from gateway.scoring import DEFAULT_RULES_PATH, ScoringEngine, TransactionGenerator
from gateway.transport import RouterEndpoint


def _engine(accounts: int, seed: int) -> ScoringEngine:
    engine = ScoringEngine(Path(DEFAULT_RULES_PATH).read_text(encoding="utf-8"),
                           "default_rules.toml")
    engine.set_trusted(TransactionGenerator(seed, accounts=accounts).trusted_accounts())
    return engine


def encoded_transactions(n: int, *, accounts: int = 100_000, seed: int = 0) -> list[bytes]:
    """``n`` realistic transactions, each msgpack-encoded as the wire's 12-element array."""
    enc = msgspec.msgpack.Encoder()
    return [enc.encode(tx) for tx in TransactionGenerator(seed, accounts=accounts).batch(n)]


# -- server side (subprocess) ----------------------------------------------------------------


async def _wait_stdin_closed() -> None:
    await anyio.to_thread.run_sync(sys.stdin.buffer.read)


async def _serve_native(url: str, accounts: int, seed: int) -> dict[str, Any]:
    ctx: zmq.Context[Any] = zmq.Context()
    ep = NativeIngestEndpoint(ctx, url, _engine(accounts, seed), node_name="bench",
                              region="bench")
    alerts = 0

    def on_alert(_: object) -> None:
        nonlocal alerts
        alerts += 1

    try:
        ep.start()
        print(f"READY {ep.url}", flush=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ep.serve_alerts, on_alert)
            await _wait_stdin_closed()
            tg.cancel_scope.cancel()
        ep.stop()
        out: dict[str, Any] = dict(ep.counters())
        out["alerts_received"] = alerts
        return out
    finally:
        ep.close()
        ctx.term()


async def _serve_python(url: str, accounts: int, seed: int) -> dict[str, Any]:
    """The node's Python ingest path, as ``Node._on_ingest`` does it."""
    ctx: zmq.Context[Any] = zmq.Context()
    engine = _engine(accounts, seed)
    counters = Counters()
    codec = EndpointCodec(Endpoint.INGEST)
    encode = wire.encoder().encode
    router = RouterEndpoint(ctx, "ingest", url, counters)

    def handler(ident: bytes, frames: Sequence[bytes], dropped: int) -> bytes:
        try:
            msg = codec.decode(frames)
        except ProtocolError as err:
            counters.inc(f"ingest_errors.{err.code.name}")
            return codec.error_reply(err)
        if isinstance(msg, wire.Ping):
            return encode(wire.Pong(1, msg.rid, "bench", "bench", int(time.time() * 1000)))
        decisions = engine.score_batch(msg.txs)
        counters.inc("ingest_score_requests")
        counters.inc("ingest_decisions", len(decisions))
        for d in decisions:
            counters.inc(f"ingest_decisions_by_outcome.{d.outcome.value}")
        return encode(wire.ScoreReply(1, msg.rid, decisions))

    try:
        print(f"READY {router.url}", flush=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.serve, handler)
            await _wait_stdin_closed()
            tg.cancel_scope.cancel()
        return counters.snapshot()
    finally:
        router.close()
        ctx.term()


def _serve_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.bench_ingest serve")
    p.add_argument("--mode", choices=("native", "python"), default="native")
    p.add_argument("--url", default="tcp://127.0.0.1:*")
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    serve = _serve_native if args.mode == "native" else _serve_python
    counters = anyio.run(serve, args.url, args.accounts, args.seed,
                         backend_options={"use_uvloop": True})
    print(json.dumps(counters), flush=True)
    return 0


# -- client side ------------------------------------------------------------------------------


class BenchServer:
    """A bench server subprocess; ``url`` once ready, ``close()`` returns its counters."""

    def __init__(self, mode: str, *, accounts: int, seed: int, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.bench_ingest", "serve", "--mode", mode,
             "--accounts", str(accounts), "--seed", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdout is not None
        self._out: IO[bytes] = self.proc.stdout
        deadline = time.monotonic() + timeout
        line = b""
        while not line.startswith(b"READY ") and time.monotonic() < deadline:
            line = self._out.readline()
            if not line:
                break
        if not line.startswith(b"READY "):
            self.proc.kill()
            raise RuntimeError(f"bench server ({mode}) did not start: {line!r}")
        self.url = line.split()[1].decode()

    def close(self, timeout: float = 30.0) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)  # closes stdin: the server stops
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {}
        lines = out.decode().strip().splitlines()
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        return result


DAY_MS = 86_400_000


class _Timeline:
    """Replays of the transaction pool move forward in time, one day per replay, across
    runs, so account state (velocity, baselines) sees a plausible history."""

    def __init__(self) -> None:
        self.days = 0

    def load(self, url: str, txs: list[bytes], **kw: Any) -> dict[str, Any]:
        ensure_libzmq()
        r = _native.run_loadgen(url, txs, cycle_advance_ms=DAY_MS,
                                ts_offset_ms=self.days * DAY_MS, **kw)
        self.days += -(-int(r["sent"]) * int(kw.get("batch", 1)) // len(txs)) + 1
        return r


def _load(url: str, txs: list[bytes], **kw: Any) -> dict[str, Any]:
    return _Timeline().load(url, txs, **kw)


def load_generator(url: str, *, requests: int, batch: int = 1, rate: float = 0.0,
                   connections: int = 4, window: int = 256, txs: list[bytes] | None = None,
                   timeout_s: float = 60.0, warmup: int = 0) -> dict[str, Any]:
    """Drive a node's ingest endpoint at ``url`` with the native load generator.

    ``rate`` is requests/s over all connections (0 = as fast as the window allows). Returns
    the generator's counters plus ``req_per_s``, ``tx_per_s``, ``p50_ms``, ``p99_ms``.
    """
    pool = txs if txs is not None else encoded_transactions(65536, accounts=1_000_000)
    r = _load(url, pool, batch=batch, requests=requests, connections=connections,
              window=window, rate=rate, timeout_ms=int(timeout_s * 1000), warmup=warmup)
    secs = r["elapsed_ns"] / 1e9 or float("inf")
    r["req_per_s"] = r["scored"] / secs
    r["tx_per_s"] = r["decisions"] / secs
    r["p50_ms"] = percentile_ns(r["lat_buckets"], 0.5) / 1e6
    r["p99_ms"] = percentile_ns(r["lat_buckets"], 0.99) / 1e6
    return r


def run_ingest_bench(*, single_requests: int = 300_000, batched_requests: int = 20_000,
                     paced_rate: float = 50_000.0, paced_seconds: float = 2.0,
                     python_requests: int = 60_000, connections: int = 4, window: int = 256,
                     accounts: int = 1_000_000, seed: int = 0) -> dict[str, Any]:
    """Measure the native ingest against a node subprocess; one dict of results.

    ``single_req_per_s``: one-transaction requests, pipelined, unpaced. ``batched_tx_per_s``:
    decisions/s in batches of 64. ``p50_ms`` / ``p99_ms``: round trip at ``paced_rate``
    requests/s. ``python_path_req_per_s``: the first workload against the Python path.
    ``errors``: error replies plus unanswered requests over all runs (busy counted apart).
    """
    txs = encoded_transactions(65536, accounts=accounts, seed=seed)
    runs: dict[str, dict[str, Any]] = {}
    timeline = _Timeline()
    server = BenchServer("native", accounts=accounts, seed=seed)
    try:
        timeline.load(server.url, txs, batch=1, requests=min(20_000, single_requests),
              connections=connections, window=window)  # warm-up: connect, page in
        runs["single"] = timeline.load(server.url, txs, batch=1, requests=single_requests,
                               connections=connections, window=window)
        runs["batched"] = timeline.load(server.url, txs, batch=64, requests=batched_requests,
                                connections=connections, window=max(2, window // 16))
        runs["paced"] = timeline.load(server.url, txs, batch=1,
                              requests=int(paced_rate * paced_seconds), connections=connections,
                              window=4096, rate=paced_rate, warmup=int(paced_rate * 0.1))
    finally:
        native_counters = server.close()
    timeline = _Timeline()  # a fresh node: the same history as the native one saw
    server = BenchServer("python", accounts=accounts, seed=seed)
    try:
        timeline.load(server.url, txs, batch=1, requests=min(5_000, python_requests),
              connections=connections, window=window)
        runs["python"] = timeline.load(server.url, txs, batch=1, requests=python_requests,
                               connections=connections, window=window)
    finally:
        server.close()

    def rate(run: dict[str, Any], key: str) -> float:
        return run[key] / (run["elapsed_ns"] / 1e9) if run["elapsed_ns"] else 0.0

    paced = runs["paced"]
    single_rate = rate(runs["single"], "scored")
    python_rate = rate(runs["python"], "scored")
    return {
        "single_req_per_s": round(single_rate),
        "batched_tx_per_s": round(rate(runs["batched"], "decisions")),
        "p50_ms": percentile_ns(paced["lat_buckets"], 0.5) / 1e6,
        "p99_ms": percentile_ns(paced["lat_buckets"], 0.99) / 1e6,
        "p999_ms": percentile_ns(paced["lat_buckets"], 0.999) / 1e6,
        "paced_req_per_s": round(rate(paced, "replies")),
        "python_path_req_per_s": round(python_rate),
        "native_over_python": round(single_rate / python_rate, 2) if python_rate else None,
        "errors": sum(r["errors"] + r["missing"] + r["other"] for r in runs.values()),
        "busy": sum(r["busy"] for r in runs.values()),
        "server_service_p99_us": native_counters.get("ingest_service_p99_ns_now", 0) / 1000,
        "server_alerts": native_counters.get("ingest_alert_records", 0),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(_serve_main(sys.argv[2:]))
    print(json.dumps(run_ingest_bench(), indent=2))
