"""The live screen's /metrics families (streams/runtime/screen.py) against the batch reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.screen import ScreenCollector, page_html
from streams.tools.analyze import analyze_file
from streams.tools.simulator.operator_truth import SOURCES, screen_truth

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "xhs.jsonl"


def samples(report: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(ScreenCollector(lambda: report))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_sources_and_top_products_on_metrics_equal_the_reference() -> None:
    report = analyze_file(FIXTURE)
    got = samples(report)
    truth = screen_truth(FIXTURE.read_text("utf-8").splitlines())
    for source in SOURCES:
        figures = truth["sources"]["overall"][source]
        key = (("source", source),)
        assert got[("livepulse_source_entries_total", key)] == figures["entries"]
        assert got[("livepulse_source_viewers", key)] == figures["viewers"]
        assert got[("livepulse_source_gmv_cny_total", key)] == figures["gmv_cny"]
    top = truth["products"]["overall"]["top"]
    for rank, line in enumerate(top, start=1):
        assert got[("livepulse_top_product_gmv_cny", (("rank", str(rank)),))] == line["gmv_cny"]
    assert got[("livepulse_products", ())] == truth["products"]["overall"]["skus"]
    # Bounded labels only: the source enum and ranks, never a product id.
    labels = {value for _name, pairs in got for _label, value in pairs}
    assert labels <= set(SOURCES) | {str(rank) for rank in range(1, 21)}


def test_the_page_is_self_contained() -> None:
    page = page_html().decode("utf-8")
    for outside in ("http://", "https://", "//fonts", "<link", "src=", "@import", "url("):
        assert outside not in page, outside


def test_screen_feed_is_the_report_and_paces_its_rebuilds() -> None:
    from agents.core import Ledger, OperatorBoard, build_report
    from schemas import Rejection, decode_text
    from streams.runtime.screen import ScreenFeed

    ledger, board = Ledger(), OperatorBoard()
    for line in FIXTURE.read_text("utf-8").splitlines():
        event = decode_text(line)
        if isinstance(event, Rejection):
            ledger.reject(event.reason)
        elif ledger.apply(event):
            board.observe(event)
    report = build_report(ledger, board)
    asked: list[float] = []

    def cached_report(max_age_s: float) -> dict[str, Any]:
        asked.append(max_age_s)
        return report

    version = [0]
    feed = ScreenFeed(
        lambda: [(ledger, board)], lambda: version[0], cached_report, lambda: ledger.counts.valid
    )
    first = feed.get()
    for section in ("events", "screen", "claims"):
        assert first[section] == report[section], section
    # The operator section less what the page does not show.
    assert first["operator"] == {
        k: v
        for k, v in report["operator"].items()
        if k not in ("sessions", "sessions_folded_out", "histograms")
    }
    assert orjson.loads(feed.body())["operator"] == first["operator"]
    # A change within the interval: the same data; once it is over, rebuilt.
    feed.build_s = 0.05  # a quick build: the interval is the 0.5 s floor
    version[0] += 1
    assert feed.get() is first
    feed._built_at -= 0.5
    assert feed.get() is not first
    feed.report_build_s = 0.0
    # A slow build (2 s) spaces the rebuilds to 2 / 0.2 = 10 s, not 1. (This call builds the
    # tables the last build left out: the state has not changed since, `TABLES_EVERY`.)
    rebuilt = feed.get()
    assert rebuilt["tables_events"] == rebuilt["events"]
    feed.build_s = 2.0
    version[0] += 1
    feed._built_at -= 5.0
    assert feed.get() is rebuilt
    feed._built_at -= 5.0
    assert feed.get() is not rebuilt
    # The claims are asked for no fresher than the report's own build allows.
    feed.report_build_s, feed._report_valid = 3.0, ledger.counts.valid
    feed.get()
    assert asked[-1] == 30.0
    # ... scaled by the growth of the state since that build (twice the events: twice as long).
    feed._report_valid = ledger.counts.valid // 2
    feed.get()
    assert asked[-1] == pytest.approx(60.0, rel=1e-3)
    # A report built in a forked child: the call returns at once, the child's build time
    # paces the claims (before, the call's microseconds did: the claims were rebuilt every
    # 2 s, a child building them half the time next to the worker).
    child_build_s = [0.0]
    forked = ScreenFeed(
        lambda: [(ledger, board)],
        lambda: version[0],
        cached_report,
        lambda: ledger.counts.valid,
        report_build_s=lambda: child_build_s[0],
    )
    forked.get()
    assert asked[-1] == 2.0  # no build known yet: the floor
    child_build_s[0] = 4.0
    forked.get()  # learns the child's build
    forked.get()
    assert asked[-1] == pytest.approx(40.0)


def test_screen_feed_rebuilds_after_a_build_at_the_very_start() -> None:
    """A page opened before the events flow: its first build sees a handful of events; when
    200,000 have come, the next refresh is still at most the interval away (it was minutes:
    the last build's cost scaled by the events' growth)."""
    from agents.core import Ledger, OperatorBoard
    from schemas import decode_text
    from streams.runtime.screen import ScreenFeed

    ledger, board = Ledger(), OperatorBoard()
    valid = [1]
    version = [0]
    feed = ScreenFeed(
        lambda: [(ledger, board)],
        lambda: version[0],
        lambda _age: {"claims": {}, "events": ledger.counts.as_dict()},
        lambda: valid[0],
    )
    first = feed.get()
    feed.build_s = 0.002
    valid[0], version[0] = 200_000, 1
    line = FIXTURE.read_text("utf-8").splitlines()[0]
    event = decode_text(line)
    assert ledger.apply(event)  # type: ignore[arg-type]
    board.observe(event)  # type: ignore[arg-type]
    feed._built_at -= feed.interval_s
    assert feed.get()["events"]["valid"] == 1 != first["events"]["valid"]


def test_screen_feed_rebuilds_before_the_data_is_a_second_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a page fetches, the data is rebuilt before what is served is over a second old
    (`max_age_s` less `AGE_MARGIN_S`), even when the share (a fifth of the time at the
    median build's cost) would wait longer; never more than `age_share` of the time, and a
    build that cannot keep a second (slower than that) is paced by the share alone. Data
    of a state that did not change is as of now, however long ago it was built."""
    from streams.runtime.screen import AGE_MARGIN_S, ScreenFeed

    version = [0]
    report: dict[str, Any] = {"claims": {}, "events": {}}
    feed = ScreenFeed(lambda: [], lambda: version[0], lambda _age: report, lambda: 0)
    monkeypatch.setattr(feed, "record_build", lambda _seconds: None)  # `build_s` as set

    def aged(seconds: float) -> None:  # the last build began and ended `seconds` ago
        feed._read_at -= seconds
        feed._built_at -= seconds

    first = feed.get()
    feed.build_s = 0.3  # the share waits 0.3 / 0.2 = 1.5 s
    version[0] += 1
    aged(0.5)
    assert feed.get() is first  # 0.5 s old: served as it is
    aged(feed.max_age_s - AGE_MARGIN_S - 0.5)
    second = feed.get()
    assert second is not first and feed.age_builds == 1  # rebuilt by its age
    # Unchanged since: however old the build, the data is the state's as of the last call.
    aged(1.0)
    assert feed.get() is second
    version[0] += 1
    assert feed.get() is second  # as of the previous call: not yet old
    # At most `age_share` (half) of the time: a 0.6 s build waits 1.2 s after the last.
    feed.build_s = 0.6
    aged(0.0)
    feed._read_at -= 1.0
    assert feed.get() is second
    aged(0.2)
    third = feed.get()
    assert third is not second and feed.age_builds == 2
    # A build slower than the age it must keep: the share alone (0.9 / 0.2 = 4.5 s).
    feed.build_s = 0.9
    version[0] += 1
    aged(4.0)
    assert feed.get() is third
    aged(0.5)
    assert feed.get() is not third and feed.age_builds == 2


@pytest.mark.parametrize("cheap_under_s", [0.0, 3600.0])
def test_screen_feed_refreshes_the_tables_every_few_builds_with_their_as_of(
    cheap_under_s: float,
) -> None:
    """The sources and products tables are computed by one build in `TABLES_EVERY` while
    builds are costly (a build under `tables_always_under_s` computes them: here never, then
    always); the others serve the last ones with that build's events and time
    (`tables_events`, `tables_at`), which are then the tables of `build_report` over the state
    of those events; once the state stops changing the next fetch gets them as of now, equal
    to the report's."""
    from agents.core import Ledger, OperatorBoard, build_report
    from schemas import Rejection, decode_text
    from streams.runtime.screen import TABLES_EVERY, ScreenFeed

    ledger, board = Ledger(), OperatorBoard()
    version = [0]
    feed = ScreenFeed(
        lambda: [(ledger, board)],
        lambda: version[0],
        lambda _age: {"claims": {}, "events": {}},
        lambda: ledger.counts.valid,
        tables_always_under_s=cheap_under_s,
    )
    lines = FIXTURE.read_text("utf-8").splitlines()
    chunk = len(lines) // (3 * TABLES_EVERY)
    tables_then: dict[int, dict[str, Any]] = {}  # valid events -> the report's tables then
    stale = 0
    for start in range(0, len(lines), chunk):
        for line in lines[start : start + chunk]:
            event = decode_text(line)
            if isinstance(event, Rejection):
                ledger.reject(event.reason)
            elif ledger.apply(event):
                board.observe(event)
        version[0] += 1
        feed._built_at -= 60.0  # due
        report = build_report(ledger, board)
        tables_then[ledger.counts.valid] = {k: report["screen"][k] for k in ("sources", "products")}
        got = feed.get()
        assert got["events"] == report["events"]
        assert got["screen"]["minutes"] == report["screen"]["minutes"]  # as of now
        as_of = got["tables_events"]["valid"]
        for key, value in tables_then[as_of].items():
            assert got["screen"][key] == value, key
        stale += as_of != ledger.counts.valid
    if cheap_under_s:  # every build is "cheap": the tables are always current
        assert stale == 0
    else:
        assert stale >= 2 * (len(tables_then) // TABLES_EVERY)
    # The state stopped changing: the next fetch builds the tables now, at once (no pacing).
    quiet = feed.get()
    assert quiet["tables_events"] == quiet["events"]
    report = build_report(ledger, board)
    assert quiet["screen"] == report["screen"]


def test_one_slow_build_does_not_hold_the_page() -> None:
    """The rebuilds are paced by the median of the last five builds' costs: one build held up
    (1 s among 0.03 s ones: a collection of the oldest generation at 1,000,000 events) keeps
    the interval at its floor; builds that stay slow space them (2 / 0.2 = 10 s)."""
    from streams.runtime.screen import ScreenFeed

    feed = ScreenFeed(lambda: [], lambda: 0, lambda _age: {}, lambda: 0)
    for seconds in (0.03, 0.03, 1.0):
        feed.record_build(seconds)
    assert feed.build_s == 0.03
    for seconds in (2.0, 2.0, 2.0):
        feed.record_build(seconds)
    assert feed.build_s == 2.0
