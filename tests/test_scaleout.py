"""Issue 5's scale-out and crash faults against the real broker: several workers of one app id
share the partitions, workers join and leave mid-replay, a worker is killed with SIGKILL and
restarted; every time, the report over every partition (merged from the changelog,
`livepulse report --changelog`) equals the fixture's independent truth file."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.runtime.global_report import global_report
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.worker_process import WorkerProcess, free_ports
from tests.support.live import (
    BackgroundReplay,
    fixture_lines,
    fixture_truth,
    kill9,
    replay_lines,
    run_settings,
    truth_mismatches,
    write_lines,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURE = "impulse"  # 10,624 lines
PARTITIONS = 4


class Fleet:
    """Workers of one app id, each with its own port and data directory."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.workers: list[WorkerProcess] = []

    def start(self, name: str) -> WorkerProcess:
        (port,) = free_ports(1)
        settings = self.settings.model_copy(
            update={"web_port": port, "data_dir": self.root / name / "data"}
        )
        worker = WorkerProcess(settings, self.root / f"{name}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def wait_balanced(self, timeout_s: float = 120.0) -> dict[int, set[int]]:
        """Wait until the running workers hold disjoint partitions covering them all."""
        deadline = time.monotonic() + timeout_s
        while True:
            held: dict[int, set[int]] = {}
            with contextlib.suppress(OSError, ValueError):
                for i, worker in enumerate(self.running()):
                    status = worker.status()
                    if not status.get("ready"):
                        raise ValueError("rebalancing")
                    held[i] = {int(p) for p in status["partitions"]}
                every = [p for ps in held.values() for p in ps]
                if len(held) == len(self.running()) and sorted(every) == list(range(PARTITIONS)):
                    return held
            if time.monotonic() > deadline:
                tails = "\n".join(w.tail(15) for w in self.workers)
                raise AssertionError(f"workers never split the partitions: {held}\n{tails}")
            time.sleep(0.5)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def fleet(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Fleet]:
    settings = run_settings(kafka_bootstrap, "scale", partitions=PARTITIONS)
    asyncio.run(create_topics(settings, all_topics(settings)))
    group = Fleet(settings, tmp_path)
    try:
        yield group
    finally:
        group.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))


def merged_report(settings: Settings, timeout_s: float = 90.0) -> dict[str, Any]:
    report = asyncio.run(global_report(settings, wait_s=timeout_s))
    assert report["state"]["uncovered_records"] == 0, report["state"]
    return report


def assert_truth(report: dict[str, Any], lines: list[bytes]) -> None:
    problems = truth_mismatches(report, fixture_truth(FIXTURE), lines)
    assert problems == [], problems[:20]


@pytest.mark.parametrize("workers", [2, 3])
def test_n_workers_give_the_one_worker_report(fleet: Fleet, tmp_path: Path, workers: int) -> None:
    lines = fixture_lines(FIXTURE)
    for i in range(workers):
        fleet.start(f"w{i}")
    for worker in fleet.workers:
        worker.wait_ready(timeout_s=120)
    held = fleet.wait_balanced()
    assert len(held) == workers and all(held.values())
    replay_lines(fleet.settings, tmp_path / "all.jsonl", lines)
    report = merged_report(fleet.settings)
    assert_truth(report, lines)
    # Every worker did part of the work, none all of it.
    applied = [w.status()["records"] for w in fleet.workers]
    assert all(0 < n < len(lines) for n in applied), applied
    assert sum(applied) == len(lines), applied
    # What Prometheus sums over the workers (livepulse_claim_part) is every claim's truth,
    # the group claims included (their parts come from the leader's merged report).
    assert_summed_parts_equal_the_truth(fleet)
    # And any worker's /report?scope=global is the merged report.
    from streams.tools.drain import fetch_json

    merged = fetch_json(f"{fleet.workers[-1].base_url}/report?scope=global")
    assert_truth(merged, lines)
    # Each claim's global interval and verdict have one source (the leader's merged report,
    # or the one worker): exactly one worker exports them, both ends from the same report.
    assert_one_source_of_global_intervals(fleet, merged)


def summed_parts(workers: list[WorkerProcess]) -> dict[tuple[str, str], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    total: dict[tuple[str, str], float] = {}
    for worker in workers:
        with urllib.request.urlopen(f"{worker.base_url}/metrics", timeout=30) as response:  # noqa: S310
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "livepulse_claim_part":
                continue
            for sample in family.samples:
                key = (sample.labels["claim"], sample.labels["part"])
                total[key] = total.get(key, 0.0) + sample.value
    return total


def assert_summed_parts_equal_the_truth(fleet: Fleet, timeout_s: float = 60.0) -> None:
    from streams.runtime.claim_parts import CLAIM_PARTS

    claims = fixture_truth(FIXTURE)["claims"]
    want = {(c, p): float(claims[c][p]) for c, names in CLAIM_PARTS.items() for p in names}
    deadline = time.monotonic() + timeout_s
    while True:
        got = summed_parts(fleet.running())
        if got == want:
            return
        if time.monotonic() > deadline:  # the leader refreshes its merged report every 10 s
            wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
            raise AssertionError(f"summed claim parts differ from the truth: {wrong}")
        time.sleep(1.0)


def global_gauges(worker: WorkerProcess) -> dict[tuple[str, str], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{worker.base_url}/metrics", timeout=30) as response:  # noqa: S310
        text = response.read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "livepulse_claim_global":
                found[(sample.labels["claim"], sample.labels["bound"])] = sample.value
            elif sample.name == "livepulse_claim_global_verdict" and sample.value == 1.0:
                found[(sample.labels["claim"], "verdict=" + sample.labels["verdict"])] = 1.0
    return found


def assert_one_source_of_global_intervals(
    fleet: Fleet, merged: dict[str, Any], timeout_s: float = 60.0
) -> None:
    want: dict[tuple[str, str], float] = {}
    for claim_id, entry in merged["claims"].items():
        for bound, key in (("observed", "observed"), ("low", "ci_low"), ("high", "ci_high")):
            if isinstance(entry[key], int | float):
                want[(claim_id, bound)] = float(entry[key])
        want[(claim_id, "verdict=" + entry["verdict"])] = 1.0
    deadline = time.monotonic() + timeout_s
    while True:
        exported = [g for g in (global_gauges(w) for w in fleet.running()) if g]
        got = [{k: v for k, v in g.items() if k[1] != "claimed"} for g in exported]
        if got == [want]:
            return
        if time.monotonic() > deadline:  # the leader refreshes its merged report every 10 s
            raise AssertionError(f"{len(exported)} workers export global gauges: {got} != {want}")
        time.sleep(1.0)


def test_workers_joining_and_leaving_mid_replay_change_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    """One worker, a second joins, a third joins, the first leaves (SIGTERM), the second is
    killed (SIGKILL): all while the fixture is replayed; the end report equals the truth."""
    lines = fixture_lines(FIXTURE)
    first = fleet.start("w0")
    first.wait_ready(timeout_s=120)
    replay = BackgroundReplay(
        fleet.settings, write_lines(tmp_path / "all.jsonl", lines), rate=1200.0
    )
    replay.start()
    time.sleep(1.5)
    second = fleet.start("w1")
    time.sleep(2.0)
    third = fleet.start("w2")
    time.sleep(2.0)
    assert first.stop() == 0, first.tail()
    time.sleep(1.5)
    kill9(second)
    replay.join(timeout=120)
    assert replay.error is None, replay.error
    assert third.alive(), third.tail()
    report = merged_report(fleet.settings, timeout_s=150.0)
    assert_truth(report, lines)
    # The survivor took the others' partitions over from their snapshots, not from scratch.
    restored = {p["restored_from"] for p in third.status()["partitions"].values()}
    assert restored & {"changelog", "memory", "local"}, third.status()["partitions"]


def test_killed_worker_restarts_from_its_snapshots_not_from_the_start(
    fleet: Fleet, tmp_path: Path
) -> None:
    """kill -9 mid-replay, restart on the same data directory: the state comes back from the
    local RocksDB store (and the changelog's tail), the sources are read from the snapshot's
    positions on, and the end report equals the truth (nothing lost, nothing counted twice)."""
    lines = fixture_lines(FIXTURE)
    worker = fleet.start("w0")
    worker.wait_ready(timeout_s=120)
    half = len(lines) // 2
    replay_lines(fleet.settings, tmp_path / "first.jsonl", lines[:half])
    # Wait for snapshots covering the first half, then send more and kill mid-stream.
    merged_report(fleet.settings)
    replay = BackgroundReplay(
        fleet.settings, write_lines(tmp_path / "rest.jsonl", lines[half:]), 3000.0
    )
    replay.start()
    time.sleep(0.8)
    kill9(worker)
    replay.join(timeout=60)
    assert replay.error is None

    again = WorkerProcess(worker.settings, tmp_path / "again.log")
    fleet.workers.append(again)
    restarted = time.monotonic()
    again.start()
    again.wait_ready(timeout_s=150)
    ready_s = time.monotonic() - restarted
    report = merged_report(fleet.settings)
    caught_up_s = time.monotonic() - restarted
    assert_truth(report, lines)
    status = again.status()
    restore_s = max(p["restored_s"] for p in status["partitions"].values())
    print(
        f"\nkill -9 recovery: ready after {ready_s:.1f} s, snapshots cover every record after "
        f"{caught_up_s:.1f} s, slowest partition restore {restore_s * 1000:.0f} ms, "
        f"{status['records']} records applied after the restart (the first {half} came back "
        "from the snapshots)"
    )
    sources = {p["restored_from"] for p in status["partitions"].values() if p["positions"]}
    assert sources <= {"local", "changelog"} and sources, status["partitions"]
    # It did not read the topics from the start: at most the unsnapshotted tail again.
    assert status["records"] <= len(lines) - half // 2, status["records"]
    # The worker's own /report (it holds every partition) is the truth too.
    from tests.support.live import report_of

    assert_truth(report_of(again), lines)


def test_report_command_merges_the_changelog(fleet: Fleet, tmp_path: Path) -> None:
    """`livepulse report --changelog --json` prints the merged report (what users run)."""
    import json

    lines = fixture_lines(FIXTURE)
    for name in ("a", "b"):
        fleet.start(name).wait_ready(timeout_s=120)
    fleet.wait_balanced()
    replay_lines(fleet.settings, tmp_path / "all.jsonl", lines)
    settings = fleet.settings
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "report",
            "--changelog",
            "--wait",
            "90",
            "--json",
            "--bootstrap",
            settings.bootstrap,
            "--app-id",
            settings.app_id,
            "--topic-prefix",
            settings.topic_prefix,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert_truth(json.loads(done.stdout), lines)
