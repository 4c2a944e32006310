"""The cross-partition fold of `group_spend_multiple`'s closed months, run through Kafka as
Kafka Streams repartitions (docs/design.md, "Closed months of `group_spend_multiple`").

With the session fold a partition ledger holds a (merchant, month)'s rows in part (its
sessions' first joins, its orders' spend). After each batch every held partition's ledger
gives the rows of the months closed on its side (`Ledger.take_closed_month_rows`, at most once
a day of event time) and an announcement of what it still holds open; they are produced to the
worker group's month-rows topic (`Settings.month_rows_topic`): a row to the partition of its
user (Kafka's default partitioner over the user id, so partition p of the topic holds the rows
of the users partition p's ledger owns), an announcement to every partition, rows acknowledged
before their announcement is sent. The topic is read by the same consumer group into partition
p's state (`Settings.state_topics`, the keeper's assignment): its records go to
`Ledger.receive_month_row` / `receive_month_closed`, which combine a month once every source
partition announced it closed, membership from the worker's table.

The same topic carries the other exchanges to an owner partition, each with its own
announcement: `group_repurchase_30d`'s first orders, the order fold's buyer rows, the frozen
periods' per-user rows, and the operator levels' settled runs (`BoardRuns` to the level's
owner, `BoardSettled` to every partition: `Ledger.take_board_runs`).

A snapshot that drops a partition's taken rows is written only after they are on the broker:
the keeper settles `MonthRowSender` (as it settles the dead letters) before it dumps a state.
A crash before the snapshot restores the rows and the older position; they are taken and sent
again, which the owner absorbs (a row sent again overwrites, a combined month ignores it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from agents.core.ledger import (
    BoardRuns,
    BoardSettled,
    FirstOrder,
    FirstsClosed,
    GroupFloor,
    Ledger,
    MonthClosed,
    MonthRow,
    OrderUsers,
    OrderUsersClosed,
    board_owner_key,
    two_earliest,
)
from agents.core.period_rows import (
    NO_DWELL_ROUTED,
    REFUND_CLAIMS,
    WHOLE_PERIOD,
    PeriodRows,
    PeriodsClosed,
    folded_through,
    period_entries,
    period_owner_key,
    receive_period_rows,
    receive_periods_closed,
    take_period_rows,
)
from streams.runtime.batch_consumer import FetchedRecord, RawRecord
from streams.runtime.deadletters import DeadLetter, DeadLetterPublisher
from streams.runtime.settings import ISOLATION_LEVEL, Settings
from streams.runtime.state import LiveState

log = logging.getLogger(__name__)


def owner_of(user: str, partitions: int) -> int:
    """The partition that owns `user`'s rows: Kafka's default partitioner over the user id."""
    return int(murmur2(user.encode()) & 0x7FFFFFFF) % partitions


#: `owner_of` for the frozen periods' rows: a user is in many days' parts of a month, and
#: aiokafka's murmur2 is pure Python (~1.5 us a user); bounded, the recent users kept.
_owner_cached = functools.lru_cache(maxsize=1 << 16)(owner_of)


#: The most rows one record of the month-rows topic carries (~80 bytes each: well under the
#: producer's 1 MB request limit). One record per owner partition and take, not one per row:
#: a row a record made a take of 1,400 rows 1,400 sends, which slowed the event loop enough
#: that the membership and refund tables' readers (on the same loop) fell behind the batches.
ROWS_PER_RECORD: Final[int] = 2000


#: How long a stopping worker reads the month-rows records its consumer had not fetched
#: (`MonthRowExchange.read_to_end`) before it snapshots without the rest.
STOP_READ_S: Final[float] = 10.0


#: What travels on the month-rows topic: `group_spend_multiple`'s closed months' rows,
#: `group_repurchase_30d`'s first orders and the order fold's buyer rows (each to its user's
#: owner), the operator levels' settled runs (each to its level's owner) and their
#: announcements (to every partition), and the partitions' group lookup floors (to every
#: partition).
Message = (
    MonthRow
    | MonthClosed
    | FirstOrder
    | FirstsClosed
    | OrderUsers
    | OrderUsersClosed
    | PeriodRows
    | PeriodsClosed
    | GroupFloor
    | BoardRuns
    | BoardSettled
)
#: The messages that go to their user's (a level's runs: their level's) owner partition.
Row = MonthRow | FirstOrder | OrderUsers | PeriodRows | BoardRuns


def encode(message: Message) -> bytes:
    """A row or an announcement as a compact JSON array (`decode` reads it back)."""
    if isinstance(message, MonthRow | FirstOrder | OrderUsers | BoardRuns):
        return encode_rows([message])
    if isinstance(message, BoardSettled):
        return json.dumps(["board-settled", message.source, message.through]).encode()
    if isinstance(message, OrderUsersClosed):
        return json.dumps(["order-users-closed", message.source, message.through]).encode()
    if isinstance(message, FirstsClosed):
        return json.dumps(["firsts-closed", message.source, message.cutoff_ts]).encode()
    if isinstance(message, PeriodRows):
        return encode_period_rows([message])
    if isinstance(message, PeriodsClosed):
        return json.dumps(
            [
                "periods-closed",
                message.source,
                message.through,
                message.dwell_after,
                message.refunds_through,
            ]
        ).encode()
    if isinstance(message, GroupFloor):
        return json.dumps(
            ["group-floor", message.source, message.own_ts, message.inflight_ts]
        ).encode()
    still_open = sorted([merchant, month] for merchant, month in message.still_open)
    return json.dumps(
        ["closed", message.source, message.through, still_open], separators=(",", ":")
    ).encode()


def encode_rows(rows: Sequence[Row]) -> bytes:
    """Rows (for one owner partition, all of one kind) as one compact JSON array (a buyer
    row of the order fold flat: source, month, user, then its seven ints)."""
    if rows and isinstance(rows[0], OrderUsers):
        flat = [[r.source, r.month, r.user, *r.row] for r in rows if isinstance(r, OrderUsers)]
        return json.dumps(["order-users", flat], separators=(",", ":")).encode()
    if rows and isinstance(rows[0], BoardRuns):
        return orjson.dumps(["board-runs", [list(row) for row in rows]])
    if rows and isinstance(rows[0], FirstOrder):
        # Each part's five fields as before, and membership at its first order in a list of
        # its own after them: a worker from before session 20 reads the parts and ignores it
        # (it looks membership up itself), so a fleet can be upgraded one worker at a time.
        firsts = [row for row in rows if isinstance(row, FirstOrder)]
        parts = [list(row[:5]) for row in firsts]
        members = [row.member for row in firsts]
        return json.dumps(["firsts", parts, members], separators=(",", ":")).encode()
    return json.dumps(["rows", [list(row) for row in rows]], separators=(",", ":")).encode()


def encode_period_rows(rows: Sequence[PeriodRows]) -> bytes:
    """Frozen periods' per-user rows (for one owner partition) as one compact JSON array
    (orjson: a month's take is some 100k rows, and the stdlib's codec cost the event loop
    most of the exchange's time)."""
    return orjson.dumps(["periods", [list(row) for row in rows]])


def decode(value: bytes | None) -> list[Message]:
    """What `encode` / `encode_rows` wrote; nothing for anything else (logged: nothing but
    workers write here)."""
    try:
        data = orjson.loads(value or b"")
        if data[0] == "rows":
            return [
                MonthRow(int(source), merchant, month, user, joined, int(cents))
                for source, merchant, month, user, joined, cents in data[1]
            ]
        if data[0] == "firsts":
            # (Without its third item: written by a worker from before session 20, which
            # sent no membership; the owner looks it up.)
            members = data[2] if len(data) > 2 else [None] * len(data[1])
            return [
                FirstOrder(
                    int(source),
                    merchant,
                    user,
                    int(first),
                    None if later is None else int(later),
                    None if member is None else bool(member),
                )
                for (source, merchant, user, first, later), member in zip(
                    data[1], members, strict=True
                )
            ]
        if data[0] == "order-users":
            return [
                OrderUsers(int(item[0]), str(item[1]), str(item[2]), tuple(map(int, item[3:])))
                for item in data[1]
            ]
        if data[0] == "board-runs":
            return [
                BoardRuns(
                    int(source),
                    str(kind),
                    str(name),
                    int(start),
                    int(through),
                    tuple(map(int, runs)),
                    tuple(map(int, slack)),
                )
                for source, kind, name, start, through, runs, slack in data[1]
            ]
        if data[0] == "board-settled":
            return [BoardSettled(int(data[1]), int(data[2]))]
        if data[0] == "order-users-closed":
            return [OrderUsersClosed(int(data[1]), str(data[2]))]
        if data[0] == "periods":
            return [
                PeriodRows(int(source), str(kind), str(key), str(claim), dict(rows))
                for source, kind, key, claim, rows in data[1]
            ]
        if data[0] == "periods-closed":
            # (Without its fourth item: written by a worker that routed no dwell rows.)
            dwell_after = str(data[3]) if len(data) > 3 else NO_DWELL_ROUTED
            # (Without its fifth: written by a worker that routed no refund claims' rows.)
            refunds_through = str(data[4]) if len(data) > 4 else ""
            return [PeriodsClosed(int(data[1]), str(data[2]), dwell_after, refunds_through)]
        if data[0] == "firsts-closed":
            return [FirstsClosed(int(data[1]), int(data[2]))]
        if data[0] == "group-floor":
            own, inflight = data[2], data[3]
            return [
                GroupFloor(
                    int(data[1]),
                    None if own is None else int(own),
                    None if inflight is None else int(inflight),
                )
            ]
        if data[0] == "closed":
            open_pairs = frozenset((m, month) for m, month in data[3])
            return [MonthClosed(int(data[1]), str(data[2]), open_pairs)]
    except (ValueError, TypeError, IndexError, KeyError, orjson.JSONDecodeError) as exc:
        log.warning("month-rows record not understood (%r): skipped", exc)
        return []
    log.warning("month-rows record of unknown kind %r: skipped", data[0])
    return []


def deliver(ledger: Ledger, message: Message, sources: int) -> None:
    """One message of the topic into the ledger of the partition that reads it (`sources`:
    the partitions that announce)."""
    if isinstance(message, MonthRow):
        ledger.receive_month_row(message)
    elif isinstance(message, FirstOrder):
        ledger.receive_first_order(message)
    elif isinstance(message, FirstsClosed):
        ledger.receive_firsts_closed(message, sources)
    elif isinstance(message, OrderUsers):
        ledger.receive_order_users(message)
    elif isinstance(message, OrderUsersClosed):
        ledger.receive_order_users_closed(message, sources)
    elif isinstance(message, PeriodRows):
        receive_period_rows(ledger, message, sources)
    elif isinstance(message, PeriodsClosed):
        receive_periods_closed(ledger, message, sources)
    elif isinstance(message, GroupFloor):
        ledger.receive_group_floor(message, sources)
    elif isinstance(message, BoardRuns):
        ledger.receive_board_runs(message)
    elif isinstance(message, BoardSettled):
        ledger.receive_board_settled(message, sources)
    else:
        ledger.receive_month_closed(message, sources)


def board_owner(runs: BoardRuns, partitions: int) -> int:
    """The partition that folds a level's settled runs (`ledger.board_owner_key`)."""
    return _owner_cached(board_owner_key((runs.kind, runs.name)), partitions)


def split_by_owner(message: PeriodRows, partitions: int) -> dict[int, PeriodRows]:
    """A period's rows split by their users' owner partitions (`WHOLE_PERIOD`'s whole, to
    the period's owner: `period_rows.period_owner_key`)."""
    if message.claim in WHOLE_PERIOD:
        return {_owner_cached(period_owner_key(message.kind, message.key), partitions): message}
    split: dict[int, dict[str, Any]] = {}
    for user, row in message.rows.items():
        split.setdefault(_owner_cached(user, partitions), {})[user] = row
    return {owner: message._replace(rows=rows) for owner, rows in split.items()}


def _chunks(rows: Sequence[PeriodRows]) -> list[list[PeriodRows]]:
    """Periods' rows for one owner, a record's worth (`ROWS_PER_RECORD` users) at a time."""
    chunks: list[list[PeriodRows]] = [[]]
    users = 0
    for message in rows:
        items = list(message.rows.items())
        for at in range(0, len(items), ROWS_PER_RECORD):
            piece = dict(items[at : at + ROWS_PER_RECORD])
            if users + len(piece) > ROWS_PER_RECORD and chunks[-1]:
                chunks.append([])
                users = 0
            chunks[-1].append(message._replace(rows=piece))
            users += len(piece)
    return [chunk for chunk in chunks if chunk]


@dataclass
class RangesRead:
    """What `read_ranges` read: each partition's first offset on the broker (the records
    before it deleted by retention), and the partitions not read to their end in time, each
    with the offset the reading stopped at and its end."""

    beginnings: dict[TopicPartition, int]
    unread: dict[TopicPartition, tuple[int, int]]


async def read_ranges(
    settings: Settings,
    client_id: str,
    starts: Mapping[TopicPartition, int],
    take: Callable[[list[Any]], None],
    *,
    ends: Mapping[TopicPartition, int] | None = None,
    timeout_s: float,
    poll_ms: int,
) -> RangesRead:
    """Read each partition of `starts` from its start (its first offset on the broker if
    retention deleted past it) up to its end (`ends`; None: its end offset now), with a
    consumer of its own (no group, no commits, read committed), handing the records of each
    fetch below their ends to `take`, until every partition is read to its end or `timeout_s`
    passed. A partition with nothing from its start to its end is not read. The month-rows
    topic's two readers besides the worker's consumer: a stopping worker's
    (`MonthRowExchange.read_to_end`) and the merged report's (`global_report.uncovered`)."""
    consumer = AIOKafkaConsumer(
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level=ISOLATION_LEVEL,
        auto_offset_reset="earliest",
        **settings.kafka_client_kwargs(),
    )
    await consumer.start()
    try:
        tps = list(starts)
        consumer.assign(tps)
        if ends is None:
            ends = await consumer.end_offsets(tps)
        beginnings = await consumer.beginning_offsets(tps)
        # Partition -> the next offset to read there, while it is read.
        pending: dict[TopicPartition, int] = {}
        for tp, start in starts.items():
            start = max(start, beginnings[tp])
            if ends[tp] > start:
                consumer.seek(tp, start)
                pending[tp] = start
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while pending and loop.time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=poll_ms)
            taken = []
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    pending[tp] = record.offset + 1
                    taken.append(record)
            if taken:
                take(taken)
            for tp in list(pending):
                # Past the end (a transaction marker may be the last offset): done.
                if await consumer.position(tp) >= ends[tp]:
                    del pending[tp]
        return RangesRead(beginnings, {tp: (at, ends[tp]) for tp, at in pending.items()})
    finally:
        await consumer.stop()


class MonthRowSender:
    """Produces the taken rows and announcements, one take after another (a later take's
    announcement never overtakes an earlier take's rows), each take's rows acknowledged
    (acks=all, retried while the broker is away) before its announcements are sent.
    `settle()` waits for everything submitted so far (the keeper, before a snapshot)."""

    def __init__(self, topic: Any, partitions: int, on_given_up: Any) -> None:
        self.topic = topic
        self.partitions = partitions
        self._rows = DeadLetterPublisher(self._send, on_given_up)
        self._last: asyncio.Future[None] | None = None
        self.sent_rows = 0
        self.sent_first_orders = 0
        #: The order fold's buyer rows sent (one a buyer and month).
        self.sent_order_users = 0
        #: Frozen periods' per-user rows sent (one a user, period and claim).
        self.sent_period_rows = 0
        #: The levels' settled runs sent (`BoardRuns`: one a level and take).
        self.sent_board_runs = 0
        self.sent_announcements = 0

    async def _send(self, message: DeadLetter) -> Any:
        # A DeadLetter carries the bytes; the partition rides in its one header.
        partition = int(message.headers[0][1])
        delivery = await self.topic.send(key=message.key, value=message.value, partition=partition)
        return await delivery

    def submit(self, messages: Sequence[Message]) -> None:
        by_owner: dict[int, list[MonthRow]] = {}
        firsts_by_owner: dict[int, list[FirstOrder]] = {}
        buyers_by_owner: dict[int, list[OrderUsers]] = {}
        periods_by_owner: dict[int, list[PeriodRows]] = {}
        boards_by_owner: dict[int, list[BoardRuns]] = {}
        announcements: list[DeadLetter] = []
        for message in messages:
            if isinstance(message, BoardRuns):
                owner = board_owner(message, self.partitions)
                boards_by_owner.setdefault(owner, []).append(message)
            elif isinstance(message, PeriodRows):
                for owner, owned_part in split_by_owner(message, self.partitions).items():
                    periods_by_owner.setdefault(owner, []).append(owned_part)
            elif isinstance(message, MonthRow):
                by_owner.setdefault(owner_of(message.user, self.partitions), []).append(message)
            elif isinstance(message, FirstOrder):
                owner = owner_of(message.user, self.partitions)
                firsts_by_owner.setdefault(owner, []).append(message)
            elif isinstance(message, OrderUsers):
                owner = _owner_cached(message.user, self.partitions)
                buyers_by_owner.setdefault(owner, []).append(message)
            else:
                value = encode(message)
                for partition in range(self.partitions):
                    announcements.append(DeadLetter(None, value, [("p", b"%d" % partition)]))
        owned_rows: list[tuple[int, Sequence[Row]]] = [
            *sorted(by_owner.items()),
            *sorted(firsts_by_owner.items()),
            *sorted(buyers_by_owner.items()),
            *sorted(boards_by_owner.items()),
        ]
        rows = [
            DeadLetter(None, encode_rows(owned[at : at + ROWS_PER_RECORD]), [("p", b"%d" % p)])
            for p, owned in owned_rows
            for at in range(0, len(owned), ROWS_PER_RECORD)
        ]
        rows += [
            DeadLetter(None, encode_period_rows(chunk), [("p", b"%d" % p)])
            for p, owned_periods in sorted(periods_by_owner.items())
            for chunk in _chunks(owned_periods)
        ]
        count = sum(len(owned) for owned in by_owner.values())
        firsts = sum(len(owned) for owned in firsts_by_owner.values())
        periods = sum(len(m.rows) for owned in periods_by_owner.values() for m in owned)
        buyers = sum(len(owned) for owned in buyers_by_owner.values())
        boards = sum(len(owned) for owned in boards_by_owner.values())
        previous = self._last
        self._last = asyncio.ensure_future(
            self._publish(previous, rows, (count, firsts, periods, buyers, boards), announcements)
        )

    async def _publish(
        self,
        previous: asyncio.Future[None] | None,
        rows: list[DeadLetter],
        counts: tuple[int, int, int, int, int],
        announcements: list[DeadLetter],
    ) -> None:
        if previous is not None:
            await previous
        if rows:
            await self._rows.publish(rows)
            self.sent_rows += counts[0]
            self.sent_first_orders += counts[1]
            self.sent_period_rows += counts[2]
            self.sent_order_users += counts[3]
            self.sent_board_runs += counts[4]
        if announcements:
            await self._rows.publish(announcements)
            self.sent_announcements += len(announcements)

    async def settle(self) -> None:
        while self._last is not None:
            last = self._last
            await last
            if self._last is last:
                self._last = None


class MonthRowExchange:
    """The worker's part of the exchange: `receive` applies the month-rows topic's records of a
    batch to their partitions' ledgers, `take` gives each held ledger's closed rows to the
    sender."""

    def __init__(self, state: LiveState, topic: str, sender: MonthRowSender) -> None:
        self.state = state
        self.topic = topic
        self.sender = sender
        self.received = 0
        #: Rows taken here for an owner partition held here, until that owner holds them
        #: (`in_flight`): what a report built meanwhile adds (they are in no ledger then).
        self._in_flight: list[tuple[int, Row]] = []

    def split(
        self, batch: Sequence[FetchedRecord]
    ) -> tuple[list[FetchedRecord], list[FetchedRecord]]:
        """The batch's records of the month-rows topic, and the others."""
        topic = self.topic
        mine = [record for record in batch if record.topic == topic]
        if not mine:
            return [], list(batch)
        return mine, [record for record in batch if record.topic != topic]

    def receive(self, records: Sequence[FetchedRecord]) -> None:
        state = self.state
        sources = self.sender.partitions
        applied: list[FetchedRecord] = []
        floors_only = True
        for record in records:
            part = state.partitions.get(record.partition)
            if part is None or record.offset < part.positions.get(record.topic, 0):
                state.skipped += 1
                continue
            for message in decode(record.value):
                if not isinstance(message, GroupFloor):
                    floors_only = False
                deliver(part.ledger, message, sources)
            applied.append(record)
        self.received += len(applied)
        # A group floor only lets a partition drop group events no figure reads any more: the
        # state moves on (positions, a snapshot to write) but every report built before it
        # stays current (each snapshot announces a floor, and the floors read after the
        # contract topics drain made a settled worker's report look stale for seconds).
        state.advance(applied, changes=not floors_only)
        if applied and self._in_flight:
            self.in_flight()  # forget the rows their owners hold now (a view may be forked)

    async def read_to_end(self, settings: Settings, timeout_s: float = STOP_READ_S) -> int:
        """The worker is stopping, its consumer stopped and its own sends settled: apply the
        month-rows records of the partitions held here up to the topic's end, so that the
        final snapshots cover them; return how many were applied. A take right before the
        stop (after the last batch, or at a keeper tick) sends its announcements to every
        partition, this worker's own too, and the consumer stopped before it fetched them:
        no snapshot of theirs would ever cover them (`global_report.uncovered` counted them,
        and a merged report lacked what they fold, until a worker restarted on the state)."""
        held = {
            TopicPartition(self.topic, p): part.positions.get(self.topic, 0)
            for p, part in self.state.partitions.items()
        }
        if not held:
            return 0
        applied = 0

        def take(records: list[Any]) -> None:
            nonlocal applied
            self.receive(
                [
                    RawRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
                    for r in records
                ]
            )
            applied += len(records)

        read = await read_ranges(
            settings, "livepulse-month-rows-stop", held, take, timeout_s=timeout_s, poll_ms=500
        )
        if read.unread:
            log.warning(
                "stopping: %d month-rows partitions not read to their end in %.0f s (the "
                "next worker holding them reads the rest)",
                len(read.unread),
                timeout_s,
            )
        return applied

    def take(self) -> None:
        partitions = self.state.partitions
        for partition, part in partitions.items():
            messages: list[Message] = [
                *part.ledger.take_closed_month_rows(partition),
                *part.ledger.take_first_orders(partition),
                *part.ledger.take_order_users(partition),
                *take_period_rows(part.ledger, partition, self.sender.partitions),
                *part.ledger.take_board_runs(partition),
            ]
            if messages:
                part.dirty = True
                self.state.version += 1  # a view built before the take holds them as rows
                self.sender.submit(messages)
                for message in messages:
                    if isinstance(message, MonthRow | FirstOrder | OrderUsers):
                        owner = owner_of(message.user, self.sender.partitions)
                        if owner in partitions:
                            self._in_flight.append((owner, message))
                    elif isinstance(message, BoardRuns):
                        owner = board_owner(message, self.sender.partitions)
                        if owner in partitions:
                            self._in_flight.append((owner, message))
                    elif isinstance(message, PeriodRows):
                        pieces = split_by_owner(message, self.sender.partitions)
                        for owner, owned_part in pieces.items():
                            if owner in partitions:
                                self._in_flight.append((owner, owned_part))
            # The group lookup floor of the state last snapshotted, once (not a change of
            # state: announcing it makes nothing dirty, or each snapshot would call another).
            floor = part.group_floor_saved
            if floor is not None and floor != part.group_floor_sent:
                part.group_floor_sent = floor
                self.sender.submit([floor])

    def in_flight(self) -> list[Row]:
        """The rows taken here and not yet held by their owner partition, held here (sent, or
        still to be sent): a report adds them, so no figure misses them between the take and
        the owner's read (seconds under load). A row leaves once its owner holds it (in
        `month_rows_in`, or its month combined there) or the owner is no longer held here
        (its next holder reads it from the topic, and shows it from then on)."""
        if not self._in_flight:
            return []
        partitions = self.state.partitions
        kept: list[tuple[int, Row]] = []
        for owner, row in self._in_flight:
            part = partitions.get(owner)
            if part is None:
                continue
            ledger = part.ledger
            if isinstance(row, BoardRuns):  # held by the owner (its window or a later one)
                if ledger.board_runs_through.get(row.source, row.through - 1) < row.through:
                    kept.append((owner, row))
                continue
            if isinstance(row, PeriodRows):  # held by the owner, or folded there
                inbox = ledger.period_rows_in.get((row.kind, row.key), {}).get(row.source, {})
                # A piece's users go out in order in the owner's records, read in order: its
                # last user held, all are (one lookup: this runs after every batch of the
                # topic, with a month's ~1,000 pieces in flight).
                done = folded_through(ledger, self.sender.partitions, row.claim)
                if row.key[:7] <= done or (
                    not row.rows or next(reversed(row.rows)) in inbox.get(row.claim, {})
                ):
                    continue
                kept.append((owner, row))
                continue
            if isinstance(row, OrderUsers):  # held by the owner, or its month summed there
                fold = ledger.order_fold
                through = fold.through_by.get(row.source)
                if (through is not None and row.month <= through) or row.user in fold.rows_in.get(
                    (row.source, row.month), {}
                ):
                    continue
                kept.append((owner, row))
                continue
            if isinstance(row, FirstOrder):  # held by the owner, or its pair decided there
                pair = (row.merchant, row.user)
                held = ledger.first_orders_in.get(pair)
                if pair in ledger.pairs_decided or (
                    held is not None
                    and two_earliest(held[:2], row.first_ts, row.later_ts) == held[:2]
                ):
                    continue
                kept.append((owner, row))
                continue
            key = (row.merchant, row.month)
            if key in ledger._months_combined:
                continue
            if row.source in ledger.month_rows_in.get(key, {}).get(row.user, {}):
                continue
            kept.append((owner, row))
        self._in_flight = kept
        return [row for _owner, row in kept]

    def status(self) -> dict[str, Any]:
        ledgers = [part.ledger for part in self.state.partitions.values()]
        return {
            "topic": self.topic,
            "received": self.received,
            "sent_rows": self.sender.sent_rows,
            "sent_first_orders": self.sender.sent_first_orders,
            # The order fold's buyer rows in the partitions here: held as a source (not sent
            # yet), held as the owner (received, summed), retired as the owner; and sent.
            "order_users": {
                "sent": self.sender.sent_order_users,
                "held": sum(
                    len(users) for ledger in ledgers for users in ledger.order_fold.months.values()
                ),
                "at_owner": sum(
                    len(ledger.order_fold.users)
                    + sum(len(u) for u in ledger.order_fold.rows_in.values())
                    for ledger in ledgers
                ),
                "retired": sum(ledger.order_fold.retired_users for ledger in ledgers),
                # Per partition here, as the owner: the last month every source has announced
                # (its rows all summed; None: a source has not announced yet).
                "owner_through": {
                    str(p): (
                        min(part.ledger.order_fold.through_by.values())
                        if len(part.ledger.order_fold.through_by) == self.sender.partitions
                        else None
                    )
                    for p, part in sorted(self.state.partitions.items())
                },
            },
            # Frozen periods' per-user rows (agents/core/period_rows.py): sent from the
            # partitions here, held and folded at them as owners.
            "period_rows": {
                "sent": self.sender.sent_period_rows,
                "held_at_owner": sum(period_entries(ledger)["rows_held"] for ledger in ledgers),
                "refund_rows_held_at_owner": sum(
                    period_entries(ledger)["refund_rows_held"] for ledger in ledgers
                ),
                "periods_folded": sum(
                    period_entries(ledger)["periods_folded"] for ledger in ledgers
                ),
                # Per partition here, as the owner: the last month every source has announced
                # in the refund claims' second stage (None: a source has not announced one).
                "owner_refunds_through": {
                    str(p): (
                        folded_through(part.ledger, self.sender.partitions, REFUND_CLAIMS[0])
                        or None
                    )
                    for p, part in sorted(self.state.partitions.items())
                },
            },
            # The operator levels' settled runs: sent from the partitions here (one a level and
            # take), held unfolded at them as owners, and each one's minute folded to.
            "board_runs": {
                "sent": self.sender.sent_board_runs,
                "held_at_owner": sum(
                    len(items)
                    for ledger in ledgers
                    for by_source in ledger.board_runs_in.values()
                    for items in by_source.values()
                ),
                "folded_to": {
                    str(p): part.ledger.board_folded_to
                    for p, part in sorted(self.state.partitions.items())
                },
            },
            "sent_announcements": self.sender.sent_announcements,
            "in_flight_rows": len(self.in_flight()),
            # `group_repurchase_30d`'s pairs in the partitions here: held as a source (not
            # sent yet), held as the owner (not decided yet), decided as the owner.
            "first_orders": {
                "held": sum(len(ledger.first_orders) for ledger in ledgers),
                # Of those, the ones with membership at their first order recorded (they
                # hold no group floor; sent with it).
                "held_recorded": sum(len(ledger.source_members()) for ledger in ledgers),
                "at_owner": sum(len(ledger.first_orders_in) for ledger in ledgers),
                "decided": sum(len(ledger.pairs_decided) for ledger in ledgers),
            },
            # The group events held in the partitions here (compacted before the oldest
            # `GroupFloor` of every partition: `Ledger.receive_group_floor`), and each
            # partition's compaction cutoff (None: not compacted yet).
            "group_events": sum(
                len(events) for ledger in ledgers for events in ledger.group_events.values()
            ),
            "groups_compacted_to": {
                str(p): part.ledger.groups_compacted_to
                for p, part in sorted(self.state.partitions.items())
            },
            # Events applied behind an idle floor their partition had announced (their
            # membership lookups may read group events already compacted elsewhere).
            "after_group_floor": sum(ledger.after_group_floor for ledger in ledgers),
            # Per partition here: the `GroupFloor` it last announced, and those it has read
            # (source -> [own, in flight]).
            "group_floors": {
                str(p): {
                    "announced": None
                    if part.group_floor_sent is None
                    else list(part.group_floor_sent[1:]),
                    # Whether the floor last snapshotted was taken idle (its horizons left
                    # out: `Settings.group_floor_idle_s`).
                    "idle": part.group_floor_idle,
                    # How often its horizons followed the others' while idle and read to
                    # its end (`Settings.horizon_idle_s`).
                    "horizons_followed": part.horizons_followed,
                    "read": {
                        str(s): list(f) for s, f in sorted(part.ledger.group_floors_by.items())
                    },
                }
                for p, part in sorted(self.state.partitions.items())
            },
        }
