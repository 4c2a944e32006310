"""The worker's membership table: every partition of the groups topic, read by each worker
process apart from its consumer group (like Kafka Streams' GlobalKTable), so that its partition
ledgers fix membership at a session's summary with every group event of its merchant
(`Ledger.membership_from`, docs/design.md "Membership at the summary").

Why not faust's `GlobalTable`: it is a table over a changelog written by an agent (here the
groups topic is the source), needs faust's table recovery and standby assignment, which the
worker does not use (`table_standby_replicas=0`, its own assignor and drain), and its standby
partitions were seen not to be read on every worker (faust-streaming issues #212, #283). A
plain aiokafka consumer with every partition assigned by hand, no group, is all that is needed.

Its state is not snapshotted: it is rebuilt at each start by reading the groups topic from its
beginning (group events are few: one a join or leave). Read in offset order per partition,
each partition's ledger makes the same expiry and duplicate decisions as the worker's partition
ledger of that number, so the table holds what the partition ledgers hold, whichever worker
holds them; a snapshot would add a second copy of state to keep consistent for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.core import Ledger
from agents.core.ingest import PROCESSING_ERROR, Rejected, decode_values, ingest_decoded
from agents.core.ledger import TOPICS
from agents.core.plain import apply_plain
from schemas import Event, Rejection
from schemas.plain import decode_plain
from streams.runtime.settings import ISOLATION_LEVEL, Settings
from streams.runtime.topics import partition_counts

log = logging.getLogger(__name__)

_GROUPS: Final[int] = TOPICS.index("live.groups")

#: The reason a table's ledger is given for a record `decode_plain` refuses (`Ledger.reject`
#: keeps none: the table only counts it).
REFUSED: Final[str] = "refused"

#: Records a table decodes at once on the event path (`ReadTable.plain` False; the plain path,
#: the default since session 18, decodes each value alone). A reader's fetch at a start is
#: the whole buffered topic (thousands of records a partition): decoded whole, its events
#: were all alive together, and the worker's drain after it ran 4-6% fewer records per CPU
#: second than before in four runs; in slices of 500, 1.05x and 1.03x in two (bench/RESULTS.md,
#: "Session 17"; why is not established).
DECODE_SLICE: Final[int] = 500

GroupEvents = Sequence[tuple[int, int, str, bool]]


class _PooledGroupEvents(Mapping[tuple[str, str], GroupEvents]):
    """The group events of every partition's ledger, by (merchant, user). A member's events
    are in one partition (group events are keyed by merchant), so a lookup takes the first."""

    def __init__(self, ledgers: Mapping[int, Ledger]) -> None:
        self._ledgers = ledgers

    def __getitem__(self, key: tuple[str, str]) -> GroupEvents:
        for ledger in self._ledgers.values():
            events = ledger.group_events.get(key)
            if events is not None:
                return events
        raise KeyError(key)

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        """`Mapping.get` without its `KeyError`: a lookup (a viewer's membership at a
        session's summary and its period's freeze) of a user with no group event raised and
        caught one (issue 19, session 18: 0.3 us such a lookup against 0.8; 36,471 of the
        84,042 lookups over the bench's 300,000 records)."""
        for ledger in self._ledgers.values():
            events = ledger.group_events.get(key)
            if events is not None:
                return events
        return default

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter({key for ledger in self._ledgers.values() for key in ledger.group_events})

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ReadTable:
    """What the membership and refund tables share as `MembershipReader` feeds them: the
    position read of each partition, the records applied and refused, and `caught_up`, set
    once every partition is read up to the ends the topic had when the reader started (a
    partially read topic must not give a horizon). A fetch's values are decoded at once
    (`apply_fetch`), and `_ingest` applies one decoded value to the table's state of its
    partition and returns `ingest_decoded`'s outcome."""

    #: Whether a fetch's records are read through the plain decode (`_apply_plain`: no event
    #: objects, issue 19) or decoded into events and applied by `_ingest` (False: as before
    #: session 18; both decide and keep the same, and the tests run both).
    plain: bool = True

    def __init__(self, idle_s: float | None = None) -> None:
        #: A partition read to its high-water mark with no record for this long (wall clock,
        #: counted while the topic moves: `idle`) no longer holds the table's horizon back;
        #: None: it always does.
        self.idle_s = idle_s
        #: Partition -> the next offset to read (what the table holds is before it).
        self.positions: dict[int, int] = {}
        #: Every partition of the topic (from `catch_up_to`), read or not.
        self.partition_numbers: set[int] = set()
        #: When (`time.monotonic()`) the topic last brought a record, and when its records
        #: last resumed after a spell of `idle_s` with none in any partition (`idle`).
        self._last_record_at: float | None = None
        self._resumed_at: float | None = None
        #: Partition -> the end to reach before the horizon is given (None: not set yet).
        self._catch_up: dict[int, int] | None = None
        self.caught_up = asyncio.Event()
        #: Records applied, and records refused by the decoder (counted and dead-lettered by
        #: the partition ledger of their partition, not here).
        self.records = 0
        self.rejected = 0
        #: Partition -> since when (`time.monotonic()`) it has been read up to its high-water
        #: mark with no record since (`idle`): absent while records come.
        self._quiet_since: dict[int, float] = {}
        #: Set by `rewind` (the table emptied): the reader reads the topic from its beginning
        #: again, and clears it when it has sought there.
        self.rewind_pending = False
        self.rewinds = 0

    def _ingest(self, partition: int, decoded: Event | Rejection | Rejected) -> object:
        raise NotImplementedError

    def rewind(self) -> None:
        """Empty the table and have it read again from the topic's beginning (no horizon until
        it has caught up again, as at its start): subclasses empty their own state too."""
        self.positions = {}
        self._catch_up = None
        self.caught_up.clear()
        self._quiet_since = {}
        self.rewind_pending = True
        self.rewinds += 1

    def idle(self, now: float | None = None) -> set[int]:
        """The partitions left out of the table's horizon: read to their high-water mark with
        no record for `idle_s`, counted from when they went quiet or from when the topic's
        records last resumed after a spell of `idle_s` with none anywhere, whichever is later.
        So idle time counts only while the topic moves: a topic written partition after
        partition (a producer sending each whole in turn, or a backfill after a pause) does
        not leave out the partitions not reached yet, however long it was quiet before
        (Kafka Streams starts its `max.task.idle.ms` wait when a task has records on some
        partitions and none on another: KIP-695)."""
        idle_s, resumed = self.idle_s, self._resumed_at
        if idle_s is None or resumed is None or not self._quiet_since:
            return set()
        now = time.monotonic() if now is None else now
        return {p for p, since in self._quiet_since.items() if now - max(since, resumed) >= idle_s}

    def catch_up_to(self, ends: Mapping[int, int]) -> None:
        """Give the horizon only once every partition is read up to `ends` (the topic's ends
        when the table started)."""
        self._catch_up = dict(ends)
        self.partition_numbers.update(ends)
        self._check_caught_up()

    def apply(self, partition: int, offset: int, value: bytes | None) -> None:
        """One record of the topic's `partition`, in offset order."""
        self.apply_fetch(partition, (offset,), (value,))

    def apply_fetch(
        self, partition: int, offsets: Sequence[int], values: Sequence[bytes | None]
    ) -> None:
        """A fetch's records of the topic's `partition`, in offset order (`offsets[i]` is
        `values[i]`'s), those read before left out (a fetch after a reconnect). Their values
        are decoded `DECODE_SLICE` at a time, as the worker's batch path decodes a fetch
        (`decode_values`: one validator call for the valid ones, each other one decoded again
        alone for its reason, so a bad record is counted as rejected with it and nothing
        around it is lost), then applied one by one in their order (issue 19)."""
        start, position = 0, self.positions.get(partition, 0)
        while start < len(offsets) and offsets[start] < position:
            start += 1
        if start == len(offsets):
            return
        if start:
            offsets, values = offsets[start:], values[start:]
        rejected = self._apply_values(partition, values)
        self._quiet_since.pop(partition, None)
        if self.idle_s is not None:
            now = time.monotonic()  # the fetch's records came together
            last = self._last_record_at
            if last is None or now - last >= self.idle_s:
                self._resumed_at = now  # the topic moves again: idle time counts from here
            self._last_record_at = now
        self.records += len(offsets)
        self.rejected += rejected
        self.positions[partition] = offsets[-1] + 1

    def _apply_values(self, partition: int, values: Sequence[bytes | None]) -> int:
        """Apply a fetch's values (none read before) to the table's state of `partition`, in
        their order, and return how many were refused by the decoder: decoded into events
        `DECODE_SLICE` at a time and applied by `_ingest` (the tables' own `_apply_values`
        take this path with `plain` False)."""
        rejected = 0
        for first in range(0, len(values), DECODE_SLICE):
            for decoded in decode_values(values[first : first + DECODE_SLICE]):
                rejected += isinstance(self._ingest(partition, decoded), Rejected)
        return rejected

    def _apply_plain(
        self,
        ledger: Ledger,
        partition: int,
        values: Sequence[bytes | None],
        given: int | None,
        late_kind: str | None,
    ) -> tuple[int, int]:
        """`_apply_values` through the plain decode (issue 19): each value validated by the
        contract's own rules into a dict (`schemas.plain.decode_plain`), and applied to
        `ledger` (the table's of `partition`) by `agents.core.plain.apply_plain`, which
        decides it as the partition ledger decides the event and keeps its refund or group
        event. A value the decoder refuses is counted rejected there, with no reason (the
        partition ledger that reads it dead-letters it with `decode`'s); a core failure is
        counted rejected as `ingest_decoded` counts it. Returns the records refused and those
        applied stamped before `given` (the newest horizon given, once caught up: None, none
        counted), of type `late_kind` (None: any)."""
        if not self.caught_up.is_set():
            given = None
        rejected = late = 0
        for value in values:
            plain = None if value is None else decode_plain(value)
            if plain is None:  # not an event (a null value is not JSON)
                ledger.reject(REFUSED)
                rejected += 1
                continue
            try:
                applied = apply_plain(ledger, plain)
            except Exception:  # a bug in the core must not stop the table
                log.exception("the core failed on a %s record", plain["type"])
                ledger.reject(PROCESSING_ERROR)
                rejected += 1
                continue
            if (
                applied
                and given is not None
                and plain["ts"] < given
                and (late_kind is None or plain["type"] == late_kind)
            ):
                late += 1
        return rejected, late

    def advance(self, partition: int, position: int, highwater: int | None = None) -> None:
        """The consumer's position of `partition` (past transaction markers and gaps), and
        the partition's high-water mark as of the last fetch (None: not known)."""
        if position > self.positions.get(partition, 0):
            self.positions[partition] = position
        if highwater is not None and self.positions.get(partition, 0) >= highwater:
            self._quiet_since.setdefault(partition, time.monotonic())
        else:
            self._quiet_since.pop(partition, None)
        self._check_caught_up()

    def _check_caught_up(self) -> None:
        ends = self._catch_up
        if self.caught_up.is_set() or ends is None:
            return
        if all(self.positions.get(p, 0) >= end for p, end in ends.items()):
            self.caught_up.set()


class MembershipTable(ReadTable):
    """Group events of every partition of the groups topic, a ledger per partition (under the
    partition ledgers' dedupe window and future tolerance), and the groups horizon summaries
    wait for (a `agents.core.ledger.MembershipSource`).

    The horizon is None (no summary) until the table has read each partition up to the end it
    had when the table started (`catch_up_to`, `caught_up`): a partially read topic would
    otherwise let a summary fix membership without the events still unread. After that it is
    the oldest of the partitions' groups horizons, and a partition with no event yet holds it
    back (None) like an old horizon does: any group event may still come there. A partition
    `idle` (read to its end with no record for `idle_s` while the topic moved) is left out of
    the oldest; if every partition with an event is, the newest of theirs holds.
    """

    def __init__(
        self,
        dedupe_window_ms: int | None,
        future_tolerance_ms: int | None,
        idle_s: float | None = None,
    ) -> None:
        super().__init__(idle_s)
        self.dedupe_window_ms = dedupe_window_ms
        self.future_tolerance_ms = future_tolerance_ms
        self.ledgers: dict[int, Ledger] = {}
        self._group_events = _PooledGroupEvents(self.ledgers)
        #: The newest horizon given so far, and the group events applied stamped before it
        #: (an idle partition's late events: a session summarized before may have missed them).
        self._given: int | None = None
        self.after_horizon = 0

    @property
    def group_events(self) -> Mapping[tuple[str, str], GroupEvents]:
        return self._group_events

    def horizon_ts(self, topic: int) -> int | None:
        """The groups topic's horizon: the oldest of its partitions' (a group event older than
        its partition's horizon is expired there, in the table and in the partition ledger
        alike), but the `idle` partitions'. None before the catch-up, while a partition not
        idle has no event yet (read or not: one a producer has not reached), or with no
        event at all."""
        horizon = self._horizon()
        if horizon is not None and (self._given is None or horizon > self._given):
            self._given = horizon
        return horizon

    def _horizon(self) -> int | None:
        if not self.caught_up.is_set():
            return None
        idle = self.idle()
        active: list[int] = []
        quiet: list[int] = []
        ledgers = self.ledgers
        for partition in self.partition_numbers | ledgers.keys():
            ledger = ledgers.get(partition)
            horizon = None if ledger is None else ledger.horizon_ts(_GROUPS)
            if partition in idle:
                if horizon is not None:
                    quiet.append(horizon)
            elif horizon is None:
                return None
            else:
                active.append(horizon)
        if active:
            return min(active)
        return max(quiet) if quiet else None

    def _ledger(self, partition: int) -> Ledger:
        """The table's ledger of `partition`, made on its first record."""
        ledger = self.ledgers.get(partition)
        if ledger is None:
            ledger = self.ledgers[partition] = Ledger(
                self.dedupe_window_ms, self.future_tolerance_ms
            )
        return ledger

    def _apply_values(self, partition: int, values: Sequence[bytes | None]) -> int:
        if not self.plain:
            return super()._apply_values(partition, values)
        rejected, late = self._apply_plain(
            self._ledger(partition), partition, values, self._given, None
        )
        self.after_horizon += late
        return rejected

    def _ingest(self, partition: int, decoded: Event | Rejection | Rejected) -> object:
        outcome = ingest_decoded(decoded, self._ledger(partition), None)
        given = self._given
        if (
            given is not None
            and outcome is not None
            and not isinstance(outcome, Rejected)
            and outcome.ts < given
            and self.caught_up.is_set()  # not one read again (`rewind`)
        ):
            self.after_horizon += 1
        return outcome

    def status(self) -> dict[str, Any]:
        return {
            "caught_up": self.caught_up.is_set(),
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "records": self.records,
            "rejected": self.rejected,
            "members": sum(len(ledger.group_events) for ledger in self.ledgers.values()),
            "groups_horizon_ts": self._horizon(),
            "idle_partitions": sorted(self.idle()),
            "after_horizon": self.after_horizon,
        }


class TopicTable(Protocol):
    """What `MembershipReader` feeds: a table over every partition of one topic."""

    def apply(self, partition: int, offset: int, value: bytes | None) -> None: ...

    def apply_fetch(
        self, partition: int, offsets: Sequence[int], values: Sequence[bytes | None]
    ) -> None: ...

    def advance(self, partition: int, position: int, highwater: int | None = None) -> None: ...

    def catch_up_to(self, ends: Mapping[int, int]) -> None: ...

    #: Set when the table was emptied (`ReadTable.rewind`): read from the beginning again.
    rewind_pending: bool


def _apply_fetched(table: TopicTable, fetched: Mapping[TopicPartition, Sequence[Any]]) -> None:
    """Apply one `getmany` result to `table`, partition by partition."""
    for tp, records in fetched.items():
        table.apply_fetch(
            tp.partition,
            [record.offset for record in records],
            [record.value for record in records],
        )


class MembershipReader:
    """Reads every partition of the groups topic into a `MembershipTable` (or of the orders
    topic into the refund table, `streams.runtime.refunds`: `name` says which), from the
    beginning, with no consumer group (nothing committed: each start reads it whole again)."""

    def __init__(
        self, settings: Settings, topic: str, table: TopicTable, name: str = "membership"
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.table = table
        self.name = name
        self._stopped = False
        self._task: asyncio.Future[None] | None = None
        #: Set once `run` has returned (stopped, or failed: then the table's horizon stays
        #: None if it had not caught up, and no summary waits on a table that stopped early).
        self.done = asyncio.Event()

    def start(self) -> None:
        """Start reading in the background (once; later calls do nothing)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        """Assign every partition, read from the beginning, and keep reading until `stop`."""
        try:
            await self._read()
        except Exception:  # the claims stay exact without summaries: logged, not fatal
            log.exception(
                "%s table: reading %s failed; nothing waiting on it is folded",
                self.name,
                self.topic,
            )
        finally:
            self.done.set()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=ISOLATION_LEVEL,
            client_id=f"{self.settings.app_id}-{self.name}",
            **self.settings.kafka_client_kwargs(),
        )
        await consumer.start()
        try:
            counts = await partition_counts(self.settings, [self.topic])
            partitions = range(counts.get(self.topic, 0))
            if not partitions:
                raise RuntimeError(f"the topic {self.topic} has no partitions")
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            self.table.catch_up_to({tp.partition: end for tp, end in ends.items()})
            log.info(
                "%s table: reading %d partitions of %s (%d records to catch up)",
                self.name,
                len(tps),
                self.topic,
                sum(ends.values()),
            )
            table = self.table
            while not self._stopped:
                if table.rewind_pending:  # emptied (a rebalance): the whole topic again
                    table.rewind_pending = False
                    await consumer.seek_to_beginning(*tps)
                    ends = await consumer.end_offsets(tps)
                    table.catch_up_to({tp.partition: end for tp, end in ends.items()})
                    log.info("%s table: reading %s again from its beginning", self.name, self.topic)
                fetched = await consumer.getmany(timeout_ms=500)
                if table.rewind_pending:
                    continue  # fetched from before the rewind: read again after the seek
                _apply_fetched(table, fetched)
                # Dropped before the awaits below and the next fetch's wait (up to 500 ms): held,
                # they were walked by the worker's paced collections at a start (13,352 records
                # of the tables' catch-up in one; bench/RESULTS.md, Session 18 "GC pauses").
                del fetched
                for tp in tps:
                    position = await consumer.position(tp)
                    if table.rewind_pending:
                        break
                    table.advance(tp.partition, position, consumer.highwater(tp))
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop reading (within a fetch's wait) and close the consumer."""
        self._stopped = True
        task = self._task
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout_s)
        if not task.done():
            task.cancel()
