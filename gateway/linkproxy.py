"""A TCP proxy whose links can be cut and healed on command: a controllable partition.

``python -m gateway.linkproxy LISTEN=TARGET ...`` (each ``host:port``; port 0 picks a free
one) forwards every connection accepted on LISTEN to TARGET, both ways, and prints
``READY port port ...`` (the listening ports, in argument order). It then reads commands on
stdin, one per line, and answers each with ``ok <command>``:

- ``cut``: stop forwarding, both ways, on every connection, old and new. Nothing is read
  or dropped: bytes wait in the kernels' buffers, as behind a silent network partition.
  New connections are accepted and held.
- ``heal``: forward again (what waited flows on; held connections are connected).
- ``reset``: close every connection now (as a crashed middlebox would).
- ``quit``: stop.

:class:`LinkProxy` runs one as a subprocess, for tests and demos. This module waits on
plain TCP sockets only (anyio streams), never on ZeroMQ sockets.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, Final

import anyio
import anyio.abc

CHUNK: Final = 65536



def _running(proc: subprocess.Popen[str]) -> bool:
    """Whether the subprocess still runs (reaps it when it ended)."""
    try:
        proc.wait(timeout=0)
    except subprocess.TimeoutExpired:
        return True
    return False

class _Gate:
    def __init__(self) -> None:
        self.open = True
        self._event = anyio.Event()
        self._event.set()

    def cut(self) -> None:
        if self.open:
            self.open = False
            self._event = anyio.Event()

    def heal(self) -> None:
        self.open = True
        self._event.set()

    async def wait(self) -> None:
        while not self.open:
            await self._event.wait()


class _Proxy:
    def __init__(self) -> None:
        self.gate = _Gate()
        self.scopes: set[anyio.CancelScope] = set()

    async def _pump(self, src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
        while True:
            await self.gate.wait()
            try:
                data = await src.receive(CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            await self.gate.wait()
            try:
                await dst.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return

    async def handle(self, client: anyio.abc.SocketStream, host: str, port: int) -> None:
        with anyio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                async with client:
                    await self.gate.wait()
                    try:
                        upstream = await anyio.connect_tcp(host, port)
                    except OSError:
                        return
                    async with upstream, anyio.create_task_group() as tg:
                        async def both(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream,
                                       ) -> None:
                            await self._pump(a, b)
                            tg.cancel_scope.cancel()  # one side closed: close both

                        tg.start_soon(both, client, upstream)
                        tg.start_soon(both, upstream, client)
            finally:
                self.scopes.discard(scope)

    def reset(self) -> None:
        for scope in list(self.scopes):
            scope.cancel()


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve(pairs: Sequence[tuple[str, str]]) -> None:
    proxy = _Proxy()
    async with anyio.create_task_group() as tg:
        ports = []
        for listen, target in pairs:
            lhost, lport = _split(listen)
            thost, tport = _split(target)
            listener = await anyio.create_tcp_listener(local_host=lhost, local_port=lport)
            ports.append(str(listener.extra(anyio.abc.SocketAttribute.local_port)))

            async def on_client(client: anyio.abc.SocketStream, h: str = thost,
                                p: int = tport) -> None:
                await proxy.handle(client, h, p)

            tg.start_soon(listener.serve, on_client)
        print("READY " + " ".join(ports), flush=True)
        stdin = anyio.wrap_file(sys.stdin)
        async for line in stdin:
            cmd = line.strip()
            if cmd == "cut":
                proxy.gate.cut()
            elif cmd == "heal":
                proxy.gate.heal()
            elif cmd == "reset":
                proxy.reset()
            elif cmd == "quit":
                break
            else:
                print(f"error unknown command {cmd!r}", flush=True)
                continue
            print(f"ok {cmd}", flush=True)
        tg.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pairs = []
    for arg in args:
        listen, sep, target = arg.partition("=")
        if not sep:
            print("usage: python -m gateway.linkproxy LISTEN=TARGET ... (host:port each)",
                  file=sys.stderr)
            return 2
        pairs.append((listen, target))
    anyio.run(_serve, pairs)
    return 0


class LinkProxy:
    """A link proxy subprocess: ``ports`` once ready; :meth:`cut`, :meth:`heal`,
    :meth:`reset` return once the proxy has done it."""

    def __init__(self, targets: Sequence[str], *, timeout: float = 20.0) -> None:
        """``targets``: ``host:port`` to forward to, one listener (free port) each."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.linkproxy",
             *(f"127.0.0.1:0={t}" for t in targets)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._out: IO[str] = self.proc.stdout
        self._in: IO[str] = self.proc.stdin
        line = self._readline(timeout)
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"link proxy did not start: {line!r}")
        self.ports = [int(p) for p in line.split()[1:]]

    def _readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        line = self._out.readline()  # the proxy answers at once; the deadline is a guard
        if time.monotonic() > deadline:
            raise TimeoutError("link proxy too slow")
        return line

    def _command(self, cmd: str) -> None:
        self._in.write(cmd + "\n")
        self._in.flush()
        line = self._readline(10.0)
        if line.strip() != f"ok {cmd}":
            raise RuntimeError(f"link proxy: {cmd}: {line!r}")

    def cut(self) -> None:
        self._command("cut")

    def heal(self) -> None:
        self._command("heal")

    def reset(self) -> None:
        self._command("reset")

    def close(self) -> None:
        if _running(self.proc):
            try:
                self._in.write("quit\n")
                self._in.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self._in, self._out):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self) -> LinkProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["LinkProxy", "main"]

if __name__ == "__main__":
    sys.exit(main())
