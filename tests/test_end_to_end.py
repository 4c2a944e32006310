"""End to end on the real broker: fixture -> replayer -> worker process -> /report, /metrics and
the dead-letter topic, checked against the simulator's independent truth file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from schemas.decode import REJECT_REASONS
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics, end_offsets
from streams.tools.drain import fetch_json, wait_drained
from streams.tools.replayer import read_lines, replay
from streams.tools.simulator.period_truth import PeriodCut
from streams.tools.simulator.truth import cst_month as truth_month
from streams.tools.simulator.truth import split_lines
from streams.tools.worker_process import WorkerProcess, free_port
from tests.support.live import kill9, operator_truth_for
from tests.support.truth import (
    SKETCHED_RHO_TOLERANCE,
    operator_mismatches,
    report_mismatches,
    summarized,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CLAIM_GAUGES = ("livepulse_claim_observed", "livepulse_claim_ci_low", "livepulse_claim_ci_high")


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker process on fresh topics, app id and port; always stopped, topics deleted."""
    run = f"e2e-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        bootstrap=kafka_bootstrap,
        app_id=run,
        topic_prefix=f"{run}.",
        web_port=free_port(),
        data_dir=tmp_path / "data",
    )
    asyncio.run(create_topics(settings, all_topics(settings)))
    process = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        process.start()
        process.wait_ready(timeout_s=90)
        yield process
        expected = getattr(process, "expected_exit", 0)  # a test that kills it says so
        assert process.stop() == expected, f"worker did not stop cleanly:\n{process.tail()}"
    finally:
        process.stop()
        asyncio.run(delete_run_topics(settings))


async def read_topics(settings: Settings, topics: list[str]) -> dict[tuple[str, int, int], Any]:
    """Every record of `topics`, by (topic, partition, offset)."""
    ends = {tp: end for tp, end in (await end_offsets(settings, topics)).items() if end > 0}
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka_client_kwargs())
    await consumer.start()
    records: dict[tuple[str, int, int], Any] = {}
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        deadline = time.monotonic() + 30
        while len(records) < sum(ends.values()):
            assert time.monotonic() < deadline, "records missing on the broker"
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    records[(m.topic, m.partition, m.offset)] = m
    finally:
        await consumer.stop()
    return records


def metric_samples(text: str) -> dict[str, list[Any]]:
    samples: dict[str, list[Any]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append(sample)
    return samples


@pytest.mark.parametrize("fixture", ["xhs", "impulse"])
def test_worker_report_metrics_and_dead_letters_match_the_truth(
    worker: WorkerProcess, fixture: str
) -> None:
    settings = worker.settings
    path = FIXTURES / f"{fixture}.jsonl"
    truth = json.loads((FIXTURES / f"{fixture}.truth.json").read_text(encoding="utf-8"))
    lines = list(read_lines(path))
    started = time.monotonic()

    summary = asyncio.run(replay(path, settings))
    assert summary.lines == truth["lines"] == len(lines)
    assert summary.rejected == 0
    drained = asyncio.run(
        wait_drained(settings, f"{worker.base_url}/status", settings.source_topics, 90)
    )
    assert drained.records == truth["lines"]
    print(
        f"{fixture}: replayed {summary.lines} lines at {summary.events_per_s:,.0f}/s; "
        f"worker drained {time.monotonic() - started:.1f} s after the replay began"
    )

    # /report: counts exact, every figure to 1e-9, every detail count equal. Once the state
    # has settled: with the session fold the partitions still exchange internal rows after
    # the contract topics drain (month rows, first orders: README "State"), which change the
    # state without a contract event, so a report read just then is already not current.
    deadline = time.monotonic() + 60
    report = fetch_json(f"{worker.base_url}/report")
    while not report["as_of"]["current"] and time.monotonic() < deadline:
        time.sleep(0.5)
        report = fetch_json(f"{worker.base_url}/report")
    assert report["events"] == truth["events"]
    assert report_mismatches(report, truth) == []
    # Operator figures, windows and late count included: lateness is judged per topic and
    # record key (the contract's unit of order), so the worker's concurrent reading of the
    # topics gives the same windows as the file order the truth walks.
    # With the session fold (when on), under its rule for sessions that never end.
    operator = operator_truth_for(report, lines, truth["operator"])
    assert (
        operator_mismatches(report["operator"], operator, sketched_medians=summarized(report)) == []
    )
    # Built off the event loop, and labelled as of the state it covers: all of it.
    assert report["as_of"]["current"] is True and report["as_of"]["events_since"] == 0
    assert report["as_of"]["events"] == truth["events"]["valid"]
    # ?max_age_s: the newest report without waiting (the same one: nothing came since).
    assert fetch_json(f"{worker.base_url}/report?max_age_s=60") == report
    with pytest.raises(urllib.error.HTTPError) as bad:
        fetch_json(f"{worker.base_url}/report?max_age_s=soon")
    assert bad.value.code == 400

    # Claims by period (docs/metrics.md): every CST month and the rolling horizon equal the
    # truth reference run on the fixture cut to them (the worker merges its partitions).
    periods = report["periods"]
    cut = PeriodCut(split_lines(path.read_text(encoding="utf-8")))
    start = periods["rolling_from_ts"]
    cuts = {"rolling": cut.claims(lambda ts: ts > start)}
    for entry in periods["claims"]["live_aov"]["month"]:
        key = entry["period"]
        cuts[key] = cut.claims(lambda ts, key=key: truth_month(ts) == key)
    for claim_id, figures in periods["claims"].items():
        for name, period_truth in cuts.items():
            mine = (
                figures["rolling"]
                if name == "rolling"
                else next(e for e in figures["month"] if e["period"] == name)
            )
            expected = period_truth[claim_id]["observed"]
            assert (mine["observed"] is None) == (expected is None), (claim_id, name)
            if expected is None:
                continue
            # With summarized sessions the rank correlation is read from the partitions'
            # merged sketches, within their bound (as the whole stream's: report_mismatches).
            bound = (
                SKETCHED_RHO_TOLERANCE
                if claim_id == "price_dwell_association" and summarized(report)
                else 1e-9 * max(1, abs(expected))
            )
            assert abs(mine["observed"] - expected) <= bound, (claim_id, name)

    # `livepulse report` prints the same JSON, and the same figures as a table.
    # The state may move meanwhile (summaries wait for an idle groups partition,
    # `LIVEPULSE_GROUPS_IDLE_S`): compared with the report the worker serves just after, read
    # again until both are the same build.
    for _ in range(5):
        as_json = json.loads(livepulse("report", "--from", worker.base_url, "--json"))
        served = fetch_json(f"{worker.base_url}/report?max_age_s=3600")
        if as_json["as_of"] == served["as_of"]:
            break
    assert as_json == served
    assert as_json["claims"].keys() == report["claims"].keys()
    table = livepulse("report", "--from", f"{worker.base_url}/report")
    assert all(claim_id in table for claim_id in truth["claims"])

    # /metrics: parses; claim gauges for every claim; counters agree with the truth.
    samples = metric_samples(worker_text(worker, "/metrics"))
    defined = {c for c, v in truth["claims"].items() if v["observed"] is not None}
    for gauge in CLAIM_GAUGES:
        labelled = {s.labels["claim"] for s in samples[gauge]}
        # An interval end may be unbounded (reply_latency's p95 on few answers): no sample.
        key = gauge.removeprefix("livepulse_claim_")
        bounded = {c for c, entry in report["claims"].items() if entry[key] is not None}
        assert defined & bounded <= labelled, gauge
    assert defined <= {s.labels["claim"] for s in samples["livepulse_claim_observed"]}
    # The latest day's, month's and rolling horizon's figures, by the period's kind only.
    for kind in ("day", "month", "rolling"):
        latest = {
            c: (f[kind] if kind == "rolling" else f[kind][-1]) for c, f in periods["claims"].items()
        }
        labelled = {
            s.labels["claim"]: s.value
            for s in samples["livepulse_claim_period_observed"]
            if s.labels["period"] == kind
        }
        assert labelled == {
            c: e["observed"] for c, e in latest.items() if e["observed"] is not None
        }
    verdicts = [s for s in samples["livepulse_claim_verdict"] if s.value == 1.0]
    assert {s.labels["claim"] for s in verdicts} == set(report["claims"])
    assert sum(s.value for s in samples["livepulse_events_total"]) == truth["events"]["valid"]
    rejected = samples["livepulse_events_rejected_total"]
    assert sum(s.value for s in rejected) == truth["events"]["rejected"]
    assert {s.labels["reason"] for s in rejected} <= set(REJECT_REASONS)
    duplicates = samples["livepulse_events_duplicate_total"]
    assert sum(s.value for s in duplicates) == truth["events"]["duplicates"]
    # Operator families: overall and the (bounded) rooms add up to the truth's entries.
    entries = samples["livepulse_entries_total"]
    overall_entries = truth["operator"]["overall"]["entries"]
    assert [s.value for s in entries if s.labels["level"] == "overall"] == [overall_entries]
    assert sum(s.value for s in entries if s.labels["level"] == "room") == overall_entries
    # The report behind those families covers every event, and says so.
    assert [s.value for s in samples["livepulse_report_events_behind"]] == [0.0]
    assert samples["livepulse_report_age_seconds"][0].value >= 0
    assert samples["livepulse_report_build_seconds"][0].value > 0

    # The dead-letter topic: one record per rejected line, the original bytes and key, and
    # headers that point back at that very record on its source topic.
    records = asyncio.run(read_topics(settings, [*settings.source_topics, settings.deadletter]))
    letters = [r for (topic, _, _), r in records.items() if topic == settings.deadletter]
    assert len(letters) == truth["events"]["rejected"]
    fixture_lines = set(lines)
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers}
        assert headers["livepulse-reason"] in REJECT_REASONS
        assert headers["livepulse-detail"]
        source = records[
            (
                headers["livepulse-source-topic"],
                int(headers["livepulse-source-partition"]),
                int(headers["livepulse-source-offset"]),
            )
        ]
        assert letter.value == source.value and letter.key == source.key
        assert letter.value in fixture_lines


def worker_text(worker: WorkerProcess, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{worker.base_url}{path}", timeout=30) as response:  # noqa: S310
        body: bytes = response.read()
    return body.decode()


def livepulse(*args: str) -> str:
    """Run the `livepulse` CLI; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_restarted_worker_rebuilds_its_state_and_matches_the_truth(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    """Stop after a full replay (offsets committed), start again with the same app id."""
    settings = worker.settings
    truth = json.loads((FIXTURES / "impulse.truth.json").read_text(encoding="utf-8"))
    asyncio.run(replay(FIXTURES / "impulse.jsonl", settings))
    status = f"{worker.base_url}/status"
    asyncio.run(wait_drained(settings, status, settings.source_topics, 90))
    assert report_mismatches(fetch_json(f"{worker.base_url}/report"), truth) == []
    assert worker.stop() == 0

    again = WorkerProcess(settings, tmp_path / "again.log")
    try:
        again.start()
        again.wait_ready(timeout_s=90)
        asyncio.run(wait_drained(settings, status, settings.source_topics, 90))
        report = fetch_json(f"{again.base_url}/report")
        assert report_mismatches(report, truth) == [], again.tail()
        # The state came back from the snapshots; not one record was read again.
        held = again.status()
        assert held["records"] == 0, held
        assert {p["restored_from"] for p in held["partitions"].values() if p["positions"]} == {
            "local"
        }, held["partitions"]
    finally:
        assert again.stop() == 0, again.tail()


def test_worker_killed_with_sigkill_restarts_and_matches_the_truth(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    """kill -9 mid-stream: the new worker waits for the dead one's session, then rebuilds."""
    settings = worker.settings
    truth = json.loads((FIXTURES / "impulse.truth.json").read_text(encoding="utf-8"))
    lines = list(read_lines(FIXTURES / "impulse.jsonl"))
    half = tmp_path / "first-half.jsonl"
    half.write_bytes(b"\n".join(lines[: len(lines) // 2]) + b"\n")
    rest = tmp_path / "second-half.jsonl"
    rest.write_bytes(b"\n".join(lines[len(lines) // 2 :]) + b"\n")
    status = f"{worker.base_url}/status"
    asyncio.run(replay(half, settings))
    asyncio.run(wait_drained(settings, status, settings.source_topics, 90))
    time.sleep(4)  # past faust's commit interval (2.8 s): offsets are committed
    kill9(worker)
    asyncio.run(replay(rest, settings))  # arrives while no worker runs

    again = WorkerProcess(settings, tmp_path / "again.log")
    try:
        again.start()
        again.wait_ready(timeout_s=150)
        asyncio.run(wait_drained(settings, status, settings.source_topics, 90))
        report = fetch_json(f"{again.base_url}/report")
        assert report_mismatches(report, truth) == [], again.tail()
    finally:
        assert again.stop() == 0, again.tail()
