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


def test_the_exchanged_feed_merges_to_one_ledgers_peaks_with_no_run_kept() -> None:
    """`--exchange` (session 20) on xhs over 3 partitions (2-day window, 3-day board horizon):
    the partitions fed in chunks with their runs taken and delivered to their owners merge to
    the peaks of one ledger keeping every minute, none bounded, with no settled run left in a
    source's curve and the board state sampled along the way."""
    from agents.core import build_report
    from agents.core.merge import merge_boards, merge_ledgers
    from bench.peaks_merge import _fed, _fed_in_chunks
    from tests.agents.core.test_merge import records, split

    stream = records("xhs")
    decoded = [event for _topic, _key, event in stream]
    groups, _ = _fed([e for e in decoded if getattr(e, "type", "").startswith("group_")], 2, None)
    parts = [[event for _t, _k, event in part] for part in split(stream, 3)]
    fed, samples = _fed_in_chunks(parts, 2, 3, groups, True, 10, chunk=500)
    ledgers = [ledger for ledger, _board in fed]
    report = build_report(merge_ledgers(ledgers), merge_boards([b for _l, b in fed]))
    want = build_report(*_fed(decoded, 2, None))["operator"]
    assert report["retention"]["board_peaks_bounded"] == 0
    assert report["operator"]["overall"]["viewers_peak"] == want["overall"]["viewers_peak"]
    assert {k: v["viewers_peak"] for k, v in report["operator"]["rooms"].items()} == {
        k: v["viewers_peak"] for k, v in want["rooms"].items()
    }
    assert not any(c.runs for ledger in ledgers for c in ledger.board_curves.values())
    assert any(ledger.board_folded for ledger in ledgers) and len(samples) > 2
