"""The user horizon side by side: one stream fed to ledgers that differ only in it.

Feeds a `bench.soak` stream (its `--stream` file) record by record to one ledger per
`--horizon` (days; 0: every user kept), as `bench.soak --fold-sessions` keeps its one ledger
(closed months folded, the refund horizon; no claims by period, which hold no per-user row
the horizon retires), then prints per horizon the per-user parts' pickled sizes (zlib level
1, as the snapshot), sizes in memory (`sys.getsizeof` over what each reaches) and entries,
the users retired and pairs forgotten, and the claims the horizon touches: observed value,
interval, its width against the first horizon's, and `group_repurchase_30d`'s counts against
the stream's truth file.

    python -m bench.user_horizon --stream /tmp/s11-soak-300d-x12.jsonl --horizon 0 \
        --horizon 180 --horizon 60 --out bench/user-horizon-300d-x12.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ingest import ingest
from bench.proc import machine
from bench.soak import REFUND_HORIZON_DAYS
from bench.soak_profile import _deep_bytes, packed_kb

DAY_MS = 86_400_000
PARTS = (
    "month_folded_users",
    "folded_buyers",
    "folded_dwellers",
    "first_orders",
    "bought_before",
    "folded_payers",
)
CLAIMS = (
    "orders_after_minute_5",
    "group_order_share",
    "group_member_dwell",
    "group_spend_multiple",
    "group_repurchase_30d",
)


def _memory_kb(ledger: Ledger) -> dict[str, float]:
    seen: set[int] = set()
    return {name: round(_deep_bytes(getattr(ledger, name), seen) / 1e3, 1) for name in PARTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stream", type=Path, required=True, help="a bench.soak stream file")
    parser.add_argument("--horizon", type=float, action="append", help="days (repeatable)")
    parser.add_argument("--window-days", type=float, default=7.0)
    parser.add_argument("--out", type=Path, help="the figures as JSON")
    args = parser.parse_args()
    horizons = args.horizon or [0.0, 180.0]
    pairs = [
        (
            Ledger(
                round(args.window_days * DAY_MS),
                refund_horizon_ms=REFUND_HORIZON_DAYS * DAY_MS,
                fold_sessions=True,
                fold_months=True,
                user_horizon_ms=round(days * DAY_MS) or None,
            ),
            OperatorBoard(),
        )
        for days in horizons
    ]
    with args.stream.open("rb") as handle:
        for line in handle:
            record = line.rstrip(b"\n")
            for ledger, board in pairs:
                ingest(record, ledger, board)
    truth_path = args.stream.with_suffix(".truth.json")
    truth = json.loads(truth_path.read_text("utf-8")) if truth_path.exists() else None
    result: dict[str, Any] = {"machine": machine(), "stream": str(args.stream), "horizons": {}}
    first: dict[str, Any] | None = None
    for days, (ledger, board) in zip(horizons, pairs, strict=True):
        claims = build_report(ledger, board)["claims"]
        row: dict[str, Any] = {
            "retired_users": ledger.retired_users,
            "forgotten_pairs": ledger.forgotten_pairs,
            "parts_kb": {name: round(packed_kb(getattr(ledger, name)), 1) for name in PARTS},
            "parts_entries": {name: len(getattr(ledger, name)) for name in PARTS},
            # In memory (`sys.getsizeof` over what each reaches; a user id string counted in
            # the first part that reaches it, in `PARTS`' order).
            "parts_memory_kb": _memory_kb(ledger),
            "claims": {
                name: {k: claims[name].get(k) for k in ("observed", "ci_low", "ci_high", "detail")}
                for name in CLAIMS
            },
        }
        if first is not None:
            for name in CLAIMS:
                mine, base = row["claims"][name], first["claims"][name]
                if mine["ci_low"] is not None and base["ci_low"] is not None:
                    mine["width_ratio"] = (mine["ci_high"] - mine["ci_low"]) / (
                        base["ci_high"] - base["ci_low"]
                    )
        if truth is not None:
            row["truth_repurchase"] = truth["claims"]["group_repurchase_30d"]
        result["horizons"][f"{days:g}"] = row
        first = first or row
        print(f"horizon {days:g} d: {json.dumps(row)}")  # noqa: T201 - a bench's output
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
