"""Contender (a), the ceiling: a plain aiokafka batch consumer (`getmany`) feeding the metric core.

Per record: `schemas.decode` (one pydantic validation from bytes), `Ledger.apply` (under the
worker's dedupe window), `OperatorBoard.observe`, as the worker does, with no faust, no
dead-letter publishing, no Prometheus; a ledger and a board per partition, as the worker's
`LiveState` (Session 19: a single ledger over every partition refused as expired two thirds
of the bench's stream, the records of a partition fetched after another's later days). With
`--transport-only`, contender (t): the same consumer doing nothing per record (the limit
Python's Kafka client reaches here). Prints one JSON line: records, first and last consumed
(wall clock, s), the events counted valid, rejected, duplicate and expired.

With `--worker-state`, contender (w): the same consumer with the worker's per-record work
(issue 19, Session 18: (a)'s one `Ledger(dedupe window)` has no session fold, no claims by
period, no horizons and no tables, which cost ~2.4 us of the ~7 us a record between (a) and
(c)). A `LiveState` under the default `Settings` (`LiveState.from_settings`, as the worker's
`streams.runtime.worker` builds it): a partition state per partition (`new_partition`: the
fold, claims by period, the horizons), each fetch handed whole (aiokafka's records as
fetched, none rebuilt, as the worker's batch consumer since issue 19) to the worker's own batch
handler (`streams.runtime.ingest.BatchIngest`: `apply_batch` 500 records at a time, the lag
histograms, dead letters submitted to a pipeline whose publish does nothing). With the fold,
the membership and refund tables (`MembershipTable`, `WorkerRefundTable`) read the groups and
orders topics' records of the same fetch before it is applied (the worker reads them with
consumers of their own), and after each fetch, as the worker's readers, each partition of
theirs is told its position and high-water mark (`ReadTable.advance`), so one read to its
end with no record for `groups_idle_s` (`refund_idle_s`) while the topic moves is left out
of the table's horizon (`ReadTable.idle`) and the sessions it held back are summarized.
Left out: faust, the dead letters' publishing, the month-rows
exchange (its topic and sender), snapshots, Prometheus' endpoint, the worker's deferred
collection between fetches ((a)'s pacer, told by `apply_batch`, paces both alike).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest

try:  # a fetch decoded at once, as the worker does; the baseline's core ((a0)) may not have it
    from agents.core.ingest import decode_values, ingest_decoded
except ImportError:  # a tree before issue 19's Session 9: `ingest` one value at a time
    decode_values = None  # type: ignore[assignment]
from bench.shared import consumed, contender_parser, contender_settings
from streams.runtime.deadletters import DeadLetter, DeadLetterPipeline
from streams.runtime.gcpace import GcPacer
from streams.runtime.ingest import BatchIngest
from streams.runtime.membership import MembershipTable
from streams.runtime.refunds import WorkerRefundTable
from streams.runtime.settings import ISOLATION_LEVEL, Settings
from streams.runtime.state import LiveState

if TYPE_CHECKING:  # a typing protocol only: the baseline's tree ((a0)) may not have it
    from streams.runtime.batch_consumer import FetchedRecord


def _consumer(settings: Settings, group: str) -> AIOKafkaConsumer:
    """The transport every contender here reads with: `getmany` of up to 10,000 records."""
    return AIOKafkaConsumer(
        *settings.source_topics,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=ISOLATION_LEVEL,
        max_poll_records=10_000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **settings.kafka_client_kwargs(),
    )


class _Pass:
    """A contender's pass over `_consumer`'s fetches (started on entering, stopped on leaving)
    until `expect` records came or `timeout_s` passed, with the wall clock of the first fetch
    that brought records and of the last fetch's end."""

    def __init__(self, settings: Settings, group: str, expect: int, timeout_s: float) -> None:
        self.consumer = _consumer(settings, group)
        self.expect = expect
        self.timeout_s = timeout_s
        self.seen = 0
        self.first: float | None = None
        self.last = 0.0

    async def __aenter__(self) -> _Pass:
        await self.consumer.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.consumer.stop()

    async def fetches(self) -> AsyncIterator[dict[TopicPartition, list[ConsumerRecord[Any, Any]]]]:
        """Each `getmany` of up to 10,000 records (an empty one too); its records count as
        seen once the contender has handled them."""
        deadline = time.monotonic() + self.timeout_s
        while self.seen < self.expect and time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
            if batches and self.first is None:
                self.first = time.time()
            yield batches
            self.seen += sum(len(records) for records in batches.values())
        self.last = time.time()

    def consumed(self, valid: int) -> dict[str, float]:
        """The result line's records and wall clock (`bench.shared.consumed`)."""
        return consumed(self.seen, self.first, self.last, valid)


def _pacer(settings: Settings) -> GcPacer | None:
    """The worker's paced garbage collection too, so (c)/(a) compares the consuming paths."""
    pacer = GcPacer(settings.gc_pace_records).install() if settings.gc_pace_records else None
    if pacer is not None:
        pacer.start()
    return pacer


async def consume(
    settings: Settings, group: str, expect: int, timeout_s: float, transport_only: bool = False
) -> dict[str, float]:
    # A ledger and a board per partition, as the worker's `LiveState` holds them (partition
    # `p` of every source topic in one): a single ledger over every partition refused as
    # expired the records of a partition a fetch brought after another's later days (about
    # two thirds of the bench's stream, Session 18), so (a) did less than the worker.
    parts: dict[int, tuple[Ledger, OperatorBoard]] = {}
    pacer = _pacer(settings)
    async with _Pass(settings, group, expect, timeout_s) as run:
        async for batches in run.fetches():
            for tp, records in batches.items():
                if not transport_only:
                    part = parts.get(tp.partition)
                    if part is None:
                        part = parts[tp.partition] = _partition(settings)
                    ledger, board = part
                    if decode_values is None:
                        for record in records:
                            ingest(record.value, ledger, board)
                    else:  # a fetch decoded at once, as the worker does (`apply_batch`)
                        for decoded in decode_values([record.value for record in records]):
                            ingest_decoded(decoded, ledger, board)
                if pacer is not None:
                    pacer.after(len(records))
    ledgers = [ledger for ledger, _ in parts.values()]
    return {
        **run.consumed(sum(ledger.counts.valid for ledger in ledgers)),
        "rejected": sum(ledger.counts.rejected for ledger in ledgers),
        "duplicates": sum(ledger.counts.duplicates for ledger in ledgers),
        "expired": sum(ledger.counts.expired for ledger in ledgers),
        "partitions": len(parts),
    }


def _partition(settings: Settings) -> tuple[Ledger, OperatorBoard]:
    """(a)'s state of one partition: a `Ledger(dedupe window)` (no fold, no claims by period,
    no horizons: the core alone) and its operator board."""
    board = OperatorBoard(settings.window_grace_ms, gpm_denominator=settings.gpm_denominator)
    return Ledger(settings.dedupe_window_ms), board


async def _no_publish(letters: Sequence[DeadLetter]) -> None:
    """(w) publishes no dead letter (nor does (a)): the pipeline's tasks do nothing."""


def worker_state(
    settings: Settings,
) -> tuple[LiveState, MembershipTable | None, WorkerRefundTable | None]:
    """(w)'s state as the worker builds it (`streams.runtime.worker`), without faust: the
    partition states created by their first record (the worker installs them on assignment),
    the membership table with the fold, and the refund table with the fold and a refund
    horizon, both counted caught up at once (what they read comes in (w)'s own fetches)."""
    membership: MembershipTable | None = None
    refunds: WorkerRefundTable | None = None
    if settings.fold_sessions:
        window, tolerance = settings.dedupe_window_ms, settings.future_tolerance_ms
        membership = MembershipTable(window, tolerance, idle_s=settings.groups_idle_s or None)
        if settings.refund_horizon_ms is not None:
            refunds = WorkerRefundTable(
                window, tolerance, settings.refund_horizon_ms, idle_s=settings.refund_idle_s or None
            )
        for table in (membership, refunds):
            if table is not None:
                table.catch_up_to(dict.fromkeys(range(settings.partitions), 0))
    pacer = _pacer(settings)
    state = LiveState.from_settings(settings, membership=membership, refunds=refunds, gc=pacer)
    if refunds is not None:  # what its refunds may still be needed by (the worker's rule)
        refunds.held_ledgers = lambda: [p.ledger for p in state.partitions.values()]
    return state, membership, refunds


async def consume_worker_state(
    settings: Settings, group: str, expect: int, timeout_s: float
) -> dict[str, Any]:
    """(w): (a)'s transport, each fetch through the worker's state and batch handler."""
    state, membership, refunds = worker_state(settings)
    ingest = BatchIngest(state, DeadLetterPipeline(_no_publish))
    # The tables' topics, as the worker's readers of them read them.
    tables = {
        settings.topic(name): table
        for name, table in (("live.groups", membership), ("live.orders", refunds))
        if table is not None
    }
    async with _Pass(settings, group, expect, timeout_s) as run:
        consumer = run.consumer
        async for batches in run.fetches():
            for tp, records in batches.items():
                table = tables.get(tp.topic)
                if table is not None:
                    table.apply_fetch(
                        tp.partition, [r.offset for r in records], [r.value for r in records]
                    )
            # The worker's idle rule: its readers tell their table every partition's position
            # and high-water mark after each fetch, an empty one too (`MembershipReader._read`).
            for tp in consumer.assignment():
                table = tables.get(tp.topic)
                if table is not None:
                    position = await consumer.position(tp)
                    table.advance(tp.partition, position, consumer.highwater(tp))
            if not batches:
                continue
            received_at = time.time()
            # One batch of every partition's records, as the worker's batch consumer builds it
            # (`BatchConsumer._process`): aiokafka's records as fetched (`FetchedRecord`), a
            # partition's added as one list, none rebuilt (a `RawRecord` each until issue 19).
            batch: list[FetchedRecord] = []
            for records in batches.values():
                batch += records
            await ingest(batch, received_at)
        await ingest.dead_letters.settle()
    counts = state.counts()
    return {
        **run.consumed(counts.valid),
        "rejected": counts.rejected,
        "duplicates": counts.duplicates,
        "expired": counts.expired,
        "partitions": len(state.partitions),
        # Partition ledgers summarizing closed sessions (the fold), and what the tables read.
        "folding": sum(p.ledger.fold_sessions for p in state.partitions.values()),
        # Sessions summarized: none until the membership table's horizon covers every groups
        # partition, or leaves out those idle (no record for `groups_idle_s` of the topic
        # moving, as the worker's reader): a stream whose group events miss a partition
        # summarizes nothing in a pass shorter than that (the bench's at 100,000).
        "summarized": sum(p.ledger.summarized_sessions for p in state.partitions.values()),
        "idle": {topic: sorted(table.idle()) for topic, table in tables.items()},
        "table_records": {topic: table.records for topic, table in tables.items()},
    }


def main() -> None:
    parser = contender_parser()
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--transport-only", action="store_true", help="(t): nothing per record")
    mode.add_argument(
        "--worker-state", action="store_true", help="(w): the worker's state and batch handler"
    )
    args = parser.parse_args()
    settings = contender_settings(args)
    result: dict[str, Any]
    if args.worker_state:
        result = asyncio.run(consume_worker_state(settings, args.group, args.expect, args.timeout))
    else:
        result = asyncio.run(
            consume(settings, args.group, args.expect, args.timeout, args.transport_only)
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
