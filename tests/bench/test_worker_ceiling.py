"""Contenders (a) and (w) of the throughput bench (`bench.ceiling`: (a) the aiokafka
transport and the core, a ledger per partition; (w) the same transport, each fetch through
the worker's `LiveState` and batch handler) count a fixture's events as its truth file does.
Until Session 19 (a) did not: its one ledger over every partition refused as older than its
dedupe window the records of a partition behind another in event time (4,029 valid of the
impulse fixture's 10,452 in one run here). (w) has the worker's idle rule: its tables are
told each partition's position after each fetch, so a quiet groups partition is left out of
the membership horizon after `groups_idle_s` and the sessions it held back are summarized."""

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


def contender(
    settings: Settings,
    expect: int,
    *extra: str,
    env: dict[str, str] | None = None,
    module: str = "bench.ceiling",
) -> dict[str, Any]:
    """One run of `bench.ceiling` (or `module`, taking its options) over the run's topics,
    its JSON line (`env`: settings of its own, `LIVEPULSE_...`)."""
    done = subprocess.run(
        [
            sys.executable, "-m", module, "--prefix", settings.topic_prefix,
            "--group", f"{settings.topic_prefix}{uuid.uuid4().hex[:6]}", "--expect", str(expect),
            "--bootstrap", settings.bootstrap, "--timeout", "120", *extra,
        ],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1", **(env or {})
        },
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_ceiling_contenders_count_the_truths_events(kafka_bootstrap: str) -> None:
    lines, truth = fixture_lines("impulse"), fixture_truth("impulse")
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=f"wceil-{uuid.uuid4().hex[:8]}.")
    by_topic = preload(FIXTURES / "impulse.jsonl", settings)
    try:
        a = contender(settings, len(lines))
        w = contender(settings, len(lines), "--worker-state")
        # The worker's idle rule at a short `groups_idle_s` (the default, 60 s, is longer
        # than a pass over the fixture): every groups partition is read to its end while
        # the records of the other topics still come.
        idle = contender(
            settings, len(lines), "--worker-state", env={"LIVEPULSE_GROUPS_IDLE_S": "0.001"}
        )
    finally:
        asyncio.run(delete_run_topics(settings))
    events = truth["events"]
    expected = (events["valid"], events["rejected"], events["duplicates"])
    for name, run in (("a", a), ("w", w), ("w idle", idle)):
        assert run["records"] == len(lines), name
        assert (run["valid"], run["rejected"], run["duplicates"]) == expected, name
        assert run["expired"] == 0, name
        assert run["partitions"] == Settings().partitions, name
    # The worker's state: one partition state per partition the records came in, each with
    # the session fold on (the default `Settings`), and the membership and refund tables
    # read every record of the groups and orders topics (as the replayer published them).
    assert w["folding"] == idle["folding"] == Settings().partitions
    tables = {
        settings.topic(name): by_topic[settings.topic(name)]
        for name in ("live.groups", "live.orders")
    }
    assert w["table_records"] == idle["table_records"] == tables and all(tables.values())
    # Told the partitions' positions, the membership table leaves the quiet ones out of its
    # horizon, and the sessions it held back are summarized (none were before Session 19,
    # when (w) never told its tables: `summarized` 0 at any `groups_idle_s`).
    groups = settings.topic("live.groups")
    assert idle["idle"][groups] == list(range(Settings().partitions))
    assert idle["summarized"] > 0


def test_the_quix_contender_counts_the_truths_events(kafka_bootstrap: str) -> None:
    """(q), the Quix Streams peer, a ledger per partition as (a) (since session 19; with one
    ledger it counted about three fifths of the bench's stream): the impulse fixture's events
    as its truth file has them. Only where the `bench` extras are installed."""
    from bench.run import quix_missing

    missing = quix_missing()
    if missing is not None:
        pytest.skip(missing)
    lines, truth = fixture_lines("impulse"), fixture_truth("impulse")
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=f"qceil-{uuid.uuid4().hex[:8]}.")
    preload(FIXTURES / "impulse.jsonl", settings)
    try:
        q = contender(settings, len(lines), module="bench.quix")
    finally:
        asyncio.run(delete_run_topics(settings))
    assert q["records"] == len(lines)
    assert q["valid"] == truth["events"]["valid"]
