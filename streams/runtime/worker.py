"""The worker's composition root: `Worker` builds every part from one `Settings` and hands each
what it needs, so a record's whole path is read here, top to bottom.

A record's path: faust's group consumer (`batch_consumer.BatchConsumer`, on `app.BatchApp`)
fetches a batch -> `ingest.BatchIngest` -> `state.LiveState.apply_batch` -> per record
`agents.core.ingest.ingest` (decode -> `Ledger.apply` -> `OperatorBoard.observe`, or a
rejection) -> rejections as `deadletters.DeadLetter`s to the `DeadLetterPipeline` -> the
dead-letter topic. The state keeper (`keeper.StateKeeper`) snapshots each partition's state
with the positions it covers, after the pipeline settles; `/metrics`, `/report` and `/status`
(`web.WorkerViews`) read the state when asked. With the session fold
(`Settings.fold_sessions`), `membership.MembershipReader` also reads every partition of the
groups topic into the `membership.MembershipTable` the partition ledgers' summaries read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

import faust
from faust.types import TP

from agents.core import Ledger
from streams.runtime.app import create_app
from streams.runtime.batch_consumer import commit_positions
from streams.runtime.deadletters import DeadLetterPipeline, DeadLetterPublisher, topic_sender
from streams.runtime.families import WorkerMetrics
from streams.runtime.gcpace import THRESHOLDS, GcClock, GcPacer, young_threshold
from streams.runtime.ingest import BatchIngest
from streams.runtime.keeper import SourceTP, StateKeeper
from streams.runtime.membership import MembershipReader, MembershipTable
from streams.runtime.memory import set_mmap_threshold
from streams.runtime.monthrows import STOP_READ_S, MonthRowExchange, MonthRowSender
from streams.runtime.partition import PartitionState
from streams.runtime.refunds import WorkerRefundTable
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState
from streams.runtime.statestore import Changelog, LocalStore
from streams.runtime.topics import end_offsets, raw_topic
from streams.runtime.topology import (
    RECREATED_EXIT,
    WATCH_EVERY_S,
    TopologyWatch,
    UnreadPartitionsCollector,
)
from streams.runtime.web import WorkerViews

log = logging.getLogger("livepulse.worker")

#: How long an assignment waits for the membership table's first read of the groups topic
#: before restoring anyway (summaries then wait for the table, which is all correctness needs).
MEMBERSHIP_CATCH_UP_S = 60.0

# faust, mode and aiokafka log every rebalance step and table at INFO; at --loglevel info
# livepulse's own loggers say what matters and these stay at WARNING.
_CHATTY_LOGGERS = ("faust", "mode", "aiokafka")


class Worker:
    """One worker process: the faust app, partition state, keeper, dead-letter pipeline,
    Prometheus registry, topology watch and web views, all built from `settings`.

    `source_partitions` is the partition count of each contract topic as checked before the
    start (`streams.runtime.topics.check_copartitioned`): the state's layout. Building a Worker
    opens its RocksDB store (`settings.state_dir`) and attaches to nothing else; `run` starts it.
    """

    def __init__(self, settings: Settings, *, source_partitions: int | None) -> None:
        self.settings = settings
        self.source_partitions = source_partitions
        if settings.malloc_mmap_threshold_kb:  # before the threads and their buffers
            set_mmap_threshold(settings.malloc_mmap_threshold_kb * 1024)
        #: Set when the worker stops itself for a reason its exit code tells (the topology).
        self.exit_code: int | None = None
        self.app = app = create_app(settings)
        app.finalize()

        # The state and what counts it.
        self.metrics = WorkerMetrics()
        self.metrics.initialise_series(settings)
        #: Paced garbage collection after each batch (installed by `run`; None: CPython's own).
        self.gc = (
            GcPacer(
                every_records=settings.gc_pace_records,
                trim_every_s=settings.malloc_trim_s,
                deferred=True,  # collected between fetches (`route_batches` below)
                thresholds=(
                    young_threshold(settings.batch_max_records, settings.gc_young_threshold),
                    THRESHOLDS[1],
                    THRESHOLDS[2],
                ),
            )
            if settings.gc_pace_records
            else None
        )
        #: Time in the collector (a callback a collection, installed by `run`), for /status.
        self.gc_clock = GcClock()
        # With the session fold: one membership table over every partition of the groups
        # topic, read apart from the consumer group, that every partition ledger's summaries
        # read membership from (streams/runtime/membership.py).
        self.membership: MembershipTable | None = None
        self.membership_reader: MembershipReader | None = None
        # With the fold and a refund horizon: one refund table over every partition of the
        # orders topic, the partition ledgers' order fold reads (streams/runtime/refunds.py).
        self.refunds: WorkerRefundTable | None = None
        self.refunds_reader: MembershipReader | None = None
        if settings.fold_sessions and settings.refund_horizon_ms is not None:
            self.refunds = WorkerRefundTable(
                settings.dedupe_window_ms,
                settings.future_tolerance_ms,
                settings.refund_horizon_ms,
                idle_s=settings.refund_idle_s or None,
            )
            self.refunds_reader = MembershipReader(
                settings, settings.topic("live.orders"), self.refunds, name="refund"
            )
        if settings.fold_sessions:
            self.membership = MembershipTable(
                settings.dedupe_window_ms,
                settings.future_tolerance_ms,
                idle_s=settings.groups_idle_s or None,
            )
            self.membership_reader = MembershipReader(
                settings, settings.topic("live.groups"), self.membership
            )
        self.state = LiveState.from_settings(
            settings,
            membership=self.membership,
            refunds=self.refunds,
            assigned_only=True,
            metrics=self.metrics,
            gc=self.gc,
            gc_clock=self.gc_clock,
        )

        if self.refunds is not None:  # what its refunds may still be needed by
            self.refunds.held_ledgers = self._held_ledgers
            self.refunds.on_dropped = self._refunds_dropped
        # Rejected records -> the dead-letter topic, in the background, settled before snapshots.
        self.deadletter_topic = raw_topic(app, settings.deadletter)
        given_up = self.metrics.deadletter_failures.labels(settings.deadletter)
        self.publisher = DeadLetterPublisher(topic_sender(self.deadletter_topic), given_up.inc)
        self.dead_letters = DeadLetterPipeline(self.publisher.publish)

        #: The topics the consumer subscribes (`run` adds them to the app): the contract
        #: topics, and with the session fold the month-rows topic.
        self.source_topics = {name: raw_topic(app, name) for name in settings.state_topics}
        # With the session fold: group_spend_multiple's closed months folded across the
        # partitions through the month-rows topic (streams/runtime/monthrows.py), read by this
        # consumer group into the partitions' states like a contract topic.
        self.month_rows: MonthRowExchange | None = None
        month_topic = settings.month_rows_topic
        if month_topic is not None:
            sender = MonthRowSender(
                self.source_topics[month_topic],
                source_partitions or settings.partitions,
                self._month_rows_given_up,
            )
            self.month_rows = MonthRowExchange(self.state, month_topic, sender)
            self.state.month_rows = self.month_rows

        # Each fetched batch -> the state (and its dead letters -> the pipeline).
        self.ingest = BatchIngest(self.state, self.dead_letters, self.month_rows)

        # The contract topics as the broker has them: partitions added since, records deleted.
        self.topology = TopologyWatch(settings, lambda: self.source_partitions)

        # Partition state in and out: restore on assignment, snapshot, commit.
        self.keeper = StateKeeper(
            self.state,
            settings,
            Changelog(settings),
            LocalStore(settings.state_dir),
            end_offsets=self._source_ends,
            log_starts=self.topology.log_starts,
            settle=self._settle,
            committer=self._commit,
            source_partitions=source_partitions,
            before_restore=self._membership_caught_up if self.membership is not None else None,
            installed=self._installed if self.refunds is not None else None,
            recreated=self._keeper_found_recreated,
            caught_up=self._caught_up,
        )
        app.route_batches(
            self.ingest, self.keeper, self.gc.between if self.gc is not None else None
        )

        # What /metrics, /report and /status read.
        self.views = WorkerViews(
            app, settings, self.state, source_partitions, unread_lag=self.topology.unread_lag
        )
        self.metrics.registry.register(
            UnreadPartitionsCollector(self.topology.unread, list(settings.source_topics))
        )

        app.timer(1.0, name="livepulse.snapshots")(self.keeper.tick)
        app.timer(WATCH_EVERY_S, name="livepulse.topology")(self._watch_topology)
        app.task(self._announce)
        # mode types its receivers narrower than the async ones it accepts and awaits.
        app.on_before_shutdown.connect(self._on_stop)  # type: ignore[arg-type]

    def _caught_up(self, partition: int) -> bool:
        """Whether partition `partition` of every contract topic has been processed up to the
        end the consumer last saw (its highwater); False while one is not known (not fetched
        yet, or not assigned here)."""
        consumer = self.app.consumer
        positions = self.state.positions
        for topic in self.settings.source_topics:
            try:
                end = consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned here (a rebalance under way)
                return False
            if end is None or positions.get((topic, partition), 0) < end:
                return False
        return True

    async def _source_ends(self, tps: Iterable[SourceTP]) -> dict[SourceTP, int]:
        wanted = set(tps)
        ends = await end_offsets(self.settings, sorted({t for t, _ in wanted}))
        return {
            (tp.topic, tp.partition): o
            for tp, o in ends.items()
            if (tp.topic, tp.partition) in wanted
        }

    async def _settle(self) -> None:
        """What a snapshot waits for: the dead letters and the month rows taken out of the
        states it dumps, on the broker (acks=all)."""
        await self.dead_letters.settle()
        if self.month_rows is not None:
            await self.month_rows.sender.settle()

    @staticmethod
    def _month_rows_given_up(count: int) -> None:
        log.error(
            "%d month rows refused for good by the broker: group_spend_multiple misses them",
            count,
        )

    async def _commit(self, positions: dict[SourceTP, int]) -> None:
        await commit_positions(self.app, positions)

    def _held_ledgers(self) -> list[Ledger] | None:
        """The partition ledgers held here (what the refund table's drop waits for); None
        while an assignment is under way (a partition being restored is in none of them)."""
        if self.keeper.assigning:
            return None
        return [p.ledger for p in self.state.partitions.values()]

    def _installed(self, state: PartitionState) -> None:
        """A partition's state installed here: the refund table checks it has every refund
        the state may still fold with (else it reads the orders topic again)."""
        if self.refunds is not None:
            self.refunds.take(state.ledger)

    def _refunds_dropped(self, changed: list[Ledger]) -> None:
        """Partition ledgers that dropped refunds with the refund table: their snapshots and
        the merged view follow."""
        for part in self.state.partitions.values():
            if any(part.ledger is ledger for ledger in changed):
                part.dirty = True
        self.state.version += 1

    async def _membership_caught_up(self) -> None:
        """Before the first assignment's states are restored: start the membership and refund
        tables' readers (faust starts the app's tasks only after it) and wait (at most
        `MEMBERSHIP_CATCH_UP_S` each) for their first read, so that a replay read before the
        worker started is summarized and folded as it is applied.

        Once a table was waited for here, what its catch-up built is collected and frozen
        (`GcPacer.settle`, outside the `GcClock`: before any record is applied, like the
        pacer's `start`). Why: the tables read their whole topics at a start, and the first
        paced collections of the stream walked that (with the readers' last fetches alive,
        13,352 records at the bench's 300,000): the longest collections of a drain, 10-11 ms
        of CPU (bench/RESULTS.md, "Session 18 (issue 19): GC pauses"; Session 19)."""
        waited = False
        for table, reader, what in (
            (self.membership, self.membership_reader, "membership table has not read the groups"),
            (self.refunds, self.refunds_reader, "refund table has not read the orders"),
        ):
            if table is None or reader is None or table.caught_up.is_set():
                continue
            reader.start()
            waited = True
            waits = [asyncio.ensure_future(e.wait()) for e in (table.caught_up, reader.done)]
            try:
                await asyncio.wait(
                    waits, timeout=MEMBERSHIP_CATCH_UP_S, return_when="FIRST_COMPLETED"
                )
            finally:
                for wait in waits:
                    wait.cancel()
            if not table.caught_up.is_set():
                log.warning(
                    "the %s topic yet; partitions restored anyway (what waits on it is "
                    "folded once it has)",
                    what,
                )
        if waited and self.gc is not None:
            with self.gc_clock.unclocked():
                self.gc.settle()

    async def _announce(self) -> None:
        settings = self.settings
        log.info(
            "worker %s reading %s; http://%s:%d/metrics, /report, /status",
            settings.app_id,
            ", ".join(settings.source_topics),
            settings.web_host,
            settings.web_port,
        )

    async def _watch_topology(self) -> None:
        try:
            recreated = await self.topology.look_for_recreated(lambda: self.state.positions)
        except Exception as exc:  # the broker away: the next look will tell
            log.warning("could not read the contract topics' partitions: %s", exc)
            return
        if recreated:
            topic, partition, end, position = recreated[0]
            self._stop_recreated(topic, partition, end, position, len(recreated))

    def _keeper_found_recreated(self, topic: str, partition: int, end: int, position: int) -> None:
        """A rebalance gave this worker a partition whose snapshot is ahead of a re-created
        topic (`StateKeeper.halt`): the same stop as the topology watch's, before its look."""
        self._stop_recreated(topic, partition, end, position, 1)

    def _stop_recreated(
        self, topic: str, partition: int, end: int, position: int, count: int
    ) -> None:
        """Stop with `RECREATED_EXIT` (once), snapshotting nothing more: this worker's states
        and its membership and refund tables are of the deleted topics (the tables skip the
        new topics' records below their old positions), so nothing it builds from now on is
        kept; the restart reads the re-created topics from the beginning."""
        self.keeper.halt()
        if self.exit_code is not None:
            return
        log.error(
            "%s partition %d ends at offset %d, before this worker's position %d (%d "
            "partitions alike): the topic was deleted and re-created; stopping (exit code "
            "%d) so that a restart reads the re-created topics from the beginning",
            topic,
            partition,
            end,
            position,
            count,
            RECREATED_EXIT,
        )
        self.exit_code = RECREATED_EXIT
        os.kill(os.getpid(), signal.SIGTERM)  # a clean stop: no snapshot (`keeper.halt`)

    async def _on_stop(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.views.reports.stop()
        if self.membership_reader is not None:
            await self.membership_reader.stop()
        if self.refunds_reader is not None:
            await self.refunds_reader.stop()
        await self._settle()
        if self.month_rows is not None:
            # What the consumer had not fetched (this worker's own last announcements among
            # them): in the final snapshots, not left for a restart to read.
            try:
                # Bounded as a whole: a consumer's start waits longer for a broker away.
                await asyncio.wait_for(
                    self.month_rows.read_to_end(self.settings), timeout=2 * STOP_READ_S
                )
            except Exception as exc:  # the broker away, or too slow: a restart reads them
                log.warning("stopping: the month-rows records left unread: %r", exc)
        await self.keeper.flush()
        await self.keeper.changelog.stop()
        if self.keeper.local is not None:
            self.keeper.local.close()
        await self.topology.close()

    def run(self, *, loglevel: str = "info", logfile: str | None = None) -> int:
        """Run until SIGINT/SIGTERM (faust's worker owns the event loop); return the exit code."""
        app = self.app
        # What `faust -A ... worker` does before starting a worker (faust.cli.base.prepare_app),
        # without autodiscovery: everything is attached above.
        app.worker_init()
        app.worker_init_post_autodiscover()
        if self.gc is not None:
            # Start-up's objects (modules, faust's app) are frozen now, the ledger's as it grows.
            # Before the clock: this one walk of start-up's heap (45-60 ms of CPU) happens before
            # any record and is the pacer's `start_cpu_ms`, not a pause of the stream.
            self.gc.install().start()
        self.gc_clock.install()
        # How long faust's consumer thread waits for the GIL while a batch is applied.
        sys.setswitchinterval(self.settings.gil_switch_interval_ms / 1000.0)
        if loglevel != "debug":
            for name in _CHATTY_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        # mode's Worker owns the event loop; on Python >= 3.10 there is no implicit one to take.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        worker = faust.Worker(
            app,
            loglevel=loglevel,
            logfile=logfile,
            loop=loop,
            # Keep print() from ending up in the log as WARNING lines.
            redirect_stdouts=False,
        )
        # faust's conductor subscribes what is in `app.topics` when the consumer starts; added
        # once the loop is set, since the conductor binds the loop it is built on.
        for topic in self.source_topics.values():
            app.topics.add(topic)
        try:
            worker.execute_from_commandline()  # installs SIGINT/SIGTERM handlers, stops cleanly
        except SystemExit as exc:
            if self.exit_code is not None:
                return self.exit_code
            return exc.code if isinstance(exc.code, int) else 1
        return self.exit_code or 0
