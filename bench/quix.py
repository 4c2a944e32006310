"""Contender (q), a peer: a Quix Streams application doing the worker's per-record work.

One `StreamingDataFrame` per contract topic (values as bytes), and per record the core's
`agents.core.ingest.ingest` (`schemas.decode`, `Ledger.apply` under the worker's dedupe
window, `OperatorBoard.observe`), as the worker and (a) do: what a data engineer would write
with Quix Streams for the same figures. Quix's own machinery (librdkafka through
confluent-kafka, its row and context objects, at-least-once checkpoints every 5 s) is what
is measured against the worker's. Stateless (the ledgers live in the process, as in (a)), so
no RocksDB store or changelog topic is created: a ledger and a board per partition (the
record's, from Quix's `message_context`), as in (a) and the worker (session 19: one ledger
over every partition refused as expired about two fifths of the bench's stream). Prints one
JSON line: records, first and last consumed (wall clock, s), valid.

Quix Streams is in the optional `bench` dependency group (pyproject.toml), pinned.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from quixstreams import Application, message_context

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from bench.shared import consumed, contender_parser, contender_settings
from streams.runtime.settings import Settings


def consume(settings: Settings, group: str, expect: int, timeout_s: float) -> dict[str, Any]:
    app = Application(
        broker_address=settings.bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        auto_create_topics=False,
        use_changelog_topics=False,
        loglevel=logging.WARNING,
    )
    parts: dict[int, tuple[Ledger, OperatorBoard]] = {}
    seen = 0
    first: float | None = None

    def step(value: bytes) -> None:
        nonlocal seen, first
        if first is None:
            first = time.time()
        partition = message_context().partition
        part = parts.get(partition)
        if part is None:
            board = OperatorBoard(
                settings.window_grace_ms, gpm_denominator=settings.gpm_denominator
            )
            part = parts[partition] = (Ledger(settings.dedupe_window_ms), board)
        ingest(value, *part)
        seen += 1
        if seen >= expect:
            app.stop()

    for name in settings.source_topics:
        sdf = app.dataframe(app.topic(name, value_deserializer="bytes"))
        sdf.update(step)
    app.run(timeout=timeout_s)
    return consumed(seen, first, time.time(), sum(p[0].counts.valid for p in parts.values()))


def main() -> None:
    args = contender_parser().parse_args()
    result = consume(contender_settings(args), args.group, args.expect, args.timeout)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
