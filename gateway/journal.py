"""The node's journal: an append-only, hash-chained, durable event log in SQLite.

Every state change of the control plane (an alert raised, a stream sequence assigned, a
delivery or acknowledgement, a key registered or revoked, a refused client) is one event.
Events are appended in memory and written by one commit task in groups: a single SQLite
transaction (WAL, ``synchronous=FULL``) holds the events of a group together with the
derived rows they imply (the alert table, stream rows, ...), so the derived tables never
disagree with the log. Nothing that depends on an event is acknowledged or sent before the
group holding it is committed, i.e. fsynced; a failed commit stops the node.

Each event's hash covers the previous event's hash, its sequence number, its time, its
kind and its body, so a regulator can check years later that no event was changed, removed
or inserted: ``gateway journal verify``.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

GENESIS: Final = bytes(32)  # the "previous hash" of event 1
MAX_GROUP: Final = 1024  # events per commit: bounds how long the loop spends inserting
VERIFY_AT_START: Final = 10_000  # events re-verified at open (the rest: `journal verify`)

_HEAD = struct.Struct(">QQ")

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS journal (
    seq   INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    kind  TEXT NOT NULL,
    body  BLOB NOT NULL,
    hash  BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END
"""

# A derived write: SQL and its parameters, executed in the event's transaction.
Write = tuple[str, Sequence[Any]]


class JournalError(GatewayError):
    """The journal cannot be written or does not verify; the node must stop."""


def event_hash(prev: bytes, seq: int, ts_ns: int, kind: str, body: bytes) -> bytes:
    """The chain hash of one event (BLAKE2b-256); documented in docs/protocol.md."""
    h = hashlib.blake2b(prev, digest_size=32)
    h.update(_HEAD.pack(seq, ts_ns))
    h.update(kind.encode())
    h.update(b"\0")
    h.update(body)
    return h.digest()


@dataclass(slots=True)
class _Pending:
    seq: int
    ts_ns: int
    kind: str
    body: bytes
    hash: bytes
    writes: Sequence[Write]
    on_durable: Callable[[], None] | None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    events: int  # events checked
    first: int
    last: int
    ok: bool
    problem: str = ""  # first broken link, if any
    bad_seq: int = 0


@dataclass(slots=True)
class JournalStats:
    events: int = 0
    commits: int = 0
    largest_group: int = 0
    commit_ns_total: int = 0
    last_commit_ns: int = 0
    pending_max: int = 0
    waits: list[int] = field(default_factory=list)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to ``node.db`` with the journal's durability settings."""
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                             check_same_thread=False)
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def iter_events(db: sqlite3.Connection, after: int = 0, *, page: int = 10_000,
                ) -> Iterator[tuple[int, int, str, bytes, bytes]]:
    """``(seq, ts_ns, kind, body, hash)`` of every event after ``after``, in order."""
    last = after
    while True:
        rows = db.execute("SELECT seq, ts_ns, kind, body, hash FROM journal WHERE seq > ? "
                          "ORDER BY seq LIMIT ?", (last, page)).fetchall()
        if not rows:
            return
        for row in rows:
            yield row[0], row[1], row[2], bytes(row[3]), bytes(row[4])
        last = rows[-1][0]


def verify(db: sqlite3.Connection, *, after: int = 0,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check the hash chain of every event after ``after`` (0: the whole journal)."""
    prev = GENESIS
    if after:
        row = db.execute("SELECT hash FROM journal WHERE seq = ?", (after,)).fetchone()
        if row is None:
            return VerifyReport(0, after, after, False, f"event {after} is missing", after)
        prev = bytes(row[0])
    expected = after + 1
    n = 0
    first = expected
    for seq, ts_ns, kind, body, stored in iter_events(db, after):
        if seq != expected:
            return VerifyReport(n, first, seq, False,
                                f"event {expected} is missing (next is {seq})", expected)
        if event_hash(prev, seq, ts_ns, kind, body) != stored:
            return VerifyReport(n, first, seq, False,
                                f"event {seq} ({kind}) does not match its hash", seq)
        prev = stored
        expected += 1
        n += 1
        if progress is not None and n % 100_000 == 0:
            progress(n)
    return VerifyReport(n, first, expected - 1, True)


class Journal:
    """Append events and commit them in groups; see the module docstring.

    ``append`` is synchronous and never blocks: the event gets its sequence number and hash
    at once. :meth:`run` (one task) commits pending events in a worker thread and then calls
    each event's ``on_durable`` callback on the event loop, in sequence order.
    """

    def __init__(self, db_path: Path, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.path = db_path
        self.db = connect(db_path)
        for stmt in filter(str.strip, SCHEMA.split(";\n")):
            self.db.execute(stmt)
        self._clock_ns = clock_ns
        self._pending: list[_Pending] = []
        self._wake = anyio.Event()
        self._failed: BaseException | None = None
        self.stats = JournalStats()
        row = self.db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
                              ).fetchone()
        self.durable_seq: int = 0 if row is None else int(row[0])
        self._last_hash: bytes = GENESIS if row is None else bytes(row[1])
        self.next_seq = self.durable_seq + 1
        self._durable_waiters: list[tuple[int, anyio.Event]] = []
        self._durable_calls: list[tuple[int, Callable[[], None]]] = []
        self.after_group: Callable[[], None] | None = None  # after a group's callbacks
        report = verify(self.db, after=max(0, self.durable_seq - VERIFY_AT_START))
        if not report.ok:
            raise JournalError(f"journal {db_path} does not verify: {report.problem}")
        self.verified_at_start = report.events

    # -- writing --------------------------------------------------------------------------

    def append(self, kind: str, body: bytes, writes: Sequence[Write] = (),
               on_durable: Callable[[], None] | None = None, *, ts_ns: int | None = None,
               ) -> int:
        """Add an event to the next group; returns its sequence number.

        ``writes`` run in the same transaction; ``on_durable`` runs on the event loop once
        the group is fsynced. Raises :class:`JournalError` after a failed commit.
        """
        if self._failed is not None:
            raise JournalError(f"the journal failed earlier: {self._failed}")
        seq = self.next_seq
        self.next_seq += 1
        ts = self._clock_ns() if ts_ns is None else ts_ns
        h = event_hash(self._last_hash, seq, ts, kind, body)
        self._last_hash = h
        self._pending.append(_Pending(seq, ts, kind, body, h, writes, on_durable))
        if len(self._pending) > self.stats.pending_max:
            self.stats.pending_max = len(self._pending)
        self._wake.set()
        return seq

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def wait_durable(self, seq: int) -> None:
        """Return once event ``seq`` is committed."""
        if seq <= self.durable_seq:
            return
        if self._failed is not None:
            raise JournalError(f"the journal failed: {self._failed}")
        ev = anyio.Event()
        self._durable_waiters.append((seq, ev))
        await ev.wait()
        if seq > self.durable_seq:
            raise JournalError(f"the journal failed: {self._failed}")

    def call_when_durable(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once every event appended so far is committed (now, if it is)."""
        seq = self.next_seq - 1
        if seq <= self.durable_seq:
            fn()
        else:
            self._durable_calls.append((seq, fn))

    def _insert_group(self, group: list[_Pending]) -> None:
        """Open a transaction and insert the events and their derived rows.

        Runs on the event loop's thread: sqlite3 gives up the GIL around every row, and a
        worker thread would wait for the busy loop to hand it back each time.
        """
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO journal (seq, ts_ns, kind, body, hash) VALUES "
                           "(?,?,?,?,?)", [(p.seq, p.ts_ns, p.kind, p.body, p.hash)
                                           for p in group])
            batch: dict[str, list[Sequence[Any]]] = {}
            order: list[str] = []
            for p in group:
                for sql, params in p.writes:
                    rows = batch.get(sql)
                    if rows is None:
                        rows = batch[sql] = []
                        order.append(sql)
                    elif order[-1] != sql:  # keep the order of dependent writes
                        self._flush(batch, order)
                        rows = batch[sql] = []
                        order.append(sql)
                    rows.append(params)
            self._flush(batch, order)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _commit(self) -> None:
        """COMMIT: the fsync, in a worker thread (one GIL hand-off)."""
        try:
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _write_group(self, group: list[_Pending]) -> None:
        """Insert and commit a group on the calling thread."""
        self._insert_group(group)
        self._commit()

    def _flush(self, batch: dict[str, list[Sequence[Any]]], order: list[str]) -> None:
        for sql in order:
            self.db.executemany(sql, batch[sql])
        batch.clear()
        order.clear()

    async def run(self) -> None:
        """Commit pending events until cancelled; raises :class:`JournalError` on failure."""
        try:
            while True:
                if not self._pending:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                group = self._pending[:MAX_GROUP]
                del self._pending[:MAX_GROUP]
                t0 = time.perf_counter_ns()
                try:
                    self._insert_group(group)
                    await anyio.to_thread.run_sync(self._commit, abandon_on_cancel=False)
                except Exception as exc:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    self._failed = exc
                    log.critical("journal commit failed; stopping: %s", exc)
                    self._release_waiters()
                    raise JournalError(f"journal commit failed: {exc}") from exc
                took = time.perf_counter_ns() - t0
                st = self.stats
                st.events += len(group)
                st.commits += 1
                st.commit_ns_total += took
                st.last_commit_ns = took
                if len(group) > st.largest_group:
                    st.largest_group = len(group)
                self.durable_seq = group[-1].seq
                for p in group:
                    if p.on_durable is not None:
                        p.on_durable()
                if self.after_group is not None:
                    self.after_group()
                if self._durable_calls:
                    calls = self._durable_calls
                    self._durable_calls = [c for c in calls if c[0] > self.durable_seq]
                    for seq, fn in calls:
                        if seq <= self.durable_seq:
                            fn()
                self._release_waiters()
        finally:
            if self._pending and self._failed is None:
                self._commit_rest()

    def _commit_rest(self) -> None:
        """On a clean stop, commit what is still pending (callbacks are not called)."""
        try:
            self._write_group(self._pending)
            self.durable_seq = self._pending[-1].seq
            self._pending.clear()
        except Exception as exc:  # the node is stopping anyway; the events were never acked
            log.error("journal: %d pending events not committed at stop: %s",
                      len(self._pending), exc)

    def _release_waiters(self) -> None:
        keep = []
        for seq, ev in self._durable_waiters:
            if seq <= self.durable_seq or self._failed is not None:
                ev.set()
            else:
                keep.append((seq, ev))
        self._durable_waiters = keep

    def close(self) -> None:
        self.db.close()


__all__ = [
    "GENESIS",
    "Journal",
    "JournalError",
    "JournalStats",
    "VerifyReport",
    "Write",
    "connect",
    "event_hash",
    "iter_events",
    "verify",
]
