"""The benchmark harness runs end to end at a tiny size (a smoke test: no speed is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import core
from bench.report import render
from bench.run import quix_missing
from schemas import Rejection, decode

ROOT = Path(__file__).resolve().parents[2]


def test_core_measurements_at_a_tiny_size() -> None:
    records = core.stream(rooms=2, viewers=50, days=1)
    # Every synthetic record is a contract event the core accepts.
    assert all(not isinstance(decode(r), Rejection) for r in records)
    state = core.state_once(2000, traced=True)
    assert state["viewers"] == 2000 and state["traced_bytes"] > 0
    cold = core.state_once(2000, traced=True, warm=False)
    assert cold["records"] == state["records"] and cold["traced_bytes"] > 0
    lines = core.state_once(2000, traced=True, by_line=3)["by_line"]
    # The lines keeping most, bytes per viewer, largest first, within the traced total.
    assert len(lines) == 3 and lines[0][1] >= lines[1][1] >= lines[2][1] > 0
    assert sum(per_viewer for _line, per_viewer in lines) * 2000 <= state["traced_bytes"] * 1.1
    pauses = core.gc_pauses(1_000, rooms=2, days=1)
    assert pauses["collections"] > 0
    # A collection's CPU time is part of its wall-clock time, never more.
    assert pauses["cpu_longest_p99_ms"][0] <= pauses["wall_longest_p99_ms"][0] + 0.01
    cost = core.scaling_once(rooms=2, viewers=2000, days=1)
    assert cost["records"] > core.PROBE and cost["us_per_event_probe"] > 0


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_pin_moves_every_thread_and_unpin_gives_them_back() -> None:
    import threading

    from bench.proc import pin, unpin

    before = os.sched_getaffinity(0)
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        one = {min(before)}
        saved = pin(os.getpid(), one)
        assert len(saved) >= 2  # this thread and the helper at least
        assert all(os.sched_getaffinity(tid) == one for tid in saved)
        unpin(saved)
        assert os.sched_getaffinity(0) == before
    finally:
        stop.set()
        helper.join()


@pytest.mark.integration
def test_harness_runs_end_to_end(tmp_path: Path, kafka_bootstrap: str) -> None:
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "LIVEPULSE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--events",
            "3000",
            "--repeat",
            "1",
            "--latency-seconds",
            "2",
            # One paced load of 1,000 records/s (not shares of the measured capacity, which
            # made it tens of thousands of records to generate and replay): the harness runs,
            # its figures are not judged here.
            "--capacity",
            "2000",
            "--shares",
            "0.5",
            "--skip",
            "state",
            "--skip",
            "scaling",
            *(["--pin"] if len(os.sched_getaffinity(0)) >= 2 else []),
            "--out",
            str(out),
            "--bootstrap",
            kafka_bootstrap,
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    results = json.loads(out.with_suffix(".json").read_text())
    throughput = results["throughput"]
    assert throughput["records"] == 3000
    for contender in ("t_transport", "a_ceiling", "w_worker_state", "b_naive_faust", "c_worker"):
        assert throughput[contender]["records_per_s"]["median"] > 0
    # The Quix Streams peer runs where the optional `bench` group is installed.
    assert ("q_quix" in throughput) == (quix_missing() is None)
    assert results["latency_capacity"] == 2000
    row = results["latency"]["50%"]
    assert row["records"] == 2000  # 1,000/s for 2 s
    assert row["p99_ms"]["median"] is not None
    # The part in the worker is part of the whole.
    assert row["worker_p99_ms"]["median"] <= row["max_ms"]["median"]
    # The records per batch beside it: no batch holds more than the pass's records.
    assert row["batches"]["median"] >= 1
    assert 1 <= row["batch_p50"]["median"] <= row["batch_max"]["median"] <= row["records"]
    assert row["producer_linger_ms"]["median"] == 10
    if len(os.sched_getaffinity(0)) >= 2:
        assert results["latency"]["variants"]["pinned"]["50%"]["p99_ms"]["median"] is not None
    # Scale-out: every run's report merged from its changelog counted every record once.
    scaleout = results["scaleout"]
    assert scaleout["global_events_agree"]
    events = scaleout["1"]["global_events"][0]
    assert events["valid"] + events["rejected"] + events["duplicates"] == 3000
    # Every month-rows record in a final snapshot, the one worker's own last announcements
    # too (read before it stops: `MonthRowExchange.read_to_end`).
    assert scaleout["1"]["global_uncovered"] == [0]
    assert scaleout["2"]["global_uncovered"] == [0]
    text = out.read_text()
    assert "(c)/(a)" in text and "(c)/(w)" in text and "p99 ms" in text and "Scale-out" in text
    assert "batch records p50" in text
    assert render(results) in text


def test_a_variant_sets_worker_settings_and_the_paced_producer_apart() -> None:
    """`--variant` validates worker settings through `Settings` and takes the producer's
    linger beside them; the worker is given only its own (the producer's is not a setting)."""
    import argparse

    from bench.run import parse_variant, worker_update

    name, update = parse_variant("small:batch_max_records=500,producer_linger_ms=0")
    assert (name, update) == ("small", {"batch_max_records": 500, "producer_linger_ms": 0})
    assert worker_update(update) == {"batch_max_records": 500}
    assert parse_variant("linger2:producer_linger_ms=2") == ("linger2", {"producer_linger_ms": 2})
    for wrong in (
        "x:producer_linger_ms=-1",
        "x:producer_linger_ms=soon",
        "x:batch_max_records=0",
        "x:no_such_setting=1",
        "x:",
    ):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            parse_variant(wrong)


def test_a_summary_of_no_measurement_is_nan_not_an_error() -> None:
    """A pass too short for the CPU clock gives no records-per-CPU-second figure: the run
    reports it as NaN with n = 0 instead of stopping (it did, under load, in the test above)."""
    import math

    from bench.shared import summary

    empty = summary([])
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("median", "min", "max"))
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_peak_rss_is_the_high_water_mark_of_the_process() -> None:
    from bench.proc import peak_rss_bytes, rss_bytes

    before = peak_rss_bytes(os.getpid())
    assert before is not None and before >= rss_bytes()
    # 64 MB touched, then freed (a block that large is its own mapping, given back at once):
    # the RSS falls again, the peak stays where it was.
    held = bytearray(64 * 1024 * 1024)
    for i in range(0, len(held), 4096):
        held[i] = 1
    touched = rss_bytes()
    del held
    after = rss_bytes()
    assert after < touched - 60 * 1024 * 1024
    peak = peak_rss_bytes(os.getpid())
    # The kernel's counters lag by a few pages (its per-thread batches): within 4 MiB.
    assert (
        peak is not None and touched - 4 * 1024 * 1024 <= peak and peak > after + 56 * 1024 * 1024
    )
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    assert peak_rss_bytes(int(child.stdout)) is None  # gone


def test_the_header_says_when_the_broker_was_not_sampled_and_gives_every_option() -> None:
    """A run whose broker is not the project's local one (its pid not in the state directory)
    reads 0 broker CPU: the header says those are not measurements, and the command line
    gives `--pin` and a non-default `--bootstrap` as they were run."""
    results = json.loads((ROOT / "bench" / "s20-round-2m.json").read_text())
    text = render(results)
    command = next(line for line in text.splitlines() if line.startswith("- command:"))
    assert " --pin" in command and " --bootstrap 127.0.0.1:19000" in command
    assert "broker CPU: **not sampled**" in text
    results["broker_sampled"] = True
    results["args"]["pin"] = "False"
    results["args"]["bootstrap"] = "127.0.0.1:9092"
    text = render(results)
    assert "not sampled" not in text
    assert " --pin" not in text and "--bootstrap" not in text
