"""The live screen in real headless Chromium, on a real worker fed by `livepulse replay --speedup`.

While the replay runs, the numbers on the page change and are those of the `/screen/data` the
worker served for the page's last refresh (read at the network level, not from the page); once
the worker has drained, `/screen/data` equals `/report`, and the page shows a `/report` fetched
by the test, whose counts are the fixture's truth file's. Switching room and language works and
is remembered, the rooms table sorts, the page logs no error and asks nothing of anyone but the
worker.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.tools.drain import fetch_json
from streams.tools.worker_process import WorkerProcess
from tests.support.cli import livepulse_path, user_env
from tests.support.live import FIXTURES, drain, fixture_truth, run_settings, running_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The overall figures the page shows as headline figures (screen.html's HEADLINE).
HEADLINE = (
    "viewers_current",
    "viewers_peak",
    "entries",
    "unique_viewers",
    "orders",
    "gmv_cny",
    "aov_cny",
    "conversion",
    "gpm_cny",
    "uv_value_cny",
    "refunds",
)
#: xhs spans ~60.7 days of event time: about 10.5 s of replay at this speed-up.
SPEEDUP = 500_000


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    settings = run_settings(
        kafka_bootstrap, prefix="screen", simulated_source=FIXTURES / "xhs.jsonl"
    )
    with running_worker(settings, tmp_path / "worker.log") as process:
        yield process


def same(got: str | None, want: Any) -> bool:
    """A `data-value` attribute against a report figure (the page writes JS numbers)."""
    if want is None:
        return got in ("", None)
    if got in ("", None):
        return False
    assert got is not None
    return math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=1e-12)


def shown(page: Any) -> dict[str, str | None]:
    """Every figure on the page: its `data-k` name -> its `data-value`, and its text."""
    values: dict[str, str | None] = page.evaluate(
        """() => {
          const out = {};
          document.querySelectorAll('[data-k]').forEach((el) => {
            out[el.dataset.k] = el.dataset.value;
            out[el.dataset.k + '#text'] = el.textContent;
          });
          out['#valid'] = document.body.dataset.valid;
          out['#tables-valid'] = document.body.dataset.tablesValid;
          const title = document.getElementById('sources-title');
          out['#sources-title'] = title ? title.innerText : null;
          return out;
        }"""
    )
    return values


def mismatches(
    values: dict[str, str | None], report: dict[str, Any], room: str | None
) -> list[str]:
    """Where the page's figures differ from a report's."""
    problems: list[str] = []
    operator, screen = report["operator"], report["screen"]

    def check(name: str, want: Any) -> None:
        if name not in values:
            problems.append(f"{name}: not on the page")
        elif not same(values[name], want):
            problems.append(f"{name}: page {values[name]!r} != report {want!r}")

    for key in HEADLINE:
        check(f"overall.{key}", operator["overall"][key])
    focus = operator["overall"] if room is None else operator["rooms"][room]
    for key in HEADLINE:
        check(f"focus.{key}", focus[key])
    for key in ("entries", "product_clicks", "orders"):
        check(f"funnel.{key}", focus[key])
    for room_id, figures in operator["rooms"].items():
        for key in ("entries", "orders", "gmv_cny", "conversion", "viewers_current"):
            check(f"room.{room_id}.{key}", figures[key])
    # A peak merged over partitions that is a lower bound shows its ceiling; an exact one none.
    rooms = ((f"room.{room_id}", figures) for room_id, figures in operator["rooms"].items())
    for name, figures in (("overall", operator["overall"]), ("focus", focus), *rooms):
        if "viewers_peak_ceiling" in figures:
            check(f"{name}.viewers_peak_ceiling", figures["viewers_peak_ceiling"])
        elif f"{name}.viewers_peak_ceiling" in values:
            problems.append(f"{name}.viewers_peak_ceiling: on the page, not in the report")
    curves = screen["minutes"]["overall" if room is None else "rooms"]
    curves = curves if room is None else curves[room]
    for key in ("viewers", "entries", "orders", "gmv_cny"):
        check(f"curve.{key}", curves[key][-1] if curves[key] else None)
    sources = screen["sources"]["overall"] if room is None else screen["sources"]["rooms"][room]
    for source, figures in sources.items():
        for key in ("entries", "viewers", "conversion", "gmv_cny"):
            check(f"source.{source}.{key}", figures[key])
    products = screen["products"]["overall" if room is None else "rooms"]
    products = products if room is None else products[room]
    for rank, line in enumerate(products["top"], start=1):
        for key in ("clicks", "orders", "units", "gmv_cny", "click_to_order"):
            check(f"product.{rank}.{key}", line[key])
    for claim_id, claim in report["claims"].items():
        check(f"claim.{claim_id}.observed", claim["observed"])
        if values.get(f"claim.{claim_id}.verdict") != claim["verdict"]:
            problems.append(f"claim.{claim_id}.verdict: not {claim['verdict']}")
    return problems


def test_screen_follows_the_worker_live(
    worker: WorkerProcess, tmp_path: Path, chromium: str
) -> None:
    from playwright.sync_api import Route, sync_playwright

    base = worker.base_url
    # events.valid -> the tables' as-of -> the /screen/data served with them (one state can be
    # served twice: its tables stale, then built once the state stops changing)
    served: dict[int, dict[int, dict[str, Any]]] = {}
    requests: list[str] = []
    errors: list[str] = []

    def keep_report(route: Route) -> None:
        response = route.fetch()
        report = orjson.loads(response.body())
        tables_valid = report["tables_events"]["valid"]
        served.setdefault(report["events"]["valid"], {})[tables_valid] = report
        route.fulfill(response=response)

    with contextlib.ExitStack() as stack, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.on("request", lambda request: requests.append(request.url))
            page.on(
                "console",
                lambda message: errors.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route(f"{base}/screen/data*", keep_report)
            page.goto(f"{base}/screen")
            page.click("#lang-en")
            replay_log = tmp_path / "replay.log"
            replay_err = stack.enter_context(replay_log.open("wb"))
            replay = subprocess.Popen(  # noqa: S603 (our own console script)
                [
                    livepulse_path(),
                    "replay",
                    str(FIXTURES / "xhs.jsonl"),
                    "--bootstrap",
                    worker.settings.bootstrap,
                    "--topic-prefix",
                    worker.settings.topic_prefix,
                    "--speedup",
                    str(SPEEDUP),
                ],
                env=user_env(),
                stdout=subprocess.DEVNULL,
                stderr=replay_err,
            )
            # While it runs: the figures change, and are those of the report served last.
            seen_valid: list[int] = []
            checked = tables_compared = 0
            deadline = time.monotonic() + 120
            while replay.poll() is None and time.monotonic() < deadline:
                page.wait_for_timeout(1500)
                values = shown(page)
                valid = int(values["#valid"] or -1)
                if valid <= 0:
                    continue
                assert valid in served, f"the page shows {valid} valid events, never served"
                # The sources and products tables are refreshed every few builds: the page
                # says their own as-of, and they are those served when the state was that.
                # (Read in the same call as the figures: the page may draw newer data between
                # two calls, as a CI run caught.)
                as_of = int(values["#tables-valid"] or -1)
                assert as_of in served[valid], (as_of, sorted(served[valid]))
                at_valid = served[valid][as_of]
                assert mismatches(values, at_valid, None) == []
                if as_of != valid:
                    assert as_of < valid
                    assert "as of" in (values["#sources-title"] or "")
                    then = served.get(as_of, {}).get(as_of)
                    if then is not None:
                        for key in ("sources", "products"):
                            assert at_valid["screen"][key] == then["screen"][key], key
                        tables_compared += 1
                seen_valid.append(valid)
                checked += 1
            assert replay.wait(timeout=60) == 0, replay_log.read_text("utf-8")
            assert checked >= 4, f"only {checked} refreshes checked during the replay"
            assert len(set(seen_valid)) >= 3, f"the figures hardly changed: {seen_valid}"
            assert seen_valid == sorted(seen_valid)
            print(f"tables older than the rest, compared with their as-of: {tables_compared}")

            # Drained: the page catches up within a refresh and equals a report fetched now,
            # which equals the fixture's truth file (the count of valid events).
            # (In a thread: Playwright's sync API holds this thread's event loop.)
            with ThreadPoolExecutor(1) as pool:
                pool.submit(drain, worker).result()
            report = fetch_json(f"{base}/report", timeout_s=60)
            valid_now = report["events"]["valid"]
            # Within a few refreshes, the figures and the claims are the latest.
            page.wait_for_function(
                "(v) => document.body.dataset.valid === v"
                " && document.body.dataset.tablesValid === v"
                " && document.getElementById('claims-note').textContent === ''",
                arg=str(valid_now),
                timeout=6000,
            )
            data = fetch_json(f"{base}/screen/data", timeout_s=60)
            for section in ("events", "screen", "claims", "simulated"):
                assert data[section] == report[section], section
            assert data["operator"] == {
                k: v
                for k, v in report["operator"].items()
                if k not in ("sessions", "sessions_folded_out", "histograms")
            }
            assert mismatches(shown(page), report, None) == []
            truth = fixture_truth("xhs")
            assert report["events"] == truth["events"]
            assert (
                report["operator"]["overall"]["entries"] == truth["operator"]["overall"]["entries"]
            )
            assert page.is_visible("#simulated")
            # The worker's index names the screen.
            assert "/screen" in fetch_json(f"{base}/", timeout_s=10)["views"]
            assert page.get_attribute("#scope", "data-scope") == "all"
            # English integers in full, with thousands separators.
            entries = report["operator"]["overall"]["entries"]
            assert shown(page)["overall.entries#text"] == f"{entries:,}"

            # A room: its figures, products and sources, chosen from the list.
            room = sorted(report["operator"]["rooms"])[-1]
            page.select_option("#level", f"room:{room}")
            assert mismatches(shown(page), report, room) == []
            assert room in page.inner_text("#products-title")

            # The rooms table sorts by a clicked column (descending, then ascending).
            page.click('#rooms-table th[data-sort="entries"]')
            order = page.eval_on_selector_all(
                "#rooms-table tbody tr", "rows => rows.map(r => r.dataset.room)"
            )
            rooms = report["operator"]["rooms"]
            assert order == sorted(rooms, key=lambda r: (-rooms[r]["entries"], r))
            page.click('#rooms-table th[data-sort="entries"]')
            order = page.eval_on_selector_all(
                "#rooms-table tbody tr", "rows => rows.map(r => r.dataset.room)"
            )
            assert order == sorted(rooms, key=lambda r: (rooms[r]["entries"], r))

            # Chinese: labels, CNY and 万; the choice (and the room) survive a reload.
            page.click("#lang-zh")
            assert page.inner_text("h1").strip().endswith("直播大屏")
            gmv = report["operator"]["overall"]["gmv_cny"]
            assert gmv >= 10_000
            assert shown(page)["overall.gmv_cny#text"] == f"¥{gmv / 10_000:.2f}万"
            page.reload()
            page.wait_for_function(
                "(v) => document.body.dataset.valid === v", arg=str(valid_now), timeout=5000
            )
            assert page.inner_text("h1").strip().endswith("直播大屏")
            assert page.input_value("#level") == f"room:{room}"
            page.click("#lang-en")
            assert page.inner_text("h1").strip().endswith("Live room screen")
            page.unroute_all(behavior="ignoreErrors")
        finally:
            browser.close()

    assert errors == []
    assert requests, "the page made no request"
    outside = [url for url in requests if not url.startswith(f"{base}/")]
    assert outside == [], f"requests beyond the worker: {outside}"


def test_with_two_workers_the_screen_shows_every_partition_merged(
    kafka_bootstrap: str, tmp_path: Path, chromium: str
) -> None:
    """Two workers of one app id share the partitions: the screen of either one says so in its
    banner and shows the merged figures of every partition, equal to `/report?scope=global`
    and to the fixture's truth file once the replay is drained."""
    import asyncio

    from playwright.sync_api import sync_playwright

    from streams.runtime.topics import all_topics, create_topics, delete_run_topics
    from tests.support.live import fixture_lines, replay_lines, truth_mismatches
    from tests.test_scaleout import FIXTURE, PARTITIONS, Fleet, merged_report

    settings = run_settings(kafka_bootstrap, "screen-scale", partitions=PARTITIONS)
    asyncio.run(create_topics(settings, all_topics(settings)))
    fleet = Fleet(settings, tmp_path)
    errors: list[str] = []
    try:
        for name in ("a", "b"):
            fleet.start(name)
        for worker in fleet.workers:
            worker.wait_ready(timeout_s=120)
        held = fleet.wait_balanced()
        assert len(held) == 2 and all(held.values()), held
        lines = fixture_lines(FIXTURE)
        replay_lines(settings, tmp_path / "all.jsonl", lines)
        # The changelog holds every partition's drained state.
        truth = fixture_truth(FIXTURE)
        assert truth_mismatches(merged_report(settings), truth, lines) == []
        base = fleet.workers[0].base_url
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                page.on(
                    "console",
                    lambda m: errors.append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"{base}/screen")
                page.click("#lang-en")
                # The worker's merged report refreshes every few seconds: wait for every event.
                valid = str(truth["events"]["valid"])
                page.wait_for_function(
                    "(v) => document.body.dataset.valid === v", arg=valid, timeout=60_000
                )
                assert page.get_attribute("#scope", "data-scope") == "global"
                assert "every partition" in page.inner_text("#scope")
                merged = fetch_json(f"{base}/report?scope=global", timeout_s=60)
                assert merged["events"]["valid"] == truth["events"]["valid"]
                assert truth_mismatches(merged, truth, lines) == []
                assert mismatches(shown(page), merged, None) == []
                room = sorted(merged["operator"]["rooms"])[0]
                page.select_option("#level", f"room:{room}")
                assert mismatches(shown(page), merged, room) == []
                # Each worker holds a share only: neither's own state is the whole.
                shares = [
                    fetch_json(f"{w.base_url}/screen/data", timeout_s=30) for w in fleet.workers
                ]
                assert all(0 < s["events"]["valid"] < int(valid) for s in shares)
            finally:
                browser.close()
    finally:
        fleet.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
    assert errors == []
