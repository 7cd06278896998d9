"""A stand-in core-banking system that executes the approved commands of incident rooms.

It is a business-system executor of a node's services endpoint: a DEALER that sends
``executor_hello`` at once and then every heartbeat, receives ``execute`` pushes and
answers each with ``executed`` carrying the same request id and idempotency key.

Every key is applied at most once, across restarts of this process: the account change
and the record of the key are one SQLite transaction, committed before the answer goes
out. A repeated key is answered with the first result and ``duplicate=True``. Run it as
a process with ``python -m gateway.corebank --services URL --db PATH``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypedDict

import anyio
import anyio.abc
import zmq
from anyio.streams.memory import MemoryObjectSendStream

from gateway import runtime, wire
from gateway.store import sql_i64, u64_of
from gateway.transport import DealerConnection, open_dealer

log = logging.getLogger(__name__)

ALL_COMMANDS: Final = ("freeze", "unfreeze", "limit", "revoke-trust", "require-step-up")
INBOX: Final = 1024  # execute pushes waiting for the database; more are dropped (retried)
MAX_RESULT: Final = 1024

# command -> (accounts column, value or None for the amount, what the result says)
_EFFECTS: Final[dict[str, tuple[str, int | None, str]]] = {
    "freeze": ("frozen", 1, "frozen"),
    "unfreeze": ("frozen", 0, "unfrozen"),
    "limit": ("limit_minor", None, "limit set to {amount}"),
    "revoke-trust": ("trusted_revoked", 1, "trusted status revoked"),
    "require-step-up": ("step_up_required", 1, "step-up required on every payment"),
}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS executed (
    seq         INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    command     TEXT NOT NULL,
    account     INTEGER NOT NULL,
    amount      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    incident    INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    result      TEXT NOT NULL,
    reference   TEXT NOT NULL,
    executed_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    account          INTEGER PRIMARY KEY,
    frozen           INTEGER NOT NULL DEFAULT 0,
    limit_minor      INTEGER,
    step_up_required INTEGER NOT NULL DEFAULT 0,
    trusted_revoked  INTEGER NOT NULL DEFAULT 0,
    updated_ns       INTEGER NOT NULL
);
"""


def _fits_i64(n: int) -> bool:
    return -(1 << 63) <= n < 1 << 63


class AccountState(TypedDict):
    """What core banking knows of one account (defaults for an account never touched)."""

    account: int
    frozen: bool
    limit: int | None  # in minor units; None: no limit set here
    step_up_required: bool
    trusted_revoked: bool


@dataclass(frozen=True)
class Outcome:
    """The answer to one key: its first result, and whether this was a repeat."""

    ok: bool
    result: str
    reference: str
    duplicate: bool = False
    conflict: bool = False  # a repeat whose command, account or amount differ


class Ledger:
    """The executor's database: executed keys and account state. Safe to share between
    threads; each execution is one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def execute(self, key: str, command: str, account: int, amount: int = 0, *,
                reason: str = "", incident: int = 0,
                served: Sequence[str] = ALL_COMMANDS) -> Outcome:
        """Apply ``command`` under ``key`` unless the key was executed before."""
        now = time.time_ns()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT ok, result, reference, command, account, amount FROM executed "
                    "WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    db.execute("ROLLBACK")
                    same = (row[3], u64_of(row[4]), row[5]) == (command, account, amount)
                    return Outcome(bool(row[0]), row[1], row[2], duplicate=True,
                                   conflict=not same)
                ok, result = _apply(db, command, account, amount, served, now)
                seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM executed").fetchone()[0]
                reference = f"CB-{seq:06d}" if ok else ""
                db.execute(
                    "INSERT INTO executed (seq, key, command, account, amount, reason, "
                    "incident, ok, result, reference, executed_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, key, command, sql_i64(account), amount if _fits_i64(amount) else 0,
                     reason, incident if _fits_i64(incident) else 0, int(ok), result,
                     reference, now))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Outcome(ok, result, reference)

    def applied_count(self) -> int:
        """Keys executed for the first time, over the database's whole life."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM executed").fetchone()[0])

    def account(self, account: int) -> AccountState:
        with self._lock:
            row = self._db.execute(
                "SELECT frozen, limit_minor, step_up_required, trusted_revoked FROM accounts "
                "WHERE account = ?", (sql_i64(account),)).fetchone()
        if row is None:
            return AccountState(account=account, frozen=False, limit=None,
                                step_up_required=False, trusted_revoked=False)
        return AccountState(account=account, frozen=bool(row[0]), limit=row[1],
                            step_up_required=bool(row[2]), trusted_revoked=bool(row[3]))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _apply(db: sqlite3.Connection, command: str, account: int, amount: int,
           served: Sequence[str], now: int) -> tuple[bool, str]:
    """Change the account inside the caller's transaction; (ok, result text)."""
    effect = _EFFECTS.get(command)
    if effect is None:
        return False, (f"unknown command {command[:64]!r}; core banking executes "
                       f"{', '.join(ALL_COMMANDS)}")
    if command not in served:
        return False, f"command {command!r} is not served by this executor"
    column, value, text = effect
    if value is None:
        if amount <= 0:
            return False, "limit must be positive"
        if not _fits_i64(amount):
            return False, "limit out of range"
        value = amount
    db.execute("INSERT OR IGNORE INTO accounts (account, updated_ns) VALUES (?, ?)",
               (sql_i64(account), now))
    before = db.execute(f"SELECT {column} FROM accounts WHERE account = ?",
                        (sql_i64(account),)).fetchone()[0]
    db.execute(f"UPDATE accounts SET {column} = ?, updated_ns = ? WHERE account = ?",
               (value, now, sql_i64(account)))
    result = f"account {account} {text.format(amount=amount)}"
    if before == value:
        result += " (no change)"
    return True, result


class CoreBank:
    """The executor: a DEALER to the node's services endpoint and a :class:`Ledger`."""

    def __init__(self, services_url: str, db_path: str | Path, *, name: str = "core-banking",
                 commands: Sequence[str] = ALL_COMMANDS, heartbeat_s: float = 1.0) -> None:
        if not 0 < len(name) <= wire.MAX_ID_LEN:
            raise ValueError(f"executor name must be 1 to {wire.MAX_ID_LEN} characters")
        unknown = [c for c in commands if c not in _EFFECTS]
        if unknown:
            raise ValueError(f"unknown commands {unknown}; choose from {list(ALL_COMMANDS)}")
        if not heartbeat_s > 0:
            raise ValueError("heartbeat_s must be positive")
        self.services_url = services_url
        self.name = name
        self.commands = tuple(commands)
        self.heartbeat_s = heartbeat_s
        self.ledger = Ledger(db_path)
        self.executed = 0  # executed answers sent, repeats included
        self.duplicates = 0  # repeated keys answered with their first result
        self.conflicts = 0  # repeated keys whose command, account or amount differed
        self.dropped = 0  # execute pushes dropped with the inbox full (the node retries)
        self.ignored = 0  # decodable messages of the wrong type or version
        self.undecodable = 0  # frames that are not a reply message
        self.refusals = 0  # error replies of the node (e.g. to our hello)
        self.failures = 0  # keys the database could not execute (left unanswered)
        self.welcomes = 0
        self.node = ""  # from the last executor_welcome
        self.pending = 0
        self._conn: DealerConnection | None = None
        self._encoder = wire.encoder()

    @property
    def bad_input(self) -> int:
        """Messages from the node that were not understood and were ignored."""
        live = self._conn.undecodable if self._conn is not None else 0
        return self.ignored + self.undecodable + live

    def applied_count(self) -> int:
        return self.ledger.applied_count()

    def account(self, account: int) -> AccountState:
        return self.ledger.account(account)

    def close(self) -> None:
        self.ledger.close()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Serve until cancelled; ``task_status.started()`` when the node first welcomes us."""
        send, receive = anyio.create_memory_object_stream[wire.Execute](INBOX)
        welcomed = anyio.Event()

        def on_message(msg: Any) -> None:
            self._on_message(msg, send, welcomed)

        with send, receive:
            async with open_dealer(self.services_url, on_unmatched=on_message) as conn:
                self._conn = conn
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._heartbeat, conn)
                        tg.start_soon(self._work, conn, receive)
                        await welcomed.wait()
                        task_status.started()
                finally:
                    self.undecodable += conn.undecodable
                    self._conn = None

    def _on_message(self, msg: Any, inbox: MemoryObjectSendStream[wire.Execute],
                    welcomed: anyio.Event) -> None:
        """Everything the node sends (from the socket owner task)."""
        if getattr(msg, "v", None) != wire.PROTOCOL_VERSION:
            self.ignored += 1
        elif isinstance(msg, wire.Execute):
            try:
                inbox.send_nowait(msg)
            except anyio.WouldBlock:
                self.dropped += 1
        elif isinstance(msg, wire.ExecutorWelcome):
            self.node = msg.node
            self.pending = msg.pending
            self.welcomes += 1
            welcomed.set()
        elif isinstance(msg, wire.Error):
            self.refusals += 1
            log.warning("%s: the node refused: %s %s", self.name, msg.name, msg.message)
        else:
            self.ignored += 1

    async def _heartbeat(self, conn: DealerConnection) -> None:
        commands = list(self.commands)
        while True:
            hello = wire.ExecutorHello(wire.PROTOCOL_VERSION, conn.next_rid(), self.name,
                                       commands)
            conn.send_raw_nowait((self._encoder.encode(hello),))
            await anyio.sleep(self.heartbeat_s)

    async def _work(self, conn: DealerConnection,
                    inbox: anyio.abc.ObjectReceiveStream[wire.Execute]) -> None:
        async for msg in inbox:
            try:
                outcome = await anyio.to_thread.run_sync(self._execute, msg)
            except sqlite3.Error:
                self.failures += 1
                log.exception("%s: key %r not executed; the node will retry it", self.name,
                              msg.key)
                continue
            reply = wire.Executed(wire.PROTOCOL_VERSION, 0, msg.request_id, msg.key,
                                  outcome.ok, outcome.result[:MAX_RESULT], outcome.reference,
                                  outcome.duplicate)
            conn.send_raw_nowait((self._encoder.encode(reply),))
            self.executed += 1
            if outcome.duplicate:
                self.duplicates += 1
            if outcome.conflict:
                self.conflicts += 1
                log.warning("%s: key %r repeated with a different command; answered with "
                            "its first result", self.name, msg.key)

    def _execute(self, msg: wire.Execute) -> Outcome:
        if not msg.key:
            return Outcome(False, "an execute without an idempotency key is refused", "")
        return self.ledger.execute(msg.key, msg.command, msg.account, msg.amount,
                                   reason=msg.reason, incident=msg.incident,
                                   served=self.commands)


def _endpoint_error(url: str) -> str:
    """Why a DEALER cannot connect to ``url`` (bad syntax, unknown transport), or ""."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    try:
        sock.connect(url)
    except zmq.ZMQError as exc:
        return str(exc)
    finally:
        sock.close(0)
    return ""


async def _serve(bank: CoreBank) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        await tg.start(bank.run)
        print(f"core-banking ready name={bank.name} services={bank.services_url}",
              flush=True)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.corebank``: run the executor until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.corebank",
        description="A stand-in core-banking system: executes approved incident commands "
                    "sent by a node, each idempotency key at most once.")
    parser.add_argument("--services", required=True, metavar="URL",
                        help="the node's services endpoint, e.g. tcp://127.0.0.1:5557")
    parser.add_argument("--db", required=True, metavar="PATH", type=Path,
                        help="SQLite database of executed keys and accounts (created if "
                             "missing; keep it across restarts)")
    parser.add_argument("--name", default="core-banking",
                        help="executor name announced to the node (default: %(default)s)")
    parser.add_argument("--heartbeat", type=float, default=1.0, metavar="S",
                        help="seconds between executor_hello heartbeats (default: "
                             "%(default)s)")
    parser.add_argument("--loop", choices=runtime.LOOPS, default="uvloop",
                        help="event loop (default: %(default)s)")
    args = parser.parse_args(argv)
    problem = _endpoint_error(args.services)
    if problem:
        parser.error(f"--services {args.services!r}: {problem}")
    try:
        bank = CoreBank(args.services, args.db, name=args.name, heartbeat_s=args.heartbeat)
    except (ValueError, sqlite3.Error) as exc:
        parser.error(str(exc))
    try:
        runtime.run(_serve, bank, loop=args.loop)
    finally:
        bank.close()
    print(f"core-banking stopped executed={bank.executed} duplicates={bank.duplicates}",
          file=sys.stderr, flush=True)
    return 0


__all__ = ["ALL_COMMANDS", "AccountState", "CoreBank", "Ledger", "Outcome", "main"]

if __name__ == "__main__":
    sys.exit(main())
