"""An idle worker's CPU with and without the idle fetch settings (issue 19, session 16).

`python -m bench.idle_fetch --bootstrap HOST:PORT [--pairs 2] [--settle-s 15] [--measure-s 20]
[--out JSON]`: a `livepulse worker` on topics of its own with nothing in them, started as a
child process, left `--settle-s` to join its group and restore, then its process CPU (user +
system, `/proc/<pid>/stat`) over `--measure-s` of wall clock, as a share of a core; once with
the default `LIVEPULSE_BATCH_FETCH_IDLE_WAIT_MS` and once with `0` (the busy fetch settings
always: a fetch every `LIVEPULSE_BATCH_FETCH_WAIT_MS` that comes back empty), alternating and
swapping the order every other pair. Prints a table and writes the samples as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.worker_process import WorkerProcess, isolated_settings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def idle_share(
    bootstrap: str, idle_wait_ms: int | None, settle_s: float, measure_s: float
) -> float:
    """One idle worker's CPU share of a core over `measure_s` (None: the default setting)."""
    fields: dict[str, Any] = {}
    if idle_wait_ms is not None:
        fields["batch_fetch_idle_wait_ms"] = idle_wait_ms
    settings = isolated_settings(bootstrap, "idlefetch", **fields)
    asyncio.run(create_topics(settings, all_topics(settings)))
    log = Path(settings.data_dir) / "worker.log"
    worker = WorkerProcess(settings, log)
    try:
        worker.start()
        worker.wait_ready(timeout_s=90)
        assert worker.process is not None
        time.sleep(settle_s)
        pid = worker.process.pid
        cpu, wall = process_cpu_s(pid), time.monotonic()
        time.sleep(measure_s)
        return (process_cpu_s(pid) - cpu) / (time.monotonic() - wall)
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_fetch", description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--settle-s", type=float, default=15.0)
    parser.add_argument("--measure-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    shares: dict[str, list[float]] = {"idle settings (default)": [], "busy settings always": []}
    variants = [("idle settings (default)", None), ("busy settings always", 0)]
    for pair in range(args.pairs):
        for name, value in variants if pair % 2 == 0 else variants[::-1]:
            share = idle_share(args.bootstrap, value, args.settle_s, args.measure_s)
            shares[name].append(share)
            print(f"pair {pair + 1}: {name}: {share:.4f} of a core", file=sys.stderr, flush=True)
    print("| worker, topics empty | share of a core, median (min - max) | runs |")
    print("|---|---|---|")
    for name, values in shares.items():
        print(
            f"| {name} | {statistics.median(values):.4f} "
            f"({min(values):.4f} - {max(values):.4f}) | {len(values)} |"
        )
    default, busy = (statistics.median(v) for v in shares.values())
    print(f"\nbusy always / idle settings: {busy / default:.2f}x the CPU")
    if args.out is not None:
        load = os.getloadavg()
        args.out.write_text(json.dumps({"shares": shares, "loadavg_end": load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
