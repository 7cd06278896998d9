"""Known-answer vectors: hand-checked decisions, from the native engine and the reference."""

from __future__ import annotations

import pytest
from scoring_helpers import HEADER, tx

from gateway._native import hash_str
from gateway.scoring import FROZEN_RULE_ID, ReferenceEngine, ScoringEngine
from gateway.scoring._model import fnv1a64
from gateway.wire import Decision, Outcome, ScoringPath, StepUpMethod, Transaction

RULES = HEADER + """
[[guards]]
id = "G-BASE"
kind = "amount_vs_baseline"
factor = 5.0

[[guards]]
id = "G-NEWDEV"
kind = "new_device_amount"
min_amount = 50000

[[guards]]
id = "G-CP"
kind = "blocklist"
list = "counterparty"

[[rules]]
id = "AMT"
score = 20
trusted = true
when = { amount = { ge = 10000 } }

[[rules]]
id = "NEWDEV"
score = 15
action = "old_device_confirm"
when = { new_device = true }

[[rules]]
id = "HOP"
score = 20
action = "sms_up"
when = { country_changed = true }

[[rules]]
id = "BURST"
score = 35
when = { velocity_1m_count = { ge = 3 } }

[[rules]]
id = "SPIKE"
score = 30
trusted = true
action = "face"
when = { amount_to_baseline = { ge = 10.0 } }

[[rules]]
id = "CP-BLOCKED"
score = 5
action = "block"
when = { counterparty = { in_list = "blocklist" } }

[[rules]]
id = "FREEZE-NG"
score = 1
action = "block_and_freeze"
when = { country = "NG", amount = { ge = 900000 } }
"""


@pytest.fixture(params=["native", "reference"])
def engine(request: pytest.FixtureRequest) -> ScoringEngine | ReferenceEngine:
    eng = ScoringEngine(RULES, "kat.toml")
    if request.param == "native":
        return eng
    return ReferenceEngine(eng.rules, version=eng.info.version)


def _trust(engine: ScoringEngine | ReferenceEngine, accounts: dict[int, int]) -> None:
    if isinstance(engine, ScoringEngine):
        engine.set_trusted(accounts)
    else:
        engine.trusted = dict(accounts)


def _d(t: Transaction, outcome: Outcome, score: int, fired: tuple[str, ...],
       path: ScoringPath = ScoringPath.FULL, method: StepUpMethod | None = None) -> Decision:
    return Decision(t.tx_id, outcome, method, score, path, fired, 1)


def test_fnv1a64_vectors() -> None:
    assert fnv1a64("") == 0 == hash_str(b"")
    assert fnv1a64("a") == 0xAF63DC4C8601EC8C == hash_str(b"a")
    assert fnv1a64("foobar") == 0x85944171F73967E8 == hash_str(b"foobar")
    assert fnv1a64("Zürich") == hash_str("Zürich".encode())


def test_account_story(engine: ScoringEngine | ReferenceEngine) -> None:
    t0 = 1_700_000_000_000
    t = tx(1, amount=1000, ts_ms=t0)
    assert engine.score(t) == _d(t, Outcome.ALLOW, 0, ())  # learns device, country, baseline
    t = tx(2, amount=1000, device="dev-b", ts_ms=t0 + 1000)
    assert engine.score(t) == _d(t, Outcome.ALLOW, 15, ("NEWDEV",))
    t = tx(3, amount=12_000, country="FR", ts_ms=t0 + 2000)
    # baseline 1000 -> ratio 12.0 (SPIKE); country changed (HOP); 2 payments this minute
    assert engine.score(t) == _d(t, Outcome.BLOCK, 70, ("AMT", "HOP", "SPIKE"))
    t = tx(4, amount=10, country="FR", ts_ms=t0 + 3000)  # blocked tx3 taught nothing
    assert engine.score(t) == _d(t, Outcome.STEP_UP, 55, ("HOP", "BURST"),
                                 method=StepUpMethod.SMS_UP)


def test_method_precedence_and_default(engine: ScoringEngine | ReferenceEngine) -> None:
    t0 = 1_700_000_000_000
    engine.score(tx(1, ts_ms=t0))
    t = tx(2, device="dev-new", amount=20_000, ts_ms=t0 + 120_000)  # NEWDEV + AMT + SPIKE
    d = engine.score(t)
    assert d.fired == ("AMT", "NEWDEV", "SPIKE")
    assert d.score == 65 and d.outcome is Outcome.BLOCK and d.method is None
    for n in range(3):  # AMT only: 20 < step_up
        assert engine.score(tx(3 + n, account=8, amount=15_000, ts_ms=t0 + n)).score == 20
    t = tx(6, account=8, amount=15_000, ts_ms=t0 + 3)  # AMT + BURST = 55, no hint
    assert engine.score(t) == _d(t, Outcome.STEP_UP, 55, ("AMT", "BURST"),
                                 method=StepUpMethod.SMS_DOWN)


def test_trusted_path_guards_and_quota(engine: ScoringEngine | ReferenceEngine) -> None:
    _trust(engine, {7: 1, 8: 2})  # level 2 has no tier in this file: full path
    t0 = 1_700_000_000_000
    t = tx(1, amount=10_000, ts_ms=t0)
    assert engine.score(t) == _d(t, Outcome.ALLOW, 20, ("AMT",), ScoringPath.TRUSTED)
    assert engine.score(tx(2, account=8, ts_ms=t0)).path is ScoringPath.FULL
    # guard: amount >= 5x baseline (10000) sends the trusted account to full screening
    t = tx(3, amount=50_000, ts_ms=t0 + 60_000)
    assert engine.score(t) == _d(t, Outcome.ALLOW, 20, ("AMT", "G-BASE"))
    # quota: 60000 of 100000 used today, 45000 more does not fit -> full path, no guards
    t = tx(4, amount=45_000, ts_ms=t0 + 120_000)
    assert engine.score(t) == _d(t, Outcome.ALLOW, 20, ("AMT",))
    # next UTC day: the quota is fresh again
    t = tx(5, amount=20_000, ts_ms=t0 + 86_400_000)
    assert engine.score(t) == _d(t, Outcome.ALLOW, 20, ("AMT",), ScoringPath.TRUSTED)


def test_block_floor_and_freeze(engine: ScoringEngine | ReferenceEngine) -> None:
    engine.set_blocklist("counterparty", [9])
    d = engine.score(tx(1, amount=10))
    assert d.outcome is Outcome.BLOCK and d.fired == ("CP-BLOCKED",) and d.score == 5
    d = engine.score(tx(2, account=5, country="NG", amount=1_000_000, counterparty=1))
    assert d.outcome is Outcome.BLOCK_AND_FREEZE
    d = engine.score(tx(3, account=5, amount=1, counterparty=1))
    assert d == Decision("tx-3", Outcome.BLOCK, None, 0, ScoringPath.FULL, (FROZEN_RULE_ID,), 1)


def test_freeze_and_unfreeze_native() -> None:
    eng = ScoringEngine(RULES)
    eng.freeze_account(7)
    assert eng.is_frozen(7)
    assert eng.score(tx(1)).fired == (FROZEN_RULE_ID,)
    eng.unfreeze_account(7)
    assert eng.score(tx(2)).outcome is Outcome.ALLOW
    for acct in range(2000):  # grows the frozen table several times
        eng.freeze_account(acct * 7919)
    assert all(eng.is_frozen(a * 7919) for a in range(2000))
    assert eng.stats()["frozen_accounts"] == 2000
