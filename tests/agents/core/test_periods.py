"""Claims by day, month and rolling horizon: equal to the truth reference on the period's
sub-stream, the same frozen as computed, merged over partitions as one ledger, and bounded."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import agents.core.ledger as ledger_module
import agents.core.periods as periods_module
from agents.core import Ledger, build_report
from agents.core.claims import CLAIMS
from agents.core.html import render_html
from agents.core.ledger import DAY_MS, cst_month_start
from agents.core.merge import merge_ledgers
from agents.core.metrics import ClaimParts
from agents.core.operator import OperatorBoard
from agents.core.periods import (
    DAY,
    MONTH,
    NOT_PER_PERIOD,
    REFUND_CLAIMS,
    PeriodGate,
    PeriodSettings,
    attach,
    claim_periods,
    period_key,
    with_periods,
)
from agents.core.persist import dump_state, load_state
from agents.core.report import render_table
from schemas import GroupJoined, GroupLeft, Rejection, decode, decode_text
from streams.runtime.partition import PartitionState
from streams.runtime.state import LiveState
from streams.tools.analyze import analyze_records, iter_records
from streams.tools.simulator.generate import generate, write_lines
from streams.tools.simulator.period_truth import PeriodCut
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth import split_lines
from tests.agents.core.test_merge import records, split

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
WEEK_MS = 7 * DAY_MS
#: Set to run the minutes-long checks (every fixture day; a simulated 120-day stream).
LONG_ENV = "LIVEPULSE_PERIODS_LONG"


@cache
def cut(name: str) -> PeriodCut:
    return PeriodCut(split_lines((FIXTURES / f"{name}.jsonl").read_text()))


def assert_observed_as_cut(
    periods: dict[str, Any], kind: str, keys: Iterable[str], claims: Iterable[str]
) -> None:
    """Each of `claims`' figure of each period of `kind` in `keys`, in `periods` (the claims by
    period of xhs), observes what the truth reference gives for the events of that period
    alone (`cut`): None where it gives None, else equal within 1e-9 relative."""
    claims = tuple(claims)
    for key in keys:
        truth = cut("xhs").claims(lambda ts, key=key: period_key(kind, ts) == key)
        for claim_id in claims:
            mine = next(e for e in periods[claim_id][kind] if e["period"] == key)
            expected = truth[claim_id]["observed"]
            if expected is None or mine["observed"] is None:
                assert mine["observed"] is expected, (claim_id, key)
            else:
                assert math.isclose(mine["observed"], expected, rel_tol=1e-9), (claim_id, key)


def fed(name: str, ledger: Ledger) -> Ledger:
    return analyze_records(iter_records(FIXTURES / f"{name}.jsonl"), ledger)


@cache
def plain_periods(name: str) -> dict[str, Any]:
    return claim_periods(fed(name, Ledger()), PeriodSettings())


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check_against_truth(name: str, kind: str, stride: int) -> None:
    """Every claim's figure of every `stride`-th day or month (and the last) equals `truth.py`
    run on the fixture cut to that period (an independent filter of the raw lines), to 1e-9."""
    periods = plain_periods(name)["claims"]
    keys = [entry["period"] for entry in periods["live_aov"][kind]]
    assert len(keys) >= (30 if kind == DAY else 2)
    for key in keys[::stride] + keys[-1:]:
        truth = cut(name).claims(lambda ts, key=key: period_key(kind, ts) == key)
        for claim_id, figures in periods.items():
            mine = next(entry for entry in figures[kind] if entry["period"] == key)
            assert close(mine["observed"], truth[claim_id]["observed"]), (key, claim_id)
    assert set(NOT_PER_PERIOD).isdisjoint(periods)


@pytest.mark.parametrize("name", ["xhs", "impulse"])
@pytest.mark.parametrize("kind", [DAY, MONTH])
def test_period_figures_equal_the_truth_on_the_period_substream(name: str, kind: str) -> None:
    """Every month, and every 15th day (every day: the opt-in test below)."""
    check_against_truth(name, kind, 15 if kind == DAY else 1)


@pytest.mark.skipif(not os.environ.get(LONG_ENV), reason=f"a minute or more: set {LONG_ENV}=1")
@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_every_day_equals_the_truth(name: str) -> None:
    check_against_truth(name, DAY, 1)


@pytest.mark.skipif(not os.environ.get(LONG_ENV), reason=f"minutes long: set {LONG_ENV}=1")
def test_a_simulated_stream_of_four_months_by_day_and_month(tmp_path: Path) -> None:
    """A 120-day simulated stream through a summarizing ledger under the default settings:
    every reported day and month (the frozen ones among them) equals the truth cut to it,
    and the frozen records are exactly the kept 62 days and the closed months."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=120)
    stream = tmp_path / "long.jsonl"
    write_lines(stream, generate(scenario, 3, 0.3).lines)
    settings = PeriodSettings()
    ledger = analyze_records(
        iter_records(stream), attach(Ledger(WEEK_MS, fold_sessions=True), settings)
    )
    assert ledger.summarized_sessions > 0
    assert [kind for kind, _key in ledger.frozen_periods].count(DAY) == settings.days_kept
    _days_and_months_equal_the_truth_cut(claim_periods(ledger, settings)["claims"], stream)


def _days_and_months_equal_the_truth_cut(
    report: dict[str, Any], stream: Path
) -> list[tuple[str, dict[str, Any]]]:
    """Each claim's figure of every day and month `report` has equals the truth of `stream`
    cut to that period; returns each (claim id, period entry) compared."""
    truth_cut = PeriodCut(split_lines(stream.read_text()))
    compared = []
    for kind in (DAY, MONTH):
        for entry in report["live_aov"][kind]:
            key = entry["period"]
            truth = truth_cut.claims(lambda ts, key=key, kind=kind: period_key(kind, ts) == key)
            for claim_id, figures in report.items():
                mine = next(e for e in figures[kind] if e["period"] == key)
                assert close(mine["observed"], truth[claim_id]["observed"]), (key, claim_id)
                compared.append((claim_id, mine))
    return compared


def test_livepulse_analyze_shows_the_periods_with_its_setting() -> None:
    """`livepulse analyze FILE --json` as a user runs it, with LIVEPULSE_CLAIM_HORIZON_DAYS: the
    report's rolling horizon is the truth of the last 3 days, and its text table has them."""
    env = {**os.environ, "LIVEPULSE_CLAIM_HORIZON_DAYS": "3"}
    command = [sys.executable, "-m", "streams.cli", "analyze", str(FIXTURES / "xhs.jsonl")]
    done = subprocess.run(  # noqa: S603 - this interpreter, this package
        [*command, "--json"], env=env, capture_output=True, text=True, check=True
    )
    periods = json.loads(done.stdout)["periods"]
    assert periods["horizon_days"] == 3
    start = periods["rolling_from_ts"]
    truth = cut("xhs").claims(lambda ts: ts > start)
    for claim_id, figures in periods["claims"].items():
        assert close(figures["rolling"]["observed"], truth[claim_id]["observed"]), claim_id
    # The text table (what `analyze` prints without --json) of that very report.
    text = render_table(json.loads(done.stdout))
    assert "claim by period" in text and "last 3 d" in text and "month 2024-08" in text


def test_rolling_horizon_equals_the_truth_of_its_last_days() -> None:
    report = plain_periods("xhs")
    start = report["rolling_from_ts"]
    truth = cut("xhs").claims(lambda ts: ts > start)
    for claim_id, figures in report["claims"].items():
        assert close(figures["rolling"]["observed"], truth[claim_id]["observed"]), claim_id


def _folding(name: str, settings: PeriodSettings) -> Ledger:
    ledger = attach(Ledger(WEEK_MS, fold_sessions=True), settings)
    return fed(name, ledger)


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_frozen_periods_equal_their_figures_before_freezing(name: str) -> None:
    """With sessions summarized, the closed periods are frozen first, and what is reported
    of them equals the keep-everything ledger's figures (observed, interval, verdict)."""
    ledger = _folding(name, PeriodSettings())
    assert ledger.summarized_sessions > 0
    assert ledger.frozen_periods
    folded = claim_periods(ledger, PeriodSettings())["claims"]
    plain = plain_periods(name)["claims"]
    frozen_seen = 0
    for claim_id, figures in plain.items():
        for kind in (DAY, MONTH):
            assert [e["period"] for e in folded[claim_id][kind]] == [
                e["period"] for e in figures[kind]
            ]
            for mine, theirs in zip(folded[claim_id][kind], figures[kind], strict=True):
                frozen_seen += mine["frozen"]
                for field in ("observed", "ci_low", "ci_high"):
                    assert close(mine[field], theirs[field]), (claim_id, mine["period"], field)
                assert (mine["verdict"], mine["n"]) == (theirs["verdict"], theirs["n"])
    assert frozen_seen > 0


def test_frozen_records_stay_bounded() -> None:
    """The frozen records are at most the kept days and months, whatever the stream's length:
    the 61-day fixture keeps as many as a stream of a third of it would."""
    settings = PeriodSettings(days_kept=5, months_kept=1)
    ledger = _folding("xhs", settings)
    kinds = [kind for kind, _key in ledger.frozen_periods]
    assert kinds.count(DAY) == 5
    assert kinds.count(MONTH) == 1
    # What was dropped is remembered, for a merge (`periods.merge_frozen`).
    kept_days = [key for kind, key in ledger.frozen_periods if kind == DAY]
    assert "2024-07" < ledger.frozen_dropped[DAY] < min(kept_days)
    shown = claim_periods(ledger, settings)["claims"]["live_aov"]
    # The kept closed ones, then the open ones (at most as many again).
    assert sum(entry["frozen"] for entry in shown[DAY]) == 5
    assert len(shown[DAY]) <= 10
    assert len(shown[MONTH]) == 2
    # A stream of a third of the days freezes as many days: the count follows the setting.
    part = iter_records(FIXTURES / "xhs.jsonl")
    short = attach(Ledger(WEEK_MS, fold_sessions=True), settings)
    analyze_records(iter(list(part)[: len(cut("xhs")._lines) // 3]), short)
    assert [kind for kind, _key in short.frozen_periods].count(DAY) == 5
    assert (
        len({key for _k, key in short.frozen_periods} & {key for _k, key in ledger.frozen_periods})
        == 0
    )


def test_periods_of_merged_partitions_equal_one_ledger() -> None:
    """Three partitions' ledgers merged give every period's figures of the one ledger."""
    parts = []
    for part in split(records("xhs"), 3):
        ledger = Ledger()
        for _topic, _key, decoded in part:
            if isinstance(decoded, Rejection):
                ledger.reject(decoded.reason)
            else:
                ledger.apply(decoded)
        parts.append(ledger)
    merged = claim_periods(merge_ledgers(parts), PeriodSettings())
    single = plain_periods("xhs")
    assert merged["claims"] == single["claims"]


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="horizon_days"):
        PeriodSettings(horizon_days=0)


def test_the_html_report_draws_each_claim_by_day_and_lists_months() -> None:
    """Self-contained: an inline SVG per claim and its table by month; none without periods."""
    report = build_report(fed("xhs", Ledger()))
    assert 'id="periods"' not in render_html(report)
    page = render_html(with_periods(report, fed("xhs", Ledger()), PeriodSettings()))
    section = page[page.index('id="periods"') : page.index('id="plots"')]
    claims = [claim.id for claim in CLAIMS if claim.id not in NOT_PER_PERIOD]
    for claim_id in claims:
        block = section[section.index(f'id="period-{claim_id}"') :]
        assert block.index("<svg") < block.index("2024-07</td>") < block.index("last 7 days")
    assert "http://" not in section.replace("http://www.w3.org", "")


def test_frozen_periods_survive_a_snapshot_and_the_gate_is_set_again() -> None:
    """The frozen records are plain data in the snapshot; the gate is not (a callable): a
    restored ledger has none until `attach` (the worker's `LiveState.install` does)."""
    ledger = _folding("xhs", PeriodSettings())
    board = OperatorBoard()
    restored, _board = load_state(dump_state(ledger, board))
    assert restored.frozen_periods == ledger.frozen_periods
    assert restored.period_gate is None and ledger.period_gate is not None
    state = LiveState(dedupe_window_ms=WEEK_MS, fold_sessions=True, periods=PeriodSettings())
    state.install(0, PartitionState(restored, board))
    assert isinstance(restored.period_gate, PeriodGate)


def _valid(line: str) -> dict[str, Any] | None:
    """A fixture line's object if the contract accepts it (the fixtures carry noise)."""
    return None if isinstance(decode_text(line), Rejection) else json.loads(line)


def _with_late_refund(tmp_path: Path, after_ms: int) -> tuple[Path, str]:
    """xhs with a `size` refund `after_ms` after an apparel order of a session started on
    2024-07-06 (CST) that has none, filed at its `ts`; the stream and the order's day."""
    lines = (FIXTURES / "xhs.jsonl").read_text().splitlines()
    objs = [_valid(line) for line in lines]
    starts = {o["session_id"]: o["ts"] for o in objs if o and o["type"] == "session_started"}
    refunded = {o["order_id"] for o in objs if o and o["type"] == "order_refunded"}
    order = next(
        o
        for o in objs
        if o
        and o["type"] == "order_paid"
        and o["order_id"] not in refunded
        and any(item["category"] == "apparel" for item in o["items"])
        and period_key(DAY, starts.get(o.get("session_id") or "", 0)) == "2024-07-06"
    )
    refund = {
        "event_id": "late-refund-1",
        "type": "order_refunded",
        "ts": order["ts"] + after_ms,
        "order_id": order["order_id"],
        "amount_cents": order["amount_cents"],
        "reason": "size",
    }
    at = next(i for i, o in enumerate(objs) if o and o["ts"] > refund["ts"])
    lines.insert(at, json.dumps(refund))
    stream = tmp_path / "late.jsonl"
    stream.write_text("\n".join(lines) + "\n")
    return stream, "2024-07-06"


def test_a_refund_after_the_period_closed_still_counts(tmp_path: Path) -> None:
    """A refund 19 days after its order (refund horizon 20 days) comes after its day closed
    (~14 days after it): the day's and month's refund claims at the end equal the truth cut
    to them; the day was frozen, its refund claims only once the refund horizon passed."""
    stream, day = _with_late_refund(tmp_path, 19 * DAY_MS)
    settings = PeriodSettings()
    ledger = attach(Ledger(WEEK_MS, refund_horizon_ms=20 * DAY_MS, fold_sessions=True), settings)
    analyze_records(iter_records(stream), ledger)
    assert ledger.summarized_sessions > 0
    assert (DAY, day) in ledger.frozen_periods
    report = claim_periods(ledger, settings)["claims"]
    truth_cut = PeriodCut(split_lines(stream.read_text()))
    for kind, key in ((DAY, day), (MONTH, day[:7])):
        truth = truth_cut.claims(lambda ts, key=key, kind=kind: period_key(kind, ts) == key)
        for claim_id in REFUND_CLAIMS:
            mine = next(e for e in report[claim_id][kind] if e["period"] == key)
            assert close(mine["observed"], truth[claim_id]["observed"]), (key, claim_id)
    # The late refund moved the day's share: the check above could fail.
    plain = claim_periods(fed("xhs", Ledger()), settings)["claims"]["size_refund_share"]
    before = next(e for e in plain[DAY] if e["period"] == day)["observed"]
    after = next(e for e in report["size_refund_share"][DAY] if e["period"] == day)
    assert after["observed"] > before
    # Its refund horizon has passed by the stream's end: frozen in the second stage, after
    # the late refund.
    assert set(REFUND_CLAIMS) <= set(ledger.frozen_periods[(DAY, day)]) and after["frozen"]


def test_refund_claims_freeze_once_the_refund_horizon_passed_and_orders_wait() -> None:
    """Refund horizon 10 days: July's refund claims freeze before xhs ends, its orders fold
    only after, and every reported period's figures equal the keep-everything ledger's."""
    settings = PeriodSettings()
    horizon_ms = 10 * DAY_MS
    ledger = attach(Ledger(WEEK_MS, refund_horizon_ms=horizon_ms, fold_sessions=True), settings)
    fed("xhs", ledger)
    assert all(claim in ledger.frozen_periods[(MONTH, "2024-07")] for claim in REFUND_CLAIMS)
    assert ledger.order_fold.cases[0] + ledger.order_fold.cases[2] > 0
    folded = claim_periods(ledger, settings)["claims"]
    plain = claim_periods(fed("xhs", Ledger(refund_horizon_ms=horizon_ms)), settings)["claims"]
    for claim_id in REFUND_CLAIMS:
        for kind in (DAY, MONTH):
            for mine, theirs in zip(folded[claim_id][kind], plain[claim_id][kind], strict=True):
                assert mine["period"] == theirs["period"]
                for field in ("observed", "ci_low", "ci_high"):
                    assert close(mine[field], theirs[field]), (claim_id, mine["period"], field)


def test_without_a_refund_horizon_refund_claims_are_never_frozen() -> None:
    ledger = _folding("xhs", PeriodSettings())
    assert ledger.frozen_periods
    assert all(
        claim not in figures
        for figures in ledger.frozen_periods.values()
        for claim in REFUND_CLAIMS
    )


def test_orders_fold_once_a_lagging_membership_source_moves() -> None:
    """A worker's partition reads the groups horizon from its membership table, which may lag
    at a replay's end: with the table at 2024-07-20 no month closes and every order is held;
    once it has caught up (no record follows), the idle fold (`Ledger.fold_due`) freezes
    July in both stages and folds its orders the same day of the horizon (before: not until
    the next day of it, which no record brought)."""
    settings = PeriodSettings()
    records = list(iter_records(FIXTURES / "xhs.jsonl"))
    cutoff = cst_month_start("2024-07") + 19 * DAY_MS
    early, late = [], []
    for record in records:
        decoded = decode(record)
        if isinstance(decoded, GroupJoined | GroupLeft):
            (early if decoded.ts < cutoff else late).append(decoded)
    table = Ledger(WEEK_MS)
    for event in early:
        table.apply(event)
    ledger = attach(Ledger(WEEK_MS, refund_horizon_ms=10 * DAY_MS, fold_sessions=True), settings)
    ledger.membership_from = table
    analyze_records(iter(records), ledger)
    assert ledger.order_fold.cases[2] == 0 and (MONTH, "2024-07") not in ledger.frozen_periods
    for event in late:
        table.apply(event)
    assert ledger.fold_due()
    assert set(REFUND_CLAIMS) <= set(ledger.frozen_periods[(MONTH, "2024-07")])
    assert ledger.order_fold.cases[2] > 0
    assert not ledger.fold_due()  # nothing more to fold until something moves


@pytest.mark.skipif(not os.environ.get(LONG_ENV), reason=f"a quarter minute: set {LONG_ENV}=1")
def test_a_simulated_stream_of_four_months_with_a_refund_horizon(tmp_path: Path) -> None:
    """The 120-day stream with a 30-day refund horizon: orders fold, refund claims freeze in
    their second stage, and every reported day's and month's claim equals the truth cut."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=120)
    stream = tmp_path / "long.jsonl"
    write_lines(stream, generate(scenario, 3, 0.3).lines)
    settings = PeriodSettings()
    ledger = Ledger(WEEK_MS, refund_horizon_ms=30 * DAY_MS, fold_sessions=True)
    analyze_records(iter_records(stream), attach(ledger, settings))
    assert ledger.order_fold.cases[2] > 0
    compared = _days_and_months_equal_the_truth_cut(
        claim_periods(ledger, settings)["claims"], stream
    )
    assert any(claim_id in REFUND_CLAIMS and mine["frozen"] for claim_id, mine in compared)


def _partition_with_periods(part: list[Any], groups: Ledger, table: Any, seed: int) -> Ledger:
    """A worker's partition with the fold and the claims by period: its records jittered by
    up to 12 h (each source's order not kept), membership and refunds from every partition."""
    from tests.agents.core.test_order_fold import REFUND_HORIZON, WINDOW

    ledger = Ledger(WINDOW, refund_horizon_ms=REFUND_HORIZON, fold_sessions=True)
    attach(ledger, PeriodSettings())
    ledger.membership_from = groups
    ledger.refunds_from = table
    rng = random.Random(seed)
    jittered = sorted(
        (event for _topic, _key, event in part),
        key=lambda e: (0 if isinstance(e, Rejection) else e.ts) + rng.randrange(12 * 3_600_000),
    )
    for event in jittered:
        if isinstance(event, Rejection):
            ledger.reject(event.reason)
        else:
            ledger.apply(event)
    return ledger


def test_frozen_periods_of_partitions_merge_into_the_whole_streams_figures() -> None:
    """xhs split over 3 partitions by record key, each shuffled and folding with the claims by
    period (2-day window, 13-day refund horizon: sessions summarized, periods frozen in both
    stages, orders folded), merged as a worker's report and the global one merge them: every
    reported day and month has a figure (none `folded`), and every claim's figure equals the
    truth of the period's sub-stream to 1e-9; `price_dwell_association`, whose frozen parts
    are sketched (a `RankTable`: a day of few orders moved 0.043), within 0.1 of it. Without
    the parts, the closed periods with summarized sessions read `"folded": true`."""
    from tests.agents.core.test_order_fold import WINDOW, _folding, _refund_table

    stream = records("xhs")
    decoded = [event for _topic, _key, event in stream]
    groups = _folding([e for e in decoded if getattr(e, "type", "").startswith("group_")], WINDOW)
    parts = split(stream, 3)
    table = _refund_table(parts)
    ledgers = [
        _partition_with_periods(part, groups, table, seed) for seed, part in enumerate(parts)
    ]
    assert all(ledger.summarized_sessions > 0 and ledger.frozen_parts for ledger in ledgers)
    assert any(set(REFUND_CLAIMS) <= set(figures) for figures in ledgers[0].frozen_periods.values())
    restored = [load_state(dump_state(ledger, OperatorBoard()))[0] for ledger in ledgers]
    merged = merge_ledgers(restored)
    report = claim_periods(merged, PeriodSettings())["claims"]
    frozen_seen = 0
    for kind in (DAY, MONTH):
        keys = [entry["period"] for entry in report["live_aov"][kind]]
        assert len(keys) >= (30 if kind == DAY else 2)
        # Every month and every 10th day (each truth cut runs truth.py); every day with
        # LIVEPULSE_PERIODS_LONG=1.
        stride = 1 if kind == MONTH or os.environ.get(LONG_ENV) else 10
        for key in keys[::stride] + keys[-1:]:
            truth = cut("xhs").claims(lambda ts, key=key, kind=kind: period_key(kind, ts) == key)
            for claim_id, figures in report.items():
                mine = next(e for e in figures[kind] if e["period"] == key)
                assert not mine.get("folded"), (key, claim_id)
                frozen_seen += mine["frozen"]
                expected = truth[claim_id]["observed"]
                sketched = claim_id == "price_dwell_association" and expected is not None
                if sketched and mine["frozen"]:
                    assert abs(mine["observed"] - expected) <= 0.1, (key, mine, expected)
                else:
                    assert close(mine["observed"], expected), (key, claim_id)
    assert frozen_seen > 50
    # A partition that froze a day and dropped it (beyond its kept days) while the others keep
    # it: the merged day is left out, never the others' parts alone as the whole stream's.
    oldest = min(key for kind, key in restored[0].frozen_periods if kind == DAY)
    for kept in (restored[0].frozen_periods, restored[0].frozen_parts):
        del kept[(DAY, oldest)]
    restored[0].frozen_dropped[DAY] = oldest  # as `periods._prune` leaves it
    assert (DAY, oldest) in restored[1].frozen_periods
    assert (DAY, oldest) not in merge_ledgers(restored).frozen_periods
    # The same partitions without their parts (a snapshot version 8's frozen records): the
    # closed periods whose sessions are summarized have no figure.
    for ledger in restored:
        ledger.frozen_parts = {}
    bare = claim_periods(merge_ledgers(restored), PeriodSettings())["claims"]
    assert any(entry.get("folded") for entry in bare["live_aov"][MONTH])


def test_a_version_8_state_loads_with_frozen_figures_and_no_parts() -> None:
    """A snapshot of version 8 (frozen figures, no parts) loads: read alone its figures stand;
    merged with another partition its closed period is left out (no exact merge)."""
    ledger = Ledger(WEEK_MS, fold_sessions=True)
    figure = (0.5, 0.4, 0.6, "inconclusive", 10, 3)
    ledger.frozen_periods[(DAY, "2024-07-01")] = {"live_aov": figure}
    del ledger.frozen_parts, ledger.frozen_dropped  # as version 8 pickled it
    blob = dump_state(ledger, OperatorBoard())
    restored, _board = load_state(blob[:4] + bytes([8]) + blob[5:])
    assert restored.frozen_parts == {} and restored.frozen_dropped == {}
    assert merge_ledgers([restored]).frozen_periods == {(DAY, "2024-07-01"): {"live_aov": figure}}
    assert merge_ledgers([restored, Ledger(WEEK_MS)]).frozen_periods == {}


def test_an_order_fold_pass_walks_the_held_orders_only_when_some_can_fold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the claims by period the gate holds a month's orders until its refund claims
    freeze, so most of the daily order-fold passes can fold nothing: such a pass must not walk
    every held order into clusters (issue 17: ~10,000 held orders walked a day on the 150-day
    soak, a quarter of its CPU). Counted in `order_cluster` calls, not time: at most one walk
    of the held orders per pass that folds something (before: one per pass, 12,402 visits
    here for 447 orders and one pass that folded)."""
    visits = [0]
    folding_passes = [0]
    real_cluster = ledger_module.order_cluster
    real_fold = Ledger._fold_clusters

    def counted_cluster(*args: Any) -> tuple[str, str]:
        visits[0] += 1
        return real_cluster(*args)

    def counted_fold(self: Ledger, *args: Any) -> None:
        folding_passes[0] += 1
        real_fold(self, *args)

    monkeypatch.setattr(ledger_module, "order_cluster", counted_cluster)
    monkeypatch.setattr(Ledger, "_fold_clusters", counted_fold)
    ledger = attach(
        Ledger(WEEK_MS, refund_horizon_ms=10 * DAY_MS, fold_sessions=True), PeriodSettings()
    )
    fed("xhs", ledger)
    held_max = ledger.order_fold.orders + len(ledger.orders)  # every order the ledger paid
    assert folding_passes[0] >= 1 and ledger.order_fold.orders > 0
    assert visits[0] <= folding_passes[0] * held_max, (visits[0], folding_passes[0], held_max)


def test_the_gate_scans_the_held_facts_for_closed_periods_once_a_day_and_misses_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gate is asked by the summaries and by the order fold, each once a day of its
    horizon; the periods can close only when the closing horizon crosses a CST day start, so
    the scan of every held fact for the closed periods (`periods._found`) must run at most
    once per day of the stream, not once per asker (issue 17: 96 scans over 50 days of the
    150-day soak before, 44 after). And nothing it skipped was due: freezing again at the end
    freezes nothing new and changes no figure."""
    scans = [0]
    real_found = periods_module._found

    def counted_found(ledger: Ledger) -> dict[str, dict[str, int]]:
        scans[0] += 1
        return real_found(ledger)

    monkeypatch.setattr(periods_module, "_found", counted_found)
    settings = PeriodSettings()
    ledger = attach(Ledger(WEEK_MS, refund_horizon_ms=10 * DAY_MS, fold_sessions=True), settings)
    fed("xhs", ledger)
    stamps = []
    for line in (FIXTURES / "xhs.jsonl").read_text().splitlines():
        with contextlib.suppress(ValueError):  # the fixture's invalid lines
            record = json.loads(line)
            if isinstance(record, dict) and type(record.get("ts")) is int:
                stamps.append(record["ts"])
    days = (max(stamps) - min(stamps)) // DAY_MS + 2
    assert ledger.frozen_periods, "the fixture closes no period: the test shows nothing"
    assert scans[0] <= days, (scans[0], days)
    frozen = {key: dict(figures) for key, figures in ledger.frozen_periods.items()}
    periods_module.freeze_closed(ledger, settings)
    assert ledger.frozen_periods == frozen


def test_frozen_figures_are_finished_on_first_read_once_and_a_snapshot_before_carries_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Freezing a closed day keeps the parts and finishes no figure kept whole (issue 17: the
    per-user bootstrap intervals were ~4.3 us of the fold's ~25 us per record, finished at the
    freeze whether read or not). A snapshot taken before any read carries the parts; the
    restored ledger's report gives the keep-everything ledger's figures (observed, interval,
    verdict, n), and the observed values equal `truth.py` on the period's cut. Each figure is
    finished once: a second report finishes none of the frozen ones again."""
    finished = [0]

    def counting(claim_id: str) -> ClaimParts:
        real = periods_module.CLAIM_PARTS[claim_id]

        def finish(part: Any) -> Any:
            finished[0] += 1
            return real.finish(part)

        return dataclasses.replace(real, finish=finish)

    for claim_id in list(periods_module.CLAIM_PARTS):
        monkeypatch.setitem(periods_module.CLAIM_PARTS, claim_id, counting(claim_id))
    settings = PeriodSettings()
    horizon_ms = 10 * DAY_MS
    ledger = attach(Ledger(WEEK_MS, refund_horizon_ms=horizon_ms, fold_sessions=True), settings)
    fed("xhs", ledger)
    deferred = [
        figures.unfinished()
        for figures in ledger.frozen_periods.values()
        if isinstance(figures, periods_module.FrozenFigures)
    ]
    assert len(deferred) == len(ledger.frozen_periods)
    # The per-user claims and the refund claims (second stage) wait for a read.
    day = min(key for kind, key in ledger.frozen_periods if kind == DAY)
    waiting = ledger.frozen_periods[(DAY, day)]
    assert isinstance(waiting, periods_module.FrozenFigures)
    for claim_id in ("group_member_dwell", "group_spend_multiple", *REFUND_CLAIMS):
        assert claim_id in waiting and claim_id in waiting._parts
    unfinished = sum(deferred)
    restored, _board = load_state(dump_state(ledger, OperatorBoard()))
    assert sum(f.unfinished() for f in restored.frozen_periods.values()) == unfinished  # type: ignore[attr-defined]
    attach(restored, settings)
    finished[0] = 0
    first = claim_periods(restored, settings)["claims"]
    first_calls = finished[0]
    assert all(f.unfinished() == 0 for f in restored.frozen_periods.values())  # type: ignore[attr-defined]
    finished[0] = 0
    again = claim_periods(restored, settings)["claims"]
    # The second report finishes the open periods and the rolling horizon only.
    assert first_calls - finished[0] == unfinished
    assert again == first
    # The figures are today's: the keep-everything ledger's, and on the observed the truth's.
    plain = claim_periods(fed("xhs", Ledger(refund_horizon_ms=horizon_ms)), settings)["claims"]
    frozen_seen = 0
    for claim_id, figures in plain.items():
        for kind in (DAY, MONTH):
            for mine, theirs in zip(first[claim_id][kind], figures[kind], strict=True):
                assert mine["period"] == theirs["period"]
                frozen_seen += mine["frozen"]
                for field in ("observed", "ci_low", "ci_high"):
                    assert close(mine[field], theirs[field]), (claim_id, mine["period"], field)
                assert (mine["verdict"], mine["n"]) == (theirs["verdict"], theirs["n"])
    assert frozen_seen > 0
    # (The refund claims count refunds within the 10-day horizon here, which `truth.py`
    # does not: they are checked against the ledger with that horizon above.)
    for kind, key in [(DAY, day), (MONTH, "2024-07")]:
        truth = cut("xhs").claims(lambda ts, key=key, kind=kind: period_key(kind, ts) == key)
        for claim_id in set(first) - set(REFUND_CLAIMS):
            mine = next(e for e in first[claim_id][kind] if e["period"] == key)
            assert mine["frozen"], (claim_id, key)
            assert close(mine["observed"], truth[claim_id]["observed"]), (key, claim_id)


def test_a_version_10_state_loads_with_its_frozen_figures_finished() -> None:
    """Snapshot version 10 pickled the frozen figures as plain dicts: they load and are read
    as they are, and a refund stage frozen later adds its figures to them."""
    ledger = Ledger(WEEK_MS, fold_sessions=True)
    figure = (0.5, 0.4, 0.6, "inconclusive", 10, 3)
    ledger.frozen_periods[(DAY, "2024-07-01")] = {"live_aov": figure}
    blob = dump_state(ledger, OperatorBoard())
    restored, _board = load_state(blob[:4] + bytes([10]) + blob[5:])
    assert restored.frozen_periods == {(DAY, "2024-07-01"): {"live_aov": figure}}
    assert type(restored.frozen_periods[(DAY, "2024-07-01")]) is dict


def test_finishing_frozen_figures_within_a_budget_goes_newest_first_and_catches_up() -> None:
    """`finish_frozen` with a budget (the worker's, before a forked report) stops after the
    period that used it up: with none, after one period (the newest), and repeated calls
    finish the rest; every figure then equals a ledger's read directly."""
    ledger = _folding("xhs", PeriodSettings())
    waiting = {
        key: f.unfinished()
        for key, f in ledger.frozen_periods.items()
        if isinstance(f, periods_module.FrozenFigures) and f.unfinished()
    }
    assert len(waiting) > 2
    newest = max(waiting, key=lambda k: (k[1], k[0]))
    assert periods_module.finish_frozen(ledger, 0.0) == waiting[newest]
    left = [k for k, f in ledger.frozen_periods.items() if f.unfinished()]  # type: ignore[attr-defined]
    assert newest not in left and len(left) == len(waiting) - 1
    calls = 1
    while periods_module.finish_frozen(ledger, 0.0):
        calls += 1
    assert calls == len(waiting)
    fresh = _folding("xhs", PeriodSettings())
    assert {k: dict(f) for k, f in ledger.frozen_periods.items()} == {
        k: dict(f) for k, f in fresh.frozen_periods.items()
    }


def test_a_period_s_orders_from_the_gate_s_index_equal_those_written_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The period gate's index of the held orders (`HeldOrders`, issue 19) gives every
    period's sub-ledger the orders, refunds and stamps a scan of every held order gives,
    object for object and in the same order, at each freeze of xhs with a 10-day refund
    horizon (orders fold: the index is rebuilt from the fold's new list) and at the report."""
    original = periods_module.period_ledger
    stamps = periods_module._period_stamps
    seen = {"calls": 0, "lists": set()}

    def written_out(ledger: Ledger, call: Any, *args: Any) -> Any:
        gate, ledger.period_gate = ledger.period_gate, None
        try:
            return call(ledger, *args)
        finally:
            ledger.period_gate = gate

    def both(ledger: Ledger, span: periods_module.Span) -> Ledger:
        assert isinstance(ledger.period_gate, PeriodGate)
        sub = original(ledger, span)
        plain = written_out(ledger, original, span)
        assert [id(o) for o in sub.orders] == [id(o) for o in plain.orders]
        assert [id(r) for r in sub.refunds] == [id(r) for r in plain.refunds]
        assert sub.questions == plain.questions and sub.sessions == plain.sessions
        assert stamps(ledger) == written_out(ledger, stamps)
        seen["calls"] += 1
        seen["lists"].add(id(ledger.orders))
        return sub

    monkeypatch.setattr(periods_module, "period_ledger", both)
    settings = PeriodSettings()
    ledger = attach(Ledger(WEEK_MS, refund_horizon_ms=10 * DAY_MS, fold_sessions=True), settings)
    fed("xhs", ledger)
    assert ledger.order_fold.cases[0] + ledger.order_fold.cases[2] > 0  # orders folded
    claim_periods(ledger, settings)  # the report's periods: the rolling horizon's too
    assert seen["calls"] > 40 and len(seen["lists"]) > 1


def test_the_held_orders_index_follows_appends_and_a_list_emptied_and_refilled() -> None:
    """`HeldOrders.sync` reads only what was appended since, and rebuilds when the list it
    indexed was emptied and refilled in place (as long as before, or longer)."""
    ledger = fed("xhs", Ledger())
    orders = list(ledger.orders[:300])
    index = periods_module.HeldOrders()

    def by_day(held: periods_module.HeldOrders) -> dict[int, list[int]]:
        return {day: [id(o) for _p, o in entries] for day, entries in held.by_day.items()}

    index.sync(orders[:100])
    grown = orders[:100]
    index.sync(grown)
    grown += orders[100:200]
    index.sync(grown)
    whole = periods_module.HeldOrders().sync(grown)
    assert by_day(index) == by_day(whole) and index.ids == whole.ids
    assert index.sessionless == whole.sessionless
    grown[:] = orders[50:300]  # emptied and refilled: longer than before, other orders
    index.sync(grown)
    again = periods_module.HeldOrders().sync(grown)
    assert by_day(index) == by_day(again) and index.ids == again.ids
    assert {o.order_id for o in orders[:50]} - index.ids
