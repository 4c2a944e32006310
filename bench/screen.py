"""The live screen's cost (issue 18): the worker's throughput with the screen open against
without, side by side in one run, and the memory of the minute buckets per room.

    .venv/bin/python -m bench.screen [--events 200000] [--repeat 3] [--out bench/SCREEN.json]

Throughput: the first N records of a simulator stream (`bench.data`) are preloaded into topics
of their own; each pass is a fresh `livepulse worker` (its own app id, so it reads them all
from the start) measured like (c) of `bench.run` (records / (last - first applied), from its
/status). Passes alternate: `closed` (nobody watches), `open` (a real headless Chromium, the
apt one driven by Playwright, shows /screen from the moment the worker answers: the page polls
/screen/data every second and renders it, on the same 2 cores), `data_poll` (a client fetching
/screen/data every second: the worker's side of it without the browser's CPU) and `report_poll`
(a client fetching /report every second: what the page did first, why it no longer does).
Staleness (`data_poll`): each /screen/data fetched is compared with the worker's /status right
after: events the data is behind (status records - data's valid events) and seconds (the
data's age, now - its `built_at`). Build cost: the same records in-process, split over 4
partitions by the contract's record keys as the worker holds them; one page build (merge the
partitions, the operator and screen sections) as it was (the full operator snapshot, per-session
figures and histograms included) against as it is (`detail=False`), interleaved.
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
from agents.core.screen import MinuteCounts, ScreenState
from bench.data import dataset, preload
from bench.proc import broker_pid, machine
from bench.run import POLL_S, Run, Sampler, _as_run, _end_offsets, _watch, start_worker
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
        self.status_url = status_url
        #: Per fetch of /screen/data (with `status_url`): (events behind, seconds old).
        self.behind: list[tuple[int, float]] = []

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            with contextlib.suppress(OSError, ValueError):
                body = fetch(self.url, timeout_s=120)
                if self.status_url is not None:
                    data = json.loads(body)
                    status = json.loads(fetch(self.status_url, timeout_s=120))
                    behind = int(status.get("records", 0)) - int(data["events"]["valid"])
                    self.behind.append((max(0, behind), time.time() - data["built_at"]))


def run_pass(settings: Settings, expect: int, log: Path, mode: str) -> Run:
    """One worker over the preloaded topics: `closed` (nobody watches), `open` (the screen in
    Chromium), `data_poll` (/screen/data fetched every second, no browser) or `report_poll`
    (/report fetched every second)."""
    worker, own = start_worker(settings, log)
    assert worker.process is not None
    sampler = Sampler(worker.process.pid, broker_pid())
    browser: Any = None
    playwright: Any = None
    poller: ReportPoller | None = None
    screen_open = mode == "open"
    try:
        if mode in ("report_poll", "data_poll"):
            path = "/report" if mode == "report_poll" else "/screen/data"
            status_url = f"{worker.base_url}/status" if mode == "data_poll" else None
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
    return run


#: Mode -> (events behind, seconds old) of every /screen/data fetched during its passes.
STALENESS: dict[str, list[tuple[int, float]]] = {}


def build_cost(path: Path, repeat: int, settings: Settings, partitions: int = 4) -> dict[str, Any]:
    """Seconds per page build over the file's records in `partitions` partitions: the full
    operator snapshot (as the page built it before) against the page's (`detail=False`)."""
    states = [(Ledger(settings.dedupe_window_ms), OperatorBoard()) for _ in range(partitions)]
    for line in read_lines(path):
        try:
            key = record_key(json.loads(line))
        except (ValueError, TypeError, AttributeError):
            key = ""
        ledger, board = states[zlib.crc32(key.encode()) % partitions]
        ingest(line, ledger, board)

    def build(detail: bool) -> float:
        began = time.perf_counter()
        ledger = merge_ledgers([s[0] for s in states])
        board = merge_boards([s[1] for s in states])
        board.snapshot(ledger, detail=detail)
        board.screen.snapshot(ledger)
        return time.perf_counter() - began

    full: list[float] = []
    page: list[float] = []
    for _ in range(repeat):
        full.append(build(True))
        page.append(build(False))
    return {
        "partitions": partitions,
        "full_s": summary(full),
        "page_s": summary(page),
        "page_over_full": summary([p / f for p, f in zip(page, full, strict=True)]),
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
    parser.add_argument("--out", type=Path, default=Path("bench/SCREEN.json"))
    parser.add_argument(
        "--modes",
        type=lambda text: text.split(","),
        default=["closed", "open", "report_poll"],
        help="contenders, interleaved (default closed,open,report_poll)",
    )
    args = parser.parse_args(argv)
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
                run = run_pass(settings, expect, logs / f"{mode}-{i}.log", mode)
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
        "page_build": build_cost(path, args.repeat, settings),
        "data_staleness": {
            mode: {
                "fetches": len(seen),
                "events_behind": summary([float(b) for b, _s in seen]),
                "seconds_old": summary([s for _b, s in seen]),
                "max_events_behind": max(b for b, _s in seen),
                "max_seconds_old": max(s for _b, s in seen),
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
