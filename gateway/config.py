"""Node configuration: embedded defaults, an optional TOML file, and strict validation.

Every option is documented in :data:`CONFIG_REFERENCE` (printed by ``gateway node --help``
and ``gateway config --example``). A bad file is reported with its path, the key and the
reason, and the node does not start.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from gateway.errors import ConfigError

Port = Annotated[int, Meta(ge=0, le=65535)]
Url = Annotated[str, Meta(pattern=r"^(tcp|ipc|inproc)://.+$")]


class NodeSection(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "node-1"
    region: Annotated[str, Meta(pattern=r"^[a-z0-9-]{1,32}$")] = "local"
    data_dir: str = "./gateway-data"
    rules: str = ""
    trusted: str = ""
    loop: Literal["uvloop", "asyncio", "trio"] = "uvloop"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class EndpointsSection(Struct, forbid_unknown_fields=True, kw_only=True):
    ingest: Url = "tcp://127.0.0.1:7710"
    clients: Url = "tcp://127.0.0.1:7711"
    services: Url = "tcp://127.0.0.1:7712"


class MetricsSection(Struct, forbid_unknown_fields=True, kw_only=True):
    port: Port = 0
    host: str = "127.0.0.1"


class AlertsSection(Struct, forbid_unknown_fields=True, kw_only=True):
    min_score: Annotated[int, Meta(ge=0)] = 0


class IngestSection(Struct, forbid_unknown_fields=True, kw_only=True):
    mode: Literal["native", "python"] = "native"
    alert_queue: Annotated[int, Meta(ge=2048, le=1 << 20)] = 8192
    busy_retry_ms: Annotated[int, Meta(ge=1, le=60_000)] = 5
    max_backlog_ms: Annotated[int, Meta(ge=0, le=60_000)] = 0


class DeliverySection(Struct, forbid_unknown_fields=True, kw_only=True):
    window: Annotated[int, Meta(ge=1, le=4096)] = 32
    critical_window: Annotated[int, Meta(ge=1, le=4096)] = 32
    rto_ms: Annotated[int, Meta(ge=10, le=600_000)] = 2500
    max_rto_ms: Annotated[int, Meta(ge=10, le=3_600_000)] = 30_000
    offline_after_ms: Annotated[int, Meta(ge=100, le=3_600_000)] = 3500


class IncidentSection(Struct, forbid_unknown_fields=True, kw_only=True):
    oncall: str = ""
    policy: str = ""


# -- regional fabric (gateway.fabric; semantic checks in gateway/fabric/_directory.py) ----

RegionName = Annotated[str, Meta(pattern=r"^[a-z0-9-]{1,32}$")]
RelayTarget = Annotated[str, Meta(pattern=r"^([a-z0-9-]{1,32}|\*)$")]
Account = Annotated[int, Meta(ge=0)]  # TOML integers stop at 2**63 - 1


class DirectoryRange(Struct, forbid_unknown_fields=True, kw_only=True):
    first: Account
    last: Account
    region: RegionName


class DirectorySection(Struct, forbid_unknown_fields=True, kw_only=True):
    mode: Literal["hash", "ranges", "table"] = "hash"
    regions: list[RegionName] = []
    default: Annotated[str, Meta(pattern=r"^[a-z0-9-]{0,32}$")] = ""
    ranges: list[DirectoryRange] = []
    table: list[tuple[Account, RegionName]] = []
    table_file: str = ""


class FabricSection(Struct, forbid_unknown_fields=True, kw_only=True):
    bind: Annotated[str, Meta(pattern=r"^((tcp|ipc|inproc)://.+)?$")] = ""
    peers: dict[RegionName, Url] = {}
    heartbeat_ms: Annotated[int, Meta(ge=20, le=10_000)] = 1000
    dead_after_ms: Annotated[int, Meta(ge=60, le=60_000)] = 3000
    on_partition: Literal["error", "busy", "queue"] = "error"
    queue_limit: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    queue_ms: Annotated[int, Meta(ge=1, le=600_000)] = 2000
    forward_timeout_ms: Annotated[int, Meta(ge=100, le=600_000)] = 5000
    busy_retry_ms: Annotated[int, Meta(ge=1, le=60_000)] = 100
    max_in_flight: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    curve: bool | Literal["auto"] = "auto"
    peer_keys: dict[RegionName, str] = {}  # Z85 keys, checked in check_fabric_config
    relay_alerts: list[RelayTarget] = []
    directory: DirectorySection = msgspec.field(default_factory=DirectorySection)


class Config(Struct, forbid_unknown_fields=True, kw_only=True):
    node: NodeSection = msgspec.field(default_factory=NodeSection)
    endpoints: EndpointsSection = msgspec.field(default_factory=EndpointsSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    alerts: AlertsSection = msgspec.field(default_factory=AlertsSection)
    ingest: IngestSection = msgspec.field(default_factory=IngestSection)
    delivery: DeliverySection = msgspec.field(default_factory=DeliverySection)
    incident: IncidentSection = msgspec.field(default_factory=IncidentSection)
    fabric: FabricSection = msgspec.field(default_factory=FabricSection)


CONFIG_REFERENCE = """\
# risk-gateway node configuration (TOML). Every key is optional; shown are the defaults.

[node]
name = "node-1"            # node name in status, metrics and the journal ([A-Za-z0-9_.-])
region = "local"           # region this node serves ([a-z0-9-])
data_dir = "./gateway-data" # SQLite database and state; created if missing
rules = ""                 # rule file (TOML) loaded at start; "" = the last rule set kept
                           # in the database, else the embedded default rule set
trusted = ""               # trusted-accounts file loaded at start; "" = none
loop = "uvloop"            # event loop: uvloop | asyncio | trio
log_level = "info"         # debug | info | warning | error

[endpoints]                # ZeroMQ ROUTER endpoints (tcp://host:port, ipc://path)
ingest = "tcp://127.0.0.1:7710"    # payment systems: score requests
clients = "tcp://127.0.0.1:7711"   # officer apps
services = "tcp://127.0.0.1:7712"  # business systems and operators (status, rules, ...)

[metrics]
port = 0                   # Prometheus text endpoint port; 0 = off
host = "127.0.0.1"         # address the metrics endpoint listens on

[alerts]
min_score = 0              # also raise an alert for an `allow` decision at or above this
                           # score (0 = only step_up, block and block_and_freeze alert)

[ingest]
mode = "native"            # native: a C thread serves the ingest endpoint, no Python per
                           # request; python: the anyio owner loop (comparison, debugging)
alert_queue = 8192         # alert records buffered in C; when full, producers get `busy`
busy_retry_ms = 5          # retry-after of those `busy` replies
max_backlog_ms = 0         # native: after saturation this long, shed queued requests with
                           # `busy` until the queue drains (0 = never; e.g. 50)

[delivery]                 # officer streams (see docs/protocol.md, "Delivery")
window = 32                # unconfirmed high/normal/bulk messages per device
critical_window = 32       # unconfirmed critical messages per device (a window of its own)
rto_ms = 2500              # redeliver after this long without confirmation (doubles);
                           # devices confirm with each heartbeat (1 s), critical at once
max_rto_ms = 30000         # longest wait between redeliveries
offline_after_ms = 3500    # a device without heartbeat this long is offline

[incident]                 # incident response (docs/protocol.md, "Incident response")
oncall = ""                # on-call file: officers, roles, shifts, routes, escalation
                           # ladders, channels (`gateway incident example`); "" = off:
                           # alerts go to named recipients or every officer with a key
policy = ""                # command policy file (`gateway incident policy-example`);
                           # "" = the embedded default: 1 approval for freeze, unfreeze,
                           # limit and revoke-trust, maker and checker always differ

[fabric]                   # regional fabric: one node per region (docs/protocol.md)
bind = ""                  # this node's fabric endpoint (ROUTER); "" = no fabric
peers = {}                 # region -> fabric endpoint of its node, e.g.
                           # { us = "tcp://10.0.2.5:7713", ap = "tcp://10.0.3.5:7713" }
heartbeat_ms = 1000        # ping each peer this often
dead_after_ms = 3000       # a peer silent this long is down (detected within 5 s)
on_partition = "error"     # a transaction homed in an unreachable region gets: error =
                           # REGION_UNAVAILABLE; busy = `busy`; queue = held until the link
                           # is back (within queue_limit and queue_ms, then as error)
queue_limit = 1000         # queue: requests held at most
queue_ms = 2000            # queue: longest a request is held before REGION_UNAVAILABLE
forward_timeout_ms = 5000  # a forwarded request unanswered this long gets FORWARD_TIMEOUT
                           # (keep it below the producers' timeout: the SDK's is 10 s)
busy_retry_ms = 100        # retry-after of `busy` replies for forwarded requests
max_in_flight = 10000      # forwarded requests outstanding at most; more get `busy`
curve = "auto"             # authenticate peers with CURVE: true = required (every peer needs
                           # a key in peer_keys); false = plain, peers named by their hello
                           # (loopback development only); "auto" = true when peer_keys is
                           # set, else plain with a warning at start
peer_keys = {}             # region -> public key (Z85, 40 characters) of that region's
                           # node, printed there by `gateway keys server`, e.g.
                           # { us = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7" }
relay_alerts = []          # peer regions that also get this node's alerts, for their
                           # officers (journaled there, exactly once); ["*"] = every peer

[fabric.directory]         # home region of every account; the same on every node (checked)
mode = "hash"              # hash | ranges | table
regions = []               # hash: regions in hash order; [] = this node's and its peers',
                           # sorted
default = ""               # ranges, table: region of accounts not listed ("" = none: their
                           # transactions are refused with INVALID)
ranges = []                # ranges: [{ first = 0, last = 4999999, region = "eu" }, ...]
                           # inclusive, non-overlapping
table = []                 # table: [[1001, "eu"], [1002, "us"], ...]
table_file = ""            # table: a file of `account,region` lines (added to `table`)
"""

T = TypeVar("T")

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _split_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    match = _AT.match(str(exc))
    assert match is not None
    reason = match.group("reason")
    path = (match.group("path") or "").lstrip(".")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        reason = "unknown key"
    return path or "<top>", reason


def convert_checked(data: object, typ: type[T], source: str) -> T:
    """``msgspec.convert`` with errors as :class:`ConfigError` naming the key; an error
    inside a table of named entries (``[ladders.critical]``) names the entry."""
    try:
        return msgspec.convert(data, typ)
    except msgspec.ValidationError as exc:
        key, reason = _split_error(exc)
    section = key.split("[...]", 1)[0] if "[...]" in key else ""
    if section and isinstance(data, dict) and isinstance(data.get(section), dict):
        for name, value in data[section].items():
            try:
                msgspec.convert({**data, section: {name: value}}, typ)
            except msgspec.ValidationError:
                key = key.replace("[...]", f".{name}", 1)
                break
    raise ConfigError(source, key, reason)


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's table; an unreadable or malformed file is a :class:`ConfigError`."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(p), "<file>", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "<syntax>", str(exc)) from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a config file; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    cfg = convert_checked(read_toml(path), Config, str(path))
    check_config(cfg, str(path))
    return cfg


def check_config(cfg: Config, source: str) -> None:
    """Checks across keys that the types cannot express (the fabric's directory)."""
    from gateway.fabric import check_fabric_config  # the fabric's own rules

    check_fabric_config(cfg, source)


__all__ = ["CONFIG_REFERENCE", "Config", "check_config", "convert_checked", "load_config",
           "read_toml"]
