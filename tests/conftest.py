"""Shared fixtures: every async test runs on asyncio+uvloop and on trio."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def node_config(tmp_path: Any) -> Any:
    """A node config on a fresh data directory and free loopback ports."""
    from gateway.config import Config, EndpointsSection, NodeSection

    return Config(
        node=NodeSection(name="test-node", region="test", data_dir=str(tmp_path / "data")),
        endpoints=EndpointsSection(ingest="tcp://127.0.0.1:*", clients="tcp://127.0.0.1:*",
                                   services="tcp://127.0.0.1:*"),
    )
