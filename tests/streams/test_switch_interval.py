"""Issue 19 (session 20): the worker runs with the thread switch interval of its settings
(`LIVEPULSE_GIL_SWITCH_INTERVAL_MS`), shown on `/status`; the default is CPython's own 5 ms.
What another interval does to the latency is measured by bench/run.py (`--variant
NAME:gil_switch_interval_ms=N`), not here."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.runtime.settings import Settings
from tests.support.live import drain, fixture_lines, replay_lines, run_settings, running_worker

pytestmark = pytest.mark.integration


def test_the_worker_runs_with_the_switch_interval_of_its_settings(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    assert Settings().gil_switch_interval_ms == 5.0  # CPython's default: no change by default
    settings = run_settings(kafka_bootstrap, "switch", gil_switch_interval_ms=0.5)
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "xhs.jsonl", fixture_lines("xhs")[:500])
        drain(worker)
        status = worker.status()
    assert status["switch_interval_ms"] == 0.5
    assert status["records"] == 500
