"""The on-call file: officers with roles, regions and shifts; routing rules; escalation
ladders; notification channels; incident settings. Sans-IO: parsing, validation and the
pure decisions (who is on shift, which route an alert takes, who a step pages).

The format is documented in :data:`ONCALL_REFERENCE` (``gateway incident --example``)
and docs/protocol.md ("Incident response"). A bad file names the file, the key and the
reason, and the node does not start.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

from gateway.errors import ConfigError

ROLES: Final = ("risk", "aml", "compliance", "operations", "legal", "auditor")
SEVERITIES: Final = ("critical", "high", "medium", "low")
SEVERITY_RANK: Final = {s: i for i, s in enumerate(SEVERITIES)}  # 0 = most severe
APP: Final = "app"  # the in-app channel: the officer's stream on this node

Role = Literal["risk", "aml", "compliance", "operations", "legal", "auditor"]
SeverityName = Literal["critical", "high", "medium", "low"]
OfficerId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
Name = Annotated[str, Meta(pattern=r"^[a-z0-9_-]{1,32}$")]


class OfficerEntry(Struct, forbid_unknown_fields=True, kw_only=True):
    id: OfficerId
    roles: list[Role]
    region: str = ""  # "" = serves every region
    shifts: list[str] = []  # UTC, e.g. "mon-fri 08:00-20:00", "22:00-06:00"; [] = always
    phone: str = ""
    email: str = ""
    name: str = ""


class RouteEntry(Struct, forbid_unknown_fields=True, kw_only=True):
    severity: list[SeverityName] = []  # [] = any
    region: list[str] = []  # region the alert was raised in; [] = any
    kind: list[str] = []  # alert kind: decision | submitted | ...; [] = any
    family: list[str] = []  # rule family (the fired rule id up to the first "." or "-")
    roles: list[Role]
    ladder: str = ""  # "" = the ladder named after the alert's severity, if any
    incident: bool = True  # false: deliver in-app only, never open an incident


class StepEntry(Struct, forbid_unknown_fields=True, kw_only=True):
    after_s: Annotated[float, Meta(ge=0, le=86_400)] = 0
    when: Literal["unacknowledged", "unresolved", "always"] = "unacknowledged"
    to: list[str] = []  # officer ids and "role:NAME" (on call now); [] = the route's roles
    channels: list[str] = msgspec.field(default_factory=lambda: [APP])
    mode: Literal["first", "all"] = "first"  # first: next channel only if one fails
    require_all: bool = False  # acknowledged only when every recipient of this step did


class ChannelEntry(Struct, forbid_unknown_fields=True, kw_only=True):
    kind: Literal["webhook", "smtp"]
    to: Literal["phone", "email"] = "phone"  # which officer address the channel uses
    url: str = ""  # webhook
    secret: str = ""  # webhook: HMAC-SHA256 key (or secret_file)
    secret_file: str = ""
    host: str = "127.0.0.1"  # smtp
    port: Annotated[int, Meta(ge=1, le=65535)] = 25
    sender: str = "risk-gateway@localhost"
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0


class IncidentsEntry(Struct, forbid_unknown_fields=True, kw_only=True):
    min_severity: SeverityName = "high"  # alerts at or above open (or join) an incident
    group_window_s: Annotated[int, Meta(ge=0, le=7 * 86_400)] = 600
    similar_cases: Annotated[int, Meta(ge=0, le=20)] = 3


class OnCallFile(Struct, forbid_unknown_fields=True, kw_only=True):
    incidents: IncidentsEntry = msgspec.field(default_factory=IncidentsEntry)
    officers: list[OfficerEntry] = []
    routes: list[RouteEntry] = []
    ladders: dict[Name, list[StepEntry]] = {}
    channels: dict[Name, ChannelEntry] = {}


_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SHIFT = re.compile(r"^(?:(?P<days>[a-z,-]+)\s+)?"
                    r"(?P<h1>\d\d):(?P<m1>\d\d)-(?P<h2>\d\d):(?P<m2>\d\d)$")


@dataclass(frozen=True, slots=True)
class Shift:
    days: frozenset[int]  # 0 = Monday
    start_min: int  # minutes after midnight UTC
    end_min: int  # exclusive; <= start: the shift runs past midnight

    def covers(self, when: dt.datetime) -> bool:
        minute = when.hour * 60 + when.minute
        day = when.weekday()
        if self.start_min < self.end_min:
            return day in self.days and self.start_min <= minute < self.end_min
        # overnight: the part after midnight belongs to the day the shift started
        if minute >= self.start_min:
            return day in self.days
        return minute < self.end_min and (day - 1) % 7 in self.days


def parse_shift(text: str) -> Shift:
    """``[DAYS ]HH:MM-HH:MM`` in UTC; DAYS like ``mon-fri`` or ``sat,sun``; ``always``."""
    t = text.strip().lower()
    if t == "always":
        return Shift(frozenset(range(7)), 0, 24 * 60)
    m = _SHIFT.match(t)
    if m is None:
        raise ValueError(f"shift {text!r} is not `[DAYS ]HH:MM-HH:MM` (UTC) or `always`")
    days: set[int] = set()
    for part in (m.group("days") or "mon-sun").split(","):
        if "-" in part:
            a, _, b = part.partition("-")
            if a not in _DAYS or b not in _DAYS:
                raise ValueError(f"shift {text!r}: unknown day in {part!r}")
            i, j = _DAYS.index(a), _DAYS.index(b)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in _DAYS:
            days.add(_DAYS.index(part))
        else:
            raise ValueError(f"shift {text!r}: unknown day {part!r}")
    h1, m1, h2, m2 = (int(m.group(k)) for k in ("h1", "m1", "h2", "m2"))
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"shift {text!r}: not a time of day")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"shift {text!r} is empty")
    return Shift(frozenset(days), start, end)


@dataclass(frozen=True, slots=True)
class Officer:
    id: str
    roles: frozenset[str]
    region: str
    shifts: tuple[Shift, ...]
    phone: str
    email: str
    name: str

    def on_shift(self, when: dt.datetime) -> bool:
        return not self.shifts or any(s.covers(when) for s in self.shifts)

    def address(self, field: str) -> str:
        return self.phone if field == "phone" else self.email


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What routing and grouping look at."""

    severity: str
    region: str
    kind: str
    family: str
    account: int


@dataclass(frozen=True, slots=True)
class Step:
    """A ladder step with its recipients resolved: frozen when the incident opens."""

    after_s: float
    when: str
    to: tuple[str, ...]
    channels: tuple[str, ...]
    mode: str
    require_all: bool


class OnCall:
    """A validated on-call file; see the module docstring."""

    def __init__(self, data: OnCallFile, source: str = "<on-call>") -> None:
        self.source = source
        self.settings = data.incidents
        self.officers: dict[str, Officer] = {}
        for i, o in enumerate(data.officers):
            if o.id in self.officers:
                raise ConfigError(source, f"officers[{i}].id", f"{o.id!r} is listed twice")
            if not o.roles:
                raise ConfigError(source, f"officers[{i}].roles", "an officer needs a role")
            try:
                shifts = tuple(parse_shift(s) for s in o.shifts)
            except ValueError as exc:
                raise ConfigError(source, f"officers[{i}].shifts", str(exc)) from None
            self.officers[o.id] = Officer(o.id, frozenset(o.roles), o.region, shifts,
                                          o.phone, o.email, o.name or o.id)
        self.channels = dict(data.channels)
        for name, ch in self.channels.items():
            if name == APP:
                raise ConfigError(source, f"channels.{name}", "`app` is the built-in in-app "
                                  "channel; give the adapter another name")
            if ch.kind == "webhook" and not ch.url.startswith(("http://", "https://")):
                raise ConfigError(source, f"channels.{name}.url", "a webhook needs an "
                                  "http:// or https:// url")
            if ch.kind == "webhook" and not (ch.secret or ch.secret_file):
                raise ConfigError(source, f"channels.{name}.secret", "a webhook needs a "
                                  "signing secret (secret or secret_file)")
        self.ladders: dict[str, list[StepEntry]] = dict(data.ladders)
        for name, steps in self.ladders.items():
            last = -1.0
            for j, st in enumerate(steps):
                key = f"ladders.{name}[{j}]"
                if st.after_s < last:
                    raise ConfigError(source, f"{key}.after_s", "steps are in time order")
                last = st.after_s
                if not st.channels:
                    raise ConfigError(source, f"{key}.channels", "a step needs a channel")
                for c in st.channels:
                    if c != APP and c not in self.channels:
                        raise ConfigError(source, f"{key}.channels", f"no channel {c!r} "
                                          "(add it under [channels])")
                for t in st.to:
                    self._check_target(t, f"{key}.to")
        self.routes = list(data.routes)
        for i, r in enumerate(self.routes):
            if not r.roles:
                raise ConfigError(source, f"routes[{i}].roles", "a route needs a role")
            if r.ladder and r.ladder not in self.ladders:
                raise ConfigError(source, f"routes[{i}].ladder", f"no ladder {r.ladder!r}")

    def _check_target(self, target: str, key: str) -> None:
        if target.startswith("role:"):
            if target[5:] not in ROLES:
                raise ConfigError(self.source, key, f"unknown role in {target!r} "
                                  f"(roles: {', '.join(ROLES)})")
        elif target not in self.officers:
            raise ConfigError(self.source, key, f"no officer {target!r} in [[officers]]")

    # -- decisions ------------------------------------------------------------------------

    def roles_of(self, officer: str) -> frozenset[str]:
        o = self.officers.get(officer)
        return o.roles if o is not None else frozenset()

    def opens_incident(self, severity: str) -> bool:
        return SEVERITY_RANK[severity] <= SEVERITY_RANK[self.settings.min_severity]

    def route(self, facts: AlertFacts) -> RouteEntry | None:
        """The first routing rule the alert matches."""
        for r in self.routes:
            if r.severity and facts.severity not in r.severity:
                continue
            if r.region and facts.region not in r.region:
                continue
            if r.kind and facts.kind not in r.kind:
                continue
            if r.family and facts.family not in r.family:
                continue
            return r
        return None

    def on_call(self, roles: frozenset[str] | set[str], region: str,
                now: dt.datetime) -> list[str]:
        """Officers with one of ``roles`` for ``region``: those on shift in the region
        (or serving every region); else on shift anywhere; else anyone with the role, so
        an alert never goes to nobody while someone holds the role."""
        holders = [o for o in self.officers.values() if o.roles & roles]
        for pick in (
            [o for o in holders if o.on_shift(now) and o.region in ("", region)],
            [o for o in holders if o.on_shift(now)],
            holders,
        ):
            if pick:
                return sorted(o.id for o in pick)
        return []

    def ladder_for(self, route: RouteEntry | None, severity: str) -> str:
        name = route.ladder if route is not None and route.ladder else severity
        return name if name in self.ladders else ""

    def freeze_ladder(self, name: str, route_roles: frozenset[str], region: str,
                      now: dt.datetime) -> list[Step]:
        """The ladder's steps with recipients resolved now (the incident keeps these)."""
        out = []
        for st in self.ladders.get(name, []):
            to: list[str] = []
            for t in st.to or [f"role:{r}" for r in sorted(route_roles)]:
                ids = self.on_call({t[5:]}, region, now) if t.startswith("role:") else [t]
                to.extend(i for i in ids if i not in to)
            out.append(Step(st.after_s, st.when, tuple(to), tuple(st.channels), st.mode,
                            st.require_all))
        return out


def load_oncall(path: str | Path) -> OnCall:
    """Read and validate an on-call file."""
    from gateway.config import read_toml

    return parse_oncall(read_toml(path), str(path))


def parse_oncall(data: object, source: str = "<on-call>") -> OnCall:
    from gateway.config import convert_checked

    return OnCall(convert_checked(data, OnCallFile, source), source)


def family_of(kind: str, fired: list[str], details: dict[str, str]) -> str:
    """The rule family an alert belongs to, for routing and grouping."""
    if "family" in details:
        return details["family"][:32]
    for rule in fired:
        if rule and not rule.startswith("@"):
            return re.split(r"[.\-]", rule, maxsplit=1)[0]
    return fired[0] if fired else kind


ONCALL_REFERENCE = """\
# risk-gateway on-call file (TOML): set `[incident] oncall = "FILE"` in the node config.
# Times are UTC. Every section is optional except officers and routes.

[incidents]
min_severity = "high"      # alerts at or above this severity open an incident with a room
group_window_s = 600       # an alert for the same account and rule family within this long
                           # of an open incident's last alert joins it (no new page)
similar_cases = 3          # past cases shown when an incident opens

[[officers]]
id = "alice"               # the officer id their CURVE keys are registered to
roles = ["risk"]           # risk | aml | compliance | operations | legal | auditor
region = "eu"              # region served; "" = every region
shifts = ["mon-fri 07:00-19:00"]   # [] = always on call; "22:00-06:00" runs past midnight
phone = "+491700000001"    # used by channels with to = "phone"
email = "alice@bank.example"

[[routes]]                 # the first matching route decides; no match = no one is paged
severity = ["critical", "high"]    # [] = any
region = []                # region the alert was raised in; [] = any
kind = []                  # decision | submitted | relayed; [] = any
family = []                # rule family: the fired rule id up to the first "." or "-"
roles = ["risk", "aml"]    # on-call officers of these roles receive the alert
ladder = ""                # escalation ladder; "" = the ladder named after the severity
incident = true            # false: only deliver the alert in-app (no incident, no room)

[[ladders.critical]]       # steps in time order, frozen when the incident opens
after_s = 0                # seconds after the incident opened
when = "unacknowledged"    # unacknowledged | unresolved | always
to = []                    # officer ids and "role:NAME"; [] = the route's roles
channels = ["app"]         # app (in-app) and names under [channels], tried in order
mode = "first"             # first: the next channel only when one fails; all: every one
require_all = false        # acknowledged only when every recipient of this step did

[channels.sms]             # a signed webhook (HTTP POST, HMAC-SHA256) to an SMS provider
kind = "webhook"
to = "phone"
url = "https://sms.example/send"
secret_file = "/etc/gateway/sms.secret"

[channels.email]
kind = "smtp"
to = "email"
host = "127.0.0.1"
port = 25
sender = "risk-gateway@bank.example"
"""


__all__ = [
    "APP",
    "ONCALL_REFERENCE",
    "ROLES",
    "SEVERITIES",
    "SEVERITY_RANK",
    "AlertFacts",
    "ChannelEntry",
    "Officer",
    "OnCall",
    "Shift",
    "Step",
    "family_of",
    "load_oncall",
    "parse_oncall",
    "parse_shift",
]
