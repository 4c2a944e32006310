"""`livepulse_consumer_lag_records`: highwater minus position, summed per contract topic."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from streams.runtime.consumer_lag import ConsumerLagCollector, lag_by_topic

TOPICS = ("live.views", "live.orders")


def test_lag_sums_partitions_and_skips_what_is_unknown() -> None:
    highwaters = {("live.views", 0): 100, ("live.views", 1): 50, ("live.orders", 0): 7}
    positions = {("live.views", 0): 90, ("live.views", 1): 50, ("live.orders", 1): 3}
    assigned = [*highwaters, ("live.orders", 1), ("other.topic", 0)]

    def highwater(tp: tuple[str, int]) -> int | None:
        if tp == ("live.orders", 1):
            raise AssertionError("Partition is not assigned")  # aiokafka during a rebalance
        return highwaters.get(tp)

    # live.orders:0 has no position yet and live.orders:1 no highwater: both left out.
    assert lag_by_topic(assigned, highwater, positions, TOPICS) == {
        "live.views": 10,
        "live.orders": 0,
    }
    # A position past a stale highwater is no negative lag.
    assert lag_by_topic([("live.views", 0)], lambda tp: 80, positions, TOPICS) == {"live.views": 0}


def test_collector_exports_nothing_before_the_consumer_exists() -> None:
    def no_consumer() -> list[tuple[str, int]]:
        raise RuntimeError("consumer not started")

    registry = CollectorRegistry()
    registry.register(ConsumerLagCollector(no_consumer, lambda tp: None, {}, TOPICS))
    assert "livepulse_consumer_lag_records{" not in generate_latest(registry).decode()
    registry = CollectorRegistry()
    registry.register(
        ConsumerLagCollector(
            lambda: [("live.views", 0)], lambda tp: 12, {("live.views", 0): 2}, TOPICS
        )
    )
    assert (
        'livepulse_consumer_lag_records{topic="live.views"} 10.0'
        in generate_latest(registry).decode()
    )
