"""Real receivers on loopback standing in for the paging providers: an HTTP endpoint that
checks webhook signatures (the SMS / voice provider) and an SMTP server (the mail relay).

Used by ``gateway demo`` and the escalation tests. Each runs in its own daemon thread, is a
context manager, records what it accepted, and lets a caller wait for it with a deadline.
"""

from __future__ import annotations

import email.policy
import json
import socket
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.incident.adapters import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

MAX_BODY_BYTES: Final = 1 << 20
SHUTDOWN_POLL_S: Final = 0.05  # how often the HTTP server thread looks for close()
T = TypeVar("T")


def _wait_for(cond: threading.Condition, items: list[T], n: int, timeout: float,
              what: str) -> list[T]:
    """Block until ``items`` holds at least ``n`` entries; a copy of them."""
    with cond:
        if not cond.wait_for(lambda: len(items) >= n, timeout):
            raise TimeoutError(f"{len(items)} of {n} {what} within {timeout:g} s: "
                               f"{items!r}")
        return list(items)


class _Running:
    """A receiver used as a context manager: started on entry, closed on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class WebhookReceiver(_Running):
    """A signed-webhook endpoint: 401 for a bad signature, ``status`` for a good one, and
    503 for the first ``fail_first`` requests (a provider outage, to exercise failover)."""

    def __init__(self, secret: bytes, host: str = "127.0.0.1", port: int = 0,
                 fail_first: int = 0, status: int = 202) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.refused = 0  # requests with a missing or wrong signature
        self.failed = 0  # requests answered 503 because of fail_first
        self.requests = 0
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]!s}:{self.port}/"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                status, text = receiver._handle(self)
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _handle(self, request: BaseHTTPRequestHandler) -> tuple[int, str]:
        """Status and body of the answer to one POST."""
        try:
            length = int(request.headers.get("Content-Length", "0"))
        except ValueError:
            return 400, "bad Content-Length"
        if not 0 <= length <= MAX_BODY_BYTES:
            return 413, "body too large"
        body = request.rfile.read(length)
        with self._cond:
            self.requests += 1
            if self.failed < self.fail_first:
                self.failed += 1
                return 503, "provider unavailable"
        ok = verify_signature(self.secret, request.headers.get(TIMESTAMP_HEADER, ""), body,
                              request.headers.get(SIGNATURE_HEADER, ""))
        if not ok:
            with self._cond:
                self.refused += 1
            return 401, "bad signature"
        try:
            doc = json.loads(body)
        except ValueError:
            return 400, "body is not JSON"
        if not isinstance(doc, dict):
            return 400, "body is not a JSON object"
        with self._cond:
            self.received.append(doc)
            n = len(self.received)
            self._cond.notify_all()
        return self.status, f"queued id={n}"

    def wait_for(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """The accepted bodies once there are at least ``n``; TimeoutError otherwise."""
        return _wait_for(self._cond, self.received, n, timeout, "webhooks")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        args=(SHUTDOWN_POLL_S,),
                                        name=f"webhook-receiver:{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()


class _Mailbox:
    """The aiosmtpd handler: parses each accepted message and hands it on."""

    def __init__(self, deliver: Callable[[EmailMessage], None]) -> None:
        self._deliver = deliver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        msg = BytesParser(_class=EmailMessage, policy=email.policy.default).parsebytes(content)
        self._deliver(msg)
        return "250 2.0.0 Message accepted"


class _BoundController(Controller):
    """A Controller that serves an already bound listening socket (port 0 works)."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._listen_sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._listen_sock,
                                       ssl=self.ssl_context)


class SmtpReceiver(_Running):
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it accepts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.messages: list[EmailMessage] = []
        self._cond = threading.Condition()
        self._sock = socket.create_server((host, port))
        self.host: str = self._sock.getsockname()[0]
        self.port: int = self._sock.getsockname()[1]
        self._controller: _BoundController | None = None

    def _deliver(self, msg: EmailMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> list[EmailMessage]:
        """The accepted messages once there are at least ``n``; TimeoutError otherwise."""
        return _wait_for(self._cond, self.messages, n, timeout, "e-mails")

    def start(self) -> None:
        """Serve in a daemon thread; returns once the server answers connections."""
        if self._controller is not None:
            raise RuntimeError("SmtpReceiver already started")
        self._controller = _BoundController(_Mailbox(self._deliver), self._sock,
                                            server_hostname="localhost", ready_timeout=5.0)
        try:
            self._controller.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop(no_assert=True)
            if not controller.loop.is_closed():  # the server thread never ran the loop
                controller.loop.close()
        self._sock.close()


__all__ = ["SmtpReceiver", "WebhookReceiver"]
