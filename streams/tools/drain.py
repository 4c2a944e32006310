"""Wait until a worker has processed everything on its topics (its /status against end offsets)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from streams.runtime.settings import Settings
from streams.runtime.topics import EndOffsets


class NotDrained(TimeoutError):
    """The worker did not catch up with the topics in time."""


@dataclass(frozen=True)
class DrainResult:
    """Where the worker stood when it had caught up."""

    seconds: float
    records: int  # records on the watched partitions (sum of end offsets)
    status: dict[str, Any]


def fetch(url: str, timeout_s: float = 5.0) -> bytes:
    """GET a document's bytes (blocking; run it in a thread from async code)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (checked above)
        body: bytes = response.read()
        return body


def fetch_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET a JSON document (blocking)."""
    return orjson.loads(fetch(url, timeout_s))


def lagging(status: dict[str, Any], ends: dict[tuple[str, int], int]) -> dict[str, int]:
    """Records each partition still has to process (`"topic:partition": n`), lagging ones only."""
    positions: dict[str, int] = status.get("positions", {})
    lag = {}
    for (topic, partition), end in ends.items():
        behind = end - positions.get(f"{topic}:{partition}", 0)
        if behind > 0:
            lag[f"{topic}:{partition}"] = behind
    return lag


async def wait_drained(
    bootstrap: str | Settings,
    status_url: str,
    topics: Iterable[str],
    timeout_s: float = 120.0,
    *,
    quiet_s: float = 0.5,
    poll_s: float = 0.2,
    progress: Callable[[int, int], None] | None = None,
) -> DrainResult:
    """Wait until the worker at `status_url` has processed every record of `topics`.

    "Processed" means its /status position of every partition has reached the partition's end
    offset, and neither the end offsets nor the positions changed for `quiet_s`. Raises
    `NotDrained` (with the lag) after `timeout_s`. `progress` is told (records processed,
    records on the topics) at every poll the worker answers.
    """
    settings = bootstrap if isinstance(bootstrap, Settings) else Settings(bootstrap=bootstrap)
    names = list(topics)
    started = time.monotonic()
    deadline = started + timeout_s
    last: tuple[Any, ...] | None = None
    stable_since = 0.0
    lag: dict[str, int] = {}
    async with EndOffsets(settings) as read_ends:
        while True:
            ends = {(tp.topic, tp.partition): end for tp, end in (await read_ends(names)).items()}
            try:
                status = await asyncio.to_thread(fetch_json, status_url)
            except OSError as exc:
                status, lag = {}, {"<unreachable>": 1}
                error: Exception | None = exc
            else:
                error = None
                lag = lagging(status, ends)
                if progress is not None:
                    total = sum(ends.values())
                    progress(total - sum(lag.values()), total)
            now = time.monotonic()
            if error is None and not lag:
                snapshot = (tuple(sorted(ends.items())), tuple(sorted(status["positions"].items())))
                if snapshot != last:
                    last, stable_since = snapshot, now
                elif now - stable_since >= quiet_s:
                    return DrainResult(now - started, sum(ends.values()), status)
            else:
                last = None
            if now >= deadline:
                raise NotDrained(
                    f"worker at {status_url} not drained after {timeout_s:.0f}s; lag {lag}"
                    + (f" ({error})" if error else "")
                )
            await asyncio.sleep(poll_s)
