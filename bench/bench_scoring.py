"""Scoring benchmarks (pytest-benchmark). In the default test run they execute once each at
smoke sizes (``--benchmark-disable``); ``run_scoring_bench`` measures the full budget."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.bench_scoring import run_scoring_bench
from gateway.scoring import (
    ReferenceEngine,
    ScoringEngine,
    TransactionGenerator,
    generate_rules,
    pack_transactions,
)
from gateway.scoring._reference import NativeTx


def _sizes(benchmark: Any) -> tuple[int, int]:
    """(rules, transactions): full sizes only when benchmarks are enabled."""
    return (60, 200) if benchmark.disabled else (1000, 20_000)


@pytest.fixture
def setup(benchmark: Any) -> tuple[ScoringEngine, list[Any]]:
    rules, n = _sizes(benchmark)
    gen = TransactionGenerator(seed=1, accounts=max(n // 2, 100))
    eng = ScoringEngine(generate_rules(rules, 30, seed=1), "<bench>")
    eng.set_trusted(gen.trusted_accounts())
    eng.set_blocklist("counterparty", gen.blocked_counterparties)
    return eng, gen.batch(n)


def test_score_python_api(benchmark: Any, setup: tuple[ScoringEngine, list[Any]]) -> None:
    eng, txs = setup
    it = iter(txs * 1000)
    benchmark(lambda: eng.score(next(it)))


def test_score_batch_python_api(benchmark: Any, setup: tuple[ScoringEngine, list[Any]]) -> None:
    eng, txs = setup
    batch = txs[:1024]
    result = benchmark(eng.score_batch, batch)
    assert len(result) == len(batch)


def test_native_loop_full_batches(benchmark: Any, setup: tuple[ScoringEngine, list[Any]]) -> None:
    eng, txs = setup
    packed = pack_transactions(txs)
    benchmark(eng.native.bench, packed, passes=1, batch_size=1024, advance_ms=86_400_000)


def test_reference_evaluator(benchmark: Any, setup: tuple[ScoringEngine, list[Any]]) -> None:
    eng, txs = setup
    ref = ReferenceEngine(eng.rules)
    natives = [NativeTx.of(t) for t in txs[:100]]
    benchmark(lambda: [ref.score_native(t) for t in natives])


def test_run_scoring_bench_quick(benchmark: Any) -> None:
    result = benchmark.pedantic(run_scoring_bench, kwargs={"quick": True}, rounds=1,
                                iterations=1)
    for key in ("full_single_ns", "full_batch_tx_per_s", "trusted_single_ns",
                "python_call_us", "reference_speedup", "trusted_lookup_ns",
                "trusted_memory_mib"):
        assert result[key] > 0
