"""Issue 17: with the session fold and a refund horizon each worker rebuilds its refund table
from the whole orders topic at each start, so the orders topic must keep its records for the
refund horizon + the dedupe window (README, "State"). A worker that creates the topic gives it
that retention; one that finds it shorter says so at start, on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from streams.runtime.topics import (
    ORDERS_TOPIC,
    all_topics,
    check_orders_retention,
    create_topics,
    delete_run_topics,
    orders_retention_ms,
    orders_retention_needed_ms,
)
from streams.tools.worker_process import WorkerProcess
from tests.support.live import run_settings

DAY_MS = 86_400_000


def test_the_retention_needed_follows_the_horizons() -> None:
    settings = run_settings(
        "127.0.0.1:1", fold_sessions=True, refund_horizon_days=90, dedupe_window_s=7 * 86_400
    )
    assert orders_retention_needed_ms(settings) == 97 * DAY_MS
    assert orders_retention_needed_ms(settings.model_copy(update={"fold_sessions": False})) is None
    no_horizon = settings.model_copy(update={"refund_horizon_days": 0})
    assert orders_retention_needed_ms(no_horizon) is None


@pytest.mark.integration
def test_topics_created_with_the_fold_keep_orders_for_the_refund_horizon(
    kafka_bootstrap: str,
) -> None:
    """Created by a worker with the fold: the orders topic keeps 90 + 7 days, the others the
    broker's default; created without it (as the replayer does by default), the orders topic
    has the default too, and a worker with the fold gets a warning naming the fix."""
    on = run_settings(kafka_bootstrap, prefix="retention", fold_sessions=True)
    off = run_settings(kafka_bootstrap, prefix="retention", fold_sessions=False)

    async def run() -> tuple[int | None, int | None, str | None, str | None, str | None]:
        await create_topics(on, all_topics(on))
        await create_topics(off, all_topics(off))
        return (
            await orders_retention_ms(on),
            await orders_retention_ms(off),
            await check_orders_retention(on),
            await check_orders_retention(off.model_copy(update={"fold_sessions": True})),
            await check_orders_retention(off),
        )

    try:
        kept_on, kept_off, warn_on, warn_short, warn_off = asyncio.run(run())
    finally:
        for settings in (on, off):
            with contextlib.suppress(Exception):
                asyncio.run(delete_run_topics(settings))
    assert kept_on == orders_retention_needed_ms(on) == 97 * DAY_MS
    assert kept_off is not None and kept_off != kept_on
    assert warn_on is None and warn_off is None
    assert warn_short is not None
    assert off.topic(ORDERS_TOPIC) in warn_short and f"retention.ms={97 * DAY_MS}" in warn_short


@pytest.mark.integration
def test_a_worker_with_the_fold_warns_of_a_short_orders_retention(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`livepulse worker` as a process with `LIVEPULSE_FOLD_SESSIONS=true` over topics made
    with the broker's 7 days: it starts, and its output says the orders topic is too short."""
    folding = run_settings(kafka_bootstrap, prefix="retention", partitions=1).model_copy(
        update={"fold_sessions": True}
    )
    unfolded = folding.model_copy(update={"fold_sessions": False})
    asyncio.run(create_topics(unfolded, all_topics(unfolded)))  # the fold off: 7 days
    worker = WorkerProcess(folding, tmp_path / "worker.log")
    try:
        worker.start()
        worker.wait_ready(timeout_s=120)
        output = (tmp_path / "worker.log").read_text()
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(folding))
    assert "warning: the orders topic" in output, output[-2000:]
    assert f"retention.ms={97 * DAY_MS}" in output
