"""Wire protocol v1: every message the node sends or receives, as msgspec structs.

This module does no I/O. Each message is one msgpack array whose first element is the
message type tag and whose second is the protocol version (see docs/protocol.md). Types
only grow by appending fields with defaults; a change that cannot be expressed that way
bumps ``PROTOCOL_VERSION``.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

PROTOCOL_VERSION: Final = 1

# Caps shared by the codecs and the native decoder (documented in docs/protocol.md).
MAX_FRAME_BYTES: Final = 1 << 20  # ZMQ_MAXMSGSIZE on every endpoint: larger frames disconnect
MAX_BODY_FRAMES: Final = 1  # body frames per message after the ROUTER identity
MAX_BATCH: Final = 1024  # transactions per score request
MAX_ID_LEN: Final = 64

U64 = Annotated[int, Meta(ge=0)]  # msgpack caps it at 2**64 - 1
NonNeg = Annotated[int, Meta(ge=0, le=2**63 - 1)]
RequestId = U64
ShortStr = Annotated[str, Meta(max_length=MAX_ID_LEN)]


class Channel(enum.Enum):
    """Where a payment was initiated."""

    CARD = "card"
    TRANSFER = "transfer"
    MOBILE = "mobile"
    WEB = "web"
    ATM = "atm"
    POS = "pos"


class Outcome(enum.Enum):
    """What the payment system must do with the transaction."""

    ALLOW = "allow"
    STEP_UP = "step_up"
    BLOCK = "block"
    BLOCK_AND_FREEZE = "block_and_freeze"


class StepUpMethod(enum.Enum):
    """How the customer must confirm a ``step_up`` transaction."""

    FACE = "face"
    SMS_DOWN = "sms_down"
    SMS_UP = "sms_up"  # customer sends the SMS: used when downlink interception is suspected
    OLD_DEVICE_CONFIRM = "old_device_confirm"


class ScoringPath(enum.Enum):
    """Which rule path scored the transaction."""

    FULL = "full"
    TRUSTED = "trusted"


class Transaction(Struct, array_like=True, frozen=True, gc=False):
    """One payment to score. Amounts are integers in the currency's minor unit."""

    tx_id: Annotated[str, Meta(min_length=1, max_length=MAX_ID_LEN)]
    account: U64
    counterparty: U64
    amount: NonNeg
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}\Z")]
    channel: Channel
    mcc: Annotated[int, Meta(ge=0, le=9999)]
    device: ShortStr
    ip: Annotated[str, Meta(max_length=45)]
    country: Annotated[str, Meta(pattern=r"^([A-Z]{2})?\Z")]
    city: ShortStr
    ts_ms: Annotated[int, Meta(ge=0, le=2**53)]


class Decision(Struct, array_like=True, frozen=True, gc=False):
    """The node's verdict on one transaction."""

    tx_id: str
    outcome: Outcome
    method: StepUpMethod | None
    score: int
    path: ScoringPath
    fired: tuple[str, ...]
    ruleset_version: int


class _Message(Struct, array_like=True, frozen=True, tag_field="type"):
    """Base of every wire message: ``[type, v, rid, ...]``."""

    v: int
    rid: RequestId


# -- requests -------------------------------------------------------------------------------


class Ping(_Message, tag="ping", frozen=True):
    """Liveness probe; answered with ``pong`` on every endpoint."""


class ScoreRequest(_Message, tag="score", frozen=True):
    """Score one transaction or a batch; answered with ``scored`` in request order."""

    txs: list[Transaction]


class StatusRequest(_Message, tag="status", frozen=True):
    """Ask for the node's counters and identity."""


class RulesLoad(_Message, tag="rules_load", frozen=True):
    """Validate, compile and atomically install a rule set (TOML text)."""

    source: str
    filename: str = "<wire>"
    shadow: bool = False


class RulesRollback(_Message, tag="rules_rollback", frozen=True):
    """Reinstate the rule set that was live before the current one."""


class ShadowReportRequest(_Message, tag="shadow_report", frozen=True):
    """Compare the shadow rule set's decisions with the live ones."""


class TrustedLoad(_Message, tag="trusted_load", frozen=True):
    """Load trusted accounts from a file on the node's host."""

    path: str


class Hello(_Message, tag="hello", frozen=True):
    """An officer device attaches; its streams resume after ``cursors`` (one per lane)."""

    device: ShortStr
    cursors: list[int] = msgspec.field(default_factory=list)  # empty: from the start
    away: bool = False


# -- replies --------------------------------------------------------------------------------


class Pong(_Message, tag="pong", frozen=True):
    node: str
    region: str
    ts_ms: int


class ScoreReply(_Message, tag="scored", frozen=True):
    decisions: list[Decision]


class Busy(_Message, tag="busy", frozen=True):
    """The node cannot take the request now; nothing of it was applied."""

    retry_after_ms: int


class Error(_Message, tag="error", frozen=True):
    """The request was refused; nothing of it was applied."""

    code: int
    name: str
    message: str


class StatusReply(_Message, tag="status_reply", frozen=True):
    info: dict[str, str]
    counters: dict[str, int]


class RulesLoaded(_Message, tag="rules_loaded", frozen=True):
    version: int
    rules: int
    trusted_rules: int
    shadow: bool = False


class ShadowReport(_Message, tag="shadow_report_reply", frozen=True):
    report: dict[str, Any]


class TrustedLoaded(_Message, tag="trusted_loaded", frozen=True):
    accounts: int


class Welcome(_Message, tag="welcome", frozen=True):
    """Answer to ``hello``: the device is attached and its streams resume after its cursors."""

    node: str
    region: str
    officer: str = ""  # the officer the device's authenticated key belongs to
    session: int = 0  # changes when the node restarts or the device re-attaches
    heads: list[int] = msgspec.field(default_factory=list)  # last sequence per lane
    cursors: list[int] = msgspec.field(default_factory=list)  # where the streams resume


class Severity(enum.Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Lane(enum.IntEnum):
    """Priority lanes of an officer's stream: strict priority, lowest value first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    BULK = 3


LANES: Final = len(Lane)
SEVERITY_LANE: Final = {Severity.CRITICAL: Lane.CRITICAL, Severity.HIGH: Lane.HIGH,
                        Severity.MEDIUM: Lane.NORMAL, Severity.LOW: Lane.BULK}


class AckLevel(enum.Enum):
    """How far an officer got with an alert; each level implies the ones before it."""

    DELIVERED = "delivered"  # a device of the officer received it (set by the client SDK)
    READ = "read"  # the officer opened it
    ACKNOWLEDGED = "acknowledged"  # the officer took responsibility for it


ACK_RANK: Final = {AckLevel.DELIVERED: 0, AckLevel.READ: 1, AckLevel.ACKNOWLEDGED: 2}


class PresenceState(enum.Enum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class TxSummary(Struct, array_like=True, frozen=True):
    """The payment behind a decision alert."""

    tx_id: str
    account: int
    counterparty: int
    amount: int
    currency: str
    channel: str
    mcc: int
    country: str
    ts_ms: int


class AccountProfile(Struct, array_like=True, frozen=True):
    """The account's state right after the decision: velocity, baseline, devices."""

    vel_1m_count: int
    vel_1m_sum: int
    vel_1h_count: int
    vel_1h_sum: int
    vel_24h_count: int
    vel_24h_sum: int
    baseline: int  # running mean amount of accepted payments (minor units)
    known_devices: int
    tx_count: int


class FiredRule(Struct, array_like=True, frozen=True):
    id: str
    description: str


class Alert(Struct, array_like=True, frozen=True):
    """One alert as officers see it; written once to the journal, never changed."""

    alert_id: int  # node-assigned, unique on this node
    severity: Severity
    kind: str  # "decision" (from scoring) or "submitted" (a business system)
    account: int
    title: str
    raised_unix_ns: int  # when the node accepted it
    decided_unix_ns: int  # when the decision was made (submitted: when it was submitted)
    source: str  # node name, or the submitting system
    tx: TxSummary | None = None
    decision: Decision | None = None
    rules: list[FiredRule] = msgspec.field(default_factory=list)
    profile: AccountProfile | None = None
    actions: list[str] = msgspec.field(default_factory=list)  # suggested next steps
    details: dict[str, str] = msgspec.field(default_factory=dict)
    # relayed from another region's node (fabric.relay_alerts): where it was raised
    origin_region: str = ""  # "" = raised at this node
    origin_alert_id: int = 0  # its alert_id at the origin node


class PresenceEntry(Struct, array_like=True, frozen=True):
    officer: str
    device: str
    state: PresenceState
    last_seen_ms: int  # node wall clock of the last heartbeat, 0 = never


# -- officer client requests (clients endpoint, CURVE-authenticated) --------------------------


class Heartbeat(_Message, tag="heartbeat", frozen=True):
    """Keeps the device attached and sets its presence; answered with ``heartbeat_ack``.
    ``cursors``, when given, confirm delivery as ``received`` does."""

    away: bool = False
    cursors: list[int] = msgspec.field(default_factory=list)


class Received(_Message, tag="received", frozen=True):
    """Delivery acknowledgement: the device holds every message up to ``cursors[lane]``.

    Cumulative; sent with rid 0 and never answered.
    """

    cursors: list[int]


class Resume(_Message, tag="resume", frozen=True):
    """Ask for every message after ``cursors`` again (the device saw a gap); rid 0."""

    cursors: list[int]


class Acknowledge(_Message, tag="ack", frozen=True):
    """The officer read or acknowledged an alert; answered once it is journaled."""

    alert_id: U64
    level: AckLevel


class Follow(_Message, tag="follow", frozen=True):
    """Receive presence changes of these officers (empty: everyone)."""

    officers: list[ShortStr]


class WhoOnline(_Message, tag="who_online", frozen=True):
    """Ask for the presence of every known device."""


class OpenAlertsRequest(_Message, tag="open_alerts", frozen=True):
    """The officer's alerts not yet acknowledged by the officer, newest first."""

    limit: Annotated[int, Meta(ge=1, le=1000)] = 200


class Bye(_Message, tag="bye", frozen=True):
    """The device detaches now (goes offline without waiting for the timeout)."""


# -- business system / operator requests (services endpoint) ---------------------------------


class AlertSubmit(_Message, tag="alert_submit", frozen=True):
    """Raise an alert; the same ``key`` always names the same alert (idempotent)."""

    key: Annotated[str, Meta(min_length=1, max_length=128)]
    severity: Severity
    account: U64
    title: Annotated[str, Meta(max_length=256)]
    details: dict[str, str] = msgspec.field(default_factory=dict)
    recipients: list[ShortStr] = msgspec.field(default_factory=list)  # empty: routing decides
    decided_unix_ns: int = 0  # when the submitter decided; 0 = now


class KeyRegister(_Message, tag="key_register", frozen=True):
    """Map a CURVE public key (Z85, 40 chars) to an officer id."""

    officer: ShortStr
    public_key: Annotated[str, Meta(min_length=40, max_length=40)]
    label: ShortStr = ""


class KeyRevoke(_Message, tag="key_revoke", frozen=True):
    """Revoke a key: its handshakes are refused and its live sessions end."""

    public_key: Annotated[str, Meta(min_length=40, max_length=40)]


class KeyList(_Message, tag="key_list", frozen=True):
    """List registered keys."""


# -- replies --------------------------------------------------------------------------------


class HeartbeatAck(_Message, tag="heartbeat_ack", frozen=True):
    session: int


class Acknowledged(_Message, tag="acked", frozen=True):
    alert_id: int
    level: AckLevel
    first: bool  # False when this level was already recorded (by this or another device)


class Presence(_Message, tag="presence", frozen=True):
    entries: list[PresenceEntry]


class OpenAlerts(_Message, tag="open_alerts_reply", frozen=True):
    alerts: list[Alert]
    levels: list[str | None]  # the officer's level per alert: None or "read"


class AlertAccepted(_Message, tag="alert_accepted", frozen=True):
    alert_id: int
    duplicate: bool  # the key was seen before: nothing new was raised


class KeyEntry(Struct, array_like=True, frozen=True):
    officer: str
    public_key: str
    label: str
    registered_ms: int
    revoked_ms: int  # 0 = active


class Keys(_Message, tag="keys", frozen=True):
    keys: list[KeyEntry]


# -- pushes (node -> officer client, rid 0) ---------------------------------------------------


class AlertPush(_Message, tag="alert", frozen=True):
    """One message of the officer's stream: ``seq`` is the lane's sequence number."""

    lane: Lane
    seq: int
    alert: Alert
    attempt: int = 1  # > 1 on redelivery


class AckSync(_Message, tag="ack_sync", frozen=True):
    """A message of the officer's stream (in the alert's lane, after the alert): the
    officer took the alert to ``level`` on ``device``; every device marks it so."""

    lane: Lane
    seq: int
    alert_id: int
    officer: str
    device: str
    level: AckLevel
    attempt: int = 1


class PresenceUpdate(_Message, tag="presence_update", frozen=True):
    entry: PresenceEntry


class SessionEnded(_Message, tag="session_ended", frozen=True):
    """The node ended this device's session (key revoked, replaced by a newer attach)."""

    reason: str

# -- incident response (clients endpoint; incidents and cases_search also on services) -----

Text = Annotated[str, Meta(max_length=4000)]
Key = Annotated[str, Meta(min_length=1, max_length=128)]


class RoomEvent(Struct, array_like=True, frozen=True):
    """One entry of an incident room, in the room's order (``rseq`` 1, 2, ...).

    ``kind``: opened, alert, message, invite, join, leave, page, command, approval,
    rejection, refused, expired, executed, failed, frozen, resolved, escalation."""

    incident: int
    rseq: int
    kind: str
    actor: str  # officer id, or "node"
    text: str
    ts_ns: int
    data: dict[str, str] = msgspec.field(default_factory=dict)


class RoomPush(_Message, tag="room", frozen=True):
    """A message of the officer's stream (lane high): one room event of an incident the
    officer is a member of. A member who joins late gets the room's history first."""

    lane: Lane
    seq: int
    event: RoomEvent
    attempt: int = 1


class Say(_Message, tag="say", frozen=True):
    """Post to an incident room. A line starting with ``/`` is a command: it is parsed and
    echoed back (``command_echo``) for confirmation, and nothing is posted."""

    incident: U64
    text: Annotated[str, Meta(min_length=1, max_length=4000)]


class RoomJoin(_Message, tag="join", frozen=True):
    incident: U64


class RoomLeave(_Message, tag="leave", frozen=True):
    incident: U64


class Invite(_Message, tag="invite", frozen=True):
    incident: U64
    officer: ShortStr


class CommandSubmit(_Message, tag="command", frozen=True):
    """Request a command (after its echo was confirmed). The same ``key`` from the same
    officer always names the same request: sending it again changes nothing."""

    incident: U64
    command: ShortStr
    key: Key
    account: U64 = 0
    amount: NonNeg = 0
    reason: Annotated[str, Meta(max_length=500)] = ""


class Approve(_Message, tag="approve", frozen=True):
    """Approve (or reject) a pending command request as a checker."""

    request_id: U64
    approve: bool = True
    reason: Annotated[str, Meta(max_length=500)] = ""


class IncidentsRequest(_Message, tag="incidents", frozen=True):
    open_only: bool = True
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class CasesSearch(_Message, tag="cases_search", frozen=True):
    """Full-text search of the case library (SQLite FTS5 query syntax)."""

    query: Annotated[str, Meta(min_length=1, max_length=500)]
    limit: Annotated[int, Meta(ge=1, le=100)] = 10


class RoomPosted(_Message, tag="posted", frozen=True):
    """Answer to say / join / leave / invite, once durable: the event's place in the room."""

    incident: int
    rseq: int


class CommandEcho(_Message, tag="command_echo", frozen=True):
    """A typed command as the node understood it; confirm it with ``command``."""

    incident: int
    command: str
    account: int
    amount: int
    reason: str
    text: str  # the canonical line
    approvals: int  # approvals it will need
    approvers: list[str]  # roles that may approve
    expires_s: int


class CommandInfo(Struct, array_like=True, frozen=True):
    request_id: int
    incident: int
    command: str
    account: int
    amount: int
    reason: str
    maker: str
    state: str  # pending | approved | rejected | expired | executed | failed
    approvals: int
    approved_by: list[str]
    created_ns: int
    expires_ns: int
    result: str = ""
    reference: str = ""


class CommandStatus(_Message, tag="command_status", frozen=True):
    request: CommandInfo
    duplicate: bool = False  # the key was seen before: nothing new was requested


class IncidentInfo(Struct, array_like=True, frozen=True):
    incident: int
    status: str  # open | resolved
    severity: Severity
    account: int
    title: str
    family: str
    opened_ns: int
    resolved_ns: int
    members: list[str]
    alerts: list[int]
    similar: list[int]  # case ids of similar past incidents


class Incidents(_Message, tag="incidents_reply", frozen=True):
    incidents: list[IncidentInfo]


class CaseInfo(Struct, array_like=True, frozen=True):
    case_id: int  # the incident it was made from
    summary: str
    tags: list[str]
    rules: list[str]
    actions: list[str]
    outcome: str
    notes: str
    resolved_ns: int


class Cases(_Message, tag="cases", frozen=True):
    cases: list[CaseInfo]


# -- business-system executors (services endpoint): approved commands of incident rooms ----


class ExecutorHello(_Message, tag="executor_hello", frozen=True):
    """A business system (core banking, card platform) offers to execute ``commands``.
    Sent again every few seconds as its heartbeat; answered with ``executor_welcome``."""

    name: ShortStr
    commands: list[ShortStr]


class ExecutorWelcome(_Message, tag="executor_welcome", frozen=True):
    node: str
    pending: int  # approved commands waiting for an executor of these commands


class Execute(_Message, tag="execute", frozen=True):
    """Node -> executor (rid 0): execute an approved command. ``key`` is the idempotency
    key: the same key is sent on every retry and after node restarts, and the executor
    must apply a key at most once (answering a repeat with the first result)."""

    request_id: int
    key: str
    command: str  # freeze | unfreeze | limit | revoke-trust | require-step-up
    account: U64
    amount: int = 0  # limit: the new limit in minor units
    reason: str = ""
    incident: int = 0
    attempt: int = 1


class Executed(_Message, tag="executed", frozen=True):
    """Executor -> node (rid 0): the outcome of ``execute`` ``key``."""

    request_id: int
    key: str
    ok: bool
    result: Annotated[str, Meta(max_length=1024)] = ""
    reference: ShortStr = ""  # the business system's own id of the operation
    duplicate: bool = False  # the key was executed before; this is the first result


# -- regional fabric (issue 7): trusted-data placement on the services endpoint, and the
# node-to-node messages of the fabric endpoint (docs/protocol.md, "Regional fabric") ----

MAX_TRUST_ENTRIES: Final = 4096  # entries per trusted_update / trust_put message
Region = Annotated[str, Meta(pattern=r"^[a-z0-9-]{1,32}\Z")]
Level = Annotated[int, Meta(ge=0, le=255)]


class TrustedEntry(Struct, array_like=True, frozen=True, gc=False):
    """One trusted-account change: tier ``level`` 1..255, or 0 to remove the account."""

    account: U64
    level: Level


class TrustedUpdate(_Message, tag="trusted_update", frozen=True):
    """Set or remove trusted accounts; each is stored at its home region's node."""

    entries: Annotated[list[TrustedEntry], Meta(min_length=1, max_length=MAX_TRUST_ENTRIES)]


class TrustedGet(_Message, tag="trusted_get", frozen=True):
    """Ask the tier level of accounts homed at this node."""

    accounts: Annotated[list[U64], Meta(min_length=1, max_length=MAX_BATCH)]


class TrustedUpdated(_Message, tag="trusted_updated", frozen=True):
    local: int  # entries applied at this node (their home)
    placed: int  # entries stored in the outbox towards their home regions


class TrustedLevels(_Message, tag="trusted_levels", frozen=True):
    levels: list[int]  # per account: 0 not trusted, 1..255 its tier, -1 homed elsewhere


class FabricHello(_Message, tag="fab_hello", frozen=True):
    """A node introduces its DEALER to a peer's fabric endpoint."""

    region: Region
    node: ShortStr
    epoch: U64  # the sending process's incarnation: new at every start
    directory: ShortStr  # fingerprint of the sender's account directory


class FabricWelcome(_Message, tag="fab_welcome", frozen=True):
    region: Region
    node: ShortStr
    epoch: U64


class TrustEntry(Struct, array_like=True, frozen=True, gc=False):
    """A sequenced trusted-account change of one origin's stream."""

    seq: U64
    account: U64
    level: Level


class TrustPut(_Message, tag="trust_put", frozen=True):
    """Changes ``(base, upto]`` of the sender's stream for the receiver's region: the
    increments themselves, or (``snapshot``) the latest change of each account."""

    stream: U64
    base: U64
    upto: U64
    snapshot: bool
    entries: Annotated[list[TrustEntry], Meta(max_length=MAX_TRUST_ENTRIES)]


class TrustSync(_Message, tag="trust_sync", frozen=True):
    """Ask how far the receiver has applied the sender's stream."""

    stream: U64


class TrustAck(_Message, tag="trust_ack", frozen=True):
    stream: U64
    applied: U64  # highest sequence number applied, durably
    resync: bool = False  # a gap: send a snapshot from ``applied``


MAX_RELAY_ALERTS: Final = 64  # alerts per alert_relay message


class RelayedAlert(Struct, array_like=True, frozen=True):
    """An alert of the sender's region, for the receiving node's officers."""

    alert_id: U64  # at the origin node; with the origin region, its idempotency key
    recipients: list[ShortStr]  # the officers it went to at the origin
    alert: Alert  # as the origin's officers got it


class AlertRelay(_Message, tag="alert_relay", frozen=True):
    """Alerts of one lane, in the origin's alert order; answered once all are durable."""

    lane: Annotated[int, Meta(ge=0, le=3)]
    alerts: Annotated[list[RelayedAlert], Meta(min_length=1, max_length=MAX_RELAY_ALERTS)]
    after: U64 = 0  # the sender's alert before alerts[0] if still unanswered, else 0


class AlertRelayed(_Message, tag="alert_relayed", frozen=True):
    lane: int
    upto: U64  # the highest origin alert_id of the request now journaled here


class CommandForward(_Message, tag="cmd_forward", frozen=True):
    """An approved command for an account homed at the receiving node, from the node where
    the incident's officers approved it. ``key`` is the origin's idempotency key: the home
    node applies a key once, hands it unchanged to its business systems, and answers every
    repeat with the command's current ``cmd_state``. Sent again until the state is final."""

    origin: Region  # the sending region (must be the authenticated peer's)
    key: ShortStr
    request_id: U64  # at the origin
    incident: U64  # at the origin
    command: ShortStr  # freeze | unfreeze | limit | revoke-trust | require-step-up
    account: U64
    amount: NonNeg = 0
    reason: Annotated[str, Meta(max_length=500)] = ""
    maker: ShortStr = ""
    approved_by: Annotated[list[ShortStr], Meta(max_length=16)] = []
    attempt: int = 1


class CommandState(_Message, tag="cmd_state", frozen=True):
    """The home node's answer to ``cmd_forward``, and its unsolicited report (rid 0) when the
    business system answers: ``accepted`` (journaled at the home node, a freeze or unfreeze
    in effect in its scoring, handed to its business systems), then ``executed`` or
    ``failed``."""

    key: ShortStr
    state: ShortStr  # accepted | executed | failed
    home_request: U64  # the home node's request id
    applied_unix_ns: int = 0  # when the home node accepted it
    result: Annotated[str, Meta(max_length=1024)] = ""
    reference: ShortStr = ""


FabricRequest = (FabricHello | Ping | ScoreRequest | TrustPut | TrustSync | AlertRelay
                 | CommandForward)
FabricReply = (FabricWelcome | Pong | ScoreReply | Busy | Error | TrustAck | AlertRelayed
               | CommandState)


IngestRequest = Ping | ScoreRequest
ServiceRequest = (
    Ping | StatusRequest | RulesLoad | RulesRollback | ShadowReportRequest | TrustedLoad
    | AlertSubmit | KeyRegister | KeyRevoke | KeyList | WhoOnline | TrustedUpdate | TrustedGet
    | ExecutorHello | Executed | IncidentsRequest | CasesSearch
)
ClientRequest = (
    Ping | Hello | Heartbeat | Received | Resume | Acknowledge | Follow | WhoOnline | Bye
    | OpenAlertsRequest | Say | RoomJoin | RoomLeave | Invite | CommandSubmit | Approve
    | IncidentsRequest | CasesSearch
)
Request = (
    Ping | ScoreRequest | StatusRequest | RulesLoad | RulesRollback | ShadowReportRequest
    | TrustedLoad | AlertSubmit | KeyRegister | KeyRevoke | KeyList | Hello | Heartbeat
    | Received | Resume | Acknowledge | Follow | WhoOnline | Bye | OpenAlertsRequest
    | TrustedUpdate | TrustedGet | ExecutorHello | Executed | Say | RoomJoin | RoomLeave
    | Invite | CommandSubmit | Approve | IncidentsRequest | CasesSearch
)
Reply = (
    Pong
    | ScoreReply
    | Busy
    | Error
    | StatusReply
    | RulesLoaded
    | ShadowReport
    | TrustedLoaded
    | Welcome
    | HeartbeatAck
    | Acknowledged
    | Presence
    | AlertAccepted
    | OpenAlerts
    | Keys
    | AlertPush
    | AckSync
    | PresenceUpdate
    | SessionEnded
    | TrustedUpdated
    | TrustedLevels
    | ExecutorWelcome
    | Execute
    | RoomPush
    | RoomPosted
    | CommandEcho
    | CommandStatus
    | Incidents
    | Cases
)

REQUEST_TAGS: Final = frozenset(t.__struct_config__.tag for t in Request.__args__)


def encoder() -> msgspec.msgpack.Encoder:
    """A fresh encoder; each socket owner keeps one and reuses it."""
    return msgspec.msgpack.Encoder()


__all__ = [
    "ACK_RANK",
    "LANES",
    "MAX_BATCH",
    "MAX_BODY_FRAMES",
    "MAX_FRAME_BYTES",
    "MAX_ID_LEN",
    "MAX_RELAY_ALERTS",
    "PROTOCOL_VERSION",
    "REQUEST_TAGS",
    "SEVERITY_LANE",
    "AccountProfile",
    "AckLevel",
    "AckSync",
    "Acknowledge",
    "Acknowledged",
    "Alert",
    "AlertAccepted",
    "AlertPush",
    "AlertRelay",
    "AlertRelayed",
    "AlertSubmit",
    "Busy",
    "Bye",
    "Channel",
    "ClientRequest",
    "Decision",
    "Error",
    "Execute",
    "Executed",
    "ExecutorHello",
    "ExecutorWelcome",
    "FiredRule",
    "Follow",
    "Heartbeat",
    "HeartbeatAck",
    "Hello",
    "IngestRequest",
    "KeyEntry",
    "KeyList",
    "KeyRegister",
    "KeyRevoke",
    "Keys",
    "Lane",
    "OpenAlerts",
    "OpenAlertsRequest",
    "Outcome",
    "Ping",
    "Pong",
    "Presence",
    "PresenceEntry",
    "PresenceState",
    "PresenceUpdate",
    "Received",
    "Reply",
    "Request",
    "Resume",
    "RulesLoad",
    "RulesLoaded",
    "RulesRollback",
    "ScoreReply",
    "ScoreRequest",
    "ScoringPath",
    "ServiceRequest",
    "SessionEnded",
    "Severity",
    "ShadowReport",
    "ShadowReportRequest",
    "StatusReply",
    "StatusRequest",
    "StepUpMethod",
    "Transaction",
    "TrustedLoad",
    "TrustedLoaded",
    "TxSummary",
    "Welcome",
    "WhoOnline",
    "encoder",
]

__all__ += [
    "MAX_TRUST_ENTRIES",
    "FabricHello",
    "FabricReply",
    "FabricRequest",
    "FabricWelcome",
    "RelayedAlert",
    "TrustAck",
    "TrustEntry",
    "TrustPut",
    "TrustSync",
    "TrustedEntry",
    "TrustedGet",
    "TrustedLevels",
    "TrustedUpdate",
    "TrustedUpdated",
]

__all__ += [
    "Approve",
    "CaseInfo",
    "Cases",
    "CasesSearch",
    "CommandEcho",
    "CommandForward",
    "CommandInfo",
    "CommandState",
    "CommandStatus",
    "CommandSubmit",
    "IncidentInfo",
    "Incidents",
    "IncidentsRequest",
    "Invite",
    "RoomEvent",
    "RoomJoin",
    "RoomLeave",
    "RoomPosted",
    "RoomPush",
    "Say",
]
