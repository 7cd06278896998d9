"""The native request decoder answers exactly as gateway/codec.py does (code and rid)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_helpers import TX, encode

from gateway import _native, wire
from gateway.codec import Endpoint, EndpointCodec
from gateway.errors import ProtocolError

CODEC = EndpointCodec(Endpoint.INGEST)


def python_answer(body: bytes) -> tuple[int, int]:
    try:
        msg = CODEC.decode([body])
    except ProtocolError as err:
        # codec._classify takes a bool rid (``true``) for an int; the native decoder, like
        # the wire type (U64), does not, and answers with rid 0
        rid = err.request_id
        return int(err.code), 0 if isinstance(rid, bool) else int(rid)
    return 0, int(msg.rid)


def native_answer(body: bytes) -> tuple[int, int]:
    code, _kind, rid, _n = _native.ingest_decode(body)
    return code, rid


def tx_with(i: int, value: Any) -> list[Any]:
    tx = list(TX)
    tx[i] = value
    return tx


VECTORS: list[tuple[str, bytes]] = [
    ("score", encode(["score", 1, 5, [TX]])),
    ("bool rid", encode(["score", 1, True, [TX[:3]]])),
    ("extra trailing field ignored", encode(["score", 1, 5, [TX], 1])),
    ("ping", encode(["ping", 1, 5])),
    ("ping extra", encode(["ping", 1, 5, 7])),
    ("empty body", b""),
    ("not msgpack", b"\xc1"),
    ("trailing bytes", encode(["score", 1, 5, [TX]]) + b"\x00"),
    ("truncated", encode(["score", 1, 5, [TX]])[:-1]),
    ("truncated batch", encode(["score", 1, 5, [TX, TX]])[:-30]),
    ("short tx", encode(["score", 1, 5, [TX[:11]]])),
    ("wrong type amount", encode(["score", 1, 5, [tx_with(3, "100")]])),
    ("bool amount", encode(["score", 1, 5, [tx_with(3, True)]])),
    ("float amount", encode(["score", 1, 5, [tx_with(3, 1.0)]])),
    ("negative amount", encode(["score", 1, 5, [tx_with(3, -1)]])),
    ("amount over i64", encode(["score", 1, 5, [tx_with(3, 2**63)]])),
    ("lower-case currency", encode(["score", 1, 5, [tx_with(4, "eur")]])),
    ("currency newline", encode(["score", 1, 5, [tx_with(4, "EUR\n")]])),
    ("unknown channel", encode(["score", 1, 5, [tx_with(5, "CARD")]])),
    ("mcc over", encode(["score", 1, 5, [tx_with(6, 10000)]])),
    ("device 64 chars", encode(["score", 1, 5, [tx_with(7, "é" * 64)]])),
    ("device 65 chars", encode(["score", 1, 5, [tx_with(7, "é" * 65)]])),
    ("ip 46", encode(["score", 1, 5, [tx_with(8, "1" * 46)]])),
    ("bad country", encode(["score", 1, 5, [tx_with(9, "F")]])),
    ("empty country", encode(["score", 1, 5, [tx_with(9, "")]])),
    ("ts over 2^53", encode(["score", 1, 5, [tx_with(11, 2**53 + 1)]])),
    ("empty tx id", encode(["score", 1, 5, [tx_with(0, "")]])),
    ("bad utf-8 tx id", b"\x94\xa5score\x01\x05\x91\x9c\xa2t\xff" + encode(TX[1:])),
    ("bad utf-8 ignored", b"\x95\xa5score\x01\x05" + encode([TX]) + b"\xa2\xff\xfe"),
    ("wrong version", encode(["score", 2, 5, [TX]])),
    ("wrong version ping", encode(["ping", 0, 9])),
    ("bool version", encode(["score", True, 5, [TX]])),
    ("nil version", encode(["score", None, 5, [TX]])),
    ("negative rid", encode(["score", 1, -1, [TX]])),
    ("wrong endpoint", encode(["status", 1, 5])),
    ("unknown type", encode(["nope", 1, 5])),
    ("no tag", encode([1])),
    ("map", encode({"a": 1})),
    ("short message", encode(["score", 1])),
    ("empty batch", encode(["score", 1, 5, []])),
    ("oversized batch", encode(["score", 1, 5, [TX] * (wire.MAX_BATCH + 1)])),
    ("oversized batch bad tail", encode(["score", 1, 5, [TX] * (wire.MAX_BATCH + 1) + [1]])),
    ("max batch", encode(["score", 1, 5, [TX] * wire.MAX_BATCH])),
    ("deep nesting", b"\x94\xa5score\x01\x05\x91" + b"\x91" * 500 + b"\x90"),
    ("uint64 rid", encode(["score", 1, 2**64 - 1, [TX]])),
    ("longest tx id", encode(["score", 1, 5, [tx_with(0, "\U0001d11e" * 64)]])),
    ("tx id 65 chars", encode(["score", 1, 5, [tx_with(0, "\U0001d11e" * 65)]])),
]


@pytest.mark.parametrize(("name", "body"), VECTORS, ids=[n for n, _ in VECTORS])
def test_known_vectors_match_python_codec(name: str, body: bytes) -> None:
    assert native_answer(body) == python_answer(body)


def test_decoded_fields() -> None:
    code, kind, rid, n = _native.ingest_decode(encode(["score", 1, 42, [TX, TX, TX]]))
    assert (code, kind, rid, n) == (0, 2, 42, 3)


_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False), st.text(max_size=70), st.binary(max_size=8),
    st.sampled_from(["card", "EUR", "FR", "", "score", "ping", "EUR\n"]),
)
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4), max_leaves=8)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A valid request with one field replaced, dropped or appended, or its bytes cut."""
    txs = [list(TX) for _ in range(draw(st.integers(1, 3)))]
    msg: list[Any] = [draw(st.sampled_from(["score", "ping", "status", "x"])), 1,
                      draw(st.integers(0, 2**64 - 1)), txs]
    where = draw(st.integers(0, 3))
    if where == 0:
        msg[draw(st.integers(0, 3))] = draw(_value)
    elif where == 1:
        tx = txs[draw(st.integers(0, len(txs) - 1))]
        tx[draw(st.integers(0, 11))] = draw(_value)
    elif where == 2:
        del msg[draw(st.integers(1, 3)):]
    else:
        txs[0].append(draw(_value))
    body = encode(msg)
    if draw(st.booleans()) and draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_requests())
def test_fuzz_structured_matches_python(body: bytes) -> None:
    assert native_answer(body) == python_answer(body)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_crash(body: bytes) -> None:
    code, _kind, _rid, _n = _native.ingest_decode(body)
    assert code == python_answer(body)[0]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_fuzz_garbage_after_valid_prefix(tail: bytes) -> None:
    body = encode(["score", 1, 7, [TX]])[:-3] + tail
    assert native_answer(body)[0] == python_answer(body)[0]


def test_msgspec_roundtrip_of_reply_types() -> None:
    # the Python reply decoder accepts what the native encoder writes (see test_ingest)
    assert msgspec.msgpack.decode(encode(["busy", 1, 3, 5]), type=wire.Reply) == wire.Busy(1, 3, 5)


def test_native_knows_every_other_request_tag() -> None:
    """The native decoder answers WRONG_ENDPOINT for exactly the request types of the other
    endpoints, as the Python codec does."""
    import re
    from pathlib import Path

    from gateway import wire

    src = (Path(__file__).parents[2] / "native" / "gw_ingest_decode.c").read_text()
    block = re.search(r"OTHER_TAGS\[\] = \{(.*?)\};", src, re.S)
    assert block is not None
    native = set(re.findall(r'"([a-z_]+)"', block.group(1)))
    assert native == set(wire.REQUEST_TAGS) - {"ping", "score"}
