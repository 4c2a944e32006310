#!/usr/bin/env python3
"""Replay a fixture into a fresh stack once, then stay up (the compose `replayer` service).

    replay-once [--marker PATH] -- livepulse replay FILE --bootstrap kafka:9092

Runs the replay command only when no contract topic has ever held a record (every end offset
is 0), so a later `docker compose up`, a restart of the container or a second stack on the
same Kafka volume never sends the fixture again; `docker compose down -v` starts over. Then
it writes the marker file (the container's healthcheck) and waits for SIGTERM, so that
`docker compose up --wait` counts it healthy instead of a one-shot that exited. A failed
replay exits with its status and leaves a mark in the container, so that its restarts keep
failing (the topics hold part of the fixture: start over with `docker compose down -v`)
instead of passing for a done replay. The broker and topics come from the `LIVEPULSE_*`
settings.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.runtime.settings import Settings

DEFAULT_MARKER = Path("/tmp/livepulse-replay.done")  # noqa: S108 - the container's own /tmp


async def records_ever_written(settings: Settings) -> int:
    """The sum of the contract topics' end offsets: 0 on a fresh stack."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs())
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, partition)
            for topic in settings.source_topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        return sum(ends.values())
    finally:
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="replay-once", description=__doc__.splitlines()[0])
    parser.add_argument("--marker", type=Path, default=DEFAULT_MARKER)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the replay command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the replay command after --")
    failed_mark = args.marker.with_suffix(".failed")
    args.marker.unlink(missing_ok=True)
    written = asyncio.run(records_ever_written(Settings()))
    if written and failed_mark.exists():
        print(  # noqa: T201
            "replay-once: an earlier replay in this container failed part-way "
            f"({failed_mark.read_text(encoding='utf-8').strip()}) and the topics hold "
            f"{written} records, part of the fixture: start over with `docker compose down -v`",
            file=sys.stderr,
        )
        return 1
    if written:
        outcome = f"not replayed: the contract topics already hold {written} records"
    else:
        done = subprocess.run(command, check=False)  # noqa: S603 - the container's own command
        if done.returncode != 0:
            failed_mark.write_text(f"exit {done.returncode}\n", encoding="utf-8")
            print(f"replay-once: the replay failed (exit {done.returncode})", file=sys.stderr)  # noqa: T201
            return done.returncode
        failed_mark.unlink(missing_ok=True)
        outcome = "replayed"
    # Stay up (healthy) until `docker compose stop`/`down`; SIGTERM ends with status 0 (set
    # before the marker, which is what tells anyone that this is up).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    args.marker.write_text(outcome + "\n", encoding="utf-8")
    print(f"replay-once: {outcome}", file=sys.stderr)  # noqa: T201
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
