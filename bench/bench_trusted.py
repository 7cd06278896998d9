"""How long the node's event loop stalls while trusted changes are laid over a large
trusted table: a services ``ping`` every millisecond, timed, while ``trusted_update``
messages of 4,096 changes each arrive one after another at a fabric node.

With ``--benchmark-disable`` (the default) this is a smoke run on 50,000 accounts; with
``--benchmark-enable`` it uses 1,000,000 accounts and 30 updates and prints the figures:

    pytest bench/bench_trusted.py --benchmark-enable -s
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fabric"))

from fabricutil import BASE, FAST, fabric_configs
from nodeutil import running_node

from gateway import wire
from gateway.codec import Endpoint
from gateway.transport import open_dealer


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else 0.0


async def measure(tmp: Path, accounts: int, updates: int) -> dict[str, Any]:
    table = tmp / "trusted.csv"
    with table.open("w") as f:
        f.writelines(f"{BASE['eu'] + i},{1 + i % 5}\n" for i in range(accounts))
    cfg = fabric_configs(tmp, ["eu", "us"], **FAST)["eu"]
    cfg = msgspec.structs.replace(cfg, node=msgspec.structs.replace(
        cfg.node, trusted=str(table), log_level="warning"))
    lat: list[float] = []
    async with running_node(cfg) as eu, \
            open_dealer(eu.urls[Endpoint.SERVICES]) as pings, \
            open_dealer(eu.urls[Endpoint.SERVICES]) as changes:
        done = anyio.Event()

        async def pinger() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                await pings.request(wire.Ping(1, pings.next_rid()), timeout=30)
                lat.append((time.perf_counter() - t0) * 1000)
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(pinger)
            t0 = time.perf_counter()
            for k in range(updates):
                entries = [wire.TrustedEntry(BASE["eu"] + (k * 4096 + j) * 7 % accounts, 9)
                           for j in range(4096)]
                reply = await changes.request(wire.TrustedUpdate(1, changes.next_rid(),
                                                                 entries), timeout=60)
                assert isinstance(reply, wire.TrustedUpdated), reply
            took = time.perf_counter() - t0
            done.set()
        last = await changes.request(wire.TrustedGet(1, changes.next_rid(), [
            BASE["eu"] + ((updates - 1) * 4096 + 4095) * 7 % accounts]))
    return {"accounts": accounts, "updates": updates, "update_s": round(took, 3),
            "pings": len(lat), "ping_p50_ms": round(_pct(lat, 0.5), 2),
            "ping_p99_ms": round(_pct(lat, 0.99), 2), "ping_max_ms": round(max(lat), 2),
            "last_level": last.levels[0]}


def test_trusted_updates_leave_the_loop_free(benchmark: Any, tmp_path: Path) -> None:
    full = not benchmark.disabled
    accounts, updates = (1_000_000, 30) if full else (50_000, 5)
    r = benchmark.pedantic(lambda: anyio.run(measure, tmp_path, accounts, updates,
                                             backend="asyncio",
                                             backend_options={"use_uvloop": True}),
                           rounds=1, iterations=1)
    if full:
        print(r)
    assert r["last_level"] == 9  # the update's answer came once it scored
    assert r["pings"] > 0
