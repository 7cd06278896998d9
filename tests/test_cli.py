"""The command line: every command and option explains itself; errors exit with a message."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import build_parser, main


def _parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_and_command_has_help() -> None:
    missing = []
    for prog, parser in _parsers(build_parser()):
        if not parser.description and prog != "gateway":
            missing.append(f"{prog}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{prog} {choice.dest}: no help")
            elif not action.help:
                missing.append(f"{prog} {action.dest}: no help")
    assert missing == []


@pytest.mark.parametrize("argv", [["--help"], ["node", "--help"], ["demo", "--help"],
                                  ["status", "--help"], ["rules", "load", "--help"],
                                  ["bench", "scoring", "--help"]])
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: gateway" in capsys.readouterr().out


def test_node_help_lists_every_config_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["node", "--help"])
    out = capsys.readouterr().out
    for key in ("data_dir", "rules", "trusted", "loop", "ingest", "clients", "services",
                "port", "min_score"):
        assert f"{key} =" in out


def test_bad_config_exits_2_with_file_key_reason(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[metrics]\nport = -1\n")
    assert main(["node", "--config", str(bad), "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "metrics.port" in err and ">= 0" in err
    assert not (tmp_path / "d").exists()


def test_status_without_node_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--services", "tcp://127.0.0.1:1", "--timeout", "0.3"]) == 1
    assert "is the node running?" in capsys.readouterr().err


def _start_node(tmp_path: Path, loop: str = "uvloop",
                ) -> tuple[subprocess.Popen[str], dict[str, str]]:
    cmd = [sys.executable, "-m", "gateway", "node", "--data-dir", str(tmp_path / "data"),
           "--ingest", "tcp://127.0.0.1:*", "--clients", "tcp://127.0.0.1:*",
           "--services", "tcp://127.0.0.1:*", "--loop", loop]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    endpoints: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(endpoints) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("ingest", "clients", "services"):
            endpoints[parts[0]] = parts[1]
    if len(endpoints) < 3:
        proc.kill()
        raise AssertionError(f"node did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, endpoints


@pytest.mark.parametrize(("loop", "sig"), [("uvloop", signal.SIGTERM), ("trio", signal.SIGINT),
                                           ("asyncio", signal.SIGTERM)])
def test_node_process_status_and_clean_stop(tmp_path: Path, loop: str,
                                            sig: signal.Signals) -> None:
    proc, endpoints = _start_node(tmp_path, loop)
    try:
        out = subprocess.run([sys.executable, "-m", "gateway", "status", "--json",
                              "--services", endpoints["services"]],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert '"node": "node-1"' in out.stdout
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "stopped" in stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
