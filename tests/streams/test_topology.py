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


async def test_positions_that_move_during_the_look_are_no_recreation() -> None:
    """Batches applied while the look awaits the broker move positions past the ends it read
    (a steady producer, a loaded machine): that is no re-creation; a position that was past
    the end before the look still is (the soak's worker was stopped with exit code 3 by a
    comparison with the positions read after the look)."""
    positions = {("live.views", 0): 90, ("live.orders", 0): 150}

    class Broker(TopologyWatch):
        async def look(self) -> None:
            self.ends = {("live.views", 0): 100, ("live.orders", 0): 20}
            positions[("live.views", 0)] = 120  # consumed meanwhile, past the end read

    w = Broker(Settings(), lambda: 4)
    assert await w.look_for_recreated(lambda: positions) == [("live.orders", 0, 20, 150)]
    # What the worker did before: positions read after the look.
    assert w.recreated(positions) == [("live.orders", 0, 20, 150), ("live.views", 0, 100, 120)]
