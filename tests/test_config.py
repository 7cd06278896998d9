"""Config files: defaults, overrides, and bad files reported with file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import CONFIG_REFERENCE, Config, load_config
from gateway.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(text)
    return p


def test_defaults_without_file() -> None:
    cfg = load_config(None)
    assert cfg.node.data_dir == "./gateway-data"
    assert cfg.endpoints.ingest == "tcp://127.0.0.1:7710"
    assert cfg.node.loop == "uvloop"


def test_reference_is_a_valid_config_equal_to_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, CONFIG_REFERENCE)) == Config()


def test_values_are_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[node]\nname = "eu-1"\n[metrics]\nport = 9710\n'))
    assert cfg.node.name == "eu-1" and cfg.metrics.port == 9710


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[node]\nnmae = 'x'\n", "node.nmae", "unknown key"),
        ("[metrics]\nport = 'nine'\n", "metrics.port", "Expected `int`, got `str`"),
        ("[metrics]\nport = 70000\n", "metrics.port", "<= 65535"),
        ("[node]\nloop = 'gevent'\n", "node.loop", "Invalid enum value 'gevent'"),
        ("[endpoints]\ningest = 'localhost:1'\n", "endpoints.ingest", "matching regex"),
        ("[nodes]\n", "nodes", "unknown key"),
        ("[node\n", "<syntax>", ""),
    ],
)
def test_bad_file_names_file_key_and_reason(tmp_path: Path, text: str, key: str,
                                            reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.key == "<file>"
