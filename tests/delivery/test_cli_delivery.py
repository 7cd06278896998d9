"""The delivery commands against a node process: keys new / list / revoke, alert submit,
journal verify (intact and tampered)."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import anyio
import pytest

from gateway.auth import load_key
from gateway.cli import main
from gateway.soak import SoakNode

pytestmark = pytest.mark.anyio


async def gateway(*argv: str) -> int:
    return await anyio.to_thread.run_sync(main, list(argv))


@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}),
                                                        id="uvloop")])
async def test_keys_alerts_and_journal_commands(tmp_path: Path, anyio_backend: object,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    node = SoakNode(tmp_path / "data", name="cli-node")
    await node.start_async()
    svc = ["--services", node.urls["services"]]
    try:
        key_file = tmp_path / "alice.key"
        assert await gateway("keys", "new", "alice", "--out", str(key_file), *svc) == 0
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = load_key(key_file)
        assert key.officer == "alice" and key.endpoint == node.urls["clients"]
        assert await gateway("keys", "new", "alice", "--out", str(key_file), *svc) == 1
        assert "exists" in capsys.readouterr().err
        assert await gateway("alert", "submit", "--key", "k1", "--severity", "high",
                             "--account", "7", "--title", "card testing", "--detail",
                             "merchant=4829", *svc) == 0
        assert await gateway("alert", "submit", "--key", "k1", "--severity", "high",
                             "--account", "7", "--title", "card testing", *svc) == 0
        out = capsys.readouterr().out
        assert "alert 1 raised" in out and "alert 1 already raised" in out
        assert await gateway("keys", "revoke", str(key_file), *svc) == 0
        capsys.readouterr()
        assert await gateway("keys", "list", "--json", *svc) == 0
        (entry,) = json.loads(capsys.readouterr().out)
        assert entry["officer"] == "alice" and entry["revoked_ms"] > 0
        assert await gateway("keys", "register", "bob", "not-a-key", *svc) == 1
    finally:
        node.stop()
    data = str(tmp_path / "data")
    assert await gateway("journal", "verify", "--data-dir", data, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["events"] == 4  # rules (at first start), key, alert, revoke
    db = sqlite3.connect(Path(data) / "node.db")
    db.execute("DROP TRIGGER journal_no_update")
    db.execute("UPDATE journal SET body = x'00' WHERE seq = 2")
    db.commit()
    db.close()
    assert await gateway("journal", "verify", "--data-dir", data) == 1
    assert "BROKEN at event 2" in capsys.readouterr().err
