"""Issue 17: the bytes a worker's fetch brings at once (`LIVEPULSE_BATCH_FETCH_MAX_BYTES` over a
request's partitions, `LIVEPULSE_BATCH_FETCH_BYTES` each partition's part).

The settings reach the fetcher aiokafka builds when the consumer starts (the attributes it
builds every fetch request from), and a worker with the smallest bounds the settings allow,
started behind a whole fixture, still applies every record. What the bound saves in memory
and costs in CPU is measured by bench/soak.py and bench/run.py (bench/RESULTS.md, "Session 17
(issue 17)"), not here."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from streams.runtime.app import create_app
from streams.runtime.batch_consumer import BatchConsumer
from streams.runtime.settings import Settings
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    replay_lines,
    run_settings,
    run_topics,
    started_worker,
)

pytestmark = pytest.mark.integration

#: The smallest bounds `Settings` allows, below the replayer's 256 KiB producer batches: the
#: broker then returns one record batch a fetch (the first is returned whatever the bound).
SMALL: int = 64 * 1024


async def test_the_fetch_bounds_reach_the_started_fetcher(kafka_bootstrap: str) -> None:
    run = f"fetchbound-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        bootstrap=kafka_bootstrap,
        app_id=run,
        topic_prefix=f"{run}.",
        batch_fetch_bytes=2 * SMALL,
        batch_fetch_max_bytes=SMALL,
    )
    consumer = create_app(settings).consumer
    assert isinstance(consumer, BatchConsumer)
    thread = consumer._thread
    kafka_consumer = thread._create_worker_consumer(consumer.transport)
    try:
        await kafka_consumer.start()  # builds the fetcher from the consumer's attributes
        fetcher = kafka_consumer._fetcher
        assert (fetcher._fetch_max_bytes, fetcher._max_partition_fetch_bytes) == (
            SMALL,
            2 * SMALL,
        )
        assert (fetcher._fetch_max_bytes, fetcher._max_partition_fetch_bytes) != (
            Settings().batch_fetch_max_bytes,
            Settings().batch_fetch_bytes,
        )
        thread._consumer = kafka_consumer
        assert consumer.fetch_bounds == {"max_bytes": SMALL, "partition_max_bytes": 2 * SMALL}
    finally:
        thread._consumer = None
        await kafka_consumer.stop()
        thread.thread_loop.close()


def test_a_worker_with_the_smallest_fetch_bounds_applies_every_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = run_settings(
        kafka_bootstrap,
        prefix="fetchbound",
        batch_fetch_bytes=SMALL,
        batch_fetch_max_bytes=SMALL,
    )
    with run_topics(settings):
        # The whole fixture is on the broker before the worker starts: it drains a backlog.
        replay_lines(settings, tmp_path / "xhs.jsonl", fixture_lines("xhs"))
        with started_worker(settings, tmp_path / "worker.log") as worker:
            drain(worker, timeout_s=180)
            status = worker.status()
    fetch = status["fetch"]
    assert (fetch["max_bytes"], fetch["partition_max_bytes"]) == (SMALL, SMALL), fetch
    assert status["events"] == fixture_truth("xhs")["events"]
