"""`python -m bench`: preload the broker, run every measurement, write bench/RESULTS.md.

See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import core
from bench.data import dataset, preload
from bench.proc import Affinities, broker_pid, cpu_seconds, machine, peak_rss_bytes, pin, unpin
from bench.report import BATCH_COLUMNS, WORKER_LATENCY_COLUMNS, write
from bench.scrape import ScrapeLoad
from bench.shared import delete_app_topics, summary
from streams.runtime.settings import Settings
from streams.runtime.topics import EndOffsets, delete_run_topics
from streams.tools.drain import fetch, fetch_json
from streams.tools.replayer import LINGER_MS, replay
from streams.tools.worker_process import WorkerProcess, free_port, terminate

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.1
#: What a `--variant` may set besides the worker's settings: the latency passes' paced
#: producer (the replayer's linger, `streams.tools.replayer.LINGER_MS` by default). The
#: throughput passes read a preloaded backlog, so they leave these out.
PRODUCER_FIELDS: dict[str, type] = {"producer_linger_ms": int}


@dataclass
class Run:
    """One contender's pass over the preloaded topics."""

    records: int
    seconds: float
    cpu_s: float
    broker_cpu_s: float
    #: Seconds in the cyclic garbage collector (the worker's /status), when it reports them.
    gc_s: float | None = None
    #: The worker's state snapshots (`snapshot_stats`): during the window, and after it went
    #: idle (the idle snapshot of the whole state), when it reports them.
    snapshots: dict[str, Any] | None = None
    #: The worker's highest RSS in MB (`VmHWM`) when it had consumed everything: what it held
    #: at once draining the backlog (the fetched record sets among it), when it reports it.
    peak_rss_mb: float | None = None
    #: The worker's longest collection over the drain, wall clock and CPU (its /status `gc`),
    #: when it reports them.
    gc_longest_ms: float | None = None
    gc_longest_cpu_ms: float | None = None
    #: Valid events the contender counted, when it reports them (the in-process contenders:
    #: (a)'s one ledger over every partition refuses records of a partition behind another
    #: by more than its dedupe window as expired, so it counts fewer than (w) and (c)).
    valid: int | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Sampler:
    """CPU seconds of a process and of the broker, sampled as time goes by."""

    pid: int
    broker: int | None
    samples: list[tuple[float, float, float]] = field(default_factory=list)

    def sample(self) -> None:
        cpu = cpu_seconds(self.pid)
        broker = cpu_seconds(self.broker) if self.broker else 0.0
        if cpu is not None:
            self.samples.append((time.time(), cpu, broker or 0.0))

    def between(self, first: float, last: float) -> tuple[float, float]:
        """CPU seconds used by the process and the broker between two wall-clock times
        (from the samples nearest outside the window, so a short window is not missed)."""
        before = [s for s in self.samples if s[0] <= first] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= last] or self.samples[-1:]
        a, b = before[-1], after[0]
        return b[1] - a[1], b[2] - a[2]


def _env(pythonpath: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(pythonpath)] if pythonpath else []
    paths.append(str(ROOT))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _watch(
    process: subprocess.Popen[bytes],
    sampler: Sampler,
    done: Callable[[], dict[str, Any] | None],
    timeout_s: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        sampler.sample()
        result = done()
        if result is not None:
            sampler.sample()
            return result
        if process.poll() is not None:
            raise RuntimeError(f"contender exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("contender did not finish in time")
        time.sleep(POLL_S)


def _as_run(result: dict[str, Any], sampler: Sampler) -> Run:
    first, last = float(result["first"]), float(result["last"])
    cpu, broker = sampler.between(first, last)
    gc_s = result.get("gc_s")
    return Run(
        int(result["records"]),
        last - first,
        cpu,
        broker,
        gc_s,
        result.get("snapshots"),
        result.get("peak_rss_mb"),
        result.get("gc_longest_ms"),
        result.get("gc_longest_cpu_ms"),
        int(result["valid"]) if result.get("valid") is not None else None,
    )


def _metric(text: str, name: str) -> float | None:
    """The value of an unlabelled series in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def snapshot_stats(worker: WorkerProcess) -> dict[str, Any] | None:
    """The worker's snapshots so far: count and bytes from /status (per partition: the count
    and the size of the latest), seconds from /metrics (`livepulse_state_snapshot_seconds`,
    every snapshot's). None from a worker that does not snapshot (a baseline)."""
    try:
        status = worker.status()
        # /metrics builds the claims report of the whole state: seconds at 2M records.
        text = fetch(f"{worker.base_url}/metrics", timeout_s=120.0).decode()
    except (OSError, ValueError):
        return None
    partitions = status.get("partitions") or {}
    if not partitions or "snapshots" not in next(iter(partitions.values())):
        return None
    return {
        "count": sum(int(p["snapshots"]) for p in partitions.values()),
        "seconds": _metric(text, "livepulse_state_snapshot_seconds_total"),
        # The part of those seconds batches waited (all of it without a fork: the dump).
        "pause_seconds": _metric(text, "livepulse_state_snapshot_pause_seconds_total"),
        "latest_bytes": sum(int(p["last_snapshot_bytes"]) for p in partitions.values()),
        "latest_seconds": sum(float(p["last_snapshot_s"]) for p in partitions.values()),
        "dirty": sum(1 for p in partitions.values() if p["dirty"]),
    }


def settled_snapshot_stats(worker: WorkerProcess, timeout_s: float = 20.0) -> dict[str, Any] | None:
    """`snapshot_stats` once no partition is dirty (the idle snapshot has been written)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = snapshot_stats(worker)
        if stats is None or stats["dirty"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.25)


def run_ceiling(
    settings: Settings,
    expect: int,
    log: Path,
    module: str = "bench.ceiling",
    extra: tuple[str, ...] = (),
    pythonpath: Path | None = None,
) -> Run:
    """(a) the plain aiokafka batch consumer, in a child process; or another contender that
    takes the same options and prints the same JSON line (`module`: (t) is `bench.ceiling
    --transport-only`, (w) `bench.ceiling --worker-state`, (q) is `bench.quix`);
    `pythonpath`: the baseline's tree, its own `bench.ceiling` and core ((a0))."""
    out = log.with_suffix(".json")
    env = _env(pythonpath)
    if pythonpath is not None:
        env["PYTHONSAFEPATH"] = "1"  # not this tree first on sys.path (`start_worker`)
    with log.open("ab") as err, out.open("wb") as stdout:
        process = subprocess.Popen(  # noqa: S603 (our interpreter and module)
            [
                sys.executable,
                "-m",
                module,
                "--prefix",
                settings.topic_prefix,
                "--group",
                f"bench-{module.rpartition('.')[2]}-{uuid.uuid4().hex[:8]}",
                "--expect",
                str(expect),
                "--bootstrap",
                settings.bootstrap,
                *extra,
            ],
            stdout=stdout,
            stderr=err,
            env=env,
        )
        sampler = Sampler(process.pid, broker_pid())

        def done() -> dict[str, Any] | None:
            if process.poll() is None:
                return None
            text = out.read_text().strip()
            return json.loads(text.splitlines()[-1]) if text else None

        try:
            result = _watch(process, sampler, done, 3600)
        finally:
            terminate(process, 10)
    return _as_run(result, sampler)


def run_naive(settings: Settings, expect: int, log: Path) -> Run:
    """(b) the naive faust agent, in a child process."""
    out = log.with_suffix(".json")
    out.unlink(missing_ok=True)
    app_id = f"bench-naive-{uuid.uuid4().hex[:8]}"
    with log.open("ab") as err:
        process = subprocess.Popen(  # noqa: S603 (our interpreter and module)
            [
                sys.executable,
                "-m",
                "bench.naive",
                "--prefix",
                settings.topic_prefix,
                "--app-id",
                app_id,
                "--expect",
                str(expect),
                "--out",
                str(out),
                "--bootstrap",
                settings.bootstrap,
            ],
            stdout=err,
            stderr=err,
            env=_env(None),
            start_new_session=True,
        )
        sampler = Sampler(process.pid, broker_pid())

        def done() -> dict[str, Any] | None:
            return json.loads(out.read_text()) if out.exists() else None

        try:
            result = _watch(process, sampler, done, 3600)
        finally:
            terminate(process, 20)
    delete_app_topics(settings, app_id)
    return _as_run(result, sampler)


def start_worker(
    settings: Settings, log: Path, pythonpath: Path | None = None
) -> tuple[WorkerProcess, Settings]:
    """A livepulse worker (`python -m streams.commands.worker`) with an app id of its own."""
    app_id = f"bench-worker-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(
        update={"app_id": app_id, "web_port": free_port(), "data_dir": Path(tempfile.mkdtemp())}
    )
    # The baseline's tree runs from its own directory: `python -m` puts the working directory
    # before PYTHONPATH, so from here it would import this tree (as (c0) did before this fix).
    worker = WorkerProcess(own, log, loglevel="warning", cwd=pythonpath)
    # The bench's own values are put back after the start (a bench run with PYTHONPATH set,
    # as from a worktree, lost it for every later worker when they were simply popped).
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "PYTHONSAFEPATH")}
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = _env(pythonpath)["PYTHONPATH"]
        # `python -m` puts the working directory (this tree) first on sys.path, ahead of
        # PYTHONPATH: without this the "baseline" worker ran this tree's code.
        os.environ["PYTHONSAFEPATH"] = "1"
    try:
        worker.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return worker, own


def run_worker(settings: Settings, expect: int, log: Path, pythonpath: Path | None = None) -> Run:
    """(c) livepulse's worker (or the baseline's, from `pythonpath`), in a child process.

    First and last consumed come from /status: the worker's own timestamps when it reports
    them, else the first poll (every 0.1 s) that saw records and the first that saw them all.
    """
    worker, own = start_worker(settings, log, pythonpath)
    assert worker.process is not None
    sampler = Sampler(worker.process.pid, broker_pid())
    seen: dict[str, float] = {}

    def done() -> dict[str, Any] | None:
        try:
            status = worker.status()
        except (OSError, ValueError):
            return None
        now = time.time()
        records = int(status.get("records", 0))
        if records and "first" not in seen:
            seen["first"] = now - POLL_S / 2
        if records >= expect:
            first = status.get("first_applied_at") or seen["first"]
            last = status.get("last_applied_at") or now - POLL_S / 2
            gc_clock = status.get("gc") or {}
            return {
                "records": records,
                "first": first,
                "last": last,
                "gc_s": gc_clock.get("total_s"),
                "gc_longest_ms": gc_clock.get("longest_ms"),
                "gc_longest_cpu_ms": gc_clock.get("longest_cpu_ms"),
            }
        return None

    try:
        result = _watch(worker.process, sampler, done, 3600)
        peak = peak_rss_bytes(worker.process.pid)
        result["peak_rss_mb"] = peak / 1e6 if peak is not None else None
        # Snapshots written while draining (they cost throughput), then the idle snapshot of
        # the whole state about a second later (its size and duration).
        during = snapshot_stats(worker)
        if during is not None:
            result["snapshots"] = {"drain": during, "settled": settled_snapshot_stats(worker)}
    finally:
        worker.stop()
    delete_app_topics(settings, own.app_id)
    shutil.rmtree(own.data_dir, ignore_errors=True)
    return _as_run(result, sampler)


def quix_missing() -> str | None:
    """Why the Quix Streams contender (q) cannot run here, or None when it can."""
    # Looked up, not imported: the harness itself has no use for it (only bench/quix.py's
    # process imports it).
    if importlib.util.find_spec("quixstreams") is None:
        return "quixstreams is not installed (pip install -e '.[dev,bench]')"
    return None


def baseline_tree(ref: str) -> Path:
    """The package sources at git `ref`, extracted into a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix="livepulse-baseline-"))
    archive = subprocess.run(  # noqa: S603
        ["git", "archive", "--format=tar", ref, "schemas", "agents", "streams"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    tar_path = target / "src.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")
    tar_path.unlink()
    return target


async def _end_offsets(settings: Settings) -> int:
    async with EndOffsets(settings) as read:
        return sum((await read(list(settings.source_topics))).values())


def measure_throughput(
    settings: Settings,
    expect: int,
    repeat: int,
    logs: Path,
    baseline: Path | None,
    gc_default: bool = False,
    variants: dict[str, dict[str, Any]] | None = None,
    naive: bool = True,
) -> dict[str, Any]:
    contenders: dict[str, Callable[[int], Run]] = {
        "t_transport": lambda i: run_ceiling(
            settings, expect, logs / f"transport-{i}.log", extra=("--transport-only",)
        ),
        "a_ceiling": lambda i: run_ceiling(settings, expect, logs / f"ceiling-{i}.log"),
        # (a)'s transport with the worker's state and batch handler: (c)'s like-for-like ceiling.
        "w_worker_state": lambda i: run_ceiling(
            settings, expect, logs / f"worker-state-{i}.log", extra=("--worker-state",)
        ),
        "b_naive_faust": lambda i: run_naive(settings, expect, logs / f"naive-{i}.log"),
        "c_worker": lambda i: run_worker(settings, expect, logs / f"worker-{i}.log"),
    }
    if not naive:
        del contenders["b_naive_faust"]
    if baseline is not None:  # the ceiling of the baseline's own core, beside (c0)
        contenders["a0_ceiling_baseline"] = lambda i: run_ceiling(
            settings, expect, logs / f"ceiling-baseline-{i}.log", pythonpath=baseline
        )
    if quix_missing() is None:
        contenders["q_quix"] = lambda i: run_ceiling(
            settings, expect, logs / f"quix-{i}.log", module="bench.quix"
        )
    else:
        print(f"bench: no Quix Streams contender: {quix_missing()}", flush=True)

    def varied(name: str, update: dict[str, Any]) -> Callable[[int], Run]:
        own = settings.model_copy(update=worker_update(update))
        return lambda i: run_worker(own, expect, logs / f"worker-{name}-{i}.log")

    for name, update in (variants or {}).items():
        contenders[f"c_{name}"] = varied(name, update)
    if gc_default:
        unpaced = settings.model_copy(update={"gc_pace_records": 0})
        contenders["c1_worker_gc_default"] = lambda i: run_worker(
            unpaced, expect, logs / f"worker-gc-default-{i}.log"
        )
    if baseline is not None:
        contenders["c0_worker_baseline"] = lambda i: run_worker(
            settings, expect, logs / f"baseline-{i}.log", baseline
        )
    runs: dict[str, list[Run]] = {name: [] for name in contenders}
    for i in range(repeat):  # interleaved, so that a change in the machine's load hits all
        for name, go in contenders.items():
            run = go(i)
            runs[name].append(run)
            print(
                f"bench: {name} pass {i + 1}/{repeat}: {run.rate:,.0f} records/s "
                f"({run.records:,} in {run.seconds:.2f} s; CPU {run.cpu_s / run.seconds:.0%}, "
                f"broker {run.broker_cpu_s / run.seconds:.0%}"
                + (f"; peak RSS {run.peak_rss_mb:.0f} MB" if run.peak_rss_mb is not None else "")
                + (f"; {run.valid:,} valid" if run.valid is not None else "")
                + ")",
                flush=True,
            )
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        out[name] = {
            "records_per_s": summary([r.rate for r in rs]),
            "records_per_cpu_s": summary([r.records / r.cpu_s for r in rs if r.cpu_s > 0]),
            "cpu_share": summary([r.cpu_s / r.seconds for r in rs]),
            "broker_cpu_share": summary([r.broker_cpu_s / r.seconds for r in rs]),
            "seconds": summary([r.seconds for r in rs]),
        }
        peaks = [r.peak_rss_mb for r in rs if r.peak_rss_mb is not None]
        if peaks:
            out[name]["peak_rss_mb"] = summary(peaks)
        valid = [float(r.valid) for r in rs if r.valid is not None]
        if valid:
            out[name]["valid"] = summary(valid)
        gc_shares = [r.gc_s / r.cpu_s for r in rs if r.gc_s is not None and r.cpu_s > 0]
        if gc_shares:
            # Start-up's collections are in gc_s too; they are milliseconds.
            out[name]["gc_share_of_cpu"] = summary(gc_shares)
        for key in ("gc_longest_ms", "gc_longest_cpu_ms"):
            longest = [getattr(r, key) for r in rs if getattr(r, key) is not None]
            if longest:
                out[name][key] = summary([float(v) for v in longest])
        snaps = [r.snapshots for r in rs if r.snapshots is not None]
        if snaps:
            out[name]["snapshots"] = {
                phase: {
                    key: summary([float(s[phase][key] or 0) for s in snaps if s.get(phase)])
                    for key in (
                        "count",
                        "seconds",
                        "pause_seconds",
                        "latest_bytes",
                        "latest_seconds",
                    )
                }
                for phase in ("drain", "settled")
            }
            # The share of the drain window batches waited for snapshots (the lock held).
            paused = [
                float(r.snapshots["drain"]["pause_seconds"]) / r.seconds
                for r in rs
                if r.snapshots is not None
                and r.snapshots["drain"].get("pause_seconds") is not None
                and r.seconds > 0
            ]
            if paused:  # a baseline without the metric has none
                out[name]["snapshots"]["pause_share"] = summary(paused)
            # The share of the drain window spent writing snapshots.
            out[name]["snapshots"]["drain_share"] = summary(
                [
                    float(r.snapshots["drain"]["seconds"] or 0) / r.seconds
                    for r in rs
                    if r.snapshots is not None and r.seconds > 0
                ]
            )
    return out


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status(worker: WorkerProcess, deadline: float) -> dict[str, Any]:
    """The worker's /status, retried until `deadline` (+ 60 s) while it does not answer."""
    while True:
        try:
            status: dict[str, Any] = fetch_json(f"{worker.base_url}/status", timeout_s=30.0)
            return status
        except OSError:
            if time.monotonic() > deadline + 60:
                raise
            time.sleep(0.5)


def latency_once(
    settings: Settings,
    path: Path,
    n: int,
    rate: float,
    log: Path,
    pythonpath: Path | None = None,
    pinned: bool = False,
    scrape: bool = False,
    linger_ms: int = LINGER_MS,
) -> dict[str, Any]:
    """One paced run: a fresh worker on empty topics, the replayer at `rate` (lingering
    `linger_ms`); its lag summary, the records per batch the worker applied (`/status`
    `batches`) and the rate the replayer really reached (it shares the machine's cores).

    `scrape`: `/metrics` every second and `/report` every 2 s during the run, and `/`
    probed every 50 ms for the event loop's stalls (`bench.scrape.ScrapeLoad`).

    `pinned`: the worker on CPU 0 alone, the replayer (this process) and the broker on the
    others, so the worker's latency is not the producer's CPU contention (on this 2-core
    machine, the closest to a producer on another host)."""
    prefix = f"bench-lat-{uuid.uuid4().hex[:8]}."
    settings = settings.model_copy(update={"topic_prefix": prefix})
    asyncio.run(_create(settings))
    worker, own = start_worker(settings, log, pythonpath)
    assert worker.process is not None
    saved: Affinities = {}
    try:
        worker.wait_ready(120)
        if pinned:
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) < 2:
                raise SystemExit("--pin needs at least 2 CPUs")
            saved.update(pin(worker.process.pid, {cpus[0]}))
            saved.update(pin(os.getpid(), set(cpus[1:])))
            broker = broker_pid()
            if broker is not None:
                saved.update(pin(broker, set(cpus[1:])))
        # CPU of the worker and of this process (the replayer) over the paced run: on a
        # machine of 2 shared cores the producer's own CPU competes with the worker's.
        pid = worker.process.pid
        began, worker_cpu, own_cpu = time.time(), cpu_seconds(pid), _self_cpu()
        with_children = cpu_seconds(pid, children=True)
        load = ScrapeLoad(worker.base_url).start() if scrape else None
        try:
            sent = asyncio.run(replay(path, settings, rate=rate, linger_ms=linger_ms))
            deadline = time.monotonic() + 120
            while True:
                # A worker whose event loop builds the report (a baseline, under --scrape) may
                # not answer for seconds: wait for it rather than give up on the pass.
                status = _status(worker, deadline)
                if status["records"] >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            scraped = load.stop() if load is not None else None
        lag = dict(status["processing_lag"])
        # The longest single garbage collection and the seconds in all of them (a stall
        # holds up every record behind it, so it shows in the tail).
        worker_lag = status.get("worker_lag") or {}
        lag["worker_p50_ms"] = worker_lag.get("p50_ms")
        lag["worker_p99_ms"] = worker_lag.get("p99_ms")
        # What the in-worker lag follows: the records per batch the worker applied (a record
        # waits for its whole batch), and the snapshots' hold on batches (the state's lock).
        batches = status.get("batches") or {}
        lag["batches"] = batches.get("count")
        for quantile in ("p50", "p90", "p99", "max"):
            lag[f"batch_{quantile}"] = batches.get(quantile)
        partitions = (status.get("partitions") or {}).values()
        lag["snapshots"] = sum(int(p.get("snapshots", 0)) for p in partitions)
        pauses = [
            float(p["last_snapshot_pause_s"]) for p in partitions if "last_snapshot_pause_s" in p
        ]
        lag["snapshot_pause_latest_max_ms"] = 1000 * max(pauses) if pauses else None
        lag["producer_linger_ms"] = linger_ms
        # How often the consumer switched to its behind fetch settings (a whole batch handed
        # on: `batch_fetch_behind_wait_ms`), which a `batch_max_records` below what the stream
        # brings sets off at every fetch.
        entered = (status.get("fetch") or {}).get("entered") or {}
        lag["fetch_behind_entered"] = entered.get("behind")
        gc_clock = status.get("gc") or {}
        lag["gc_longest_ms"] = gc_clock.get("longest_ms")
        # The collector's own share of its pauses: CPU time (a wall-clock pause on a shared
        # machine is mostly waits for a core; streams/runtime/gcpace.py, GcClock).
        lag["gc_longest_cpu_ms"] = gc_clock.get("longest_cpu_ms")
        lag["gc_p99_cpu_ms"] = gc_clock.get("p99_cpu_ms")
        lag["gc_total_s"] = gc_clock.get("total_s")
        wall = time.time() - began
        worker_used = (cpu_seconds(pid) or 0.0) - (worker_cpu or 0.0)
        lag["worker_cpu_share"] = worker_used / wall
        # Records per CPU second, the forked children's CPU included (those reaped by now).
        children_used = (cpu_seconds(pid, children=True) or 0.0) - (with_children or 0.0)
        lag["records_per_cpu_s"] = status["records"] / children_used if children_used else None
        lag["children_cpu_s"] = children_used - worker_used
        if scraped is not None:
            lag.update(scraped)
        lag["producer_cpu_share"] = (_self_cpu() - own_cpu) / wall
    finally:
        unpin(saved)
        worker.stop()
        shutil.rmtree(own.data_dir, ignore_errors=True)
        asyncio.run(delete_run_topics(own))
    lag["sent_per_s"] = sent.events_per_s
    return lag


def measure_latency(
    base: Settings,
    capacity: float,
    shares: list[float],
    seconds: float,
    repeat: int,
    scenario: str,
    seed: int,
    logs: Path,
    variants: dict[str, dict[str, Any]] | None = None,
    baseline: Path | None = None,
    pinned: bool = False,
    scrape: bool = False,
    pinned_only: bool = False,
) -> dict[str, Any]:
    """p50/p99 processing lag of the worker under a paced producer at shares of capacity.

    With `variants` (name -> settings update) each pass runs the default worker and then each
    variant (and the `baseline` tree's worker, as variant "baseline"), interleaved; their
    figures go under `"variants"`. With `pinned`, each of those runs again with the worker
    on a CPU of its own (`latency_once`), as variant "<name> pinned"; with `pinned_only` as
    well, only the pinned passes run (half the time, for the targets counted pinned).
    """
    workers = {"": base} | {
        name: base.model_copy(update=worker_update(update))
        for name, update in (variants or {}).items()
    }
    #: The paced producer's linger of each (a variant's `producer_linger_ms`).
    lingers = {
        name: int(update.get("producer_linger_ms", LINGER_MS))
        for name, update in (variants or {}).items()
    }
    if baseline is not None:
        workers["baseline"] = base
    if pinned:
        workers |= {f"{name} pinned".strip(): settings for name, settings in workers.items()}
        lingers |= {f"{name} pinned": linger for name, linger in lingers.items()}
        if pinned_only:
            workers = {name: s for name, s in workers.items() if name.endswith("pinned")}
    out: dict[str, Any] = {}
    for share in shares:
        rate = capacity * share
        n = max(1000, int(rate * seconds))
        path = dataset(scenario, seed, n)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in workers}
        for i in range(repeat):
            for name, settings in workers.items():
                tag = f"-{name}" if name else ""
                tree = baseline if name.removesuffix(" pinned") == "baseline" else None
                log = logs / f"latency{tag.replace(' ', '-')}-{share}-{i}.log"
                pin_it = name == "pinned" or name.endswith(" pinned")
                lag = latency_once(
                    settings,
                    path,
                    n,
                    rate,
                    log,
                    tree,
                    pinned=pin_it,
                    scrape=scrape,
                    linger_ms=lingers.get(name, LINGER_MS),
                )
                print(
                    f"bench: latency{' ' + name if name else ''} at {share:.0%} ({rate:,.0f}/s) "
                    f"pass {i + 1}: {lag}",
                    flush=True,
                )
                results[name].append(lag)
        for name, rs in results.items():
            figures = {
                "rate": rate,
                "records": n,
                "sent_per_s": summary([r["sent_per_s"] for r in rs]),
                "p50_ms": summary([r["p50_ms"] for r in rs]),
                "p99_ms": summary([r["p99_ms"] for r in rs]),
                "max_ms": summary([r["max_ms"] for r in rs]),
                **{
                    key: summary([float(r[key]) for r in rs])
                    for key in (
                        *WORKER_LATENCY_COLUMNS,
                        *BATCH_COLUMNS,
                        "batches",
                        "snapshots",
                        "snapshot_pause_latest_max_ms",
                        "producer_linger_ms",
                        "fetch_behind_entered",
                        "gc_total_s",
                        "records_per_cpu_s",
                        "children_cpu_s",
                        "loop_stall_max_ms",
                        "loop_stall_p99_ms",
                        "metrics_median_ms",
                        "metrics_max_ms",
                        "report_median_ms",
                        "report_max_ms",
                    )
                    if all(r.get(key) is not None for r in rs)
                },
                "worker_cpu_share": summary([r["worker_cpu_share"] for r in rs]),
                "producer_cpu_share": summary([r["producer_cpu_share"] for r in rs]),
            }
            if name:
                out.setdefault("variants", {}).setdefault(name, {})[f"{share:.0%}"] = figures
            else:
                out[f"{share:.0%}"] = figures
    return out


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME:field=value[,field=value]` -> (NAME, validated settings update): worker settings,
    and the paced producer's `PRODUCER_FIELDS`."""
    name, _, assignments = text.partition(":")
    raw = dict(item.split("=", 1) for item in assignments.split(",") if item)
    if not name or not raw:
        raise argparse.ArgumentTypeError(f"expected NAME:field=value[,...], got {text!r}")
    unknown = set(raw) - set(Settings.model_fields) - set(PRODUCER_FIELDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown settings {sorted(unknown)}")
    producer: dict[str, Any] = {}
    for key, kind in PRODUCER_FIELDS.items():
        if key in raw:
            try:
                producer[key] = kind(raw.pop(key))
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"{key}: {exc}") from exc
            if producer[key] < 0:
                raise argparse.ArgumentTypeError(f"{key} must be >= 0")
    # Validate through the model, so "1000" becomes an int and bounds are checked.
    checked = Settings.model_validate(raw)
    return name, {**{key: getattr(checked, key) for key in raw}, **producer}


def worker_update(update: dict[str, Any]) -> dict[str, Any]:
    """A variant's worker settings (its `PRODUCER_FIELDS` left out)."""
    return {key: value for key, value in update.items() if key not in PRODUCER_FIELDS}


async def _create(settings: Settings) -> None:
    from streams.runtime.topics import all_topics, create_topics

    await create_topics(settings, all_topics(settings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--events", type=int, default=2_000_000, help="records to preload (default 2M)"
    )
    parser.add_argument("--scenario", default="xhs", choices=("xhs", "impulse"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="passes of each measurement")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--baseline", metavar="GIT_REF", help="also run the worker of this commit (before/after)"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=20.0, help="length of each paced run"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("throughput", "latency", "state", "scaling", "scaleout", "naive"),
    )
    parser.add_argument(
        "--gc-default",
        action="store_true",
        help="also run this tree's worker with CPython's default collector (no paced GC)",
    )
    parser.add_argument(
        "--capacity",
        type=float,
        help="records/s that the latency shares are of (default: (c)'s measured median)",
    )
    parser.add_argument(
        "--shares", default="0.5,0.8", help="latency loads, as shares of capacity (default 0.5,0.8)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        metavar="NAME:FIELD=VALUE[,...]",
        help="also run the worker with these settings (throughput and latency, interleaved); "
        "producer_linger_ms=N sets the latency passes' producer linger instead (default 10)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="latency passes also with the worker on a CPU of its own (the producer and the "
        "broker on the others)",
    )
    parser.add_argument(
        "--pin-only",
        action="store_true",
        help="with --pin: only the pinned latency passes (not each also unpinned)",
    )
    parser.add_argument(
        "--scrape",
        action="store_true",
        help="latency passes under a scraping load: /metrics every second, /report every 2 s, "
        "and / probed every 50 ms for the event loop's longest stall (bench/scrape.py)",
    )
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "variants": dict(args.variant),
    }
    logs = Path(tempfile.mkdtemp(prefix="livepulse-bench-"))
    print(f"bench: logs in {logs}", flush=True)
    if broker_pid() is None:
        from streams.tools.kafka import process

        results["broker_sampled"] = False
        print(
            f"bench: no broker pid in {process.state_dir()} (set LIVEPULSE_KAFKA_STATE_DIR to "
            "the broker's state directory): its CPU is not sampled and reads 0",
            flush=True,
        )
    base = Settings(bootstrap=args.bootstrap)
    capacity = args.capacity
    variants = dict(args.variant)
    baseline = baseline_tree(args.baseline) if args.baseline else None
    if "throughput" not in args.skip or "scaleout" not in args.skip:
        path = dataset(args.scenario, args.seed, args.events)
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        settings = base.model_copy(update={"topic_prefix": prefix})
        began = time.monotonic()
        preload(path, settings)
        expect = asyncio.run(_end_offsets(settings))
        print(
            f"bench: preloaded {expect:,} records into {prefix}* "
            f"in {time.monotonic() - began:.1f} s"
        )
        try:
            if "throughput" not in args.skip:
                results["throughput"] = measure_throughput(
                    settings,
                    expect,
                    args.repeat,
                    logs,
                    baseline,
                    args.gc_default,
                    variants,
                    naive="naive" not in args.skip,
                )
                results["throughput"]["records"] = expect
                results["throughput"]["dataset"] = str(path)
                if capacity is None:
                    capacity = results["throughput"]["c_worker"]["records_per_s"]["median"]
            if "scaleout" not in args.skip:
                from bench.fleet import measure_fleet

                results["scaleout"] = measure_fleet(
                    settings, expect, args.repeat, logs, baseline=baseline
                )
                results["scaleout"]["records"] = expect
        finally:
            if not args.keep_topics:
                asyncio.run(delete_run_topics(settings))
    if "latency" not in args.skip and capacity:
        results["latency"] = measure_latency(
            base,
            capacity,
            [float(x) for x in args.shares.split(",")],
            args.latency_seconds,
            args.repeat,
            args.scenario,
            args.seed,
            logs,
            variants,
            baseline,
            pinned=args.pin,
            scrape=args.scrape,
            pinned_only=args.pin_only,
        )
        results["latency_capacity"] = capacity
    if baseline is not None:
        shutil.rmtree(baseline, ignore_errors=True)
    if "state" not in args.skip:
        results["state"] = core.measure_state([10_000, 100_000], args.repeat)
    if "scaling" not in args.skip:
        results["scaling"] = core.measure_scaling(args.repeat)
    write(results, args.out)
    print(f"bench: wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0
