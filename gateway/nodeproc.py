"""``gateway node`` as a child process, for the crash soak, the fabric bench and the process
tests: started on a config file, ready once it announced its endpoints, killed with SIGKILL
or stopped with SIGTERM, and started again on the same config (the same data and ports).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from gateway import wire
from gateway.codec import ReplyCodec
from gateway.errors import GatewayError
from gateway.transport import request_blocking

# the endpoint lines of the node's announcement ("  services  tcp://...")
ANNOUNCED = ("ingest", "clients", "services", "fabric")
_LAST_LINE = "curve"  # the announcement's last line but the optional metrics one


class NodeProcess:
    """One ``gateway node --config FILE`` child process; ``urls`` once it is ready."""

    def __init__(self, config: Path, *, log: Path | None = None, loop: str | None = None,
                 name: str = "node", timeout: float = 30.0) -> None:
        self.config_path = config
        self.log_path = log  # the node's stderr, appended across restarts; None: dropped
        self.loop = loop
        self.name = name
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.urls: dict[str, str] = {}

    def start(self) -> None:
        """Start the node and return once it announced its endpoints; a node that exits or
        stays silent for ``timeout`` s is killed and raises :class:`GatewayError` with the
        end of its log."""
        self._close_stdout()  # of the previous run
        cmd = [sys.executable, "-m", "gateway", "node", "--config", str(self.config_path)]
        if self.loop:
            cmd += ["--loop", self.loop]
        if self.log_path is not None:
            with self.log_path.open("ab") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                             stdin=subprocess.DEVNULL, env=dict(os.environ))
        else:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                         env=dict(os.environ))
        self.urls = {}
        if not self._read_announcement(time.monotonic() + self.timeout):
            self.kill()
            tail = ""
            if self.log_path is not None and self.log_path.exists():
                tail = ": " + self.log_path.read_text(errors="replace")[-2000:]
            raise GatewayError(f"node {self.name} did not start within {self.timeout:g} s; "
                               f"see {self.log_path or 'its stderr'}{tail}")

    async def start_async(self) -> None:
        """:meth:`start` in a worker thread."""
        await anyio.to_thread.run_sync(self.start)

    def _read_announcement(self, deadline: float) -> bool:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 65536)
            if not chunk:
                return False  # exited
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                parts = raw.decode(errors="replace").split()
                if len(parts) >= 2 and parts[0] in ANNOUNCED:
                    self.urls[parts[0]] = parts[1]
                if parts and parts[0] == _LAST_LINE:
                    return True
        return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, msg: Any, timeout: float = 5.0) -> Any:
        """``msg`` to the services endpoint; the decoded reply."""
        codec = ReplyCodec()
        return codec.decode(request_blocking(self.urls["services"], codec.encode(msg),
                                             timeout=timeout))

    def status(self, timeout: float = 5.0) -> wire.StatusReply:
        reply = self.request(wire.StatusRequest(wire.PROTOCOL_VERSION, 1), timeout)
        if not isinstance(reply, wire.StatusReply):
            raise GatewayError(f"node {self.name}: status refused: {reply!r}")
        return reply

    def kill(self) -> int:
        """SIGKILL and reap; the exit status (-9, or the earlier one if it had exited)."""
        if self.proc is None:
            raise GatewayError(f"node {self.name} was never started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_stdout()
        return self.proc.returncode

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_stdout()

    def _close_stdout(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
