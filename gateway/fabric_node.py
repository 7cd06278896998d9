"""The regional fabric's I/O shell: sockets, clock and database around ``gateway.fabric``.

One :class:`Fabric` per node that has a ``[fabric]`` section. It owns

- the **fabric endpoint**, a ROUTER where peer nodes say hello, ping, forward score
  requests and place trusted data;
- one **DEALER per peer** carrying our hellos,
  heartbeats, forwarded requests and placement puts to that peer's fabric endpoint;
- with native ingest, the **PAIR to the ingest thread** over which the thread hands off
  requests with foreign accounts and this shell answers (native/gw_ingest.h);

all owned by one task (a :class:`~gateway.transport.SocketGroup`), so a message received on
one of them is answered on another without waking a second task;
- ``fabric.db`` (:class:`~gateway.fabric_store.FabricStore`);
- the relay of this node's alerts to the officers of other regions (``fabric.relay_alerts``):
  the alert desk's ``on_raised`` hook feeds it, its outbox is the desk's own journaled
  alerts, and alerts relayed here are journaled through the desk;
- the carriage of approved incident commands to the home node of their account
  (``cmd_forward`` / ``cmd_state``): the incident desk decides and keeps the state, this
  shell only sends, routes the answers and refuses what is not for this node.

The decisions are made by the sans-IO machines (directory, links, forward table, dedup,
placement); this module feeds them messages and ``time.monotonic()`` and carries out
their actions. Everything runs on the node's event loop; only the native thread scores
when ingest is native.
"""

from __future__ import annotations

import logging
import secrets
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
import msgspec
import zmq
from zmq.utils import z85

from gateway import _native, wire
from gateway.alerting import MAX_PENDING, AlertDesk, AuthRefusedEvent
from gateway.auth import ServerKeys, valid_officer_id
from gateway.config import Config
from gateway.counters import Counters
from gateway.errors import ErrorCode, GatewayError, ProtocolError
from gateway.fabric import (
    CONTROL_RID_BASE,
    Complete,
    FabricCodec,
    FabricReplyCodec,
    ForwardAction,
    ForwardDedup,
    ForwardSettings,
    ForwardTable,
    LinkAction,
    LinkDown,
    LinkUp,
    PeerLink,
    PlacementAction,
    PlacementReceiver,
    PlacementSender,
    Policy,
    PutRejected,
    Refuse,
    RelayItem,
    RelayReceiver,
    RelaySender,
    Seen,
    SendForward,
    SendHello,
    SendPing,
    SendPut,
    SendSync,
    build_directory,
    fabric_curve,
    relay_key,
    relay_regions,
)
from gateway.fabric_store import FabricStore, SqlAlertOutbox
from gateway.incidents import IncidentDesk
from gateway.ingest import NativeIngestEndpoint
from gateway.scoring import ScoringEngine
from gateway.transport import (
    GroupMember,
    MonitorWatcher,
    RouterSendErrors,
    SocketGroup,
    configure_router,
)

log = logging.getLogger(__name__)

PAIR_HWM: Final = 10_000
ZAP_DOMAIN: Final = "fabric"  # the fabric endpoint's ZAP domain (the clients' is "clients")
AUTH_LOG_EVERY_MS: Final = 60_000  # a refused key is logged at most once a minute
GAUGES_EVERY_S: Final = 1.0
_BUSY_TAG: Final = b"\xa4busy"  # bytes 1..5 of an encoded `busy` reply
RELAY_SAVE_EVERY_S: Final = 1.0  # relay positions written at most this often (behind: repeats)
RELAY_BUSY_MS: Final = 20  # retry-after of a relay refused while the journal is behind


class _RelayedOut(msgspec.Struct, array_like=True):
    """Encodes exactly as ``wire.RelayedAlert`` with the alert already encoded."""

    alert_id: int
    recipients: tuple[str, ...]
    alert: msgspec.Raw


class _AlertRelayOut(msgspec.Struct, array_like=True, tag="alert_relay", tag_field="type"):
    """Encodes exactly as ``wire.AlertRelay``."""

    v: int
    rid: int
    lane: int
    alerts: list[_RelayedOut]
    after: int = 0


class Local:
    """:meth:`Fabric.route_python`'s answer for a request with only local accounts."""


LOCAL: Final = Local()

Scorer = Callable[[Sequence[wire.Transaction]], list[wire.Decision]]


class _TrustedInstaller:
    """Lays trusted changes over the scoring engine's table off the event loop: a new table
    is built in a worker thread (about 60 ms per million accounts), one build at a time,
    with the changes that arrived meanwhile coalesced into the next; each caller is told
    once its changes score (``True``) or the build failed (``False``; the changes are in
    ``fabric.db`` and are laid over the table at the next start)."""

    def __init__(self, engine: ScoringEngine, counters: Counters) -> None:
        self.engine = engine
        self.counters = counters
        self._pending: list[tuple[int, int]] = []
        self._done: list[Callable[[bool], None]] = []
        self._wake = anyio.Event()

    def submit(self, changes: Sequence[tuple[int, int]],
               done: Callable[[bool], None] | None = None) -> None:
        self._pending.extend(changes)
        if done is not None:
            self._done.append(done)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._pending or self._done:
                batch, self._pending = self._pending, []
                done, self._done = self._done, []
                ok = True
                if batch:
                    try:
                        table, _ = await anyio.to_thread.run_sync(
                            _native.trusted_derive, self.engine.trusted_table, None, -1, batch)
                    except GatewayError as exc:
                        ok = False
                        self.counters.inc("fabric_trusted_install_errors")
                        log.error("fabric: %d trusted changes could not be laid over the "
                                  "table (%s); they are stored and apply at the next start",
                                  len(batch), exc)
                    else:
                        self.engine.install_trusted(table)
                        self.counters.inc("fabric_trusted_installs")
                for callback in done:
                    callback(ok)


@dataclass(eq=False, slots=True)
class _Pending:
    """A producer's request waiting for its forwards (the forward table's token)."""

    ident: bytes
    body: bytes  # native: the request as received
    reserved: bytes  # native: the alert room the thread set aside (u32)
    request: wire.ScoreRequest | None  # python ingest: the decoded request


class Fabric:
    """The fabric of one node; see the module docstring."""

    def __init__(self, config: Config, counters: Counters, engine: ScoringEngine, *,
                 source: str = "<config>", keys: ServerKeys | None = None) -> None:
        f = config.fabric
        self.config = config
        self.region = config.node.region
        self.node_name = config.node.name
        self.counters = counters
        self.engine = engine
        self.directory = build_directory(f, self.region, source)
        self.epoch = secrets.randbits(62) + 1
        self.store = FabricStore(config.node.data_dir)
        now = time.monotonic()
        self.links = {r: PeerLink(r, heartbeat_s=f.heartbeat_ms / 1000,
                                  dead_after_s=f.dead_after_ms / 1000, now=now)
                      for r in sorted(f.peers)}
        self.forwards = ForwardTable(ForwardSettings(
            on_partition=Policy(f.on_partition), queue_limit=f.queue_limit,
            queue_s=f.queue_ms / 1000, timeout_s=f.forward_timeout_ms / 1000,
            busy_retry_ms=f.busy_retry_ms, max_in_flight=f.max_in_flight))
        self.dedup = ForwardDedup(capacity=max(1 << 16, 4 * f.max_in_flight))
        ack_timeout = max(2.0, 2 * f.dead_after_ms / 1000)
        self.senders = {r: PlacementSender(self.store.outbox(r), ack_timeout_s=ack_timeout)
                        for r in self.links}
        self._receivers: dict[tuple[str, int], PlacementReceiver] = {}
        self._native_dir = self.directory.native()
        self._codec = FabricCodec()
        self._replies = FabricReplyCodec()
        self._encode = wire.encoder().encode
        self._request = msgspec.msgpack.Decoder(wire.ScoreRequest)
        self._ident_of: dict[str, bytes] = {}  # peer region -> its DEALER's identity here
        self._peer_of: dict[bytes, tuple[str, int]] = {}  # identity -> (region, epoch)
        self._tokens: dict[int, tuple[str, int, int]] = {}  # S token -> origin, epoch, fid
        self._next_token = 0
        self._control_rid = CONTROL_RID_BASE
        self._group = SocketGroup()  # one owner task for every fabric socket
        self._router: GroupMember | None = None
        self._router_sock: zmq.Socket[Any] | None = None
        self._monitor: MonitorWatcher | None = None
        self._dealers: dict[str, GroupMember] = {}
        self._dealer_monitors: list[tuple[zmq.Socket[Any], MonitorWatcher]] = []
        self._handshake_logged: dict[str, float] = {}
        self._pair: GroupMember | None = None
        self._pair_native: zmq.Socket[Any] | None = None
        self._ingest: NativeIngestEndpoint | None = None
        self._reply_python: Callable[[bytes, bytes], None] | None = None
        self._score_python: Scorer | None = None
        self._native_published: dict[str, int] = {}
        self._dropped_seen = 0
        self._gauges_at = 0.0
        self._mismatch_logged: set[str] = set()
        # CURVE: this node's key pair serves the fabric endpoint and signs its DEALERs in;
        # a peer's key names its region (ZAP User-Id), its hello must claim the same
        self.curve = fabric_curve(f)
        self.keys = keys
        self._region_of_key = {k: r for r, k in f.peer_keys.items()} if self.curve else {}
        if self.curve:
            if keys is None:
                raise GatewayError("fabric.curve is on but the node has no key pair")
            if keys.public in self._region_of_key:
                raise GatewayError(f"fabric.peer_keys.{self._region_of_key[keys.public]} is "
                                   "this node's own public key")
        self._auth_logged: dict[str, int] = {}
        # cross-region alerts (attach_desk): senders per destination, requests out by rid
        # (destination, lane, the stream's generation when sent)
        self.relay_to = relay_regions(f)
        self.relays: dict[str, RelaySender] = {}
        self._relay_rids: dict[int, tuple[str, int, int]] = {}
        self._relay_in = RelayReceiver()  # relayed alerts taken here: continuity
        self._relay_saved: dict[str, list[int]] = {}
        self._relay_saved_at = 0.0
        self._desk: AlertDesk | None = None
        # incident commands for accounts homed elsewhere (attach_incidents)
        self._incidents: IncidentDesk | None = None
        self._command_rids: dict[int, tuple[str, str]] = {}  # rid -> (region, key)
        self.url = ""
        self._install_trusted_at_start()
        self._trusted = _TrustedInstaller(engine, counters)

    # -- set-up ---------------------------------------------------------------------------

    def _install_trusted_at_start(self) -> None:
        """Leave foreign accounts out of the base table; lay the stored changes over it."""
        rows = self.store.trusted_rows()
        base = self.engine.trusted_table
        if base is None and not rows:
            return
        table, dropped = _native.trusted_derive(base, self._native_dir,
                                                self.directory.local_index, rows)
        self.engine.install_trusted(table)
        if dropped:
            self.counters.inc("fabric_trusted_foreign_skipped", dropped)
            log.warning("fabric: %d trusted accounts of the start-up file are homed in other "
                        "regions and were left out (place them with `gateway trusted load` or "
                        "trusted_update)", dropped)

    def open(self, ctx: zmq.Context[Any]) -> None:
        """Bind the fabric endpoint and connect one DEALER to each peer."""
        f = self.config.fabric
        router: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        configure_router(router)
        if self.curve:  # the node's ZapAuthenticator routes domain "fabric" to authorize()
            assert self.keys is not None
            router.curve_server = True
            router.curve_secretkey = self.keys.secret.encode()
            router.zap_domain = ZAP_DOMAIN.encode()
        else:
            log.warning("fabric: peers are NOT authenticated (no fabric.peer_keys, or "
                        "fabric.curve = false): a peer's region is taken from its hello. "
                        "Use this on loopback only; set fabric.peer_keys (see `gateway keys "
                        "server`) for anything else")
        try:
            router.bind(f.bind)
        except zmq.ZMQError as exc:
            router.close(0)
            raise GatewayError(f"cannot bind the fabric endpoint {f.bind}: {exc}") from None
        self.url = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._router_sock = router
        self._monitor = MonitorWatcher(router.get_monitor_socket(MonitorWatcher.EVENTS),
                                       "fabric")
        self._router = self._group.add(
            router, self._on_router, max_frames=wire.MAX_BODY_FRAMES + 2,
            router=RouterSendErrors("fabric", self.counters, self._peer_gone),
            user_id=self.curve)
        for region, url in sorted(f.peers.items()):
            sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 10_000)
            sock.setsockopt(zmq.RCVHWM, 10_000)
            sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES * 4)
            sock.setsockopt(zmq.HEARTBEAT_IVL, f.heartbeat_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, f.dead_after_ms)
            sock.setsockopt(zmq.HEARTBEAT_TTL, f.dead_after_ms)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing for a peer not connected
            if self.curve:
                assert self.keys is not None
                sock.curve_publickey = self.keys.public.encode()
                sock.curve_secretkey = self.keys.secret.encode()
                sock.curve_serverkey = f.peer_keys[region].encode()
            sock.connect(url)
            self._dealer_monitors.append((sock, MonitorWatcher(
                sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL),
                region, counter="fabric_dealer_{kind}.{name}",
                on_event=self._dealer_event(region))))
            self._dealers[region] = self._group.add(sock, self._peer_handler(region),
                                                    max_frames=2)

    def _dealer_event(self, region: str) -> Callable[[str], None]:
        """Our DEALER to ``region`` failed a handshake: counted by the watcher
        (``fabric_dealer_auth_failed.<region>``, ``..._handshake_failed``), logged here at
        most once a minute (a wrong ``fabric.peer_keys`` entry, or a peer that does not
        know our key, keeps the link down for good)."""
        def on_event(kind: str) -> None:
            now = time.monotonic()
            last = self._handshake_logged.get(region)
            if last is not None and now - last < AUTH_LOG_EVERY_MS / 1000:
                return
            self._handshake_logged[region] = now
            log.error("fabric: the CURVE handshake with %s's node failed (%s): check "
                      "fabric.peer_keys.%s here and that %s lists this node's key (`gateway "
                      "keys server`)", region, kind.replace("_", " "), region, region)
        return on_event

    def authorize(self, address: str, mechanism: str, creds: bytes) -> tuple[str, str]:
        """ZAP decision for the fabric endpoint: a configured peer's key; its region is the
        User-Id. Refusals are counted (``fabric_auth_refused.<reason>``), and logged and
        journaled (``fabric_auth_refused``) at most once a minute per key."""
        if mechanism != "CURVE" or len(creds) != 32:
            return self._refuse_auth(address, "", "plain", "only CURVE peers are admitted")
        key = z85.encode(creds).decode()
        region = self._region_of_key.get(key)
        if region is None:
            return self._refuse_auth(address, key, "unknown", "unknown key")
        self.counters.inc("fabric_auth_ok")
        return region, ""

    def _refuse_auth(self, address: str, key: str, kind: str, reason: str,
                     ) -> tuple[str, str]:
        self.counters.inc(f"fabric_auth_refused.{kind}")
        now = time.monotonic_ns() // 1_000_000
        if now - self._auth_logged.get(key, -AUTH_LOG_EVERY_MS) >= AUTH_LOG_EVERY_MS:
            if len(self._auth_logged) > 10_000:
                self._auth_logged.clear()
            self._auth_logged[key] = now
            log.warning("fabric: refused a handshake from %s (key %s): %s", address,
                        key or "none", reason)
            if self._desk is not None:  # a security event: kept in the journal too
                self._desk.journal.append("fabric_auth_refused", self._encode(
                    AuthRefusedEvent(address, key, reason)))
        return "", reason

    def attach_native(self, ctx: zmq.Context[Any], ingest: NativeIngestEndpoint) -> None:
        """Native ingest: give its thread the directory and a PAIR to this shell (before the
        thread starts)."""
        url = f"inproc://gateway-fabric-{id(self):x}"
        mine: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
        theirs: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
        for s in (mine, theirs):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, PAIR_HWM)
            s.setsockopt(zmq.RCVHWM, PAIR_HWM)
        mine.bind(url)
        theirs.connect(url)
        ingest.attach_fabric(self._native_dir, self.directory.local_index, theirs)
        self._pair = self._group.add(mine, self._on_native, max_frames=6)
        self._pair_native = theirs
        self._ingest = ingest

    def attach_python(self, reply: Callable[[bytes, bytes], None], score: Scorer) -> None:
        """Python ingest: how to answer a producer and how to score local transactions."""
        self._reply_python = reply
        self._score_python = score

    def attach_desk(self, desk: AlertDesk) -> None:
        """The node's alert desk: relayed alerts are journaled through it, and with
        ``fabric.relay_alerts`` its durable alerts are relayed to those regions. A region
        relayed to for the first time gets the alerts raised from now on."""
        self._desk = desk
        if not self.relay_to:
            return
        outbox = SqlAlertOutbox(desk.db)
        ack_timeout = max(2.0, 2 * self.config.fabric.dead_after_ms / 1000)
        for region in self.relay_to:
            acked = self.store.relay_cursors(region)
            if acked is None:
                acked = [outbox.last_id()] * wire.LANES
                self.store.save_relay_cursors(region, acked)
            self._relay_saved[region] = list(acked)
            self.relays[region] = RelaySender(region, outbox, acked, ack_timeout_s=ack_timeout)
        desk.on_raised = self._on_raised

    def attach_incidents(self, incidents: IncidentDesk) -> None:
        """The node's incident desk: commands it approves for accounts homed elsewhere go
        to their home nodes, and commands of other regions for accounts homed here reach it."""
        self._incidents = incidents
        incidents.fabric = self

    async def serve(self) -> None:
        """Run the sockets' owner tasks and the clock until cancelled."""
        assert self._router is not None and self._monitor is not None, "open() first"
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._group.run)
            tg.start_soon(self._monitor.run, self.counters)
            tg.start_soon(self._trusted.run)
            for _, watcher in self._dealer_monitors:
                tg.start_soon(watcher.run, self.counters)
            tick = min(0.1, self.config.fabric.heartbeat_ms / 4000)
            while True:
                self.tick(time.monotonic())
                await anyio.sleep(tick)

    def close(self) -> None:
        """Close the sockets (after the native thread stopped) and the database."""
        self._save_relay_cursors(force=True)
        if self._monitor is not None and self._router_sock is not None:
            self._router_sock.disable_monitor()
            self._monitor.close()
        for sock, watcher in self._dealer_monitors:
            sock.disable_monitor()
            watcher.close()
        self._group.close()
        if self._pair_native is not None:
            self._pair_native.close(0)
        self.store.close()

    def is_up(self, region: str) -> bool:
        link = self.links.get(region)
        return link is not None and link.up

    # -- the clock ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for region, link in self.links.items():
            self._link_actions(region, link.tick(now), now)
        self._forward_actions(self.forwards.tick(self.is_up, now))
        for region, sender in self.senders.items():
            self._placement_actions(region, sender.tick(now))
        if self.relays:
            for relay in self.relays.values():
                relay.tick(now)
            self._relay_pump(now)
            if now - self._relay_saved_at >= RELAY_SAVE_EVERY_S:
                self._relay_saved_at = now
                self._save_relay_cursors()
        if now - self._gauges_at >= GAUGES_EVERY_S:
            self._gauges_at = now
            self._publish_gauges()

    def _publish_gauges(self) -> None:
        c = self.counters
        for region, link in self.links.items():
            c.set_gauge(f"fabric_peer_up_now.{region}", int(link.up))
        sizes = self.store.outbox_sizes()
        for region in self.links:
            c.set_gauge(f"fabric_outbox_now.{region}", sizes.get(region, 0))
        for region, relay in self.relays.items():
            c.set_gauge(f"fabric_relay_backlog_now.{region}", relay.backlog)
        c.set_gauge("fabric_forwards_in_flight_now", self.forwards.in_flight)
        c.set_gauge("fabric_forwards_queued_now", self.forwards.queued)
        if self._ingest is not None:
            for name, value in self._ingest.fabric_counters().items():
                if name == "reserved":
                    c.set_gauge("fabric_native_reserved_now", value)
                    continue
                delta = value - self._native_published.get(name, 0)
                if delta:
                    c.inc(f"fabric_native_{name}", delta)
                self._native_published[name] = value

    def _next_rid(self) -> int:
        self._control_rid += 1
        return self._control_rid

    # -- links ------------------------------------------------------------------------------

    def _send_peer(self, region: str, msg: msgspec.Struct) -> None:
        self._dealers[region].send((self._encode(msg),))

    def _link_actions(self, region: str, actions: Sequence[LinkAction], now: float) -> None:
        v = wire.PROTOCOL_VERSION
        for a in actions:
            if isinstance(a, SendHello):
                if self._dealers[region].queued == 0:  # not piling hellos up while cut off
                    self._send_peer(region, wire.FabricHello(
                        v, self._next_rid(), self.region, self.node_name, self.epoch,
                        self.directory.fingerprint))
            elif isinstance(a, SendPing):
                self._send_peer(region, wire.Ping(v, self._next_rid()))
            elif isinstance(a, LinkUp):
                self.counters.inc(f"fabric_link_up.{region}")
                self.counters.set_gauge(f"fabric_peer_up_now.{region}", 1)
                log.info("fabric: link to %s up%s", region,
                         " (peer restarted)" if a.restarted else "")
                self._forward_actions(self.forwards.on_link_up(region, self.is_up, now))
                self._placement_actions(region, self.senders[region].on_link_up(now))
                self._relay_link_change(region, now)
                if self._incidents is not None:
                    self._incidents.home_link_up(region)
            elif isinstance(a, LinkDown):
                self.counters.inc(f"fabric_link_down.{region}")
                self.counters.set_gauge(f"fabric_peer_up_now.{region}", 0)
                log.warning("fabric: link to %s down (%s, silent %.1f s)", region, a.reason,
                            a.silent_s)
                self.senders[region].on_link_down()
                self._relay_link_change(region, now)
                for rid in [r for r, (dest, _) in self._command_rids.items() if dest == region]:
                    del self._command_rids[rid]  # the desk sends them again at link up

    def _peer_handler(self, region: str) -> Callable[[list[bytes]], None]:
        def on_message(frames: list[bytes]) -> None:
            self._on_peer_reply(region, frames)
        return on_message

    def _on_peer_reply(self, region: str, frames: list[bytes]) -> None:
        """A reply on our DEALER to ``region``."""
        now = time.monotonic()
        link = self.links[region]
        link.on_heard(now)
        try:
            msg = self._replies.decode(frames[0])
        except ProtocolError:
            self.counters.inc("fabric_bad_replies")
            return
        if isinstance(msg, wire.FabricWelcome):
            if msg.region != region:
                self.counters.inc("fabric_bad_replies")
                log.error("fabric: the endpoint configured for %s is region %s", region,
                          msg.region)
                return
            self._link_actions(region, link.on_welcome(msg.epoch, msg.node, now), now)
        elif isinstance(msg, wire.TrustAck):
            if msg.stream == self.store.stream:
                self._placement_actions(region, self.senders[region].on_ack(
                    msg.applied, msg.resync, now))
        elif isinstance(msg, wire.Error) and msg.code == ErrorCode.UNKNOWN_PEER:
            # the peer restarted and forgot our hello: the link goes down and up again,
            # and what was in flight on it (relays, commands) goes again from there
            self._relay_rids.pop(msg.rid, None)
            self._command_rids.pop(msg.rid, None)
            self._link_actions(region, link.on_refused(now), now)
        elif isinstance(msg, wire.AlertRelayed | wire.Busy | wire.Error) and (
                msg.rid in self._relay_rids):
            self._relay_reply(region, msg, now)
        elif isinstance(msg, wire.CommandState):
            self._command_rids.pop(msg.rid, None)
            if self._incidents is not None:
                self._incidents.home_state(region, msg)
        elif isinstance(msg, wire.Error) and msg.rid in self._command_rids:
            _, key = self._command_rids.pop(msg.rid)
            if self._incidents is not None:
                self._incidents.home_refused(region, key, msg)
        elif isinstance(msg, wire.Error) and msg.code == ErrorCode.DIRECTORY_MISMATCH:
            self.counters.inc(f"fabric_directory_mismatch.{region}")
            if region not in self._mismatch_logged:
                self._mismatch_logged.add(region)
                log.error("fabric: %s refuses us: %s", region, msg.message)
        elif isinstance(msg, wire.ScoreReply | wire.Busy | wire.Error) and (
                msg.rid < CONTROL_RID_BASE):
            before = self.forwards.late
            self._forward_actions(self.forwards.on_reply(region, msg.rid, msg, now))
            if self.forwards.late != before:
                self.counters.inc("fabric_forward_late")
        elif isinstance(msg, wire.Error):
            self.counters.inc(f"fabric_peer_errors.{msg.name}")
            log.warning("fabric: %s refused a request: %s %s", region, msg.name, msg.message)

    # -- forwarding: origin side ------------------------------------------------------------

    def route_python(self, ident: bytes, msg: wire.ScoreRequest) -> bytes | Local | None:
        """Python ingest: :data:`LOCAL` when every account is homed here (score as usual),
        else the reply to send now (bytes) or None (answered later)."""
        d = self.directory
        homes = [d.home(tx.account) for tx in msg.txs]
        if all(h == self.region for h in homes):
            return LOCAL
        if any(h is None for h in homes):
            self.counters.inc("ingest_errors.INVALID")
            return self._encode(wire.Error(
                wire.PROTOCOL_VERSION, msg.rid, int(ErrorCode.INVALID), ErrorCode.INVALID.name,
                "an account of the request has no home region in the directory"))
        self._open(_Pending(ident, b"", b"", msg), msg, [h or "" for h in homes])
        return None

    def _open(self, token: _Pending, msg: wire.ScoreRequest, homes: list[str]) -> None:
        self.counters.inc("fabric_forwarded_requests")
        self.counters.inc("fabric_forwarded_txs", sum(1 for h in homes if h != self.region))
        self._forward_actions(self.forwards.open(token, msg.rid, msg.txs, homes, self.region,
                                                 self.is_up, time.monotonic()))

    def _forward_actions(self, actions: Sequence[ForwardAction]) -> None:
        for a in actions:
            if isinstance(a, SendForward):
                self._send_peer(a.region, wire.ScoreRequest(wire.PROTOCOL_VERSION, a.fid,
                                                             list(a.txs)))
                self.counters.inc("fabric_forwards_sent")
            elif isinstance(a, Complete):
                self._complete(a)
            elif isinstance(a, Refuse):
                self.counters.inc(f"fabric_forward_refused.{a.reason}")
                self._answer(a.token, self._encode(a.reply))

    def _answer(self, token: object, reply: bytes) -> None:
        assert isinstance(token, _Pending)
        if token.request is None:
            assert self._pair is not None
            self._pair.send((b"R", token.ident, reply, token.reserved))
        else:
            assert self._reply_python is not None
            self._reply_python(token.ident, reply)

    def _complete(self, done: Complete) -> None:
        token = done.token
        assert isinstance(token, _Pending)
        self.counters.inc("fabric_forward_completed")
        if token.request is None:  # native: the thread scores the rest and replies
            blobs = [self._encode(d) for d in done.decisions if d is not None]
            lens = struct.pack(f"={len(blobs)}I", *(len(b) for b in blobs))
            assert self._pair is not None
            self._pair.send((b"C", token.ident, token.body, b"".join(blobs), lens,
                             token.reserved))
            return
        msg = token.request
        local = [tx for tx, d in zip(msg.txs, done.decisions, strict=True) if d is None]
        assert self._score_python is not None
        scored = iter(self._score_python(local) if local else [])
        merged = [d if d is not None else next(scored) for d in done.decisions]
        self._answer(token, self._encode(wire.ScoreReply(wire.PROTOCOL_VERSION, msg.rid,
                                                         merged)))

    def _on_native(self, frames: list[bytes]) -> None:
        """A message from the native ingest thread on the PAIR."""
        kind = frames[0]
        if kind == b"F" and len(frames) == 5:
            ident, body, homes, reserved = frames[1:]
            token = _Pending(ident, body, reserved, None)
            regions = self.directory.regions
            try:
                msg = self._request.decode(body)
                names = [regions[h] for h in homes]
            except (msgspec.MsgspecError, ValueError, IndexError) as exc:  # a decoder bug
                self.counters.inc("fabric_bad_native_messages")
                log.error("fabric: hand-off the control plane cannot read: %s", exc)
                self._answer(token, self._encode(wire.Error(
                    wire.PROTOCOL_VERSION, 0, int(ErrorCode.INTERNAL), ErrorCode.INTERNAL.name,
                    "the node failed to forward the request; nothing was applied")))
                return
            self._open(token, msg, names)
        elif kind == b"S" and len(frames) == 3:
            self._peer_scored(int.from_bytes(frames[1], "little"), frames[2])
        else:
            self.counters.inc("fabric_bad_native_messages")

    # -- forwarding and placement: home side (the fabric endpoint) --------------------------

    def _refuse(self, err: ProtocolError) -> bytes:
        self.counters.inc(f"fabric_errors.{err.code.name}")
        log.info("fabric: refused: %s", err)
        return self._codec.error_reply(err)

    def _peer_gone(self, ident: bytes) -> None:
        peer = self._peer_of.pop(ident, None)
        if peer is not None and self._ident_of.get(peer[0]) == ident:
            del self._ident_of[peer[0]]

    def _on_router(self, frames: list[bytes]) -> None:
        """A message on the fabric endpoint: identity, then the body frames."""
        assert self._router is not None
        dropped = self._router.frames_dropped - self._dropped_seen
        self._dropped_seen = self._router.frames_dropped
        self.counters.inc("fabric_messages")
        reply = self._on_fabric(frames[0], frames[1:], dropped, self._router.user_id)
        if reply is not None:
            self._router.send((frames[0], reply))

    def _on_fabric(self, ident: bytes, frames: Sequence[bytes], dropped: int,
                   user_id: str = "") -> bytes | None:
        try:
            msg = self._codec.decode(frames, dropped)
        except ProtocolError as err:
            return self._refuse(err)
        v = wire.PROTOCOL_VERSION
        if isinstance(msg, wire.FabricHello):
            return self._hello(ident, msg, user_id)
        peer = self._peer_of.get(ident)
        if peer is None:
            return self._refuse(ProtocolError(
                ErrorCode.UNKNOWN_PEER, "say fab_hello first (or this node restarted)",
                msg.rid))
        region, epoch = peer
        if self.curve and user_id != region:  # cannot happen: one connection, one key
            self.counters.inc("fabric_auth_region_mismatch")
            return self._refuse(ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"authenticated as {user_id!r}, not {region!r}",
                msg.rid))
        if isinstance(msg, wire.Ping):
            return self._encode(wire.Pong(v, msg.rid, self.node_name, self.region,
                                          int(time.time() * 1000)))
        if isinstance(msg, wire.ScoreRequest):
            return self._forwarded(region, epoch, msg, frames[0])
        if isinstance(msg, wire.TrustSync):
            rx = self._receiver(region, msg.stream)
            return self._encode(wire.TrustAck(v, msg.rid, msg.stream, rx.applied))
        if isinstance(msg, wire.AlertRelay):
            return self._alert_relay(region, msg)
        if isinstance(msg, wire.CommandForward):
            return self._command_in(region, msg)
        assert isinstance(msg, wire.TrustPut)
        return self._trust_put(region, msg)

    def _hello(self, ident: bytes, msg: wire.FabricHello, user_id: str = "") -> bytes:
        if msg.region not in self.links:
            return self._refuse(ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"region {msg.region!r} is not a peer of "
                f"{self.region!r}", msg.rid))
        if self.curve and msg.region != user_id:
            self.counters.inc("fabric_auth_region_mismatch")
            return self._refuse(ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"this connection's key is region {user_id!r}'s; "
                f"it cannot speak for {msg.region!r}", msg.rid))
        if msg.directory != self.directory.fingerprint:
            return self._refuse(ProtocolError(
                ErrorCode.DIRECTORY_MISMATCH,
                f"account directory {msg.directory} differs from {self.region}'s "
                f"{self.directory.fingerprint}", msg.rid))
        old = self._ident_of.get(msg.region)
        if old is not None and old != ident:
            self._peer_of.pop(old, None)
        self._ident_of[msg.region] = ident
        self._peer_of[ident] = (msg.region, msg.epoch)
        self.counters.inc(f"fabric_hellos.{msg.region}")
        return self._encode(wire.FabricWelcome(wire.PROTOCOL_VERSION, msg.rid, self.region,
                                               self.node_name, self.epoch))

    def _forwarded(self, origin: str, epoch: int, msg: wire.ScoreRequest,
                   body: bytes) -> bytes | None:
        for tx in msg.txs:
            if not self.directory.is_local(tx.account):
                return self._refuse(ProtocolError(
                    ErrorCode.WRONG_REGION, f"account {tx.account} is homed in "
                    f"{self.directory.home(tx.account)}, not {self.region}", msg.rid))
        seen = self.dedup.begin(origin, epoch, msg.rid)
        if isinstance(seen, bytes):
            self.counters.inc("fabric_peer_repeats.replayed")
            return seen
        if seen is Seen.PENDING:
            self.counters.inc("fabric_peer_repeats.pending")
            return None
        self.counters.inc("fabric_peer_requests")
        self.counters.inc("fabric_peer_txs", len(msg.txs))
        if self._pair is not None:  # the native thread scores it
            self._next_token += 1
            token = self._next_token
            self._tokens[token] = (origin, epoch, msg.rid)
            self._pair.send((b"S", token.to_bytes(8, "little"), body))
            return None
        assert self._score_python is not None
        reply = self._encode(wire.ScoreReply(wire.PROTOCOL_VERSION, msg.rid,
                                             self._score_python(msg.txs)))
        self.dedup.finish(origin, epoch, msg.rid, reply)
        return reply

    def _peer_scored(self, token: int, reply: bytes) -> None:
        """The native thread's answer to a peer's forwarded request."""
        ctx = self._tokens.pop(token, None)
        if ctx is None:
            self.counters.inc("fabric_bad_native_messages")
            return
        origin, epoch, fid = ctx
        self.dedup.finish(origin, epoch, fid, None if reply[1:6] == _BUSY_TAG else reply)
        ident = self._ident_of.get(origin)
        if ident is None or self._router is None:
            self.counters.inc("fabric_peer_replies_unroutable")
            return  # the origin sends it again once it is back; the record answers it
        self._router.send((ident, reply))

    def _receiver(self, origin: str, stream: int) -> PlacementReceiver:
        key = (origin, stream)
        rx = self._receivers.get(key)
        if rx is None:
            rx = self._receivers[key] = PlacementReceiver(self.store.position(origin, stream))
        return rx

    def _trust_put(self, origin: str, msg: wire.TrustPut) -> bytes:
        for e in msg.entries:
            if not self.directory.is_local(e.account):
                return self._refuse(ProtocolError(
                    ErrorCode.WRONG_REGION, f"account {e.account} is not homed in "
                    f"{self.region}", msg.rid))
        rx = self._receiver(origin, msg.stream)
        try:
            res = rx.on_put(msg.base, msg.upto, msg.snapshot, msg.entries)
        except PutRejected as exc:
            return self._refuse(ProtocolError(ErrorCode.MALFORMED, f"trust_put: {exc}",
                                              msg.rid))
        if res.resync:
            self.counters.inc("fabric_trusted_gaps")
        elif res.after > res.before:
            self.store.apply(origin, msg.stream, res.apply, res.before, res.after,
                             msg.snapshot)
            rx.commit(res)
            n = len(res.apply)

            def installed(ok: bool) -> None:  # counted once in scoring here too
                if ok:
                    self.counters.inc("fabric_trusted_applied", n)

            self._trusted.submit([(e.account, e.level) for e in res.apply], installed)
        return self._encode(wire.TrustAck(wire.PROTOCOL_VERSION, msg.rid, msg.stream,
                                          rx.applied, res.resync))

    def _placement_actions(self, region: str, actions: Sequence[PlacementAction]) -> None:
        v = wire.PROTOCOL_VERSION
        stream = self.store.stream
        for a in actions:
            if isinstance(a, SendSync):
                self.counters.inc("fabric_trusted_syncs")
                self._send_peer(region, wire.TrustSync(v, self._next_rid(), stream))
            elif isinstance(a, SendPut):
                if a.snapshot:
                    self.counters.inc("fabric_trusted_snapshots")
                self._send_peer(region, wire.TrustPut(v, self._next_rid(), stream, a.base,
                                                      a.upto, a.snapshot, list(a.entries)))
        sender = self.senders[region]
        lost = sender.lost - self.counters.get(f"fabric_trusted_lost.{region}")
        if lost > 0:
            self.counters.inc(f"fabric_trusted_lost.{region}", lost)
            log.error("fabric: %s lost %d trusted changes it had acknowledged", region, lost)

    # -- cross-region alerts: origin side ---------------------------------------------------

    def _on_raised(self, alert_id: int, body: bytes, severity: wire.Severity, key: str | None,
                   recipients: tuple[str, ...]) -> None:
        """The desk's hook: one of this node's alerts is durable; relay it."""
        if key is not None and key.startswith("relay:"):
            return  # relayed here from another region: never relayed on
        lane = int(wire.SEVERITY_LANE[severity])
        item = RelayItem(alert_id, recipients, body)
        for relay in self.relays.values():
            relay.on_new(lane, item)
        self._relay_pump(time.monotonic())

    def _relay_pump(self, now: float) -> None:
        v = wire.PROTOCOL_VERSION
        for region, relay in self.relays.items():
            if not self.is_up(region):
                continue
            for req in relay.next(now):
                rid = self._next_rid()
                self._relay_rids[rid] = (region, req.lane, req.generation)
                self._send_peer(region, _AlertRelayOut(v, rid, req.lane, [
                    _RelayedOut(i.alert_id, i.recipients, msgspec.Raw(i.body))
                    for i in req.items], req.after))
                self.counters.inc(f"fabric_relay_sent.{region}", len(req.items))

    def _relay_link_change(self, region: str, now: float) -> None:
        relay = self.relays.get(region)
        if relay is None:
            return
        relay.on_link_change()
        for rid in [r for r, (dest, _, _) in self._relay_rids.items() if dest == region]:
            del self._relay_rids[rid]
        self._relay_pump(now)

    def _relay_reply(self, region: str, msg: wire.AlertRelayed | wire.Busy | wire.Error,
                     now: float) -> None:
        dest, lane, generation = self._relay_rids.pop(msg.rid)
        stream = self.relays[dest].streams[lane]
        if isinstance(msg, wire.AlertRelayed):
            done = stream.on_ack(msg.upto)
            self.counters.inc(f"fabric_relay_acked.{region}", done)
        elif isinstance(msg, wire.Busy):
            self.counters.inc(f"fabric_relay_busy.{region}")
            stream.on_refused(generation, msg.retry_after_ms / 1000, now)
        elif msg.code == ErrorCode.RELAY_GAP:  # an earlier request was lost or refused
            self.counters.inc(f"fabric_relay_gaps.{region}")
            stream.on_refused(generation, 0.0, now)
        else:  # a refusal: the stream stops here and tries again later, never skips
            self.counters.inc(f"fabric_relay_refused.{region}")
            log.error("fabric: %s refused relayed alerts (lane %d): %s %s", region, lane,
                      msg.name, msg.message)
            stream.on_refused(generation, stream.ack_timeout_s, now)
        self._relay_pump(now)

    def _save_relay_cursors(self, *, force: bool = False) -> None:
        for region, relay in self.relays.items():
            acked = relay.acked
            if acked != self._relay_saved.get(region):
                self.store.save_relay_cursors(region, acked)
                self._relay_saved[region] = acked

    # -- cross-region alerts: destination side ----------------------------------------------

    def _alert_relay(self, origin: str, msg: wire.AlertRelay) -> bytes | None:
        """Journal a peer's alerts for this node's officers; answer once all are durable."""
        desk = self._desk
        if desk is None:
            return self._refuse(ProtocolError(ErrorCode.INVALID, "this node takes no relayed "
                                              "alerts", msg.rid))
        prev = 0
        for a in msg.alerts:
            problem = ("alert ids are not ascending" if a.alert_id <= prev else
                       f"alert {a.alert_id} is {a.alert.severity.value}, not of lane "
                       f"{msg.lane}" if int(wire.SEVERITY_LANE[a.alert.severity]) != msg.lane
                       else "a recipient is not an officer id"
                       if not all(valid_officer_id(r) for r in a.recipients) else "")
            if problem:
                return self._refuse(ProtocolError(ErrorCode.MALFORMED,
                                                  f"alert_relay: {problem}", msg.rid))
            prev = a.alert_id
        if not self._relay_in.continues(origin, msg.lane, msg.after):
            # what comes before was lost or refused: never overtake it
            self.counters.inc("fabric_relay_in_gaps")
            return self._refuse(ProtocolError(
                ErrorCode.RELAY_GAP, f"alert_relay: lane {msg.lane} continues after alert "
                f"{msg.after}, which this node does not hold", msg.rid))
        if desk.journal.pending > MAX_PENDING:  # the disk is behind: the origin retries
            self.counters.inc("fabric_relay_in_busy")
            return self._encode(wire.Busy(wire.PROTOCOL_VERSION, msg.rid, RELAY_BUSY_MS))
        active = set(desk.keys.active_officers())
        for a in msg.alerts:
            key = relay_key(origin, a.alert_id)
            if desk.alert_for_key(key) is not None:
                self.counters.inc("fabric_relay_in_duplicates")
                continue
            desk.raise_alert(self._relayed_builder(origin, a), key=key,
                             recipients=[r for r in a.recipients if r in active])
            self.counters.inc(f"fabric_relay_in.{origin}")
        self._relay_in.on_held(origin, msg.lane, msg.alerts[-1].alert_id)
        reply = self._encode(wire.AlertRelayed(wire.PROTOCOL_VERSION, msg.rid, msg.lane,
                                               msg.alerts[-1].alert_id))
        desk.journal.call_when_durable(lambda: self._reply_peer(origin, reply))
        return None

    @staticmethod
    def _relayed_builder(origin: str, relayed: wire.RelayedAlert,
                         ) -> Callable[[int, int], wire.Alert]:
        def build(alert_id: int, raised_unix_ns: int) -> wire.Alert:
            return msgspec.structs.replace(relayed.alert, alert_id=alert_id,
                                           raised_unix_ns=raised_unix_ns,
                                           origin_region=origin,
                                           origin_alert_id=relayed.alert_id)
        return build

    def _reply_peer(self, origin: str, reply: bytes) -> None:
        """An answer given later, to the origin's current connection."""
        ident = self._ident_of.get(origin)
        if ident is None or self._router is None:
            self.counters.inc("fabric_peer_replies_unroutable")
            return  # the origin sends it again once it is back
        self._router.send((ident, reply))

    # -- incident commands for accounts homed elsewhere -------------------------------------

    def home(self, account: int) -> str | None:
        return self.directory.home(account)

    def send_command(self, region: str, msg: wire.CommandForward) -> bool:
        """Origin: send an approved command to ``region``'s node (the incident desk sends
        it again until the state is final); False while the link is down."""
        if not self.is_up(region):
            return False
        rid = self._next_rid()
        if len(self._command_rids) >= 10_000:  # answers lost on dead connections
            self._command_rids.clear()
        self._command_rids[rid] = (region, msg.key)
        self._send_peer(region, msgspec.structs.replace(msg, rid=rid))
        self.counters.inc(f"fabric_commands_sent.{region}")
        return True

    def send_state(self, region: str, msg: wire.CommandState) -> None:
        """Home: answer or report to the origin's current connection (lost if it has none:
        the origin asks again)."""
        self._reply_peer(region, self._encode(msg))

    def _command_in(self, origin: str, msg: wire.CommandForward) -> bytes | None:
        """Home: an approved command from another region for an account homed here."""
        if msg.origin != origin:
            return self._refuse(ProtocolError(
                ErrorCode.INVALID, f"cmd_forward names region {msg.origin!r} but comes from "
                f"{origin!r}", msg.rid))
        if not self.directory.is_local(msg.account):
            return self._refuse(ProtocolError(
                ErrorCode.WRONG_REGION, f"account {msg.account} is homed in "
                f"{self.directory.home(msg.account)}, not {self.region}", msg.rid))
        if self._incidents is None:
            return self._refuse(ProtocolError(
                ErrorCode.INVALID, f"incident response is off at {self.region}'s node (set "
                "[incident] oncall there): it cannot carry out commands", msg.rid))
        self.counters.inc(f"fabric_commands_in.{origin}")
        try:
            return self._incidents.from_region(origin, msg)
        except ProtocolError as err:
            return self._refuse(err)

    # -- trusted data (services endpoint) ----------------------------------------------------

    def trusted_update(self, rid: int, entries: Sequence[tuple[int, int]],
                       answer: Callable[[bytes], None]) -> None:
        """Store the changes durably: those of accounts homed here to be laid over the
        scoring table (off the loop), the others for their homes. ``answer`` gets the reply
        once all is on disk and this node scores with its changes."""
        local: list[tuple[int, int]] = []
        foreign: dict[str, list[tuple[int, int]]] = {}
        for account, level in entries:
            home = self.directory.home(account)
            if home is None:
                raise ProtocolError(ErrorCode.INVALID,
                                    f"account {account} has no home region in the directory",
                                    rid)
            if home == self.region:
                local.append((account, level))
            else:
                foreign.setdefault(home, []).append((account, level))
        self.store.place(self.region, local, foreign)
        now = time.monotonic()
        placed = 0
        for region, rows in foreign.items():
            placed += len(rows)
            self._placement_actions(region, self.senders[region].on_new_entries(now))
        self.counters.inc("fabric_trusted_local", len(local))
        self.counters.inc("fabric_trusted_placed", placed)
        v = wire.PROTOCOL_VERSION

        def installed(ok: bool) -> None:
            answer(self._encode(wire.TrustedUpdated(v, rid, len(local), placed)) if ok else
                   self._codec.error_reply(ProtocolError(
                       ErrorCode.INTERNAL, f"{len(local)} changes are stored but not yet in "
                       "scoring here (see the node's log); they apply at the next start",
                       rid)))

        self._trusted.submit(local, installed)

    def trusted_levels(self, rid: int, accounts: Sequence[int]) -> bytes:
        table = self.engine.trusted_table
        levels = [(table.level(a) if table is not None else 0)
                  if self.directory.is_local(a) else -1 for a in accounts]
        return self._encode(wire.TrustedLevels(wire.PROTOCOL_VERSION, rid, levels))

    # -- status ---------------------------------------------------------------------------

    def status_info(self) -> dict[str, str]:
        d = self.directory
        out = {"fabric.endpoint": self.url,
               "fabric.auth": "curve" if self.curve else "none (plain, loopback only)",
               "fabric.directory": f"{d.mode} over {', '.join(d.regions)} ({d.fingerprint[:12]})",
               "fabric.epoch": str(self.epoch), "fabric.stream": str(self.store.stream)}
        for region, link in self.links.items():
            out[f"fabric.peer.{region}"] = link.state.value
        if self.relays:
            out["fabric.relay_alerts"] = ", ".join(self.relays)
        return out


__all__ = ["LOCAL", "Fabric", "Local", "Scorer"]
