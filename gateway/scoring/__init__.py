"""Risk scoring: rule files, the native engine and its pure-Python reference.

This package does no I/O of its own beyond reading files it is handed: time comes from the
transactions (``ts_ms``). Rule files are TOML (docs/rules.md); :class:`ScoringEngine` compiles
them into the native engine and swaps them atomically; :class:`ReferenceEngine` implements the
same semantics in plain Python as the test oracle.
"""

from __future__ import annotations

from gateway.scoring._engine import (
    DEFAULT_RULES_PATH,
    NoPreviousRuleSetError,
    RuleSetVersionNotKeptError,
    ScoringEngine,
    compile_native,
    pack_transactions,
)
from gateway.scoring._generate import (
    TransactionGenerator,
    account_id,
    generate_rules,
    write_trusted_file,
)
from gateway.scoring._model import FEATURES, FROZEN_RULE_ID, RuleSet, RuleSetInfo
from gateway.scoring._reference import ReferenceEngine
from gateway.scoring._rules import RuleFileError, parse_rules

__all__ = [
    "DEFAULT_RULES_PATH",
    "FEATURES",
    "FROZEN_RULE_ID",
    "NoPreviousRuleSetError",
    "ReferenceEngine",
    "RuleFileError",
    "RuleSet",
    "RuleSetInfo",
    "RuleSetVersionNotKeptError",
    "ScoringEngine",
    "TransactionGenerator",
    "account_id",
    "compile_native",
    "generate_rules",
    "pack_transactions",
    "parse_rules",
    "write_trusted_file",
]
