"""The runtime picks the event loop the operator asked for."""

from __future__ import annotations

import pytest
import sniffio

from gateway.runtime import LOOPS, backend_for, run


async def _which() -> str:
    name = sniffio.current_async_library()
    if name == "asyncio":
        import asyncio

        loop = type(asyncio.get_running_loop()).__module__
        return "uvloop" if loop.startswith("uvloop") else "asyncio"
    return name


@pytest.mark.parametrize("loop", LOOPS)
def test_run_on_each_loop(loop: str) -> None:
    assert run(_which, loop=loop) == loop  # type: ignore[arg-type]


def test_unknown_loop() -> None:
    with pytest.raises(ValueError, match="unknown event loop"):
        backend_for("gevent")  # type: ignore[arg-type]
