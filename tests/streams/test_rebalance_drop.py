"""Issue 19: records a `getmany` returns while a rebalance has stopped the flow are dropped
(`BatchConsumer._drop_fetched`) and must be read again once it resumes.

faust's `getmany` checks the flow only when it starts: one waiting when a rebalance begins
returns the new assignment's records while the restore seeks its partitions, and aiokafka's
position is then past them. A partition of a held state goes back to its held position; one
with no held position (a topic the state has had no record of yet) goes back to its first
dropped record. Before, only the held positions were sought back, and such a partition was
never read again (the bench's 2-worker scale-out: `live.sessions:2` assigned with no position,
56 records unread, the fleet never drained).

Against the real broker, with the aiokafka consumer the worker's consumer thread builds; the
seek runs on it directly (the worker runs it in the consumer's own thread, `seek_in_thread`).
The ground truth is the offsets this test produced."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.runtime.app import create_app
from streams.runtime.batch_consumer import BatchConsumer
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics

pytestmark = pytest.mark.integration

RECORDS = 7
#: The held state's position in the first topic: its records before it were applied.
HELD = 3


class HeldPositions:
    """The keeper's side the drop asks of (`PartitionHooks.held_positions`)."""

    def __init__(self, held: dict[tuple[str, int], int]) -> None:
        self.held = held

    def held_positions(self) -> dict[tuple[str, int], int]:
        return dict(self.held)


class Dropped:
    """A dropped record, as far as the drop reads it."""

    def __init__(self, offset: int) -> None:
        self.offset = offset


async def _read(kafka_consumer: Any, want: dict[TopicPartition, int]) -> dict[Any, list[int]]:
    """Offsets read of each partition until `want` of each came (or a generous bound passed)."""
    got: dict[Any, list[int]] = {tp: [] for tp in want}
    deadline = time.monotonic() + 60
    while any(len(got[tp]) < n for tp, n in want.items()) and time.monotonic() < deadline:
        fetched = await kafka_consumer.getmany(timeout_ms=500)
        for tp, records in fetched.items():
            got[tp] += [r.offset for r in records]
    return got


async def test_records_dropped_in_a_rebalance_are_read_again(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = f"rebalancedrop-{uuid.uuid4().hex[:12]}"
    settings = Settings(bootstrap=kafka_bootstrap, app_id=run, topic_prefix=f"{run}.")
    await create_topics(settings, all_topics(settings))
    held_topic, unheld_topic = settings.source_topics[:2]
    held_tp, unheld_tp = TopicPartition(held_topic, 0), TopicPartition(unheld_topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for topic in (held_topic, unheld_topic):
            for i in range(RECORDS):
                await producer.send_and_wait(topic, str(i).encode(), partition=0)
    finally:
        await producer.stop()
    app = create_app(settings)
    app.partition_hooks = HeldPositions({(held_topic, 0): HELD})  # type: ignore[assignment]
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    thread = consumer._thread
    kafka_consumer = thread._create_worker_consumer(consumer.transport)

    async def seek(partition: Any, offset: int) -> None:
        kafka_consumer.seek(partition, offset)

    monkeypatch.setattr(consumer, "_seek", seek)
    try:
        await kafka_consumer.start()
        thread._consumer = kafka_consumer
        kafka_consumer.assign([held_tp, unheld_tp])
        kafka_consumer.seek(held_tp, HELD)
        kafka_consumer.seek(unheld_tp, 0)
        fetched = {held_tp: RECORDS - HELD, unheld_tp: RECORDS}
        first = await _read(kafka_consumer, fetched)
        assert first == {held_tp: list(range(HELD, RECORDS)), unheld_tp: list(range(RECORDS))}
        assert await kafka_consumer.position(unheld_tp) == RECORDS
        # What that `getmany` brought is dropped: the flow was stopped.
        await consumer._drop_fetched({tp: [Dropped(o) for o in first[tp]] for tp in first})
        assert await kafka_consumer.position(held_tp) == HELD
        assert await kafka_consumer.position(unheld_tp) == 0  # was RECORDS: never read again
        again = await _read(kafka_consumer, fetched)
        assert again == first
    finally:
        thread._consumer = None
        await kafka_consumer.stop()
        thread.thread_loop.close()
        await delete_run_topics(settings)
