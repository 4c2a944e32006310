"""The worker's tables' ingest on the core (issue 19, session 17): the orders-topic records of a
stream into a `WorkerRefundTable`, and the groups-topic ones into a `MembershipTable`, fetch by
fetch as `MembershipReader` feeds them, no broker.

    python -m bench.table_ingest FILE [--rounds 3] [--fetch 500]
    python -m bench.table_ingest FILE --profile refund|membership [--top 30]

FILE: JSON lines (a bench data file, `~/.cache/livepulse/bench/*.jsonl`). Each record goes to
the partition Kafka's default partitioner gives its key (`schemas.record_key`, murmur2, 4
partitions, as the replayer writes them); a fetch is up to `--fetch` records of one partition,
partitions taken in turn. A table that reads a fetch at once (`apply_fetch`, from session 17)
is given each fetch whole, one that has not (the trees before) record by record (`apply`),
as each tree's reader does. Each round builds fresh tables under the default `Settings`'
window, tolerance and refund horizon and prints process CPU us a table record and a stream
line (`time.process_time`, a full collection before each pass), as JSON lines. To compare
trees, run this file with the other checkout first on `PYTHONPATH` (`PYTHONSAFEPATH=1
PYTHONPATH=<checkout> python <this tree>/bench/table_ingest.py FILE`), alternating processes.
`--profile`: one cProfile pass of that table, the `--top` functions by internal time.

`--paths plain,events` (session 18): each table read both ways in the same process, the
passes alternating (the order swapped every other round): through the plain decode
(`ReadTable.plain`, the default since session 18) and through event objects (`plain` False, as
before). A tree without `ReadTable.plain` has one path, whatever is asked.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from schemas import TOPIC_BY_TYPE, record_key
from streams.runtime.membership import MembershipTable, ReadTable
from streams.runtime.refunds import WorkerRefundTable
from streams.runtime.settings import Settings

PARTITIONS = 4

Fetch = tuple[int, list[int], list[bytes | None]]


def _fetches(lines: list[bytes], topic: str, size: int) -> list[Fetch]:
    """The topic's records as fetches: (partition, offsets, values), partitions in turn."""
    parts: dict[int, list[bytes]] = {}
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and TOPIC_BY_TYPE.get(obj.get("type")) == topic:
            key = record_key(obj).encode()
            parts.setdefault((murmur2(key) & 0x7FFFFFFF) % PARTITIONS, []).append(line)
    fetches: list[Fetch] = []
    for start in range(0, max(map(len, parts.values()), default=0), size):
        for partition, values in sorted(parts.items()):
            chunk = values[start : start + size]
            if chunk:
                offsets = list(range(start, start + len(chunk)))
                held: list[bytes | None] = list(chunk)
                fetches.append((partition, offsets, held))
    return fetches


#: The topic each table reads.
TOPICS = {"refund": "live.orders", "membership": "live.groups"}


def tables(settings: Settings) -> dict[str, Callable[[], ReadTable]]:
    """A fresh table of each kind (`TOPICS`) under the window, tolerance and refund horizon of
    `settings`, as the worker makes them."""
    return {
        "refund": lambda: WorkerRefundTable(
            settings.dedupe_window_ms, settings.future_tolerance_ms, settings.refund_horizon_ms
        ),
        "membership": lambda: MembershipTable(
            settings.dedupe_window_ms, settings.future_tolerance_ms
        ),
    }


def _feed(table: Any, fetches: list[Fetch]) -> None:
    whole = getattr(table, "apply_fetch", None)
    for partition, offsets, values in fetches:
        if whole is not None:
            whole(partition, offsets, values)
        else:
            for offset, value in zip(offsets, values, strict=True):
                table.apply(partition, offset, value)
        table.advance(partition, offsets[-1] + 1, None)


def read_paths(text: str) -> list[str]:
    """`--paths` (comma-separated: plain, events) as a list; none in a tree without
    `ReadTable.plain`, which has one path."""
    paths = [path for path in text.split(",") if path]
    return paths if hasattr(ReadTable, "plain") else []


def turn(paths: list[str], round_no: int) -> list[str]:
    """The paths of round `round_no`, in order, swapped every other round (the tree's own
    path alone, "", where there are none)."""
    return (paths if round_no % 2 == 0 else paths[::-1]) or [""]


def made(make: Callable[[], ReadTable], path: str) -> ReadTable:
    """A table from `make` read through `path` (plain, events; "": the tree's default)."""
    table = make()
    if path:
        table.plain = path == "plain"  # an attribute of the instance: this table only
    return table


def _pass(make: Callable[[], ReadTable], fetches: list[Fetch], path: str = "") -> float:
    table = made(make, path)
    gc.collect()
    began = time.process_time()
    _feed(table, fetches)
    return time.process_time() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fetch", type=int, default=500)
    parser.add_argument("--profile", choices=("refund", "membership"))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--paths", default="", help="comma-separated: plain, events (default: the tree's own)"
    )
    args = parser.parse_args()
    lines = args.file.read_bytes().splitlines()
    makers = tables(Settings())
    fetches = {name: _fetches(lines, topic, args.fetch) for name, topic in TOPICS.items()}
    paths = read_paths(args.paths)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        _pass(makers[args.profile], fetches[args.profile], paths[0] if paths else "")
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
        return 0
    for round_no in range(args.rounds):
        for name, make in makers.items():
            for path in turn(paths, round_no):
                records = sum(len(offsets) for _, offsets, _ in fetches[name])
                cpu = _pass(make, fetches[name], path)
                row = {
                    "label": args.label,
                    "round": round_no,
                    "table": name,
                    "path": path,
                    "records": records,
                    "lines": len(lines),
                    "us_a_record": round(cpu / records * 1e6, 3),
                    "us_a_line": round(cpu / len(lines) * 1e6, 4),
                }
                print(json.dumps(row), flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
