"""Fixtures for the delivery tests: the node config of tests/conftest.py with short
delivery timers, so presence and redelivery tests stay quick."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest


@pytest.fixture
def node_config(node_config: Any) -> Any:
    from gateway.config import DeliverySection

    return msgspec.structs.replace(node_config, delivery=DeliverySection(
        rto_ms=200, max_rto_ms=1000, offline_after_ms=800))
