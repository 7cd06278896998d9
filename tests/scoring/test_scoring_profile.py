"""Account profiles (gw_engine_profile) and rule descriptions by rule-set version."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scoring_helpers import HEADER, tx
from test_scoring_differential import ACCOUNTS, rule_files, transactions

from gateway.errors import ErrorCode, NativeError
from gateway.scoring import (
    DEFAULT_RULES_PATH,
    FROZEN_RULE_ID,
    ReferenceEngine,
    RuleSetVersionNotKeptError,
    ScoringEngine,
)
from gateway.wire import AccountProfile, Outcome, Transaction

RULES = HEADER + """
[[guards]]
id = "G-BASE"
description = "Amount at least 5 times the baseline"
kind = "amount_vs_baseline"
factor = 5.0

[[rules]]
id = "BIG"
description = "Large amount"
score = 60
when = { amount = { ge = 100000 } }

[[rules]]
id = "QUIET"
score = 0
when = { mcc = 1 }
"""
T0 = 1_700_000_000_000  # a multiple of every window bucket width


@pytest.fixture(params=["native", "reference"])
def engine(request: pytest.FixtureRequest) -> ScoringEngine | ReferenceEngine:
    eng = ScoringEngine(RULES, "profile.toml")
    if request.param == "native":
        return eng
    return ReferenceEngine(eng.rules, version=eng.info.version)


def test_profile_known_answers(engine: ScoringEngine | ReferenceEngine) -> None:
    assert engine.profile(7, T0) is None  # never seen
    assert engine.score(tx(1, amount=1000, device="dev-a", ts_ms=T0)).outcome is Outcome.ALLOW
    assert engine.profile(7, T0) == AccountProfile(1, 1000, 1, 1000, 1, 1000, 1000, 1, 1)
    engine.score(tx(2, amount=2000, device="dev-b", ts_ms=T0 + 5_000))
    # baseline 1000 + (2000 - 1000) // 8
    assert engine.profile(7, T0 + 5_000) == AccountProfile(2, 3000, 2, 3000, 2, 3000, 1125, 2, 2)
    blocked = engine.score(tx(3, amount=200_000, device="dev-c", ts_ms=T0 + 20_000))
    assert blocked.outcome is Outcome.BLOCK  # counted in velocity, not learned
    assert engine.profile(7, T0 + 20_000) == AccountProfile(
        3, 203_000, 3, 203_000, 3, 203_000, 1125, 2, 3)
    # 70 s on, only the third payment's 10 s bucket is still in the 1-minute window
    assert engine.profile(7, T0 + 70_000) == AccountProfile(
        1, 200_000, 3, 203_000, 3, 203_000, 1125, 2, 3)
    # two days on, the windows are empty and the learned state stays
    assert engine.profile(7, T0 + 2 * 86_400_000) == AccountProfile(0, 0, 0, 0, 0, 0, 1125, 2, 3)
    assert engine.profile(8, T0) is None


def test_frozen_account_without_payments_has_no_profile() -> None:
    eng = ScoringEngine(RULES)
    eng.freeze_account(5)
    assert eng.score(tx(1, account=5)).fired == (FROZEN_RULE_ID,)
    assert eng.profile(5, T0) is None
    eng.unfreeze_account(5)
    eng.score(tx(2, account=5, ts_ms=T0))
    eng.freeze_account(5)
    eng.score(tx(3, account=5, ts_ms=T0 + 1))  # refused: state unchanged
    profile = eng.profile(5, T0 + 1)
    assert profile is not None and profile.tx_count == 1


def test_profile_needs_a_valid_timestamp() -> None:
    eng = ScoringEngine(RULES)
    eng.score(tx(1))
    with pytest.raises(NativeError, match="invalid argument"):
        eng.profile(7, -1)


def test_full_account_table_keeps_no_state() -> None:
    eng = ScoringEngine(RULES, max_accounts=1)
    eng.score(tx(1, account=1))
    eng.score(tx(2, account=2))  # scored on empty state, nothing kept
    assert eng.profile(1, T0) is not None and eng.profile(2, T0) is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=rule_files(), txs=transactions(), batched=st.booleans(),
       later=st.sampled_from([0, 9_999, 60_000, 3_600_000, 86_400_000]))
def test_native_profile_matches_reference(source: str, txs: list[Transaction], batched: bool,
                                          later: int) -> None:
    eng = ScoringEngine(source, "<hypothesis>")
    ref = ReferenceEngine(eng.rules, version=eng.info.version)
    for i, t in enumerate(txs):
        if batched and i % 3:
            eng.score_batch([t])
        else:
            eng.score(t)
        ref.score(t)
        for account in ACCOUNTS:
            for ts in (t.ts_ms, t.ts_ms + later):
                assert eng.profile(account, ts) == ref.profile(account, ts)


# -- rule descriptions ---------------------------------------------------------------------


def _rules(tag: str) -> str:
    return HEADER + f"""
[[guards]]
id = "G-{tag}"
description = "guard {tag}"
kind = "blocklist"

[[rules]]
id = "{tag}-1"
description = "first rule of {tag}"
score = 10
when = {{ amount = {{ ge = 0 }} }}

[[rules]]
id = "{tag}-2"
score = 5
when = {{ mcc = 1 }}
"""


def test_rule_descriptions_by_version() -> None:
    eng = ScoringEngine(_rules("a"), "a.toml")
    eng.load_rules(_rules("b"), "b.toml")
    live = eng.rule_descriptions()
    assert dict(live) == {"b-1": "first rule of b", "b-2": "", "G-b": "guard b",
                          FROZEN_RULE_ID: live[FROZEN_RULE_ID]}
    assert live[FROZEN_RULE_ID]  # a frozen account's decision is described too
    assert eng.rule_descriptions(2) is live  # built once per version
    assert eng.rule_descriptions(1)["a-1"] == "first rule of a"
    eng.load_shadow(_rules("s"), "s.toml")
    assert eng.rule_descriptions(3)["s-1"] == "first rule of s"
    eng.rollback()
    assert eng.rule_descriptions()["a-1"] == "first rule of a"
    with pytest.raises(RuleSetVersionNotKeptError) as err:
        eng.rule_descriptions(2)  # rolled back from: no longer kept
    assert err.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(TypeError):
        live["b-1"] = "changed"  # type: ignore[index]


def test_descriptions_name_every_fired_id_of_the_default_rules() -> None:
    eng = ScoringEngine.from_file(DEFAULT_RULES_PATH)
    descriptions = eng.rule_descriptions(eng.info.version)
    assert set(eng.rules.ids) | {FROZEN_RULE_ID} == set(descriptions)
    assert all(descriptions.values())  # the default file describes every rule and guard
    d = eng.score(tx(1, amount=60_000_000, device="new", country="NG"))
    assert d.fired and all(descriptions[i] for i in d.fired)


def test_old_versions_drop_out_after_keep_limit() -> None:
    from gateway.scoring._engine import KEEP_VERSIONS

    eng = ScoringEngine(_rules("v"))
    for _ in range(KEEP_VERSIONS):
        eng.load_rules(_rules("v"))
    assert eng.info.version == KEEP_VERSIONS + 1
    with pytest.raises(RuleSetVersionNotKeptError):
        eng.rule_descriptions(1)
    assert eng.rule_descriptions(2)["v-1"] == "first rule of v"
