"""Issue 17: `group_spend_multiple`'s closed months folded across a worker's partitions through
the month-rows topic (streams/runtime/monthrows.py): the encoding, and a worker with
`LIVEPULSE_FOLD_SESSIONS` on the real broker, stopped and restarted on its state mid-stream,
against the fixture's truth file."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from agents.core import build_report
from agents.core.ledger import MonthClosed, MonthRow
from schemas import decode as decode_event
from streams.runtime.monthrows import decode, encode, owner_of
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.drain import wait_drained
from streams.tools.worker_process import WorkerProcess
from tests.agents.core.test_merge import partition_of
from tests.agents.core.test_retention import DAY, _check_summarized, _summarizing
from tests.streams.test_membership import PARTITIONS
from tests.support.live import fixture_lines, replay_lines, report_of, run_settings


def test_rows_and_announcements_read_back_as_written() -> None:
    row = MonthRow(2, "m-1", "2024-07", "u-7", 1_719_792_020_971, 12_345)
    none = MonthRow(0, "m-2", "2024-07", "u-8", None, 99)
    closed = MonthClosed(1, "2024-07", frozenset({("m-1", "2024-07"), ("m-3", "2024-06")}))
    empty = MonthClosed(1, "2024-08", frozenset())
    for message in (row, none, closed, empty):
        assert decode(encode(message)) == message
    assert decode(b"not json") is None and decode(b'["other"]') is None and decode(None) is None


def test_a_row_goes_to_the_partition_kafka_gives_its_user() -> None:
    for user in ("u-1", "u-4274", "u-1531", "用户-9"):
        assert owner_of(user, 3) == partition_of(user.encode(), 3)


def _settled(settings: Settings, worker: WorkerProcess) -> None:
    """Drained: the contract topics, then the month-rows topic (rows are produced after the
    batch that closed their month, announcements after their rows), twice over."""
    url = f"{worker.base_url}/status"
    asyncio.run(wait_drained(settings, url, settings.source_topics, 120))
    for _ in range(2):
        asyncio.run(wait_drained(settings, url, settings.state_topics, 120, quiet_s=2.0))


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_folds_closed_months_across_partitions_through_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`LIVEPULSE_FOLD_SESSIONS=true`, 3 partitions, a 2-day window: the xhs fixture (July and
    August 2024) replayed in two halves into a worker stopped with SIGTERM and restarted on
    its state directory in between. July's (merchant, month)s are sent as rows by each
    partition, combined by their users' owners (`retention.folded_months` > 0), and every
    claim, `group_spend_multiple` included, equals the keep-everything ledger's and the truth
    file: no row lost or counted twice across the restart."""
    settings = run_settings(
        kafka_bootstrap,
        prefix="monthrows",
        partitions=PARTITIONS,
        fold_sessions=True,
        dedupe_window_s=2 * DAY / 1000,
    )
    assert settings.month_rows_topic is not None
    asyncio.run(create_topics(settings, all_topics(settings)))
    lines = fixture_lines("xhs")
    half = len(lines) * 3 // 4
    statuses = []
    try:
        for part, chunk in enumerate((lines[:half], lines[half:])):
            worker = WorkerProcess(settings, tmp_path / f"worker-{part}.log")
            try:
                worker.start()
                worker.wait_ready(timeout_s=90)
                replay_lines(settings, tmp_path / f"xhs-{part}.jsonl", chunk)
                _settled(settings, worker)
                report = report_of(worker)
                statuses.append(worker.status())
            finally:
                assert worker.stop() == 0, worker.tail()
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
    restarted = statuses[1]["partitions"]
    assert {p["restored_from"] for p in restarted.values()} <= {"local", "changelog"}, restarted
    sent = [s["month_rows"] for s in statuses]
    assert sum(s["sent_rows"] for s in sent) > 0 and sent[1]["received"] > 0, sent
    decoded = [decode_event(line) for line in lines]
    # As many (merchant, month)s combined as one ledger fed everything folds (July's of the
    # merchants with every session ended).
    one = _summarizing(decoded, 2 * DAY, fold_months=True)
    assert report["retention"]["folded_months"] == one.folded_months > 0, report["retention"]
    everything = build_report(_summarizing(decoded, None))
    _check_summarized(report, everything, "xhs.jsonl")


def test_a_take_s_announcement_waits_for_its_rows_and_for_earlier_takes() -> None:
    """The sender's order on the wire: a take's rows acknowledged before its announcement is
    sent (to every partition), and a later take after an earlier one, however slow the
    broker acknowledges; `settle` returns once everything submitted is acknowledged."""
    from streams.runtime.monthrows import MonthRowSender

    sent: list[tuple[str, int]] = []
    acked: list[tuple[str, int]] = []

    class SlowTopic:
        async def send(self, key: bytes | None, value: bytes, partition: int) -> Any:
            kind = str(decode(value).__class__.__name__)
            if kind == "MonthClosed":  # every row sent so far acknowledged first
                rows = [s for s in sent if s[0] == "MonthRow"]
                assert len(rows) == len([a for a in acked if a[0] == "MonthRow"])
            sent.append((kind, partition))
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            async def ack() -> None:
                await asyncio.sleep(0.01 if kind == "MonthRow" else 0)
                acked.append((kind, partition))
                future.set_result(None)

            asyncio.ensure_future(ack())
            return future

    async def run() -> None:
        sender = MonthRowSender(SlowTopic(), 3, lambda n: None)
        row = MonthRow(0, "m-1", "2024-07", "u-1", 5, 10)
        closed = MonthClosed(0, "2024-07", frozenset())
        sender.submit([row, row._replace(user="u-2"), closed])
        sender.submit([row._replace(month="2024-08"), closed._replace(through="2024-08")])
        await sender.settle()
        assert sender.sent_rows == 3 and sender.sent_announcements == 6

    asyncio.run(run())
    kinds = [kind for kind, _partition in sent]
    assert kinds == ["MonthRow"] * 2 + ["MonthClosed"] * 3 + ["MonthRow"] + ["MonthClosed"] * 3
    assert sorted(p for kind, p in sent[2:5]) == [0, 1, 2]
    assert len(acked) == len(sent)
