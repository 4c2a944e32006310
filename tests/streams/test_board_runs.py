"""Issue 17: the operator levels' settled runs exchanged to one owner partition per level
through the month-rows topic (`BoardRuns`, `BoardSettled`): the encoding, and a worker on
the real broker, killed mid-stream and restarted (its runs sent again, its records read
again), whose merged levels' peaks equal the truth reference's with none bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from agents.core.ledger import BoardRuns, BoardSettled
from streams.runtime.monthrows import board_owner, decode, encode, encode_rows
from streams.tools.drain import wait_drained
from streams.tools.worker_process import port_is_free
from tests.streams.test_month_rows import _fold_settings, _settled
from tests.support.live import (
    fixture_lines,
    fixture_truth,
    operator_truth_for,
    replay_lines,
    report_of,
    run_topics,
    started_worker,
)


def test_board_runs_and_announcements_read_back_as_written() -> None:
    runs = BoardRuns(2, "rooms", "r-1", -(2**62), 29_000_000, (3, 10, 20, 1, 25, 26), (2, 20, 25))
    assert decode(encode_rows([runs, runs._replace(name="r-2")])) == [
        runs,
        runs._replace(name="r-2"),
    ]
    assert decode(encode(BoardSettled(1, 29_000_000))) == [BoardSettled(1, 29_000_000)]
    # A level's owner is one partition, whichever source sends its runs.
    assert board_owner(runs, 3) == board_owner(runs._replace(source=0), 3) in range(3)


def _level_peaks(operator: dict[str, Any]) -> dict[str, int]:
    out = {"overall": operator["overall"]["viewers_peak"]}
    for kind in ("rooms", "merchants"):
        for level_id, figures in operator[kind].items():
            out[f"{kind}.{level_id}"] = figures["viewers_peak"]
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_killed_after_sending_runs_merges_its_levels_peaks_to_the_truth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """xhs over 3 partitions with a 3-day board horizon (so the levels settle runs through
    most of the 60 days): a worker fed 3/4 of it, killed with SIGKILL once settled runs have
    been sent (records after its snapshots read again, runs taken and sent again), then
    restarted on its state directory and fed the rest. Its report's every level's peak is
    the truth reference's (the fold's rule for sessions that never end, by each partition's
    horizons) with none bounded
    and no ceiling (the owners' runs of a source restored older than what it had sent left
    out of the merge: `board_sent_by`), and the restarted worker's partitions took and sent
    their runs, folded at the owners."""
    settings = _fold_settings(kafka_bootstrap, "boardruns", board_horizon_days=3)
    lines = fixture_lines("xhs")
    split = len(lines) * 3 // 4
    with run_topics(settings):
        with started_worker(settings, tmp_path / "worker-0.log") as first:
            replay_lines(settings, tmp_path / "run-0.jsonl", lines[:split])
            url = f"{first.base_url}/status"
            asyncio.run(wait_drained(settings, url, settings.source_topics, 120))
            deadline = time.monotonic() + 60  # the takes follow the batches' summaries
            while True:
                sent = first.status()["month_rows"]["board_runs"]
                if sent["sent"] > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert first.process is not None
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not port_is_free(settings.web_host, settings.web_port):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sent["sent"] > 0, sent
        with started_worker(settings, tmp_path / "worker-1.log", check_exit=True) as second:
            replay_lines(settings, tmp_path / "run-1.jsonl", lines[split:])
            _settled(settings, second)
            report = report_of(second)
            status = second.status()["month_rows"]["board_runs"]
    # Sessions that never end abandoned by each partition's own horizons, as its ledger does.
    truth = operator_truth_for(report, lines, fixture_truth("xhs")["operator"])
    want = _level_peaks(truth)
    assert report["retention"]["board_peaks_bounded"] == 0
    assert _level_peaks(report["operator"]) == want
    levels = [report["operator"]["overall"], *report["operator"]["rooms"].values()]
    assert not any("viewers_peak_ceiling" in figures for figures in levels)
    # The restarted worker took and sent runs too (those a summary pass settled after a take
    # within its horizon's day among them), and every owner folded to the same minute.
    folded = [to for to in status["folded_to"].values() if to is not None]
    assert status["sent"] > 0 and len(folded) == 3 and len(set(folded)) == 1, status
