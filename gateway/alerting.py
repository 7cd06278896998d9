"""The alert desk: raises alerts, journals them, keeps one stream per officer and delivers
it to every attached device of the officer, reliably and in priority order.

I/O shell around the sans-IO machines of ``gateway.delivery``:

- An alert (from a decision, or submitted with an idempotency key) is one ``alert``
  journal event. The same event assigns each recipient officer the next sequence number of
  the lane its severity maps to. Nothing is sent, and no submitter is answered, before the
  event is committed (fsynced).
- Each attached device has a :class:`~gateway.delivery.DeviceStream`: per-lane windows,
  cumulative ``received`` confirmations, go-back-N redelivery with backoff. The backlog of
  a slow or stopped device stays in the database (the ``stream`` table); the desk holds at
  most a window and one page per lane of it in memory.
- An acknowledgement (read / acknowledged) is an ``ack`` journal event and appends an
  ``ack_sync`` item to the officer's stream, so every device of the officer, online now or
  later, marks the alert.
- Presence comes from heartbeats; changes go to the devices that follow the officer.
- Identity is the CURVE key that ZAP authenticated; the key registry maps it to an officer
  on every message, so a revoked key is refused at once and its sessions end.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import anyio
import msgspec

from gateway import wire
from gateway.auth import KeyRecord, KeyRegistry, valid_officer_id, valid_z85_key
from gateway.counters import Counters, LatencyHistogram
from gateway.delivery import DeviceStream, PresenceTracker
from gateway.errors import ErrorCode, ProtocolError
from gateway.journal import Journal, Write
from gateway.store import Store, sql_i64

log = logging.getLogger(__name__)

LANES: Final = wire.LANES
TAIL: Final = 256  # recent items per officer lane kept in memory (older: from the database)
MAX_PENDING: Final = 50_000  # journal events not yet committed before submitters get busy
PAGE: Final = 256  # stream items read from the database at a time
ALERT_CACHE: Final = 50_000  # encoded alerts kept in memory (oldest dropped first)
TICK_S: Final = 0.05
SLOW_TICKS: Final = 20  # lag checks and cursor journaling every SLOW_TICKS ticks (1 s)
LAG_THRESHOLD: Final = 1000  # unconfirmed messages after which a device is "lagging"


Reply = Callable[[bytes, bytes], None]  # (routing id, body)
Push = Callable[[bytes, bytes, int], None]  # (routing id, body, lane)
# (alert id, encoded wire.Alert, severity, idempotency key, recipients): an alert is durable
OnRaised = Callable[[int, bytes, wire.Severity, str | None, tuple[str, ...]], None]


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    window: int = 32  # unconfirmed non-critical messages per device
    critical_window: int = 32  # unconfirmed critical messages per device (a window apart)
    rto_ms: int = 2500  # first redelivery after this long without confirmation (devices
    # confirm critical items at once, others with their next heartbeat, about 1 s)
    max_rto_ms: int = 30_000
    offline_after_ms: int = 3500  # no heartbeat this long: the device is offline
    share: int = 8  # anti-starvation: a passed-over lower lane gets 1 pick in share + 1


# -- journal event bodies (documented in docs/protocol.md, "Journal") -------------------------


class _AlertEvent(msgspec.Struct, array_like=True):
    alert: msgspec.Raw  # the encoded wire.Alert
    key: str | None
    recipients: list[tuple[str, int, int]]  # (officer, lane, seq)


class _AckEvent(msgspec.Struct, array_like=True):
    alert_id: int
    officer: str
    device: str
    level: str
    sync: tuple[int, int]  # (lane, seq) of the ack_sync item in the officer's stream


class _ReceivedEvent(msgspec.Struct, array_like=True):
    officer: str
    device: str
    cursors: list[int]


class _SessionEvent(msgspec.Struct, array_like=True):
    officer: str
    device: str
    what: str  # attach | detach | offline | replaced | revoked
    session: int
    cursors: list[int]


class _KeyEvent(msgspec.Struct, array_like=True):
    what: str  # register | revoke
    officer: str
    public_key: str
    label: str


class AuthRefusedEvent(msgspec.Struct, array_like=True):
    """The body of the journal's ``auth_refused`` and ``fabric_auth_refused`` events."""

    address: str
    public_key: str
    reason: str


class _AlertPushOut(msgspec.Struct, array_like=True, tag="alert", tag_field="type"):
    """Encodes exactly as ``wire.AlertPush`` with the alert already encoded."""

    v: int
    rid: int
    lane: int
    seq: int
    alert: msgspec.Raw
    attempt: int


class _RoomPushOut(msgspec.Struct, array_like=True, tag="room", tag_field="type"):
    """Encodes exactly as ``wire.RoomPush`` with the room event already encoded."""

    v: int
    rid: int
    lane: int
    seq: int
    event: msgspec.Raw
    attempt: int


class _OpenAlertsOut(msgspec.Struct, array_like=True, tag="open_alerts_reply",
                     tag_field="type"):
    """Encodes exactly as ``wire.OpenAlerts`` with the alerts already encoded."""

    v: int
    rid: int
    alerts: list[msgspec.Raw]
    levels: list[str | None]


@dataclass(slots=True)
class _Item:
    """One message of an officer's stream."""

    seq: int
    alert_id: int  # a room item: the incident
    level: str | None = None  # None: the alert itself; "room": a room event; else an ack_sync
    device: str = ""
    rseq: int = 0  # a room item: the event's place in the room


@dataclass(slots=True)
class Session:
    ident: bytes
    officer: str
    device: str
    public_key: str
    session: int
    stream: DeviceStream
    attached_ms: int
    follows: set[str] = field(default_factory=set)  # presence followed, by officer
    follows_all: bool = False
    pages: list[collections.deque[_Item]] = field(default_factory=list)
    lagging: bool = False


class Router(Protocol):
    """Who gets an alert and what happens around it (gateway.incidents, with an on-call
    file); without one, alerts go to the named recipients or every officer with a key."""

    def recipients(self, alert: wire.Alert) -> list[str] | None:
        """The officers to page; None: the desk's default routing."""

    def raised(self, alert: wire.Alert, officers: Sequence[str]) -> None:
        """The alert's journal event was appended (it commits in the same group or
        before any event appended after this call)."""

    def acknowledged(self, alert_id: int, officer: str, level: str) -> None:
        """An acknowledgement became durable."""


class AlertDesk:
    """See the module docstring. Owned by the node's event loop."""

    def __init__(self, *, store: Store, journal: Journal, counters: Counters,
                 node_name: str, region: str = "", settings: DeliverySettings | None = None,
                 clock_ms: Callable[[], int] | None = None,
                 monotonic_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.db = store.db  # reads: committed rows only
        self.journal = journal
        self.counters = counters
        self.node_name = node_name
        self.region = region
        self.settings = s = settings or DeliverySettings()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._mono_ms = monotonic_ms or (lambda: time.monotonic_ns() // 1_000_000)
        self.presence = PresenceTracker(offline_after_ms=s.offline_after_ms)
        self.keys = KeyRegistry()
        self.latency = LatencyHistogram()  # raise -> commit (us)
        self._encode = wire.encoder().encode
        self._alert_dec = msgspec.msgpack.Decoder(_AlertEvent)
        self._reply_client: Reply = lambda ident, body: None
        self._reply_service: Reply = lambda ident, body: None
        self._push: Push = lambda ident, body, lane: None
        self._stream_officers: set[str] = set()  # officers with a row in stream_officers
        self._assigned: dict[str, list[int]] = {}  # officer -> last assigned seq per lane
        self._committed: dict[str, list[int]] = {}  # officer -> last committed seq per lane
        self._tails: dict[tuple[str, int], collections.deque[_Item]] = {}
        # alert id -> (encoded wire.Alert, recipients): the newest ALERT_CACHE alerts
        self._alerts: collections.OrderedDict[int, tuple[bytes, tuple[str, ...]]] = (
            collections.OrderedDict())
        self._dirty_officers: set[str] = set()  # committed items not yet pumped
        self._dirty_cursors: dict[tuple[str, str], list[int]] = {}  # not yet journaled
        self._ticks = 0
        self._pending_keys: dict[str, int] = {}  # idempotency keys not yet committed
        self._pending_acks: set[tuple[int, str, str]] = set()
        # confirmed cursors per device seen since start (the database may lag a commit)
        self._device_cursors: dict[tuple[str, str], list[int]] = {}
        self._sessions: dict[bytes, Session] = {}
        self._by_officer: dict[str, dict[str, Session]] = {}  # officer -> device -> session
        self._auth_refused_logged: dict[str, int] = {}
        self._session_base = int.from_bytes(os.urandom(4), "big") << 24
        self._session_n = 0
        self.router: Router | None = None
        # other requests of attached devices (incident rooms): (ident, officer, msg)
        self.extra_client: Callable[[bytes, str, Any], bytes | None] | None = None
        # (incident, rseq) -> encoded wire.RoomEvent: the newest room events
        self._room_events: collections.OrderedDict[tuple[int, int], bytes] = (
            collections.OrderedDict())
        self.on_raised: OnRaised | None = None  # e.g. the fabric's cross-region relay
        journal.after_group = self.after_group
        self._load()

    # -- start-up -------------------------------------------------------------------------

    def _load(self) -> None:
        db = self.db
        row = db.execute("SELECT max(alert_id) FROM alerts").fetchone()
        self._next_alert = int(row[0] or 0) + 1
        for officer, in db.execute("SELECT officer FROM stream_officers").fetchall():
            self._stream_officers.add(officer)
            heads = []
            for lane in range(LANES):
                r = db.execute("SELECT max(seq) FROM stream WHERE officer = ? AND lane = ?",
                               (officer, lane)).fetchone()
                heads.append(int(r[0] or 0))
            self._assigned[officer] = heads
            self._committed[officer] = list(heads)
        for pub, officer, label, reg, rev in db.execute(
                "SELECT public_key, officer, label, registered_ms, revoked_ms "
                "FROM officer_keys").fetchall():
            self.keys.add(KeyRecord(officer, pub, label, reg, rev))

    def bind(self, *, reply_client: Reply, reply_service: Reply, push: Push) -> None:
        """Wire the desk to the clients and services endpoints (their send_nowait)."""
        self._reply_client = reply_client
        self._reply_service = reply_service
        self._push = push

    # -- raising alerts -------------------------------------------------------------------

    def heads(self, officer: str) -> list[int]:
        return list(self._committed.get(officer, [0] * LANES))

    def _route(self, named: Sequence[str]) -> list[str]:
        """Recipients: the named officers, else every officer with an active key."""
        return sorted(set(named)) if named else self.keys.active_officers()

    def raise_alert(self, build: Callable[[int, int], wire.Alert], *,
                    key: str | None = None, recipients: Sequence[str] = (),
                    on_durable: Callable[[int], None] | None = None) -> int:
        """Journal a new alert (``build(alert_id, raised_unix_ns)`` makes its content) and
        queue it for its recipients' streams; returns the alert id at once."""
        alert_id = self._next_alert
        self._next_alert += 1
        raised = time.time_ns()
        alert = build(alert_id, raised)
        body = self._encode(alert)
        lane = int(wire.SEVERITY_LANE[alert.severity])
        routed = (self.router.recipients(alert) if self.router is not None and not recipients
                  else None)
        officers = routed if routed is not None else self._route(recipients)
        assigned: list[tuple[str, int, int]] = []
        writes: list[Write] = [(
            "INSERT INTO alerts (alert_id, key, severity, account, raised_ns, recipients, "
            "jseq) VALUES (?,?,?,?,?,?,?)",
            [alert_id, key, alert.severity.value, sql_i64(alert.account), raised,
             ",".join(officers),
             self.journal.next_seq])]
        for officer in officers:
            seq = self._assign(officer, lane, _Item(0, alert_id), writes)
            assigned.append((officer, lane, seq))
        self._alerts[alert_id] = (body, tuple(officers))
        if len(self._alerts) > ALERT_CACHE:
            self._alerts.popitem(last=False)
        if key is not None:
            self._pending_keys[key] = alert_id
        t0 = time.perf_counter_ns()

        def durable() -> None:
            self.latency.record_us((time.perf_counter_ns() - t0) / 1000)
            if key is not None:
                self._pending_keys.pop(key, None)
            for officer, ln, seq in assigned:
                self._commit(officer, ln, seq)
            if on_durable is not None:
                on_durable(alert_id)
            if self.on_raised is not None:
                self.on_raised(alert_id, body, alert.severity, key, tuple(officers))

        self.journal.append("alert", self._encode(_AlertEvent(msgspec.Raw(body), key,
                                                              assigned)), writes, durable)
        self.counters.inc(f"alerts.{alert.severity.value}")
        if self.router is not None:
            self.router.raised(alert, officers)
        if not officers:
            self.counters.inc("alerts_unrouted")
        return alert_id

    def alert_for_key(self, key: str) -> int | None:
        """The alert raised with idempotency ``key`` (durable or not yet), else None."""
        pending = self._pending_keys.get(key)
        if pending is not None:
            return pending
        row = self.db.execute("SELECT alert_id FROM alerts WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _assign(self, officer: str, lane: int, item: _Item, writes: list[Write]) -> int:
        heads = self._assigned.get(officer)
        if heads is None:
            heads = self._assigned[officer] = [0] * LANES
            self._committed[officer] = [0] * LANES
        if officer not in self._stream_officers:  # so the heads are found after a restart
            self._stream_officers.add(officer)
            writes.append(("INSERT OR IGNORE INTO stream_officers VALUES (?)", [officer]))
        heads[lane] += 1
        item.seq = heads[lane]
        tail = self._tails.get((officer, lane))
        if tail is None:
            tail = self._tails[(officer, lane)] = collections.deque(maxlen=TAIL)
        if tail and tail[-1].seq != item.seq - 1:
            tail.clear()
        tail.append(item)
        writes.append(("INSERT INTO stream (officer, lane, seq, alert_id, level, device, rseq) "
                       "VALUES (?,?,?,?,?,?,?)",
                       [officer, lane, item.seq, item.alert_id, item.level, item.device or None,
                        item.rseq or None]))
        return item.seq

    # -- items of other desks (incident rooms, pages) in the officers' streams --------------

    def add_recipient(self, alert_id: int, officer: str, writes: list[Write],
                      ) -> tuple[str, int, int] | None:
        """Put an existing alert into one more officer's stream (an escalation step);
        None if the officer has it already. Commit with :meth:`commit_items` once the
        journal event carrying ``writes`` is durable."""
        recipients = self._recipients_of(alert_id)
        if recipients is None or officer in recipients:
            return None
        now = (*recipients, officer)
        cached = self._alerts.get(alert_id)
        if cached is not None:
            self._alerts[alert_id] = (cached[0], now)
        writes.append(("UPDATE alerts SET recipients = ? WHERE alert_id = ?",
                       [",".join(now), alert_id]))
        lane = self._lane_of(alert_id)
        return officer, lane, self._assign(officer, lane, _Item(0, alert_id), writes)

    def add_room_event(self, officer: str, incident: int, rseq: int, body: bytes,
                       writes: list[Write], lane: wire.Lane = wire.Lane.HIGH,
                       ) -> tuple[str, int, int]:
        """Append a room event (encoded ``wire.RoomEvent``) to an officer's stream, on
        ``lane`` (every event of one room on the same lane, so in order)."""
        self.remember_room_event(incident, rseq, body)
        item = _Item(0, incident, "room", rseq=rseq)
        seq = self._assign(officer, int(lane), item, writes)
        return officer, int(lane), seq

    def commit_items(self, assigned: Sequence[tuple[str, int, int]]) -> None:
        for officer, lane, seq in assigned:
            self._commit(officer, lane, seq)

    def recipients_of(self, alert_id: int) -> tuple[str, ...] | None:
        return self._recipients_of(alert_id)

    def remember_room_event(self, incident: int, rseq: int, body: bytes) -> None:
        """Keep a room event at hand (it may be sent before its group commits)."""
        self._room_events[(incident, rseq)] = body
        if len(self._room_events) > ALERT_CACHE:
            self._room_events.popitem(last=False)

    def alert_body(self, alert_id: int) -> bytes | None:
        """The encoded ``wire.Alert``."""
        return self._alert_body(alert_id)

    def room_event(self, incident: int, rseq: int) -> bytes | None:
        """The encoded ``wire.RoomEvent``."""
        body = self._room_events.get((incident, rseq))
        if body is not None:
            return body
        row = self.db.execute("SELECT body FROM room_events WHERE incident_id = ? AND "
                              "rseq = ?", (incident, rseq)).fetchone()
        return bytes(row[0]) if row is not None else None

    def _commit(self, officer: str, lane: int, seq: int) -> None:
        heads = self._committed[officer]
        if seq > heads[lane]:
            heads[lane] = seq
        self._dirty_officers.add(officer)

    def after_group(self) -> None:
        """Once per committed journal group: send what it made available."""
        dirty = self._dirty_officers
        if not dirty:
            return
        self._dirty_officers = set()
        for officer in dirty:
            for sess in self._by_officer.get(officer, {}).values():
                self._pump(sess)

    def submit(self, ident: bytes, msg: wire.AlertSubmit) -> bytes | None:
        """``alert_submit`` on the services endpoint: answered once durable."""
        v = wire.PROTOCOL_VERSION
        bad = [r for r in msg.recipients if not valid_officer_id(r)]
        if bad:
            raise ProtocolError(ErrorCode.INVALID, f"not an officer id: {bad[0]!r}", msg.rid)
        if self.journal.pending > MAX_PENDING:  # the disk is behind: explicit backpressure
            self.counters.inc("alerts_submit_busy")
            return self._encode(wire.Busy(v, msg.rid, 20))
        pending = self._pending_keys.get(msg.key)
        if pending is None:
            row = self.db.execute("SELECT alert_id FROM alerts WHERE key = ?",
                                  (msg.key,)).fetchone()
            if row is not None:
                self.counters.inc("alerts_submit_duplicates")
                return self._encode(wire.AlertAccepted(v, msg.rid, int(row[0]), True))
        else:
            self.counters.inc("alerts_submit_duplicates")
            self._after_durable_reply(ident, wire.AlertAccepted(v, msg.rid, pending, True))
            return None
        source = msg.details.get("source", "submitted")

        def build(alert_id: int, raised: int) -> wire.Alert:
            return wire.Alert(alert_id, msg.severity, "submitted", msg.account, msg.title,
                              raised, msg.decided_unix_ns or raised, source,
                              details=dict(msg.details))

        def answer(alert_id: int) -> None:
            self._reply_service(ident, self._encode(
                wire.AlertAccepted(v, msg.rid, alert_id, False)))

        self.raise_alert(build, key=msg.key, recipients=msg.recipients, on_durable=answer)
        self.counters.inc("alerts_submitted")
        return None

    def _after_durable_reply(self, ident: bytes, reply: Any) -> None:
        """Answer a services request once everything journaled so far is committed."""
        body = self._encode(reply)
        self.journal.call_when_durable(lambda: self._reply_service(ident, body))

    # -- keys -----------------------------------------------------------------------------

    def register_key(self, officer: str, public_key: str, label: str = "",
                     on_durable: Callable[[], None] | None = None) -> KeyRecord:
        if not valid_officer_id(officer):
            raise ProtocolError(ErrorCode.INVALID, f"not an officer id: {officer!r}")
        if not valid_z85_key(public_key):
            raise ProtocolError(ErrorCode.INVALID, "public_key is not a Z85 CURVE key")
        old = self.keys.get(public_key)
        if old is not None and not old.revoked_ms and old.officer == officer:
            if on_durable is not None:
                on_durable()
            return old
        if old is not None:
            raise ProtocolError(ErrorCode.INVALID, "this key was registered before (to "
                                f"{old.officer}{', revoked' if old.revoked_ms else ''}); "
                                "make a new key")
        rec = KeyRecord(officer, public_key, label, self._clock_ms())
        self.keys.add(rec)
        self.journal.append("key", self._encode(_KeyEvent("register", officer, public_key,
                                                          label)),
                            [("INSERT INTO officer_keys (public_key, officer, label, "
                              "registered_ms) VALUES (?,?,?,?)",
                              [public_key, officer, label, rec.registered_ms])], on_durable)
        self.counters.inc("keys_registered")
        return rec

    def revoke_key(self, public_key: str, on_durable: Callable[[], None] | None = None,
                   ) -> KeyRecord:
        rec = self.keys.get(public_key)
        if rec is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "no such key")
        if rec.revoked_ms:
            if on_durable is not None:
                on_durable()
            return rec
        rec.revoked_ms = self._clock_ms()
        self.journal.append("key", self._encode(_KeyEvent("revoke", rec.officer, public_key,
                                                          rec.label)),
                            [("UPDATE officer_keys SET revoked_ms = ? WHERE public_key = ?",
                              [rec.revoked_ms, public_key])], on_durable)
        for sess in [s for s in self._sessions.values() if s.public_key == public_key]:
            self._end_session(sess, "revoked", notify=True)
        self.counters.inc("keys_revoked")
        return rec

    def authorize(self, domain: str, address: str, mechanism: str, creds: bytes,
                  ) -> tuple[str, str]:
        """ZAP decision for the clients endpoint: the key itself is the User-Id."""
        if mechanism != "CURVE" or len(creds) != 32:
            return self._refuse_auth(address, "", "only CURVE clients are admitted")
        import zmq.utils.z85 as z85

        key = z85.encode(creds).decode()
        rec = self.keys.get(key)
        if rec is None:
            return self._refuse_auth(address, key, "unknown key")
        if rec.revoked_ms:
            return self._refuse_auth(address, key, "revoked key")
        self.counters.inc("clients_auth_ok")
        return key, ""

    def _refuse_auth(self, address: str, key: str, reason: str) -> tuple[str, str]:
        self.counters.inc(f"clients_auth_refused.{reason.split()[0]}")
        now = self._mono_ms()
        # one journal record per key and reason a minute: a client retrying in a loop
        # must not flood the journal
        tag = f"{key}/{reason}"
        if now - self._auth_refused_logged.get(tag, -10**9) >= 60_000:
            self._auth_refused_logged[tag] = now
            if len(self._auth_refused_logged) > 10_000:
                self._auth_refused_logged.clear()
            self.journal.append("auth_refused", self._encode(
                AuthRefusedEvent(address, key, reason)))
        log.warning("clients: refused a %s handshake from %s: %s", key[:8] or "non-CURVE",
                    address, reason)
        return "", reason

    # -- officer client messages ----------------------------------------------------------

    def on_client(self, ident: bytes, user_id: str, msg: Any) -> bytes | None:
        """A decoded clients-endpoint message from an authenticated key."""
        officer = self.keys.officer_of(user_id)
        if officer is None:
            self.counters.inc("clients_refused_unauthorized")
            sess = self._sessions.get(ident)
            if sess is not None:
                self._end_session(sess, "revoked", notify=True)
            if msg.rid == 0:
                return None
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "the key is not registered or was "
                                "revoked", msg.rid)
        if isinstance(msg, wire.Hello):
            return self._hello(ident, officer, user_id, msg)
        if isinstance(msg, wire.WhoOnline):
            return self._encode(wire.Presence(wire.PROTOCOL_VERSION, msg.rid,
                                              self.presence.entries()))
        sess = self._sessions.get(ident)
        if sess is None or sess.public_key != user_id:
            self.counters.inc("clients_not_attached")
            if msg.rid == 0:
                return None
            raise ProtocolError(ErrorCode.NOT_ATTACHED, "send hello first", msg.rid)
        v = wire.PROTOCOL_VERSION
        now = self._clock_ms()
        if isinstance(msg, wire.Heartbeat):
            self._publish(self.presence.beat(officer, sess.device, away=msg.away, now_ms=now))
            if msg.cursors:
                self._received(sess, msg.cursors)
            return self._encode(wire.HeartbeatAck(v, msg.rid, sess.session))
        if isinstance(msg, wire.Received):
            self._received(sess, msg.cursors)
            return None
        if isinstance(msg, wire.Resume):
            sess.stream.resume(self._clamp(sess.officer, msg.cursors))
            sess.pages = [collections.deque() for _ in range(LANES)]
            self.counters.inc("delivery_resumes")
            self._pump(sess)
            return None
        if isinstance(msg, wire.Acknowledge):
            return self._acknowledge(sess, msg)
        if isinstance(msg, wire.Follow):
            sess.follows = set(msg.officers)
            sess.follows_all = not msg.officers
            names = None if sess.follows_all else sess.follows
            return self._encode(wire.Presence(v, msg.rid, self.presence.entries(names)))
        if isinstance(msg, wire.OpenAlertsRequest):
            return self._open_alerts(sess.officer, msg)
        if isinstance(msg, wire.Bye):
            self._end_session(sess, "detach", notify=False)
            return self._encode(wire.HeartbeatAck(v, msg.rid, 0))
        if self.extra_client is not None:
            return self.extra_client(ident, sess.officer, msg)
        raise ProtocolError(ErrorCode.WRONG_ENDPOINT,
                            f"{type(msg).__name__} is not served here", msg.rid)

    def _clamp(self, officer: str, cursors: Sequence[int]) -> list[int]:
        heads = self._committed.get(officer, [0] * LANES)
        out = []
        for lane in range(LANES):
            c = cursors[lane] if lane < len(cursors) else 0
            if c < 0:
                c = 0
            if c > heads[lane]:
                self.counters.inc("delivery_cursor_ahead")
                c = heads[lane]
            out.append(c)
        return out

    def _hello(self, ident: bytes, officer: str, key: str, msg: wire.Hello) -> bytes | None:
        if msg.cursors and len(msg.cursors) != LANES:
            raise ProtocolError(ErrorCode.INVALID, f"cursors has one entry per lane ({LANES})",
                                msg.rid)
        cursors = list(msg.cursors)
        if not cursors:
            cursors = list(self._device_cursors.get((officer, msg.device), ()))
        if not cursors:
            row = self.db.execute("SELECT cursors FROM device_cursors WHERE officer = ? AND "
                                  "device = ?", (officer, msg.device)).fetchone()
            cursors = [int(x) for x in row[0].split(",")] if row else [0] * LANES
        cursors = self._clamp(officer, cursors)
        old = self._sessions.get(ident)
        if old is not None:
            self._drop(old)
        prev = self._by_officer.get(officer, {}).get(msg.device)
        if prev is not None:
            self._end_session(prev, "replaced", notify=True)
        self._session_n += 1
        s = self.settings
        sess = Session(ident, officer, msg.device, key, self._session_base + self._session_n,
                       DeviceStream(cursors, window=s.window, critical_window=s.critical_window,
                                    rto_ms=s.rto_ms, max_rto_ms=s.max_rto_ms, share=s.share),
                       self._clock_ms(), pages=[collections.deque() for _ in range(LANES)])
        self._sessions[ident] = sess
        self._by_officer.setdefault(officer, {})[msg.device] = sess
        self._assigned.setdefault(officer, [0] * LANES)
        self._committed.setdefault(officer, [0] * LANES)
        self.journal.append("session", self._encode(_SessionEvent(
            officer, msg.device, "attach", sess.session, cursors)))
        self._publish(self.presence.beat(officer, msg.device, away=msg.away,
                                         now_ms=self._clock_ms()))
        self.counters.inc("clients_attached")
        self.counters.set_gauge("clients_sessions_now", len(self._sessions))
        reply = self._encode(wire.Welcome(wire.PROTOCOL_VERSION, msg.rid, self.node_name,
                                          self.region,
                                          officer, sess.session, self.heads(officer),
                                          cursors))
        self._reply_client(ident, reply)  # queued ahead of the first push
        self._pump(sess)
        return None

    def _received(self, sess: Session, cursors: Sequence[int]) -> None:
        cur = self._clamp(sess.officer, cursors)
        n = sess.stream.received(cur, self._mono_ms())
        if n:
            acked = list(sess.stream.acked)
            self._device_cursors[(sess.officer, sess.device)] = acked
            self._dirty_cursors[(sess.officer, sess.device)] = acked
            self.counters.inc("delivery_confirmed", n)
            self._pump(sess)

    def _journal_cursors(self) -> None:
        """One ``received`` event for every device that confirmed something since the last
        one (at most once a second: who received what, and when, to the second)."""
        if not self._dirty_cursors:
            return
        dirty = self._dirty_cursors
        self._dirty_cursors = {}
        now = time.time_ns()
        entries = [_ReceivedEvent(o, d, c) for (o, d), c in dirty.items()]
        self.journal.append("received", self._encode(entries), [
            ("INSERT OR REPLACE INTO device_cursors VALUES (?,?,?,?)",
             [e.officer, e.device, ",".join(map(str, e.cursors)), now]) for e in entries])

    def _acknowledge(self, sess: Session, msg: wire.Acknowledge) -> bytes | None:
        v = wire.PROTOCOL_VERSION
        if msg.level is wire.AckLevel.DELIVERED:
            raise ProtocolError(ErrorCode.INVALID, "delivery is confirmed with `received`",
                                msg.rid)
        recipients = self._recipients_of(msg.alert_id)
        if recipients is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no alert {msg.alert_id}", msg.rid)
        if sess.officer not in recipients:
            self.counters.inc("acks_refused_not_recipient")
            raise ProtocolError(ErrorCode.UNAUTHORIZED,
                                f"alert {msg.alert_id} was not sent to {sess.officer}", msg.rid)
        k = (msg.alert_id, sess.officer, msg.level.value)
        if k in self._pending_acks or self.db.execute(
                "SELECT 1 FROM acks WHERE alert_id = ? AND officer = ? AND level = ?",
                k).fetchone() is not None:
            self.counters.inc("acks_repeated")
            return self._encode(wire.Acknowledged(v, msg.rid, msg.alert_id, msg.level, False))
        self._pending_acks.add(k)
        lane = self._lane_of(msg.alert_id)
        writes: list[Write] = [("INSERT INTO acks VALUES (?,?,?,?,?)",
                                [msg.alert_id, sess.officer, msg.level.value, sess.device,
                                 time.time_ns()])]
        seq = self._assign(sess.officer, lane, _Item(0, msg.alert_id, msg.level.value,
                                                     sess.device), writes)
        ident, officer = sess.ident, sess.officer

        def durable() -> None:
            self._pending_acks.discard(k)
            self._reply_client(ident, self._encode(
                wire.Acknowledged(v, msg.rid, msg.alert_id, msg.level, True)))
            self._commit(officer, lane, seq)
            if self.router is not None:
                self.router.acknowledged(msg.alert_id, officer, msg.level.value)

        self.journal.append("ack", self._encode(_AckEvent(msg.alert_id, officer, sess.device,
                                                          msg.level.value, (lane, seq))),
                            writes, durable)
        self.counters.inc(f"acks.{msg.level.value}")
        return None

    def _open_alerts(self, officer: str, msg: wire.OpenAlertsRequest) -> bytes:
        """Committed alerts of the officer's stream without its acknowledgement."""
        rows = self.db.execute(
            "SELECT s.alert_id, (SELECT max(a.level) FROM acks a WHERE a.alert_id = s.alert_id "
            "AND a.officer = s.officer) FROM stream s WHERE s.officer = ? AND s.level IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id = s.alert_id AND "
            "a.officer = s.officer AND a.level = 'acknowledged') "
            "ORDER BY s.alert_id DESC LIMIT ?", (officer, msg.limit)).fetchall()
        alerts, levels = [], []
        for alert_id, level in rows:
            body = self._alert_body(int(alert_id))
            if body is not None:
                alerts.append(msgspec.Raw(body))
                levels.append(level)
        return self._encode(_OpenAlertsOut(wire.PROTOCOL_VERSION, msg.rid, alerts, levels))

    def _recipients_of(self, alert_id: int) -> tuple[str, ...] | None:
        cached = self._alerts.get(alert_id)
        if cached is not None:
            return cached[1]
        row = self.db.execute("SELECT recipients FROM alerts WHERE alert_id = ?",
                              (alert_id,)).fetchone()
        if row is None:
            return None
        return tuple(x for x in str(row[0]).split(",") if x)

    def _lane_of(self, alert_id: int) -> int:
        row = self.db.execute("SELECT severity FROM alerts WHERE alert_id = ?",
                              (alert_id,)).fetchone()
        if row is None:
            body = self._alert_body(alert_id)  # raised but not committed yet
            if body is None:
                return int(wire.Lane.NORMAL)
            return int(wire.SEVERITY_LANE[msgspec.msgpack.decode(body, type=wire.Alert)
                                          .severity])
        return int(wire.SEVERITY_LANE[wire.Severity(row[0])])

    def _alert_body(self, alert_id: int) -> bytes | None:
        cached = self._alerts.get(alert_id)
        if cached is not None:
            return cached[0]
        row = self.db.execute("SELECT j.body FROM alerts a JOIN journal j ON j.seq = a.jseq "
                              "WHERE a.alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            return None
        return bytes(self._alert_dec.decode(row[0]).alert)

    # -- sending ----------------------------------------------------------------------------

    def _item(self, sess: Session, lane: int, seq: int) -> _Item | None:
        tail = self._tails.get((sess.officer, lane))
        if tail and tail[0].seq <= seq <= tail[-1].seq:
            return tail[seq - tail[0].seq]
        page = sess.pages[lane]
        while page and page[0].seq < seq:
            page.popleft()
        if not page or page[0].seq != seq:
            page.clear()
            rows = self.db.execute(
                "SELECT seq, alert_id, level, device, rseq FROM stream WHERE officer = ? AND "
                "lane = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (sess.officer, lane, seq, PAGE)).fetchall()
            page.extend(_Item(int(r[0]), int(r[1]), r[2], r[3] or "", int(r[4] or 0))
                        for r in rows)
            self.counters.inc("delivery_pages_read")
            if not page or page[0].seq != seq:
                return None
        return page.popleft()

    def _pump(self, sess: Session) -> None:
        """Send what the device's windows allow, critical first."""
        heads = self._committed[sess.officer]
        stream = sess.stream
        now = self._mono_ms()
        v = wire.PROTOCOL_VERSION
        while True:
            nxt = stream.next(heads, now)
            if nxt is None:
                return
            lane, seq, attempt = nxt
            item = self._item(sess, lane, seq)
            if item is None:  # cannot happen while the database is intact
                log.error("stream %s lane %d seq %d missing", sess.officer, lane, seq)
                self.counters.inc("delivery_missing_items")
                stream.sent[lane] = seq - 1
                return
            if item.level is None:
                body = self._alert_body(item.alert_id)
                if body is None:
                    self.counters.inc("delivery_missing_items")
                    stream.sent[lane] = seq - 1
                    return
                out = self._encode(_AlertPushOut(v, 0, lane, seq, msgspec.Raw(body), attempt))
            elif item.level == "room":
                body = self.room_event(item.alert_id, item.rseq)
                if body is None:
                    self.counters.inc("delivery_missing_items")
                    stream.sent[lane] = seq - 1
                    return
                out = self._encode(_RoomPushOut(v, 0, lane, seq, msgspec.Raw(body), attempt))
            else:
                out = self._encode(wire.AckSync(v, 0, wire.Lane(lane), seq, item.alert_id,
                                                sess.officer, item.device,
                                                wire.AckLevel(item.level), attempt))
            self._push(sess.ident, out, lane)
            self.counters.inc("delivery_sent")
            if attempt > 1:
                self.counters.inc("delivery_redelivered")

    def _publish(self, change: wire.PresenceEntry | None) -> None:
        if change is None:
            return
        self.counters.inc("presence_changes")
        body = self._encode(wire.PresenceUpdate(wire.PROTOCOL_VERSION, 0, change))
        for sess in self._sessions.values():
            if sess.follows_all or change.officer in sess.follows:
                self._push(sess.ident, body, int(wire.Lane.NORMAL))

    # -- sessions ---------------------------------------------------------------------------

    def _drop(self, sess: Session) -> None:
        self._sessions.pop(sess.ident, None)
        devices = self._by_officer.get(sess.officer)
        if devices is not None and devices.get(sess.device) is sess:
            del devices[sess.device]
        self.counters.set_gauge("clients_sessions_now", len(self._sessions))

    def _end_session(self, sess: Session, why: str, *, notify: bool) -> None:
        if notify:
            self._push(sess.ident, self._encode(wire.SessionEnded(wire.PROTOCOL_VERSION, 0,
                                                                  why)), 0)
        self._drop(sess)
        self.journal.append("session", self._encode(_SessionEvent(
            sess.officer, sess.device, why, sess.session, list(sess.stream.acked))))
        if self._by_officer.get(sess.officer, {}).get(sess.device) is None:
            self._publish(self.presence.leave(sess.officer, sess.device,
                                              now_ms=self._clock_ms()))
        self.counters.inc(f"clients_sessions_ended.{why}")

    def peer_gone(self, ident: bytes) -> None:
        """The clients endpoint could not route to ``ident``: that session is over."""
        sess = self._sessions.get(ident)
        if sess is not None:
            self._end_session(sess, "unroutable", notify=False)

    def tick(self) -> None:
        """Presence expiry, redelivery timers and lag flags; called every TICK_S."""
        now_wall = self._clock_ms()
        for change in self.presence.expire(now_wall):
            self._publish(change)
            sess = self._by_officer.get(change.officer, {}).get(change.device)
            if sess is not None:
                self._drop(sess)
                self.journal.append("session", self._encode(_SessionEvent(
                    sess.officer, sess.device, "offline", sess.session,
                    list(sess.stream.acked))))
                self.counters.inc("clients_sessions_ended.offline")
        now = self._mono_ms()
        for sess in list(self._sessions.values()):
            lanes = sess.stream.due(now)
            if lanes:
                self.counters.inc("delivery_timeouts", len(lanes))
                self._pump(sess)
        self._ticks += 1
        if self._ticks % SLOW_TICKS == 0:
            self._journal_cursors()
            self._check_lag()
        self.counters.set_gauge("journal_pending_now", self.journal.pending)

    def _check_lag(self) -> None:
        lagging = 0
        for sess in self._sessions.values():
            behind = sess.stream.backlog(self._committed[sess.officer])
            was = sess.lagging
            sess.lagging = behind > LAG_THRESHOLD
            if sess.lagging and not was:
                self.counters.inc("delivery_lagging_events")
                log.warning("device %s/%s is lagging: %d messages unconfirmed", sess.officer,
                            sess.device, behind)
            lagging += sess.lagging
        self.counters.set_gauge("delivery_lagging_now", lagging)

    async def run_ticks(self) -> None:
        while True:
            await anyio.sleep(TICK_S)
            self.tick()

    def status(self) -> dict[str, str]:
        st = self.journal.stats
        return {
            "journal_seq": str(self.journal.durable_seq),
            "journal_commits": str(st.commits),
            "journal_largest_group": str(st.largest_group),
            "alert_commit_p99_us": f"{self.latency.percentile_us(0.99):.0f}",
            "officers_online": str(len(self.presence.online_officers())),
            "sessions": str(len(self._sessions)),
        }

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())


__all__ = ["AlertDesk", "AuthRefusedEvent", "DeliverySettings", "OnRaised", "Session"]
