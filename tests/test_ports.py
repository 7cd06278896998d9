"""Listener ports lie outside the range outgoing connections take their source ports from."""

from __future__ import annotations

import socket

import pytest

from gateway import ports


def test_ports_are_outside_the_ephemeral_range_and_distinct() -> None:
    lo, hi = ports.ephemeral_range()
    got = [ports.listen_port() for _ in range(50)]
    assert len(set(got)) == 50
    assert all(not lo <= p <= hi and p >= 1024 for p in got)


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    taken, free = ports.listen_port(), ports.listen_port()
    with socket.create_server(("127.0.0.1", taken)):
        monkeypatch.setattr(ports, "_given", set())
        monkeypatch.setattr(ports, "_candidates", lambda: [taken, free])
        assert ports.listen_port() == free
        with pytest.raises(OSError, match="no free port"):
            ports.listen_port()
