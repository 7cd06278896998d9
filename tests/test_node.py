"""A node over real sockets: bad input on every endpoint gets a typed error and a counter,
and the node goes on serving the next good request."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest
from nodeutil import curve_keys_for, register_officer, running_node, wait_until

from gateway import wire
from gateway.client import open_officer
from gateway.codec import Endpoint
from gateway.config import Config
from gateway.errors import ErrorCode
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio

TX = wire.Transaction("tx-1", 42, 7, 125_00, "EUR", wire.Channel.CARD, 5411, "dev-1",
                      "10.0.0.1", "DE", "Berlin", 1_700_000_000_000)


def enc(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


BAD_INPUTS = [
    pytest.param([b"\xc1\xff\x00garbage"], ErrorCode.MALFORMED, id="garbage"),
    pytest.param([b""], ErrorCode.EMPTY_MESSAGE, id="empty"),
    pytest.param([enc(["ping", 1, 1]), b"second", b"third", b"fourth"],
                 ErrorCode.TOO_MANY_FRAMES, id="too-many-frames"),
    pytest.param([enc(["transfer_all_funds", 1, 1])], ErrorCode.UNKNOWN_TYPE, id="unknown-type"),
    pytest.param([enc(["ping", 9, 1])], ErrorCode.UNSUPPORTED_VERSION, id="wrong-version"),
]


async def _error_then_ping(url: str, frames: list[bytes],
                           curve_keys: tuple[bytes, bytes, bytes] | None) -> tuple[Any, Any]:
    """Send ``frames``; return the unsolicited-looking error reply and a later ping's reply."""
    refused: list[Any] = []
    async with open_dealer(url, on_unmatched=refused.append, curve_keys=curve_keys) as conn:
        conn.send_raw_nowait(frames)
        await wait_until(lambda: bool(refused), what="error reply")
        pong = await conn.request(wire.Ping(wire.PROTOCOL_VERSION, 1000), timeout=5)
    return refused[0], pong


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize(("frames", "code"), BAD_INPUTS)
async def test_bad_input_gets_typed_error_and_counter(node_config: Config, endpoint: Endpoint,
                                                      frames: list[bytes],
                                                      code: ErrorCode) -> None:
    async with running_node(node_config) as node:
        url = node.urls[endpoint]
        error, pong = await _error_then_ping(url, frames, await curve_keys_for(node, endpoint))
        assert isinstance(error, wire.Error)
        assert error.code == int(code) and error.name == code.name
        assert isinstance(pong, wire.Pong) and pong.node == "test-node"
        counter = f"{endpoint.value}_errors.{code.name}"
        # the native ingest publishes its counters every 0.1 s
        await wait_until(lambda: node.counters.get(counter) == 1, what=counter)


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_oversized_frame_disconnects_and_is_counted(node_config: Config,
                                                          endpoint: Endpoint) -> None:
    async with running_node(node_config) as node:
        url = node.urls[endpoint]
        async with open_dealer(url, curve_keys=await curve_keys_for(node, endpoint)) as conn:
            pong = await conn.request(wire.Ping(1, conn.next_rid()))
            assert isinstance(pong, wire.Pong)
            conn.send_raw_nowait([b"\x00" * (wire.MAX_FRAME_BYTES + 1)])
            counter = f"{endpoint.value}_peers_disconnected"
            await wait_until(lambda: node.counters.get(counter) >= 1, what=counter)
            # the DEALER reconnects by itself and the next good request is served
            pong = await conn.request(wire.Ping(1, conn.next_rid()), timeout=10)
            assert isinstance(pong, wire.Pong)


async def test_score_request_and_status(node_config: Config) -> None:
    async with running_node(node_config) as node:
        async with open_dealer(node.urls[Endpoint.INGEST]) as conn:
            reply = await conn.request(wire.ScoreRequest(1, 5, [TX, TX]))
        assert isinstance(reply, wire.ScoreReply) and reply.rid == 5
        assert [d.tx_id for d in reply.decisions] == ["tx-1", "tx-1"]
        assert all(d.ruleset_version == node.engine.info.version for d in reply.decisions)
        async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
            status = await conn.request(wire.StatusRequest(1, 6))
        assert isinstance(status, wire.StatusReply)
        assert status.counters["decisions"] == 2
        assert status.info["node"] == "test-node"
        assert status.info["endpoint.ingest"] == node.urls[Endpoint.INGEST]


async def test_wrong_endpoint_is_refused(node_config: Config) -> None:
    async with running_node(node_config) as node:
        keys = await curve_keys_for(node, Endpoint.CLIENTS)
        async with open_dealer(node.urls[Endpoint.CLIENTS], curve_keys=keys) as conn:
            reply = await conn.request(wire.ScoreRequest(1, 8, [TX]))
        assert isinstance(reply, wire.Error) and reply.name == "WRONG_ENDPOINT"
        assert node.counters.get("clients_errors.WRONG_ENDPOINT") == 1


async def test_officer_receives_alert_pushes(node_config: Config) -> None:
    async with running_node(node_config) as node:
        key = await register_officer(node, "alice")
        async with open_officer(key, device="phone") as officer:
            assert officer.officer == "alice"
            blocked = wire.Transaction("tx-fraud", 99, 7, 9_900_000_00, "EUR",
                                       wire.Channel.WEB, 4829, "new-dev", "198.51.100.1", "NG",
                                       "Lagos", 1_700_000_000_000)
            async with open_dealer(node.urls[Endpoint.INGEST]) as producer:
                reply = await producer.request(wire.ScoreRequest(1, 2, [blocked]))
            decision = reply.decisions[0]
            assert decision.outcome is not wire.Outcome.ALLOW
            with anyio.fail_after(5):
                push = await officer.next()
        assert isinstance(push, wire.AlertPush) and push.seq == 1
        alert = push.alert
        assert alert.decision == decision and alert.account == 99 and alert.kind == "decision"
        assert alert.tx is not None and alert.tx.tx_id == "tx-fraud"
        assert alert.rules and all(r.id in decision.fired for r in alert.rules)
        assert alert.actions
