"""The user horizon's daily retire pass timed alone, over a whole stream.

Feeds a `bench.soak` stream (its `--stream` file) to one ledger as `bench.user_horizon` does
(closed months folded, the refund horizon) with a `--horizon` of days, and sums the CPU time
(`time.process_time`) spent inside `Ledger.retire_idle_users` against the whole feed's. Run
two checkouts side by side (`PYTHONPATH=<checkout>`) for a ratio of one pass against the other.

    python -m bench.retire_pass --stream /tmp/s11-soak-300d-x12.jsonl --horizon 180
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from bench.soak import REFUND_HORIZON_DAYS

DAY_MS = 86_400_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stream", type=Path, required=True, help="a bench.soak stream file")
    parser.add_argument("--horizon", type=float, default=180.0, help="days")
    parser.add_argument("--window-days", type=float, default=7.0)
    args = parser.parse_args()
    spent = [0.0, 0]
    retire = Ledger.retire_idle_users

    def timed(ledger: Ledger) -> int:
        started = time.process_time()
        retired = retire(ledger)
        spent[0] += time.process_time() - started
        spent[1] += 1
        return retired

    Ledger.retire_idle_users = timed  # type: ignore[method-assign]
    ledger = Ledger(
        round(args.window_days * DAY_MS),
        refund_horizon_ms=REFUND_HORIZON_DAYS * DAY_MS,
        fold_sessions=True,
        fold_months=True,
        user_horizon_ms=round(args.horizon * DAY_MS),
    )
    board = OperatorBoard()
    records = 0
    started = time.process_time()
    with args.stream.open("rb") as handle:
        for line in handle:
            ingest(line.rstrip(b"\n"), ledger, board)
            records += 1
    total = time.process_time() - started
    print(  # noqa: T201 - a bench's output
        f"records {records:,}, CPU {total:.1f} s; retire_idle_users: {spent[1]:,} calls, "
        f"{spent[0]:.2f} s ({spent[0] / total:.2%} of the CPU, "
        f"{spent[0] / records * 1e6:.2f} us a record); users retired {ledger.retired_users:,}"
    )


if __name__ == "__main__":
    main()
