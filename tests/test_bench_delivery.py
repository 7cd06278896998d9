"""The delivery benchmark's bookkeeping, without a node (the smoke run is in bench/)."""

from __future__ import annotations

import random

import pytest

from gateway import wire
from gateway.bench_delivery import Submissions, percentile, run_delivery_bench


class _NoServices:
    """Enough of :class:`gateway.bench_delivery.Services` for message bookkeeping."""

    def __init__(self) -> None:
        self.rid = 0

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid


def test_percentile_is_nearest_rank() -> None:
    values = list(range(100, 0, -1))  # 1..100, unsorted
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.99) == 0.0


def test_submissions_pair_accepted_alerts_with_their_recipients() -> None:
    subs = Submissions(_NoServices())  # type: ignore[arg-type]
    rng = random.Random(1)
    first = subs.message("warmup", wire.Severity.LOW, ["a", "b"], rng)
    second = subs.message("measure", wire.Severity.CRITICAL, ["b"], rng)
    third = subs.message("measure", wire.Severity.HIGH, ["c"], rng)
    fourth = subs.message("measure", wire.Severity.LOW, ["d"], rng)
    assert (first.key, second.key) == ("warmup-1", "measure-2")
    assert second.details == {"phase": "measure"} and second.decided_unix_ns > 0
    v = wire.PROTOCOL_VERSION
    subs.on_reply(wire.AlertAccepted(v, second.rid, 12, False))
    subs.on_reply(wire.AlertAccepted(v, first.rid, 11, False))
    subs.on_reply(wire.Error(v, third.rid, 3, "INVALID", "no"))
    subs.on_reply(wire.Busy(v, fourth.rid, 20))
    assert subs.expected() == {("a", 11), ("b", 11), ("b", 12)}
    assert subs.expected("measure") == {("b", 12)}
    assert len(subs.accept_us) == 2 and len(subs.errors) == 1 and not subs.pending
    assert subs.busy == [("measure", ("d",))]


def test_unknown_parts_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown parts"):
        run_delivery_bench(parts=("alerts", "everything"))
