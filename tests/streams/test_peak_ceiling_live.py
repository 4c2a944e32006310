"""A level's merged peak viewers that is a lower bound carries its ceiling from a worker's
partitions to the live screen (`/screen/data`, `agents.core.page`) and to Prometheus
(`livepulse_viewers_peak_ceiling` on /metrics) as the report gives it (issue 17, Session 19).

A worker over 3 partitions with the session fold, a 3-day board horizon and 8 settled runs
kept a level (`LIVEPULSE_BOARD_RUNS_KEPT`, 4,096 by default), fed the xhs fixture: its
partitions drop minutes from their kept runs, so merged peaks are bounds. Every bounded
level's ceiling is at least the truth's peak (and its peak at most it), the screen's equal to
the report's, and /metrics has the gauge for exactly the top-N levels that have one."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.tools.drain import fetch_json
from streams.tools.worker_process import WorkerProcess
from tests.streams.test_screen_browser import mismatches, shown
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_operator_truth_folding,
    fold_settings,
    replay_lines,
    report_of,
    run_topics,
    started_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY_S = 86_400
#: The metric's `level` label of each report section.
LABELS = {"overall": "overall", "merchants": "merchant", "rooms": "room"}


def _levels(operator: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(section, id) -> figures, the overall as ("overall", "all") as /metrics labels it."""
    out = {("overall", "all"): operator["overall"]}
    for kind in ("merchants", "rooms"):
        out.update({(kind, level_id): f for level_id, f in operator[kind].items()})
    return out


def _bounded_report(worker: WorkerProcess, timeout_s: float = 90) -> dict[str, Any]:
    """The worker's settled /report once some level's peak is bounded (a summary waits for
    the membership table's idle groups partitions, `groups_idle_s`, after the drain)."""
    drain(worker, timeout_s=120)
    deadline = time.monotonic() + timeout_s
    while True:
        report = report_of(worker)
        bounded = report["retention"].get("board_peaks_bounded", 0)
        if (bounded and report["as_of"].get("current")) or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def _screen_in_chromium(worker: WorkerProcess, chromium: str, valid: int) -> dict[str, Any]:
    """The live screen's figures (`data-k` -> `data-value`) in headless Chromium, once it
    shows the state of `valid` events (its tables too)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{worker.base_url}/screen")
            page.click("#lang-en")
            page.wait_for_function(
                "(v) => document.body.dataset.valid === v"
                " && document.body.dataset.tablesValid === v",
                arg=str(valid),
                timeout=30_000,
            )
            return shown(page)
        finally:
            browser.close()


def test_a_bounded_peaks_ceiling_on_the_screen_and_in_prometheus(
    kafka_bootstrap: str, tmp_path: Path, chromium: str
) -> None:
    name = "xhs"
    settings = fold_settings(
        kafka_bootstrap, "peakceil", 3, board_horizon_days=3, board_runs_kept=8
    )
    truth = _levels(fixture_operator_truth_folding(name, settings.dedupe_window_s * 1000))
    with run_topics(settings):
        replay_lines(settings, tmp_path / f"{name}.jsonl", fixture_lines(name))
        with started_worker(settings, tmp_path / "worker.log") as worker:
            report = _bounded_report(worker)
            # The same state: the report is settled (`as_of.current`) and nothing comes.
            screen = fetch_json(f"{worker.base_url}/screen/data", timeout_s=60)
            with urllib.request.urlopen(f"{worker.base_url}/metrics", timeout=60) as response:
                scraped = response.read().decode()
            shown_values = _screen_in_chromium(worker, chromium, report["events"]["valid"])
    operator = _levels(report["operator"])
    ceilings = {
        key: (f["viewers_peak"], f["viewers_peak_ceiling"])
        for key, f in operator.items()
        if "viewers_peak_ceiling" in f
    }
    assert ceilings, "no level bounded: the test no longer shows the ceiling"
    found = [(key, *pair, truth[key]["viewers_peak"]) for key, pair in ceilings.items()]
    print(f"bounded levels (peak, ceiling, truth's peak): {found}")
    for key, (peak, ceiling) in ceilings.items():
        want = truth[key]["viewers_peak"]
        assert peak <= want <= ceiling and peak < ceiling, key
    # The live screen (the page built over the partitions unmerged) gives every level the
    # report's peak and ceiling, and a ceiling to none other.
    for key, figures in _levels(screen["operator"]).items():
        assert figures["viewers_peak"] == operator[key]["viewers_peak"], key
        assert figures.get("viewers_peak_ceiling") == operator[key].get("viewers_peak_ceiling")
    # The page in Chromium shows each bounded level's ceiling (the headline's and the rooms
    # table's) as the screen's data has it, and none for an exact peak.
    assert mismatches(shown_values, screen, None) == []
    assert "overall.viewers_peak_ceiling" in shown_values or any(
        k.startswith("room.") and k.endswith(".viewers_peak_ceiling") for k in shown_values
    )
    # /metrics: the gauge beside `livepulse_viewers_peak`, with its labels, for each labelled
    # level (overall and the top N, here every one of xhs's) that has a ceiling; none other.
    samples = {
        (s.labels["level"], s.labels["id"]): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "livepulse_viewers_peak_ceiling"
    }
    peaks = {
        (s.labels["level"], s.labels["id"])
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "livepulse_viewers_peak"
    }
    expected = {
        (LABELS[kind], level_id): ceiling
        for (kind, level_id), (_peak, ceiling) in ceilings.items()
        if (LABELS[kind], level_id) in peaks
    }
    assert ("overall", "all") in peaks and expected
    assert samples == expected
    assert not any(level_id == "other" for _level, level_id in samples)
