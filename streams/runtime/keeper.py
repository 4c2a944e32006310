"""Moves partition state in and out of a worker: restore on assignment, snapshot on revocation,
when idle and periodically, and commit the source offsets each snapshot covers.

Correctness rests on the snapshot, not on faust's offset commits or exactly-once mode: a
partition's state and the positions it covers are written together, a restore seeks the
sources to those positions, and a record before its partition's position is skipped
(`streams.runtime.state.LiveState.apply_batch`). So after a crash, a rebalance or a restart
every record is applied to the state once: the ones the snapshot covers are in it, the later
ones are read again. The committed consumer offsets trail the snapshots and serve only
monitoring (consumer lag).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from agents.core.persist import dump_state, load_state
from streams.runtime.families import KeeperCounters
from streams.runtime.forkdump import CAN_FORK, ForkedDump, fork_dump
from streams.runtime.partition import PartitionState
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState
from streams.runtime.statestore import LocalStore, Snapshot, SnapshotHead, new_head, newest

log = logging.getLogger(__name__)

SourceTP = tuple[str, int]
#: Commits source offsets ({(topic, partition): next offset}) for the worker's group.
Committer = Callable[[dict[SourceTP, int]], Awaitable[Any]]
#: End offsets of source partitions (to spot a snapshot of topics that were recreated since).
EndOffsets = Callable[[Iterable[SourceTP]], Awaitable[dict[SourceTP, int]]]
#: Log start offsets of source partitions (`streams.runtime.topology.TopologyWatch.log_starts`).
LogStarts = Callable[[list[SourceTP]], Awaitable[dict[SourceTP, int]]]
#: Told (topic, partition, end, position) when a restore finds the contract topics re-created
#: under a worker that has run on them before (`StateKeeper.halt`): the worker stops.
Recreated = Callable[[str, int, int, int], None]


class SnapshotLog(Protocol):
    """Where snapshots go and come back from: the changelog topic
    (`streams.runtime.statestore.Changelog`), or an in-memory one in tests."""

    async def write(
        self, head: SnapshotHead, blob: bytes, previous: SnapshotHead | None = None
    ) -> int: ...

    async def read_newest(self, partition: int, start_offset: int = 0) -> Snapshot | None: ...

    async def stop(self) -> None: ...


#: Awaited before each snapshot: returns once the dead letters of every record applied so far
#: are on the broker (`streams.runtime.deadletters.DeadLetterPipeline.settle`).
Settle = Callable[[], Awaitable[None]]


async def _settled() -> None:
    return None


class StateKeeper:
    """Restores, snapshots and parks the partition states of one worker's `LiveState`."""

    def __init__(
        self,
        live: LiveState,
        settings: Settings,
        changelog: SnapshotLog,
        local: LocalStore | None,
        end_offsets: EndOffsets | None = None,
        *,
        log_starts: LogStarts | None = None,
        settle: Settle = _settled,
        committer: Committer | None = None,
        source_partitions: int | None = None,
        before_restore: Callable[[], Awaitable[None]] | None = None,
        installed: Callable[[PartitionState], None] | None = None,
        recreated: Recreated | None = None,
        caught_up: Callable[[int], bool] | None = None,
    ) -> None:
        self.live = live
        #: Whether a partition has read each contract topic to the end the consumer knows
        #: (its idle horizons follow the others' only then: `LiveState.follow_idle_horizons`);
        #: None: never followed.
        self.caught_up = caught_up
        #: Told when an assignment after this worker's first finds a snapshot of topics
        #: re-created since (`halt`); None: nobody to tell (the keeper halts all the same).
        self.recreated = recreated
        #: Set by `halt`: the contract topics were re-created under this worker, whose other
        #: states and tables are of the deleted topics; nothing is snapshotted any more.
        self.halted = False
        #: Whether an assignment of this worker has completed (a stale snapshot found later is
        #: a re-creation under the running worker, not one it started after).
        self._assigned_once = False
        #: Called with each state installed (restored or new), once it is in `live`.
        self.installed = installed
        #: True while an assignment is under way (from its call until its states are all
        #: installed): what is held is changing (the refund table drops nothing meanwhile).
        self.assigning = False
        #: Awaited before an assignment's states are restored (the membership table's first
        #: read of the groups topic, so the partitions' summaries need not wait for it).
        self.before_restore = before_restore
        self.settings = settings
        self.changelog = changelog
        self.local = local
        self.end_offsets = end_offsets
        #: Log start offsets of source partitions (to tell records deleted before they were
        #: read from transaction markers, `skip_to`); None: not checked.
        self.log_starts = log_starts
        #: Partitions of each contract topic the state was laid out for (checked when the
        #: worker started); partitions added since are not read. None: no limit.
        self.source_partitions = source_partitions
        #: Held while a batch is applied and its dead letters published, and while a snapshot is
        #: taken: a snapshot never covers a record whose dead letter is not yet on the broker.
        self.lock = asyncio.Lock()
        #: Revoked states, kept in memory until the next assignment: a rebalance that gives a
        #: partition back (faust's eager rebalances revoke everything) costs no reload.
        self.parked: dict[int, PartitionState] = {}
        #: Commits the source offsets a snapshot covers (monitoring only); None: no commits.
        self.committer = committer
        #: The snapshot write in flight (`_snapshot(background=True)`), if any.
        self._writing: asyncio.Task[None] | None = None
        #: Awaited before each snapshot: dead letters still being published.
        self.settle = settle
        #: Dump periodic and idle snapshots in a forked child (`streams.runtime.forkdump`).
        self.fork = settings.snapshot_fork and CAN_FORK
        self.counters = KeeperCounters(live.metrics.registry)
        self.counters.state_bytes.set_function(
            lambda: sum(s.snapshot_bytes for s in self.live.partitions.values())
        )

    # -- assignment -------------------------------------------------------------------------

    async def assign(self, tps: Iterable[SourceTP]) -> dict[SourceTP, int]:
        """Install the state of every partition number among `tps`; return where to seek each.

        A partition already installed keeps its state; one that is not is restored from the
        newest snapshot (parked in memory, the local store, the changelog), or starts empty.
        """
        sources = set(self.settings.state_topics)
        # Only the contract topics carry state (not faust's own, such as its leader topic), and
        # only the partitions the state was laid out for: partitions added since are not read
        # (streams.runtime.topology says so, in the log and on /metrics).
        laid_out = self.source_partitions
        tps = sorted(
            {(t, p) for t, p in tps if t in sources and (laid_out is None or p < laid_out)}
        )
        wanted = {p for _, p in tps}
        by_partition: dict[int, int] = {}
        for _, p in tps:
            by_partition[p] = by_partition.get(p, 0) + 1
        log.info(
            "assigned partitions %s (topics each: %s)",
            sorted(wanted),
            ", ".join(f"{p}: {n}" for p, n in sorted(by_partition.items())),
        )
        self.assigning = True
        try:
            if self.before_restore is not None:
                await self.before_restore()
            async with self.lock:
                for partition in sorted(set(self.live.partitions) - wanted):
                    await self._release(partition)  # lost without a revocation (new generation)
                for partition in sorted(wanted - set(self.live.partitions)):
                    await self._restore(partition)
                self.parked.clear()
                self._assigned_once = True
                return {(t, p): self.live.partitions[p].positions.get(t, 0) for t, p in tps}
        finally:
            self.assigning = False

    def halt(self) -> None:
        """The contract topics were re-created under this worker: snapshot nothing from now on
        (its states, tables and month rows are of the deleted topics, or mix them with the new
        ones); the worker stops and a restart starts every partition from the new topics."""
        if not self.halted:
            # Not "re-created": the worker logs that once, as its error (tests count it).
            log.warning("contract topics recreated: this worker snapshots nothing more")
        self.halted = True

    def held_positions(self) -> dict[SourceTP, int]:
        """The next offset of every source partition whose state this worker holds."""
        return dict(self.live.positions)

    async def skip_to(self, positions: dict[SourceTP, int]) -> int:
        """Move held positions past offsets the consumer went past without a record to apply:
        transaction markers and aborted records, or records deleted (retention) before they
        were read, which are counted in `livepulse_records_lost_total` and logged."""
        if self.log_starts is not None:
            held = self.live.positions
            starts = await self.log_starts(list(positions))
            for tp, start in sorted(starts.items()):
                lost = min(start, positions[tp]) - held.get(tp, 0)
                if lost > 0:
                    self.live.metrics.records_lost.labels(tp[0]).inc(lost)
                    log.error(
                        "%d records of %s partition %d were deleted (retention) before this "
                        "worker read them (offsets %d-%d): they are in no figure",
                        lost,
                        tp[0],
                        tp[1],
                        held.get(tp, 0),
                        held.get(tp, 0) + lost - 1,
                    )
        return self.live.skip_to(positions)

    async def revoke(self, tps: Iterable[SourceTP]) -> None:
        """Snapshot and park the partitions among `tps` (the worker no longer owns them)."""
        sources = set(self.settings.state_topics)
        async with self.lock:
            revoked = {p for t, p in tps if t in sources}
            for partition in sorted(revoked & set(self.live.partitions)):
                await self._release(partition)

    async def _release(self, partition: int) -> None:
        state = self.live.partitions[partition]
        await self.wait_for_write()
        if state.dirty:
            try:
                await self._snapshot(partition, state)
            except Exception as exc:  # the next owner re-reads from the last good snapshot
                log.warning("snapshot of revoked partition %d failed: %r", partition, exc)
        self.live.drop(partition)
        if not state.dirty:
            self.parked[partition] = state

    async def _restore(self, partition: int) -> None:
        started = time.monotonic()
        parked = self.parked.pop(partition, None)
        source = "new"
        state: PartitionState | None = None
        #: Whether the state starts afresh because its snapshot is ahead of the topics.
        stale = False
        if parked is not None and parked.head_offset is not None:
            newer = await self.changelog.read_newest(partition, parked.head_offset + 1)
            if newer is None or newer.head.records <= sum(parked.positions.values()):
                state, source = parked, "memory"
        if state is None:
            local = self.local.load(partition) if self.local is not None else None
            start = local.offset + 1 if local is not None and local.offset is not None else 0
            remote = await self.changelog.read_newest(partition, start)
            best = newest([local, remote])
            # A snapshot ahead of the topics (re-created since) is set aside; one written after
            # it may be of the new topics (a restarted worker's): the changelog ranks snapshots
            # by the records they cover, so the stale one, of the longer deleted topics, ranks
            # first until the new topics outgrow them.
            ahead: tuple[str, int, int] | None = None
            while best is not None:
                found = await self._stale(best)
                if found is None:
                    break
                ahead = ahead or found
                after = best.offset
                best = (
                    None
                    if after is None
                    else await self.changelog.read_newest(partition, after + 1)
                )
            stale = ahead is not None and best is None
            if ahead is not None and stale and self._assigned_once and not self.halted:
                # Re-created under this running worker: its membership and refund tables
                # skipped the new topics' records below their old positions, its other states
                # are of the deleted topics and their month rows went to this partition. A
                # state started here from the new topics would mix both worlds, and its
                # snapshot (not ahead of the new topics) would be restored as sound by the
                # restart. Stop instead; the restart starts every partition afresh.
                self.halt()
                if self.recreated is not None:
                    self.recreated(ahead[0], partition, ahead[1], ahead[2])
            if best is not None:
                if self.live.gc is not None:  # frozen as built, never walked (gcpace.py)
                    with self.live.gc.restoring():
                        ledger, board = load_state(best.blob)
                else:
                    ledger, board = load_state(best.blob)
                state = PartitionState(
                    ledger,
                    board,
                    positions=dict(best.head.positions),
                    generation=best.head.generation,
                    head_offset=best.offset,
                    head=best.head,
                    snapshot_bytes=best.head.size,
                )
                source = "local" if best is local else "changelog"
                if best is not local and self.local is not None:
                    self.local.save(best)
            else:
                state = self.live.new_partition()
                month_rows = self.settings.month_rows_topic
                if stale and month_rows is not None and self.end_offsets is not None:
                    # The month-rows topic was not re-created with the contract topics: its
                    # rows are of the deleted topics' records; the new state starts past them.
                    ends = await self.end_offsets([(month_rows, partition)])
                    end = ends.get((month_rows, partition))
                    if end:
                        state.positions[month_rows] = end
        state.restored_from = source
        state.restored_s = time.monotonic() - started
        # A state started afresh over a stale snapshot is snapshotted at once (it is idle), so
        # the stale one is never read again here: a later restore of this partition (a
        # rebalance before it applied anything) takes the new one, with its month-rows start.
        state.dirty = stale and not self.halted
        state.snapshot_at = time.monotonic()
        self.live.install(partition, state)
        if self.installed is not None:
            self.installed(state)
        self.counters.restores.labels(source).inc()
        log.info(
            "partition %d: state from %s (%d events, generation %d) in %.3f s",
            partition,
            source,
            state.ledger.counts.valid,
            state.generation,
            state.restored_s,
        )

    async def _stale(self, snapshot: Snapshot) -> tuple[str, int, int] | None:
        """Whether `snapshot` covers offsets past the sources' ends (topics recreated since):
        the first such (topic, end, position), or None."""
        if self.end_offsets is None:
            return None
        partition = snapshot.head.partition
        ends = await self.end_offsets([(t, partition) for t in snapshot.head.positions])
        for topic, position in snapshot.head.positions.items():
            end = ends.get((topic, partition))
            if end is not None and position > end:
                log.warning(
                    "snapshot of partition %d is ahead of %s (%d > end %d): the topics were "
                    "recreated; starting that partition from the beginning",
                    partition,
                    topic,
                    position,
                    end,
                )
                return topic, end, position
        return None

    # -- snapshots --------------------------------------------------------------------------

    async def _snapshot(
        self, partition: int, state: PartitionState, *, background: bool = False
    ) -> None:
        """Snapshot `state` (called under the lock): dump it, then write it to the changelog and
        the local store, and commit. With `background`, the write runs after the lock is
        released (batches go on meanwhile; one write at a time), and so does the dump itself
        when `snapshot_fork` is on: a forked child dumps the state as it was at the fork
        (`streams.runtime.forkdump`), so batches wait for the fork alone, not for the dump.
        """
        await self.wait_for_write()
        if self.halted:
            return  # topics re-created under this worker: nothing of it is kept (`halt`)
        started = time.monotonic()
        # The dead letters of every record the snapshot covers are on the broker first.
        await self.settle()
        positions = dict(state.positions)
        generation = state.generation + 1
        # The group lookup floor of the state dumped, announced once it is written.
        idle = self.group_floor_idle(state, time.monotonic())
        floor = (
            None
            if self.live.month_rows is None
            else state.ledger.group_floor_announcement(partition, idle=idle)
        )
        state.group_floor_idle = idle
        if background and self.fork:
            try:
                forked = fork_dump(state.ledger, state.board)
            except OSError as exc:  # out of processes or memory: dump in-process this time
                log.warning("fork for the snapshot of partition %d failed (%r)", partition, exc)
            else:
                # Records applied from here on make the state dirty again (apply_batch).
                state.dirty = False
                self._paused(state, started)
                self._writing = asyncio.ensure_future(
                    self._write_forked(
                        partition, state, forked, positions, generation, started, floor
                    )
                )
                return
        try:
            blob = dump_state(state.ledger, state.board)
        except BaseException:
            self.counters.snapshots.labels("failed").inc()
            raise
        head = new_head(partition, generation, blob, positions)
        state.dirty = False
        self._paused(state, started)
        write = self._write(partition, state, head, blob, started, floor)
        if background:
            self._writing = asyncio.ensure_future(write)
        else:
            await write

    def _paused(self, state: PartitionState, started: float) -> None:
        """Count the time batches were held up by this snapshot (settling and dumping or
        forking, all under the lock)."""
        paused = time.monotonic() - started
        state.snapshot_pause_s = paused
        self.counters.pause_seconds.inc(paused)

    async def _write_forked(
        self,
        partition: int,
        state: PartitionState,
        forked: ForkedDump,
        positions: dict[str, int],
        generation: int,
        started: float,
        floor: Any = None,
    ) -> None:
        try:
            blob = await asyncio.get_running_loop().run_in_executor(None, forked.collect)
        except BaseException as exc:
            forked.kill()
            state.dirty = True  # not saved: a later snapshot covers these records
            self.counters.snapshots.labels("failed").inc()
            self.counters.snapshot_seconds.inc(time.monotonic() - started)
            if isinstance(exc, Exception):
                log.warning("snapshot of partition %d failed: %s", partition, exc)
                return
            raise
        head = new_head(partition, generation, blob, positions)
        await self._write(partition, state, head, blob, started, floor)

    async def _write(
        self,
        partition: int,
        state: PartitionState,
        head: Any,
        blob: bytes,
        started: float,
        floor: Any = None,
    ) -> None:
        try:
            offset = await self.changelog.write(head, blob, previous=state.head)
            if self.local is not None:
                self.local.save(Snapshot(head, blob, offset))
        except BaseException as exc:
            state.dirty = True  # not saved: a later snapshot covers these records
            self.counters.snapshots.labels("failed").inc()
            if isinstance(exc, Exception):
                log.warning("snapshot of partition %d failed: %r", partition, exc)
                return
            raise
        finally:
            self.counters.snapshot_seconds.inc(time.monotonic() - started)
        elapsed = time.monotonic() - started
        state.generation, state.head_offset, state.head = head.generation, offset, head
        state.snapshot_at, state.snapshot_s = time.monotonic(), elapsed
        state.snapshot_bytes = len(blob)
        state.snapshots += 1
        if floor is not None:
            state.group_floor_saved = floor
        self.counters.snapshots.labels("ok").inc()
        if self.committer is not None:
            try:
                await self.committer({(t, partition): o for t, o in head.positions.items()})
            except Exception as exc:  # monitoring only: the snapshot holds the positions
                log.warning("committing offsets of partition %d failed: %r", partition, exc)

    async def wait_for_write(self) -> None:
        """Wait for the snapshot write in flight, if any (before another, a revocation, a stop)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    def due(self, state: PartitionState, now: float) -> bool:
        """Whether a dirty state should be snapshotted now (docs: `snapshot_*` settings).

        An idle partition is due at once: nothing of it waits, and its snapshot is what a
        restart, a rebalance and `/report?scope=global` read (README: at most ~1 s after it
        goes idle). A busy one is due every `snapshot_interval_s`, and only while snapshots
        stay under `snapshot_max_share` of the time; the share bounds the worker's time in
        snapshots over all the partitions it holds (each partition's last snapshot time counts
        once for every partition held). Holding idle partitions to that budget too kept one
        after a 1.6 s snapshot unsaved for ~66 s (4 partitions, share 0.1).
        """
        if not state.dirty:
            return False
        settings = self.settings
        if now - state.applied_at >= settings.snapshot_idle_s:
            return True
        since = now - state.snapshot_at
        held = max(1, len(self.live.partitions))
        if state.snapshot_s * held > settings.snapshot_max_share * since:
            return False
        return since >= settings.snapshot_interval_s

    def group_floor_idle(self, state: PartitionState, now: float) -> bool:
        """Whether `state`'s partition has applied no contract record for
        `group_floor_idle_s` (0: never idle), so announces an idle group floor."""
        idle_s = self.settings.group_floor_idle_s
        return idle_s > 0 and now - state.events_at >= idle_s

    async def tick(self) -> None:
        """Snapshot the most overdue partition that is due (called about every second): one a
        tick, so a worker's partitions are not all dumped in one stall. First the horizons of
        idle partitions read to their end follow the others' (`LiveState.follow_idle_horizons`,
        with the month-rows exchange), then the folds due in idle partitions
        (`LiveState.fold_idle`), so the snapshot of one gone idle has them, and the month rows
        they closed (`MonthRowExchange.take`, else run after a batch only: a month that closes
        on a partition's side after its last batch, once the membership table's horizon has
        caught up, was never announced, so no owner ever combined it)."""
        if self.live.month_rows is not None and self.caught_up is not None:
            self.live.follow_idle_horizons(self.settings.horizon_idle_s, self.caught_up)
        self.live.fold_idle(self.settings.snapshot_idle_s)
        if self.live.month_rows is not None:
            self.live.month_rows.take()  # at most once a day of each ledger's horizon
        if self._writing is not None and not self._writing.done():
            return
        now = time.monotonic()
        if self.live.month_rows is not None:
            for state in self.live.partitions.values():
                if not state.group_floor_idle and self.group_floor_idle(state, now):
                    # Gone idle: snapshotted once more, to announce its idle group floor.
                    state.dirty = True
        due = [
            (state.snapshot_at, partition, state)
            for partition, state in self.live.partitions.items()
            if self.due(state, now)
        ]
        if not due:
            return
        _, partition, state = min(due, key=lambda d: (d[0], d[1]))
        async with self.lock:
            if self.live.partitions.get(partition) is state and state.dirty:
                try:
                    await self._snapshot(partition, state, background=True)
                except Exception as exc:  # retried at a later tick
                    log.warning("snapshot of partition %d failed: %r", partition, exc)

    async def flush(self) -> None:
        """Snapshot every dirty partition (the worker is stopping)."""
        async with self.lock:
            await self.wait_for_write()
            for partition, state in sorted(self.live.partitions.items()):
                if state.dirty:
                    try:
                        await self._snapshot(partition, state)
                    except Exception as exc:
                        log.warning("final snapshot of partition %d failed: %r", partition, exc)
