"""The live screen's cost (issue 18): the worker's throughput with the screen open against
without, side by side in one run, and the memory of the minute buckets per room.

    .venv/bin/python -m bench.screen [--events 200000] [--repeat 3] [--out bench/SCREEN.json]
        [--modes closed,open,report_poll,data_poll] [--baseline REF]

Throughput: the first N records of a simulator stream (`bench.data`) are preloaded into topics
of their own; each pass is a fresh `livepulse worker` (its own app id, so it reads them all
from the start) measured like (c) of `bench.run` (records / (last - first applied), from its
/status). Passes alternate: `closed` (nobody watches), `open` (a real headless Chromium, the
apt one driven by Playwright, shows /screen from the moment the worker answers: the page polls
/screen/data every second and renders it, on the same 2 cores), `data_poll` (a client fetching
/screen/data every second: the worker's side of it without the browser's CPU) and `report_poll`
(a client fetching /report every second: what the page did first, why it no longer does).
Staleness (`data_poll`, and `data_poll_baseline`: the same against a worker of the tree at git
`--baseline REF`, side by side): /status is read every 0.2 s while /screen/data is fetched
every second; a fetch is behind by the valid events the worker had applied then minus the
data's, and by the seconds since the worker first had applied more than the data shows; each
fetch's time is kept too, and each /status round trip (answered on the worker's event loop with
no build: how long the loop was held when it came).
Build cost: the same records in-process, split over 4 partitions by the contract's record
keys as the worker holds them; a page build as it was (merge the partitions, full operator
snapshot, screen snapshot), the merged one without the per-session figures and histograms,
and the incremental one (`agents.core.page.PageBuilder`, as the worker builds now) after each
further `--step` events (what a worker applies between two builds), interleaved.
Memory: a `ScreenState` fed the same records in-process; the deep size (sys.getsizeof over its
containers) of its minute buckets at the end, per room and per (session, minute) held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.page import PageBuilder
from agents.core.screen import MinuteCounts, ScreenState
from bench.data import dataset, preload
from bench.proc import broker_pid, machine
from bench.run import (
    POLL_S,
    Run,
    Sampler,
    _as_run,
    _end_offsets,
    _watch,
    baseline_tree,
    start_worker,
)
from bench.shared import delete_app_topics, summary
from schemas import Rejection, decode
from schemas.events import record_key
from streams.runtime.settings import Settings
from streams.runtime.topics import delete_run_topics
from streams.tools.drain import fetch
from streams.tools.replayer import read_lines

CHROMIUM = "/usr/bin/chromium"


class ReportPoller(threading.Thread):
    """GET a URL once a second: /report (as a page polling it would: the design the screen
    avoids), or /screen/data (the screen's worker-side cost without a browser's CPU)."""

    def __init__(self, url: str, status_url: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.stopped = url, threading.Event()
        self.status = None if status_url is None else StatusWatcher(status_url, self.stopped)
        #: Per fetch of /screen/data (with `status_url`): (events behind, seconds behind).
        self.behind: list[tuple[int, float]] = []
        #: Per new build the fetches saw (its `serial`): the worker's seconds building it.
        self.build_s: dict[int, float] = {}
        #: Per fetch: seconds from the request to the whole answer (a build included).
        self.fetch_s: list[float] = []

    def run(self) -> None:
        if self.status is not None:
            self.status.start()
        while not self.stopped.wait(1.0):
            with contextlib.suppress(OSError, ValueError):
                began = time.monotonic()
                body = fetch(self.url, timeout_s=120)
                self.fetch_s.append(time.monotonic() - began)
                if self.status is not None:
                    data = json.loads(body)
                    got = self.status.behind(int(data["events"]["valid"]))
                    if got is not None:
                        self.behind.append(got)
                    if "built_s" in data and "serial" in data:
                        self.build_s[int(data["serial"])] = float(data["built_s"])


class StatusWatcher(threading.Thread):
    """The worker's valid events over time, from /status every 0.2 s (its `events.valid`,
    what the screen's data counts: its `records` count duplicates and invalid records too,
    which made every fetch look behind by them and by the time the worker took to read
    them)."""

    def __init__(self, url: str, stopped: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stopped = url, stopped
        self.seen: list[tuple[float, int]] = []  # (monotonic s, valid events), growing
        #: Per /status fetch, its round trip: answered on the worker's event loop with no
        #: build, so how long the loop was held when it came (ingestion, collections).
        self.rtt_s: list[float] = []

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            with contextlib.suppress(OSError, ValueError):
                began = time.monotonic()
                status = json.loads(fetch(self.url, timeout_s=120))
                now = time.monotonic()
                self.rtt_s.append(now - began)
                self.seen.append((now, int(status["events"]["valid"])))

    def behind(self, valid: int) -> tuple[int, float] | None:
        """(events, seconds) a page showing `valid` events is behind the worker now (None
        before the worker has applied anything)."""
        seen, now = list(self.seen), time.monotonic()
        if not seen or seen[-1][1] == 0:
            return None
        applied = seen[-1][1]
        if valid >= applied:
            return 0, 0.0
        reached = next((t for t, applied_then in seen if applied_then > valid), seen[-1][0])
        return applied - valid, now - reached


def run_pass(
    settings: Settings, expect: int, log: Path, mode: str, baseline: Path | None = None
) -> Run:
    """One worker over the preloaded topics: `closed` (nobody watches), `open` (the screen in
    Chromium), `data_poll` (/screen/data fetched every second, no browser) or `report_poll`
    (/report fetched every second)."""
    worker, own = start_worker(settings, log, baseline if mode.endswith("_baseline") else None)
    assert worker.process is not None
    sampler = Sampler(worker.process.pid, broker_pid())
    browser: Any = None
    playwright: Any = None
    poller: ReportPoller | None = None
    screen_open = mode == "open"
    try:
        if mode in ("report_poll", "data_poll", "data_poll_baseline"):
            path = "/report" if mode == "report_poll" else "/screen/data"
            status_url = f"{worker.base_url}/status" if mode != "report_poll" else None
            poller = ReportPoller(f"{worker.base_url}{path}", status_url)
            poller.start()
        if screen_open:
            from playwright.sync_api import sync_playwright

            while True:  # open it as soon as the worker answers, as a watching operator would
                try:
                    worker.status()
                    break
                except (OSError, ValueError):
                    time.sleep(POLL_S)
            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(f"{worker.base_url}/screen")

        def done() -> dict[str, Any] | None:
            try:
                status = worker.status()
            except (OSError, ValueError):
                return None
            if int(status.get("records", 0)) >= expect and status.get("last_applied_at"):
                return {
                    "records": int(status["records"]),
                    "first": status["first_applied_at"],
                    "last": status["last_applied_at"],
                }
            return None

        result = _watch(worker.process, sampler, done, 3600)
        if screen_open:
            # The page kept up: it shows the worker's final count within a few refreshes.
            page.wait_for_function(
                "(v) => Number(document.body.dataset.valid) > 0", arg=None, timeout=10_000
            )
    finally:
        if poller is not None:
            poller.stopped.set()
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()
        worker.stop()
    delete_app_topics(settings, own.app_id)
    shutil.rmtree(own.data_dir, ignore_errors=True)
    run = _as_run(result, sampler)
    if poller is not None and poller.behind:
        STALENESS.setdefault(mode, []).extend(poller.behind)
        BUILDS.setdefault(mode, []).extend(poller.build_s.values())
        FETCHES.setdefault(mode, []).extend(poller.fetch_s)
        if poller.status is not None:
            STATUS_RTT.setdefault(mode, []).extend(poller.status.rtt_s)
    return run


#: Mode -> (events behind, seconds old) of every /screen/data fetched during its passes.
STALENESS: dict[str, list[tuple[int, float]]] = {}
#: Mode -> the worker's seconds per build of the data those fetches saw (one per build).
BUILDS: dict[str, list[float]] = {}
#: Mode -> seconds each /screen/data fetch took, and each /status fetch's round trip.
FETCHES: dict[str, list[float]] = {}
STATUS_RTT: dict[str, list[float]] = {}


def spread(values: list[float]) -> dict[str, float]:
    """Median, 90th and 99th percentiles and the largest of many single readings."""
    ranked = sorted(values)

    def at(q: float) -> float:
        return ranked[min(len(ranked) - 1, int(q * len(ranked)))]

    return {"median": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ranked[-1], "n": len(ranked)}


def build_cost(
    path: Path, repeat: int, settings: Settings, step: int, partitions: int = 4
) -> dict[str, Any]:
    """Seconds per page build over the file's records in `partitions` partitions, at the end
    of the stream: merged with every operator figure (as the page first built it), merged
    without the per-session figures and histograms, and incremental (`PageBuilder`) after
    `step` more events than its last build."""
    lines = list(read_lines(path))
    states = [(Ledger(settings.dedupe_window_ms), OperatorBoard()) for _ in range(partitions)]

    def feed(chunk: list[bytes]) -> None:
        for line in chunk:
            try:
                key = record_key(json.loads(line))
            except (ValueError, TypeError, AttributeError):
                key = ""
            ledger, board = states[zlib.crc32(key.encode()) % partitions]
            ingest(line, ledger, board)

    tail = step * repeat
    feed(lines[: len(lines) - tail])
    builder = PageBuilder()
    builder.build(states)  # the first build computes every session

    def merged(detail: bool) -> float:
        began = time.perf_counter()
        ledger = merge_ledgers([s[0] for s in states])
        board = merge_boards([s[1] for s in states])
        board.snapshot(ledger, detail=detail)
        board.screen.snapshot(ledger)
        return time.perf_counter() - began

    full: list[float] = []
    page: list[float] = []
    incremental: list[float] = []
    recomputed: list[float] = []
    for i in range(repeat):
        feed(lines[len(lines) - tail + i * step : len(lines) - tail + (i + 1) * step])
        began = time.perf_counter()
        builder.build(states)
        incremental.append(time.perf_counter() - began)
        recomputed.append(builder.recomputed)
        full.append(merged(True))
        page.append(merged(False))
    return {
        "partitions": partitions,
        "events": len(lines),
        "step_events": step,
        "sessions": sum(len(s[0].sessions) for s in states),
        "sessions_recomputed": summary(recomputed),
        "merged_full_s": summary(full),
        "merged_page_s": summary(page),
        "incremental_s": summary(incremental),
        "incremental_over_merged_full": summary(
            [n / f for n, f in zip(incremental, full, strict=True)]
        ),
    }


def deep_minutes_bytes(screen: ScreenState) -> int:
    """sys.getsizeof over the minute buckets: the dicts, the counts, their non-cached ints."""
    total = sys.getsizeof(screen.minutes)
    for minute, by_session in screen.minutes.items():
        total += sys.getsizeof(minute) + sys.getsizeof(by_session)
        for counts in by_session.values():
            total += sys.getsizeof(counts)
            for name in MinuteCounts.__slots__:
                value = getattr(counts, name)
                if not -5 <= value <= 256:  # small ints are shared
                    total += sys.getsizeof(value)
    return total  # session ids are the ledger's strings too: not counted


def minute_memory(path: Path) -> dict[str, Any]:
    """The minute buckets after feeding `path` (a dedup-free feed: every valid record)."""
    screen = ScreenState()
    rooms_of: dict[str, str] = {}
    for line in read_lines(path):
        event = decode(line)
        if isinstance(event, Rejection):
            continue
        screen.observe(event)
        if event.type == "session_started":
            rooms_of[event.session_id] = getattr(event, "room_id")  # noqa: B009
    held = {(m, sid) for m, by in screen.minutes.items() for sid in by}
    rooms = {rooms_of.get(sid, "?") for _m, sid in held}
    size = deep_minutes_bytes(screen)
    return {
        "minutes_kept": screen.retained_minutes,
        "rooms_in_last_hour": len(rooms),
        "session_minutes_held": len(held),
        "bytes": size,
        "bytes_per_room": size / len(rooms) if rooms else None,
        "bytes_per_session_minute": size / len(held) if held else None,
        "worst_case_bytes_per_room": (size / len(held) if held else 0) * screen.retained_minutes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screen", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--scenario", default="xhs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--step", type=int, default=5000, help="events between two incremental builds"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="git ref whose worker is the `*_baseline` modes' (e.g. data_poll_baseline)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/SCREEN.json"))
    parser.add_argument(
        "--modes",
        type=lambda text: text.split(","),
        default=["closed", "open", "report_poll"],
        help="contenders, interleaved (default closed,open,report_poll)",
    )
    args = parser.parse_args(argv)
    baseline = None if args.baseline is None else baseline_tree(args.baseline)
    if baseline is None and any(m.endswith("_baseline") for m in args.modes):
        parser.error("a *_baseline mode needs --baseline REF")
    path = dataset(args.scenario, args.seed, args.events)
    settings = Settings(bootstrap=args.bootstrap).model_copy(
        update={"topic_prefix": f"bench-screen-{uuid.uuid4().hex[:8]}."}
    )
    logs = Path(f"/tmp/livepulse-bench-screen-{uuid.uuid4().hex[:6]}")  # noqa: S108
    logs.mkdir(parents=True)
    preload(path, settings)
    expect = asyncio.run(_end_offsets(settings))
    print(f"bench.screen: {expect:,} records preloaded; logs in {logs}", flush=True)
    runs: dict[str, list[Run]] = {mode: [] for mode in args.modes}
    try:
        for i in range(args.repeat):
            for mode in args.modes:
                run = run_pass(settings, expect, logs / f"{mode}-{i}.log", mode, baseline)
                runs[mode].append(run)
                print(
                    f"bench.screen: screen {mode} pass {i + 1}/{args.repeat}: "
                    f"{run.rate:,.0f} records/s (CPU {run.cpu_s / run.seconds:.0%})",
                    flush=True,
                )
    finally:
        asyncio.run(delete_run_topics(settings))
    rates = {mode: summary([r.rate for r in rs]) for mode, rs in runs.items()}
    ratios = {
        f"{mode}_over_closed": summary(
            [r.rate / c.rate for r, c in zip(runs[mode], runs["closed"], strict=True)]
        )
        for mode in runs
        if mode != "closed" and "closed" in runs
    }
    results = {
        "machine": machine(),
        "records": expect,
        "dataset": str(path),
        "records_per_s": rates,
        "worker_cpu_share": {
            mode: summary([r.cpu_s / r.seconds for r in rs]) for mode, rs in runs.items()
        },
        "ratios": ratios,
        "baseline": args.baseline,
        "page_build": build_cost(path, args.repeat, settings, args.step),
        "data_staleness": {
            mode: {
                "fetches": len(seen),
                "events_behind": summary([float(b) for b, _s in seen]),
                "seconds_behind": summary([s for _b, s in seen]),
                "max_events_behind": max(b for b, _s in seen),
                "max_seconds_behind": max(s for _b, s in seen),
                "share_within_1s": sum(s <= 1.0 for _b, s in seen) / len(seen),
                "worker_build_s": summary(BUILDS.get(mode) or [0.0]),
                "fetch_s": spread(FETCHES.get(mode) or [0.0]),
                "status_rtt_s": spread(STATUS_RTT.get(mode) or [0.0]),
                "status_rtt_within_0_2s": (
                    sum(r <= 0.2 for r in STATUS_RTT.get(mode, [])) / len(STATUS_RTT[mode])
                    if STATUS_RTT.get(mode)
                    else None
                ),
            }
            for mode, seen in STALENESS.items()
        },
        "minute_buckets": minute_memory(path),
        "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
