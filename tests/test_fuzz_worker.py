"""Fuzz through the running worker on the real broker: hypothesis-generated invalid records
interleaved with a valid fixture. The worker never stops, every invalid record is on the
dead-letter topic with its original bytes and headers, the counter by reason equals the count
per reason, and the valid records' report equals the truth file."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from schemas import MAX_RECORD_BYTES, Rejection, decode
from streams.runtime.settings import Settings
from streams.tools.replayer import route
from streams.tools.worker_process import WorkerProcess
from tests.schemas.test_decode_fuzz import mutated_bytes
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    report_of,
    run_settings,
    running_worker,
    truth_mismatches,
)
from tests.test_end_to_end import read_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURE = "impulse"
# Kept under the broker's default record limit (1 MiB): larger ones never reach a topic.
invalid_records = mutated_bytes().filter(
    lambda raw: len(raw) < MAX_RECORD_BYTES - 4096 and isinstance(decode(raw), Rejection)
)


@pytest.fixture(scope="module")
def fuzz_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    # Every example sends the whole 60-day fixture again to this one worker: older than the
    # default dedupe window, those copies would expire (tests/test_faults.py tests that); with
    # no window each is a duplicate, as the counts below expect.
    settings = run_settings(kafka_bootstrap, "fuzz", dedupe_window_s=0)
    log = tmp_path_factory.mktemp("fuzz") / "worker.log"
    with running_worker(settings, log) as worker:
        worker.rounds = 0  # type: ignore[attr-defined]
        worker.sent_invalid = Counter()  # type: ignore[attr-defined]
        yield worker


async def send(settings: Settings, records: list[bytes]) -> None:
    """Each record to its contract topic by type (the fallback topic if it has none), in order;
    unlike a JSON Lines file, a record may hold any bytes, newlines included."""
    producer = AIOKafkaProducer(acks="all", linger_ms=10, **settings.kafka_client_kwargs())
    await producer.start()
    try:
        futures = []
        for raw in records:
            where = route(raw, settings, "live.interactions")
            assert where.topic is not None
            futures.append(await producer.send(where.topic, raw, key=where.key))
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()


def rejected_by_reason(worker: WorkerProcess) -> Counter[str]:
    with urllib.request.urlopen(f"{worker.base_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "livepulse_events_rejected_total":
                counts[sample.labels["reason"]] += int(sample.value)
    return counts


def reason_of(raw: bytes) -> str:
    result = decode(raw)
    assert isinstance(result, Rejection)
    return result.reason


@settings(
    max_examples=3,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(
    invalid=st.lists(invalid_records, min_size=20, max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_invalid_records_among_a_fixture_are_dead_lettered_and_change_no_figure(
    fuzz_worker: WorkerProcess, invalid: list[bytes], seed: int
) -> None:
    worker = fuzz_worker
    settings = worker.settings
    lines, truth = fixture_lines(FIXTURE), fixture_truth(FIXTURE)
    # Interleave: each invalid record at a position of the fixture chosen by the seed.
    rng = random.Random(seed)
    positions = sorted(rng.randrange(len(lines) + 1) for _ in invalid)
    records: list[bytes] = []
    last = 0
    for position, raw in zip(positions, invalid, strict=True):
        records.extend(lines[last:position])
        records.append(raw)
        last = position
    records.extend(lines[last:])
    asyncio.run(send(settings, records))
    drain(worker)
    assert worker.alive(), worker.tail()

    worker.rounds += 1  # type: ignore[attr-defined]
    worker.sent_invalid.update(invalid)  # type: ignore[attr-defined]
    rounds: int = worker.rounds  # type: ignore[attr-defined]
    sent: Counter[bytes] = worker.sent_invalid  # type: ignore[attr-defined]
    counts = truth["events"]
    fixture_invalid = Counter(line for line in lines if isinstance(decode(line), Rejection))
    every_invalid = sent + Counter({raw: n * rounds for raw, n in fixture_invalid.items()})

    # The valid records' report: the truth's, the fixture having come `rounds` times.
    report = report_of(worker)
    expected = {
        "valid": counts["valid"],
        "rejected": every_invalid.total(),
        "duplicates": rounds * (counts["valid"] + counts["duplicates"]) - counts["valid"],
    }
    assert report["events"] == expected
    assert truth_mismatches(report, truth, lines, events=expected) == []

    # Every invalid record on the dead-letter topic: its bytes, its reason, its origin.
    found = asyncio.run(read_topics(settings, [*settings.source_topics, settings.deadletter]))
    letters = [r for (topic, _, _), r in found.items() if topic == settings.deadletter]
    assert Counter(letter.value for letter in letters) == every_invalid
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers}
        assert headers["livepulse-reason"] == reason_of(letter.value)
        assert headers["livepulse-detail"]
        source = found[
            (
                headers["livepulse-source-topic"],
                int(headers["livepulse-source-partition"]),
                int(headers["livepulse-source-offset"]),
            )
        ]
        assert (source.value, source.key) == (letter.value, letter.key)

    # The counter by reason equals the count per reason.
    want = Counter({reason_of(raw): 0 for raw in every_invalid})
    for raw, n in every_invalid.items():
        want[reason_of(raw)] += n
    assert rejected_by_reason(worker) == want
    print(json.dumps({"round": rounds, "invalid": len(invalid), "by_reason": dict(want)}))
