"""What rebuilding the worker's refund table costs at a start (issue 17): every orders-topic
record of a stream decoded and applied into a `WorkerRefundTable` (no broker: the fetch comes
on top), fetch by fetch as the reader hands them (up to `FETCH` records of one partition,
`WorkerRefundTable.apply_fetch`: each decoded at once, since session 17). Usage:
`python -m bench.refund_restart STREAM.jsonl [...]`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
from aiokafka.partitioner import murmur2

from schemas import TOPIC_BY_TYPE, record_key
from streams.runtime.refunds import WorkerRefundTable

DAY_MS = 86_400_000
PARTITIONS = 4
FETCH = 500


def measure(path: Path) -> str:
    lines = 0
    orders: list[tuple[int, bytes]] = []
    with path.open("rb") as handle:
        for raw in handle:
            lines += 1
            line = raw.rstrip(b"\n")
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and TOPIC_BY_TYPE.get(obj.get("type")) == "live.orders":
                key = record_key(obj).encode()  # Kafka's default partitioner
                orders.append(((murmur2(key) & 0x7FFFFFFF) % PARTITIONS, line))
    parts: dict[int, list[bytes | None]] = {}
    for partition, line in orders:
        parts.setdefault(partition, []).append(line)
    table = WorkerRefundTable(7 * DAY_MS, None, 90 * DAY_MS)
    began = time.perf_counter()
    for start in range(0, max(map(len, parts.values()), default=0), FETCH):
        for partition, values in parts.items():
            chunk = values[start : start + FETCH]
            if chunk:
                table.apply_fetch(partition, range(start, start + len(chunk)), chunk)
    took = time.perf_counter() - began
    held = sum(1 for _ in table.table.refunds())
    return (
        f"{path}: {lines:,} lines, {len(orders):,} orders-topic records read in {took:.3f} s "
        f"({len(orders) / took:,.0f} records/s), {held:,} refunds held"
    )


def main() -> None:
    for name in sys.argv[1:]:
        print(measure(Path(name)), flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
