"""Layer boundaries: the sans-IO core imports neither zmq nor anyio."""

from __future__ import annotations

import subprocess
import sys

CORE = ["gateway.wire", "gateway.codec", "gateway.counters", "gateway.errors",
        "gateway.config", "gateway.scoring", "gateway.alert_content", "gateway.fabric"]


def test_sans_io_core_imports_no_io_library() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = sorted(m for m in ('zmq', 'anyio', 'trio', 'asyncio', 'socket', 'uvloop')"
        " if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_only_the_boundary_imports_the_extension() -> None:
    from pathlib import Path

    import gateway

    root = Path(gateway.__file__).parent
    users = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if "_gateway_native" in p.read_text() and p.name != "_native.py"
    )
    assert users == []


def test_only_transport_waits_on_zmq_sockets() -> None:
    from pathlib import Path

    import gateway

    root = Path(gateway.__file__).parent
    import re

    # a socket's poll takes a timeout; subprocess.Popen.poll() takes nothing
    pattern = re.compile(r"wait_readable|\.poll\((?!\))|zmq\.Poller")
    waiting = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if pattern.search(p.read_text())
    )
    assert waiting == ["transport.py"]
