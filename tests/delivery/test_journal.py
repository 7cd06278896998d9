"""The journal: hash chain, group commit, verification after tampering, failure stops."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from gateway.journal import GENESIS, Journal, JournalError, connect, event_hash, verify

pytestmark = pytest.mark.anyio


async def _fill(path: Path, n: int) -> list[int]:
    j = Journal(path)
    base = j.durable_seq
    done: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(j.run)
        for i in range(n):
            seq = j.append("test", f"event {i}".encode(), (),
                           (lambda s=base + i + 1: done.append(s)))
            assert seq == base + i + 1
            if i % 97 == 0:
                await anyio.lowlevel.checkpoint()
        await j.wait_durable(base + n)
        tg.cancel_scope.cancel()
    j.close()
    return done


async def test_group_commit_calls_back_in_order_and_verifies(tmp_path: Path) -> None:
    done = await _fill(tmp_path / "j.db", 1000)
    assert done == list(range(1, 1001))
    db = connect(tmp_path / "j.db", readonly=True)
    report = verify(db)
    assert report.ok and report.events == 1000 and report.last == 1000
    first = db.execute("SELECT seq, ts_ns, kind, body, hash FROM journal WHERE seq = 1"
                       ).fetchone()
    assert bytes(first[4]) == event_hash(GENESIS, 1, first[1], "test", bytes(first[3]))
    db.close()


async def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    await _fill(tmp_path / "j.db", 10)
    assert await _fill(tmp_path / "j.db", 10) == list(range(11, 21))
    db = connect(tmp_path / "j.db", readonly=True)
    assert verify(db).events == 20
    db.close()


@pytest.mark.parametrize("tamper", ["change", "delete"])
async def test_tampering_is_found(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "j.db"
    await _fill(path, 50)
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE journal SET body = x'00' WHERE seq = 20")
    raw.execute("DROP TRIGGER journal_no_update")
    raw.execute("DROP TRIGGER journal_no_delete")
    if tamper == "change":
        raw.execute("UPDATE journal SET body = x'00' WHERE seq = 20")
    else:
        raw.execute("DELETE FROM journal WHERE seq = 20")
    raw.commit()
    raw.close()
    db = connect(path, readonly=True)
    report = verify(db)
    db.close()
    assert not report.ok and report.bad_seq == 20, report
    with pytest.raises(JournalError, match="does not verify"):
        Journal(path)


async def test_failed_commit_fails_everything_after(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")

    def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    j._commit = broken  # type: ignore[method-assign]
    acked: list[int] = []
    j.append("test", b"x", (), lambda: acked.append(1))
    with pytest.raises(JournalError, match="disk I/O error"):
        await j.run()
    assert acked == [] and j.durable_seq == 0
    with pytest.raises(JournalError):
        j.append("test", b"y")
    with pytest.raises(JournalError):
        await j.wait_durable(1)
    j.close()
