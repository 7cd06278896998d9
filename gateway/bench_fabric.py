"""Fabric benchmark: the latency a forward adds to a transaction's round trip.

``run_fabric_bench()`` starts two regional nodes (``eu`` and ``us``) as subprocesses of
``gateway node`` on loopback, with native ingest and a ranges directory (accounts below
2**63 homed at ``eu``, the others at ``us``), and drives the
``eu`` node's ingest endpoint with the native load generator, paced, one transaction per
request: transactions of accounts homed at ``eu`` (*direct*), then the same transactions
for accounts homed at ``us`` (*forwarded*: eu hands them to its control plane, which
forwards them to us and returns us's decision). Runs alternate direct, forwarded, direct,
forwarded; each kind's latency histograms are summed. ``forward_added_p99_ms`` is the
forwarded p99 minus the direct p99 of the same run.

Then cross-region alerts: ``eu`` relays its alerts to ``us`` (``fabric.relay_alerts``); one
officer device is attached to ``us`` and one to ``eu`` (CURVE, the ``open_officer`` SDK, in
this process), and ``alert_submit`` requests are sent to ``eu``, paced, bounded in count and
time. ``cross_region_alert_p99_ms`` is the time from sending ``alert_submit`` to ``eu``
(before ``eu`` journals it) to the ``us`` officer's application taking the relayed alert:
eu's journal commit, the relay over the fabric, us's journal commit and the push.
``local_alert_p99_ms`` is the same submission to the ``eu`` officer, for comparison.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec

from gateway import _native, wire
from gateway.auth import OfficerKey, load_or_create_server_keys, new_keypair
from gateway.client import open_officer
from gateway.errors import GatewayError
from gateway.ingest import ensure_libzmq, percentile_ns
from gateway.nodeproc import NodeProcess
from gateway.ports import listen_port
from gateway.runtime import run
from gateway.scoring import TransactionGenerator
from gateway.transport import open_dealer

US_BIT: Final = 1 << 63  # accounts with the top bit set are homed at us
DAY_MS: Final = 86_400_000

_CONFIG = """\
[node]
name = "bench-{region}"
region = "{region}"
data_dir = "{data}"
log_level = "warning"

[endpoints]
ingest = "tcp://127.0.0.1:*"
clients = "tcp://127.0.0.1:*"
services = "tcp://127.0.0.1:*"

[fabric]
bind = "{bind}"
peers = {{ {peer} = "{peer_url}" }}
peer_keys = {{ {peer} = "{peer_key}" }}
relay_alerts = [{relay}]

[fabric.directory]
mode = "ranges"
ranges = [{{ first = 0, last = {eu_last}, region = "eu" }}]
default = "us"
"""



class _Node(NodeProcess):
    """A regional ``gateway node`` for the bench, started; one peer."""

    def __init__(self, workdir: Path, region: str, bind: str, peer: str, peer_url: str,
                 *, relay: bool = False, timeout: float = 60.0) -> None:
        cfg = workdir / f"{region}.toml"
        # peers authenticated with CURVE: each node's key pair is made before either starts
        peer_key = load_or_create_server_keys(workdir / f"data-{peer}").public
        cfg.write_text(_CONFIG.format(region=region, data=workdir / f"data-{region}",
                                      bind=bind, peer=peer, peer_url=peer_url,
                                      peer_key=peer_key, eu_last=US_BIT - 1,
                                      relay=f'"{peer}"' if relay else ""))
        super().__init__(cfg, log=workdir / f"{region}.log", name=f"bench {region}",
                         timeout=timeout)
        self.start()

    def officer(self, name: str) -> OfficerKey:
        """A new officer key registered at this node."""
        public, secret = new_keypair()
        reply = self.request(wire.KeyRegister(1, 2, name, public, "bench"))
        if not isinstance(reply, wire.Keys):
            raise GatewayError(f"bench: key_register refused: {reply!r}")
        return OfficerKey(name, public, secret, self.status().info["clients_server_key"],
                          self.urls["clients"])

    def wait_link(self, peer: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.status().info.get(f"fabric.peer.{peer}") != "up":
            if time.monotonic() > deadline:
                raise GatewayError(f"bench: the link {self.name} -> {peer} did not come up")
            time.sleep(0.05)


def _pools(n: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """The same ``n`` transactions for accounts homed at eu, and at us."""
    enc = msgspec.msgpack.Encoder()
    txs = TransactionGenerator(seed, accounts=100_000).batch(n)
    direct = [enc.encode(msgspec.structs.replace(t, account=t.account & (US_BIT - 1)))
              for t in txs]
    forwarded = [enc.encode(msgspec.structs.replace(t, account=t.account | US_BIT))
                 for t in txs]
    return direct, forwarded


async def _alert_phase(services: str, remote: OfficerKey, local: OfficerKey, count: int,
                       rate: float, max_s: float) -> dict[str, Any]:
    """Submit ``count`` alerts to ``services`` at ``rate`` (for at most ``max_s``); the
    latency of each to the remote and the local officer device (ns lists)."""
    sent: dict[str, int] = {}
    got: dict[str, list[int]] = {"remote": [], "local": []}
    accepted = 0

    async def collect(client: Any, kind: str, done: anyio.Event) -> None:
        while len(got[kind]) < count:
            item = await client.next()
            now = time.perf_counter_ns()
            if isinstance(item, wire.AlertPush):
                t0 = sent.get(item.alert.details.get("n", ""))
                if t0 is not None:
                    got[kind].append(now - t0)
        done.set()

    with anyio.move_on_after(max_s):
        async with open_officer(remote, device="bench") as far, \
                open_officer(local, device="bench") as near, \
                open_dealer(services) as svc, anyio.create_task_group() as tg:
            done = {k: anyio.Event() for k in got}
            tg.start_soon(collect, far, "remote", done["remote"])
            tg.start_soon(collect, near, "local", done["local"])

            async def submit(n: int) -> None:
                nonlocal accepted
                key = f"bench-{n}"
                sent[str(n)] = time.perf_counter_ns()
                reply = await svc.request(wire.AlertSubmit(
                    1, svc.next_rid(), key, wire.Severity.HIGH, n, f"bench alert {n}",
                    {"n": str(n)}), timeout=10)
                accepted += isinstance(reply, wire.AlertAccepted)

            t0 = time.monotonic()
            async with anyio.create_task_group() as subs:
                for n in range(count):
                    subs.start_soon(submit, n)
                    await anyio.sleep(max(0.0, t0 + (n + 1) / rate - time.monotonic()))
            await done["remote"].wait()
            await done["local"].wait()
            tg.cancel_scope.cancel()
    return {"sent": len(sent), "accepted": accepted, **got}


def _pct_ms(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 3)


def run_fabric_bench(*, quick: bool = False, rate: float = 2000.0, seconds: float = 3.0,
                     rounds: int = 2, seed: int = 0, alerts: int = 2000,
                     alert_rate: float = 200.0,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure forwarded against direct round trips, and cross-region alerts; one dict of
    results (module doc)."""
    if quick:
        rate, seconds, rounds = 500.0, 0.5, 1
        alerts = 100
    say = progress or (lambda _: None)
    ensure_libzmq()
    direct_pool, forwarded_pool = _pools(8192, seed)
    requests = int(rate * seconds)
    hist: dict[str, list[int]] = {}
    totals: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-fabric-") as tmp:
        work = Path(tmp)
        eu_bind, us_bind = (f"tcp://127.0.0.1:{listen_port()}" for _ in range(2))
        say("starting two regional nodes")
        us = _Node(work, "us", us_bind, "eu", eu_bind)
        try:
            eu = _Node(work, "eu", eu_bind, "us", us_bind)
            try:
                eu.wait_link("us")
                url = eu.urls["ingest"]
                day = 0
                for pool in (direct_pool, forwarded_pool):
                    _native.run_loadgen(url, pool, batch=1, requests=min(2000, requests),
                                        connections=1, window=64, ts_offset_ms=day * DAY_MS)
                    day += 1  # warm-up: connections, pages, the Python paths
                for r in range(rounds):
                    for kind, pool in (("direct", direct_pool), ("forwarded", forwarded_pool)):
                        say(f"round {r + 1}/{rounds}: {kind}, {requests:,} requests at "
                            f"{rate:,.0f}/s")
                        res = _native.run_loadgen(
                            url, pool, batch=1, requests=requests, connections=2,
                            window=256, rate=rate, warmup=int(rate * 0.1),
                            cycle_advance_ms=DAY_MS, ts_offset_ms=day * DAY_MS)
                        day += 2
                        buckets = hist.setdefault(kind, [0] * len(res["lat_buckets"]))
                        for i, v in enumerate(res["lat_buckets"]):
                            buckets[i] += v
                        t = totals.setdefault(kind, {})
                        for key in ("sent", "replies", "scored", "errors", "busy", "missing",
                                    "other"):
                            t[key] = t.get(key, 0) + int(res.get(key, 0))
                        t["elapsed_ns"] = t.get("elapsed_ns", 0) + int(res["elapsed_ns"])
                eu_counters = eu.status().counters
                us_counters = us.status().counters
            finally:
                eu.stop()
        finally:
            us.stop()
        # a second pair for the alerts, eu relaying to us: the decision alerts of the
        # load above are not relayed into the forwarding figures
        say(f"cross-region alerts: {alerts:,} at {alert_rate:,.0f}/s, submitted at eu, to "
            "an officer at us and one at eu")
        work = Path(tmp) / "alerts"
        work.mkdir()
        eu_bind, us_bind = (f"tcp://127.0.0.1:{listen_port()}" for _ in range(2))
        us = _Node(work, "us", us_bind, "eu", eu_bind)
        try:
            eu = _Node(work, "eu", eu_bind, "us", us_bind, relay=True)
            try:
                eu.wait_link("us")
                res = run(_alert_phase, eu.urls["services"], us.officer("far"),
                          eu.officer("near"), alerts, alert_rate, alerts / alert_rate + 20.0)
                relayed_in = us.status().counters.get("fabric_relay_in.eu", 0)
            finally:
                eu.stop()
        finally:
            us.stop()

    def p(kind: str, q: float) -> float:
        return percentile_ns(hist[kind], q) / 1e6

    fwd_rate = totals["forwarded"]["replies"] / (totals["forwarded"]["elapsed_ns"] / 1e9)
    return {
        "forward_added_p99_ms": round(p("forwarded", 0.99) - p("direct", 0.99), 4),
        "forward_added_p50_ms": round(p("forwarded", 0.5) - p("direct", 0.5), 4),
        "direct_p50_ms": p("direct", 0.5),
        "direct_p99_ms": p("direct", 0.99),
        "forwarded_p50_ms": p("forwarded", 0.5),
        "forwarded_p99_ms": p("forwarded", 0.99),
        "forwarded_p999_ms": p("forwarded", 0.999),
        "paced_req_per_s": rate,
        "forwarded_req_per_s": round(fwd_rate),
        "requests_per_kind": requests * rounds,
        "errors": sum(t["errors"] + t["missing"] + t["other"] for t in totals.values()),
        "busy": sum(t["busy"] for t in totals.values()),
        "home_peer_txs": us_counters.get("fabric_peer_txs", 0),
        "origin_forwarded_txs": eu_counters.get("fabric_forwarded_txs", 0),
        "cross_region_alert_p50_ms": _pct_ms(res["remote"], 0.5),
        "cross_region_alert_p99_ms": _pct_ms(res["remote"], 0.99),
        "cross_region_alerts": len(res["remote"]),
        "local_alert_p50_ms": _pct_ms(res["local"], 0.5),
        "local_alert_p99_ms": _pct_ms(res["local"], 0.99),
        "alerts_submitted": res["sent"],
        "alerts_accepted": res["accepted"],
        "alerts_relayed_in": relayed_in,
    }


if __name__ == "__main__":
    print(json.dumps(run_fabric_bench(progress=lambda m: print(m, file=sys.stderr)),
                     indent=2))
