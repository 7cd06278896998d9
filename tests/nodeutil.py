"""Helpers shared by the node tests: an in-process node and deadline-bounded waits."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

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
