"""What one worker process holds, and the apply loop: each batch of records into the state of
its partition (`PartitionState`), through the core's `ingest`, rejections as dead letters."""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agents.core import EventCounts, Ledger, OperatorBoard
from agents.core.ingest import Rejected, decode_values, ingest_decoded
from agents.core.ledger import (
    TOPICS,
    BoardRuns,
    FirstOrder,
    MembershipSource,
    OrderUsers,
    RefundSource,
    add_board_runs_in_flight,
    add_owner_part,
)
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.operator import GpmDenominator
from agents.core.period_rows import PeriodRows
from agents.core.periods import PeriodSettings, add_rows_in_flight, attach
from agents.core.windows import DEFAULT_GRACE_MS
from streams.runtime.batch_consumer import FetchedRecord, RawRecord
from streams.runtime.deadletters import DeadLetter, dead_letter
from streams.runtime.families import WorkerMetrics
from streams.runtime.gcpace import GcClock, GcPacer
from streams.runtime.lag import BatchSizes, LagHistogram
from streams.runtime.membership import MembershipTable
from streams.runtime.partition import PartitionState
from streams.runtime.refunds import WorkerRefundTable
from streams.runtime.settings import Settings

log = logging.getLogger(__name__)

_GROUPS: Final[int] = TOPICS.index("live.groups")
_ORDERS: Final[int] = TOPICS.index("live.orders")
#: The contract topics a partition's own quiet follows for (`follow_idle_horizons`): the
#: orders topic follows by the refund table's idle rule, the groups topic's horizon is the
#: membership table's.
_OWN_QUIET: Final[tuple[int, ...]] = tuple(
    i for i, topic in enumerate(TOPICS) if i not in (_GROUPS, _ORDERS)
)

_SUMMARY_EVERY_S: Final[float] = 30.0

#: One record of a contract topic, built outside a fetch: (topic, partition, offset, key,
#: value, timestamp, headers). `apply_batch` reads any `FetchedRecord` by its attributes, and
#: the batch consumer hands on aiokafka's records as fetched (a frozen dataclass built from a
#: plain tuple per record was 9% of a worker's profile; issue 19 took out the `RawRecord`
#: rebuilt per record after it).
SourceRecord = RawRecord


@dataclass
class LiveState:
    """What one worker process knows: a state per partition, consumed positions and counters.

    With `assigned_only` (the worker: its partitions come and go with
    rebalances), a record of a partition that was not installed (`install`) is skipped, and so
    is one before its partition's position (already in the state, a redelivery after a seek).
    Without it (the offline analyzer, tests), a partition's state is created by its first record.
    """

    grace_ms: int = DEFAULT_GRACE_MS
    #: Each partition's ledger's dedupe window (`Settings.dedupe_window_ms`; None: no window).
    dedupe_window_ms: int | None = None
    #: Each partition's ledger's refund horizon (`Settings.refund_horizon_ms`; None: none).
    refund_horizon_ms: int | None = None
    #: Each partition's ledger's user horizon (`Settings.user_horizon_ms`; None: none).
    user_horizon_ms: int | None = None
    #: Each partition's ledger's first-order pair horizon (`Settings.first_order_horizon_ms`;
    #: None: every decided pair kept).
    pair_horizon_ms: int | None = None
    #: Each partition's ledger's board horizon (`Settings.board_horizon_ms`; None: none).
    board_horizon_ms: int | None = None
    #: Each partition's ledger's settled runs kept a level (`Settings.board_runs_kept`; None:
    #: `concurrency.SETTLED_RUNS_KEPT`) and its levels' buyers kept as ids
    #: (`Settings.distinct_exact_limit`; None: `sketch.DISTINCT_EXACT_LIMIT`): not pickled,
    #: set at every install.
    board_runs_kept: int | None = None
    distinct_limit: int | None = None
    #: Each partition's ledger's folded rank table's most cells (`Settings.rank_cell_limit`;
    #: None: `sketch.RANK_CELL_LIMIT`): pickled with the table, set again at every install.
    rank_cell_limit: int | None = None
    #: How far ahead of the wall clock an event may be and still move its topic's horizon
    #: (`Settings.future_tolerance_ms`; None: no cap).
    future_tolerance_ms: int | None = None
    gpm_denominator: GpmDenominator = "entries"
    #: Summarize closed sessions past their session horizon (`Settings.fold_sessions`), with
    #: membership from `membership` (the worker's table over the whole groups topic), and
    #: retire the summaries past the board horizon (`Ledger.retire_summaries`).
    fold_sessions: bool = False
    membership: MembershipSource | None = None
    #: With the session fold and a refund horizon, where the partition ledgers fold their
    #: orders' refunds from (the worker's table over the whole orders topic,
    #: streams/runtime/refunds.py); None: each ledger its own (the offline analyzer).
    refunds: RefundSource | None = None
    #: Claims by period: a partition's ledger freezes its closed periods before it summarizes
    #: their sessions (`periods.attach`; None: no periods).
    periods: PeriodSettings | None = None
    assigned_only: bool = False
    #: With the session fold, the worker's month-rows exchange (`streams.runtime.monthrows.
    #: MonthRowExchange`, which imports this module), for /status.
    month_rows: Any = None
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    #: (topic, partition) -> the next offset to process there, over the installed partitions.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    records: int = 0
    #: Records skipped: of a partition not installed here, or already in its state.
    skipped: int = 0
    #: Bumped whenever the state changes (a batch applied, a partition installed or dropped).
    version: int = 0
    #: Wall-clock time (s) at which applying the first batch began (so a run of one batch has a
    #: duration: its own apply time), and at which the latest batch had been applied.
    first_applied_at: float | None = None
    last_applied_at: float | None = None
    lag: LagHistogram = field(default_factory=LagHistogram)
    #: The part of `lag` spent in this worker: from the batch reaching the worker's event loop
    #: (fetched) until it was applied; the rest is the producer's, the broker's and the fetch's.
    worker_lag: LagHistogram = field(default_factory=LagHistogram)
    #: Records per batch the worker's ingest applied (a fetch's records of the contract
    #: topics, `streams.runtime.ingest.BatchIngest`): what `worker_lag` follows.
    batch_sizes: BatchSizes = field(default_factory=BatchSizes)
    #: Paced garbage collection after each batch (None: CPython's default collector).
    gc: GcPacer | None = None
    #: Time in the collector, for /status (installed by the worker; None: not timed).
    gc_clock: GcClock | None = None
    _first_reasons: set[tuple[str, str]] = field(default_factory=set)
    _last_summary: float = field(default_factory=time.monotonic)
    _view: tuple[int, Ledger, OperatorBoard] | None = None
    #: Partition -> what its idle fold last saw (`fold_idle`): tried again only once it changed.
    _idle_seen: dict[int, tuple[object, ...]] = field(default_factory=dict)
    #: A record's topic (the broker's name) -> its contract topic's index into `TOPICS`
    #: (`PartitionState.topics_at`): the contract names, or with `from_settings` its prefix's.
    topic_index: dict[str, int] = field(
        default_factory=lambda: {topic: i for i, topic in enumerate(TOPICS)}
    )

    @classmethod
    def from_settings(cls, settings: Settings, **fields: Any) -> LiveState:
        """A state under `settings`: its window grace, dedupe window, future tolerance, the
        refund, user, pair and board horizons, the levels' runs kept and distinct limit, the
        GPM denominator, the session fold and the
        claims by period. `fields` sets the rest (the worker's tables, metrics, collector,
        `assigned_only`) or overrides one of those (the fold bench's `fold_sessions`)."""
        values: dict[str, Any] = {
            "grace_ms": settings.window_grace_ms,
            "dedupe_window_ms": settings.dedupe_window_ms,
            "future_tolerance_ms": settings.future_tolerance_ms,
            "refund_horizon_ms": settings.refund_horizon_ms,
            "user_horizon_ms": settings.user_horizon_ms,
            "pair_horizon_ms": settings.first_order_horizon_ms,
            "board_horizon_ms": settings.board_horizon_ms,
            "board_runs_kept": settings.board_runs_kept,
            "distinct_limit": settings.distinct_exact_limit,
            "rank_cell_limit": settings.rank_cell_limit,
            "gpm_denominator": settings.gpm_denominator,
            "fold_sessions": settings.fold_sessions,
            "periods": settings.period_settings,
            "topic_index": {
                settings.topic(name): TOPICS.index(name)
                for name in settings.contract_topics
                if name in TOPICS
            },
        }
        values.update(fields)
        return cls(**values)

    def new_partition(self) -> PartitionState:
        ledger = Ledger(
            self.dedupe_window_ms,
            self.future_tolerance_ms,
            self.refund_horizon_ms,
            fold_sessions=self.fold_sessions,
            user_horizon_ms=self.user_horizon_ms,
            board_horizon_ms=self.board_horizon_ms,
            pair_horizon_ms=self.pair_horizon_ms,
        )
        ledger.membership_from = self.membership
        ledger.refunds_from = self.refunds
        ledger.board_runs_kept = self.board_runs_kept
        ledger.distinct_limit = self.distinct_limit
        if self.rank_cell_limit is not None:
            ledger.folded_figures.price_watch.set_limit(self.rank_cell_limit)
        # Summaries past the board horizon retired into their levels' totals (the page and
        # /report read them: docs/design.md, "Retired summaries"), wherever the fold is on.
        ledger.retire_summaries = self.fold_sessions
        if self.periods is not None:
            attach(ledger, self.periods)
        return PartitionState(
            ledger, OperatorBoard(self.grace_ms, gpm_denominator=self.gpm_denominator)
        )

    def install(self, partition: int, state: PartitionState) -> None:
        """Make `state` this worker's state of `partition` (assigned, restored), its ledger
        under this worker's dedupe window (a restored one may have been written under another:
        the new window holds for the events from now on)."""
        state.ledger.dedupe_window_ms = self.dedupe_window_ms
        state.ledger.refund_horizon_ms = self.refund_horizon_ms
        state.ledger.user_horizon_ms = self.user_horizon_ms
        state.ledger.pair_horizon_ms = self.pair_horizon_ms
        state.ledger.board_horizon_ms = self.board_horizon_ms
        state.ledger.board_runs_kept = self.board_runs_kept
        state.ledger.board_source = partition  # whose levels' runs it sends (a merge reads it)
        if self.distinct_limit is not None:
            state.ledger.set_distinct_limit(self.distinct_limit)
        if self.rank_cell_limit is not None:
            state.ledger.folded_figures.price_watch.set_limit(self.rank_cell_limit)
        state.ledger.set_future_tolerance(self.future_tolerance_ms)
        if self.periods is not None:  # not part of the state: set again on every restore
            attach(state.ledger, self.periods)
        if self.fold_sessions:  # a state written without the fold summarizes from now on
            state.ledger.fold_sessions_from_now()
            # A state written before retiring (version 10 or older) retires from now on.
            state.ledger.retire_summaries = True
        elif state.ledger.fold_sessions:
            # It would go on summarizing with its own partition's group events (membership
            # wrong, for good): refused, never silently wrong.
            raise RuntimeError(
                f"partition {partition}'s state was written with LIVEPULSE_FOLD_SESSIONS=true "
                "and summarizes closed sessions: start the worker with it on again (or on new "
                "state: another app id or data directory and changelog)"
            )
        state.ledger.membership_from = self.membership
        state.ledger.refunds_from = self.refunds
        self.partitions[partition] = state
        for topic, offset in state.positions.items():
            self.positions[(topic, partition)] = offset
        self.version += 1

    def drop(self, partition: int) -> PartitionState | None:
        """Forget `partition` (revoked); return its state."""
        state = self.partitions.pop(partition, None)
        for tp in [tp for tp in self.positions if tp[1] == partition]:
            del self.positions[tp]
        self.version += 1
        return state

    def view(self) -> tuple[Ledger, OperatorBoard]:
        """One ledger and board over every partition here (merged, and cached until a change)."""
        cached = self._view
        if cached is not None and cached[0] == self.version:
            return cached[1], cached[2]
        states = [self.partitions[p] for p in sorted(self.partitions)]
        if len(states) == 1:
            ledger, board = states[0].ledger, states[0].board
        elif not states:
            empty = self.new_partition()
            ledger, board = empty.ledger, empty.board
        else:
            ledger = merge_ledgers([s.ledger for s in states])
            board = merge_boards([s.board for s in states])
        if len(states) > 1 and isinstance(self.refunds, WorkerRefundTable):
            _leave_out_decided_refunds(ledger, self.refunds)
        # Month rows taken and not yet held by their owner here (streams/runtime/monthrows.py):
        # in no partition's ledger meanwhile, so the view holds them as received.
        in_flight = self.month_rows.in_flight() if self.month_rows is not None else []
        if in_flight:
            if len(states) == 1:  # the partition's own ledger: a shallow copy, its rows apart
                # (not copy.copy: pickling's __getstate__ leaves out the tables it reads)
                own, ledger = ledger, object.__new__(Ledger)
                ledger.__dict__.update(own.__dict__)
                ledger.month_rows_in = {
                    key: {user: dict(parts) for user, parts in users.items()}
                    for key, users in ledger.month_rows_in.items()
                }
                ledger.first_orders_in = dict(ledger.first_orders_in)
                ledger.order_fold = copy.copy(ledger.order_fold)
                ledger.order_fold.users = {u: list(r) for u, r in own.order_fold.users.items()}
                ledger.board_curves = dict(ledger.board_curves)
            periods = [row for row in in_flight if isinstance(row, PeriodRows)]
            if periods and len(states) > 1:  # (one: its own figures were finished before)
                add_rows_in_flight(ledger, periods)
            for row in in_flight:
                if isinstance(row, PeriodRows):
                    continue
                if isinstance(row, BoardRuns):  # a level's runs: merged into its curve
                    add_board_runs_in_flight(ledger, row)
                    continue
                if isinstance(row, OrderUsers):  # a buyer's row: summed with the owner's
                    ledger.order_fold.add_row(row.user, row.row)
                    continue
                if isinstance(row, FirstOrder):  # a pair's part: `Ledger.first_order_pairs`
                    pair, inbox = (row.merchant, row.user), ledger.first_orders_in
                    inbox[pair] = add_owner_part(
                        inbox.get(pair), row.first_ts, row.later_ts, row.member
                    )
                    continue
                users = ledger.month_rows_in.setdefault((row.merchant, row.month), {})
                users.setdefault(row.user, {})[row.source] = (row.first_join_ts, row.cents)
        self._view = (self.version, ledger, board)
        return ledger, board

    def counts(self) -> EventCounts:
        """Valid, rejected and duplicate records over every partition here (no merge needed)."""
        total = EventCounts()
        for state in self.partitions.values():
            counts = state.ledger.counts
            total.valid += counts.valid
            total.rejected += counts.rejected
            total.duplicates += counts.duplicates
            total.expired += counts.expired
            total.future += counts.future
        return total

    @property
    def ledger(self) -> Ledger:
        """The merged ledger of every partition here."""
        return self.view()[0]

    @property
    def board(self) -> OperatorBoard:
        """The merged operator board of every partition here."""
        return self.view()[1]

    def apply_batch(self, records: Sequence[FetchedRecord]) -> list[DeadLetter]:
        """Apply a batch of records to the ledger; return the dead letters to publish.

        Never raises for a record: an invalid one becomes a dead letter, and so does one whose
        event makes the ledger raise (logged, reason `processing_error`).
        """
        if self.first_applied_at is None:
            self.first_applied_at = time.time()
        partitions = self.partitions
        letters: list[DeadLetter] = []
        counted: Counter[tuple[str, str]] = Counter()
        rejected: Counter[tuple[str, str]] = Counter()
        duplicates: Counter[str] = Counter()
        expired: Counter[str] = Counter()
        future: Counter[str] = Counter()
        applied: list[FetchedRecord] = []
        part: PartitionState | None = None
        part_no = -1
        # The partition's objects, read once per run of its records (issue 19: the loop runs
        # once per record; a fetch comes in runs of one partition's records).
        ledger: Ledger | None = None
        board: OperatorBoard | None = None
        positions: dict[str, int] = {}
        counts = EventCounts()
        # The whole fetch decoded at once (issue 19: one validator call for its valid values).
        decoded = decode_values([record.value for record in records])
        for record, value in zip(records, decoded, strict=True):
            if record.partition != part_no:
                part_no = record.partition
                part = partitions.get(part_no)
                if part is None and not self.assigned_only:
                    part = partitions[part_no] = self.new_partition()
                if part is not None:
                    ledger, board, positions = part.ledger, part.board, part.positions
                    counts = ledger.counts
            topic = record.topic
            if ledger is None or part is None or record.offset < positions.get(topic, 0):
                self.skipped += 1
                continue
            applied.append(record)
            future_before = counts.future
            outcome = ingest_decoded(value, ledger, board)
            if outcome is None:  # refused by the ledger: seen before, or older than its window
                if ledger.refused_as == "expired":
                    expired[topic] += 1
                else:
                    duplicates[topic] += 1
                continue
            if not isinstance(outcome, Rejected):  # a plain class: no metaclass call
                counted[(topic, outcome.type)] += 1
                if counts.future != future_before:
                    future[topic] += 1
                continue
            reason, detail = outcome.reason, outcome.detail
            rejected[(topic, reason)] += 1
            letters.append(dead_letter(record, reason, detail))
            if (topic, reason) not in self._first_reasons:
                self._first_reasons.add((topic, reason))
                log.info(
                    "first %s record on %s (partition %d offset %d): %s",
                    reason,
                    topic,
                    record.partition,
                    record.offset,
                    detail[:200],
                )
        self._advance(applied)
        self._count(counted, rejected, duplicates, expired, future)
        if self.gc is not None:
            self.gc.after(len(records))
        return letters

    def fold_idle(self, idle_s: float) -> int:
        """Run the folds due (`Ledger.fold_due`) in each partition that has applied nothing
        for `idle_s`: a summary (and the period freeze before it) waits for the membership
        table's groups horizon, an order fold for the refund table's, and these move on
        without the partition applying a record (at the end of a replay, a quiet topic). Tried
        again only once the partition, the membership or the refund table moved; a partition
        folded is dirty (its snapshot follows). Returns how many folded."""
        if not self.fold_sessions:
            return 0
        now = time.monotonic()
        groups = None if self.membership is None else self.membership.horizon_ts(_GROUPS)
        refunds = None if self.refunds is None else self.refunds.refund_fold_ts()
        folded = 0
        for partition, part in self.partitions.items():
            if now - part.applied_at < idle_s:
                continue
            ledger = part.ledger
            seen = (groups, refunds, ledger.counts.valid, ledger.max_ts)
            if self._idle_seen.get(partition) == seen:
                continue
            self._idle_seen[partition] = seen
            if ledger.fold_due():
                if ledger.folded_ids or ledger.retired_ids:  # the board's share (as `ingest`)
                    part.board.take_folded(ledger)
                part.dirty = True
                folded += 1
        if folded:
            self.version += 1
        return folded

    def follow_idle_horizons(self, idle_s: float, caught_up: Callable[[int], bool]) -> int:
        """Move the horizons of each partition that has applied no contract record for
        `idle_s` (0: never) and has read its topics to their end (`caught_up`) up to the newest
        summaries' horizon another partition announced (`Ledger.follow_idle_horizons`), so
        that its folds, months and first orders close as the others' do (the idle fold and
        the take that follow run them). One read to its end that still applies records moves
        the horizons of its quiet topics alone (`Ledger.follow_idle_topics`, its folds run at
        once): its orders topic once the refund table leaves its orders partition out as idle,
        each other contract topic but the groups' once it has brought no record here for
        `idle_s`, so that it summarizes, freezes its periods and announces its buyers' months
        and both stages of its periods, and the owners retire and fold. A partition whose
        horizons moved is dirty. Returns how many moved."""
        if not self.fold_sessions or idle_s <= 0:
            return 0
        now = time.monotonic()
        moved = 0
        # Orders partitions the refund table leaves out as idle (read to their end with no
        # record for its `idle_s` while the topic moved, `ReadTable.idle`).
        refunds = self.refunds
        orders_idle = refunds.idle() if isinstance(refunds, WorkerRefundTable) else set()
        for partition, part in self.partitions.items():
            if not caught_up(partition):
                continue
            ledger = part.ledger
            if now - part.events_at >= idle_s:
                if not ledger.follow_idle_horizons(partition):
                    continue
                self._idle_seen.pop(partition, None)  # the idle fold looks again
            else:
                # Still applying records, but none of some topic for a while (rooms that sell
                # nothing, sessions with no interaction, sessionless orders only): those
                # topics' horizons follow alone, and the folds run now (the idle fold skips a
                # partition that applies records).
                quiet = [
                    topic
                    for topic in _OWN_QUIET
                    if now - part.topics_at.get(topic, part.made_at) >= idle_s
                ]
                if partition in orders_idle:
                    quiet.append(_ORDERS)
                if not quiet or not ledger.follow_idle_topics(partition, quiet):
                    continue
                if ledger.fold_due() and (ledger.folded_ids or ledger.retired_ids):
                    part.board.take_folded(ledger)
            part.horizons_followed += 1
            part.dirty = True
            moved += 1
        if moved:
            self.version += 1
        return moved

    def advance(self, records: Iterable[FetchedRecord], *, changes: bool = True) -> None:
        """Move positions past `records`, applied elsewhere (the month-rows topic's: internal
        records, not counted in `records`, which counts the contract topics' like the event
        counts do; `/status`' `month_rows` counts them). With `changes` false they changed no
        figure (group floors): views and reports built before stay current."""
        self._advance(records, count=False, changes=changes)

    def _advance(
        self, records: Iterable[FetchedRecord], *, count: bool = True, changes: bool = True
    ) -> None:
        positions, partitions = self.positions, self.partitions
        now = time.monotonic()
        # Each (topic, partition)'s newest offset first (issue 19: a loop of two reads a
        # record; the positions and the partitions' flags are then written once each).
        newest: dict[tuple[str, int], int] = {}
        n = 0
        for record in records:
            n += 1
            key = (record.topic, record.partition)
            offset = record.offset
            if newest.get(key, -1) < offset:
                newest[key] = offset
        topic_index = self.topic_index
        for (topic, partition), offset in newest.items():
            part = partitions[partition]
            if offset >= part.positions.get(topic, 0):
                part.positions[topic] = offset + 1
                positions[(topic, partition)] = offset + 1
            part.dirty = True
            part.applied_at = now
            if count:  # a contract topic's record (not the month-rows topic's)
                part.events_at = now
                part.topics_at[topic_index.get(topic, -1)] = now
        if n and changes:
            self.version += 1
        if count:
            self.records += n
        self.last_applied_at = time.time()

    def skip_to(self, positions: Mapping[tuple[str, int], int]) -> int:
        """Move held partitions' positions forward past offsets that hold no record to apply
        (transaction markers, aborted transactions' records, compacted gaps: the consumer's
        position went past them); return how many positions moved."""
        moved = 0
        for (topic, partition), offset in positions.items():
            part = self.partitions.get(partition)
            if part is None or offset <= part.positions.get(topic, 0):
                continue
            part.positions[topic] = offset
            self.positions[(topic, partition)] = offset
            part.dirty = True
            moved += 1
        return moved

    def _count(
        self,
        counted: Counter[tuple[str, str]],
        rejected: Counter[tuple[str, str]],
        duplicates: Counter[str],
        expired: Counter[str],
        future: Counter[str],
    ) -> None:
        metrics = self.metrics
        for (topic, event_type), n in counted.items():
            metrics.events.labels(topic, event_type).inc(n)
        for (topic, reason), n in rejected.items():
            metrics.rejected.labels(topic, reason).inc(n)
        for topic, n in duplicates.items():
            metrics.duplicates.labels(topic).inc(n)
        for topic, n in expired.items():
            metrics.expired.labels(topic).inc(n)
        for topic, n in future.items():
            metrics.future.labels(topic).inc(n)

    def maybe_log_summary(self) -> None:
        """Log the counts at INFO at most every 30 s."""
        now = time.monotonic()
        if now - self._last_summary >= _SUMMARY_EVERY_S:
            self._last_summary = now
            counts = self.counts()
            log.info(
                "%d records: %d valid, %d rejected, %d duplicate",
                self.records,
                counts.valid,
                counts.rejected,
                counts.duplicates,
            )

    def status(self) -> dict[str, Any]:
        """Consumed positions (`"topic:partition": next_offset`) and event counts."""
        return {
            "positions": {f"{t}:{p}": offset for (t, p), offset in sorted(self.positions.items())},
            "events": self.counts().as_dict(),
            "records": self.records,
            "skipped": self.skipped,
            "partitions": {str(p): self.partitions[p].status() for p in sorted(self.partitions)},
            "first_applied_at": self.first_applied_at,
            "last_applied_at": self.last_applied_at,
            "processing_lag": self.lag.summary(),
            "worker_lag": self.worker_lag.summary(),
            "batches": self.batch_sizes.summary(),
            # The worker's table of the whole groups topic (LIVEPULSE_FOLD_SESSIONS), if any.
            "membership": (
                self.membership.status() if isinstance(self.membership, MembershipTable) else None
            ),
            # Its table of the whole orders topic (the order fold's refunds), if any.
            "refunds": (
                self.refunds.status() if isinstance(self.refunds, WorkerRefundTable) else None
            ),
            # The closed months' rows sent and received (LIVEPULSE_FOLD_SESSIONS), if any.
            "month_rows": self.month_rows.status() if self.month_rows is not None else None,
            "gc": {
                "paced": self.gc.status() if self.gc is not None else None,
                **(self.gc_clock.status() if self.gc_clock is not None else {}),
            },
        }


def _leave_out_decided_refunds(merged: Ledger, table: WorkerRefundTable) -> None:
    """Leave out of a merged view the refunds a partition still holds whose order id another
    partition here folded with the refund table and no partition holds a payment of: they are
    decided (counted or late in that fold), and a report counted them in
    `retention.unmatched_refunds` (no payment held). No claim reads a refund of an id with no
    held payment. An id folded by another worker's partition is not known here: its copies
    still count as unmatched until their partition drops them (docs/design.md)."""
    held_ids = {order.order_id for order in merged.orders}
    kept = [r for r in merged.refunds if r.order_id in held_ids or not table.decided(r.order_id)]
    if len(kept) != len(merged.refunds):
        merged.refunds = kept
        merged._refund_index = None
