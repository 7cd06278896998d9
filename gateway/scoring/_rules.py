"""Parse and validate rule files (TOML) into a :class:`RuleSet`; see docs/rules.md.

Validation is complete before anything is compiled, so a refused file never touches the
running set. Every refusal is a :class:`RuleFileError` naming the file, the rule id, the
line and the reason. ``tomllib`` gives no line numbers for tables, so lines are found by
scanning the text for the n-th ``[[rules]]`` header and, inside it, the condition's key.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from typing import Any, Final, NoReturn

from gateway.errors import ErrorCode, GatewayError
from gateway.scoring._model import (
    ACTIONS,
    CHANNEL_CODES,
    FEATURES,
    I64_MAX,
    I64_MIN,
    MAX_CONDS_PER_RULE,
    MAX_RULES,
    MAX_SCORE,
    MAX_SET_LEN,
    MAX_SET_VALUES,
    MAX_STR,
    MAX_TIERS,
    OP_EQ,
    OPS,
    ORDERED_KINDS,
    SET_OPS,
    Condition,
    Kind,
    Rule,
    RuleSet,
    Tier,
    fnv1a64,
    pack_code,
    to_i64,
)
from gateway.wire import Channel


class RuleFileError(GatewayError):
    """A rule file was refused; the running rule set stays."""

    code: Final = ErrorCode.RULES_INVALID

    def __init__(self, filename: str, rule_id: str | None, line: int | None,
                 reason: str) -> None:
        where = filename + (f":{line}" if line is not None else "")
        who = f" rule {rule_id!r}:" if rule_id is not None else ""
        super().__init__(f"{where}:{who} {reason}")
        self.filename = filename
        self.rule_id = rule_id
        self.line = line
        self.reason = reason


_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_TOP_KEYS: Final = frozenset({"meta", "thresholds", "tiers", "rules", "guards"})
_META_KEYS: Final = frozenset({"name", "version", "description", "author"})
_RULE_KEYS: Final = frozenset({"id", "description", "score", "action", "trusted", "enabled",
                               "when"})
_GUARD_KEYS: Final = frozenset({"id", "description", "kind", "factor", "min_amount", "list",
                                "enabled", "when"})
_TIER_KEYS: Final = frozenset({"name", "level", "daily_amount", "daily_count"})
_THRESHOLD_KEYS: Final = frozenset({"step_up", "block", "block_and_freeze", "step_up_method"})
_LIST_FEATURES: Final = {"account": "blocklist_account", "device": "blocklist_device",
                         "counterparty": "blocklist_counterparty", "ip": "blocklist_ip"}
_CHANNELS: Final = {ch.value: CHANNEL_CODES[ch] for ch in Channel}
_METHOD_NAMES: Final = ("face", "sms_down", "sms_up", "old_device_confirm")


class _Lines:
    """Line lookup for array-of-table entries and keys inside them."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines()
        self.headers: dict[str, list[int]] = {}
        header = re.compile(r"^\s*\[\[\s*([A-Za-z_]+)\s*\]\]")
        for no, text in enumerate(self.lines, 1):
            m = header.match(text)
            if m:
                self.headers.setdefault(m.group(1), []).append(no)

    def entry(self, table: str, index: int) -> int | None:
        found = self.headers.get(table, [])
        return found[index] if index < len(found) else None

    def key(self, start: int | None, key: str) -> int | None:
        if start is None:
            return None
        pat = re.compile(rf"^\s*{re.escape(key)}\s*[.=]")
        for no in range(start, len(self.lines)):  # 0-based index of the line after start
            text = self.lines[no]
            if text.lstrip().startswith("[["):
                break
            if pat.match(text):
                return no + 1
        return start


class _Parser:
    def __init__(self, source: str, filename: str) -> None:
        self.filename = filename
        self.lines = _Lines(source)

    def fail(self, reason: str, rule_id: str | None = None, line: int | None = None) -> NoReturn:
        raise RuleFileError(self.filename, rule_id, line, reason)

    # -- helpers -----------------------------------------------------------------------

    def _int(self, value: object, what: str, lo: int, hi: int, rid: str | None,
             line: int | None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"{what} must be an integer, got {type(value).__name__}", rid, line)
        assert isinstance(value, int)
        if not lo <= value <= hi:
            self.fail(f"{what} must be between {lo} and {hi}, got {value}", rid, line)
        return value

    def _table(self, value: object, what: str, rid: str | None = None,
               line: int | None = None) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"{what} must be a table", rid, line)
        assert isinstance(value, dict)
        return value

    def _keys(self, table: Mapping[str, Any], allowed: frozenset[str], what: str,
              rid: str | None, line: int | None) -> None:
        for key in table:
            if key not in allowed:
                self.fail(f"unknown key {key!r} in {what} (allowed: "
                          f"{', '.join(sorted(allowed))})", rid, self.lines.key(line, key))

    # -- values --------------------------------------------------------------------------

    def _scalar(self, kind: Kind, feature: str, value: object, rid: str,
                line: int | None) -> int:
        bad = f"{feature} takes {kind.value} values, got {value!r}"
        if kind is Kind.INT:
            return self._int(value, f"value of {feature}", I64_MIN, I64_MAX, rid, line)
        if kind is Kind.RATIO:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(bad, rid, line)
            assert isinstance(value, int | float)
            if isinstance(value, float) and not math.isfinite(value):
                self.fail(bad, rid, line)
            milli = value * 1000 if isinstance(value, int) else round(value * 1000)
            if not 0 <= milli <= I64_MAX:
                self.fail(f"{feature} must be between 0 and {I64_MAX // 1000}", rid, line)
            return int(milli)
        if kind is Kind.BOOL:
            if not isinstance(value, bool):
                self.fail(bad, rid, line)
            return int(bool(value))
        if kind is Kind.ID:
            return to_i64(self._int(value, f"value of {feature}", 0, 2**64 - 1, rid, line))
        if not isinstance(value, str):
            self.fail(bad, rid, line)
        assert isinstance(value, str)
        if kind is Kind.COUNTRY:
            if not re.fullmatch(r"[A-Z]{2}", value):
                self.fail(f"{feature} must be two capital letters, got {value!r}", rid, line)
            return pack_code(value)
        if kind is Kind.CURRENCY:
            if not re.fullmatch(r"[A-Z]{3}", value):
                self.fail(f"{feature} must be three capital letters, got {value!r}", rid, line)
            return pack_code(value)
        if kind is Kind.CHANNEL:
            if value not in _CHANNELS:
                self.fail(f"unknown channel {value!r} (one of {', '.join(_CHANNELS)})",
                          rid, line)
            return _CHANNELS[value]
        if len(value.encode()) > MAX_STR:
            self.fail(f"{feature} value longer than {MAX_STR} bytes", rid, line)
        return to_i64(fnv1a64(value))

    def _condition(self, feature: str, op_name: str, value: object, rid: str,
                   line: int | None) -> Condition:
        if op_name == "in_list":
            if value == "trusted" and feature == "account":
                return Condition(FEATURES["trusted"].code, OP_EQ, 1)
            if value != "blocklist" or feature not in _LIST_FEATURES:
                self.fail(f"in_list takes \"blocklist\" for account, device, counterparty "
                          f"or ip (or \"trusted\" for account), got {feature}.in_list = "
                          f"{value!r}", rid, line)
            return Condition(FEATURES[_LIST_FEATURES[feature]].code, OP_EQ, 1)
        if op_name not in OPS:
            self.fail(f"unknown operator {op_name!r} on {feature} (one of "
                      f"{', '.join([*OPS, 'in_list'])})", rid, line)
        fdef = FEATURES[feature]
        op = OPS[op_name]
        if fdef.kind is Kind.BOOL and op not in (0, 1):
            self.fail(f"{feature} is a boolean: only eq and ne apply", rid, line)
        if op in (2, 3, 4, 5) and fdef.kind not in ORDERED_KINDS:
            self.fail(f"{op_name} does not apply to {feature} ({fdef.kind.value})", rid, line)
        if op in SET_OPS:
            if not isinstance(value, list) or not value:
                self.fail(f"{feature}.{op_name} takes a non-empty list", rid, line)
            assert isinstance(value, list)
            if len(value) > MAX_SET_LEN:
                self.fail(f"{feature}.{op_name} list longer than {MAX_SET_LEN}", rid, line)
            values = sorted({self._scalar(fdef.kind, feature, v, rid, line) for v in value})
            return Condition(fdef.code, op, 0, tuple(values))
        return Condition(fdef.code, op, self._scalar(fdef.kind, feature, value, rid, line))

    def _when(self, when: object, rid: str, line: int | None) -> tuple[Condition, ...]:
        table = self._table(when, "when", rid, line)
        if not table:
            self.fail("when has no conditions", rid, line)
        conds: list[Condition] = []
        for feature, spec in table.items():
            at = self.lines.key(line, feature)
            if feature not in FEATURES:
                self.fail(f"unknown feature {feature!r}", rid, at)
            ops = spec.items() if isinstance(spec, dict) else [("eq", spec)]
            if not ops:
                self.fail(f"{feature} has no operator", rid, at)
            for op_name, value in ops:
                conds.append(self._condition(feature, op_name, value, rid, at))
        if len(conds) > MAX_CONDS_PER_RULE:
            self.fail(f"more than {MAX_CONDS_PER_RULE} conditions", rid, line)
        return tuple(conds)

    def _id(self, entry: Mapping[str, Any], what: str, line: int | None,
            seen: set[str]) -> str:
        rid = entry.get("id")
        if rid is None:
            self.fail(f"{what} without id", None, line)
        if not isinstance(rid, str) or not _ID_RE.match(rid):
            self.fail(f"{what} id must be 1-64 characters of A-Z a-z 0-9 _ . : -, got "
                      f"{rid!r}", None, line)
        assert isinstance(rid, str)
        if rid in seen:
            self.fail(f"duplicate id {rid!r}", rid, line)
        seen.add(rid)
        return rid

    def _description(self, entry: Mapping[str, Any], rid: str, line: int | None) -> str:
        desc = entry.get("description", "")
        if not isinstance(desc, str):
            self.fail("description must be a string", rid, line)
        assert isinstance(desc, str)
        return desc

    def _enabled(self, entry: Mapping[str, Any], rid: str, line: int | None) -> bool:
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            self.fail("enabled must be true or false", rid, line)
        return bool(enabled)

    # -- sections ------------------------------------------------------------------------

    def rule(self, entry: object, index: int, seen: set[str]) -> Rule | None:
        line = self.lines.entry("rules", index)
        table = self._table(entry, "a [[rules]] entry", None, line)
        rid = self._id(table, "rule", line, seen)
        self._keys(table, _RULE_KEYS, "a rule", rid, line)
        if "score" not in table:
            self.fail("missing score", rid, line)
        score = self._int(table["score"], "score", -MAX_SCORE, MAX_SCORE, rid,
                          self.lines.key(line, "score"))
        action = table.get("action")
        if action is not None and action not in ACTIONS:
            self.fail(f"unknown action {action!r} (one of {', '.join(ACTIONS)})", rid,
                      self.lines.key(line, "action"))
        trusted = table.get("trusted", False)
        if not isinstance(trusted, bool):
            self.fail("trusted must be true or false", rid, self.lines.key(line, "trusted"))
        if "when" not in table:
            self.fail("missing when (the rule's conditions)", rid, line)
        conds = self._when(table["when"], rid, line)
        desc = self._description(table, rid, line)
        if not self._enabled(table, rid, line):
            return None
        return Rule(rid, score, conds, ACTIONS.get(str(action), 0) if action else 0,
                    bool(trusted), desc, line)

    def guard(self, entry: object, index: int, seen: set[str]) -> Rule | None:
        line = self.lines.entry("guards", index)
        table = self._table(entry, "a [[guards]] entry", None, line)
        rid = self._id(table, "guard", line, seen)
        self._keys(table, _GUARD_KEYS, "a guard", rid, line)
        kind = table.get("kind", "custom")
        conds: tuple[Condition, ...]
        if kind == "amount_vs_baseline":
            factor = table.get("factor")
            if factor is None:
                self.fail("amount_vs_baseline guard needs factor", rid, line)
            milli = self._scalar(Kind.RATIO, "factor", factor, rid, line)
            if milli <= 0:
                self.fail("factor must be positive", rid, line)
            conds = (Condition(FEATURES["amount_to_baseline"].code, 5, milli),)
        elif kind == "new_device_amount":
            if "min_amount" not in table:
                self.fail("new_device_amount guard needs min_amount", rid, line)
            amount = self._int(table["min_amount"], "min_amount", 0, I64_MAX, rid, line)
            conds = (Condition(FEATURES["new_device"].code, 0, 1),
                     Condition(FEATURES["amount"].code, 5, amount))
        elif kind == "blocklist":
            which = table.get("list", "counterparty")
            if which not in _LIST_FEATURES:
                self.fail(f"list must be one of {', '.join(_LIST_FEATURES)}, got {which!r}",
                          rid, line)
            conds = (Condition(FEATURES[_LIST_FEATURES[str(which)]].code, 0, 1),)
        elif kind == "custom":
            if "when" not in table:
                self.fail("custom guard needs when", rid, line)
            conds = self._when(table["when"], rid, line)
        else:
            self.fail(f"unknown guard kind {kind!r} (amount_vs_baseline, new_device_amount, "
                      "blocklist, custom)", rid, line)
        if kind != "custom" and "when" in table:
            self.fail(f"{kind} guard takes no when", rid, line)
        desc = self._description(table, rid, line)
        if not self._enabled(table, rid, line):
            return None
        return Rule(rid, 0, conds, 0, False, desc, line)

    def tier(self, entry: object, index: int, levels: set[int]) -> Tier:
        line = self.lines.entry("tiers", index)
        table = self._table(entry, "a [[tiers]] entry", None, line)
        self._keys(table, _TIER_KEYS, "a tier", None, line)
        name = table.get("name")
        if not isinstance(name, str) or not name:
            self.fail("tier needs a name", None, line)
        assert isinstance(name, str)
        for key in ("level", "daily_amount", "daily_count"):
            if key not in table:
                self.fail(f"tier {name!r} needs {key}", None, line)
        level = self._int(table["level"], f"tier {name!r} level", 1, 255, None, line)
        if level in levels:
            self.fail(f"duplicate tier level {level}", None, line)
        levels.add(level)
        return Tier(name, level,
                    self._int(table["daily_amount"], "daily_amount", 0, I64_MAX, None, line),
                    self._int(table["daily_count"], "daily_count", 0, I64_MAX, None, line))

    def thresholds(self, value: object) -> tuple[int, int, int, int]:
        table = self._table(value, "[thresholds]")
        self._keys(table, _THRESHOLD_KEYS, "[thresholds]", None, None)
        got = []
        for key in ("step_up", "block", "block_and_freeze"):
            if key not in table:
                self.fail(f"[thresholds] needs {key}")
            got.append(self._int(table[key], f"thresholds.{key}", -(2**40), 2**40, None, None))
        if not got[0] < got[1] < got[2]:
            self.fail("thresholds must increase: step_up < block < block_and_freeze, got "
                      f"{got[0]}, {got[1]}, {got[2]}")
        method = table.get("step_up_method", "sms_down")
        if method not in _METHOD_NAMES:
            self.fail(f"step_up_method must be one of {', '.join(_METHOD_NAMES)}")
        return got[0], got[1], got[2], ACTIONS[str(method)]

    def parse(self, source: str) -> RuleSet:
        try:
            doc = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            self.fail(f"TOML syntax error: {exc}", None, int(m.group(1)) if m else None)
        self._keys(doc, _TOP_KEYS, "the file", None, None)
        meta = self._table(doc.get("meta", {}), "[meta]")
        self._keys(meta, _META_KEYS, "[meta]", None, None)
        name = meta.get("name", "")
        if not isinstance(name, str):
            self.fail("meta.name must be a string")
        label = meta.get("version", "")
        if not isinstance(label, str | int) or isinstance(label, bool):
            self.fail("meta.version must be a string or an integer")
        if "thresholds" not in doc:
            self.fail("missing [thresholds]")
        step_up, block, freeze, method = self.thresholds(doc["thresholds"])
        for section in ("rules", "guards", "tiers"):
            if not isinstance(doc.get(section, []), list):
                self.fail(f"{section} must be an array of tables ([[{section}]])")
        levels: set[int] = set()
        tiers = tuple(self.tier(t, i, levels) for i, t in enumerate(doc.get("tiers", [])))
        if len(tiers) > MAX_TIERS:
            self.fail(f"more than {MAX_TIERS} tiers")
        seen: set[str] = set()
        rules = [self.rule(r, i, seen) for i, r in enumerate(doc.get("rules", []))]
        guards = [self.guard(g, i, seen) for i, g in enumerate(doc.get("guards", []))]
        live_rules = tuple(r for r in rules if r is not None)
        live_guards = tuple(g for g in guards if g is not None)
        if len(live_rules) + len(live_guards) > MAX_RULES:
            self.fail(f"more than {MAX_RULES} rules and guards")
        n_values = sum(len(c.values) for r in (*live_rules, *live_guards) for c in r.conditions)
        if n_values > MAX_SET_VALUES:
            self.fail(f"more than {MAX_SET_VALUES} values in in / not_in lists")
        return RuleSet(str(name), str(label), self.filename, live_rules, live_guards, tiers,
                       step_up, block, freeze, method)


def parse_rules(source: str, filename: str = "<rules>") -> RuleSet:
    """Validate a rule file and return its compiled form; raises :class:`RuleFileError`."""
    return _Parser(source, filename).parse(source)
