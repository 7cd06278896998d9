"""Alert content: what an officer is shown about a risky decision.

Sans-IO: plain functions over wire types, no I/O and no clock (times are passed in). A
decision alert carries the payment, the decision, the rules that fired with their
descriptions, the account's profile right after the decision, a severity and a few
suggested next steps. The tables below are the whole policy: severity by outcome, steps by
outcome, by step-up method and by rule family (the leading segment of a rule id, such as
``VEL`` in ``VEL-1M-5``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from gateway import wire

KIND_DECISION: Final = "decision"
FROZEN_RULE_ID: Final = "@frozen"  # gateway.scoring.FROZEN_RULE_ID: a frozen account's block

_SEVERITY: Final = {
    wire.Outcome.BLOCK_AND_FREEZE: wire.Severity.CRITICAL,
    wire.Outcome.BLOCK: wire.Severity.HIGH,
    wire.Outcome.STEP_UP: wire.Severity.MEDIUM,
    wire.Outcome.ALLOW: wire.Severity.LOW,
}

CALL_CUSTOMER: Final = "Call the customer on the number of record"

_OUTCOME_ACTIONS: Final[Mapping[wire.Outcome, tuple[str, ...]]] = {
    wire.Outcome.BLOCK_AND_FREEZE: ("Confirm the account freeze", CALL_CUSTOMER),
    wire.Outcome.BLOCK: (CALL_CUSTOMER, "Decide whether to freeze the account"),
    wire.Outcome.STEP_UP: (),  # the method decides (below)
    wire.Outcome.ALLOW: ("Review the payment: it was allowed",),
}
_FROZEN_ACTIONS: Final = ("Review the attempted payment on the frozen account", CALL_CUSTOMER)

_METHOD_ACTIONS: Final[Mapping[wire.StepUpMethod, str]] = {
    wire.StepUpMethod.FACE: "Follow the face check; call the customer if it fails",
    wire.StepUpMethod.SMS_DOWN: "Follow the SMS code check; call the customer if it fails",
    wire.StepUpMethod.SMS_UP: "Expect the customer's confirming SMS: the SMS downlink may be "
                              "intercepted",
    wire.StepUpMethod.OLD_DEVICE_CONFIRM: "Follow the confirmation on the customer's known "
                                          "device",
}

# Rule families, matched on whole leading segments of the rule id (case-insensitive; `_`,
# `.` and `:` count as `-`). The first family that matches names the rule's step.
_FAMILY_ACTIONS: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    (("BL-COUNTERPARTY", "G-BLOCKED", "MULE"), "Check the counterparty for mule activity"),
    (("BL",), "Check the block-list entry that matched"),
    (("ATO", "SIM-SWAP"),
     "Check for account takeover: recent SIM swap, password or contact changes"),
    (("DEV", "G-NEW-DEVICE", "CH-WEB-NEW-DEVICE"), "Review the device change"),
    (("LOC", "GEO", "G-COUNTRY", "CH-MOBILE-FOREIGN", "NEW-ACCOUNT-FOREIGN"),
     "Verify the payment's location with the customer"),
    (("VEL", "QUOTA"), "Review the account's payments of the last 24 hours"),
    (("AMT", "BASE", "G-BASELINE", "TIER"),
     "Compare the amount with the account's usual payments"),
    (("MCC",), "Check the merchant"),
)

# ISO 4217 minor-unit exponents other than 2.
_EXPONENT: Final = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def severity_of(outcome: wire.Outcome) -> wire.Severity:
    """block_and_freeze is critical, block high, step_up medium, allow low."""
    return _SEVERITY[outcome]


def _family_action(rule_id: str) -> str | None:
    rid = rule_id.upper().replace("_", "-").replace(".", "-").replace(":", "-")
    for prefixes, action in _FAMILY_ACTIONS:
        if any(rid == p or rid.startswith(p + "-") for p in prefixes):
            return action
    return None


def suggested_actions(decision: wire.Decision) -> list[str]:
    """Short steps for the officer: from the outcome, the step-up method and the families
    of the fired rules, in that order, each step once."""
    if FROZEN_RULE_ID in decision.fired:
        steps = list(_FROZEN_ACTIONS)
    else:
        steps = list(_OUTCOME_ACTIONS[decision.outcome])
    if decision.outcome is wire.Outcome.STEP_UP and decision.method is not None:
        steps.append(_METHOD_ACTIONS[decision.method])
    for rule_id in decision.fired:
        action = _family_action(rule_id)
        if action is not None:
            steps.append(action)
    return list(dict.fromkeys(steps))


def format_amount(amount: int, currency: str) -> str:
    """Minor units as the currency writes them: ``1250000, "EUR"`` -> ``"12,500.00"``."""
    exp = _EXPONENT.get(currency, 2)
    if exp == 0:
        return f"{amount:,}"
    major, minor = divmod(amount, 10**exp)
    return f"{major:,}.{minor:0{exp}d}"


def decision_title(tx: wire.TxSummary, decision: wire.Decision) -> str:
    """One line: ``BLOCK_AND_FREEZE 12,500.00 EUR transfer from account 1234 (score 950)``."""
    why = ("account frozen" if FROZEN_RULE_ID in decision.fired
           else f"score {decision.score}")
    return (f"{decision.outcome.name} {format_amount(tx.amount, tx.currency)} {tx.currency} "
            f"{tx.channel} from account {tx.account} ({why})")


def decision_alert(*, alert_id: int, raised_unix_ns: int, decided_unix_ns: int, source: str,
                   tx: wire.TxSummary, decision: wire.Decision,
                   profile: wire.AccountProfile | None,
                   descriptions: Mapping[str, str]) -> wire.Alert:
    """The alert for a scored payment. ``descriptions`` maps rule ids of the decision's
    rule-set version to their descriptions; an id it lacks gets ``""``."""
    if tx.tx_id != decision.tx_id:
        raise ValueError(f"payment {tx.tx_id!r} and decision {decision.tx_id!r} differ")
    return wire.Alert(
        alert_id=alert_id,
        severity=severity_of(decision.outcome),
        kind=KIND_DECISION,
        account=tx.account,
        title=decision_title(tx, decision),
        raised_unix_ns=raised_unix_ns,
        decided_unix_ns=decided_unix_ns,
        source=source,
        tx=tx,
        decision=decision,
        rules=[wire.FiredRule(rid, descriptions.get(rid, "")) for rid in decision.fired],
        profile=profile,
        actions=suggested_actions(decision),
    )


def tx_summary_from_transaction(tx: wire.Transaction) -> wire.TxSummary:
    """The payment of a score request, as an alert shows it."""
    return wire.TxSummary(tx.tx_id, tx.account, tx.counterparty, tx.amount, tx.currency,
                          tx.channel.value, tx.mcc, tx.country, tx.ts_ms)


__all__ = [
    "FROZEN_RULE_ID",
    "KIND_DECISION",
    "decision_alert",
    "decision_title",
    "format_amount",
    "severity_of",
    "suggested_actions",
    "tx_summary_from_transaction",
]
