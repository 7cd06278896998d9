"""Fabric peers authenticated with CURVE: a peer's key names its region (ZAP on the fabric
endpoint, domain "fabric"); plain peers, unknown keys and a key of another region than the
hello claims are refused and counted; the config rules of fabric.curve and peer_keys; and
`gateway keys server`."""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest
from fabricutil import fabric_configs, fake_peer
from nodeutil import running_node, wait_until

from gateway import wire
from gateway.auth import load_or_create_server_keys, new_keypair
from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError

pytestmark = pytest.mark.anyio

FAST = {"heartbeat_ms": 100, "dead_after_ms": 300}


async def test_plain_unknown_and_wrong_region_peers_are_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us", "ap"], **FAST)
    async with running_node(configs["eu"]) as eu:  # us and ap are played by fake peers
        fabric = eu.fabric
        assert fabric is not None and fabric.curve
        assert eu.status_info()["fabric.auth"] == "curve"
        c = eu.counters
        fp = fabric.directory.fingerprint
        hello = wire.FabricHello(1, 1, "us", "us-1", 5, fp)
        # no CURVE at all: the handshake fails, nothing is served
        async with fake_peer(fabric.url) as plain:
            plain.owner.send((plain.codec.encode(hello),))
            await wait_until(lambda: c.get("fabric_peers_handshake_failed") >= 1,
                             what="plain peer refused")
            assert not plain.replies
        # a key the node does not know: refused by ZAP at every attempt, logged once
        public, secret = new_keypair()
        caplog.set_level(logging.WARNING, logger="gateway.fabric_node")
        for attempt in (1, 2):
            async with fake_peer(fabric.url, curve=(public, secret,
                                                    eu.server_keys.public)) as stranger:
                stranger.owner.send((stranger.codec.encode(hello),))
                await wait_until(lambda n=attempt: c.get("fabric_auth_refused.unknown") >= n
                                 and c.get("fabric_peers_auth_failed") >= n,
                                 what="unknown key refused")
                assert not stranger.replies
        refusals = [r for r in caplog.records if public in r.getMessage()]
        assert len(refusals) == 1  # at most once a minute per key
        # and kept in the journal, as often
        def journaled() -> list[object]:
            return [msgspec.msgpack.decode(b) for b, in eu.store.db.execute(
                "SELECT body FROM journal WHERE kind = 'fabric_auth_refused'")]
        await wait_until(lambda: journaled() != [], what="refusal journaled")
        (event,) = journaled()
        assert isinstance(event, list) and event[1:] == [public, "unknown key"]
        # ap's key claiming to be us: refused with UNKNOWN_PEER, then accepted as ap
        ap = load_or_create_server_keys(Path(configs["ap"].node.data_dir))
        async with fake_peer(fabric.url, curve=(ap.public, ap.secret,
                                                eu.server_keys.public)) as liar:
            refused = await liar.request(hello)
            assert isinstance(refused, wire.Error) and refused.name == "UNKNOWN_PEER"
            assert "cannot speak for 'us'" in refused.message
            assert c.get("fabric_auth_region_mismatch") == 1
            assert c.get("fabric_errors.UNKNOWN_PEER") == 1
            still = await liar.request(wire.Ping(1, 2))
            assert isinstance(still, wire.Error) and still.name == "UNKNOWN_PEER"
            welcome = await liar.request(wire.FabricHello(1, 3, "ap", "ap-1", 5, fp))
            assert isinstance(welcome, wire.FabricWelcome)
            assert isinstance(await liar.request(wire.Ping(1, 4)), wire.Pong)
        assert c.get("fabric_auth_ok") >= 1
        assert c.get("fabric_hellos.ap") == 1 and c.get("fabric_hellos.us") == 0


async def test_a_node_with_a_wrong_key_for_its_peer_never_links(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    configs["eu"].fabric.peer_keys["us"] = new_keypair()[0]  # not us's key
    async with running_node(configs["us"]) as us, running_node(configs["eu"]) as eu:
        assert us.fabric is not None and eu.fabric is not None
        # eu's DEALER cannot complete the handshake with us (wrong server key), and eu's
        # ZAP refuses us's DEALER (its key is not the one eu has for us): no link comes up
        await wait_until(lambda: us.counters.get("fabric_peers_handshake_failed") >= 1
                         and eu.counters.get("fabric_auth_refused.unknown") >= 1,
                         timeout=10, what="both handshakes fail")
        assert not eu.fabric.is_up("us") and not us.fabric.is_up("eu")
        # and each side's DEALER counts its own failed handshakes with that peer
        await wait_until(lambda: eu.counters.get("fabric_dealer_handshake_failed.us")
                         + eu.counters.get("fabric_dealer_auth_failed.us") >= 1
                         and us.counters.get("fabric_dealer_auth_failed.eu")
                         + us.counters.get("fabric_dealer_handshake_failed.eu") >= 1,
                         timeout=10, what="dealer handshakes counted")
        assert us.counters.get("fabric_hellos.eu") == 0
        assert eu.counters.get("fabric_hellos.us") == 0


async def test_plain_fabric_for_loopback_development(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.fabric_node")
    configs = fabric_configs(tmp_path, ["eu", "us"], curve=False, **FAST)
    async with running_node(configs["eu"]) as eu, running_node(configs["us"]):
        assert eu.fabric is not None and not eu.fabric.curve
        await wait_until(lambda: eu.fabric is not None and eu.fabric.is_up("us"), timeout=10,
                         what="plain link up")
        assert eu.status_info()["fabric.auth"].startswith("none")
    assert any("NOT authenticated" in r.getMessage() for r in caplog.records)


def _config(tmp: Path, fabric: str) -> Path:
    p = tmp / "node.toml"
    p.write_text(f'[node]\nregion = "eu"\ndata_dir = "{tmp / "d"}"\n\n[fabric]\n'
                 f'bind = "tcp://127.0.0.1:7999"\n'
                 f'peers = {{ us = "tcp://127.0.0.1:1", ap = "tcp://127.0.0.1:2" }}\n{fabric}')
    return p


K1, K2 = new_keypair()[0], new_keypair()[0]


@pytest.mark.parametrize(("fabric", "key", "reason"), [
    (f'peer_keys = {{ us = "{K1}" }}\n', "fabric.peer_keys.ap", "missing"),
    ('curve = true\n', "fabric.peer_keys.ap", "missing"),
    (f'peer_keys = {{ us = "{K1}", ap = "{K1}" }}\n', "fabric.peer_keys.us", "the same key"),
    (f'peer_keys = {{ us = "{K1}", ap = "{K2}", xx = "{K2}" }}\n', "fabric.peer_keys.xx",
     "not a peer"),
    ('peer_keys = { us = "short" }\n', "fabric.peer_keys.us", "not a Z85"),
    ('relay_alerts = ["xx"]\n', "fabric.relay_alerts[0]", "not a peer"),
    ('relay_alerts = ["*", "us"]\n', "fabric.relay_alerts[0]", "stands alone"),
])
def test_bad_key_config_is_refused(tmp_path: Path, fabric: str, key: str,
                                   reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, fabric))
    assert exc.value.key == key and reason in str(exc.value)


def test_curve_default(tmp_path: Path) -> None:
    from gateway.fabric import fabric_curve, relay_regions

    plain = load_config(_config(tmp_path, ""))
    assert not fabric_curve(plain.fabric)  # no keys: plain, with a warning at start
    keyed = load_config(_config(tmp_path, f'peer_keys = {{ us = "{K1}", ap = "{K2}" }}\n'
                                          'relay_alerts = ["*"]\n'))
    assert fabric_curve(keyed.fabric) and relay_regions(keyed.fabric) == ("ap", "us")
    off = load_config(_config(tmp_path, f'curve = false\npeer_keys = {{ us = "{K1}" }}\n'))
    assert not fabric_curve(off.fabric)


def test_keys_server_prints_the_nodes_key(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, "")
    assert main(["keys", "server", "--config", str(cfg)]) == 0  # made on first use
    first = capsys.readouterr().out.strip()
    assert main(["keys", "server", "--config", str(cfg), "--toml"]) == 0
    assert capsys.readouterr().out.strip() == f'eu = "{first}"'
    assert load_or_create_server_keys(tmp_path / "d").public == first
    assert main(["keys", "server", "--data-dir", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.strip() == first
    with pytest.raises(SystemExit):
        main(["keys", "server", "--help"])
    assert "peer_keys" in capsys.readouterr().out
