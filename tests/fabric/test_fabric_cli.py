"""The fabric on the command line: `gateway node --region --fabric --peer`, bad options,
`gateway trusted update/get` across two node processes, `gateway demo --regions`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import FabricSection
from gateway.fabric import build_directory
from gateway.ports import listen_port


@pytest.mark.parametrize(("argv", "key", "reason"), [
    (["--peer", "us"], "--peer", "is not REGION=ENDPOINT"),
    (["--region", "eu", "--fabric", "tcp://127.0.0.1:7999", "--peer", "eu=tcp://127.0.0.1:1"],
     "fabric.peers.eu", "not its own peer"),
    (["--region", "eu", "--peer", "us=tcp://127.0.0.1:1"], "fabric.bind", "required"),
    (["--region", "eu", "--fabric", "tcp://127.0.0.1:7999", "--peer", "US=tcp://x:1"],
     "option", "fabric.peers"),
])
def test_bad_fabric_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   argv: list[str], key: str, reason: str) -> None:
    assert main(["node", "--data-dir", str(tmp_path / "d"), *argv]) == 2
    err = capsys.readouterr().err
    assert key in err and reason in err
    assert not (tmp_path / "d").exists()


def _node(tmp: Path, region: str, bind: str, peer: str, peer_url: str,
          ) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "node", "--region", region, "--name", region,
         "--data-dir", str(tmp / region), "--ingest", "tcp://127.0.0.1:*", "--clients",
         "tcp://127.0.0.1:*", "--services", "tcp://127.0.0.1:*", "--fabric", bind,
         "--peer", f"{peer}={peer_url}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while "fabric" not in urls and time.monotonic() < deadline:
        parts = proc.stdout.readline().split()
        if not parts and proc.poll() is not None:
            break
        if len(parts) >= 2:
            urls[parts[0]] = parts[1]
    if "fabric" not in urls:
        proc.kill()
        raise AssertionError(f"node {region} did not start")
    return proc, urls


def _gateway(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_two_nodes_from_the_command_line(tmp_path: Path) -> None:
    eu_bind, us_bind = (f"tcp://127.0.0.1:{listen_port()}" for _ in range(2))
    eu, eu_urls = _node(tmp_path, "eu", eu_bind, "us", us_bind)
    try:
        us, us_urls = _node(tmp_path, "us", us_bind, "eu", eu_bind)
        try:
            deadline = time.monotonic() + 20
            while True:  # the default directory: a hash over the regions, the same on both
                status = json.loads(_gateway("status", "--json", "--services",
                                             eu_urls["services"]))
                if status["info"].get("fabric.peer.us") == "up":
                    break
                assert time.monotonic() < deadline, status["info"]
                time.sleep(0.1)
            d = build_directory(FabricSection(bind=eu_bind, peers={"us": us_bind}), "eu")
            us_account = next(a for a in range(1, 100) if d.home(a) == "us")
            eu_account = next(a for a in range(1, 100) if d.home(a) == "eu")
            out = _gateway("trusted", "update", f"{us_account}=4", f"{eu_account}=2",
                           "--services", eu_urls["services"])
            assert "1 applied here, 1 stored for their home regions" in out
            deadline = time.monotonic() + 10
            while True:
                out = _gateway("trusted", "get", str(us_account), str(eu_account),
                               "--services", us_urls["services"])
                if out.split("\n")[0] == f"{us_account} 4":
                    break
                assert time.monotonic() < deadline, out
                time.sleep(0.1)
            assert f"{eu_account} homed elsewhere" in out
        finally:
            us.terminate()
            us.communicate(timeout=20)
    finally:
        eu.terminate()
        eu.communicate(timeout=20)


def test_demo_with_three_regions(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--regions", "3", "--seconds", "1.5",
         "--rate", "1500"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "forwarded to their home region" in out.stdout
    assert "errors                 none" in out.stdout
    # officers at eu froze an account homed at us: us blocked it and executed the freeze
    freeze = next(x for x in out.stdout.splitlines() if "cross-region freeze   " in x)
    assert "approved at eu, account homed in us" in freeze and "block (@frozen)" in freeze
    assert "executed by region us" in out.stdout
    line = next(x for x in out.stdout.splitlines() if "payments decided" in x)
    forwarded = int(line.split("(")[1].split(" forwarded")[0].replace(",", ""))
    assert forwarded > 0
