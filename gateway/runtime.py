"""Run a coroutine on the chosen event loop: asyncio+uvloop (default), asyncio, or trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeVar

import anyio

T = TypeVar("T")
Loop = Literal["uvloop", "asyncio", "trio"]
LOOPS: Final[tuple[Loop, ...]] = ("uvloop", "asyncio", "trio")


def backend_for(loop: Loop) -> tuple[str, dict[str, Any]]:
    """anyio backend name and options for ``loop``."""
    if loop == "uvloop":
        return "asyncio", {"use_uvloop": True}
    if loop == "asyncio":
        return "asyncio", {}
    if loop == "trio":
        return "trio", {}
    raise ValueError(f"unknown event loop {loop!r}; choose one of {', '.join(LOOPS)}")


def run(func: Callable[..., Awaitable[T]], *args: Any, loop: Loop = "uvloop") -> T:
    """Run ``func(*args)`` to completion on one event loop for the whole process."""
    backend, options = backend_for(loop)
    return anyio.run(func, *args, backend=backend, backend_options=options)


__all__ = ["LOOPS", "Loop", "backend_for", "run"]
