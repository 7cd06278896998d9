"""The Prometheus endpoint exposes the node's counters."""

from __future__ import annotations

import urllib.request

import anyio
import msgspec
import pytest
from nodeutil import running_node, wait_until

from gateway import wire
from gateway.codec import Endpoint
from gateway.config import Config, MetricsSection
from gateway.ports import listen_port
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio


async def test_metrics_endpoint_serves_counters(node_config: Config) -> None:
    port = listen_port()
    cfg = msgspec.structs.replace(node_config, metrics=MetricsSection(port=port))
    async with running_node(cfg) as node:
        async with open_dealer(node.urls[Endpoint.INGEST]) as conn:
            conn.send_raw_nowait([b"\xc1"])
            await conn.request(wire.Ping(wire.PROTOCOL_VERSION, 7))
        await wait_until(lambda: node.counters.get("ingest_messages") == 2, what="counters")

        def fetch() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        text = await anyio.to_thread.run_sync(fetch)
    assert 'gateway_up{node="test-node",region="test"} 1.0' in text
    assert 'gateway_ingest_errors_total{kind="MALFORMED"} 1.0' in text
    assert "gateway_ingest_messages_total 2.0" in text
