"""The report built off the event loop (streams/runtime/web.py `ReportCache(forked=True)`): in
a forked child, on the state as it was at the fork, while the loop goes on; labelled with its
age; `fresh()` exact as of the call."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import streams.runtime.forkdump as forkdump
from agents.core import Ledger
from agents.core.operator import OperatorBoard
from agents.core.periods import (
    FrozenFigures,
    PeriodSettings,
    attach,
    finish_frozen,
    with_periods,
)
from agents.core.report import build_report
from streams.runtime.web import ReportCache
from streams.tools.analyze import analyze_records, iter_records

pytestmark = pytest.mark.skipif(not forkdump.CAN_FORK, reason="no os.fork on this platform")

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "impulse.jsonl"
JSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class _State:
    """A ledger and board fed from the fixture in steps, with a version like `LiveState`'s."""

    def __init__(self) -> None:
        self.lines = list(iter_records(FIXTURE))
        self.ledger, self.board = Ledger(), OperatorBoard()
        self.fed = 0
        self.version = 0

    def feed(self, n: int) -> None:
        analyze_records(iter(self.lines[self.fed : self.fed + n]), self.ledger, self.board)
        self.fed += n
        self.version += 1

    def cache(self, build: Any = build_report) -> ReportCache:
        return ReportCache(
            lambda: (self.ledger, self.board),
            lambda: self.version,
            build,
            forked=True,
            events=lambda: self.ledger.counts.valid,
        )


def _same_json(report: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Equal as served (the child's report comes back through JSON: keys become strings)."""
    report = {k: v for k, v in report.items() if k != "as_of"}
    return orjson.dumps(report, option=JSON | orjson.OPT_SORT_KEYS) == orjson.dumps(
        expected, option=JSON | orjson.OPT_SORT_KEYS
    )


async def test_the_report_is_built_in_a_child_and_equals_the_in_process_one() -> None:
    state = _State()
    state.feed(3000)
    parent = os.getpid()

    def build(ledger: Ledger, board: OperatorBoard | None) -> dict[str, Any]:
        return {**build_report(ledger, board), "built_by": os.getpid()}

    report = await state.cache(build).fresh()
    assert report["built_by"] != parent
    report.pop("built_by")
    assert _same_json(report, build_report(state.ledger, state.board))
    as_of = report["as_of"]
    assert as_of["current"] is True and as_of["events_since"] == 0
    assert as_of["events"] == state.ledger.counts.valid > 0


async def test_the_event_loop_goes_on_while_the_report_builds() -> None:
    """A build that takes a second (a sleep in the child) holds the loop for the fork only: a
    task ticking every 10 ms meanwhile never waits long. In-process (the build before this
    change) the loop stops for the whole second."""
    state = _State()
    state.feed(500)

    def slow(ledger: Ledger, board: OperatorBoard | None) -> dict[str, Any]:
        time.sleep(1.0)
        return build_report(ledger, board)

    async def longest_gap(until: asyncio.Future[Any]) -> float:
        longest, last = 0.0, time.monotonic()
        while not until.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest, last = max(longest, now - last), now
        return longest

    forked = asyncio.ensure_future(state.cache(slow).fresh())
    gap = await longest_gap(forked)
    assert forked.result()["as_of"]["build_s"] >= 1.0
    assert gap < 0.5, f"the loop stalled {gap:.3f} s while the report was built in a child"

    in_process = ReportCache(lambda: (state.ledger, state.board), lambda: state.version, slow)
    loop = asyncio.get_running_loop()
    built = loop.create_future()
    loop.call_soon(lambda: built.set_result(in_process.get()))
    assert await longest_gap(built) >= 0.9  # what the forked build avoids


async def test_get_serves_the_newest_report_labelled_and_fresh_waits_for_the_state_now() -> None:
    state = _State()
    state.feed(2000)
    cache = state.cache()
    first = await cache.fresh()
    events_then = first["as_of"]["events"]
    state.feed(2000)  # the state moves on
    newest = cache.get(max_age_s=0.0)  # never builds here: starts one in the background
    assert newest["as_of"]["events"] == events_then
    assert newest["as_of"]["current"] is False
    assert newest["as_of"]["events_since"] == state.ledger.counts.valid - events_then > 0
    assert 0 <= cache.age_s() < 60 and "age_s" not in newest["as_of"]  # two reads are equal
    state.feed(2000)  # moves on again while that build runs: fresh() waits for the next one
    now = await cache.fresh()
    assert now["as_of"]["events"] == state.ledger.counts.valid
    assert now["as_of"]["current"] is True
    assert _same_json(now, build_report(state.ledger, state.board))
    assert cache.builds in (2, 3)  # the scrape-started one only if the last build was long ago


async def test_a_build_the_child_fails_is_done_in_process_for_the_waiting_request() -> None:
    state = _State()
    state.feed(1000)
    parent = os.getpid()

    def fails_in_a_child(ledger: Ledger, board: OperatorBoard | None) -> dict[str, Any]:
        if os.getpid() != parent:
            raise RuntimeError("child failure")
        return build_report(ledger, board)

    cache = state.cache(fails_in_a_child)
    report = await cache.fresh()
    assert cache.failures == 1
    assert _same_json(report, build_report(state.ledger, state.board))


async def test_before_the_first_build_get_says_so() -> None:
    state = _State()
    state.feed(100)
    cache = state.cache()
    pending = cache.get()
    assert pending["claims"] == {} and pending["as_of"]["pending"] is True
    await cache.first()
    assert cache.get()["as_of"]["current"] is True


def test_without_a_running_loop_get_builds_in_process() -> None:
    state = _State()
    state.feed(100)
    report = state.cache().get()
    assert _same_json(report, build_report(state.ledger, state.board))


async def test_frozen_figures_are_finished_in_the_parent_once_not_in_every_child() -> None:
    """A forked child cannot keep the frozen figures it finishes (`periods.FrozenFigures`):
    the worker finishes them in the parent before the fork (`before_fork`), so each is
    finished once, and the child's report holds the figures the parent keeps (equal, as
    served, to a report built in-process from a ledger never read before)."""

    xhs = FIXTURE.with_name("xhs.jsonl")
    settings = PeriodSettings()

    def folded() -> Ledger:
        ledger = attach(Ledger(7 * 86_400_000, fold_sessions=True), settings)
        return analyze_records(iter_records(xhs), ledger)

    ledger, board = folded(), OperatorBoard()

    def unfinished() -> int:
        return sum(
            f.unfinished() for f in ledger.frozen_periods.values() if isinstance(f, FrozenFigures)
        )

    assert unfinished() > 0
    calls = []

    def before() -> None:
        calls.append(finish_frozen(ledger))

    cache = ReportCache(
        lambda: (ledger, board),
        lambda: 1,
        lambda led, brd: with_periods(build_report(led, brd), led, settings),
        forked=True,
        before_fork=before,
    )
    report = await cache.fresh()
    assert calls and calls[0] > 0 and unfinished() == 0
    fresh = folded()
    expected = with_periods(build_report(fresh, OperatorBoard()), fresh, settings)
    assert _same_json(report, expected)
