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
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.core.period_rows import REFUND_CLAIMS, ROUTED
from agents.core.periods import DAY, MONTH, SKETCHED, period_key
from agents.core.persist import load_state
from streams.runtime.global_report import newest_snapshots
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
from tests.support.live import fixture_lines, replay_lines, report_of, running_worker

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


@pytest.mark.integration
@pytest.mark.slow
def test_a_partition_that_gets_no_order_announces_its_refund_stage_to_every_owner(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """100 simulated days of xhs with partition 2's orders topic records left out (rooms that
    sell nothing) into a 3-partition worker with a 13-day refund horizon, the refund table's
    idle rule at 2 s and whole idle partitions never following within the run
    (`LIVEPULSE_HORIZON_IDLE_S=600`): partition 2's orders horizon follows the others'
    (`Ledger.follow_idle_orders`), its order fold runs and freezes its periods' second stage,
    and it announces the refund claims' months (`PeriodsClosed.refunds_through`) as the
    others do: every owner has every source's second stage through the same month and holds
    no refund row unfolded, and the merged report's refund claims of each of those months
    and every 3rd of their days kept are frozen with the observed value of the truth of the
    records replayed cut to the period (1e-9). With the refund table's idle rule off
    (`LIVEPULSE_REFUND_IDLE_S=0`) partition 2 never announces and the owners hold every
    source's refund rows (checked by hand; in process:
    tests/agents/core/test_period_rows.py)."""
    from streams.tools.simulator.period_truth import PeriodCut
    from tests.agents.core.test_merge import partition_of
    from tests.streams.test_membership import topic_and_key
    from tests.streams.test_month_rows import _simulated

    partitions = 3
    lines, _truth = _simulated(100, 0.3, 5)
    kept = [
        line
        for line in lines
        if topic_and_key(line)[0] != "live.orders"
        or partition_of(topic_and_key(line)[1], partitions) != 2
    ]
    assert 0 < len(kept) < len(lines)
    settings = _fold_settings(
        kafka_bootstrap,
        "norefunds",
        partitions,
        horizon_idle_s=600.0,
        refund_idle_s=2.0,
        refund_horizon_days=REFUND_HORIZON_DAYS,
    )
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "kept.jsonl", kept)
        _settled(settings, worker)
        deadline = time.monotonic() + 90
        while True:  # partition 2's orders partition idle for 2 s, then its fold and take
            rows = worker.status()["month_rows"]["period_rows"]
            owners = set(rows["owner_refunds_through"].values())
            if (None not in owners and not rows["refund_rows_held_at_owner"]) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(1)
        _settled(settings, worker)
        report = report_of(worker)
        rows = worker.status()["month_rows"]["period_rows"]
        assert worker.stop() == 0, worker.tail()
        snapshots = asyncio.run(newest_snapshots(settings))
        states = {p: load_state(snapshot.blob)[0] for p, snapshot in snapshots.items()}
    through = rows["owner_refunds_through"]
    month = through["2"]
    assert month is not None and month >= "2024-08", rows
    assert through == dict.fromkeys(("0", "1", "2"), month), rows
    assert rows["refund_rows_held_at_owner"] == 0, rows
    assert sorted(states) == [0, 1, 2]
    for state in states.values():
        assert state.period_refund_sources_through == dict.fromkeys(range(3), month)
    assert states[2].period_refunds_sent_through == month and not states[2].orders

    got = report["periods"]["claims"]
    whole = PeriodCut([line.decode() for line in kept])
    compared = 0
    for kind, stride in ((MONTH, 1), (DAY, 3)):
        keys = [e["period"] for e in got["live_aov"][kind] if e["period"][:7] <= month]
        for key in keys[::stride]:
            truth = whole.claims(lambda ts, key=key, kind=kind: period_key(kind, ts) == key)
            for claim_id in REFUND_CLAIMS:
                mine = next(e for e in got[claim_id][kind] if e["period"] == key)
                assert mine["frozen"] and not mine.get("folded"), (claim_id, mine)
                expected = truth[claim_id]["observed"]
                if expected is None or mine["observed"] is None:
                    assert mine["observed"] is expected, (claim_id, key)
                else:
                    assert math.isclose(mine["observed"], expected, rel_tol=1e-9), (claim_id, key)
                compared += 1
    assert compared > 20, compared
