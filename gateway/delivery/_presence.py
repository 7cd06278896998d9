"""Device presence from heartbeats: online, away, offline, last seen.

A device is online (or away, as its client says) while heartbeats arrive; without one for
``offline_after_ms`` it is offline. Every call returns the changes it caused, so the shell
can publish them to followers. Time is passed in (milliseconds of the node's wall clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.wire import PresenceEntry, PresenceState


@dataclass(slots=True)
class _Device:
    officer: str
    device: str
    state: PresenceState
    last_seen_ms: int


class PresenceTracker:
    def __init__(self, *, offline_after_ms: int) -> None:
        if offline_after_ms <= 0:
            raise ValueError("offline_after_ms must be positive")
        self.offline_after_ms = offline_after_ms
        self._devices: dict[tuple[str, str], _Device] = {}

    @staticmethod
    def _entry(d: _Device) -> PresenceEntry:
        return PresenceEntry(d.officer, d.device, d.state, d.last_seen_ms)

    def beat(self, officer: str, device: str, *, away: bool, now_ms: int,
             ) -> PresenceEntry | None:
        """A heartbeat (or attach) from the device; the change it makes, if any."""
        state = PresenceState.AWAY if away else PresenceState.ONLINE
        key = (officer, device)
        d = self._devices.get(key)
        if d is None:
            d = self._devices[key] = _Device(officer, device, state, now_ms)
            return self._entry(d)
        d.last_seen_ms = max(d.last_seen_ms, now_ms)
        if d.state is state:
            return None
        d.state = state
        return self._entry(d)

    def leave(self, officer: str, device: str, *, now_ms: int) -> PresenceEntry | None:
        """The device detached (bye, session ended): offline now."""
        d = self._devices.get((officer, device))
        if d is None or d.state is PresenceState.OFFLINE:
            return None
        d.state = PresenceState.OFFLINE
        d.last_seen_ms = max(d.last_seen_ms, now_ms)
        return self._entry(d)

    def expire(self, now_ms: int) -> list[PresenceEntry]:
        """Devices silent for ``offline_after_ms`` go offline; the changes."""
        out = []
        limit = now_ms - self.offline_after_ms
        for d in self._devices.values():
            if d.state is not PresenceState.OFFLINE and d.last_seen_ms <= limit:
                d.state = PresenceState.OFFLINE
                out.append(self._entry(d))
        return out

    def state(self, officer: str, device: str) -> PresenceState:
        d = self._devices.get((officer, device))
        return PresenceState.OFFLINE if d is None else d.state

    def officer_state(self, officer: str) -> PresenceState:
        """The best state over the officer's devices."""
        best = PresenceState.OFFLINE
        for d in self._devices.values():
            if d.officer == officer:
                if d.state is PresenceState.ONLINE:
                    return d.state
                if d.state is PresenceState.AWAY:
                    best = d.state
        return best

    def entries(self, officers: set[str] | None = None) -> list[PresenceEntry]:
        return [self._entry(d) for d in self._devices.values()
                if officers is None or d.officer in officers]

    def online_officers(self) -> set[str]:
        return {d.officer for d in self._devices.values()
                if d.state is not PresenceState.OFFLINE}
