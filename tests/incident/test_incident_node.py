"""Incident response against a real node: real officer clients over CURVE, a real
core-banking executor over ZeroMQ, real webhook and SMTP receivers on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from nodeutil import register_officer, running_node, wait_until

from gateway import wire
from gateway.client import open_officer, open_producer
from gateway.codec import Endpoint
from gateway.config import Config, IncidentSection
from gateway.corebank import CoreBank
from gateway.errors import ErrorCode, RemoteError
from gateway.incident.receivers import SmtpReceiver, WebhookReceiver
from gateway.node import Node
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio
V = wire.PROTOCOL_VERSION
SECRET = b"sms-provider-secret"
ACCOUNT = 4_100_000_001


def oncall_toml(*, sms_url: str = "http://127.0.0.1:9/", smtp_port: int = 9,
                step2_after_s: float = 30.0, mode: str = "first") -> str:
    return f"""
[incidents]
min_severity = "high"
group_window_s = 600

[[officers]]
id = "alice"
roles = ["risk"]
phone = "+15550001"
email = "alice@bank.test"

[[officers]]
id = "bob"
roles = ["compliance"]
phone = "+15550002"
email = "bob@bank.test"

[[officers]]
id = "erin"
roles = ["auditor"]

[[routes]]
severity = ["critical", "high"]
roles = ["risk"]

[[routes]]
roles = ["risk"]

[[ladders.high]]
after_s = 0
channels = ["app"]

[[ladders.high]]
after_s = {step2_after_s}
to = ["alice", "bob"]
channels = ["sms", "email"]
mode = "{mode}"

[channels.sms]
kind = "webhook"
to = "phone"
url = "{sms_url}"
secret = "{SECRET.decode()}"
timeout_s = 2

[channels.email]
kind = "smtp"
to = "email"
port = {smtp_port}
timeout_s = 2
"""


def with_oncall(config: Config, tmp_path: Path, text: str) -> Config:
    path = tmp_path / "oncall.toml"
    path.write_text(text, encoding="utf-8")
    return msgspec.structs.replace(config, incident=IncidentSection(oncall=str(path)))


async def submit(node: Node, key: str, account: int = ACCOUNT,
                 severity: wire.Severity = wire.Severity.HIGH) -> int:
    async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
        reply = await conn.request(wire.AlertSubmit(
            V, conn.next_rid(), key, severity, account, f"card testing on {account}",
            {"family": "velocity"}), timeout=5)
    assert isinstance(reply, wire.AlertAccepted), reply
    return int(reply.alert_id)


async def room_until(client: Any, kind: str, timeout: float = 10.0,
                     seen: list[wire.RoomEvent] | None = None) -> wire.RoomEvent:
    """Take stream items until a room event of ``kind`` arrives."""
    with anyio.fail_after(timeout):
        while True:
            item = await client.next()
            if isinstance(item, wire.RoomPush):
                if seen is not None:
                    seen.append(item.event)
                if item.event.kind == kind:
                    return item.event


def room_kinds(node: Node, incident: int) -> list[tuple[int, str, str]]:
    return [(int(r), str(k), str(a)) for r, k, a in node.store.db.execute(
        "SELECT rseq, kind, actor FROM room_events WHERE incident_id = ? ORDER BY rseq",
        (incident,))]


async def test_escalation_reaches_sms_and_email_when_every_app_recipient_is_offline(
        node_config: Config, tmp_path: Path) -> None:
    # the SMS provider refuses its first request: that officer's page moves on to e-mail
    with WebhookReceiver(SECRET, fail_first=1) as sms, SmtpReceiver() as mail:
        cfg = with_oncall(node_config, tmp_path, oncall_toml(
            sms_url=sms.url, smtp_port=mail.port, step2_after_s=0.3))
        async with running_node(cfg) as node:
            await register_officer(node, "alice")
            await register_officer(node, "bob")
            await submit(node, "esc-1")  # nobody is attached
            await anyio.to_thread.run_sync(sms.wait_for, 1, 10.0)
            await anyio.to_thread.run_sync(mail.wait_for, 1, 10.0)
            await wait_until(lambda: node.store.db.execute(
                "SELECT count(*) FROM pages WHERE step = 2").fetchone()[0] == 3,
                timeout=10, what="three step-2 attempts recorded")
            (incident,) = [i for i, in node.store.db.execute("SELECT incident_id FROM incidents")]
            pages = node.store.db.execute(
                "SELECT officer, channel, ok, reply FROM pages WHERE step = 2 "
                "ORDER BY done_ns").fetchall()
            events = room_kinds(node, incident)
    # one officer got the SMS; the other's SMS failed (503) and the e-mail went out
    assert len(sms.received) == 1 and sms.failed == 1
    assert len(mail.messages) == 1
    failed = [p for p in pages if not p[2]]
    assert len(failed) == 1 and failed[0][1] == "sms" and "503" in failed[0][3]
    fallback = [p for p in pages if p[1] == "email"]
    assert [p[0] for p in fallback] == [failed[0][0]] and fallback[0][2] == 1
    assert mail.messages[0]["To"] == f"{failed[0][0]}@bank.test"
    assert sms.received[0]["to"] in ("+15550001", "+15550002")
    # the room (and so the timeline) has every attempt in order: the failure before the
    # e-mail that replaced it
    kinds = [k for _, k, _ in events]
    assert kinds[:3] == ["opened", "escalation", "page"]
    assert kinds.count("escalation") == 2 and kinds.count("page") == 4
    attempts = [json.loads(json.dumps(p)) for p in pages]
    assert attempts.index(list(failed[0])) < attempts.index(list(fallback[0]))
    assert [r for r, _, _ in events] == list(range(1, len(events) + 1))


async def test_freeze_with_maker_checker_executes_once_and_blocks_the_next_payment(
        node_config: Config, tmp_path: Path) -> None:
    cfg = with_oncall(node_config, tmp_path, oncall_toml())
    async with running_node(cfg) as node, anyio.create_task_group() as tg:
        alice_key = await register_officer(node, "alice")
        bob_key = await register_officer(node, "bob")
        bank = CoreBank(node.urls[Endpoint.SERVICES], tmp_path / "bank.db", heartbeat_s=0.2)
        await tg.start(bank.run)
        async with open_officer(alice_key, device="phone") as alice:
            await submit(node, "fr-1")
            opened = await room_until(alice, "opened")
            incident = opened.incident
            assert opened.data["account"] == str(ACCOUNT)
            # typed, parsed, echoed; nothing is requested by the echo
            echo = await alice.echo_command(incident, f"/freeze {ACCOUNT} card testing")
            assert (echo.command, echo.account, echo.reason, echo.approvals) == (
                "freeze", ACCOUNT, "card testing", 1)
            with pytest.raises(RemoteError) as bad:
                await alice.echo_command(incident, "/freeze notanaccount x")
            assert bad.value.code == ErrorCode.INVALID and "usage" in str(bad.value)
            # the same request sent three times is one request
            first = await alice.confirm(echo, key="freeze-1")
            again = [await alice.confirm(echo, key="freeze-1") for _ in range(2)]
            assert not first.duplicate and all(a.duplicate for a in again)
            assert {a.request.request_id for a in again} == {first.request.request_id}
            request_id = first.request.request_id
            assert first.request.state == "pending"
            # the maker cannot approve: refused, journaled, shown in the room
            with pytest.raises(RemoteError) as selfie:
                await alice.approve(request_id)
            assert selfie.value.code == ErrorCode.SELF_APPROVAL
            await room_until(alice, "refused")
            assert node.counters.get("command_votes_refused.self_approval") == 1
            assert not node.engine.is_frozen(ACCOUNT)
            async with open_officer(bob_key, device="laptop") as bob:
                with pytest.raises(RemoteError) as outsider:
                    await bob.approve(request_id)  # not in the room yet: refused too
                assert outsider.value.code == ErrorCode.UNAUTHORIZED
                await bob.join(incident)
                status = await bob.approve(request_id)
                assert status.request.state == "approved"
                # the freeze is in the node's scoring at once
                assert node.engine.is_frozen(ACCOUNT)
                await room_until(alice, "executed")
            # a fourth send of the same key changes nothing either
            assert (await alice.confirm(echo, key="freeze-1")).duplicate
        await wait_until(lambda: bank.applied_count() == 1, what="one execution")
        assert bank.account(ACCOUNT)["frozen"]
        async with open_producer(node.urls[Endpoint.INGEST]) as producer:
            (d,) = await producer.score_many([wire.Transaction(
                "after-freeze", ACCOUNT, 7, 100, "EUR", wire.Channel.CARD, 5411, "d1",
                "10.0.0.1", "DE", "Berlin", 1_700_000_000_000)])
        assert d.outcome in (wire.Outcome.BLOCK, wire.Outcome.BLOCK_AND_FREEZE)
        assert "@frozen" in d.fired
        row = node.store.db.execute("SELECT state, reference FROM commands WHERE "
                                    "request_id = ?", (request_id,)).fetchone()
        assert row[0] == "executed" and row[1].startswith("CB-")
        refused = [b for (b,) in node.store.db.execute(
            "SELECT body FROM journal WHERE kind = 'room'")
            if msgspec.msgpack.decode(b, type=wire.RoomEvent).kind == "refused"]
        assert len(refused) == 1
        tg.cancel_scope.cancel()


async def test_late_joiner_receives_the_whole_room_history_in_order(
        node_config: Config, tmp_path: Path) -> None:
    cfg = with_oncall(node_config, tmp_path, oncall_toml())
    async with running_node(cfg) as node:
        alice_key = await register_officer(node, "alice")
        bob_key = await register_officer(node, "bob")
        erin_key = await register_officer(node, "erin")
        async with open_officer(alice_key, device="phone") as alice:
            await submit(node, "late-1")
            incident = (await room_until(alice, "opened")).incident
            for i in range(30):
                await alice.say(incident, f"note {i}")
            await submit(node, "late-2")  # same account and family: joins the incident
            await room_until(alice, "alert")
            async with open_officer(bob_key, device="laptop") as bob:
                rseq = await bob.join(incident)
                history: list[wire.RoomEvent] = []
                await room_until(bob, "join", seen=history)
                # erin (auditor) reads but does not post
                async with open_officer(erin_key, device="tablet") as erin:
                    await erin.join(incident)
                    with pytest.raises(RemoteError):
                        await erin.say(incident, "hello")
                await alice.say(incident, "welcome bob")
                later = await room_until(bob, "message")
        assert [e.rseq for e in history] == list(range(1, rseq + 1))
        texts = [e.text for e in history if e.kind == "message"]
        assert texts == [f"note {i}" for i in range(30)]
        assert history[0].kind == "opened" and history[-1].kind == "join"
        assert later.text == "welcome bob" and later.rseq > rseq
        assert node.counters.get("incident_alerts_grouped") == 1
        assert node.counters.get("incidents_opened") == 1


async def test_resolve_files_a_case_that_later_incidents_find(node_config: Config,
                                                               tmp_path: Path) -> None:
    cfg = with_oncall(node_config, tmp_path, oncall_toml())
    async with running_node(cfg) as node:
        alice_key = await register_officer(node, "alice")
        async with open_officer(alice_key, device="phone") as alice:
            await submit(node, "case-1")
            incident = (await room_until(alice, "opened")).incident
            echo = await alice.echo_command(
                incident, "/resolve fraud-confirmed mule network #mule #cardtesting")
            status = await alice.confirm(echo)
            assert status.request.state in ("approved", "executed")
            await room_until(alice, "resolved")
            cases = await alice.search_cases("mule")
            assert [c.case_id for c in cases] == [incident]
            assert cases[0].outcome == "fraud-confirmed"
            assert "mule" in cases[0].tags and "cardtesting" in cases[0].tags
            with pytest.raises(RemoteError) as closed:
                await alice.say(incident, "too late")
            assert closed.value.code == ErrorCode.REQUEST_CLOSED
            await submit(node, "case-2")  # the same kind of alert: a new incident
            opened = await room_until(alice, "opened")
            assert opened.incident != incident
            assert opened.data["similar"] == str(incident)
            infos = await alice.incidents()
            assert [i.incident for i in infos] == [opened.incident]
            assert infos[0].similar == [incident]


async def test_a_page_cut_short_by_a_stop_is_sent_after_the_restart(
        node_config: Config, tmp_path: Path) -> None:
    import socket

    # an SMS provider that accepts the connection and never answers: the node stops while
    # its adapter waits, so no result of that attempt is recorded
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        cfg = with_oncall(node_config, tmp_path, oncall_toml(
            sms_url=f"http://127.0.0.1:{silent.getsockname()[1]}/", step2_after_s=0,
            mode="all").replace('channels = ["sms", "email"]', 'channels = ["sms"]'))
        async with running_node(cfg) as node:
            await register_officer(node, "alice")
            await submit(node, "resume-1")
            await wait_until(lambda: any(k == "escalation" and "step 2" in t for k, t in
                                         _room_texts(node)), what="step 2 fired")
            assert node.store.db.execute("SELECT count(*) FROM pages WHERE channel = 'sms'"
                                         ).fetchone()[0] == 0
    finally:
        silent.close()
    with WebhookReceiver(SECRET) as sms:
        cfg = with_oncall(node_config, tmp_path, oncall_toml(sms_url=sms.url))
        async with running_node(cfg) as node:
            got = await anyio.to_thread.run_sync(sms.wait_for, 2, 10.0)
            await wait_until(lambda: node.store.db.execute(
                "SELECT count(*) FROM pages WHERE channel = 'sms' AND ok = 1").fetchone()[0]
                == 2, what="both pages recorded")
    assert sorted(p["to"] for p in got) == ["+15550001", "+15550002"]
    assert len(sms.received) == 2  # sent again once, not once per restart or per step


def _room_texts(node: Node) -> list[tuple[str, str]]:
    return [(str(k), msgspec.msgpack.decode(b, type=wire.RoomEvent).text) for k, b in
            node.store.db.execute("SELECT kind, body FROM room_events ORDER BY rseq")]


async def test_a_critical_rooms_events_overtake_a_backlog_of_lesser_alerts(
        node_config: Config, tmp_path: Path) -> None:
    """alice is offline while 60 high alerts (one high incident) pile up in her stream,
    then a critical alert opens a second incident: when she attaches, the critical room
    comes on lane 0 before any of the backlog; the high room stays on lane 1, in order."""
    cfg = with_oncall(node_config, tmp_path, oncall_toml())
    async with running_node(cfg) as node:
        alice_key = await register_officer(node, "alice")
        for i in range(60):
            await submit(node, f"bulk-{i}")
        await submit(node, "crit-1", ACCOUNT + 1, wire.Severity.CRITICAL)
        await wait_until(lambda: node.counters.get("incidents_opened") == 2,
                         what="both incidents open")
        items: list[Any] = []
        async with open_officer(alice_key, device="phone") as alice:
            with anyio.fail_after(10):
                while not any(isinstance(i, wire.RoomPush) and i.event.kind == "page"
                              and i.lane == wire.Lane.HIGH for i in items):
                    items.append(await alice.next())
    rooms = [i for i in items if isinstance(i, wire.RoomPush)]
    critical = {r.event.incident for r in rooms if r.lane == wire.Lane.CRITICAL}
    high = {r.event.incident for r in rooms if r.lane == wire.Lane.HIGH}
    assert len(critical) == 1 and len(high) == 1 and critical != high
    first_high = next(n for n, i in enumerate(items) if i.lane != wire.Lane.CRITICAL)
    assert all(i.lane == wire.Lane.CRITICAL for i in items[:first_high])
    assert any(isinstance(i, wire.RoomPush) and i.event.kind == "opened"
               for i in items[:first_high])  # the critical room before any backlog
    for lane in (wire.Lane.CRITICAL, wire.Lane.HIGH):
        rseqs = [r.event.rseq for r in rooms if r.lane == lane]
        assert rseqs == sorted(rseqs) and rseqs[0] == 1
