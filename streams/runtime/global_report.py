"""The report over every partition, whichever workers hold them: merged from the changelog.

Each worker's `/report` covers the partitions it holds. The global one is built here from the
newest snapshot of every partition in the state changelog topic (`streams.runtime.statestore`),
merged (`agents.core.merge`) into one ledger and board: the same report one worker holding
every partition would give for the records the snapshots cover. With `wait_s`, it waits until
the snapshots cover every record now in the contract topics (workers snapshot a partition
about a second after it goes idle).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.core.ledger import GroupFloor
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.operator import OperatorBoard
from agents.core.periods import with_periods
from agents.core.persist import load_state
from agents.core.report import build_report
from streams.runtime.forkdump import CAN_FORK, fork_bytes
from streams.runtime.monthrows import decode
from streams.runtime.settings import ISOLATION_LEVEL, Settings
from streams.runtime.statestore import Changelog, Snapshot
from streams.runtime.topics import end_offsets, partition_counts

#: How long `uncovered` reads the month-rows records no snapshot covers before it counts the
#: rest unread.
READ_TIMEOUT_S: Final[float] = 30.0

#: As the worker serves JSON (`streams.runtime.web`): numpy numbers, non-string keys.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _build(blobs: list[bytes], settings: Settings) -> dict[str, Any]:
    states = [load_state(blob) for blob in blobs]
    if states:
        ledger = merge_ledgers([ledger for ledger, _ in states])
        board = merge_boards([board for _, board in states])
    else:
        from agents.core.ledger import Ledger

        ledger = Ledger()
        board = OperatorBoard(settings.window_grace_ms, gpm_denominator=settings.gpm_denominator)
    return with_periods(build_report(ledger, board), ledger, settings.period_settings)


async def newest_snapshots(settings: Settings) -> dict[int, Snapshot]:
    """The newest complete snapshot of each changelog partition that has one."""
    counts = await partition_counts(settings, [settings.changelog])
    if settings.changelog not in counts:
        raise LookupError(
            f"no changelog topic {settings.changelog}: has a worker with app id "
            f"{settings.app_id!r} run against this broker?"
        )
    changelog = Changelog(settings)
    found: dict[int, Snapshot] = {}
    for partition in range(counts[settings.changelog]):
        snapshot = await changelog.read_newest(partition)
        if snapshot is not None:
            found[partition] = snapshot
    return found


async def uncovered(settings: Settings, snapshots: dict[int, Snapshot]) -> int:
    """Records in the topics read into the partitions' states that no snapshot covers yet: the
    contract topics, and with the session fold the month-rows topic (a closed month's rows
    leave their sender's snapshot once acknowledged, so until the receiver's snapshot covers
    them a merged report would be without them). A month-rows record holding only group
    floors is not counted: a floor changes no figure (it lets a partition drop group events
    no figure reads any more), and each snapshot announces one to every partition, so a
    stopped worker's partitions end with floors no snapshot of theirs will ever cover."""
    ends = await end_offsets(settings, settings.state_topics)
    behind = 0
    month_rows: dict[TopicPartition, tuple[int, int]] = {}
    for tp, end in ends.items():
        snapshot = snapshots.get(tp.partition)
        covered = snapshot.head.positions.get(tp.topic, 0) if snapshot is not None else 0
        if end <= covered:
            continue
        if tp.topic == settings.month_rows_topic:
            month_rows[tp] = (covered, end)
        else:
            behind += end - covered
    if month_rows:
        behind += await _uncovered_month_rows(settings, month_rows)
    return behind


async def _uncovered_month_rows(
    settings: Settings, ranges: dict[TopicPartition, tuple[int, int]]
) -> int:
    """The month-rows records in `ranges` ([covered, end) of each partition) that hold any
    message but a group floor (an unreadable one counts: it may be anything)."""
    consumer = AIOKafkaConsumer(
        client_id="livepulse-uncovered",
        enable_auto_commit=False,
        isolation_level=ISOLATION_LEVEL,
        auto_offset_reset="earliest",
        **settings.kafka_client_kwargs(),
    )
    await consumer.start()
    counted = 0
    try:
        consumer.assign(list(ranges))
        beginnings = await consumer.beginning_offsets(list(ranges))
        for tp, (covered, _end) in ranges.items():
            # Records deleted by retention before they were read are counted as they were.
            counted += max(0, beginnings[tp] - covered)
            consumer.seek(tp, max(covered, beginnings[tp]))
        pending = {tp: max(covered, beginnings[tp]) for tp, (covered, _end) in ranges.items()}
        deadline = time.monotonic() + READ_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                end = ranges[tp][1]
                for record in records:
                    if record.offset >= end:
                        break
                    pending[tp] = record.offset + 1
                    if not _floors_only(record.value):
                        counted += 1
            for tp in list(pending):
                # Past the end (a transaction marker may be the last offset): done.
                if await consumer.position(tp) >= ranges[tp][1]:
                    del pending[tp]
        # Not read in time (a broker away): counted as they are.
        counted += sum(ranges[tp][1] - offset for tp, offset in pending.items())
    finally:
        await consumer.stop()
    return int(counted)


def _floors_only(value: bytes | None) -> bool:
    messages = decode(value)  # [] for a record it cannot read
    return bool(messages) and all(isinstance(message, GroupFloor) for message in messages)


async def global_report(
    settings: Settings, *, wait_s: float = 0.0, poll_s: float = 1.0, build_in_thread: bool = False
) -> dict[str, Any]:
    """The merged report of every partition's newest snapshot (see the module docstring)."""
    deadline = time.monotonic() + wait_s
    while True:
        snapshots = await newest_snapshots(settings)
        behind = await uncovered(settings, snapshots)
        if behind == 0 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(poll_s)
    blobs = [snapshots[p].blob for p in sorted(snapshots)]
    if build_in_thread and CAN_FORK:
        # A worker's event loop keeps serving while the report is built: in a forked child,
        # not a thread (which held the GIL for most of the build, so the loop crawled).
        child = fork_bytes(
            lambda: orjson.dumps(_build(blobs, settings), option=_JSON_OPTIONS), what="report"
        )
        try:
            report = dict(orjson.loads(await asyncio.to_thread(child.collect)))
        except BaseException:
            child.kill()
            raise
    elif build_in_thread:  # no fork here (Windows): a thread
        report = await asyncio.to_thread(_build, blobs, settings)
    else:
        report = _build(blobs, settings)
    report["state"] = {
        "source": f"changelog {settings.changelog}",
        "partitions": {
            str(p): {
                "positions": s.head.positions,
                "generation": s.head.generation,
                "written_at": s.head.written_at,
                "writer": s.head.writer,
            }
            for p, s in sorted(snapshots.items())
        },
        "uncovered_records": behind,
    }
    return report
