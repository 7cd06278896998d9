"""Prometheus text endpoint over the node's counters (``--metrics-port``).

prometheus_client serves from its own thread and reads a snapshot of the counters, which
is a plain dict copy and needs no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from gateway.node import Node


def _metric_name(name: str) -> tuple[str, str | None]:
    base, _, label = name.partition(".")
    return "gateway_" + base, (label or None)


class NodeCollector:
    """Exposes every counter as ``gateway_<name>_total`` (label ``kind`` after a dot)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Any]:
        counters = self.node.counters
        snap = counters.snapshot()
        gauges = set(counters.gauge_names())
        families: dict[str, Any] = {}
        for name in sorted(snap):
            base, label = _metric_name(name)
            fam = families.get(base)
            if fam is None:
                cls = GaugeMetricFamily if name in gauges else CounterMetricFamily
                doc = f"risk-gateway {base[len('gateway_'):].replace('_', ' ')}"
                fam = cls(base, doc, labels=["kind"] if label else None)
                families[base] = fam
            fam.add_metric([label] if label else [], snap[name])
        info = self.node.config.node
        up = GaugeMetricFamily("gateway_up", "node is serving", labels=["node", "region"])
        up.add_metric([info.name, info.region], 1)
        yield up
        lat = self.node.latency
        q = GaugeMetricFamily("gateway_score_latency_us", "scoring latency per transaction",
                              labels=["quantile"])
        for quantile in (0.5, 0.9, 0.99):
            q.add_metric([str(quantile)], lat.percentile_us(quantile))
        yield q
        yield from families.values()


def start_metrics_server(node: Node, host: str, port: int) -> Any:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return start_http_server(port, addr=host, registry=registry)


__all__ = ["NodeCollector", "start_metrics_server"]
