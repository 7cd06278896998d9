"""An incident's timeline, read from ``node.db``: what happened, to whom, when. Sans-IO:
plain functions over a (read-only) sqlite3 connection; nothing here writes.

The timeline merges the incident's alerts, when each officer device received them (from
the journal's ``received`` events, to the second), acknowledgements, escalation pages,
room events, command requests, votes and executions, and computes the figures a review
asks for first: time to acknowledge, to act (a freeze takes effect in scoring when its
request is approved) and to execute in the business system.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from gateway import wire
from gateway.errors import GatewayError
from gateway.incident._commands import BUSINESS, Command
from gateway.store import u64_of

SCAN_EVENTS: Final = 200_000  # journal events looked at for device receipts, at most
SCAN_AFTER_RESOLVED_NS: Final = 3600 * 1_000_000_000  # receipts looked for this long after
SCAN_PAGE: Final = 2000  # received events read at a time
NOT_CONFIRMED: Final = "not confirmed"


class IncidentNotFoundError(GatewayError, LookupError):
    """No incident with that id in the database."""


class CaseQueryError(GatewayError, ValueError):
    """The case search query is not valid FTS5 syntax; the message is SQLite's."""


class SchemaError(GatewayError):
    """The database has no incident tables (made by a node older than migration 3)."""


class _Received(msgspec.Struct, array_like=True):
    """One entry of a ``received`` journal event (``gateway.alerting._ReceivedEvent``)."""

    officer: str
    device: str
    cursors: list[int]


class _AlertEvent(msgspec.Struct, array_like=True):
    """The body of an ``alert`` journal event (``gateway.alerting._AlertEvent``)."""

    alert: msgspec.Raw
    key: str | None
    recipients: list[tuple[str, int, int]]


_received_dec = msgspec.msgpack.Decoder(list[_Received])
_alert_event_dec = msgspec.msgpack.Decoder(_AlertEvent)
_alert_dec = msgspec.msgpack.Decoder(wire.Alert)
_room_dec = msgspec.msgpack.Decoder(wire.RoomEvent)


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """One row of the ``incidents`` table (the account as the u64 it is)."""

    id: int
    severity: str
    account: int
    title: str
    family: str
    status: str
    opened_ns: int
    resolved_ns: int  # 0 while open
    region: str = ""
    alerts: int = 0  # alerts of the incident
    members: tuple[str, ...] = ()  # officers in the room now


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the timeline. ``ts_ns`` 0: the time is not known (e.g. a receipt that
    no device confirmed); such entries come last."""

    ts_ns: int
    what: str
    who: str
    detail: str


@dataclass(frozen=True, slots=True)
class Timeline:
    incident: IncidentRow
    entries: list[Entry]
    alert_ids: list[int]
    first_alert_ns: int  # the first alert's raised time: the origin of the offsets
    time_to_receive_s: float | None  # first device receipt of any incident alert
    time_to_ack_s: float | None  # first 'acknowledged' of any incident alert
    time_to_act_s: float | None  # first approval of a business command
    time_to_execute_s: float | None  # first business command executed
    receipts_scanned: int = 0  # `received` journal events read
    receipts_complete: bool = True  # False: the scan stopped at its bound
    notes: list[str] = field(default_factory=list)


def _seconds(later_ns: int | None, origin_ns: int) -> float | None:
    return None if later_ns is None else (later_ns - origin_ns) / 1e9


def check_schema(db: sqlite3.Connection) -> None:
    """Raise :class:`SchemaError` unless the incident tables exist."""
    try:
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        row = None
    version = int(row[0] or 0) if row is not None else 0
    if version < 3:
        raise SchemaError(f"the database has no incident tables (schema version {version}); "
                          "a node of this version adds them when it starts")


def _incident_row(db: sqlite3.Connection, r: Sequence[Any]) -> IncidentRow:
    iid = int(r[0])
    alerts = int(db.execute("SELECT count(*) FROM incident_alerts WHERE incident_id = ?",
                            (iid,)).fetchone()[0])
    members = tuple(str(o) for o, in db.execute(
        "SELECT officer FROM members WHERE incident_id = ? AND left_ns = 0 ORDER BY officer",
        (iid,)))
    return IncidentRow(iid, str(r[1]), u64_of(int(r[2])), str(r[3]), str(r[4]), str(r[5]),
                       int(r[6]), int(r[7]), str(r[8]), alerts, members)


_INCIDENT_COLUMNS: Final = ("incident_id, severity, account, title, family, status, "
                            "opened_ns, resolved_ns, region")


def list_incidents(db: sqlite3.Connection, open_only: bool = True,
                   limit: int = 50) -> list[IncidentRow]:
    """The newest incidents first (only open ones with ``open_only``)."""
    check_schema(db)
    sql = (f"SELECT {_INCIDENT_COLUMNS} FROM incidents"
           + (" WHERE status = 'open'" if open_only else "")
           + " ORDER BY incident_id DESC LIMIT ?")
    return [_incident_row(db, r) for r in db.execute(sql, (limit,)).fetchall()]


def search_cases(db: sqlite3.Connection, query: str, limit: int = 10) -> list[wire.CaseInfo]:
    """Cases matching an FTS5 query, best first; :class:`CaseQueryError` on bad syntax."""
    check_schema(db)
    try:
        rows = db.execute(
            "SELECT c.case_id, c.summary, c.tags, c.rules, c.actions, c.outcome, c.notes, "
            "c.resolved_ns FROM cases_fts f JOIN cases c ON c.case_id = f.rowid "
            "WHERE cases_fts MATCH ? ORDER BY f.rank LIMIT ?", (query, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        raise CaseQueryError(f"case search {query!r}: {exc}") from None
    return [wire.CaseInfo(int(r[0]), str(r[1]), str(r[2]).split(), str(r[3]).split(),
                          [a for a in str(r[4]).split("; ") if a], str(r[5]), str(r[6]),
                          int(r[7])) for r in rows]


# -- the timeline --------------------------------------------------------------------------


@dataclass(slots=True)
class _Delivery:
    """An alert in one officer's stream, waiting for its devices' confirmations."""

    alert_id: int
    alert_jseq: int
    officer: str
    lane: int
    seq: int
    got: dict[str, int] = field(default_factory=dict)  # device -> journal ts_ns


def _alert_title(db: sqlite3.Connection, jseq: int) -> str:
    row = db.execute("SELECT body FROM journal WHERE seq = ?", (jseq,)).fetchone()
    if row is None:
        return ""
    try:
        return _alert_dec.decode(_alert_event_dec.decode(bytes(row[0])).alert).title
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def _scan_receipts(db: sqlite3.Connection, start_seq: int, until_ns: int | None,
                   deliveries: list[_Delivery], devices: dict[str, set[str]],
                   max_events: int) -> tuple[int, bool]:
    """Fill ``got`` of each delivery from the ``received`` events from ``start_seq`` on:
    the first event after the alert's own event whose entry for a device has the lane's
    cursor at or past the item. Stops when every known device of every recipient has
    confirmed, after ``until_ns``, or ``max_events`` journal events on. Returns the
    ``received`` events read and False if the scan stopped at ``max_events`` early."""
    by_officer: dict[str, list[_Delivery]] = {}
    for d in deliveries:
        by_officer.setdefault(d.officer, []).append(d)

    def done() -> bool:
        return all(devices.get(d.officer, set()) <= d.got.keys() for d in deliveries)

    if done():  # no recipient has a device that ever confirmed anything
        return 0, True
    n = 0
    last = start_seq - 1
    end = start_seq + max_events  # exclusive
    while True:
        rows = db.execute("SELECT seq, ts_ns, body FROM journal WHERE seq > ? AND seq < ? "
                          "AND kind = 'received' ORDER BY seq LIMIT ?",
                          (last, end, SCAN_PAGE)).fetchall()
        for seq, ts_ns, body in rows:
            if until_ns is not None and int(ts_ns) > until_ns:
                return n, True
            n += 1
            try:
                entries = _received_dec.decode(bytes(body))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            changed = False
            for e in entries:
                for d in by_officer.get(e.officer, ()):
                    if (e.device not in d.got and seq > d.alert_jseq
                            and d.lane < len(e.cursors) and e.cursors[d.lane] >= d.seq):
                        d.got[e.device] = int(ts_ns)
                        devices.setdefault(e.officer, set()).add(e.device)
                        changed = True
            if changed and done():
                return n, True
        if len(rows) < SCAN_PAGE:
            break
        last = int(rows[-1][0])
    after = db.execute("SELECT ts_ns FROM journal WHERE seq >= ? ORDER BY seq LIMIT 1",
                       (end,)).fetchone()
    return n, after is None or (until_ns is not None and int(after[0]) > until_ns)


def _first(current: int | None, ts: int) -> int:
    return ts if current is None else min(current, ts)


def _alert_entries(db: sqlite3.Connection, incident_id: int,
                   ) -> tuple[list[Entry], list[_Delivery], dict[int, int]]:
    """The incident's alerts, the officer streams they went into, and their raised times."""
    entries: list[Entry] = []
    deliveries: list[_Delivery] = []
    raised: dict[int, int] = {}
    for alert_id, severity, raised_ns, recipients, jseq in db.execute(
            "SELECT a.alert_id, a.severity, a.raised_ns, a.recipients, a.jseq FROM alerts a "
            "JOIN incident_alerts i ON i.alert_id = a.alert_id WHERE i.incident_id = ? "
            "ORDER BY a.alert_id", (incident_id,)).fetchall():
        raised[int(alert_id)] = int(raised_ns)
        title = _alert_title(db, int(jseq))
        to = str(recipients).replace(",", ", ") or "nobody"
        entries.append(Entry(int(raised_ns), "alert", "node",
                             f"alert {alert_id} [{severity}]" + (f" {title}" if title else "")
                             + f" -> {to}"))
        for officer, lane, seq in db.execute(
                "SELECT officer, lane, seq FROM stream WHERE alert_id = ? AND level IS NULL "
                "ORDER BY officer", (int(alert_id),)):
            deliveries.append(_Delivery(int(alert_id), int(jseq), str(officer), int(lane),
                                        int(seq)))
    return entries, deliveries, raised


def _receipt_entries(db: sqlite3.Connection, inc: IncidentRow, inc_jseq: int,
                     deliveries: list[_Delivery], max_events: int,
                     ) -> tuple[list[Entry], int | None, int, bool]:
    """When each device of each recipient received each alert (or "not confirmed"); the
    first receipt; the ``received`` events read; whether the scan finished."""
    devices: dict[str, set[str]] = {d.officer: set() for d in deliveries}
    for officer, device in db.execute("SELECT officer, device FROM device_cursors"):
        if officer in devices:
            devices[str(officer)].add(str(device))
    until = inc.resolved_ns + SCAN_AFTER_RESOLVED_NS if inc.resolved_ns else None
    scanned, complete = (_scan_receipts(db, inc_jseq, until, deliveries, devices, max_events)
                         if deliveries else (0, True))
    entries: list[Entry] = []
    first: int | None = None
    for d in deliveries:
        where = f"alert {d.alert_id} (lane {d.lane}, seq {d.seq})"
        for device, ts in sorted(d.got.items(), key=lambda kv: kv[1]):
            entries.append(Entry(ts, "received", f"{d.officer}/{device}", where))
            first = _first(first, ts)
        for device in sorted(devices[d.officer] - d.got.keys()):
            entries.append(Entry(0, "received", f"{d.officer}/{device}",
                                 f"{where}: {NOT_CONFIRMED}"))
        if not devices[d.officer]:
            entries.append(Entry(0, "received", d.officer,
                                 f"{where}: {NOT_CONFIRMED} (no device confirmed anything)"))
    return entries, first, scanned, complete


def _ack_entries(db: sqlite3.Connection, incident_id: int) -> tuple[list[Entry], int | None]:
    """Read and acknowledged marks, and the first acknowledgement."""
    entries: list[Entry] = []
    first: int | None = None
    for alert_id, officer, level, device, ts in db.execute(
            "SELECT a.alert_id, a.officer, a.level, a.device, a.ts_ns FROM acks a JOIN "
            "incident_alerts i ON i.alert_id = a.alert_id WHERE i.incident_id = ? "
            "ORDER BY a.ts_ns", (incident_id,)):
        entries.append(Entry(int(ts), str(level), f"{officer}/{device}", f"alert {alert_id}"))
        if level == wire.AckLevel.ACKNOWLEDGED.value:
            first = _first(first, int(ts))
    return entries, first


def _page_entries(db: sqlite3.Connection, incident_id: int) -> list[Entry]:
    """Escalation pages: one line per channel attempt, at the time it was sent."""
    entries = []
    for step, officer, channel, sent, done_ns, ok, reply in db.execute(
            "SELECT step, officer, channel, sent_ns, done_ns, ok, reply FROM pages "
            "WHERE incident_id = ? ORDER BY sent_ns, attempt_id", (incident_id,)):
        took = max(0, int(done_ns) - int(sent)) / 1e6
        entries.append(Entry(int(sent), "page", str(officer),
                             f"step {step} by {channel}: "
                             f"{'delivered' if ok else 'FAILED'} ({reply}; {took:.0f} ms)"))
    return entries


def _command_entries(db: sqlite3.Connection, incident_id: int,
                     ) -> tuple[list[Entry], int | None, int | None]:
    """Requests, votes, approvals and outcomes; the first approval and the first execution
    of a business command (``resolve`` is the node's own)."""
    entries: list[Entry] = []
    first_act: int | None = None
    first_exec: int | None = None
    homed = "home" in {str(r[1]) for r in db.execute("PRAGMA table_info(commands)")}
    for (rid, maker, name, account, amount, reason, state, needed, approvers, created,
         approved, done_ns, result, reference, home, forwarded) in db.execute(
            "SELECT request_id, maker, command, account, amount, reason, state, approvals, "
            "approvers, created_ns, approved_ns, done_ns, result, reference, "
            + ("home, forwarded_ns" if homed else "'', 0") + " FROM commands "
            "WHERE incident_id = ? ORDER BY request_id", (incident_id,)).fetchall():
        text = Command(str(name), u64_of(int(account)), int(amount), str(reason)).text()
        need = (f"needs {needed} approval{'s' * (needed > 1)} from "
                f"{str(approvers).replace(',', ', ')}" if needed else "no approval needed")
        entries.append(Entry(int(created), "request", str(maker),
                             f"request {rid}: {text} ({need}; state: {state})"))
        for officer, approve, why, ts in db.execute(
                "SELECT officer, approve, reason, ts_ns FROM votes WHERE request_id = ? "
                "ORDER BY ts_ns", (int(rid),)):
            entries.append(Entry(int(ts), "approve" if approve else "reject", str(officer),
                                 f"request {rid}" + (f": {why}" if why else "")))
        if approved:
            entries.append(Entry(int(approved), "approved", "node", f"request {rid}: {text}"))
            if name in BUSINESS:
                first_act = _first(first_act, int(approved))
        if home:
            entries.append(Entry(int(forwarded or approved), "home", "node",
                                 f"request {rid}: sent to region {home}, the account's home"
                                 + ("; accepted there" if forwarded else "; not yet accepted")))
        if done_ns:
            out = str(result) + (f" [{reference}]" if reference else "")
            entries.append(Entry(int(done_ns), str(state), "node",
                                 f"request {rid}: {text}" + (f" -> {out}" if out else "")))
            if state == "executed" and name in BUSINESS:
                first_exec = _first(first_exec, int(done_ns))
    return entries, first_act, first_exec


def _room_entries(db: sqlite3.Connection, incident_id: int) -> list[Entry]:
    """Room events in room order, one line each."""
    entries = []
    for rseq, kind, actor, ts, body in db.execute(
            "SELECT rseq, kind, actor, ts_ns, body FROM room_events WHERE incident_id = ? "
            "ORDER BY rseq", (incident_id,)):
        try:
            text = _room_dec.decode(bytes(body)).text
        except (msgspec.DecodeError, msgspec.ValidationError):
            text = "(undecodable room event)"
        entries.append(Entry(int(ts), f"room.{kind}", str(actor),
                             f"#{rseq} " + text.replace("\n", " | ")))
    return entries


def timeline(db: sqlite3.Connection, incident_id: int, *, room: bool = True,
             max_events: int = SCAN_EVENTS) -> Timeline:
    """The timeline of one incident; :class:`IncidentNotFoundError` if there is none.

    ``room=False`` leaves out the room events (most of them repeat a row shown anyway);
    ``max_events`` bounds the journal scan for device receipts.
    """
    check_schema(db)
    r = db.execute(f"SELECT {_INCIDENT_COLUMNS}, first_alert, jseq FROM incidents "
                   "WHERE incident_id = ?", (incident_id,)).fetchone()
    if r is None:
        raise IncidentNotFoundError(f"no incident {incident_id}")
    inc = _incident_row(db, r)
    first_alert, inc_jseq = int(r[9]), int(r[10])
    alerts, deliveries, raised = _alert_entries(db, incident_id)
    origin = raised.get(first_alert, min(raised.values(), default=inc.opened_ns))
    receipts, first_receipt, scanned, complete = _receipt_entries(db, inc, inc_jseq,
                                                                  deliveries, max_events)
    acks, first_ack = _ack_entries(db, incident_id)
    commands, first_act, first_exec = _command_entries(db, incident_id)
    # room events last: at equal times they come after the rows they echo
    entries = [*alerts, *receipts, *acks, *_page_entries(db, incident_id), *commands,
               *(_room_entries(db, incident_id) if room else ())]
    notes = [] if complete else [
        f"receipts: the scan stopped {max_events:,} journal events after the incident "
        "opened; later confirmations are not shown"]
    known = sorted((e for e in entries if e.ts_ns), key=lambda e: e.ts_ns)
    return Timeline(inc, known + [e for e in entries if not e.ts_ns], sorted(raised), origin,
                    _seconds(first_receipt, origin), _seconds(first_ack, origin),
                    _seconds(first_act, origin), _seconds(first_exec, origin),
                    scanned, complete, notes)


# -- text ---------------------------------------------------------------------------------


def utc(ts_ns: int, *, date: bool = True) -> str:
    """``2024-05-01 12:00:03.125Z`` (or the time of day only)."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    t = dt.datetime.fromtimestamp(seconds, dt.UTC)
    ms = f"{t:%H:%M:%S}.{ns // 1_000_000:03d}"
    return f"{t:%Y-%m-%d} {ms}Z" if date else ms


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def render(tl: Timeline) -> str:
    """The timeline as text: a header, the figures, then one line per entry
    (``HH:MM:SS.mmm  +12.345s  WHAT  WHO  DETAIL``, UTC, offsets from the first alert)."""
    inc = tl.incident
    lines = [f"incident {inc.id} [{inc.severity}] {inc.status}: {inc.title}",
             f"  account {inc.account}, family {inc.family}"
             + (f", region {inc.region}" if inc.region else ""),
             f"  opened   {utc(inc.opened_ns)}"]
    if inc.resolved_ns:
        lines.append(f"  resolved {utc(inc.resolved_ns)} "
                     f"(+{(inc.resolved_ns - tl.first_alert_ns) / 1e9:.3f}s)")
    lines += [f"  alerts   {', '.join(map(str, tl.alert_ids)) or '-'}; room: "
              f"{', '.join(inc.members) or '-'}",
              f"  time to receive {_figure(tl.time_to_receive_s)}, "
              f"acknowledge {_figure(tl.time_to_ack_s)}, "
              f"act {_figure(tl.time_to_act_s)}, execute {_figure(tl.time_to_execute_s)}",
              *(f"  note: {n}" for n in tl.notes), ""]
    what_w = max((len(e.what) for e in tl.entries), default=0)
    who_w = max((len(e.who) for e in tl.entries), default=0)
    for e in tl.entries:
        if e.ts_ns:
            when = f"{utc(e.ts_ns, date=False)}  {(e.ts_ns - tl.first_alert_ns) / 1e9:+9.3f}s"
        else:
            when = f"--:--:--.---  {'?':>10}"
        lines.append(f"{when}  {e.what:<{what_w}}  {e.who:<{who_w}}  {e.detail}".rstrip())
    return "\n".join(lines) + "\n"


def as_dict(tl: Timeline) -> dict[str, Any]:
    """The timeline as JSON-ready builtins."""
    inc = tl.incident
    return {
        "incident": {"id": inc.id, "severity": inc.severity, "account": inc.account,
                     "title": inc.title, "family": inc.family, "status": inc.status,
                     "region": inc.region, "opened_ns": inc.opened_ns,
                     "resolved_ns": inc.resolved_ns, "members": list(inc.members)},
        "alerts": tl.alert_ids,
        "first_alert_ns": tl.first_alert_ns,
        "time_to_receive_s": tl.time_to_receive_s,
        "time_to_ack_s": tl.time_to_ack_s,
        "time_to_act_s": tl.time_to_act_s,
        "time_to_execute_s": tl.time_to_execute_s,
        "receipts_scanned": tl.receipts_scanned,
        "receipts_complete": tl.receipts_complete,
        "notes": tl.notes,
        "entries": [{"ts_ns": e.ts_ns or None, "what": e.what, "who": e.who,
                     "detail": e.detail} for e in tl.entries],
    }


__all__ = [
    "NOT_CONFIRMED",
    "SCAN_EVENTS",
    "CaseQueryError",
    "Entry",
    "IncidentNotFoundError",
    "IncidentRow",
    "SchemaError",
    "Timeline",
    "as_dict",
    "check_schema",
    "list_incidents",
    "render",
    "search_cases",
    "timeline",
    "utc",
]
