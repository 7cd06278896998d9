"""Fixtures for the native ingest tests: a ZeroMQ context and a running native endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
from ingest_helpers import Dealer, make_endpoint

from gateway.ingest import NativeIngestEndpoint


@pytest.fixture
def zctx() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(0)


@pytest.fixture
def endpoint(zctx: zmq.Context[Any]) -> Iterator[NativeIngestEndpoint]:
    ep = make_endpoint(zctx)
    ep.start()
    yield ep
    ep.close()




@pytest.fixture
def dealer(zctx: zmq.Context[Any]) -> Iterator[Callable[[str], Dealer]]:
    """Factory of blocking test DEALERs, closed at teardown."""
    made: list[Dealer] = []

    def make(url: str) -> Dealer:
        d = Dealer(zctx, url)
        made.append(d)
        return d

    yield make
    for d in made:
        d.sock.close(0)
