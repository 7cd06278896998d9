"""Three regional nodes as separate processes on loopback, with a link proxy between two of
them: a cut and a heal, kill -9 and restart of a home node and of an origin node. The
checkers look for lost, duplicated and out-of-order decisions of forwarded transactions,
and for lost, duplicated and missing (gap) trusted-data changes.

The test driver runs on one event loop; the nodes run on uvloop, asyncio and trio."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fabricutil import account, fabric_configs, tx
from procutil import NodeProcess, applied_ranges, check_chain, check_decisions

from gateway import wire
from gateway.errors import GatewayError
from gateway.linkproxy import LinkProxy
from gateway.transport import open_dealer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REGIONS = ["eu", "us", "ap"]
LOOPS = {"eu": "uvloop", "us": "trio", "ap": "asyncio"}
FAST = {"heartbeat_ms": 250, "dead_after_ms": 1000}


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"use_uvloop": True})  # the nodes cover the three loops


class Cluster:
    def __init__(self, tmp: Path, **fabric: Any) -> None:
        self.tmp = tmp
        # the eu <-> us link goes through a proxy: eu's DEALER to us, and us's to eu
        probe = fabric_configs(tmp, REGIONS, **FAST, **fabric)
        self.proxy = LinkProxy([probe["us"].fabric.bind.removeprefix("tcp://"),
                                probe["eu"].fabric.bind.removeprefix("tcp://")])
        to_us, to_eu = (f"tcp://127.0.0.1:{p}" for p in self.proxy.ports)
        self.configs = {r: c for r, c in probe.items()}
        self.configs["eu"].fabric.peers["us"] = to_us
        self.configs["us"].fabric.peers["eu"] = to_eu
        self.nodes: dict[str, NodeProcess] = {}
        for r in REGIONS:
            self.nodes[r] = NodeProcess(self.configs[r], tmp, loop=LOOPS[r])
        self.wait_links()

    def wait_links(self, timeout: float = 20.0) -> None:
        for r, node in self.nodes.items():
            others = [p for p in REGIONS if p != r]
            node.wait_status(lambda info, c, o=others: all(
                info.get(f"fabric.peer.{p}") == "up" for p in o), timeout=timeout,
                what="links up")

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.proxy.close()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(**fabric: Any) -> Cluster:
        c = Cluster(tmp_path, **fabric)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


async def until(predicate: Any, *, timeout: float = 10.0, what: str = "") -> None:
    """Wait on the event loop until ``predicate()`` holds; fail after ``timeout``."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def blocking(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking control step (process, status poll) off the event loop, so that the
    producers keep sending meanwhile."""
    return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs))


class Traffic:
    """What a producer sent and what it got back, by request id."""

    def __init__(self) -> None:
        self.sent: dict[int, list[str]] = {}
        self.replies: dict[int, Any] = {}
        self.home: dict[str, str] = {}  # tx_id -> home region of its account

    def scored_at(self, region: str) -> int:
        """Transactions homed in ``region`` that were decided (scored replies)."""
        return sum(1 for rid, ids in self.sent.items()
                   if isinstance(self.replies.get(rid), wire.ScoreReply)
                   for t in ids if self.home[t] == region)


async def drive(url: str, traffic: Traffic, requests: int, *, rate: float, seed: int,
                homes: list[str]) -> None:
    """Paced, pipelined score requests of 1..4 transactions of mixed homes; every answer
    (or the lack of one) is recorded by request id."""
    rnd = random.Random(seed)
    counter = itertools.count(seed * 1_000_000)
    async with open_dealer(url) as conn, anyio.create_task_group() as tg:
        async def one(rid: int, txs: list[wire.Transaction]) -> None:
            try:
                traffic.replies[rid] = await conn.request(wire.ScoreRequest(1, rid, txs),
                                                          timeout=30)
            except GatewayError as exc:
                traffic.replies[rid] = exc

        t0 = time.monotonic()
        for i in range(requests):
            txs = []
            for _ in range(rnd.randint(1, 4)):
                home = rnd.choice(homes)
                t = tx(next(counter), account(home, rnd.randrange(1000)))
                traffic.home[t.tx_id] = home
                txs.append(t)
            rid = conn.next_rid()
            traffic.sent[rid] = [t.tx_id for t in txs]
            tg.start_soon(one, rid, txs)
            await anyio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))


class Placer:
    """Trusted-data updates sent to one node; the expected final level of each account."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.expected: dict[int, int] = {}
        self.placed = 0

    def update(self, entries: list[tuple[int, int]]) -> None:
        reply = self.node.request(wire.TrustedUpdate(
            1, 1, [wire.TrustedEntry(a, lv) for a, lv in entries]))
        assert isinstance(reply, wire.TrustedUpdated), reply
        self.placed += reply.placed
        self.expected.update(entries)

    def check_home(self, home: NodeProcess, region: str) -> None:
        """Nothing lost (every account at its last level), nothing applied twice, no gap."""
        self.node.wait_status(lambda info, cnt: cnt.get(f"fabric_outbox_now.{region}", 1)
                              == 0, timeout=20, what="outbox delivered")
        chains = check_chain(applied_ranges(home.cfg.node.data_dir))
        assert sum(chains.values()) == self.placed
        accounts = sorted(self.expected)
        assert home.request(wire.TrustedGet(1, 2, accounts)).levels == [
            self.expected[a] for a in accounts]
        assert self.node.request(wire.TrustedGet(1, 3, accounts[:1])).levels == [-1]


async def test_cut_and_heal_loses_nothing_and_duplicates_nothing(cluster_factory: Any,
                                                                 ) -> None:
    c = cluster_factory(on_partition="queue", queue_ms=15_000, forward_timeout_ms=20_000)
    eu, us = c.nodes["eu"], c.nodes["us"]
    traffic = Traffic()
    placer = Placer(eu)
    placer.update([(account("us", i), 3) for i in range(50)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: drive(eu.urls["ingest"], traffic, 400, rate=100, seed=1,
                                    homes=REGIONS))
        await until(lambda: len(traffic.replies) >= 80, what="traffic flowing")
        c.proxy.cut()
        t_cut = time.monotonic()
        await blocking(eu.wait_status, lambda info, _: info["fabric.peer.us"] != "up",
                       timeout=6, what="eu sees the link to us down")
        detected = time.monotonic() - t_cut
        await blocking(placer.update, [(account("us", i), 0) for i in range(0, 50, 2)])
        await blocking(placer.update, [(account("us", i), 5) for i in range(50, 80)])
        cut_at = len(traffic.sent)
        await until(lambda: len(traffic.sent) >= cut_at + 60, what="requests during the cut")
        c.proxy.heal()
    assert detected <= 5.0
    kinds = check_decisions(traffic.sent, traffic.replies)
    assert kinds == {"ScoreReply": len(traffic.sent)}  # queued within the bound: all answered
    # each us transaction was scored exactly once at us (repeats answered from the record)
    assert us.status().counters["fabric_peer_txs"] == traffic.scored_at("us")
    assert c.nodes["ap"].status().counters["fabric_peer_txs"] == traffic.scored_at("ap")
    placer.check_home(us, "us")


async def test_kill_and_restart_of_home_and_origin(cluster_factory: Any) -> None:
    c = cluster_factory(on_partition="error")
    eu, us = c.nodes["eu"], c.nodes["us"]
    traffic = Traffic()
    placer = Placer(eu)
    placer.update([(account("us", i), 2) for i in range(20)])
    # the home node dies under forwarded traffic and comes back
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: drive(eu.urls["ingest"], traffic, 400, rate=100, seed=2,
                                    homes=["eu", "us"]))
        await until(lambda: len(traffic.replies) >= 60, what="traffic flowing")
        us.kill()
        await blocking(eu.wait_status, lambda info, _: info["fabric.peer.us"] != "up",
                       timeout=6, what="link to the dead node down")
        await until(lambda: any(isinstance(r, wire.Error) and r.name == "REGION_UNAVAILABLE"
                                for r in list(traffic.replies.values())),
                    what="requests refused while us is away")
        await blocking(us.start)
        await blocking(c.wait_links)
    kinds = check_decisions(traffic.sent, traffic.replies)
    # explicit answers only: decisions, or refusals while us was away (nothing applied),
    # or FORWARD_TIMEOUT for what was in flight when it died
    assert set(kinds) <= {"ScoreReply", "REGION_UNAVAILABLE", "FORWARD_TIMEOUT"}, kinds
    assert kinds["ScoreReply"] > 0 and kinds.get("REGION_UNAVAILABLE", 0) > 0
    # the origin dies with changes still in its outbox (its link to us cut) and restarts
    c.proxy.cut()
    eu.wait_status(lambda info, _: info["fabric.peer.us"] != "up", timeout=6,
                   what="cut seen")
    placer.update([(account("us", i), 7) for i in range(10, 40)])
    eu.kill()
    eu.start()
    c.proxy.heal()
    c.wait_links()
    placer.check_home(us, "us")
    # forwarding works again from the restarted origin
    after = Traffic()
    await drive(eu.urls["ingest"], after, 50, rate=200, seed=3, homes=["us", "ap"])
    assert check_decisions(after.sent, after.replies) == {"ScoreReply": len(after.sent)}
