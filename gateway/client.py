"""Client SDKs: payment systems score transactions (producer); officer apps receive their
alert stream (:func:`open_officer`, see ``gateway._officer``).

Producer, on a node's ingest endpoint:

::

    async with open_producer("tcp://127.0.0.1:7710") as p:
        decision = await p.score_one(tx)
        decisions = await p.score(txs)               # one request, <= MAX_BATCH
        decisions = await p.score_many(stream)       # batches of 64, 8 requests in flight

Built on :func:`gateway.transport.open_dealer` (one DEALER socket, one owner task,
replies matched by request id, so requests pipeline). A ``busy`` reply is retried after the
node's ``retry_after_ms`` up to ``busy_retries`` times, then :class:`BusyError`; an
``error`` reply raises :class:`RemoteError` with the wire code and name; no reply within
``timeout`` raises :class:`RequestTimeoutError`. Nothing is retried on an error or a
timeout: a score request is not idempotent (it updates account state).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import zmq

from gateway import wire
from gateway._officer import OfficerClient, StreamItem, open_officer
from gateway.auth import OfficerKey, load_key
from gateway.errors import BusyError, ErrorCode, ProtocolError, RemoteError
from gateway.transport import DealerConnection, open_dealer

DEFAULT_BATCH: Final = 64
DEFAULT_IN_FLIGHT: Final = 8


class Producer:
    """A connection to one node's ingest endpoint; create it with :func:`open_producer`."""

    def __init__(self, conn: DealerConnection, *, timeout: float, busy_retries: int,
                 max_retry_after_ms: int) -> None:
        self._conn = conn
        self.timeout = timeout
        self.busy_retries = busy_retries
        self.max_retry_after_ms = max_retry_after_ms
        self.busy_replies = 0

    @property
    def url(self) -> str:
        return self._conn.url

    async def ping(self) -> wire.Pong:
        reply = await self._conn.request(wire.Ping(wire.PROTOCOL_VERSION, self._conn.next_rid()),
                                         timeout=self.timeout)
        if isinstance(reply, wire.Error):
            raise RemoteError(reply.code, reply.name, reply.message)
        if not isinstance(reply, wire.Pong):
            raise ProtocolError(ErrorCode.MALFORMED, f"unexpected reply {type(reply).__name__}")
        return reply

    async def score(self, txs: Sequence[wire.Transaction]) -> list[wire.Decision]:
        """Score 1..MAX_BATCH transactions in one request; decisions in request order."""
        if not 1 <= len(txs) <= wire.MAX_BATCH:
            raise ValueError(f"a score request carries 1..{wire.MAX_BATCH} transactions, "
                             f"not {len(txs)}")
        batch = list(txs)
        attempt = 0
        while True:
            req = wire.ScoreRequest(wire.PROTOCOL_VERSION, self._conn.next_rid(), batch)
            reply = await self._conn.request(req, timeout=self.timeout)
            if isinstance(reply, wire.ScoreReply):
                if len(reply.decisions) != len(batch):
                    raise ProtocolError(
                        ErrorCode.MALFORMED,
                        f"{len(reply.decisions)} decisions for {len(batch)} transactions")
                return reply.decisions
            if isinstance(reply, wire.Busy):
                self.busy_replies += 1
                if attempt >= self.busy_retries:
                    raise BusyError(reply.retry_after_ms)
                attempt += 1
                # the node asked for this pause; nothing of the request was applied
                await anyio.sleep(min(reply.retry_after_ms, self.max_retry_after_ms) / 1000)
                continue
            if isinstance(reply, wire.Error):
                raise RemoteError(reply.code, reply.name, reply.message)
            raise ProtocolError(ErrorCode.MALFORMED, f"unexpected reply {type(reply).__name__}")

    async def score_one(self, tx: wire.Transaction) -> wire.Decision:
        return (await self.score([tx]))[0]

    async def score_many(self, txs: Iterable[wire.Transaction], *, batch: int = DEFAULT_BATCH,
                         in_flight: int = DEFAULT_IN_FLIGHT) -> list[wire.Decision]:
        """Score any number of transactions in batches, ``in_flight`` requests pipelined.

        Decisions come back in input order. On the first failure the other requests are
        cancelled and that error is raised; requests already answered stay applied.
        """
        if not 1 <= batch <= wire.MAX_BATCH or in_flight < 1:
            raise ValueError("batch must be 1..MAX_BATCH and in_flight >= 1")
        items = list(txs)
        chunks = [items[i:i + batch] for i in range(0, len(items), batch)]
        results: list[list[wire.Decision]] = [[] for _ in chunks]
        next_chunk = 0
        failure: list[BaseException] = []

        async def worker(scope: anyio.CancelScope) -> None:
            nonlocal next_chunk
            while next_chunk < len(chunks) and not failure:
                i = next_chunk
                next_chunk += 1
                try:
                    results[i] = await self.score(chunks[i])
                except Exception as exc:  # first failure wins; the rest are cancelled
                    failure.append(exc)
                    scope.cancel()
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(min(in_flight, len(chunks))):
                tg.start_soon(worker, tg.cancel_scope)
        if failure:
            raise failure[0]
        return [d for chunk in results for d in chunk]


@asynccontextmanager
async def open_producer(url: str, *, ctx: zmq.Context[Any] | None = None,
                        curve_keys: tuple[bytes, bytes, bytes] | None = None,
                        timeout: float = 10.0, busy_retries: int = 5,
                        max_retry_after_ms: int = 1000) -> AsyncIterator[Producer]:
    """Connect to a node's ingest endpoint for the duration of the block."""
    async with open_dealer(url, ctx=ctx, curve_keys=curve_keys) as conn:
        yield Producer(conn, timeout=timeout, busy_retries=busy_retries,
                       max_retry_after_ms=max_retry_after_ms)


__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_IN_FLIGHT",
    "OfficerClient",
    "OfficerKey",
    "Producer",
    "StreamItem",
    "load_key",
    "open_officer",
    "open_producer",
]
