"""Regional nodes as separate processes (``python -m gateway node``), their configs as TOML,
and the checkers of the fabric process tests: lost, duplicated and gaps."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec

from gateway import nodeproc, wire
from gateway.config import Config
from gateway.errors import GatewayError


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


class NodeProcess(nodeproc.NodeProcess):
    """A regional node from its :class:`Config` (written as TOML), started."""

    def __init__(self, cfg: Config, workdir: Path, *, loop: str = "uvloop",
                 timeout: float = 30.0) -> None:
        self.cfg = cfg
        self.region = cfg.node.region
        config = workdir / f"{self.region}.toml"
        config.write_text(to_toml(cfg))
        super().__init__(config, log=workdir / f"{self.region}.log", loop=loop,
                         name=self.region, timeout=timeout)
        self.start()

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
