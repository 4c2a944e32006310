"""What the benchmark's runs share (`bench.run` and `bench.fleet`): the summary of repeated
measurements, the removal of a run's own topics, and the options and result line of the
in-process contenders (`bench.ceiling`, `bench.quix`) that `bench.run.run_ceiling` starts."""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys

from streams.runtime.settings import Settings
from streams.runtime.topics import delete_run_topics


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated measurements; NaN with `n` 0 when none could
    be taken (a pass too short for the kernel's CPU clock, which counts in 10 ms ticks: the
    test harness's 3,000-record transport pass measured 0 CPU seconds under load)."""
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
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


def contender_parser() -> argparse.ArgumentParser:
    """The options `bench.run.run_ceiling` gives an in-process contender's command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--timeout", type=float, default=1800.0)
    return parser


def contender_settings(args: argparse.Namespace) -> Settings:
    """The settings a contender consumes with: the run's topics on the given broker."""
    return Settings(bootstrap=args.bootstrap, topic_prefix=args.prefix)


def consumed(records: int, first: float | None, last: float, valid: int) -> dict[str, float]:
    """A contender's result line: records consumed, wall clock (s) of the first and last, and
    the valid events (`first` is `last` when nothing came)."""
    return {"records": records, "first": first or last, "last": last, "valid": valid}
