"""Reliable delivery against an in-process node over real CURVE sockets: identity,
streams, acknowledgements across devices, offline queue, priority, presence, dedupe."""

from __future__ import annotations

import io
from typing import Any

import anyio
import pytest
from nodeutil import register_officer, running_node, wait_until

from gateway import wire
from gateway.auth import OfficerKey, new_keypair
from gateway.client import open_officer
from gateway.codec import Endpoint
from gateway.config import Config
from gateway.errors import RemoteError, RequestTimeoutError, SessionEndedError
from gateway.node import Node
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio
V = wire.PROTOCOL_VERSION


async def submit(node: Node, key: str, severity: wire.Severity = wire.Severity.HIGH,
                 recipients: tuple[str, ...] = (), account: int = 42) -> wire.AlertAccepted:
    async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
        reply = await conn.request(wire.AlertSubmit(V, conn.next_rid(), key, severity, account,
                                                    f"alert {key}", {"why": "test"},
                                                    list(recipients)), timeout=5)
    assert isinstance(reply, wire.AlertAccepted), reply
    return reply


async def take(client: Any, n: int, timeout: float = 5.0) -> list[Any]:
    out = []
    with anyio.fail_after(timeout):
        for _ in range(n):
            out.append(await client.next())
    return out


async def test_unauthenticated_unknown_and_revoked_keys_get_nothing(node_config: Config,
                                                                    ) -> None:
    async with running_node(node_config) as node:
        url = node.urls[Endpoint.CLIENTS]
        # 1. no CURVE at all: the handshake fails
        async with open_dealer(url) as plain:
            with pytest.raises(RequestTimeoutError):
                await plain.request(wire.Hello(V, 1, "phone"), timeout=0.5)
        await wait_until(lambda: node.counters.get("clients_peers_handshake_failed") >= 1,
                         what="handshake failure counted")
        # 2. a CURVE key the node does not know
        public, secret = new_keypair()
        stranger = OfficerKey("mallory", public, secret, node.server_keys.public, url)
        async with open_dealer(url, curve_keys=stranger.curve_keys()) as conn:
            with pytest.raises(RequestTimeoutError):
                await conn.request(wire.Hello(V, 1, "phone"), timeout=0.5)
        await wait_until(lambda: node.counters.get("clients_auth_refused.unknown") >= 1,
                         what="unknown key counted")
        # 3. a registered key works until it is revoked; revoking ends the live session
        key = await register_officer(node, "alice")
        await submit(node, "a1", recipients=("alice",))
        async with open_officer(key, device="phone") as client:
            (first,) = await take(client, 1)
            assert isinstance(first, wire.AlertPush) and first.alert.title == "alert a1"
            revoked = anyio.Event()
            node.desk.revoke_key(key.public, on_durable=revoked.set)
            with anyio.fail_after(5):
                await revoked.wait()
                with pytest.raises(SessionEndedError, match="revoked"):
                    await client.next()
        await submit(node, "a2", recipients=("alice",))
        async with open_dealer(url, curve_keys=key.curve_keys()) as conn:
            with pytest.raises(RequestTimeoutError):
                await conn.request(wire.Hello(V, 1, "phone"), timeout=0.5)
        await wait_until(lambda: node.counters.get("clients_auth_refused.revoked") >= 1,
                         what="revoked key counted")
        kinds = [k for (k,) in node.store.db.execute("SELECT kind FROM journal").fetchall()]
        assert kinds.count("auth_refused") >= 2 and "key" in kinds


async def test_every_device_receives_and_an_ack_marks_all(node_config: Config) -> None:
    async with running_node(node_config) as node:
        key = await register_officer(node, "alice")
        async with open_officer(key, device="phone") as phone, \
                open_officer(key, device="desk") as desk:
            accepted = await submit(node, "k1", wire.Severity.CRITICAL)
            (p,) = await take(phone, 1)
            (d,) = await take(desk, 1)
            assert p.alert.alert_id == d.alert.alert_id == accepted.alert_id
            assert p.lane == wire.Lane.CRITICAL and p.seq == 1
            assert await desk.acknowledge(accepted.alert_id) is True
            assert await phone.acknowledge(accepted.alert_id) is False  # already recorded
            (sync_p,) = await take(phone, 1)
            (sync_d,) = await take(desk, 1)
            for s in (sync_p, sync_d):
                assert isinstance(s, wire.AckSync) and s.device == "desk"
                assert s.level is wire.AckLevel.ACKNOWLEDGED and s.seq == 2
            assert phone.acked[accepted.alert_id] is wire.AckLevel.ACKNOWLEDGED
            with pytest.raises(RemoteError, match="NOT_FOUND"):
                await phone.acknowledge(999_999)
        row = node.store.db.execute("SELECT officer, device, level FROM acks").fetchall()
        assert row == [("alice", "desk", "acknowledged")]


async def test_offline_queue_and_exact_gap_on_reconnect(node_config: Config) -> None:
    async with running_node(node_config) as node:
        key = await register_officer(node, "alice")
        for i in range(5):
            await submit(node, f"early-{i}")  # nobody attached yet: the offline queue
        async with open_officer(key, device="phone") as c:
            got = await take(c, 5)
            assert [g.seq for g in got] == [1, 2, 3, 4, 5]
            cursors = list(c.cursors)
        for i in range(3):
            await submit(node, f"late-{i}")
        async with open_officer(key, device="phone", cursors=cursors) as c:
            got = await take(c, 3)
            assert [g.alert.title for g in got] == ["alert late-0", "alert late-1",
                                                    "alert late-2"]
            assert [g.seq for g in got] == [6, 7, 8]
            with anyio.move_on_after(0.3):
                extra = await c.next()
                pytest.fail(f"more than the gap arrived: {extra}")
        # without cursors the node resumes where it last saw the device
        await submit(node, "after")
        async with open_officer(key, device="phone") as c:
            (g,) = await take(c, 1)
            assert g.alert.title == "alert after"


async def test_critical_overtakes_queued_bulk(node_config: Config) -> None:
    async with running_node(node_config) as node:
        key = await register_officer(node, "alice")
        async with open_officer(key, device="phone") as c:
            for i in range(100):
                await submit(node, f"bulk-{i}", wire.Severity.LOW)
            crit = await submit(node, "urgent", wire.Severity.CRITICAL)
            await wait_until(lambda: c._queues[0], what="critical queued in the client")
            (first,) = await take(c, 1)
            assert first.alert.alert_id == crit.alert_id
            rest = await take(c, 100)
            assert [r.seq for r in rest] == list(range(1, 101))
            sess = node.desk.sessions()[0]
            assert sess.stream.in_flight(int(wire.Lane.BULK)) <= node.desk.settings.window


async def test_idempotency_key_dedupes_across_restart(node_config: Config) -> None:
    async with running_node(node_config) as node:
        first = await submit(node, "same-key")
        again = await submit(node, "same-key")
        assert again.duplicate and again.alert_id == first.alert_id and not first.duplicate
    async with running_node(node_config) as node2:  # same data dir, fresh node state
        third = await submit(node2, "same-key")
        assert third.duplicate and third.alert_id == first.alert_id
        fresh = await submit(node2, "other-key")
        assert fresh.alert_id == first.alert_id + 1


async def test_presence_follow_and_who_online(node_config: Config) -> None:
    async with running_node(node_config) as node:
        alice = await register_officer(node, "alice")
        bob = await register_officer(node, "bob")
        async with open_officer(alice, device="phone", heartbeat_s=0.1) as a:
            now = await a.follow(["bob"])
            assert now == []
            async with open_officer(bob, device="desk", heartbeat_s=0.1) as b:
                with anyio.fail_after(5):
                    e = await a.next_presence()
                assert (e.officer, e.device, e.state) == ("bob", "desk",
                                                          wire.PresenceState.ONLINE)
                online = {(x.officer, x.device) for x in await b.who_online()
                          if x.state is wire.PresenceState.ONLINE}
                assert online == {("alice", "phone"), ("bob", "desk")}
            with anyio.fail_after(5):
                e = await a.next_presence()
            assert e.state is wire.PresenceState.OFFLINE and e.officer == "bob"


async def test_silent_device_goes_offline_and_reattaches(node_config: Config) -> None:
    async with running_node(node_config) as node:
        key = await register_officer(node, "alice")
        async with open_officer(key, device="phone", heartbeat_s=5.0) as c:
            # no heartbeat within offline_after_ms (0.8 s): the node drops the session
            await wait_until(lambda: not node.desk.sessions(), what="session expired")
            assert node.desk.presence.state("alice", "phone") is wire.PresenceState.OFFLINE
            await submit(node, "while-away")
            with pytest.raises(RemoteError, match="NOT_ATTACHED"):
                await c._request(wire.Heartbeat(V, c._conn.next_rid()), wire.HeartbeatAck)
            await c.attach()
            (g,) = await take(c, 1)
            assert g.alert.title == "alert while-away"


async def test_failed_journal_commit_stops_the_node(node_config: Config) -> None:
    node = Node(node_config, out=io.StringIO(), handle_signals=False)

    def broken() -> None:
        raise OSError(5, "Input/output error")

    with pytest.RaisesGroup(pytest.RaisesExc(Exception, match="journal commit failed"),
                            flatten_subgroups=True, allow_unwrapped=True):
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)
            node.journal._commit = broken  # type: ignore[method-assign]
            async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
                reply = await conn.request(wire.AlertSubmit(V, 1, "k", wire.Severity.HIGH, 1,
                                                            "t"), timeout=3)
                pytest.fail(f"a submit was answered without a commit: {reply!r}")


async def test_open_alerts_for_a_restarted_app(node_config: Config) -> None:
    async with running_node(node_config) as node:
        key = await register_officer(node, "alice")
        ids = [(await submit(node, f"o{i}", recipients=("alice",))).alert_id for i in range(4)]
        async with open_officer(key, device="phone") as c:
            await take(c, 4)
            assert await c.acknowledge(ids[1])
            assert await c.mark_read(ids[2])
        # a new app on another device has seen nothing, but the open alerts are listed
        async with open_officer(key, device="tablet", cursors=[0, 0, 0, 0]) as c:
            still_open = await c.open_alerts()
        assert [(a.alert_id, lv) for a, lv in still_open] == [
            (ids[3], None), (ids[2], wire.AckLevel.READ), (ids[0], None)]
