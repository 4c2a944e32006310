"""Issue 19: records a `getmany` returns while a rebalance has stopped the flow are dropped
(`BatchConsumer._drop_fetched`) and must be read again once it resumes.

faust's `getmany` checks the flow only when it starts: one waiting when a rebalance begins
returns the new assignment's records while the restore seeks its partitions, and aiokafka's
position is then past them. A partition of a held state goes back to its held position; one
with no held position (a topic the state has had no record of yet) goes back to its first
dropped record. Before, only the held positions were sought back, and such a partition was
never read again (the bench's 2-worker scale-out: `live.sessions:2` assigned with no position,
56 records unread, the fleet never drained).

Against the real broker, with the aiokafka consumer the worker's consumer thread builds
(`worker_consumer`, tests/streams/conftest.py); the seek runs on it directly (the worker runs
it in the consumer's own thread, `seek_in_thread`). The ground truth is the offsets this test
produced."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

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
    worker_consumer: Callable[[str, int], Awaitable[Any]],
) -> None:
    run = await worker_consumer("rebalancedrop", RECORDS)
    held_tp, unheld_tp = run.partitions
    run.app.partition_hooks = HeldPositions({(held_tp.topic, 0): HELD})
    consumer, kafka_consumer = run.consumer, run.kafka_consumer
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
