"""Regional nodes as separate processes (``python -m gateway node``), their configs as TOML,
and the checkers of the fabric process tests: lost, duplicated and gaps."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from gateway import wire
from gateway.codec import ReplyCodec
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.transport import request_blocking


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def to_toml(cfg: Config) -> str:
    """The config as a TOML file (sections of scalars, inline tables below that)."""
    out = []
    for section, values in msgspec.to_builtins(cfg).items():
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)


class NodeProcess:
    """``gateway node --config FILE`` in a subprocess; its endpoints once ready."""

    def __init__(self, cfg: Config, workdir: Path, *, loop: str = "uvloop",
                 timeout: float = 30.0) -> None:
        self.cfg = cfg
        self.region = cfg.node.region
        self.config_path = workdir / f"{self.region}.toml"
        self.config_path.write_text(to_toml(cfg))
        self.log_path = workdir / f"{self.region}.log"
        self.loop = loop
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.urls: dict[str, str] = {}
        self.start()

    def start(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()  # a restart
        log: IO[str] = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "node", "--config", str(self.config_path),
             "--loop", self.loop],
            stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ))
        log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.timeout
        self.urls = {}
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("ingest", "clients", "services", "fabric"):
                self.urls[parts[0]] = parts[1]
            if parts and parts[0] == "fabric":
                return
        self.kill()
        raise RuntimeError(f"node {self.region} did not start; see {self.log_path}: "
                           f"{self.log_path.read_text()[-2000:]}")

    def status(self, timeout: float = 5.0) -> wire.StatusReply:
        codec = ReplyCodec()
        reply = codec.decode(request_blocking(
            self.urls["services"], codec.encode(wire.StatusRequest(1, 1)), timeout=timeout))
        assert isinstance(reply, wire.StatusReply)
        return reply

    def request(self, msg: Any, timeout: float = 5.0) -> Any:
        codec = ReplyCodec()
        return codec.decode(request_blocking(self.urls["services"], codec.encode(msg),
                                             timeout=timeout))

    def wait_status(self, predicate: Any, *, timeout: float = 20.0, what: str = "") -> Any:
        """Poll the node's status until ``predicate(info, counters)`` holds."""
        deadline = time.monotonic() + timeout
        reply = None
        while time.monotonic() < deadline:
            try:
                reply = self.status()
            except GatewayError:  # not ready yet
                time.sleep(0.05)
                continue
            if predicate(reply.info, reply.counters):
                return reply
            time.sleep(0.05)
        raise TimeoutError(f"{self.region}: {what} not reached; last status "
                           f"{reply.info if reply else None} {reply.counters if reply else None}")

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def links_up(node: NodeProcess, peers: list[str]) -> bool:
    info = node.status().info
    return all(info.get(f"fabric.peer.{p}") == "up" for p in peers)


def applied_ranges(data_dir: str) -> list[tuple[str, int, int, int]]:
    """(origin, stream, from, to) of every applied placement range at a home node."""
    db = sqlite3.connect(Path(data_dir) / "fabric.db")
    try:
        return [(str(o), int(s), int(f), int(t)) for o, s, f, t in db.execute(
            "SELECT origin, stream, from_seq, to_seq FROM applied ORDER BY rowid")]
    finally:
        db.close()


def check_chain(ranges: list[tuple[str, int, int, int]]) -> dict[tuple[str, int], int]:
    """Each stream's applied ranges follow each other from 0 with no gap and no overlap
    (each change applied exactly once); returns each stream's last applied seq."""
    last: dict[tuple[str, int], int] = {}
    for origin, stream, first, upto in ranges:
        key = (origin, stream)
        prev = last.get(key, 0)
        assert first == prev, f"stream {key}: range ({first}, {upto}] after {prev}"
        assert upto > first
        last[key] = upto
    return last


def check_decisions(sent: dict[int, list[str]], replies: dict[int, Any]) -> dict[str, int]:
    """Every request got exactly one answer; a `scored` one has one decision per
    transaction, in order; no transaction was decided twice. Returns the counts by kind."""
    kinds: dict[str, int] = {}
    decided: set[str] = set()
    assert set(replies) == set(sent), f"no answer to {sorted(set(sent) - set(replies))[:10]}"
    for rid, tx_ids in sent.items():
        reply = replies[rid]
        kind = type(reply).__name__ if not isinstance(reply, wire.Error) else reply.name
        kinds[kind] = kinds.get(kind, 0) + 1
        if isinstance(reply, wire.ScoreReply):
            assert [d.tx_id for d in reply.decisions] == tx_ids, f"request {rid} out of order"
            for t in tx_ids:
                assert t not in decided, f"{t} decided twice"
                decided.add(t)
        else:
            assert isinstance(reply, wire.Busy | wire.Error), reply
    return kinds
