"""A SIGSTOPped officer process does not hold up the others and costs the node only a
window of memory; after SIGCONT it receives everything, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from nodeutil import register_officer, running_node, wait_until

from gateway import wire
from gateway.client import open_officer
from gateway.codec import Endpoint
from gateway.config import Config
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio
N = 300


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _spawn(key_file: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("officer_proc.py")),
                             str(key_file), "laptop", str(out)])


async def test_stopped_client_does_not_slow_others(node_config: Config, tmp_path: Path) -> None:
    async with running_node(node_config) as node:
        alice = await register_officer(node, "alice")
        bob = await register_officer(node, "bob")
        key_file = tmp_path / "bob.key"
        bob.save(key_file)
        out = tmp_path / "bob.out"
        proc = _spawn(key_file, out)
        try:
            await wait_until(lambda: "attached" in _lines(out), timeout=20,
                             what="bob's process attached")
            os.kill(proc.pid, signal.SIGSTOP)
            accepted = []
            async with open_officer(alice, device="phone") as a, \
                    open_dealer(node.urls[Endpoint.SERVICES]) as svc:
                for i in range(N):
                    reply = await svc.request(wire.AlertSubmit(
                        1, svc.next_rid(), f"k{i}", list(wire.Severity)[i % 4], i, f"t{i}"))
                    assert isinstance(reply, wire.AlertAccepted)
                    accepted.append(reply.alert_id)
                got = set()
                with anyio.fail_after(20):
                    while len(got) < N:
                        item = await a.next()
                        if isinstance(item, wire.AlertPush):
                            got.add(item.alert.alert_id)
                assert got == set(accepted)
                # what the node holds for the stopped device is bounded by its windows
                for sess in node.desk.sessions():
                    if sess.officer == "bob":
                        s = node.desk.settings
                        assert sum(sess.stream.in_flight(i) for i in range(wire.LANES)) <= (
                            s.window + s.critical_window)
                assert node.endpoints[Endpoint.CLIENTS].queued() < 100
            os.kill(proc.pid, signal.SIGCONT)
            await wait_until(lambda: sum(" alert " in x for x in _lines(out)) >= N,
                             timeout=30, what="bob received everything after SIGCONT")
            items = [x.split() for x in _lines(out) if x != "attached"]
            last = [0] * wire.LANES
            alerts = []
            for lane, seq, kind, alert_id in items:
                assert int(seq) == last[int(lane)] + 1, "gap or duplicate in bob's stream"
                last[int(lane)] = int(seq)
                if kind == "alert":
                    alerts.append(int(alert_id))
            assert sorted(alerts) == sorted(accepted)
        finally:
            proc.kill()
            proc.wait()
