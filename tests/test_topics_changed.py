"""Contract topics changed by an operator under a running worker, on the real broker: partitions
added, records deleted (retention) before the worker read them. Never a silent loss: the loss is
logged and on /metrics, and the README's procedure gives back the truth's figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.settings import Settings
from streams.runtime.topics import end_offsets
from streams.tools.worker_process import WorkerProcess
from tests.support.live import (
    NO_LATENESS_GRACE_S,
    drain,
    fixture_lines,
    fixture_truth,
    replay_lines,
    report_of,
    run_settings,
    running_worker,
    truth_mismatches,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RunSettings = Callable[..., Settings]


def _own(names: Iterable[str], runs: list[Settings]) -> list[str]:
    """The topics of these runs: their prefix's (contract, dead-letter, state changelog) and
    their app ids' and the app ids derived from them (faust's `<app id>-__assignor-__leader`)."""
    return sorted(
        name
        for name in names
        for run in runs
        if name.startswith(run.topic_prefix) or name.startswith(f"{run.app_id}-")
    )


@pytest.fixture
def run_settings_cleaned(kafka_bootstrap: str) -> Iterator[RunSettings]:
    """`run_settings` for this test; afterwards every topic of its runs is deleted from the
    shared broker, whichever worker left it (a worker stopped with `delete_topics=False`, or
    one of another app id on the same topics), and the broker is listed again until none is
    left. (Only the runs' own names are deleted: other people's runs share the broker.)"""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    before = set(admin.list_topics(timeout=30).topics)
    runs: list[Settings] = []

    def make(prefix: str, **update: Any) -> Settings:
        runs.append(run_settings(kafka_bootstrap, prefix, **update))
        return runs[-1]

    yield make
    assert not _own(before, runs)  # uuid names: nothing of these runs was there before
    left = _own(admin.list_topics(timeout=30).topics, runs)
    if left:
        for future in admin.delete_topics(left, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):  # already gone: the listing below checks
                future.result(timeout=60)
    deadline = time.monotonic() + 60
    while True:
        after = set(admin.list_topics(timeout=30).topics)
        if not _own(after, runs):
            break
        assert time.monotonic() < deadline, f"not deleted: {_own(after, runs)}"
        time.sleep(0.5)


def metrics(worker: WorkerProcess) -> dict[str, list[Any]]:
    url = f"{worker.base_url}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
        text = response.read().decode()
    samples: dict[str, list[Any]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append(sample)
    return samples


def by_topic(samples: list[Any]) -> dict[str, float]:
    return {s.labels["topic"]: s.value for s in samples}


def test_partitions_added_mid_stream_are_reported_and_a_new_app_id_gets_the_truth(
    kafka_bootstrap: str, tmp_path: Path, run_settings_cleaned: RunSettings
) -> None:
    """2 -> 4 partitions after half of the fixture: the worker says which partitions it does
    not read (error log, `livepulse_contract_partitions_unread`), their records are in its lag;
    a worker of a new app id (README, "Partitions added") then gives the truth's figures."""
    settings = run_settings_cleaned("parts", partitions=2, window_grace_s=NO_LATENESS_GRACE_S)
    lines, truth = fixture_lines("xhs"), fixture_truth("xhs")
    half = len(lines) // 2
    with running_worker(settings, tmp_path / "a.log", delete_topics=False) as worker:
        replay_lines(settings, tmp_path / "first.jsonl", lines[:half])
        drain(worker)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        futures = admin.create_partitions([NewPartitions(t, 4) for t in settings.source_topics])
        for future in futures.values():
            future.result(timeout=30)
        replay_lines(settings, tmp_path / "second.jsonl", lines[half:])
        ends = asyncio.run(end_offsets(settings, settings.source_topics))
        on_new = defaultdict(int)
        for tp, end in ends.items():
            if tp.partition >= 2:
                on_new[tp.topic] += end
        assert sum(on_new.values()) > 1000  # keys moved to the new partitions
        deadline = time.monotonic() + 60
        while True:
            samples = metrics(worker)
            unread = by_topic(samples["livepulse_contract_partitions_unread"])
            lag = by_topic(samples["livepulse_consumer_lag_records"])
            if unread == dict.fromkeys(settings.source_topics, 2.0) and all(
                lag.get(t) == on_new[t] for t in settings.source_topics
            ):
                break
            assert time.monotonic() < deadline, (unread, lag, dict(on_new))
            time.sleep(1)
        assert worker.alive(), worker.tail()
        partial = report_of(worker)
    assert partial["events"]["valid"] < truth["events"]["valid"]
    log = (tmp_path / "a.log").read_text()
    errors = [line for line in log.splitlines() if "are NOT read" in line]
    assert len(errors) == len(settings.source_topics), errors

    # The procedure: a worker of a new app id lays its state out for 4 partitions.
    again = settings.model_copy(update={"app_id": f"{settings.app_id}-b", "partitions": 4})
    with running_worker(again, tmp_path / "b.log") as worker:
        drain(worker, timeout_s=120)
        report = report_of(worker)
        samples = metrics(worker)
    assert truth_mismatches(report, truth, lines, no_lateness=True) == []
    assert set(by_topic(samples["livepulse_contract_partitions_unread"]).values()) == {0.0}


def test_records_deleted_before_the_worker_read_them_are_counted_as_lost(
    kafka_bootstrap: str, tmp_path: Path, run_settings_cleaned: RunSettings
) -> None:
    """Worker stopped after half the fixture, the second half sent, then records deleted up to
    the middle of what it had not read (as retention would): the restarted worker counts
    exactly those records in `livepulse_records_lost_total` and logs them."""
    settings = run_settings_cleaned("lost")
    lines = fixture_lines("xhs")
    half = len(lines) // 2
    with running_worker(settings, tmp_path / "a.log", delete_topics=False) as worker:
        replay_lines(settings, tmp_path / "first.jsonl", lines[:half])
        drain(worker)
    read = asyncio.run(end_offsets(settings, settings.source_topics))
    replay_lines(settings, tmp_path / "second.jsonl", lines[half:])
    ends = asyncio.run(end_offsets(settings, settings.source_topics))
    cut = {tp: read[tp] + (ends[tp] - read[tp]) // 2 for tp in ends}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    deleted = admin.delete_records(
        [TopicPartition(tp.topic, tp.partition, o) for tp, o in cut.items()]
    )
    for future in deleted.values():
        future.result(timeout=30)
    expected: dict[str, int] = defaultdict(int)
    for tp, offset in cut.items():
        expected[tp.topic] += offset - read[tp]
    assert sum(expected.values()) > 1000

    with running_worker(settings, tmp_path / "b.log") as worker:
        drain(worker)
        samples = metrics(worker)
        report = report_of(worker)
    lost = by_topic(samples["livepulse_records_lost_total"])
    assert {t: int(lost.get(t, 0)) for t in expected} == dict(expected)
    processed = sum(ends.values()) - sum(expected.values())
    counts = report["events"]
    assert counts["valid"] + counts["rejected"] + counts["duplicates"] == processed
    log = (tmp_path / "b.log").read_text()
    assert "before this worker read them" in log


def _deleted(admin: AdminClient, settings: Settings) -> bool:
    """Whether the contract topics are gone, or were created again empty: the worker's own
    clients (aiokafka asks for auto-creation in every metadata request, and the test broker
    allows it) may re-create them within a poll of the deletion, and did here (the wait ran
    out with the topics listed again, empty)."""
    listed = set(settings.source_topics) & set(admin.list_topics(timeout=10).topics)
    if not listed:
        return True
    try:
        ends = asyncio.run(end_offsets(settings, sorted(listed)))
    except Exception:  # noqa: BLE001  (a topic still being deleted: look again)
        return False
    return len({tp.topic for tp in ends}) == len(listed) and not any(ends.values())


def test_topics_deleted_and_recreated_stop_the_worker_and_a_restart_gets_the_truth(
    kafka_bootstrap: str, tmp_path: Path, run_settings_cleaned: RunSettings
) -> None:
    """The contract topics deleted and re-created under a worker that had read the xhs
    fixture, then the impulse fixture sent to them: the worker stops with one error and exit
    code 3; restarted with the same app id it reports the impulse truth exactly."""
    settings = run_settings_cleaned("recreate")
    xhs = fixture_lines("xhs")
    impulse, truth = fixture_lines("impulse"), fixture_truth("impulse")
    with running_worker(settings, tmp_path / "a.log", delete_topics=False) as worker:
        replay_lines(settings, tmp_path / "xhs.jsonl", xhs)
        drain(worker)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_topics(list(settings.source_topics)).values():
            future.result(timeout=30)
        deadline = time.monotonic() + 60
        while not _deleted(admin, settings):
            assert time.monotonic() < deadline, "topics not deleted"
            time.sleep(0.5)
        replay_lines(settings, tmp_path / "impulse.jsonl", impulse)  # creates them again
        assert worker.process is not None
        code = worker.process.wait(timeout=90)
    assert code == 3, worker.tail()
    errors = [
        line for line in (tmp_path / "a.log").read_text().splitlines() if "re-created" in line
    ]
    assert len(errors) == 1, errors

    with running_worker(settings, tmp_path / "b.log") as worker:
        drain(worker)
        report = report_of(worker)
    assert truth_mismatches(report, truth, impulse) == []
