"""`livepulse_consumer_lag_records{topic}`: records on the broker the worker has not processed yet.

Per assigned partition: the log end offset the consumer last saw in a fetch (its highwater)
minus the next offset the worker will process. Summed per topic (a bounded label: the
contract topics), so a lag that keeps growing shows a worker falling behind (alert
`LivepulseConsumerLagGrowing`). A partition the worker has processed nothing from yet, or
whose highwater the consumer does not know yet, is left out rather than guessed.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Final

from prometheus_client.metrics_core import Metric

from streams.runtime.families import CONSUMER_LAG_METRIC, consumer_lag_family

METRIC: Final[str] = CONSUMER_LAG_METRIC

TopicPartition = tuple[str, int]


def lag_by_topic(
    assigned: Iterable[TopicPartition],
    highwater: Callable[[TopicPartition], int | None],
    positions: Mapping[TopicPartition, int],
    topics: Collection[str],
) -> dict[str, int]:
    """Unprocessed records per topic over the assigned partitions of `topics`."""
    lag: dict[str, int] = defaultdict(int)
    for tp in assigned:
        topic, partition = tp[0], tp[1]
        if topic not in topics:
            continue
        lag[topic] += 0  # an assigned topic is exported even while nothing is known yet
        position = positions.get((topic, partition))
        end = None
        with contextlib.suppress(Exception):  # unassigned meanwhile (a rebalance)
            end = highwater(tp)
        if position is None or end is None:
            continue
        lag[topic] += max(0, end - position)
    return dict(lag)


class ConsumerLagCollector:
    """A Prometheus collector of the worker's consumer lag per contract topic."""

    def __init__(
        self,
        assigned: Callable[[], Iterable[TopicPartition]],
        highwater: Callable[[TopicPartition], int | None],
        positions: Mapping[TopicPartition, int],
        topics: Collection[str],
    ) -> None:
        self._assigned = assigned
        self._highwater = highwater
        self._positions = positions
        self._topics = topics
        #: Records per topic on partitions no worker reads (`streams.runtime.topology`), added in.
        self.unread: Callable[[], Mapping[str, int]] | None = None

    def describe(self) -> Iterator[Metric]:
        yield consumer_lag_family()

    def collect(self) -> Iterator[Metric]:
        family = consumer_lag_family()
        assigned: list[TopicPartition] = []
        with contextlib.suppress(Exception):  # no consumer yet (the worker is starting)
            assigned = list(self._assigned())
        lag = lag_by_topic(assigned, self._highwater, dict(self._positions), self._topics)
        if self.unread is not None:
            for topic, records in self.unread().items():
                lag[topic] = lag.get(topic, 0) + records
        for topic, records in sorted(lag.items()):
            family.add_metric([topic], float(records))
        yield family
