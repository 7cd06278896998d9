"""Helpers of the fabric tests: configs of several regional nodes on free loopback ports,
transactions for accounts of a given home, and deadline-bounded waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from nodeutil import running_node, wait_until

from gateway import wire
from gateway.auth import load_or_create_server_keys
from gateway.config import (
    Config,
    DirectoryRange,
    DirectorySection,
    EndpointsSection,
    FabricSection,
    IngestSection,
    NodeSection,
)
from gateway.node import Node
from gateway.ports import listen_port

BASE = {"eu": 0, "us": 1_000_000, "ap": 2_000_000}


def ranges(regions: list[str]) -> DirectorySection:
    """Accounts BASE[r] .. BASE[r] + 999_999 homed in region r."""
    return DirectorySection(mode="ranges", ranges=[
        DirectoryRange(first=BASE[r], last=BASE[r] + 999_999, region=r) for r in regions])


def fabric_configs(tmp: Path, regions: list[str], *, mode: str = "native",
                   directory: DirectorySection | None = None, peer_urls: dict[str, dict[str, str]]
                   | None = None, curve: bool = True, **fabric: Any) -> dict[str, Config]:
    """One config per region; every node peers with every other one. ``peer_urls[a][b]``
    overrides the endpoint ``a`` uses for ``b`` (a link proxy in between). With ``curve``
    (the default) each node's key pair is made in its data directory and every node knows
    its peers' public keys, as an operator sets it up with `gateway keys server`."""
    binds = {r: f"tcp://127.0.0.1:{listen_port()}" for r in regions}
    data = {r: tmp / f"data-{r}" for r in regions}
    keys = {r: load_or_create_server_keys(data[r]).public for r in regions} if curve else {}
    out = {}
    for r in regions:
        peers = {p: (peer_urls or {}).get(r, {}).get(p, binds[p]) for p in regions if p != r}
        if curve:
            fabric["peer_keys"] = {p: keys[p] for p in peers}
        else:
            fabric["curve"] = False
        out[r] = Config(
            node=NodeSection(name=f"node-{r}", region=r, data_dir=str(data[r])),
            endpoints=EndpointsSection(ingest="tcp://127.0.0.1:*",
                                       clients="tcp://127.0.0.1:*",
                                       services="tcp://127.0.0.1:*"),
            ingest=IngestSection(mode=mode),  # type: ignore[arg-type]
            fabric=FabricSection(bind=binds[r], peers=peers,
                                 directory=directory or ranges(regions), **fabric),
        )
    return out


def tx(n: int, account: int, amount: int = 12_00) -> wire.Transaction:
    return wire.Transaction(f"tx-{n}", account, 7, amount, "EUR", wire.Channel.CARD, 5411,
                            "dev-1", "10.0.0.1", "DE", "Berlin", 1_700_000_000_000 + n)


def account(region: str, i: int) -> int:
    return BASE[region] + i


class FakePeer:
    """A DEALER speaking the fabric protocol to a node's fabric endpoint (tests only)."""

    def __init__(self, owner: Any) -> None:
        from gateway.fabric import FabricReplyCodec

        self.owner = owner
        self.codec = FabricReplyCodec()
        self.replies: dict[int, Any] = {}

    def on_message(self, frames: list[bytes]) -> None:
        msg = self.codec.decode(frames[0])
        self.replies[msg.rid] = msg

    async def request(self, msg: Any, timeout: float = 5.0) -> Any:
        import anyio

        self.owner.send((self.codec.encode(msg),))
        with anyio.fail_after(timeout):
            while msg.rid not in self.replies:
                await anyio.sleep(0.005)
        return self.replies.pop(msg.rid)


@asynccontextmanager
async def fake_peer(url: str, *, curve: tuple[str, str, str] | None = None,
                    ) -> AsyncIterator[FakePeer]:
    """A fake peer DEALER; ``curve``: its (public, secret) key and the node's public key."""
    import anyio
    import zmq

    from gateway.transport import SocketGroup

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = (
            k.encode() for k in curve)
    sock.connect(url)
    group = SocketGroup()
    peer = FakePeer(None)
    peer.owner = group.add(sock, peer.on_message)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(group.run)
            try:
                yield peer
            finally:
                tg.cancel_scope.cancel()
    finally:
        group.close()


FAST = {"heartbeat_ms": 100, "dead_after_ms": 300}  # links up and down within a second


@asynccontextmanager
async def running(configs: dict[str, Config]) -> AsyncIterator[dict[str, Node]]:
    """In-process nodes, one per config, once every fabric link is up."""
    async with AsyncExitStack() as stack:
        nodes = {r: await stack.enter_async_context(running_node(c))
                 for r, c in configs.items()}
        await wait_until(lambda: all(n.fabric is not None and all(
            link.up for link in n.fabric.links.values()) for n in nodes.values()),
            timeout=10, what="links up")
        yield nodes
