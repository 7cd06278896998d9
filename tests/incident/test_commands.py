"""Room commands, the approval policy and maker-checker votes, sans-IO."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.incident._commands import (
    BUSINESS,
    COMMANDS,
    MAX_REASON,
    POLICY_REFERENCE,
    Approvals,
    Command,
    CommandSyntaxError,
    VoteRefused,
    check_command,
    load_policy,
    parse_command,
    parse_policy,
)

# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ("/freeze 1001 card testing", Command("freeze", 1001, 0, "card testing")),
    ("  /FREEZE   1_001   card   testing  ", Command("freeze", 1001, 0, "card testing")),
    ("/unfreeze 1001 customer called", Command("unfreeze", 1001, 0, "customer called")),
    ("/limit 1001 50000", Command("limit", 1001, 50000, "")),
    ("/limit 1001 50_000 until reviewed", Command("limit", 1001, 50000, "until reviewed")),
    ("/revoke-trust 7 device farm", Command("revoke-trust", 7, 0, "device farm")),
    ("/require-step-up 7 new payee", Command("require-step-up", 7, 0, "new payee")),
    ("/freeze 18446744073709551615 max", Command("freeze", 2**64 - 1, 0, "max")),
    ("/resolve fraud-confirmed", Command("resolve", reason="fraud-confirmed")),
    ("/resolve False-Positive payroll run #payroll",
     Command("resolve", reason="false-positive payroll run #payroll")),
])
def test_parse_good_commands(line: str, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(("line", "says"), [
    ("freeze 1001 x", "a command starts with /"),
    ("/", "unknown command /; commands: /freeze"),
    ("/nuke 1001 x", "unknown command /nuke"),
    ("/freeze", "usage: /freeze ACCOUNT REASON"),
    ("/freeze 1001", "give a reason; usage: /freeze ACCOUNT REASON"),
    ("/freeze abc card testing", "'abc' is not an account number; usage: /freeze ACCOUNT"),
    ("/freeze -5 card testing", "'-5' is not an account number"),
    ("/freeze 18446744073709551616 x", "is not an account number"),
    ("/unfreeze 1001", "usage: /unfreeze ACCOUNT REASON"),
    ("/revoke-trust", "usage: /revoke-trust ACCOUNT REASON"),
    ("/require-step-up 7", "usage: /require-step-up ACCOUNT REASON"),
    ("/limit 1001", "usage: /limit ACCOUNT AMOUNT"),
    ("/limit 1001 lots", "'lots' is not an amount; usage: /limit ACCOUNT AMOUNT"),
    ("/limit 1001 0", "the limit must be positive; usage: /limit"),
    ("/limit 1001 -5", "the limit must be positive"),
    (f"/limit 1001 {2**63}", "the limit must be positive"),
    ("/resolve", "usage: /resolve OUTCOME"),
    ("/resolve probably-fraud", "usage: /resolve OUTCOME [NOTES, #tags]  (OUTCOME: "
                                "fraud-confirmed | false-positive"),
    ("/freeze 1001 " + "x" * (MAX_REASON + 1), f"reason over {MAX_REASON} characters"),
    ("/resolve duplicate " + "x" * MAX_REASON, f"notes over {MAX_REASON} characters"),
])
def test_parse_bad_commands_says_how(line: str, says: str) -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(line)
    assert says in str(info.value)


@pytest.mark.parametrize("line", ["/freeze 1001 card testing", "/limit 1001 50000",
                                  "/limit 1001 50000 until reviewed",
                                  "/revoke-trust 7 device farm", "/require-step-up 7 x",
                                  "/unfreeze 1001 ok", "/resolve inconclusive",
                                  "/resolve fraud-confirmed mule #mule #cards"])
def test_text_round_trips(line: str) -> None:
    cmd = parse_command(line)
    assert cmd.text() == line
    assert parse_command(cmd.text()) == cmd


def test_text_is_canonical() -> None:
    assert parse_command("/FREEZE 0001_001  card   testing").text() == "/freeze 1001 card testing"
    assert parse_command("/resolve Duplicate").text() == "/resolve duplicate"


def test_outcome_and_tags() -> None:
    cmd = parse_command("/resolve fraud-confirmed mule account #Mule #cards #cards #no!tag x#y")
    assert cmd.outcome == "fraud-confirmed"
    assert cmd.tags == ["cards", "mule"]  # lower case, once each, valid tags only
    assert parse_command("/freeze 1 #urgent ring").tags == ["urgent"]
    assert parse_command("/freeze 1 ring").outcome == ""  # only resolve has an outcome


def test_check_command_validates_fields_as_the_parser_does() -> None:
    assert check_command(Command("freeze", 1001, 0, "card testing")) == Command(
        "freeze", 1001, 0, "card testing")
    assert check_command(Command("limit", 5, 100, "")) == Command("limit", 5, 100, "")
    with pytest.raises(CommandSyntaxError, match="unknown command 'nuke'"):
        check_command(Command("nuke", 1, 0, "x"))
    with pytest.raises(CommandSyntaxError, match="give a reason"):
        check_command(Command("freeze", 1001, 0, ""))
    with pytest.raises(CommandSyntaxError, match="must be positive"):
        check_command(Command("limit", 1001, 0, "x"))
    with pytest.raises(CommandSyntaxError, match="usage: /resolve"):
        check_command(Command("resolve", reason="maybe"))


def test_command_sets() -> None:
    assert set(BUSINESS) | {"resolve"} == set(COMMANDS)


# -- policy ------------------------------------------------------------------------------------


def test_default_policy() -> None:
    for default in (load_policy(None), load_policy("")):
        assert default.source == "<default policy>"
        assert set(default.rules) == set(COMMANDS)
        freeze = default.rule("freeze")
        assert freeze is not None and freeze.approvals == 1 and "risk" in freeze.issuers
        step_up = default.rule("require-step-up")
        assert step_up is not None and step_up.approvals == 0
        assert default.rule("nuke") is None


def test_load_policy_file(tmp_path: Path) -> None:
    f = tmp_path / "policy.toml"
    f.write_text('[commands.freeze]\nissuers = ["risk"]\napprovals = 2\n'
                 'approvers = ["compliance"]\nexpires_s = 60\n')
    policy = load_policy(f)
    assert policy.source == str(f) and set(policy.rules) == {"freeze"}
    rule = policy.rule("freeze")
    assert rule is not None
    assert (rule.issuers, rule.approvals, rule.approvers, rule.expires_s) == (
        frozenset({"risk"}), 2, frozenset({"compliance"}), 60)
    assert policy.rule("unfreeze") is None  # not in the file: not allowed


def test_load_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(tmp_path / "missing.toml")
    assert info.value.key == "<file>"
    bad = tmp_path / "policy.toml"
    bad.write_text("[commands.freeze\n")
    with pytest.raises(ConfigError) as info:
        load_policy(bad)
    assert (info.value.path, info.value.key) == (str(bad), "<syntax>")


def policy_error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_policy(data, "p.toml")
    assert info.value.path == "p.toml"
    return info.value


def test_policy_validation_errors() -> None:
    err = policy_error({"commands": {"nuke": {"issuers": ["risk"]}}})
    assert err.key == "commands.nuke" and "unknown command" in err.reason
    err = policy_error({"commands": {"freeze": {"issuers": ["risk"], "approvals": 1}}})
    assert (err.key, err.reason) == ("commands.freeze.approvers",
                                     "approvals need approver roles")
    err = policy_error({"commands": {"freeze": {"issuers": [], "approvals": 0}}})
    assert err.key == "commands.freeze.issuers"
    err = policy_error({})
    assert "commands" in err.reason
    err = policy_error({"commands": {}, "extra": 1})
    assert (err.key, err.reason) == ("extra", "unknown key")
    err = policy_error({"commands": {"freeze": {"issuers": ["boss"]}}})
    assert err.key.endswith(".issuers[0]") and "boss" in err.reason
    err = policy_error({"commands": {"freeze": {"issuers": ["risk"], "approvals": 6,
                                                "approvers": ["risk"]}}})
    assert err.key.endswith(".approvals") and "<= 5" in err.reason
    err = policy_error({"commands": {"freeze": {"issuers": ["risk"], "expires_s": 5,
                                                "approvals": 0}}})
    assert err.key.endswith(".expires_s") and ">= 10" in err.reason


def test_a_range_error_names_the_command() -> None:
    err = policy_error({"commands": {"freeze": {"issuers": ["risk"], "approvals": 6,
                                                "approvers": ["risk"]}}})
    assert err.key == "commands.freeze.approvals"


def test_the_reference_is_the_default() -> None:
    ref = parse_policy(tomllib.loads(POLICY_REFERENCE))
    assert ref.rules == load_policy(None).rules


# -- votes -------------------------------------------------------------------------------------

EXPIRES = 10_000
RISK = frozenset({"risk"})
COMPLIANCE = frozenset({"compliance"})


def approvals(needed: int = 1, approvers: frozenset[str] = RISK | COMPLIANCE) -> Approvals:
    return Approvals("maker", needed, approvers, EXPIRES)


def refused(votes: Approvals, officer: str, roles: frozenset[str], approve: bool = True,
            now: int = 0) -> VoteRefused:
    with pytest.raises(VoteRefused) as info:
        votes.vote(officer, roles, approve, now)
    return info.value


def test_one_approval_from_another_officer_approves() -> None:
    votes = approvals()
    assert votes.state == "pending"
    assert votes.vote("checker", RISK, True, 1) == "approved"
    assert votes.approved_by == ["checker"]


def test_self_approval_is_refused() -> None:
    votes = approvals()
    exc = refused(votes, "maker", RISK)
    assert exc.why == "self_approval" and "maker and checker must differ" in str(exc)
    assert refused(votes, "maker", RISK, approve=False).why == "self_approval"
    assert votes.state == "pending" and votes.approved_by == []


def test_a_role_outside_the_policy_is_refused() -> None:
    votes = approvals(approvers=COMPLIANCE)
    exc = refused(votes, "checker", RISK)
    assert exc.why == "role" and "compliance" in str(exc)
    assert refused(votes, "nobody", frozenset()).why == "role"
    assert votes.state == "pending"


def test_two_approvals_need_two_distinct_checkers() -> None:
    votes = approvals(needed=2)
    assert votes.vote("c1", RISK, True, 1) == "pending"
    exc = refused(votes, "c1", RISK)
    assert exc.why == "repeated"
    assert votes.state == "pending" and votes.approved_by == ["c1"]
    assert votes.vote("c2", COMPLIANCE, True, 2) == "approved"
    assert votes.approved_by == ["c1", "c2"]
    assert refused(votes, "c3", RISK).why == "closed"


def test_a_rejection_closes_the_request() -> None:
    votes = approvals(needed=2)
    votes.vote("c1", RISK, True, 1)
    assert votes.vote("c2", RISK, False, 2) == "rejected"
    assert votes.rejected_by == "c2"
    exc = refused(votes, "c3", RISK)
    assert exc.why == "closed" and "rejected" in str(exc)


def test_a_checker_who_approved_cannot_then_reject() -> None:
    votes = approvals(needed=2)
    votes.vote("c1", RISK, True, 1)
    assert refused(votes, "c1", RISK, approve=False).why == "repeated"
    assert votes.state == "pending"


def test_expiry() -> None:
    votes = approvals()
    assert not votes.expire(EXPIRES - 1)
    exc = refused(votes, "checker", RISK, now=EXPIRES)
    assert exc.why == "expired"
    assert votes.expire(EXPIRES)
    assert votes.state == "expired"
    assert not votes.expire(EXPIRES + 1)  # once
    assert refused(votes, "checker", RISK, now=EXPIRES + 1).why == "closed"


def test_an_approved_request_does_not_expire() -> None:
    votes = approvals()
    votes.vote("checker", RISK, True, 1)
    assert not votes.expire(EXPIRES * 2)
    assert votes.state == "approved"


def test_no_approvals_needed_is_approved_at_once() -> None:
    votes = Approvals("maker", 0, frozenset(), EXPIRES)
    assert votes.state == "approved"
    assert not votes.expire(EXPIRES)
    assert refused(votes, "checker", RISK).why == "closed"
