"""`interaction_uplift`'s interval methods side by side on the calibration harness's streams.

For each world of the claim (tests/support/calibration.py: the generator sets the true uplift)
and each stream length, the same seeded streams go through the production path (decode ->
ledger -> per-session rows), and each method's interval is judged against the world's value:
coverage of the truth, and the verdict rates (supported / inconclusive / contradicted by the
claim's band). The methods: the session bootstrap (BCa, 1000 replicates, what the claim used
before issue 17's uplift fold) and the delta method on the log scale with Student's t and
Satterthwaite's degrees of freedom, from the rows' mergeable moments (what it uses now).

`.venv/bin/python -m tests.support.uplift_coverage --runs 200 --days 4,10,30` prints the
markdown table of docs/metrics.md ("`interaction_uplift`'s interval from bounded state").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from agents.core.claims import CLAIMS_BY_ID
from agents.core.stats import (
    FloatArray,
    cluster_bootstrap_interval,
    log_ratio_interval,
    moments_log_ratio_interval,
    row_moments,
    safe_divide,
)
from streams.tools.analyze import analyze_records
from tests.support.calibration import DEFAULTS, StreamSpec, records, worlds
from tests.support.processes import map_in_processes

CLAIM = "interaction_uplift"
Interval = tuple[float, float] | None
Rows = list[tuple[int, int, int, int]]


def _rows(spec: StreamSpec) -> Rows:
    """Per started session with viewers: interacting buyers, interacting pairs, other buyers,
    other pairs (counted here from the ledger's raw sessions, not by the claim's part)."""
    ledger = analyze_records(records(spec))
    out: Rows = []
    for _sid, session in sorted(ledger.sessions.items()):
        if session.started_ts is None or not session.viewers:
            continue
        buyers = {order.user_id for order in session.orders}
        viewers = set(session.viewers)
        interacting = session.interacting_users & viewers
        others = viewers - interacting
        out.append((len(interacting & buyers), len(interacting), len(others & buyers), len(others)))
    return out


def _uplift(totals: FloatArray) -> FloatArray:
    """The bootstrap's statistic: the uplift of each replicate's column totals."""
    return safe_divide(
        safe_divide(totals[:, 0], totals[:, 1]), safe_divide(totals[:, 2], totals[:, 3])
    )


METHODS: dict[str, Callable[[Rows], Interval]] = {
    "bootstrap BCa (before)": lambda rows: cluster_bootstrap_interval(rows, _uplift),
    "log delta, t (now)": lambda rows: moments_log_ratio_interval(
        row_moments(rows, 4), (1, -1, -1, 1)
    ),
    "log delta, z": lambda rows: log_ratio_interval(rows, (1, -1, -1, 1), small_sample=False),
}


def _intervals(spec: StreamSpec) -> list[Interval]:
    rows = _rows(spec)
    return [method(rows) for method in METHODS.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--days", default="4,10,30")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    claim = CLAIMS_BY_ID[CLAIM]
    band = claim.band()
    assert band is not None
    print("| world (true) | days | method | covers | supported / inconclusive / contradicted |")
    print("|---|---|---|---|---|")
    for world, (truth, _holds) in worlds(claim).items():
        for days in (int(d) for d in args.days.split(",")):
            specs = [
                StreamSpec(
                    days, args.seed * 1_000_003 + k * 7919 + days, DEFAULTS | {CLAIM: truth}, CLAIM
                )
                for k in range(args.runs)
            ]
            results = map_in_processes(_intervals, specs)
            for m, name in enumerate(METHODS):
                got = [r[m] for r in results]
                covers = sum(i is not None and i[0] <= truth <= i[1] for i in got)
                supported = sum(i is not None and band[0] <= i[0] and i[1] <= band[1] for i in got)
                contra = sum(i is not None and (i[1] < band[0] or i[0] > band[1]) for i in got)
                n = len(got)
                rates = (
                    f"{supported / n:.3f} / {(n - supported - contra) / n:.3f} / {contra / n:.3f}"
                )
                print(
                    f"| {world} ({truth:.4g}) | {days} | {name} | {covers / n:.3f} | {rates} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
