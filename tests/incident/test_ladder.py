"""The escalation ladder machine: steps fire at their deadlines, once each; conditions
are checked when a step comes due."""

from __future__ import annotations

from gateway.incident._ladder import Fire, Ladder, Skip
from gateway.incident._oncall import Step

OPENED = 1_000_000  # ms


def step(after_s: float, to: tuple[str, ...] = ("alice",), when: str = "unacknowledged",
         require_all: bool = False) -> Step:
    return Step(after_s, when, to, ("app",), "first", require_all)


def test_steps_fire_at_their_deadlines_in_order() -> None:
    steps = [step(0), step(60, ("bob",)), step(300, ("carol",))]
    ladder = Ladder(steps, OPENED)
    assert ladder.deadline_ms() == OPENED
    assert ladder.due(OPENED - 1, (), False) == []
    assert ladder.due(OPENED, (), False) == [Fire(0, steps[0])]
    assert ladder.deadline_ms() == OPENED + 60_000
    assert ladder.due(OPENED + 59_999, (), False) == []
    assert ladder.due(OPENED + 60_000, (), False) == [Fire(1, steps[1])]
    assert ladder.due(OPENED + 299_999, (), False) == []
    assert ladder.due(OPENED + 300_000, (), False) == [Fire(2, steps[2])]
    assert ladder.deadline_ms() is None
    assert ladder.fired == [0, 1, 2]
    assert ladder.recipients_fired() == {"alice", "bob", "carol"}


def test_each_step_is_returned_once() -> None:
    ladder = Ladder([step(0), step(10)], OPENED)
    late = OPENED + 3_600_000
    assert [type(x).__name__ for x in ladder.due(late, (), False)] == ["Fire", "Fire"]
    assert ladder.due(late, (), False) == []
    assert ladder.due(late + 1, {"alice"}, True) == []
    assert ladder.next_index == 2


def test_fractional_deadlines() -> None:
    ladder = Ladder([step(0.25)], OPENED)
    assert ladder.deadline_ms() == OPENED + 250
    assert ladder.due(OPENED + 249, (), False) == []
    assert len(ladder.due(OPENED + 250, (), False)) == 1


def test_an_acknowledged_incident_skips_unacknowledged_steps() -> None:
    ladder = Ladder([step(0), step(60, ("bob",)), step(120, ("carol",))], OPENED)
    ladder.due(OPENED, (), False)
    assert ladder.due(OPENED + 60_000, {"alice"}, False) == [Skip(1, "acknowledged")]
    # an acknowledgement by anyone counts, also by someone the ladder did not page
    ladder2 = Ladder([step(0), step(60, ("bob",))], OPENED)
    ladder2.due(OPENED, (), False)
    assert ladder2.due(OPENED + 60_000, {"dave"}, False) == [Skip(1, "acknowledged")]


def test_even_the_first_step_is_skipped_when_acknowledged_before_it() -> None:
    ladder = Ladder([step(0), step(60, ("bob",))], OPENED)
    assert ladder.due(OPENED, {"alice"}, False) == [Skip(0, "acknowledged")]
    assert ladder.fired == []
    # with nobody having acknowledged, a later step still fires
    assert ladder.due(OPENED + 60_000, (), False) == [Fire(1, ladder.steps[1])]


def test_require_all_needs_every_recipient_of_that_step() -> None:
    steps = [step(0, ("alice", "bob"), require_all=True), step(60, ("carol",)),
             step(120, ("dave",))]
    ladder = Ladder(steps, OPENED)
    assert ladder.due(OPENED, (), False) == [Fire(0, steps[0])]
    assert not ladder.acknowledged({"alice"})
    assert ladder.due(OPENED + 60_000, {"alice"}, False) == [Fire(1, steps[1])]
    # carol (step 2, not require_all) acknowledging does not stand in for bob
    assert not ladder.acknowledged({"alice", "carol"})
    assert ladder.acknowledged({"alice", "bob"})
    assert ladder.due(OPENED + 120_000, {"alice", "bob"}, False) == [Skip(2, "acknowledged")]


def test_require_all_only_counts_for_fired_steps() -> None:
    steps = [step(0, ("alice",)), step(60, ("bob", "carol"), require_all=True)]
    ladder = Ladder(steps, OPENED)
    ladder.due(OPENED, (), False)
    # the require_all step never fired: alice alone acknowledges the incident
    assert ladder.due(OPENED + 60_000, {"alice"}, False) == [Skip(1, "acknowledged")]


def test_no_acknowledgement_is_never_acknowledged() -> None:
    ladder = Ladder([step(0, (), require_all=True)], OPENED)
    assert not ladder.acknowledged(())
    ladder.due(OPENED, (), False)
    assert ladder.acknowledged({"anyone"})  # a step that paged nobody needs nobody


def test_unresolved_and_always_steps_fire_after_an_acknowledgement() -> None:
    steps = [step(0), step(60, ("lead",), when="unresolved"),
             step(120, ("audit",), when="always"), step(180, ("bob",))]
    ladder = Ladder(steps, OPENED)
    ladder.due(OPENED, (), False)
    acked = {"alice"}
    assert ladder.due(OPENED + 60_000, acked, False) == [Fire(1, steps[1])]
    assert ladder.due(OPENED + 120_000, acked, False) == [Fire(2, steps[2])]
    assert ladder.due(OPENED + 180_000, acked, False) == [Skip(3, "acknowledged")]


def test_resolved_skips_every_remaining_step_at_once() -> None:
    steps = [step(0), step(60, when="unresolved"), step(3600, when="always"), step(7200)]
    ladder = Ladder(steps, OPENED)
    ladder.due(OPENED, (), False)
    # resolved long before the later deadlines: all remaining steps come out now, skipped
    assert ladder.due(OPENED + 5_000, (), True) == [Skip(1, "resolved"), Skip(2, "resolved"),
                                                    Skip(3, "resolved")]
    assert ladder.deadline_ms() is None
    assert ladder.fired == [0]
    assert ladder.due(OPENED + 10_000_000, (), True) == []


def test_restored_progress_continues_where_it_stopped() -> None:
    steps = [step(0), step(60, ("bob",)), step(120, ("carol",), require_all=True)]
    ladder = Ladder(steps, OPENED, next_index=2, fired=[0, 1])  # as the desk reloads it
    assert ladder.recipients_fired() == {"alice", "bob"}
    assert ladder.due(OPENED + 120_000, (), False) == [Fire(2, steps[2])]


def test_an_empty_ladder_has_no_deadline() -> None:
    ladder = Ladder([], OPENED)
    assert ladder.deadline_ms() is None
    assert ladder.due(OPENED + 10**9, (), False) == []
