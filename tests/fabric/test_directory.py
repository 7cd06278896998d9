"""The account directory: every mode, the same answer on every node and in C, and a
ConfigError with file, key and reason for every bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import _native
from gateway.config import (
    Config,
    DirectoryRange,
    DirectorySection,
    FabricSection,
    NodeSection,
    load_config,
)
from gateway.errors import ConfigError
from gateway.fabric import build_directory, check_fabric_config, jump_hash, mix64

PEERS = {"eu": "tcp://127.0.0.1:7001", "us": "tcp://127.0.0.1:7002",
         "ap": "tcp://127.0.0.1:7003"}


def fabric(region: str, directory: DirectorySection | None = None) -> FabricSection:
    peers = {r: url for r, url in PEERS.items() if r != region}
    return FabricSection(bind=PEERS[region], peers=peers,
                         directory=directory or DirectorySection())


RANGES = DirectorySection(mode="ranges", default="ap", ranges=[
    DirectoryRange(first=1000, last=1999, region="us"),
    DirectoryRange(first=0, last=999, region="eu"),
    DirectoryRange(first=5000, last=2**64 - 1, region="us"),
])
TABLE = DirectorySection(mode="table", default="eu",
                         table=[(7, "us"), (8, "ap"), (2**64 - 1, "us")])


@pytest.mark.parametrize("section", [DirectorySection(), RANGES, TABLE],
                         ids=["hash", "ranges", "table"])
def test_same_answer_on_every_node_and_in_c(section: DirectorySection) -> None:
    dirs = [build_directory(fabric(r, section), r) for r in PEERS]
    assert len({d.fingerprint for d in dirs}) == 1
    accounts = [0, 1, 7, 8, 999, 1000, 1999, 2000, 4999, 5000, 2**63, 2**64 - 1,
                *range(10_000, 10_500)]
    homes = [[d.home(a) for a in accounts] for d in dirs]
    assert homes[0] == homes[1] == homes[2]
    for d in dirs:
        native = d.native().homes(accounts)
        assert [d.regions[i] if i >= 0 else None for i in native] == homes[0]


def test_modes_place_accounts_as_configured() -> None:
    d = build_directory(fabric("eu", RANGES), "eu")
    assert [d.home(a) for a in (0, 999, 1000, 1999, 2000, 4999, 5000, 2**64 - 1)] == [
        "eu", "eu", "us", "us", "ap", "ap", "us", "us"]
    t = build_directory(fabric("us", TABLE), "us")
    assert [t.home(a) for a in (7, 8, 9, 2**64 - 1)] == ["us", "ap", "eu", "us"]
    assert t.is_local(7) and not t.is_local(8)
    h = build_directory(fabric("ap"), "ap")
    assert h.regions == ("ap", "eu", "us")
    counts = {r: 0 for r in h.regions}
    for a in range(30_000):
        counts[h.home(a)] += 1  # type: ignore[index]
    assert all(8_000 < n < 12_000 for n in counts.values())


def test_no_default_means_no_home() -> None:
    section = DirectorySection(mode="ranges", ranges=[DirectoryRange(first=0, last=9,
                                                                     region="us")])
    d = build_directory(fabric("eu", section), "eu")
    assert d.home(10) is None and d.home_index(10) == -1
    assert d.native().home(10) == -1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(1, 64))
def test_jump_hash_matches_c(key: int, buckets: int) -> None:
    assert jump_hash(key, buckets) == _native.dir_jump(key, buckets)
    assert 0 <= jump_hash(mix64(key), buckets) < buckets


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_ranges_and_table_match_c(accounts: list[int]) -> None:
    for section in (RANGES, TABLE):
        d = build_directory(fabric("eu", section), "eu")
        assert d.native().homes(accounts) == [d.home_index(a) for a in accounts]


def _bad(tmp_path: Path, text: str) -> ConfigError:
    p = tmp_path / "node.toml"
    p.write_text('[node]\nregion = "eu"\n' + text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.path == str(p)
    return info.value


FABRIC = '[fabric]\nbind = "tcp://127.0.0.1:7001"\npeers = { us = "tcp://127.0.0.1:7002" }\n'


@pytest.mark.parametrize(("text", "key", "reason"), [
    ('[fabric]\npeers = { us = "tcp://127.0.0.1:7002" }\n', "fabric.bind", "required"),
    (FABRIC.replace("us =", "eu ="), "fabric.peers.eu", "not its own peer"),
    (FABRIC + '[fabric.directory]\nregions = ["eu", "us", "ap"]\n',
     "fabric.directory.regions[2]", "neither this node's region"),
    (FABRIC + '[fabric.directory]\nregions = ["eu"]\n', "fabric.directory.regions",
     "misses region 'us'"),
    (FABRIC + '[fabric.directory]\nregions = ["eu", "us", "eu"]\n',
     "fabric.directory.regions[2]", "listed twice"),
    (FABRIC + '[fabric.directory]\nmode = "ranges"\nranges = [{first = 9, last = 1, '
     'region = "eu"}]\n', "fabric.directory.ranges[0]", "above last"),
    (FABRIC + '[fabric.directory]\nmode = "ranges"\nranges = [{first = 0, last = 10, '
     'region = "eu"}, {first = 10, last = 20, region = "us"}]\n',
     "fabric.directory.ranges[1]", "overlaps ranges[0]"),
    (FABRIC + '[fabric.directory]\nmode = "ranges"\nranges = [{first = 0, last = 10, '
     'region = "xx"}]\n', "fabric.directory.ranges[0].region", "neither"),
    (FABRIC + '[fabric.directory]\nmode = "table"\ntable = [[1, "eu"], [1, "us"]]\n',
     "fabric.directory.table[1]", "listed twice"),
    (FABRIC + '[fabric.directory]\nranges = [{first = 0, last = 10, region = "eu"}]\n',
     "fabric.directory.ranges", 'only used with mode = "ranges"'),
    (FABRIC + '[fabric.directory]\nmode = "table"\ndefault = "zz"\n',
     "fabric.directory.default", "neither"),
    (FABRIC + '[fabric.directory]\nmode = "modulo"\n', "fabric.directory.mode",
     "Invalid enum value"),
    (FABRIC + '[fabric.directory]\nmode = "table"\ntable = [[-1, "eu"]]\n',
     "fabric.directory.table[0][0]", ">= 0"),
    (FABRIC + "heartbeat_ms = 1000\ndead_after_ms = 1500\n", "fabric.dead_after_ms",
     "twice heartbeat_ms"),
    (FABRIC + '[fabric.directory]\nmode = "table"\ntable_file = "/nonexistent/t.csv"\n',
     "fabric.directory.table_file", "No such file"),
])
def test_bad_fabric_config_names_file_key_reason(tmp_path: Path, text: str, key: str,
                                                 reason: str) -> None:
    err = _bad(tmp_path, text)
    assert err.key == key
    assert reason in err.reason


def test_table_file(tmp_path: Path) -> None:
    table = tmp_path / "homes.csv"
    table.write_text("account,region\n5,us\n6,eu\n")
    p = tmp_path / "node.toml"
    p.write_text(f'[node]\nregion = "eu"\n{FABRIC}[fabric.directory]\nmode = "table"\n'
                 f'default = "eu"\ntable_file = "{table}"\n')
    cfg = load_config(p)
    d = build_directory(cfg.fabric, "eu")
    assert d.home(5) == "us" and d.home(6) == "eu" and d.home(7) == "eu"
    table.write_text("5,us\nbad line\n")
    err = _bad(tmp_path, f'{FABRIC}[fabric.directory]\nmode = "table"\ntable_file = '
               f'"{table}"\n')
    assert err.key == "fabric.directory.table_file" and "line 2" in err.reason


def test_no_fabric_is_valid() -> None:
    check_fabric_config(Config(node=NodeSection(region="eu")), "<test>")
