"""An in-memory harness for the worker's ingest and state keeper: contract topics, a changelog
and a consumer loop without Kafka (the idea of bytewax's `testing`: the flow runs, the
transport is a list).

`MemoryTopics` routes fixture lines the way the replayer does (`streams.tools.replayer.route`)
onto in-memory partitions; `MemoryChangelog` keeps snapshots as the changelog topic would;
`MemoryWorker` wires the real `LiveState`, `BatchIngest`, `DeadLetterPipeline` and
`StateKeeper` as `streams.runtime.worker.Worker` does, and its `poll` does what the batch
consumer does with a fetch (`streams.runtime.batch_consumer.BatchConsumer._process`): the
records after each assigned partition's position, applied under the keeper's lock.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from agents.core import build_report
from agents.core.merge import merge_boards, merge_ledgers
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.deadletters import DeadLetter, DeadLetterPipeline
from streams.runtime.ingest import BatchIngest
from streams.runtime.keeper import StateKeeper
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState
from streams.runtime.statestore import LocalStore, Snapshot, SnapshotHead
from streams.tools.replayer import read_lines, route

TP = tuple[str, int]


class MemoryTopics:
    """The contract topics as lists of records per (topic, partition)."""

    def __init__(self, settings: Settings, partitions: int = 4) -> None:
        self.settings = settings
        self.partitions = partitions
        self.logs: dict[TP, list[RawRecord]] = {
            (topic, p): [] for topic in settings.source_topics for p in range(partitions)
        }
        self._unkeyed = 0

    def replay(self, path: Path, fallback_topic: str = "live.interactions") -> int:
        """Append a fixture's lines, routed and keyed as `livepulse replay` does."""
        n = 0
        for line in read_lines(path):
            target = route(line, self.settings, fallback_topic)
            assert target.topic is not None
            if target.key is not None:
                partition = zlib.crc32(target.key) % self.partitions
            else:  # Kafka spreads unkeyed records over the partitions
                partition, self._unkeyed = self._unkeyed % self.partitions, self._unkeyed + 1
            log = self.logs[(target.topic, partition)]
            log.append(RawRecord(target.topic, partition, len(log), target.key, line, target.ts))
            n += 1
        return n

    def tps(self, partitions: Iterable[int] | None = None) -> list[TP]:
        wanted = set(range(self.partitions) if partitions is None else partitions)
        return sorted(tp for tp in self.logs if tp[1] in wanted)

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The end of each of `tps` held here (`StateKeeper.end_offsets`)."""
        return {tp: len(self.logs[tp]) for tp in tps if tp in self.logs}


class MemoryChangelog:
    """Snapshots kept as the changelog topic keeps them: heads in offset order per partition."""

    def __init__(self) -> None:
        self.records: dict[int, list[Snapshot]] = {}
        self.writes = 0

    async def write(
        self, head: SnapshotHead, blob: bytes, previous: SnapshotHead | None = None
    ) -> int:
        log = self.records.setdefault(head.partition, [])
        offset = len(log)
        log.append(Snapshot(head, blob, offset))
        self.writes += 1
        return offset

    async def read_newest(self, partition: int, start_offset: int = 0) -> Snapshot | None:
        found = [s for s in self.records.get(partition, []) if (s.offset or 0) >= start_offset]
        return max(found, key=lambda s: (s.head.records, s.head.generation), default=None)

    async def stop(self) -> None:
        return None


class MemoryWorker:
    """One worker's ingest and keeper over `MemoryTopics` (no faust, no Kafka)."""

    def __init__(
        self,
        settings: Settings,
        topics: MemoryTopics,
        changelog: MemoryChangelog,
        local: LocalStore | None = None,
    ) -> None:
        self.topics = topics
        self.state = LiveState(
            grace_ms=settings.window_grace_ms,
            gpm_denominator=settings.gpm_denominator,
            assigned_only=True,
        )
        self.published: list[DeadLetter] = []
        self.dead_letters = DeadLetterPipeline(self._publish)
        self.ingest = BatchIngest(self.state, self.dead_letters)
        self.committed: dict[TP, int] = {}
        #: What the keeper told of topics re-created under this worker (topic, partition,
        #: end, position), as `Worker` is told before it stops.
        self.recreated: list[tuple[str, int, int, int]] = []
        self.keeper = StateKeeper(
            self.state,
            settings,
            changelog,
            local,
            end_offsets=topics.end_offsets,
            settle=self.dead_letters.settle,
            committer=self._commit,
            source_partitions=topics.partitions,
            recreated=lambda *told: self.recreated.append(told),
        )
        #: The consumer's fetch position of each assigned partition.
        self.fetch_positions: dict[TP, int] = {}

    async def _publish(self, letters: Sequence[DeadLetter]) -> None:
        self.published.extend(letters)

    async def _commit(self, positions: dict[TP, int]) -> None:
        self.committed.update(positions)

    async def assign(self, partitions: Iterable[int]) -> None:
        """A rebalance gave this worker `partitions` (of every contract topic)."""
        tps = self.topics.tps(partitions)
        seeks = await self.keeper.assign(tps)
        self.fetch_positions = {tp: seeks.get(tp, 0) for tp in tps}

    async def revoke(self, partitions: Iterable[int]) -> None:
        wanted = set(partitions)
        tps = [tp for tp in self.fetch_positions if tp[1] in wanted]
        await self.keeper.revoke(tps)
        for tp in tps:
            del self.fetch_positions[tp]

    async def poll(self, max_records: int = 500) -> int:
        """One fetch: up to `max_records` of each assigned partition, applied as one batch."""
        batch: list[RawRecord] = []
        for tp, position in sorted(self.fetch_positions.items()):
            records = self.topics.logs[tp][position : position + max_records]
            batch.extend(records)
            self.fetch_positions[tp] = position + len(records)
        if batch:
            async with self.keeper.lock:
                await self.ingest(batch, time.time())
        return len(batch)

    async def drain(self, max_records: int = 500) -> None:
        while await self.poll(max_records):
            pass


def report_of(*workers: MemoryWorker) -> dict[str, object]:
    """The report over every partition the workers hold (merged, as `report --changelog`)."""
    states = [
        worker.state.partitions[p] for worker in workers for p in sorted(worker.state.partitions)
    ]
    return build_report(
        merge_ledgers([s.ledger for s in states]), merge_boards([s.board for s in states])
    )
