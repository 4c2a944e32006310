"""The contract topics as the broker has them now, watched while the worker runs: partitions added
after the worker laid out its state, and records deleted by retention before it read them.

The worker's state is laid out per partition number of the contract topics as they were when it
started (`StateKeeper.source_partitions`). Partitions added later are not read by this worker (their
records would belong to states no snapshot, changelog partition or other worker knows of, and
keys that moved would split their sessions); that is never silent: the watch logs one error,
`livepulse_contract_partitions_unread{topic}` counts them (alert
`LivepulseContractPartitionsUnread`) and their records are in `livepulse_consumer_lag_records`.
README "Partitions added" gives the procedure back to exact figures. A topic deleted and
re-created under the worker (its end now before the worker's position) stops the worker with
`RECREATED_EXIT`: on restart the snapshots ahead of the topics are set aside
(`keeper.StateKeeper._stale`) and the partitions read again from the beginning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.metrics_core import Metric

from streams.runtime.families import UNREAD_PARTITIONS_METRIC, unread_partitions_family
from streams.runtime.settings import ISOLATION_LEVEL, Settings

log = logging.getLogger(__name__)

UNREAD_METRIC: Final[str] = UNREAD_PARTITIONS_METRIC
#: How often the worker looks at the contract topics' partitions, seconds.
WATCH_EVERY_S: Final[float] = 10.0
#: The worker's exit code after it saw a contract topic deleted and re-created.
RECREATED_EXIT: Final[int] = 3


class TopologyWatch:
    """Partition counts, log start and end offsets of every partition of the contract topics."""

    def __init__(self, settings: Settings, laid_out: Callable[[], int | None]) -> None:
        self.settings = settings
        self._laid_out = laid_out
        #: topic -> partitions on the broker at the last look.
        self.partitions: dict[str, int] = {}
        #: (topic, partition) -> log start offset and end (last stable) offset at the last look.
        self.starts: dict[tuple[str, int], int] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self._told: set[tuple[str, int]] = set()
        self._consumer: AIOKafkaConsumer | None = None

    def unread(self) -> dict[str, list[int]]:
        """Per contract topic, the partitions beyond the worker's layout (added since it began)."""
        laid_out = self._laid_out()
        if laid_out is None:
            return {}
        return {
            topic: list(range(laid_out, count))
            for topic, count in self.partitions.items()
            if count > laid_out
        }

    async def look(self) -> None:
        """Read the partitions and offsets now; log each newly seen unread topic once."""
        names = list(self.settings.source_topics)
        admin = AIOKafkaAdminClient(client_id="livepulse-topology", **self._client_kwargs())
        await admin.start()
        try:
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
        tps = [
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if t["error_code"] == 0
            for p in t["partitions"]
        ]
        self.partitions = {}
        for tp in tps:
            self.partitions[tp.topic] = self.partitions.get(tp.topic, 0) + 1
        consumer = await self._offsets_consumer()
        if tps:
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            self.starts = {(tp.topic, tp.partition): o for tp, o in starts.items()}
            self.ends = {(tp.topic, tp.partition): o for tp, o in ends.items()}
        for topic, partitions in self.unread().items():
            laid_out = self._laid_out()
            if (topic, len(partitions)) in self._told:
                continue
            self._told.add((topic, len(partitions)))
            log.error(
                "contract topic %s has %d partitions, this worker's state is laid out for %d: "
                "partitions %d-%d are NOT read and their events are in no figure (see README, "
                "'Partitions added')",
                topic,
                self.partitions[topic],
                laid_out,
                partitions[0],
                partitions[-1],
            )

    async def log_starts(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The log start offset of each of `tps` now (records before it are deleted)."""
        if not tps:
            return {}
        consumer = await self._offsets_consumer()
        starts = await consumer.beginning_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): o for tp, o in starts.items()}

    async def _offsets_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                client_id="livepulse-topology",
                enable_auto_commit=False,
                isolation_level=ISOLATION_LEVEL,
                **self._client_kwargs(),
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def recreated(self, held: Mapping[tuple[str, int], int]) -> list[tuple[str, int, int, int]]:
        """Held partitions whose topic now ends before the worker's position: the topic was
        deleted and re-created (its new records would sit below the position and be skipped).
        Each as (topic, partition, end, position)."""
        return [
            (topic, partition, self.ends[(topic, partition)], position)
            for (topic, partition), position in sorted(held.items())
            if (topic, partition) in self.ends and self.ends[(topic, partition)] < position
        ]

    async def look_for_recreated(
        self, positions: Callable[[], Mapping[tuple[str, int], int]]
    ) -> list[tuple[str, int, int, int]]:
        """`look()`, then `recreated()` against the worker's positions as they were before it:
        the worker applies batches while the look awaits the broker, so a position read after
        it may be past the end offsets it read (records produced and consumed meanwhile), and
        a live topic was taken for a re-created one (a paced replay stopped a worker so)."""
        held = dict(positions())
        await self.look()
        return self.recreated(held)

    def unread_lag(self) -> dict[str, int]:
        """Records on the partitions beyond the layout, per topic (none of them is read)."""
        lag: dict[str, int] = {}
        for topic, partitions in self.unread().items():
            lag[topic] = sum(
                max(0, self.ends.get((topic, p), 0) - self.starts.get((topic, p), 0))
                for p in partitions
            )
        return lag

    def _client_kwargs(self) -> dict[str, object]:
        return self.settings.kafka_client_kwargs()


class UnreadPartitionsCollector:
    """`livepulse_contract_partitions_unread{topic}`: partitions added after the worker's layout."""

    def __init__(self, unread: Callable[[], Mapping[str, list[int]]], topics: list[str]) -> None:
        self._unread = unread
        self._topics = topics

    def describe(self) -> Iterator[Metric]:
        yield unread_partitions_family()

    def collect(self) -> Iterator[Metric]:
        family = unread_partitions_family()
        unread = self._unread()
        for topic in self._topics:
            family.add_metric([topic], float(len(unread.get(topic, []))))
        yield family
