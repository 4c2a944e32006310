"""What the benchmark's runs share (`bench.run` and `bench.fleet`): the summary of repeated
measurements and the removal of a run's own topics."""

from __future__ import annotations

import asyncio
import statistics
import sys

from streams.runtime.settings import Settings
from streams.runtime.topics import delete_run_topics


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def delete_app_topics(settings: Settings, app_id: str) -> None:
    """faust creates `<app id>-__assignor-__leader`; remove it (never the shared topics)."""
    own = settings.model_copy(
        update={"app_id": app_id, "contract_topics": (), "deadletter_topic": "-none-"}
    )
    try:
        asyncio.run(delete_run_topics(own))
    except Exception as exc:  # noqa: BLE001 (clean-up only)
        print(f"bench: could not delete {app_id}'s topics: {exc}", file=sys.stderr)
