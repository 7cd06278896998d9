"""``gateway demo --regions N``: N regional nodes in one process, linked by the fabric.

Each node serves one region of a hash directory; simulated payment systems connect to every
node and send payments of any account, so most of them are homed elsewhere and forwarded
over the fabric to their home node, which decides. An operator places trusted-account
updates at one node; each reaches its account's home. Then officers at the first node
freeze an account homed at the second: the command travels to the home node, which blocks
the account's next payment (also one sent to the first node) and has its core-banking
system execute the freeze. The summary shows, per node, what it received, forwarded,
decided for its peers and placed, the round trips of direct and forwarded payments, and
the times from the alert to the freeze at the home node and to its execution.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from rich.console import Console
from rich.table import Table

from gateway import wire
from gateway.auth import load_or_create_server_keys
from gateway.client import open_officer, open_producer
from gateway.codec import Endpoint
from gateway.config import (
    Config,
    EndpointsSection,
    FabricSection,
    IncidentSection,
    NodeSection,
)
from gateway.corebank import CoreBank
from gateway.counters import LatencyHistogram
from gateway.demo_incident import officer_key
from gateway.errors import GatewayError
from gateway.node import Node
from gateway.ports import listen_port
from gateway.runtime import Loop, run
from gateway.scoring import TransactionGenerator
from gateway.transport import DealerConnection, open_dealer

REGION_NAMES = ("eu", "us", "ap")
BATCH = 32
MAX_IN_FLIGHT = 32
RISK = "risk-officer"
CHECKER = "compliance-officer"
ONCALL = f"""\
# the demo's officers work at the first region's node; every node has incident response
[incidents]
min_severity = "high"

[[officers]]
id = "{RISK}"
roles = ["risk"]

[[officers]]
id = "{CHECKER}"
roles = ["compliance"]

[[routes]]                 # business systems' alerts: an incident with a room
kind = ["submitted"]
roles = ["risk"]

[[routes]]                 # scored payments: in-app only
roles = ["risk"]
incident = false

[[ladders.high]]
after_s = 0
channels = ["app"]

[[ladders.critical]]
after_s = 0
channels = ["app"]
"""


@dataclass
class _Freeze:
    """The cross-region freeze scene's outcome."""

    account: int = 0
    home: str = ""
    origin: str = ""
    alert_to_freeze_ms: float = 0.0
    alert_to_executed_ms: float = 0.0
    next_payment: str = ""
    executed_at_home: int = 0


@dataclass
class _Stats:
    sent: int = 0
    decided: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    direct: LatencyHistogram = field(default_factory=LatencyHistogram)
    forwarded: LatencyHistogram = field(default_factory=LatencyHistogram)
    forwarded_txs: int = 0


def _configs(tmp: Path, regions: list[str]) -> dict[str, Config]:
    """One node per region, every pair linked, peers authenticated with CURVE: each node's
    key pair is made in its data directory first, as `gateway keys server` does."""
    binds = {r: f"tcp://127.0.0.1:{listen_port()}" for r in regions}
    keys = {r: load_or_create_server_keys(tmp / r).public for r in regions}
    oncall = tmp / "oncall.toml"
    oncall.write_text(ONCALL, encoding="utf-8")
    return {r: Config(
        node=NodeSection(name=f"demo-{r}", region=r, data_dir=str(tmp / r),
                         log_level="warning"),
        endpoints=EndpointsSection(ingest="tcp://127.0.0.1:*", clients="tcp://127.0.0.1:*",
                                   services="tcp://127.0.0.1:*"),
        fabric=FabricSection(bind=binds[r], peers={p: binds[p] for p in regions if p != r},
                             peer_keys={p: keys[p] for p in regions if p != r},
                             heartbeat_ms=500, dead_after_ms=1500),
        incident=IncidentSection(oncall=str(oncall)),
    ) for r in regions}


async def _producer(node: Node, gen: TransactionGenerator, stats: _Stats, seconds: float,
                    rate: float) -> None:
    assert node.fabric is not None
    directory = node.fabric.directory
    limiter = anyio.CapacityLimiter(MAX_IN_FLIGHT)

    async def one(conn: DealerConnection, txs: list[wire.Transaction]) -> None:
        foreign = sum(1 for t in txs if not directory.is_local(t.account))
        async with limiter:
            t0 = time.perf_counter()
            try:
                reply = await conn.request(wire.ScoreRequest(1, conn.next_rid(), txs),
                                           timeout=20)
            except GatewayError:
                stats.failed += len(txs)
                stats.errors["timeout"] = stats.errors.get("timeout", 0) + 1
                return
            us = (time.perf_counter() - t0) * 1e6
        if isinstance(reply, wire.ScoreReply):
            stats.decided += len(reply.decisions)
            (stats.forwarded if foreign else stats.direct).record_us(us)
            stats.forwarded_txs += foreign
        else:
            stats.failed += len(txs)
            name = reply.name if isinstance(reply, wire.Error) else "busy"
            stats.errors[name] = stats.errors.get(name, 0) + 1

    tick = 0.02
    per_tick = max(1, int(rate * tick))
    async with open_dealer(node.urls[Endpoint.INGEST]) as conn, \
            anyio.create_task_group() as tg:
        deadline = time.monotonic() + seconds
        next_tick = time.monotonic()
        while time.monotonic() < deadline:
            left = per_tick
            while left > 0:
                n = 1 if left % 5 == 0 else min(BATCH, left)
                tg.start_soon(one, conn, gen.batch(n))
                stats.sent += n
                left -= n
            next_tick += tick
            await anyio.sleep(max(0.0, next_tick - time.monotonic()))


async def _place_trusted(node: Node, gen: TransactionGenerator) -> tuple[int, int]:
    """An operator sets 300 trusted accounts at the first node: (local, placed)."""
    accounts = sorted(gen.trusted_accounts().items())[:300]
    async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
        reply = await conn.request(wire.TrustedUpdate(
            1, 1, [wire.TrustedEntry(a, lv) for a, lv in accounts]))
    if not isinstance(reply, wire.TrustedUpdated):
        raise GatewayError(f"trusted_update refused: {reply!r}")
    return reply.local, reply.placed


async def _freeze_scene(origin: Node, home: Node, tmp: Path, console: Console,
                        timeout: float = 30.0) -> _Freeze:
    """Officers at ``origin`` freeze an account homed at ``home``."""
    assert origin.fabric is not None and home.fabric is not None
    directory = origin.fabric.directory
    out = _Freeze(origin=origin.config.node.region, home=home.config.node.region)
    out.account = next(a for a in range(6_200_000_000, 6_200_100_000)
                       if directory.home(a) == out.home)
    risk_key, checker_key = await officer_key(origin, RISK), await officer_key(origin, CHECKER)
    bank = CoreBank(home.urls[Endpoint.SERVICES], tmp / "core-banking.db", heartbeat_s=0.5)
    v = wire.PROTOCOL_VERSION
    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            await tg.start(bank.run)
            async with open_officer(risk_key, device="desk") as maker, \
                    open_officer(checker_key, device="phone") as checker:

                async def until(kind: str) -> wire.RoomEvent:
                    while True:
                        item = await maker.next()
                        if isinstance(item, wire.RoomPush):
                            e = item.event
                            first = e.text.splitlines()[0] if e.text else ""
                            console.print(f"  room #{e.rseq:<3} {e.kind:<9} {e.actor:<14} "
                                          f"{first}", markup=False, highlight=False)
                            if e.kind == kind:
                                return e

                t0 = time.time_ns()
                async with open_dealer(origin.urls[Endpoint.SERVICES]) as conn:
                    await conn.request(wire.AlertSubmit(
                        v, conn.next_rid(), "demo-cross-region", wire.Severity.CRITICAL,
                        out.account, "transfer of 10,000,000.00 EUR to a new beneficiary",
                        {"family": "large-transfer"}), timeout=5)
                console.print(f"[bold]cross-region freeze[/]: an alert at {out.origin} on "
                              f"account {out.account}, homed in {out.home}")
                opened = await until("opened")
                echo = await maker.echo_command(opened.incident,
                                                f"/freeze {out.account} 10M transfer")
                status = await maker.confirm(echo)
                await checker.join(opened.incident)
                await checker.approve(status.request.request_id)
                frozen = await until("frozen")
                out.alert_to_freeze_ms = (frozen.ts_ns - t0) / 1e6
                async with open_producer(origin.urls[Endpoint.INGEST]) as producer:
                    (d,) = await producer.score([wire.Transaction(
                        "demo-after-freeze", out.account, 555, 2_500, "EUR",
                        wire.Channel.CARD, 5411, "dev-1", "10.1.2.3", "DE", "Berlin",
                        int(time.time() * 1000))])
                out.next_payment = f"{d.outcome.value} ({', '.join(d.fired)})"
                executed = await until("executed")
                out.alert_to_executed_ms = (executed.ts_ns - t0) / 1e6
            tg.cancel_scope.cancel()
    out.executed_at_home = bank.applied_count()
    return out


async def _demo(regions: int, seconds: float, rate: float, seed: int, console: Console,
                ) -> tuple[_Stats, dict[str, dict[str, int]], tuple[int, int], _Freeze]:
    names = list(REGION_NAMES[:regions])
    with tempfile.TemporaryDirectory(prefix="gateway-fabric-demo-") as tmp:
        configs = _configs(Path(tmp), names)
        nodes = {r: Node(c, out=io.StringIO(), handle_signals=False)
                 for r, c in configs.items()}
        stats = _Stats()
        async with anyio.create_task_group() as tg:
            for node in nodes.values():
                await tg.start(node.run)
            with anyio.fail_after(15):
                while not all(n.fabric is not None and all(
                        link.up for link in n.fabric.links.values()) for n in nodes.values()):
                    await anyio.sleep(0.05)
            console.print(f"[bold]risk-gateway fabric demo[/]: {regions} regional nodes "
                          f"({', '.join(names)}), hash directory, {rate:,.0f} payments/s "
                          f"for {seconds:g} s, spread over every node")
            placed = await _place_trusted(nodes[names[0]], TransactionGenerator(seed=seed))
            async with anyio.create_task_group() as ptg:
                for i, node in enumerate(nodes.values()):
                    ptg.start_soon(_producer, node, TransactionGenerator(seed=seed + 1 + i),
                                   stats, seconds, rate / regions)

                async def progress() -> None:
                    t0 = time.monotonic()
                    while True:
                        await anyio.sleep(1.0)
                        console.print(f"{time.monotonic() - t0:5.1f}s  {stats.decided:,} "
                                      f"decisions, {stats.forwarded_txs:,} forwarded")

                tg.start_soon(progress)
            with anyio.move_on_after(5):  # the placed updates reach their homes
                first = nodes[names[0]].fabric
                assert first is not None
                while first.store.outbox_sizes():
                    await anyio.sleep(0.05)
            counters = {r: n.counters.snapshot() for r, n in nodes.items()}
            for r, n in nodes.items():
                if n.ingest is not None:
                    n.ingest.publish_counters(n.counters, fresh=True)
                    counters[r] = n.counters.snapshot()
            freeze = await _freeze_scene(nodes[names[0]], nodes[names[1]], Path(tmp), console)
            tg.cancel_scope.cancel()
        return stats, counters, placed, freeze


def _summary(console: Console, stats: _Stats, counters: dict[str, dict[str, int]],
             placed: tuple[int, int], freeze: _Freeze) -> None:
    table = Table(title="per regional node", min_width=70)
    for col in ("node", "scored here", "of them for peers", "forwarded to homes",
                "trusted applied"):
        table.add_column(col, justify="right")
    for r, c in counters.items():
        table.add_row(r, f"{c.get('decisions', 0):,}", f"{c.get('fabric_peer_txs', 0):,}",
                      f"{c.get('fabric_forwarded_txs', 0):,}",
                      f"{c.get('fabric_trusted_local', 0) + c.get('fabric_trusted_applied', 0):,}")
    console.print(table)
    d, f = stats.direct, stats.forwarded
    console.print(
        "summary\n"
        f"  payments decided       {stats.decided:,} of {stats.sent:,} "
        f"({stats.forwarded_txs:,} forwarded to their home region)\n"
        f"  round trip, direct     p50 {d.percentile_us(0.5) / 1000:.2f} ms, "
        f"p99 {d.percentile_us(0.99) / 1000:.2f} ms\n"
        f"  round trip, forwarded  p50 {f.percentile_us(0.5) / 1000:.2f} ms, "
        f"p99 {f.percentile_us(0.99) / 1000:.2f} ms\n"
        f"  trusted updates        {placed[0]} applied at the first node, {placed[1]} placed "
        "at their home nodes\n"
        f"  cross-region freeze    approved at {freeze.origin}, account homed in "
        f"{freeze.home}: alert to freeze at {freeze.home} {freeze.alert_to_freeze_ms:.0f} ms, "
        f"to execution {freeze.alert_to_executed_ms:.0f} ms; next payment "
        f"{freeze.next_payment}\n"
        f"  errors                 {stats.errors or 'none'}")


def run_fabric_demo(*, regions: int = 3, seconds: float = 10.0, rate: float = 5_000,
                    seed: int = 7, loop: Loop = "uvloop") -> int:
    """Run the demo; 0 when every payment got a decision."""
    if not 2 <= regions <= len(REGION_NAMES):
        print(f"gateway demo: --regions must be 1..{len(REGION_NAMES)}", file=sys.stderr)
        return 2
    console = Console(file=sys.stdout, soft_wrap=True)
    stats, counters, placed, freeze = run(_demo, regions, seconds, rate, seed, console,
                                          loop=loop)
    _summary(console, stats, counters, placed, freeze)
    ok = stats.decided == stats.sent and stats.decided > 0
    if not ok:
        console.print("[red]demo failed: not every payment got a decision[/]")
    if freeze.executed_at_home != 1 or "@frozen" not in freeze.next_payment:
        console.print("[red]demo failed: the freeze did not take effect at the home node[/]")
        ok = False
    return 0 if ok else 1


__all__ = ["run_fabric_demo"]
