"""Differential tests: the native engine against the pure-Python reference.

Random rule sets and random transaction sequences (so account state evolves) must give the
same outcome, method, score, path, fired rule ids and version from C and from Python.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.scoring import (
    ReferenceEngine,
    ScoringEngine,
    TransactionGenerator,
    generate_rules,
)
from gateway.wire import Channel, Transaction

ACCOUNTS = (0, 1, 7, 2**63, 2**64 - 1)
COUNTERPARTIES = (0, 3, 9, 2**64 - 2)
DEVICES = ("", "d1", "d2", "d3", "d4", "d5")
COUNTRIES = ("", "DE", "NG", "US")
CITIES = ("", "Berlin", "Lagos", "Austin")
AMOUNTS = (0, 1, 50, 999, 1000, 5000, 20_000, 10**6, 2**62)
STEPS = (0, 1, 999, 5_000, 10_000, 60_000, 3_600_000, 86_400_000, 10**10, -1, -60_000,
         -86_400_000)


def _q(v: object) -> str:
    return json.dumps(v)


CONDITIONS: dict[str, st.SearchStrategy[str]] = {
    "amount": st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]).flatmap(
        lambda op: st.sampled_from(AMOUNTS).map(lambda v: f"amount.{op} = {v}")),
    "amount_in": st.lists(st.sampled_from(AMOUNTS), min_size=1, max_size=12).map(
        lambda vs: f"amount.in = {vs}"),
    "mcc": st.lists(st.sampled_from([5411, 7995, 6051, 4829]), min_size=1, max_size=3).map(
        lambda vs: f"mcc.not_in = {vs}" if len(vs) == 3 else f"mcc.in = {vs}"),
    "country": st.sampled_from(COUNTRIES[1:]).map(lambda v: f"country.eq = {_q(v)}"),
    "country_ne": st.sampled_from(COUNTRIES[1:]).map(lambda v: f"country.ne = {_q(v)}"),
    "currency": st.sampled_from(["EUR", "USD"]).map(lambda v: f"currency = {_q(v)}"),
    "channel": st.sampled_from([c.value for c in Channel]).map(lambda v: f"channel = {_q(v)}"),
    "city": st.sampled_from(CITIES[1:]).map(lambda v: f"city.in = [{_q(v)}]"),
    "device": st.sampled_from(DEVICES[1:]).map(lambda v: f"device.eq = {_q(v)}"),
    "bool": st.sampled_from(["new_device", "country_changed", "city_changed", "trusted",
                             "blocklist_device", "blocklist_account"]).flatmap(
        lambda f: st.booleans().map(lambda b: f"{f} = {str(b).lower()}")),
    "in_list": st.sampled_from(["account", "device", "counterparty", "ip"]).map(
        lambda f: f'{f}.in_list = "blocklist"'),
    "velocity": st.sampled_from(["velocity_1m_count", "velocity_1h_count",
                                 "velocity_24h_count", "tx_count", "quota_used_count",
                                 "known_devices"]).flatmap(
        lambda f: st.sampled_from(["ge", "lt"]).flatmap(
            lambda op: st.integers(0, 4).map(lambda v: f"{f}.{op} = {v}"))),
    "sums": st.sampled_from(["velocity_1m_sum", "velocity_1h_sum", "velocity_24h_sum",
                             "quota_used_amount", "baseline"]).flatmap(
        lambda f: st.sampled_from(AMOUNTS).map(lambda v: f"{f}.ge = {v}")),
    "ratio": st.sampled_from(["ge", "le", "gt"]).flatmap(
        lambda op: st.sampled_from([0.0, 0.5, 1.0, 1.001, 2.0, 5.0, 1000.0]).map(
            lambda v: f"amount_to_baseline.{op} = {v}")),
    "time": st.sampled_from(["hour_of_day", "weekday"]).flatmap(
        lambda f: st.lists(st.integers(0, 6), min_size=1, max_size=3).map(
            lambda vs: f"{f}.in = {vs}")),
    "ids": st.sampled_from(ACCOUNTS).map(lambda v: f"account.eq = {v}"),
    "tier": st.integers(0, 3).map(lambda v: f"tier = {v}"),
}


@st.composite
def rule_files(draw: st.DrawFn) -> str:
    step = draw(st.integers(-20, 40))
    block = step + draw(st.integers(1, 40))
    freeze = block + draw(st.integers(1, 60))
    method = draw(st.sampled_from(["face", "sms_down", "sms_up", "old_device_confirm"]))
    out = [f'[thresholds]\nstep_up = {step}\nblock = {block}\nblock_and_freeze = {freeze}\n'
           f'step_up_method = "{method}"\n']
    for level in draw(st.lists(st.integers(1, 3), unique=True, max_size=3)):
        out.append(f'[[tiers]]\nname = "t{level}"\nlevel = {level}\n'
                   f"daily_amount = {draw(st.sampled_from([0, 5000, 10**6]))}\n"
                   f"daily_count = {draw(st.integers(0, 6))}\n")
    keys = sorted(CONDITIONS)
    for i in range(draw(st.integers(0, 30))):
        kinds = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True))
        when = "\n".join(draw(CONDITIONS[k]) for k in kinds)
        action = draw(st.sampled_from(["", "face", "sms_down", "sms_up", "old_device_confirm",
                                       "block", "block_and_freeze"]))
        out.append(f'[[rules]]\nid = "r{i}"\nscore = {draw(st.integers(-30, 60))}\n'
                   + (f'action = "{action}"\n' if action else "")
                   + ("trusted = true\n" if draw(st.booleans()) else "")
                   + f"[rules.when]\n{when}\n")
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["amount_vs_baseline", "new_device_amount", "blocklist",
                                     "custom"]))
        body = {"amount_vs_baseline": f"factor = {draw(st.sampled_from([1.5, 2, 5.0]))}",
                "new_device_amount": f"min_amount = {draw(st.sampled_from(AMOUNTS))}",
                "blocklist": f'list = "{draw(st.sampled_from(["counterparty", "ip"]))}"',
                "custom": f"[guards.when]\n{draw(CONDITIONS['velocity'])}"}[kind]
        out.append(f'[[guards]]\nid = "g{i}"\nkind = "{kind}"\n{body}\n')
    return "\n".join(out)


@st.composite
def transactions(draw: st.DrawFn) -> list[Transaction]:
    ts = draw(st.integers(0, 2**40))
    txs = []
    for n in range(draw(st.integers(1, 25))):
        ts = max(0, ts + draw(st.sampled_from(STEPS)))
        txs.append(Transaction(
            f"t{n}", draw(st.sampled_from(ACCOUNTS)), draw(st.sampled_from(COUNTERPARTIES)),
            draw(st.sampled_from(AMOUNTS)), draw(st.sampled_from(["EUR", "USD"])),
            draw(st.sampled_from(list(Channel))), draw(st.sampled_from([5411, 7995, 6051])),
            draw(st.sampled_from(DEVICES)), draw(st.sampled_from(["", "10.0.0.1", "::1"])),
            draw(st.sampled_from(COUNTRIES)), draw(st.sampled_from(CITIES)), ts))
    return txs


def _pair(source: str, trusted: dict[int, int], lists: dict[str, list[Any]]
          ) -> tuple[ScoringEngine, ReferenceEngine]:
    eng = ScoringEngine(source, "<hypothesis>")
    ref = ReferenceEngine(eng.rules, version=eng.info.version)
    eng.set_trusted(trusted)
    ref.trusted = dict(trusted)
    for kind, values in lists.items():
        eng.set_blocklist(kind, values)
        ref.set_blocklist(kind, values)
    return eng, ref


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=rule_files(), txs=transactions(),
       trusted=st.dictionaries(st.sampled_from(ACCOUNTS), st.integers(1, 4), max_size=4),
       blocked=st.fixed_dictionaries({
           "account": st.lists(st.sampled_from(ACCOUNTS), max_size=2),
           "device": st.lists(st.sampled_from(DEVICES[1:]), max_size=2),
           "counterparty": st.lists(st.sampled_from(COUNTERPARTIES), max_size=2),
           "ip": st.lists(st.sampled_from(["10.0.0.1", "::1"]), max_size=1)}),
       batched=st.booleans())
def test_native_matches_reference(source: str, txs: list[Transaction],
                                  trusted: dict[int, int], blocked: dict[str, list[Any]],
                                  batched: bool) -> None:
    eng, ref = _pair(source, trusted, blocked)
    got = eng.score_batch(txs) if batched else [eng.score(t) for t in txs]
    want = [ref.score(t) for t in txs]
    assert got == want
    assert eng.stats()["frozen_accounts"] == len(ref.frozen)


def test_generated_rule_sets_match_reference_over_long_streams() -> None:
    """Seeded realistic rule sets (indexed paths in C) over evolving state."""
    for seed in range(3):
        source = generate_rules(250, 25, seed=seed)
        gen = TransactionGenerator(seed=seed, accounts=400, trusted_fraction=0.4,
                                   fraud_rate=0.1)
        eng, ref = _pair(source, gen.trusted_accounts(),
                         {"counterparty": gen.blocked_counterparties})
        txs = gen.batch(3000)
        assert eng.score_batch(txs[:1500]) == [ref.score(t) for t in txs[:1500]]
        assert [eng.score(t) for t in txs[1500:]] == [ref.score(t) for t in txs[1500:]]
