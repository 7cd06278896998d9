"""Cross-region alerts between node processes: alerts submitted at eu reach an officer
attached to us exactly once and in order, through a cut of the eu-us link (link proxy),
a kill -9 of us and a kill -9 of eu, each while alerts are being submitted. The checker
counts lost, duplicated and out-of-order alerts, as the delivery soak does."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from fabricutil import fabric_configs
from procutil import NodeProcess

from gateway import wire
from gateway.auth import OfficerKey, new_keypair
from gateway.client import open_officer
from gateway.errors import GatewayError
from gateway.linkproxy import LinkProxy
from gateway.ports import listen_port
from gateway.transport import DealerConnection, open_dealer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REGIONS = ["eu", "us", "ap"]


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})  # the nodes run in their own processes


async def until(predicate: Any, *, timeout: float = 15.0, what: str = "") -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def blocking(func: Any, *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs))


def check_exactly_once(accepted: list[int], received: list[int]) -> None:
    """Every accepted alert arrived once (no loss, no duplicate), in the origin's order."""
    want = sorted(set(accepted))
    lost = sorted(set(want) - set(received))
    dups = len(received) - len(set(received))
    out_of_order = sum(1 for a, b in itertools.pairwise(received) if b <= a)
    assert (lost, dups, out_of_order) == ([], 0, 0), (
        f"lost {lost[:10]}, duplicates {dups}, out of order {out_of_order}")
    assert received == want


class Submitter:
    """Submits alerts at eu one after another; each key is retried until accepted (the
    idempotency key makes a retry of an alert eu already journaled answer its id)."""

    def __init__(self, conn: DealerConnection) -> None:
        self.conn = conn
        self.accepted: dict[str, int] = {}
        self.n = 0

    async def one(self) -> None:
        self.n += 1
        key = f"alert-{self.n}"
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, f"{key} never accepted"
            try:
                reply = await self.conn.request(wire.AlertSubmit(
                    1, self.conn.next_rid(), key, wire.Severity.HIGH, self.n, f"alert {self.n}"),
                    timeout=1.5)
            except GatewayError:  # eu is away: the DEALER reconnects, same key again
                continue
            if isinstance(reply, wire.AlertAccepted):
                self.accepted[key] = reply.alert_id
                return

    async def run(self, count: int, rate: float) -> None:
        t0 = time.monotonic()
        for i in range(count):
            await self.one()
            await anyio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))


async def test_relayed_alerts_exactly_once_through_cut_and_kills(tmp_path: Path) -> None:
    configs = fabric_configs(tmp_path, REGIONS, relay_alerts=["*"], heartbeat_ms=250,
                             dead_after_ms=1000)
    proxy = LinkProxy([configs["us"].fabric.bind.removeprefix("tcp://"),
                       configs["eu"].fabric.bind.removeprefix("tcp://")])
    to_us, to_eu = (f"tcp://127.0.0.1:{p}" for p in proxy.ports)
    configs["eu"].fabric.peers["us"] = to_us
    configs["us"].fabric.peers["eu"] = to_eu
    # fixed ports where clients reconnect across restarts
    configs["eu"].endpoints.services = f"tcp://127.0.0.1:{listen_port()}"
    configs["us"].endpoints.clients = f"tcp://127.0.0.1:{listen_port()}"
    nodes: dict[str, NodeProcess] = {}
    try:
        for r in REGIONS:
            nodes[r] = NodeProcess(configs[r], tmp_path)
        eu, us = nodes["eu"], nodes["us"]

        def links() -> None:
            for r, node in nodes.items():
                node.wait_status(lambda info, _, r=r: all(
                    info.get(f"fabric.peer.{p}") == "up" for p in REGIONS if p != r),
                    what="links up")

        links()
        public, secret = new_keypair()
        assert isinstance(us.request(wire.KeyRegister(1, 1, "bob", public, "phone")),
                          wire.Keys)
        key = OfficerKey("bob", public, secret, us.status().info["clients_server_key"],
                         configs["us"].endpoints.clients)
        received: list[int] = []

        async def collect(client: Any) -> None:
            while True:
                item = await client.next()
                if isinstance(item, wire.AlertPush):
                    assert item.alert.origin_region == "eu"
                    received.append(item.alert.origin_alert_id)

        async with open_officer(key, device="phone", heartbeat_s=0.2, timeout=1.0) as client, \
                open_dealer(configs["eu"].endpoints.services) as svc, \
                anyio.create_task_group() as tg:
            tg.start_soon(collect, client)
            sub = Submitter(svc)
            await sub.run(10, rate=100)
            await until(lambda: len(received) == 10, what="first alerts at us")
            # the eu-us link is cut while alerts are submitted at eu, then healed
            proxy.cut()
            await blocking(eu.wait_status, lambda info, _: info["fabric.peer.us"] != "up",
                           timeout=6, what="eu sees us away")
            await sub.run(20, rate=100)
            assert len(received) == 10
            proxy.heal()
            await until(lambda: len(received) == 30, what="alerts of the cut")
            # kill -9 of us, then of eu, each in the middle of a stream of alerts
            for victim in (us, eu):
                async with anyio.create_task_group() as stream:
                    stream.start_soon(sub.run, 40, 80)
                    start = sub.n
                    await until(lambda s=start: sub.n >= s + 15, what="stream running")
                    victim.kill()
                    await blocking(victim.start)
                await blocking(links)
                await until(lambda: len(received) == len(sub.accepted), timeout=20,
                            what=f"alerts across the restart of {victim.region}")
                if victim is us:  # a fresh us's UNKNOWN_PEER re-links; it is no refusal
                    assert eu.status().counters.get("fabric_relay_refused.us", 0) == 0
            tg.cancel_scope.cancel()
        check_exactly_once(list(sub.accepted.values()), received)
        assert len(received) == 110
        counters = us.status().counters
        assert counters.get("fabric_relay_in.eu", 0) > 0  # since its restart
        assert counters.get("fabric_link_down.eu", 0) >= 1
    finally:
        for node in nodes.values():
            node.stop()
        proxy.close()
