"""``gateway console``: a terminal console for risk officers.

The officer's live alerts, most severe first and newest first within a severity. ``a``
acknowledges the selected alert, ``enter`` opens everything the alert carries (and marks it
read), ``escape`` closes that view, ``q`` quits. Acknowledgements made on the officer's
other devices arrive as ``ack_sync`` items and show here as well. The status line names
the officer, node and session, counts open alerts per severity and shows the presence of
followed officers; the message line below it reports refusals and SDK warnings.

Built on textual: a keyboard-driven terminal UI toolkit with a test pilot
(``App.run_test``), so the console is tested by pressing its keys against a real node.
textual runs on asyncio only, so the console does too (with uvloop).

Thousands of alerts: :class:`AlertTable` keeps its rows in a sorted list (an alert is one
binary search and one list insert), draws only the lines on screen, and holds at most
``max_rows`` alerts (when full, a tenth leaves at once: acknowledged alerts first, then the
oldest). The selection belongs to an alert, not to a line: it moves with its alert when
rows are inserted above it, and ``a`` acts only on a selected alert that is on screen.
Text from the wire is never read as markup and its control characters are replaced.
"""

from __future__ import annotations

import bisect
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Final, Protocol

import anyio
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Static

from gateway import wire
from gateway.alert_content import format_amount
from gateway.client import OfficerKey, StreamItem, load_key, open_officer
from gateway.errors import ConfigError, GatewayError, RemoteError, SessionEndedError

MAX_ROWS: Final = 5_000
DRAIN: Final = 1_000  # stream items taken per turn before the UI runs again

_RANK: Final = {wire.Severity.CRITICAL: 0, wire.Severity.HIGH: 1, wire.Severity.MEDIUM: 2,
                wire.Severity.LOW: 3}
_SEVERITY_STYLE: Final = {wire.Severity.CRITICAL: "bold white on red",
                          wire.Severity.HIGH: "bold red", wire.Severity.MEDIUM: "yellow",
                          wire.Severity.LOW: "dim"}
_PRESENCE_RANK: Final = {wire.PresenceState.ONLINE: 0, wire.PresenceState.AWAY: 1,
                         wire.PresenceState.OFFLINE: 2}
_PRESENCE_STYLE: Final = {wire.PresenceState.ONLINE: "green",
                          wire.PresenceState.AWAY: "yellow", wire.PresenceState.OFFLINE: "dim"}
_PRESENCE_SHOWN: Final = 8
# columns: (heading, width); the title takes what is left
_COLUMNS: Final = (("severity", 8), ("time", 12), ("account", 20), ("title", 0),
                   ("state", 22))
_MIN_TITLE: Final = 16
_CONTROL: Final = {c: "\ufffd" for c in (*range(32), *range(127, 160))}
_CONTROL_MULTILINE: Final = {c: r for c, r in _CONTROL.items() if c != 10}


def clean(text: str, *, multiline: bool = False) -> str:
    """``text`` with control characters replaced (no escape sequence reaches the terminal)."""
    return text.translate(_CONTROL_MULTILINE if multiline else _CONTROL)


class AlertSource(Protocol):
    """What the console needs of an officer device (:class:`gateway.client.OfficerClient`)."""

    @property
    def officer(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def session(self) -> int: ...
    @property
    def attached(self) -> bool: ...
    @property
    def acked(self) -> dict[int, wire.AckLevel]: ...
    @property
    def presence(self) -> dict[tuple[str, str], wire.PresenceEntry]: ...

    async def next(self) -> StreamItem: ...
    def next_nowait(self) -> StreamItem | None: ...
    async def acknowledge(self, alert_id: int,
                          level: wire.AckLevel = wire.AckLevel.ACKNOWLEDGED) -> bool: ...
    async def mark_read(self, alert_id: int) -> bool: ...
    async def follow(self, officers: Sequence[str] = ()) -> list[wire.PresenceEntry]: ...
    def presence_updates(self) -> AsyncIterator[wire.PresenceEntry]: ...


def _order(alert: wire.Alert) -> tuple[int, int, int]:
    """Display order: critical first, then the newest."""
    return _RANK[alert.severity], -alert.raised_unix_ns, -alert.alert_id


def _clock(unix_ns: int, *, full: bool = False) -> str:
    t = datetime.fromtimestamp(unix_ns / 1e9)
    if full:
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if t.date() == datetime.now().date():
        return t.strftime("%H:%M:%S")
    return t.strftime("%b %d %H:%M")


def state_text(level: wire.AckLevel | None, device: str, own_device: str) -> Text:
    """``new``, ``read`` or ``acknowledged``, naming the device when it was another one."""
    if level is None or level is wire.AckLevel.DELIVERED:
        return Text("new", style="bold")
    word = "acknowledged" if level is wire.AckLevel.ACKNOWLEDGED else "read"
    style = "green" if level is wire.AckLevel.ACKNOWLEDGED else ""
    if device and device != own_device:
        return Text(f"{word} · {clean(device)}", style=style)
    return Text(word, style=style)


@dataclass(slots=True)
class AlertRow:
    """One alert of the table and how far the officer got with it (on any device)."""

    alert: wire.Alert
    level: wire.AckLevel | None = None
    device: str = ""  # the device that reached the level
    order: tuple[int, int, int] = (0, 0, 0)
    cells: tuple[Text, ...] = field(default_factory=tuple)  # severity, time, account, title

    @property
    def acknowledged(self) -> bool:
        return self.level is wire.AckLevel.ACKNOWLEDGED


class AlertTable(ScrollView, can_focus=True):
    """The alert list (see the module docstring); line 0 is the column headings."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"alert-table--header", "alert-table--cursor"}
    DEFAULT_CSS = """
    AlertTable { height: 1fr; overflow-x: hidden; }
    AlertTable > .alert-table--header { text-style: bold; background: $panel; }
    AlertTable > .alert-table--cursor { background: $accent 50%; }
    """

    def __init__(self, own_device: str, *, max_rows: int = MAX_ROWS,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.own_device = own_device
        self.max_rows = max_rows
        self._keys: list[tuple[int, int, int]] = []  # sort keys, ascending
        self._rows: list[AlertRow] = []  # in display order, parallel to _keys
        self._by_id: dict[int, AlertRow] = {}
        self.cursor_id: int | None = None  # the selected alert
        self.open_counts = dict.fromkeys(wire.Severity, 0)  # unacknowledged per severity
        self.dropped = 0  # alerts that left a full table
        self._size_pending = False

    # -- the model ------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def get(self, alert_id: int) -> AlertRow | None:
        return self._by_id.get(alert_id)

    def add(self, alert: wire.Alert, level: wire.AckLevel | None = None,
            device: str = "") -> bool:
        """Insert ``alert`` in order; False if it is here already."""
        if alert.alert_id in self._by_id:
            return False
        row = AlertRow(alert, level, device, _order(alert), (
            Text(alert.severity.value, style=_SEVERITY_STYLE[alert.severity]),
            Text(_clock(alert.raised_unix_ns)), Text(str(alert.account)),
            Text(clean(alert.title))))
        i = bisect.bisect_left(self._keys, row.order)
        self._keys.insert(i, row.order)
        self._rows.insert(i, row)
        self._by_id[alert.alert_id] = row
        if not row.acknowledged:
            self.open_counts[alert.severity] += 1
        if len(self._rows) > self.max_rows:
            self._trim()
        if not self._size_pending:  # once per batch of rows, not per row
            self._size_pending = True
            self.call_later(self._changed)
        return True

    def reach(self, alert_id: int, level: wire.AckLevel, device: str) -> AlertRow | None:
        """The officer took ``alert_id`` to ``level`` on ``device``; the row if it changed
        (levels only rise)."""
        row = self._by_id.get(alert_id)
        rank = wire.ACK_RANK
        if row is None or (row.level is not None and rank[level] <= rank[row.level]):
            return None
        if level is wire.AckLevel.ACKNOWLEDGED:
            self.open_counts[row.alert.severity] -= 1
        row.level = level
        row.device = device
        self.refresh()
        return row

    def state(self, row: AlertRow) -> Text:
        return state_text(row.level, row.device, self.own_device)

    def _trim(self) -> None:
        """Down to nine tenths of ``max_rows``: acknowledged alerts first, then the oldest."""
        keep = self.max_rows - self.max_rows // 10
        by_value = sorted(self._rows, key=lambda r: (not r.acknowledged,
                                                     r.alert.raised_unix_ns, r.alert.alert_id))
        gone = {r.alert.alert_id for r in by_value[:len(self._rows) - keep]}
        cursor = self.cursor_index()
        for alert_id in gone:
            row = self._by_id.pop(alert_id)
            if not row.acknowledged:
                self.open_counts[row.alert.severity] -= 1
        self._rows = [r for r in self._rows if r.alert.alert_id not in gone]
        self._keys = [r.order for r in self._rows]
        self.dropped += len(gone)
        if self.cursor_id in gone:  # the line the cursor was on, or the last one
            i = min(cursor or 0, len(self._rows) - 1)
            self.cursor_id = self._rows[i].alert.alert_id if self._rows else None

    def _changed(self) -> None:
        self._size_pending = False
        if self.cursor_id is None and self._rows:  # the first batch: select the top row
            self.cursor_id = self._rows[0].alert.alert_id
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)
        self.refresh()

    def snapshot(self) -> list[tuple[int, wire.Severity, str, str]]:
        """(alert id, severity, title, state) per row, in display order."""
        return [(r.alert.alert_id, r.alert.severity, r.alert.title, self.state(r).plain)
                for r in self._rows]

    # -- the cursor -----------------------------------------------------------------------

    def cursor_index(self) -> int | None:
        row = self._by_id.get(self.cursor_id) if self.cursor_id is not None else None
        if row is None:
            return None
        return bisect.bisect_left(self._keys, row.order)

    def _page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def cursor_visible(self) -> bool:
        i = self.cursor_index()
        top = round(self.scroll_y)
        return i is not None and top <= i < top + self._page_rows()

    def scroll_to_cursor(self) -> None:
        i = self.cursor_index()
        if i is None:
            return
        top, page = round(self.scroll_y), self._page_rows()
        if i < top:
            self.scroll_to(y=i, animate=False, immediate=True)
        elif i >= top + page:
            self.scroll_to(y=i - page + 1, animate=False, immediate=True)

    def move_cursor(self, index: int) -> None:
        if not self._rows:
            return
        index = max(0, min(index, len(self._rows) - 1))
        self.cursor_id = self._rows[index].alert.alert_id
        self.scroll_to_cursor()
        self.refresh()

    def action_cursor(self, step: int) -> None:
        self.move_cursor((self.cursor_index() or 0) + step)

    def action_page(self, pages: int) -> None:
        self.move_cursor((self.cursor_index() or 0) + pages * self._page_rows())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._rows) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(round(self.scroll_y) + event.y - 1)

    def on_resize(self, event: events.Resize) -> None:
        self._changed()

    # -- drawing --------------------------------------------------------------------------

    def _widths(self, width: int) -> list[int]:
        fixed = sum(w for _, w in _COLUMNS) + len(_COLUMNS) - 1
        return [w or max(_MIN_TITLE, width - fixed) for _, w in _COLUMNS]

    def _strip(self, cells: Sequence[Text], width: int, style: Style) -> Strip:
        line = Text(no_wrap=True, end="")
        for cell, w in zip(cells, self._widths(width), strict=True):
            cell = cell.copy()
            cell.truncate(w, overflow="ellipsis", pad=True)
            line.append_text(cell)
            line.append(" ")
        strip = Strip(line.render(self.app.console)).crop_extend(0, width, self.rich_style)
        return strip.apply_style(style) if style else strip

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._strip([Text(name) for name, _ in _COLUMNS], width,
                               self.get_component_rich_style("alert-table--header"))
        index = round(self.scroll_y) + y - 1
        if index >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        row = self._rows[index]
        style = (self.get_component_rich_style("alert-table--cursor")
                 if row.alert.alert_id == self.cursor_id else Style())
        return self._strip([*row.cells, self.state(row)], width, style)


def alert_details(alert: wire.Alert) -> Text:
    """Everything an alert carries, as text (wire strings are never read as markup)."""
    out = Text()

    def heading(title: str) -> None:
        out.append(f"\n{title}\n", style="bold underline")

    def put(name: str, value: str) -> None:
        out.append(f"  {name:<16}", style="dim")
        out.append(f"{clean(value)}\n")

    out.append(alert.severity.value.upper(), style=_SEVERITY_STYLE[alert.severity])
    out.append(f"  alert {alert.alert_id} · {clean(alert.kind)} · account {alert.account}\n")
    out.append(f"{clean(alert.title)}\n", style="bold")
    put("raised", _clock(alert.raised_unix_ns, full=True))
    put("decided", _clock(alert.decided_unix_ns, full=True))
    put("source", alert.source)
    if alert.tx is not None:
        tx = alert.tx
        heading("Transaction")
        put("id", tx.tx_id)
        put("amount", f"{format_amount(tx.amount, tx.currency)} {tx.currency}")
        put("from account", str(tx.account))
        put("to account", str(tx.counterparty))
        put("channel", tx.channel)
        put("merchant code", f"{tx.mcc:04d}")
        put("country", tx.country or "-")
        put("time", _clock(tx.ts_ms * 1_000_000, full=True))
    if alert.decision is not None:
        d = alert.decision
        heading("Decision")
        put("outcome", d.outcome.value)
        if d.method is not None:
            put("step-up", d.method.value)
        put("score", str(d.score))
        put("path", d.path.value)
        put("rule set", f"v{d.ruleset_version}")
    if alert.rules:
        heading("Fired rules")
        width = max(len(r.id) for r in alert.rules)
        for rule in alert.rules:
            out.append(f"  {clean(rule.id):<{width}}  ", style="bold")
            out.append(f"{clean(rule.description) or '(no description)'}\n")
    if alert.profile is not None:
        p = alert.profile
        heading("Account profile")
        put("last minute", f"{p.vel_1m_count} payments, {p.vel_1m_sum:,} total")
        put("last hour", f"{p.vel_1h_count} payments, {p.vel_1h_sum:,} total")
        put("last 24 hours", f"{p.vel_24h_count} payments, {p.vel_24h_sum:,} total")
        put("usual amount", f"{p.baseline:,}")
        put("known devices", str(p.known_devices))
        put("payments", str(p.tx_count))
    if alert.actions:
        heading("Suggested actions")
        for action in alert.actions:
            out.append(f"  • {clean(action)}\n")
    if alert.details:
        heading("Details")
        width = max(len(k) for k in alert.details)
        for key in sorted(alert.details):
            out.append(f"  {clean(key):<{width}}  ", style="dim")
            out.append(f"{clean(alert.details[key], multiline=True)}\n")
    return out


class DetailScreen(Screen[None]):
    """One alert in full; ``escape`` goes back, ``a`` acknowledges it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("a", "acknowledge", "Acknowledge"),
    ]
    DEFAULT_CSS = "DetailScreen #detail-state { height: 1; background: $panel; }"

    def __init__(self, alert: wire.Alert, state: Text) -> None:
        super().__init__()
        self.alert = alert
        self.content = alert_details(alert)
        self._state = state

    def compose(self) -> ComposeResult:
        yield Static(self._state_line(), id="detail-state")
        with VerticalScroll():
            yield Static(self.content, id="detail")
        yield Footer()

    def _state_line(self) -> Text:
        return Text.assemble((" state ", "dim"), self._state)

    def show_state(self, state: Text) -> None:
        self._state = state
        if self.is_mounted:
            self.query_one("#detail-state", Static).update(self._state_line())

    def action_close(self) -> None:
        self.dismiss()

    def action_acknowledge(self) -> None:
        app = self.app
        if isinstance(app, ConsoleApp):
            app.acknowledge(self.alert.alert_id)


class ConsoleApp(App[None]):
    """The console over an attached officer device (see the module docstring)."""

    TITLE = "risk-gateway console"
    CSS = """
    #status { height: 1; background: $panel; }
    #message { height: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "acknowledge", "Acknowledge"),
        Binding("enter", "open_detail", "Details"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: AlertSource, *, node: str = "", follow: Sequence[str] = (),
                 max_rows: int = MAX_ROWS) -> None:
        """``source`` is attached already; ``follow`` names the officers whose presence the
        status line shows (empty: everyone)."""
        super().__init__()
        self.source = source
        self.node = node
        self.end_reason: str | None = None  # set when the node ended the session
        self.table = AlertTable(source.device, max_rows=max_rows, id="alerts")
        self._status = Static(id="status")
        self._message = Static(id="message")
        self._status_text = Text()
        self._message_text = Text()
        self._follow = list(follow)

    def compose(self) -> ComposeResult:
        yield self.table
        yield self._status
        yield self._message
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self._take_stream(), name="stream")
        self.run_worker(self._watch_presence(), name="presence")
        self.set_interval(1.0, self._update_status)  # attached / attaching again
        self._update_status()
        self.table.focus()

    # -- the stream -----------------------------------------------------------------------

    async def _take_stream(self) -> None:
        source = self.source
        opener = getattr(source, "open_alerts", None)
        if opener is not None:  # what is still open from before this console started
            try:
                for alert, level in await opener():
                    self.table.add(alert, level)
            except GatewayError as exc:
                self.show_message(f"open alerts not loaded: {exc}", error=True)
        try:
            while True:
                self._take(await source.next())
                for _ in range(DRAIN - 1):
                    item = source.next_nowait()
                    if item is None:
                        break
                    self._take(item)
                self._update_status()
                await anyio.lowlevel.checkpoint()  # let the UI run between batches
        except SessionEndedError as exc:
            self._session_ended(exc.reason)

    def _take(self, item: StreamItem) -> None:
        if isinstance(item, wire.AlertPush):
            self.table.add(item.alert, self.source.acked.get(item.alert.alert_id))
        elif isinstance(item, wire.AckSync):
            self._reach(item.alert_id, item.level, item.device)
        # room events: the console lists alerts; rooms are worked in the officer app

    def _reach(self, alert_id: int, level: wire.AckLevel, device: str) -> None:
        row = self.table.reach(alert_id, level, device)
        screen = self.screen
        if (row is not None and isinstance(screen, DetailScreen)
                and screen.alert.alert_id == alert_id):
            screen.show_state(self.table.state(row))

    # -- status ---------------------------------------------------------------------------

    def _update_status(self) -> None:
        s, table = self.source, self.table
        line = Text()
        line.append(f" {s.officer}", style="bold")
        line.append(f" · {s.device}@{self.node or '?'} · session {s.session} · ")
        if self.end_reason is not None:
            line.append("ended", style="bold red")
        elif s.attached:
            line.append("attached", style="green")
        else:
            line.append("attaching", style="yellow")
        line.append("  │ open ")
        for severity in wire.Severity:
            n = table.open_counts[severity]
            line.append(f"{severity.value} ", style="" if n else "dim")
            line.append(str(n), style=_SEVERITY_STYLE[severity] if n else "dim")
            line.append(" ")
        line.append(f"· {table.row_count} shown")
        if table.dropped:
            line.append(f" ({table.dropped} older not shown)", style="dim")
        presence = self._presence()
        if presence:
            line.append("  │ ")
            line.append_text(presence)
        if line != self._status_text:
            self._status_text = line
            self._status.update(line)

    @property
    def status(self) -> str:
        """The status line's text."""
        return self._status_text.plain.strip()

    def _presence(self) -> Text:
        """Followed officers other than this one, each in its best state over its devices."""
        best: dict[str, wire.PresenceState] = {}
        for (officer, _), entry in self.source.presence.items():
            if officer == self.source.officer:
                continue
            prev = best.get(officer)
            if prev is None or _PRESENCE_RANK[entry.state] < _PRESENCE_RANK[prev]:
                best[officer] = entry.state
        ordered = sorted(best.items(), key=lambda kv: (_PRESENCE_RANK[kv[1]], kv[0]))
        out = Text()
        for i, (officer, state) in enumerate(ordered[:_PRESENCE_SHOWN]):
            if i:
                out.append(", ")
            out.append(f"{clean(officer)} ")
            out.append(state.value, style=_PRESENCE_STYLE[state])
        if len(ordered) > _PRESENCE_SHOWN:
            out.append(f", +{len(ordered) - _PRESENCE_SHOWN} more", style="dim")
        return out

    def show_message(self, text: str, *, error: bool = False) -> None:
        """Put ``text`` on the message line (errors in red)."""
        self._message_text = Text(f" {clean(text)}", style="bold red" if error else "")
        self._message.update(self._message_text)

    @property
    def message(self) -> str:
        """The message line's text."""
        return self._message_text.plain.strip()

    async def _watch_presence(self) -> None:
        try:
            await self.source.follow(self._follow)
            self._update_status()
            async for _ in self.source.presence_updates():
                self._update_status()
        except SessionEndedError as exc:
            self._session_ended(exc.reason)
        except GatewayError as exc:
            self.show_message(f"presence not available: {exc}", error=True)

    def _session_ended(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = f"session ended by the node: {reason}"
            self._update_status()
            self.exit(return_code=1)

    # -- actions --------------------------------------------------------------------------

    def action_acknowledge(self) -> None:
        table = self.table
        if table.cursor_id is None:
            return
        if not table.cursor_visible():
            table.scroll_to_cursor()
            self.show_message(f"the selected alert {table.cursor_id} was out of view; it is "
                              "shown now: press a again to acknowledge it")
            return
        self.acknowledge(table.cursor_id)

    def acknowledge(self, alert_id: int) -> None:
        """Acknowledge ``alert_id`` on the node; the outcome goes to the message line."""
        row = self.table.get(alert_id)
        if row is not None and row.acknowledged:
            self.show_message(f"alert {alert_id} is acknowledged already")
            return
        self.show_message(f"acknowledging alert {alert_id} ...")
        self.run_worker(self._acknowledge(alert_id), group="acks")

    async def _acknowledge(self, alert_id: int) -> None:
        try:
            first = await self.source.acknowledge(alert_id)
        except SessionEndedError as exc:
            self._session_ended(exc.reason)
            return
        except RemoteError as exc:
            self.show_message(f"alert {alert_id} NOT acknowledged: the node refused: "
                              f"{exc.name}: {exc.message}", error=True)
            return
        except GatewayError as exc:
            self.show_message(f"alert {alert_id} NOT acknowledged: {exc}", error=True)
            return
        self._reach(alert_id, wire.AckLevel.ACKNOWLEDGED, self.source.device)
        self._update_status()
        self.show_message(f"alert {alert_id} acknowledged" if first
                          else f"alert {alert_id} was acknowledged already")

    def action_open_detail(self) -> None:
        if self.table.cursor_id is not None and not isinstance(self.screen, DetailScreen):
            self.open_detail(self.table.cursor_id)

    def open_detail(self, alert_id: int) -> None:
        """Show the alert in full; a new alert is marked read on the node."""
        row = self.table.get(alert_id)
        if row is None:
            return
        self.push_screen(DetailScreen(row.alert, self.table.state(row)))
        if row.level is None or row.level is wire.AckLevel.DELIVERED:
            self.run_worker(self._mark_read(alert_id), group="acks")

    async def _mark_read(self, alert_id: int) -> None:
        try:
            await self.source.mark_read(alert_id)
        except SessionEndedError as exc:
            self._session_ended(exc.reason)
            return
        except GatewayError as exc:
            self.show_message(f"alert {alert_id} not marked read: {exc}", error=True)
            return
        self._reach(alert_id, wire.AckLevel.READ, self.source.device)


# -- the command ----------------------------------------------------------------------------


class _MessageLineHandler(logging.Handler):
    """SDK log records go to the message line while the console owns the terminal."""

    def __init__(self, app: ConsoleApp) -> None:
        super().__init__(logging.INFO)
        self._app = app

    def emit(self, record: logging.LogRecord) -> None:
        self._app.show_message(record.getMessage(), error=record.levelno >= logging.WARNING)


def _gateway_error(exc: BaseException) -> GatewayError | None:
    """The first :class:`GatewayError` in ``exc`` or its exception groups."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _gateway_error(inner)
            if found is not None:
                return found
    return None


async def _console(key: OfficerKey, key_path: str, device: str, url: str | None,
                   timeout: float) -> tuple[int, str | None]:
    target = url or key.endpoint
    app: ConsoleApp | None = None
    log = logging.getLogger("gateway")
    saved = log.propagate, log.level
    try:
        async with open_officer(key, device=device, url=url, timeout=timeout) as client:
            app = ConsoleApp(client, node=target)
            handler = _MessageLineHandler(app)
            log.addHandler(handler)
            log.propagate = False
            if log.getEffectiveLevel() > logging.INFO:
                log.setLevel(logging.INFO)
            try:
                await app.run_async()
            finally:
                log.removeHandler(handler)
                log.propagate, log.level = saved
    except Exception as exc:
        err = _gateway_error(exc)
        if err is None:
            raise
        if app is None and not isinstance(err, RemoteError | SessionEndedError):
            return 1, (f"no answer from the node at {target} within {timeout:g} s: is it "
                       f"running, and was the key {key_path} made for this node? ({err})")
        return 1, str(err)
    if app.end_reason is not None:
        return 1, app.end_reason
    return (app.return_code or 0), None


def run_console(key_path: str, *, device: str = "console", url: str | None = None,
                timeout: float = 5.0) -> int:
    """Attach ``device`` with the officer key in ``key_path`` and run the console.

    Returns 0 when the officer quits, 1 when the node is unreachable or ended the session,
    2 when the key file is unusable; the reason goes to stderr. ``url`` overrides the
    key file's endpoint; ``timeout`` bounds every request to the node.
    """
    try:
        key = load_key(key_path)
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return 2
    from gateway.runtime import run

    code, why = run(_console, key, key_path, device, url, timeout, loop="uvloop")
    if why is not None:
        print(f"gateway: {why}", file=sys.stderr)
    return code


__all__ = ["MAX_ROWS", "AlertRow", "AlertSource", "AlertTable", "ConsoleApp", "DetailScreen",
           "alert_details", "clean", "run_console", "state_text"]
