"""The core-banking executor against a ROUTER in the test that plays the node: each
idempotency key is applied at most once, in-process and across a SIGKILL."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from anyio.from_thread import start_blocking_portal

from gateway import wire
from gateway.corebank import CoreBank, Ledger

V = wire.PROTOCOL_VERSION
ROOT = Path(__file__).resolve().parents[2]


class FakeNode:
    """The node's services ROUTER, driven by the test with blocking calls and deadlines."""

    def __init__(self) -> None:
        self.sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.url: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
            wire.ServiceRequest)
        self.encoder = wire.encoder()
        self.next_request = 0

    def expect(self, kind: type[Any], timeout: float = 5.0) -> tuple[bytes, Any]:
        """The next message of type ``kind`` (heartbeats of other types are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                break
            ident, body = self.sock.recv_multipart()
            msg = self.decoder.decode(body)
            if isinstance(msg, kind):
                return ident, msg
        raise TimeoutError(f"no {kind.__name__} within {timeout} s")

    def welcome(self, timeout: float = 5.0) -> tuple[bytes, wire.ExecutorHello]:
        ident, hello = self.expect(wire.ExecutorHello, timeout)
        self.send(ident, wire.ExecutorWelcome(V, hello.rid, "test-node", 0))
        return ident, hello

    def send(self, ident: bytes, msg: msgspec.Struct) -> None:
        self.sock.send_multipart([ident, self.encoder.encode(msg)])

    def execute(self, ident: bytes, key: str, command: str, account: int,
                amount: int = 0) -> wire.Executed:
        self.next_request += 1
        rid = self.next_request
        self.send(ident, wire.Execute(V, 0, rid, key, command, account, amount,
                                      reason="test", incident=7))
        _, done = self.expect(wire.Executed)
        assert done.rid == 0 and done.request_id == rid and done.key == key
        return done  # type: ignore[no-any-return]

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def node() -> Iterator[FakeNode]:
    n = FakeNode()
    try:
        yield n
    finally:
        n.close()


@contextmanager
def running(bank: CoreBank, backend: Any) -> Iterator[CoreBank]:
    """Run ``bank`` on its own event loop thread (``backend`` from the anyio_backend
    fixture) until the block ends."""
    name, options = backend
    with start_blocking_portal(name, options) as portal:
        future = portal.start_task_soon(bank.run)
        try:
            yield bank
        finally:
            future.cancel()
    bank.close()


def test_key_applied_once_and_repeats_answered_first_result(
        node: FakeNode, tmp_path: Path, anyio_backend: Any) -> None:
    bank = CoreBank(node.url, tmp_path / "cb.db", heartbeat_s=0.2)
    with running(bank, anyio_backend):
        ident, hello = node.welcome()
        assert hello.name == "core-banking"
        assert hello.commands == ["freeze", "unfreeze", "limit", "revoke-trust",
                                  "require-step-up"]
        first = node.execute(ident, "inc7-cmd1", "freeze", 42)
        assert first.ok and not first.duplicate
        assert first.reference == "CB-000001"
        assert "frozen" in first.result
        repeats = [node.execute(ident, "inc7-cmd1", "freeze", 42) for _ in range(2)]
        for r in repeats:
            assert r.duplicate and r.ok
            assert (r.result, r.reference) == (first.result, first.reference)
        assert bank.applied_count() == 1
        assert bank.account(42)["frozen"] is True
        assert bank.account(43)["frozen"] is False
        # the node's welcome arrived, and heartbeats keep coming
        node.expect(wire.ExecutorHello, timeout=2.0)
        assert bank.node == "test-node"
        assert (bank.executed, bank.duplicates) == (3, 2)


def test_limit_unknown_command_and_bad_input(
        node: FakeNode, tmp_path: Path, anyio_backend: Any) -> None:
    bank = CoreBank(node.url, tmp_path / "cb.db", heartbeat_s=0.2)
    with running(bank, anyio_backend):
        ident, _ = node.welcome()
        node.sock.send_multipart([ident, b"\xc1 not msgpack"])
        node.send(ident, wire.Pong(V, 0, "test-node", "test", 0))
        node.send(ident, wire.Execute(V + 1, 0, 99, "k-future", "freeze", 42))
        zero = node.execute(ident, "k-limit-0", "limit", 42, 0)
        assert not zero.ok and zero.result == "limit must be positive"
        assert zero.reference == ""
        limit = node.execute(ident, "k-limit", "limit", 42, 500_000)
        assert limit.ok and limit.reference == "CB-000002"
        assert bank.account(42)["limit"] == 500_000
        unknown = node.execute(ident, "k-nuke", "nuke", 42)
        assert not unknown.ok and "unknown command 'nuke'" in unknown.result
        again = node.execute(ident, "k-nuke", "nuke", 42)
        assert again.duplicate and again.result == unknown.result
        step_up = node.execute(ident, "k-step", "require-step-up", 2**64 - 1)
        revoke = node.execute(ident, "k-revoke", "revoke-trust", 2**64 - 1)
        assert step_up.ok and revoke.ok
        state = bank.account(2**64 - 1)
        assert state["step_up_required"] and state["trusted_revoked"]
        assert bank.bad_input == 3
        assert bank.applied_count() == 5


class CoreBankProcess:
    """``python -m gateway.corebank`` as a child process."""

    def __init__(self, services: str, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.corebank", "--services", services,
             "--db", str(db), "--heartbeat", "0.2"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})

    def wait_line(self, prefix: str, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"no line from the executor within {timeout} s")
        line = self.proc.stdout.readline()
        assert line.startswith(prefix), line
        return line

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)
        return self.proc.returncode

    def terminate(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err


def test_key_stays_executed_across_sigkill(node: FakeNode, tmp_path: Path) -> None:
    db = tmp_path / "cb.db"
    first_run = CoreBankProcess(node.url, db)
    try:
        ident, _ = node.welcome(timeout=10)
        line = first_run.wait_line("core-banking ready")
        assert f"services={node.url}" in line and "name=core-banking" in line
        first = node.execute(ident, "inc9-cmd1", "freeze", 77)
        assert first.ok and not first.duplicate
    finally:
        assert first_run.kill() == -signal.SIGKILL

    second_run = CoreBankProcess(node.url, db)
    try:
        ident, _ = node.welcome(timeout=10)
        second_run.wait_line("core-banking ready")
        again = node.execute(ident, "inc9-cmd1", "freeze", 77)
        assert again.duplicate and again.ok
        assert (again.result, again.reference) == (first.result, first.reference)
        fresh = node.execute(ident, "inc9-cmd2", "unfreeze", 77)
        assert fresh.ok and not fresh.duplicate and fresh.reference == "CB-000002"
    finally:
        code, err = second_run.terminate()
    assert code == 0, err
    assert "executed=2 duplicates=1" in err
    ledger = Ledger(db)
    try:
        assert ledger.applied_count() == 2
        assert ledger.account(77)["frozen"] is False
    finally:
        ledger.close()
