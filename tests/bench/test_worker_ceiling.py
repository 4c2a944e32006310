"""Contender (w) of the throughput bench (`bench.ceiling --worker-state`: (a)'s aiokafka
transport, each fetch through the worker's `LiveState` and batch handler) counts a fixture's
events as its truth file does. (a) does not: its one ledger over every partition refuses as
older than its dedupe window the records of a partition behind another in event time (4,029
valid of the impulse fixture's 10,452 in one run here), which is why it is no test of (w)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.data import preload
from streams.runtime.settings import Settings
from streams.runtime.topics import delete_run_topics
from tests.support.live import FIXTURES, fixture_lines, fixture_truth

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def contender(settings: Settings, expect: int, *extra: str) -> dict[str, Any]:
    """One run of `bench.ceiling` over the run's topics, its JSON line."""
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.ceiling", "--prefix", settings.topic_prefix,
            "--group", f"{settings.topic_prefix}{uuid.uuid4().hex[:6]}", "--expect", str(expect),
            "--bootstrap", settings.bootstrap, "--timeout", "120", *extra,
        ],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_worker_state_contender_counts_the_truths_events(kafka_bootstrap: str) -> None:
    lines, truth = fixture_lines("impulse"), fixture_truth("impulse")
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=f"wceil-{uuid.uuid4().hex[:8]}.")
    by_topic = preload(FIXTURES / "impulse.jsonl", settings)
    try:
        w = contender(settings, len(lines), "--worker-state")
    finally:
        asyncio.run(delete_run_topics(settings))
    events = truth["events"]
    assert w["records"] == len(lines)
    assert (w["valid"], w["rejected"], w["duplicates"]) == (
        events["valid"],
        events["rejected"],
        events["duplicates"],
    )
    assert w["expired"] == 0
    # The worker's state: one partition state per partition the records came in, each with
    # the session fold on (the default `Settings`), and the membership and refund tables
    # read every record of the groups and orders topics (as the replayer published them).
    assert w["partitions"] == w["folding"] == Settings().partitions
    tables = {
        settings.topic(name): by_topic[settings.topic(name)]
        for name in ("live.groups", "live.orders")
    }
    assert w["table_records"] == tables and all(tables.values())
