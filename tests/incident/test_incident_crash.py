"""A node process SIGKILLed between a command's approval and its execution executes the
command exactly once after it restarts; the freeze survives the restart in scoring."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_incident_node import ACCOUNT, oncall_toml, room_until

from gateway import wire
from gateway.client import open_officer, open_producer
from gateway.corebank import CoreBank
from gateway.journal import connect, verify
from gateway.soak import SoakNode, register_keys
from gateway.transport import open_dealer

V = wire.PROTOCOL_VERSION


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})  # real processes: one loop flavour is enough


async def _submit(services: str, key: str) -> None:
    async with open_dealer(services) as conn:
        reply = await conn.request(wire.AlertSubmit(
            V, conn.next_rid(), key, wire.Severity.HIGH, ACCOUNT, "mule transfer",
            {"family": "velocity"}), timeout=10)
    assert isinstance(reply, wire.AlertAccepted), reply


@pytest.mark.anyio
async def test_kill_between_approval_and_execution_executes_once_after_restart(
        tmp_path: Path) -> None:
    oncall = tmp_path / "oncall.toml"
    oncall.write_text(oncall_toml(), encoding="utf-8")
    data = tmp_path / "data"
    node = SoakNode(data, name="crash-node", extra=f'[incident]\noncall = "{oncall}"\n')
    await node.start_async()
    try:
        services = node.urls["services"]
        (alice_key, bob_key), _server = await register_keys(services, ["alice", "bob"])
        await _submit(services, "crash-1")
        async with open_officer(alice_key, device="phone") as alice:
            incident = (await room_until(alice, "opened", timeout=20)).incident
            echo = await alice.echo_command(incident, f"/freeze {ACCOUNT} mule account")
            request_id = (await alice.confirm(echo, key="crash-freeze")).request.request_id
        async with open_officer(bob_key, device="laptop") as bob:
            await bob.join(incident)
            status = await bob.approve(request_id)
        assert status.request.state == "approved"  # durable; no executor is attached yet
        assert node.kill() == -9
        await node.start_async()
        # after the restart: still frozen in scoring, and dispatched once an executor comes
        async with open_producer(node.urls["ingest"]) as producer:
            (d,) = await producer.score_many([wire.Transaction(
                "after-restart", ACCOUNT, 9, 500, "EUR", wire.Channel.TRANSFER, 0, "d1",
                "10.0.0.2", "DE", "Munich", 1_700_000_000_000)])
        assert "@frozen" in d.fired
        bank = CoreBank(services, tmp_path / "bank.db", heartbeat_s=0.2)
        async with anyio.create_task_group() as tg:
            await tg.start(bank.run)
            with anyio.fail_after(20):
                while bank.applied_count() < 1:
                    await anyio.sleep(0.02)
            # kill again once the result is journaled; the restarted node sends nothing more
            db = connect(data / "node.db", readonly=True)
            try:
                with anyio.fail_after(20):
                    while db.execute("SELECT state FROM commands WHERE request_id = ?",
                                     (request_id,)).fetchone()[0] != "executed":
                        await anyio.sleep(0.02)
            finally:
                db.close()
            welcomes = bank.welcomes
            assert node.kill() == -9
            await node.start_async()
            with anyio.fail_after(20):  # the executor re-attaches by its heartbeat
                while bank.welcomes <= welcomes:
                    await anyio.sleep(0.02)
            assert bank.pending == 0
            tg.cancel_scope.cancel()
        assert bank.applied_count() == 1 and bank.account(ACCOUNT)["frozen"]
    finally:
        node.stop()
    db = connect(data / "node.db", readonly=True)
    try:
        assert verify(db).ok
        (state, reference), = db.execute("SELECT state, reference FROM commands WHERE "
                                         "request_id = ?", (request_id,)).fetchall()
        assert state == "executed" and reference.startswith("CB-")
    finally:
        db.close()
