"""`python -m bench.changelog_parts --run soak-XXXX --stream FILE --at 150 --at 290`: a finished
`bench.soak --worker` run's snapshots read back from its changelog topic on the broker (every
head written, with its chunks as they were before the next snapshot's tombstones, if the log
cleaner has not removed them yet), and at each `--at` event day each partition's newest
snapshot taken at or before it, summed by part (`bench.soak_profile.part_sizes`) and by
frozen claim: what grows inside a worker between two days (issue 17, session 14). JSON on
stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.core import Ledger, OperatorBoard
from agents.core.persist import load_state
from bench.soak_profile import packed_kb, part_sizes
from streams.runtime.settings import Settings
from streams.runtime.statestore import SnapshotHead, _assemble, _head_key

DAY_MS = 86_400_000


async def read_all(settings: Settings, partition: int) -> list[tuple[SnapshotHead, bytes]]:
    """Every snapshot of `partition` whose chunks are still in the log, oldest first."""
    tp = TopicPartition(settings.changelog, partition)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
        **settings.kafka_client_kwargs(),
    )
    await consumer.start()
    found: list[tuple[SnapshotHead, bytes]] = []
    chunks: dict[bytes, bytes] = {}
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.key is None or record.value is None:
                    continue  # tombstones ignored: the older snapshots are what we want
                if record.key == _head_key(partition):
                    head = SnapshotHead.from_json(record.value)
                    blob = _assemble(head, chunks)
                    if blob is not None:
                        found.append((head, blob))
                    chunks.clear()
                else:
                    chunks[record.key] = record.value
    finally:
        await consumer.stop()
    return found


T = TypeVar("T")


def newest_at(
    snapshots: Sequence[tuple[SnapshotHead, bytes]],
    day: float,
    restore: Callable[[bytes], tuple[float, T]],
) -> tuple[float, bytes, T] | None:
    """The newest of `snapshots` (in the order written, so their event days rise) whose event
    day is at or before `day`, as (its day, its bytes, what `restore` made of it), by
    bisection: each probe restores one state."""
    low, high, best = 0, len(snapshots) - 1, None
    while low <= high:
        middle = (low + high) // 2
        blob = snapshots[middle][1]
        snap_day, restored = restore(blob)
        if snap_day <= day:
            best, low = (snap_day, blob, restored), middle + 1
        else:
            high = middle - 1
    return best


def _restored(blob: bytes, first_ts: int) -> tuple[float, tuple[Ledger, OperatorBoard]]:
    ledger, board = load_state(blob)
    return ((ledger.max_ts or first_ts) - first_ts) / DAY_MS, (ledger, board)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="the run's app id (soak-XXXXXXXXXX)")
    parser.add_argument("--stream", type=Path, required=True, help="its stream (day 0)")
    parser.add_argument("--bootstrap", default="127.0.0.1:19200")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--at", type=float, action="append", required=True)
    args = parser.parse_args()
    with args.stream.open("rb") as handle:
        first_ts = int(json.loads(handle.readline())["ts"])
    settings = Settings(bootstrap=args.bootstrap, app_id=args.run, topic_prefix=f"{args.run}.")
    out: dict[str, Any] = {"run": args.run, "at": {}}
    per_partition = {p: asyncio.run(read_all(settings, p)) for p in range(args.partitions)}
    out["snapshots_found"] = {p: len(v) for p, v in per_partition.items()}
    for day in sorted(args.at):
        parts: dict[str, float] = {}
        claims: dict[str, float] = {}
        taken: dict[int, float] = {}
        # The order fold's buyers by where their rows are (session 17): summed at their
        # owners, received there and not announced yet, at the sources; and retired.
        buyers = {"at_owners": 0, "received": 0, "at_sources": 0, "retired": 0}
        announced: list[str] = []
        total = 0
        for p, snapshots in per_partition.items():
            best = newest_at(snapshots, day, lambda blob: _restored(blob, first_ts))
            if best is None:
                continue
            snap_day, blob, (ledger, board) = best
            taken[p] = round(snap_day, 2)
            total += len(blob)
            fold = ledger.order_fold
            buyers["at_owners"] += len(fold.users)
            buyers["received"] += sum(len(users) for users in fold.rows_in.values())
            buyers["at_sources"] += sum(len(users) for users in fold.months.values())
            buyers["retired"] += fold.retired_users
            announced.append(fold.owner_through)
            for name, kb in part_sizes(ledger, board).items():
                parts[name] = parts.get(name, 0.0) + kb
            for claim_parts in ledger.frozen_parts.values():
                for claim_id, part in claim_parts.items():
                    claims[claim_id] = claims.get(claim_id, 0.0) + packed_kb(part)
        out["at"][str(day)] = {
            "snapshot_days": taken,
            "snapshot_kb": total / 1000,
            "order_fold_buyers": buyers,
            # The oldest month every source had announced at an owner's last retirement.
            "owners_through": min(announced, default=""),
            "parts_kb": {k: round(v, 1) for k, v in sorted(parts.items(), key=lambda i: -i[1])},
            "frozen_by_claim_kb": {
                k: round(v, 1) for k, v in sorted(claims.items(), key=lambda i: -i[1])
            },
        }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
