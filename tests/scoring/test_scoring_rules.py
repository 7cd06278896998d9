"""Rule files: the format, and refusals that name file, rule, line and reason."""

from __future__ import annotations

import pytest
from scoring_helpers import HEADER

from gateway._native import native_constants
from gateway.errors import ErrorCode, GatewayError
from gateway.scoring import DEFAULT_RULES_PATH, FEATURES, RuleFileError, parse_rules
from gateway.scoring._model import ACTIONS, OPS

GOOD = HEADER + """
[[rules]]
id = "big"
description = "large amount"
score = 40
action = "face"
trusted = true
[rules.when]
amount.ge = 10000
country.in = ["NG", "RU"]

[[rules]]
id = "night"
score = 10
when = { hour_of_day = { in = [0, 1, 2] }, counterparty = { in_list = "blocklist" } }

[[guards]]
id = "g-base"
kind = "amount_vs_baseline"
factor = 2.5
"""


def test_good_file_compiles() -> None:
    rs = parse_rules(GOOD, "good.toml")
    assert rs.ids == ("big", "night", "g-base")
    assert rs.trusted_count == 1
    assert rs.rules[0].line == GOOD.splitlines().index("[[rules]]") + 1
    assert rs.guards[0].conditions[0].value == 2500  # milli-units
    assert [t.level for t in rs.tiers] == [1]


def test_default_rules_parse() -> None:
    rs = parse_rules(DEFAULT_RULES_PATH.read_text(), str(DEFAULT_RULES_PATH))
    assert 40 <= len(rs.rules) <= 80
    assert rs.trusted_count >= 10
    assert len(rs.guards) >= 3


def test_feature_and_operator_codes_match_native() -> None:
    native = native_constants("GW_F_")
    assert len(native) == len(FEATURES)
    assert sorted(native.values()) == sorted(d.code for d in FEATURES.values())
    assert native["GW_F_AMOUNT_TO_BASELINE"] == FEATURES["amount_to_baseline"].code
    assert native["GW_F_QUOTA_COUNT"] == FEATURES["quota_used_count"].code
    ops = native_constants("GW_OP_")
    assert ops == {f"GW_OP_{k.upper()}": v for k, v in OPS.items()}
    acts = native_constants("GW_ACT_")
    assert acts["GW_ACT_SMS_UP"] == ACTIONS["sms_up"]
    assert acts["GW_ACT_FREEZE"] == ACTIONS["block_and_freeze"]


def _refuse(text: str) -> RuleFileError:
    with pytest.raises(RuleFileError) as info:
        parse_rules(text, "bad.toml")
    err = info.value
    assert isinstance(err, GatewayError)
    assert err.code is ErrorCode.RULES_INVALID
    assert err.filename == "bad.toml"
    assert "bad.toml" in str(err) and err.reason in str(err)
    return err


def _rules(*bodies: str) -> str:
    return HEADER + "".join(f"\n[[rules]]\n{b.strip()}\n" for b in bodies)


@pytest.mark.parametrize(
    ("body", "reason", "line_offset"),
    [
        ('id = "r1"\nscore = 5\n[rules.when]\nfoo = 1', "unknown feature 'foo'", 4),
        ('id = "r1"\nscore = 5\n[rules.when]\namount.around = 1', "unknown operator", 4),
        ('id = "r1"\nscore = 5\n[rules.when]\namount.ge = "big"', "must be an integer", 4),
        ('id = "r1"\n[rules.when]\namount.ge = 1', "missing score", 0),
        ('id = "r1"\nscore = 5\naction = "shrug"\n[rules.when]\namount = 1', "unknown action", 3),
        ('id = "r1"\nscore = 5\n[rules.when]\ncountry.ge = "DE"', "does not apply", 4),
        ('id = "r1"\nscore = 5\n[rules.when]\nnew_device.gt = true', "only eq and ne", 4),
        ('id = "r1"\nscore = 5\n[rules.when]\ncountry = "Germany"', "two capital", 4),
        ('id = "r1"\nscore = 5\n[rules.when]\nchannel = "fax"', "unknown channel", 4),
        ('id = "r1"\nscore = 5\n[rules.when]\nmcc.in = []', "non-empty list", 4),
        ('id = "r1"\nscore = 5\ncolour = "red"\n[rules.when]\namount = 1', "unknown key", 3),
        ('id = "r1"\nscore = 99999\n[rules.when]\namount = 1', "between", 2),
        ('id = "r1"\nscore = 5', "missing when", 0),
        ('id = "r1"\nscore = 5\n[rules.when]\nip.in_list = "allowlist"', "in_list", 4),
    ],
)
def test_rule_errors_name_rule_line_and_reason(body: str, reason: str, line_offset: int) -> None:
    text = _rules('id = "ok"\nscore = 1\nwhen = { amount = 5 }', body)
    header_line = [i for i, ln in enumerate(text.splitlines(), 1) if ln == "[[rules]]"][1]
    err = _refuse(text)
    assert err.rule_id == "r1"
    assert reason in err.reason
    assert err.line == header_line + line_offset
    assert f"bad.toml:{err.line}" in str(err) and "'r1'" in str(err)


def test_duplicate_id() -> None:
    text = _rules('id = "a"\nscore = 1\nwhen = { amount = 1 }',
                  'id = "a"\nscore = 2\nwhen = { amount = 2 }')
    err = _refuse(text)
    assert err.rule_id == "a" and "duplicate" in err.reason
    assert err.line == [i for i, ln in enumerate(text.splitlines(), 1) if ln == "[[rules]]"][1]


def test_thresholds_must_increase() -> None:
    text = HEADER.replace("block = 60", "block = 20")
    err = _refuse(text)
    assert "increase" in err.reason and err.rule_id is None


def test_toml_syntax_error_has_line() -> None:
    err = _refuse(HEADER + "\n[[rules]]\nid = \n")
    assert "TOML" in err.reason
    assert err.line == len(HEADER.splitlines()) + 3


def test_guard_errors() -> None:
    err = _refuse(HEADER + '\n[[guards]]\nid = "g"\nkind = "vibes"\n')
    assert err.rule_id == "g" and "unknown guard kind" in err.reason
    err = _refuse(HEADER + '\n[[guards]]\nid = "g"\nkind = "amount_vs_baseline"\n')
    assert "factor" in err.reason


def test_unknown_top_level_and_tier_errors() -> None:
    assert "unknown key" in _refuse(HEADER + "\n[extras]\na = 1\n").reason
    dup = HEADER + '\n[[tiers]]\nname = "x"\nlevel = 1\ndaily_amount = 1\ndaily_count = 1\n'
    assert "duplicate tier level" in _refuse(dup).reason


def test_disabled_rule_is_validated_but_dropped() -> None:
    rs = parse_rules(_rules('id = "off"\nscore = 1\nenabled = false\nwhen = { amount = 1 }'))
    assert rs.ids == ()
    _refuse(_rules('id = "off"\nscore = 1\nenabled = false\nwhen = { nope = 1 }'))
