"""The report over every partition, whichever workers hold them: merged from the changelog.

Each worker's `/report` covers the partitions it holds. The global one is built here from the
newest snapshot of every partition in the state changelog topic (`streams.runtime.statestore`),
merged (`agents.core.merge`) into one ledger and board: the same report one worker holding
every partition would give for the records the snapshots cover. With `wait_s`, it waits until
the snapshots cover every record now in the contract topics (workers snapshot a partition
about a second after it goes idle).

The snapshots are read one after another, so a partition's may be older than another's that
compacted its group events by a floor the first announced after a newer snapshot (docs/
design.md, "Group events compacted", in a worker): a state whose lookups are older than any
partition's compaction is read again (`floors_behind`), up to `FLOOR_REREADS` times.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiokafka import TopicPartition

from agents.core.ledger import GroupFloor, Ledger
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.operator import OperatorBoard
from agents.core.periods import with_periods
from agents.core.persist import load_state
from agents.core.report import build_report
from streams.runtime.forkdump import CAN_FORK, fork_bytes
from streams.runtime.monthrows import decode, read_ranges
from streams.runtime.settings import Settings
from streams.runtime.statestore import Changelog, Snapshot
from streams.runtime.topics import end_offsets, partition_counts

log = logging.getLogger(__name__)

#: How long `uncovered` reads the month-rows records no snapshot covers before it counts the
#: rest unread.
READ_TIMEOUT_S: Final[float] = 30.0

#: As the worker serves JSON (`streams.runtime.web`): numpy numbers, non-string keys.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY

#: How many times the snapshots are read again while a state's lookups are older than some
#: partition's group compaction (`floors_behind`) before the report is built all the same
#: (its `state.group_floors_behind` names them), and as soon as a read finds no newer
#: snapshot. The newer snapshot exists by then (a floor is announced only once written), so
#: one read again suffices unless the partitions move on meanwhile.
FLOOR_REREADS: Final[int] = 5


def floors_behind(ledgers: Mapping[int, Ledger]) -> list[int]:
    """The partitions whose state looks up membership at a `ts` before some partition's
    group events are compacted to (`Ledger.groups_compacted_to`): merged, those lookups read
    compacted events. A partition compacts only before the floor every partition announced
    once its snapshot was written, so a newer snapshot of each of them asks nothing older."""
    cuts = [ledger.groups_compacted_to for ledger in ledgers.values()]
    cut = max((ts for ts in cuts if ts is not None), default=None)
    if cut is None:
        return []
    behind = []
    for partition, ledger in sorted(ledgers.items()):
        held = ledger.held_group_floor()
        if held is not None and held < cut:
            behind.append(partition)
    return behind


def _build(
    blobs: dict[int, bytes], settings: Settings, *, check_floors: bool = False
) -> dict[str, Any]:
    """The merged report of the partitions' states (`blobs` by partition), with the
    partitions `floors_behind` under "group_floors_behind"; with `check_floors`, only that if
    any is."""
    loaded = {partition: load_state(blob) for partition, blob in sorted(blobs.items())}
    behind = floors_behind({partition: state[0] for partition, state in loaded.items()})
    if behind and check_floors:
        return {"group_floors_behind": behind}
    states = list(loaded.values())
    if states:
        ledger = merge_ledgers([ledger for ledger, _ in states])
        board = merge_boards([board for _, board in states])
    else:
        ledger = Ledger()
        board = OperatorBoard(settings.window_grace_ms, gpm_denominator=settings.gpm_denominator)
    report = with_periods(build_report(ledger, board), ledger, settings.period_settings)
    report["group_floors_behind"] = behind
    return report


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
    counted = 0

    def take(records: list[Any]) -> None:
        nonlocal counted
        counted += sum(1 for record in records if not _floors_only(record.value))

    starts = {tp: covered for tp, (covered, _end) in ranges.items()}
    ends = {tp: end for tp, (_covered, end) in ranges.items()}
    read = await read_ranges(
        settings,
        "livepulse-uncovered",
        starts,
        take,
        ends=ends,
        timeout_s=READ_TIMEOUT_S,
        poll_ms=1000,
    )
    # Records deleted by retention before they were read are counted as they were.
    counted += sum(max(0, read.beginnings[tp] - covered) for tp, covered in starts.items())
    # Not read in time (a broker away): counted as they are.
    counted += sum(end - at for at, end in read.unread.values())
    return int(counted)


def _floors_only(value: bytes | None) -> bool:
    messages = decode(value)  # [] for a record it cannot read
    return bool(messages) and all(isinstance(message, GroupFloor) for message in messages)


async def global_report(
    settings: Settings, *, wait_s: float = 0.0, poll_s: float = 1.0, build_in_thread: bool = False
) -> dict[str, Any]:
    """The merged report of every partition's newest snapshot (see the module docstring)."""
    deadline = time.monotonic() + wait_s
    rereads = 0
    read: dict[int, str] | None = None
    while True:
        while True:
            snapshots = await newest_snapshots(settings)
            behind = await uncovered(settings, snapshots)
            if behind == 0 or time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll_s)
        blobs = {p: snapshots[p].blob for p in sorted(snapshots)}
        # Read again only while there is something newer to read (a partition held behind
        # for good, by a late event after an idle floor, is built at once the second time).
        heads = {p: snapshot.head.nonce for p, snapshot in snapshots.items()}
        check = rereads < FLOOR_REREADS and heads != read
        read = heads
        report = await _built(blobs, settings, build_in_thread, check_floors=check)
        floors = report.pop("group_floors_behind")
        if not floors or not check:
            break
        # The race the module docstring names: read the snapshots again.
        rereads += 1
        log.info("global report: partitions %s read before a group compaction; again", floors)
        await asyncio.sleep(min(poll_s, 0.1 * rereads))
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
        # Partitions whose state looks up membership older than another's group events are
        # compacted to, still after `FLOOR_REREADS` reads (the figures of those lookups may
        # be off); and how many times the snapshots were read again for it.
        "group_floors_behind": floors,
        "floor_rereads": rereads,
    }
    return report


async def _built(
    blobs: dict[int, bytes], settings: Settings, build_in_thread: bool, *, check_floors: bool
) -> dict[str, Any]:
    """`_build`, in a forked child or a thread with `build_in_thread`."""
    if build_in_thread and CAN_FORK:
        # A worker's event loop keeps serving while the report is built: in a forked child,
        # not a thread (which held the GIL for most of the build, so the loop crawled).
        child = fork_bytes(
            lambda: orjson.dumps(
                _build(blobs, settings, check_floors=check_floors), option=_JSON_OPTIONS
            ),
            what="report",
        )
        try:
            return dict(orjson.loads(await asyncio.to_thread(child.collect)))
        except BaseException:
            child.kill()
            raise
    if build_in_thread:  # no fork here (Windows): a thread
        return await asyncio.to_thread(_build, blobs, settings, check_floors=check_floors)
    return _build(blobs, settings, check_floors=check_floors)
