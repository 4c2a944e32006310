"""The coverage and calibration tests measure their seeded replicates in worker processes
(`tests.support.processes`): what they measure must be what one process measures, in order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support.calibration import run_cell
from tests.support.coverage import Run, measure_runs
from tests.support.processes import PROCESSES_ENV, map_in_processes, processes


def test_runs_measured_in_several_processes_are_those_measured_in_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same measurements, same truth shares, same order (3 small xhs streams of 2 worlds)."""
    runs = [Run(1000, 50_000), Run(1000, 50_001), Run(1001, 50_100)]
    monkeypatch.setenv(PROCESSES_ENV, "1")
    alone = measure_runs("xhs", runs, 0.05)
    monkeypatch.setenv(PROCESSES_ENV, "2")
    spread = measure_runs("xhs", runs, 0.05)
    assert spread.runs == alone.runs
    assert spread.measured == alone.measured
    assert any(m.interval is not None for claims in alone.measured for m in claims.values())
    for claim_id, stats in alone.stats.items():
        assert len(spread.stats[claim_id]) == len(stats) == 3
        for got, want in zip(spread.stats[claim_id], stats, strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_calibration_cell_in_several_processes_is_the_one_of_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PROCESSES_ENV, "1")
    alone = run_cell("orders_after_minute_5", "false_high", 4, 6)
    monkeypatch.setenv(PROCESSES_ENV, "3")
    spread = run_cell("orders_after_minute_5", "false_high", 4, 6)
    assert alone.runs == 6 and len(alone.verdicts) > 1  # not one verdict for every stream
    assert list(spread.verdicts.items()) == list(alone.verdicts.items())


def test_map_in_processes_keeps_the_order_and_the_count_is_set_by_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PROCESSES_ENV, "3")
    assert processes() == 3
    assert map_in_processes(abs, list(range(-20, 0))) == list(range(20, 0, -1))
    # A failure in a worker process is the caller's (the pool is shut down, nothing leaks).
    with pytest.raises(ValueError, match="math domain error"):
        map_in_processes(math.log, [1.0, 0.0, 2.0] * 4)
    monkeypatch.delenv(PROCESSES_ENV)
    assert 1 <= processes() <= 4
