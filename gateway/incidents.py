"""The incident desk: turns alerts into incidents, escalates them, runs their rooms and
commands, and keeps the case library. I/O shell around ``gateway.incident``.

- **Routing**: with an on-call file, an alert goes to the on-call officers of the first
  matching route's roles (:meth:`IncidentDesk.recipients`, called by the alert desk).
- **Incidents**: an alert at or above ``min_severity`` opens an incident, or joins the
  open incident of the same account and rule family if that one had an alert within the
  grouping window (no new page). Opening journals the incident, makes the on-call officers
  members of its room and posts the alert's context (and similar past cases) as the
  room's first event, in the same loop turn as the alert.
- **Escalation**: the ladder of the route (or the severity) is frozen at opening. Due
  steps page their recipients in-app (the alert enters their stream) or through adapters
  (signed webhook, SMTP), in a worker thread each; every attempt and reply is a room
  event and a ``pages`` row; a failing channel moves on to the step's next channel.
- **Rooms**: every room event is journaled and appended to each member's stream (lane
  critical for a critical incident, else high), so chat has the delivery guarantees of
  alerts; a late joiner gets the history.
- **Commands**: ``/freeze`` and friends are parsed and echoed; a confirmed request is
  journaled, approved by checkers other than the maker as the policy says, then a freeze
  takes effect in the node's own scoring at once and the command is dispatched to an
  executor (a business system on the services endpoint) with an idempotency key until it
  answers; after a restart, approved commands are dispatched again with the same key.
- **Commands for accounts homed in another region** (with a regional fabric): the
  approved command goes over the fabric to the account's home node, again every 2 s until
  that node reports it executed or failed. The home node journals it once per key, puts a
  freeze into its own scoring at once, dispatches it to its own business systems with the
  origin's key, answers ``accepted`` when that is durable and reports the business
  system's answer; the origin posts each step in the room.
- **Cases**: ``/resolve`` closes the incident and files it in the case library (FTS5).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import anyio.abc
import msgspec

from gateway import wire
from gateway.alerting import AlertDesk
from gateway.counters import Counters
from gateway.errors import ConfigError, ErrorCode, ProtocolError
from gateway.incident._commands import (
    BUSINESS,
    Approvals,
    Command,
    CommandSyntaxError,
    Policy,
    Rule,
    VoteRefused,
    check_command,
    parse_command,
)
from gateway.incident._ladder import Fire, Ladder, Skip
from gateway.incident._oncall import APP, AlertFacts, OnCall, Step, family_of
from gateway.incident.adapters import Page, PageResult, SmtpChannel, WebhookChannel
from gateway.journal import Journal, Write
from gateway.store import sql_i64, u64_of

log = logging.getLogger(__name__)

TICK_S: Final = 0.1
DISPATCH_RETRY_MS: Final = 2000  # an unanswered execute is sent again after this long
EXECUTOR_SILENT_MS: Final = 5000  # an executor without hello this long is gone
ADAPTER_THREADS: Final = 8


class _IncidentEvent(msgspec.Struct, array_like=True):
    """Journal body of kind ``incident``: an incident opened."""

    incident: int
    alert_id: int
    account: int
    family: str
    severity: str
    title: str
    region: str
    members: list[str]
    ladder: list[dict[str, Any]]
    similar: list[int]


class _CaseEvent(msgspec.Struct, array_like=True):
    """Journal body of kind ``case``: a resolved incident filed in the case library."""

    case: wire.CaseInfo


@dataclass(slots=True)
class Incident:
    id: int
    account: int
    family: str
    severity: str
    title: str
    region: str
    opened_ns: int
    last_alert_ns: int
    first_alert: int
    alerts: list[int]
    members: dict[str, str]  # officer -> how they came (oncall | invited:X | joined | page)
    delivered: dict[str, int]  # officer -> last rseq put into their stream
    head: int  # last rseq
    ladder: Ladder | None
    similar: list[int]
    acked: set[str] = field(default_factory=set)
    status: str = "open"
    resolved_ns: int = 0


@dataclass(slots=True)
class Request:
    id: int
    incident: int
    maker: str
    key: str
    command: Command
    votes: Approvals
    created_ns: int
    expires_ns: int
    approved_ns: int = 0
    last_sent_ms: int = -(10**12)
    attempts: int = 0
    exec_key: str = ""  # the business system's idempotency key (the origin's, everywhere)
    home: str = ""  # origin: the region the command goes to ("" = executed here)
    forwarded_ns: int = 0  # origin: when the home node accepted it
    origin: str = ""  # home: the region it came from ("" = requested here)
    refused: str = ""  # origin: the home node's last refusal (posted once)
    waiting: bool = False  # origin: the link to the home region is down
    durable: bool = True  # False from approval until that is journaled: not sent before


class CommandFabric(Protocol):
    """What the desk needs of the regional fabric (:class:`gateway.fabric_node.Fabric`)."""

    def home(self, account: int) -> str | None:
        """The account's home region, None if the directory does not know it."""
        ...

    def send_command(self, region: str, msg: wire.CommandForward) -> bool:
        """Send to ``region``'s node; False while the link to it is down."""
        ...

    def send_state(self, region: str, msg: wire.CommandState) -> None:
        """Answer (or report to) ``region``'s node on its current connection."""
        ...


@dataclass(slots=True)
class _Executor:
    name: str
    commands: frozenset[str]
    last_seen_ms: int


@dataclass(slots=True)
class _PageJob:
    incident: int
    step: int
    officer: str
    channels: tuple[str, ...]
    mode: str
    index: int  # the channel being tried


def _step_json(st: Step) -> dict[str, Any]:
    return {"after_s": st.after_s, "when": st.when, "to": list(st.to),
            "channels": list(st.channels), "mode": st.mode, "require_all": st.require_all}


def _step_of(d: dict[str, Any]) -> Step:
    return Step(float(d["after_s"]), str(d["when"]), tuple(d["to"]), tuple(d["channels"]),
                str(d["mode"]), bool(d["require_all"]))


class IncidentDesk:
    """See the module docstring. Owned by the node's event loop."""

    def __init__(self, *, desk: AlertDesk, journal: Journal, counters: Counters,
                 oncall: OnCall, policy: Policy, node_name: str, region: str,
                 freeze: Callable[[int, bool], None],
                 clock_ns: Callable[[], int] = time.time_ns,
                 monotonic_ms: Callable[[], int] | None = None) -> None:
        self.desk = desk
        self.db = desk.db
        self.journal = journal
        self.counters = counters
        self.oncall = oncall
        self.policy = policy
        self.node_name = node_name
        self.region = region
        self._freeze = freeze
        self._clock_ns = clock_ns
        self._mono_ms = monotonic_ms or (lambda: time.monotonic_ns() // 1_000_000)
        self._encode = wire.encoder().encode
        self._reply_client: Callable[[bytes, bytes], None] = lambda ident, body: None
        self._send_service: Callable[[bytes, bytes], None] = lambda ident, body: None
        self.channels: dict[str, WebhookChannel | SmtpChannel] = {}
        for name, ch in oncall.channels.items():
            if ch.kind == "webhook":
                secret = ch.secret.encode()
                if ch.secret_file:
                    try:
                        secret = Path(ch.secret_file).read_bytes().strip()
                    except OSError as exc:
                        raise ConfigError(oncall.source, f"channels.{name}.secret_file",
                                          exc.strerror or str(exc)) from None
                self.channels[name] = WebhookChannel(ch.url, secret, ch.timeout_s)
            else:
                self.channels[name] = SmtpChannel(ch.host, ch.port, ch.sender, ch.timeout_s)
        self._incidents: dict[int, Incident] = {}  # open ones
        self._groups: dict[tuple[int, str], int] = {}  # (account, family) -> open incident
        self._alert_incident: dict[int, int] = {}  # alert -> open incident
        self._decided: dict[int, tuple[str, Any]] = {}  # alert -> (join|open, ...)
        self._requests: dict[int, Request] = {}  # pending or approved, not executed
        self._keys: dict[tuple[str, str], int] = {}  # (maker, key) -> request, this run
        self._by_exec_key: dict[str, Request] = {}  # origin: open requests sent home
        self.fabric: CommandFabric | None = None  # set by the node with a [fabric]
        self._executors: dict[bytes, _Executor] = {}
        self._jobs_send, self._jobs_recv = anyio.create_memory_object_stream[_PageJob](10_000)
        self._limiter = anyio.CapacityLimiter(ADAPTER_THREADS)
        self._resume: list[_PageJob] = []  # pages a previous run left unfinished
        self._load()
        desk.router = self

    # -- start-up ---------------------------------------------------------------------------

    def _load(self) -> None:
        db = self.db
        self._next_incident = int(db.execute("SELECT max(incident_id) FROM incidents")
                                  .fetchone()[0] or 0) + 1
        self._next_request = int(db.execute("SELECT max(request_id) FROM commands")
                                 .fetchone()[0] or 0) + 1
        for r in db.execute(
                "SELECT incident_id, account, family, severity, title, region, opened_ns, "
                "last_alert_ns, first_alert, ladder, ladder_next, ladder_fired, similar "
                "FROM incidents WHERE status = 'open'").fetchall():
            iid = int(r[0])
            steps = [_step_of(d) for d in json.loads(r[9])]
            ladder = Ladder(steps, int(r[6]) // 1_000_000, int(r[10]),
                            [int(x) for x in str(r[11]).split(",") if x]) if steps else None
            alerts = [int(a) for a, in db.execute(
                "SELECT alert_id FROM incident_alerts WHERE incident_id = ? ORDER BY alert_id",
                (iid,))]
            members = {str(o): str(v) for o, v in db.execute(
                "SELECT officer, via FROM members WHERE incident_id = ? AND left_ns = 0",
                (iid,))}
            delivered = {str(o): int(m or 0) for o, m in db.execute(
                "SELECT officer, max(rseq) FROM stream WHERE alert_id = ? AND level = 'room' "
                "GROUP BY officer", (iid,))}
            head = int(db.execute("SELECT max(rseq) FROM room_events WHERE incident_id = ?",
                                  (iid,)).fetchone()[0] or 0)
            acked = {str(o) for o, in db.execute(
                "SELECT DISTINCT a.officer FROM acks a JOIN incident_alerts i ON "
                "i.alert_id = a.alert_id WHERE i.incident_id = ? AND a.level = "
                "'acknowledged'", (iid,))}
            inc = Incident(iid, u64_of(int(r[1])), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                           int(r[6]), int(r[7]), int(r[8]), alerts, members, delivered, head,
                           ladder, [int(x) for x in str(r[12]).split(",") if x], acked)
            self._index(inc)
            if ladder is not None:
                self._unfinished_pages(inc, ladder)
        for r in db.execute(
                "SELECT request_id, incident_id, maker, key, command, account, amount, reason, "
                "state, approvals, approvers, created_ns, expires_ns, approved_ns, home, "
                "forwarded_ns, origin, exec_key "
                "FROM commands WHERE state IN ('pending', 'approved')").fetchall():
            votes = Approvals(str(r[2]), int(r[9]), frozenset(str(r[10]).split(",")) - {""},
                              int(r[12]) // 1_000_000, str(r[8]))
            votes.approved_by = [str(o) for o, in db.execute(
                "SELECT officer FROM votes WHERE request_id = ? AND approve = 1 ORDER BY ts_ns",
                (int(r[0]),))]
            req = Request(int(r[0]), int(r[1]), str(r[2]), str(r[3]),
                          Command(str(r[4]), u64_of(int(r[5])), int(r[6]), str(r[7])), votes,
                          int(r[11]), int(r[12]), int(r[13]),
                          exec_key=str(r[17]) or self._exec_key(int(r[0])), home=str(r[14]),
                          forwarded_ns=int(r[15]), origin=str(r[16]))
            self._requests[req.id] = req
            self._keys[(req.maker, req.key)] = req.id
            if req.home:
                self._by_exec_key[req.exec_key] = req
        if self._requests:
            log.info("incidents: %d command requests open (approved ones are dispatched "
                     "again with their keys)", len(self._requests))

    def _unfinished_pages(self, inc: Incident, ladder: Ladder) -> None:
        """Pages of fired steps that the previous run did not finish (it stopped while an
        adapter was working): they are sent again when the desk runs."""
        done: dict[tuple[int, str], list[tuple[str, bool]]] = {}
        for step, officer, channel, ok in self.db.execute(
                "SELECT step, officer, channel, ok FROM pages WHERE incident_id = ? "
                "ORDER BY done_ns", (inc.id,)):
            done.setdefault((int(step) - 1, str(officer)), []).append((str(channel), bool(ok)))
        for i in ladder.fired:
            st = ladder.steps[i]
            for officer in st.to:
                tried = done.get((i, officer), [])
                if st.mode == "all":
                    seen = {c for c, _ in tried}
                    self._resume.extend(_PageJob(inc.id, i, officer, st.channels, "all", k)
                                        for k, c in enumerate(st.channels) if c not in seen)
                elif not any(ok for _, ok in tried) and len(tried) < len(st.channels):
                    self._resume.append(_PageJob(inc.id, i, officer, st.channels, "first",
                                                 len(tried)))

    def _exec_key(self, request_id: int) -> str:
        return f"{self.node_name}-cmd-{request_id}"

    def frozen_accounts(self) -> list[int]:
        return [u64_of(int(a)) for a, in self.db.execute("SELECT account FROM frozen_accounts")]

    def bind(self, *, reply_client: Callable[[bytes, bytes], None],
             send_service: Callable[[bytes, bytes], None]) -> None:
        self._reply_client = reply_client
        self._send_service = send_service

    def _index(self, inc: Incident) -> None:
        self._incidents[inc.id] = inc
        self._groups[(inc.account, inc.family)] = inc.id
        for a in inc.alerts:
            self._alert_incident[a] = inc.id

    # -- routing and opening (called by the alert desk) -------------------------------------

    def _facts(self, alert: wire.Alert) -> AlertFacts:
        fired = [r.id for r in alert.rules] or (
            list(alert.decision.fired) if alert.decision is not None else [])
        return AlertFacts(alert.severity.value, alert.details.get("region", self.region),
                          alert.kind, family_of(alert.kind, fired, alert.details),
                          alert.account)

    def recipients(self, alert: wire.Alert) -> list[str] | None:
        oc = self.oncall
        facts = self._facts(alert)
        route = oc.route(facts)
        if route is None:
            self.counters.inc("incident_alerts_unrouted")
            log.warning("alert %d (%s, %s, %s) matches no route of the on-call file",
                        alert.alert_id, facts.severity, facts.kind, facts.family)
            return []
        now = self._clock_ns()
        opens = route.incident and oc.opens_incident(facts.severity)
        if opens:
            iid = self._groups.get((facts.account, facts.family))
            inc = self._incidents.get(iid) if iid is not None else None
            window = oc.settings.group_window_s * 1_000_000_000
            if inc is not None and now - inc.last_alert_ns <= window:
                self._decided[alert.alert_id] = ("join", inc.id)
                self.counters.inc("incident_alerts_grouped")
                return []  # no page: the alert is posted in the incident's room
        when = dt.datetime.fromtimestamp(now / 1e9, dt.UTC)
        roles = frozenset(route.roles)
        officers = oc.on_call(roles, facts.region, when)
        if opens:
            ladder = oc.freeze_ladder(oc.ladder_for(route, facts.severity), roles,
                                      facts.region, when)
            self._decided[alert.alert_id] = ("open", (facts, officers, ladder))
        return officers

    def raised(self, alert: wire.Alert, officers: Sequence[str]) -> None:
        decided = self._decided.pop(alert.alert_id, None)
        if decided is None:
            return
        what, arg = decided
        if what == "join":
            inc = self._incidents.get(arg)
            if inc is None:
                return
            now = self._clock_ns()
            inc.last_alert_ns = now
            inc.alerts.append(alert.alert_id)
            self._alert_incident[alert.alert_id] = inc.id
            self._post(inc, "alert", "node", f"alert {alert.alert_id} joined: {alert.title}",
                       {"alert": str(alert.alert_id), "severity": alert.severity.value},
                       [("INSERT INTO incident_alerts VALUES (?,?)", [inc.id, alert.alert_id]),
                        ("UPDATE incidents SET last_alert_ns = ? WHERE incident_id = ?",
                         [now, inc.id])])
            return
        facts, members, steps = arg
        self._open(alert, facts, members, steps)

    def _open(self, alert: wire.Alert, facts: AlertFacts, members: list[str],
              steps: list[Step]) -> None:
        iid = self._next_incident
        self._next_incident += 1
        now = self._clock_ns()
        similar = self._similar(alert, facts)
        ladder = Ladder(steps, now // 1_000_000) if steps else None
        inc = Incident(iid, alert.account, facts.family, facts.severity, alert.title,
                       facts.region, now, now, alert.alert_id, [alert.alert_id],
                       dict.fromkeys(members, "oncall"), {}, 0, ladder, similar)
        ladder_json = json.dumps([_step_json(s) for s in steps])
        writes: list[Write] = [
            ("INSERT INTO incidents (incident_id, account, family, severity, title, region, "
             "status, opened_ns, last_alert_ns, first_alert, ladder, similar, jseq) "
             "VALUES (?,?,?,?,?,?,'open',?,?,?,?,?,?)",
             [iid, sql_i64(inc.account), inc.family, inc.severity, inc.title, inc.region,
              now, now, alert.alert_id, ladder_json, ",".join(map(str, similar)),
              self.journal.next_seq]),
            ("INSERT INTO incident_alerts VALUES (?,?)", [iid, alert.alert_id])]
        writes += [("INSERT INTO members (incident_id, officer, via, joined_ns) "
                    "VALUES (?,?,?,?)", [iid, o, "oncall", now]) for o in members]
        self.journal.append("incident", self._encode(_IncidentEvent(
            iid, alert.alert_id, alert.account, inc.family, inc.severity, inc.title,
            inc.region, members, [_step_json(s) for s in steps], similar)), writes)
        self._index(inc)
        self.counters.inc("incidents_opened")
        self._post(inc, "opened", "node", self._context_text(alert, similar),
                   self._context_data(alert, similar))
        self._run_ladder(inc)

    def _context_text(self, alert: wire.Alert, similar: list[int]) -> str:
        lines = [f"[{alert.severity.value}] {alert.title}", f"account {alert.account}"]
        if alert.tx is not None:
            t = alert.tx
            lines.append(f"tx {t.tx_id}: {t.amount} {t.currency} to {t.counterparty} via "
                         f"{t.channel} from {t.country or '?'}")
        for r in alert.rules:
            lines.append(f"rule {r.id}: {r.description}")
        if alert.profile is not None:
            p = alert.profile
            lines.append(f"profile: {p.tx_count} payments, 24 h {p.vel_24h_count} for "
                         f"{p.vel_24h_sum}, baseline {p.baseline}")
        if alert.actions:
            lines.append("suggested: " + "; ".join(alert.actions))
        if similar:
            lines.append("similar past cases: " + ", ".join(f"#{c}" for c in similar))
        return "\n".join(lines)

    def _context_data(self, alert: wire.Alert, similar: list[int]) -> dict[str, str]:
        out = {"alert": str(alert.alert_id), "severity": alert.severity.value,
               "account": str(alert.account), "rules": ",".join(r.id for r in alert.rules),
               "similar": ",".join(map(str, similar))}
        if alert.tx is not None:
            out["amount"] = str(alert.tx.amount)
            out["currency"] = alert.tx.currency
        return out

    def _similar(self, alert: wire.Alert, facts: AlertFacts) -> list[int]:
        n = self.oncall.settings.similar_cases
        if not n:
            return []
        words = {facts.family, *(r.id for r in alert.rules),
                 *(w for w in alert.title.split() if len(w) > 3)}
        terms = " OR ".join('"' + w.replace('"', "") + '"' for w in sorted(words) if w)
        if not terms:
            return []
        try:
            rows = self.db.execute("SELECT rowid FROM cases_fts WHERE cases_fts MATCH ? "
                                   "ORDER BY rank LIMIT ?", (terms, n)).fetchall()
        except Exception as exc:  # an FTS syntax corner case must not stop an incident
            log.warning("similar cases for alert %d: %s", alert.alert_id, exc)
            return []
        return [int(r[0]) for r in rows]

    def acknowledged(self, alert_id: int, officer: str, level: str) -> None:
        iid = self._alert_incident.get(alert_id)
        inc = self._incidents.get(iid) if iid is not None else None
        if inc is None or level != wire.AckLevel.ACKNOWLEDGED.value:
            return
        first = officer not in inc.acked
        inc.acked.add(officer)
        if first:
            self._post(inc, "ack", officer, f"{officer} acknowledged alert {alert_id}",
                       {"alert": str(alert_id)})

    # -- rooms -------------------------------------------------------------------------------

    def _post(self, inc: Incident, kind: str, actor: str, text: str,
              data: dict[str, str] | None = None, writes: list[Write] | None = None,
              on_durable: Callable[[], None] | None = None, *,
              history_for: str = "") -> int:
        """Journal one room event and put it into every member's stream; ``history_for``
        (a new member) first gets the room's earlier events it has not had."""
        w: list[Write] = list(writes or ())
        inc.head += 1
        rseq = inc.head
        ts = self._clock_ns()
        body = self._encode(wire.RoomEvent(inc.id, rseq, kind, actor, text, ts, data or {}))
        w.append(("INSERT INTO room_events VALUES (?,?,?,?,?,?,?)",
                  [inc.id, rseq, kind, actor, ts, body, self.journal.next_seq]))
        self.desk.remember_room_event(inc.id, rseq, body)
        assigned = []
        # a critical incident's room overtakes the members' backlog of lesser alerts
        lane = wire.Lane.CRITICAL if inc.severity == "critical" else wire.Lane.HIGH
        if history_for:
            for r in range(inc.delivered.get(history_for, 0) + 1, rseq):
                old = self.desk.room_event(inc.id, r)
                if old is None:  # cannot happen while the database is intact
                    log.error("incident %d room event %d missing", inc.id, r)
                    continue
                assigned.append(self.desk.add_room_event(history_for, inc.id, r, old, w,
                                                         lane))
        for officer in inc.members:
            assigned.append(self.desk.add_room_event(officer, inc.id, rseq, body, w, lane))
            inc.delivered[officer] = rseq

        def durable() -> None:
            self.desk.commit_items(assigned)
            if on_durable is not None:
                on_durable()

        self.journal.append("room", body, w, durable)
        self.counters.inc(f"room_events.{kind}")
        return rseq

    def _member_incident(self, officer: str, iid: int, rid: int, *,
                         need_member: bool = True) -> Incident:
        inc = self._incidents.get(iid)
        if inc is None:
            row = self.db.execute("SELECT status FROM incidents WHERE incident_id = ?",
                                  (iid,)).fetchone()
            if row is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no incident {iid}", rid)
            raise ProtocolError(ErrorCode.REQUEST_CLOSED, f"incident {iid} is resolved", rid)
        if need_member and officer not in inc.members:
            self.counters.inc("room_refused_not_member")
            raise ProtocolError(ErrorCode.UNAUTHORIZED, f"{officer} is not in the room of "
                                f"incident {iid} (join it first)", rid)
        return inc

    def _add_member(self, inc: Incident, officer: str, via: str, kind: str, actor: str,
                    text: str, on_durable: Callable[[], None] | None = None) -> int:
        now = self._clock_ns()
        inc.members[officer] = via
        return self._post(inc, kind, actor, text, {"officer": officer},
                          [("INSERT OR REPLACE INTO members (incident_id, officer, via, "
                            "joined_ns, left_ns) VALUES (?,?,?,?,0)", [inc.id, officer, via,
                                                                        now])],
                          on_durable, history_for=officer)

    def on_client(self, ident: bytes, officer: str, msg: Any) -> bytes | None:
        """Incident requests from an attached officer device (clients endpoint)."""
        v = wire.PROTOCOL_VERSION
        if isinstance(msg, wire.IncidentsRequest | wire.CasesSearch):
            return self._query(msg)
        roles = self.oncall.roles_of(officer)

        def posted(inc: Incident) -> Callable[[int], None]:
            def answer(rseq: int) -> None:
                self._reply_client(ident, self._encode(wire.RoomPosted(v, msg.rid, inc.id,
                                                                       rseq)))
            return answer

        if isinstance(msg, wire.RoomJoin):
            inc = self._member_incident(officer, msg.incident, msg.rid, need_member=False)
            if not roles:
                self.counters.inc("room_refused_no_role")
                raise ProtocolError(ErrorCode.UNAUTHORIZED, f"{officer} has no role in the "
                                    "on-call file", msg.rid)
            if officer in inc.members:
                return self._encode(wire.RoomPosted(v, msg.rid, inc.id, inc.head))
            cell: list[int] = []
            answer = posted(inc)
            cell.append(self._add_member(inc, officer, "joined", "join", officer,
                                         f"{officer} joined", lambda: answer(cell[0])))
            return None
        if isinstance(msg, wire.Invite):
            inc = self._member_incident(officer, msg.incident, msg.rid)
            if msg.officer not in self.oncall.officers:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no officer {msg.officer!r} in the "
                                    "on-call file", msg.rid)
            if msg.officer in inc.members:
                return self._encode(wire.RoomPosted(v, msg.rid, inc.id, inc.head))
            cell = []
            answer = posted(inc)
            cell.append(self._add_member(inc, msg.officer, f"invited:{officer}", "invite",
                                         officer, f"{officer} invited {msg.officer}",
                                         lambda: answer(cell[0])))
            return None
        if isinstance(msg, wire.RoomLeave):
            inc = self._member_incident(officer, msg.incident, msg.rid)
            del inc.members[officer]
            cell = []
            answer = posted(inc)
            cell.append(self._post(inc, "leave", officer, f"{officer} left",
                                   {"officer": officer},
                                   [("UPDATE members SET left_ns = ? WHERE incident_id = ? "
                                     "AND officer = ?", [self._clock_ns(), inc.id, officer])],
                                   lambda: answer(cell[0])))
            return None
        if isinstance(msg, wire.Say):
            inc = self._member_incident(officer, msg.incident, msg.rid)
            if msg.text.lstrip().startswith("/"):
                return self._echo(inc, officer, roles, msg)
            if roles <= {"auditor"}:
                raise ProtocolError(ErrorCode.UNAUTHORIZED, "auditors read rooms; they do "
                                    "not post", msg.rid)
            cell = []
            answer = posted(inc)
            cell.append(self._post(inc, "message", officer, msg.text, None, None,
                                   lambda: answer(cell[0])))
            return None
        if isinstance(msg, wire.CommandSubmit):
            return self._request(ident, officer, roles, msg)
        if isinstance(msg, wire.Approve):
            return self._vote(ident, officer, roles, msg)
        raise ProtocolError(ErrorCode.WRONG_ENDPOINT, f"{type(msg).__name__} is not served "
                            "here", msg.rid)

    # -- commands ----------------------------------------------------------------------------

    def _allowed(self, cmd: Command, officer: str, roles: frozenset[str], rid: int) -> None:
        rule = self.policy.rule(cmd.name)
        if rule is None:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, f"/{cmd.name} is not allowed by the "
                                "policy", rid)
        if not roles & rule.issuers:
            self.counters.inc("commands_refused_role")
            raise ProtocolError(ErrorCode.UNAUTHORIZED, f"{officer} may not issue "
                                f"/{cmd.name} (issuers: {', '.join(sorted(rule.issuers))})",
                                rid)

    def _vetted(self, make: Callable[[], Command], officer: str, roles: frozenset[str],
                rid: int) -> tuple[Command, Rule]:
        """The command ``make`` builds, checked (syntax, the officer's right to issue it),
        and its policy rule; typed refusals otherwise."""
        try:
            cmd = make()
        except CommandSyntaxError as exc:
            self.counters.inc("commands_syntax_errors")
            raise ProtocolError(ErrorCode.INVALID, str(exc), rid) from None
        self._allowed(cmd, officer, roles, rid)
        rule = self.policy.rule(cmd.name)
        assert rule is not None
        return cmd, rule

    def _echo(self, inc: Incident, officer: str, roles: frozenset[str],
              msg: wire.Say) -> bytes:
        cmd, rule = self._vetted(lambda: parse_command(msg.text), officer, roles, msg.rid)
        return self._encode(wire.CommandEcho(
            wire.PROTOCOL_VERSION, msg.rid, inc.id, cmd.name, cmd.account, cmd.amount,
            cmd.reason, cmd.text(), rule.approvals, sorted(rule.approvers), rule.expires_s))

    def _info(self, req: Request, state: str | None = None, result: str = "",
              reference: str = "") -> wire.CommandInfo:
        c = req.command
        return wire.CommandInfo(req.id, req.incident, c.name, c.account, c.amount, c.reason,
                                req.maker, state or req.votes.state, req.votes.needed,
                                list(req.votes.approved_by), req.created_ns, req.expires_ns,
                                result, reference)

    def _stored_info(self, request_id: int) -> wire.CommandInfo | None:
        r = self.db.execute(
            "SELECT request_id, incident_id, command, account, amount, reason, maker, state, "
            "approvals, created_ns, expires_ns, result, reference FROM commands "
            "WHERE request_id = ?", (request_id,)).fetchone()
        if r is None:
            return None
        by = [str(o) for o, in self.db.execute(
            "SELECT officer FROM votes WHERE request_id = ? AND approve = 1 ORDER BY ts_ns",
            (request_id,))]
        return wire.CommandInfo(int(r[0]), int(r[1]), str(r[2]), u64_of(int(r[3])), int(r[4]),
                                str(r[5]), str(r[6]), str(r[7]), int(r[8]), by, int(r[9]),
                                int(r[10]), str(r[11]), str(r[12]))

    def _known(self, maker: str, key: str) -> int | None:
        """The request a maker's idempotency key already names (this run or stored)."""
        known = self._keys.get((maker, key))
        if known is None:
            row = self.db.execute("SELECT request_id FROM commands WHERE maker = ? AND "
                                  "key = ?", (maker, key)).fetchone()
            known = int(row[0]) if row is not None else None
        return known

    def _apply_freeze(self, cmd: Command, request_id: int, now: int,
                      writes: list[Write]) -> bool:
        """A freeze or unfreeze in this node's scoring now, kept in ``frozen_accounts``
        by ``writes``; True for a freeze."""
        frozen = cmd.name == "freeze"
        self._freeze(cmd.account, frozen)  # the next payment is scored frozen
        if frozen:
            writes.append(("INSERT OR REPLACE INTO frozen_accounts VALUES (?,?,?)",
                           [sql_i64(cmd.account), request_id, now]))
        else:
            writes.append(("DELETE FROM frozen_accounts WHERE account = ?",
                           [sql_i64(cmd.account)]))
        self.counters.inc(f"accounts_{cmd.name}d")
        return frozen

    def _request(self, ident: bytes, officer: str, roles: frozenset[str],
                 msg: wire.CommandSubmit) -> bytes | None:
        v = wire.PROTOCOL_VERSION
        known = self._known(officer, msg.key)
        if known is not None:
            self.counters.inc("commands_repeated")
            live = self._requests.get(known)
            info = self._info(live) if live is not None else self._stored_info(known)
            if info is None:  # requested in this run, not yet committed: answer when it is
                body_later = known

                def later() -> None:
                    i = self._stored_info(body_later)
                    if i is not None:
                        self._reply_client(ident, self._encode(wire.CommandStatus(
                            v, msg.rid, i, True)))
                self.journal.call_when_durable(later)
                return None
            return self._encode(wire.CommandStatus(v, msg.rid, info, True))
        inc = self._member_incident(officer, msg.incident, msg.rid)
        cmd, rule = self._vetted(
            lambda: check_command(Command(msg.command, msg.account, msg.amount, msg.reason)),
            officer, roles, msg.rid)
        now = self._clock_ns()
        rid = self._next_request
        self._next_request += 1
        expires = now + rule.expires_s * 1_000_000_000
        votes = Approvals(officer, rule.approvals, rule.approvers, expires // 1_000_000)
        req = Request(rid, inc.id, officer, msg.key, cmd, votes, now, expires,
                      exec_key=self._exec_key(rid))
        self._keys[(officer, msg.key)] = rid
        need = (f"needs {rule.approvals} approval{'s' * (rule.approvals > 1)} from "
                f"{', '.join(sorted(rule.approvers))}" if rule.approvals else
                "no approval needed")
        writes: list[Write] = [(
            "INSERT INTO commands (request_id, incident_id, maker, key, command, account, "
            "amount, reason, state, approvals, approvers, created_ns, expires_ns, exec_key) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [rid, inc.id, officer, msg.key, cmd.name, sql_i64(cmd.account), cmd.amount,
             cmd.reason, "pending", rule.approvals, ",".join(sorted(rule.approvers)), now,
             expires, req.exec_key])]
        self._requests[rid] = req

        def answer() -> None:  # the state once durable (approved, executed, ...)
            self._reply_client(ident, self._encode(wire.CommandStatus(v, msg.rid,
                                                                      self._info(req))))

        self._post(inc, "command", officer, f"request {rid}: {cmd.text()} ({need})",
                   {"request": str(rid), "command": cmd.name, "account": str(cmd.account),
                    "amount": str(cmd.amount)}, writes, answer)
        self.counters.inc(f"commands_requested.{cmd.name}")
        if votes.state == "approved":
            self._approved(inc, req)
        return None

    def _vote(self, ident: bytes, officer: str, roles: frozenset[str],
              msg: wire.Approve) -> bytes | None:
        v = wire.PROTOCOL_VERSION
        req = self._requests.get(msg.request_id)
        if req is None:
            info = self._stored_info(msg.request_id)
            if info is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no command request "
                                    f"{msg.request_id}", msg.rid)
            raise ProtocolError(ErrorCode.REQUEST_CLOSED, f"request {msg.request_id} is "
                                f"{info.state}", msg.rid)
        inc = self._incidents.get(req.incident)
        if inc is None:
            raise ProtocolError(ErrorCode.REQUEST_CLOSED, f"incident {req.incident} is "
                                "resolved", msg.rid)
        if officer not in inc.members:
            self.counters.inc("room_refused_not_member")
            raise ProtocolError(ErrorCode.UNAUTHORIZED, f"{officer} is not in the room of "
                                f"incident {inc.id}: a checker joins it first", msg.rid)
        now = self._clock_ns()
        self._expire_one(req, now)
        try:
            state = req.votes.vote(officer, roles, msg.approve, now // 1_000_000)
        except VoteRefused as exc:
            self.counters.inc(f"command_votes_refused.{exc.why}")
            code = {"self_approval": ErrorCode.SELF_APPROVAL, "role": ErrorCode.UNAUTHORIZED,
                    "repeated": ErrorCode.INVALID}.get(exc.why, ErrorCode.REQUEST_CLOSED)
            # every refused vote is journaled (and shown in the room), then answered
            self._post(inc, "refused", officer, f"{officer} may not "
                       f"{'approve' if msg.approve else 'reject'} request {req.id}: {exc}",
                       {"request": str(req.id), "why": exc.why})
            raise ProtocolError(code, str(exc), msg.rid) from None
        writes: list[Write] = [
            ("INSERT INTO votes VALUES (?,?,?,?,?)",
             [req.id, officer, int(msg.approve), msg.reason, now]),
            ("UPDATE commands SET state = ? WHERE request_id = ?", [state, req.id])]
        info = self._info(req)

        def answer() -> None:
            self._reply_client(ident, self._encode(wire.CommandStatus(v, msg.rid, info)))

        if msg.approve:
            text = f"{officer} approved request {req.id} ({len(req.votes.approved_by)}/" \
                   f"{req.votes.needed})"
        else:
            text = f"{officer} rejected request {req.id}" + (f": {msg.reason}"
                                                             if msg.reason else "")
        self._post(inc, "approval" if msg.approve else "rejection", officer, text,
                   {"request": str(req.id), "state": state}, writes, answer)
        self.counters.inc("command_votes." + ("approve" if msg.approve else "reject"))
        if state == "approved":
            self._approved(inc, req)
        elif state == "rejected":
            del self._requests[req.id]
        return None

    def _approved(self, inc: Incident, req: Request) -> None:
        """Carry out an approved request: local effects now, business systems after."""
        now = self._clock_ns()
        req.approved_ns = now
        cmd = req.command
        req.durable = False  # dispatched (here or to its home) once the approval is durable

        def dispatch() -> None:
            req.durable = True
            self._dispatch(req)

        writes: list[Write] = [("UPDATE commands SET state = 'approved', approved_ns = ? "
                                "WHERE request_id = ?", [now, req.id])]
        if cmd.name == "resolve":
            self._resolve(inc, req, writes)
            return
        home = self.fabric.home(cmd.account) if self.fabric is not None else None
        if home is not None and home != self.region and cmd.name in BUSINESS:
            req.home = home  # the account lives elsewhere: its home node carries it out
            self._by_exec_key[req.exec_key] = req
            writes.append(("UPDATE commands SET home = ? WHERE request_id = ?",
                           [home, req.id]))
            self._post(inc, "approved", "node", f"request {req.id} approved: {cmd.text()}; "
                       f"account {cmd.account} is homed in region {home}: sending it to "
                       f"{home}'s node", {"request": str(req.id), "home": home}, writes,
                       dispatch)
            return
        if cmd.name in ("freeze", "unfreeze"):
            frozen = self._apply_freeze(cmd, req.id, now, writes)
            self._post(inc, "frozen" if frozen else "unfrozen", "node",
                       f"account {cmd.account} {'frozen' if frozen else 'unfrozen'} in this "
                       f"node's scoring (request {req.id}); sending to the business system",
                       {"request": str(req.id), "account": str(cmd.account),
                        "latency_ms": f"{(now - self._alert_ns(inc)) / 1e6:.0f}"}, writes,
                       dispatch)
        else:
            self._post(inc, "approved", "node", f"request {req.id} approved: {cmd.text()}; "
                       "sending to the business system", {"request": str(req.id)}, writes,
                       dispatch)

    def _alert_ns(self, inc: Incident) -> int:
        row = self.db.execute("SELECT raised_ns FROM alerts WHERE alert_id = ?",
                              (inc.first_alert,)).fetchone()
        return int(row[0]) if row is not None else inc.opened_ns

    def _expire_one(self, req: Request, now_ns: int) -> bool:
        if not req.votes.expire(now_ns // 1_000_000):
            return False
        self._requests.pop(req.id, None)
        inc = self._incidents.get(req.incident)
        w: list[Write] = [("UPDATE commands SET state = 'expired', done_ns = ? WHERE "
                           "request_id = ?", [now_ns, req.id])]
        if inc is not None:
            self._post(inc, "expired", "node", f"request {req.id} expired without the "
                       "approvals it needed", {"request": str(req.id)}, w)
        else:
            self.journal.append("command", self._encode(self._info(req, "expired")), w)
        self.counters.inc("commands_expired")
        return True

    # -- executors (business systems on the services endpoint) -------------------------------

    def on_service(self, ident: bytes, msg: Any) -> bytes | None:
        v = wire.PROTOCOL_VERSION
        now = self._mono_ms()
        if isinstance(msg, wire.ExecutorHello):
            ex = self._executors.get(ident)
            if ex is None:
                log.info("executor %s attached: %s", msg.name, ", ".join(msg.commands))
                self.counters.inc("executors_attached")
            self._executors[ident] = _Executor(msg.name, frozenset(msg.commands), now)
            pending = [r for r in self._requests.values() if r.votes.state == "approved"
                       and r.command.name in msg.commands]
            for r in pending:  # a (re)attached executor gets what waits for it at once
                if ex is None:
                    r.last_sent_ms = -(10**12)
                self._dispatch(r)
            return self._encode(wire.ExecutorWelcome(v, msg.rid, self.node_name,
                                                     len(pending)))
        if isinstance(msg, wire.Executed):
            self._executed(ident, msg)
            return None
        if isinstance(msg, wire.IncidentsRequest | wire.CasesSearch):
            return self._query(msg)
        raise ProtocolError(ErrorCode.WRONG_ENDPOINT, f"{type(msg).__name__} is not served "
                            "here", msg.rid)

    def _query(self, msg: wire.IncidentsRequest | wire.CasesSearch) -> bytes:
        """The read-only requests, served alike on the clients and services endpoints."""
        v = wire.PROTOCOL_VERSION
        if isinstance(msg, wire.IncidentsRequest):
            return self._encode(wire.Incidents(v, msg.rid, self.incident_infos(
                msg.open_only, msg.limit)))
        return self._encode(wire.Cases(v, msg.rid, self.search_cases(msg.query, msg.limit)))

    def _dispatch(self, req: Request) -> None:
        """Send an approved command to a business system here, or to its home node, unless
        it was sent within the last ``DISPATCH_RETRY_MS`` (called after it is durable, then
        by every tick until it is answered)."""
        if req.command.name not in BUSINESS or req.votes.state != "approved" or (
                not req.durable):
            return
        now = self._mono_ms()
        if now - req.last_sent_ms < DISPATCH_RETRY_MS:
            return
        if req.home:
            self._send_home(req, now)
            return
        for ident, ex in self._executors.items():
            if req.command.name in ex.commands and now - ex.last_seen_ms < EXECUTOR_SILENT_MS:
                req.attempts += 1
                req.last_sent_ms = now
                c = req.command
                self._send_service(ident, self._encode(wire.Execute(
                    wire.PROTOCOL_VERSION, 0, req.id, req.exec_key, c.name, c.account,
                    c.amount, c.reason, req.incident, req.attempts)))
                self.counters.inc("commands_dispatched")
                return
        self.counters.inc("commands_waiting_executor")

    def _executed(self, ident: bytes, msg: wire.Executed) -> None:
        req = self._requests.get(msg.request_id)
        if req is None or req.votes.state != "approved" or req.home:
            self.counters.inc("executed_repeats")  # answer to a retry of a finished command
            return
        if msg.key != req.exec_key:
            self.counters.inc("executed_key_mismatch")
            log.warning("executor answer for request %d carries key %r, not %r: ignored",
                        msg.request_id, msg.key, req.exec_key)
            return
        ex = self._executors.get(ident)
        self._finish(req, msg.ok, msg.result, msg.reference, ex.name if ex else "executor")
        if req.origin:  # came from another region: report there once durable
            state = wire.CommandState(wire.PROTOCOL_VERSION, 0, req.exec_key, req.votes.state,
                                      req.id, req.approved_ns, msg.result, msg.reference)
            self.journal.call_when_durable(lambda: self._send_state(req.origin, state))

    def _finish(self, req: Request, ok: bool, result: str, reference: str, by: str) -> None:
        """A business system's answer: the request is executed or failed, durably."""
        del self._requests[req.id]
        self._by_exec_key.pop(req.exec_key, None)
        state = "executed" if ok else "failed"
        req.votes.state = state
        now = self._clock_ns()
        writes: list[Write] = [("UPDATE commands SET state = ?, done_ns = ?, result = ?, "
                                "reference = ? WHERE request_id = ?",
                                [state, now, result, reference, req.id])]
        inc = self._incidents.get(req.incident) if not req.origin else None
        text = (f"request {req.id} {state} by {by}: "
                f"{req.command.text()} -> {result or ('ok' if ok else 'failed')}"
                + (f" [{reference}]" if reference else ""))
        data = {"request": str(req.id), "reference": reference, "ok": str(ok).lower(),
                "latency_ms": f"{(now - req.created_ns) / 1e6:.0f}"}
        if inc is not None:
            self._post(inc, state, "node", text, data, writes)
        else:
            self.journal.append("command", self._encode(self._info(req, state, result,
                                                                   reference)), writes)
        self.counters.inc(f"commands_{state}")

    # -- commands for accounts homed in other regions ----------------------------------------

    def _send_state(self, region: str, msg: wire.CommandState) -> None:
        if self.fabric is not None:
            self.fabric.send_state(region, msg)

    def _send_home(self, req: Request, now_ms: int) -> None:
        """Origin: send (again) an approved command to the account's home node."""
        assert self.fabric is not None
        c = req.command
        msg = wire.CommandForward(
            wire.PROTOCOL_VERSION, 0, self.region, req.exec_key, req.id, req.incident, c.name,
            c.account, c.amount, c.reason, req.maker, list(req.votes.approved_by)[:16],
            req.attempts + 1)
        if not self.fabric.send_command(req.home, msg):
            if not req.waiting:  # counted once per wait, tried again at every tick
                req.waiting = True
                self.counters.inc(f"commands_waiting_home.{req.home}")
            return
        req.waiting = False
        req.attempts += 1
        req.last_sent_ms = now_ms
        self.counters.inc(f"commands_sent_home.{req.home}")

    def home_link_up(self, region: str) -> None:
        """Origin: the link to ``region`` is (back) up. Its open commands go again at once:
        one sent just before a cut may be lost with the old connection."""
        for req in list(self._requests.values()):
            if req.home == region and req.votes.state == "approved":
                req.last_sent_ms = -(10**12)
                self._dispatch(req)

    def home_state(self, region: str, msg: wire.CommandState) -> None:
        """Origin: the home node's answer (or report) on a command sent there."""
        req = self._by_exec_key.get(msg.key)
        if req is None:
            self.counters.inc("command_states_repeated")  # finished already
            return
        if region != req.home:
            self.counters.inc("command_states_wrong_region")
            log.warning("region %s reported on command %s, which went to %s: ignored",
                        region, msg.key, req.home)
            return
        inc = self._incidents.get(req.incident)
        c = req.command
        if msg.state == "accepted":
            if req.forwarded_ns:
                return  # known: the answer to a poll
            now = self._clock_ns()
            req.forwarded_ns = now
            writes: list[Write] = [("UPDATE commands SET forwarded_ns = ? WHERE "
                                    "request_id = ?", [now, req.id])]
            self.counters.inc(f"commands_accepted_home.{region}")
            if c.name in ("freeze", "unfreeze"):
                kind = "frozen" if c.name == "freeze" else "unfrozen"
                text = (f"account {c.account} {kind} in the scoring of its home region "
                        f"{region} (request {req.id}, {region} request {msg.home_request}); "
                        f"{region} sends it to its business system")
            else:
                kind = "accepted"
                text = (f"request {req.id} accepted by region {region} ({region} request "
                        f"{msg.home_request}); {region} sends it to its business system")
            data = {"request": str(req.id), "home": region,
                    "home_request": str(msg.home_request)}
            if inc is not None:
                data["latency_ms"] = f"{(now - self._alert_ns(inc)) / 1e6:.0f}"
                self._post(inc, kind, "node", text, data, writes)
            else:
                self.journal.append("command", self._encode(self._info(req)), writes)
            return
        if msg.state not in ("executed", "failed"):
            self.counters.inc("command_states_unknown")
            return
        self._finish(req, msg.state == "executed", msg.result, msg.reference,
                     f"region {region}")

    def home_refused(self, region: str, key: str, err: wire.Error) -> None:
        """Origin: the home node refused a command; it is sent again (posted once)."""
        req = self._by_exec_key.get(key)
        self.counters.inc(f"commands_refused_home.{err.name}")
        if req is None or req.refused == err.message:
            return
        req.refused = err.message
        log.error("region %s refused command %s: %s %s (sent again every %d s)", region, key,
                  err.name, err.message, DISPATCH_RETRY_MS // 1000)
        inc = self._incidents.get(req.incident)
        if inc is not None:
            self._post(inc, "refused", "node", f"region {region} refused request {req.id}: "
                       f"{err.name}: {err.message}; sending it again every "
                       f"{DISPATCH_RETRY_MS // 1000} s", {"request": str(req.id),
                                                          "why": err.name})

    def from_region(self, origin: str, msg: wire.CommandForward) -> bytes | None:
        """Home: an approved command from ``origin`` for an account homed here. Applied
        once per key; every repeat is answered with the command's state."""
        v = wire.PROTOCOL_VERSION
        maker = f"{origin}/{msg.maker}"  # '/' is in no officer id: no clash with ours
        known = self._known(maker, msg.key)
        if known is not None:
            self.counters.inc(f"commands_from_region_repeated.{origin}")
            return self._state_reply(known, msg.key, msg.rid, origin)
        if msg.command not in BUSINESS:
            raise ProtocolError(ErrorCode.INVALID, f"{msg.command!r} is not a command for "
                                "a business system", msg.rid)
        try:
            cmd = check_command(Command(msg.command, msg.account, msg.amount, msg.reason))
        except CommandSyntaxError as exc:
            raise ProtocolError(ErrorCode.INVALID, str(exc), msg.rid) from None
        now = self._clock_ns()
        rid = self._next_request
        self._next_request += 1
        votes = Approvals(maker, len(msg.approved_by), frozenset(), 0, "approved")
        votes.approved_by = list(msg.approved_by)
        req = Request(rid, 0, maker, msg.key, cmd, votes, now, 0, now, exec_key=msg.key,
                      origin=origin, durable=False)
        self._keys[(maker, msg.key)] = rid
        self._requests[rid] = req
        writes: list[Write] = [(
            "INSERT INTO commands (request_id, incident_id, maker, key, command, account, "
            "amount, reason, state, approvals, approvers, created_ns, expires_ns, "
            "approved_ns, origin, exec_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [rid, 0, maker, msg.key, cmd.name, sql_i64(cmd.account), cmd.amount, cmd.reason,
             "approved", len(msg.approved_by), "", now, 0, now, origin, msg.key])]
        if cmd.name in ("freeze", "unfreeze"):
            self._apply_freeze(cmd, rid, now, writes)
        log.info("command %s from region %s: %s (request %d here)", msg.key, origin,
                 cmd.text(), rid)
        self.counters.inc(f"commands_from_region.{origin}")
        reply = wire.CommandState(v, msg.rid, msg.key, "accepted", rid, now)

        def durable() -> None:
            req.durable = True
            self._send_state(origin, reply)
            self._dispatch(req)

        self.journal.append("command_in", self._encode(msg), writes, durable)
        return None

    def _state_reply(self, request_id: int, key: str, rid: int, origin: str) -> bytes | None:
        """Home: where a command from another region stands (answer to a repeat)."""
        v = wire.PROTOCOL_VERSION
        row = self.db.execute("SELECT state, approved_ns, result, reference FROM commands "
                              "WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:  # received in this run, not yet durable: answered when it is
            def later() -> None:
                r = self.db.execute("SELECT approved_ns FROM commands WHERE request_id = ?",
                                    (request_id,)).fetchone()
                if r is not None:
                    self._send_state(origin, wire.CommandState(v, rid, key, "accepted",
                                                               request_id, int(r[0])))
            self.journal.call_when_durable(later)
            return None
        state = "accepted" if str(row[0]) == "approved" else str(row[0])
        return self._encode(wire.CommandState(v, rid, key, state, request_id, int(row[1]),
                                              str(row[2]), str(row[3])))

    # -- resolution and the case library ----------------------------------------------------

    def _resolve(self, inc: Incident, req: Request, writes: list[Write]) -> None:
        now = self._clock_ns()
        cmd = req.command
        rules: list[str] = []
        for a in inc.alerts:
            body = self.desk.alert_body(a)
            if body is not None:
                alert = msgspec.msgpack.decode(body, type=wire.Alert)
                rules += [r.id for r in alert.rules if r.id not in rules]
        actions = [f"{c} {acc}" + (f" {amt}" if c == "limit" else "") + f" ({st})"
                   for c, acc, amt, st in self.db.execute(
                       "SELECT command, account, amount, state FROM commands WHERE "
                       "incident_id = ? AND command != 'resolve' ORDER BY request_id",
                       (inc.id,))]
        notes = cmd.reason.split(" ", 1)[1] if " " in cmd.reason else ""
        case = wire.CaseInfo(inc.id, f"{inc.title} (account {inc.account}, {inc.severity})",
                             sorted({*cmd.tags, inc.family, inc.severity}), rules, actions,
                             cmd.outcome, notes, now)
        writes += [
            ("UPDATE incidents SET status = 'resolved', resolved_ns = ? WHERE incident_id = ?",
             [now, inc.id]),
            ("UPDATE commands SET state = 'executed', done_ns = ?, result = ? WHERE "
             "request_id = ?", [now, f"case {inc.id}", req.id]),
            ("INSERT INTO cases VALUES (?,?,?,?,?,?,?,?)",
             [inc.id, case.summary, " ".join(case.tags), " ".join(rules), "; ".join(actions),
              case.outcome, notes, now]),
            ("INSERT INTO cases_fts (rowid, summary, tags, rules, actions, outcome, notes) "
             "VALUES (?,?,?,?,?,?,?)", [inc.id, case.summary, " ".join(case.tags),
                                        " ".join(rules), "; ".join(actions), case.outcome,
                                        notes])]
        self._requests.pop(req.id, None)
        req.votes.state = "executed"
        self.journal.append("case", self._encode(_CaseEvent(case)))
        self._post(inc, "resolved", req.maker, f"resolved: {cmd.outcome}; filed as case "
                   f"{inc.id}" + (f" ({notes})" if notes else ""),
                   {"request": str(req.id), "outcome": cmd.outcome}, writes)
        inc.status = "resolved"
        inc.resolved_ns = now
        self._incidents.pop(inc.id, None)
        if self._groups.get((inc.account, inc.family)) == inc.id:
            del self._groups[(inc.account, inc.family)]
        for a in inc.alerts:
            self._alert_incident.pop(a, None)
        self.counters.inc("incidents_resolved")

    def search_cases(self, query: str, limit: int = 10) -> list[wire.CaseInfo]:
        try:
            rows = self.db.execute(
                "SELECT c.case_id, c.summary, c.tags, c.rules, c.actions, c.outcome, c.notes, "
                "c.resolved_ns FROM cases_fts f JOIN cases c ON c.case_id = f.rowid "
                "WHERE cases_fts MATCH ? ORDER BY f.rank LIMIT ?", (query, limit)).fetchall()
        except Exception as exc:  # sqlite3.OperationalError: bad FTS5 query syntax
            raise ProtocolError(ErrorCode.INVALID, f"search {query!r}: {exc}") from None
        return [case_info(r) for r in rows]

    def incident_infos(self, open_only: bool, limit: int) -> list[wire.IncidentInfo]:
        sql = ("SELECT incident_id, status, severity, account, title, family, opened_ns, "
               "resolved_ns, similar FROM incidents"
               + (" WHERE status = 'open'" if open_only else "")
               + " ORDER BY incident_id DESC LIMIT ?")
        out = []
        for r in self.db.execute(sql, (limit,)).fetchall():
            iid = int(r[0])
            members = [str(o) for o, in self.db.execute(
                "SELECT officer FROM members WHERE incident_id = ? AND left_ns = 0 "
                "ORDER BY officer", (iid,))]
            alerts = [int(a) for a, in self.db.execute(
                "SELECT alert_id FROM incident_alerts WHERE incident_id = ? ORDER BY alert_id",
                (iid,))]
            out.append(wire.IncidentInfo(iid, str(r[1]), wire.Severity(r[2]), u64_of(int(r[3])),
                                         str(r[4]), str(r[5]), int(r[6]), int(r[7]), members,
                                         alerts, [int(x) for x in str(r[8]).split(",") if x]))
        return out

    # -- escalation --------------------------------------------------------------------------

    def _run_ladder(self, inc: Incident) -> None:
        ladder = inc.ladder
        if ladder is None or inc.status != "open":
            return
        now = self._clock_ns() // 1_000_000
        deadline = ladder.deadline_ms()
        if deadline is None or deadline > now:
            return
        for item in ladder.due(now, inc.acked, False):
            w: list[Write] = [("UPDATE incidents SET ladder_next = ?, ladder_fired = ? "
                               "WHERE incident_id = ?", [ladder.next_index,
                                                         ",".join(map(str, ladder.fired)),
                                                         inc.id])]
            if isinstance(item, Skip):
                self._post(inc, "escalation", "node", f"step {item.index + 1} skipped: "
                           f"{item.reason}", {"step": str(item.index + 1),
                                              "skipped": item.reason}, w)
                continue
            assert isinstance(item, Fire)
            st = item.step
            how = (" then " if st.mode == "first" else ", ").join(st.channels)
            self._post(inc, "escalation", "node",
                       f"step {item.index + 1}: paging {', '.join(st.to) or 'nobody'} by {how}",
                       {"step": str(item.index + 1), "to": ",".join(st.to),
                        "channels": ",".join(st.channels), "mode": st.mode}, w)
            self.counters.inc("escalation_steps")
            for officer in st.to:
                if st.mode == "all":
                    for i in range(len(st.channels)):
                        self._page(_PageJob(inc.id, item.index, officer, st.channels, "all", i))
                else:
                    self._page(_PageJob(inc.id, item.index, officer, st.channels, "first", 0))

    def _page(self, job: _PageJob) -> None:
        inc = self._incidents.get(job.incident)
        if inc is None:
            return
        channel = job.channels[job.index]
        if channel == APP:
            writes: list[Write] = []
            assigned = []
            got = self.desk.add_recipient(inc.first_alert, job.officer, writes)
            if got is not None:
                assigned.append(got)
                reply = f"alert {inc.first_alert} queued in the officer's stream"
            else:
                reply = f"alert {inc.first_alert} already in the officer's stream"
            if job.officer not in inc.members:
                self._add_member(inc, job.officer, "page", "invite", "node",
                                 f"{job.officer} paged into the room")
            self._page_done(job, PageResult(True, reply, 0), self._clock_ns(), writes,
                            assigned)
            return
        officer = self.oncall.officers.get(job.officer)
        cfg = self.oncall.channels[channel]
        address = officer.address(cfg.to) if officer is not None else ""
        if not address:
            self._page_done(job, PageResult(False, f"{job.officer} has no {cfg.to}", 0),
                            self._clock_ns())
            return
        try:
            self._jobs_send.send_nowait(job)
        except anyio.WouldBlock:
            self._page_done(job, PageResult(False, "adapter queue full", 0), self._clock_ns())

    def _page_done(self, job: _PageJob, res: PageResult, sent_ns: int,
                   writes: list[Write] | None = None,
                   assigned: Sequence[tuple[str, int, int]] = ()) -> None:
        inc = self._incidents.get(job.incident)
        channel = job.channels[job.index]
        attempt = f"{job.incident}-{job.step + 1}-{job.officer}-{channel}"
        now = self._clock_ns()
        w: list[Write] = list(writes or ())
        w.append(("INSERT OR REPLACE INTO pages VALUES (?,?,?,?,?,?,?,?,?)",
                  [attempt, job.incident, job.step + 1, job.officer, channel, sent_ns, now,
                   int(res.ok), res.reply]))
        text = (f"paged {job.officer} by {channel}: "
                f"{'delivered' if res.ok else 'FAILED'} ({res.reply})")
        data = {"step": str(job.step + 1), "officer": job.officer, "channel": channel,
                "ok": str(res.ok).lower(), "reply": res.reply, "attempt": attempt,
                "elapsed_ms": str(res.elapsed_ms)}
        items = list(assigned)
        if inc is not None:
            self._post(inc, "page", "node", text, data, w,
                       lambda: self.desk.commit_items(items))
        else:
            self.journal.append("page", self._encode(data), w,
                                lambda: self.desk.commit_items(items))
        self.counters.inc(f"pages.{channel}.{'ok' if res.ok else 'failed'}")
        if not res.ok and job.mode == "first" and job.index + 1 < len(job.channels):
            self._page(_PageJob(job.incident, job.step, job.officer, job.channels, "first",
                                job.index + 1))

    async def _adapter(self, job: _PageJob) -> None:
        inc = self._incidents.get(job.incident)
        channel = job.channels[job.index]
        officer = self.oncall.officers[job.officer]
        cfg = self.oncall.channels[channel]
        title = inc.title if inc is not None else f"incident {job.incident}"
        page = Page(job.incident, job.step + 1, job.officer, channel, officer.address(cfg.to),
                    f"[risk-gateway] incident {job.incident}: {title}",
                    f"Incident {job.incident} on {self.node_name} needs you: {title}. "
                    "Acknowledge it in the officer app.",
                    f"{self.node_name}-{job.incident}-{job.step + 1}-{job.officer}-{channel}")
        sent = self._clock_ns()
        adapter = self.channels[channel]
        try:
            res = await anyio.to_thread.run_sync(adapter.send, page, limiter=self._limiter)
        except Exception as exc:  # the adapters do not raise; a bug must not stall a ladder
            log.exception("channel %s failed", channel)
            res = PageResult(False, f"adapter error: {exc}", 0)
        self._page_done(job, res, sent)

    # -- background ----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._clock_ns()
        for inc in list(self._incidents.values()):
            self._run_ladder(inc)
        for req in list(self._requests.values()):
            if req.votes.state == "pending":
                self._expire_one(req, now)
            elif req.votes.state == "approved":
                self._dispatch(req)
        mono = self._mono_ms()
        for ident, ex in list(self._executors.items()):
            if mono - ex.last_seen_ms > 3 * EXECUTOR_SILENT_MS:
                del self._executors[ident]
                log.info("executor %s is gone (no hello for %d s)", ex.name,
                         3 * EXECUTOR_SILENT_MS // 1000)
        self.counters.set_gauge("incidents_open_now", len(self._incidents))
        self.counters.set_gauge("commands_open_now", len(self._requests))

    async def run(self) -> None:
        """Ladder and dispatch ticks, and the adapter calls (worker threads)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._run_jobs, tg)
            if self._resume:
                log.info("incidents: sending %d pages again that the last run did not "
                         "finish", len(self._resume))
            for job in self._resume:
                self._page(job)
            self._resume = []
            while True:
                await anyio.sleep(TICK_S)
                self.tick()

    def close(self) -> None:
        self._jobs_send.close()
        self._jobs_recv.close()

    async def _run_jobs(self, tg: anyio.abc.TaskGroup) -> None:
        async for job in self._jobs_recv:
            tg.start_soon(self._adapter, job)

    def status(self) -> dict[str, str]:
        return {"incidents_open": str(len(self._incidents)),
                "commands_open": str(len(self._requests)),
                "executors": ",".join(sorted({e.name for e in self._executors.values()}))}


def case_info(r: Sequence[Any]) -> wire.CaseInfo:
    return wire.CaseInfo(int(r[0]), str(r[1]), str(r[2]).split(), str(r[3]).split(),
                         [a for a in str(r[4]).split("; ") if a], str(r[5]), str(r[6]),
                         int(r[7]))


__all__ = ["Incident", "IncidentDesk", "case_info"]
