"""The officer console, driven by its keys through textual's pilot against a real node:
alerts ordered by severity, ``a`` acknowledges (the officer's other device gets the
``ack_sync``), acknowledgements from other devices show, ``enter`` opens the detail view
and marks the alert read, ``escape`` closes it, ``q`` quits."""

from __future__ import annotations

import collections
import io
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest
from nodeutil import register_officer, running_node, wait_until

from gateway import wire
from gateway.auth import OfficerKey, new_keypair
from gateway.client import OfficerClient, StreamItem, open_officer
from gateway.codec import Endpoint
from gateway.config import Config
from gateway.console import ConsoleApp, DetailScreen, run_console
from gateway.node import Node
from gateway.transport import open_dealer

SIZE = (160, 40)
V = wire.PROTOCOL_VERSION
S = wire.Severity


@pytest.fixture
def anyio_backend() -> Any:
    # textual drives its apps with asyncio's own API (tasks, events), so the pilot cannot
    # run on trio: these tests use the loop `gateway console` runs on, asyncio + uvloop.
    return ("asyncio", {"use_uvloop": True})


# -- helpers ------------------------------------------------------------------------------


async def submit(node: Node, *alerts: tuple[str, wire.Severity, str],
                 details: dict[str, str] | None = None,
                 recipients: Sequence[str] = ("alice",)) -> list[int]:
    """Raise ``(key, severity, title)`` alerts in order on the services endpoint."""
    ids = []
    async with open_dealer(node.urls[Endpoint.SERVICES]) as conn:
        for key, severity, title in alerts:
            reply = await conn.request(wire.AlertSubmit(
                V, conn.next_rid(), key=key, severity=severity, account=42, title=title,
                details=details or {}, recipients=list(recipients)), timeout=5)
            assert isinstance(reply, wire.AlertAccepted), reply
            ids.append(reply.alert_id)
    return ids


def shown(app: ConsoleApp) -> list[tuple[int, str, str, str]]:
    """The table in display order: (alert id, severity, title, state) per row."""
    return [(aid, sev.value, title, state) for aid, sev, title, state in app.table.snapshot()]


def state_of(app: ConsoleApp, alert_id: int) -> str:
    return next(state for aid, _, _, state in shown(app) if aid == alert_id)


def screen_lines(app: ConsoleApp) -> list[str]:
    """The table's lines as drawn: the headings, then the rows on screen."""
    table = app.table
    return [table.render_line(y).text for y in range(table.scrollable_content_region.height)]


async def next_ack_sync(device: OfficerClient, alert_id: int,
                        level: wire.AckLevel) -> wire.AckSync:
    """The ``ack_sync`` for ``alert_id`` at ``level`` in ``device``'s stream."""
    while True:
        item = await device.next()
        if (isinstance(item, wire.AckSync) and item.alert_id == alert_id
                and item.level is level):
            return item


# -- against a node -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_alerts_ordered_by_severity_then_newest_with_status(node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            bob_key = await register_officer(node, "bob")
            ids = await submit(node, ("l1", S.LOW, "low one"), ("c1", S.CRITICAL, "crit one"),
                               ("m1", S.MEDIUM, "medium one"), ("h1", S.HIGH, "high one"),
                               ("c2", S.CRITICAL, "crit two [bold]not markup[/] [/oops]"))
            async with open_officer(key, device="console") as client:
                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE):
                    await wait_until(lambda: len(shown(app)) == 5, what="five rows")
                    assert [(sev, title) for _, sev, title, _ in shown(app)] == [
                        ("critical", "crit two [bold]not markup[/] [/oops]"),
                        ("critical", "crit one"), ("high", "high one"),
                        ("medium", "medium one"), ("low", "low one")]
                    assert {state for *_, state in shown(app)} == {"new"}
                    assert app.table.cursor_id == shown(app)[0][0]
                    lines = screen_lines(app)
                    assert lines[0].split() == ["severity", "time", "account", "title", "state"]
                    assert "crit two [bold]not markup[/] [/oops]" in lines[1]
                    assert lines[1].split()[0] == "critical" and "new" in lines[1]
                    assert sorted(aid for aid, *_ in shown(app)) == sorted(ids)
                    status = app.status
                    assert "alice" in status and "console@test-node" in status
                    assert f"session {client.session}" in status
                    assert "critical 2 high 1 medium 1 low 1" in status

                    async with open_officer(bob_key, device="laptop") as bob:
                        await wait_until(lambda: "bob online" in app.status,
                                         what="bob online")
                        await bob.bye()
                        await wait_until(lambda: "bob offline" in app.status,
                                         what="bob offline")


@pytest.mark.anyio
async def test_a_acknowledges_and_other_device_gets_ack_sync(node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            crit, low = await submit(node, ("c", S.CRITICAL, "card testing"),
                                     ("l", S.LOW, "small anomaly"))
            async with (open_officer(key, device="console") as client,
                        open_officer(key, device="phone") as phone):
                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE) as pilot:
                    await wait_until(lambda: len(shown(app)) == 2, what="two rows")
                    assert app.table.cursor_id == crit
                    await pilot.press("a")
                    sync = await next_ack_sync(phone, crit, wire.AckLevel.ACKNOWLEDGED)
                    assert sync.device == "console" and sync.officer == "alice"
                    await wait_until(lambda: state_of(app, crit) == "acknowledged",
                                     what="acknowledged row")
                    assert state_of(app, low) == "new"
                    assert app.message == f"alert {crit} acknowledged"
                    await wait_until(lambda: "critical 0 high 0 medium 0 low 1"
                                     in app.status, what="open counts")
                    await pilot.press("a")  # once is enough
                    assert app.message == f"alert {crit} is acknowledged already"


@pytest.mark.anyio
async def test_selection_stays_on_its_alert_when_rows_move(node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            _, low = await submit(node, ("h", S.HIGH, "older high"), ("l", S.LOW, "the low"))
            async with (open_officer(key, device="console") as client,
                        open_officer(key, device="phone") as phone):
                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE) as pilot:
                    await wait_until(lambda: len(shown(app)) == 2, what="two rows")
                    await pilot.press("down")
                    assert app.table.cursor_id == low
                    [crit] = await submit(node, ("c", S.CRITICAL, "new critical"))
                    await wait_until(lambda: len(shown(app)) == 3, what="three rows")
                    assert shown(app)[0][0] == crit
                    assert app.table.cursor_id == low
                    await pilot.press("a")
                    await next_ack_sync(phone, low, wire.AckLevel.ACKNOWLEDGED)
                    await wait_until(lambda: state_of(app, low) == "acknowledged",
                                     what="low acknowledged")
                    assert state_of(app, crit) == "new"


@pytest.mark.anyio
async def test_acknowledged_on_another_device_shows_with_its_name(node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            crit, high = await submit(node, ("c", S.CRITICAL, "mule ring"),
                                      ("h", S.HIGH, "new device"))
            async with (open_officer(key, device="console") as client,
                        open_officer(key, device="phone") as phone):
                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE):
                    await wait_until(lambda: len(shown(app)) == 2, what="two rows")
                    assert await phone.acknowledge(crit) is True
                    assert await phone.mark_read(high) is True
                    await wait_until(lambda: state_of(app, crit) == "acknowledged · phone",
                                     what="synced acknowledgement")
                    await wait_until(lambda: state_of(app, high) == "read · phone",
                                     what="synced read")
                    await wait_until(lambda: "critical 0 high 1" in app.status,
                                     what="open counts")


@pytest.mark.anyio
async def test_enter_shows_everything_and_marks_read_escape_closes_q_quits(
        node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            async with (open_officer(key, device="console") as client,
                        open_officer(key, device="phone") as phone):
                blocked = wire.Transaction("tx-fraud", 99, 7, 9_900_000_00, "EUR",
                                           wire.Channel.WEB, 4829, "new-dev", "198.51.100.1",
                                           "NG", "Lagos", 1_700_000_000_000)
                async with open_dealer(node.urls[Endpoint.INGEST]) as producer:
                    reply = await producer.request(wire.ScoreRequest(V, 1, [blocked]))
                assert reply.decisions[0].outcome is not wire.Outcome.ALLOW
                [submitted] = await submit(node, ("s", S.LOW, "address change"),
                                           details={"source": "crm", "channel": "branch"})
                push = await phone.next()
                assert isinstance(push, wire.AlertPush) and push.alert.rules
                decision_alert = push.alert

                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE) as pilot:
                    await wait_until(lambda: len(shown(app)) == 2
                                     and app.table.cursor_id is not None, what="two rows")
                    assert app.table.cursor_id == decision_alert.alert_id
                    await pilot.press("enter")
                    assert isinstance(app.screen, DetailScreen)
                    text = app.screen.content.plain
                    assert "tx-fraud" in text and "9,900,000.00 EUR" in text
                    assert decision_alert.title in text
                    for rule in decision_alert.rules:
                        assert rule.id in text
                        assert (rule.description or "(no description)") in text
                    for action in decision_alert.actions:
                        assert action in text
                    assert "Account profile" in text and "Decision" in text
                    await next_ack_sync(phone, decision_alert.alert_id, wire.AckLevel.READ)
                    await wait_until(lambda: state_of(app, decision_alert.alert_id) == "read",
                                     what="marked read")

                    await pilot.press("escape")
                    assert not isinstance(app.screen, DetailScreen)
                    await pilot.press("down", "enter")
                    assert isinstance(app.screen, DetailScreen)
                    text = app.screen.content.plain
                    assert app.screen.alert.alert_id == submitted
                    assert "crm" in text and "channel" in text and "branch" in text
                    await next_ack_sync(phone, submitted, wire.AckLevel.READ)
                    await pilot.press("escape")
                    assert not isinstance(app.screen, DetailScreen)

                    await pilot.press("q")
                    await wait_until(lambda: app.return_code is not None, what="exit")
                assert app.return_code == 0 and app.end_reason is None


class _Misdirected:
    """The real client, except that acknowledgements name an alert the node never raised:
    the node refuses them (NOT_FOUND)."""

    def __init__(self, client: OfficerClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def acknowledge(self, alert_id: int,
                          level: wire.AckLevel = wire.AckLevel.ACKNOWLEDGED) -> bool:
        return await self._client.acknowledge(alert_id + 1_000_000, level)


@pytest.mark.anyio
async def test_refused_acknowledgement_shows_on_message_line(node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            [crit] = await submit(node, ("c", S.CRITICAL, "card testing"))
            async with open_officer(key, device="console") as client:
                app = ConsoleApp(_Misdirected(client), node="test-node")  # type: ignore[arg-type]
                async with app.run_test(size=SIZE) as pilot:
                    await wait_until(lambda: len(shown(app)) == 1, what="a row")
                    await pilot.press("a")
                    await wait_until(lambda: "NOT acknowledged" in app.message,
                                     what="refusal")
                    assert app.message.startswith(f"alert {crit} NOT acknowledged: the node "
                                                  "refused: NOT_FOUND")
                    assert state_of(app, crit) == "new"


@pytest.mark.anyio
async def test_unanswered_acknowledgement_shows_on_message_line(node_config: Config) -> None:
    with anyio.fail_after(30):
        node = Node(node_config, out=io.StringIO(), handle_signals=False)
        stopped = anyio.Event()
        node_scope = anyio.CancelScope()

        async def serve(*, task_status: anyio.abc.TaskStatus[Node]) -> None:
            try:
                with node_scope:
                    await node.run(task_status=task_status)
            finally:
                stopped.set()

        async with anyio.create_task_group() as tg:
            await tg.start(serve)
            key = await register_officer(node, "alice")
            [crit] = await submit(node, ("c", S.CRITICAL, "card testing"))
            async with open_officer(key, device="console", timeout=0.5) as client:
                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE) as pilot:
                    await wait_until(lambda: len(shown(app)) == 1, what="a row")
                    node_scope.cancel()
                    await stopped.wait()
                    await pilot.press("a")
                    await wait_until(lambda: "NOT acknowledged" in app.message,
                                     what="timeout")
                    assert "no reply" in app.message
                    assert state_of(app, crit) == "new"


@pytest.mark.anyio
async def test_revoked_key_ends_the_console(node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            async with open_officer(key, device="console") as client:
                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE):
                    node.desk.revoke_key(key.public)
                    await wait_until(lambda: app.return_code is not None, what="exit")
                assert app.return_code == 1
                assert app.end_reason == "session ended by the node: revoked"


# -- many alerts ----------------------------------------------------------------------------


class MemorySource:
    """An officer stream held in memory, for volumes no node raises in a test's time and
    for exact control of what arrives when: the client's interface, acknowledgements
    recorded."""

    officer = "alice"
    device = "console"
    session = 1
    attached = True

    def __init__(self, items: Sequence[StreamItem] = ()) -> None:
        self.acked: dict[int, wire.AckLevel] = {}
        self.presence: dict[tuple[str, str], wire.PresenceEntry] = {}
        self._items = collections.deque(items)
        self._more = anyio.Event()
        self.acks: list[int] = []

    def push(self, items: Sequence[StreamItem]) -> None:
        self._items.extend(items)
        self._more.set()

    async def next(self) -> StreamItem:
        while (item := self.next_nowait()) is None:
            self._more = anyio.Event()
            await self._more.wait()
        return item

    def next_nowait(self) -> StreamItem | None:
        return self._items.popleft() if self._items else None

    async def acknowledge(self, alert_id: int,
                          level: wire.AckLevel = wire.AckLevel.ACKNOWLEDGED) -> bool:
        self.acks.append(alert_id)
        return True

    async def mark_read(self, alert_id: int) -> bool:
        return True

    async def follow(self, officers: Sequence[str] = ()) -> list[wire.PresenceEntry]:
        return []

    async def presence_updates(self) -> AsyncIterator[wire.PresenceEntry]:
        await anyio.sleep_forever()
        yield wire.PresenceEntry("", "", wire.PresenceState.OFFLINE, 0)


def _push(alert_id: int, severity: wire.Severity) -> wire.AlertPush:
    alert = wire.Alert(alert_id, severity, "submitted", alert_id, f"alert {alert_id}",
                       1_700_000_000_000_000_000 + alert_id, 0, "test")
    return wire.AlertPush(V, 0, wire.SEVERITY_LANE[severity], alert_id, alert)


@pytest.mark.anyio
async def test_twenty_thousand_alerts_keep_the_table_bounded_and_keys_working() -> None:
    severities = [S.LOW, S.MEDIUM, S.HIGH, S.LOW, S.CRITICAL, S.LOW, S.MEDIUM, S.LOW]
    items: list[StreamItem] = [_push(i, severities[i % len(severities)])
                               for i in range(1, 20_001)]
    # acknowledged on another device: the first alerts to leave a full table
    items += [wire.AckSync(V, 0, wire.Lane.BULK, 0, i, "alice", "phone",
                           wire.AckLevel.ACKNOWLEDGED) for i in range(19_001, 19_101)]
    source = MemorySource(items)
    app = ConsoleApp(source, max_rows=5_000)
    with anyio.fail_after(30):
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: not source._items and app.table.row_count > 0,
                             timeout=20, what="stream taken")
            rows = shown(app)
            assert 0 < len(rows) <= 5_000
            ids = [aid for aid, *_ in rows]
            newest_critical = max(i for i in range(1, 20_001)
                                  if severities[i % len(severities)] is S.CRITICAL)
            assert ids[0] == newest_critical
            ranks = {"critical": 0, "high": 1, "medium": 2, "low": 3}
            keys = [(ranks[sev], -aid) for aid, sev, _, _ in rows]
            assert keys == sorted(keys)
            assert max(ids) == 20_000  # the newest are kept
            assert all(state == "acknowledged · phone" for aid, _, _, state in rows
                       if 19_001 <= aid <= 19_100)
            await pilot.press("home", "a")
            await wait_until(lambda: source.acks == [ids[0]], what="acknowledged")


@pytest.mark.anyio
async def test_a_never_acts_on_a_selected_alert_out_of_view() -> None:
    source = MemorySource([_push(1, S.LOW), _push(2, S.LOW)])
    app = ConsoleApp(source)
    with anyio.fail_after(30):
        async with app.run_test(size=(160, 12)) as pilot:
            await wait_until(lambda: app.table.row_count == 2, what="two rows")
            await pilot.press("down")
            assert app.table.cursor_id == 1 and app.table.cursor_visible()
            source.push([_push(i, S.CRITICAL) for i in range(3, 40)])
            await wait_until(lambda: app.table.row_count == 39, what="39 rows")
            assert app.table.cursor_id == 1 and not app.table.cursor_visible()
            await pilot.press("a")
            assert source.acks == []
            assert "out of view" in app.message and app.table.cursor_visible()
            await pilot.press("a")
            await wait_until(lambda: source.acks == [1], what="acknowledged")
            assert app.message == "alert 1 acknowledged"
            assert state_of(app, 1) == "acknowledged"


@pytest.mark.anyio
async def test_control_characters_never_reach_the_terminal() -> None:
    alert = wire.Alert(1, S.HIGH, "submitted", 7, "wire\x1b[2J\x07 title", 1, 1, "crm\x9b",
                       details={"note": "line one\nline\x1b]0;x\x07 two"})
    source = MemorySource([wire.AlertPush(V, 0, wire.Lane.HIGH, 1, alert)])
    app = ConsoleApp(source)
    with anyio.fail_after(30):
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: app.table.row_count == 1, what="a row")
            drawn = "".join(screen_lines(app))
            assert "\x1b" not in drawn and "\x07" not in drawn
            assert "wire\ufffd[2J\ufffd title" in drawn
            await pilot.press("enter")
            assert isinstance(app.screen, DetailScreen)
            text = app.screen.content.plain
            assert "line one\nline\ufffd]0;x\ufffd two" in text and "crm\ufffd" in text
            assert not any(ch in text for ch in "\x1b\x07\x9b")


# -- run_console ------------------------------------------------------------------------------


def test_bad_key_file_exits_2(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "alice.key"
    path.write_text('officer = "alice"\npublic = "short"\n')
    assert run_console(str(path)) == 2
    err = capsys.readouterr().err
    assert "config error" in err and str(path) in err


def test_unreachable_node_exits_1(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    public, secret = new_keypair()
    path = tmp_path / "alice.key"
    OfficerKey("alice", public, secret, new_keypair()[0], f"tcp://127.0.0.1:{port}").save(path)
    assert run_console(str(path), timeout=0.3) == 1
    err = capsys.readouterr().err
    assert f"no answer from the node at tcp://127.0.0.1:{port}" in err


@pytest.mark.anyio
async def test_restarted_console_shows_what_is_still_open(node_config: Config) -> None:
    with anyio.fail_after(30):
        async with running_node(node_config) as node:
            key = await register_officer(node, "alice")
            ids = await submit(node, ("r1", S.HIGH, "first"), ("r2", S.CRITICAL, "second"),
                               ("r3", S.LOW, "third"))
            async with open_officer(key, device="console") as client:
                for _ in ids:  # this device has taken them all
                    await client.next()
                assert await client.acknowledge(ids[0])
            # the same device again: its stream resumes after them, nothing new comes
            async with open_officer(key, device="console") as client:
                app = ConsoleApp(client, node="test-node")
                async with app.run_test(size=SIZE):
                    await wait_until(lambda: len(shown(app)) == 2, what="open alerts listed")
                    assert [(aid, title, state) for aid, _, title, state in shown(app)] == [
                        (ids[1], "second", "new"), (ids[2], "third", "new")]
