"""Wire codec cost: decoding a score request and encoding its reply in Python."""

from __future__ import annotations

from typing import Any

from gateway import wire
from gateway.codec import Endpoint, EndpointCodec

TX = wire.Transaction("tx-000001", 1234567, 7654321, 250000, "EUR", wire.Channel.CARD, 5411,
                      "dev-8f2c", "203.0.113.7", "DE", "Berlin", 1_763_712_000_000)
DECISION = wire.Decision("tx-000001", wire.Outcome.STEP_UP, wire.StepUpMethod.SMS_DOWN, 45,
                         wire.ScoringPath.FULL, ("R0112", "R0340"), 3)


def test_decode_single(benchmark: Any) -> None:
    codec = EndpointCodec(Endpoint.INGEST)
    body = codec.encode(wire.ScoreRequest(1, 1, [TX]))
    msg = benchmark(codec.decode, [body])
    assert msg.txs == [TX]


def test_decode_batch_64(benchmark: Any) -> None:
    codec = EndpointCodec(Endpoint.INGEST)
    body = codec.encode(wire.ScoreRequest(1, 1, [TX] * 64))
    msg = benchmark(codec.decode, [body])
    assert len(msg.txs) == 64


def test_encode_reply_64(benchmark: Any) -> None:
    codec = EndpointCodec(Endpoint.INGEST)
    reply = wire.ScoreReply(1, 1, [DECISION] * 64)
    body = benchmark(codec.encode, reply)
    assert body.startswith(b"\x94\xa6scored")
