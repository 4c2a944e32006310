"""Replay a JSON Lines file into the contract topics, byte for byte, in order per key.

Each line is one record: its value is the line's bytes (without the `\\n`), unchanged; its topic
is the contract topic of its `type` and its key the contract key (`schemas.record_key`). A line
that cannot be routed by type (not JSON, not an object, no known `type`) goes to the fallback
topic (`live.interactions` by default) so the worker dead-letters it like any other bad record
a producer might write; with no fallback topic it is counted as rejected and not sent.

Per-key order holds because a key always maps to the same partition and aiokafka keeps at most
one batch in flight per partition (with idempotence, retries cannot reorder either).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from schemas import TOPIC_BY_TYPE, record_key
from streams.runtime.settings import Settings
from streams.tools.progress import bar

DEFAULT_FALLBACK_TOPIC: Final[str] = "live.interactions"
# Sends not yet acknowledged before the oldest is awaited: bounds memory, keeps batches full.
_WINDOW: Final[int] = 20_000
_MAX_REQUEST_BYTES: Final[int] = 1 << 20
#: How long the producer holds a batch open for more records (aiokafka's `linger_ms`): fuller
#: requests at a high rate; each record's Kafka timestamp is taken when it is added to its
#: batch, so a consumer's processing lag counts its linger too (bench/README.md, latency).
LINGER_MS: Final[int] = 10


@dataclass
class ReplaySummary:
    """What a replay did."""

    sent: int = 0  # lines published to their contract topic
    fallback: int = 0  # lines published to the fallback topic (not routable by type)
    rejected: int = 0  # lines not published (no fallback topic, or larger than a request)
    seconds: float = 0.0
    by_topic: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return self.sent + self.fallback + self.rejected

    @property
    def events_per_s(self) -> float:
        return (self.sent + self.fallback) / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        return (
            f"replayed {self.lines} lines in {self.seconds:.2f} s "
            f"({self.events_per_s:,.0f} records/s): {self.sent} to contract topics, "
            f"{self.fallback} to the fallback topic, {self.rejected} rejected"
        )


@dataclass(frozen=True, slots=True)
class Route:
    """Where one line goes: a topic and key, or nowhere (`topic` None)."""

    topic: str | None
    key: bytes | None
    ts: int | None = None
    fallback: bool = False


def route(line: bytes, settings: Settings, fallback_topic: str | None) -> Route:
    """The contract topic and key of a line, or the fallback topic (or None) if it has none."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        event_type = obj.get("type")
        if isinstance(event_type, str) and event_type in TOPIC_BY_TYPE:
            ts = obj.get("ts")
            return Route(
                settings.topic(TOPIC_BY_TYPE[event_type]),
                record_key(obj).encode(),
                ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
            )
    if not fallback_topic:
        return Route(None, None, fallback=True)
    return Route(settings.topic(fallback_topic), None, fallback=True)


def read_lines(path: Path) -> Iterator[bytes]:
    """The file's lines without their `\\n` (a final newline ends the last line; `\\r` stays)."""
    with path.open("rb") as handle:
        for raw in handle:
            yield raw[:-1] if raw.endswith(b"\n") else raw


class Progress:
    """A progress bar of a replay on a terminal (lines done of `total`, rate, time left: see
    `streams.tools.progress`); elsewhere (a pipe, a log) only the summary line at the end."""

    def __init__(self, stream: IO[str] | None = None, total: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = total
        self._bar: tqdm[Any] | None = None

    def update(self, summary: ReplaySummary, started: float, force: bool = False) -> None:
        if self._bar is None:
            self._bar = bar(desc="replay", total=self.total, unit="lines", stream=self.stream)
        if self._bar.disable:
            return
        done = summary.lines
        if force or done - self._bar.n >= 500:  # tqdm.update per line would slow the replay
            self._bar.update(done - self._bar.n)

    def finish(self, summary: ReplaySummary) -> None:
        if self._bar is not None:
            self.update(summary, 0.0, force=True)
            self._bar.close()
        self.stream.write(summary.describe() + "\n")
        self.stream.flush()


class _Pacer:
    """Sleeps so that sends follow a fixed rate, or the event time sped up, or neither."""

    def __init__(self, rate: float | None, speedup: float | None) -> None:
        if rate is not None and speedup is not None:
            raise ValueError("give a rate or a speed-up, not both")
        if (rate is not None and rate <= 0) or (speedup is not None and speedup <= 0):
            raise ValueError("rate and speed-up must be positive")
        self.rate, self.speedup = rate, speedup
        self.started = time.monotonic()
        self.first_ts: int | None = None

    def start(self) -> None:
        """Start the clock (at the first send, not before the producer is connected)."""
        self.started = time.monotonic()

    async def wait(self, index: int, ts: int | None) -> None:
        if self.rate is not None:
            target = self.started + index / self.rate
        elif self.speedup is not None and ts is not None:
            if self.first_ts is None:
                self.first_ts = ts
            # A late event (ts before the first) goes out at once.
            target = self.started + max(0, ts - self.first_ts) / 1000.0 / self.speedup
        else:
            return
        delay = target - time.monotonic()
        if delay > 0.002:
            await asyncio.sleep(delay)


async def replay(
    path: Path,
    settings: Settings,
    *,
    rate: float | None = None,
    speedup: float | None = None,
    fallback_topic: str | None = DEFAULT_FALLBACK_TOPIC,
    create_topics: bool = True,
    progress: Progress | None = None,
    linger_ms: int = LINGER_MS,
) -> ReplaySummary:
    """Publish every line of `path` (see the module docstring); return what was done.

    `rate` is records per second, `speedup` a factor on event time (`ts`); neither means as fast
    as the broker takes them; `linger_ms` the producer's linger (`LINGER_MS`). Raises if the
    broker refuses a record after its retries.
    """
    pacer = _Pacer(rate, speedup)
    if create_topics:
        from streams.runtime.topics import create_topics as create

        names = {settings.topic(t) for t in TOPIC_BY_TYPE.values()}
        if fallback_topic:
            names.add(settings.topic(fallback_topic))
        await create(settings, sorted(names))
    producer = AIOKafkaProducer(
        client_id="livepulse-replay",
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=_MAX_REQUEST_BYTES,
        **settings.kafka_client_kwargs(),
    )
    summary = ReplaySummary()
    by_topic: collections.Counter[str] = collections.Counter()
    pending: collections.deque[asyncio.Future[object]] = collections.deque()
    await producer.start()
    pacer.start()
    started = pacer.started
    try:
        for index, line in enumerate(read_lines(path)):
            where = route(line, settings, fallback_topic)
            if where.topic is None or len(line) + len(where.key or b"") > _MAX_REQUEST_BYTES - 512:
                summary.rejected += 1
                continue
            await pacer.wait(index, where.ts)
            pending.append(await producer.send(where.topic, line, key=where.key))
            by_topic[where.topic] += 1
            if where.fallback:
                summary.fallback += 1
            else:
                summary.sent += 1
            if len(pending) >= _WINDOW:
                await pending.popleft()
            if progress is not None:
                progress.update(summary, started)
        await producer.flush()
        for fut in pending:
            await fut  # raises the first delivery error, if any
    finally:
        await producer.stop()
    summary.seconds = time.monotonic() - started
    summary.by_topic = dict(sorted(by_topic.items()))
    if progress is not None:
        progress.finish(summary)
    return summary
