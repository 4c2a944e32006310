"""`python -m bench.group_floor STREAM [--partitions N] [--every-days D]`: a worker's partition
ledgers in one process (the stream routed by contract key as the replayer routes it, a
membership table per groups partition, the month-rows exchange delivered at once after each
chunk, each partition's group floor announced after it), sampling over event time the group
events the partitions hold against those applied so far (issue 17, docs/design.md "Group
events compacted", in a worker). Sizes only: no pacing, broker, snapshot or restore (the
worker soak, `bench.soak --worker`, measures those). JSON lines to stdout.

`python -m bench.group_floor STREAM --worker-run soak-XXXX --bootstrap HOST:PORT`: the same
figures of a finished `bench.soak --worker --keep-topics` run over STREAM, read from each
partition's newest snapshot on its changelog (what the stopped worker held), with where
each partition's held lookups are, in days of the stream: one JSON line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from agents.core import Ledger
from agents.core.ledger import (
    DAY_MS,
    FirstOrder,
    FirstsClosed,
    GroupFloor,
    MonthClosed,
    MonthRow,
)
from schemas import TOPIC_BY_TYPE, Rejection, decode, record_key
from streams.runtime.membership import MembershipTable

_CHUNK = 5000


def _partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def run(stream: Path, partitions: int, window_days: float, every_days: float) -> list[Any]:
    window_ms = round(window_days * DAY_MS)
    routed: list[tuple[int, Any]] = []  # (partition, decoded) in the stream's order
    with stream.open("rb") as handle:
        for raw in handle:
            try:
                obj = orjson.loads(raw)
                if not isinstance(obj, dict) or obj.get("type") not in TOPIC_BY_TYPE:
                    continue
                key = record_key(obj).encode()
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            routed.append((_partition_of(key, partitions), decode(raw)))
    table = MembershipTable(window_ms, None)
    # A groups partition's ledger is made at its first event: one with none yet is left out
    # of the table's horizon, as the worker's table leaves out one gone idle.
    table.caught_up.set()
    ledgers = [Ledger(window_ms, fold_sessions=True) for _ in range(partitions)]
    for ledger in ledgers:
        ledger.membership_from = table
    applied_groups = 0
    first_ts: int | None = None
    newest_ts = 0
    next_day = every_days
    samples: list[Any] = []
    began = time.process_time()

    def deliver(messages: list[Any]) -> None:
        for message in messages:
            if isinstance(message, MonthRow | FirstOrder):
                owner = ledgers[_partition_of(message.user.encode(), partitions)]
                if isinstance(message, MonthRow):
                    owner.receive_month_row(message)
                else:
                    owner.receive_first_order(message)
                continue
            for ledger in ledgers:
                if isinstance(message, MonthClosed):
                    ledger.receive_month_closed(message, partitions)
                elif isinstance(message, FirstsClosed):
                    ledger.receive_firsts_closed(message, partitions)
                elif isinstance(message, GroupFloor):
                    ledger.receive_group_floor(message, partitions)

    def sample(day: float) -> None:
        held = sum(len(e) for ledger in ledgers for e in ledger.group_events.values())
        cutoffs = [ledger.groups_compacted_to for ledger in ledgers]
        known = [c for c in cutoffs if c is not None]
        row = {
            "day": round(day, 1),
            "group_events_applied": applied_groups,
            "group_events_held": held,
            "pairs_held": sum(len(ledger.group_events) for ledger in ledgers),
            "cutoff_day": round((min(known) - (first_ts or 0)) / DAY_MS, 1) if known else None,
            # `group_repurchase_30d`'s pairs held as a source, and those with membership at
            # their first order recorded there (session 20: they hold no floor).
            "source_pairs": sum(len(ledger.first_orders) for ledger in ledgers),
            "source_pairs_recorded": sum(len(ledger.source_members()) for ledger in ledgers),
            "cpu_s": round(time.process_time() - began, 1),
        }
        samples.append(row)
        sys.stdout.write(json.dumps(row) + "\n")
        sys.stdout.flush()

    for begin in range(0, len(routed), _CHUNK):
        # A chunk of the stream in its order (the replay's), each partition's share applied
        # as one batch: the membership table's first (it reads ahead of the partitions).
        parts: list[list[Any]] = [[] for _ in range(partitions)]
        for partition, event in routed[begin : begin + _CHUNK]:
            parts[partition].append(event)
        for partition, part in enumerate(parts):
            for event in part:
                if not isinstance(event, Rejection) and event.type.startswith("group_"):
                    table.ledgers.setdefault(partition, Ledger(window_ms)).apply(event)
        for partition, part in enumerate(parts):
            ledger = ledgers[partition]
            for event in part:
                if isinstance(event, Rejection):
                    ledger.reject(event.reason)
                    continue
                if ledger.apply(event) and event.type.startswith("group_"):
                    applied_groups += 1
                newest_ts = max(newest_ts, event.ts)
                first_ts = event.ts if first_ts is None else min(first_ts, event.ts)
            deliver(
                [
                    *ledger.take_closed_month_rows(partition),
                    *ledger.take_first_orders(partition),
                    ledger.group_floor_announcement(partition),
                ]
            )
        if first_ts is not None and newest_ts - first_ts >= next_day * DAY_MS:
            sample((newest_ts - first_ts) / DAY_MS)
            next_day += every_days
    if first_ts is not None:
        sample((newest_ts - first_ts) / DAY_MS)
    return samples


def _day(ts: int | None, first_ts: int) -> float | None:
    return None if ts is None else round((ts - first_ts) / DAY_MS, 1)


def worker_floors(stream: Path, run_id: str, bootstrap: str) -> dict[str, Any]:
    """Per partition of a finished worker soak run (`run_id`, its topics kept), from its newest
    snapshot: the compaction cutoff, the group events and (merchant, user) pairs held, the
    `group_repurchase_30d` pairs held as a source (with membership at their first order
    recorded there: `Ledger.source_members`, session 20) and at the owner (recorded there),
    the oldest first order of each kind not recorded, and the oldest lookup of the rest of the
    held state (sessions, months' first joins, owner rows), in days of `stream`."""
    import asyncio

    from agents.core.persist import load_state
    from streams.runtime.global_report import newest_snapshots
    from streams.runtime.settings import Settings

    with stream.open("rb") as handle:
        first_ts = int(orjson.loads(handle.readline())["ts"])
    settings = Settings(bootstrap=bootstrap, app_id=run_id, topic_prefix=f"{run_id}.")
    snapshots = asyncio.run(newest_snapshots(settings))
    partitions: dict[str, Any] = {}
    for number, snapshot in sorted(snapshots.items()):
        ledger, _board = load_state(snapshot.blob)
        recorded = ledger.source_members() if hasattr(ledger, "source_members") else {}
        unrecorded = [
            first for pair, (first, _later) in ledger.first_orders.items() if pair not in recorded
        ]
        owner_unrecorded = [
            f for f, _later, member in ledger.first_orders_in.values() if member is None
        ]
        partitions[str(number)] = {
            "snapshot_bytes": len(snapshot.blob),
            "newest_day": _day(ledger.max_ts, first_ts),
            "cutoff_day": _day(ledger.groups_compacted_to, first_ts),
            "group_events_held": sum(len(e) for e in ledger.group_events.values()),
            "pairs_with_events": len(ledger.group_events),
            "source_pairs": len(ledger.first_orders),
            "source_pairs_recorded": len(recorded),
            "oldest_source_pair_day": _day(
                min((f for f, _later in ledger.first_orders.values()), default=None), first_ts
            ),
            "oldest_source_pair_not_recorded_day": _day(min(unrecorded, default=None), first_ts),
            "owner_pairs": len(ledger.first_orders_in),
            "owner_pairs_not_recorded": len(owner_unrecorded),
            "oldest_owner_pair_day": _day(
                min((f for f, *_rest in ledger.first_orders_in.values()), default=None), first_ts
            ),
            # The held sessions' and months' first joins' oldest lookup (no horizon, no pair).
            "oldest_held_lookup_day": _day(_held_lookups(ledger), first_ts),
        }
    return {"run": run_id, "partitions": partitions}


def _held_lookups(ledger: Ledger) -> int | None:
    """The oldest "member at ts" lookup of a partition's held sessions, months' first joins and
    owner rows (no pair, no horizon), or None."""
    none = 1 << 62
    floor = ledger._held_lookup_floor(none)
    for users in ledger.month_rows_in.values():
        for parts in users.values():
            for joined, _cents in parts.values():
                if joined is not None:
                    floor = min(floor, joined)
    return None if floor == none else floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stream", type=Path)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--window-days", type=float, default=7.0)
    parser.add_argument("--every-days", type=float, default=30.0)
    parser.add_argument(
        "--worker-run", help="a `bench.soak --worker --keep-topics` run's id (soak-XXXX)"
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="with --worker-run")
    args = parser.parse_args()
    if args.worker_run:
        sys.stdout.write(json.dumps(worker_floors(args.stream, args.worker_run, args.bootstrap)))
        sys.stdout.write("\n")
        return
    run(args.stream, args.partitions, args.window_days, args.every_days)


if __name__ == "__main__":
    main()
