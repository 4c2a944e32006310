"""Batch ingestion: a faust consumer that hands each fetched batch to one handler (issue 6),
and moves partition state on rebalances (issue 5). The one door to faust's and aiokafka's
private API (issue 16): no other module of schemas/, agents/, streams/ touches it.

faust's own drain loop passes every message through `wait_first(callback(message), ...)`, the
conductor's per-topic queues and the stream iterator: two tasks, a queue hop and a future per
record, ~75 us of the worker's ~85 us per record on this machine (bench/NOTES.md). This
consumer keeps faust's group membership and rebalancing and replaces the drain: each `getmany`
result (up to `broker_max_poll_records` records) is awaited once through `BatchHandler`, with
aiokafka's `ConsumerRecord`s as the fetch unpacked them (`FetchedRecord`: the attributes read
of them; no record is rebuilt per message).

Offsets are not faust's business here: the partition hooks (`streams.runtime.keeper.StateKeeper`)
restore a partition's state when it is assigned and the consumer seeks its sources to the
positions that state covers; a revoked partition is snapshotted first; offsets are committed
after each snapshot. faust's ack bookkeeping is left empty, so faust itself commits nothing.

The worker's consumer (the app's `broker_consumer` URL scheme `lpbatch://`). Both it and the
benchmark's naive faust contender (`lpkafka://`, bench/naive.py) read with `ISOLATION_LEVEL`
(read_committed): records of aborted transactions and transaction markers are never handed on.

Private API relied on, checked against `CHECKED_VERSIONS` and pinned by
tests/streams/test_faust_door.py (an upgrade of either library fails that test first):

faust-streaming (`faust.transport.consumer.Consumer`, `faust.transport.drivers.aiokafka`):
- `Consumer._drain_messages(fetcher)`: overridden, the per-message loop replaced by batches.
- `Consumer._wait_next_records(timeout) -> (records, active_partitions)`: one `getmany` result.
- `Consumer._read_offset` (TP -> last offset handed on): skips what a seek back refetched.
- `Consumer._buffered_partitions`: partitions faust still holds records of (paused or not).
- `Consumer._active_partitions`, `_paused_partitions`: read only, for `/status`
  (`BatchConsumer.partition_flow`; guarded: a missing one is None).
- `Consumer._stopped` and the fetcher's `_stopped` (mode `Service` events): end of the loop.
- `Consumer._commit(offsets)`: commits the snapshot-covered positions (faust's own acks unused).
- `Consumer._thread._consumer`: the aiokafka consumer, for its subscription state.
- `Consumer._new_consumer_thread()` and `AIOKafkaConsumerThread._create_worker_consumer(transport)`:
  overridden to build the aiokafka consumer with other options; faust's sets the thread's
  `_assignor` to round robin for an app without tables, ours to `app.assignor` to match.
- `Consumer.perform_seek()` / `on_partitions_revoked(revoked)`: overridden (restore / snapshot).
- `Consumer._seek(partition, offset)` (called by `Consumer.seek`) and the thread's
  `call_thread`, `_ensure_consumer()`: a seek runs in the consumer's thread, where the fetch
  runs (`CommittedConsumerThread.seek_in_thread`).
- `faust.transport.drivers.TRANSPORTS.aliases`: registers the two URL schemes.

aiokafka (`AIOKafkaConsumer`), attributes read by `start()` when it builds its fetcher and group
coordinator, set on the consumer faust builds before it starts:
- `_isolation_level` (read_committed), `_fetch_min_bytes`, `_fetch_max_wait_ms` (latency),
  `_fetch_max_bytes` (the bound of one fetch request over its partitions; faust passes only
  the per-partition `max_partition_fetch_bytes`), `_partition_assignment_strategy` (faust's
  co-partitioning assignor instead of round robin).
- `_subscription.subscription.assignment` (`.tps`, `.state_value(tp)` with
  `.has_valid_position`, `.position`): where the consumer will read next (`_skip_gaps`).
- `_fetcher._fetch_min_bytes`, `_fetcher._fetch_max_wait_ms`: read each time the fetcher builds
  a request; `BatchConsumer._fetch_mode` switches them between the busy, behind and idle
  settings.
- `_fetcher._fetch_max_bytes`, `_fetcher._max_partition_fetch_bytes`: also read for each
  request; `BatchConsumer.fetch_bounds` reports them (`/status` `fetch`).
- `_fetcher._records` (partition -> its fetched records not yet returned): read only, for
  `/status` (`BatchConsumer.partition_flow`; guarded).
- `_client.force_metadata_update()`: refreshes a topic's partitions (`force_metadata_update`
  below, for `streams.runtime.topics.partition_counts`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple, Protocol

import faust
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaFaustConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP

from streams.runtime.settings import ISOLATION_LEVEL

log = logging.getLogger(__name__)

#: The versions whose private API (module docstring) this module was read and tested against;
#: pyproject.toml pins exactly these, and tests/streams/test_faust_door.py fails on any other.
CHECKED_VERSIONS: Final[dict[str, str]] = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

#: The URL scheme of the batch transport (registered in faust's transport registry below).
SCHEME: Final[str] = "lpbatch"
#: faust's own per-message consumer, reading committed records only (bench/naive.py).
COMMITTED_SCHEME: Final[str] = "lpkafka"


class FetchedRecord(Protocol):
    """What the batch handler reads of a fetched record (`streams.runtime.state.SourceRecord`):
    aiokafka's `ConsumerRecord` as the fetch unpacked it (the batch consumer hands those on
    as they are), or a `RawRecord` built elsewhere (tests, the month-rows reader, the bench)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    #: The Kafka timestamp in ms (CreateTime: when the producer sent it), None if unknown.
    @property
    def timestamp(self) -> int | None: ...

    #: The record's headers as the producer wrote them ((name, value) pairs).
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class RawRecord(NamedTuple):
    """One record built outside a fetch (a `FetchedRecord`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: The Kafka timestamp in ms (CreateTime: when the producer sent it), None if unknown.
    timestamp: int | None = None
    #: The record's headers as the producer wrote them ((name, value) pairs).
    headers: Sequence[tuple[str, bytes]] = ()


#: Called with a fetched batch and the wall-clock time it reached the worker's event loop
#: (before waiting for the state's lock).
BatchHandler = Callable[[Sequence[FetchedRecord], float], Awaitable[None]]


class PartitionHooks(Protocol):
    """What the consumer asks of the partition state's keeper
    (`streams.runtime.keeper.StateKeeper`)."""

    #: Held around each batch: a snapshot never sees half a batch.
    lock: asyncio.Lock

    async def assign(self, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def revoke(self, tps: Iterable[tuple[str, int]]) -> None: ...

    def held_positions(self) -> dict[tuple[str, int], int]: ...

    async def skip_to(self, positions: dict[tuple[str, int], int]) -> int: ...


#: Latency (bench/NOTES.md): the broker holds a fetch until this many bytes are there or
#: `FETCH_MAX_WAIT_MS` has passed. faust asks for 1 byte and 1,500 ms: the fetch sent while a
#: batch is being applied returns at once with the few records there, and the records that
#: arrive during the rest of the batch wait a whole further cycle for the next fetch.
FETCH_MIN_BYTES: Final[int] = 1024 * 1024
FETCH_MAX_WAIT_MS: Final[int] = 10
#: An idle consumer's fetch (`BatchConsumer._fetch_mode`): the broker answers it as soon as one
#: byte is there, else after this wait. With the busy settings above a worker whose partitions
#: are all drained sends a fetch every 10 ms that comes back empty: ~90 a second, ~0.04 of a
#: core idle (bench/RESULTS.md, Session 14, "the worker's transport, fetch by fetch").
FETCH_IDLE_WAIT_MS: Final[int] = 500
#: A consumer behind (`BatchConsumer._fetch_mode`: its last `getmany` was a whole batch, so more
#: records are fetched and waiting): the partitions not holding fetched records are then only
#: the empty ones (the month-rows topic's, faust's assignor topic's, drained ones), and a fetch
#: of them waits this long instead of `FETCH_MAX_WAIT_MS`. At 10 ms such fetches came back empty
#: 22-27 times a second while the worker drained a backlog on a loaded machine (up to ~100 with
#: a core of its own), 0.6-1.1 ms of its CPU each (bench/RESULTS.md, "Session 18 (issue 19): the
#: worker's transport"); a partition with records on the broker still comes at once (the broker
#: answers when `FETCH_MIN_BYTES` are there).
FETCH_BEHIND_WAIT_MS: Final[int] = 100


class BatchApp(faust.App):
    """faust's App, carrying what its batch consumer hands each fetch to (`batch_handler`) and
    asks of partition state (`partition_hooks`); the worker's composition root
    (`streams.runtime.worker.Worker`) connects both with `route_batches` before it starts."""

    batch_handler: BatchHandler | None = None
    partition_hooks: PartitionHooks | None = None
    #: The batch consumer's fetch: the broker holds it until this many bytes are there or
    #: `fetch_wait_ms` has passed (`create_app` sets them from the settings).
    fetch_min_bytes: int = FETCH_MIN_BYTES
    fetch_wait_ms: int = FETCH_MAX_WAIT_MS
    #: The most one fetch request brings over its partitions (None: aiokafka's 50 MiB).
    fetch_max_bytes: int | None = None
    #: While no fetch brings records: 1 byte, at most this wait (0: never; `_fetch_mode`).
    fetch_idle_wait_ms: int = FETCH_IDLE_WAIT_MS
    #: While each `getmany` is a whole batch: `fetch_min_bytes`, at most this wait (0: never).
    fetch_behind_wait_ms: int = FETCH_BEHIND_WAIT_MS
    #: Called after each fetch is handled, once its records are released (the worker's paced
    #: collection, `streams.runtime.gcpace.GcPacer.between`).
    between_batches: Callable[[], object] | None = None

    def route_batches(
        self,
        handler: BatchHandler,
        hooks: PartitionHooks | None,
        between: Callable[[], object] | None = None,
    ) -> None:
        """Hand every fetched batch to `handler`, under `hooks.lock`, with `hooks` restoring and
        snapshotting partition state on rebalances; call `between` after each, with the
        fetch's records no longer held."""
        self.batch_handler = handler
        self.partition_hooks = hooks
        self.between_batches = between


async def commit_positions(app: faust.App, positions: dict[tuple[str, int], int]) -> None:
    """Commit the group's offsets of source partitions (after a snapshot covering them), through
    the app's started consumer."""
    offsets = {TP(t, p): o for (t, p), o in positions.items() if o > 0}
    if offsets:
        consumer: Any = app.consumer
        await consumer._commit(offsets)


class CommittedConsumerThread(AIOKafkaConsumerThread):
    """faust's consumer thread, reading with `ISOLATION_LEVEL` (faust passes read_uncommitted
    unless the app is exactly-once, which livepulse does not use: its state carries its
    positions, streams.runtime.keeper), and seeking in its own thread."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = ISOLATION_LEVEL  # read when its fetcher starts
        return consumer

    async def seek_in_thread(self, partition: TP, offset: int) -> None:
        """Seek `partition` from the consumer's own thread.

        faust's `seek` calls aiokafka's `AIOKafkaConsumer.seek` from the caller's loop, while
        the fetch (`getmany`) runs `Fetcher.fetched_records` in this thread: the seek's
        `Fetcher.seek_to` deletes the partition's buffered records (`_records[tp]`) under the
        fetch, which then fails with a KeyError at its own `del self._records[tp]` and stops
        the worker (the family of robinhood/aiokafka#19). faust's `seek_to_committed` and
        `seek_to_beginning` already go through `call_thread`; this does the same for a seek.
        """
        await self.call_thread(self._ensure_consumer().seek, partition, offset)


class CommittedConsumer(AIOKafkaFaustConsumer):
    """faust's aiokafka consumer on a `CommittedConsumerThread`."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return CommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition: TP, offset: int) -> None:
        thread = self._thread
        if isinstance(thread, CommittedConsumerThread):
            await thread.seek_in_thread(partition, offset)
        else:  # pragma: no cover (every consumer here runs a CommittedConsumerThread)
            await super()._seek(partition, offset)


class CommittedTransport(AIOKafkaTransport):
    """faust's aiokafka transport whose consumer reads committed records only."""

    Consumer = CommittedConsumer


class BatchConsumerThread(CommittedConsumerThread):
    """faust's consumer thread, with a short fetch wait and a large minimum fetch, the app's
    bound of a fetch request's bytes, and faust's co-partitioning assignor (and
    `ISOLATION_LEVEL`).

    faust-streaming uses aiokafka's round-robin assignor unless the app has changelog tables,
    and round robin splits partition p of the five contract topics over different workers.
    The state is kept per partition number, so partition p of every topic must be one
    worker's: faust's `PartitionAssignor` assigns co-subscribed topics with equal partition
    counts together (`_get_copartitioned_groups`), and sticks to the previous assignment.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app = self.app
        # Read when its fetcher starts.
        if isinstance(app, BatchApp):
            consumer._fetch_min_bytes = app.fetch_min_bytes
            consumer._fetch_max_wait_ms = app.fetch_wait_ms
            if app.fetch_max_bytes is not None:
                consumer._fetch_max_bytes = app.fetch_max_bytes
        else:
            consumer._fetch_min_bytes = FETCH_MIN_BYTES
            consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        # Read by AIOKafkaConsumer.start() when it builds its group coordinator.
        consumer._partition_assignment_strategy = (self.app.assignor,)
        self._assignor = self.app.assignor
        return consumer


class BatchConsumer(CommittedConsumer):
    """faust's aiokafka consumer with a batch drain loop instead of the per-message one."""

    #: The fetcher's fetch settings now (`_fetch_mode`: "busy", "behind" or "idle"), how many
    #: times they were switched, and how many times to each.
    _fetch_state: str = "busy"
    fetch_modes: int = 0
    fetch_entered: dict[str, int]
    #: Fetches dropped in a rebalance (`_drop_fetched`), and the partitions sought back after
    #: them (each seek counted): `/status`'s `fetch` block (`partition_flow`).
    fetch_drops: int = 0
    fetch_sought_back: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_entered = {"busy": 0, "behind": 0, "idle": 0}

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (a thread loop)
        stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                fetched = sum(map(len, records.values())) if records else 0
                whole = self._batch_records()
                self._fetch_mode(busy=bool(fetched), behind=whole is not None and fetched >= whole)
                if records is None or self.should_stop:
                    await asyncio.sleep(0)
                    continue
                if not self.flow_active:
                    # Rebalancing: what was fetched is dropped, and read again once the flow
                    # resumes (`_drop_fetched`).
                    await self._drop_fetched(records)
                    continue
                await self._process(records, active)
                # The fetch (aiokafka's records, the batch `_process` built of them) is freed
                # here, before the paced collection `between_batches` may run: collected with
                # it alive, it was most of what a collection walked (GcPacer, "Deferred"). Its
                # lists are dropped from the dict itself: faust's consumer thread still holds
                # the dict it returned until its next fetch.
                if isinstance(records, dict):
                    records.clear()
                records = None
                if isinstance(self.app, BatchApp) and self.app.between_batches is not None:
                    self.app.between_batches()
                await self._skip_gaps(active)
                # Yield between batches so the web views and the commit timer get their turn.
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    def _hooks(self) -> PartitionHooks | None:
        return self.app.partition_hooks if isinstance(self.app, BatchApp) else None

    def _batch_records(self) -> int | None:
        """The most records one `getmany` hands on (faust's `broker_max_poll_records`; None:
        no bound, so no `getmany` counts as a whole batch)."""
        limit = self.app.conf.broker_max_poll_records
        return int(limit) if limit else None

    @property
    def fetch_idle(self) -> bool:
        """Whether the fetcher has the idle fetch settings (`_fetch_mode`)."""
        return self._fetch_state == "idle"

    @property
    def fetch_behind(self) -> bool:
        """Whether the fetcher has the behind fetch settings (`_fetch_mode`)."""
        return self._fetch_state == "behind"

    @property
    def fetch_bounds(self) -> dict[str, int | None]:
        """The byte bounds the started fetcher builds its requests with (`max_bytes`: one
        request over its partitions, `partition_max_bytes`: each partition's part); None
        before it has started."""
        consumer = getattr(self._thread, "_consumer", None)
        fetcher = getattr(consumer, "_fetcher", None)
        return {
            "max_bytes": getattr(fetcher, "_fetch_max_bytes", None),
            "partition_max_bytes": getattr(fetcher, "_max_partition_fetch_bytes", None),
        }

    def _fetch_mode(self, *, busy: bool, behind: bool = False) -> None:
        """Set the fetcher's next requests to the settings of what the last `getmany` brought.

        - Records (`busy`): `fetch_min_bytes`, `fetch_wait_ms` (large fetches while records
          flow, each record waiting at most 10 ms at a low rate).
        - A whole batch (`behind`: more records are fetched and waiting, or on the broker):
          `fetch_min_bytes`, `fetch_behind_wait_ms`. A partition holding fetched records is
          not fetched again (aiokafka, `Fetcher._get_actions_per_node`), so the fetches sent
          meanwhile are of the others, and once those are drained or empty (the month-rows
          topic's, faust's assignor topic's) each came back empty after `fetch_wait_ms`, sent
          again at once: the worker's own CPU spent on fetches while it is behind. A partition
          with records on the broker still comes at once (`fetch_min_bytes` of them are there).
        - Nothing for a whole `getmany` wait (a second): 1 byte, `fetch_idle_wait_ms` (the
          broker holds a fetch until a record comes, instead of the fetcher sending one every
          `fetch_wait_ms` that comes back empty).

        The first `getmany` that is not a whole batch sets the busy ones back, so a live
        stream's batches are as before; the first record after a quiet spell comes as soon as
        it is there. With `fetch_idle_wait_ms` (`fetch_behind_wait_ms`) 0 the idle (behind)
        settings are never used. aiokafka reads both attributes each time it builds a fetch
        request (`Fetcher._get_actions_per_node`) in the consumer's thread; an int set from
        here is seen by the next request (one in flight keeps the wait it was sent with)."""
        app = self.app
        if not isinstance(app, BatchApp):
            return
        if busy and behind and app.fetch_behind_wait_ms:
            state, min_bytes, wait_ms = "behind", app.fetch_min_bytes, app.fetch_behind_wait_ms
        elif busy or not app.fetch_idle_wait_ms:
            state, min_bytes, wait_ms = "busy", app.fetch_min_bytes, app.fetch_wait_ms
        else:
            state, min_bytes, wait_ms = "idle", 1, app.fetch_idle_wait_ms
        if state == self._fetch_state:
            return
        consumer = getattr(self._thread, "_consumer", None)
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is None:
            return
        self._fetch_state = state
        fetcher._fetch_min_bytes = min_bytes
        fetcher._fetch_max_wait_ms = wait_ms
        self.fetch_modes += 1
        self.fetch_entered[state] += 1

    async def _process(self, records: Any, active: set[TP] | None) -> None:
        handler = self.app.batch_handler if isinstance(self.app, BatchApp) else None
        if handler is None:
            raise RuntimeError(
                "the batch consumer runs on an app with no batch handler (route_batches)"
            )
        received_at = time.time()
        # aiokafka's records as the fetch unpacked them (`FetchedRecord`): a `ConsumerRecord`
        # carries every attribute the handler reads, so none is rebuilt here; a partition's
        # records are added as one list (issue 19: a `RawRecord` built per record was ~0.2-0.3
        # us of the main thread's and half the young objects a fetch held).
        batch: list[Any] = []
        #: Each partition handed on, and the last offset of its records here.
        taken: list[tuple[TP, int]] = []
        read_offset = self._read_offset
        buffered = self._buffered_partitions
        hooks = self._hooks()
        held = hooks.held_positions() if hooks is not None else {}
        #: Partitions whose first record here is past the held position: the offsets between
        #: hold no record to apply (transaction markers) or were deleted before being read.
        gaps: dict[tuple[str, int], int] = {}
        for tp, tp_records in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            if not tp_records:
                continue
            last_read = read_offset.get(tp)
            if last_read is not None and tp_records[0].offset < last_read:
                # Refetched after a seek back: what was already delivered is left out (the
                # records of a partition come in offset order).
                tp_records = [r for r in tp_records if r.offset >= last_read]
                if not tp_records:
                    continue
            batch += tp_records
            taken.append((tp, tp_records[-1].offset))
            first = tp_records[0].offset
            position = held.get((tp.topic, tp.partition))
            if position is not None and first > position:
                gaps[(tp.topic, tp.partition)] = first
        if not batch:
            return
        if hooks is None:
            await handler(batch, received_at)
        else:
            async with hooks.lock:
                if gaps:
                    await hooks.skip_to(gaps)
                await handler(batch, received_at)
        for tp, last in taken:
            read_offset[tp] = last

    async def _skip_gaps(self, active: set[TP] | None) -> None:
        """Move the held positions past what the consumer skipped without a record to hand on.

        A committed transaction ends with a marker, an aborted one leaves records read_committed
        never returns: the consumer's position goes past them, the positions taken from the
        records would stay before them, and the lag (and the drain wait) would never reach 0.
        After a fetch is handled, the consumer's position of an active partition is the next
        offset it will return, so everything before it was handed on or is not a record.
        """
        hooks = self._hooks()
        consumer = getattr(self._thread, "_consumer", None)
        if hooks is None or consumer is None:
            return
        subscription = consumer._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None:
            return
        held = hooks.held_positions()
        ahead: dict[tuple[str, int], int] = {}
        for tp in assignment.tps:
            if active is not None and tp not in active:
                continue
            state = assignment.state_value(tp)
            if state is None or not state.has_valid_position:
                continue
            key = (tp.topic, tp.partition)
            if key in held and state.position > held[key]:
                ahead[key] = state.position
        if ahead:
            async with hooks.lock:
                await hooks.skip_to(ahead)

    async def perform_seek(self) -> None:
        """After an assignment: restore the new partitions' state, seek to its positions."""
        await super().perform_seek()
        hooks = self._hooks()
        if hooks is None:
            return
        assigned = {(tp.topic, tp.partition) for tp in self.assignment()}
        await self._seek_positions(await hooks.assign(assigned))

    async def _drop_fetched(self, records: Any) -> None:
        """Rebalancing: `records` (one `getmany` result) are not handed on; seek the partitions
        back so they are read again once the flow resumes.

        aiokafka's position of a partition whose records were returned is already past them. A
        partition of a held state goes back to its held position (and the others held with it);
        one with no held position (a topic the state has had no record of yet, or a state the
        assignment's restore has not installed yet) to the first record dropped. faust's
        `getmany` checks the flow only when it starts: one that was waiting when the rebalance
        began returns the new assignment's records after it, while the restore seeks its
        partitions (`perform_seek`). Seeking back only the held positions (session 18 and
        before) left such a partition past its dropped records, never read (issue 19: seen of a
        month-rows partition in a 2-worker fleet's second rebalance; the likely cause of the
        bench's scale-out that never drained, `live.sessions:2` assigned with no position)."""
        self.fetch_drops += 1
        hooks = self._hooks()
        if hooks is None:
            await super().perform_seek()
            return
        positions = {
            (tp.topic, tp.partition): tp_records[0].offset
            for tp, tp_records in (records or {}).items()
            if tp_records
        }
        positions.update(hooks.held_positions())
        self.fetch_sought_back += await self._seek_positions(positions)

    async def _seek_positions(self, positions: dict[tuple[str, int], int]) -> int:
        """Seek each assigned partition among `positions` to the next offset it needs; how
        many were sought."""
        assigned = self.assignment()
        sought = 0
        for (topic, partition), offset in sorted(positions.items()):
            tp = TP(topic, partition)
            if tp in assigned:
                await self.seek(tp, offset)
                sought += 1
        return sought

    def partition_flow(self) -> dict[str, Any]:
        """Which of its assigned partitions the worker reads now, for `/status` (a stalled
        partition, assigned and never read, is told apart here; issue 19).

        `active` and `paused`: faust's own sets (`Consumer._active_partitions`, None before
        the first fetch, and `_paused_partitions`); `fetched`: the partitions aiokafka holds
        fetched records for, not yet handed on (`Fetcher._records`: such a partition is not
        fetched again until they are); `drops` and `sought_back`: the counters of
        `_drop_fetched`. Each list is `topic:partition`, sorted, of the consumer's assignment
        only (so bounded by it). These are private attributes of faust 0.15 and aiokafka 0.14
        read from the event loop while the consumer's thread may change them: one missing, or
        changed under the read, is None rather than an error."""
        try:
            assigned: set[Any] | None = set(self.assignment())
        except Exception:  # no consumer thread yet (starting up)
            assigned = None
        consumer = getattr(self._thread, "_consumer", None)
        fetcher = getattr(consumer, "_fetcher", None)
        return {
            "active": _partition_list(getattr(self, "_active_partitions", None), assigned),
            "paused": _partition_list(getattr(self, "_paused_partitions", None), assigned),
            "fetched": _partition_list(getattr(fetcher, "_records", None), assigned),
            "drops": self.fetch_drops,
            "sought_back": self.fetch_sought_back,
        }

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Snapshot and let go of the revoked partitions' state before faust forgets them."""
        hooks = self._hooks()
        if hooks is not None:
            await hooks.revoke((tp.topic, tp.partition) for tp in revoked)
        await super().on_partitions_revoked(revoked)


def _partition_list(tps: Any, assigned: set[Any] | None) -> list[str] | None:
    """`tps` (partitions: faust's `TP`s or aiokafka's `TopicPartition`s, or a dict keyed by
    them) among `assigned`, as sorted `topic:partition`; None for a missing attribute, no
    assignment, or a set changed by another thread under the read."""
    if tps is None or assigned is None:
        return None
    try:
        return sorted(f"{tp.topic}:{tp.partition}" for tp in list(tps) if tp in assigned)
    except Exception:  # changed under the read (RuntimeError), or not partitions
        return None


class BatchTransport(AIOKafkaTransport):
    """faust's aiokafka transport with `BatchConsumer` as its consumer."""

    Consumer = BatchConsumer


TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:BatchTransport")
TRANSPORTS.aliases.setdefault(COMMITTED_SCHEME, f"{__name__}:CommittedTransport")


async def force_metadata_update(consumer: Any) -> None:
    """Refresh a started aiokafka consumer's cluster metadata (a topic just created)."""
    await consumer._client.force_metadata_update()
