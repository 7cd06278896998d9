"""`gateway demo` runs end to end on embedded defaults and exits 0 with a summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_and_summarises(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--seconds", "2", "--rate", "5000",
         "--no-live"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "summary" in out.stdout
    assert "payments scored" in out.stdout
    assert "errors                 0" in out.stdout
    assert "alerts to officers" in out.stdout
    # the incident scene: escalation, a freeze approved by a second officer, its timing
    assert re.search(r"alert -> freeze\s+\d+\.\d ms", out.stdout), out.stdout
    assert "next payment block (@frozen)" in out.stdout
    assert "paged head-of-risk by sms: delivered" in out.stdout
    assert "paged head-of-risk by email: delivered" in out.stdout
    assert "compliance-officer approved request" in out.stdout
    assert not (tmp_path / "gateway-data").exists()  # the demo keeps its data in a temp dir
