"""`streams.runtime.topology`: partitions beyond the worker's layout, their records in the lag,
topics
whose end fell behind the worker's position (re-created). The broker side is tested in
tests/test_topics_changed.py."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from streams.runtime.consumer_lag import ConsumerLagCollector
from streams.runtime.settings import Settings
from streams.runtime.topology import TopologyWatch, UnreadPartitionsCollector

TOPICS = ["live.views", "live.orders"]


def watch(laid_out: int | None) -> TopologyWatch:
    w = TopologyWatch(Settings(), lambda: laid_out)
    w.partitions = {"live.views": 4, "live.orders": 2}
    w.starts = {("live.views", p): 10 for p in range(4)} | {("live.orders", 0): 0}
    w.ends = {("live.views", p): 10 + 5 * p for p in range(4)} | {("live.orders", 0): 7}
    return w


def test_partitions_beyond_the_layout_are_unread_and_their_records_are_lag() -> None:
    w = watch(2)
    assert w.unread() == {"live.views": [2, 3]}
    assert w.unread_lag() == {"live.views": (20 - 10) + (25 - 10)}
    assert watch(4).unread() == {} and watch(None).unread() == {}

    registry = CollectorRegistry()
    registry.register(UnreadPartitionsCollector(w.unread, TOPICS))
    lag = ConsumerLagCollector(lambda: [("live.views", 0)], lambda tp: 30, {}, TOPICS)
    lag.unread = w.unread_lag
    registry.register(lag)
    text = generate_latest(registry).decode()
    assert 'livepulse_contract_partitions_unread{topic="live.views"} 2.0' in text
    assert 'livepulse_contract_partitions_unread{topic="live.orders"} 0.0' in text
    # live.views:0 has no position yet (left out); the unread partitions' 25 records are in.
    assert 'livepulse_consumer_lag_records{topic="live.views"} 25.0' in text


def test_a_topic_ending_before_the_position_was_recreated() -> None:
    w = watch(4)
    held = {("live.views", 1): 15, ("live.views", 2): 40, ("live.orders", 0): 7}
    assert w.recreated(held) == [("live.views", 2, 20, 40)]


async def test_positions_that_move_on_while_the_ends_are_read_are_not_a_recreated_topic() -> None:
    """The worker applies batches while the look awaits the broker: a position read after it
    may be past the ends it read. Compared with the positions from before the look, a live
    topic is not taken for a re-created one (a paced bench replay stopped a worker so, with
    exit code 3); a topic that really ends before them still is."""
    positions = {("live.views", 1): 15}

    class Moving(TopologyWatch):
        async def look(self) -> None:
            self.ends = {("live.views", 1): 18}  # the end offset the broker answered
            positions[("live.views", 1)] = 21  # 6 more records produced and applied meanwhile

    moving = Moving(Settings(), lambda: 4)
    assert await moving.look_for_recreated(lambda: positions) == []
    assert moving.recreated(positions) == [("live.views", 1, 18, 21)]  # the race, as before

    class Recreated(TopologyWatch):
        async def look(self) -> None:
            self.ends = {("live.views", 1): 3}

    assert await Recreated(Settings(), lambda: 4).look_for_recreated(lambda: positions) == [
        ("live.views", 1, 3, 21)
    ]
