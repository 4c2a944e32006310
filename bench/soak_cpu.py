"""CPU seconds the core soak's per-record path takes over a span of event-time days.

Feeds a `bench.soak` stream (its `--stream` file) as `bench.soak --fold-sessions` does (one
ledger, the default refund horizon, closed months folded, claims by period attached) and
prints the process CPU time (`time.process_time`) of the records from `--from-day` to the end
as records per CPU second. Run it from two trees one after another or side by side (each
tree first on `PYTHONPATH`) to compare them: CPU time is less moved by the shared machine's
load than `bench.soak`'s wall-clock records/s.

    python -m bench.soak_cpu --stream /tmp/livepulse-soak-150d-x12.0-s1.jsonl --from-day 100

`--no-fold` feeds it as `bench.soak` without `--fold-sessions` does (the worker's default:
claims by period attached, nothing folded), to compare the fold on against off.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from agents.core.periods import PeriodSettings, attach
from bench.soak import REFUND_HORIZON_DAYS

DAY_MS = 86_400_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stream", type=Path, required=True, help="a bench.soak stream file")
    parser.add_argument("--from-day", type=float, default=100.0)
    parser.add_argument("--window-days", type=float, default=7.0)
    parser.add_argument(
        "--no-fold", action="store_true", help="the session fold off (`fold_sessions=False`)"
    )
    args = parser.parse_args()
    ledger = Ledger(
        round(args.window_days * DAY_MS),
        refund_horizon_ms=REFUND_HORIZON_DAYS * DAY_MS,
        fold_sessions=not args.no_fold,
        fold_months=not args.no_fold,
    )
    attach(ledger, PeriodSettings())
    board = OperatorBoard()
    records = args.stream.read_bytes().splitlines()
    first: int | None = None
    began: float | None = None
    counted = 0
    for record in records:
        if began is None and ledger.max_ts is not None:
            first = ledger.max_ts if first is None else first
            if ledger.max_ts - first >= args.from_day * DAY_MS:
                began = time.process_time()
        ingest(record, ledger, board)
        counted += began is not None
    cpu_s = time.process_time() - began if began is not None else 0.0
    print(
        json.dumps(
            {
                "fold": not args.no_fold,
                "from_day": args.from_day,
                "records": counted,
                "cpu_s": round(cpu_s, 3),
                "records_per_cpu_s": round(counted / cpu_s) if cpu_s else None,
                "orders_held": len(ledger.orders),
                "orders_folded": ledger.order_fold.orders,
            }
        )
    )


if __name__ == "__main__":
    main()
