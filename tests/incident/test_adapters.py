"""Notification adapters against real loopback receivers: signed webhooks and SMTP."""

from __future__ import annotations

import socket
import time

import pytest

from gateway.incident.adapters import (
    Page,
    SmtpChannel,
    WebhookChannel,
    sign,
    verify_signature,
)
from gateway.incident.receivers import SmtpReceiver, WebhookReceiver

SECRET = b"provider-shared-secret"


def page(attempt: str = "inc7-s1-alice-1", address: str = "+4915112345678") -> Page:
    return Page(incident=7, step=1, officer="alice", channel="sms", address=address,
                subject="[critical] incident 7: card fraud burst",
                text="Incident 7 needs you — acknowledge in the console.", attempt_id=attempt)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_reaches_receiver_signed() -> None:
    with WebhookReceiver(SECRET) as rx:
        result = WebhookChannel(rx.url, SECRET, timeout_s=2.0).send(page())
        assert result.ok, result
        assert result.reply == "202 queued id=1"
        [doc] = rx.wait_for(1, timeout=2.0)
    assert rx.refused == 0
    assert doc["incident"] == 7 and doc["step"] == 1 and doc["officer"] == "alice"
    assert doc["to"] == "+4915112345678" and doc["channel"] == "sms"
    assert doc["attempt_id"] == "inc7-s1-alice-1"
    assert doc["text"] == page().text and doc["subject"] == page().subject
    assert abs(doc["ts"] - time.time()) < 60


def test_webhook_wrong_secret_is_refused() -> None:
    with WebhookReceiver(SECRET) as rx:
        result = WebhookChannel(rx.url, b"not-the-secret", timeout_s=2.0).send(page())
        assert rx.refused == 1
        assert rx.received == []
    assert not result.ok
    assert result.reply.startswith("401")


def test_webhook_connection_refused_is_quick_and_clear() -> None:
    port = closed_port()
    result = WebhookChannel(f"http://127.0.0.1:{port}/hook", SECRET, timeout_s=2.0).send(page())
    assert not result.ok
    assert "connection refused" in result.reply and str(port) in result.reply
    assert result.elapsed_ms < 1000


def test_webhook_timeout_is_bounded() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        start = time.monotonic()
        result = WebhookChannel(url, SECRET, timeout_s=0.5).send(page())
        took = time.monotonic() - start
    assert not result.ok
    assert "timed out" in result.reply
    assert 0.4 <= took < 3.0


def test_webhook_fail_first_then_accepts() -> None:
    with WebhookReceiver(SECRET, fail_first=2) as rx:
        channel = WebhookChannel(rx.url, SECRET, timeout_s=2.0)
        first = channel.send(page("a-1"))
        second = channel.send(page("a-2"))
        third = channel.send(page("a-3"))
        docs = rx.wait_for(1, timeout=2.0)
    assert [first.ok, second.ok, third.ok] == [False, False, True]
    assert first.reply.startswith("503")
    assert [d["attempt_id"] for d in docs] == ["a-3"]
    assert rx.failed == 2 and rx.requests == 3


def test_webhook_receiver_wait_for_times_out_with_what_it_has() -> None:
    with WebhookReceiver(SECRET) as rx:
        assert WebhookChannel(rx.url, SECRET, timeout_s=2.0).send(page()).ok
        with pytest.raises(TimeoutError, match="1 of 2"):
            rx.wait_for(2, timeout=0.2)


def test_verify_signature() -> None:
    body = b'{"x":1}'
    now = 1_700_000_000
    header = sign(SECRET, str(now), body)
    assert verify_signature(SECRET, str(now), body, header, now=now + 10)
    assert not verify_signature(SECRET, str(now), body + b" ", header, now=now)
    assert not verify_signature(b"other", str(now), body, header, now=now)
    assert not verify_signature(SECRET, str(now), body, header, now=now + 301)
    assert not verify_signature(SECRET, "yesterday", body, header, now=now)
    assert not verify_signature(SECRET, str(now), body, header.removeprefix("sha256="),
                                now=now)


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookChannel("ftp://example.org/", SECRET)


def test_smtp_reaches_receiver() -> None:
    with SmtpReceiver() as rx:
        channel = SmtpChannel("127.0.0.1", rx.port, "gateway@bank.example", timeout_s=2.0)
        result = channel.send(page("inc7-s2-bob-1", address="bob@bank.example"))
        assert result.ok, result
        assert result.reply.startswith("250")
        [msg] = rx.wait_for(1, timeout=2.0)
    assert msg["To"] == "bob@bank.example"
    assert msg["From"] == "gateway@bank.example"
    assert msg["Subject"] == "[critical] incident 7: card fraud burst"
    assert msg["Message-ID"] == "<inc7-s2-bob-1@bank.example>"
    assert msg["X-Gateway-Incident"] == "7"
    assert msg.get_content().strip() == "Incident 7 needs you — acknowledge in the console."


def test_smtp_closed_port_is_not_ok() -> None:
    port = closed_port()
    result = SmtpChannel("127.0.0.1", port, "gateway@bank.example", timeout_s=2.0).send(
        page(address="bob@bank.example"))
    assert not result.ok
    assert "connection refused" in result.reply
    assert result.elapsed_ms < 1000
