"""Engine lifecycle: hot reload, versions and rollback, shadow, trusted data, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from scoring_helpers import HEADER, tx

from gateway.errors import ConfigError, ErrorCode
from gateway.scoring import (
    DEFAULT_RULES_PATH,
    NoPreviousRuleSetError,
    RuleFileError,
    ScoringEngine,
    TransactionGenerator,
    account_id,
    generate_rules,
    write_trusted_file,
)
from gateway.wire import Outcome, ScoringPath


def _flat(tag: str, n_rules: int, score: int) -> str:
    """n_rules rules that all fire on every payment: a half-installed set would show."""
    return HEADER + "".join(
        f'\n[[rules]]\nid = "{tag}-{i}"\nscore = {score}\nwhen = {{ amount = {{ ge = 0 }} }}\n'
        for i in range(n_rules))


def test_reload_versions_and_rollback() -> None:
    eng = ScoringEngine(_flat("a", 2, 1), "a.toml")
    assert eng.info.version == 1 and eng.info.rules == 2 and eng.info.filename == "a.toml"
    info = eng.load_rules(_flat("b", 3, 20), "b.toml")
    assert info.version == 2 and info.rules == 3
    d = eng.score(tx(1))
    assert d.ruleset_version == 2 and d.score == 60 and d.outcome is Outcome.BLOCK
    assert eng.rollback().version == 1
    assert eng.score(tx(2)).fired == ("a-0", "a-1")
    with pytest.raises(NoPreviousRuleSetError) as info_err:
        eng.rollback()
    assert info_err.value.code is ErrorCode.NOT_FOUND
    assert [v.version for v in eng.versions] == [1]


def test_bad_file_keeps_running_set() -> None:
    eng = ScoringEngine(_flat("a", 1, 5))
    with pytest.raises(RuleFileError) as info:
        eng.load_rules(_flat("b", 1, 5).replace("ge = 0", "ge = 'x'"), "broken.toml")
    assert info.value.filename == "broken.toml" and info.value.rule_id == "b-0"
    assert eng.info.version == 1
    assert eng.score(tx(1)).fired == ("a-0",)
    assert eng.load_rules(_flat("c", 1, 5)).version == 2  # a refused file used no version


def test_shadow_report_counts_disagreements() -> None:
    eng = ScoringEngine(_flat("live", 1, 5))
    assert eng.shadow_report()["compared"] == 0
    info = eng.load_shadow(_flat("strict", 1, 40), "challenger.toml")
    assert info.shadow and info.version == 2
    for n in range(10):
        d = eng.score(tx(n, account=n))
        assert d.outcome is Outcome.ALLOW and d.ruleset_version == 1  # shadow not enforced
    report = eng.shadow_report()
    assert report["compared"] == 10 and report["disagree"] == 10
    assert report["by_outcome"] == {"allow->step_up": 10}
    assert report["stricter"] == 10 and report["mean_score_diff"] == 35.0
    assert report["fired_differs"] == 10 and report["shadow_version"] == 2
    eng.load_shadow(_flat("live", 1, 5))
    eng.score(tx(99))
    r = eng.shadow_report()
    assert r["agree"] == 1 and r["fired_differs"] == 0
    eng.clear_shadow()
    assert eng.shadow_report()["shadow_version"] is None


def test_trusted_file_load(tmp_path: Path) -> None:
    path = tmp_path / "trusted.csv"
    assert write_trusted_file(path, 1000) == 1000
    eng = ScoringEngine(_flat("a", 1, 0))
    assert eng.load_trusted(path) == 1000
    assert eng.stats()["trusted_accounts"] == 1000
    assert eng.score(tx(1, account=account_id(3))).path is ScoringPath.TRUSTED  # level 1
    assert eng.score(tx(2, account=account_id(4))).path is ScoringPath.FULL  # level 2
    path.write_text("# header\n1,1\n2;1\n\n3 1\n4,0\n")
    with pytest.raises(ConfigError) as info:
        eng.load_trusted(path)
    assert "line 6" in str(info.value)
    assert eng.stats()["trusted_accounts"] == 1000  # the old table stays
    with pytest.raises(FileNotFoundError):
        eng.load_trusted(tmp_path / "missing.csv")


def test_blocklists_accept_strings_and_ints() -> None:
    rules = HEADER + """
[[rules]]
id = "dev"
score = 1
when = { device = { in_list = "blocklist" } }
[[rules]]
id = "ip"
score = 2
when = { ip = { in_list = "blocklist" } }
"""
    eng = ScoringEngine(rules)
    eng.set_blocklist("device", ["dev-x"])
    eng.set_blocklist("ip", ["10.0.0.1"])
    assert eng.score(tx(1, device="dev-x")).fired == ("dev", "ip")
    eng.set_blocklist("ip", [])
    assert eng.score(tx(2, device="dev-x")).fired == ("dev",)
    with pytest.raises(ValueError, match="unknown block list"):
        eng.set_blocklist("email", [])


def test_batch_equals_single_and_stats() -> None:
    src = generate_rules(200, 20, seed=9)
    gen = TransactionGenerator(seed=9, accounts=500)
    txs = gen.batch(2000)
    a, b = ScoringEngine(src), ScoringEngine(src)
    for e in (a, b):
        e.set_trusted(gen.trusted_accounts())
    assert a.score_batch(txs) == [b.score(t) for t in txs]
    s = a.stats()
    assert s["scored"] == 2000 == s["path_full"] + s["path_trusted"]
    assert s["allow"] + s["step_up"] + s["block"] + s["block_and_freeze"] == 2000
    assert s["accounts"] <= 500 and s["trusted_accounts"] == len(gen.trusted_accounts())


def test_default_rules_engine() -> None:
    eng = ScoringEngine.from_file(DEFAULT_RULES_PATH)
    assert eng.info.name == "default" and eng.info.trusted_rules >= 10
    assert eng.score(tx(1)).outcome is Outcome.ALLOW


def test_swaps_are_atomic_for_a_scorer_on_another_thread() -> None:
    """A scorer thread (GIL released in C) never sees half a rule set while sets swap."""
    n_rules = 40

    def _flat(tag: str, n: int, score: int) -> str:  # nothing ever freezes
        return globals()["_flat"](tag, n, score).replace("= 100\n", "= 1000000\n")

    eng = ScoringEngine(_flat("v1", n_rules, 1))
    per_version = {1: 1}
    stop = threading.Event()
    seen: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    txs = [tx(i, account=i % 50, ts_ms=1_700_000_000_000 + i) for i in range(256)]

    def scorer() -> None:
        try:
            while not stop.is_set():
                for d in eng.score_batch(txs):
                    seen.append((d.ruleset_version, d.score, len(d.fired)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=scorer)
    thread.start()
    try:
        for k in range(2, 60):
            per_version[eng.load_rules(_flat(f"v{k}", n_rules, k)).version] = k
            if k % 5 == 0:
                eng.rollback()
            if k % 7 == 0:
                eng.load_shadow(_flat(f"s{k}", 3, 1))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and not errors
    assert len({v for v, _, _ in seen}) > 1 or seen
    for version, score, fired in seen:
        assert score == n_rules * per_version[version]
        assert fired == n_rules
