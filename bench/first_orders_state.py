"""`python -m bench.first_orders_state --stream FILE [--truth TRUTH] [--out OUT]`: what
`group_repurchase_30d`'s decided (merchant, user) pairs cost at the end of a long stream, and
whether the figure is exact (issue 17), without the broker.

Two set-ups over one `bench.soak` stream, each with the session fold, a 7-day window, the
90-day refund horizon and the worker's default user horizon (180 days): one ledger holding
every partition (`fold_months`: its decided pairs are `bought_before`, as `livepulse analyze`
and the core soak keep them), and 3 partition ledgers with the first orders' exchange (as
`bench.first_orders_cpu`: the owners' `pairs_decided`; no refund horizon there, see
`partitions`). Prints per set-up the pairs held, their
pickled bytes (zlib level 1, as the snapshot) and their bytes in memory (`tracemalloc` over
unpickling them), bytes per pair, the pairs forgotten, and the figure's counts against the
stream's truth file. Uses only what 7bbe69e has too, so the same file runs on main (`git
archive`) and on the branch side by side.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

from agents.core import Ledger, build_report
from agents.core.ingest import ingest
from agents.core.ledger import DAY_MS, FirstOrder
from agents.core.merge import merge_ledgers
from bench.first_orders_cpu import PARTITIONS, _partition, routed
from bench.proc import machine
from bench.soak import REFUND_HORIZON_DAYS
from schemas import Rejection

CLAIM = "group_repurchase_30d"


def _sizes(part: object) -> dict[str, float]:
    blob = pickle.dumps(part, protocol=5)
    tracemalloc.start()
    copy = pickle.loads(blob)  # noqa: S301 - our own bytes, just written
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del copy
    return {"pickled_bytes": len(zlib.compress(blob, 1)), "memory_bytes": memory}


def _ledger(refund_horizon_ms: int | None, **options: Any) -> Ledger:
    return Ledger(
        7 * DAY_MS,
        refund_horizon_ms=refund_horizon_ms,
        fold_sessions=True,
        user_horizon_ms=180 * DAY_MS,
        **options,
    )


def core(stream: Path) -> tuple[Ledger, dict[str, Any]]:
    ledger = _ledger(REFUND_HORIZON_DAYS * DAY_MS, fold_months=True)
    with stream.open("rb") as handle:
        for line in handle:
            ingest(line.rstrip(b"\n"), ledger, None)
    pairs = ledger.bought_before
    return ledger, {"pairs": len(pairs), **_sizes(pairs)}


def _groups(parts: list[list[Any]]) -> Ledger:
    """Every group event in one ledger with the partitions' 7-day window, fed in `ts` order
    (`bench.first_orders_cpu`'s is fed partition after partition, so it expires most of the
    others' events: right for its CPU figures, not for the figure; with no window it would
    have no horizon, and the partitions' summaries none either): the worker's table."""
    events = sorted(
        (
            event
            for part in parts
            for event in part
            if not isinstance(event, Rejection) and getattr(event, "type", "").startswith("group_")
        ),
        key=lambda event: event.ts,
    )
    groups = Ledger(7 * DAY_MS, fold_sessions=True)
    for event in events:
        groups.apply(event)
    return groups


def partitions(stream: Path) -> tuple[Ledger, dict[str, Any]]:
    parts = routed(stream, 10**9)
    groups = _groups(parts)
    # No refund horizon here: without the worker's refund table a partition's held orders
    # hold its summaries' horizon back, and no pair would ever be sent (as in
    # `bench.first_orders_cpu` and tests/agents/core/test_first_order_owner.py).
    ledgers = [_ledger(None) for _ in parts]
    for ledger in ledgers:
        ledger.membership_from = groups
    for start in range(0, max(len(part) for part in parts), 2000):
        for source, (ledger, part) in enumerate(zip(ledgers, parts, strict=True)):
            for event in part[start : start + 2000]:
                if isinstance(event, Rejection):
                    ledger.reject(event.reason)
                else:
                    ledger.apply(event)
            for message in ledger.take_first_orders(source):
                if isinstance(message, FirstOrder):
                    ledgers[_partition(message.user.encode())].receive_first_order(message)
                else:
                    for each in ledgers:
                        each.receive_firsts_closed(message, PARTITIONS)
    decided = [ledger.pairs_decided for ledger in ledgers]
    sizes = [_sizes(pairs) for pairs in decided]
    merged = merge_ledgers(ledgers)
    merged.membership_from = groups
    return merged, {
        "pairs": sum(len(pairs) for pairs in decided),
        "pickled_bytes": sum(s["pickled_bytes"] for s in sizes),
        "memory_bytes": sum(s["memory_bytes"] for s in sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stream", type=Path, required=True, help="a bench.soak stream file")
    parser.add_argument("--truth", type=Path, help="its truth file (default: beside it)")
    parser.add_argument("--out", type=Path, help="the figures as JSON")
    parser.add_argument("--setup", action="append", choices=["core", "partitions"])
    args = parser.parse_args()
    truth_path = args.truth or args.stream.with_suffix(".truth.json")
    truth = json.loads(truth_path.read_text())["claims"][CLAIM]
    out: dict[str, Any] = {"machine": machine(), "truth": truth}
    for name, run in (("core", core), ("partitions", partitions)):
        if args.setup and name not in args.setup:
            continue
        began = time.monotonic()
        ledger, held = run(args.stream)
        claim = build_report(ledger)["claims"][CLAIM]
        held["bytes_per_pair_pickled"] = round(held["pickled_bytes"] / max(held["pairs"], 1), 1)
        held["bytes_per_pair_memory"] = round(held["memory_bytes"] / max(held["pairs"], 1), 1)
        out[name] = {
            **held,
            "forgotten_pairs": ledger.forgotten_pairs,
            "eligible": claim["detail"]["eligible"],
            "repurchased": claim["detail"]["repurchased"],
            "observed": claim["observed"],
            "exact": claim["detail"]["eligible"] == truth["eligible"]
            and claim["detail"]["repurchased"] == truth["repurchased"],
            "wall_s": round(time.monotonic() - began, 1),
        }
        sys.stderr.write(f"{name}: {json.dumps(out[name])}\n")
    text = json.dumps(out, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
