"""``gateway demo``: a node and simulated officers in this process, a simulated payment
system in another (``gateway.demo_producer``, on the other core, as in production).

Everything runs on embedded defaults: a temporary data directory, free loopback ports, the
default rule set and generated trusted accounts. The payment system and the officers talk
to the node over real ZeroMQ sockets, exactly as external ones would.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec
from anyio.streams.text import TextReceiveStream
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from gateway import wire
from gateway.auth import OfficerKey, new_keypair
from gateway.client import open_officer
from gateway.codec import Endpoint
from gateway.config import Config, EndpointsSection, IncidentSection, NodeSection
from gateway.counters import LatencyHistogram
from gateway.demo_incident import SceneReport, run_scene, scene_secret, write_oncall
from gateway.demo_producer import PaymentReport
from gateway.incident.receivers import SmtpReceiver, WebhookReceiver
from gateway.node import Node
from gateway.runtime import Loop, run
from gateway.scoring import TransactionGenerator, write_trusted_file


@dataclass
class DemoStats:
    # from the payment system's process (gateway.demo_producer)
    payments: PaymentReport = field(default_factory=PaymentReport)
    payments_exit: int | None = None  # its exit status if it ended before it was done
    # the officers' apps, in this process
    alerts_received: int = 0
    acknowledged: int = 0
    alerts_by_severity: dict[str, int] = field(default_factory=dict)
    alert_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    scene: SceneReport | None = None

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


async def _payments(url: str, seconds: float, rate: int, seed: int, loop: Loop,
                    stats: DemoStats) -> None:
    """The payment system in its own process (gateway.demo_producer): its reports, as
    they come, into ``stats``; returns once it is done."""
    cmd = [sys.executable, "-m", "gateway.demo_producer", url, "--rate", str(rate),
           "--seconds", str(seconds), "--seed", str(seed), "--loop", loop]
    async with await anyio.open_process(cmd, stdin=subprocess.DEVNULL,
                                        stderr=None) as proc:
        assert proc.stdout is not None
        pending = ""
        decode = msgspec.json.Decoder(PaymentReport).decode
        try:
            async for chunk in TextReceiveStream(proc.stdout):
                *lines, pending = (pending + chunk).split("\n")
                for raw in filter(None, lines):
                    report = stats.payments = decode(raw)
                    # the stream's own clock: the process's start-up is not payment time
                    stats.started = time.monotonic() - report.elapsed_s
                    if report.done:
                        stats.finished = stats.started + report.elapsed_s
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.terminate()
                await proc.wait()
    if not stats.payments.done:
        stats.payments_exit = proc.returncode


async def _officer(node: Node, name: str, stats: DemoStats, ready: anyio.Event) -> None:
    """A simulated officer app: its own CURVE key, registered with the node, one device;
    it acknowledges every critical alert, as an officer on duty would."""
    public, secret = new_keypair()
    registered = anyio.Event()
    node.desk.register_key(name, public, "demo", on_durable=registered.set)
    await registered.wait()
    key = OfficerKey(name, public, secret, node.server_keys.public,
                     node.urls[Endpoint.CLIENTS])
    async with open_officer(key, device="phone") as client:
        ready.set()
        async for push in client.alerts():
            stats.alerts_received += 1
            alert = push.alert
            sev = alert.severity.value
            stats.alerts_by_severity[sev] = stats.alerts_by_severity.get(sev, 0) + 1
            stats.alert_latency.record_us((time.time_ns() - alert.decided_unix_ns) / 1000)
            if alert.severity is wire.Severity.CRITICAL:
                await client.acknowledge(alert.alert_id)
                stats.acknowledged += 1


def _table(stats: DemoStats, node: Node, seconds: float) -> Table:
    elapsed = stats.elapsed()
    pay = stats.payments
    table = Table(title=f"risk-gateway demo  {elapsed:5.1f} / {seconds:g} s", min_width=60)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("payments sent", f"{pay.sent:,}")
    table.add_row("decisions", f"{pay.decided:,}")
    table.add_row("throughput", f"{pay.decided / elapsed if elapsed else 0:,.0f} tx/s")
    for outcome in ("allow", "step_up", "block", "block_and_freeze"):
        table.add_row(f"  {outcome}", f"{pay.outcomes.get(outcome, 0):,}")
    for path in ("trusted", "full"):
        table.add_row(f"  {path} path", f"{pay.paths.get(path, 0):,}")
    table.add_row("alerts received by officers", f"{stats.alerts_received:,}")
    for sev in ("critical", "high", "medium", "low"):
        if stats.alerts_by_severity.get(sev):
            table.add_row(f"  {sev}", f"{stats.alerts_by_severity[sev]:,}")
    table.add_row("request round trip p50 / p99",
                  f"{pay.rt_p50_ms:.2f} / {pay.rt_p99_ms:.2f} ms")
    al = stats.alert_latency
    table.add_row("decision -> officer p50 / p99",
                  f"{al.percentile_us(0.5) / 1000:.2f} / {al.percentile_us(0.99) / 1000:.2f} ms")
    info = node.status_info()
    table.add_row(f"node service time p50 / p99 ({info['ingest']})",
                  f"{info['score_p50_us']} / {info['score_p99_us']} us")
    table.add_row("errors / busy replies", f"{pay.errors} / {pay.busy}")
    return table


async def _demo(seconds: float, rate: int, officers: int, seed: int, live: bool,
                console: Console, loop: Loop) -> DemoStats:
    secret = scene_secret()
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp, \
            WebhookReceiver(secret.encode()) as sms, SmtpReceiver() as mail:
        gen = TransactionGenerator(seed=seed)
        trusted_path = Path(tmp) / "trusted.csv"
        n_trusted = write_trusted_file(trusted_path, gen.n_trusted)
        oncall = write_oncall(Path(tmp) / "oncall.toml",
                              load_officers=[f"officer-{i + 1}" for i in range(officers)],
                              sms_url=sms.url, sms_secret=secret, smtp_port=mail.port)
        cfg = Config(
            node=NodeSection(name="demo-node", region="demo", data_dir=str(Path(tmp) / "data"),
                             trusted=str(trusted_path)),
            endpoints=EndpointsSection(ingest="tcp://127.0.0.1:*", clients="tcp://127.0.0.1:*",
                                       services="tcp://127.0.0.1:*"),
            incident=IncidentSection(oncall=str(oncall)),
        )
        node = Node(cfg, out=io.StringIO(), handle_signals=False)
        console.print(f"[bold]risk-gateway demo[/]: node {cfg.node.name}, default rules "
                      f"v{node.engine.info.version} ({node.engine.info.rules} rules), "
                      f"{n_trusted:,} trusted accounts, {officers} officers, "
                      f"{rate:,} payments/s for {seconds:g} s")
        stats = DemoStats()
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            for i in range(officers):
                ready = anyio.Event()
                tg.start_soon(_officer, node, f"officer-{i + 1}", stats, ready)
                with anyio.fail_after(5):
                    await ready.wait()
            stats.started = time.monotonic()
            done = anyio.Event()

            async def payments() -> None:
                try:
                    await _payments(node.urls[Endpoint.INGEST], seconds, rate, seed, loop,
                                    stats)
                finally:
                    stats.finished = stats.finished or time.monotonic()
                    done.set()

            async with anyio.create_task_group() as ptg:
                ptg.start_soon(payments)
                if live:
                    with Live(_table(stats, node, seconds), console=console,
                              refresh_per_second=4, transient=False) as view:
                        while not done.is_set():
                            view.update(_table(stats, node, seconds))
                            with anyio.move_on_after(0.25):
                                await done.wait()
                        view.update(_table(stats, node, seconds))
                else:
                    last = 0.0
                    while not done.is_set():
                        with anyio.move_on_after(0.5):
                            await done.wait()
                        if stats.elapsed() - last >= 1.0 and not done.is_set():
                            last = stats.elapsed()
                            decided = stats.payments.decided
                            console.print(f"{last:5.1f}s  {decided:,} decisions, "
                                          f"{stats.alerts_received:,} alerts")
            # let the last alerts reach the officers, then stop
            with anyio.move_on_after(1.0):
                while stats.alerts_received < officers * _alerts_raised(node):
                    await anyio.sleep(0.02)
            console.print("[bold]incident scene[/]: a ten-million transfer, a freeze with "
                          "maker-checker approval, escalation by SMS and e-mail")
            try:
                stats.scene = await run_scene(node, Path(tmp), console.print)
            except TimeoutError:
                console.print("[red]incident scene did not finish in time[/]")
            console.print(f"  SMS provider received {len(sms.received)}, mail server "
                          f"received {len(mail.messages)}")
            tg.cancel_scope.cancel()
        return stats


def _alerts_raised(node: Node) -> int:
    snap = node.counters.snapshot()
    return sum(v for k, v in snap.items() if k.startswith("alerts."))


def _summary(stats: DemoStats, console: Console) -> None:
    elapsed = stats.elapsed()
    pay = stats.payments
    lines = [
        "summary",
        f"  payments scored        {pay.decided:,} in {elapsed:.1f} s "
        f"({pay.decided / elapsed if elapsed else 0:,.0f} tx/s)",
        "  decisions              " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(pay.outcomes.items())),
        "  paths                  " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(pay.paths.items())),
        f"  alerts to officers     {stats.alerts_received:,} "
        f"(p50 {stats.alert_latency.percentile_us(0.5) / 1000:.2f} ms, "
        f"p99 {stats.alert_latency.percentile_us(0.99) / 1000:.2f} ms)",
        f"  critical acknowledged  {stats.acknowledged:,} (journaled, synced to all devices)",
        f"  round trip             p50 {pay.rt_p50_ms:.2f} ms, "
        f"p99 {pay.rt_p99_ms:.2f} ms (the payment system's requests)",
        f"  errors                 {pay.errors}, busy replies {pay.busy}",
    ]
    sc = stats.scene
    if sc is not None:
        lines += [
            f"  incident {sc.incident:<15} room open {sc.alert_to_room_ms:.1f} ms after the "
            f"alert; escalated by SMS and e-mail ({sc.pages} pages)",
            f"  alert -> freeze        {sc.alert_to_freeze_ms:.1f} ms (requested, approved "
            f"by a second officer, in scoring); next payment {sc.next_payment}",
            f"  alert -> executed      {sc.alert_to_executed_ms:.1f} ms (core banking, "
            "idempotency key)",
        ]
    console.print(Group(*lines))


def run_demo(*, seconds: float = 10.0, rate: int = 20_000, officers: int = 3, seed: int = 7,
             live: bool = True, loop: Loop = "uvloop") -> int:
    """Run the demo; returns the process exit status (0 when every payment got a decision)."""
    console = Console(file=sys.stdout, soft_wrap=True)
    live = live and console.is_terminal
    stats = run(_demo, seconds, rate, officers, seed, live, console, loop, loop=loop)
    _summary(stats, console)
    pay = stats.payments
    ok = pay.errors == 0 and pay.decided == pay.sent and pay.decided > 0
    if stats.payments_exit is not None:
        console.print(f"[red]demo failed: the payment system exited with status "
                      f"{stats.payments_exit} before it was done (its error is above)[/]")
        ok = False
    elif not ok:
        console.print("[red]demo failed: not every payment got a decision[/]")
    if stats.scene is None or not stats.scene.alert_to_freeze_ms:
        console.print("[red]demo failed: the incident scene did not freeze the account[/]")
        ok = False
    return 0 if ok else 1


__all__ = ["run_demo"]
