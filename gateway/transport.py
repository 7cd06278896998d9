"""The one module that waits on ZeroMQ sockets.

Each socket here has exactly one owning task, which alone receives and sends on it; other
tasks hand outgoing messages to the owner with :meth:`RouterEndpoint.send_nowait`, which
never blocks. The owner waits for readiness with ``anyio.wait_readable`` on the socket's
file descriptor, so the same code runs on asyncio (with or without uvloop) and on trio.

ZeroMQ's descriptor is edge-triggered: the owner drains the socket until ``EAGAIN`` and
re-reads ``ZMQ_EVENTS`` before it goes back to sleep.
"""

from __future__ import annotations

import collections
import logging
import os
import select
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, cast

import anyio
import zmq
from zmq.utils.monitor import parse_monitor_message

from gateway import wire
from gateway.codec import ReplyCodec
from gateway.counters import Counters
from gateway.errors import ProtocolError, RequestTimeoutError

log = logging.getLogger(__name__)

RECV_BURST: Final = 64  # messages handled before the owner yields to other tasks
SEND_HWM: Final = 10_000
RECV_HWM: Final = 10_000

# handler(identity, body_frames, frames_dropped) -> reply body or None (reply later or never)
Handler = Callable[[bytes, Sequence[bytes], int], bytes | None]


def configure_router(sock: zmq.Socket[Any]) -> None:
    """Options every node ROUTER socket carries (see docs/protocol.md, "Endpoints")."""
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM)
    sock.setsockopt(zmq.RCVHWM, RECV_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 6000)


async def _wait_fd(sock: zmq.Socket[Any], scope_holder: list[anyio.CancelScope | None],
                   want_out: Callable[[], bool]) -> None:
    """Sleep until ``sock`` can make progress or someone cancels the stored scope.

    Progress means input is queued, or ``want_out()`` says we have output and the socket
    accepts it.
    """
    events = cast(int, sock.getsockopt(zmq.EVENTS))
    if events & zmq.POLLIN or (events & zmq.POLLOUT and want_out()):
        await anyio.lowlevel.checkpoint()
        return
    with anyio.CancelScope() as scope:
        scope_holder[0] = scope
        await anyio.wait_readable(cast(int, sock.getsockopt(zmq.FD)))
    scope_holder[0] = None


def _recv_frames_user(sock: zmq.Socket[Any], max_frames: int,
                      ) -> tuple[list[bytes], int, str]:
    """Like :func:`_recv_frames` on a CURVE ROUTER: also the ZAP User-Id of the sender,
    read from its first body frame ("" when there is none)."""
    frames = [sock.recv(zmq.NOBLOCK)]
    dropped = 0
    user_id = ""
    while sock.getsockopt(zmq.RCVMORE):
        part = sock.recv(zmq.NOBLOCK, copy=False)
        if len(frames) == 1:
            user_id = str(part.get("User-Id") or "")
        if len(frames) < max_frames:
            frames.append(part.bytes)
        else:
            dropped += 1
    return frames, dropped, user_id


def _recv_frames(sock: zmq.Socket[Any], max_frames: int) -> tuple[list[bytes], int]:
    """Receive one whole multipart message without blocking; keep at most ``max_frames``.

    Raises ``zmq.Again`` when nothing is queued. Frames past the cap are read and dropped
    (their number is returned) so a peer cannot make us hold an unbounded message.
    """
    frames = [sock.recv(zmq.NOBLOCK)]
    dropped = 0
    while sock.getsockopt(zmq.RCVMORE):
        part = sock.recv(zmq.NOBLOCK)
        if len(frames) < max_frames:
            frames.append(part)
        else:
            dropped += 1
    return frames, dropped


class MonitorWatcher:
    """Owner of a socket-monitor PAIR socket: counts connection events as
    ``{name}_peers_{event}`` (as :class:`RouterEndpoint` does for its own socket). Used for
    sockets that another thread serves, e.g. the native ingest ROUTER."""

    _NAMES: Final[dict[int, str]] = {
        zmq.EVENT_ACCEPTED: "accepted",
        zmq.EVENT_DISCONNECTED: "disconnected",
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failed",
        zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth_failed",
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed",
    }
    EVENTS: Final[int] = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    def __init__(self, monitor: zmq.Socket[Any], name: str, *,
                 counter: str = "{name}_peers_{kind}",
                 on_event: Callable[[str], None] | None = None) -> None:
        """``counter``: the counter's name pattern; ``on_event`` is also told each kind."""
        self._mon = monitor
        self.name = name
        self._counter = counter
        self._on_event = on_event
        self._never: list[anyio.CancelScope | None] = [None]

    async def run(self, counters: Counters) -> None:
        """Own the monitor socket until cancelled."""
        while True:
            try:
                frames = self._mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                await _wait_fd(self._mon, self._never, lambda: False)
                continue
            event = parse_monitor_message(frames)
            kind = self._NAMES.get(event["event"])
            if kind is not None:
                counters.inc(self._counter.format(name=self.name, kind=kind))
                if self._on_event is not None:
                    self._on_event(kind)

    def close(self) -> None:
        self._mon.close(0)


class RouterEndpoint:
    """A bound ROUTER socket and its owner loop."""

    def __init__(self, ctx: zmq.Context[Any], name: str, url: str, counters: Counters,
                 *, curve_server_key: bytes | None = None, zap_domain: str = "",
                 lanes: int = 1) -> None:
        """A CURVE server when ``curve_server_key`` is given: bind a :class:`ZapAuthenticator`
        on the same context first, or libzmq admits every client key."""
        self.name = name
        self.counters = counters
        self._sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        configure_router(self._sock)
        self._auth = curve_server_key is not None
        if curve_server_key is not None:
            self._sock.curve_server = True
            self._sock.curve_secretkey = curve_server_key
            self._sock.zap_domain = (zap_domain or name).encode()
        self._sock.bind(url)
        self.url: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._monitor = MonitorWatcher(self._sock.get_monitor_socket(MonitorWatcher.EVENTS),
                                       name)
        # one outbox per priority lane, drained lowest lane first
        self._outboxes: list[collections.deque[tuple[bytes, bytes]]] = [
            collections.deque() for _ in range(max(1, lanes))]
        self._wake: list[anyio.CancelScope | None] = [None]
        self._closed = False
        self.on_unroutable: Callable[[bytes], None] | None = None
        self.user_id = ""  # authenticated User-Id (ZAP) of the message being handled

    def send_nowait(self, identity: bytes, body: bytes, lane: int = 0) -> None:
        """Queue a message for ``identity`` in priority ``lane`` (0 first); the owner task
        sends it. A message of a lower lane never waits behind one of a higher lane."""
        self._outboxes[lane].append((identity, body))
        scope = self._wake[0]
        if scope is not None:
            scope.cancel()

    def queued(self) -> int:
        """Messages waiting in the outboxes."""
        return sum(len(q) for q in self._outboxes)

    def _send(self, identity: bytes, body: bytes) -> None:
        try:
            self._sock.send_multipart((identity, body), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.counters.inc(f"{self.name}_unroutable")
                log.warning("%s: message to a peer that has gone (%d bytes)", self.name,
                            len(body))
                if self.on_unroutable is not None:
                    self.on_unroutable(identity)
            elif exc.errno == zmq.EAGAIN:
                self.counters.inc(f"{self.name}_send_hwm_refused")
                log.warning("%s: peer not reading, reply refused at the high-water mark",
                            self.name)
            else:
                raise

    async def serve(self, handler: Handler) -> None:
        """Own the socket: receive, hand each message to ``handler``, send replies."""
        sock = self._sock
        counters = self.counters
        received = f"{self.name}_messages"
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._monitor.run, counters)
            try:
                while True:
                    busy = False
                    for outbox in self._outboxes:
                        while outbox:
                            self._send(*outbox.popleft())
                            busy = True
                    for _ in range(RECV_BURST):
                        try:
                            if self._auth:
                                frames, dropped = self._recv_authenticated()
                            else:
                                frames, dropped = _recv_frames(sock, wire.MAX_BODY_FRAMES + 2)
                        except zmq.Again:
                            break
                        busy = True
                        counters.inc(received)
                        reply = handler(frames[0], frames[1:], dropped)
                        if reply is not None:
                            self._send(frames[0], reply)
                    if busy:
                        await anyio.lowlevel.checkpoint()
                    else:
                        await _wait_fd(sock, self._wake, lambda: False)
            finally:
                tg.cancel_scope.cancel()

    def _recv_authenticated(self) -> tuple[list[bytes], int]:
        """Like :func:`_recv_frames`, and set :attr:`user_id` from the first body frame."""
        sock = self._sock
        ident = sock.recv(zmq.NOBLOCK)
        frames = [ident]
        dropped = 0
        self.user_id = ""
        while sock.getsockopt(zmq.RCVMORE):
            part = sock.recv(zmq.NOBLOCK, copy=False)
            if len(frames) == 1:
                self.user_id = str(part.get("User-Id") or "")
            if len(frames) < wire.MAX_BODY_FRAMES + 2:
                frames.append(part.bytes)
            else:
                dropped += 1
        return frames, dropped

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.disable_monitor()
            self._monitor.close()
            self._sock.close(0)


ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"

# authorize(domain, address, mechanism, client public key) -> (user id, "") or ("", reason)
Authorize = Callable[[str, str, str, bytes], tuple[str, str]]


class ZapAuthenticator:
    """The context's ZAP handler (RFC 27): libzmq asks it about every CURVE handshake.

    ``authorize`` returns the User-Id to attach to the client's messages, or a refusal
    reason. Bind it before any socket that needs it, and keep it for the context's life.
    """

    def __init__(self, ctx: zmq.Context[Any], authorize: Authorize) -> None:
        self._sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._authorize = authorize
        self._never: list[anyio.CancelScope | None] = [None]
        self.requests = 0
        self.refused = 0

    def _answer(self, frames: list[bytes]) -> list[bytes] | None:
        # [peer, b"", version, request id, domain, address, identity, mechanism, creds...]
        if len(frames) < 8 or frames[1] != b"":
            return None
        peer, _, version, request_id, domain, address, _identity, mechanism = frames[:8]
        creds = frames[8] if len(frames) > 8 else b""
        self.requests += 1
        if version != b"1.0":
            return [peer, b"", b"1.0", request_id, b"500", b"unsupported ZAP version",
                    b"", b""]
        try:
            user, reason = self._authorize(domain.decode(), address.decode(),
                                           mechanism.decode(), creds)
        except Exception as exc:  # a broken authorizer refuses; it never admits
            log.exception("ZAP authorizer failed")
            user, reason = "", f"authorizer failed: {exc}"
        if not user:
            self.refused += 1
            return [peer, b"", b"1.0", request_id, b"400", reason.encode()[:255], b"", b""]
        return [peer, b"", b"1.0", request_id, b"200", b"OK", user.encode(), b""]

    async def run(self) -> None:
        """Own the ZAP socket until cancelled."""
        sock = self._sock
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                await _wait_fd(sock, self._never, lambda: False)
                continue
            reply = self._answer(frames)
            if reply is not None:
                sock.send_multipart(reply, zmq.NOBLOCK)

    def close(self) -> None:
        self._sock.close(0)


class DealerConnection:
    """A DEALER socket connected to a node endpoint, matching replies to requests by rid.

    Used by the client SDK and the demo's simulated systems; many requests may be in flight.
    """

    def __init__(self, ctx: zmq.Context[Any], url: str, *,
                 curve_keys: tuple[bytes, bytes, bytes] | None = None) -> None:
        self._sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._sock.setsockopt(zmq.RCVHWM, RECV_HWM)
        self._sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES * 4)
        if curve_keys is not None:
            public, secret, server = curve_keys
            self._sock.curve_publickey = public
            self._sock.curve_secretkey = secret
            self._sock.curve_serverkey = server
        self._sock.connect(url)
        self.url = url
        self.codec = ReplyCodec()
        self._outbox: collections.deque[Sequence[bytes]] = collections.deque()
        self._wake: list[anyio.CancelScope | None] = [None]
        self._waiters: dict[int, tuple[anyio.Event, list[Any]]] = {}
        self._rid = 0
        self.unmatched = 0
        self.undecodable = 0

    def next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def send_raw_nowait(self, frames: Sequence[bytes]) -> None:
        """Queue raw frames for the owner task to send (tests send malformed input so)."""
        self._outbox.append(frames)
        scope = self._wake[0]
        if scope is not None:
            scope.cancel()

    async def request(self, msg: Any, *, timeout: float = 10.0) -> Any:
        """Send ``msg`` and wait for the reply carrying the same request id."""
        return await self.request_raw(msg.rid, self.codec.encode(msg), timeout=timeout)

    async def request_raw(self, rid: int, body: bytes, *, timeout: float = 10.0) -> Any:
        """Send an encoded request whose request id is ``rid``; return the typed reply."""
        event = anyio.Event()
        slot: list[Any] = []
        self._waiters[rid] = (event, slot)
        self.send_raw_nowait((body,))
        try:
            with anyio.fail_after(timeout):
                await event.wait()
        except TimeoutError:
            raise RequestTimeoutError(
                f"no reply to request {rid} from {self.url} within {timeout:g} s"
            ) from None
        finally:
            self._waiters.pop(rid, None)
        return slot[0]

    async def run(self, on_unmatched: Callable[[Any], None] | None = None) -> None:
        """Own the socket until cancelled."""
        sock = self._sock
        outbox = self._outbox
        decode = self.codec.decode
        while True:
            busy = False
            while outbox:
                try:
                    sock.send_multipart(outbox[0], zmq.NOBLOCK)
                except zmq.Again:
                    break  # at the high-water mark: wait for POLLOUT
                outbox.popleft()
                busy = True
            for _ in range(RECV_BURST):
                try:
                    body = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                busy = True
                try:
                    msg = decode(body)
                except ProtocolError:
                    self.undecodable += 1
                    continue
                waiter = self._waiters.get(msg.rid)
                if waiter is None:
                    self.unmatched += 1
                    if on_unmatched is not None:
                        on_unmatched(msg)
                else:
                    waiter[1].append(msg)
                    waiter[0].set()
            if busy:
                await anyio.lowlevel.checkpoint()
            else:
                await _wait_fd(sock, self._wake, lambda: bool(outbox))

    def close(self) -> None:
        self._sock.close(0)


@asynccontextmanager
async def open_dealer(url: str, *, ctx: zmq.Context[Any] | None = None,
                      curve_keys: tuple[bytes, bytes, bytes] | None = None,
                      on_unmatched: Callable[[Any], None] | None = None,
                      ) -> AsyncIterator[DealerConnection]:
    """Connect a DEALER to ``url`` and run its owner task for the duration of the block."""
    conn = DealerConnection(ctx or zmq.Context.instance(), url, curve_keys=curve_keys)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run, on_unmatched)
            try:
                yield conn
            finally:
                tg.cancel_scope.cancel()
    finally:
        conn.close()


class BlockingDealer:
    """A DEALER used without an event loop (benchmark drivers, tools): send bodies, wait
    for replies with a timeout. Unbounded high-water marks: the caller bounds its window."""

    def __init__(self, url: str, *, ctx: zmq.Context[Any] | None = None) -> None:
        self._sock: zmq.Socket[Any] = (ctx or zmq.Context.instance()).socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.connect(url)

    def send(self, body: bytes) -> None:
        self._sock.send(body)

    def recv(self, timeout_s: float) -> bytes | None:
        """The next reply body, or None if none arrives within ``timeout_s``."""
        if not self._sock.poll(max(0, int(timeout_s * 1000 + 0.999)), zmq.POLLIN):
            return None
        return self._sock.recv()

    def ready(self) -> bool:
        """A reply is waiting."""
        return bool(self._sock.poll(0, zmq.POLLIN))

    def close(self) -> None:
        self._sock.close(0)


def request_blocking(url: str, body: bytes, *, timeout: float = 5.0) -> bytes:
    """One request/reply without an event loop (for CLI commands such as ``status``)."""
    dealer = BlockingDealer(url)
    try:
        dealer.send(body)
        reply = dealer.recv(timeout)
    finally:
        dealer.close()
    if reply is None:
        raise RequestTimeoutError(f"no answer from {url} within {timeout:g} s; is the node "
                                  "running?")
    return reply


__all__ = [
    "BlockingDealer",
    "DealerConnection",
    "Handler",
    "MonitorWatcher",
    "RouterEndpoint",
    "ZapAuthenticator",
    "configure_router",
    "open_dealer",
    "request_blocking",
]


class PullReceiver:
    """Owner of one PULL (or PAIR) socket fed by another thread, e.g. the native ingest
    thread's alert records: receives whole messages and hands each to a callback.

    Same pattern as :class:`RouterEndpoint`: ``anyio.wait_readable`` on the socket's FD,
    drain until ``EAGAIN``, re-check ``ZMQ_EVENTS`` before sleeping. The caller creates the
    socket; from :meth:`run` on this object alone uses it, and :meth:`close` closes it.
    """

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self._sock = sock
        self._never: list[anyio.CancelScope | None] = [None]
        self.received = 0

    def drain_nowait(self, on_message: Callable[[bytes], None], limit: int = RECV_BURST) -> int:
        """Hand up to ``limit`` queued messages to ``on_message``; how many there were."""
        n = 0
        while n < limit:
            try:
                body = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            on_message(body)
        self.received += n
        return n

    async def run(self, on_message: Callable[[bytes], None]) -> None:
        """Own the socket until cancelled."""
        while True:
            if self.drain_nowait(on_message):
                await anyio.lowlevel.checkpoint()
            else:
                await _wait_fd(self._sock, self._never, lambda: False)

    def close(self) -> None:
        self._sock.close(0)


__all__ += ["PullReceiver"]



class SocketGroup:
    """One owner task for several sockets, so that a message received on one member can be
    answered on another in the same task, with no second task to wake. The regional fabric
    runs its fabric ROUTER, its DEALER to each peer and its PAIR to the native ingest
    thread in one group: a forwarded transaction then costs one wake-up per hop.

    The owner sleeps on one epoll descriptor holding every member's ``ZMQ_FD`` and an
    eventfd that other tasks' :meth:`GroupMember.send` writes to; as everywhere in this
    module it drains each socket until ``EAGAIN`` and re-reads ``ZMQ_EVENTS`` of every
    member before it sleeps. Linux only (epoll, eventfd), as the native ingest is.
    """

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep.register(self._wake_fd, select.EPOLLIN)
        self._members: list[GroupMember] = []
        self._in_owner = False
        self._asleep = False
        self._closed = False

    def add(self, sock: zmq.Socket[Any], on_message: Callable[[list[bytes]], None], *,
            max_frames: int = 8, router: RouterSendErrors | None = None,
            user_id: bool = False) -> GroupMember:
        """Make the group the owner of ``sock`` (created and configured by the caller);
        ``on_message(frames)`` gets each multipart message (a ROUTER's with the identity
        first). ``router``: how a ROUTER member reports unroutable or refused sends.
        ``user_id``: a CURVE ROUTER; :attr:`GroupMember.user_id` is the ZAP User-Id of
        the message being handed to ``on_message``."""
        member = GroupMember(self, sock, on_message, max_frames, router, user_id)
        self._ep.register(cast(int, sock.getsockopt(zmq.FD)), select.EPOLLIN)
        self._members.append(member)
        return member

    def _wake(self) -> None:
        if self._asleep:
            os.eventfd_write(self._wake_fd, 1)

    async def run(self) -> None:
        """Own every member until cancelled."""
        members = self._members
        while True:
            busy = False
            self._in_owner = True
            try:
                for m in members:
                    busy = m._flush() or busy
                for m in members:
                    busy = m._drain() or busy
                for m in members:
                    busy = m._flush() or busy
            finally:
                self._in_owner = False
            if busy or any([m._ready() for m in members]):
                await anyio.lowlevel.checkpoint()
                continue
            self._asleep = True
            try:
                await anyio.wait_readable(self._ep.fileno())
            finally:
                self._asleep = False
            self._ep.poll(0)
            try:
                os.eventfd_read(self._wake_fd)
            except BlockingIOError:
                pass

    def close(self) -> None:
        """Close every member socket and the group's descriptors."""
        if not self._closed:
            self._closed = True
            for m in self._members:
                m._sock.close(0)
            self._ep.close()
            os.close(self._wake_fd)


class RouterSendErrors:
    """What a ROUTER member of a :class:`SocketGroup` does when a send fails: counts
    ``{name}_unroutable`` (peer gone; ``on_unroutable(identity)`` is called) or
    ``{name}_send_hwm_refused`` (peer not reading), as :class:`RouterEndpoint` does."""

    def __init__(self, name: str, counters: Counters,
                 on_unroutable: Callable[[bytes], None] | None = None) -> None:
        self.name = name
        self.counters = counters
        self.on_unroutable = on_unroutable


class GroupMember:
    """One socket of a :class:`SocketGroup`; :meth:`send` from any task of the loop."""

    def __init__(self, group: SocketGroup, sock: zmq.Socket[Any],
                 on_message: Callable[[list[bytes]], None], max_frames: int,
                 router: RouterSendErrors | None, user_id: bool = False) -> None:
        self._group = group
        self._sock = sock
        self._on_message = on_message
        self._max_frames = max_frames
        self._router = router
        self._want_user_id = user_id
        self.user_id = ""  # authenticated User-Id (ZAP) of the message being handled
        self._outbox: collections.deque[Sequence[bytes]] = collections.deque()
        self.received = 0
        self.frames_dropped = 0

    @property
    def queued(self) -> int:
        """Messages waiting for the socket to accept them."""
        return len(self._outbox)

    def send(self, frames: Sequence[bytes]) -> None:
        """Send now when called by the owner (a member's callback), else hand it over."""
        if self._group._in_owner and not self._outbox:
            if not self._send(frames):
                self._outbox.append(frames)
        else:
            self._outbox.append(frames)
            self._group._wake()

    def _send(self, frames: Sequence[bytes]) -> bool:
        """True when sent or dropped for good; False: at the high-water mark, keep it."""
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            r = self._router
            if r is None:
                if exc.errno == zmq.EAGAIN:
                    return False
                raise
            if exc.errno == zmq.EHOSTUNREACH:
                r.counters.inc(f"{r.name}_unroutable")
                if r.on_unroutable is not None:
                    r.on_unroutable(frames[0])
            elif exc.errno == zmq.EAGAIN:
                r.counters.inc(f"{r.name}_send_hwm_refused")
            else:
                raise
            return True

    def _flush(self) -> bool:
        outbox = self._outbox
        sent = False
        while outbox:
            frames = outbox[0]
            if not self._send(frames):
                break
            outbox.popleft()
            sent = True
        return sent

    def _drain(self) -> bool:
        got = False
        for _ in range(RECV_BURST):
            try:
                if self._want_user_id:
                    frames, dropped, self.user_id = _recv_frames_user(self._sock,
                                                                      self._max_frames)
                else:
                    frames, dropped = _recv_frames(self._sock, self._max_frames)
            except zmq.Again:
                break
            got = True
            self.received += 1
            self.frames_dropped += dropped
            self._on_message(frames)
        return got

    def _ready(self) -> bool:
        events = cast(int, self._sock.getsockopt(zmq.EVENTS))
        return bool(events & zmq.POLLIN or (self._outbox and events & zmq.POLLOUT))


__all__ += ["GroupMember", "RouterSendErrors", "SocketGroup"]
