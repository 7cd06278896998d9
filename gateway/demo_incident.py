"""The demo's incident scene: a ten-million transfer alert opens an incident, the ladder
escalates to the head of risk by SMS and e-mail, a risk officer requests a freeze, a
compliance officer approves it, the node blocks the account's next payment at once and the
core-banking system executes the freeze. Prints the time from alert to freeze.

Everything is real: officer apps over CURVE, the core-banking executor over ZeroMQ, an
SMS provider (signed webhook) and a mail server on loopback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from gateway import wire
from gateway.auth import OfficerKey, new_keypair
from gateway.client import open_officer, open_producer
from gateway.codec import Endpoint
from gateway.corebank import CoreBank
from gateway.node import Node
from gateway.transport import open_dealer

ACCOUNT = 6_200_000_017
RISK = "risk-officer"
CHECKER = "compliance-officer"
HEAD = "head-of-risk"


def write_oncall(path: Path, *, load_officers: list[str], sms_url: str, sms_secret: str,
                 smtp_port: int) -> Path:
    """The demo's on-call file: scored alerts go in-app to the load officers; alerts that
    business systems submit open incidents with an escalation ladder."""
    officers = "".join(f'[[officers]]\nid = "{o}"\nroles = ["risk"]\n\n'
                       for o in load_officers)
    path.write_text(f"""\
[incidents]
min_severity = "high"

{officers}[[officers]]
id = "{RISK}"
roles = ["risk"]

[[officers]]
id = "{CHECKER}"
roles = ["compliance"]

[[officers]]
id = "{HEAD}"
roles = ["operations"]
phone = "+49 170 0000001"
email = "head-of-risk@bank.example"

[[routes]]                 # business systems' alerts: an incident with a room
kind = ["submitted"]
roles = ["risk"]
ladder = "payments"

[[routes]]                 # scored payments: in-app to the officers on duty
roles = ["risk"]
incident = false

[[ladders.payments]]
after_s = 0
to = ["{RISK}"]
channels = ["app"]

[[ladders.payments]]       # still open after a second: wake the head of risk
after_s = 1
when = "unresolved"
to = ["{HEAD}"]
channels = ["sms", "email"]
mode = "all"

[channels.sms]
kind = "webhook"
to = "phone"
url = "{sms_url}"
secret = "{sms_secret}"

[channels.email]
kind = "smtp"
to = "email"
port = {smtp_port}
""", encoding="utf-8")
    return path


@dataclass
class SceneReport:
    incident: int = 0
    alert_to_room_ms: float = 0.0
    alert_to_freeze_ms: float = 0.0
    alert_to_executed_ms: float = 0.0
    next_payment: str = ""
    pages: int = 0


async def officer_key(node: Node, officer: str) -> OfficerKey:
    """A fresh CURVE key registered (journaled) for ``officer`` on an in-process node."""
    public, secret = new_keypair()
    done = anyio.Event()
    node.desk.register_key(officer, public, "demo", on_durable=done.set)
    await done.wait()
    return OfficerKey(officer, public, secret, node.server_keys.public,
                      node.urls[Endpoint.CLIENTS])


async def run_scene(node: Node, work_dir: Path, say: Callable[[str], None],
                    timeout: float = 20.0) -> SceneReport:
    report = SceneReport()
    risk_key, checker_key = await officer_key(node, RISK), await officer_key(node, CHECKER)
    bank = CoreBank(node.urls[Endpoint.SERVICES], work_dir / "core-banking.db",
                    heartbeat_s=0.5)
    v = wire.PROTOCOL_VERSION
    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            await tg.start(bank.run)
            async with open_officer(risk_key, device="desk") as maker, \
                    open_officer(checker_key, device="phone") as checker:

                async def until(kind: str, client: Any = maker) -> wire.RoomEvent:
                    while True:
                        item = await client.next()
                        if isinstance(item, wire.RoomPush):
                            e = item.event
                            if client is maker:
                                first = e.text.splitlines()[0] if e.text else ""
                                say(f"  room #{e.rseq:<3} {e.kind:<10} {e.actor:<18} {first}")
                            if e.kind == kind:
                                return e

                t0 = time.time_ns()
                async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
                    await conn.request(wire.AlertSubmit(
                        v, conn.next_rid(), "demo-10m-transfer", wire.Severity.CRITICAL,
                        ACCOUNT, "transfer of 10,000,000.00 EUR to a new beneficiary abroad",
                        {"family": "large-transfer", "amount": "1000000000",
                         "currency": "EUR"}), timeout=5)
                say("core banking raised: transfer of 10,000,000.00 EUR from account "
                    f"{ACCOUNT} to a new beneficiary abroad")
                opened = await until("opened")
                report.incident = opened.incident
                report.alert_to_room_ms = (opened.ts_ns - t0) / 1e6
                echo = await maker.echo_command(
                    opened.incident, f"/freeze {ACCOUNT} 10M to a new beneficiary, customer "
                    "unreachable")
                say(f"{RISK} typed {echo.text!r}; the node asks for {echo.approvals} "
                    f"approval from {', '.join(echo.approvers)}")
                status = await maker.confirm(echo)
                await until("command")
                await checker.join(opened.incident)
                await checker.approve(status.request.request_id)
                frozen = await until("frozen")
                report.alert_to_freeze_ms = (frozen.ts_ns - t0) / 1e6
                async with open_producer(node.urls[Endpoint.INGEST]) as producer:
                    (d,) = await producer.score([wire.Transaction(
                        "demo-after-freeze", ACCOUNT, 555, 2_500, "EUR", wire.Channel.CARD,
                        5411, "dev-1", "10.1.2.3", "DE", "Berlin", int(time.time() * 1000))])
                report.next_payment = f"{d.outcome.value} ({', '.join(d.fired)})"
                say(f"the account's next payment: {report.next_payment}")
                executed = await until("executed")
                report.alert_to_executed_ms = (executed.ts_ns - t0) / 1e6
                while report.pages < 2:  # the ladder's SMS and e-mail to the head of risk
                    if (await until("page")).data.get("officer") == HEAD:
                        report.pages += 1
                echo = await maker.echo_command(
                    opened.incident, "/resolve fraud-confirmed account frozen before payout "
                    "#large-transfer #mule")
                await maker.confirm(echo)
                await until("resolved")
            tg.cancel_scope.cancel()
    return report


def scene_secret() -> str:
    return os.urandom(16).hex()


__all__ = ["SceneReport", "officer_key", "run_scene", "scene_secret", "write_oncall"]
