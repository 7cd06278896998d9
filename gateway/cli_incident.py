"""``gateway incident`` and ``gateway cases``: incident timelines, the incident list, the
case library, and offline checks of on-call and policy files (parsers and commands;
``gateway.cli`` registers them).

Everything here reads the node's database (``node.db`` in the data directory) directly and
read-only, so it works next to a running node or a stopped one.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, GatewayError

DEFAULT_DATA_DIR = "./gateway-data"


def _data_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="DIR",
                       help=f"the node's data directory (default {DEFAULT_DATA_DIR})")
    where.add_argument("--config", metavar="FILE",
                       help="the node's config file: its node.data_dir is used")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_parsers(sub: Any) -> None:
    incident = sub.add_parser(
        "incident", help="incident timelines and list; check on-call and policy files",
        description="Incident response, offline: read the node's database (read-only, the"
        " node may be running) or check the files of the [incident] config section.")
    isub = incident.add_subparsers(dest="incident_command", metavar="ACTION", required=True)
    show = isub.add_parser(
        "show", help="the timeline of one incident",
        description="Print one incident's timeline: its alerts, when each officer device"
        " received them (from the journal, to the second), acknowledgements, escalation"
        " pages, room events, command requests, votes and executions, with the time to"
        " acknowledge, to act (a freeze is in force in scoring once approved) and to"
        " execute. Times are UTC; offsets count from the first alert.")
    show.add_argument("id", metavar="ID", type=int, help="the incident id")
    show.add_argument("--no-room", action="store_true",
                      help="leave out the room events (most repeat another line)")
    _data_args(show)
    lst = isub.add_parser("list", help="list incidents, newest first",
                          description="List the open incidents (all with --all), newest"
                          " first.")
    lst.add_argument("--all", action="store_true", help="resolved incidents too")
    lst.add_argument("--limit", type=int, default=50, metavar="N",
                     help="at most N incidents (default 50)")
    _data_args(lst)
    isub.add_parser("example", help="print a commented example on-call file",
                    description="Print the on-call file reference: officers, routes,"
                    " escalation ladders, channels, incident settings.")
    isub.add_parser("policy-example", help="print the default command policy",
                    description="Print the embedded command policy (used when the config"
                    " names none), commented: who may issue each command and who approves.")
    check = isub.add_parser("check", help="validate an on-call file (and a policy file)",
                            description="Validate an on-call file and optionally a policy"
                            " file offline; prints a summary, or the file, key and reason of"
                            " the first problem (exit 2).")
    check.add_argument("oncall", metavar="ONCALL", help="the on-call file (TOML)")
    check.add_argument("--policy", metavar="FILE", help="also check this policy file")

    cases = sub.add_parser("cases", help="search the case library of resolved incidents",
                           description="The case library: every resolved incident is filed"
                           " with its outcome, rules, actions, tags and notes (full-text"
                           " indexed).")
    csub = cases.add_subparsers(dest="cases_command", metavar="ACTION", required=True)
    search = csub.add_parser(
        "search", help="full-text search, best match first",
        description="Search the case library with an SQLite FTS5 query: words (all must"
        " match), \"a phrase\", OR, NOT, prefix*, column:word (summary, tags, rules,"
        " actions, outcome, notes); quote words with a hyphen: '\"fraud-confirmed\"'."
        " A malformed query exits 2.")
    search.add_argument("query", metavar="QUERY", help="FTS5 query, e.g. 'card AND fraud'")
    search.add_argument("--limit", type=int, default=10, metavar="N",
                        help="at most N cases (default 10)")
    _data_args(search)


def _open_db(args: argparse.Namespace) -> sqlite3.Connection:
    """The data directory's node.db, read-only."""
    from gateway.journal import connect

    if args.data_dir is not None:
        data_dir = Path(args.data_dir)
    elif args.config is not None:
        from gateway.config import load_config

        data_dir = Path(load_config(args.config).node.data_dir)
    else:
        data_dir = Path(DEFAULT_DATA_DIR)
    path = data_dir / "node.db"
    if not path.exists():
        raise ConfigError(str(path), "<file>", "no node database here")
    try:
        db = connect(path, readonly=True)
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise GatewayError(f"{path}: {exc}") from None
    return db


def _utc(ts_ns: int) -> str:
    from gateway.incident._timeline import utc

    return utc(ts_ns)[:19] + "Z" if ts_ns else "-"


def cmd_incident(args: argparse.Namespace) -> int:
    if args.incident_command == "example":
        from gateway.incident._oncall import ONCALL_REFERENCE

        print(ONCALL_REFERENCE, end="")
        return 0
    if args.incident_command == "policy-example":
        from gateway.incident._commands import POLICY_REFERENCE

        print(POLICY_REFERENCE, end="")
        return 0
    if args.incident_command == "check":
        return _check(args)
    from gateway.incident import _timeline as tlm

    db = _open_db(args)
    try:
        if args.incident_command == "show":
            tl = tlm.timeline(db, args.id, room=not args.no_room)
            if args.json:
                print(json.dumps(tlm.as_dict(tl)))
            else:
                print(tlm.render(tl), end="")
            return 0
        rows = tlm.list_incidents(db, open_only=not args.all, limit=args.limit)
    except sqlite3.Error as exc:
        raise GatewayError(f"reading the node database: {exc}") from None
    finally:
        db.close()
    if args.json:
        print(json.dumps([{"id": r.id, "severity": r.severity, "status": r.status,
                           "account": r.account, "family": r.family, "title": r.title,
                           "region": r.region, "opened_ns": r.opened_ns,
                           "resolved_ns": r.resolved_ns, "alerts": r.alerts,
                           "members": list(r.members)} for r in rows]))
        return 0
    if not rows:
        print("no open incidents" if not args.all else "no incidents")
        return 0
    table: list[tuple[str, ...]] = [("id", "severity", "status", "opened (UTC)", "account",
                                     "family", "alerts", "title")]
    table += [(str(r.id), r.severity, r.status, _utc(r.opened_ns), str(r.account), r.family,
               str(r.alerts), r.title) for r in rows]
    _print_table(table)
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _check(args: argparse.Namespace) -> int:
    from gateway.incident._commands import load_policy
    from gateway.incident._oncall import load_oncall

    oc = load_oncall(args.oncall)
    print(f"{args.oncall}: ok, {len(oc.officers)} officers, {len(oc.routes)} routes, "
          f"{len(oc.ladders)} ladders ({', '.join(sorted(oc.ladders)) or 'none'}), "
          f"{len(oc.channels)} channels")
    if args.policy:
        policy = load_policy(args.policy)
        print(f"{args.policy}: ok, rules for {', '.join(sorted(policy.rules)) or 'nothing'}")
    return 0


def cmd_cases(args: argparse.Namespace) -> int:
    from gateway.incident import _timeline as tlm

    db = _open_db(args)
    try:
        try:
            cases = tlm.search_cases(db, args.query, args.limit)
        except tlm.CaseQueryError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
    except sqlite3.Error as exc:
        raise GatewayError(f"reading the node database: {exc}") from None
    finally:
        db.close()
    if args.json:
        print(json.dumps([{"case_id": c.case_id, "summary": c.summary, "tags": c.tags,
                           "rules": c.rules, "actions": c.actions, "outcome": c.outcome,
                           "notes": c.notes, "resolved_ns": c.resolved_ns} for c in cases]))
        return 0
    if not cases:
        print(f"no case matches {args.query!r}")
        return 0
    for c in cases:
        print(f"case {c.case_id}  {_utc(c.resolved_ns)}  {c.outcome}: {c.summary}")
        if c.tags:
            print(f"  tags     {' '.join(c.tags)}")
        if c.rules:
            print(f"  rules    {' '.join(c.rules)}")
        if c.actions:
            print(f"  actions  {'; '.join(c.actions)}")
        if c.notes:
            print(f"  notes    {c.notes}")
    return 0


__all__ = ["add_parsers", "cmd_cases", "cmd_incident"]
