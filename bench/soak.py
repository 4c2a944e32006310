"""Soak of the metric core over a long simulated stream: state size against event time.

Generates a scenario stretched to `--days` of event time (`streams.tools.simulator`), computes
its truth with the independent batch reference (`truth.py`), then feeds the lines in order
through decode -> `Ledger.apply` -> `OperatorBoard.observe` (the worker's core, no broker),
and every `--sample-days` days of event time samples the process RSS, the snapshot bytes
(`persist.dump_state`, what the worker writes to its changelog), the ids the dedupe set holds
and the throughput of the days since the last sample (dump time excluded). At the end the
report's claims and cumulative operator figures are compared with the truth (1e-9; the
sketched figures, `reply_latency`'s p50/p95 once questions fold, within the sketch's 1%).

    python -m bench.soak --days 150 --scale 4 --window-days 7 --out bench/soak-7d.json

`--window-days 0` keeps every id for ever (the ledger before issue 17), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import FoldedPresence
from agents.core.persist import dump_state
from agents.core.sketch import RELATIVE_ACCURACY
from bench.proc import rss_bytes
from schemas import Rejection, decode
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.drain import fetch_json, wait_drained
from streams.tools.replayer import replay
from streams.tools.simulator.generate import generate, write_lines
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth_file import compute_truth
from streams.tools.worker_process import WorkerProcess, free_port

DAY_MS = 86_400_000
REL_TOL = 1e-9
#: Figures read from a sketch once anything is folded into it (agents/core/sketch.py): within
#: its relative accuracy of the truth, not 1e-9. (The sketch's bound is on the order
#: statistics around the quantile; on a long stream they are within a fraction of a percent of
#: each other, so the figure is within it too.)
SKETCHED: dict[str, float] = {
    "reply_latency.detail.p50_seconds": RELATIVE_ACCURACY,
    "reply_latency.detail.p95_seconds": RELATIVE_ACCURACY,
}


def mismatches(path: str, got: Any, want: Any, out: list[str]) -> None:
    """Where `got` differs from `want` (numbers to 1e-9, a sketched one to its bound), every
    key of `want` checked."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            out.append(f"{path}: {got!r} is not a mapping")
            return
        for key, value in want.items():
            mismatches(f"{path}.{key}", got.get(key), value, out)
    elif isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        if not math.isclose(got, want, rel_tol=SKETCHED.get(path, REL_TOL), abs_tol=1e-12):
            out.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        out.append(f"{path}: {got!r} != {want!r}")


def truth_mismatches(report: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """The report's events, claims (observed and detail) and cumulative operator figures
    against the truth file's content."""
    out: list[str] = []
    mismatches("events", report["events"], truth["events"], out)
    for claim_id, expected in truth["claims"].items():
        entry = report["claims"][claim_id]
        mismatches(f"{claim_id}.observed", entry["observed"], expected["observed"], out)
        detail = {k: v for k, v in expected.items() if k != "observed"}
        mismatches(f"{claim_id}.detail", entry["detail"], detail, out)
    operator = truth.get("operator", {})
    for level in ("overall",):
        figures = {k: v for k, v in operator.get(level, {}).items() if k != "windows"}
        mismatches(f"operator.{level}", report["operator"][level], figures, out)
    return out


def prepare(days: int, scale: float, seed: int, out: Path) -> dict[str, float]:
    """Write the stretched scenario's stream to `out` and its truth beside it (run in a child
    process by `soak`, so that the soak's RSS is the core's, not the generator's)."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    began = time.perf_counter()
    lines = generate(scenario, seed, scale).lines
    generate_s = time.perf_counter() - began
    write_lines(out, lines)
    began = time.perf_counter()
    truth = compute_truth(lines, scenario="xhs", seed=seed)
    truth_s = time.perf_counter() - began
    out.with_suffix(".truth.json").write_text(json.dumps(truth), encoding="utf-8")
    return {"generate_s": generate_s, "truth_s": truth_s, "lines": len(lines)}


def prepare_in_child(days: int, scale: float, seed: int, stream: Path) -> None:
    subprocess.run(  # noqa: S603 - this interpreter, this module
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--prepare",
            f"--days={days}",
            f"--scale={scale}",
            f"--seed={seed}",
            f"--stream={stream}",
        ],
        check=True,
    )


def soak(
    days: int, scale: float, window_days: float, sample_days: int, seed: int, stream: Path
) -> dict[str, Any]:
    if not stream.exists():
        prepare_in_child(days, scale, seed, stream)
    truth = json.loads(stream.with_suffix(".truth.json").read_text("utf-8"))
    gc.collect()

    window_ms = round(window_days * DAY_MS) or None
    ledger, board = Ledger(window_ms, refund_horizon_ms=90 * DAY_MS), OperatorBoard()  # the default
    samples: list[dict[str, Any]] = []
    first_ts: int | None = None
    next_sample_ts: int | None = None
    chunk_s = 0.0
    chunk_records = 0
    rss_start = rss_bytes()

    def sample(day: float) -> None:
        nonlocal chunk_s, chunk_records
        gc.collect()
        dump_began = time.perf_counter()
        blob = dump_state(ledger, board)
        dump_s = time.perf_counter() - dump_began
        folded = sum(isinstance(s.presence, FoldedPresence) for s in ledger.sessions.values())
        samples.append(
            {
                "day": round(day, 2),
                "records": (
                    ledger.counts.valid
                    + ledger.counts.duplicates
                    + ledger.counts.rejected
                    + ledger.counts.expired
                ),
                "rss_mb": rss_bytes() / 1e6,
                "rss_growth_mb": (rss_bytes() - rss_start) / 1e6,
                "snapshot_mb": len(blob) / 1e6,
                "dump_s": dump_s,
                "ids_kept": len(ledger._seen_ids),
                "sessions": len(ledger.sessions),
                "folded_sessions": folded,
                "orders": len(ledger.orders),
                "records_per_s": chunk_records / chunk_s if chunk_s else None,
            }
        )
        print(f"bench: soak {samples[-1]}", flush=True)
        chunk_s, chunk_records = 0.0, 0

    step = 500
    handle = stream.open("rb")
    lines_read = 0
    while batch := [line.rstrip(b"\n") for line in itertools.islice(handle, step)]:
        lines_read += len(batch)
        began = time.perf_counter()
        for record in batch:
            decoded = decode(record)
            if isinstance(decoded, Rejection):
                ledger.reject(decoded.reason)
            elif ledger.apply(decoded):
                board.observe(decoded)
                if ledger.folded_ids:  # as `agents.core.ingest` does
                    board.take_folded(ledger)
                if first_ts is None:
                    first_ts = decoded.ts
                    next_sample_ts = first_ts + sample_days * DAY_MS
        chunk_s += time.perf_counter() - began
        chunk_records += len(batch)
        if ledger.max_ts is None or first_ts is None or next_sample_ts is None:
            continue
        if ledger.max_ts >= next_sample_ts:
            sample((ledger.max_ts - first_ts) / DAY_MS)
            next_sample_ts += sample_days * DAY_MS
    handle.close()
    assert first_ts is not None and ledger.max_ts is not None
    sample((ledger.max_ts - first_ts) / DAY_MS)
    began = time.perf_counter()
    report = build_report(ledger, board)
    report_s = time.perf_counter() - began
    problems = truth_mismatches(report, truth)
    return {
        "scenario": "xhs",
        "days": days,
        "scale": scale,
        "seed": seed,
        "window_days": window_days,
        "lines": lines_read,
        "report_s": report_s,
        "retention": report["retention"],
        "truth_mismatches": problems,
        "samples": samples,
    }


def worker_soak(
    days: int,
    scale: float,
    window_days: float,
    seed: int,
    stream: Path,
    *,
    bootstrap: str,
    rate: float,
    poll_s: float,
) -> dict[str, Any]:
    """The same stream replayed (`livepulse replay`'s code, `rate` records/s) into a
    `livepulse worker` on the real broker, its own app id and topics; every `poll_s` the
    worker's RSS, its partitions' latest snapshot bytes and records/s, against the event time
    of the lines consumed so far (the replay is in file order and the worker keeps up). At
    the end its /report is compared with the truth."""
    if not stream.exists():
        prepare_in_child(days, scale, seed, stream)
    truth = json.loads(stream.with_suffix(".truth.json").read_text("utf-8"))
    newest_ts: list[int] = []  # the newest event time among the first i + 1 lines
    newest = 0
    with stream.open("rb") as handle:
        for raw in handle:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                newest = max(newest, int(json.loads(raw)["ts"]))
            newest_ts.append(newest)
    first_ts = next(ts for ts in newest_ts if ts)
    run = f"soak-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        bootstrap=bootstrap,
        app_id=run,
        topic_prefix=f"{run}.",
        web_port=free_port(),
        data_dir=Path(tempfile.mkdtemp(prefix=f"livepulse-{run}-")),
        dedupe_window_s=window_days * 86_400,
    )
    asyncio.run(create_topics(settings, all_topics(settings)))
    worker = WorkerProcess(settings, Path(tempfile.gettempdir()) / f"{run}.log")
    samples: list[dict[str, Any]] = []
    try:
        worker.start()
        worker.wait_ready(timeout_s=120)
        assert worker.process is not None
        pid = worker.process.pid
        replayer = threading.Thread(
            target=lambda: asyncio.run(replay(stream, settings, rate=rate, create_topics=False))
        )
        replayer.start()
        last_records, last_t = 0, time.monotonic()
        while True:
            alive = replayer.is_alive()
            time.sleep(poll_s)
            status = worker.status()
            now = time.monotonic()
            records = int(status["records"])
            consumed = min(records, len(newest_ts)) - 1
            samples.append(
                {
                    "day": round((newest_ts[max(consumed, 0)] - first_ts) / DAY_MS, 2),
                    "records": records,
                    "rss_mb": rss_bytes(pid) / 1e6,
                    "snapshot_mb": sum(
                        p["last_snapshot_bytes"] for p in status["partitions"].values()
                    )
                    / 1e6,
                    "records_per_s": (records - last_records) / (now - last_t),
                }
            )
            print(f"bench: soak worker {samples[-1]}", flush=True)
            last_records, last_t = records, now
            if not alive:
                break
        replayer.join()
        asyncio.run(
            wait_drained(settings, f"{worker.base_url}/status", settings.source_topics, 600)
        )
        report = fetch_json(f"{worker.base_url}/report", timeout_s=300)
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
    return {
        "mode": "worker",
        "scenario": "xhs",
        "days": days,
        "scale": scale,
        "seed": seed,
        "window_days": window_days,
        "rate": rate,
        "lines": len(newest_ts),
        "retention": report.get("retention"),
        "truth_mismatches": truth_mismatches(report, truth),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--window-days", type=float, default=7.0, help="0: no dedupe window")
    parser.add_argument("--sample-days", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--stream", type=Path, help="the stream file (written with its truth if missing)"
    )
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker",
        action="store_true",
        help="through a `livepulse worker` on the real broker (--bootstrap) instead of the core",
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=float, default=5_000.0, help="replay records/s (--worker)")
    parser.add_argument("--poll-s", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args()
    stream = args.stream or Path(f"/tmp/livepulse-soak-{args.days}d-x{args.scale}.jsonl")
    if args.prepare:
        print(json.dumps(prepare(args.days, args.scale, args.seed, stream)), flush=True)
        return
    if args.worker:
        result = worker_soak(
            args.days,
            args.scale,
            args.window_days,
            args.seed,
            stream,
            bootstrap=args.bootstrap,
            rate=args.rate,
            poll_s=args.poll_s,
        )
    else:
        result = soak(args.days, args.scale, args.window_days, args.sample_days, args.seed, stream)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(
        f"bench: soak {args.days} days x{args.scale}: {result['lines']:,} lines, "
        f"{len(result['truth_mismatches'])} mismatches with the truth",
        flush=True,
    )


if __name__ == "__main__":
    main()
