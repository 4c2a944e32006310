"""The worker's ingest: each fetched batch of the contract topics decoded, dead-lettered, fed to
the ledger and counted.

The batch consumer (`streams.runtime.batch_consumer`) hands every fetch to `ingest_batch`. A record
that
is not a contract event goes to the dead-letter topic with its reason; an event goes to its
partition's `Ledger`, and, if the ledger accepted it (not a redelivery), to its `OperatorBoard`.
Nothing here computes a figure: `/report` and `/metrics` (streams.runtime.web) build them from the
ledger when asked.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from agents.core import EventCounts, Ledger, OperatorBoard
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.operator import GpmDenominator
from agents.core.windows import DEFAULT_GRACE_MS
from schemas import TOPIC_BY_TYPE, Rejection, decode
from schemas.decode import REJECT_REASONS
from streams.runtime.app import get_app, get_settings
from streams.runtime.batch_consumer import RawRecord, set_batch_handler
from streams.runtime.gcpace import CLOCK, GcPacer
from streams.runtime.topics import raw_topic

log = logging.getLogger(__name__)

# Dead-letter headers (docs/design.md); values are UTF-8 bytes.
H_REASON: Final[str] = "livepulse-reason"
H_DETAIL: Final[str] = "livepulse-detail"
H_SOURCE_TOPIC: Final[str] = "livepulse-source-topic"
H_SOURCE_PARTITION: Final[str] = "livepulse-source-partition"
H_SOURCE_OFFSET: Final[str] = "livepulse-source-offset"
#: On a dead letter whose value was cut to `MAX_LETTER_VALUE_BYTES`: the original size.
H_TRUNCATED_FROM: Final[str] = "livepulse-truncated-from"
#: The most of a rejected record's value a dead letter carries: a record over the contract's
#: 1 MiB can reach the worker (a compressed batch under the broker's limit), but the producer
#: refuses a request over 1,000,000 bytes (faust's producer_max_request_size), so its dead
#: letter keeps the first bytes, with room left for the key and headers.
MAX_LETTER_VALUE_BYTES: Final[int] = 900_000

#: The reason given to a record whose event made the ledger raise (a bug, not bad input).
PROCESSING_ERROR: Final[str] = "processing_error"
_MAX_DETAIL_CHARS: Final[int] = 500
_SUMMARY_EVERY_S: Final[float] = 30.0
#: Processing lag is counted in 1 ms buckets up to this many ms; anything later in the last one.
_LAG_MAX_MS: Final[int] = 60_000


class LagHistogram:
    """Processing lag of records: the time from a record's Kafka timestamp (its produce time
    with CreateTime topics) until its batch was applied to the state `/report` and `/metrics`
    read. 1 ms buckets, so quantiles are exact to the millisecond; O(1) memory."""

    __slots__ = ("count", "counts")

    def __init__(self) -> None:
        self.counts = [0] * (_LAG_MAX_MS + 1)
        self.count = 0

    def observe(self, now_s: float, timestamps_s: Iterable[float | None]) -> None:
        """Count one applied batch: `now_s` and the records' timestamps, in seconds."""
        counts, cap, n = self.counts, _LAG_MAX_MS, 0
        for ts in timestamps_s:
            if ts is None:
                continue
            lag = int((now_s - ts) * 1000.0)
            counts[lag if 0 <= lag < cap else (0 if lag < 0 else cap)] += 1
            n += 1
        self.count += n

    def observe_many(self, lag_s: float, n: int) -> None:
        """Count `n` records that all waited `lag_s` seconds (one batch's time in the worker)."""
        lag = int(lag_s * 1000.0)
        self.counts[min(max(lag, 0), _LAG_MAX_MS)] += n
        self.count += n

    def quantile(self, q: float) -> int | None:
        """The smallest lag (ms) with at least a share `q` of the records at or below it."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[int | None]:
        """`quantile` of each share in one pass (ascending shares walk once; /status asks for
        three, and with old records all in the last bucket each walk was 60,001 steps, ~8 ms
        on the event loop per call)."""
        if self.count == 0:
            return [None] * len(qs)
        # The cumulative counts, in C; each quantile is the first bucket whose running total
        # reaches its target and that holds records (bisect on the non-decreasing totals).
        running = list(itertools.accumulate(self.counts))
        out: list[int | None] = []
        for q in qs:
            target = q * self.count
            lag = bisect.bisect_left(running, target)
            # The first bucket at or after `lag` that holds records (a bucket reached by an
            # empty run of equal totals is not a lag anyone had).
            while lag < len(running) and self.counts[lag] == 0:
                lag += 1
            out.append(min(lag, _LAG_MAX_MS))
        return out

    def summary(self) -> dict[str, int | None]:
        p50, p99, p100 = self.quantiles((0.5, 0.99, 1.0))
        return {"count": self.count, "p50_ms": p50, "p99_ms": p99, "max_ms": p100}


#: One record of a contract topic, as consumed: (topic, partition, offset, key, value,
#: timestamp). The batch consumer builds these, and `apply_batch` takes them as they come (a
#: frozen dataclass built from a plain tuple per record was 9% of a worker's profile).
SourceRecord = RawRecord


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record to publish on the dead-letter topic: the original key and value, and why."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(record: SourceRecord, reason: str, detail: str) -> DeadLetter:
    """The dead letter of `record`: its bytes unchanged, the reason and its origin in headers
    after the producer's own headers (kept as they were, in their order). A value over
    `MAX_LETTER_VALUE_BYTES` is cut to that, its size in `H_TRUNCATED_FROM`."""
    value = record.value
    headers = [
        *record.headers,
        (H_REASON, reason.encode()),
        (H_DETAIL, detail[:_MAX_DETAIL_CHARS].encode("utf-8", "replace")),
        (H_SOURCE_TOPIC, record.topic.encode()),
        (H_SOURCE_PARTITION, str(record.partition).encode()),
        (H_SOURCE_OFFSET, str(record.offset).encode()),
    ]
    if value is not None and len(value) > MAX_LETTER_VALUE_BYTES:
        headers.append((H_TRUNCATED_FROM, str(len(value)).encode()))
        value = value[:MAX_LETTER_VALUE_BYTES]
    return DeadLetter(key=record.key, value=value, headers=headers)


class LiveMetrics:
    """The worker's Prometheus counters, in a registry of its own (not the global default)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = PromCounter(
            "livepulse_events",
            "Distinct valid events counted by the ledger.",
            ["topic", "type"],
            registry=self.registry,
        )
        self.rejected = PromCounter(
            "livepulse_events_rejected",
            "Records that are not contract events (sent to the dead-letter topic), by reason.",
            ["topic", "reason"],
            registry=self.registry,
        )
        self.duplicates = PromCounter(
            "livepulse_events_duplicate",
            "Valid events whose event_id was seen before (redeliveries), not counted again.",
            ["topic"],
            registry=self.registry,
        )
        self.expired = PromCounter(
            "livepulse_events_expired",
            "Valid events older than their topic's dedupe window (LIVEPULSE_DEDUPE_WINDOW_S) "
            "in event time: neither applied nor counted as events or duplicates.",
            ["topic"],
            registry=self.registry,
        )
        self.deadletter_failures = PromCounter(
            "livepulse_deadletter_failures",
            "Dead letters the broker did not accept (the record is still counted as rejected).",
            ["topic"],
            registry=self.registry,
        )
        self.records_lost = PromCounter(
            "livepulse_records_lost",
            "Records deleted from a contract topic (retention, deleted records) before the "
            "worker read them: in no figure.",
            ["topic"],
            registry=self.registry,
        )


@dataclass
class PartitionState:
    """The state one partition number's records made, over every contract topic.

    The contract topics are co-partitioned (same partition count, keyed by session or merchant),
    and faust's assignor gives partition p of every one of them to the same worker, so this is
    the unit that moves between workers, is snapshotted (`streams.runtime.statestore`) and is merged
    with the others for a report (`agents.core.merge`).
    """

    ledger: Ledger
    board: OperatorBoard
    #: Source topic -> the next offset of this partition to apply (records before it are in).
    positions: dict[str, int] = field(default_factory=dict)
    #: Snapshots written of this state so far (the restored one's generation, then +1 each).
    generation: int = 0
    #: Records applied since the last snapshot (nothing to write when False).
    dirty: bool = False
    #: Where the state came from: "new" (the start of the topics), "local" (RocksDB), "changelog".
    restored_from: str = "new"
    restored_s: float = 0.0
    #: The changelog offset of the last snapshot's head (a restore reads only what follows),
    #: and that head (`streams.runtime.statestore.SnapshotHead`: its chunks are dropped by the
    #: next).
    head_offset: int | None = None
    head: Any = None
    #: monotonic() of the last record applied and of the last snapshot; its duration and size.
    applied_at: float = field(default_factory=time.monotonic)
    snapshot_at: float = field(default_factory=time.monotonic)
    snapshot_s: float = 0.0
    #: How long the latest snapshot held up batches (settle + dump, or + fork only).
    snapshot_pause_s: float = 0.0
    snapshot_bytes: int = 0
    snapshots: int = 0

    def status(self) -> dict[str, Any]:
        return {
            "positions": dict(sorted(self.positions.items())),
            "generation": self.generation,
            "dirty": self.dirty,
            "restored_from": self.restored_from,
            "restored_s": round(self.restored_s, 4),
            "snapshots": self.snapshots,
            "last_snapshot_s": round(self.snapshot_s, 4),
            "last_snapshot_pause_s": round(self.snapshot_pause_s, 4),
            "last_snapshot_bytes": self.snapshot_bytes,
            "events": self.ledger.counts.as_dict(),
        }


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
    gpm_denominator: GpmDenominator = "entries"
    assigned_only: bool = False
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    metrics: LiveMetrics = field(default_factory=LiveMetrics)
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
    #: Paced garbage collection after each batch (None: CPython's default collector).
    gc: GcPacer | None = None
    _first_reasons: set[tuple[str, str]] = field(default_factory=set)
    _last_summary: float = field(default_factory=time.monotonic)
    _view: tuple[int, Ledger, OperatorBoard] | None = None

    def new_partition(self) -> PartitionState:
        return PartitionState(
            Ledger(self.dedupe_window_ms),
            OperatorBoard(self.grace_ms, gpm_denominator=self.gpm_denominator),
        )

    def install(self, partition: int, state: PartitionState) -> None:
        """Make `state` this worker's state of `partition` (assigned, restored), its ledger
        under this worker's dedupe window (a restored one may have been written under another:
        the new window holds for the events from now on)."""
        state.ledger.dedupe_window_ms = self.dedupe_window_ms
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
        return total

    @property
    def ledger(self) -> Ledger:
        """The merged ledger of every partition here."""
        return self.view()[0]

    @property
    def board(self) -> OperatorBoard:
        """The merged operator board of every partition here."""
        return self.view()[1]

    def apply_batch(self, records: Sequence[SourceRecord]) -> list[DeadLetter]:
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
        applied: list[SourceRecord] = []
        part: PartitionState | None = None
        part_no = -1
        for record in records:
            if record.partition != part_no:
                part_no = record.partition
                part = partitions.get(part_no)
                if part is None and not self.assigned_only:
                    part = partitions[part_no] = self.new_partition()
            if part is None or record.offset < part.positions.get(record.topic, 0):
                self.skipped += 1
                continue
            applied.append(record)
            ledger, board = part.ledger, part.board
            decoded = (
                decode(record.value)
                if record.value is not None
                else Rejection("not_json", "record has a null value")
            )
            reason: str
            if isinstance(decoded, Rejection):
                reason, detail = decoded.reason, decoded.detail
            else:
                try:
                    if ledger.apply(decoded):
                        board.observe(decoded)
                        counted[(record.topic, decoded.type)] += 1
                    elif ledger.refused_as == "expired":
                        expired[record.topic] += 1
                    else:
                        duplicates[record.topic] += 1
                    continue
                except Exception as exc:  # a bug in the core must not stop the stream
                    log.exception(
                        "ledger failed on %s event at %s[%d]@%d",
                        decoded.type,
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                    reason, detail = PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"
            ledger.reject(reason)
            rejected[(record.topic, reason)] += 1
            letters.append(dead_letter(record, reason, detail))
            if (record.topic, reason) not in self._first_reasons:
                self._first_reasons.add((record.topic, reason))
                log.info(
                    "first %s record on %s (partition %d offset %d): %s",
                    reason,
                    record.topic,
                    record.partition,
                    record.offset,
                    detail[:200],
                )
        self._advance(applied)
        self._count(counted, rejected, duplicates, expired)
        if self.gc is not None:
            self.gc.after(len(records))
        return letters

    def _advance(self, records: Iterable[SourceRecord]) -> None:
        positions, partitions = self.positions, self.partitions
        now = time.monotonic()
        n = 0
        for record in records:
            n += 1
            part = partitions[record.partition]
            if record.offset >= part.positions.get(record.topic, 0):
                part.positions[record.topic] = record.offset + 1
                positions[(record.topic, record.partition)] = record.offset + 1
            part.dirty = True
            part.applied_at = now
        if n:
            self.version += 1
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
            "gc": {
                "paced": self.gc.status() if self.gc is not None else None,
                **(CLOCK.status() if CLOCK.installed else {}),
            },
        }


#: Publishes dead letters and waits until the broker has them (acks=all).
DeadLetterPublisher = Callable[[Sequence[DeadLetter]], Awaitable[None]]

app = get_app()
settings = get_settings()
live = LiveState(
    grace_ms=settings.window_grace_ms,
    dedupe_window_ms=settings.dedupe_window_ms,
    gpm_denominator=settings.gpm_denominator,
    assigned_only=True,
)


def _initialise_series(metrics: LiveMetrics) -> None:
    """Export every counter series the worker can ever have, at 0, from the start.

    A series that first appears already at its final value has no increase for `rate()` to
    see; with batch ingestion a whole replay can land between two scrapes, and the dead-letter
    ratio rule then saw nothing at all. The label sets are bounded (contract topics, event
    types, rejection reasons), so this exports a fixed, small number of series.
    """
    for event_type, topic in TOPIC_BY_TYPE.items():
        if topic in settings.contract_topics:
            metrics.events.labels(settings.topic(topic), event_type)
    for topic in settings.source_topics:
        metrics.duplicates.labels(topic)
        metrics.expired.labels(topic)
        for reason in REJECT_REASONS:  # not processing_error: a bug's series shows up when it does
            metrics.rejected.labels(topic, reason)


_initialise_series(live.metrics)


# `live.gc` (paced collection) is set by the worker command only (`streams.commands.worker`):
# importing this module (tests, the web views) must not change the process's collector.
deadletter_topic = raw_topic(app, settings.deadletter)

#: Attempts for a dead letter the broker refuses for good (too large, not authorised, ...).
_PUBLISH_ATTEMPTS: Final[int] = 5
_RETRY_BACKOFF_S = 0.5
_MAX_BACKOFF_S: Final[float] = 10.0


def _retriable(exc: BaseException) -> bool:
    """Whether a failed send may succeed later (the broker away, a leader moving, a timeout)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


async def _send_dead_letter(letter: DeadLetter) -> Any:
    """Send one dead letter and wait for the broker's acknowledgement (its metadata)."""
    delivery = await deadletter_topic.send(
        key=letter.key, value=letter.value, headers=letter.headers
    )
    return await delivery


async def publish_to_deadletter_topic(letters: Sequence[DeadLetter]) -> None:
    """Send dead letters and wait for the broker to acknowledge them all.

    The batch's offsets are acknowledged (and later committed) only after this returns, so a
    dead letter is never lost to a crash or an outage in between: while the broker is away (a
    retriable error) this keeps trying, and the partition waits. A letter the broker refuses
    for good (a non-retriable error, `_PUBLISH_ATTEMPTS` times) is logged and counted in
    `livepulse_deadletter_failures_total` rather than stopping the stream for ever.
    """
    pending = list(letters)
    refused = 0  # consecutive rounds that had a non-retriable error
    attempt = 0
    while pending:
        attempt += 1
        results = await asyncio.gather(*map(_send_dead_letter, pending), return_exceptions=True)
        failed = [
            (letter, result)
            for letter, result in zip(pending, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if not failed:
            return
        for _, result in failed:
            if isinstance(result, asyncio.CancelledError):
                raise result
        pending = [letter for letter, _ in failed]
        if all(_retriable(result) for _, result in failed):
            refused = 0
        else:
            refused += 1
            if refused >= _PUBLISH_ATTEMPTS:
                break
        log.warning(
            "dead-letter topic refused %d records (attempt %d): %r",
            len(failed),
            attempt,
            failed[0][1],
        )
        await asyncio.sleep(min(_MAX_BACKOFF_S, _RETRY_BACKOFF_S * attempt))
    live.metrics.deadletter_failures.labels(settings.deadletter).inc(len(pending))
    log.error("gave up on %d dead letters the broker refuses", len(pending))


#: Replaceable in tests (which have no broker to publish to).
publish_dead_letters: DeadLetterPublisher = publish_to_deadletter_topic


#: The contract topics the worker's consumer subscribes; the batch consumer hands their fetches
#: to `ingest_batch`.
source_topics: dict[str, Any] = {name: raw_topic(app, name) for name in settings.source_topics}


def subscribe_source_topics() -> None:
    """Have the app's consumer subscribe the contract topics when it starts (faust's conductor
    subscribes what is in `app.topics`). Call once the worker's event loop is set: the
    conductor binds the loop it is built on."""
    for topic in source_topics.values():
        app.topics.add(topic)


#: Most batches whose dead letters may be in flight at once; the next batch waits beyond.
_MAX_PENDING_PUBLISHES: Final[int] = 8


class DeadLetterPipeline:
    """Dead letters published in the background, so the next fetch need not wait for them.

    Almost every batch has a dead letter (bad input is ~0.5% of records), and waiting for the
    broker's acknowledgement before the next fetch cost each batch a round trip (latency,
    bench/NOTES.md). What a crash must not lose is kept by `settle()`: a snapshot
    (`streams.runtime.keeper`) awaits every publish in flight before it covers their records, so a
    dead letter is on the broker before any snapshot says its record was processed. While the
    broker is away, at most `_MAX_PENDING_PUBLISHES` batches go ahead of their dead letters.
    """

    def __init__(self) -> None:
        self.pending: list[asyncio.Task[None]] = []

    async def submit(self, letters: Sequence[DeadLetter]) -> None:
        self.pending = [task for task in self.pending if not task.done()]
        while len(self.pending) >= _MAX_PENDING_PUBLISHES:
            await self.pending.pop(0)
        self.pending.append(asyncio.ensure_future(publish_dead_letters(letters)))

    async def settle(self) -> None:
        """Wait until every dead letter submitted so far is acknowledged (or given up on)."""
        while self.pending:
            await self.pending.pop(0)


dead_letters = DeadLetterPipeline()


async def ingest_batch(batch: Sequence[RawRecord], received_at: float) -> None:
    """Apply one fetched batch (on the event loop since `received_at`, wall clock) and hand its
    dead letters to the publishing pipeline."""
    letters = live.apply_batch(batch)
    now = time.time()
    live.lag.observe(now, [r.timestamp / 1000.0 for r in batch if r.timestamp is not None])
    live.worker_lag.observe_many(now - received_at, len(batch))
    if letters:
        await dead_letters.submit(letters)
    live.maybe_log_summary()


set_batch_handler(ingest_batch)
