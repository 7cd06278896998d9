"""Cross-region alerts with nodes in one process over real sockets: an alert raised at eu
reaches an officer attached to us with its content and origin; recipients at us; a repeated
relay is a duplicate, not a second alert; bad relays get typed errors."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from fabricutil import FAST, fabric_configs, fake_peer, running, tx
from nodeutil import register_officer, running_node, wait_until

from gateway import wire
from gateway.auth import load_or_create_server_keys
from gateway.client import open_officer
from gateway.codec import Endpoint
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio

async def next_alert(client: object, timeout: float = 5.0) -> wire.AlertPush:
    with anyio.fail_after(timeout):
        while True:
            item = await client.next()  # type: ignore[attr-defined]
            if isinstance(item, wire.AlertPush):
                return item


async def test_alert_raised_at_eu_reaches_an_officer_at_us(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], relay_alerts=["us"], **FAST)
    async with running(configs) as nodes:
        eu, us = nodes["eu"], nodes["us"]
        bob = await register_officer(us, "bob")
        await register_officer(us, "carol")  # an officer at us that is not named below
        await register_officer(eu, "alice")
        async with open_officer(bob, device="phone") as client, \
                open_dealer(eu.urls[Endpoint.SERVICES]) as svc:
            # a decision alert of an account homed at eu (block: amount far over baseline)
            big = tx(1, 5, amount=9_000_000_00)
            async with open_dealer(eu.urls[Endpoint.INGEST]) as ingest:
                scored = await ingest.request(wire.ScoreRequest(1, 1, [big]))
            assert scored.decisions[0].outcome is not wire.Outcome.ALLOW
            first = (await next_alert(client)).alert
            assert first.kind == "decision" and first.origin_region == "eu"
            assert first.tx is not None and first.tx.tx_id == "tx-1" and first.rules
            assert first.profile is not None
            assert first.source == "node-eu"
            # a submitted alert, named for bob (who exists at us) and alice (who does not)
            accepted = await svc.request(wire.AlertSubmit(
                1, 2, "k-1", wire.Severity.CRITICAL, 42, "card testing", {"why": "burst"},
                ["alice", "bob"]))
            assert isinstance(accepted, wire.AlertAccepted)
            push = await next_alert(client)
            got = push.alert
            assert push.lane == wire.Lane.CRITICAL
            assert (got.origin_region, got.origin_alert_id) == ("eu", accepted.alert_id)
            assert (got.title, got.details, got.account) == ("card testing", {"why": "burst"},
                                                            42)
            # at us it is a journaled alert of its own, for bob only (named, exists here)
            row = us.store.db.execute("SELECT key, recipients FROM alerts WHERE alert_id = ?",
                                      (got.alert_id,)).fetchone()
            assert tuple(row) == (f"relay:eu:{accepted.alert_id}", "bob")
        assert us.counters.get("fabric_relay_in.eu") == 2
        await wait_until(lambda: eu.counters.get("fabric_relay_acked.us") == 2,
                         what="acknowledged")
        # us relays nothing back (not configured), eu never relays a relayed alert
        assert us.counters.get("fabric_relay_sent.eu") == 0
        # the reserved key prefix cannot be submitted
        async with open_dealer(us.urls[Endpoint.SERVICES]) as svc:
            refused = await svc.request(wire.AlertSubmit(1, 3, "relay:eu:1",
                                                         wire.Severity.LOW, 1, "x"))
        assert isinstance(refused, wire.Error) and refused.name == "INVALID"


async def test_repeated_relay_is_a_duplicate_and_bad_relays_are_refused(
        tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    async with running_node(configs["us"]) as us:  # the fake peer plays eu
        assert us.fabric is not None
        eu_keys = load_or_create_server_keys(Path(configs["eu"].node.data_dir))
        fp = us.fabric.directory.fingerprint
        alert = wire.Alert(7, wire.Severity.HIGH, "submitted", 9, "t", 1, 1, "node-eu")
        relay = wire.AlertRelay(1, 2, 1, [wire.RelayedAlert(7, [], alert)])
        async with fake_peer(us.fabric.url, curve=(eu_keys.public, eu_keys.secret,
                                                   us.server_keys.public)) as peer:
            before = await peer.request(relay)  # before the hello
            assert isinstance(before, wire.Error) and before.name == "UNKNOWN_PEER"
            assert isinstance(await peer.request(wire.FabricHello(1, 1, "eu", "e", 5, fp)),
                              wire.FabricWelcome)
            first = await peer.request(relay)
            again = await peer.request(wire.AlertRelay(1, 3, 1, [
                wire.RelayedAlert(7, [], alert), wire.RelayedAlert(8, [], alert)]))
            assert first == wire.AlertRelayed(1, 2, 1, 7)
            assert again == wire.AlertRelayed(1, 3, 1, 8)
            for rid, bad in ((4, wire.AlertRelay(1, 4, 0, [wire.RelayedAlert(9, [], alert)])),
                             (5, wire.AlertRelay(1, 5, 1, [wire.RelayedAlert(9, [], alert),
                                                          wire.RelayedAlert(9, [], alert)])),
                             (6, wire.AlertRelay(1, 6, 1, [wire.RelayedAlert(9, ["a b"],
                                                                             alert)]))):
                err = await peer.request(bad)
                assert isinstance(err, wire.Error) and err.name == "MALFORMED", (rid, err)
            peer.owner.send((b"\x94\xabalert_relay\x01\x07\x05",))  # lane out of range
            assert isinstance(await peer.request(wire.Ping(1, 8)), wire.Pong)
            assert peer.replies.pop(7).name == "MALFORMED"
        c = us.counters
        assert c.get("fabric_relay_in.eu") == 2  # 7 and 8, once each
        assert c.get("fabric_relay_in_duplicates") == 1
        assert c.get("fabric_errors.MALFORMED") == 4
        keys = [r[0] for r in us.store.db.execute("SELECT key FROM alerts ORDER BY alert_id")]
        assert keys == ["relay:eu:7", "relay:eu:8"]


async def test_a_relay_that_continues_after_a_missing_one_is_refused(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    async with running_node(configs["us"]) as us:  # the fake peer plays eu
        assert us.fabric is not None
        eu_keys = load_or_create_server_keys(Path(configs["eu"].node.data_dir))
        fp = us.fabric.directory.fingerprint

        def relay(rid: int, alert_id: int, after: int) -> wire.AlertRelay:
            alert = wire.Alert(alert_id, wire.Severity.HIGH, "submitted", 9, "t", 1, 1,
                               "node-eu")
            return wire.AlertRelay(1, rid, 1, [wire.RelayedAlert(alert_id, [], alert)], after)

        async with fake_peer(us.fabric.url, curve=(eu_keys.public, eu_keys.secret,
                                                   us.server_keys.public)) as peer:
            assert isinstance(await peer.request(wire.FabricHello(1, 1, "eu", "e", 5, fp)),
                              wire.FabricWelcome)
            assert await peer.request(relay(2, 7, 0)) == wire.AlertRelayed(1, 2, 1, 7)
            gap = await peer.request(relay(3, 9, 8))  # 8 never arrived
            assert isinstance(gap, wire.Error) and gap.name == "RELAY_GAP"
            assert await peer.request(relay(4, 8, 7)) == wire.AlertRelayed(1, 4, 1, 8)
            assert await peer.request(relay(5, 9, 8)) == wire.AlertRelayed(1, 5, 1, 9)
            assert await peer.request(relay(6, 8, 7)) == wire.AlertRelayed(1, 6, 1, 8)
        c = us.counters
        assert c.get("fabric_relay_in_gaps") == 1 and c.get("fabric_errors.RELAY_GAP") == 1
        assert c.get("fabric_relay_in.eu") == 3 and c.get("fabric_relay_in_duplicates") == 1
        keys = [r[0] for r in us.store.db.execute("SELECT key FROM alerts ORDER BY alert_id")]
        assert keys == ["relay:eu:7", "relay:eu:8", "relay:eu:9"]
