"""`Ledger.apply` alone, this tree against a git ref, side by side: us per event.

    .venv/bin/python -m bench.apply_ab --baseline REF [--rounds 4] [--passes 5] [--scale 3]

Events of a seeded xhs stream are decoded once per process (decoding is not timed), then fed
to a fresh ledger (the default 7-day window, and this tree's default future-stamp tolerance
where the tree has one) `--passes` times in one process; a round runs baseline, this tree,
this tree, baseline (ABBA, so a drift in the machine's load hits both alike), each a process
of its own. Prints each process's fastest pass and the ratio of the medians of those.
`LIVEPULSE_BENCH_FOLD_SESSIONS=1`: the ledger summarizes closed sessions where the tree can
(`Ledger(fold_sessions=True)`, issue 17).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import ROOT, baseline_tree

# Run in a child with the tree to measure first on sys.path (the baseline's or this one).
_CHILD = """
import gc, inspect, os, sys, time
tree, data, passes = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, tree)
from agents.core import Ledger
from schemas import Rejection, decode
with open(data, "rb") as lines:
    events = [e for e in map(decode, lines.read().splitlines()) if not isinstance(e, Rejection)]
extra = {}
if "future_tolerance_ms" in inspect.signature(Ledger).parameters:
    extra["future_tolerance_ms"] = 86_400_000
if os.environ.get("LIVEPULSE_BENCH_FOLD_SESSIONS") and "fold_sessions" in inspect.signature(
    Ledger
).parameters:
    extra["fold_sessions"] = True
best = float("inf")
gc.disable()
for _ in range(passes):
    ledger = Ledger(7 * 86_400_000, **extra)
    apply = ledger.apply
    started = time.perf_counter()
    for event in events:
        apply(event)
    best = min(best, (time.perf_counter() - started) / len(events) * 1e6)
    del ledger
    gc.collect()
print(best)
"""


def _once(tree: Path, data: Path, passes: int) -> float:
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _CHILD, str(tree), str(data), str(passes)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="git ref to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    from streams.tools.simulator import generate, get_scenario, write_lines

    data = Path(tempfile.mkdtemp(prefix="livepulse-apply-ab-")) / "stream.jsonl"
    write_lines(data, generate(get_scenario("xhs"), args.seed, args.scale).lines)
    base = baseline_tree(args.baseline)
    before: list[float] = []
    after: list[float] = []
    try:
        for _ in range(args.rounds):
            for tree, into in ((base, before), (ROOT, after), (ROOT, after), (base, before)):
                into.append(_once(tree, data, args.passes))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(data.parent, ignore_errors=True)
    print(f"events: xhs seed {args.seed} x{args.scale}, {len(before) // 2} rounds")  # noqa: T201
    print(f"{args.baseline}: " + " ".join(f"{v:.2f}" for v in before))  # noqa: T201
    print("this tree: " + " ".join(f"{v:.2f}" for v in after))  # noqa: T201
    ratio = statistics.median(after) / statistics.median(before)
    print(  # noqa: T201
        f"median us/event {statistics.median(before):.2f} -> {statistics.median(after):.2f}: "
        f"{ratio:.3f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
