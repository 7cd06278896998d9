"""The package's exception tree and the wire error codes.

Remote errors (a peer sent something we refuse) carry a :class:`ErrorCode` that goes back
on the wire; local errors mean this process misused an API or met a broken environment.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Codes carried by the ``error`` reply; documented in docs/protocol.md."""

    MALFORMED = 1  # not msgpack, or a field of the wrong type / shape
    UNKNOWN_TYPE = 2  # message type tag not known to this endpoint's protocol
    UNSUPPORTED_VERSION = 3  # protocol version other than PROTOCOL_VERSION
    EMPTY_MESSAGE = 4  # a message with no body frame or an empty body
    TOO_MANY_FRAMES = 5  # more body frames than the endpoint accepts
    TOO_LARGE = 6  # batch or field over its cap
    WRONG_ENDPOINT = 7  # a valid message type sent to an endpoint that does not serve it
    INVALID = 8  # well-formed but semantically invalid (negative amount, bad currency, ...)
    UNAUTHORIZED = 9  # identity not allowed to do this
    RULES_INVALID = 10  # a rule file was refused; the running set stays
    NOT_FOUND = 11  # the referenced object does not exist
    INTERNAL = 12  # the node failed to serve a valid request; nothing was applied
    NOT_ATTACHED = 13  # the device has no session on this node (send `hello` again)
    # regional fabric (20..29)
    UNKNOWN_PEER = 20  # fabric message from a node that is not a configured peer, or no hello
    REGION_UNAVAILABLE = 21  # a home region cannot be reached now; nothing was applied
    DIRECTORY_MISMATCH = 22  # the peer's account directory differs from ours
    WRONG_REGION = 23  # a forwarded transaction's account is not homed at this node
    FORWARD_TIMEOUT = 24  # the home region did not answer in time; it may have applied it
    RELAY_GAP = 29  # alert_relay continues after an alert this node does not hold
    # incident response (30..39)
    SELF_APPROVAL = 30  # the maker of a command request cannot approve or reject it
    REQUEST_CLOSED = 31  # the command request was already decided, executed or expired


class GatewayError(Exception):
    """Base class of every error raised by the gateway package."""


class ProtocolError(GatewayError):
    """A peer sent input that violates the wire protocol (a *remote* error)."""

    def __init__(self, code: ErrorCode, message: str, request_id: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.name}, {self.message!r}, request_id={self.request_id})"


class RemoteError(GatewayError):
    """The node answered a request of ours with an ``error`` reply."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"{name} ({code}): {message}")
        self.code = code
        self.name = name
        self.message = message


class BusyError(GatewayError):
    """The node is saturated and asked us to retry after ``retry_after_ms``."""

    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(f"node busy, retry after {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


class ConfigError(GatewayError):
    """A configuration file is unusable: names the file, the key and the reason."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        super().__init__(f"{path}: {key}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


class NativeError(GatewayError):
    """A native call returned an error status."""

    def __init__(self, status: int, what: str) -> None:
        super().__init__(f"{what}: native status {status}")
        self.status = status


class NativeMemoryError(NativeError, MemoryError):
    """Native allocation failed."""


class NativeCapacityError(NativeError):
    """A bounded native table or buffer is full."""


class RequestTimeoutError(GatewayError):
    """A request to the node got no answer before its deadline."""


class SessionEndedError(GatewayError):
    """The node ended this officer device's session (key revoked, device replaced)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"session ended by the node: {reason}")
        self.reason = reason


__all__ = [
    "BusyError",
    "ConfigError",
    "ErrorCode",
    "GatewayError",
    "NativeCapacityError",
    "NativeError",
    "NativeMemoryError",
    "ProtocolError",
    "RemoteError",
    "RequestTimeoutError",
    "SessionEndedError",
]
