"""The worker's ingest: decode, dead-letter, dedupe and count (no broker: the state, the ingest
and the dead-letter pipeline built directly, a worker built from settings without starting)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from prometheus_client import generate_latest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ingest import PROCESSING_ERROR, Rejected, ingest
from agents.core.periods import PeriodSettings, with_periods
from streams.runtime.deadletters import (
    H_DETAIL,
    H_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    MAX_PENDING_PUBLISHES,
    DeadLetter,
    DeadLetterPipeline,
    DeadLetterPublisher,
    topic_sender,
)
from streams.runtime.ingest import YIELD_TURNS, BatchIngest
from streams.runtime.lag import LagHistogram
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState, SourceRecord
from streams.runtime.web import ClaimCollector, ReportCache

T0 = 1_721_800_800_000
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def line(**fields: Any) -> bytes:
    return orjson.dumps(fields)


START = line(
    event_id="e-1",
    type="session_started",
    ts=T0,
    session_id="s-1",
    room_id="r-1",
    merchant_id="m-1",
)
ORDER = line(
    event_id="e-2",
    type="order_paid",
    ts=T0 + 400_000,
    order_id="o-1",
    session_id="s-1",
    merchant_id="m-1",
    user_id="u-secret-42",
    items=[{"sku_id": "k-1", "category": "apparel", "unit_price_cents": 59_900, "quantity": 1}],
    amount_cents=59_900,
)
MISSING_FIELD = line(event_id="e-3", type="order_paid", ts=T0, session_id="s-1")
NOT_JSON = b"<html><body>502 Bad Gateway</body></html>"


def records(topic: str, *values: bytes | None, partition: int = 0) -> list[SourceRecord]:
    return [
        SourceRecord(topic, partition, offset, b"s-1", value) for offset, value in enumerate(values)
    ]


def header(letter: DeadLetter, name: str) -> str:
    return dict(letter.headers)[name].decode()


def sample(state: LiveState, name: str, **labels: str) -> float | None:
    value: float | None = state.metrics.registry.get_sample_value(name, labels)
    return value


def test_valid_events_reach_the_ledger_and_invalid_ones_become_dead_letters() -> None:
    state = LiveState()
    letters = state.apply_batch(records("live.orders", START, ORDER, NOT_JSON, MISSING_FIELD, None))

    assert state.ledger.counts.as_dict() == {"valid": 2, "rejected": 3, "duplicates": 0}
    assert [header(letter, H_REASON) for letter in letters] == [
        "not_json",
        "missing_field",
        "not_json",
    ]
    first = letters[0]
    assert first.value == NOT_JSON  # the original bytes, unchanged
    assert first.key == b"s-1"
    assert header(first, H_SOURCE_TOPIC) == "live.orders"
    assert header(first, H_SOURCE_PARTITION) == "0"
    assert header(first, H_SOURCE_OFFSET) == "2"
    assert header(first, H_DETAIL)
    assert letters[2].value is None  # a null value (tombstone) is dead-lettered as it came
    assert state.positions == {("live.orders", 0): 5}
    assert sample(state, "livepulse_events_total", topic="live.orders", type="order_paid") == 1
    assert (
        sample(state, "livepulse_events_rejected_total", topic="live.orders", reason="not_json")
        == 2
    )
    assert (
        sample(
            state, "livepulse_events_rejected_total", topic="live.orders", reason="missing_field"
        )
        == 1
    )


def test_a_fetch_with_bad_records_among_good_is_applied_as_its_records_one_by_one() -> None:
    """Issue 19: a fetch is decoded in one validator call; whatever bad records sit among its
    good ones, the state takes the same events and dead-letters the same records, each with
    the reason and detail that `ingest` gives it alone."""
    lines = (FIXTURES / "xhs.jsonl").read_bytes().splitlines()[:600]
    bad = [NOT_JSON, MISSING_FIELD, b"", b"[1]", b'{"type":"dance","event_id":"x","ts":1}', None]
    for seed in range(3):
        rng = random.Random(seed)
        values: list[bytes | None] = list(lines)
        for value in rng.sample(bad, k=rng.randint(1, len(bad))):
            values.insert(rng.randrange(len(values) + 1), value)
        state = LiveState(dedupe_window_ms=7 * 86_400_000)
        letters = state.apply_batch(records("live.views", *values))

        ledger, board = Ledger(7 * 86_400_000), OperatorBoard()
        outcomes = [ingest(value, ledger, board) for value in values]
        expected = [
            (offset, outcome.reason, outcome.detail)
            for offset, outcome in enumerate(outcomes)
            if isinstance(outcome, Rejected)
        ]
        assert len(expected) >= 1
        assert [
            (
                int(header(letter, H_SOURCE_OFFSET)),
                header(letter, H_REASON),
                header(letter, H_DETAIL),
            )
            for letter in letters
        ] == expected
        part = state.partitions[0]
        assert part.ledger.counts.as_dict() == ledger.counts.as_dict()
        assert part.ledger.counts == ledger.counts
        assert json.dumps(build_report(part.ledger, part.board), sort_keys=True) == json.dumps(
            build_report(ledger, board), sort_keys=True
        )


def test_an_event_older_than_the_dedupe_window_is_expired_not_a_duplicate() -> None:
    """Issue 17: with a window, an event more than it older than its topic's newest is counted
    in `livepulse_events_expired_total`, neither applied nor a duplicate."""
    state = LiveState(dedupe_window_ms=60_000)
    state.apply_batch(records("live.orders", START, ORDER))
    late = orjson.loads(ORDER) | {"event_id": "e-9", "order_id": "o-9", "ts": T0}
    letters = state.apply_batch([SourceRecord("live.orders", 0, 2, b"s-1", orjson.dumps(late))])
    assert letters == []
    assert state.ledger.counts.as_dict() == {"valid": 2, "rejected": 0, "duplicates": 0}
    assert state.ledger.counts.expired == 1
    assert sample(state, "livepulse_events_expired_total", topic="live.orders") == 1
    assert not sample(state, "livepulse_events_duplicate_total", topic="live.orders")
    assert sample(state, "livepulse_events_total", topic="live.orders", type="order_paid") == 1


def test_a_redelivered_event_is_counted_once() -> None:
    """A redelivery carries the same key, so it lands on the same partition (the contract)."""
    state = LiveState()
    state.apply_batch(records("live.orders", START, ORDER))
    again = [SourceRecord("live.orders", 0, 2, b"s-1", ORDER)]
    letters = state.apply_batch(again)
    assert letters == []
    assert state.ledger.counts.as_dict() == {"valid": 2, "rejected": 0, "duplicates": 1}
    assert sample(state, "livepulse_events_duplicate_total", topic="live.orders") == 1
    assert sample(state, "livepulse_events_total", topic="live.orders", type="order_paid") == 1
    assert state.positions == {("live.orders", 0): 3}


def test_a_state_from_settings_takes_their_windows_horizons_fold_and_periods() -> None:
    """`LiveState.from_settings` (the worker's and the fold bench's state): each setting in
    the unit the state takes, written out here by hand; the keywords set the rest."""
    day = 86_400_000
    settings = Settings(
        window_grace_s=30,
        dedupe_window_s=2 * 86_400,
        future_tolerance_s=60,
        refund_horizon_days=10,
        user_horizon_days=20,
        first_order_horizon_days=40,
        board_horizon_days=5,
        gpm_denominator="unique_viewers",
        fold_sessions=True,
        claim_horizon_days=3,
        claim_days_kept=9,
        claim_months_kept=4,
    )
    state = LiveState.from_settings(settings, assigned_only=True)
    assert (state.grace_ms, state.dedupe_window_ms, state.future_tolerance_ms) == (
        30_000,
        2 * day,
        60_000,
    )
    assert (state.refund_horizon_ms, state.user_horizon_ms, state.pair_horizon_ms) == (
        10 * day,
        20 * day,
        40 * day,
    )
    assert state.board_horizon_ms == 5 * day and state.gpm_denominator == "unique_viewers"
    assert state.fold_sessions and state.assigned_only
    assert state.periods == PeriodSettings(horizon_days=3, days_kept=9, months_kept=4)
    ledger = state.new_partition().ledger
    assert ledger.pair_horizon_ms == 40 * day and ledger.retire_summaries
    # A keyword overrides its setting; the settings' zeros and offs come through as None.
    off = Settings(first_order_horizon_days=0, future_tolerance_s=0, claim_periods=False)
    plain = LiveState.from_settings(off, fold_sessions=False)
    assert not plain.fold_sessions and not plain.assigned_only
    assert plain.pair_horizon_ms is plain.future_tolerance_ms is plain.periods is None


def test_state_is_kept_per_partition_and_merged_for_the_report() -> None:
    state = LiveState()
    state.apply_batch(records("live.sessions", START))
    state.apply_batch(records("live.orders", ORDER, partition=1))
    assert sorted(state.partitions) == [0, 1]
    assert state.partitions[0].ledger.counts.valid == 1
    assert state.partitions[1].ledger.counts.valid == 1
    # The merged view joins the order (partition 1) to its session's start (partition 0).
    assert state.ledger.counts.valid == 2
    assert state.ledger.sessions["s-1"].started_ts is not None
    assert len(state.ledger.sessions["s-1"].orders) == 1
    assert state.positions == {("live.sessions", 0): 1, ("live.orders", 1): 1}


def test_assigned_only_skips_unheld_partitions_and_records_before_the_position() -> None:
    """With batch ingestion a partition's records apply only once its state is installed, and
    a record before its position (already in the restored state) is skipped, not re-counted."""
    state = LiveState(assigned_only=True)
    state.apply_batch(records("live.orders", START, ORDER))
    assert state.partitions == {} and state.skipped == 2
    restored = state.new_partition()
    restored.positions["live.orders"] = 1  # the snapshot covers offset 0 (the start)
    state.install(0, restored)
    state.apply_batch(records("live.orders", START, ORDER))
    assert state.counts().as_dict() == {"valid": 1, "rejected": 0, "duplicates": 0}
    assert state.skipped == 3
    assert state.positions == {("live.orders", 0): 2}
    assert state.partitions[0].dirty
    dropped = state.drop(0)
    assert dropped is restored and state.positions == {} and state.partitions == {}


def test_a_fetch_interleaving_partitions_and_topics_moves_each_position_to_its_newest() -> None:
    """One batch whose records switch partition and topic (and one partition's offsets not in
    order, an unheld partition between): each held (topic, partition) position is past its
    newest offset, each record is counted once, and the unheld one's are skipped (the truth
    is read off the records as written here)."""
    state = LiveState(assigned_only=True)
    state.install(0, state.new_partition())
    state.install(1, state.new_partition())
    fetch = [
        SourceRecord("live.sessions", 0, 7, b"s-1", START),
        SourceRecord("live.orders", 1, 3, b"s-1", ORDER),
        SourceRecord("live.orders", 2, 9, b"s-1", ORDER),  # partition 2: not held
        SourceRecord("live.orders", 1, 5, b"s-1", NOT_JSON),
        SourceRecord("live.orders", 1, 4, b"s-1", ORDER),  # a copy, an older offset
        SourceRecord("live.sessions", 1, 2, b"s-1", START),
    ]
    letters = state.apply_batch(fetch)
    assert [header(letter, H_REASON) for letter in letters] == ["not_json"]
    assert state.positions == {
        ("live.sessions", 0): 8,
        ("live.orders", 1): 6,
        ("live.sessions", 1): 3,
    }
    assert state.partitions[1].positions == {"live.orders": 6, "live.sessions": 3}
    assert state.skipped == 1 and state.records == 5
    assert state.counts().as_dict() == {"valid": 3, "rejected": 1, "duplicates": 1}
    assert sample(state, "livepulse_events_duplicate_total", topic="live.orders") == 1
    assert state.partitions[0].dirty and state.partitions[1].dirty


def test_an_event_that_breaks_the_ledger_is_dead_lettered_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Ledger.apply

    def apply(self: Ledger, event: Any) -> bool:
        if event.event_id == "e-2":
            raise ZeroDivisionError("a bug")
        return original(self, event)

    monkeypatch.setattr(Ledger, "apply", apply)
    state = LiveState()
    letters = state.apply_batch(records("live.orders", ORDER, START))
    assert [header(letter, H_REASON) for letter in letters] == [PROCESSING_ERROR]
    assert "ZeroDivisionError" in header(letters[0], H_DETAIL)
    assert state.ledger.counts.as_dict() == {"valid": 1, "rejected": 1, "duplicates": 0}
    assert (
        sample(
            state, "livepulse_events_rejected_total", topic="live.orders", reason=PROCESSING_ERROR
        )
        == 1
    )


def test_metrics_carry_claim_gauges_and_no_user_ids() -> None:
    state = LiveState()
    state.apply_batch(records("live.orders", START, ORDER, NOT_JSON))
    reports = ReportCache(state.view, lambda: state.version)
    state.metrics.registry.register(ClaimCollector(reports, max_age_s=0))
    text = generate_latest(state.metrics.registry).decode()
    assert 'livepulse_claim_observed{claim="orders_after_minute_5"} 1.0' in text
    assert 'livepulse_claim_claimed{claim="orders_after_minute_5"} 0.75' in text
    assert 'livepulse_claim_verdict{claim="orders_after_minute_5",verdict="inconclusive"}' in text
    assert 'livepulse_events_rejected_total{reason="not_json",topic="live.orders"} 1.0' in text
    assert "u-secret-42" not in text and "o-1" not in text and "s-1" not in text


def test_metrics_carry_the_latest_day_month_and_rolling_claims() -> None:
    """The worker's report builder (`with_periods`) feeds `livepulse_claim_period_*`, labelled
    by the period's kind only (never a date)."""
    state = LiveState()
    state.apply_batch(records("live.orders", START, ORDER))

    def build(ledger: Ledger, board: Any) -> dict[str, Any]:
        return with_periods(build_report(ledger, board), ledger, PeriodSettings())

    reports = ReportCache(state.view, lambda: state.version, build)
    state.metrics.registry.register(ClaimCollector(reports, max_age_s=0))
    text = generate_latest(state.metrics.registry).decode()
    for period in ("day", "month", "rolling"):
        labels = f'claim="orders_after_minute_5",period="{period}"'
        assert f"livepulse_claim_period_observed{{{labels}}} 1.0" in text
    assert "2024-" not in text.split("livepulse_claim_period_observed", 1)[1].split("# HELP")[0]


def test_report_cache_rebuilds_only_when_the_ledger_changed_and_is_old_enough() -> None:
    ledger = Ledger()
    builds: list[int] = []

    def build(seen: Ledger, board: object) -> dict[str, Any]:
        builds.append(seen.counts.valid)
        return {"valid": seen.counts.valid}

    def version() -> tuple[int, int, int]:
        return (ledger.counts.valid, ledger.counts.rejected, ledger.counts.duplicates)

    cache = ReportCache(lambda: (ledger, None), version, build)
    assert cache.get() == {"valid": 0}
    assert cache.get() == {"valid": 0} and len(builds) == 1  # unchanged: cached
    ledger.reject("not_json")
    assert cache.get(max_age_s=3600) == {"valid": 0} and len(builds) == 1  # changed, too fresh
    assert cache.get(max_age_s=0) == {"valid": 0} and len(builds) == 2  # changed: rebuilt


# --- the worker's ingest: a fetched batch through `ingest_batch` ---------------------------------


@pytest.fixture
def fresh_ingest() -> tuple[BatchIngest, LiveState, list[DeadLetter]]:
    """A fresh state behind the ingest, and the dead letters it publishes (no broker)."""
    state = LiveState()
    published: list[DeadLetter] = []

    async def publish(letters: Sequence[DeadLetter]) -> None:
        published.extend(letters)

    return BatchIngest(state, DeadLetterPipeline(publish)), state, published


async def test_ingest_dead_letters_a_bad_record_and_counts_a_duplicate_once(
    fresh_ingest: tuple[BatchIngest, LiveState, list[DeadLetter]],
) -> None:
    ingest, state, published = fresh_ingest
    topic = Settings(topic_prefix="t-").topic("live.orders")
    batch = [
        SourceRecord(topic, 0, offset, b"s-1", value, T0 + offset)
        for offset, value in enumerate((START, ORDER, NOT_JSON, ORDER))
    ]
    await ingest(batch, time.time())
    await ingest.dead_letters.settle()
    assert state.records == 4
    assert state.lag.count == 4 and state.worker_lag.count == 4

    assert state.ledger.counts.as_dict() == {"valid": 2, "rejected": 1, "duplicates": 1}
    assert len(published) == 1
    letter = published[0]
    assert letter.value == NOT_JSON and letter.key == b"s-1"
    assert header(letter, H_REASON) == "not_json"
    assert header(letter, H_SOURCE_TOPIC) == topic
    assert header(letter, H_SOURCE_OFFSET) == "2"
    assert state.positions == {(topic, 0): 4}
    assert sample(state, "livepulse_events_duplicate_total", topic=topic) == 1
    assert sample(state, "livepulse_events_rejected_total", topic=topic, reason="not_json") == 1


def _joins(topic: str, n: int) -> list[SourceRecord]:
    """`n` records over two partitions of `topic`: viewer joins, every 7th not JSON, every 11th
    a duplicate of the record before it."""
    batch: list[SourceRecord] = []
    offsets = [0, 0]
    for i in range(n):
        partition = i % 2
        if i % 7 == 3:
            value = NOT_JSON
        elif i % 11 == 5 and batch:
            value = batch[-1].value
        else:
            value = line(
                event_id=f"j-{i}",
                type="viewer_joined",
                ts=T0 + i,
                session_id=f"s-{partition}",
                user_id=f"u-{i}",
            )
        batch.append(SourceRecord(topic, partition, offsets[partition], b"s", value, T0 + i))
        offsets[partition] += 1
    return batch


def _seen(state: LiveState) -> tuple[dict[tuple[str, int], int], dict[str, int], int]:
    return dict(state.positions), state.counts().as_dict(), state.records


async def test_ingest_lets_the_event_loop_run_within_a_fetch_at_record_boundaries() -> None:
    """A fetch of thousands of records is applied in slices, the event loop let run once the
    fetch has held it `slice_s` (here a clock that moves 10 ms a look): what runs between the
    slices (a page build, a scrape) sees every figure and position as after the records so far
    applied in one go, and the fetch ends as one `apply_batch` of it all would (before: one
    `apply_batch`, the loop held for the whole fetch)."""
    topic = Settings(topic_prefix="t-").topic("live.views")
    batch = _joins(topic, 4_000)
    published: list[DeadLetter] = []

    async def publish(letters: Sequence[DeadLetter]) -> None:
        published.extend(letters)

    ticks = iter(range(1_000_000))
    state = LiveState()
    ingest = BatchIngest(
        state, DeadLetterPipeline(publish), slice_s=0.025, clock=lambda: next(ticks) / 100
    )
    between: list[tuple[dict[tuple[str, int], int], dict[str, int], int]] = []
    applying = asyncio.Event()

    async def watch() -> None:
        await applying.wait()
        while state.records < len(batch):
            between.append(_seen(state))
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    applying.set()
    await asyncio.sleep(0)  # the watcher waits on the event
    await ingest(batch, time.time())
    await ingest.dead_letters.settle()
    await watcher
    # A look every slice of 500, 10 ms apart: the loop runs after every third slice.
    assert ingest.yields == 2
    seen_mid_fetch = [s for s in between if 0 < s[2] < len(batch)]
    # Each yield gives the loop several turns (a request's callbacks run one a turn).
    assert [s[2] for s in seen_mid_fetch] == [1_500] * YIELD_TURNS + [3_000] * YIELD_TURNS
    for positions, counts, applied in seen_mid_fetch:
        reference = LiveState()
        reference.apply_batch(batch[:applied])
        assert (positions, counts, applied) == _seen(reference)
    reference = LiveState()
    letters = reference.apply_batch(batch)
    assert _seen(state) == _seen(reference)
    assert [d.headers for d in published] == [d.headers for d in letters]
    assert state.lag.count == state.worker_lag.count == len(batch)
    # No time limit reached: one go, as before.
    whole = BatchIngest(LiveState(), DeadLetterPipeline(publish), slice_s=3600.0)
    await whole(batch, time.time())
    await whole.dead_letters.settle()
    assert whole.yields == 0 and _seen(whole.state) == _seen(reference)


def test_the_metric_core_imports_neither_faust_nor_asyncio() -> None:
    code = (
        "import sys, agents.core; print(sorted({'faust', 'asyncio', 'aiokafka'} & {*sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_the_state_builds_no_app_and_reads_no_settings() -> None:
    """No import with side effects: the state, ingest, keeper and views import without a
    faust App being built and without the environment's settings being read."""
    code = (
        "import os, faust\n"
        "os.environ['LIVEPULSE_WEB_PORT'] = 'not a port'\n"  # read at import: ValidationError
        "built = []\n"
        "init = faust.App.__init__\n"
        "faust.App.__init__ = lambda self, *a, **k: (built.append(a), init(self, *a, **k))[1]\n"
        "import streams.runtime.state, streams.runtime.ingest, streams.runtime.keeper\n"
        "import streams.runtime.web, streams.runtime.worker\n"
        "print(len(built))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_the_worker_subscribes_every_contract_topic_and_serves_its_views(
    tmp_path: Any,
) -> None:
    """The composition root wires the app from its settings: no agents, no autodiscovery; the
    views, timers and batch route are there before it starts."""
    from streams.runtime.worker import Worker

    settings = Settings(app_id="worker-wiring-test", topic_prefix="wt-", data_dir=tmp_path)
    worker = Worker(settings, source_partitions=4)
    try:
        topics = {name for topic in worker.source_topics.values() for name in topic.topics}
        # The contract topics, and with the session fold (on by default) the month-rows topic.
        assert topics == set(settings.state_topics)
        assert all(name.startswith("wt-") for name in topics)
        assert worker.app.agents == {}  # no faust agent: the batch consumer feeds the ingest
        assert {"/metrics", "/report", "/status"} <= set(worker.app.web.views)
        assert worker.app.batch_handler is worker.ingest
        assert worker.app.partition_hooks is worker.keeper
        # A snapshot waits for the dead letters (and, with the fold, the month rows) first.
        assert worker.keeper.settle == worker._settle
        assert worker.keeper.source_partitions == 4
        assert worker.views.source_partitions == 4
        # Every ingest series exported at 0 from the start, on the worker's own registry.
        registry = worker.metrics.registry
        assert (
            registry.get_sample_value(
                "livepulse_events_rejected_total",
                {"topic": "wt-live.orders", "reason": "not_json"},
            )
            == 0
        )
        # A second worker in the same process is independent (no process-wide app).
        other = Worker(
            settings.model_copy(update={"app_id": "worker-wiring-2", "data_dir": tmp_path / "b"}),
            source_partitions=2,
        )
        assert other.app is not worker.app and other.state is not worker.state
        other.keeper.local.close()  # type: ignore[union-attr]
    finally:
        worker.keeper.local.close()  # type: ignore[union-attr]


class FlakyTopic:
    """A dead-letter topic stand-in whose first `failures` sends fail with `error`."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error if error is not None else ConnectionError("broker away")
        self.sent: list[tuple[bytes | None, bytes | None]] = []

    async def send(self, *, key: bytes | None, value: bytes | None, headers: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        self.sent.append((key, value))
        delivered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        delivered.set_result("metadata")
        return delivered


async def test_dead_letters_are_retried_and_a_lasting_failure_is_counted_not_raised() -> None:
    letters = LiveState().apply_batch(records("live.orders", NOT_JSON, MISSING_FIELD))
    given_up: list[int] = []

    def publisher(topic: FlakyTopic) -> DeadLetterPublisher:
        return DeadLetterPublisher(topic_sender(topic), given_up.append, backoff_s=0.0)

    flaky = FlakyTopic(failures=1)
    await publisher(flaky).publish(letters)
    assert sorted(flaky.sent) == sorted([(b"s-1", NOT_JSON), (b"s-1", MISSING_FIELD)])

    # The broker away for many rounds (a retriable error): kept trying until delivered, since
    # the batch's offsets are committed only after this returns.
    away = FlakyTopic(failures=40, error=KafkaConnectionError("broker away"))
    await publisher(away).publish(letters)
    assert sorted(away.sent) == sorted([(b"s-1", NOT_JSON), (b"s-1", MISSING_FIELD)])
    assert given_up == []

    # Refused for good (not retriable): given up after a few rounds, counted, not raised.
    down = FlakyTopic(failures=10**6, error=MessageSizeTooLargeError("too big"))
    await publisher(down).publish(letters)  # logs, counts, does not raise
    assert given_up == [2]


async def test_dead_letters_are_published_behind_the_stream_and_settled_before_snapshots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next batch need not wait for the broker's acknowledgement of this one's dead
    letters, but `settle()` (what a snapshot awaits first) returns only once all are acked,
    and no more than the bound of batches runs ahead of its dead letters."""

    release = asyncio.Event()
    acked: list[int] = []

    async def slow_publish(letters: Sequence[DeadLetter]) -> None:
        await release.wait()
        acked.append(len(letters))

    pipeline = DeadLetterPipeline(slow_publish)
    letter = DeadLetter(b"k", b"v", [])
    for _ in range(MAX_PENDING_PUBLISHES):
        await asyncio.wait_for(pipeline.submit([letter]), timeout=1.0)  # never blocks
    assert acked == [] and len(pipeline.pending) == MAX_PENDING_PUBLISHES
    # One more must wait for the oldest publish.
    blocked = asyncio.ensure_future(pipeline.submit([letter, letter]))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    settling = asyncio.ensure_future(pipeline.settle())
    await asyncio.sleep(0.05)
    assert not settling.done()
    release.set()
    await asyncio.wait_for(blocked, timeout=1.0)
    await asyncio.wait_for(settling, timeout=1.0)
    await pipeline.settle()
    assert sorted(acked) == [1] * MAX_PENDING_PUBLISHES + [2]
    assert pipeline.pending == []


def test_lag_histogram_quantiles_match_the_sorted_lags() -> None:
    import random

    rng = random.Random(7)
    now = 1_000_000.0
    lags_ms = [rng.choice([rng.randint(0, 40), rng.randint(100, 900)]) for _ in range(5000)]
    histogram = LagHistogram()
    # Two batches; a record without a timestamp is not counted.
    histogram.observe(now, [now - lag / 1000 for lag in lags_ms[:3000]] + [None])
    histogram.observe(now, [now - lag / 1000 for lag in lags_ms[3000:]])
    ordered = sorted(lags_ms)

    def truth(q: float) -> int:
        # The smallest lag with at least a share q of the records at or below it.
        return ordered[max(0, -(-int(q * len(ordered) * 1000) // 1000) - 1)]

    assert histogram.count == 5000
    summary = histogram.summary()
    assert summary["max_ms"] == ordered[-1]
    for q in (0.5, 0.9, 0.99):
        # Float timestamps may put a lag 1 ms below its bucket.
        assert abs(histogram.quantile(q) - truth(q)) <= 1  # type: ignore[operator]
    # A batch's time in the worker: every record of it waited the same.
    in_worker = LagHistogram()
    in_worker.observe_many(0.0125, 900)
    in_worker.observe_many(0.2505, 100)
    assert in_worker.summary() == {"count": 1000, "p50_ms": 12, "p99_ms": 250, "max_ms": 250}
    in_worker.observe_many(-0.5, 1)  # a clock step back counts as 0, not an error
    assert in_worker.quantile(0.0) == 0


def test_lag_histogram_edges_match_the_sorted_lags() -> None:
    """Lags below 0 and past the last bucket, a record with no timestamp, a batch given as an
    iterator, and shares whose targets fall between whole records: each quantile is the
    sorted lags' (clamped to [0, 60,000] ms), as plain ints /status can serialize."""
    now = 5_000.0
    lags_ms = [-300, -1, 0, 7, 7, 7, 1_023, 1_024, 1_025, 59_999, 60_000, 75_000, 3_600_000]
    histogram = LagHistogram()
    histogram.observe(now, iter([now - lag / 1000 for lag in lags_ms[:6]] + [None]))
    histogram.observe(now, [now - lag / 1000 for lag in lags_ms[6:]])
    ordered = sorted(min(max(lag, 0), 60_000) for lag in lags_ms)
    assert histogram.count == len(lags_ms)
    for q in (0.0, 0.1, 1 / 3, 0.5, 0.77, 0.9, 0.99, 1.0):
        rank = max(1, -(-int(q * len(ordered) * 1_000_000) // 1_000_000))  # ceil(q * n), >= 1
        # Float timestamps may put a lag 1 ms below its bucket.
        assert abs(histogram.quantile(q) - ordered[rank - 1]) <= 1  # type: ignore[operator]
    summary = histogram.summary()
    assert summary["max_ms"] == 60_000
    assert json.loads(json.dumps(summary)) == summary
    # Batches this small are counted a record at a time; one of 39 goes through numpy, and
    # each lag three times over has the same quantiles (ceil(ceil(3qn) / 3) = ceil(qn)).
    stamps = [now - lag / 1000 for lag in lags_ms]
    thrice = LagHistogram()
    thrice.observe(now, stamps * 3 + [None])
    shares = (0.0, 0.1, 1 / 3, 0.5, 0.77, 0.9, 0.99, 1.0)
    assert thrice.count == 3 * len(lags_ms)
    assert thrice.quantiles(shares) == histogram.quantiles(shares)
    assert LagHistogram().summary() == {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_status_reports_processing_and_in_worker_lag() -> None:
    state = LiveState()
    state.apply_batch(records("live.orders", START, ORDER))
    state.worker_lag.observe_many(0.02, 2)
    status = state.status()
    assert status["worker_lag"] == {"count": 2, "p50_ms": 20, "p99_ms": 20, "max_ms": 20}
    assert "processing_lag" in status
