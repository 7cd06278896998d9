"""Rule sets on a running node: hot load, refusal with file/rule/line/reason, rollback,
versions kept across restarts, shadow report, trusted accounts."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from nodeutil import running_node, wait_until

from gateway import wire
from gateway.codec import Endpoint
from gateway.config import Config
from gateway.journal import Journal
from gateway.scoring import DEFAULT_RULES_PATH
from gateway.store import RulesEvent
from gateway.transport import open_dealer

pytestmark = pytest.mark.anyio

SMALL = """
[meta]
name = "small"
[thresholds]
step_up = 10
block = 20
block_and_freeze = 1000
step_up_method = "face"
[[rules]]
id = "BIG"
description = "large amount"
score = 25
when = { amount.ge = 100000 }
"""

BAD = SMALL + """
[[rules]]
id = "OOPS"
description = "unknown feature"
score = 5
when = { amout.ge = 1 }
"""

TX = wire.Transaction("tx-1", 42, 7, 250_000, "EUR", wire.Channel.CARD, 5411, "dev-1",
                      "10.0.0.1", "DE", "Berlin", 1_700_000_000_000)


async def _service(node: Any, msg: Any) -> Any:
    async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
        return await conn.request(msg)


async def _score(node: Any) -> wire.Decision:
    async with open_dealer(node.urls[Endpoint.INGEST]) as conn:
        reply = await conn.request(wire.ScoreRequest(1, 1, [TX]))
    assert isinstance(reply, wire.ScoreReply)
    return reply.decisions[0]


async def test_load_refuse_rollback_and_restart(node_config: Config) -> None:
    async with running_node(node_config) as node:
        assert node.engine.info.version == 1
        loaded = await _service(node, wire.RulesLoad(1, 2, SMALL, "small.toml"))
        assert isinstance(loaded, wire.RulesLoaded) and loaded.version == 2
        decision = await _score(node)
        assert decision.ruleset_version == 2 and decision.fired == ("BIG",)
        assert decision.outcome is wire.Outcome.BLOCK

        refused = await _service(node, wire.RulesLoad(1, 3, BAD, "bad.toml"))
        assert isinstance(refused, wire.Error) and refused.name == "RULES_INVALID"
        assert "bad.toml" in refused.message and "OOPS" in refused.message
        oops_line = BAD.splitlines().index('id = "OOPS"')  # 1-based line of the [[rules]]
        assert f"bad.toml:{oops_line}:" in refused.message and "amout" in refused.message
        assert node.counters.get("services_errors.RULES_INVALID") == 1
        assert (await _score(node)).ruleset_version == 2  # the running set stays

        again = await _service(node, wire.RulesLoad(1, 4, SMALL.replace("25", "5"), "s2.toml"))
        assert again.version == 3
        back = await _service(node, wire.RulesRollback(1, 5))
        assert isinstance(back, wire.RulesLoaded) and back.version == 2

    # a restart reinstates v2 (v3 was rolled back) and can still roll back to v1
    async with running_node(node_config) as node:
        assert node.engine.info.version == 2
        assert (await _score(node)).fired == ("BIG",)
        back = await _service(node, wire.RulesRollback(1, 6))
        assert back.version == 1
        none_left = await _service(node, wire.RulesRollback(1, 7))
        assert isinstance(none_left, wire.Error) and none_left.name == "NOT_FOUND"


async def test_shadow_set_is_recorded_not_enforced(node_config: Config) -> None:
    async with running_node(node_config) as node:
        shadow = await _service(node, wire.RulesLoad(1, 1, SMALL, "challenger.toml", True))
        assert isinstance(shadow, wire.RulesLoaded) and shadow.shadow
        decision = await _score(node)
        assert decision.ruleset_version == 1  # the live default set decided
        report = await _service(node, wire.ShadowReportRequest(1, 2))
        assert isinstance(report, wire.ShadowReport)
        assert report.report["compared"] == 1
        assert report.report["shadow_version"] == shadow.version


async def test_trusted_load_and_bad_file(node_config: Config, tmp_path: Path) -> None:
    good = tmp_path / "trusted.csv"
    good.write_text("# account,tier_level\n42,2\n43,1\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("42,2\nnot-an-account,1\n")
    async with running_node(node_config) as node:
        ok = await _service(node, wire.TrustedLoad(1, 1, str(good)))
        assert isinstance(ok, wire.TrustedLoaded) and ok.accounts == 2
        refused = await _service(node, wire.TrustedLoad(1, 2, str(bad)))
        assert isinstance(refused, wire.Error) and refused.name == "INVALID"
        assert "bad.csv" in refused.message and "line 2" in refused.message
        missing = await _service(node, wire.TrustedLoad(1, 3, str(tmp_path / "none.csv")))
        assert isinstance(missing, wire.Error)
        assert node.engine.stats()["trusted_accounts"] == 2  # the loaded table stays


def test_default_rules_file_exists() -> None:
    assert Path(DEFAULT_RULES_PATH).is_file()


async def test_rule_changes_never_wait_on_the_journals_lock(
        node_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule load and a rollback while the journal's commit holds node.db's write lock:
    the node keeps serving (no second writer blocks its loop), each is answered once its
    `rules` journal event (with the text's hash) is durable, and kept for the next start."""
    gate = threading.Event()
    held = threading.Event()
    commit = Journal._commit

    def slow_commit(self: Journal) -> None:
        if not gate.is_set():
            held.set()
            gate.wait(10)
        commit(self)

    replies: dict[int, Any] = {}
    async with running_node(node_config) as node:
        first = node.engine.info.version
        async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:

            async def ask(msg: Any) -> None:
                replies[msg.rid] = await conn.request(msg, timeout=20)

            async with anyio.create_task_group() as tg:
                monkeypatch.setattr(Journal, "_commit", slow_commit)
                tg.start_soon(ask, wire.AlertSubmit(1, 1, "k-1", wire.Severity.LOW, 42, "t",
                                                    {}))
                await wait_until(held.is_set, what="a commit holding the write lock")
                tg.start_soon(ask, wire.RulesLoad(1, 2, SMALL, "small.toml"))
                await wait_until(lambda: node.engine.info.version == first + 1,
                                 what="the new set installed")
                tg.start_soon(ask, wire.RulesLoad(1, 3, SMALL + "# two\n", "two.toml"))
                await wait_until(lambda: node.engine.info.version == first + 2,
                                 what="the second set installed")
                tg.start_soon(ask, wire.RulesRollback(1, 4))
                pong = await conn.request(wire.Ping(1, 5), timeout=5)  # the loop serves
                assert isinstance(pong, wire.Pong) and not replies  # nothing durable yet
                gate.set()
        assert isinstance(replies[1], wire.AlertAccepted)
        assert replies[2] == wire.RulesLoaded(1, 2, first + 1, 1, 0, False)
        assert isinstance(replies[3], wire.RulesLoaded) and replies[3].version == first + 2
        assert isinstance(replies[4], wire.RulesLoaded) and replies[4].version == first + 1
        events = [msgspec.msgpack.decode(body, type=RulesEvent) for body, in
                  node.store.db.execute("SELECT body FROM journal WHERE kind = 'rules'")]
    digest = hashlib.blake2b(SMALL.encode(), digest_size=32).hexdigest()
    assert [(e.what, e.version, e.filename) for e in events[-3:]] == [
        ("live", first + 1, "small.toml"), ("live", first + 2, "two.toml"),
        ("rollback", first + 2, "two.toml")]
    assert events[-3].source_blake2b == digest
    async with running_node(node_config) as node:  # v+2 rolled back: v+1 is live again
        assert node.engine.info.version == first + 1
        assert node.engine.info.filename == "small.toml"
