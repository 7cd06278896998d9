"""The rule language's vocabulary and the compiled rule-set model shared by C and Python.

Feature, operator and action numbers are the C enums of ``native/gw_scoring.h``; a test
checks that they agree. Every value is an integer so that the native engine and the
pure-Python reference compute bit-identical results: strings are hashed with FNV-1a 64,
ratios are fixed-point milli-units and ids are reinterpreted as signed 64-bit integers.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Final

from gateway.wire import Channel, Outcome, ScoringPath, StepUpMethod

I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1
U64_MAX: Final = 2**64 - 1
U32_MASK: Final = 0xFFFFFFFF

MAX_RULES: Final = 8000  # rules + guards (GW_MAX_RULES)
MAX_CONDS_PER_RULE: Final = 16
MAX_SET_VALUES: Final = 65536
MAX_SET_LEN: Final = 4096
MAX_FIRED: Final = 64
MAX_STR: Final = 256
MAX_TIERS: Final = 64
MAX_SCORE: Final = 10_000
FROZEN_RULE_ID: Final = "@frozen"


class Kind(enum.Enum):
    """Value type of a feature: decides which operators and TOML values it accepts."""

    INT = "integer"
    RATIO = "ratio"  # TOML number, kept as milli-units
    BOOL = "boolean"
    COUNTRY = "country"  # two capital letters
    CURRENCY = "currency"  # three capital letters
    CHANNEL = "channel"
    TEXT = "text"  # hashed string: city, device, ip
    ID = "id"  # unsigned 64-bit account / counterparty


@dataclass(frozen=True, slots=True)
class FeatureDef:
    code: int
    kind: Kind
    doc: str


FEATURES: Final[dict[str, FeatureDef]] = {
    name: FeatureDef(code, kind, doc)
    for code, (name, kind, doc) in enumerate([
        ("amount", Kind.INT, "amount in minor units"),
        ("currency", Kind.CURRENCY, "ISO 4217 code"),
        ("channel", Kind.CHANNEL, "card, transfer, mobile, web, atm, pos"),
        ("mcc", Kind.INT, "merchant category code"),
        ("country", Kind.COUNTRY, "ISO 3166 alpha-2 code of the transaction"),
        ("city", Kind.TEXT, "city name"),
        ("device", Kind.TEXT, "device id"),
        ("ip", Kind.TEXT, "IP address"),
        ("account", Kind.ID, "paying account"),
        ("counterparty", Kind.ID, "receiving account"),
        ("hour_of_day", Kind.INT, "0..23, UTC, from the transaction timestamp"),
        ("weekday", Kind.INT, "0 (Monday) .. 6 (Sunday), UTC"),
        ("baseline", Kind.INT, "the account's typical amount (0 before its first payment)"),
        ("amount_to_baseline", Kind.RATIO, "amount / baseline (0 while there is no baseline)"),
        ("new_device", Kind.BOOL, "device not among the account's known devices"),
        ("known_devices", Kind.INT, "number of known devices (at most 4)"),
        ("country_changed", Kind.BOOL, "country differs from the last accepted payment"),
        ("city_changed", Kind.BOOL, "city differs from the last accepted payment"),
        ("velocity_1m_count", Kind.INT, "payments of the account in the last minute"),
        ("velocity_1m_sum", Kind.INT, "their amounts summed"),
        ("velocity_1h_count", Kind.INT, "payments in the last hour"),
        ("velocity_1h_sum", Kind.INT, "their amounts summed"),
        ("velocity_24h_count", Kind.INT, "payments in the last 24 hours"),
        ("velocity_24h_sum", Kind.INT, "their amounts summed"),
        ("tx_count", Kind.INT, "payments of the account seen so far"),
        ("blocklist_account", Kind.BOOL, "account on the account block list"),
        ("blocklist_device", Kind.BOOL, "device on the device block list"),
        ("blocklist_counterparty", Kind.BOOL, "counterparty on the counterparty block list"),
        ("blocklist_ip", Kind.BOOL, "IP on the IP block list"),
        ("trusted", Kind.BOOL, "account in the trusted-accounts table"),
        ("tier", Kind.INT, "trusted tier level (0 when not trusted)"),
        ("quota_used_amount", Kind.INT, "amount accepted today (UTC day)"),
        ("quota_used_count", Kind.INT, "payments accepted today"),
    ])
}
NFEAT: Final = len(FEATURES)
F: Final = {name: d.code for name, d in FEATURES.items()}

OPS: Final = {"eq": 0, "ne": 1, "lt": 2, "le": 3, "gt": 4, "ge": 5, "in": 6, "not_in": 7}
OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOT_IN = range(8)
ORDERED_KINDS: Final = frozenset({Kind.INT, Kind.RATIO})
SET_OPS: Final = frozenset({OP_IN, OP_NOT_IN})

ACTIONS: Final = {"face": 1, "sms_down": 2, "sms_up": 3, "old_device_confirm": 4, "block": 5,
                  "block_and_freeze": 6}
ACT_BLOCK: Final = 5
ACT_FREEZE: Final = 6
METHOD_RANK: Final = (0, 3, 1, 4, 2, 0, 0)  # sms_up > face > old_device_confirm > sms_down
METHODS: Final[tuple[StepUpMethod | None, ...]] = (
    None, StepUpMethod.FACE, StepUpMethod.SMS_DOWN, StepUpMethod.SMS_UP,
    StepUpMethod.OLD_DEVICE_CONFIRM,
)
OUTCOMES: Final = (Outcome.ALLOW, Outcome.STEP_UP, Outcome.BLOCK, Outcome.BLOCK_AND_FREEZE)
PATHS: Final = (ScoringPath.FULL, ScoringPath.TRUSTED)
CHANNEL_CODES: Final = {ch: i + 1 for i, ch in enumerate(Channel)}
LIST_KINDS: Final = {"account": 0, "device": 1, "counterparty": 2, "ip": 3}


def to_i64(value: int) -> int:
    """Reinterpret an unsigned 64-bit integer as signed, as C's ``(int64_t)`` cast does."""
    return value - (1 << 64) if value >= 1 << 63 else value


@functools.lru_cache(maxsize=1 << 16)
def fnv1a64(text: str) -> int:
    """FNV-1a 64 of the UTF-8 bytes of ``text``; 0 for the empty string (``gw_hash_str``)."""
    data = text.encode()
    if not data:
        return 0
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & U64_MAX
    return h


@functools.lru_cache(maxsize=1024)
def pack_code(code: str) -> int:
    """Pack a country or currency code as little-endian ASCII (``"" -> 0``)."""
    return int.from_bytes(code.encode("ascii"), "little") if code else 0


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled test ``feature op value``; sets are kept sorted."""

    feature: int
    op: int
    value: int = 0
    values: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule or guard. Conditions are ANDed; guards have score 0."""

    id: str
    score: int
    conditions: tuple[Condition, ...]
    action: int = 0
    trusted: bool = False
    description: str = ""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    level: int
    daily_amount: int
    daily_count: int


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A validated rule file, ready for the native compiler and the reference evaluator."""

    name: str
    label: str
    filename: str
    rules: tuple[Rule, ...]
    guards: tuple[Rule, ...]
    tiers: tuple[Tier, ...]
    step_up: int
    block: int
    block_and_freeze: int
    default_method: int
    ids: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(r.id for r in (*self.rules, *self.guards)))

    @property
    def trusted_count(self) -> int:
        return sum(1 for r in self.rules if r.trusted)


@dataclass(frozen=True, slots=True)
class RuleSetInfo:
    """What the engine reports about an installed rule set."""

    version: int
    name: str
    label: str
    filename: str
    rules: int
    trusted_rules: int
    guards: int
    tiers: int
    shadow: bool = False

    def as_dict(self) -> dict[str, str | int | bool]:
        return {
            "version": self.version, "name": self.name, "label": self.label,
            "filename": self.filename, "rules": self.rules,
            "trusted_rules": self.trusted_rules, "guards": self.guards, "tiers": self.tiers,
            "shadow": self.shadow,
        }


def info_of(rs: RuleSet, version: int, *, shadow: bool = False) -> RuleSetInfo:
    return RuleSetInfo(version, rs.name, rs.label, rs.filename, len(rs.rules),
                       rs.trusted_count, len(rs.guards), len(rs.tiers), shadow)
