"""Delivery benchmark: alerts to many officer devices, a critical alert behind a bulk
backlog, the journal's group commit, and a node's start on a large journal.

``run_delivery_bench()`` returns one dict (see its docstring); each part runs on a fresh
data directory. The node is ``python -m gateway node --config FILE`` in a subprocess.
Officer devices run in worker subprocesses (``python -m gateway.bench_delivery officers``:
one event loop, many :func:`~gateway.client.open_officer` devices), so the node, the
clients and the submitter in this process each have their own CPU time. A worker reads a
JSON spec line on stdin, prints ``READY <n>`` once every device is attached, reads a second
line (how many receipts to wait for, at most how long, where to write its results), writes
its results there as JSON and prints ``DONE``.

Latency is the wall clock when the application takes the alert (``client.next()``) minus
the alert's ``decided_unix_ns``, which the submitter reads from the wall clock just before
it sends ``alert_submit``: one host, one clock.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Final

import anyio
import msgspec
import zmq

from gateway import wire
from gateway.codec import ReplyCodec
from gateway.transport import BlockingDealer

Progress = Callable[[str], None]
Pick = Callable[[random.Random], tuple[wire.Severity, list[str]]]

GOALS: Final[dict[str, tuple[str, float]]] = {
    "alert_p99_ms": ("max", 5.0),
    "critical_behind_backlog_p99_ms": ("max", 5.0),
    "journal_events_per_s": ("min", 50_000.0),
    "recovery_s": ("max", 5.0),
}
PARTS: Final = ("alerts", "critical", "journal", "recovery")
SEVERITY_MIX: Final = ((wire.Severity.CRITICAL, 0.05), (wire.Severity.HIGH, 0.20),
                       (wire.Severity.MEDIUM, 0.50), (wire.Severity.LOW, 0.25))
START_TIMEOUT_S: Final = 120.0
SETTLE_S: Final = 30.0  # longest wait for the last acceptances and receipts


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (0 < q <= 1); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def _ms(us_values: Sequence[float], q: float) -> float:
    return round(percentile(us_values, q) / 1000, 3)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0.0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _sched_ns(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for one) of the main thread of ``pid``: a
    starved event loop shows as a large wait; (0, 0) where unknown."""
    try:
        on_cpu, waiting, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
        return int(on_cpu), int(waiting)
    except (OSError, ValueError):
        return 0, 0


# -- child processes -------------------------------------------------------------------------


class Child:
    """A subprocess whose stdout lines are read by a thread (so waits have deadlines) and
    whose stderr goes to ``log``."""

    def __init__(self, argv: Sequence[str], log: Path, *, stdin: bytes | None = None) -> None:
        self.log = log
        self._log = open(log, "wb")  # closed in close()
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._log)
        if stdin is not None:
            self.write(stdin)
        self._q: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, pipe: IO[bytes]) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                self._q.put(raw.decode(errors="replace").rstrip("\n"))
        self._q.put(None)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def line(self, deadline: float, what: str) -> str:
        """The next stdout line before ``deadline`` (monotonic); else the child is killed
        and ``RuntimeError`` carries the end of its log."""
        try:
            line = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            self.kill()
            try:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            except OSError:
                tail = ""
            raise RuntimeError(f"{what} (pid {self.pid}) failed:\n{tail}")
        return line

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._log.close()


class NodeProcess(Child):
    """``gateway node`` on ``data_dir``, on free loopback ports."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir.with_suffix(".toml")
        config.write_text(
            f'[node]\nname = "bench"\nregion = "bench"\ndata_dir = "{data_dir}"\n'
            'log_level = "warning"\n\n[endpoints]\ningest = "tcp://127.0.0.1:*"\n'
            'clients = "tcp://127.0.0.1:*"\nservices = "tcp://127.0.0.1:*"\n',
            encoding="utf-8")
        super().__init__([sys.executable, "-m", "gateway", "node", "--config", str(config)],
                         data_dir.with_suffix(".log"))
        self.urls: dict[str, str] = {}
        self.server_key = ""
        self.journal_seq = -1  # as announced
        self.ready_s = 0.0  # start -> the ready line

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Read the announcement up to its ``curve`` line (the last one)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(deadline, "gateway node")
            words = line.split()
            if " ready, pid " in line:
                self.ready_s = time.perf_counter() - self.t_start
            elif words[:2] == ["journal", "event"]:
                self.journal_seq = int(words[2].rstrip(","))
            elif len(words) >= 2 and words[0] in ("ingest", "clients", "services"):
                self.urls[words[0]] = words[1]
            elif words[:1] == ["curve"]:
                self.server_key = words[1]
                return


class Workers:
    """Officer-device worker subprocesses, one JSON spec each (see the module docstring)."""

    def __init__(self, specs: Sequence[dict[str, Any]], log_dir: Path) -> None:
        argv = [sys.executable, "-m", "gateway.bench_delivery", "officers"]
        self.children = [Child(argv, log_dir / f"worker-{i}.log",
                               stdin=json.dumps(spec).encode() + b"\n")
                         for i, spec in enumerate(specs)]

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.children]

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        for c in self.children:
            if not c.line(deadline, "officer worker").startswith("READY "):
                self.kill()
                raise RuntimeError("officer worker: unexpected output")

    def finish(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send each worker its last command; its results (a JSON file next to its log)."""
        paths = [c.log.with_suffix(".json") for c in self.children]
        for c, cmd, path in zip(self.children, commands, paths, strict=True):
            c.write(json.dumps({**cmd, "result": str(path)}).encode() + b"\n")
        deadline = time.monotonic() + max(float(c.get("timeout", 0)) for c in commands) + 30
        for c in self.children:
            if c.line(deadline, "officer worker") != "DONE":
                self.kill()
                raise RuntimeError("officer worker: unexpected output")
            c.stop(10.0)
        return [json.loads(path.read_text()) for path in paths]

    def kill(self) -> None:
        for c in self.children:
            c.kill()


class Services:
    """A blocking DEALER on the node's services endpoint; requests may be pipelined."""

    def __init__(self, url: str) -> None:
        self._dealer = BlockingDealer(url)
        self._encode = wire.encoder().encode
        self._codec = ReplyCodec()
        self.rid = 0

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid

    def send(self, msg: msgspec.Struct) -> None:
        self._dealer.send(self._encode(msg))

    def recv(self, timeout_s: float) -> Any | None:
        """The next reply, or None if none arrives within ``timeout_s``."""
        body = self._dealer.recv(timeout_s)
        return None if body is None else self._codec.decode(body)

    def request(self, msg: Any, timeout_s: float = 10.0) -> Any:
        self.send(msg)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            reply = self.recv(left)
            if reply is not None and reply.rid == msg.rid:
                return reply
        raise TimeoutError(f"no reply to {type(msg).__name__} within {timeout_s:g} s")

    def pipeline(self, msgs: Iterable[msgspec.Struct], on_reply: Callable[[Any], None], *,
                 window: int = 2000, timeout_s: float = 60.0) -> None:
        """Send ``msgs`` with at most ``window`` unanswered; every reply to ``on_reply``."""
        in_flight = 0
        deadline = time.monotonic() + timeout_s
        for msg in msgs:
            self.send(msg)
            in_flight += 1
            while in_flight >= window or (in_flight and self._dealer.ready()):
                reply = self.recv(deadline - time.monotonic())
                if reply is None:
                    raise TimeoutError(f"{in_flight} services requests unanswered")
                in_flight -= 1
                on_reply(reply)
        while in_flight:
            reply = self.recv(deadline - time.monotonic())
            if reply is None:
                raise TimeoutError(f"{in_flight} services requests unanswered")
            in_flight -= 1
            on_reply(reply)

    def ping(self, timeout_s: float = 30.0) -> None:
        self.request(wire.Ping(wire.PROTOCOL_VERSION, self.next_rid()), timeout_s)

    def status(self) -> tuple[dict[str, str], dict[str, int]]:
        reply = self.request(wire.StatusRequest(wire.PROTOCOL_VERSION, self.next_rid()))
        return dict(reply.info), dict(reply.counters)

    def register_keys(self, officers: Sequence[str]) -> list[tuple[str, str, str]]:
        """A fresh CURVE key per officer, registered (journaled), pipelined:
        ``(officer, public, secret)`` each."""
        keys = []
        for o in officers:
            public, secret = zmq.curve_keypair()
            keys.append((o, public.decode(), secret.decode()))
        refused: list[Any] = []
        self.pipeline((wire.KeyRegister(wire.PROTOCOL_VERSION, self.next_rid(), o, pub,
                                        "bench") for o, pub, _ in keys),
                      lambda r: None if isinstance(r, wire.Keys) else refused.append(r),
                      window=500)
        if refused:
            raise RuntimeError(f"key registration refused: {refused[0]!r}")
        return keys

    def close(self) -> None:
        self._dealer.close()


# -- worker side (subprocess) ----------------------------------------------------------------


async def _officers(spec: dict[str, Any]) -> dict[str, Any]:
    """Attach every officer of ``spec``, take their streams as an application does, note
    each alert's latency, and report once enough have arrived."""
    from gateway.auth import OfficerKey
    from gateway.client import OfficerClient, open_officer

    keys = [OfficerKey(o, pub, sec, spec["server"], spec["url"])
            for o, pub, sec in spec["officers"]]
    latencies: dict[str, list[int]] = {}  # severity -> us, measured phase only
    ids: dict[str, list[int]] = {k.officer: [] for k in keys}  # officer -> alert ids taken
    counts: dict[str, int] = {}  # severity -> first receipts
    taken = [0] * wire.LANES  # items taken per lane, duplicates included
    critical_marks: list[tuple[int, int]] = []  # (latency us, bulk items taken before it)
    dups = [0]
    clients: list[OfficerClient] = []
    all_attached, enough = anyio.Event(), anyio.Event()
    target: list[tuple[int, str | None]] = []
    limiter = anyio.CapacityLimiter(50)  # attaches in progress

    def check() -> None:
        if target:
            n, sev = target[0]
            if (counts.get(sev, 0) if sev else sum(counts.values())) >= n:
                enough.set()

    async def device(key: OfficerKey) -> None:
        seen: set[int] = set()
        order = ids[key.officer]
        await limiter.acquire()
        held = True
        try:
            async with open_officer(key, device="bench", timeout=30.0) as client:
                limiter.release()
                held = False
                clients.append(client)
                if len(clients) == len(keys):
                    all_attached.set()
                while True:
                    item = await client.next()
                    now = time.time_ns()
                    if not isinstance(item, wire.AlertPush):
                        continue
                    alert = item.alert
                    taken[int(item.lane)] += 1
                    if alert.alert_id in seen:
                        dups[0] += 1
                        continue
                    seen.add(alert.alert_id)
                    order.append(alert.alert_id)
                    us = (now - alert.decided_unix_ns) // 1000
                    sev = alert.severity.value
                    if alert.details.get("phase") == "measure":
                        latencies.setdefault(sev, []).append(us)
                    if alert.severity is wire.Severity.CRITICAL:
                        critical_marks.append((us, taken[int(wire.Lane.BULK)]))
                    counts[sev] = counts.get(sev, 0) + 1
                    check()
        finally:
            if held:
                limiter.release()

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(device, key)
        with anyio.fail_after(START_TIMEOUT_S):
            await all_attached.wait()
        t_ready = time.perf_counter()
        print(f"READY {len(keys)}", flush=True)
        cmd = json.loads(await anyio.to_thread.run_sync(sys.stdin.readline) or "{}")
        target.append((int(cmd.get("expect", 0)), cmd.get("severity")))
        check()
        with anyio.move_on_after(float(cmd.get("timeout", SETTLE_S))):
            await enough.wait()
        result = {
            "latencies_us": latencies, "ids": ids, "counts": counts,
            "taken_by_lane": taken, "critical_marks": critical_marks, "duplicates": dups[0],
            "sdk_redeliveries_dropped": sum(c.duplicates for c in clients),
            "reattaches": sum(c.attaches for c in clients) - len(clients),
            "elapsed_s": time.perf_counter() - t_ready,
        }
        tg.cancel_scope.cancel()
    if cmd.get("result"):
        path = Path(cmd["result"])
        path.with_suffix(".tmp").write_text(json.dumps(result))
        path.with_suffix(".tmp").replace(path)
    print("DONE", flush=True)
    return result


# -- submitting alerts -----------------------------------------------------------------------


class Submissions:
    """What was submitted and accepted: alert ids, phases, recipients, accept times."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.pending: dict[int, tuple[str, tuple[str, ...], int]] = {}  # rid -> (phase,
        #   recipients, perf counter at send)
        self.accepted: dict[int, tuple[str, tuple[str, ...]]] = {}  # alert id -> same
        self.accept_us: list[float] = []
        self.errors: list[Any] = []
        self.busy: list[tuple[str, tuple[str, ...]]] = []  # (phase, recipients) refused
        self.n = 0

    def message(self, phase: str, severity: wire.Severity, recipients: Sequence[str],
                rng: random.Random) -> wire.AlertSubmit:
        rid = self.services.next_rid()
        self.n += 1
        self.pending[rid] = (phase, tuple(recipients), time.perf_counter_ns())
        return wire.AlertSubmit(wire.PROTOCOL_VERSION, rid, f"{phase}-{self.n}", severity,
                                rng.getrandbits(63), f"bench {phase} alert {self.n}",
                                {"phase": phase}, list(recipients), time.time_ns())

    def on_reply(self, reply: Any) -> None:
        sent = self.pending.pop(reply.rid, None)
        if isinstance(reply, wire.AlertAccepted) and sent is not None:
            phase, recipients, t = sent
            self.accepted[reply.alert_id] = (phase, recipients)
            self.accept_us.append((time.perf_counter_ns() - t) / 1000)
        elif isinstance(reply, wire.Busy) and sent is not None:
            self.busy.append((sent[0], sent[1]))  # refused, nothing raised: not expected
        else:
            self.errors.append(reply)

    def drain(self, timeout_s: float) -> None:
        """Take replies until none is pending or ``timeout_s`` has passed (0: take only
        those already here)."""
        deadline = time.monotonic() + timeout_s
        while (reply := self.services.recv(max(0.0, deadline - time.monotonic()))) is not None:
            self.on_reply(reply)
            if timeout_s and not self.pending:
                return

    def paced(self, n: int, rate: float, phase: str, pick: Pick, rng: random.Random) -> float:
        """Submit ``n`` alerts at ``rate`` per second, then wait for the last acceptance;
        returns the rate achieved. The submitter sleeps in whole milliseconds and then sends
        what is due; each ``decided_unix_ns`` is the real send time."""
        t0 = time.perf_counter()
        i = 0
        while i < n:
            due = min(n, int((time.perf_counter() - t0) * rate) + 1)
            while i < due:
                severity, recipients = pick(rng)
                self.services.send(self.message(phase, severity, recipients, rng))
                i += 1
            self.drain(0)
            left = t0 + i / rate - time.perf_counter()
            if i < n and left > 0:
                reply = self.services.recv(max(left, 0.001))
                if reply is not None:
                    self.on_reply(reply)
        took = time.perf_counter() - t0
        if self.pending:
            self.drain(SETTLE_S)
        return n / took if took > 0 else 0.0

    def expected(self, phase: str | None = None) -> set[tuple[str, int]]:
        """(officer, alert id) of every accepted alert (of ``phase``)."""
        return {(o, a) for a, (ph, rs) in self.accepted.items() for o in rs
                if phase is None or ph == phase}


def _severity(rng: random.Random) -> wire.Severity:
    x = rng.random()
    for sev, share in SEVERITY_MIX:
        if x < share:
            return sev
        x -= share
    return wire.Severity.LOW


def _received(results: Sequence[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(o, a) for r in results for o, alert_ids in r["ids"].items() for a in alert_ids}


# -- the parts -------------------------------------------------------------------------------


def bench_alerts(root: Path, *, clients: int, workers: int, alerts_per_s: float,
                 recipients: int, seconds: float, warmup_s: float, seed: int,
                 say: Progress) -> dict[str, Any]:
    """``clients`` officer devices over ``workers`` processes; paced submitted alerts."""
    node = NodeProcess(root / "alerts")
    services: Services | None = None
    pool: Workers | None = None
    try:
        node.wait_ready()
        services = svc = Services(node.urls["services"])
        svc.ping()
        startup_empty_s = time.perf_counter() - node.t_start
        officers = [f"officer-{i:05d}" for i in range(clients)]
        say(f"alerts: registering {clients} officer keys")
        keys = svc.register_keys(officers)
        workers = max(1, min(workers, clients))
        slices = [keys[i::workers] for i in range(workers)]
        say(f"alerts: attaching {clients} devices in {workers} worker processes")
        t0 = time.perf_counter()
        pool = Workers([{"url": node.urls["clients"], "server": node.server_key,
                         "officers": s} for s in slices], root)
        pool.wait_ready()
        attach_s = time.perf_counter() - t0
        rng = random.Random(seed)
        k = max(1, min(recipients, clients))

        def pick(r: random.Random) -> tuple[wire.Severity, list[str]]:
            return _severity(r), r.sample(officers, k)

        subs = Submissions(svc)
        n_warm = int(alerts_per_s * warmup_s)
        if n_warm:
            say(f"alerts: warm-up, {n_warm} alerts")
            subs.paced(n_warm, alerts_per_s, "warmup", pick, rng)
        subs.accept_us.clear()
        n = max(1, int(alerts_per_s * seconds))
        say(f"alerts: {n} alerts at {alerts_per_s:g}/s to {k} of {clients} officers each")
        pids = [node.pid, *pool.pids]
        cpu0, sched0 = [_cpu_s(p) for p in pids], _sched_ns(node.pid)
        t0, own0 = time.perf_counter(), time.process_time()
        rate = subs.paced(n, alerts_per_s, "measure", pick, rng)
        took = time.perf_counter() - t0
        cpu = [round(100 * (_cpu_s(p) - c) / took) for p, c in zip(pids, cpu0, strict=True)]
        own = round(100 * (time.process_time() - own0) / took)
        loop = [round((b - a) / took / 1e7) for a, b in zip(sched0, _sched_ns(node.pid),
                                                              strict=True)]
        expected = subs.expected()
        owner = {o: i for i, s in enumerate(slices) for o, _, _ in s}
        per_worker = [0] * workers
        for o, _ in expected:
            per_worker[owner[o]] += 1
        say("alerts: waiting for the last receipts")
        results = pool.finish([{"expect": c, "timeout": SETTLE_S} for c in per_worker])
        pool = None
        info, counters = svc.status()
    finally:
        if pool is not None:
            pool.kill()
        if services is not None:
            services.close()
        node.stop()
    received = _received(results)
    lat: dict[str, list[int]] = {}
    for r in results:
        for sev, values in r["latencies_us"].items():
            lat.setdefault(sev, []).extend(values)
    every = [x for values in lat.values() for x in values]
    return {
        "alert_p50_ms": _ms(every, 0.5),
        "alert_p99_ms": _ms(every, 0.99),
        "alert_p999_ms": _ms(every, 0.999),
        "alert_max_ms": _ms(every, 1.0),
        "alert_p99_ms_by_severity": {s: _ms(v, 0.99) for s, v in sorted(lat.items())},
        "alerts_submitted": n + n_warm,
        "alerts_measured": n,
        "alerts_submitted_per_s": round(rate),
        "alerts_accepted": len(subs.accepted),
        "submit_errors": len(subs.errors),
        "submit_busy": len(subs.busy),
        "submit_accept_p50_ms": _ms(subs.accept_us, 0.5),
        "submit_accept_p99_ms": _ms(subs.accept_us, 0.99),
        "receipts": len(received & expected),
        "receipts_expected": len(expected),
        "lost": len(expected - received),
        "unexpected": len(received - expected),
        "duplicates": sum(r["duplicates"] for r in results),
        "sdk_redeliveries_dropped": sum(r["sdk_redeliveries_dropped"] for r in results),
        "reattaches": sum(r["reattaches"] for r in results),
        "clients": clients,
        "client_workers": workers,
        "attach_s": round(attach_s, 3),
        "startup_empty_s": round(startup_empty_s, 3),
        "cpu_percent": {"node": cpu[0], "client_workers": cpu[1:], "submitter": own},
        "node_loop_thread_percent": {"on_cpu": loop[0], "waiting_for_cpu": loop[1]},
        "node_cpu_us_per_alert": round(cpu[0] / 100 * took / n * 1e6),
        "node_alert_commit_p99_ms": float(info.get("alert_commit_p99_us", 0)) / 1000,
        "node_journal_commits": int(info.get("journal_commits", 0)),
        "node_delivery_redelivered": counters.get("delivery_redelivered", 0),
    }


def bench_critical(root: Path, *, backlog: int, criticals: int, spacing_s: float, seed: int,
                   say: Progress) -> dict[str, Any]:
    """One device with ``backlog`` queued bulk alerts; criticals one at a time while it
    works through the backlog."""
    node = NodeProcess(root / "critical")
    services: Services | None = None
    pool: Workers | None = None
    officer = "duty-officer"
    try:
        node.wait_ready()
        services = svc = Services(node.urls["services"])
        svc.ping()
        keys = svc.register_keys([officer])
        rng = random.Random(seed)
        subs = Submissions(svc)
        say(f"critical: queueing {backlog} bulk alerts")
        t0 = time.perf_counter()
        todo = backlog
        for _ in range(100):  # `busy` refusals are submitted again, as a real system would
            svc.pipeline((subs.message("backlog", wire.Severity.LOW, [officer], rng)
                          for _ in range(todo)), subs.on_reply,
                         timeout_s=max(60.0, todo / 1000))
            todo, subs.busy = len(subs.busy), []
            if not todo:
                break
            time.sleep(0.05)
        backlog_s = time.perf_counter() - t0
        say("critical: attaching the device; it starts on the backlog")
        pool = Workers([{"url": node.urls["clients"], "server": node.server_key,
                         "officers": keys}], root)
        pool.wait_ready()
        say(f"critical: {criticals} critical alerts, one every {spacing_s * 1000:g} ms")
        subs.accept_us.clear()
        subs.paced(criticals, 1 / spacing_s, "measure",
                   lambda r: (wire.Severity.CRITICAL, [officer]), rng)
        results = pool.finish([{"expect": criticals, "severity": "critical",
                                "timeout": SETTLE_S}])
        pool = None
        _, counters = svc.status()
    finally:
        if pool is not None:
            pool.kill()
        if services is not None:
            services.close()
        node.stop()
    r = results[0]
    crit = r["latencies_us"].get("critical", [])
    expected, received = subs.expected("measure"), _received(results)
    bulk_at_criticals = [m[1] for m in r["critical_marks"]]
    bulk_taken = r["taken_by_lane"][int(wire.Lane.BULK)]
    return {
        "critical_behind_backlog_p50_ms": _ms(crit, 0.5),
        "critical_behind_backlog_p99_ms": _ms(crit, 0.99),
        "critical_behind_backlog_max_ms": _ms(crit, 1.0),
        "criticals": criticals,
        "criticals_received": len(expected & received),
        "critical_lost": len(expected - received),
        "critical_duplicates": r["duplicates"],
        "critical_submit_errors": len(subs.errors),
        "critical_submit_accept_p99_ms": _ms(subs.accept_us, 0.99),
        "backlog": backlog,
        "backlog_submit_per_s": round(backlog / backlog_s) if backlog_s else 0,
        "backlog_pending_at_last_critical": backlog - max(bulk_at_criticals, default=backlog),
        "backlog_taken_per_s": round(bulk_taken / r["elapsed_s"]) if r["elapsed_s"] else 0,
        "node_delivery_pages_read": counters.get("delivery_pages_read", 0),
    }


async def _journal_run(path: Path, events: int, chunk: int) -> dict[str, Any]:
    from gateway.journal import Journal

    journal = Journal(path)
    st = journal.stats
    commits: list[int] = []  # ns per group commit (transaction + fsync)

    def on_durable() -> None:
        if st.commits > len(commits):
            commits.append(st.last_commit_ns)

    bodies = [random.Random(i).randbytes(200) for i in range(64)]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(journal.run)
            t0 = time.perf_counter()
            for start in range(0, events, chunk):
                for i in range(start, min(events, start + chunk)):
                    journal.append("bench", bodies[i & 63], (), on_durable)
                await anyio.lowlevel.checkpoint()
            await journal.wait_durable(journal.next_seq - 1)
            secs = time.perf_counter() - t0
            tg.cancel_scope.cancel()
    finally:
        journal.close()
    return {
        "journal_events_per_s": round(events / secs),
        "journal_events": events,
        "journal_commits": st.commits,
        "journal_mean_group": round(st.events / st.commits, 1) if st.commits else 0,
        "journal_commit_p50_ms": round(percentile(commits, 0.5) / 1e6, 3),
        "journal_commit_p99_ms": round(percentile(commits, 0.99) / 1e6, 3),
    }


def bench_journal(root: Path, *, events: int, say: Progress) -> dict[str, Any]:
    """A producer task appends ``events`` ~200-byte events (256, then it yields) while
    ``run()`` commits; the rate counts until the last one is durable."""
    say(f"journal: {events} events of 200 bytes, group commit")
    (root / "journal").mkdir()
    result: dict[str, Any] = anyio.run(_journal_run, root / "journal" / "node.db", events,
                                       256, backend_options={"use_uvloop": True})
    return result


async def _build_journal(data_dir: Path, events: int, seed: int) -> dict[str, Any]:
    """Fill a node's data dir through the node's own alert desk, so every derived table
    agrees with the journal: decision alerts to two of four officers, each officer's device
    attached and confirming its alerts one by one (``received``), as in a live node."""
    from gateway.alert_content import decision_alert, tx_summary_from_transaction
    from gateway.config import Config, NodeSection
    from gateway.node import Node
    from gateway.scoring import TransactionGenerator

    node = Node(Config(node=NodeSection(name="bench", region="bench",
                                        data_dir=str(data_dir))),
                out=io.StringIO(), handle_signals=False)
    engine, desk, journal = node.engine, node.desk, node.journal
    officers = {f"officer-{c}": zmq.curve_keypair()[0].decode() for c in "abcd"}
    pairs = [[a, b] for a in officers for b in officers if a < b]
    gen = TransactionGenerator(seed, accounts=50_000)
    descriptions = engine.rule_descriptions(engine.info.version)
    pool: list[wire.Alert] = []  # the content of risky decisions, as the node makes it
    for _ in range(200):
        txs = gen.batch(1024)
        for tx, d in zip(txs, engine.score_batch(txs), strict=True):
            if d.outcome is not wire.Outcome.ALLOW:
                pool.append(decision_alert(
                    alert_id=0, raised_unix_ns=0, decided_unix_ns=0, source="bench",
                    tx=tx_summary_from_transaction(tx), decision=d,
                    profile=engine.profile(tx.account, tx.ts_ms), descriptions=descriptions))
        if len(pool) >= 1024:
            break
    if not pool:
        raise RuntimeError("the generated payments raised no alert")
    rng = random.Random(seed)
    replace = msgspec.structs.replace
    v = wire.PROTOCOL_VERSION
    cursors = {o: [0] * wire.LANES for o in officers}
    alerts = 0
    t0 = time.perf_counter()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(journal.run)
            for o, public in officers.items():
                desk.register_key(o, public, "bench")
                desk.on_client(o.encode(), public, wire.Hello(v, 1, "phone"))
            while journal.next_seq <= events:
                for _ in range(min(512, (events - journal.next_seq) // 3 + 1)):
                    content = pool[alerts % len(pool)]
                    alerts += 1

                    def build(alert_id: int, raised: int, a: wire.Alert = content) -> wire.Alert:
                        return replace(a, alert_id=alert_id, raised_unix_ns=raised,
                                       decided_unix_ns=raised)

                    desk.raise_alert(build, recipients=pairs[rng.randrange(len(pairs))])
                for o, public in officers.items():  # confirm what is committed, one by one
                    heads, mine = desk.heads(o), cursors[o]
                    for lane in range(wire.LANES):
                        while mine[lane] < heads[lane] and journal.next_seq <= events:
                            mine[lane] += 1
                            desk.on_client(o.encode(), public, wire.Received(v, 0, list(mine)))
                if journal.pending > 16_384:  # bounded memory: wait for the older half
                    await journal.wait_durable(journal.next_seq - 8192)
                else:
                    await anyio.lowlevel.checkpoint()
            await journal.wait_durable(journal.next_seq - 1)
            tg.cancel_scope.cancel()
        took = time.perf_counter() - t0
        seq = journal.durable_seq
        kinds = dict(node.store.db.execute("SELECT kind, count(*) FROM journal GROUP BY kind")
                     .fetchall())
    finally:
        journal.close()
        node.store.close()
    return {"events_per_s": round(seq / took), "journal_seq": seq, "kinds": kinds}


def bench_recovery(root: Path, *, events: int, seed: int, say: Progress) -> dict[str, Any]:
    """Build a data dir of ``events`` journal events, then time ``gateway node`` from
    start to an answered ping on it."""
    data = root / "recovery"
    say(f"recovery: building a journal of {events} events (alerts, confirmations)")
    built: dict[str, Any] = anyio.run(_build_journal, data, events, seed,
                                      backend_options={"use_uvloop": True})
    size = sum(p.stat().st_size for p in data.glob("node.db*"))
    say(f"recovery: {size / 2**20:.0f} MiB; starting the node on it")
    node = NodeProcess(data)
    services: Services | None = None
    try:
        node.wait_ready()
        services = Services(node.urls["services"])
        services.ping()
        recovery_s = time.perf_counter() - node.t_start
    finally:
        if services is not None:
            services.close()
        node.stop()
    return {
        "recovery_s": round(recovery_s, 3),
        "recovery_ready_line_s": round(node.ready_s, 3),
        "recovery_events": built["journal_seq"],
        "recovery_journal_seq_at_start": node.journal_seq,
        "journal_mib": round(size / 2**20, 1),
        "recovery_event_kinds": built["kinds"],
        "recovery_build_events_per_s": built["events_per_s"],
    }


# -- the whole run ---------------------------------------------------------------------------


def run_delivery_bench(*, clients: int = 1000, workers: int = 2, alerts_per_s: float = 2000.0,
                       recipients: int = 3, seconds: float = 10.0, warmup_s: float = 1.0,
                       backlog: int = 100_000, criticals: int = 200,
                       critical_spacing_s: float = 0.02, journal_events: int = 200_000,
                       recovery_events: int = 1_000_000, seed: int = 0,
                       parts: Sequence[str] = PARTS, quick: bool = False,
                       workdir: str | Path | None = None,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Measure alert delivery, priority under a backlog, the journal and start-up; one dict.

    ``alert_p50_ms`` / ``alert_p99_ms``: submission (the decision) -> the officer
    application taking the alert; ``clients`` devices in ``workers`` processes,
    ``alerts_per_s`` paced for ``seconds`` after ``warmup_s``, each to ``recipients`` random
    officers; ``lost`` and ``duplicates`` (seen by the application) must be 0.
    ``critical_behind_backlog_p99_ms``: ``criticals`` critical alerts, one every
    ``critical_spacing_s``, to a device working through ``backlog`` queued bulk alerts.
    ``journal_events_per_s``: ~200-byte events fsynced by group commit (in this process).
    ``recovery_s``: ``gateway node`` start to an answered ping on a data dir of
    ``recovery_events`` journal events. ``quick`` shrinks every size (a smoke run);
    ``parts`` picks parts of :data:`PARTS`; ``workdir`` holds the data directories (default:
    the system's temporary directory; it must be a real disk for the fsync figures).
    """
    say = progress or (lambda _msg: None)
    if quick:
        clients, alerts_per_s = min(clients, 20), min(alerts_per_s, 200.0)
        seconds, warmup_s = min(seconds, 1.0), min(warmup_s, 0.2)
        backlog, criticals = min(backlog, 500), min(criticals, 10)
        journal_events, recovery_events = min(journal_events, 2000), min(recovery_events, 3000)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    result: dict[str, Any] = {}
    took: dict[str, float] = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-delivery-", dir=workdir) as tmp:
        root = Path(tmp)
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "alerts": lambda: bench_alerts(
                root, clients=clients, workers=workers, alerts_per_s=alerts_per_s,
                recipients=recipients, seconds=seconds, warmup_s=warmup_s, seed=seed, say=say),
            "critical": lambda: bench_critical(
                root, backlog=backlog, criticals=criticals, spacing_s=critical_spacing_s,
                seed=seed, say=say),
            "journal": lambda: bench_journal(root, events=journal_events, say=say),
            "recovery": lambda: bench_recovery(root, events=recovery_events, seed=seed,
                                               say=say),
        }
        for part in PARTS:
            if part in parts:
                t0 = time.perf_counter()
                result.update(runs[part]())
                took[part] = round(time.perf_counter() - t0, 1)
    notes = ["node, officer devices and submitter in separate processes on one host; "
             "latency = wall clock at the application taking the alert - decided_unix_ns"]
    if result.get("backlog_pending_at_last_critical", 1) <= 0:
        notes.append("the backlog ran out before the last critical alert: raise `backlog`")
    if quick:
        notes.append("quick run: small sizes, figures not comparable")
    goals: dict[str, dict[str, Any]] = {}
    for key, (kind, bound) in GOALS.items():
        if key in result:
            value = float(result[key])
            goals[key] = {kind: bound, "met": value <= bound if kind == "max" else value >= bound}
    result["goals"] = goals
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "platform": platform.platform(),
                         "loadavg_before": [round(x, 2) for x in load]}
    result["notes"] = notes
    result["part_seconds"] = took
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["officers"]:
        anyio.run(_officers, json.loads(sys.stdin.readline()),
                  backend_options={"use_uvloop": True})
        sys.exit(0)
    args = sys.argv[1:]
    print(json.dumps(run_delivery_bench(
        quick="--quick" in args, parts=tuple(a for a in args if a in PARTS) or PARTS,
        progress=lambda m: print(f"bench: {m}", file=sys.stderr, flush=True)), indent=2))
