"""Notification channels of the escalation ladder: signed webhooks (SMS and voice
providers) and e-mail over SMTP.

Every ``send`` blocks and is meant for a worker thread (the caller wraps it in
``anyio.to_thread.run_sync`` with a capacity limiter). It never raises for network or
provider failures: the outcome, good or bad, is a :class:`PageResult` whose ``reply``
says what the provider answered or what went wrong.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import hmac
import http.client
import json
import smtplib
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final, Protocol

MAX_REPLY_CHARS: Final = 500
MAX_RESPONSE_BYTES: Final = 4096
SIGNATURE_PREFIX: Final = "sha256="
TIMESTAMP_HEADER: Final = "X-Gateway-Timestamp"
SIGNATURE_HEADER: Final = "X-Gateway-Signature"


@dataclass(frozen=True)
class Page:
    """One attempt to reach one officer over one channel."""

    incident: int
    step: int
    officer: str
    channel: str
    address: str  # phone number, e-mail address or provider-side id
    subject: str
    text: str
    attempt_id: str  # unique per attempt, for provider-side dedupe


@dataclass(frozen=True)
class PageResult:
    """What became of a :class:`Page`."""

    ok: bool
    reply: str  # the provider's reply, or the error
    elapsed_ms: int


class NotificationChannel(Protocol):
    """Anything that can deliver a page; ``kind`` names the channel ("webhook", "email")."""

    kind: str

    def send(self, page: Page) -> PageResult: ...


def _reply(text: str) -> str:
    return text if len(text) <= MAX_REPLY_CHARS else text[: MAX_REPLY_CHARS - 3] + "..."


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _network_error(exc: BaseException, where: str) -> str:
    """A one-line explanation of a failed connection or exchange with ``where``."""
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, TimeoutError):
        return f"timed out talking to {where}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where}: {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure with {where}: {exc}"
    return f"{type(exc).__name__} talking to {where}: {exc}"


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye and close; the page's outcome is already known."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Gateway-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, header: str, *,
                     max_skew_s: float = 300, now: float | None = None) -> bool:
    """True when ``header`` signs ``body`` at ``timestamp`` with ``secret`` and the
    timestamp lies within ``max_skew_s`` of ``now`` (replays of old requests fail)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > max_skew_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.encode())


class WebhookChannel:
    """HTTP(S) POST of a JSON page, signed with HMAC-SHA256 over ``timestamp.body``."""

    kind: str = "webhook"

    def __init__(self, url: str, secret: bytes, timeout_s: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url must be http:// or https:// with a host: {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self._secret = secret
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def __repr__(self) -> str:
        return f"WebhookChannel({self.url!r})"

    def body(self, page: Page, ts: int) -> bytes:
        """The JSON document posted for ``page``."""
        doc = {"incident": page.incident, "step": page.step, "officer": page.officer,
               "channel": page.channel, "to": page.address, "subject": page.subject,
               "text": page.text, "attempt_id": page.attempt_id, "ts": ts}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    def send(self, page: Page) -> PageResult:
        start = time.monotonic()
        ts = int(time.time())
        body = self.body(page, ts)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, str(ts), body),
            "Idempotency-Key": page.attempt_id,
        }
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout_s)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        try:
            conn.request("POST", self._target, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace").strip()
            status = resp.status
            reason = resp.reason
        except (OSError, http.client.HTTPException) as exc:
            return PageResult(False, _reply(_network_error(exc, self.url)),
                              _elapsed_ms(start))
        finally:
            conn.close()
        reply = f"{status} {text or reason}"
        return PageResult(200 <= status < 300, _reply(reply), _elapsed_ms(start))


class SmtpChannel:
    """E-mail through an SMTP relay; the reply is the server's answer to ``DATA``."""

    kind: str = "email"

    def __init__(self, host: str, port: int, sender: str, timeout_s: float = 5.0,
                 starttls: bool = False, username: str = "", password: str = "") -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout_s = timeout_s
        self.starttls = starttls
        self.username = username
        self._password = password

    def __repr__(self) -> str:
        return f"SmtpChannel({self.host!r}, {self.port}, sender={self.sender!r})"

    def message(self, page: Page) -> EmailMessage:
        """The e-mail sent for ``page``; its Message-ID derives from the attempt id."""
        msg = EmailMessage(policy=email.policy.SMTP.clone(cte_type="7bit"))
        domain = self.sender.rpartition("@")[2] or "risk-gateway"
        msg["From"] = self.sender
        msg["To"] = page.address
        msg["Subject"] = page.subject
        msg["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{page.attempt_id}@{domain}>"
        msg["X-Gateway-Incident"] = str(page.incident)
        msg["X-Gateway-Step"] = str(page.step)
        msg["X-Gateway-Officer"] = page.officer
        msg.set_content(page.text)
        return msg

    def send(self, page: Page) -> PageResult:
        start = time.monotonic()
        where = f"smtp://{self.host}:{self.port}"
        try:
            data = self.message(page).as_bytes()
        except (ValueError, TypeError) as exc:  # an address or header email cannot carry
            return PageResult(False, _reply(f"cannot build the e-mail: {exc}"),
                              _elapsed_ms(start))
        smtp: smtplib.SMTP | None = None
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s,
                                local_hostname=socket.gethostname())
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password)
            code, text = smtp.mail(self.sender)
            if code != 250:
                return self._refused("MAIL FROM", code, text, start)
            code, text = smtp.rcpt(page.address)
            if code not in (250, 251):
                return self._refused("RCPT TO", code, text, start)
            code, text = smtp.data(data)
        except smtplib.SMTPResponseException as exc:
            return self._refused("SMTP", exc.smtp_code, exc.smtp_error, start)
        except (OSError, smtplib.SMTPException) as exc:
            return PageResult(False, _reply(_network_error(exc, where)), _elapsed_ms(start))
        finally:
            if smtp is not None:
                _quit(smtp)
        reply = f"{code} {text.decode('utf-8', 'replace')}"
        return PageResult(code == 250, _reply(reply), _elapsed_ms(start))

    @staticmethod
    def _refused(stage: str, code: int, text: bytes | str, start: float) -> PageResult:
        detail = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        return PageResult(False, _reply(f"{code} {detail} ({stage} refused)"),
                          _elapsed_ms(start))


Channel = WebhookChannel | SmtpChannel

__all__ = [
    "Channel",
    "NotificationChannel",
    "Page",
    "PageResult",
    "SmtpChannel",
    "WebhookChannel",
    "sign",
    "verify_signature",
]
