"""Regional nodes in one process over real sockets: forwarding (native and Python ingest),
mixed batches in order, trusted-data placement, unknown peers, directory mismatch and the
partition policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fabricutil import FAST, account, fabric_configs, fake_peer, running, tx
from nodeutil import running_node, wait_until

from gateway import wire
from gateway.auth import load_or_create_server_keys
from gateway.codec import Endpoint
from gateway.config import Config
from gateway.errors import ErrorCode
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio

@pytest.mark.parametrize("mode", ["native", "python"])
async def test_mixed_batch_is_forwarded_and_answered_in_order(tmp_path: Path,
                                                              mode: str) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us", "ap"], mode=mode, **FAST)
    async with running(configs) as nodes:
        homes = ["eu", "us", "eu", "ap", "us", "ap", "eu"]
        txs = [tx(i, account(h, i)) for i, h in enumerate(homes)]
        async with open_dealer(nodes["eu"].urls[Endpoint.INGEST]) as conn:
            reply = await conn.request(wire.ScoreRequest(1, 77, txs))
            assert isinstance(reply, wire.ScoreReply) and reply.rid == 77
            assert [d.tx_id for d in reply.decisions] == [t.tx_id for t in txs]
            # all local and all foreign requests too
            local = await conn.request(wire.ScoreRequest(1, 78, [tx(100, account("eu", 5))]))
            foreign = await conn.request(wire.ScoreRequest(1, 79, [tx(101, account("us", 5))]))
        assert isinstance(local, wire.ScoreReply) and isinstance(foreign, wire.ScoreReply)
        assert foreign.decisions[0].tx_id == "tx-101"
        eu, us, ap = (nodes[r].counters for r in ("eu", "us", "ap"))
        assert eu.get("fabric_forwarded_requests") == 2
        assert eu.get("fabric_forwarded_txs") == 5
        await wait_until(lambda: us.get("fabric_peer_txs") == 3 and ap.get(
            "fabric_peer_txs") == 2, what="home counters")
        if mode == "native":  # the eu thread scored its own three only
            await wait_until(lambda: eu.get("fabric_native_completed_local") == 3,
                             what="native counters")


async def test_trusted_update_reaches_the_home_node_only(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    async with running(configs) as nodes:
        async with open_dealer(nodes["eu"].urls[Endpoint.SERVICES]) as conn:
            upd = await conn.request(wire.TrustedUpdate(1, 1, [
                wire.TrustedEntry(account("eu", 1), 3), wire.TrustedEntry(account("us", 1), 4),
                wire.TrustedEntry(account("us", 2), 5), wire.TrustedEntry(account("us", 2), 0),
            ]))
            assert upd == wire.TrustedUpdated(1, 1, 1, 3)
            levels = await conn.request(wire.TrustedGet(1, 2, [account("eu", 1),
                                                              account("us", 1)]))
            assert levels.levels == [3, -1]  # nothing of the us account is kept at eu
        us = nodes["us"]
        await wait_until(lambda: us.counters.get("fabric_trusted_applied") >= 2,
                         what="placement applied")
        async with open_dealer(us.urls[Endpoint.SERVICES]) as conn:
            levels = await conn.request(wire.TrustedGet(1, 3, [account("us", 1),
                                                              account("us", 2),
                                                              account("eu", 1)]))
        assert levels.levels == [4, 0, -1]
        await wait_until(lambda: nodes["eu"].fabric is not None
                         and nodes["eu"].fabric.store.outbox_sizes() == {}, what="outbox empty")
        # a transaction of the trusted us account, sent to eu, is scored as trusted at us
        async with open_dealer(nodes["eu"].urls[Endpoint.INGEST]) as conn:
            reply = await conn.request(wire.ScoreRequest(1, 4, [tx(1, account("us", 1))]))
        assert "GOOD-TRUSTED-SMALL" in reply.decisions[0].fired


async def test_trusted_file_is_placed_at_the_homes_and_a_bad_one_refused(
        tmp_path: Path) -> None:
    """`gateway trusted load` at a node of a fabric: the file is read off the event loop,
    each line placed as trusted_update places it; a bad file is refused, nothing applied."""
    good = tmp_path / "trusted.csv"
    good.write_text(f"# account,tier_level\n{account('eu', 1)},3\n{account('us', 1)},4\n"
                    f"{account('us', 2)},5\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{account('eu', 2)},2\nnot-an-account,1\n")
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    async with running(configs) as nodes:
        eu, us = nodes["eu"], nodes["us"]
        async with open_dealer(eu.urls[Endpoint.SERVICES]) as conn:
            assert await conn.request(wire.TrustedLoad(1, 1, str(good))) == (
                wire.TrustedUpdated(1, 1, 1, 2))
            refused = await conn.request(wire.TrustedLoad(1, 2, str(bad)))
            assert isinstance(refused, wire.Error) and refused.name == "INVALID"
            assert "bad.csv" in refused.message and "line 2" in refused.message
            missing = await conn.request(wire.TrustedLoad(1, 3, str(tmp_path / "none.csv")))
            assert isinstance(missing, wire.Error) and missing.name == "INVALID"
            levels = await conn.request(wire.TrustedGet(1, 4, [account("eu", 1),
                                                              account("eu", 2)]))
            assert levels.levels == [3, 0]  # nothing of the bad file
        await wait_until(lambda: us.counters.get("fabric_trusted_applied") >= 2,
                         what="placement applied")
        async with open_dealer(us.urls[Endpoint.SERVICES]) as conn:
            levels = await conn.request(wire.TrustedGet(1, 5, [account("us", 1),
                                                              account("us", 2)]))
        assert levels.levels == [4, 5]


async def test_unknown_peer_and_directory_mismatch_are_refused(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    async with running_node(configs["eu"]) as eu:  # the fake peer below plays "us"
        assert eu.fabric is not None
        fp = eu.fabric.directory.fingerprint
        us_keys = load_or_create_server_keys(Path(configs["us"].node.data_dir))
        curve = (us_keys.public, us_keys.secret, eu.server_keys.public)
        async with fake_peer(eu.fabric.url, curve=curve) as peer:
            replies = [await peer.request(m) for m in (
                wire.Ping(1, 1),
                wire.FabricHello(1, 2, "xx", "intruder", 5, fp),
                wire.FabricHello(1, 3, "us", "us-2", 5, "0" * 32),
                wire.ScoreRequest(1, 4, [tx(0, account("eu", 0))]))]
            assert [(r.rid, r.name) for r in replies] == [
                (1, "UNKNOWN_PEER"), (2, "UNKNOWN_PEER"), (3, "DIRECTORY_MISMATCH"),
                (4, "UNKNOWN_PEER")]
            assert eu.counters.get("fabric_errors.UNKNOWN_PEER") == 3
            assert eu.counters.get("fabric_errors.DIRECTORY_MISMATCH") == 1
            # once welcomed: bad input gets typed errors too
            welcome = await peer.request(wire.FabricHello(1, 9, "us", "us-2", 5, fp))
            assert isinstance(welcome, wire.FabricWelcome) and welcome.region == "eu"
            wrong = await peer.request(wire.ScoreRequest(1, 10, [tx(0, account("us", 0))]))
            assert wrong.name == "WRONG_REGION"
            bad = await peer.request(wire.TrustPut(1, 11, 1, 5, 3, False, []))
            assert bad.name == "MALFORMED"
            peer.owner.send((b"\x93\xa4junk\x01\x0c",))  # ["junk", 1, 12]
            assert isinstance(await peer.request(wire.Ping(1, 13)), wire.Pong)
            assert peer.replies[12].name == "UNKNOWN_TYPE"
            scored = await peer.request(wire.ScoreRequest(1, 14, [tx(1, account("eu", 1))]))
            assert isinstance(scored, wire.ScoreReply)
            again = await peer.request(wire.ScoreRequest(1, 14, [tx(1, account("eu", 1))]))
            assert again == scored  # a repeated forward is answered from the record
        assert eu.counters.get("fabric_errors.WRONG_REGION") == 1
        assert eu.counters.get("fabric_errors.UNKNOWN_TYPE") == 1
        assert eu.counters.get("fabric_peer_txs") == 1
        assert eu.counters.get("fabric_peer_repeats.replayed") == 1


async def test_dead_link_is_detected_and_heals(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    async with running_node(configs["eu"]) as eu:
        fabric = eu.fabric
        assert fabric is not None
        async with running_node(configs["us"]):
            await wait_until(lambda: fabric.is_up("us"), timeout=10, what="link up")
        await wait_until(lambda: not fabric.is_up("us"), timeout=5, what="link down")
        assert eu.counters.get("fabric_link_down.us") == 1
        async with open_dealer(eu.urls[Endpoint.INGEST]) as conn:
            reply = await conn.request(wire.ScoreRequest(1, 3, [tx(0, account("us", 0))]))
        assert isinstance(reply, wire.Error) and reply.name == "REGION_UNAVAILABLE"
        async with running_node(configs["us"]):
            await wait_until(lambda: fabric.is_up("us"), timeout=10, what="link healed")
            async with open_dealer(eu.urls[Endpoint.INGEST]) as conn:
                reply = await conn.request(wire.ScoreRequest(1, 4, [tx(0, account("us", 0))]))
            assert isinstance(reply, wire.ScoreReply)


@pytest.mark.parametrize("policy", ["error", "busy", "queue"])
async def test_partition_policies(tmp_path: Path, policy: str) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], on_partition=policy, queue_ms=5000,
                             **FAST)
    async with running_node(configs["eu"]) as eu:
        assert eu.fabric is not None
        async with open_dealer(eu.urls[Endpoint.INGEST]) as conn:
            t0 = anyio.current_time()
            req = wire.ScoreRequest(1, 5, [tx(0, account("eu", 0)), tx(1, account("us", 0))])
            if policy != "queue":
                reply = await conn.request(req)
                if policy == "error":
                    assert isinstance(reply, wire.Error) and reply.rid == 5
                    assert reply.code == ErrorCode.REGION_UNAVAILABLE
                else:
                    assert isinstance(reply, wire.Busy) and reply.rid == 5
                # nothing was applied at eu: no decision was counted
                assert eu.counters.get("decisions") == 0
                return
            async with anyio.create_task_group() as tg:
                got: list[Any] = []

                async def ask() -> None:
                    got.append(await conn.request(req, timeout=10))

                tg.start_soon(ask)
                await wait_until(lambda: eu.fabric is not None and eu.fabric.forwards.queued
                                 == 1, what="queued")
                async with running_node(configs["us"]):  # the us node comes up: healed
                    await wait_until(lambda: bool(got), timeout=10, what="answer")
            assert isinstance(got[0], wire.ScoreReply)
            assert [d.tx_id for d in got[0].decisions] == ["tx-0", "tx-1"]
            assert anyio.current_time() - t0 < 10


@pytest.mark.parametrize("mode", ["native", "python"])
async def test_account_without_home_is_refused_and_nothing_applied(tmp_path: Path,
                                                                  mode: str) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], mode=mode, **FAST)
    async with running(configs) as nodes:
        eu = nodes["eu"]
        async with open_dealer(eu.urls[Endpoint.INGEST]) as conn:
            reply = await conn.request(wire.ScoreRequest(1, 6, [tx(0, account("eu", 0)),
                                                                tx(1, 5_000_000)]))
        assert isinstance(reply, wire.Error) and reply.rid == 6
        assert reply.code == ErrorCode.INVALID and "no home region" in reply.message
        await wait_until(lambda: eu.counters.get("ingest_errors.INVALID") == 1,
                         what="INVALID counted")
        assert eu.counters.get("decisions") == 0


async def test_frame_errors_on_the_fabric_endpoint(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, ["eu", "us"], **FAST)
    async with running(configs) as nodes:
        eu = nodes["eu"]
        assert eu.fabric is not None
        us_keys = load_or_create_server_keys(Path(configs["us"].node.data_dir))
        curve = (us_keys.public, us_keys.secret, eu.server_keys.public)
        async with fake_peer(eu.fabric.url, curve=curve) as peer:
            for frames, name in (([b""], "EMPTY_MESSAGE"),
                                 ([b"\x93\xa4ping\x01\x01", b"x", b"y"], "TOO_MANY_FRAMES"),
                                 ([b"\xc1"], "MALFORMED")):
                peer.owner.send(frames)
                assert isinstance(await peer.request(wire.Ping(1, 50)), wire.Error)
                err = peer.replies.pop(0)
                assert err.name == name
                assert eu.counters.get(f"fabric_errors.{name}") == 1


async def test_trusted_update_needs_a_fabric(node_config: Config) -> None:
    async with running_node(node_config) as node:
        async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
            reply = await conn.request(wire.TrustedUpdate(1, 1, [wire.TrustedEntry(5, 1)]))
        assert isinstance(reply, wire.Error) and reply.name == "INVALID"
        assert "no fabric" in reply.message
        assert node.counters.get("services_errors.INVALID") == 1
