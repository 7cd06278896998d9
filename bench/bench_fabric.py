"""Regional fabric: the added latency of forwarded transactions and the latency of an alert
relayed to another region's officer (two node processes each).

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
    assert "forward_added_p99_ms" in r
    assert r["cross_region_alerts"] == r["alerts_accepted"] == r["alerts_relayed_in"] == 100
    assert r["cross_region_alert_p99_ms"] is not None and r["local_alert_p99_ms"] is not None
