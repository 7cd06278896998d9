"""The on-call file, sans-IO: shifts, who is on call, routing, frozen ladders, and a
validation error for every kind of mistake that names the key."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.incident._oncall import (
    ONCALL_REFERENCE,
    AlertFacts,
    OnCall,
    Shift,
    Step,
    load_oncall,
    parse_oncall,
    parse_shift,
)


def at(day: int, hh: int, mm: int = 0) -> dt.datetime:
    """A UTC time in the week of Monday 2024-01-01 (``day`` 0 = Monday)."""
    return dt.datetime(2024, 1, 1 + day, hh, mm, tzinfo=dt.UTC)


MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


# -- shifts --------------------------------------------------------------------------------


def test_parse_shift_day_ranges_and_lists() -> None:
    assert parse_shift("mon-fri 08:00-20:00") == Shift(frozenset(range(5)), 480, 1200)
    assert parse_shift("sat,sun 10:00-14:30").days == {SAT, SUN}
    assert parse_shift("fri-mon 09:00-10:00").days == {FRI, SAT, SUN, MON}  # wraps
    assert parse_shift("mon,wed-thu 09:00-10:00").days == {MON, WED, THU}
    assert parse_shift("Mon-Fri 08:00-20:00").days == set(range(5))  # case does not matter
    assert parse_shift("09:00-17:00").days == set(range(7))  # no days: every day
    assert parse_shift("always") == Shift(frozenset(range(7)), 0, 24 * 60)


def test_day_shift_covers_its_days_and_hours_only() -> None:
    s = parse_shift("mon-fri 08:00-20:00")
    assert s.covers(at(MON, 8))
    assert s.covers(at(FRI, 19, 59))
    assert not s.covers(at(FRI, 20))  # the end is exclusive
    assert not s.covers(at(TUE, 7, 59))
    assert not s.covers(at(SAT, 12))


def test_overnight_shift_belongs_to_the_day_it_starts() -> None:
    s = parse_shift("fri 22:00-06:00")
    assert s.start_min > s.end_min
    assert s.covers(at(FRI, 22))
    assert s.covers(at(FRI, 23, 59))
    assert s.covers(at(SAT, 0))
    assert s.covers(at(SAT, 5, 59))
    assert not s.covers(at(SAT, 6))
    assert not s.covers(at(SAT, 22))  # Saturday night is not in the shift
    assert not s.covers(at(FRI, 5))  # Friday early morning is Thursday's night
    assert not s.covers(at(FRI, 21, 59))


def test_overnight_shift_on_sunday_runs_into_monday() -> None:
    s = parse_shift("sun 23:00-01:00")
    assert s.covers(at(SUN, 23, 30))
    assert s.covers(at(MON + 7, 0, 30))  # the next Monday
    assert not s.covers(at(MON, 23, 30))


def test_shift_ending_at_midnight() -> None:
    assert parse_shift("20:00-24:00").covers(at(TUE, 23, 59))
    late = parse_shift("22:00-00:00")
    assert late.covers(at(TUE, 23)) and not late.covers(at(WED, 0))


@pytest.mark.parametrize("text", ["", "9-5", "08:00", "08:00-08:00", "xyz 08:00-10:00",
                                  "mon-xyz 08:00-10:00", "25:00-26:00", "08:61-09:00",
                                  "monday 08:00-10:00", "8:00-10:00"])
def test_bad_shifts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="shift"):
        parse_shift(text)


def test_hour_24_only_as_midnight() -> None:
    with pytest.raises(ValueError):
        parse_shift("24:30-01:00")


# -- who is on call, routing, ladders ---------------------------------------------------------


def oncall(**extra: Any) -> OnCall:
    data: dict[str, Any] = {
        "officers": [
            {"id": "eu-day", "roles": ["risk"], "region": "eu",
             "shifts": ["mon-fri 08:00-20:00"]},
            {"id": "eu-night", "roles": ["risk"], "region": "eu",
             "shifts": ["mon-fri 20:00-08:00"]},
            {"id": "us-day", "roles": ["risk"], "region": "us",
             "shifts": ["mon-fri 13:00-23:00"]},
            {"id": "anywhere", "roles": ["aml"]},  # always, every region
            {"id": "weekend", "roles": ["compliance"], "region": "eu",
             "shifts": ["sat,sun 10:00-18:00"]},
            {"id": "lead", "roles": ["risk", "compliance"], "region": "eu",
             "shifts": ["mon-fri 09:00-17:00"]},
        ],
        "routes": [
            {"severity": ["critical"], "family": ["card"], "roles": ["risk", "aml"],
             "ladder": "card"},
            {"severity": ["critical", "high"], "region": ["eu"], "roles": ["risk"]},
            {"kind": ["submitted"], "roles": ["compliance"]},
            {"roles": ["aml"]},
        ],
        "ladders": {
            "card": [{"after_s": 0}, {"after_s": 60, "to": ["role:compliance", "lead"]}],
            "critical": [{"after_s": 0, "to": ["role:risk"]}],
        },
    }
    data.update(extra)
    return parse_oncall(data, "test.toml")


def facts(severity: str = "critical", region: str = "eu", kind: str = "decision",
          family: str = "velocity") -> AlertFacts:
    return AlertFacts(severity, region, kind, family, 1001)


def test_on_call_prefers_officers_on_shift_in_the_region() -> None:
    oc = oncall()
    assert oc.on_call({"risk"}, "eu", at(TUE, 10)) == ["eu-day", "lead"]
    assert oc.on_call({"risk"}, "eu", at(TUE, 22)) == ["eu-night"]
    assert oc.on_call({"aml"}, "eu", at(SUN, 3)) == ["anywhere"]  # no region, no shifts


def test_on_call_falls_back_to_on_shift_anywhere() -> None:
    oc = oncall()
    # 10:00 Tuesday: us-day (us) is off shift; on shift elsewhere: eu-day and lead
    assert oc.on_call({"risk"}, "us", at(TUE, 10)) == ["eu-day", "lead"]
    # 23:30 Tuesday in "ap": no ap officer; on shift anywhere: eu-night
    assert oc.on_call({"risk"}, "ap", at(TUE, 23, 30)) == ["eu-night"]


def test_on_call_falls_back_to_anyone_with_the_role() -> None:
    oc = oncall()
    # Wednesday 03:00 for compliance: weekend is off, lead is off: everyone with the role
    assert oc.on_call({"compliance"}, "eu", at(WED, 3)) == ["lead", "weekend"]
    assert oc.on_call({"legal"}, "eu", at(WED, 3)) == []  # nobody holds the role


def test_route_takes_the_first_match() -> None:
    oc = oncall()
    r = oc.route(facts(family="card"))
    assert r is not None and r.ladder == "card"
    r = oc.route(facts(family="velocity"))
    assert r is not None and r.roles == ["risk"] and r.region == ["eu"]
    r = oc.route(facts(severity="high", region="us", kind="submitted"))
    assert r is not None and r.roles == ["compliance"]
    r = oc.route(facts(severity="low", region="us"))
    assert r is not None and r.roles == ["aml"]
    assert oncall(routes=[{"severity": ["low"], "roles": ["aml"]}]).route(facts()) is None


def test_ladder_for_uses_the_route_then_the_severity() -> None:
    oc = oncall()
    assert oc.ladder_for(oc.route(facts(family="card")), "critical") == "card"
    assert oc.ladder_for(oc.route(facts()), "critical") == "critical"
    assert oc.ladder_for(oc.route(facts(severity="high")), "high") == ""
    assert oc.ladder_for(None, "critical") == "critical"


def test_freeze_ladder_resolves_role_targets_now() -> None:
    oc = oncall()
    steps = oc.freeze_ladder("card", frozenset({"risk", "aml"}), "eu", at(TUE, 10))
    assert steps == [
        # no `to`: the route's roles, on call now, in role order, without repeats
        Step(0, "unacknowledged", ("anywhere", "eu-day", "lead"), ("app",), "first", False),
        # role:compliance on call (lead), then lead again by name: listed once
        Step(60, "unacknowledged", ("lead",), ("app",), "first", False),
    ]
    night = oc.freeze_ladder("card", frozenset({"risk"}), "eu", at(TUE, 22))
    assert night[0].to == ("eu-night",)
    assert night[1].to == ("lead", "weekend")  # nobody on shift: anyone with the role
    assert oc.freeze_ladder("nope", frozenset({"risk"}), "eu", at(TUE, 10)) == []


def test_opens_incident_at_or_above_min_severity() -> None:
    oc = oncall(incidents={"min_severity": "high"})
    assert oc.opens_incident("critical") and oc.opens_incident("high")
    assert not oc.opens_incident("medium")


def test_the_reference_file_is_valid() -> None:
    oc = parse_oncall(tomllib.loads(ONCALL_REFERENCE), "reference")
    assert set(oc.channels) == {"sms", "email"} and "critical" in oc.ladders


# -- validation: every mistake names its key ---------------------------------------------------


def refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_oncall(data, "bad.toml")
    assert info.value.path == "bad.toml"
    assert str(info.value).startswith(f"bad.toml: {info.value.key}: ")
    return info.value


def test_bad_role_names_the_key() -> None:
    err = refused({"officers": [{"id": "a", "roles": ["boss"]}]})
    assert err.key == "officers[0].roles[0]" and "boss" in err.reason
    err = refused({"routes": [{"roles": ["risk", "chief"]}]})
    assert err.key == "routes[0].roles[1]"
    err = refused({"officers": [{"id": "a", "roles": ["risk"]}],
                   "ladders": {"x": [{"to": ["role:boss"]}]}})
    assert err.key == "ladders.x[0].to" and "role:boss" in err.reason


def test_officer_mistakes_name_the_key() -> None:
    err = refused({"officers": [{"id": "a", "roles": ["risk"]}, {"id": "a", "roles": ["aml"]}]})
    assert (err.key, err.reason) == ("officers[1].id", "'a' is listed twice")
    err = refused({"officers": [{"id": "a", "roles": []}]})
    assert err.key == "officers[0].roles"
    err = refused({"officers": [{"id": "a", "roles": ["risk"], "shifts": ["9-5"]}]})
    assert err.key == "officers[0].shifts" and "9-5" in err.reason
    err = refused({"officers": [{"id": "a b", "roles": ["risk"]}]})
    assert err.key == "officers[0].id"
    err = refused({"officers": [{"id": "a", "roles": ["risk"], "pager": "1"}]})
    assert (err.key, err.reason) == ("officers[0].pager", "unknown key")


def test_channel_mistakes_name_the_key() -> None:
    err = refused({"ladders": {"x": [{"channels": ["pager"]}]}})
    assert err.key == "ladders.x[0].channels" and "'pager'" in err.reason
    err = refused({"ladders": {"x": [{"channels": []}]}})
    assert err.key == "ladders.x[0].channels"
    err = refused({"channels": {"sms": {"kind": "webhook", "url": "https://sms.example"}}})
    assert err.key == "channels.sms.secret" and "secret" in err.reason
    err = refused({"channels": {"sms": {"kind": "webhook", "url": "ftp://x", "secret": "s"}}})
    assert err.key == "channels.sms.url"
    err = refused({"channels": {"app": {"kind": "smtp"}}})
    assert err.key == "channels.app"


def test_a_webhook_with_a_secret_file_is_enough() -> None:
    oc = parse_oncall({"channels": {"sms": {"kind": "webhook", "url": "https://sms.example",
                                            "secret_file": "/etc/sms.secret"}}})
    assert oc.channels["sms"].secret_file == "/etc/sms.secret"


def test_ladder_and_route_mistakes_name_the_key() -> None:
    err = refused({"routes": [{"roles": ["risk"], "ladder": "nope"}]})
    assert (err.key, err.reason) == ("routes[0].ladder", "no ladder 'nope'")
    err = refused({"routes": [{"roles": []}]})
    assert err.key == "routes[0].roles"
    err = refused({"ladders": {"x": [{"after_s": 60}, {"after_s": 30}]}})
    assert (err.key, err.reason) == ("ladders.x[1].after_s", "steps are in time order")
    err = refused({"ladders": {"x": [{"to": ["zed"]}]}})
    assert err.key == "ladders.x[0].to" and "zed" in err.reason
    err = refused({"routes": [{"roles": ["risk"], "severity": ["urgent"]}]})
    assert err.key == "routes[0].severity[0]"
    err = refused({"pagers": {}})
    assert (err.key, err.reason) == ("pagers", "unknown key")


def test_a_range_error_in_a_ladder_names_the_ladder() -> None:
    err = refused({"ladders": {"critical": [{"after_s": -1}]}})
    assert err.key == "ladders.critical[0].after_s"


def test_load_oncall_reports_file_and_syntax_errors(tmp_path: Path) -> None:
    bad = tmp_path / "oncall.toml"
    bad.write_text('[[officers]]\nid = "alice"\nroles = ["risk"\n')
    with pytest.raises(ConfigError) as info:
        load_oncall(bad)
    assert info.value.path == str(bad) and info.value.key == "<syntax>"
    with pytest.raises(ConfigError) as info:
        load_oncall(tmp_path / "missing.toml")
    assert info.value.key == "<file>"
    bad.write_text('[[officers]]\nid = "alice"\nroles = ["boss"]\n')
    with pytest.raises(ConfigError) as info:
        load_oncall(bad)
    assert str(info.value).startswith(f"{bad}: officers[0].roles[0]: ")


def test_load_oncall_reads_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "oncall.toml"
    good.write_text(ONCALL_REFERENCE)
    oc = load_oncall(good)
    assert oc.source == str(good) and list(oc.officers) == ["alice"]
    assert oc.roles_of("alice") == {"risk"} and oc.roles_of("nobody") == frozenset()
