"""`DistinctUsers` (agents/core/sketch.py): exact up to its limit, then a HyperLogLog whose
counts stay within the stated relative standard error of the truth, and merge exactly."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pickle
import random
from typing import Any

import orjson
import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import SESSION_HORIZON_MS
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.persist import dump_state, load_state
from agents.core.sketch import DistinctUsers
from schemas import TOPIC_BY_TYPE, decode, record_key
from streams.tools.simulator.generate import generate
from streams.tools.simulator.operator_truth import compute_operator
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth import abandon_sessions, read_stream
from tests.support.board import observe

DAY = 86_400_000


def _rse(precision: int) -> float:
    return 1.04 / math.sqrt(1 << precision)


def test_ids_are_counted_exactly_up_to_the_limit_then_sketched() -> None:
    counted = DistinctUsers(limit=1000)
    counted.update(f"u{i}" for i in range(1000))
    counted.update(f"u{i}" for i in range(500))  # repeats change nothing
    assert not counted.sketched and counted.count() == 1000
    assert counted.count_with(["u1", "new"]) == 1001 and counted.count() == 1000
    counted.update(["one more"])
    assert counted.sketched and counted.exact is None
    assert abs(counted.count() - 1001) <= 4 * _rse(counted.precision) * 1001


def test_merged_sketches_are_the_sketch_of_the_union_in_any_order() -> None:
    users = [f"user-{i}" for i in range(30_000)]
    whole = DistinctUsers(limit=100)
    whole.update(users)
    parts = [DistinctUsers(limit=100 if i else 50_000) for i in range(3)]  # one still exact
    for i, user in enumerate(users):
        parts[i % 3].update([user, users[(7 * i) % len(users)]])
    for order in ((0, 1, 2), (2, 0, 1)):
        merged = DistinctUsers(limit=100)
        for i in order:
            merged.merge(parts[i])
        assert merged.registers == whole.registers and merged.count() == whole.count()


def test_the_estimate_is_within_its_relative_standard_error_across_the_range() -> None:
    """Over 60 independent sets at each size, from the small range (many empty registers) to
    8 m, the root-mean-square relative error is within 1.25x the stated 1.04 / sqrt(m) and
    the mean error (bias) within a third of it (p = 10, m = 1024, so that it runs in ~2 s)."""
    precision = 10
    rng = random.Random(17)
    for size in (300, 2_000, 8_000):
        errors = []
        for _ in range(60):
            counted = DistinctUsers(limit=0, precision=precision)
            stem = rng.getrandbits(64)
            counted.update(f"{stem}-{i}" for i in range(size))
            errors.append(counted.count() / size - 1)
        rms = math.sqrt(sum(e * e for e in errors) / len(errors))
        bias = sum(errors) / len(errors)
        assert rms <= 1.25 * _rse(precision), (size, rms)
        assert abs(bias) <= _rse(precision) / 3, (size, bias)


@functools.cache
def _simulated(days: int, scale: float, seed: int) -> list[str]:
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    return generate(scenario, seed, scale).lines


def _board(lines: list[str], window_ms: int) -> tuple[Ledger, OperatorBoard]:
    ledger = Ledger(window_ms, fold_sessions=True)
    board = OperatorBoard()
    for line in lines:
        observe(ledger, board, decode(line.encode()), retired=False)
    return ledger, board


def _paying_users_within_bound(operator: dict[str, Any], truth: dict[str, Any]) -> int:
    """Every level's paying users within 4 relative standard errors of the truth's (exact
    where the level's summarized buyers stayed under the limit); how many levels differ."""
    differ = 0
    levels = [("overall", operator["overall"], truth["overall"])]
    for kind in ("rooms", "merchants"):
        levels += [(f"{kind}.{k}", operator[kind][k], truth[kind][k]) for k in truth[kind]]
    for name, got, want in levels:
        bound = 4 * _rse(DistinctUsers().precision) * want["paying_users"]
        assert abs(got["paying_users"] - want["paying_users"]) <= bound, name
        differ += got["paying_users"] != want["paying_users"]
    return differ


@pytest.mark.parametrize("days", [pytest.param(60, id="60d")])
def test_paying_users_of_a_long_stream_stay_within_the_bound_once_sketched(
    days: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulated xhs stream with the session fold, a limit of 20 ids and m = 256 registers
    (so that every level's summarized buyers are sketched, and the sketch's error, 6.5%, is
    seen): each level's paying users are within 4 relative standard errors of the truth
    reference's (the fold's rule for sessions that never end), through a snapshot, and over
    3 partitions merged."""
    monkeypatch.setattr(DistinctUsers.__init__, "__defaults__", (20, 8))
    window_ms = 2 * DAY
    lines = _simulated(days, 1.0, 7)
    stream = read_stream(lines)
    abandon_sessions(stream, SESSION_HORIZON_MS, window_ms)
    truth = compute_operator(stream)
    ledger, board = _board(lines, window_ms)
    assert ledger.folded_payers[("overall", "")].sketched
    assert all(p.sketched for p in ledger.folded_payers.values())
    report = build_report(ledger, board)
    assert _paying_users_within_bound(report["operator"], truth) > 0
    restored = build_report(*load_state(dump_state(ledger, board)))
    assert restored["operator"]["overall"] == report["operator"]["overall"]

    from tests.agents.core.test_merge import partition_of

    parts: list[list[str]] = [[], [], []]
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:  # the simulator's junk lines: rejected anywhere
            obj = None
        if isinstance(obj, dict) and obj.get("type") in TOPIC_BY_TYPE:
            parts[partition_of(record_key(obj).encode(), 3)].append(line)
    ledgers = [_board(part, window_ms) for part in parts]
    merged = build_report(
        merge_ledgers([p[0] for p in ledgers]), merge_boards([p[1] for p in ledgers])
    )
    assert merged["operator"]["overall"]["paying_users"] == pytest.approx(
        truth["overall"]["paying_users"], rel=4 * _rse(8)
    )


@pytest.mark.skipif(
    not os.environ.get("LIVEPULSE_DISTINCT_LONG"), reason="set LIVEPULSE_DISTINCT_LONG=1 (~2 min)"
)
def test_paying_users_of_a_long_stream_with_the_default_precision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """120 days at scale 6 with the default precision (0.81%) and a limit of 1,000 ids: the
    overall level and the rooms pass it; every level's paying users within the bound."""
    monkeypatch.setattr(DistinctUsers.__init__, "__defaults__", (1000, 14))
    window_ms = 2 * DAY
    lines = _simulated(120, 6.0, 11)
    stream = read_stream(lines)
    abandon_sessions(stream, SESSION_HORIZON_MS, window_ms)
    truth = compute_operator(stream)
    ledger, board = _board(lines, window_ms)
    assert any(p.sketched for p in ledger.folded_payers.values())
    _paying_users_within_bound(build_report(ledger, board)["operator"], truth)


def test_the_page_counts_sketched_payers_as_the_merged_board_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The live screen's page (`PageBuilder`) over 4 partitions with the session fold and a
    limit of 5 ids: after every chunk its levels' paying users equal the merged partitions'
    board's (the same ids into the same registers), sketched levels included, and within
    the bound of the operator truth at the end."""
    from pathlib import Path

    from agents.core.ingest import ingest
    from agents.core.page import PageBuilder
    from tests.agents.core.test_page import merged_page
    from tests.agents.core.test_page import partition_of as page_partition
    from tests.support.live import fixture_operator_truth_folding

    monkeypatch.setattr(DistinctUsers.__init__, "__defaults__", (5, 8))
    fixtures = Path(__file__).resolve().parents[3] / "fixtures"
    lines = (fixtures / "xhs.jsonl").read_bytes().splitlines()
    groups = Ledger(2 * DAY)
    states = [(Ledger(2 * DAY, fold_sessions=True), OperatorBoard()) for _ in range(4)]
    for ledger, _board in states:
        ledger.membership_from = groups
    builder = PageBuilder()
    chunk = len(lines) // 8
    for start in range(0, len(lines), chunk):
        for line in lines[start : start + chunk]:
            if b'"group_' in line:
                ingest(line, groups, None)
            ledger, board = states[page_partition(line)]
            ingest(line, ledger, board)
        got = builder.build(states)
        want = merged_page(states)
        for kind in ("rooms", "merchants"):
            for level, figures in want["operator"][kind].items():
                assert got["operator"][kind][level]["paying_users"] == figures["paying_users"]
        overall = got["operator"]["overall"]["paying_users"]
        assert overall == want["operator"]["overall"]["paying_users"]
    assert any(p.sketched for s in states for p in s[0].folded_payers.values())
    _paying_users_within_bound(got["operator"], fixture_operator_truth_folding("xhs", 2 * DAY))


def test_a_ledgers_distinct_limit_bounds_its_payers_state_and_keeps_the_bound() -> None:
    """A simulated xhs stream (60 days) through a summarizing ledger whose levels keep at
    most 20 buyer ids (`Ledger.set_distinct_limit`, `LIVEPULSE_DISTINCT_EXACT_LIMIT`): the
    pickled payers stop growing once every level is sketched (measured after each tenth of
    the stream: equal from then on), while with the default limit the same levels' sets go
    on growing (here they stay smaller than the sketches: a short stream's few buyers);
    each level's paying users within 4 relative standard errors of the truth reference. The
    limit is not pickled: a restored ledger is given it again."""
    window_ms = 2 * DAY
    lines = _simulated(60, 1.0, 7)
    stream = read_stream(lines)
    abandon_sessions(stream, SESSION_HORIZON_MS, window_ms)
    truth = compute_operator(stream)

    def fed(limit: int | None) -> tuple[Ledger, OperatorBoard, list[int]]:
        ledger = Ledger(window_ms, fold_sessions=True)
        if limit is not None:
            ledger.set_distinct_limit(limit)
        board = OperatorBoard()
        sizes: list[int] = []
        tenth = len(lines) // 10
        for start in range(0, len(lines), tenth):
            for line in lines[start : start + tenth]:
                observe(ledger, board, decode(line.encode()), retired=False)
            sizes.append(len(pickle.dumps(ledger.folded_payers)))
        return ledger, board, sizes

    bounded, board, sizes = fed(20)
    everything, _board, exact_sizes = fed(None)
    assert all(p.sketched for p in bounded.folded_payers.values())
    assert not any(p.sketched for p in everything.folded_payers.values())
    # Once sketched (the same levels from then on), the payers' bytes stay as they are.
    first = next(i for i in range(len(sizes)) if sizes[i] == sizes[-1])
    assert first < len(sizes) - 3 and set(sizes[first:]) == {sizes[-1]}
    assert exact_sizes[-1] > exact_sizes[first]  # the ids kept growing meanwhile
    _paying_users_within_bound(build_report(bounded, board)["operator"], truth)

    restored, _restored_board = load_state(dump_state(bounded, board))
    assert restored.distinct_limit is None  # the owner's setting, not the state's
    plain, _plain_board = load_state(dump_state(everything, _board))
    plain.set_distinct_limit(20)
    assert all(p.sketched and p.limit == 20 for p in plain.folded_payers.values())
