"""Incident timelines from node.db, and the `gateway incident` / `gateway cases` commands.

The database is written as the desks write it: a Store (migrations) and a Journal with
the real event bodies of gateway.alerting and gateway.incidents, and the derived rows in
the same transactions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from gateway import wire
from gateway.alerting import _AckEvent, _AlertEvent, _ReceivedEvent
from gateway.cli import main
from gateway.incident import _timeline as tlm
from gateway.incident._oncall import ONCALL_REFERENCE
from gateway.journal import Journal, Write, connect
from gateway.store import Store

T0 = 1_700_000_000_000_000_000  # 2023-11-14 22:13:20 UTC
MS = 1_000_000
S = 1_000 * MS
LANES = wire.LANES
ALERT_SQL = ("INSERT INTO alerts (alert_id, key, severity, account, raised_ns, recipients, "
             "jseq) VALUES (?,?,?,?,?,?,?)")
STREAM_SQL = ("INSERT INTO stream (officer, lane, seq, alert_id, level, device, rseq) "
              "VALUES (?,?,?,?,?,?,?)")


def cursors(critical: int) -> list[int]:
    return [critical] + [0] * (LANES - 1)


class Writer:
    """Journal events with their derived rows, at chosen times, as the desks append them."""

    def __init__(self, data_dir: Path) -> None:
        self.store = Store(data_dir)
        self.journal = Journal(self.store.path)
        self.enc = wire.encoder()
        self.events: list[tuple[str, bytes, Sequence[Write], int]] = []

    @property
    def next_seq(self) -> int:
        return self.journal.durable_seq + len(self.events) + 1

    def add(self, kind: str, body: Any, writes: Sequence[Write], ts_ns: int) -> int:
        seq = self.next_seq
        raw = body if isinstance(body, bytes) else self.enc.encode(body)
        self.events.append((kind, raw, writes, ts_ns))
        return seq

    def alert(self, alert_id: int, ts: int, recipients: dict[str, int], title: str,
              severity: wire.Severity = wire.Severity.CRITICAL) -> int:
        """``recipients``: officer -> the alert's seq in their stream."""
        alert = wire.Alert(alert_id, severity, "submitted", 1001, title, ts, ts, "test")
        lane = int(wire.SEVERITY_LANE[severity])
        writes: list[Write] = [(ALERT_SQL, [alert_id, None, severity.value, 1001, ts,
                                            ",".join(recipients), self.next_seq])]
        writes += [(STREAM_SQL, [o, lane, seq, alert_id, None, None, None])
                   for o, seq in recipients.items()]
        body = _AlertEvent(msgspec.Raw(self.enc.encode(alert)), None,
                           [(o, lane, seq) for o, seq in recipients.items()])
        return self.add("alert", body, writes, ts)

    def received(self, ts: int, *entries: tuple[str, str, int]) -> int:
        return self.add("received", [_ReceivedEvent(o, d, cursors(c)) for o, d, c in entries],
                        [("INSERT OR REPLACE INTO device_cursors VALUES (?,?,?,?)",
                          [o, d, ",".join(map(str, cursors(c))), ts]) for o, d, c in entries],
                        ts)

    def ack(self, ts: int, alert_id: int, officer: str, device: str, level: str) -> int:
        return self.add("ack", _AckEvent(alert_id, officer, device, level, (0, 9)),
                        [("INSERT INTO acks VALUES (?,?,?,?,?)",
                          [alert_id, officer, level, device, ts])], ts)

    def room(self, ts: int, incident: int, rseq: int, kind: str, actor: str, text: str,
             writes: Sequence[Write] = ()) -> int:
        body = self.enc.encode(wire.RoomEvent(incident, rseq, kind, actor, text, ts))
        return self.add("room", body, [*writes, (
            "INSERT INTO room_events VALUES (?,?,?,?,?,?,?)",
            [incident, rseq, kind, actor, ts, body, self.next_seq])], ts)

    def commit(self) -> None:
        async def run() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.journal.run)
                last = 0
                for kind, body, writes, ts in self.events:
                    last = self.journal.append(kind, body, writes, ts_ns=ts)
                with anyio.fail_after(10):
                    await self.journal.wait_durable(last)
                tg.cancel_scope.cancel()

        anyio.run(run)
        self.events.clear()

    def close(self) -> None:
        self.journal.close()
        self.store.close()


def incident_row(iid: int, ts: int, first_alert: int, jseq: int, title: str,
                 members: list[str]) -> list[Write]:
    writes: list[Write] = [
        ("INSERT INTO incidents (incident_id, account, family, severity, title, region, "
         "status, opened_ns, last_alert_ns, first_alert, ladder, similar, jseq) "
         "VALUES (?,?,?,?,?,?,'open',?,?,?,?,?,?)",
         [iid, 1001, "card", "critical", title, "eu", ts, ts, first_alert, "[]", "", jseq]),
        ("INSERT INTO incident_alerts VALUES (?,?)", [iid, first_alert])]
    writes += [("INSERT INTO members (incident_id, officer, via, joined_ns) VALUES (?,?,?,?)",
                [iid, o, "oncall", ts]) for o in members]
    return writes


COMMAND_SQL = ("INSERT INTO commands (request_id, incident_id, maker, key, command, account, "
               "amount, reason, state, approvals, approvers, created_ns, expires_ns) "
               "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")


def build(data_dir: Path) -> None:
    """Incident 1 (resolved): alert 1 to alice and bob, alert 2 joins; alice has a phone
    and a tablet, bob a laptop that never confirms in time; a page, acks, a freeze with
    one approval, executed, then /resolve. Incident 2: open, its alert routed to nobody."""
    w = Writer(data_dir)
    w.received(T0 - 60 * S, ("alice", "phone", 0))  # an old confirmation: not scanned
    w.alert(1, T0, {"alice": 1, "bob": 1}, "card testing burst")
    jseq = w.next_seq
    w.add("incident", b"\x90", incident_row(1, T0 + 1 * MS, 1, jseq, "card testing burst",
                                            ["alice", "bob"]), T0 + 1 * MS)
    w.room(T0 + 1 * MS, 1, 1, "opened", "node", "[critical] card testing burst\naccount 1001")
    w.room(T0 + 2 * MS, 1, 2, "page", "node", "paged bob by sms: delivered (202 queued)",
           [("INSERT INTO pages VALUES (?,?,?,?,?,?,?,?,?)",
             ["1-1-bob-sms", 1, 1, "bob", "sms", T0 + 2 * MS, T0 + 150 * MS, 1,
              "202 queued id=7"])])
    w.received(T0 + 800 * MS, ("alice", "phone", 1), ("bob", "laptop", 0))
    w.received(T0 + 1900 * MS, ("alice", "tablet", 1))
    w.ack(T0 + 2500 * MS, 1, "alice", "phone", "read")
    w.ack(T0 + 3000 * MS, 1, "alice", "tablet", "acknowledged")
    w.room(T0 + 3001 * MS, 1, 3, "ack", "alice", "alice acknowledged alert 1")
    # alert 2 joins; alice's phone had confirmed seq 1 before: only seq 2 counts for it;
    # carol (paged) never attached a device
    w.alert(2, T0 + 3500 * MS, {"alice": 2, "carol": 1}, "card testing again")
    w.add("room", b"\x90", [("INSERT INTO incident_alerts VALUES (?,?)", [1, 2])],
          T0 + 3500 * MS)
    w.received(T0 + 3600 * MS, ("alice", "phone", 1))
    w.received(T0 + 3700 * MS, ("alice", "phone", 2))
    w.room(T0 + 4000 * MS, 1, 4, "command", "alice", "request 1: /freeze 1001 card testing",
           [(COMMAND_SQL, [1, 1, "alice", "k1", "freeze", 1001, 0, "card testing", "pending",
                           1, "compliance,risk", T0 + 4000 * MS, T0 + 904 * S])])
    w.room(T0 + 5000 * MS, 1, 5, "approval", "bob", "bob approved request 1 (1/1)",
           [("INSERT INTO votes VALUES (?,?,?,?,?)", [1, "bob", 1, "", T0 + 5000 * MS]),
            ("UPDATE commands SET state = 'approved', approved_ns = ? WHERE request_id = 1",
             [T0 + 5000 * MS])])
    w.room(T0 + 6000 * MS, 1, 6, "executed", "node", "request 1 executed by corebank",
           [("UPDATE commands SET state = 'executed', done_ns = ?, result = 'frozen', "
             "reference = 'CB-1' WHERE request_id = 1", [T0 + 6000 * MS])])
    done = T0 + 7000 * MS
    w.room(done, 1, 7, "resolved", "alice", "resolved: fraud-confirmed; filed as case 1", [
        (COMMAND_SQL, [2, 1, "alice", "k2", "resolve", 0, 0, "fraud-confirmed card ring #cards",
                       "executed", 0, "", done, done + 900 * S]),
        ("UPDATE commands SET approved_ns = ?, done_ns = ?, result = 'case 1' "
         "WHERE request_id = 2", [done, done]),
        ("UPDATE incidents SET status = 'resolved', resolved_ns = ? WHERE incident_id = 1",
         [done]),
        ("INSERT INTO cases VALUES (?,?,?,?,?,?,?,?)",
         [1, "card testing burst (account 1001, critical)", "cards card critical", "CT-1",
          "freeze 1001 (executed)", "fraud-confirmed", "card ring #cards", done]),
        ("INSERT INTO cases_fts (rowid, summary, tags, rules, actions, outcome, notes) "
         "VALUES (?,?,?,?,?,?,?)",
         [1, "card testing burst (account 1001, critical)", "cards card critical", "CT-1",
          "freeze 1001 (executed)", "fraud-confirmed", "card ring #cards"])])
    # bob's laptop confirms only after the scan's bound (resolution + 1 hour)
    w.received(done + 3601 * S, ("bob", "laptop", 1))
    # incident 2, open: an alert routed to nobody
    w.alert(3, T0 + 7200 * S, {}, "mule pattern", wire.Severity.HIGH)
    jseq2 = w.next_seq
    w.add("incident", b"\x90", incident_row(2, T0 + 7200 * S, 3, jseq2, "mule pattern", []),
          T0 + 7200 * S)
    w.commit()
    w.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    build(d)
    return d


@pytest.fixture
def db(data_dir: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(data_dir / "node.db", readonly=True)
    yield conn
    conn.close()


def lines_of(tl: tlm.Timeline, what: str) -> list[tlm.Entry]:
    return [e for e in tl.entries if e.what == what]


def test_timeline_order_and_figures(db: sqlite3.Connection) -> None:
    tl = tlm.timeline(db, 1)
    inc = tl.incident
    assert (inc.id, inc.status, inc.severity, inc.account, inc.family) == (
        1, "resolved", "critical", 1001, "card")
    assert inc.resolved_ns == T0 + 7000 * MS and inc.members == ("alice", "bob")
    assert tl.alert_ids == [1, 2] and tl.first_alert_ns == T0
    known = [e.ts_ns for e in tl.entries if e.ts_ns]
    assert known == sorted(known) and known[0] == T0
    assert tl.entries[0] == tlm.Entry(T0, "alert", "node",
                                      "alert 1 [critical] card testing burst -> alice, bob")
    assert [e.ts_ns for e in tl.entries[len(known):]] == [0] * (len(tl.entries) - len(known))
    assert tl.time_to_receive_s == pytest.approx(0.8)
    assert tl.time_to_ack_s == pytest.approx(3.0)
    assert tl.time_to_act_s == pytest.approx(5.0)  # approval: the freeze is in force
    assert tl.time_to_execute_s == pytest.approx(6.0)  # the business system answered
    assert tl.receipts_complete and tl.notes == []


def test_each_device_receipt_comes_from_a_received_event(db: sqlite3.Connection) -> None:
    tl = tlm.timeline(db, 1)
    got = {(e.who, e.detail): e.ts_ns for e in lines_of(tl, "received")}
    assert got == {
        ("alice/phone", "alert 1 (lane 0, seq 1)"): T0 + 800 * MS,
        ("alice/tablet", "alert 1 (lane 0, seq 1)"): T0 + 1900 * MS,
        # the phone's cursor was at 1 before alert 2 was raised: seq 2 counts, at 3.7 s
        ("alice/phone", "alert 2 (lane 0, seq 2)"): T0 + 3700 * MS,
        ("alice/tablet", "alert 2 (lane 0, seq 2): not confirmed"): 0,
        ("carol", "alert 2 (lane 0, seq 1): not confirmed (no device confirmed anything)"): 0,
        # bob's laptop confirmed only after resolution + 1 hour: outside the scan
        ("bob/laptop", "alert 1 (lane 0, seq 1): not confirmed"): 0,
    }


def test_acks_pages_commands_votes_and_room(db: sqlite3.Connection) -> None:
    tl = tlm.timeline(db, 1)
    assert [(e.ts_ns, e.who, e.detail) for e in lines_of(tl, "read")] == [
        (T0 + 2500 * MS, "alice/phone", "alert 1")]
    assert [(e.ts_ns, e.who) for e in lines_of(tl, "acknowledged")] == [
        (T0 + 3000 * MS, "alice/tablet")]
    [page] = lines_of(tl, "page")
    assert page.who == "bob" and page.ts_ns == T0 + 2 * MS
    assert page.detail == "step 1 by sms: delivered (202 queued id=7; 148 ms)"
    requests = lines_of(tl, "request")
    assert [e.detail for e in requests] == [
        "request 1: /freeze 1001 card testing (needs 1 approval from compliance, risk; "
        "state: executed)",
        "request 2: /resolve fraud-confirmed card ring #cards (no approval needed; "
        "state: executed)"]
    assert [(e.who, e.detail) for e in lines_of(tl, "approve")] == [("bob", "request 1")]
    assert [e.ts_ns for e in lines_of(tl, "approved")] == [T0 + 5000 * MS, T0 + 7000 * MS]
    executed = lines_of(tl, "executed")
    assert executed[0].detail == "request 1: /freeze 1001 card testing -> frozen [CB-1]"
    assert executed[1].detail.endswith("-> case 1")
    room = [e for e in tl.entries if e.what.startswith("room.")]
    assert [e.what for e in room] == ["room.opened", "room.page", "room.ack", "room.command",
                                      "room.approval", "room.executed", "room.resolved"]
    assert room[0].detail == "#1 [critical] card testing burst | account 1001"
    assert not [e for e in tlm.timeline(db, 1, room=False).entries
                if e.what.startswith("room.")]


def test_the_receipt_scan_is_bounded(db: sqlite3.Connection) -> None:
    tl = tlm.timeline(db, 1, max_events=4)  # the incident's event and 3 more
    assert not tl.receipts_complete and tl.notes
    got = {e.who: e.ts_ns for e in lines_of(tl, "received") if "alert 1" in e.detail}
    assert got == {"alice/phone": T0 + 800 * MS, "alice/tablet": 0, "bob/laptop": 0}


def test_an_open_incident_without_recipients(db: sqlite3.Connection) -> None:
    tl = tlm.timeline(db, 2)
    assert tl.incident.status == "open" and tl.incident.resolved_ns == 0
    assert [e.what for e in tl.entries] == ["alert"]
    assert tl.entries[0].detail == "alert 3 [high] mule pattern -> nobody"
    assert (tl.time_to_receive_s, tl.time_to_ack_s, tl.time_to_act_s,
            tl.time_to_execute_s) == (None, None, None, None)
    assert "acknowledge -" in tlm.render(tl)


def test_unknown_incident(db: sqlite3.Connection) -> None:
    with pytest.raises(tlm.IncidentNotFoundError, match="no incident 99"):
        tlm.timeline(db, 99)


def test_render(db: sqlite3.Connection) -> None:
    text = tlm.render(tlm.timeline(db, 1))
    assert text.startswith("incident 1 [critical] resolved: card testing burst\n")
    assert "opened   2023-11-14 22:13:20.001Z" in text
    assert "resolved 2023-11-14 22:13:27.000Z (+7.000s)" in text
    assert "time to receive 0.800 s, acknowledge 3.000 s, act 5.000 s, execute 6.000 s" in text
    lines = text.splitlines()

    def line(*parts: str) -> str:
        found = [ln for ln in lines if all(p in ln for p in parts)]
        assert len(found) == 1, (parts, found)
        return found[0]

    assert line("alert 1 [critical]").startswith("22:13:20.000     +0.000s  alert ")
    assert line("received", "alice/phone", "alert 1").startswith("22:13:20.800     +0.800s")
    assert line("acknowledged", "alice/tablet").startswith("22:13:23.000     +3.000s")
    assert line("approved", "/freeze").startswith("22:13:25.000     +5.000s")
    assert line("executed", "frozen [CB-1]").startswith("22:13:26.000     +6.000s")
    assert line("bob/laptop").startswith("--:--:--.---")
    assert line("bob/laptop").endswith("not confirmed")


def test_list_incidents(db: sqlite3.Connection) -> None:
    assert [r.id for r in tlm.list_incidents(db, open_only=True, limit=10)] == [2]
    rows = tlm.list_incidents(db, open_only=False, limit=10)
    assert [(r.id, r.status, r.alerts) for r in rows] == [(2, "open", 1), (1, "resolved", 2)]
    assert [r.id for r in tlm.list_incidents(db, open_only=False, limit=1)] == [2]


def test_search_cases(db: sqlite3.Connection) -> None:
    [case] = tlm.search_cases(db, "cards", 10)
    assert case == wire.CaseInfo(1, "card testing burst (account 1001, critical)",
                                 ["cards", "card", "critical"], ["CT-1"],
                                 ["freeze 1001 (executed)"], "fraud-confirmed",
                                 "card ring #cards", T0 + 7000 * MS)
    assert tlm.search_cases(db, "outcome:false", 10) == []
    with pytest.raises(tlm.CaseQueryError, match="fts5: syntax error"):
        tlm.search_cases(db, "card AND (", 10)


def test_a_database_without_incident_tables(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db")
    with pytest.raises(tlm.SchemaError, match="schema version 0"):
        tlm.list_incidents(conn)
    conn.close()


# -- the command line ------------------------------------------------------------------------


def test_cli_incident_show(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["incident", "show", "1", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("incident 1 [critical] resolved")
    assert "room.opened" in out and "not confirmed" in out
    assert main(["incident", "show", "1", "--no-room", "--data-dir", str(data_dir)]) == 0
    assert "room." not in capsys.readouterr().out
    assert main(["incident", "show", "1", "--json", "--data-dir", str(data_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["incident"]["status"] == "resolved" and doc["time_to_ack_s"] == 3.0
    assert doc["entries"][0]["what"] == "alert" and doc["entries"][-1]["ts_ns"] is None


def test_cli_incident_show_unknown_or_nowhere(data_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["incident", "show", "99", "--data-dir", str(data_dir)]) == 1
    assert "no incident 99" in capsys.readouterr().err
    assert main(["incident", "show", "1", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "no node database here" in capsys.readouterr().err


def test_cli_data_dir_from_config(data_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{data_dir}"\n')
    assert main(["incident", "list", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["id", "severity", "status", "opened", "(UTC)",
                                           "account", "family", "alerts", "title"]
    assert "mule pattern" in out and "card testing" not in out
    with pytest.raises(SystemExit):  # --data-dir and --config exclude each other
        main(["incident", "list", "--config", str(cfg), "--data-dir", str(data_dir)])
    capsys.readouterr()


def test_cli_incident_list(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(data_dir)]
    assert main(["incident", "list", "--all", *d]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == ["id", "2", "1"]
    assert main(["incident", "list", "--all", "--json", "--limit", "1", *d]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["id"] == 2 and doc["status"] == "open" and doc["alerts"] == 1


def test_cli_cases_search(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(data_dir)]
    assert main(["cases", "search", "card ring", *d]) == 0
    out = capsys.readouterr().out
    assert out.startswith("case 1  2023-11-14 22:13:27Z  fraud-confirmed: card testing")
    assert "actions  freeze 1001 (executed)" in out
    assert main(["cases", "search", "cards", "--json", *d]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["case_id"] == 1 and doc["tags"] == ["cards", "card", "critical"]
    assert main(["cases", "search", "nothing", *d]) == 0
    assert "no case matches" in capsys.readouterr().out
    assert main(["cases", "search", '"fraud-confirmed"', "--json", *d]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert main(["cases", "search", "card AND (", *d]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "fts5: syntax error" in captured.err
    assert "Traceback" not in captured.err


def test_cli_incident_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "oncall.toml"
    good.write_text(ONCALL_REFERENCE)
    assert main(["incident", "check", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: ok, 1 officers, 1 routes")
    policy = tmp_path / "policy.toml"
    policy.write_text('[commands.freeze]\nissuers = ["risk"]\napprovals = 0\n')
    assert main(["incident", "check", str(good), "--policy", str(policy)]) == 0
    assert f"{policy}: ok, rules for freeze" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[officers]]\nid = "a"\nroles = ["boss"]\n')
    assert main(["incident", "check", str(bad)]) == 2
    assert f"{bad}: officers[0].roles[0]:" in capsys.readouterr().err
    policy.write_text('[commands.freeze]\nissuers = ["risk"]\napprovals = 1\n')
    assert main(["incident", "check", str(good), "--policy", str(policy)]) == 2
    assert "commands.freeze.approvers" in capsys.readouterr().err


def test_cli_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["incident", "example"]) == 0
    assert capsys.readouterr().out == ONCALL_REFERENCE
    assert main(["incident", "policy-example"]) == 0
    assert "[commands.freeze]" in capsys.readouterr().out
