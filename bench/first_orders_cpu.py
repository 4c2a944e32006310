"""`python -m bench.first_orders_cpu --stream FILE [--lines N] [--rounds R]`: the CPU cost of
the first orders' exchange in the partition ledgers (issue 17), without the broker: the
stream's first N lines split over 3 partitions by contract key (membership from every group
event, as the worker's table gives it), fed in chunks of 2,000 with the session fold, a 7-day
window and a 180-day user horizon, with and without the exchange (after each chunk each
partition's `take_first_orders`, delivered to the owners at once), rounds interleaved (A, B,
A, B). Prints CPU seconds per arm and round, us per record, their ratio and the pairs held."""

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
from agents.core.ledger import DAY_MS, FirstOrder
from schemas import TOPIC_BY_TYPE, Rejection, decode, record_key

PARTITIONS = 3
CHUNK = 2000


def _partition(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def routed(path: Path, lines: int) -> list[list[Any]]:
    """The first `lines` lines decoded, split by partition (no key: partition 0)."""
    parts: list[list[Any]] = [[] for _ in range(PARTITIONS)]
    with path.open("rb") as handle:
        for index, raw in enumerate(handle):
            if index >= lines:
                break
            line = raw.rstrip(b"\n")
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            key = b""
            if isinstance(obj, dict) and obj.get("type") in TOPIC_BY_TYPE:
                key = record_key(obj).encode()
            parts[_partition(key) if key else 0].append(decode(line))
    return parts


def _groups(parts: list[list[Any]]) -> Ledger:
    groups = Ledger(7 * DAY_MS, fold_sessions=True)
    for part in parts:
        for event in part:
            if not isinstance(event, Rejection) and getattr(event, "type", "").startswith("group_"):
                groups.apply(event)
    return groups


def feed(parts: list[list[Any]], groups: Ledger, exchange: bool) -> tuple[float, dict[str, int]]:
    """CPU seconds to feed the partitions (with the exchange or not), and the pairs held."""
    ledgers = [Ledger(7 * DAY_MS, fold_sessions=True, user_horizon_ms=180 * DAY_MS) for _ in parts]
    for ledger in ledgers:
        ledger.membership_from = groups
    began = time.process_time()
    for start in range(0, max(len(part) for part in parts), CHUNK):
        for source, (ledger, part) in enumerate(zip(ledgers, parts, strict=True)):
            for event in part[start : start + CHUNK]:
                if isinstance(event, Rejection):
                    ledger.reject(event.reason)
                else:
                    ledger.apply(event)
            if exchange:
                for message in ledger.take_first_orders(source):
                    if isinstance(message, FirstOrder):
                        owner = ledgers[_partition(message.user.encode())]
                        owner.receive_first_order(message)
                    else:
                        for each in ledgers:
                            each.receive_firsts_closed(message, PARTITIONS)
    cpu_s = time.process_time() - began
    held = {
        "first_orders": sum(len(ledger.first_orders) for ledger in ledgers),
        "first_orders_in": sum(len(ledger.first_orders_in) for ledger in ledgers),
        "pairs_decided": sum(len(ledger.pairs_decided) for ledger in ledgers),
    }
    return cpu_s, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stream", type=Path, required=True)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    parts = routed(args.stream, args.lines)
    groups = _groups(parts)
    records = sum(len(part) for part in parts)
    result: dict[str, Any] = {"records": records, "rounds": []}
    for round_index in range(args.rounds):
        for exchange in (False, True):
            cpu_s, held = feed(parts, groups, exchange)
            row = {
                "round": round_index,
                "exchange": exchange,
                "cpu_s": round(cpu_s, 2),
                "us_per_record": round(cpu_s / records * 1e6, 2),
                "held": held,
            }
            result["rounds"].append(row)
            sys.stderr.write(json.dumps(row) + "\n")
    off = [r["cpu_s"] for r in result["rounds"] if not r["exchange"]]
    on = [r["cpu_s"] for r in result["rounds"] if r["exchange"]]
    result["ratio_on_off"] = [round(b / a, 3) for a, b in zip(off, on, strict=True)]
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
