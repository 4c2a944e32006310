"""Fixtures of the worker-side tests: the headless Chromium the page tests drive, and the
worker's own aiokafka consumer on the real broker."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.runtime.app import create_app
from streams.runtime.batch_consumer import BatchConsumer
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from tests.conftest import in_ci


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (scripts/setup.sh installs it): skipped locally when missing, a
    failure under CI."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found:
        return found
    message = "chromium is not installed (Debian: apt-get install chromium; scripts/setup.sh)"
    if in_ci():
        pytest.fail(f"{message}; under CI a missing chromium fails the run", pytrace=False)
    pytest.skip(message)


@dataclass
class WorkerConsumer:
    """A run's `BatchConsumer` and the aiokafka consumer its consumer thread builds, started
    and installed as the thread's (`partition_flow` reads it), nothing assigned yet."""

    settings: Settings
    app: Any
    consumer: BatchConsumer
    kafka_consumer: Any
    #: Partition 0 of the first two source topics, each holding the records produced.
    partitions: list[TopicPartition]


@pytest.fixture
async def worker_consumer(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[str, int], Awaitable[WorkerConsumer]]]:
    """Factory: `await worker_consumer(prefix, records)`, a run of its own (app id and topics
    `<prefix>-<uuid>`) whose first two source topics hold `records` records each in partition 0
    (values "0", "1", ...), and its `WorkerConsumer`. The consumer's seeks run on the aiokafka
    consumer directly (the worker runs them in the consumer's own thread, `seek_in_thread`);
    the consumers are stopped and the run's topics deleted after the test."""
    started: list[WorkerConsumer] = []

    async def start(prefix: str, records: int) -> WorkerConsumer:
        run = f"{prefix}-{uuid.uuid4().hex[:12]}"
        settings = Settings(bootstrap=kafka_bootstrap, app_id=run, topic_prefix=f"{run}.")
        await create_topics(settings, all_topics(settings))
        partitions = [TopicPartition(topic, 0) for topic in settings.source_topics[:2]]
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for tp in partitions:
                for i in range(records):
                    await producer.send_and_wait(tp.topic, str(i).encode(), partition=0)
        finally:
            await producer.stop()
        app = create_app(settings)
        consumer = app.consumer
        assert isinstance(consumer, BatchConsumer)
        kafka_consumer = consumer._thread._create_worker_consumer(consumer.transport)

        async def seek(partition: Any, offset: int) -> None:
            kafka_consumer.seek(partition, offset)

        monkeypatch.setattr(consumer, "_seek", seek)
        started.append(WorkerConsumer(settings, app, consumer, kafka_consumer, partitions))
        await kafka_consumer.start()
        consumer._thread._consumer = kafka_consumer
        return started[-1]

    yield start
    for each in started:
        thread = each.consumer._thread
        thread._consumer = None
        await each.kafka_consumer.stop()
        thread.thread_loop.close()
        await delete_run_topics(each.settings)
