"""Sans-IO codecs: frames in, typed messages or typed protocol errors out.

One :class:`EndpointCodec` per socket owner, reusing one encoder and one typed decoder.
Every rejection is a :class:`~gateway.errors.ProtocolError` with a wire error code; the
caller turns it into an ``error`` reply and a counter. No I/O happens here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from gateway import wire
from gateway.errors import ErrorCode, ProtocolError


class Endpoint(enum.Enum):
    """The node's three ROUTER endpoints."""

    INGEST = "ingest"  # payment systems: score requests
    CLIENTS = "clients"  # officer apps
    SERVICES = "services"  # business systems and operators


_ENDPOINT_TYPES: Final[dict[Endpoint, Any]] = {
    Endpoint.INGEST: wire.IngestRequest,
    Endpoint.CLIENTS: wire.ClientRequest,
    Endpoint.SERVICES: wire.ServiceRequest,
}

_ENDPOINT_TAGS: Final[dict[Endpoint, frozenset[str]]] = {
    ep: frozenset(
        t.__struct_config__.tag for t in tp.__args__
    )
    for ep, tp in _ENDPOINT_TYPES.items()
}

def _version_error(version: int, rid: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.UNSUPPORTED_VERSION,
        f"protocol version {version} is not supported (this node speaks "
        f"{wire.PROTOCOL_VERSION})",
        rid,
    )


def _classify(body: bytes, endpoint: Endpoint, detail: str) -> ProtocolError:
    """Explain why ``body`` did not decode as a request for ``endpoint``."""
    try:
        raw = msgspec.msgpack.decode(body)
    except (msgspec.MsgspecError, ValueError, RecursionError):  # ValueError: bad UTF-8
        return ProtocolError(ErrorCode.MALFORMED, "body is not valid msgpack")
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        return ProtocolError(
            ErrorCode.MALFORMED, "a message is a msgpack array starting with its type tag"
        )
    tag = raw[0]
    rid = raw[2] if (len(raw) > 2 and isinstance(raw[2], int) and not isinstance(raw[2], bool)
                     and raw[2] >= 0) else 0
    version = raw[1] if len(raw) > 1 else None
    if isinstance(version, int) and not isinstance(version, bool):
        if version != wire.PROTOCOL_VERSION:
            return _version_error(version, rid)
    if tag not in _ENDPOINT_TAGS[endpoint]:
        if tag in wire.REQUEST_TAGS:
            return ProtocolError(
                ErrorCode.WRONG_ENDPOINT,
                f"message type {tag!r} is not served on the {endpoint.value} endpoint",
                rid,
            )
        return ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {tag!r}", rid)
    return ProtocolError(ErrorCode.MALFORMED, f"{tag}: {detail}", rid)


class EndpointCodec:
    """Decode requests arriving at one endpoint and encode the replies it sends."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
            _ENDPOINT_TYPES[endpoint]
        )
        self._encoder = wire.encoder()

    def decode(self, frames: Sequence[bytes], dropped: int = 0) -> Any:
        """Decode the body frames of one message (the ROUTER identity already removed).

        ``dropped`` counts further frames the transport read and discarded past its cap.
        """
        if not frames or (len(frames) == 1 and not frames[0] and not dropped):
            raise ProtocolError(ErrorCode.EMPTY_MESSAGE, "message has no body")
        if len(frames) + dropped > wire.MAX_BODY_FRAMES:
            raise ProtocolError(
                ErrorCode.TOO_MANY_FRAMES,
                f"{len(frames) + dropped} body frames; at most {wire.MAX_BODY_FRAMES} accepted",
            )
        body = frames[0]
        if len(body) > wire.MAX_FRAME_BYTES:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"frame of {len(body)} bytes over {wire.MAX_FRAME_BYTES}"
            )
        try:
            msg = self._decoder.decode(body)
        except (msgspec.MsgspecError, ValueError) as exc:
            raise _classify(body, self.endpoint, str(exc)) from None
        except RecursionError:
            raise ProtocolError(ErrorCode.MALFORMED, "nesting too deep") from None
        if msg.v != wire.PROTOCOL_VERSION:
            raise _version_error(msg.v, msg.rid)
        if isinstance(msg, wire.ScoreRequest):
            if not msg.txs:
                raise ProtocolError(ErrorCode.INVALID, "score request with no transaction",
                                    msg.rid)
            if len(msg.txs) > wire.MAX_BATCH:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"batch of {len(msg.txs)} transactions; at most {wire.MAX_BATCH}",
                    msg.rid,
                )
        return msg

    def encode(self, msg: msgspec.Struct) -> bytes:
        return self._encoder.encode(msg)

    def error_reply(self, err: ProtocolError) -> bytes:
        return self._encoder.encode(error_message(err))


def error_message(err: ProtocolError) -> wire.Error:
    """The ``error`` reply for a refused request (every endpoint's, the fabric's too)."""
    return wire.Error(wire.PROTOCOL_VERSION, err.request_id, int(err.code), err.code.name,
                      err.message)


class ReplyCodec:
    """Client side: encode requests, decode any reply (of ``replies``, a union of reply
    types; by default every reply of the node's endpoints)."""

    def __init__(self, replies: Any = wire.Reply) -> None:
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(replies)
        self._encoder = wire.encoder()

    def encode(self, msg: msgspec.Struct) -> bytes:
        return self._encoder.encode(msg)

    def decode(self, body: bytes) -> Any:
        try:
            return self._decoder.decode(body)
        except (msgspec.MsgspecError, ValueError, RecursionError) as exc:
            raise ProtocolError(ErrorCode.MALFORMED, f"undecodable reply: {exc}") from None


__all__ = ["Endpoint", "EndpointCodec", "ReplyCodec"]
