"""Sans-IO codec of the fabric endpoint: frames in, typed messages or typed errors out.

The fabric endpoint serves other nodes only; its requests are ``fab_hello``, ``ping``,
``score`` (a forwarded request), ``trust_put`` and ``trust_sync``. Every refusal is a
:class:`~gateway.errors.ProtocolError` that the shell answers with an ``error`` reply and
counts as ``fabric_errors.<NAME>``, exactly as the other endpoints do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from gateway import wire
from gateway.codec import ReplyCodec, error_message
from gateway.errors import ErrorCode, ProtocolError

FABRIC_TAGS: Final = frozenset(t.__struct_config__.tag for t in wire.FabricRequest.__args__)


class FabricCodec:
    """Decode requests arriving at the fabric endpoint; encode its replies."""

    def __init__(self) -> None:
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
            wire.FabricRequest)
        self._encoder = wire.encoder()

    def decode(self, frames: Sequence[bytes], dropped: int = 0) -> Any:
        if not frames or (len(frames) == 1 and not frames[0] and not dropped):
            raise ProtocolError(ErrorCode.EMPTY_MESSAGE, "message has no body")
        if len(frames) + dropped > wire.MAX_BODY_FRAMES:
            raise ProtocolError(ErrorCode.TOO_MANY_FRAMES,
                                f"{len(frames) + dropped} body frames; at most "
                                f"{wire.MAX_BODY_FRAMES} accepted")
        body = frames[0]
        try:
            msg = self._decoder.decode(body)
        except (msgspec.MsgspecError, ValueError) as exc:
            raise _classify(body, str(exc)) from None
        except RecursionError:
            raise ProtocolError(ErrorCode.MALFORMED, "nesting too deep") from None
        if msg.v != wire.PROTOCOL_VERSION:
            raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                                f"protocol version {msg.v} is not supported", msg.rid)
        if isinstance(msg, wire.ScoreRequest) and not 1 <= len(msg.txs) <= wire.MAX_BATCH:
            raise ProtocolError(ErrorCode.INVALID if not msg.txs else ErrorCode.TOO_LARGE,
                                f"a forwarded request carries 1..{wire.MAX_BATCH} "
                                "transactions", msg.rid)
        return msg

    def encode(self, msg: msgspec.Struct) -> bytes:
        return self._encoder.encode(msg)

    def error_reply(self, err: ProtocolError) -> bytes:
        return self._encoder.encode(error_message(err))


def _classify(body: bytes, detail: str) -> ProtocolError:
    try:
        raw = msgspec.msgpack.decode(body)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return ProtocolError(ErrorCode.MALFORMED, "body is not valid msgpack")
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        return ProtocolError(ErrorCode.MALFORMED,
                             "a message is a msgpack array starting with its type tag")
    rid = raw[2] if (len(raw) > 2 and isinstance(raw[2], int) and not isinstance(raw[2], bool)
                     and 0 <= raw[2] < 2**64) else 0
    version = raw[1] if len(raw) > 1 else None
    if isinstance(version, int) and not isinstance(version, bool) and (
            version != wire.PROTOCOL_VERSION):
        return ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                             f"protocol version {version} is not supported", rid)
    tag = raw[0]
    if tag not in FABRIC_TAGS:
        if tag in wire.REQUEST_TAGS:
            return ProtocolError(ErrorCode.WRONG_ENDPOINT,
                                 f"message type {tag!r} is not served on the fabric endpoint",
                                 rid)
        return ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {tag!r}", rid)
    return ProtocolError(ErrorCode.MALFORMED, f"{tag}: {detail}", rid)


class FabricReplyCodec(ReplyCodec):
    """The DEALER side: encode requests to a peer, decode its replies."""

    def __init__(self) -> None:
        super().__init__(wire.FabricReply)


__all__ = ["FABRIC_TAGS", "FabricCodec", "FabricReplyCodec"]
