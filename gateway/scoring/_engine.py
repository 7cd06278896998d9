"""The public scoring engine: rule files in, native decisions out, versions and shadow.

:class:`ScoringEngine` owns one native engine (``gateway._native.NativeEngine``). Rule files
are validated in Python, compiled by C, and installed with an atomic pointer swap, so a
scorer on another thread sees either the old or the new set, never a mix. Scoring itself is
single-writer per engine (see native/gw_scoring.h).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from gateway._native import NativeEngine, NativeRuleSet, NativeTrusted, RawNative, TxBatch
from gateway.errors import ErrorCode, GatewayError
from gateway.scoring._model import (
    CHANNEL_CODES,
    FROZEN_RULE_ID,
    LIST_KINDS,
    METHODS,
    OUTCOMES,
    PATHS,
    RuleSet,
    RuleSetInfo,
    fnv1a64,
    info_of,
    pack_code,
)
from gateway.scoring._rules import parse_rules
from gateway.wire import AccountProfile, Decision, Outcome, Transaction

DEFAULT_RULES_PATH: Final = Path(__file__).resolve().parent.parent / "data" / "default_rules.toml"
KEEP_VERSIONS: Final = 16
FROZEN_DESCRIPTION: Final = "Account is frozen: every payment is blocked until it is unfrozen"


class NoPreviousRuleSetError(GatewayError):
    """``rollback`` was asked for but no earlier rule-set version is kept."""

    code: Final = ErrorCode.NOT_FOUND


class RuleSetVersionNotKeptError(GatewayError):
    """A rule-set version was asked for that is neither live, kept for rollback, nor shadow."""

    code: Final = ErrorCode.NOT_FOUND


def compile_native(rs: RuleSet, version: int) -> NativeRuleSet:
    """Flatten a validated rule set into the native spec and compile it in C."""
    conds: list[tuple[int, int, int, int, int]] = []
    set_values: list[int] = []

    def add(conditions: Iterable[Any]) -> tuple[int, int]:
        off = len(conds)
        for c in conditions:
            conds.append((c.value, len(set_values), len(c.values), c.feature, c.op))
            set_values.extend(c.values)
        return off, len(conds) - off

    rules = []
    for r in rs.rules:
        off, n = add(r.conditions)
        rules.append((fnv1a64(r.id), r.score, off, n, r.action, int(r.trusted)))
    guards = []
    for g in rs.guards:
        off, n = add(g.conditions)
        guards.append((fnv1a64(g.id), off, n, 0))
    return NativeRuleSet(
        version=version, rules=rules, guards=guards, conds=conds, set_values=set_values,
        tiers=[(t.daily_amount, t.daily_count, t.level) for t in rs.tiers],
        thresholds=(rs.step_up, rs.block, rs.block_and_freeze),
        default_method=rs.default_method)


@dataclass(frozen=True, slots=True)
class _Installed:
    rules: RuleSet
    native: NativeRuleSet
    version: int
    descriptions: Mapping[str, str]  # rule and guard ids -> description, plus FROZEN_RULE_ID


def _descriptions(rs: RuleSet) -> Mapping[str, str]:
    out = {r.id: r.description for r in (*rs.rules, *rs.guards)}
    out[FROZEN_RULE_ID] = FROZEN_DESCRIPTION
    return MappingProxyType(out)


def _tx_row(tx: Transaction) -> tuple[int, int, int, int, int, int, int, int]:
    return (tx.account, tx.counterparty, tx.amount, tx.ts_ms, pack_code(tx.currency),
            pack_code(tx.country), tx.mcc, CHANNEL_CODES[tx.channel])


def pack_transactions(txs: Sequence[Transaction]) -> TxBatch:
    """Pack transactions into a native ``struct gw_tx`` array."""
    strings: list[bytes] = []
    for tx in txs:
        strings += (tx.device.encode(), tx.ip.encode(), tx.city.encode())
    return TxBatch([_tx_row(tx) for tx in txs], strings)


class ScoringEngine:
    """Scores transactions natively on a hot-swappable, versioned rule set."""

    def __init__(self, rules_source: str, filename: str = "<rules>", *,
                 max_accounts: int = 1 << 24, version: int | None = None) -> None:
        self._native = NativeEngine(max_accounts)
        self._next_version = 1
        self._history: list[_Installed] = []
        self._ids: dict[int, tuple[str, ...]] = {}
        self._shadow: _Installed | None = None
        self._trusted: NativeTrusted | None = None
        self.load_rules(rules_source, filename, version=version)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> ScoringEngine:
        p = Path(path)
        return cls(p.read_text(encoding="utf-8"), str(p), **kwargs)

    # -- rule sets ---------------------------------------------------------------------

    def _compile(self, source: str, filename: str, version: int | None = None) -> _Installed:
        rs = parse_rules(source, filename)
        if version is None:
            version = self._next_version
        elif version < self._next_version:
            raise ValueError(f"rule-set version {version} is not above {self._next_version - 1}")
        native = compile_native(rs, version)
        self._next_version = version + 1
        self._ids[version] = rs.ids
        return _Installed(rs, native, version, _descriptions(rs))

    def load_rules(self, source: str, filename: str = "<rules>", *,
                   version: int | None = None) -> RuleSetInfo:
        """Validate, compile and atomically install a rule set; on error the live set stays.

        ``version`` numbers the set (it must grow); by default the next number is taken.
        """
        inst = self._compile(source, filename, version)
        self._native.set_rules(inst.native)
        self._history.append(inst)
        del self._history[:-KEEP_VERSIONS]
        return self.info

    def rollback(self) -> RuleSetInfo:
        """Reinstall the version that was live before the current one."""
        if len(self._history) < 2:
            raise NoPreviousRuleSetError("no earlier rule-set version to roll back to")
        self._native.set_rules(self._history[-2].native)
        self._history.pop()
        return self.info

    def load_shadow(self, source: str, filename: str = "<rules>", *,
                    version: int | None = None) -> RuleSetInfo:
        """Install a challenger set: scored on every transaction, recorded, not enforced."""
        inst = self._compile(source, filename, version)
        self._native.set_shadow(inst.native)
        self._shadow = inst
        return info_of(inst.rules, inst.version, shadow=True)

    def clear_shadow(self) -> None:
        self._native.set_shadow(None)
        self._shadow = None

    @property
    def info(self) -> RuleSetInfo:
        live = self._history[-1]
        return info_of(live.rules, live.version)

    @property
    def rules(self) -> RuleSet:
        return self._history[-1].rules

    @property
    def versions(self) -> list[RuleSetInfo]:
        """Kept versions, oldest first; the last is live."""
        return [info_of(i.rules, i.version) for i in self._history]

    @property
    def shadow_info(self) -> RuleSetInfo | None:
        s = self._shadow
        return info_of(s.rules, s.version, shadow=True) if s else None

    def rule_descriptions(self, version: int | None = None) -> Mapping[str, str]:
        """Rule id -> description (``""`` when the file gave none) of the live set, or of
        ``version`` if it is kept (live, kept for rollback, or shadow). Guards are included,
        and so is ``@frozen``, the id a frozen account's decision names. Read-only; built
        once per installed version."""
        if version is None:
            return self._history[-1].descriptions
        for inst in (*reversed(self._history), self._shadow):
            if inst is not None and inst.version == version:
                return inst.descriptions
        raise RuleSetVersionNotKeptError(f"rule-set version {version} is not kept")

    def shadow_report(self) -> dict[str, Any]:
        """Live versus shadow decisions since the shadow set was installed (JSON-able)."""
        s = self._native.shadow_stats()
        names = [o.value for o in Outcome]
        matrix: list[list[int]] = s["matrix"]
        by = {f"{names[i]}->{names[j]}": matrix[i][j]
              for i in range(4) for j in range(4) if matrix[i][j]}
        agree = sum(matrix[i][i] for i in range(4))
        compared: int = s["compared"]
        return {
            "live_version": self.info.version,
            "shadow_version": s["version"] or None,
            "compared": compared,
            "agree": agree,
            "disagree": compared - agree,
            "agree_rate": agree / compared if compared else None,
            "by_outcome": by,
            "stricter": sum(matrix[i][j] for i in range(4) for j in range(4) if j > i),
            "looser": sum(matrix[i][j] for i in range(4) for j in range(4) if j < i),
            "path_differs": s["path_differs"],
            "fired_differs": s["fired_differs"],
            "mean_score_diff": s["score_diff_sum"] / compared if compared else 0.0,
        }

    # -- lists and accounts ------------------------------------------------------------

    def load_trusted(self, path: str | os.PathLike[str]) -> int:
        """Replace the trusted-accounts table from a file of ``account,level`` lines."""
        t = NativeTrusted.from_file(os.fspath(path))
        self._native.set_trusted(t)
        self._trusted = t
        return len(t)

    def set_trusted(self, accounts: Mapping[int, int]) -> int:
        """Replace the trusted-accounts table from a mapping account -> tier level."""
        if any(not 1 <= lvl <= 255 for lvl in accounts.values()):
            raise ValueError("tier levels must be 1..255")
        t = NativeTrusted.from_items(accounts)
        self._native.set_trusted(t)
        self._trusted = t
        return len(t)

    @property
    def trusted_table(self) -> NativeTrusted | None:
        """The installed trusted table (immutable), e.g. to derive a changed one from."""
        return self._trusted

    def install_trusted(self, table: NativeTrusted) -> int:
        """Install a trusted table built elsewhere (atomic swap, as ``set_trusted``)."""
        self._native.set_trusted(table)
        self._trusted = table
        return len(table)

    @property
    def trusted_memory_bytes(self) -> int:
        return self._trusted.memory_bytes if self._trusted else 0

    def set_blocklist(self, kind: str, values: Iterable[int | str]) -> None:
        """Replace one block list: account, device, counterparty or ip."""
        if kind not in LIST_KINDS:
            raise ValueError(f"unknown block list {kind!r} (one of {', '.join(LIST_KINDS)})")
        keys = [fnv1a64(v) if isinstance(v, str) else v for v in values]
        if any(not 0 <= k < 2**64 for k in keys):
            raise ValueError("block-list values must be unsigned 64-bit integers or strings")
        self._native.set_list(LIST_KINDS[kind], keys)

    def freeze_account(self, account: int) -> None:
        """Block every payment of ``account`` until it is unfrozen."""
        self._native.freeze(account, True)

    def unfreeze_account(self, account: int) -> None:
        self._native.freeze(account, False)

    def is_frozen(self, account: int) -> bool:
        return self._native.is_frozen(account)

    # -- scoring -----------------------------------------------------------------------

    def _decision(self, tx_id: str, raw: RawNative) -> Decision:
        outcome, method, score, path, version, fired, flags, _ = raw
        if flags & 1:
            ids: tuple[str, ...] = (FROZEN_RULE_ID,)
        else:
            names = self._ids[version]
            ids = tuple([names[i] for i in fired])
        return Decision(tx_id, OUTCOMES[outcome], METHODS[method], score, PATHS[path], ids,
                        version)

    def score(self, tx: Transaction) -> Decision:
        """Score one transaction and update the account's state."""
        raw = self._native.score(
            tx.account, tx.counterparty, tx.amount, tx.ts_ms, tx.device.encode(),
            tx.ip.encode(), tx.city.encode(), pack_code(tx.currency), pack_code(tx.country),
            tx.mcc, CHANNEL_CODES[tx.channel])
        return self._decision(tx.tx_id, raw)

    def score_batch(self, txs: Sequence[Transaction]) -> list[Decision]:
        """Score transactions in order in one native call (one rule-set snapshot)."""
        if not txs:
            return []
        raws = self._native.score_batch(pack_transactions(txs))
        return [self._decision(tx.tx_id, raw) for tx, raw in zip(txs, raws, strict=True)]

    def profile(self, account: int, ts_ms: int) -> AccountProfile | None:
        """The account's state with velocity taken at ``ts_ms`` (call it right after scoring
        the payment to describe it); None when the account has no state. Same thread rule
        as scoring: account state is single-writer (native/gw_scoring.h)."""
        raw = self._native.profile(account, ts_ms)
        return AccountProfile(*raw) if raw is not None else None

    def stats(self) -> dict[str, int]:
        s = self._native.stats()
        s["ruleset_version"] = self.info.version
        return s

    @property
    def native(self) -> NativeEngine:
        """The native engine, for a C ingest thread (``native.ptr`` is the engine)."""
        return self._native
