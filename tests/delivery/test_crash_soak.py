"""SIGKILL the node at random points under load, 20 times, and check every officer stream:
lost = 0, duplicates delivered to the application = 0, gaps = 0, order kept, and the
journal still verifies. (``gateway soak delivery`` runs the same harness for longer.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.soak import run_crash_soak

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}),
                                                        id="uvloop")])
async def test_sigkill_under_load_loses_nothing(tmp_path: Path, anyio_backend: object) -> None:
    lines: list[str] = []
    report = await run_crash_soak(tmp_path, cycles=20, officers=3, devices=2, rate=200,
                                  seed=11, progress=lines.append)
    detail = report.as_dict()
    assert report.cycles == 20, detail
    assert all(code == -9 for code in report.node_exit_codes), detail
    assert report.accepted > 100, detail
    assert report.lost == 0, detail
    assert report.duplicates == 0, detail
    assert report.gaps == 0 and report.out_of_order == 0, detail
    assert report.key_conflicts == 0, detail
    assert report.journal_ok, detail
    # the kills really cut the node mid-stream: clients had to attach again
    assert report.reattaches >= 20, detail
