"""Pure-Python reference evaluator: the oracle the native engine is tested against.

It implements docs/rules.md literally: every rule of the chosen path is evaluated in file
order (the C engine uses an index instead), with the same integer arithmetic, the same
velocity buckets and the same state updates. It is slow on purpose-free code: clarity first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.scoring._model import (
    ACT_BLOCK,
    ACT_FREEZE,
    CHANNEL_CODES,
    FROZEN_RULE_ID,
    I64_MAX,
    LIST_KINDS,
    MAX_FIRED,
    METHOD_RANK,
    METHODS,
    NFEAT,
    OUTCOMES,
    PATHS,
    U32_MASK,
    U64_MAX,
    Condition,
    F,
    Rule,
    RuleSet,
    fnv1a64,
    pack_code,
    to_i64,
)
from gateway.wire import AccountProfile, Decision, Transaction

WINDOWS: Final = ((10_000, 6, 0), (600_000, 6, 6), (10_800_000, 8, 12))  # width, n, offset
N_BUCKETS: Final = 20
DAY_MS: Final = 86_400_000
KNOWN_DEVICES: Final = 4
ALLOW, STEP_UP, BLOCK, BLOCK_AND_FREEZE = range(4)


@dataclass(slots=True)
class AccountState:
    """Per-account state, field for field the C ``struct gw_acct``."""

    baseline: int = 0
    devices: list[int] = field(default_factory=lambda: [0] * KNOWN_DEVICES)
    n_devices: int = 0
    dev_next: int = 0
    last_country: int = 0
    last_city: int = 0
    quota_day: int = 0
    quota_amount: int = 0
    quota_count: int = 0
    tx_count: int = 0
    buckets: list[list[int]] = field(
        default_factory=lambda: [[0, 0, 0] for _ in range(N_BUCKETS)])  # epoch, count, sum


@dataclass(frozen=True, slots=True)
class NativeTx:
    """A transaction reduced to the integers the C engine sees (``struct gw_tx``)."""

    account: int
    counterparty: int
    amount: int
    ts_ms: int
    device: int
    ip: int
    city: int
    currency: int
    country: int
    mcc: int
    channel: int

    @classmethod
    def of(cls, tx: Transaction) -> NativeTx:
        return cls(tx.account, tx.counterparty, tx.amount, tx.ts_ms, fnv1a64(tx.device),
                   fnv1a64(tx.ip), fnv1a64(tx.city), pack_code(tx.currency),
                   pack_code(tx.country), tx.mcc, CHANNEL_CODES[tx.channel])


@dataclass(frozen=True, slots=True)
class RawDecision:
    """A decision before rule indices become ids (mirrors ``struct gw_decision``)."""

    outcome: int
    method: int
    score: int
    path: int
    fired: tuple[int, ...]  # all fired indices, ascending
    frozen: bool = False


def velocity(st: AccountState, ts_ms: int) -> list[int]:
    """Count and sum of each window (1 min, 1 h, 24 h) as seen by a payment at ``ts_ms``."""
    out: list[int] = []
    for width, n, off in WINDOWS:
        e = (ts_ms // width) & U32_MASK
        cnt = total = 0
        for epoch, count, amount_sum in st.buckets[off: off + n]:
            if count and (e - epoch) & U32_MASK < n:
                cnt += count
                total = min(total + amount_sum, U64_MAX)
        out += (cnt, min(total, I64_MAX))
    return out


def features(tx: NativeTx, st: AccountState, lists: Sequence[frozenset[int]],
             trusted: Mapping[int, int]) -> list[int]:
    """The feature vector of ``tx`` given the account's state before it."""
    f = [0] * NFEAT
    f[F["amount"]] = tx.amount
    f[F["currency"]] = tx.currency
    f[F["channel"]] = tx.channel
    f[F["mcc"]] = tx.mcc
    f[F["country"]] = tx.country
    f[F["city"]] = to_i64(tx.city)
    f[F["device"]] = to_i64(tx.device)
    f[F["ip"]] = to_i64(tx.ip)
    f[F["account"]] = to_i64(tx.account)
    f[F["counterparty"]] = to_i64(tx.counterparty)
    f[F["hour_of_day"]] = tx.ts_ms // 3_600_000 % 24
    f[F["weekday"]] = (tx.ts_ms // DAY_MS + 3) % 7
    f[F["baseline"]] = st.baseline
    f[F["amount_to_baseline"]] = (
        min(tx.amount * 1000 // st.baseline, I64_MAX) if st.baseline > 0 else 0)
    known = tx.device in st.devices[: st.n_devices]
    f[F["new_device"]] = int(tx.device != 0 and st.n_devices > 0 and not known)
    f[F["known_devices"]] = st.n_devices
    f[F["country_changed"]] = int(bool(tx.country and st.last_country
                                       and tx.country != st.last_country))
    f[F["city_changed"]] = int(bool(tx.city and st.last_city and tx.city != st.last_city))
    base = F["velocity_1m_count"]
    f[base: base + 2 * len(WINDOWS)] = velocity(st, tx.ts_ms)
    f[F["tx_count"]] = st.tx_count
    f[F["blocklist_account"]] = int(tx.account in lists[0])
    f[F["blocklist_device"]] = int(tx.device != 0 and tx.device in lists[1])
    f[F["blocklist_counterparty"]] = int(tx.counterparty in lists[2])
    f[F["blocklist_ip"]] = int(tx.ip != 0 and tx.ip in lists[3])
    level = trusted.get(tx.account, 0)
    f[F["trusted"]] = int(level != 0)
    f[F["tier"]] = level
    today = st.quota_day == (tx.ts_ms // DAY_MS) & U32_MASK
    f[F["quota_used_amount"]] = min(st.quota_amount, I64_MAX) if today else 0
    f[F["quota_used_count"]] = st.quota_count if today else 0
    return f


def _holds(c: Condition, f: Sequence[int]) -> bool:
    x = f[c.feature]
    match c.op:
        case 0:
            return x == c.value
        case 1:
            return x != c.value
        case 2:
            return x < c.value
        case 3:
            return x <= c.value
        case 4:
            return x > c.value
        case 5:
            return x >= c.value
        case 6:
            return x in c.values
        case _:
            return x not in c.values


def _fires(rule: Rule, f: Sequence[int]) -> bool:
    return all(_holds(c, f) for c in rule.conditions)


def decide(rs: RuleSet, f: Sequence[int], amount: int) -> RawDecision:
    """Choose the path and score ``f`` on rule set ``rs`` (no state change)."""
    fired: list[int] = []
    path = 0
    level = f[F["tier"]]
    tier = next((t for t in rs.tiers if t.level == level), None) if level else None
    if tier is not None and (f[F["quota_used_amount"]] + amount <= tier.daily_amount
                             and f[F["quota_used_count"]] + 1 <= tier.daily_count):
        base = len(rs.rules)
        fired = [base + i for i, g in enumerate(rs.guards) if _fires(g, f)]
        path = 0 if fired else 1
    score = floor = method = method_rank = 0
    for i, rule in enumerate(rs.rules):
        if (path == 1 and not rule.trusted) or not _fires(rule, f):
            continue
        fired.append(i)
        score += rule.score
        if rule.action == ACT_BLOCK:
            floor = max(floor, BLOCK)
        elif rule.action == ACT_FREEZE:
            floor = BLOCK_AND_FREEZE
        elif rule.action and METHOD_RANK[rule.action] > method_rank:
            method_rank, method = METHOD_RANK[rule.action], rule.action
    if score >= rs.block_and_freeze:
        outcome = BLOCK_AND_FREEZE
    elif score >= rs.block:
        outcome = BLOCK
    elif score >= rs.step_up:
        outcome = STEP_UP
    else:
        outcome = ALLOW
    outcome = max(outcome, floor)
    chosen = (method or rs.default_method) if outcome == STEP_UP else 0
    return RawDecision(outcome, chosen, score, path, tuple(sorted(fired)))


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


def update_state(st: AccountState, tx: NativeTx, outcome: int) -> None:
    """Apply a decided transaction to the account's state (as ``update_state`` in C)."""
    for width, n, off in WINDOWS:
        ep = tx.ts_ms // width
        e = ep & U32_MASK
        bucket = st.buckets[off + ep % n]
        d = (e - bucket[0]) & U32_MASK
        if bucket[1] and d == 0:
            bucket[1] = min(bucket[1] + 1, U32_MASK)
            bucket[2] = min(bucket[2] + tx.amount, U64_MAX)
        elif bucket[1] == 0 or d < 0x80000000:
            bucket[:] = [e, 1, tx.amount]
    st.tx_count = min(st.tx_count + 1, U32_MASK)
    if outcome > STEP_UP:
        return
    st.baseline = tx.amount if st.baseline == 0 else (
        st.baseline + _trunc_div(tx.amount - st.baseline, 8))
    if tx.device and tx.device not in st.devices[: st.n_devices]:
        st.devices[st.dev_next] = tx.device
        st.dev_next = (st.dev_next + 1) % KNOWN_DEVICES
        st.n_devices = min(st.n_devices + 1, KNOWN_DEVICES)
    if tx.country:
        st.last_country = tx.country
    if tx.city:
        st.last_city = tx.city
    day = (tx.ts_ms // DAY_MS) & U32_MASK
    if st.quota_day != day:
        st.quota_day, st.quota_amount, st.quota_count = day, 0, 0
    st.quota_amount = min(st.quota_amount + tx.amount, U64_MAX)
    st.quota_count = min(st.quota_count + 1, U32_MASK)


class ReferenceEngine:
    """The engine's semantics in plain Python: same inputs, same decisions and state."""

    def __init__(self, rules: RuleSet, version: int = 1) -> None:
        self.rules = rules
        self.version = version
        self.shadow: RuleSet | None = None
        self.shadow_matrix: dict[tuple[int, int], int] = {}
        self.accounts: dict[int, AccountState] = {}
        self.lists: list[frozenset[int]] = [frozenset()] * 4
        self.trusted: dict[int, int] = {}
        self.frozen: set[int] = set()

    def set_blocklist(self, kind: str, values: Iterable[int | str]) -> None:
        self.lists[LIST_KINDS[kind]] = frozenset(
            fnv1a64(v) if isinstance(v, str) else v for v in values)

    def score_native(self, tx: NativeTx) -> RawDecision:
        if tx.account in self.frozen:
            return RawDecision(BLOCK, 0, 0, 0, (), frozen=True)
        st = self.accounts.setdefault(tx.account, AccountState())
        f = features(tx, st, self.lists, self.trusted)
        raw = decide(self.rules, f, tx.amount)
        if self.shadow is not None:
            sd = decide(self.shadow, f, tx.amount)
            key = (raw.outcome, sd.outcome)
            self.shadow_matrix[key] = self.shadow_matrix.get(key, 0) + 1
        update_state(st, tx, raw.outcome)
        if raw.outcome == BLOCK_AND_FREEZE:
            self.frozen.add(tx.account)
        return raw

    def profile(self, account: int, ts_ms: int) -> AccountProfile | None:
        """The account's state with velocity taken at ``ts_ms``; None when it has none."""
        st = self.accounts.get(account)
        if st is None:
            return None
        c1m, s1m, c1h, s1h, c24h, s24h = velocity(st, ts_ms)
        return AccountProfile(c1m, s1m, c1h, s1h, c24h, s24h, st.baseline, st.n_devices,
                              st.tx_count)

    def score(self, tx: Transaction) -> Decision:
        raw = self.score_native(NativeTx.of(tx))
        ids = self.rules.ids
        fired = ((FROZEN_RULE_ID,) if raw.frozen
                 else tuple(ids[i] for i in raw.fired[:MAX_FIRED]))
        return Decision(tx.tx_id, OUTCOMES[raw.outcome], METHODS[raw.method], raw.score,
                        PATHS[raw.path], fired, self.version)
