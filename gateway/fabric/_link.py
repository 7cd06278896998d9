"""Liveness of the link from this node to one peer (our DEALER to its fabric endpoint).

Rules this machine keeps (time in seconds is passed in; nothing here waits):

- A link is ``up`` only between a ``fab_welcome`` and the first of: ``dead_after`` without
  hearing anything from the peer, or the peer refusing us as unknown (it restarted and
  forgot our hello). Then it is ``down`` until the next welcome.
- While not up, a hello goes out every ``heartbeat``; while up, a ping goes out every
  ``heartbeat``. With the shell ticking at least every ``heartbeat / 4``, a silent peer is
  declared down at most ``dead_after + heartbeat / 4`` after it was last heard (3.25 s with
  the defaults: within the 5 s the fabric promises).
- Every welcome reports whether the peer restarted (its epoch changed since the last
  welcome): what was in flight to it then has to be sent again.

Transitions (state, event -> state, actions):

    connecting/down  tick, hello due      -> same        SendHello
    connecting/down  welcome              -> up          LinkUp(restarted)
    up               tick, silent too long -> down       LinkDown, SendHello
    up               tick, ping due        -> up         SendPing
    up               refused (unknown)     -> down       LinkDown, SendHello
    up               welcome, new epoch    -> up         LinkUp(restarted=True)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LinkState(enum.Enum):
    CONNECTING = "connecting"  # never welcomed yet
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class SendHello:
    pass


@dataclass(frozen=True, slots=True)
class SendPing:
    pass


@dataclass(frozen=True, slots=True)
class LinkUp:
    restarted: bool  # the peer's epoch changed since the last welcome


@dataclass(frozen=True, slots=True)
class LinkDown:
    reason: str  # "silent" or "refused"
    silent_s: float


LinkAction = SendHello | SendPing | LinkUp | LinkDown


class PeerLink:
    """The link to one peer region; see the module docstring."""

    def __init__(self, region: str, *, heartbeat_s: float, dead_after_s: float,
                 now: float) -> None:
        if dead_after_s < 2 * heartbeat_s:
            raise ValueError("dead_after must be at least twice the heartbeat")
        self.region = region
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.state = LinkState.CONNECTING
        self.peer_epoch: int | None = None
        self.peer_node = ""
        self.last_heard = now
        self._last_hello = -float("inf")
        self._last_ping = now
        self.ups = 0
        self.downs = 0

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP

    def tick(self, now: float) -> list[LinkAction]:
        if self.state is LinkState.UP:
            silent = now - self.last_heard
            if silent >= self.dead_after_s:
                return self._lost("silent", now)
            if now - self._last_ping >= self.heartbeat_s:
                self._last_ping = now
                return [SendPing()]
            return []
        if now - self._last_hello >= self.heartbeat_s:
            self._last_hello = now
            return [SendHello()]
        return []

    def on_heard(self, now: float) -> None:
        """Any message from the peer arrived."""
        self.last_heard = now

    def on_welcome(self, epoch: int, node: str, now: float) -> list[LinkAction]:
        self.last_heard = now
        restarted = self.peer_epoch is not None and epoch != self.peer_epoch
        self.peer_epoch = epoch
        self.peer_node = node
        if self.state is LinkState.UP and not restarted:
            return []
        self.state = LinkState.UP
        self._last_ping = now
        self.ups += 1
        return [LinkUp(restarted)]

    def on_refused(self, now: float) -> list[LinkAction]:
        """The peer answered UNKNOWN_PEER: it no longer knows our hello."""
        if self.state is LinkState.UP:
            return self._lost("refused", now)
        self._last_hello = now
        return [SendHello()]

    def _lost(self, reason: str, now: float) -> list[LinkAction]:
        self.state = LinkState.DOWN
        self.downs += 1
        self._last_hello = now
        return [LinkDown(reason, now - self.last_heard), SendHello()]


__all__ = ["LinkAction", "LinkDown", "LinkState", "LinkUp", "PeerLink", "SendHello",
           "SendPing"]
