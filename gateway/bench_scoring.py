"""The scoring benchmark behind ``gateway bench`` and bench/bench_scoring.py.

C timings come from native timing loops (``gw_bench_score``, ``gw_bench_trusted_lookup``,
clock_gettime in C); only ``python_call_us`` and the reference evaluator are timed from
Python, with the monotonic performance counter (never the wall clock).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from gateway.scoring._engine import ScoringEngine, pack_transactions
from gateway.scoring._generate import (
    TransactionGenerator,
    account_id,
    generate_rules,
    write_trusted_file,
)
from gateway.scoring._reference import NativeTx, ReferenceEngine
from gateway.wire import Transaction

DAY_MS: Final = 86_400_000


def _engine(src: str, gen: TransactionGenerator) -> ScoringEngine:
    eng = ScoringEngine(src, "<bench>")
    eng.set_trusted(gen.trusted_accounts())
    eng.set_blocklist("counterparty", gen.blocked_counterparties)
    return eng


def _native_ns_per_tx(eng: ScoringEngine, txs: Sequence[Transaction], *, passes: int,
                      batch: int) -> tuple[float, float]:
    """(mean ns per transaction, trusted-path fraction) over ``passes`` native passes."""
    packed = pack_transactions(txs)
    eng.native.bench(packed, passes=1, batch_size=batch, advance_ms=DAY_MS)  # warm state
    ns, full, trusted = eng.native.bench(packed, passes=passes, batch_size=batch,
                                         advance_ms=DAY_MS)
    return ns / (passes * len(txs)), trusted / max(full + trusted, 1)


def run_scoring_bench(*, rules: int = 1000, trusted_rules: int = 30,
                      accounts: int = 10_000_000, quick: bool = False,
                      progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Measure the scoring engine; see the performance budget in ARCHITECTURE.md.

    ``quick`` shrinks every size so that the run takes well under a second (smoke test).
    """
    say = progress or (lambda _msg: None)
    if quick:
        rules, trusted_rules, accounts = min(rules, 60), min(trusted_rules, 10), min(accounts, 5000)
    n_tx = 2_000 if quick else 100_000
    passes = 1 if quick else 5
    src = generate_rules(rules, trusted_rules, seed=1)
    result: dict[str, float] = {"rules": float(rules), "trusted_rules": float(trusted_rules)}

    say(f"generating {n_tx} transactions")
    gen = TransactionGenerator(seed=2, accounts=min(100_000, max(accounts, 1000)),
                               trusted_fraction=0.3)
    trusted = gen.trusted_accounts()
    txs = gen.batch(n_tx)
    full_txs = [t for t in txs if t.account not in trusted]
    clean = TransactionGenerator(seed=3, accounts=gen.accounts, trusted_fraction=0.3,
                                 fraud_rate=0.0)
    trusted_txs = [t for t in clean.batch(n_tx * 2) if t.account in trusted][:n_tx]

    say("full path, single transactions (native loop)")
    ns, _ = _native_ns_per_tx(_engine(src, gen), full_txs, passes=passes, batch=0)
    result["full_single_ns"] = ns
    say("full path, batches of 1024 (native loop)")
    ns, _ = _native_ns_per_tx(_engine(src, gen), full_txs, passes=passes, batch=1024)
    result["full_batch_tx_per_s"] = 1e9 / ns
    say("trusted path, single transactions, cache-resident accounts (native loop)")
    hot_gen = TransactionGenerator(seed=5, accounts=6000, trusted_fraction=1 / 3,
                                   fraud_rate=0.0)
    hot = hot_gen.trusted_accounts()
    hot_txs = [t for t in hot_gen.batch(40_000) if t.account in hot][: n_tx // 10]
    ns, frac = _native_ns_per_tx(_engine(src, hot_gen), hot_txs, passes=passes * 10, batch=0)
    result["trusted_single_ns"] = ns
    result["trusted_path_fraction"] = frac
    say("trusted path, single transactions, 30,000 accounts (native loop)")
    ns, _ = _native_ns_per_tx(_engine(src, gen), trusted_txs, passes=passes, batch=0)
    result["trusted_single_cold_ns"] = ns

    say("one transaction through the Python API")
    eng = _engine(src, gen)
    sample = txs[: min(len(txs), 20_000)]
    for tx in sample[:1000]:
        eng.score(tx)
    t0 = time.perf_counter_ns()
    for tx in sample:
        eng.score(tx)
    result["python_call_us"] = (time.perf_counter_ns() - t0) / len(sample) / 1000

    say("pure-Python reference on the same transactions")
    ref_txs = full_txs[: 300 if quick else 3000]
    ref = ReferenceEngine(eng.rules)
    ref.trusted = dict(trusted)
    ref.set_blocklist("counterparty", gen.blocked_counterparties)
    natives = [NativeTx.of(t) for t in ref_txs]
    t0 = time.perf_counter_ns()
    for ntx in natives:
        ref.score_native(ntx)
    ref_ns = (time.perf_counter_ns() - t0) / len(natives)
    c_eng = _engine(src, gen)
    c_ns, _, _ = c_eng.native.bench(pack_transactions(ref_txs), passes=1, batch_size=0,
                                    advance_ms=0)
    result["reference_speedup"] = ref_ns / (c_ns / len(ref_txs))

    say(f"writing {accounts} trusted accounts")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trusted.csv"
        write_trusted_file(path, accounts)
        big = ScoringEngine(src, "<bench>")
        say("loading trusted accounts")
        t0 = time.perf_counter_ns()
        loaded = big.load_trusted(path)
        result["trusted_load_s"] = (time.perf_counter_ns() - t0) / 1e9
    result["trusted_accounts"] = float(loaded)
    result["trusted_memory_mib"] = big.trusted_memory_bytes / (1 << 20)
    say("trusted lookups (native loop)")
    rng = random.Random(4)
    keys = [account_id(rng.randrange(accounts * 2)) for _ in range(200_000 if not quick else 2000)]
    table = big._trusted
    assert table is not None
    ns_total, hits = table.bench_lookup(keys, passes)
    result["trusted_lookup_ns"] = ns_total / (passes * len(keys))
    result["trusted_lookup_hit_rate"] = hits / (passes * len(keys))
    return result
