"""Sans-IO machines of reliable delivery: priority lanes, per-device streams, presence.

No sockets, no event loop, no clock: the shell (``gateway.alerting``) passes time in and
does the I/O. Each machine is plain calls and is tested without an event loop.
"""

from gateway.delivery._lanes import CRITICAL, LaneScheduler
from gateway.delivery._presence import PresenceTracker
from gateway.delivery._stream import DeviceStream

__all__ = ["CRITICAL", "DeviceStream", "LaneScheduler", "PresenceTracker"]
