"""Issue 19: which assigned partitions a worker reads, on `/status` (`fetch`: `active`, `paused`,
`fetched`, `drops`, `sought_back`; `BatchConsumer.partition_flow`), so that a partition
assigned and never read (the 2-worker bench pass that never drained) can be diagnosed.

The ground truth is the assignment the worker reports and the records this test produced;
the fields read faust's and aiokafka's private attributes, so one missing is None, never an
error."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from streams.runtime.app import create_app
from streams.runtime.batch_consumer import BatchConsumer
from streams.runtime.settings import Settings
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    replay_lines,
    run_settings,
    running_worker,
)

pytestmark = pytest.mark.integration

RECORDS = 7


class NoHeldPositions:
    """The keeper's side the drop asks of (`PartitionHooks.held_positions`): nothing held."""

    def held_positions(self) -> dict[tuple[str, int], int]:
        return {}


class Dropped:
    """A dropped record, as far as the drop reads it."""

    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_a_running_worker_shows_its_assigned_partitions_read(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = run_settings(kafka_bootstrap, "flow")
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "xhs.jsonl", fixture_lines("xhs"))
        drain(worker)
        status = worker.status()
    assert status["events"] == fixture_truth("xhs")["events"]
    fetch, assigned = status["fetch"], status["assigned"]
    sources = [
        f"{topic}:{partition}"
        for topic in settings.source_topics
        for partition in range(settings.partitions)
    ]
    # Alone in its group, the worker has every contract partition, and reads each of them.
    assert set(sources) <= set(assigned)
    assert set(sources) <= set(fetch["active"]), fetch
    assert set(fetch["active"]) <= set(assigned) and fetch["active"] == sorted(fetch["active"])
    assert fetch["paused"] == [], fetch
    # Drained: a partition may hold a fetch of empty answers only, never a record unread.
    assert isinstance(fetch["fetched"], list) and set(fetch["fetched"]) <= set(assigned)
    # No rebalance after the first assignment's, so no fetch was dropped in one.
    assert isinstance(fetch["drops"], int) and isinstance(fetch["sought_back"], int)
    assert fetch["sought_back"] <= len(assigned) * fetch["drops"], fetch


async def test_the_flow_counts_a_dropped_fetch_and_lists_held_records(
    worker_consumer: Callable[[str, int], Awaitable[Any]],
) -> None:
    """The worker's aiokafka consumer on the real broker (`worker_consumer`, as in
    test_rebalance_drop.py): a `getmany` of one record leaves the rest of its partition's
    fetch held (`fetched`); a drop of what two partitions brought counts one drop and two
    partitions sought back."""
    run = await worker_consumer("partitionflow", RECORDS)
    first_tp, second_tp = run.partitions
    first_topic = first_tp.topic
    run.app.partition_hooks = NoHeldPositions()
    consumer, kafka_consumer = run.consumer, run.kafka_consumer
    before = consumer.partition_flow()
    assert before["drops"] == 0 and before["sought_back"] == 0
    kafka_consumer.assign([first_tp])
    kafka_consumer.seek(first_tp, 0)
    got: list[int] = []
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        batch = await kafka_consumer.getmany(first_tp, timeout_ms=500, max_records=1)
        got += [r.offset for records in batch.values() for r in records]
    assert got == [0]
    # The other RECORDS - 1 records came in the same fetch and are held by aiokafka.
    assert consumer.partition_flow()["fetched"] == [f"{first_topic}:0"]
    kafka_consumer.assign([first_tp, second_tp])
    flow = consumer.partition_flow()
    # faust's own sets are built by its fetch loop, not run here.
    assert flow["active"] == [] and flow["paused"] == []
    dropped = {first_tp: [Dropped(0)], second_tp: [Dropped(2), Dropped(3)]}
    await consumer._drop_fetched(dropped)
    after = consumer.partition_flow()
    assert (after["drops"], after["sought_back"]) == (1, 2)
    assert await kafka_consumer.position(second_tp) == 2
    # A partition not assigned any more is not sought back, nor counted.
    kafka_consumer.assign([second_tp])
    await consumer._drop_fetched(dropped)
    again = consumer.partition_flow()
    assert (again["drops"], again["sought_back"]) == (2, 3)


def test_the_flow_lists_assigned_partitions_only_and_none_for_a_missing_attribute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust's sets listed within the assignment; faust or aiokafka without an attribute read
    (another version), or a consumer not started: None, not an error."""
    consumer = create_app(Settings(app_id=f"flow-{uuid.uuid4().hex[:8]}")).consumer
    assert isinstance(consumer, BatchConsumer)
    assert consumer.partition_flow() == {
        "active": None,
        "paused": None,
        "fetched": None,
        "drops": 0,
        "sought_back": 0,
    }
    monkeypatch.setattr(consumer, "assignment", lambda: {TP("a", 1), TP("b", 0)})
    consumer._active_partitions = {TP("b", 0), TP("a", 1), TP("a", 2)}
    consumer._paused_partitions = {TP("a", 3)}
    flow = consumer.partition_flow()
    assert flow["active"] == ["a:1", "b:0"] and flow["paused"] == []
    assert flow["fetched"] is None  # no aiokafka consumer
    del consumer._active_partitions
    del consumer._paused_partitions
    flow = consumer.partition_flow()
    assert flow["active"] is None and flow["paused"] is None
