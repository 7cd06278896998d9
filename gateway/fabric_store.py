"""The regional fabric's database: ``fabric.db`` in the node's data directory.

It holds the outbox of trusted-account changes towards other regions, the position of
every origin stream applied here, the trusted data of accounts homed here, the log of
applied ranges (for audit and the convergence checks), and how far each peer has
journaled this node's relayed alerts (``relay_cursor``; the alerts themselves are read
from ``node.db`` by :class:`SqlAlertOutbox`). A separate file from ``node.db``, so
its schema evolves on its own. WAL mode with ``synchronous=FULL``: a change is on disk
before the node acknowledges it (the operator's ``trusted_updated``, a peer's
``trust_ack``).

Accounts and stream ids are unsigned 64-bit on the wire; SQLite integers are signed, so
they are stored in two's complement and converted back on reading.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from gateway import wire
from gateway.fabric import RelayItem
from gateway.store import sql_i64, u64_of

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    dest TEXT NOT NULL, seq INTEGER NOT NULL, account INTEGER NOT NULL,
    level INTEGER NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (dest, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox_seq (dest TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (
    origin TEXT NOT NULL, stream INTEGER NOT NULL, applied INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL, PRIMARY KEY (origin, stream)
);
CREATE TABLE IF NOT EXISTS trusted (
    account INTEGER PRIMARY KEY, level INTEGER NOT NULL, origin TEXT NOT NULL,
    seq INTEGER NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_cursor (
    dest TEXT NOT NULL, lane INTEGER NOT NULL, acked INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL, PRIMARY KEY (dest, lane)
);
CREATE TABLE IF NOT EXISTS applied (
    origin TEXT NOT NULL, stream INTEGER NOT NULL, from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL, snapshot INTEGER NOT NULL, entries INTEGER NOT NULL,
    applied_ms INTEGER NOT NULL
);
"""


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class AppliedRange:
    origin: str
    stream: int
    from_seq: int
    to_seq: int
    snapshot: bool
    entries: int


class FabricStore:
    """Synchronous access to ``fabric.db``; owned by the node's event-loop thread."""

    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "fabric.db"
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()
        if row is None:
            stream = secrets.randbits(63) or 1
            self.db.execute("INSERT INTO meta VALUES ('stream', ?)", (str(stream),))
        else:
            stream = int(row[0])
        self.stream: int = stream  # this node's placement stream id (new with the database)

    # -- outbox (sender side) ----------------------------------------------------------

    def place(self, origin: str, local: Sequence[tuple[int, int]],
              foreign: dict[str, list[tuple[int, int]]]) -> None:
        """Apply ``local`` changes here and append ``foreign`` ones to their outboxes, in one
        durable transaction."""
        now = _ms()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO trusted VALUES (?, ?, ?, 0, ?)",
                [(sql_i64(a), lvl, origin, now) for a, lvl in local])
            for dest, rows in foreign.items():
                row = db.execute("SELECT last FROM outbox_seq WHERE dest = ?",
                                 (dest,)).fetchone()
                last = int(row[0]) if row else 0
                db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?)",
                               [(dest, last + i, sql_i64(a), lvl, now)
                                for i, (a, lvl) in enumerate(rows, start=1)])
                db.execute("INSERT OR REPLACE INTO outbox_seq VALUES (?, ?)",
                           (dest, last + len(rows)))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def outbox(self, dest: str) -> SqlOutbox:
        return SqlOutbox(self, dest)

    def outbox_sizes(self) -> dict[str, int]:
        return {str(d): int(n) for d, n in self.db.execute(
            "SELECT dest, count(*) FROM outbox GROUP BY dest")}

    def outbox_last(self, dest: str) -> int:
        row = self.db.execute("SELECT last FROM outbox_seq WHERE dest = ?", (dest,)).fetchone()
        return int(row[0]) if row else 0

    # -- inbox (home side) -------------------------------------------------------------

    def position(self, origin: str, stream: int) -> int:
        row = self.db.execute("SELECT applied FROM inbox WHERE origin = ? AND stream = ?",
                              (origin, sql_i64(stream))).fetchone()
        return int(row[0]) if row else 0

    def apply(self, origin: str, stream: int, entries: Iterable[wire.TrustEntry],
              before: int, after: int, snapshot: bool) -> None:
        """Store the changes, the stream's new position and the applied range, durably."""
        now = _ms()
        rows = [(sql_i64(e.account), e.level, origin, e.seq, now) for e in entries]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO trusted VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("INSERT OR REPLACE INTO inbox VALUES (?, ?, ?, ?)",
                       (origin, sql_i64(stream), after, now))
            if after > before:
                db.execute("INSERT INTO applied VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (origin, sql_i64(stream), before, after, int(snapshot), len(rows), now))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def applied_ranges(self) -> list[AppliedRange]:
        """Every applied range, in the order applied (for audits and checkers)."""
        return [AppliedRange(str(o), u64_of(int(s)), int(f), int(t), bool(sn), int(n))
                for o, s, f, t, sn, n in self.db.execute(
                    "SELECT origin, stream, from_seq, to_seq, snapshot, entries FROM applied "
                    "ORDER BY rowid")]

    # -- trusted data of accounts homed here --------------------------------------------

    def trusted_rows(self) -> list[tuple[int, int]]:
        """Every stored change (level 0: removed), to lay over the base file at start."""
        return [(u64_of(int(a)), int(lvl)) for a, lvl in self.db.execute(
            "SELECT account, level FROM trusted ORDER BY account")]

    # -- relayed alerts (sender side) ----------------------------------------------------

    def relay_cursors(self, dest: str) -> list[int] | None:
        """Per lane, the highest alert id ``dest`` acknowledged; None: never relayed there."""
        rows = dict(self.db.execute("SELECT lane, acked FROM relay_cursor WHERE dest = ?",
                                    (dest,)).fetchall())
        if not rows:
            return None
        return [int(rows.get(lane, 0)) for lane in range(wire.LANES)]

    def save_relay_cursors(self, dest: str, acked: Sequence[int]) -> None:
        now = _ms()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO relay_cursor VALUES (?, ?, ?, ?)",
                           [(dest, lane, a, now) for lane, a in enumerate(acked)])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class _AlertEventHead(msgspec.Struct, array_like=True):
    alert: msgspec.Raw  # the first field of an `alert` journal event (docs/protocol.md)


_LANE_SEVERITY: Final = {int(lane): sev.value for sev, lane in wire.SEVERITY_LANE.items()}


class SqlAlertOutbox:
    """This node's own alerts as the relay's outbox (:class:`gateway.fabric.RelayOutbox`):
    read from ``node.db`` (the ``alerts`` table and their ``alert`` journal events), with
    the connection the alert desk reads committed rows with. Alerts relayed here from
    other regions (key ``relay:...``) are never relayed on."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._head = msgspec.msgpack.Decoder(_AlertEventHead)

    def last_id(self) -> int:
        row = self.db.execute("SELECT max(alert_id) FROM alerts").fetchone()
        return int(row[0] or 0)

    def after(self, lane: int, alert_id: int, limit: int) -> list[RelayItem]:
        rows = self.db.execute(
            "SELECT a.alert_id, a.recipients, j.body FROM alerts a JOIN journal j ON "
            "j.seq = a.jseq WHERE a.alert_id > ? AND a.severity = ? AND (a.key IS NULL OR "
            "a.key NOT LIKE 'relay:%') ORDER BY a.alert_id LIMIT ?",
            (alert_id, _LANE_SEVERITY[lane], limit)).fetchall()
        return [RelayItem(int(i), tuple(x for x in str(r).split(",") if x),
                          bytes(self._head.decode(body).alert)) for i, r, body in rows]


class SqlOutbox:
    """One destination's outbox (the :class:`gateway.fabric.Outbox` protocol)."""

    def __init__(self, store: FabricStore, dest: str) -> None:
        self.store = store
        self.dest = dest

    def after(self, seq: int, limit: int) -> list[tuple[int, int, int]]:
        return [(int(s), u64_of(int(a)), int(lvl)) for s, a, lvl in self.store.db.execute(
            "SELECT seq, account, level FROM outbox WHERE dest = ? AND seq > ? "
            "ORDER BY seq LIMIT ?", (self.dest, seq, limit))]

    def prune(self, upto: int) -> None:
        self.store.db.execute("DELETE FROM outbox WHERE dest = ? AND seq <= ?",
                              (self.dest, upto))

    def first_seq(self) -> int | None:
        row = self.store.db.execute("SELECT min(seq) FROM outbox WHERE dest = ?",
                                    (self.dest,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])


__all__ = ["AppliedRange", "FabricStore", "SqlAlertOutbox", "SqlOutbox"]
