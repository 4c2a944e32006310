"""`price_dwell_association`'s rank table bounded (`sketch.RankTable`, issue 17): its rho
against the exact rho, its error bound and its size, against the stream's length.

Takes the exact (price, watch time) pairs of a stream from the independent truth reference
(`streams/tools/simulator/truth.py`: every session order's dearest unit price in cents and
the buyer's watch minutes up to it, in the order of the orders' `ts`), and at each `--at`
day of event time builds the table of the pairs so far at each `--limit` (most cells held;
0: no limit, the 2%-wide grid as before) and prints its rho, the exact rho
(`stats.spearman_rho` over the same pairs), the table's stated bound (`RankTable.bound`), its
coarsening level, cells and pickled bytes (zlib level 1, as the snapshot).

    python -m bench.rank_grid --stream /tmp/livepulse-soak-300d-x12.0-s1.jsonl \
        --pairs /tmp/soak-pairs.json --at 30 --at 140 --at 299 --limit 0 --limit 4096
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agents.core.sketch import RankTable
from agents.core.stats import spearman_rho
from bench.soak_profile import packed_bytes
from streams.tools.simulator import truth

DAY_MS = 86_400_000
MINUTE_MS = 60_000


def truth_pairs(lines: list[str]) -> tuple[int, list[tuple[int, int, float]]]:
    """The stream's first `ts` and its session orders' (ts, dearest unit price in cents, watch
    minutes up to the order), from the truth reference, in `ts` order."""
    stream = truth.read_stream(lines)
    start = min(event.ts for _position, event in stream.events)
    pairs: list[tuple[int, int, float]] = []
    for order, price, watched in truth.order_price_watch(stream):
        pairs.append((order.ts, price, watched / MINUTE_MS))
    pairs.sort(key=lambda pair: pair[0])
    return start, pairs


def measure(pairs: list[tuple[int, float]], limit: int) -> dict[str, Any]:
    """The table of `pairs` at `limit` cells (0: none) against the exact rho."""
    table = RankTable(pairs, limit=limit or None)
    exact = spearman_rho([x for x, _ in pairs], [y for _, y in pairs])
    rho = table.rho()
    return {
        "limit": limit,
        "n": len(pairs),
        "exact_rho": exact,
        "rho": rho,
        "error": None if rho is None or exact is None else abs(rho - exact),
        "bound": table.bound(),
        "level": table.level,
        "cells": len(table.cells),
        "bytes": packed_bytes(table),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=Path, help="a JSON-lines stream (e.g. bench.soak's)")
    parser.add_argument(
        "--pairs", type=Path, help="the truth's pairs: read if it exists, else written"
    )
    parser.add_argument("--at", type=float, action="append", help="event day (repeatable)")
    parser.add_argument("--limit", type=int, action="append", help="cells (repeatable; 0: none)")
    parser.add_argument("--out", type=Path, help="the figures as JSON")
    args = parser.parse_args()
    if args.pairs is not None and args.pairs.exists():
        saved = json.loads(args.pairs.read_text(encoding="utf-8"))
        start, pairs = saved["start"], [tuple(pair) for pair in saved["pairs"]]
    else:
        if args.stream is None:
            parser.error("--stream is needed when --pairs does not exist")
        start, pairs = truth_pairs(args.stream.read_text(encoding="utf-8").splitlines())
        if args.pairs is not None:
            args.pairs.write_text(json.dumps({"start": start, "pairs": pairs}), encoding="utf-8")
    last_day = (pairs[-1][0] - start) / DAY_MS if pairs else 0.0
    rows: list[dict[str, Any]] = []
    for day in sorted(args.at or [last_day]):
        upto = [(price, minutes) for ts, price, minutes in pairs if ts <= start + day * DAY_MS]
        for limit in args.limit or [0, 4096]:
            row = {"day": day, **measure(upto, limit)}
            rows.append(row)
            print(json.dumps(row))  # noqa: T201
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
