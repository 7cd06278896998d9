"""Helpers shared by the node tests: an in-process node and deadline-bounded waits."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from gateway.auth import OfficerKey, new_keypair
from gateway.codec import Endpoint
from gateway.config import Config
from gateway.node import Node


@asynccontextmanager
async def running_node(config: Config) -> AsyncIterator[Node]:
    """Run a node on the test's event loop for the duration of the block."""
    node = Node(config, out=io.StringIO(), handle_signals=False)
    async with anyio.create_task_group() as tg:
        await tg.start(node.run)
        try:
            yield node
        finally:
            tg.cancel_scope.cancel()


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0,
                     what: str = "condition") -> None:
    """Poll ``predicate`` on the event loop until it holds; fail after ``timeout``."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


async def register_officer(node: Node, officer: str, label: str = "test") -> OfficerKey:
    """A fresh CURVE key registered (journaled) for ``officer`` on an in-process node."""
    public, secret = new_keypair()
    done = anyio.Event()
    node.desk.register_key(officer, public, label, on_durable=done.set)
    with anyio.fail_after(5):
        await done.wait()
    return OfficerKey(officer, public, secret, node.server_keys.public,
                      node.urls[Endpoint.CLIENTS])


async def curve_keys_for(node: Node, endpoint: Endpoint,
                         ) -> tuple[bytes, bytes, bytes] | None:
    """What a DEALER needs to talk to ``endpoint``: CURVE keys for the clients endpoint."""
    if endpoint is not Endpoint.CLIENTS:
        return None
    return (await register_officer(node, "tester")).curve_keys()
