"""Room commands and the approval policy, sans-IO.

:func:`parse_command` turns a typed line (``/freeze 1001 card testing``) into a
:class:`Command`, or raises :class:`CommandSyntaxError` naming what is wrong.
:class:`Policy` says who may issue each command, how many approvals it needs from which
roles and when an unapproved request expires (``POLICY_REFERENCE``).
:class:`Approvals` decides one vote: maker and checker must differ, a checker votes once,
a role outside the policy is refused, and the request's state follows.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal

from msgspec import Meta, Struct

from gateway.errors import ConfigError

# commands executed by a business system (and, for some, by the node's own scoring)
BUSINESS: Final = ("freeze", "unfreeze", "limit", "revoke-trust", "require-step-up")
LOCAL: Final = ("resolve",)  # carried out by the node itself
COMMANDS: Final = BUSINESS + LOCAL
OUTCOMES: Final = ("fraud-confirmed", "false-positive", "customer-confirmed", "inconclusive",
                   "duplicate")
MAX_REASON: Final = 500

_USAGE: Final = {
    "freeze": "/freeze ACCOUNT REASON",
    "unfreeze": "/unfreeze ACCOUNT REASON",
    "limit": "/limit ACCOUNT AMOUNT [REASON]  (AMOUNT in minor units, e.g. 50000)",
    "revoke-trust": "/revoke-trust ACCOUNT REASON",
    "require-step-up": "/require-step-up ACCOUNT REASON",
    "resolve": f"/resolve OUTCOME [NOTES, #tags]  (OUTCOME: {' | '.join(OUTCOMES)})",
}


class CommandSyntaxError(ValueError):
    """A typed command that cannot be parsed; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    account: int = 0
    amount: int = 0
    reason: str = ""  # resolve: the notes

    def text(self) -> str:
        """The canonical line, as echoed for confirmation."""
        if self.name == "resolve":
            return f"/resolve {self.reason}".rstrip()
        mid = f" {self.amount}" if self.name == "limit" else ""
        return f"/{self.name} {self.account}{mid} {self.reason}".rstrip()

    @property
    def outcome(self) -> str:
        return self.reason.split(" ", 1)[0] if self.name == "resolve" else ""

    @property
    def tags(self) -> list[str]:
        return sorted({t[1:].lower() for t in self.reason.split() if re.fullmatch(
            r"#[A-Za-z0-9_-]{1,32}", t)})


def _account(word: str, usage: str) -> int:
    if not re.fullmatch(r"[0-9][0-9_]*", word):
        raise CommandSyntaxError(f"{word!r} is not an account number; {usage}")
    try:
        value = int(word.replace("_", ""), 10)
    except ValueError:
        raise CommandSyntaxError(f"{word!r} is not an account number; {usage}") from None
    if not 0 <= value < 1 << 64:
        raise CommandSyntaxError(f"{word!r} is not an account number; {usage}")
    return value


def parse_command(text: str) -> Command:
    """Parse a line that starts with ``/``."""
    line = text.strip()
    if not line.startswith("/"):
        raise CommandSyntaxError("a command starts with /")
    name, _, rest = line[1:].partition(" ")
    name = name.lower()
    if name not in COMMANDS:
        raise CommandSyntaxError(f"unknown command /{name}; commands: "
                                 + ", ".join(f"/{c}" for c in COMMANDS))
    usage = "usage: " + _USAGE[name]
    words = rest.split()
    if name == "resolve":
        if not words or words[0].lower() not in OUTCOMES:
            raise CommandSyntaxError(usage)
        notes = " ".join([words[0].lower(), *words[1:]])
        if len(notes) > MAX_REASON:
            raise CommandSyntaxError(f"notes over {MAX_REASON} characters")
        return Command(name, reason=notes)
    if not words:
        raise CommandSyntaxError(usage)
    account = _account(words[0], usage)
    amount = 0
    if name == "limit":
        if len(words) < 2:
            raise CommandSyntaxError(usage)
        try:
            if not re.fullmatch(r"-?[0-9][0-9_]*", words[1]):
                raise ValueError(words[1])
            amount = int(words[1].replace("_", ""), 10)
        except ValueError:
            raise CommandSyntaxError(f"{words[1]!r} is not an amount; {usage}") from None
        if amount <= 0 or amount > 2**63 - 1:
            raise CommandSyntaxError(f"the limit must be positive; {usage}")
        words = words[1:]
    reason = " ".join(words[1:])
    if not reason and name != "limit":
        raise CommandSyntaxError(f"give a reason; {usage}")
    if len(reason) > MAX_REASON:
        raise CommandSyntaxError(f"reason over {MAX_REASON} characters")
    return Command(name, account, amount, reason)


def check_command(cmd: Command) -> Command:
    """Validate a command given as fields (through the SDK) as the parser would."""
    if cmd.name not in COMMANDS:
        raise CommandSyntaxError(f"unknown command {cmd.name!r}")
    return parse_command(cmd.text())


# -- policy -----------------------------------------------------------------------------

RoleName = Literal["risk", "aml", "compliance", "operations", "legal", "auditor"]


class RuleEntry(Struct, forbid_unknown_fields=True, kw_only=True):
    issuers: list[RoleName]
    approvals: Annotated[int, Meta(ge=0, le=5)] = 1
    approvers: list[RoleName] = []
    expires_s: Annotated[int, Meta(ge=10, le=7 * 86_400)] = 900


class PolicyFile(Struct, forbid_unknown_fields=True, kw_only=True):
    commands: dict[str, RuleEntry]


@dataclass(frozen=True, slots=True)
class Rule:
    issuers: frozenset[str]
    approvals: int
    approvers: frozenset[str]
    expires_s: int


class Policy:
    def __init__(self, data: PolicyFile, source: str = "<policy>") -> None:
        self.source = source
        self.rules: dict[str, Rule] = {}
        for name, r in data.commands.items():
            if name not in COMMANDS:
                raise ConfigError(source, f"commands.{name}", "unknown command (commands: "
                                  + ", ".join(COMMANDS) + ")")
            if r.approvals and not r.approvers:
                raise ConfigError(source, f"commands.{name}.approvers",
                                  "approvals need approver roles")
            if not r.issuers:
                raise ConfigError(source, f"commands.{name}.issuers", "name a role")
            self.rules[name] = Rule(frozenset(r.issuers), r.approvals, frozenset(r.approvers),
                                    r.expires_s)

    def rule(self, command: str) -> Rule | None:
        return self.rules.get(command)


def parse_policy(data: object, source: str = "<policy>") -> Policy:
    from gateway.config import convert_checked

    return Policy(convert_checked(data, PolicyFile, source), source)


def load_policy(path: str | Path | None) -> Policy:
    """A policy file; ``None`` or "" gives :data:`POLICY_REFERENCE`, the default."""
    if not path:
        return parse_policy(tomllib.loads(POLICY_REFERENCE), "<default policy>")
    from gateway.config import read_toml

    return parse_policy(read_toml(path), str(path))


# -- one request's votes -------------------------------------------------------------------

State = Literal["pending", "approved", "rejected", "expired", "executed", "failed"]
OPEN_STATES: Final = ("pending", "approved")


class VoteRefused(Exception):
    """A vote the policy does not allow; ``why`` is a stable word for counters."""

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why  # self_approval | role | repeated | closed | expired


@dataclass(slots=True)
class Approvals:
    """The votes on one command request."""

    maker: str
    needed: int
    approvers: frozenset[str]
    expires_ms: int
    state: str = "pending"
    approved_by: list[str] = field(default_factory=list)
    rejected_by: str = ""

    def __post_init__(self) -> None:
        if self.needed == 0 and self.state == "pending":
            self.state = "approved"

    def vote(self, officer: str, roles: frozenset[str], approve: bool, now_ms: int) -> str:
        """Record one vote; returns the new state or raises :class:`VoteRefused`."""
        if self.state != "pending":
            raise VoteRefused("closed", f"the request is {self.state}")
        if now_ms >= self.expires_ms:
            raise VoteRefused("expired", "the request expired")
        if officer == self.maker:
            raise VoteRefused("self_approval", "maker and checker must differ: "
                              f"{officer} made this request")
        if not roles & self.approvers:
            raise VoteRefused("role", f"{officer} has none of the approver roles "
                              f"({', '.join(sorted(self.approvers))})")
        if officer in self.approved_by:
            raise VoteRefused("repeated", f"{officer} already approved")
        if approve:
            self.approved_by.append(officer)
            if len(self.approved_by) >= self.needed:
                self.state = "approved"
        else:
            self.rejected_by = officer
            self.state = "rejected"
        return self.state

    def expire(self, now_ms: int) -> bool:
        if self.state == "pending" and now_ms >= self.expires_ms:
            self.state = "expired"
            return True
        return False


POLICY_REFERENCE = """\
# risk-gateway command policy (TOML): `[incident] policy = "FILE"` in the node config.
# For each command: who may issue it (roles), how many approvals it needs and from which
# roles, and how long a request waits for them. Maker and checker always differ.

[commands.freeze]
issuers = ["risk", "aml", "compliance"]
approvals = 1
approvers = ["risk", "aml", "compliance", "operations"]
expires_s = 900

[commands.unfreeze]
issuers = ["risk", "aml", "compliance", "operations"]
approvals = 1
approvers = ["risk", "compliance"]
expires_s = 900

[commands.limit]
issuers = ["risk", "aml", "operations"]
approvals = 1
approvers = ["risk", "compliance", "operations"]
expires_s = 900

[commands.revoke-trust]
issuers = ["risk", "aml"]
approvals = 1
approvers = ["risk", "compliance"]
expires_s = 900

[commands.require-step-up]
issuers = ["risk", "aml", "operations"]
approvals = 0
expires_s = 900

[commands.resolve]
issuers = ["risk", "aml", "compliance", "operations", "legal"]
approvals = 0
expires_s = 900
"""

__all__ = [
    "BUSINESS",
    "COMMANDS",
    "LOCAL",
    "OPEN_STATES",
    "OUTCOMES",
    "POLICY_REFERENCE",
    "Approvals",
    "Command",
    "CommandSyntaxError",
    "Policy",
    "Rule",
    "VoteRefused",
    "check_command",
    "load_policy",
    "parse_command",
    "parse_policy",
]
