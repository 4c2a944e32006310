"""`bench.peaks_merge`'s what-if of a time rule for the levels' settled runs (session 16,
issue 17): a curve cut to a few runs per CST day still bounds the merged peak."""

from __future__ import annotations

import random
from collections import Counter

from agents.core.concurrency import LevelCurve
from bench.peaks_merge import keep_per_day
from tests.agents.core.test_board_fold import _diff, _running_peak


def test_runs_cut_per_day_keep_the_merged_peak_between_its_bounds() -> None:
    """Random sessions over 3 partitions' curves spanning days, each settled at its own pace,
    then cut to 1 or 2 runs per CST day before a retire line: at most that many runs of each
    day before it, and the merged curve's peak at most the peak of every minute summed (the
    running sum), its ceiling at least it, equal unless bounded."""
    rng = random.Random(16)
    day = 24 * 60
    bounded = 0
    for trial in range(100):
        curves = [LevelCurve() for _ in range(3)]
        everything: Counter[int] = Counter()
        clocks = [0, 0, 0]
        for _session in range(rng.randint(5, 60)):
            part = rng.randrange(3)
            clocks[part] += rng.randint(0, 600)
            minutes = _diff(rng, clocks[part], clocks[part] + rng.randint(0, 240))
            curves[part].add(minutes)
            everything.update(minutes)
            if rng.random() < 0.3:
                curves[part].settle(clocks[part])
        per_day = rng.choice([1, 2])
        for curve in curves:
            if curve.settled_to is not None:
                retire_before = curve.settled_to - day
                keep_per_day(curve, retire_before, per_day)
                days = Counter(
                    (first + 480) // day
                    for _count, first, end in curve._run_list()
                    if end <= retire_before
                )
                assert all(n <= per_day for n in days.values()), trial
        merged = LevelCurve.merged(curves)
        truth = _running_peak(everything, {})
        assert merged.level_peak()[0] <= truth <= merged.ceiling(), trial
        if merged.bounded:
            bounded += 1
        else:
            assert merged.level_peak()[0] == truth, trial
    assert bounded > 0
