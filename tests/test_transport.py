"""The single-owner socket adapter: pipelined requests, wake-ups, both event loops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import zmq

from gateway import wire
from gateway.codec import ReplyCodec
from gateway.counters import Counters
from gateway.errors import RequestTimeoutError
from gateway.transport import RouterEndpoint, open_dealer

pytestmark = pytest.mark.anyio


async def test_pipelined_requests_and_deferred_replies() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    counters = Counters()
    router = RouterEndpoint(ctx, "echo", "tcp://127.0.0.1:*", counters)
    codec = ReplyCodec()
    deferred: list[tuple[bytes, int]] = []

    def handler(ident: bytes, frames: Sequence[bytes], dropped: int) -> bytes | None:
        msg = codec.decode(frames[0])
        if msg.rid % 2:  # odd ids answered later by another task
            deferred.append((ident, msg.rid))
            return None
        return codec.encode(wire.Pong(1, msg.rid, "n", "r", 0))

    async def answer_later() -> None:
        while True:
            while deferred:
                ident, rid = deferred.pop()
                router.send_nowait(ident, codec.encode(wire.Pong(1, rid, "late", "r", 0)))
            await anyio.sleep(0.001)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.serve, handler)
            tg.start_soon(answer_later)
            async with open_dealer(router.url, ctx=ctx) as conn:
                results: dict[int, Any] = {}

                async def one(rid: int) -> None:
                    results[rid] = await conn.request(wire.Pong(1, rid, "", "", 0), timeout=10)

                async with anyio.create_task_group() as reqs:
                    for rid in range(1, 501):
                        reqs.start_soon(one, rid)
            tg.cancel_scope.cancel()
    finally:
        router.close()
        ctx.term()
    assert sorted(results) == list(range(1, 501))
    assert all(r.rid == rid for rid, r in results.items())
    assert {r.node for rid, r in results.items() if rid % 2} == {"late"}
    assert counters.get("echo_messages") == 500


async def test_request_times_out_with_typed_error() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    silent = ctx.socket(zmq.ROUTER)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        async with open_dealer(f"tcp://127.0.0.1:{port}", ctx=ctx) as conn:
            with pytest.raises(RequestTimeoutError):
                await conn.request(wire.Ping(1, 1), timeout=0.2)
    finally:
        silent.close(0)
        ctx.term()
