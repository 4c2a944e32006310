"""What the parts kept for the whole stream hold, inside: their pickled sizes and key counts.

Feeds a soak stream (`bench.soak`'s `--stream` file) through one ledger with the session fold,
the month fold and the claims by period (as `bench.soak_profile`), with the horizons of the
Session 17 worker soak (bench/RESULTS.md), and at each `--at` day of event time prints the
parts docs/design.md ("What is still kept for the whole stream") tabulates: `folded_figures`
slot by slot (zlib level 1 of each slot's pickle, as the snapshot) with its keys' counts,
`retired_aov_days`, `retired_order_minutes`, `folded_watch`, `first_orders` and the decided
pairs (one ledger decides them itself: `bought_before`, a worker owner's `pairs_decided`).

    python -m bench.whole_stream_parts --stream /tmp/livepulse-soak-300d-x12.0-s1.jsonl \
        --at 140 --at 170 --at 270 --at 299 --out bench/state-parts/s17-whole-stream-parts.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from agents.core.periods import PeriodSettings, attach
from bench.soak_profile import packed_kb

DAY_MS = 86_400_000


def _kb(value: object) -> float:
    return round(packed_kb(value), 1)


def whole_stream_parts(ledger: Ledger) -> dict[str, Any]:
    """The whole-stream parts' pickled kB and what they are keyed by, counted."""
    folded = ledger.folded_figures
    row: dict[str, Any] = {
        f"folded_figures.{name}": _kb(getattr(folded, name)) for name in folded.__slots__
    }
    cells = folded.price_watch.cells
    row["folded_figures.price_watch cells"] = len(cells)
    row["folded_figures.price_watch prices"] = len({price for price, _bin in cells})
    row["folded_figures.price_watch watch bins"] = len({bin_ for _price, bin_ in cells})
    row["folded_figures.order_minutes keys"] = len(folded.order_minutes)
    row["folded_figures.order_minutes max key"] = max(folded.order_minutes, default=None)
    row["folded_figures.watch_minute_counts keys"] = sum(
        len(counts) for counts in folded.watch_minute_counts.values()
    )
    for name in (
        "folded_figures",
        "bought_before",
        "pairs_decided",
        "first_orders",
        "retired_aov_days",
        "folded_watch",
        "retired_order_minutes",
    ):
        row[name] = _kb(getattr(ledger, name))
    row["bought_before pairs"] = len(ledger.bought_before)
    row["first_orders pairs"] = len(ledger.first_orders)
    row["retired_aov_days days"] = len(ledger.retired_aov_days)
    row["folded_watch levels"] = len(ledger.folded_watch)
    row["retired_order_minutes levels"] = len(ledger.retired_order_minutes)
    row["retired_order_minutes keys"] = sum(len(v) for v in ledger.retired_order_minutes.values())
    row["retired_order_minutes max key"] = max(
        (max(v) for v in ledger.retired_order_minutes.values() if v), default=None
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=Path, required=True, help="a bench.soak stream file")
    parser.add_argument("--at", type=float, action="append", help="event day (repeatable)")
    parser.add_argument("--out", type=Path, help="the figures as JSON")
    args = parser.parse_args()
    points = sorted(args.at or [140.0, 299.0])
    # The Session 17 worker soak's horizons (bench/RESULTS.md), in one ledger.
    ledger = Ledger(
        7 * DAY_MS,
        refund_horizon_ms=30 * DAY_MS,
        fold_sessions=True,
        fold_months=True,
        user_horizon_ms=45 * DAY_MS,
        board_horizon_ms=30 * DAY_MS,
    )
    ledger.retire_summaries = True
    attach(ledger, PeriodSettings(days_kept=31, months_kept=3))
    board = OperatorBoard()
    first_ts: int | None = None
    out: dict[str, Any] = {}
    with args.stream.open("rb") as lines:
        for line in lines:
            if not points:
                break
            ingest(line, ledger, board)
            newest = ledger.max_ts
            if newest is None:
                continue
            if first_ts is None:
                first_ts = newest
            if newest - first_ts >= points[0] * DAY_MS:
                day = points.pop(0)
                out[f"{day:g}"] = whole_stream_parts(ledger)
                print(f"day {day:g}:", json.dumps(out[f"{day:g}"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
