"""Helpers shared by the native ingest tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import zmq

from gateway import wire
from gateway.ingest import IngestSettings, NativeIngestEndpoint
from gateway.scoring import DEFAULT_RULES_PATH, ScoringEngine, TransactionGenerator

RULES = Path(DEFAULT_RULES_PATH).read_text(encoding="utf-8")
TX = ["t1", 1, 2, 100, "EUR", "card", 5411, "dev", "1.2.3.4", "FR", "Paris", 1_700_000_000_000]


def new_engine() -> ScoringEngine:
    return ScoringEngine(RULES, "default_rules.toml", max_accounts=1 << 16)


def transactions(n: int, seed: int = 1) -> list[wire.Transaction]:
    return TransactionGenerator(seed, accounts=2000).batch(n)


def encode(obj: Any) -> bytes:
    return msgspec.msgpack.encode(obj)


def make_endpoint(ctx: zmq.Context[Any], engine: ScoringEngine | None = None,
                  settings: IngestSettings | None = None) -> NativeIngestEndpoint:
    return NativeIngestEndpoint(ctx, "tcp://127.0.0.1:*", engine or new_engine(),
                                node_name="test-node", region="test", settings=settings)


class Dealer:
    """A blocking DEALER for tests, every wait bounded by a deadline."""

    def __init__(self, ctx: zmq.Context[Any], url: str) -> None:
        self.sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(url)
        self.decoder = msgspec.msgpack.Decoder(wire.Reply)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def recv(self, timeout_ms: int = 5000) -> Any:
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            raise TimeoutError("no reply from the native ingest")
        return self.decoder.decode(self.sock.recv())

    def request(self, body: bytes) -> Any:
        self.send(body)
        return self.recv()


DealerFactory = Callable[[str], Dealer]


def wait_stats(ep: NativeIngestEndpoint, predicate: Callable[[dict[str, Any]], bool],
               timeout: float = 5.0) -> dict[str, Any]:
    """Poll the published native counters (eventually consistent) until ``predicate``."""
    deadline = time.monotonic() + timeout
    while True:
        s = ep.stats()
        if predicate(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"native counters never satisfied the condition: {s}")
        time.sleep(0.001)
