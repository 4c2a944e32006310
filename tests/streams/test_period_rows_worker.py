"""Issue 17: a worker partition's frozen period parts' per-user rows, folded at their user's
owner partition through the month-rows topic (agents/core/period_rows.py), on the real broker
with `LIVEPULSE_FOLD_SESSIONS` on: the merged report (`/report?scope=global`'s and `livepulse
report --changelog`'s `global_report`) gives every period's figures and intervals as a
ledger fed every event does, and the truth of the period's sub-stream, with every record of
the month-rows topic delivered twice, across a restart, and (opt-in) with two workers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.core.period_rows import REFUND_CLAIMS, ROUTED
from agents.core.periods import DAY, MONTH, SKETCHED
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.worker_process import WorkerProcess
from tests.agents.core.test_periods import assert_observed_as_cut, plain_periods
from tests.streams.test_membership import start_balanced
from tests.streams.test_month_rows import (
    _fleet_settled,
    _fold_settings,
    _merged_once,
    _settled,
)
from tests.support.live import fixture_lines, replay_lines

#: Set to run the two workers' test (~1 min).
LONG_ENV = "LIVEPULSE_PERIOD_ROWS_LONG"
#: A refund horizon short enough that July's refund claims reach their second stage within
#: xhs (every refund of the fixture is within it: the figures are the plain ledger's), so
#: their rows travel too.
REFUND_HORIZON_DAYS = 13
FIGURE_KEYS = ("observed", "ci_low", "ci_high")


async def _redeliver(settings: Settings) -> int:
    """Every record of the month-rows topic produced again to its partition (a producer's
    retry after a lost acknowledgement, or a sender that restarted before its snapshot):
    how many."""
    topic = settings.month_rows_topic
    assert topic is not None
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka_client_kwargs())
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs())
    await consumer.start()
    await producer.start()
    sent = 0
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - a fresh client
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        copies: list[tuple[int, bytes | None]] = []
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for record in batch.get(tp, []):
                    if record.offset < ends[tp]:
                        copies.append((tp.partition, record.value))
        for partition, value in copies:
            await producer.send_and_wait(topic, value, partition=partition)
            sent += 1
    finally:
        await producer.stop()
        await consumer.stop()
    return sent


def _frozen_months(report: dict[str, Any]) -> list[str]:
    return [e["period"] for e in report["periods"]["claims"]["live_aov"][MONTH] if e["frozen"]]


def _check_periods(report: dict[str, Any]) -> int:
    """Every frozen day and month of every claim: observed value and interval as the plain
    ledger fed every event of the fixture (`plain_periods`, no fold: from the facts) to 1e-9
    (`price_dwell_association`'s frozen parts are sketched: left out); the routed claims'
    observed value of each month and every 7th day equal the truth of the period's
    sub-stream (truth.py on the fixture's lines cut to it), and the refund claims' (routed
    in their second stage). How many figures compared."""
    got = report["periods"]["claims"]
    want = plain_periods("xhs")["claims"]
    compared = 0
    for claim_id, figures in got.items():
        if claim_id == SKETCHED:
            continue
        for kind in (DAY, MONTH):
            reference = {e["period"]: e for e in want[claim_id][kind]}
            for mine in figures[kind]:
                if not mine["frozen"] or mine["period"] not in reference:
                    continue
                assert not mine.get("folded"), (claim_id, mine)
                for key in FIGURE_KEYS:
                    a, b = mine[key], reference[mine["period"]][key]
                    same = a == b or (
                        isinstance(a, float)
                        and isinstance(b, float)
                        and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                    )
                    assert same, (claim_id, mine["period"], key, a, b)
                compared += 1
    for kind, stride in ((MONTH, 1), (DAY, 7)):
        keys = [e["period"] for e in got["live_aov"][kind] if e["frozen"]]
        assert_observed_as_cut(got, kind, keys[::stride], (*ROUTED, *REFUND_CLAIMS))
    return compared


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_folds_frozen_period_rows_at_their_owners_through_a_restart_and_redelivery(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """3 partitions, a 2-day window: the xhs fixture (July and August 2024) replayed into a
    worker stopped with SIGTERM after 3/4 of it and restarted on its state directory; then
    every record of the month-rows topic is produced again. July's rows and its days' were
    sent and folded at their owners (its refund claims' too, in their second stage), and the
    merged report's frozen periods give the one ledger's figures and intervals and the
    truth's figures."""
    settings = _fold_settings(
        kafka_bootstrap, "periodrows", refund_horizon_days=REFUND_HORIZON_DAYS
    )
    lines = fixture_lines("xhs")
    split = len(lines) * 3 // 4
    asyncio.run(create_topics(settings, all_topics(settings)))
    statuses: list[dict[str, Any]] = []
    try:
        for run, chunk in enumerate((lines[:split], lines[split:])):
            worker = WorkerProcess(settings, tmp_path / f"worker-{run}.log")
            try:
                worker.start()
                worker.wait_ready(timeout_s=90)
                replay_lines(settings, tmp_path / f"run-{run}.jsonl", chunk)
                _settled(settings, worker)
                if run == 1:
                    assert asyncio.run(_redeliver(settings)) > 0
                    _settled(settings, worker)
                    report = _merged_once(settings, lambda r: "2024-07" in _frozen_months(r))
                statuses.append(worker.status()["month_rows"]["period_rows"])
            finally:
                assert worker.stop() == 0, worker.tail()
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
    assert sum(s["sent"] for s in statuses) > 0, statuses
    assert statuses[-1]["periods_folded"] > 0 and statuses[-1]["held_at_owner"] == 0, statuses
    assert "2024-07" in _frozen_months(report)
    for claim_id in REFUND_CLAIMS:  # July's second stage frozen: its refund rows went too
        july = next(
            e for e in report["periods"]["claims"][claim_id][MONTH] if e["period"] == "2024-07"
        )
        assert july["frozen"], (claim_id, july)
    assert _check_periods(report) > 100


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(LONG_ENV), reason=f"two workers, ~1 min: set {LONG_ENV}=1")
def test_two_workers_fold_frozen_period_rows_at_their_owners(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two workers share 4 partitions (2 each): each partition's rows go to owners on either
    worker; the merged report's frozen periods as above."""
    from tests.test_scaleout import PARTITIONS as FOUR
    from tests.test_scaleout import Fleet

    settings = _fold_settings(
        kafka_bootstrap, "periodrows2", FOUR, refund_horizon_days=REFUND_HORIZON_DAYS
    )
    asyncio.run(create_topics(settings, all_topics(settings)))
    fleet = Fleet(settings, tmp_path)
    try:
        start_balanced(fleet, 2)
        replay_lines(settings, tmp_path / "xhs.jsonl", fixture_lines("xhs"))
        _fleet_settled(settings, fleet.workers)
        report = _merged_once(settings, lambda r: "2024-07" in _frozen_months(r))
        statuses = [w.status()["month_rows"]["period_rows"] for w in fleet.workers]
    finally:
        fleet.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
    assert all(s["sent"] > 0 for s in statuses), statuses
    assert all(s["periods_folded"] > 0 for s in statuses), statuses
    assert _check_periods(report) > 100
