"""Frozen period parts folded in a ledger holding every partition (`periods._fold_settled`):
bounded, whatever the users of the period, and finishing to the same figures."""

from __future__ import annotations

import math
import pickle
import random
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import agents.core.periods as periods_module
from agents.core import Ledger, OperatorBoard
from agents.core.ledger import DAY_MS, RETIRED_USERS
from agents.core.metrics import (
    CLAIM_PARTS,
    Measurement,
    fold_dwell_part,
    fold_share_part,
    fold_spend_part,
    group_member_dwell_from_part,
    group_spend_multiple_from_part,
    merge_dwell_parts,
    share_from_part,
)
from agents.core.periods import DAY, MONTH, PeriodSettings, attach, merge_frozen
from agents.core.persist import dump_state, load_state
from agents.core.stats import cluster_sums
from streams.tools.analyze import analyze_records, iter_records

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
WEEK_MS = 7 * DAY_MS
#: The claims whose parts hold per-user rows, folded (`ClaimParts.fold`).
FOLDED = (
    "orders_after_minute_5",
    "group_order_share",
    "group_member_dwell",
    "group_spend_multiple",
    "size_refund_share",
    "bundle_share",
    "return_rate",
)


def close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, str) or isinstance(b, str):
        return bool(a == b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def same_figures(a: Any, b: Any) -> bool:
    """Two ledgers' frozen figures equal to 1e-9 (a figure not read before its part was
    folded is finished from the folded part: the same figure, to rounding)."""
    if set(a) != set(b):
        return False
    return all(
        set(a[p]) == set(b[p])
        and all(all(close(x, y) for x, y in zip(a[p][c], b[p][c], strict=True)) for c in a[p])
        for p in a
    )


def same(a: Measurement, b: Measurement) -> bool:
    if (a.interval is None) != (b.interval is None):
        return False
    ends = zip(a.interval or (), b.interval or (), strict=True)
    return (
        close(a.observed, b.observed)
        and a.n == b.n
        and a.clusters == b.clusters
        and all(close(x, y) for x, y in ends)
    )


@cache
def ledgers(name: str) -> tuple[Ledger, Ledger]:
    """The fixture through one ledger holding every partition, with the claims by period:
    its parts folded, and the same with the fold stubbed out (every row kept)."""
    out = []
    for fold in (True, False):
        saved = periods_module._fold_settled
        if not fold:
            periods_module._fold_settled = lambda ledger: None
        try:
            ledger = Ledger(
                WEEK_MS, refund_horizon_ms=14 * DAY_MS, fold_sessions=True, fold_months=True
            )
            attach(ledger, PeriodSettings())
            out.append(analyze_records(iter_records(FIXTURES / f"{name}.jsonl"), ledger))
        finally:
            periods_module._fold_settled = saved
    return out[0], out[1]


def user_rows(part: Any) -> int:
    """The per-user rows of a part (its dicts keyed by user id or by (merchant, month, user)),
    the retired users' sums apart."""
    if isinstance(part, dict):
        return sum(1 for key in part if key != RETIRED_USERS)
    if isinstance(part, list | tuple):
        return sum(user_rows(item) for item in part if isinstance(item, dict | list | tuple))
    return 0


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_settled_parts_fold_to_the_same_figures_and_hold_no_user_row(name: str) -> None:
    folded, kept = ledgers(name)
    assert same_figures(folded.frozen_periods, kept.frozen_periods)  # the raw parts' figures
    settled = [
        period
        for period in folded.frozen_parts
        if period[0] == MONTH or (MONTH, period[1][:7]) in folded.frozen_periods
    ]
    assert any(kind == MONTH for kind, _key in settled)
    assert any(kind == DAY for kind, _key in settled)
    compared = 0
    for period in settled:
        for claim_id in FOLDED:
            if claim_id not in folded.frozen_parts[period]:
                continue  # a refund claim not frozen yet
            part, rows = folded.frozen_parts[period][claim_id], kept.frozen_parts[period][claim_id]
            assert user_rows(part) == 0, (period, claim_id)
            finish = CLAIM_PARTS[claim_id].finish
            assert same(finish(part), finish(rows)), (period, claim_id)
            if claim_id == "group_member_dwell":  # kept with its t* quantiles: the rows alone
                assert len(rows) == 6 and same(finish(part), finish(rows[:5])), period
            figure = folded.frozen_periods[period][claim_id]
            assert close(finish(part).observed, figure[0]), (period, claim_id)
            compared += user_rows(rows) > 0
    assert compared > 20
    # The days of the month not frozen yet keep their rows: the month's merge needs them.
    open_days = [
        period
        for period in folded.frozen_parts
        if period[0] == DAY and (MONTH, period[1][:7]) not in folded.frozen_periods
    ]
    assert open_days
    for period in open_days:
        for claim_id in FOLDED:
            held = folded.frozen_parts[period].get(claim_id)
            assert held == kept.frozen_parts[period].get(claim_id), (period, claim_id)


@pytest.mark.parametrize("name", ["xhs"])
def test_folded_parts_are_smaller_and_do_not_merge(name: str) -> None:
    folded, kept = ledgers(name)
    size = len(pickle.dumps(folded.frozen_parts))
    assert size < 0.8 * len(pickle.dumps(kept.frozen_parts))
    # Merged with another ledger, a ledger holding every partition gives no parts (its rows
    # are folded): its periods are left out (reported folded), never merged wrong.
    other = Ledger(WEEK_MS, fold_sessions=True, fold_months=True)
    figures, parts = merge_frozen([folded, other])
    assert figures == {} and parts == {}
    month = next(period for period in folded.frozen_parts if period[0] == MONTH)
    dwell = folded.frozen_parts[month]["group_member_dwell"]
    raw = kept.frozen_parts[month]["group_member_dwell"]
    for parts_of_two in ([dwell, dwell], [dwell, raw]):
        with pytest.raises(ValueError, match="not merge"):
            merge_dwell_parts(parts_of_two)


def test_each_fold_gives_the_rows_interval_on_random_rows() -> None:
    rng = random.Random(7)
    for users in (2, 3, 40, 400):
        by_user = {f"u{i}": [rng.randint(0, 3), rng.randint(3, 6)] for i in range(users)}
        sessions = cluster_sums([[rng.randint(0, 5), rng.randint(5, 9)] for _ in range(7)])
        hits = sum(row[0] for row in by_user.values())
        total = sum(row[1] for row in by_user.values())
        share = (hits, total, sessions, sessions, by_user)
        assert same(
            share_from_part(fold_share_part(share), "h", "n"), share_from_part(share, "h", "n")
        )
        watch = {
            f"u{i}": [int(rng.lognormvariate(13, 1.2)), rng.randint(1, 4)] for i in range(users)
        }
        pairs = sum(row[1] for row in watch.values())
        total_ms = sum(row[0] for row in watch.values())
        squares = sum(row[0] * row[0] for row in watch.values())
        dwell = (pairs, total_ms, squares, sessions, watch)
        assert same(
            group_member_dwell_from_part(fold_dwell_part(dwell)),
            group_member_dwell_from_part(dwell),
        ), users
        joins = {("m", "2024-07", f"u{i}"): (i, rng.random() < 0.3) for i in range(users)}
        spend = {key: rng.choice((0, 0, rng.randint(100, 90_000))) for key in joins}
        part = ({}, joins, spend)
        folded = fold_spend_part(part)
        assert folded[1] == {} and folded[2] == {} and list(folded[0]) == [RETIRED_USERS]
        assert same(group_spend_multiple_from_part(folded), group_spend_multiple_from_part(part))


def test_folded_parts_survive_a_snapshot_and_a_restored_state_folds_its_own() -> None:
    """Version 11 keeps the folded parts as they are; a state whose parts were never folded
    (as a version 10 state's) has them folded at its next freeze, to the same figures."""
    folded, kept = ledgers("xhs")
    restored, _board = load_state(dump_state(folded, OperatorBoard()))
    assert pickle.dumps(restored.frozen_parts) == pickle.dumps(folded.frozen_parts)
    unfolded, _board = load_state(dump_state(kept, OperatorBoard()))
    periods_module._fold_settled(unfolded)
    for period, parts in folded.frozen_parts.items():
        for claim_id in FOLDED:
            if claim_id in parts:
                finish = CLAIM_PARTS[claim_id].finish
                mine = unfolded.frozen_parts[period][claim_id]
                assert same(finish(mine), finish(parts[claim_id])), (period, claim_id)
                assert user_rows(mine) == user_rows(parts[claim_id]), (period, claim_id)


def test_figures_not_read_yet_are_finished_from_the_folded_parts() -> None:
    """A frozen figure not read yet (`periods.FrozenFigures`) holds its part until the first
    read: once the part is folded it holds the folded one, not the raw rows (which would stay
    in memory and in every snapshot), and finishes to the figure of the rows."""
    ledger = Ledger(WEEK_MS, refund_horizon_ms=14 * DAY_MS, fold_sessions=True, fold_months=True)
    attach(ledger, PeriodSettings())
    analyze_records(iter_records(FIXTURES / "xhs.jsonl"), ledger)
    _folded, kept = ledgers("xhs")
    unread = 0
    for period, figures in ledger.frozen_periods.items():
        assert isinstance(figures, periods_module.FrozenFigures)
        parts = ledger.frozen_parts[period]
        for claim_id, part in figures._parts.items():
            assert part is parts[claim_id], (period, claim_id)
            unread += user_rows(kept.frozen_parts[period][claim_id]) > 0
    assert unread > 20
    assert same_figures(ledger.frozen_periods, kept.frozen_periods)
