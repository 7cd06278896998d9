"""The demo's payment system: a separate process that streams generated payments to a
node's ingest endpoint, paced and pipelined, as a bank's payment switch would.

``python -m gateway.demo_producer URL --rate N --seconds S --seed K`` prints one JSON
object per line: its counts every quarter second, and a last one with ``"done": true``
once every request is answered (or 15 s after the stream ended). Running it in its own
process keeps the generation of the payments off the node's event loop and on the other
core, as in production, where payment systems are not the node.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import msgspec

from gateway import wire
from gateway.counters import LatencyHistogram
from gateway.errors import GatewayError
from gateway.runtime import LOOPS, Loop, run
from gateway.scoring import TransactionGenerator
from gateway.transport import DealerConnection, open_dealer

BATCH = 64  # transactions per request (every 7th request carries one)
MAX_IN_FLIGHT = 64  # requests awaiting their reply
REPORT_S = 0.25
DRAIN_S = 15.0  # after the stream, at most this long for the last replies


class PaymentReport(msgspec.Struct):
    """One line of the producer's output (JSON): its counts so far."""

    sent: int = 0
    decided: int = 0
    errors: int = 0
    failed: int = 0  # transactions in requests that got no decision
    busy: int = 0
    outcomes: dict[str, int] = {}
    paths: dict[str, int] = {}
    rt_p50_ms: float = 0.0  # request round trip
    rt_p99_ms: float = 0.0
    elapsed_s: float = 0.0  # since the stream began (until every request was answered)
    done: bool = False


@dataclass
class ProducerStats:
    sent: int = 0
    decided: int = 0
    errors: int = 0
    failed: int = 0  # transactions in requests that got no decision
    busy: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    paths: dict[str, int] = field(default_factory=dict)
    round_trip: LatencyHistogram = field(default_factory=LatencyHistogram)
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0  # once every request is answered

    def report(self, *, done: bool = False) -> PaymentReport:
        rt = self.round_trip
        return PaymentReport(self.sent, self.decided, self.errors, self.failed, self.busy,
                             dict(self.outcomes), dict(self.paths),
                             rt.percentile_us(0.5) / 1000, rt.percentile_us(0.99) / 1000,
                             (self.finished or time.monotonic()) - self.started, done)


async def produce(conn: DealerConnection, gen: TransactionGenerator, stats: ProducerStats,
                  seconds: float, rate: int) -> None:
    """Send paced, pipelined score requests (mostly batches, some single transactions)
    for ``seconds``; return once each is answered or failed."""
    limiter = anyio.CapacityLimiter(MAX_IN_FLIGHT)
    tick = 0.01
    per_tick = max(1, int(rate * tick))

    async def one(txs: list[wire.Transaction]) -> None:
        async with limiter:
            rid = conn.next_rid()
            t0 = time.perf_counter()
            try:
                reply = await conn.request(wire.ScoreRequest(wire.PROTOCOL_VERSION, rid, txs),
                                           timeout=10)
            except GatewayError:
                stats.errors += 1
                stats.failed += len(txs)
                return
            stats.round_trip.record_us((time.perf_counter() - t0) * 1e6)
            if isinstance(reply, wire.ScoreReply):
                stats.decided += len(reply.decisions)
                for d in reply.decisions:
                    stats.outcomes[d.outcome.value] = stats.outcomes.get(d.outcome.value, 0) + 1
                    stats.paths[d.path.value] = stats.paths.get(d.path.value, 0) + 1
            elif isinstance(reply, wire.Busy):
                stats.busy += 1
                stats.failed += len(txs)
            else:
                stats.errors += 1
                stats.failed += len(txs)

    deadline = time.monotonic() + seconds
    next_tick = time.monotonic()
    async with anyio.create_task_group() as tg:
        while time.monotonic() < deadline:
            remaining = per_tick
            while remaining > 0:
                n = 1 if remaining % 7 == 0 else min(BATCH, remaining)
                tg.start_soon(one, gen.batch(n))
                stats.sent += n
                remaining -= n
            next_tick += tick
            await anyio.sleep(max(0.0, next_tick - time.monotonic()))


async def _main(url: str, rate: int, seconds: float, seed: int,
                emit: Callable[[PaymentReport], None]) -> None:
    stats = ProducerStats()
    gen = TransactionGenerator(seed=seed)
    async with open_dealer(url) as conn, anyio.create_task_group() as tg:

        async def reports() -> None:
            while True:
                await anyio.sleep(REPORT_S)
                emit(stats.report())

        tg.start_soon(reports)
        stats.started = time.monotonic()
        with anyio.move_on_after(seconds + DRAIN_S):
            await produce(conn, gen, stats, seconds, rate)
        stats.finished = time.monotonic()
        tg.cancel_scope.cancel()
    emit(stats.report(done=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.demo_producer",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the node's ingest endpoint")
    p.add_argument("--rate", type=int, default=20_000, help="payments per second")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to stream")
    p.add_argument("--seed", type=int, default=7, help="seed of the payment mix")
    p.add_argument("--loop", choices=LOOPS, default="uvloop", help="event loop")
    args = p.parse_args(argv)

    def emit(report: PaymentReport) -> None:
        sys.stdout.buffer.write(msgspec.json.encode(report) + b"\n")
        sys.stdout.flush()

    loop: Loop = args.loop
    run(_main, args.url, args.rate, args.seconds, args.seed, emit, loop=loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
