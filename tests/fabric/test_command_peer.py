"""The home side of ``cmd_forward`` against a node, with a fake peer playing the origin:
typed refusals for what is not for this node, one application per key, repeats answered
with the state, the freeze in effect in the node's scoring at once."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from fabricutil import FAST, account, fabric_configs, fake_peer, running, tx
from nodeutil import register_officer, running_node, wait_until

from gateway import incidents, wire
from gateway.auth import load_or_create_server_keys
from gateway.client import open_officer
from gateway.codec import Endpoint
from gateway.config import Config, IncidentSection
from gateway.node import Node
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio
ONCALL = """
[[officers]]
id = "alice"
roles = ["risk"]

[[routes]]
roles = ["risk"]
"""


def forward(rid: int, key: str, acct: int, command: str = "freeze",
            origin: str = "us") -> wire.CommandForward:
    return wire.CommandForward(1, rid, origin, key, 7, 3, command, acct, 0, "mule account",
                               "carol", ["dave"])


def eu_config(tmp_path: Path, *, incidents: bool) -> tuple[Config, tuple[str, str, str]]:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    cfg = configs["eu"]
    if incidents:
        oncall = tmp_path / "oncall.toml"
        oncall.write_text(ONCALL, encoding="utf-8")
        cfg = msgspec.structs.replace(cfg, incident=IncidentSection(oncall=str(oncall)))
    us_keys = load_or_create_server_keys(Path(configs["us"].node.data_dir))
    eu_public = load_or_create_server_keys(Path(cfg.node.data_dir)).public
    return cfg, (us_keys.public, us_keys.secret, eu_public)


async def score(node: Node, n: int, acct: int) -> wire.Decision:
    async with open_dealer(node.urls[Endpoint.INGEST]) as conn:
        reply = await conn.request(wire.ScoreRequest(1, n, [tx(n, acct)]), timeout=5)
    assert isinstance(reply, wire.ScoreReply), reply
    return reply.decisions[0]


async def test_commands_from_another_region(tmp_path: Path) -> None:
    cfg, curve = eu_config(tmp_path, incidents=True)
    mine = account("eu", 77)
    async with running_node(cfg) as eu:
        assert eu.fabric is not None
        fp = eu.fabric.directory.fingerprint
        assert "@frozen" not in (await score(eu, 1, mine)).fired
        async with fake_peer(eu.fabric.url, curve=curve) as peer:
            assert isinstance(await peer.request(wire.FabricHello(1, 1, "us", "node-us", 5, fp)),
                              wire.FabricWelcome)
            refusals = [await peer.request(m) for m in (
                forward(2, "node-us-cmd-7", mine, origin="ap"),
                forward(3, "node-us-cmd-7", account("us", 1)),
                forward(4, "node-us-cmd-7", mine, command="resolve"),
                forward(5, "node-us-cmd-7", mine, command="teleport"))]
            assert [(r.name, r.rid) for r in refusals] == [
                ("INVALID", 2), ("WRONG_REGION", 3), ("INVALID", 4), ("INVALID", 5)]
            assert "comes from 'us'" in refusals[0].message
            accepted = await peer.request(forward(6, "node-us-cmd-7", mine))
            assert isinstance(accepted, wire.CommandState)
            assert (accepted.key, accepted.state) == ("node-us-cmd-7", "accepted")
            assert "@frozen" in (await score(eu, 2, mine)).fired
            again = await peer.request(forward(7, "node-us-cmd-7", mine))
            assert (again.state, again.home_request, again.applied_unix_ns) == (
                "accepted", accepted.home_request, accepted.applied_unix_ns)
            unfreeze = await peer.request(forward(8, "node-us-cmd-9", mine, "unfreeze"))
            assert unfreeze.state == "accepted"
            assert unfreeze.home_request != accepted.home_request
            assert "@frozen" not in (await score(eu, 3, mine)).fired
        assert eu.counters.get("fabric_errors.INVALID") == 3
        assert eu.counters.get("fabric_errors.WRONG_REGION") == 1
        assert eu.counters.get("commands_from_region.us") == 2
        assert eu.counters.get("commands_from_region_repeated.us") == 1
        made = eu.store.db.execute(
            "SELECT exec_key, command, state, origin, maker, approvals FROM commands "
            "ORDER BY request_id").fetchall()
        assert made == [("node-us-cmd-7", "freeze", "approved", "us", "us/carol", 1),
                        ("node-us-cmd-9", "unfreeze", "approved", "us", "us/carol", 1)]
        kinds = [k for k, in eu.store.db.execute(
            "SELECT kind FROM journal WHERE kind = 'command_in'")]
        assert kinds == ["command_in", "command_in"]


async def test_a_node_without_incident_response_refuses_commands(tmp_path: Path) -> None:
    cfg, curve = eu_config(tmp_path, incidents=False)
    async with running_node(cfg) as eu:
        assert eu.fabric is not None
        fp = eu.fabric.directory.fingerprint
        async with fake_peer(eu.fabric.url, curve=curve) as peer:
            await peer.request(wire.FabricHello(1, 1, "us", "node-us", 5, fp))
            refused = await peer.request(forward(2, "node-us-cmd-1", account("eu", 1)))
        assert refused.name == "INVALID" and "[incident] oncall" in refused.message
        assert "@frozen" not in (await score(eu, 1, account("eu", 1))).fired


def refusing_home_configs(tmp_path: Path) -> dict[str, Config]:
    """eu approves `/limit` with no second vote; us has no incident response, so it
    refuses every command (INVALID) and applies none."""
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    oncall = tmp_path / "oncall.toml"
    oncall.write_text(ONCALL + '\n[[ladders.high]]\nafter_s = 0\nchannels = ["app"]\n',
                      encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text('[commands.limit]\nissuers = ["risk"]\napprovals = 0\napprovers = []\n'
                      'expires_s = 900\n', encoding="utf-8")
    configs["eu"] = msgspec.structs.replace(configs["eu"], incident=IncidentSection(
        oncall=str(oncall), policy=str(policy)))
    return configs


async def approve_limit(eu: Node, account: int) -> int:
    """alice at eu limits ``account`` (homed in us); the incident's id."""
    key = await register_officer(eu, "alice")
    async with open_dealer(eu.urls[Endpoint.SERVICES]) as conn:
        accepted = await conn.request(wire.AlertSubmit(
            1, 1, "a-1", wire.Severity.HIGH, account, "mule", {"family": "velocity"}))
    assert isinstance(accepted, wire.AlertAccepted)
    async with open_officer(key, device="phone") as alice:
        while not isinstance(item := await alice.next(), wire.RoomPush):
            pass
        incident = item.event.incident
        echo = await alice.echo_command(incident, f"/limit {account} 50000 cap")
        status = await alice.confirm(echo, key="limit-1")
        assert status.request.state == "approved"
    return incident


async def test_origin_keeps_a_refused_command_and_says_so_once(tmp_path: Path) -> None:
    """us takes no commands (no incident response there): eu's room shows the refusal
    once, eu keeps the approved command and sends it again; nothing is applied anywhere."""
    configs = refusing_home_configs(tmp_path)
    async with running(configs) as nodes:
        eu = nodes["eu"]
        incident = await approve_limit(eu, account("us", 5))
        await wait_until(lambda: eu.counters.get("commands_refused_home.INVALID") >= 2,
                         timeout=10, what="refused twice")
        refused = eu.store.db.execute(
            "SELECT actor FROM room_events WHERE incident_id = ? AND kind = 'refused'",
            (incident,)).fetchall()
        assert refused == [("node",)]
        assert eu.store.db.execute("SELECT state, home, forwarded_ns FROM commands").fetchall(
            ) == [("approved", "us", 0)]
        assert nodes["us"].store.db.execute("SELECT count(*) FROM commands").fetchone()[0] == 0


async def test_open_commands_go_again_when_the_link_comes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the periodic resend out of reach, eu sends the open command to us again only
    because the link to us came back up after us restarted."""
    monkeypatch.setattr(incidents, "DISPATCH_RETRY_MS", 600_000)
    configs = refusing_home_configs(tmp_path)
    async with running_node(configs["eu"]) as eu:
        assert eu.fabric is not None
        link = eu.fabric.links["us"]
        async with running_node(configs["us"]):
            await wait_until(lambda: link.up, timeout=10, what="link up")
            await approve_limit(eu, account("us", 5))
            await wait_until(lambda: eu.counters.get("commands_refused_home.INVALID") == 1,
                             timeout=10, what="the first refusal")
        await wait_until(lambda: not link.up, timeout=10, what="link down")
        assert eu.counters.get("commands_sent_home.us") == 1
        async with running_node(configs["us"]):
            await wait_until(lambda: eu.counters.get("commands_refused_home.INVALID") == 2,
                             timeout=10, what="sent again at link up")
        assert eu.counters.get("commands_sent_home.us") == 2
        assert eu.store.db.execute("SELECT state, home FROM commands").fetchall() == [
            ("approved", "us")]
