"""Alert content: severity, titles, suggested actions and fired rules with descriptions."""

from __future__ import annotations

import msgspec
import pytest

from gateway import alert_content, wire
from gateway.alert_content import (
    CALL_CUSTOMER,
    decision_alert,
    decision_title,
    format_amount,
    severity_of,
    suggested_actions,
    tx_summary_from_transaction,
)
from gateway.scoring import DEFAULT_RULES_PATH, FROZEN_RULE_ID, ScoringEngine

OUT = wire.Outcome
TX = wire.TxSummary("tx-1", 1234, 99, 1_250_000, "EUR", "transfer", 4829, "DE", 1_700_000_000_000)
PROFILE = wire.AccountProfile(2, 1_300_000, 3, 1_400_000, 9, 2_000_000, 40_000, 2, 57)


def _decision(outcome: wire.Outcome, fired: tuple[str, ...] = (), *, score: int = 950,
              method: wire.StepUpMethod | None = None, tx_id: str = "tx-1") -> wire.Decision:
    return wire.Decision(tx_id, outcome, method, score, wire.ScoringPath.FULL, fired, 4)


def test_severity_by_outcome() -> None:
    assert [severity_of(o) for o in OUT] == [
        wire.Severity.LOW, wire.Severity.MEDIUM, wire.Severity.HIGH, wire.Severity.CRITICAL]


@pytest.mark.parametrize(("amount", "currency", "text"), [
    (1_250_000, "EUR", "12,500.00"),
    (5, "USD", "0.05"),
    (0, "GBP", "0.00"),
    (1_250_000, "JPY", "1,250,000"),
    (1_250_005, "KWD", "1,250.005"),
    (12_345, "CLF", "1.2345"),
    (100, "XYZ", "1.00"),  # unknown currency: two decimals
])
def test_amounts_in_major_units(amount: int, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


def test_title_names_outcome_amount_channel_account_and_score() -> None:
    d = _decision(OUT.BLOCK_AND_FREEZE, ("BL-DEVICE",))
    assert decision_title(TX, d) == (
        "BLOCK_AND_FREEZE 12,500.00 EUR transfer from account 1234 (score 950)")
    frozen = _decision(OUT.BLOCK, (FROZEN_RULE_ID,), score=0)
    assert decision_title(TX, frozen).endswith("from account 1234 (account frozen)")


def test_actions_by_outcome() -> None:
    assert suggested_actions(_decision(OUT.BLOCK_AND_FREEZE)) == [
        "Confirm the account freeze", CALL_CUSTOMER]
    assert suggested_actions(_decision(OUT.BLOCK)) == [
        CALL_CUSTOMER, "Decide whether to freeze the account"]
    assert suggested_actions(_decision(OUT.ALLOW)) == ["Review the payment: it was allowed"]
    frozen = suggested_actions(_decision(OUT.BLOCK, (FROZEN_RULE_ID,)))
    assert frozen[0] == "Review the attempted payment on the frozen account"
    assert "Decide whether to freeze the account" not in frozen


def test_step_up_names_its_method() -> None:
    steps = [suggested_actions(_decision(OUT.STEP_UP, method=m)) for m in wire.StepUpMethod]
    assert all(len(s) == 1 for s in steps)
    assert len({s[0] for s in steps}) == len(steps)  # one distinct step per method


def test_sms_up_warns_of_interception() -> None:
    (step,) = suggested_actions(_decision(OUT.STEP_UP, method=wire.StepUpMethod.SMS_UP))
    assert "intercepted" in step


def test_family_actions_follow_fired_order_once_each() -> None:
    d = _decision(OUT.BLOCK, ("MULE-FANOUT", "DEV-NEW", "VEL-1M-5", "DEV-NEW-LARGE",
                            "BL-COUNTERPARTY", "R0001", "g-new-device", "VEL_1H_SUM"))
    assert suggested_actions(d) == [
        CALL_CUSTOMER,
        "Decide whether to freeze the account",
        "Check the counterparty for mule activity",
        "Review the device change",
        "Review the account's payments of the last 24 hours",
    ]


@pytest.mark.parametrize(("rule_id", "needle"), [
    ("BL-COUNTERPARTY", "mule"), ("G-BLOCKED-CP", "mule"), ("BL-IP", "block-list"),
    ("ATO-CLASSIC", "takeover"), ("SIM-SWAP-SUSPECT", "takeover"), ("DEV-MANY", "device"),
    ("CH-WEB-NEW-DEVICE", "device"), ("GEO-HIGH-RISK", "location"),
    ("G-COUNTRY-HOP", "location"), ("QUOTA-COUNT", "payments"), ("BASE-10X", "amount"),
    ("MCC-CRYPTO", "merchant"),
])
def test_rule_families(rule_id: str, needle: str) -> None:
    family = suggested_actions(_decision(OUT.ALLOW, (rule_id,)))[1:]
    assert len(family) == 1 and needle in family[0]


def test_unrelated_prefixes_are_no_family() -> None:
    for rule_id in ("DEVICE-X", "BLX", "AMTX-1", "GOOD-GROCERIES", "R0112"):
        assert len(suggested_actions(_decision(OUT.ALLOW, (rule_id,)))) == 1, rule_id


def test_decision_alert_content() -> None:
    d = _decision(OUT.BLOCK_AND_FREEZE, ("BL-DEVICE", "AMT-HIGH", "UNKNOWN"))
    alert = decision_alert(
        alert_id=77, raised_unix_ns=2_000, decided_unix_ns=1_000, source="eu-1", tx=TX,
        decision=d, profile=PROFILE,
        descriptions={"AMT-HIGH": "High amount", "BL-DEVICE": "Device on the block list",
                      "OTHER": "not fired"})
    assert (alert.alert_id, alert.severity, alert.kind, alert.account) == (
        77, wire.Severity.CRITICAL, "decision", 1234)
    assert (alert.raised_unix_ns, alert.decided_unix_ns, alert.source) == (2_000, 1_000, "eu-1")
    assert alert.title == decision_title(TX, d)
    assert alert.tx == TX and alert.decision == d and alert.profile == PROFILE
    assert alert.rules == [wire.FiredRule("BL-DEVICE", "Device on the block list"),
                           wire.FiredRule("AMT-HIGH", "High amount"),
                           wire.FiredRule("UNKNOWN", "")]
    assert alert.actions == suggested_actions(d) and alert.details == {}
    wire_bytes = msgspec.msgpack.encode(alert)
    assert msgspec.msgpack.decode(wire_bytes, type=wire.Alert) == alert


def test_decision_alert_without_profile() -> None:
    alert = decision_alert(alert_id=1, raised_unix_ns=0, decided_unix_ns=0, source="n",
                           tx=TX, decision=_decision(OUT.STEP_UP, method=wire.StepUpMethod.FACE),
                           profile=None, descriptions={})
    assert alert.profile is None and alert.severity is wire.Severity.MEDIUM and alert.rules == []


def test_decision_must_be_for_the_payment() -> None:
    with pytest.raises(ValueError, match="differ"):
        decision_alert(alert_id=1, raised_unix_ns=0, decided_unix_ns=0, source="n", tx=TX,
                       decision=_decision(OUT.BLOCK, tx_id="other"), profile=None,
                       descriptions={})


def test_tx_summary_from_transaction() -> None:
    t = wire.Transaction("tx-9", 5, 6, 700, "USD", wire.Channel.POS, 5999, "dev", "1.2.3.4",
                         "US", "Austin", 42)
    assert tx_summary_from_transaction(t) == wire.TxSummary(
        "tx-9", 5, 6, 700, "USD", "pos", 5999, "US", 42)


def test_frozen_id_is_the_engines() -> None:
    assert alert_content.FROZEN_RULE_ID == FROZEN_RULE_ID


def test_alert_from_the_default_rules_end_to_end() -> None:
    eng = ScoringEngine.from_file(DEFAULT_RULES_PATH)
    t = wire.Transaction("big-1", 4321, 8, 60_000_000, "EUR", wire.Channel.TRANSFER, 4829,
                         "new-dev", "10.1.1.1", "NG", "Lagos", 1_700_000_000_000)
    d = eng.score(t)
    assert d.outcome is not OUT.ALLOW
    alert = decision_alert(alert_id=1, raised_unix_ns=5, decided_unix_ns=4, source="eu-1",
                           tx=tx_summary_from_transaction(t), decision=d,
                           profile=eng.profile(t.account, t.ts_ms),
                           descriptions=eng.rule_descriptions(d.ruleset_version))
    assert [r.id for r in alert.rules] == list(d.fired)
    assert all(r.description for r in alert.rules)
    assert alert.profile is not None and alert.profile.tx_count == 1
    assert alert.title.startswith(f"{d.outcome.name} 600,000.00 EUR transfer from account 4321")
    assert alert.actions and alert.severity is severity_of(d.outcome)
