"""Contender (a), the ceiling: a plain aiokafka batch consumer (`getmany`) feeding the metric core.

Per record: `schemas.decode` (one pydantic validation from bytes), `Ledger.apply` (under the
worker's dedupe window), `OperatorBoard.observe`, as the worker does, with no faust, no
dead-letter publishing, no Prometheus. With `--transport-only`, contender (t): the same
consumer doing nothing per record (the limit Python's Kafka client reaches here). Prints one
JSON line: records, first and last consumed (wall clock, s).
"""

from __future__ import annotations

import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest

try:  # a fetch decoded at once, as the worker does; the baseline's core ((a0)) may not have it
    from agents.core.ingest import decode_values, ingest_decoded
except ImportError:  # a tree before issue 19's Session 9: `ingest` one value at a time
    decode_values = None  # type: ignore[assignment]
from bench.shared import consumed, contender_parser, contender_settings
from streams.runtime.gcpace import GcPacer
from streams.runtime.settings import ISOLATION_LEVEL, Settings


async def consume(
    settings: Settings, group: str, expect: int, timeout_s: float, transport_only: bool = False
) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        *settings.source_topics,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=ISOLATION_LEVEL,
        max_poll_records=10_000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **settings.kafka_client_kwargs(),
    )
    ledger = Ledger(settings.dedupe_window_ms)
    board = OperatorBoard(settings.window_grace_ms, gpm_denominator=settings.gpm_denominator)
    # The worker's paced garbage collection too, so (c)/(a) compares the consuming paths.
    pacer = GcPacer(settings.gc_pace_records).install() if settings.gc_pace_records else None
    if pacer is not None:
        pacer.start()
    await consumer.start()
    seen = 0
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            if batches and first is None:
                first = time.time()
            for records in batches.values():
                if not transport_only:
                    if decode_values is None:
                        for record in records:
                            ingest(record.value, ledger, board)
                    else:  # a fetch decoded at once, as the worker does (`apply_batch`)
                        for decoded in decode_values([record.value for record in records]):
                            ingest_decoded(decoded, ledger, board)
                seen += len(records)
                if pacer is not None:
                    pacer.after(len(records))
        last = time.time()
    finally:
        await consumer.stop()
    return consumed(seen, first, last, ledger.counts.valid)


def main() -> None:
    parser = contender_parser()
    parser.add_argument("--transport-only", action="store_true")
    args = parser.parse_args()
    settings = contender_settings(args)
    result = asyncio.run(
        consume(settings, args.group, args.expect, args.timeout, args.transport_only)
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
