"""Issue 19: an idle worker's fetches and a worker's behind (`BatchConsumer._fetch_mode`, its idle
and behind wait settings).

A `livepulse worker` (`LIVEPULSE_BATCH_FETCH_IDLE_WAIT_MS`, 500 ms) whose topics are empty
switches its fetcher to the idle settings (1 byte, the idle wait) after a second with no
record, and back to the busy ones when records come; every record replayed then is applied.
A worker started behind a whole fixture, with small batches, switches to the behind wait while
its batches are whole and back once one is not, and applies every record. The CPU they save
is measured by bench/idle_fetch.py and bench/run.py, not here."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    replay_lines,
    run_settings,
    running_worker,
)

pytestmark = pytest.mark.integration


def _status_until(
    worker: Any, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status: dict[str, Any] = worker.status()
        if done(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_an_idle_worker_fetches_with_the_idle_settings_until_records_come(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = run_settings(kafka_bootstrap, prefix="idlefetch")
    lines = fixture_lines("impulse")
    with running_worker(settings, tmp_path / "worker.log") as worker:
        idle = _status_until(worker, lambda s: s["fetch"]["idle"])
        assert idle["fetch"]["idle"] is True and idle["fetch"]["switches"] >= 1, idle["fetch"]
        replay_lines(settings, tmp_path / "impulse.jsonl", lines)
        drain(worker, timeout_s=120)
        status = worker.status()
        # Busy again for the records (then idle again a second after they stop).
        assert status["fetch"]["switches"] >= idle["fetch"]["switches"] + 1, status["fetch"]
        assert status["events"] == fixture_truth("impulse")["events"]  # every record applied
        again = _status_until(worker, lambda s: s["fetch"]["idle"])
        assert again["fetch"]["idle"] is True, again["fetch"]


def test_a_worker_behind_fetches_with_the_behind_wait_and_applies_every_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Batches of 200 records: every `getmany` of the fixture's backlog is a whole one. A
    # behind wait of 2 s, 20 times the default: a fetch held that long still loses nothing.
    settings = run_settings(
        kafka_bootstrap,
        prefix="behindfetch",
        batch_max_records=200,
        batch_fetch_behind_wait_ms=2000,
    )
    lines = fixture_lines("xhs")
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "xhs.jsonl", lines)
        drain(worker, timeout_s=180)
        status = worker.status()
        entered = status["fetch"]["entered"]
        assert entered["behind"] >= 1 and entered["busy"] >= 1, status["fetch"]
        assert status["events"] == fixture_truth("xhs")["events"]  # every record applied
        # Not behind once drained: the first batch that is not whole set the busy wait back.
        assert status["fetch"]["behind"] is False, status["fetch"]
