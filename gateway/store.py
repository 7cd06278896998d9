"""The node's embedded SQLite database: identity and the kept rule-set versions.

The database lives in the node's data directory (``node.db``) in WAL mode with
``synchronous=FULL``. Later layers (journal, deliveries, incidents) add their own tables
through :data:`MIGRATIONS`, applied in order and recorded in ``schema_version``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from gateway.journal import Write

MIGRATIONS: Final[list[str]] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE rulesets (
        version    INTEGER PRIMARY KEY,
        filename   TEXT NOT NULL,
        source     TEXT NOT NULL,
        rules      INTEGER NOT NULL,
        loaded_ms  INTEGER NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('live', 'shadow')),
        retired_ms INTEGER
    );
    """,
    # 2: reliable delivery (gateway.alerting); every row is derived from a journal event
    # (the journal table itself is gateway.journal's: it creates it on open)
    """
    CREATE TABLE alerts (
        alert_id   INTEGER PRIMARY KEY,
        key        TEXT UNIQUE,
        severity   TEXT NOT NULL,
        account    INTEGER NOT NULL,
        raised_ns  INTEGER NOT NULL,
        recipients TEXT NOT NULL,
        jseq       INTEGER NOT NULL
    );
    CREATE TABLE stream (
        officer  TEXT NOT NULL,
        lane     INTEGER NOT NULL,
        seq      INTEGER NOT NULL,
        alert_id INTEGER NOT NULL,
        level    TEXT,
        device   TEXT,
        PRIMARY KEY (officer, lane, seq)
    ) WITHOUT ROWID;
    CREATE TABLE stream_officers (officer TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE acks (
        alert_id INTEGER NOT NULL,
        officer  TEXT NOT NULL,
        level    TEXT NOT NULL,
        device   TEXT NOT NULL,
        ts_ns    INTEGER NOT NULL,
        PRIMARY KEY (alert_id, officer, level)
    ) WITHOUT ROWID;
    CREATE TABLE device_cursors (
        officer TEXT NOT NULL,
        device  TEXT NOT NULL,
        cursors TEXT NOT NULL,
        ts_ns   INTEGER NOT NULL,
        PRIMARY KEY (officer, device)
    ) WITHOUT ROWID;
    CREATE TABLE officer_keys (
        public_key    TEXT PRIMARY KEY,
        officer       TEXT NOT NULL,
        label         TEXT NOT NULL,
        registered_ms INTEGER NOT NULL,
        revoked_ms    INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 3: incident response (gateway.incidents); rows derived from journal events, except
    # the ladder progress and command state columns, which the journal events also carry
    """
    ALTER TABLE stream ADD COLUMN rseq INTEGER;
    CREATE TABLE incidents (
        incident_id   INTEGER PRIMARY KEY,
        account       INTEGER NOT NULL,
        family        TEXT NOT NULL,
        severity      TEXT NOT NULL,
        title         TEXT NOT NULL,
        region        TEXT NOT NULL,
        status        TEXT NOT NULL,
        opened_ns     INTEGER NOT NULL,
        last_alert_ns INTEGER NOT NULL,
        resolved_ns   INTEGER NOT NULL DEFAULT 0,
        first_alert   INTEGER NOT NULL,
        ladder        TEXT NOT NULL,
        ladder_next   INTEGER NOT NULL DEFAULT 0,
        ladder_fired  TEXT NOT NULL DEFAULT '',
        similar       TEXT NOT NULL DEFAULT '',
        jseq          INTEGER NOT NULL
    );
    CREATE INDEX incidents_status ON incidents (status);
    CREATE TABLE incident_alerts (
        incident_id INTEGER NOT NULL,
        alert_id    INTEGER NOT NULL,
        PRIMARY KEY (incident_id, alert_id)
    ) WITHOUT ROWID;
    CREATE INDEX incident_alerts_alert ON incident_alerts (alert_id);
    CREATE TABLE members (
        incident_id INTEGER NOT NULL,
        officer     TEXT NOT NULL,
        via         TEXT NOT NULL,
        joined_ns   INTEGER NOT NULL,
        left_ns     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (incident_id, officer)
    ) WITHOUT ROWID;
    CREATE TABLE room_events (
        incident_id INTEGER NOT NULL,
        rseq        INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        actor       TEXT NOT NULL,
        ts_ns       INTEGER NOT NULL,
        body        BLOB NOT NULL,
        jseq        INTEGER NOT NULL,
        PRIMARY KEY (incident_id, rseq)
    ) WITHOUT ROWID;
    CREATE TABLE pages (
        attempt_id  TEXT PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        step        INTEGER NOT NULL,
        officer     TEXT NOT NULL,
        channel     TEXT NOT NULL,
        sent_ns     INTEGER NOT NULL,
        done_ns     INTEGER NOT NULL,
        ok          INTEGER NOT NULL,
        reply       TEXT NOT NULL
    );
    CREATE INDEX pages_incident ON pages (incident_id);
    CREATE TABLE commands (
        request_id  INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        maker       TEXT NOT NULL,
        key         TEXT NOT NULL,
        command     TEXT NOT NULL,
        account     INTEGER NOT NULL,
        amount      INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        state       TEXT NOT NULL,
        approvals   INTEGER NOT NULL,
        approvers   TEXT NOT NULL,
        created_ns  INTEGER NOT NULL,
        expires_ns  INTEGER NOT NULL,
        approved_ns INTEGER NOT NULL DEFAULT 0,
        done_ns     INTEGER NOT NULL DEFAULT 0,
        result      TEXT NOT NULL DEFAULT '',
        reference   TEXT NOT NULL DEFAULT '',
        UNIQUE (maker, key)
    );
    CREATE INDEX commands_state ON commands (state);
    CREATE TABLE votes (
        request_id INTEGER NOT NULL,
        officer    TEXT NOT NULL,
        approve    INTEGER NOT NULL,
        reason     TEXT NOT NULL,
        ts_ns      INTEGER NOT NULL,
        PRIMARY KEY (request_id, officer)
    ) WITHOUT ROWID;
    CREATE TRIGGER votes_no_update BEFORE UPDATE ON votes
        BEGIN SELECT RAISE(ABORT, 'votes are never changed'); END;
    CREATE TRIGGER votes_no_delete BEFORE DELETE ON votes
        BEGIN SELECT RAISE(ABORT, 'votes are never deleted'); END;
    CREATE TABLE frozen_accounts (
        account    INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL,
        frozen_ns  INTEGER NOT NULL
    );
    CREATE TABLE cases (
        case_id     INTEGER PRIMARY KEY,
        summary     TEXT NOT NULL,
        tags        TEXT NOT NULL,
        rules       TEXT NOT NULL,
        actions     TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        notes       TEXT NOT NULL,
        resolved_ns INTEGER NOT NULL
    );
    CREATE VIRTUAL TABLE cases_fts USING fts5(
        summary, tags, rules, actions, outcome, notes, content='cases', content_rowid='case_id');
    """,
    # 4: commands for accounts homed in other regions (gateway.incidents, the fabric):
    # at the origin, ``home`` is the region the command went to and ``forwarded_ns`` when
    # that node accepted it; at the home node, ``origin`` is the region it came from.
    # ``exec_key`` is the key the business system gets (the origin's, everywhere).
    """
    ALTER TABLE commands ADD COLUMN home TEXT NOT NULL DEFAULT '';
    ALTER TABLE commands ADD COLUMN forwarded_ns INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE commands ADD COLUMN origin TEXT NOT NULL DEFAULT '';
    ALTER TABLE commands ADD COLUMN exec_key TEXT NOT NULL DEFAULT '';
    """,
]


def sql_i64(value: int) -> int:
    """A u64 (an account number) as the SQLite INTEGER with the same 64 bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def u64_of(value: int) -> int:
    """The u64 that :func:`sql_i64` stored."""
    return value + (1 << 64) if value < 0 else value


@dataclass(frozen=True, slots=True)
class StoredRuleSet:
    version: int
    filename: str
    source: str
    kind: str


class RulesEvent(msgspec.Struct, array_like=True):
    """The body of the journal's ``rules`` events: a rule set installed (``live``,
    ``shadow``) or rolled back (``rollback``, naming the retired version)."""

    what: str
    version: int
    filename: str
    rules: int
    source_blake2b: str  # BLAKE2b-256 of the rule file's text, hex ("" for a rollback)


def ruleset_change(what: str, version: int, filename: str, source: str, rules: int,
                   ) -> tuple[bytes, list[Write]]:
    """A rule set's journal event and the ``rulesets`` row it keeps (for rollback and for
    the next start), written in the event's transaction. ``what``: live, shadow or
    rollback (then ``version`` is the retired one)."""
    now_ms = int(time.time() * 1000)
    if what == "rollback":
        body = RulesEvent(what, version, filename, rules, "")
        writes: list[Write] = [("UPDATE rulesets SET retired_ms = ? WHERE version = ?",
                                (now_ms, version))]
    else:
        digest = hashlib.blake2b(source.encode(), digest_size=32).hexdigest()
        body = RulesEvent(what, version, filename, rules, digest)
        writes = [("INSERT INTO rulesets (version, filename, source, rules, loaded_ms, kind) "
                   "VALUES (?,?,?,?,?,?)", (version, filename, source, rules, now_ms, what))]
    return msgspec.msgpack.encode(body), writes


class Store:
    """Thin synchronous access to ``node.db``; owned by the node's event-loop thread. It
    writes only at start (migrations, before the journal runs): while the node runs, the
    journal's connection is the only writer, so no write on the loop waits for the lock
    that an open journal group holds."""

    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "node.db"
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for i, sql in enumerate(MIGRATIONS[current:], start=current + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in filter(str.strip, sql.split(";\n")):
                    self.db.execute(stmt)
                self.db.execute("INSERT INTO schema_version VALUES (?)", (i,))
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def next_ruleset_version(self) -> int:
        """One above every kept rule set's version (read at start; the node counts on)."""
        row = self.db.execute("SELECT max(version) FROM rulesets").fetchone()
        return int(row[0] or 0) + 1

    def live_rulesets(self) -> list[StoredRuleSet]:
        """Live sets not rolled back, oldest first: the last one is the running set."""
        rows = self.db.execute(
            "SELECT version, filename, source, kind FROM rulesets "
            "WHERE kind = 'live' AND retired_ms IS NULL ORDER BY version"
        ).fetchall()
        return [StoredRuleSet(int(v), str(f), str(s), str(k)) for v, f, s, k in rows]

    def close(self) -> None:
        self.db.close()


__all__ = ["MIGRATIONS", "Store", "StoredRuleSet", "sql_i64", "u64_of"]
