"""The native boundary: the only module that imports the compiled cffi extension.

It converts native status codes into typed exceptions and owns native memory with
``ffi.gc`` so that every allocation is freed with its Python owner.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn

from gateway._gateway_native import ffi, lib  # the one import of the extension
from gateway.errors import ConfigError, NativeCapacityError, NativeError, NativeMemoryError

EXPECTED_ABI: Final = 2

ffi_: Any = ffi
lib_: Any = lib


def _raise(status: int, what: str) -> NoReturn:
    if status == lib.GW_ERR_NOMEM:
        raise NativeMemoryError(status, what)
    if status == lib.GW_ERR_OVERFLOW:
        raise NativeCapacityError(status, what)
    name = ffi.string(lib.gw_status_name(status)).decode()
    raise NativeError(status, f"{what}: {name}")


def check(status: int, what: str) -> int:
    """Return ``status`` if it is not an error, else raise the matching typed exception."""
    if status < 0:
        _raise(status, what)
    return status


def abi_version() -> int:
    """The ABI version the compiled extension was built with."""
    return int(lib.gw_native_abi())


if abi_version() != EXPECTED_ABI:  # pragma: no cover - a stale build in place
    raise ImportError(
        f"gateway._gateway_native has ABI {abi_version()}, expected {EXPECTED_ABI}: rebuild "
        "with `pip install -e .` or `python build.py`"
    )



# -- scoring engine (native/gw_scoring.h) --------------------------------------------------

_TX_FORMAT: Final = struct.Struct("<QQqqQQQIHHB7x")  # struct gw_tx


class NativeRuleSet:
    """A compiled rule set (``struct gw_ruleset``), built from flat spec arrays."""

    def __init__(self, *, version: int, rules: Sequence[tuple[int, int, int, int, int, int]],
                 guards: Sequence[tuple[int, int, int, int]],
                 conds: Sequence[tuple[int, int, int, int, int]], set_values: Sequence[int],
                 tiers: Sequence[tuple[int, int, int]], thresholds: tuple[int, int, int],
                 default_method: int) -> None:
        """rules: (id_hash, score, cond_off, n_conds, action, trusted); guards: (id_hash,
        cond_off, n_conds, 0); conds: (value, set_off, set_len, feature, op); tiers:
        (daily_amount, daily_count, level)."""
        keep: list[Any] = []

        def arr(ctype: str, items: Sequence[Any]) -> Any:
            a = ffi.new(f"{ctype}[]", max(len(items), 1))
            keep.append(a)
            return a

        r = arr("struct gw_rule_spec", rules)
        for i, (h, score, off, n, action, trusted) in enumerate(rules):
            r[i].id_hash, r[i].score, r[i].cond_off = h, score, off
            r[i].n_conds, r[i].action, r[i].trusted = n, action, trusted
        g = arr("struct gw_rule_spec", guards)
        for i, (h, off, n, _) in enumerate(guards):
            g[i].id_hash, g[i].cond_off, g[i].n_conds = h, off, n
        c = arr("struct gw_cond_spec", conds)
        for i, (value, set_off, set_len, feature, op) in enumerate(conds):
            c[i].value, c[i].set_off, c[i].set_len = value, set_off, set_len
            c[i].feature, c[i].op = feature, op
        sv = arr("int64_t", set_values)
        for i, v in enumerate(set_values):
            sv[i] = v
        t = arr("struct gw_tier_spec", tiers)
        for i, (amount, count, level) in enumerate(tiers):
            t[i].daily_amount, t[i].daily_count, t[i].level = amount, count, level
        spec = ffi.new("struct gw_ruleset_spec *")
        spec.version = version
        spec.n_rules, spec.rules = len(rules), r
        spec.n_guards, spec.guards = len(guards), g
        spec.n_conds, spec.conds = len(conds), c
        spec.n_set_values, spec.set_values = len(set_values), sv
        spec.n_tiers, spec.tiers = len(tiers), t
        spec.step_up, spec.block, spec.block_and_freeze = thresholds
        spec.default_method = default_method
        out = ffi.new("struct gw_ruleset **")
        check(lib.gw_ruleset_build(spec, out), "compile rule set")
        self.version = version
        self.ptr: Any = ffi.gc(out[0], lib.gw_ruleset_release)


class NativeTrusted:
    """An immutable trusted-accounts table (``struct gw_trusted``): account -> tier level."""

    def __init__(self, ptr: Any) -> None:
        self.ptr: Any = ffi.gc(ptr, lib.gw_trusted_release)

    @classmethod
    def from_file(cls, path: str) -> NativeTrusted:
        out = ffi.new("struct gw_trusted **")
        bad = ffi.new("uint64_t *")
        status = lib.gw_trusted_load_file(os.fsencode(path), out, bad)
        if status == lib.GW_ERR_INVALID:
            raise ConfigError(path, f"line {bad[0]}",
                              "malformed trusted-account line (expected `account,level`, "
                              "level 1..255)")
        if status == lib.GW_ERR_NOT_FOUND:
            raise FileNotFoundError(path)
        check(status, f"load trusted accounts from {path}")
        return cls(out[0])

    @classmethod
    def from_items(cls, items: Mapping[int, int]) -> NativeTrusted:
        n = len(items)
        accounts = ffi.new("uint64_t[]", list(items.keys()) or [0])
        levels = ffi.new("uint8_t[]", list(items.values()) or [1])
        out = ffi.new("struct gw_trusted **")
        check(lib.gw_trusted_from_arrays(accounts, levels, n, out), "build trusted table")
        return cls(out[0])

    def __len__(self) -> int:
        return int(lib.gw_trusted_count(self.ptr))

    @property
    def memory_bytes(self) -> int:
        return int(lib.gw_trusted_memory(self.ptr))

    def level(self, account: int) -> int:
        return int(lib.gw_trusted_level(self.ptr, account))

    def bench_lookup(self, accounts: Sequence[int], passes: int) -> tuple[int, int]:
        """(elapsed ns, hits) of ``passes`` native lookups of every account."""
        keys = ffi.new("uint64_t[]", list(accounts))
        ns = ffi.new("uint64_t *")
        found = ffi.new("uint64_t *")
        check(lib.gw_bench_trusted_lookup(self.ptr, keys, len(accounts), passes, ns, found),
              "bench trusted lookup")
        return int(ns[0]), int(found[0])


class TxBatch:
    """Transactions packed as a native ``struct gw_tx`` array (strings hashed in C)."""

    def __init__(self, rows: Sequence[tuple[int, int, int, int, int, int, int, int]],
                 strings: Sequence[bytes]) -> None:
        """rows: (account, counterparty, amount, ts_ms, currency, country, mcc, channel);
        strings: device, ip, city of each row in order (3 per row)."""
        n = len(rows)
        self.n = n
        self.buf = bytearray(_TX_FORMAT.size * max(n, 1))
        pack = _TX_FORMAT.pack_into
        size = _TX_FORMAT.size
        for i, (acct, cp, amount, ts, cur, country, mcc, ch) in enumerate(rows):
            pack(self.buf, i * size, acct, cp, amount, ts, 0, 0, 0, cur, country, mcc, ch)
        self.ptr: Any = ffi.from_buffer("struct gw_tx[]", self.buf)
        blob = b"".join(strings)
        ends = ffi.new("uint32_t[]", max(len(strings), 1))
        pos = 0
        for k, s in enumerate(strings):
            pos += len(s)
            ends[k] = pos
        check(lib.gw_tx_fill_hashes(self.ptr, n, ffi.from_buffer(blob), len(blob), ends),
              "hash transaction strings")


RawNative = tuple[int, int, int, int, int, list[int], int, int]
# (vel_1m_count, vel_1m_sum, vel_1h_count, vel_1h_sum, vel_24h_count, vel_24h_sum, baseline,
#  known_devices, tx_count): the field order of gateway.wire.AccountProfile
RawProfile = tuple[int, int, int, int, int, int, int, int, int]


def _unpack(d: Any) -> RawNative:
    return (d.outcome, d.method, d.score, d.path, d.version,
            ffi.unpack(d.fired, d.n_fired), d.flags, d.n_fired_total)


class NativeEngine:
    """The scoring engine (``struct gw_engine``); see the threading contract in its header."""

    def __init__(self, max_accounts: int = 1 << 24) -> None:
        out = ffi.new("struct gw_engine **")
        check(lib.gw_engine_new(max_accounts, out), "create scoring engine")
        self.ptr: Any = ffi.gc(out[0], lib.gw_engine_free)
        self._dec: Any = ffi.new("struct gw_decision *")
        self._profile: Any = ffi.new("struct gw_profile *")

    def set_rules(self, rs: NativeRuleSet) -> None:
        check(lib.gw_engine_set_rules(self.ptr, rs.ptr), "install rule set")

    def set_shadow(self, rs: NativeRuleSet | None) -> None:
        check(lib.gw_engine_set_shadow(self.ptr, rs.ptr if rs else ffi.NULL), "install shadow")

    def set_trusted(self, t: NativeTrusted | None) -> None:
        check(lib.gw_engine_set_trusted(self.ptr, t.ptr if t else ffi.NULL), "install trusted")

    def set_list(self, kind: int, values: Sequence[int]) -> None:
        arr = ffi.new("uint64_t[]", list(values) or [0])
        check(lib.gw_engine_set_list(self.ptr, kind, arr, len(values)), "install block list")

    def freeze(self, account: int, frozen: bool) -> None:
        check(lib.gw_engine_freeze(self.ptr, account, int(frozen)), "freeze account")

    def is_frozen(self, account: int) -> bool:
        return bool(check(lib.gw_engine_is_frozen(self.ptr, account), "frozen lookup"))

    def score(self, account: int, counterparty: int, amount: int, ts_ms: int, device: bytes,
              ip: bytes, city: bytes, currency: int, country: int, mcc: int,
              channel: int) -> RawNative:
        """Score one transaction; not reentrant (one scorer per engine, see the header)."""
        d = self._dec
        status = lib.gw_engine_score_fields(
            self.ptr, account, counterparty, amount, ts_ms, device, len(device), ip, len(ip),
            city, len(city), currency, country, mcc, channel, d)
        if status:
            check(status, "score transaction")
        return (d.outcome, d.method, d.score, d.path, d.version,
                ffi.unpack(d.fired, d.n_fired), d.flags, d.n_fired_total)

    def score_batch(self, batch: TxBatch) -> list[RawNative]:
        out = ffi.new("struct gw_decision[]", max(batch.n, 1))
        check(lib.gw_engine_score_batch(self.ptr, batch.ptr, batch.n, out), "score batch")
        return [_unpack(out[i]) for i in range(batch.n)]

    def profile(self, account: int, ts_ms: int) -> RawProfile | None:
        """The account's state with velocity taken at ``ts_ms``; None when it has none.
        Account state is single-writer: call only where scoring on this engine is allowed."""
        p = self._profile
        status = lib.gw_engine_profile(self.ptr, account, ts_ms, p)
        if status == lib.GW_ERR_NOT_FOUND:
            return None
        if status:
            check(status, "account profile")
        return (p.vel_1m_count, p.vel_1m_sum, p.vel_1h_count, p.vel_1h_sum, p.vel_24h_count,
                p.vel_24h_sum, p.baseline, p.known_devices, p.tx_count)

    def stats(self) -> dict[str, int]:
        s = ffi.new("struct gw_engine_stats *")
        check(lib.gw_engine_stats(self.ptr, s), "engine stats")
        return {
            "scored": s.scored, "allow": s.outcome[0], "step_up": s.outcome[1],
            "block": s.outcome[2], "block_and_freeze": s.outcome[3], "path_full": s.path[0],
            "path_trusted": s.path[1], "frozen_hits": s.frozen_hits,
            "no_state": s.nostate, "accounts": s.accounts,
            "trusted_accounts": s.trusted_accounts, "frozen_accounts": s.frozen_accounts,
        }

    def shadow_stats(self) -> dict[str, Any]:
        s = ffi.new("struct gw_shadow_stats *")
        check(lib.gw_engine_shadow_stats(self.ptr, s), "shadow stats")
        return {
            "version": s.version, "compared": s.compared,
            "matrix": [[s.matrix[i][j] for j in range(4)] for i in range(4)],
            "path_differs": s.path_differs, "fired_differs": s.fired_differs,
            "score_diff_sum": s.score_diff_sum,
        }

    def bench(self, batch: TxBatch, *, passes: int, batch_size: int,
              advance_ms: int) -> tuple[int, int, int]:
        """(elapsed ns, full-path count, trusted-path count) of a native timing loop."""
        ns = ffi.new("uint64_t *")
        paths = ffi.new("uint64_t[2]")
        check(lib.gw_bench_score(self.ptr, batch.ptr, batch.n, passes, batch_size, advance_ms,
                                 ns, paths), "bench scoring")
        return int(ns[0]), int(paths[0]), int(paths[1])


def hash_str(text: bytes) -> int:
    """``gw_hash_str``: FNV-1a 64 of ``text``, 0 for empty."""
    return int(lib.gw_hash_str(text, len(text)))


def native_constants(prefix: str) -> dict[str, int]:
    """Integer constants of the extension whose names start with ``prefix``."""
    return {k: int(getattr(lib, k)) for k in dir(lib) if k.startswith(prefix)}


__all__ = [
    "NativeEngine",
    "NativeRuleSet",
    "NativeTrusted",
    "RawNative",
    "RawProfile",
    "TxBatch",
    "abi_version",
    "check",
    "hash_str",
    "native_constants",
]


# -- ingest --- native ingest multiplexer and load generator (native/gw_ingest.h,
# gw_loadgen.h, gw_zmq.h); owned by the ingest work, appended here as the one boundary.

ALERT_RECORD_SIZE: Final = 496  # sizeof(struct gw_alert_record), checked at import
INGEST_LAT_BUCKETS: Final = 512

if ffi.sizeof("struct gw_alert_record") != ALERT_RECORD_SIZE:  # pragma: no cover
    raise ImportError("struct gw_alert_record changed size: update ALERT_RECORD_SIZE")

# (rid, account, counterparty, amount, ts_ms, score, decided_unix_ns, version, currency,
#  country, mcc, channel, outcome, method, path, flags, tx_id, fired, n_fired_total, profile)
RawAlert = tuple[int, int, int, int, int, int, int, int, int, int, int, int, int, int, int,
                 int, str, tuple[int, ...], int, RawProfile | None]


def load_libzmq(path: str) -> None:
    """Resolve libzmq's functions from the copy already mapped in this process."""
    check(lib.gw_zmq_load(path.encode()), f"resolve libzmq from {path}")


def lat_bucket_upper_ns(index: int) -> int:
    """Upper bound (ns) of latency histogram bucket ``index`` (ingest and load generator)."""
    return int(lib.gw_lat_bucket_upper(index))


def _struct_dict(s: Any, names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        v = getattr(s, name)
        out[name] = int(v) if isinstance(v, int) else [int(x) for x in v]
    return out


_INGEST_STAT_FIELDS: Final = tuple(name for name, _ in ffi.typeof("struct gw_ingest_stats").fields)
_LOADGEN_FIELDS: Final = tuple(name for name, _ in ffi.typeof("struct gw_loadgen_result").fields)


class NativeIngest:
    """The ingest thread (``struct gw_ingest``). Sockets are pyzmq handles (``underlying``)
    that the caller keeps open, and stops using, while the thread runs."""

    def __init__(self, *, router: int, alerts: int | None, engine: Any, node_name: str,
                 region: str, frozen_rule_id: str, alert_min_score: int = 0,
                 alert_queue: int = 8192, busy_alerts_ms: int = 5, busy_paused_ms: int = 20,
                 burst: int = 512, max_backlog_ms: int = 0,
                 busy_overload_ms: int = 10) -> None:
        keep = [ffi.new("char[]", node_name.encode()), ffi.new("char[]", region.encode()),
                ffi.new("char[]", frozen_rule_id.encode())]
        cfg = ffi.new("struct gw_ingest_config *")
        cfg.router = ffi.cast("void *", router)
        cfg.alerts = ffi.cast("void *", alerts) if alerts else ffi.NULL
        cfg.engine = engine
        cfg.node_name, cfg.region, cfg.frozen_rule_id = keep
        cfg.alert_min_score = alert_min_score
        cfg.alert_queue = alert_queue
        cfg.busy_alerts_ms = busy_alerts_ms
        cfg.busy_paused_ms = busy_paused_ms
        cfg.burst = burst
        cfg.max_backlog_ms = max_backlog_ms
        cfg.busy_overload_ms = busy_overload_ms
        out = ffi.new("struct gw_ingest **")
        check(lib.gw_ingest_new(cfg, out), "create native ingest")
        self._engine = engine  # the engine outlives the thread that scores on it
        self.ptr: Any = ffi.gc(out[0], lib.gw_ingest_free)

    def set_rule_ids(self, version: int, ids: Sequence[str]) -> None:
        """Register the rule ids (index order) that decisions of ``version`` report."""
        parts = [i.encode() for i in ids]
        offsets = ffi.new("uint32_t[]", len(parts) + 1)
        pos = 0
        for k, p in enumerate(parts):
            offsets[k] = pos
            pos += len(p)
        offsets[len(parts)] = pos
        check(lib.gw_ingest_set_rule_ids(self.ptr, version, b"".join(parts), offsets,
                                         len(parts)), "register rule ids")

    def start(self) -> None:
        check(lib.gw_ingest_start(self.ptr), "start ingest thread")

    def stop(self) -> None:
        """Stop and join the thread (the GIL is released while waiting)."""
        check(lib.gw_ingest_stop(self.ptr), "stop ingest thread")

    def pause(self, timeout_ms: int) -> None:
        """Return once the thread is outside the engine; GW_ERR_STATE on timeout."""
        check(lib.gw_ingest_pause(self.ptr, timeout_ms), "pause ingest thread")

    def resume(self) -> None:
        check(lib.gw_ingest_resume(self.ptr), "resume ingest thread")

    def stats(self, fresh_timeout_ms: int = 0) -> dict[str, Any]:
        """The last published counters; with a timeout, a snapshot taken after this call
        (so every reply already sent is counted), waiting up to that long for it."""
        s = ffi.new("struct gw_ingest_stats *")
        if fresh_timeout_ms > 0:
            check(lib.gw_ingest_stats_fresh(self.ptr, s, fresh_timeout_ms), "ingest stats")
        else:
            check(lib.gw_ingest_stats(self.ptr, s), "ingest stats")
        return _struct_dict(s, _INGEST_STAT_FIELDS)

    def process_one(self, body: bytes) -> bytes:
        """Handle one request body as the thread would (thread not running); the reply."""
        cap = 64 * 1024
        while True:
            out = ffi.new("uint8_t[]", cap)
            n = int(lib.gw_ingest_process_one(self.ptr, ffi.from_buffer(body), len(body), out,
                                              cap))
            if n >= 0:
                return bytes(ffi.buffer(out, n))
            if n == -2:
                raise NativeMemoryError(lib.GW_ERR_NOMEM, "ingest reply")
            cap *= 8

    def close(self) -> None:
        """Stop the thread and free it now rather than at garbage collection."""
        if self.ptr is not None:
            ffi.release(self.ptr)  # runs gw_ingest_free now
            self.ptr = None


def ingest_decode(body: bytes) -> tuple[int, int, int, int]:
    """Decode like the ingest thread: (wire error code or 0, kind, rid, n_txs)."""
    kind = ffi.new("int *")
    rid = ffi.new("uint64_t *")
    n = ffi.new("uint32_t *")
    code = int(lib.gw_ingest_decode(ffi.from_buffer(body), len(body), kind, rid, n, ffi.NULL,
                                    0))
    return code, int(kind[0]), int(rid[0]), int(n[0])


_ALERT_FORMAT: Final = struct.Struct("<QQQqqqqIIHHBBBBBxHHH48H256s7qIBB2x")  # gw_alert_record
if _ALERT_FORMAT.size != ALERT_RECORD_SIZE:  # pragma: no cover
    raise ImportError("_ALERT_FORMAT does not match struct gw_alert_record")


def alert_records(body: bytes) -> list[RawAlert]:
    """Unpack one alert message (whole ``struct gw_alert_record``s back to back)."""
    if len(body) % ALERT_RECORD_SIZE:
        raise NativeError(lib.GW_ERR_INVALID, f"alert message of {len(body)} bytes")
    out: list[RawAlert] = []
    for f in _ALERT_FORMAT.iter_unpack(body):
        n_fired = min(f[17], 48)
        tx_id = f[67][: f[16]].decode("utf-8", "replace")
        # f[68..73] velocity counts and sums, f[74] baseline, f[75] tx_count,
        # f[76] known_devices, f[77] has_profile
        profile: RawProfile | None = (
            (f[68], f[69], f[70], f[71], f[72], f[73], f[74], f[76], f[75]) if f[77] else None)
        out.append((*f[:16], tx_id, f[19:19 + n_fired], f[18], profile))
    return out


def run_loadgen(url: str, txs: Sequence[bytes], *, batch: int, requests: int,
                connections: int = 1, window: int = 64, rate: float = 0.0,
                timeout_ms: int = 60_000, warmup: int = 0,
                cycle_advance_ms: int = 0, ts_offset_ms: int = 0) -> dict[str, Any]:
    """Drive ``url`` with the native load generator (GIL released); the result counters."""
    blob = b"".join(txs)
    offsets = ffi.new("uint32_t[]", len(txs) + 1)
    pos = 0
    for k, t in enumerate(txs):
        offsets[k] = pos
        pos += len(t)
    offsets[len(txs)] = pos
    keep_url = ffi.new("char[]", url.encode())
    keep_blob = ffi.from_buffer(blob)
    cfg = ffi.new("struct gw_loadgen_config *")
    cfg.url = keep_url
    cfg.txs = keep_blob
    cfg.tx_offsets = offsets
    cfg.n_txs = len(txs)
    cfg.batch = batch
    cfg.connections = connections
    cfg.window = window
    cfg.requests = requests
    cfg.rate = rate
    cfg.timeout_ms = timeout_ms
    cfg.warmup = warmup
    cfg.cycle_advance_ms = cycle_advance_ms
    cfg.ts_offset_ms = ts_offset_ms
    res = ffi.new("struct gw_loadgen_result *")
    check(lib.gw_loadgen_run(cfg, res), "load generator")
    return _struct_dict(res, _LOADGEN_FIELDS)


__all__ += [
    "ALERT_RECORD_SIZE",
    "INGEST_LAT_BUCKETS",
    "NativeIngest",
    "RawAlert",
    "alert_records",
    "ingest_decode",
    "lat_bucket_upper_ns",
    "load_libzmq",
    "run_loadgen",
]


# -- fabric --- account directory, trusted-table derivation and the native ingest's hand-off
# (native/gw_dir.h, gw_ingest.h "regional fabric"); appended here as the one boundary.


class NativeDirectory:
    """An immutable account directory (``struct gw_dir``): account -> home region index."""

    def __init__(self, *, mode: int, n_regions: int, default_region: int,
                 table: Sequence[tuple[int, int]], ranges: Sequence[tuple[int, int, int]],
                 ) -> None:
        spec = ffi.new("struct gw_dir_spec *")
        keep = [
            ffi.new("uint64_t[]", [a for a, _ in table] or [0]),
            ffi.new("uint8_t[]", [r for _, r in table] or [0]),
            ffi.new("uint64_t[]", [f for f, _, _ in ranges] or [0]),
            ffi.new("uint64_t[]", [last for _, last, _ in ranges] or [0]),
            ffi.new("uint8_t[]", [r for _, _, r in ranges] or [0]),
        ]
        spec.mode, spec.n_regions, spec.default_region = mode, n_regions, default_region
        spec.table_accounts, spec.table_regions, spec.n_table = keep[0], keep[1], len(table)
        spec.range_first, spec.range_last = keep[2], keep[3]
        spec.range_regions, spec.n_ranges = keep[4], len(ranges)
        out = ffi.new("struct gw_dir **")
        check(lib.gw_dir_new(spec, out), "build account directory")
        self.ptr: Any = ffi.gc(out[0], lib.gw_dir_free)

    def home(self, account: int) -> int:
        return int(lib.gw_dir_home(self.ptr, account))

    def homes(self, accounts: Sequence[int]) -> list[int]:
        n = len(accounts)
        arr = ffi.new("uint64_t[]", list(accounts) or [0])
        out = ffi.new("int16_t[]", max(n, 1))
        check(lib.gw_dir_homes(self.ptr, arr, n, out), "directory lookup")
        return list(out[0:n])


def trusted_entries(table: NativeTrusted) -> list[tuple[int, int]]:
    """Every (account, level) of a trusted table."""
    n = len(table)
    accounts = ffi.new("uint64_t[]", max(n, 1))
    levels = ffi.new("uint8_t[]", max(n, 1))
    k = int(lib.gw_trusted_entries(table.ptr, accounts, levels, n))
    return list(zip(accounts[0:k], levels[0:k], strict=True))


def dir_jump(key: int, buckets: int) -> int:
    """``gw_dir_jump`` (for the reference test)."""
    return int(lib.gw_dir_jump(key, buckets))


def trusted_derive(base: NativeTrusted | None, directory: NativeDirectory | None,
                   local_region: int, changes: Sequence[tuple[int, int]],
                   ) -> tuple[NativeTrusted, int]:
    """A new trusted table: ``base`` without accounts homed elsewhere (with a directory),
    then ``changes`` (account, level) applied, level 0 removing. Also the number dropped."""
    n = len(changes)
    accounts = ffi.new("uint64_t[]", [a for a, _ in changes] or [0])
    levels = ffi.new("uint8_t[]", [lv for _, lv in changes] or [0])
    out = ffi.new("struct gw_trusted **")
    dropped = ffi.new("uint64_t *")
    check(lib.gw_trusted_derive(base.ptr if base is not None else ffi.NULL,
                                directory.ptr if directory is not None else ffi.NULL,
                                local_region, accounts, levels, n, out, dropped),
          "derive trusted table")
    return NativeTrusted(out[0]), int(dropped[0])


_FABRIC_STAT_FIELDS: Final = tuple(
    name for name, _ in ffi.typeof("struct gw_ingest_fabric_stats").fields)


def ingest_attach_fabric(ingest: NativeIngest, directory: NativeDirectory, local_region: int,
                         pair: int) -> None:
    """Give the (stopped) ingest thread the directory and the PAIR socket to the control
    plane; the caller keeps ``directory`` alive as long as ``ingest``."""
    check(lib.gw_ingest_attach_fabric(ingest.ptr, directory.ptr, local_region,
                                      ffi.cast("void *", pair)), "attach fabric")


def ingest_fabric_stats(ingest: NativeIngest) -> dict[str, int]:
    s = ffi.new("struct gw_ingest_fabric_stats *")
    check(lib.gw_ingest_fabric_stats(ingest.ptr, s), "ingest fabric stats")
    return {name: int(getattr(s, name)) for name in _FABRIC_STAT_FIELDS}


__all__ += [
    "NativeDirectory",
    "dir_jump",
    "ingest_attach_fabric",
    "ingest_fabric_stats",
    "trusted_derive",
    "trusted_entries",
]
