"""Summaries retired past the board horizon (`Ledger._retire_summaries`): the sessions
table's, every level's, every claim's and the HTML conversion bars' figures stay the truth's
while the summaries held follow the horizon, not the stream (issue 17)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.distributions import conversion_by_interaction
from agents.core.ledger import SessionSummary
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.periods import DAY as PERIOD_DAY
from agents.core.periods import MONTH, PeriodSettings, attach, claim_periods, period_key
from agents.core.persist import dump_state, load_state
from tests.agents.core.test_board_fold import _table_of, feed_board
from tests.agents.core.test_merge import Record, records, split
from tests.agents.core.test_order_fold import REFUND_HORIZON, _refund_table
from tests.agents.core.test_periods import close, cut
from tests.agents.core.test_retention import _check_summarized, _summarizing
from tests.support.live import fixture_operator_truth_folding, fixture_truth
from tests.support.truth import SKETCHED_OPERATOR_FIGURE, operator_mismatches

DAY = 86_400_000
WINDOW = 2 * DAY
BOARD_HORIZON = 3 * DAY


def _retiring(
    decoded: list[Any],
    retire: bool,
    groups: Ledger | None = None,
    refunds: Any = None,
    periods: PeriodSettings | None = None,
) -> tuple[Ledger, OperatorBoard]:
    """A summarizing ledger whose orders fold past the refund horizon (a session retires
    once none of its orders is held), with its board."""
    ledger = Ledger(
        WINDOW,
        refund_horizon_ms=REFUND_HORIZON,
        fold_sessions=True,
        board_horizon_ms=BOARD_HORIZON,
    )
    ledger.retire_summaries = retire
    ledger.membership_from = groups
    ledger.refunds_from = refunds
    if periods is not None:  # a summary then waits for its month's freeze
        attach(ledger, periods)
    return ledger, feed_board(ledger, decoded)


def _merged_retiring(stream: Sequence[Record]) -> Ledger:
    """The stream split into 3 partitions, each a retiring `_retiring` ledger whose membership
    is one ledger of every group event, merged: what a claim of the retiring ledger must equal
    over partitions."""
    groups = Ledger(WINDOW, fold_sessions=True)
    for _topic, _key, event in stream:
        if getattr(event, "type", "").startswith("group_"):
            groups.apply(event)
    parts = [
        _retiring([e for _t, _k, e in part], True, groups=groups)[0] for part in split(stream, 3)
    ]
    return merge_ledgers(parts)


def _summaries(ledger: Ledger) -> int:
    return sum(isinstance(s.presence, SessionSummary) for s in ledger.sessions.values())


def _operator_problems(report: dict[str, Any], truth: dict[str, Any], ledger: Ledger) -> list[str]:
    operator = report["operator"]
    cut = _table_of(operator, truth, ledger, BOARD_HORIZON)
    problems = operator_mismatches(operator, cut, cumulative_only=True)
    return [p for p in problems if SKETCHED_OPERATOR_FIGURE not in p]


def _close(got: Any, want: Any, path: str = "") -> list[str]:
    if isinstance(want, dict):
        return [p for key in want.keys() | got.keys() for p in _close(got[key], want[key], key)]
    if isinstance(want, float) and isinstance(got, int | float):
        return [] if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) else [path]
    return [] if got == want else [path]


def _check_conversion(ledger: Ledger, unretired: Ledger, name: str) -> None:
    """The HTML conversion bars: the pairs and buyers equal the truth's `interaction_uplift`
    counts, and the clustered whiskers (from the retired sessions' sums) equal those the
    same sessions' rows give (the summarizing ledger that retires nothing)."""
    got = conversion_by_interaction(ledger)
    uplift = fixture_truth(name)["claims"]["interaction_uplift"]
    assert got["interacting"]["pairs"] == uplift["interacting_pairs"]
    assert got["interacting"]["buyers"] == uplift["interacting_buyers"]
    assert got["other"]["pairs"] == uplift["other_pairs"]
    assert got["other"]["buyers"] == uplift["other_buyers"]
    assert got["multiple"] == pytest.approx(uplift["observed"], rel=1e-9)
    assert _close(got, conversion_by_interaction(unretired)) == []


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_retired_summaries_leave_every_figure_the_truths(name: str) -> None:
    """The 60-day fixtures, 2-day window, 13-day refund horizon (longer than every refund's
    delay), 3-day board horizon: most sessions' summaries are
    retired (the summaries held are those of the last days, not of 60), yet the operator
    levels and the sessions table equal the truth reference (operator_truth.py, the fold's
    rule for sessions that never end; the sketched medians left out, as without retiring),
    every claim equals the keep-everything ledger's (1e-9, `live_aov`'s judged days from the
    days' sums) and the truth file's, and the conversion bars the truth's counts; so after a
    snapshot round trip, and over 3 partitions merged."""
    stream = records(name)
    decoded = [event for _topic, _key, event in stream]
    operator_truth = fixture_operator_truth_folding(name, WINDOW)
    everything = build_report(_summarizing(decoded, None))
    unretired, _ = _retiring(decoded, False)
    ledger, board = _retiring(decoded, True)

    assert ledger.retired_sessions > 3 * _summaries(ledger), (ledger.retired_sessions,)
    assert _summaries(ledger) + ledger.retired_sessions == _summaries(unretired)
    assert ledger.retired_aov_days and ledger.retired_ids == []
    report = build_report(ledger, board)
    assert _operator_problems(report, operator_truth, ledger) == []
    _check_summarized(report, everything, f"{name}.jsonl")
    _check_conversion(ledger, unretired, name)

    restored_ledger, restored_board = load_state(dump_state(ledger, board))
    restored = build_report(restored_ledger, restored_board)
    assert restored["claims"] == report["claims"]
    assert restored["operator"] == report["operator"]

    groups = _summarizing(
        [e for e in decoded if getattr(e, "type", "").startswith("group_")], WINDOW
    )
    split_stream = split(stream, 3)
    table = _refund_table(split_stream)
    parts = [_retiring([e for _t, _k, e in part], True, groups, table) for part in split_stream]
    assert sum(part.retired_sessions for part, _board in parts) > 0
    merged_ledger = merge_ledgers([part for part, _board in parts])
    merged = build_report(merged_ledger, merge_boards([b for _part, b in parts]))
    _check_summarized(merged, everything, f"{name}.jsonl")
    assert _operator_problems(merged, operator_truth, merged_ledger) == []


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_retired_summaries_under_claims_by_period_keep_every_period_the_truths(name: str) -> None:
    """With the claims by period attached (a summary waits for its month's freeze, so a
    session retires only once its month is frozen): sessions are retired, every claim equals
    the keep-everything ledger's and the truth file's, and every day's and month's figure
    equals `truth.py` run on the fixture cut to that period (to 1e-9)."""
    stream = records(name)
    decoded = [event for _topic, _key, event in stream]
    settings = PeriodSettings()
    ledger, board = _retiring(decoded, True, periods=settings)
    assert ledger.retired_sessions > 0 and ledger.frozen_periods
    report = build_report(ledger, board)
    _check_summarized(report, build_report(_summarizing(decoded, None)), f"{name}.jsonl")
    periods = claim_periods(ledger, settings)["claims"]
    compared = 0
    for kind in (PERIOD_DAY, MONTH):
        for entry in periods["live_aov"][kind]:
            key = entry["period"]
            truth = cut(name).claims(lambda ts, key=key, kind=kind: period_key(kind, ts) == key)
            for claim_id, figures in periods.items():
                mine = next(e for e in figures[kind] if e["period"] == key)
                assert close(mine["observed"], truth[claim_id]["observed"]), (key, claim_id)
                compared += 1
    assert compared > 0
