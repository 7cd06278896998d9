"""Crash soak of reliable delivery: a node process killed with SIGKILL at random points
under load and started again, officer clients that stay connected through it, and a
checker that every officer stream arrived whole.

Used by the test suite (20 cycles) and by ``gateway soak delivery`` (as many as you like).
The submitter raises alerts over the services endpoint with idempotency keys and retries
each key until the node accepts it, so every key names exactly one alert. At the end every
device must have received every alert accepted for its officer (lost = 0), none twice
(duplicates = 0), with consecutive sequence numbers per lane (gaps = 0, order kept), and
the journal must verify.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from gateway import wire
from gateway.auth import OfficerKey, new_keypair
from gateway.client import open_officer
from gateway.errors import GatewayError, RequestTimeoutError
from gateway.journal import connect, verify
from gateway.nodeproc import NodeProcess
from gateway.ports import listen_port
from gateway.transport import open_dealer

SEVERITIES = list(wire.Severity)


@dataclass
class DeviceLog:
    """What one officer device handed to the application, checked as it arrives."""

    officer: str
    device: str
    last: list[int] = field(default_factory=lambda: [0] * wire.LANES)
    alerts: dict[int, int] = field(default_factory=dict)  # alert id -> times received
    gaps: int = 0
    out_of_order: int = 0
    items: int = 0

    def take(self, item: wire.AlertPush | wire.AckSync | wire.RoomPush) -> None:
        lane = int(item.lane)
        if item.seq != self.last[lane] + 1:
            if item.seq <= self.last[lane]:
                self.out_of_order += 1
            else:
                self.gaps += 1
        self.last[lane] = max(self.last[lane], item.seq)
        self.items += 1
        if isinstance(item, wire.AlertPush):
            aid = item.alert.alert_id
            self.alerts[aid] = self.alerts.get(aid, 0) + 1


@dataclass
class SoakReport:
    cycles: int = 0
    seconds: float = 0.0
    submitted: int = 0  # submit attempts, retries included
    accepted: int = 0  # distinct keys the node accepted (durable)
    duplicate_replies: int = 0  # retries answered "duplicate": deduplicated by key
    key_conflicts: int = 0  # a key answered with two different alert ids (must be 0)
    expected_receipts: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    gaps: int = 0
    out_of_order: int = 0
    reattaches: int = 0
    redeliveries_dropped: int = 0  # redelivered messages the SDK dropped (not an error)
    journal_events: int = 0
    journal_ok: bool = False
    journal_problem: str = ""
    node_exit_codes: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.gaps == 0
                and self.out_of_order == 0 and self.key_conflicts == 0 and self.journal_ok
                and self.accepted > 0)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["ok"] = self.ok
        return d


class SoakNode(NodeProcess):
    """A node on fixed ports, so it can be killed and restarted where clients reconnect."""

    def __init__(self, data_dir: Path, *, name: str = "soak-node", extra: str = "") -> None:
        ports = {k: listen_port() for k in ("ingest", "clients", "services")}
        urls = {k: f"tcp://127.0.0.1:{p}" for k, p in ports.items()}
        config = data_dir.parent / f"{name}.toml"
        config.write_text(
            f'[node]\nname = "{name}"\nregion = "soak"\ndata_dir = "{data_dir}"\n'
            f'log_level = "warning"\n[endpoints]\n'
            + "".join(f'{k} = "{u}"\n' for k, u in urls.items())
            + "[delivery]\noffline_after_ms = 2000\nrto_ms = 300\nmax_rto_ms = 2000\n"
            + extra,
            encoding="utf-8")
        super().__init__(config, log=data_dir.parent / f"{name}.log", name=name)
        self.data_dir = data_dir


async def _service(url: str, msg: Any, timeout: float) -> Any:
    async with open_dealer(url) as conn:
        return await conn.request(msg, timeout=timeout)


async def register_keys(services: str, officers: list[str]) -> tuple[list[OfficerKey], str]:
    """Make and register one key per officer; the node's CURVE public key."""
    v = wire.PROTOCOL_VERSION
    status = await _service(services, wire.StatusRequest(v, 1), 10)
    server = status.info["clients_server_key"]
    clients = status.info["endpoint.clients"]
    keys = []
    async with open_dealer(services) as conn:
        for officer in officers:
            public, secret = new_keypair()
            reply = await conn.request(wire.KeyRegister(v, conn.next_rid(), officer, public,
                                                        "soak"), timeout=10)
            if not isinstance(reply, wire.Keys):
                raise GatewayError(f"key registration refused: {reply!r}")
            keys.append(OfficerKey(officer, public, secret, server, clients))
    return keys, server


async def run_crash_soak(work_dir: Path, *, cycles: int = 20, officers: int = 3,
                         devices: int = 1, rate: float = 300.0, min_up_s: float = 0.3,
                         max_up_s: float = 1.2, seed: int = 1,
                         progress: Callable[[str], None] | None = None) -> SoakReport:
    """Run the soak; see the module docstring. ``rate`` is submitted alerts per second."""
    rng = random.Random(seed)
    say = progress or (lambda _m: None)
    report = SoakReport()
    node = SoakNode(work_dir / "data")
    names = [f"officer-{i + 1}" for i in range(officers)]
    logs = [DeviceLog(o, f"dev-{d + 1}") for o in names for d in range(devices)]
    accepted: dict[str, int] = {}
    outstanding = [0]  # keys submitted and not yet accepted
    t_start = time.monotonic()
    v = wire.PROTOCOL_VERSION
    await node.start_async()
    try:
        keys, _server = await register_keys(node.urls["services"], names)
        stop_submitting = anyio.Event()
        clients: list[Any] = []

        async def officer(key: OfficerKey, dlog: DeviceLog, ready: anyio.Event) -> None:
            async with open_officer(key, device=dlog.device, heartbeat_s=0.2,
                                    timeout=2.0) as client:
                clients.append(client)
                ready.set()
                while True:
                    dlog.take(await client.next())

        async def submitter() -> None:
            i = 0
            in_flight = 16
            async with open_dealer(node.urls["services"]) as conn:
                async def one(k: str) -> None:
                    sev = SEVERITIES[int(k.rsplit("-", 1)[1]) % len(SEVERITIES)]
                    while True:
                        report.submitted += 1
                        try:
                            reply = await conn.request(
                                wire.AlertSubmit(v, conn.next_rid(), k, sev, 1000 + len(k),
                                                 f"soak alert {k}", {"source": "soak"}),
                                timeout=1.0)
                        except RequestTimeoutError:
                            continue  # the node is down or restarting: same key again
                        if isinstance(reply, wire.AlertAccepted):
                            if reply.duplicate:
                                report.duplicate_replies += 1
                            prev = accepted.setdefault(k, reply.alert_id)
                            if prev != reply.alert_id:
                                report.key_conflicts += 1
                            return
                        await anyio.sleep(0.05)  # busy or error: back off, same key

                limiter = anyio.CapacityLimiter(in_flight)

                async def limited(k: str) -> None:
                    outstanding[0] += 1
                    async with limiter:
                        await one(k)
                    outstanding[0] -= 1

                async with anyio.create_task_group() as tg:
                    next_at = time.monotonic()
                    while not stop_submitting.is_set():
                        tg.start_soon(limited, f"soak-{seed}-{i}")
                        i += 1
                        next_at += 1.0 / rate
                        await anyio.sleep(max(0.0, next_at - time.monotonic()))

        async with anyio.create_task_group() as tg:
            key_of = {k.officer: k for k in keys}
            for dlog in logs:
                ready = anyio.Event()
                tg.start_soon(officer, key_of[dlog.officer], dlog, ready)
                with anyio.fail_after(10):
                    await ready.wait()
            sub_scope = anyio.CancelScope()

            async def run_submitter() -> None:
                with sub_scope:
                    await submitter()

            tg.start_soon(run_submitter)
            for cycle in range(cycles):
                await anyio.sleep(rng.uniform(min_up_s, max_up_s))
                report.node_exit_codes.append(node.kill())
                report.cycles += 1
                await anyio.sleep(rng.uniform(0.0, 0.2))
                await node.start_async()
                say(f"cycle {cycle + 1}/{cycles}: killed and restarted; "
                    f"{len(accepted)} alerts accepted so far")
            # let in-flight submissions finish, then stop
            stop_submitting.set()
            with anyio.move_on_after(15):
                while outstanding[0]:
                    await anyio.sleep(0.05)
            sub_scope.cancel()
            expected = set(accepted.values())
            report.accepted = len(accepted)
            say(f"waiting for {len(logs)} devices to receive {len(expected)} alerts each")
            with anyio.move_on_after(60):
                while any(not expected.issubset(d.alerts) for d in logs):
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        for d in logs:
            report.expected_receipts += len(expected)
            report.received += sum(1 for a in expected if a in d.alerts)
            report.lost += sum(1 for a in expected if a not in d.alerts)
            report.duplicates += sum(n - 1 for n in d.alerts.values() if n > 1)
            report.gaps += d.gaps
            report.out_of_order += d.out_of_order
        report.reattaches = sum(c.attaches - 1 for c in clients)
        report.redeliveries_dropped = sum(c.duplicates for c in clients)
    finally:
        node.stop()
    db = connect(node.data_dir / "node.db", readonly=True)
    try:
        vr = verify(db)
    finally:
        db.close()
    report.journal_events = vr.events
    report.journal_ok = vr.ok
    report.journal_problem = vr.problem
    report.seconds = time.monotonic() - t_start
    return report


__all__ = ["DeviceLog", "SoakNode", "SoakReport", "register_keys", "run_crash_soak"]

