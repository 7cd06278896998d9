"""Codec: every malformed input becomes a typed ProtocolError; good input decodes."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import wire
from gateway.codec import Endpoint, EndpointCodec, ReplyCodec
from gateway.errors import ErrorCode, ProtocolError

TX = wire.Transaction("tx-1", 42, 7, 125_00, "EUR", wire.Channel.CARD, 5411, "dev-1",
                      "10.0.0.1", "DE", "Berlin", 1_700_000_000_000)


def enc(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


def code_of(ep: Endpoint, frames: list[bytes]) -> tuple[ErrorCode, int]:
    with pytest.raises(ProtocolError) as info:
        EndpointCodec(ep).decode(frames)
    return info.value.code, info.value.request_id


def test_score_request_round_trip() -> None:
    codec = EndpointCodec(Endpoint.INGEST)
    body = codec.encode(wire.ScoreRequest(1, 9, [TX, TX]))
    msg = codec.decode([body])
    assert isinstance(msg, wire.ScoreRequest)
    assert msg.rid == 9 and msg.txs == [TX, TX]


def test_array_layout_is_documented_shape() -> None:
    raw = msgspec.msgpack.decode(enc(wire.ScoreRequest(1, 3, [TX])))
    assert raw[:3] == ["score", 1, 3]
    assert raw[3][0] == ["tx-1", 42, 7, 12500, "EUR", "card", 5411, "dev-1", "10.0.0.1", "DE",
                         "Berlin", 1_700_000_000_000]


@pytest.mark.parametrize("ep", list(Endpoint))
def test_garbage_bytes(ep: Endpoint) -> None:
    assert code_of(ep, [b"\xc1\xff garbage"]) == (ErrorCode.MALFORMED, 0)


@pytest.mark.parametrize("ep", list(Endpoint))
def test_empty_message(ep: Endpoint) -> None:
    assert code_of(ep, [b""])[0] is ErrorCode.EMPTY_MESSAGE
    assert code_of(ep, [])[0] is ErrorCode.EMPTY_MESSAGE


@pytest.mark.parametrize("ep", list(Endpoint))
def test_too_many_frames(ep: Endpoint) -> None:
    ping = enc(["ping", 1, 1])
    assert code_of(ep, [ping, ping])[0] is ErrorCode.TOO_MANY_FRAMES


@pytest.mark.parametrize("ep", list(Endpoint))
def test_unknown_type_keeps_request_id(ep: Endpoint) -> None:
    assert code_of(ep, [enc(["launch_missiles", 1, 77])]) == (ErrorCode.UNKNOWN_TYPE, 77)


@pytest.mark.parametrize("ep", list(Endpoint))
def test_wrong_version(ep: Endpoint) -> None:
    assert code_of(ep, [enc(["ping", 2, 5])]) == (ErrorCode.UNSUPPORTED_VERSION, 5)
    assert code_of(ep, [enc(["ping", 0, 6, "future", "fields"])]) == (
        ErrorCode.UNSUPPORTED_VERSION, 6)


def test_wrong_endpoint() -> None:
    body = enc(["status", 1, 4])
    assert code_of(Endpoint.INGEST, [body]) == (ErrorCode.WRONG_ENDPOINT, 4)
    assert isinstance(EndpointCodec(Endpoint.SERVICES).decode([body]), wire.StatusRequest)


def test_field_of_wrong_type_and_truncated_batch() -> None:
    good = msgspec.msgpack.decode(enc(wire.ScoreRequest(1, 8, [TX])))
    bad_amount = [*good[:3], [[*good[3][0][:3], "lots", *good[3][0][4:]]]]
    assert code_of(Endpoint.INGEST, [enc(bad_amount)]) == (ErrorCode.MALFORMED, 8)
    truncated = [*good[:3], [good[3][0][:5]]]
    assert code_of(Endpoint.INGEST, [enc(truncated)]) == (ErrorCode.MALFORMED, 8)
    negative = [*good[:3], [[*good[3][0][:3], -1, *good[3][0][4:]]]]
    assert code_of(Endpoint.INGEST, [enc(negative)])[0] is ErrorCode.MALFORMED


def test_batch_caps() -> None:
    codec = EndpointCodec(Endpoint.INGEST)
    big = codec.encode(wire.ScoreRequest(1, 2, [TX] * (wire.MAX_BATCH + 1)))
    assert code_of(Endpoint.INGEST, [big]) == (ErrorCode.TOO_LARGE, 2)
    empty = codec.encode(wire.ScoreRequest(1, 3, []))
    assert code_of(Endpoint.INGEST, [empty]) == (ErrorCode.INVALID, 3)


def test_error_reply_is_a_typed_error() -> None:
    codec = EndpointCodec(Endpoint.CLIENTS)
    body = codec.error_reply(ProtocolError(ErrorCode.UNKNOWN_TYPE, "nope", 12))
    reply = ReplyCodec().decode(body)
    assert reply == wire.Error(1, 12, int(ErrorCode.UNKNOWN_TYPE), "UNKNOWN_TYPE", "nope")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    for ep in Endpoint:
        try:
            EndpointCodec(ep).decode([data])
        except ProtocolError as exc:
            assert isinstance(exc.code, ErrorCode)


def test_currency_and_country_refuse_a_trailing_newline() -> None:
    good = msgspec.msgpack.decode(enc(wire.ScoreRequest(1, 8, [TX])))
    for index, value in ((4, "EUR\n"), (9, "DE\n"), (9, "\n")):
        tx = list(good[3][0])
        tx[index] = value
        assert code_of(Endpoint.INGEST, [enc([*good[:3], [tx]])]) == (ErrorCode.MALFORMED, 8)


def test_bool_request_id_is_not_echoed() -> None:
    assert code_of(Endpoint.INGEST, [enc(["nope", 1, True])]) == (ErrorCode.UNKNOWN_TYPE, 0)
