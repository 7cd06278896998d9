"""Officer client SDK: attach a device, receive the officer's stream, acknowledge, follow
presence. Public names are re-exported from :mod:`gateway.client`.

The stream arrives as ``alert`` and ``ack_sync`` messages, each with a lane and that lane's
sequence number. The client hands the application every message exactly once and in
order per lane, most urgent lane first: duplicates (redeliveries) are dropped, a gap makes
it ask the node to resume from its cursors. Its cursors advance when the application takes
a message, and are confirmed to the node in cumulative ``received`` messages, so the node
never has more than a window of unconfirmed messages for this device. After the node
restarts or expires the session (no heartbeat, e.g. the process was stopped), the next
heartbeat is refused with ``NOT_ATTACHED`` and the client attaches again from its cursors:
it receives exactly the gap.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import zmq

from gateway import wire
from gateway.auth import OfficerKey
from gateway.errors import (
    ErrorCode,
    GatewayError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
    SessionEndedError,
)
from gateway.transport import DealerConnection, open_dealer

log = logging.getLogger(__name__)

StreamItem = wire.AlertPush | wire.AckSync | wire.RoomPush
HEARTBEAT_S: Final = 1.0
CONFIRM_S: Final = 0.005  # a critical item is confirmed within this long


class OfficerClient:
    """One attached device of an officer; create it with :func:`open_officer`."""

    def __init__(self, conn: DealerConnection, key: OfficerKey, device: str, *,
                 cursors: Sequence[int] | None, cursor_file: Path | None, timeout: float,
                 heartbeat_s: float, window: int) -> None:
        self._conn = conn
        self.key = key
        self.device = device
        self.timeout = timeout
        self.heartbeat_s = heartbeat_s
        self._cursor_file = cursor_file
        if cursors is None and cursor_file is not None and cursor_file.exists():
            cursors = [int(x) for x in cursor_file.read_text().split(",")]
        self._initial = list(cursors) if cursors is not None else []
        self.cursors: list[int] = list(cursors) if cursors else [0] * wire.LANES
        self._seen: list[int] = list(self.cursors)  # last sequence queued per lane
        self._queues: list[collections.deque[StreamItem]] = [
            collections.deque() for _ in range(wire.LANES)]
        self._resuming = False
        self._held: list[Any] | None = None
        self._ready = anyio.Event()
        self._confirm_due = False
        self._confirm_wake = anyio.Event()
        self._taken_since_confirm = 0
        self._confirm_every = max(1, window // 4)
        self.officer = ""
        self.node = ""  # the node's name and region, from its welcome
        self.region = ""
        self.last_contact = 0.0  # time.monotonic() of the node's last answer
        self.session = 0
        self.attached = False
        self.ended: str | None = None
        self.presence: dict[tuple[str, str], wire.PresenceEntry] = {}
        self._presence_q: collections.deque[wire.PresenceEntry] = collections.deque(
            maxlen=10_000)
        self._presence_ready = anyio.Event()
        self.acked: dict[int, wire.AckLevel] = {}  # alert id -> highest level seen
        self.duplicates = 0  # redelivered messages dropped
        self.gaps = 0  # resumes asked for
        self.attaches = 0

    # -- the stream -----------------------------------------------------------------------

    def _on_push(self, msg: Any) -> None:
        """Messages the node sent without a request (rid 0); from the socket owner task."""
        if isinstance(msg, wire.AlertPush | wire.AckSync | wire.RoomPush):
            if self._held is not None:  # attaching: wait for the welcome's cursors
                self._held.append(msg)
                return
            lane = int(msg.lane)
            if not 0 <= lane < wire.LANES:
                return
            if msg.seq <= self._seen[lane]:
                self.duplicates += 1
                self._confirm_soon()  # tell the node where we are, so it moves on
                return
            if msg.seq != self._seen[lane] + 1:
                if not self._resuming:
                    self._resuming = True
                    self.gaps += 1
                    self._send_nowait(wire.Resume(wire.PROTOCOL_VERSION, 0, list(self._seen)))
                return
            self._resuming = False
            self._seen[lane] = msg.seq
            self._queues[lane].append(msg)
            self._ready.set()
        elif isinstance(msg, wire.PresenceUpdate):
            e = msg.entry
            self.presence[(e.officer, e.device)] = e
            self._presence_q.append(e)
            self._presence_ready.set()
        elif isinstance(msg, wire.SessionEnded):
            self.ended = msg.reason
            self.attached = False
            self._ready.set()
            self._presence_ready.set()

    def next_nowait(self) -> StreamItem | None:
        """The next message (most urgent lane first), or None when none is queued."""
        if self.ended is not None:
            raise SessionEndedError(self.ended)
        for lane, q in enumerate(self._queues):
            if q:
                item = q.popleft()
                self.cursors[lane] = item.seq
                if isinstance(item, wire.AckSync):
                    prev = self.acked.get(item.alert_id)
                    if prev is None or wire.ACK_RANK[item.level] > wire.ACK_RANK[prev]:
                        self.acked[item.alert_id] = item.level
                # confirmations: a critical one at once (well, within CONFIRM_S), every
                # window/4 taken at once, the rest with the next heartbeat
                self._confirm_due = True
                self._taken_since_confirm += 1
                if self._taken_since_confirm >= self._confirm_every:
                    self._confirm()
                elif lane == 0:
                    self._confirm_wake.set()
                return item
        return None

    async def next(self) -> StreamItem:
        """Wait for the next message of the stream."""
        while True:
            item = self.next_nowait()
            if item is not None:
                return item
            self._ready = anyio.Event()
            await self._ready.wait()

    async def stream(self) -> AsyncIterator[StreamItem]:
        """Every message of the officer's stream, exactly once, most urgent first."""
        while True:
            yield await self.next()

    async def alerts(self) -> AsyncIterator[wire.AlertPush]:
        """The alerts of the stream (``ack_sync`` items update :attr:`acked` on the way)."""
        while True:
            item = await self.next()
            if isinstance(item, wire.AlertPush):
                yield item

    def _confirm(self) -> None:
        if not self._confirm_due or not self.attached:
            return
        self._send_nowait(wire.Received(wire.PROTOCOL_VERSION, 0, self._confirming()))

    def _confirming(self) -> list[int]:
        """The cursors to confirm now (and persist, with a cursor file)."""
        self._confirm_due = False
        self._taken_since_confirm = 0
        if self._cursor_file is not None:
            tmp = self._cursor_file.with_name(self._cursor_file.name + ".tmp")
            tmp.write_text(",".join(map(str, self.cursors)))
            os.replace(tmp, self._cursor_file)
        return list(self.cursors)

    def _send_nowait(self, msg: Any) -> None:
        self._conn.send_raw_nowait((self._conn.codec.encode(msg),))

    # -- requests -------------------------------------------------------------------------

    @property
    def reachable(self) -> bool:
        """The node answered within the last three heartbeat intervals."""
        return time.monotonic() - self.last_contact <= 3 * self.heartbeat_s + self.timeout

    async def _request(self, msg: Any, expect: type[Any]) -> Any:
        reply = await self._conn.request(msg, timeout=self.timeout)
        self.last_contact = time.monotonic()
        if isinstance(reply, wire.Error):
            raise RemoteError(reply.code, reply.name, reply.message)
        if not isinstance(reply, expect):
            raise ProtocolError(ErrorCode.MALFORMED, f"unexpected reply {type(reply).__name__}")
        return reply

    async def attach(self) -> wire.Welcome:
        """Attach (again) from the cursors; queued but untaken messages are dropped and
        come again in order."""
        for q in self._queues:
            q.clear()
        cursors = self._initial if not self.attaches else list(self.cursors)
        self._held = []
        try:
            welcome: wire.Welcome = await self._request(
                wire.Hello(wire.PROTOCOL_VERSION, self._conn.next_rid(), self.device, cursors),
                wire.Welcome)
        finally:
            held, self._held = self._held, None
        self.attaches += 1
        if welcome.cursors:
            self.cursors = list(welcome.cursors)
        # the new session sends everything after the cursors, in order
        self._seen = list(self.cursors)
        self._resuming = False
        self.officer = welcome.officer
        self.node = welcome.node
        self.region = welcome.region
        self.session = welcome.session
        self.attached = True
        for msg in held:
            self._on_push(msg)
        return welcome

    async def acknowledge(self, alert_id: int,
                          level: wire.AckLevel = wire.AckLevel.ACKNOWLEDGED) -> bool:
        """Record that the officer read or acknowledged an alert (journaled on the node).
        True if this was the first time for the officer at that level."""
        reply = await self._request(wire.Acknowledge(wire.PROTOCOL_VERSION,
                                                     self._conn.next_rid(), alert_id, level),
                                    wire.Acknowledged)
        return bool(reply.first)

    async def mark_read(self, alert_id: int) -> bool:
        return await self.acknowledge(alert_id, wire.AckLevel.READ)

    async def open_alerts(self, limit: int = 200,
                          ) -> list[tuple[wire.Alert, wire.AckLevel | None]]:
        """The officer's alerts not yet acknowledged (by any of its devices), newest first,
        with the level reached so far (None or read): what a restarted app shows."""
        reply = await self._request(wire.OpenAlertsRequest(wire.PROTOCOL_VERSION,
                                                           self._conn.next_rid(), limit),
                                    wire.OpenAlerts)
        return [(a, wire.AckLevel(lv) if lv else None)
                for a, lv in zip(reply.alerts, reply.levels, strict=True)]

    # -- incident rooms ---------------------------------------------------------------------

    async def room_events(self) -> AsyncIterator[wire.RoomEvent]:
        """The room events of the stream (other items are taken and passed over)."""
        while True:
            item = await self.next()
            if isinstance(item, wire.RoomPush):
                yield item.event

    async def say(self, incident: int, text: str) -> int:
        """Post a message to an incident room; its place in the room once durable."""
        if text.lstrip().startswith("/"):
            raise ValueError("a command goes through echo_command() and command()")
        reply = await self._request(wire.Say(wire.PROTOCOL_VERSION, self._conn.next_rid(),
                                             incident, text), wire.RoomPosted)
        return int(reply.rseq)

    async def echo_command(self, incident: int, line: str) -> wire.CommandEcho:
        """Have the node parse a typed command (``/freeze 1001 card testing``) and say what
        it would request and which approvals it needs; nothing is requested yet."""
        echo: wire.CommandEcho = await self._request(
            wire.Say(wire.PROTOCOL_VERSION, self._conn.next_rid(), incident, line),
            wire.CommandEcho)
        return echo

    async def command(self, incident: int, command: str, *, account: int = 0,
                      amount: int = 0, reason: str = "", key: str | None = None,
                      ) -> wire.CommandStatus:
        """Request a command (confirm an echo). The same ``key`` names the same request,
        so a retry never makes a second one; a fresh key is made when none is given."""
        msg = wire.CommandSubmit(wire.PROTOCOL_VERSION, self._conn.next_rid(), incident,
                                 command, key or os.urandom(12).hex(), account, amount, reason)
        status: wire.CommandStatus = await self._request(msg, wire.CommandStatus)
        return status

    async def confirm(self, echo: wire.CommandEcho, *, key: str | None = None,
                      ) -> wire.CommandStatus:
        """Request the command an echo showed."""
        return await self.command(echo.incident, echo.command, account=echo.account,
                                  amount=echo.amount, reason=echo.reason, key=key)

    async def approve(self, request_id: int, *, approve: bool = True, reason: str = "",
                      ) -> wire.CommandStatus:
        """Approve (or reject) another officer's command request as a checker."""
        status: wire.CommandStatus = await self._request(
            wire.Approve(wire.PROTOCOL_VERSION, self._conn.next_rid(), request_id, approve,
                         reason), wire.CommandStatus)
        return status

    async def reject(self, request_id: int, reason: str = "") -> wire.CommandStatus:
        return await self.approve(request_id, approve=False, reason=reason)

    async def join(self, incident: int) -> int:
        """Join an incident room: its whole history comes in the stream, in order."""
        reply = await self._request(wire.RoomJoin(wire.PROTOCOL_VERSION,
                                                  self._conn.next_rid(), incident),
                                    wire.RoomPosted)
        return int(reply.rseq)

    async def leave(self, incident: int) -> int:
        reply = await self._request(wire.RoomLeave(wire.PROTOCOL_VERSION,
                                                   self._conn.next_rid(), incident),
                                    wire.RoomPosted)
        return int(reply.rseq)

    async def invite(self, incident: int, officer: str) -> int:
        reply = await self._request(wire.Invite(wire.PROTOCOL_VERSION, self._conn.next_rid(),
                                                incident, officer), wire.RoomPosted)
        return int(reply.rseq)

    async def incidents(self, *, open_only: bool = True, limit: int = 100,
                        ) -> list[wire.IncidentInfo]:
        reply = await self._request(wire.IncidentsRequest(wire.PROTOCOL_VERSION,
                                                          self._conn.next_rid(), open_only,
                                                          limit), wire.Incidents)
        return list(reply.incidents)

    async def search_cases(self, query: str, limit: int = 10) -> list[wire.CaseInfo]:
        """Full-text search of the case library (SQLite FTS5 query syntax)."""
        reply = await self._request(wire.CasesSearch(wire.PROTOCOL_VERSION,
                                                     self._conn.next_rid(), query, limit),
                                    wire.Cases)
        return list(reply.cases)

    async def follow(self, officers: Sequence[str] = ()) -> list[wire.PresenceEntry]:
        """Receive presence changes of ``officers`` (all when empty); their state now."""
        reply = await self._request(wire.Follow(wire.PROTOCOL_VERSION, self._conn.next_rid(),
                                                list(officers)), wire.Presence)
        for e in reply.entries:
            self.presence[(e.officer, e.device)] = e
        return list(reply.entries)

    async def who_online(self) -> list[wire.PresenceEntry]:
        reply = await self._request(wire.WhoOnline(wire.PROTOCOL_VERSION,
                                                   self._conn.next_rid()), wire.Presence)
        return list(reply.entries)

    async def next_presence(self) -> wire.PresenceEntry:
        """The next presence change of a followed officer (the latest 10,000 are kept)."""
        while not self._presence_q:
            if self.ended is not None:
                raise SessionEndedError(self.ended)
            self._presence_ready = anyio.Event()
            await self._presence_ready.wait()
        return self._presence_q.popleft()

    async def presence_updates(self) -> AsyncIterator[wire.PresenceEntry]:
        """Presence changes of followed officers, as :meth:`next_presence` returns them."""
        while True:
            yield await self.next_presence()

    # -- background -----------------------------------------------------------------------

    async def _keep_attached(self, away: list[bool]) -> None:
        """Heartbeats; attach again when the node no longer knows this device."""
        while self.ended is None:
            await anyio.sleep(self.heartbeat_s)
            try:
                if not self.attached:
                    await self.attach()
                    continue
                cursors = self._confirming() if self._confirm_due else []
                await self._request(wire.Heartbeat(wire.PROTOCOL_VERSION,
                                                   self._conn.next_rid(), away[0], cursors),
                                    wire.HeartbeatAck)
            except RemoteError as exc:
                if exc.code == ErrorCode.NOT_ATTACHED:
                    self.attached = False
                    log.info("officer %s/%s: node lost the session; attaching again",
                             self.officer, self.device)
                    try:
                        await self.attach()
                    except (RemoteError, RequestTimeoutError) as again:
                        log.warning("attach failed: %s", again)
                elif exc.code == ErrorCode.UNAUTHORIZED:
                    self.ended = "unauthorized"
                    self._ready.set()
                    self._presence_ready.set()
                    return
            except RequestTimeoutError:
                log.info("officer %s/%s: no heartbeat answer; the node may be restarting",
                         self.officer, self.device)

    def _confirm_soon(self) -> None:
        self._confirm_due = True
        self._confirm_wake.set()

    async def _confirm_loop(self) -> None:
        """Send ``received`` CONFIRM_S after the application took a critical item (or saw a
        duplicate); no wake-ups otherwise."""
        while True:
            self._confirm_wake = anyio.Event()
            if not self._confirm_due:
                await self._confirm_wake.wait()
            await anyio.sleep(CONFIRM_S)
            self._confirm()

    async def bye(self) -> None:
        """Detach now (the device goes offline at once)."""
        if self.attached:
            self._confirm()
            try:
                await self._request(wire.Bye(wire.PROTOCOL_VERSION, self._conn.next_rid()),
                                    wire.HeartbeatAck)
            except GatewayError:
                pass
            self.attached = False


@asynccontextmanager
async def open_officer(key: OfficerKey, *, device: str, url: str | None = None,
                       cursors: Sequence[int] | None = None,
                       cursor_file: str | Path | None = None,
                       ctx: zmq.Context[Any] | None = None, timeout: float = 5.0,
                       heartbeat_s: float = HEARTBEAT_S, window: int = 32,
                       away: list[bool] | None = None) -> AsyncIterator[OfficerClient]:
    """Connect an officer device over CURVE, attach it and keep it attached for the block.

    ``cursors`` (one per lane) say what the device already has; None resumes where the
    node last saw this device (or from ``cursor_file``, which is kept up to date).
    ``away`` is a one-element list the application may flip to report the officer away.
    """
    if not device or len(device) > wire.MAX_ID_LEN:
        raise ValueError("device must be 1..64 characters")
    flag = away if away is not None else [False]
    client: OfficerClient | None = None

    def on_push(msg: Any) -> None:
        if client is not None:
            client._on_push(msg)

    try:
        async with open_dealer(url or key.endpoint, ctx=ctx, curve_keys=key.curve_keys(),
                               on_unmatched=on_push) as conn:
            client = OfficerClient(conn, key, device, cursors=cursors,
                                   cursor_file=Path(cursor_file) if cursor_file else None,
                                   timeout=timeout, heartbeat_s=heartbeat_s, window=window)
            await client.attach()
            async with anyio.create_task_group() as tg:
                tg.start_soon(client._keep_attached, flag)
                tg.start_soon(client._confirm_loop)
                try:
                    yield client
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                        await client.bye()
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the SDK's own errors come out unwrapped
        only = _single(group)
        if only is None:
            raise
        raise only from None


def _single(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The one exception inside nested single-exception groups, if that is what it is."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


__all__ = ["OfficerClient", "StreamItem", "open_officer"]
