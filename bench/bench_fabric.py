"""Regional fabric: the added latency of forwarded transactions (two node processes).

With ``--benchmark-disable`` (the default) this is a smoke run of the quick variant; the
full benchmark is ``gateway bench fabric --json``.
"""

from __future__ import annotations

from typing import Any

from gateway.bench_fabric import run_fabric_bench


def test_fabric_bench_quick(benchmark: Any) -> None:
    r = benchmark.pedantic(run_fabric_bench, kwargs={"quick": True}, rounds=1, iterations=1)
    assert r["errors"] == 0 and r["busy"] == 0
    assert r["home_peer_txs"] == r["origin_forwarded_txs"] > 0
    assert "forward_added_p99_ms" in r and r["cross_region_alert_p99_ms"] is None
