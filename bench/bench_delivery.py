"""Alert delivery, priority under a backlog, the journal and start-up, at smoke-test sizes.

With ``--benchmark-disable`` (the default) this runs once as a smoke test and checks only
the shape of the result and that nothing was lost or handed over twice. The full run is
``gateway.bench_delivery.run_delivery_bench()`` (``python -m gateway.bench_delivery``).
"""

from __future__ import annotations

from typing import Any

from gateway.bench_delivery import GOALS, run_delivery_bench

KEYS = (
    "alert_p50_ms", "alert_p99_ms", "alerts_submitted", "receipts", "receipts_expected",
    "lost", "duplicates", "critical_behind_backlog_p99_ms", "critical_lost",
    "journal_events_per_s", "journal_commit_p99_ms", "recovery_s", "journal_mib",
    "goals", "machine", "notes",
)


def test_delivery_bench_smoke(benchmark: Any) -> None:
    r = benchmark.pedantic(run_delivery_bench,
                           kwargs={"quick": True, "clients": 8, "recipients": 2,
                                   "journal_events": 1000, "recovery_events": 1000},
                           rounds=1, iterations=1)
    assert set(KEYS) <= set(r)
    assert set(r["goals"]) == set(GOALS)
    assert r["receipts_expected"] == r["alerts_submitted"] * 2
    assert r["receipts"] == r["receipts_expected"]
    assert (r["lost"], r["unexpected"], r["duplicates"], r["submit_errors"]) == (0, 0, 0, 0)
    assert r["criticals_received"] == r["criticals"] and r["critical_lost"] == 0
    assert r["critical_duplicates"] == 0
    assert r["journal_events"] == 1000 and r["journal_commits"] >= 1
    assert r["recovery_events"] == r["recovery_journal_seq_at_start"] == 1000
