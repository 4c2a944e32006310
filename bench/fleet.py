"""Scale-out: 1 vs N workers of one app id draining the same preloaded topics (issue 6, item 5)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.proc import broker_pid, cpu_seconds
from bench.shared import delete_app_topics, summary
from streams.runtime.global_report import global_report
from streams.runtime.settings import Settings
from streams.runtime.topics import end_offsets
from streams.tools.worker_process import WorkerProcess, free_ports

POLL_S = 0.1
#: How long the month-rows topic must stay read to its end before the fleet is stopped.
EXCHANGE_QUIET_S = 1.0


async def _ends(
    settings: Settings, topics: tuple[str, ...] | None = None
) -> dict[tuple[str, int], int]:
    """The end offsets of `topics` (the contract topics by default) that are not 0."""
    ends = await end_offsets(settings, settings.source_topics if topics is None else topics)
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items() if offset > 0}


def _wait_exchanged(settings: Settings, fleet: list[WorkerProcess], timeout_s: float) -> None:
    """With the session fold: until the workers' partitions have read the month-rows topic to
    its end, unchanged for `EXCHANGE_QUIET_S` (a record read may make its reader send more).
    The partitions go on exchanging closed months, first orders and announcements for
    moments after the contract topics are read; a worker stopped before it read them
    leaves them out of its last snapshots, and the merged report then finds them uncovered
    (`global_uncovered` [12] in a fresh-clone CI run: 3 announcements of one partition, to
    each of the 4, read by none before the stop)."""
    topic = settings.month_rows_topic
    if topic is None:
        return
    deadline = time.monotonic() + timeout_s
    since: float | None = None
    while time.monotonic() < deadline:
        ends = asyncio.run(_ends(settings, (topic,)))
        read = False
        with contextlib.suppress(OSError, ValueError):
            read = _covered([w.status() for w in fleet], ends)
        if not read:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= EXCHANGE_QUIET_S:
            return
        time.sleep(POLL_S)
    raise TimeoutError("the fleet did not read the month-rows topic to its end in time")


def _covered(statuses: list[dict[str, Any]], ends: dict[tuple[str, int], int]) -> bool:
    """Whether the partitions the workers hold now reach every end offset (whichever worker
    holds each; a partition that moved in a rebalance counts once, from its holder)."""
    reached: dict[tuple[str, int], int] = {}
    for status in statuses:
        for p, state in (status.get("partitions") or {}).items():
            for topic, position in state.get("positions", {}).items():
                key = (topic, int(p))
                reached[key] = max(reached.get(key, 0), int(position))
    return all(reached.get(tp, 0) >= end for tp, end in ends.items())


def _held(statuses: list[dict[str, Any]]) -> int | None:
    """Records covered by the partitions the workers hold, if every worker is ready and holds
    partitions that no other holds (the group has settled), else None."""
    seen: list[int] = []
    for status in statuses:
        partitions = status.get("partitions") or {}
        if not status.get("ready") or not partitions:
            return None
        seen += [int(p) for p in partitions]
    if len(seen) != len(set(seen)):
        return None
    return sum(
        int(position)
        for status in statuses
        for state in status["partitions"].values()
        for position in state.get("positions", {}).values()
    )


def run_fleet(
    settings: Settings,
    expect: int,
    workers: int,
    logs: Path,
    tag: str,
    tree: Path | None = None,
) -> dict[str, Any]:
    """`workers` livepulse workers of one fresh app id, started together on the preloaded
    topics, each with its own port and data directory; timed until every partition is drained.
    `tree`: the workers run that source tree (a baseline's, `bench.run.baseline_tree`), from
    its own directory (`python -m` puts the working directory before PYTHONPATH).

    Rate = `expect` (records in the topics) / (the earliest worker's first applied batch to
    the latest worker's last), wall clock; CPU of each worker and of the broker over that
    window. Afterwards, once the workers have read what their partitions sent each other over
    the month-rows topic (with the session fold) and are stopped (each snapshots its
    partitions on the way out), the report over every partition merged from the changelog
    (`global_report`).
    """
    app_id = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="livepulse-fleet-"))
    ports = free_ports(workers)
    fleet = [
        WorkerProcess(
            settings.model_copy(
                update={"app_id": app_id, "web_port": port, "data_dir": root / f"w{i}"}
            ),
            logs / f"fleet-{tag}-w{i}.log",
            loglevel="warning",
            cwd=tree,
            env=None if tree is None else {"PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"},
        )
        for i, port in enumerate(ports)
    ]
    ends = asyncio.run(_ends(settings))
    broker = broker_pid()
    samples: list[tuple[float, list[float], float]] = []

    def sample() -> None:
        cpus = [cpu_seconds(w.process.pid) if w.process else None for w in fleet]
        samples.append(
            (
                time.time(),
                [c or 0.0 for c in cpus],
                (cpu_seconds(broker) or 0.0) if broker else 0.0,
            )
        )

    statuses: list[dict[str, Any]] = []
    settled: tuple[float, int] | None = None  # (when every worker held its share, covered)
    try:
        for worker in fleet:  # started back to back: they join the group within a second or so
            worker.start()
        deadline = time.monotonic() + 3600
        while True:
            sample()
            for worker in fleet:
                if not worker.alive():
                    raise RuntimeError(f"a fleet worker exited:\n{worker.tail()}")
            with contextlib.suppress(OSError, ValueError):
                statuses = [w.status() for w in fleet]
                if settled is None:
                    covered = _held(statuses)
                    if covered is not None:
                        settled = (time.time() - POLL_S / 2, covered)
                if all(s.get("ready") for s in statuses) and _covered(statuses, ends):
                    sample()
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the fleet did not drain in time")
            time.sleep(POLL_S)
        firsts = [s["first_applied_at"] for s in statuses if s.get("first_applied_at")]
        lasts = [s["last_applied_at"] for s in statuses if s.get("last_applied_at")]
        first, last = min(firsts), max(lasts)

        def cpu(since: float, until: float) -> tuple[list[float], float]:
            before = [s for s in samples if s[0] <= since] or samples[:1]
            after = [s for s in samples if s[0] >= until] or samples[-1:]
            a, b = before[-1], after[0]
            return [b[1][i] - a[1][i] for i in range(workers)], b[2] - a[2]

        seconds = last - first
        used, broker_used = cpu(first, last)
        result: dict[str, Any] = {
            "workers": workers,
            "records": expect,
            "seconds": seconds,
            "rate": expect / seconds if seconds > 0 else 0.0,
            "worker_cpu_shares": [c / seconds for c in used],
            "broker_cpu_share": broker_used / seconds,
            # Records each worker applied (more than `expect` in all if a rebalance made a
            # partition's records be read twice) and the partitions each held at the end.
            "worker_records": [int(s.get("records", 0)) for s in statuses],
            "worker_partitions": [
                sorted(int(p) for p in s.get("partitions", {})) for s in statuses
            ],
            "start_spread_s": max(firsts) - min(firsts),
        }
        # The first worker to join takes every partition until the others join and the group
        # rebalances (the broker's initial rebalance delay is 0): from the moment each worker
        # holds its own share, the rate of the settled fleet.
        if settled is not None and last - settled[0] > 1.0:
            since, covered = settled
            used, broker_used = cpu(since, last)
            span = last - since
            result["settled"] = {
                "after_s": since - first,
                "records": expect - covered,
                "seconds": span,
                "rate": (expect - covered) / span,
                "worker_cpu_shares": [c / span for c in used],
                "broker_cpu_share": broker_used / span,
            }
        # Timed; now the records the partitions sent each other are read before the stop.
        _wait_exchanged(settings.model_copy(update={"app_id": app_id}), fleet, timeout_s=120)
    finally:
        for worker in fleet:
            worker.stop()
    try:
        own = settings.model_copy(update={"app_id": app_id})
        report = asyncio.run(global_report(own, wait_s=30.0))
        result["global_events"] = report["events"]
        result["global_uncovered"] = report["state"]["uncovered_records"]
    finally:
        delete_app_topics(settings, app_id)
        shutil.rmtree(root, ignore_errors=True)
    return result


def measure_fleet(
    settings: Settings,
    expect: int,
    repeat: int,
    logs: Path,
    sizes: tuple[int, ...] = (1, 2),
    baseline: Path | None = None,
) -> dict[str, Any]:
    """Each fleet size `repeat` times, interleaved (1, 2, 1, 2, ...; with a `baseline` tree,
    its fleet of each size right after this tree's); medians and spreads, and whether every
    run's merged report counted the same events (the baseline's under "baseline", with its
    own `global_events_agree`; "global_events_agree" at the top is over both trees' runs)."""
    trees: dict[str, Path | None] = {"": None}
    if baseline is not None:
        trees["baseline"] = baseline
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {t: {n: [] for n in sizes} for t in trees}
    for i in range(repeat):
        for n in sizes:
            for name, tree in trees.items():
                runs[name][n].append(_fleet_pass(settings, expect, n, logs, i, repeat, name, tree))
    out = _fleet_summary(runs[""])
    if baseline is not None:
        out["baseline"] = _fleet_summary(runs["baseline"])
        out["baseline"]["tree"] = str(baseline)
    every = [r["global_events"] for t in runs.values() for rs in t.values() for r in rs]
    out["global_events_agree"] = all(e == every[0] for e in every)
    return out


def _fleet_pass(
    settings: Settings,
    expect: int,
    n: int,
    logs: Path,
    i: int,
    repeat: int,
    name: str,
    tree: Path | None,
) -> dict[str, Any]:
    """One fleet run of `n` workers (of `tree`, the baseline's if `name`), printed."""
    run = run_fleet(settings, expect, n, logs, f"{name or 'this'}-{n}-{i}", tree)
    settled = run.get("settled")
    print(
        f"bench: {name + ' ' if name else ''}{n} worker(s) pass {i + 1}/{repeat}: "
        f"{run['rate']:,.0f} records/s "
        + (
            f"(settled: {settled['rate']:,.0f}/s over {settled['records']:,} records, CPU "
            + " + ".join(f"{c:.0%}" for c in settled["worker_cpu_shares"])
            + ") "
            if settled
            else "(never settled before the end) "
        )
        + f"({expect:,} in {run['seconds']:.2f} s; CPU "
        + " + ".join(f"{c:.0%}" for c in run["worker_cpu_shares"])
        + f", broker {run['broker_cpu_share']:.0%}; records {run['worker_records']}, "
        f"partitions {run['worker_partitions']}; global {run['global_events']})",
        flush=True,
    )
    return run


def _fleet_summary(runs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians and spreads of one tree's fleet runs, by size, and whether they agree."""
    out: dict[str, Any] = {}
    for n, rs in runs.items():
        out[str(n)] = {
            "records_per_s": summary([r["rate"] for r in rs]),
            "seconds": summary([r["seconds"] for r in rs]),
            "worker_cpu_share_total": summary([sum(r["worker_cpu_shares"]) for r in rs]),
            "worker_cpu_shares": [r["worker_cpu_shares"] for r in rs],
            "broker_cpu_share": summary([r["broker_cpu_share"] for r in rs]),
            "records_per_cpu_s": summary(
                [r["records"] / (sum(r["worker_cpu_shares"]) * r["seconds"]) for r in rs]
            ),
            "worker_records": [r["worker_records"] for r in rs],
            "worker_partitions": [r["worker_partitions"] for r in rs],
            "start_spread_s": summary([r["start_spread_s"] for r in rs]),
            "global_events": [r["global_events"] for r in rs],
            "global_uncovered": [r["global_uncovered"] for r in rs],
        }
        settled = [r["settled"] for r in rs if "settled" in r]
        if settled:
            out[str(n)]["settled"] = {
                "n": len(settled),
                "records_per_s": summary([r["rate"] for r in settled]),
                "records": summary([r["records"] for r in settled]),
                "after_s": summary([r["after_s"] for r in settled]),
                "worker_cpu_share_total": summary([sum(r["worker_cpu_shares"]) for r in settled]),
                "worker_cpu_shares": [r["worker_cpu_shares"] for r in settled],
                "broker_cpu_share": summary([r["broker_cpu_share"] for r in settled]),
            }
    every = [r["global_events"] for rs in runs.values() for r in rs]
    out["global_events_agree"] = all(e == every[0] for e in every)
    return out
