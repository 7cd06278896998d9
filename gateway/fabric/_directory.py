"""The account directory: which region is each account's home.

Rules this module keeps:

- The answer depends only on the ``[fabric.directory]`` configuration, never on which node
  asks, so every node of a fabric configured alike places every account in the same
  region. Nodes compare :attr:`Directory.fingerprint` when they connect.
- Every region the directory names is this node's region or one of its peers: a home that
  cannot be reached by configuration is a :class:`~gateway.errors.ConfigError`.
- ``native/gw_dir.c`` implements the same lookup for the native ingest thread; a
  differential test holds the two together.

No I/O beyond reading the ``table_file`` it is given.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway._native import NativeDirectory
    from gateway.config import Config, FabricSection

MASK64: Final = (1 << 64) - 1
MAX_REGIONS: Final = 64
MODES: Final = {"table": 1, "ranges": 2, "hash": 3}
_Z85_KEY: Final = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def mix64(x: int) -> int:
    """``gw_mix64``: the splitmix64 finaliser."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK64
    x ^= x >> 31
    return x


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping & Veach 2014), bit for bit as ``gw_dir_jump``."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


@dataclass(frozen=True, slots=True)
class Directory:
    """An immutable account directory (see the module docstring)."""

    mode: str
    regions: tuple[str, ...]  # index order (the native directory uses the indexes)
    local: str
    default: str | None
    ranges: tuple[tuple[int, int, str], ...]  # sorted by first, non-overlapping
    table: dict[int, str]
    fingerprint: str
    firsts: tuple[int, ...] = ()  # ranges' first accounts, for bisection
    index: dict[str, int] = field(default_factory=dict)  # region -> index in `regions`

    @property
    def local_index(self) -> int:
        return self.index[self.local]

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(r for r in self.regions if r != self.local)

    def home(self, account: int) -> str | None:
        """The home region of ``account``, or None when it has none."""
        if self.mode == "hash":
            return self.regions[jump_hash(mix64(account), len(self.regions))]
        if self.mode == "table":
            return self.table.get(account, self.default)
        i = bisect.bisect_right(self.firsts, account) - 1
        if i >= 0 and account <= self.ranges[i][1]:
            return self.ranges[i][2]
        return self.default

    def home_index(self, account: int) -> int:
        """Index of the home region in :attr:`regions`; -1 when it has none."""
        home = self.home(account)
        return -1 if home is None else self.index[home]

    def is_local(self, account: int) -> bool:
        return self.home(account) == self.local

    def native(self) -> NativeDirectory:
        """The directory built in C (for the native ingest thread and bulk lookups)."""
        from gateway._native import NativeDirectory

        index = {r: i for i, r in enumerate(self.regions)}
        return NativeDirectory(
            mode=MODES[self.mode], n_regions=len(self.regions),
            default_region=-1 if self.default is None else index[self.default],
            table=[(a, index[r]) for a, r in self.table.items()],
            ranges=[(f, last, index[r]) for f, last, r in self.ranges])


def _fingerprint(mode: str, regions: Sequence[str], default: str | None,
                 ranges: Iterable[tuple[int, int, str]], table: dict[int, str]) -> str:
    canonical = [mode, list(regions) if mode == "hash" else [], default or "",
                 [list(r) for r in ranges], sorted(table.items())]
    return hashlib.sha256(msgspec.msgpack.encode(canonical)).hexdigest()[:32]


def _read_table_file(path: str, source: str, key: str) -> list[tuple[int, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, key, f"{path}: {exc.strerror or exc}") from None
    out: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.replace(";", ",").split(",")]
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) > MASK64:
            if lineno == 1 and not parts[0].isdigit():
                continue  # a header line
            raise ConfigError(source, key, f"{path} line {lineno}: expected `account,region`")
        out.append((int(parts[0]), parts[1]))
    return out


def build_directory(fabric: FabricSection, local: str, source: str = "<config>",
                    ) -> Directory:
    """Validate ``[fabric.directory]`` against the node's region and peers; the directory.

    Raises :class:`ConfigError` naming ``source``, the key and the reason.
    """
    d = fabric.directory
    key = "fabric.directory"
    known = {local, *fabric.peers}
    if local in fabric.peers:
        raise ConfigError(source, f"fabric.peers.{local}", "a node is not its own peer")

    def check_region(region: str, where: str) -> None:
        if region not in known:
            raise ConfigError(source, where, f"region {region!r} is neither this node's "
                              f"region ({local!r}) nor a peer in fabric.peers")

    for name, present, modes in (("regions", bool(d.regions), ("hash",)),
                                 ("ranges", bool(d.ranges), ("ranges",)),
                                 ("table", bool(d.table), ("table",)),
                                 ("table_file", bool(d.table_file), ("table",)),
                                 ("default", bool(d.default), ("ranges", "table"))):
        if present and d.mode not in modes:
            raise ConfigError(source, f"{key}.{name}", "only used with mode = "
                              + " or ".join(f'"{m}"' for m in modes))
    default = d.default or None
    if default is not None:
        check_region(default, f"{key}.default")
    ranges: list[tuple[int, int, str]] = []
    table: dict[int, str] = {}
    if d.mode == "hash":
        regions = list(d.regions) if d.regions else sorted(known)
        seen: set[str] = set()
        for i, r in enumerate(regions):
            check_region(r, f"{key}.regions[{i}]")
            if r in seen:
                raise ConfigError(source, f"{key}.regions[{i}]", f"region {r!r} listed twice")
            seen.add(r)
        for r in sorted(known - seen):
            where = "node.region" if r == local else f"fabric.peers.{r}"
            raise ConfigError(source, f"{key}.regions", f"misses region {r!r} ({where})")
    else:
        regions = sorted(known)
    if d.mode == "ranges":
        order = sorted(range(len(d.ranges)), key=lambda i: d.ranges[i].first)
        prev: int | None = None
        for i in order:
            rg = d.ranges[i]
            where = f"{key}.ranges[{i}]"
            if rg.first > rg.last:
                raise ConfigError(source, where, f"first {rg.first} is above last {rg.last}")
            check_region(rg.region, f"{where}.region")
            if prev is not None and rg.first <= ranges[-1][1]:
                raise ConfigError(source, where, f"overlaps ranges[{prev}]")
            ranges.append((rg.first, rg.last, rg.region))
            prev = i
    if d.mode == "table":
        rows = [(a, r, f"{key}.table[{i}]") for i, (a, r) in enumerate(d.table)]
        if d.table_file:
            rows += [(a, r, f"{key}.table_file") for a, r in
                     _read_table_file(d.table_file, source, f"{key}.table_file")]
        for account, region, where in rows:
            check_region(region, where)
            if account in table:
                raise ConfigError(source, where, f"account {account} listed twice")
            table[account] = region
    if len(regions) > MAX_REGIONS:
        raise ConfigError(source, key, f"{len(regions)} regions; at most {MAX_REGIONS}")
    return Directory(d.mode, tuple(regions), local, default, tuple(ranges), table,
                     _fingerprint(d.mode, regions, default, ranges, table),
                     tuple(r[0] for r in ranges), {r: i for i, r in enumerate(regions)})


def fabric_enabled(cfg: Config) -> bool:
    return bool(cfg.fabric.bind or cfg.fabric.peers)


def fabric_curve(f: FabricSection) -> bool:
    """Whether the fabric authenticates its peers with CURVE (``fabric.curve``: true, or
    "auto" with peer keys configured)."""
    return f.curve is True or (f.curve == "auto" and bool(f.peer_keys))


def relay_regions(f: FabricSection) -> tuple[str, ...]:
    """The peer regions this node relays its alerts to (``fabric.relay_alerts``)."""
    if "*" in f.relay_alerts:
        return tuple(sorted(f.peers))
    return tuple(sorted(set(f.relay_alerts)))


def _check_keys_and_relay(f: FabricSection, source: str) -> None:
    seen: dict[str, str] = {}
    for region, key in sorted(f.peer_keys.items()):
        if not _Z85_KEY.match(key):
            raise ConfigError(source, f"fabric.peer_keys.{region}",
                              "not a Z85 CURVE public key (40 characters, as `gateway keys "
                              "server` prints it)")
        if region not in f.peers:
            raise ConfigError(source, f"fabric.peer_keys.{region}",
                              "not a peer in fabric.peers")
        if key in seen:
            raise ConfigError(source, f"fabric.peer_keys.{region}",
                              f"the same key as fabric.peer_keys.{seen[key]}: each node has "
                              "its own key")
        seen[key] = region
    if fabric_curve(f):
        for region in sorted(f.peers):
            if region not in f.peer_keys:
                raise ConfigError(source, f"fabric.peer_keys.{region}",
                                  "missing: with fabric.curve on, every peer needs its node's "
                                  "public key (`gateway keys server` on that node); "
                                  "fabric.curve = false for plain loopback development")
    for i, target in enumerate(f.relay_alerts):
        if target == "*":
            if len(f.relay_alerts) > 1:
                raise ConfigError(source, f"fabric.relay_alerts[{i}]",
                                  '"*" (every peer) stands alone')
        elif target not in f.peers:
            raise ConfigError(source, f"fabric.relay_alerts[{i}]",
                              f"region {target!r} is not a peer in fabric.peers")


def check_fabric_config(cfg: Config, source: str) -> None:
    """The ``[fabric]`` rules: bind and peers together, a valid directory, sane timers."""
    f = cfg.fabric
    if not fabric_enabled(cfg):
        return
    if not f.bind:
        raise ConfigError(source, "fabric.bind", "required when fabric.peers is set")
    if f.dead_after_ms < 2 * f.heartbeat_ms:
        raise ConfigError(source, "fabric.dead_after_ms",
                          f"must be at least twice heartbeat_ms ({f.heartbeat_ms})")
    build_directory(f, cfg.node.region, source)
    _check_keys_and_relay(f, source)


__all__ = ["Directory", "build_directory", "check_fabric_config", "fabric_curve",
           "fabric_enabled", "jump_hash", "mix64", "relay_regions"]
