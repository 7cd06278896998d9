"""Ports for local listeners that outgoing connections cannot take first.

A port found free by binding to port 0 comes from the kernel's ephemeral range, the range
it also draws outgoing connections' source ports from. A node that binds such a port a
moment later (the next node of a demo, a node restarted after a crash) can find it taken
by a peer's connection to somebody else. :func:`listen_port` picks a free port outside
that range instead, so only another listener can take it.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Final

_RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL: Final = (32768, 60999)  # Linux's default
_LOWEST: Final = 20000  # above the ports that well-known services listen on
_given: set[int] = set()  # ports this process handed out; never handed out twice


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' source ports, both ends included."""
    try:
        lo, hi = (int(p) for p in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return lo, hi


def _candidates() -> Sequence[int]:
    lo, hi = ephemeral_range()
    if lo - _LOWEST >= 2000:
        return range(_LOWEST, lo)
    if 65535 - hi >= 2000:
        return range(hi + 1, 65536)
    return range(1024, lo)  # an unusual range; the most room outside it


def listen_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing is bound to now, outside the ephemeral range
    and not returned before by this process. It stays free unless another listener
    binds it; start the listener soon."""
    ports = _candidates()
    start = random.SystemRandom().randrange(len(ports))  # concurrent processes differ
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
        _given.add(port)
        return port
    raise OSError(errno.EADDRINUSE, f"no free port on {host} outside the ephemeral range")
