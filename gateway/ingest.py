"""Native ingest: the node's ingest ROUTER served by a C thread, with no Python per request.

I/O shell glue. Python creates, configures and binds the ROUTER socket and the inproc
PUSH/PULL pair that carries alert records, hands the ROUTER and the PUSH end to the native
thread (``native/gw_ingest.c``), and keeps the PULL end in a :class:`PullReceiver` owned by
a task of the control plane. From :meth:`NativeIngestEndpoint.start` to
:meth:`NativeIngestEndpoint.stop` the native thread alone uses both handed-over sockets.

Engine handover: while the thread runs it is the engine's only scorer (account state is
single-writer). :meth:`NativeIngestEndpoint.handover` pauses it (score requests get a
``busy`` reply meanwhile, pings are still answered) and yields the engine to the caller,
who may then score on it, load or roll back rules; on exit the rule ids of the live version
are registered and the thread resumes. Rule sets, trusted tables, block lists and freezes
may also be changed without a handover (atomic swaps in the engine); decisions name their
rules by the ids registered for their version, so register a version's ids
(:meth:`NativeIngestEndpoint.register_rule_ids`) before installing it, or install it under
:meth:`NativeIngestEndpoint.handover`. Unregistered versions report ``#<index>``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import anyio
import zmq

from gateway import _native, wire
from gateway.counters import Counters
from gateway.errors import ErrorCode, GatewayError
from gateway.scoring import FROZEN_RULE_ID, ScoringEngine
from gateway.transport import MonitorWatcher, PullReceiver, configure_router

_OUTCOMES: Final = tuple(wire.Outcome)
_METHODS: Final = (None, wire.StepUpMethod.FACE, wire.StepUpMethod.SMS_DOWN,
                   wire.StepUpMethod.SMS_UP, wire.StepUpMethod.OLD_DEVICE_CONFIRM)
_PATHS: Final = (wire.ScoringPath.FULL, wire.ScoringPath.TRUSTED)
_CHANNELS: Final = tuple(wire.Channel)
FRESH_TIMEOUT_MS: Final = 100
PUBLISH_EVERY_S: Final = 0.1


def libzmq_path() -> str:
    """Path of the libzmq that pyzmq loaded into this process (pyzmq.libs/libzmq-*.so)."""
    import zmq.backend  # maps libzmq if it is not yet

    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1] if line.count(" ") >= 5 else ""
                if "/libzmq" in path and ".so" in path:
                    return path
    except OSError:  # pragma: no cover - not Linux
        pass
    libs = os.path.join(os.path.dirname(os.path.dirname(zmq.__file__)), "pyzmq.libs")
    found = sorted(glob.glob(os.path.join(libs, "libzmq*.so*")))
    if not found:  # pragma: no cover - a pyzmq built against a system libzmq
        raise GatewayError("cannot find the libzmq that pyzmq loaded (no pyzmq.libs/libzmq*)")
    return found[0]


_loaded = False


def ensure_libzmq() -> None:
    """Resolve the native side's libzmq function table once per process."""
    global _loaded
    if not _loaded:
        _native.load_libzmq(libzmq_path())
        _loaded = True


def _code(value: int, n: int) -> str:
    return bytes((value >> (8 * i)) & 0xFF for i in range(n)).decode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A decision that needs people, as the native thread reported it."""

    rid: int
    account: int
    counterparty: int
    amount: int
    currency: str
    channel: wire.Channel
    mcc: int
    country: str
    ts_ms: int
    decision: wire.Decision
    decided_unix_ns: int
    fired_total: int  # rules fired; decision.fired holds at most the first 48
    # the account's state right after the request was scored (None: it had no state)
    profile: wire.AccountProfile | None = None


def tx_summary_from_record(rec: AlertRecord) -> wire.TxSummary:
    """The payment behind a native alert record, as an alert shows it."""
    return wire.TxSummary(rec.decision.tx_id, rec.account, rec.counterparty, rec.amount,
                          rec.currency, rec.channel.value, rec.mcc, rec.country, rec.ts_ms)


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Knobs of the native ingest (defaults suit one node on a small machine)."""

    alert_min_score: int = 0  # also alert `allow` decisions at or above this score; 0 = off
    alert_queue: int = 8192  # alert records buffered in C before producers get `busy`
    alert_hwm: int = 1000  # inproc messages (each up to 256 records) queued to Python
    busy_alerts_ms: int = 5  # retry-after when alerts back up
    busy_paused_ms: int = 20  # retry-after during an engine handover
    burst: int = 512  # messages per wake-up before counters are published
    max_backlog_ms: int = 0  # shed with `busy` after saturation this long; 0 = never
    busy_overload_ms: int = 10  # retry-after of those replies
    pause_timeout_ms: int = 2000


class NativeIngestEndpoint:
    """The ingest endpoint served by the native thread; see the module docstring."""

    def __init__(self, ctx: zmq.Context[Any], url: str, engine: ScoringEngine, *,
                 node_name: str, region: str, settings: IngestSettings | None = None,
                 curve_server_key: bytes | None = None) -> None:
        ensure_libzmq()
        self.engine = engine
        self.settings = s = settings or IngestSettings()
        self._router: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        configure_router(self._router)
        if curve_server_key is not None:
            self._router.curve_server = True
            self._router.curve_secretkey = curve_server_key
        try:
            self._router.bind(url)
        except zmq.ZMQError:
            self._router.close(0)
            raise
        self.url: str = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        inproc = f"inproc://gateway-ingest-alerts-{id(self):x}"
        self._push: zmq.Socket[Any] = ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.SNDHWM, s.alert_hwm)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.bind(inproc)
        pull: zmq.Socket[Any] = ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVHWM, s.alert_hwm)
        pull.setsockopt(zmq.LINGER, 0)
        pull.connect(inproc)
        self.alerts = PullReceiver(pull)
        self._native = _native.NativeIngest(
            router=self._router.underlying, alerts=self._push.underlying,
            engine=engine.native.ptr, node_name=node_name, region=region,
            frozen_rule_id=FROZEN_RULE_ID, alert_min_score=s.alert_min_score,
            alert_queue=s.alert_queue, busy_alerts_ms=s.busy_alerts_ms,
            busy_paused_ms=s.busy_paused_ms, burst=s.burst, max_backlog_ms=s.max_backlog_ms,
            busy_overload_ms=s.busy_overload_ms)
        self._ids: dict[int, tuple[str, ...]] = {}
        self._published: dict[str, int] = {}
        self.monitor = MonitorWatcher(
            self._router.get_monitor_socket(MonitorWatcher.EVENTS), "ingest")
        self.sync_rule_ids()
        self.running = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Hand the sockets and the engine to the native thread."""
        if self._closed:
            raise GatewayError("ingest endpoint is closed")
        self._native.start()
        self.running = True

    def stop(self) -> None:
        """Stop and join the thread; the engine and the sockets are Python's again."""
        if self.running:
            self._native.stop()
            self.running = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.stop()
            self._native.close()
            self.alerts.close()
            self._router.disable_monitor()
            self.monitor.close()
            self._push.close(0)
            self._router.close(0)

    # -- engine handover -------------------------------------------------------------------

    @contextmanager
    def handover(self) -> Iterator[ScoringEngine]:
        """Pause native scoring and lend the engine to the caller for the block."""
        self._native.pause(self.settings.pause_timeout_ms)
        try:
            yield self.engine
        finally:
            self.sync_rule_ids()
            self._native.resume()

    def register_rule_ids(self, version: int, ids: Sequence[str]) -> None:
        """Tell the native thread the rule ids (index order) of rule-set ``version``; do it
        before installing that version so that no decision of it lacks names."""
        if self._ids.get(version) != tuple(ids):
            self._native.set_rule_ids(version, ids)
            self._ids[version] = tuple(ids)

    def sync_rule_ids(self) -> None:
        """Register the live rule set's ids with the native thread (idempotent)."""
        self.register_rule_ids(self.engine.info.version, self.engine.rules.ids)

    # -- alerts -----------------------------------------------------------------------------

    def decode_alerts(self, body: bytes) -> list[AlertRecord]:
        """Turn one inproc alert message into records (rule ids of kept versions)."""
        out = []
        for raw in _native.alert_records(body):
            (rid, account, counterparty, amount, ts_ms, score, decided_ns, version, currency,
             country, mcc, channel, outcome, method, path, flags, tx_id, fired,
             fired_total, profile) = raw
            ids: tuple[str, ...]
            if flags & 1:
                ids = (FROZEN_RULE_ID,)
            else:
                names = self._ids.get(version, ())
                ids = tuple(names[i] if i < len(names) else f"#{i}" for i in fired)
            decision = wire.Decision(tx_id, _OUTCOMES[outcome & 3], _METHODS[method % 5],
                                     score, _PATHS[path & 1], ids, version)
            out.append(AlertRecord(rid, account, counterparty, amount, _code(currency, 3),
                                   _CHANNELS[(channel - 1) % 6], mcc,
                                   _code(country, 2) if country else "", ts_ms, decision,
                                   decided_ns, fired_total,
                                   wire.AccountProfile(*profile) if profile else None))
        return out

    async def serve_alerts(self, on_alert: Callable[[AlertRecord], None]) -> None:
        """Own the alert socket: hand every record to ``on_alert`` until cancelled."""

        def on_message(body: bytes) -> None:
            for rec in self.decode_alerts(body):
                on_alert(rec)

        await self.alerts.run(on_message)

    async def serve(self, counters: Counters, on_alert: Callable[[AlertRecord], None], *,
                    publish_every: float = PUBLISH_EVERY_S) -> None:
        """Run the native thread until cancelled, with the Python tasks around it: alert
        records to ``on_alert``, peer events and (every ``publish_every`` s) the native
        counters into ``counters``. Stops the thread and publishes once more on exit."""
        self.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.serve_alerts, on_alert)
                tg.start_soon(self.monitor.run, counters)
                while True:
                    await anyio.sleep(publish_every)
                    self.publish_counters(counters)
        finally:
            self.stop()
            self.publish_counters(counters)

    # -- regional fabric (gateway.fabric_node) ----------------------------------------------

    def attach_fabric(self, directory: _native.NativeDirectory, local_region: int,
                      pair: zmq.Socket[Any]) -> None:
        """Hand requests with accounts homed elsewhere to the control plane over ``pair``
        (native/gw_ingest.h, "regional fabric"). Before :meth:`start`; the caller keeps
        ``directory`` alive and closes ``pair`` after :meth:`close`."""
        _native.ingest_attach_fabric(self._native, directory, local_region, pair.underlying)
        self.fabric_directory = directory

    def fabric_counters(self) -> dict[str, int]:
        """The thread's hand-off counters (struct gw_ingest_fabric_stats)."""
        return _native.ingest_fabric_stats(self._native)

    # -- counters ---------------------------------------------------------------------------

    def stats(self, *, fresh: bool = False) -> dict[str, Any]:
        """The native counters (struct gw_ingest_stats) as a dict; buckets as a list.

        ``fresh``: wait (a millisecond or so) for a snapshot that counts every reply
        already sent; otherwise the last published one (at most ~1 ms old under load)."""
        return self._native.stats(FRESH_TIMEOUT_MS if fresh and self.running else 0)

    def counters(self, *, fresh: bool = False) -> dict[str, int]:
        """Flat counters for ``gateway status`` and Prometheus (label after the dot)."""
        return flatten_stats(self.stats(fresh=fresh))

    def publish_counters(self, counters: Counters, *, fresh: bool = False) -> None:
        """Bring ``counters`` up to date: counters grow by their delta, ``*_now`` gauges
        are set. Call from the one task that owns ``counters``."""
        for name, value in self.counters(fresh=fresh).items():
            if name.endswith("_now"):
                counters.set_gauge(name, value)
            else:
                delta = value - self._published.get(name, 0)
                if delta:
                    counters.inc(name, delta)
                self._published[name] = value


def percentile_ns(buckets: list[int], q: float) -> int:
    """Upper bound (ns) of the bucket holding quantile ``q`` of a native histogram."""
    total = sum(buckets)
    if total == 0:
        return 0
    rank = max(1, int(q * total + 0.999999))
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return _native.lat_bucket_upper_ns(i)
    return _native.lat_bucket_upper_ns(len(buckets) - 1)  # pragma: no cover


# native counter -> node counter name (the Python ingest path's names where it has one)
_COUNTER_NAMES: Final = {
    "messages": "ingest_messages",
    "score_requests": "score_requests",
    "decisions": "decisions",
    "pings": "ingest_pings",
    "busy_alerts": "ingest_busy.alerts",
    "busy_paused": "ingest_busy.paused",
    "busy_overload": "ingest_busy.overload",
    "unroutable": "ingest_unroutable",
    "send_refused": "ingest_send_hwm_refused",
    "alerts": "ingest_alert_records",
    "alert_msgs": "ingest_alert_messages",
    "alerts_unsent": "ingest_alert_records_unsent",
    "wakeups": "ingest_wakeups",
    "engine_errors": "ingest_engine_errors",
}
_GAUGE_NAMES: Final = {
    "alert_queue": "ingest_alert_queue_now",
    "alert_queue_max": "ingest_alert_queue_max_now",
    "last_burst": "ingest_last_burst_now",
    "max_burst": "ingest_max_burst_now",
    "running": "ingest_native_running_now",
    "paused": "ingest_native_paused_now",
}


def flatten_stats(s: dict[str, Any]) -> dict[str, int]:
    """Node counter names (as the Python ingest path counts them); gauges end in ``_now``;
    outcome, path and error code go after a dot (a Prometheus label)."""
    out: dict[str, int] = {}
    for k, name in _COUNTER_NAMES.items():
        out[name] = int(s[k])
    for k, name in _GAUGE_NAMES.items():
        out[name] = int(s[k])
    for i, o in enumerate(_OUTCOMES):
        out[f"decisions.{o.value}"] = int(s["outcome"][i])
    for i, p in enumerate(_PATHS):
        out[f"decisions_by_path.{p.value}"] = int(s["path"][i])
    for code in ErrorCode:
        if code < len(s["errors"]) and s["errors"][code]:
            out[f"ingest_errors.{code.name}"] = int(s["errors"][code])
    buckets: list[int] = s["lat_buckets"]
    out["ingest_service_p50_ns_now"] = percentile_ns(buckets, 0.5)
    out["ingest_service_p99_ns_now"] = percentile_ns(buckets, 0.99)
    out["ingest_service_max_ns_now"] = int(s["lat_max_ns"])
    return out


__all__ = [
    "AlertRecord",
    "IngestSettings",
    "NativeIngestEndpoint",
    "ensure_libzmq",
    "flatten_stats",
    "libzmq_path",
    "percentile_ns",
    "tx_summary_from_record",
]
