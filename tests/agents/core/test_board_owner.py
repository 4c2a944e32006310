"""Issue 17: the operator levels' settled runs exchanged to one owner partition per level
(`Ledger.take_board_runs`, `receive_board_runs`, `receive_board_settled`): a level's merged
`viewers_peak` is exact (no level `bounded`) and the runs leave the sources and the owners
once every source has announced their minutes."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agents.core import Ledger, OperatorBoard, build_report, concurrency
from agents.core.concurrency import LevelCurve
from agents.core.ledger import OVERALL_LEVEL, BoardRuns, BoardSettled
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.persist import dump_state, load_state
from streams.runtime.monthrows import Row, board_owner, deliver, owner_of
from tests.agents.core.test_board_fold import _diff, _peaks, _running_peak
from tests.agents.core.test_merge import records, split
from tests.support.board import observe
from tests.support.live import fixture_operator_truth_folding

DAY = 86_400_000
LEVEL = ("rooms", "r")


def _owner() -> Ledger:
    return Ledger(DAY, fold_sessions=True)


def _runs(source: int, curve: LevelCurve, start: int) -> BoardRuns:
    """A source curve's settled runs taken, as `Ledger.take_board_runs` sends them."""
    assert curve.settled_to is not None
    runs, slack = curve.take_runs()
    return BoardRuns(source, *LEVEL, start, curve.settled_to, tuple(runs), tuple(slack))


def test_an_owner_folds_the_sources_runs_to_the_minute_by_minute_peak() -> None:
    """Random sessions over 3 source curves, each settled and taken at its own pace (a source
    may lag far behind), every message delivered once or twice in a random order of windows
    per source: the peak of the sources' kept curves merged with the owner's (its folded peak
    and the runs it holds) is the running peak of every minute summed, never bounded, at
    every step; and the owner holds no run before the earliest minute every source
    announced. (The owner folding before every source announced fails here: a lagging
    source's minutes then come after its peak was folded without them.)"""
    rng = random.Random(20)
    for trial in range(200):
        owner = _owner()
        curves = [LevelCurve() for _ in range(3)]
        sent_to = [-(2**62)] * 3
        everything: Counter[int] = Counter()
        clocks = [0, 0, 0]
        for _session in range(rng.randint(5, 80)):
            part = rng.randrange(3)
            clocks[part] += rng.randint(0, 40)
            minutes = _diff(rng, clocks[part], clocks[part] + rng.randint(0, 120))
            assert curves[part].add(minutes) == 0
            everything.update(minutes)
            if rng.random() < 0.3:
                curve = curves[part]
                curve.settle(clocks[part])
                message = _runs(part, curve, sent_to[part])
                sent_to[part] = message.through
                for _copy in range(rng.choice([1, 1, 2])):
                    owner.receive_board_runs(message)
                    owner.receive_board_settled(BoardSettled(part, message.through), 3)
            merged = LevelCurve.merged(curves + owner.curves_of(LEVEL))
            assert not merged.bounded, trial
            assert merged.level_peak()[0] == _running_peak(everything, {}), trial
            folded_to = owner.board_folded_to
            if folded_to is not None:
                assert folded_to == min(sent_to)
                held = owner.board_runs_in.get(LEVEL, {})
                assert all(first >= folded_to for items in held.values() for _c, first, *_ in items)


def test_runs_dropped_before_a_take_give_the_owner_a_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 2 runs kept a level (`LIVEPULSE_BOARD_RUNS_KEPT` as a safety bound), a source that
    settles more between two takes sends the dropped stretches as slack: the merged peak is
    then at most the running peak of every minute and its `ceiling` at least it, equal
    unless `bounded` (as the runs kept gave before the exchange)."""
    monkeypatch.setattr(concurrency, "SETTLED_RUNS_KEPT", 2)
    rng = random.Random(21)
    bounded = 0
    for trial in range(200):
        owner = _owner()
        curves = [LevelCurve() for _ in range(3)]
        sent_to = [-(2**62)] * 3
        everything: Counter[int] = Counter()
        clocks = [0, 0, 0]
        for _session in range(rng.randint(5, 60)):
            part = rng.randrange(3)
            clocks[part] += rng.randint(0, 40)
            minutes = _diff(rng, clocks[part], clocks[part] + rng.randint(0, 120))
            curves[part].add(minutes)
            everything.update(minutes)
            if rng.random() < 0.3:
                curves[part].settle(clocks[part])
            if rng.random() < 0.2 and curves[part].settled_to is not None:
                message = _runs(part, curves[part], sent_to[part])
                sent_to[part] = message.through
                owner.receive_board_runs(message)
                owner.receive_board_settled(BoardSettled(part, message.through), 3)
        merged = LevelCurve.merged(curves + owner.curves_of(LEVEL))
        truth = _running_peak(everything, {})
        assert merged.level_peak()[0] <= truth <= merged.ceiling(), trial
        if merged.bounded:
            bounded += 1
        else:
            assert merged.level_peak()[0] == truth, trial
    assert bounded > 0


def test_a_window_sent_again_with_other_bounds_replaces_the_held_one() -> None:
    """A source restored from an older snapshot sends a window again with another end: the
    owner keeps one count a minute (no minute counted twice), the held minutes past the new
    window's end kept."""
    owner = _owner()
    owner.receive_board_runs(BoardRuns(0, *LEVEL, 0, 100, (3, 10, 50, 5, 60, 90), ()))
    owner.receive_board_runs(BoardRuns(0, *LEVEL, 0, 70, (3, 10, 50, 5, 60, 70), ()))
    owner.receive_board_runs(BoardRuns(1, *LEVEL, 0, 100, (4, 40, 65), ()))
    curve = owner.owned_curve(LEVEL)
    assert curve is not None and curve.level_peak()[0] == 9  # 5 + 4 at minutes 60-64
    for source in (0, 1):
        owner.receive_board_settled(BoardSettled(source, 100), 2)
    assert owner.board_folded[LEVEL][:2] == [9, 60] and not owner.board_runs_in
    owner.receive_board_runs(BoardRuns(1, *LEVEL, 0, 100, (4, 40, 65), ()))  # after the fold
    assert not owner.board_runs_in


def test_a_source_restored_older_than_what_its_owner_holds_is_not_counted_twice() -> None:
    """A source partition restored from a snapshot taken before its last take (its curve
    still holds runs, and minutes, its owner holds as sent): merged, each minute is counted
    once (the owner's runs of that source from its restored `board_sent_to` on left out,
    `board_sent_by`), so the peak is the running peak of every minute; after the source
    takes again, the same."""
    minutes = {10: 4, 30: 2, 60: -3, 80: 5, 120: -8}
    sent = Ledger(DAY, fold_sessions=True)  # the source before the crash: runs to 100 sent
    sent.board_curves[LEVEL] = LevelCurve()
    sent.board_curves[LEVEL].add(minutes)
    sent.board_curves[LEVEL].settle(100)
    owner = _owner()
    owner.board_source = 1
    owner.receive_board_runs(_runs(0, sent.board_curves[LEVEL], -(2**62)))
    source = Ledger(DAY, fold_sessions=True)  # restored older: settled to 50, nothing sent
    source.board_source = 0
    source.board_curves[LEVEL] = LevelCurve()
    source.board_curves[LEVEL].add(minutes)
    source.board_curves[LEVEL].settle(50)
    truth = _running_peak(Counter(minutes), {})
    merged = merge_ledgers([source, owner]).board_curves[LEVEL]
    assert merged.level_peak()[0] == truth == 8 and not merged.bounded
    source.board_curves[LEVEL].settle(100)
    owner.receive_board_runs(_runs(0, source.board_curves[LEVEL], -(2**62)))
    source.board_sent_to = 100
    merged = merge_ledgers([source, owner]).board_curves[LEVEL]
    assert merged.level_peak()[0] == truth and not merged.bounded


def _exchanged_partitions(
    twice: bool, quiet: bool = False
) -> tuple[list[Ledger], list[OperatorBoard]]:
    """xhs over 3 partitions fed 500 records at a time in turn (2-day window, a 3-day board
    horizon, membership from every group event, each with its operator board), each
    partition's settled runs (and first orders) taken after its chunk and delivered to their
    owner, announcements to every partition (each message twice with `twice`: a
    redelivery). With `quiet`, a fourth partition gets no event, its horizons following the
    others' before each take (`Ledger.follow_idle_horizons`, as the worker's keeper moves an
    idle partition's)."""
    stream = records("xhs")
    groups = Ledger(2 * DAY, fold_sessions=True)
    for _topic, _key, event in stream:
        if getattr(event, "type", "").startswith("group_"):
            groups.apply(event)
    parts = [*split(stream, 3), *([[]] if quiet else [])]
    ledgers = [Ledger(2 * DAY, fold_sessions=True, board_horizon_ms=3 * DAY) for _ in parts]
    boards = [OperatorBoard() for _ in parts]
    for ledger in ledgers:
        ledger.membership_from = groups
    count = len(ledgers)
    for begin in range(0, max(len(part) for part in parts), 500):
        for source, (ledger, board, part) in enumerate(zip(ledgers, boards, parts, strict=True)):
            for _topic, _key, event in part[begin : begin + 500]:
                observe(ledger, board, event)
            if not part:
                ledger.follow_idle_horizons(source)
            taken = [*ledger.take_first_orders(source), *ledger.take_board_runs(source)]
            for message in taken * (2 if twice else 1):
                if isinstance(message, BoardRuns):
                    deliver(ledgers[board_owner(message, count)], message, count)
                elif isinstance(message, Row):
                    deliver(ledgers[owner_of(message.user, count)], message, count)
                else:
                    for each in ledgers:
                        deliver(each, message, count)
    return ledgers, boards


def test_a_quiet_partition_announces_its_minutes_and_holds_no_owner_back() -> None:
    """A fourth partition with no event at all, its horizons following the others' (idle):
    it settles and announces as they do (with no curve, nothing but the announcement), so
    every owner folds its levels' runs, and the merged peaks are still the truth's. (Without
    its announcement no owner ever folds: every run would stay held at the owners.)"""
    ledgers, boards = _exchanged_partitions(twice=False, quiet=True)
    quiet = ledgers[3]
    assert not quiet.board_curves and quiet._board_announced is not None
    assert all(ledger.board_folded_to is not None for ledger in ledgers)
    assert any(ledger.board_folded for ledger in ledgers)
    truth = fixture_operator_truth_folding("xhs", 2 * DAY)
    report = build_report(merge_ledgers(ledgers), merge_boards(boards))
    assert report["retention"]["board_peaks_bounded"] == 0
    assert report["operator"]["overall"]["viewers_peak"] == truth["overall"]["viewers_peak"]


def test_partitions_exchanging_their_runs_merge_to_the_truths_peaks() -> None:
    """xhs over 3 partitions with a 3-day board horizon, the runs exchanged (every message
    delivered twice), through a snapshot of each: every level's merged peak is the truth
    reference's, none bounded; the owners have folded runs, the sources keep only runs not
    taken yet and the owners only runs past their folded minute."""
    ledgers, boards = _exchanged_partitions(twice=True)
    truth = fixture_operator_truth_folding("xhs", 2 * DAY)
    want = {"overall": truth["overall"]["viewers_peak"]} | {
        f"{kind}.{level_id}": figures["viewers_peak"]
        for kind in ("rooms", "merchants")
        for level_id, figures in truth[kind].items()
    }
    assert all(ledger.board_sent_to is not None for ledger in ledgers)
    folded_levels = [level for ledger in ledgers for level in ledger.board_folded]
    assert OVERALL_LEVEL in folded_levels and len(folded_levels) == len(set(folded_levels)) > 1
    folded_to = {ledger.board_folded_to for ledger in ledgers}
    assert len(folded_to) == 1 and None not in folded_to
    pairs = [
        load_state(dump_state(ledger, board)) for ledger, board in zip(ledgers, boards, strict=True)
    ]
    restored = [ledger for ledger, _board in pairs]
    for ledger in restored:
        ledger.membership_from = ledgers[0].membership_from
        settled = {c.settled_to for c in ledger.board_curves.values()} - {None}
        assert ledger.board_sent_to is not None and settled == {ledger.board_settled_to}
        # Each curve keeps only the runs settled since the last take.
        firsts = [first for c in ledger.board_curves.values() for first in c.runs[1::3]]
        assert all(first >= ledger.board_sent_to for first in firsts)
    report = build_report(merge_ledgers(restored), merge_boards([b for _l, b in pairs]))
    assert report["retention"]["board_peaks_bounded"] == 0
    got = {k: v for k, v in _peaks(report["operator"]).items() if not k.startswith("sessions.")}
    assert got == want
    # A partition alone (a one-partition worker's view) reads its owned levels' folded peaks.
    for ledger, board in pairs:
        alone = build_report(ledger, board)
        assert alone["retention"]["board_peaks_bounded"] == 0
        for level, (peak, _minute, _ceiling) in ledger.board_folded.items():
            kind, name = level
            figures = alone["operator"]["overall" if level == OVERALL_LEVEL else kind]
            figures = figures if level == OVERALL_LEVEL else figures[name]
            assert figures["viewers_peak"] >= peak
