"""Commands reach the account's home region: officers at eu freeze an account homed at us.
The freeze takes effect in us's scoring (and so for payments forwarded from eu), us's
core-banking system executes it once with eu's key, and eu's room shows each step. Node
processes on loopback; us and then eu are killed with SIGKILL on the way and nothing is
lost or done twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from fabricutil import BASE, fabric_configs, tx
from procutil import NodeProcess

from gateway import wire
from gateway.client import open_officer, open_producer
from gateway.config import Config, IncidentSection
from gateway.corebank import CoreBank
from gateway.incident._timeline import timeline
from gateway.journal import connect, verify
from gateway.soak import register_keys
from gateway.transport import open_dealer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
V = wire.PROTOCOL_VERSION
ACCOUNT = BASE["us"] + 4242  # homed at us
ONCALL = """
[incidents]
min_severity = "high"

[[officers]]
id = "alice"
roles = ["risk"]

[[officers]]
id = "bob"
roles = ["compliance"]

[[routes]]
roles = ["risk"]

[[ladders.high]]
after_s = 0
channels = ["app"]
"""


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})  # the nodes run in their own processes


def configs(tmp: Path) -> dict[str, Config]:
    oncall = tmp / "oncall.toml"
    oncall.write_text(ONCALL, encoding="utf-8")
    return {r: msgspec.structs.replace(c, incident=IncidentSection(oncall=str(oncall)))
            for r, c in fabric_configs(tmp, ["eu", "us"], dead_after_ms=1500,
                                       heartbeat_ms=300).items()}


async def blocking(func: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: func(*args))


def rows(data_dir: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{Path(data_dir) / 'node.db'}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in db.execute(sql, args)]
    finally:
        db.close()


async def db_until(data_dir: str, sql: str, want: Any, *args: Any,
                   timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while rows(data_dir, sql, *args) != want:
            await anyio.sleep(0.05)


async def room_until(client: Any, kind: str, timeout: float = 20.0) -> wire.RoomEvent:
    with anyio.fail_after(timeout):
        while True:
            item = await client.next()
            if isinstance(item, wire.RoomPush) and item.event.kind == kind:
                return item.event


async def frozen_at(ingest: str, n: int) -> bool:
    async with open_producer(ingest) as producer:
        (d,) = await producer.score_many([tx(n, ACCOUNT, 500_00)])
    return "@frozen" in d.fired


async def request_freeze(node: NodeProcess) -> tuple[Any, Any, int, int]:
    """An alert at eu on a us account, the incident, alice's /freeze; (alice and bob's
    keys, incident, request id)."""
    services = node.urls["services"]
    (alice_key, bob_key), _server = await register_keys(services, ["alice", "bob"])
    async with open_dealer(services) as conn:
        reply = await conn.request(wire.AlertSubmit(
            V, conn.next_rid(), "mule-1", wire.Severity.HIGH, ACCOUNT, "mule transfer",
            {"family": "velocity"}), timeout=10)
    assert isinstance(reply, wire.AlertAccepted), reply
    async with open_officer(alice_key, device="phone") as alice:
        incident = (await room_until(alice, "opened")).incident
        echo = await alice.echo_command(incident, f"/freeze {ACCOUNT} mule account")
        request_id = (await alice.confirm(echo, key="freeze-1")).request.request_id
    return alice_key, bob_key, incident, request_id


async def test_freeze_of_a_foreign_account_is_carried_out_at_its_home(tmp_path: Path) -> None:
    cfg = configs(tmp_path)
    nodes = {r: await blocking(NodeProcess, cfg[r], tmp_path) for r in ("eu", "us")}
    eu, us = nodes["eu"], nodes["us"]
    try:
        await blocking(eu.wait_status, lambda i, c: i.get("fabric.peer.us") == "up")
        assert not await frozen_at(us.urls["ingest"], 1)
        alice_key, bob_key, incident, request_id = await request_freeze(eu)
        bank_eu = CoreBank(eu.urls["services"], tmp_path / "bank-eu.db", heartbeat_s=0.2)
        bank_us = CoreBank(us.urls["services"], tmp_path / "bank-us.db", heartbeat_s=0.2)
        async with anyio.create_task_group() as tg, \
                open_officer(alice_key, device="laptop") as alice:
            await tg.start(bank_eu.run)
            await tg.start(bank_us.run)
            async with open_officer(bob_key, device="laptop") as bob:
                await bob.join(incident)
                assert (await bob.approve(request_id)).request.state == "approved"
            approved = await room_until(alice, "approved")
            assert approved.data["home"] == "us" and "homed in region us" in approved.text
            frozen = await room_until(alice, "frozen")
            assert frozen.data["home"] == "us" and "home region us" in frozen.text
            # in effect at us, for payments scored there and for those eu forwards there
            assert await frozen_at(us.urls["ingest"], 2)
            assert await frozen_at(eu.urls["ingest"], 3)
            executed = await room_until(alice, "executed")
            assert "region us" in executed.text and executed.data["reference"].startswith("CB")
            tg.cancel_scope.cancel()
        assert bank_us.applied_count() == 1 and bank_us.account(ACCOUNT)["frozen"]
        assert bank_eu.applied_count() == 0  # eu's business system does not own the account
        key = f"node-eu-cmd-{request_id}"
        assert rows(eu.cfg.node.data_dir, "SELECT state, home, forwarded_ns > 0, exec_key "
                    "FROM commands WHERE request_id = ?", request_id) == [
            ("executed", "us", 1, key)]
        assert rows(us.cfg.node.data_dir, "SELECT state, origin, maker, incident_id FROM "
                    "commands WHERE exec_key = ?", key) == [("executed", "eu", "eu/alice", 0)]
        assert rows(us.cfg.node.data_dir, "SELECT account FROM frozen_accounts") == [(ACCOUNT,)]
        assert rows(eu.cfg.node.data_dir, "SELECT account FROM frozen_accounts") == []
        # eu's timeline shows the hand-off to the home region and the execution
        db = connect(Path(eu.cfg.node.data_dir) / "node.db", readonly=True)
        try:
            tl = timeline(db, incident, room=False)
        finally:
            db.close()
        texts = [(e.what, e.detail) for e in tl.entries]
        assert ("home", f"request {request_id}: sent to region us, the account's home; "
                "accepted there") in texts
        assert any(k == "executed" and "CB-" in t for k, t in texts)
        assert tl.time_to_execute_s is not None
    finally:
        for n in nodes.values():
            n.stop()
    for n in nodes.values():
        db = connect(Path(n.cfg.node.data_dir) / "node.db", readonly=True)
        try:
            assert verify(db).ok
        finally:
            db.close()


async def test_kill_home_then_origin_command_applied_once(tmp_path: Path) -> None:
    """us is down when the freeze is approved: eu keeps it and sends it once us is back;
    eu is killed after us accepted it: us's business system executes it meanwhile, and the
    restarted eu learns the result by asking again. Executed once, with one key."""
    cfg = configs(tmp_path)
    nodes = {r: await blocking(NodeProcess, cfg[r], tmp_path) for r in ("eu", "us")}
    eu, us = nodes["eu"], nodes["us"]
    eu_dir, us_dir = eu.cfg.node.data_dir, us.cfg.node.data_dir
    try:
        await blocking(eu.wait_status, lambda i, c: i.get("fabric.peer.us") == "up")
        _alice_key, bob_key, incident, request_id = await request_freeze(eu)
        key = f"node-eu-cmd-{request_id}"
        us.kill()
        await blocking(eu.wait_status, lambda i, c: i.get("fabric.peer.us") != "up")
        async with open_officer(bob_key, device="laptop") as bob:
            await bob.join(incident)
            assert (await bob.approve(request_id)).request.state == "approved"
        await blocking(eu.wait_status, lambda i, c: c.get("commands_waiting_home.us", 0) > 0)
        assert rows(eu_dir, "SELECT state, forwarded_ns FROM commands WHERE request_id = ?",
                    request_id) == [("approved", 0)]
        await blocking(us.start)  # back: eu's next attempt reaches it
        await db_until(us_dir, "SELECT state FROM commands WHERE exec_key = ?",
                       [("approved",)], key)
        await db_until(eu_dir, "SELECT forwarded_ns > 0 FROM commands WHERE request_id = ?",
                       [(1,)], request_id)
        assert await frozen_at(us.urls["ingest"], 1)
        eu.kill()
        bank = CoreBank(us.urls["services"], tmp_path / "bank-us.db", heartbeat_s=0.2)
        async with anyio.create_task_group() as tg:
            await tg.start(bank.run)
            await db_until(us_dir, "SELECT state FROM commands WHERE exec_key = ?",
                           [("executed",)], key)
            await blocking(eu.start)
            await db_until(eu_dir, "SELECT state FROM commands WHERE request_id = ?",
                           [("executed",)], request_id)
            tg.cancel_scope.cancel()
        assert bank.applied_count() == 1
        assert len(rows(us_dir, "SELECT 1 FROM commands WHERE origin = 'eu'")) == 1
        # the freeze survives us's restart; eu's room tells the whole story in order
        us.kill()
        await blocking(us.start)
        assert await frozen_at(us.urls["ingest"], 2)
        kinds = [k for k, in rows(eu_dir, "SELECT kind FROM room_events WHERE incident_id = ? "
                                  "AND kind IN ('approved', 'frozen', 'executed') "
                                  "ORDER BY rseq", incident)]
        assert kinds == ["approved", "frozen", "executed"]
    finally:
        for n in nodes.values():
            n.stop()
