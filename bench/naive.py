"""Contender (b), the floor: a naive faust agent, one event at a time, validated with pydantic.

One agent per contract topic iterates the stream value by value and takes each into a `Ledger`
and an `OperatorBoard` through the core's `ingest` (the worker's per-record step); invalid
records are only counted. When `--expect` records were seen it writes
one JSON object (records, first and last consumed, wall clock) to `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faust

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from streams.runtime.app import broker_credentials
from streams.runtime.batch_consumer import COMMITTED_SCHEME
from streams.runtime.settings import Settings


def build(settings: Settings, app_id: str, expect: int, out: Path) -> faust.App:
    app = faust.App(
        app_id,
        env={},
        broker="kafka://" + settings.bootstrap,
        broker_consumer=f"{COMMITTED_SCHEME}://" + settings.bootstrap,
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=f"/tmp/{app_id}",  # noqa: S108 (a throwaway benchmark app)
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    ledger, board = Ledger(), OperatorBoard(settings.window_grace_ms)
    state: dict[str, Any] = {"seen": 0, "first": None, "done": False}

    async def handle(stream: Any) -> None:
        async for value in stream:
            if state["first"] is None:
                state["first"] = time.time()
            ingest(value, ledger, board)
            state["seen"] += 1
            if state["seen"] >= expect and not state["done"]:
                state["done"] = True
                out.write_text(
                    json.dumps(
                        {
                            "records": state["seen"],
                            "first": state["first"],
                            "last": time.time(),
                            "valid": ledger.counts.valid,
                        }
                    )
                )

    for name in settings.source_topics:
        topic = app.topic(name, value_serializer="raw", key_serializer="raw")
        app.agent(topic, name=f"naive.{name}")(handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    settings = Settings(bootstrap=args.bootstrap, topic_prefix=args.prefix)
    app = build(settings, args.app_id, args.expect, args.out)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
