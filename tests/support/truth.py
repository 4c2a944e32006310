"""Compare a claims report with a simulator truth file: counts exactly, ratios to 1e-9."""

from __future__ import annotations

import math
from typing import Any

from agents.core.sketch import RELATIVE_ACCURACY

REL_TOL = 1e-9


#: Figures read from the ledger's sketch once questions are folded (a worker's default 7-day
#: window over a 60-day fixture folds them): within the sketch's relative accuracy of the
#: truth (agents/core/sketch.py, docs/metrics.md "Sketched figures"), not 1e-9.
SKETCHED_ONCE_QUESTIONS_FOLD: frozenset[str] = frozenset(
    {"claims.reply_latency.detail.p50_seconds", "claims.reply_latency.detail.p95_seconds"}
)

#: Once a worker's sessions are summarized (`LIVEPULSE_FOLD_SESSIONS`, on by default, and a
#: fixture longer than the window + the 7-day session horizon), `price_dwell_association` is
#: read from its sketches (docs/metrics.md, "Sketched figures"): its medians by price tier
#: within the sketch's relative accuracy, and rho within `SKETCHED_RHO_TOLERANCE` of the
#: exact one (measured 0.0004-0.0005 on the fixtures, at level 0 of the rank table; its
#: stated bound, `RankTable.bound`, is ~0.011 there).
SKETCHED_ONCE_SESSIONS_SUMMARIZE: frozenset[str] = frozenset(
    f"claims.price_dwell_association.detail.median_watch_minutes_by_tier.{tier}"
    for tier in ("<200", "200-500", "500-1000", ">=1000")
)
SKETCHED_RHO_TOLERANCE = 0.002
#: ... and so is the operator's median watch time of a level (overall, a room, a merchant)
#: with summarized sessions, within the sketch's relative accuracy (a session's own is exact).
SKETCHED_OPERATOR_FIGURE = "median_watch_minutes"


def summarized(report: dict[str, Any]) -> bool:
    """Whether `report` reads summarized sessions (its sketched figures are not exact)."""
    return bool((report.get("retention") or {}).get("summarized_sessions"))


def _same(
    path: str, got: Any, want: Any, problems: list[str], sketched: frozenset[str] = frozenset()
) -> None:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            problems.append(f"{path}: expected a mapping, got {got!r}")
            return
        for key, value in want.items():
            if key not in got:
                problems.append(f"{path}.{key}: missing from the report")
            else:
                _same(f"{path}.{key}", got[key], value, problems, sketched)
        return
    if isinstance(want, bool) or want is None or isinstance(want, str):
        if got != want:
            problems.append(f"{path}: report {got!r} != truth {want!r}")
        return
    if isinstance(want, int) and isinstance(got, int):
        if got != want:
            problems.append(f"{path}: report {got} != truth {want}")
        return
    if isinstance(want, int | float):
        rel_tol = RELATIVE_ACCURACY if path in sketched else REL_TOL
        if not isinstance(got, int | float) or not math.isclose(
            got, want, rel_tol=rel_tol, abs_tol=1e-12
        ):
            problems.append(f"{path}: report {got!r} != truth {want!r}")
        return
    if got != want:
        problems.append(f"{path}: report {got!r} != truth {want!r}")


def report_mismatches(report: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """Every place where the report disagrees with the truth file (empty when they agree);
    with questions folded, `reply_latency`'s p50/p95 (sketched) within the sketch's bound."""
    problems: list[str] = []
    folded = (report.get("retention") or {}).get("folded_questions", 0)
    sketched = SKETCHED_ONCE_QUESTIONS_FOLD if folded else frozenset()
    if summarized(report):
        sketched |= SKETCHED_ONCE_SESSIONS_SUMMARIZE
    _same("events", report.get("events"), truth["events"], problems)
    # Both ways: a claim the report makes but the truth file lacks (an old truth file) is a gap.
    for claim_id in report["claims"]:
        if claim_id not in truth["claims"]:
            problems.append(f"claims.{claim_id}: missing from the truth file")
    for claim_id, expected in truth["claims"].items():
        entry = report["claims"].get(claim_id)
        if entry is None:
            problems.append(f"claims.{claim_id}: missing from the report")
            continue
        if claim_id == "price_dwell_association" and summarized(report):
            rho, exact = entry["observed"], expected["observed"]
            if (rho is None) != (exact is None) or (
                rho is not None and abs(rho - exact) > SKETCHED_RHO_TOLERANCE
            ):
                problems.append(f"claims.{claim_id}.observed: report {rho!r} != truth {exact!r}")
        else:
            _same(f"claims.{claim_id}.observed", entry["observed"], expected["observed"], problems)
        details = {k: v for k, v in expected.items() if k != "observed"}
        _same(f"claims.{claim_id}.detail", entry.get("detail", {}), details, problems, sketched)
    return problems


def operator_mismatches(
    operator: dict[str, Any] | None,
    truth: dict[str, Any],
    *,
    cumulative_only: bool = False,
    sketched_medians: bool = False,
) -> list[str]:
    """Where an operator section disagrees with a truth file's `"operator"` section.

    With `cumulative_only`, the event-time windows, the late count and the grace they depend on
    are not compared (they depend on arrival order, see tests/test_end_to_end.py). With
    `sketched_medians` (the report's sessions are summarized), the levels' median watch times
    within the sketch's relative accuracy (a session's own stays exact).
    """
    if operator is None:
        return ["operator: missing from the report"]
    problems: list[str] = []
    sketched: frozenset[str] = frozenset()
    if sketched_medians:
        paths = ["operator.overall", "operator.overall.-"] + [  # "-": `cumulative_only`'s
            f"operator.{kind}.{level}" for kind in ("rooms", "merchants") for level in truth[kind]
        ]
        sketched = frozenset(f"{path}.{SKETCHED_OPERATOR_FIGURE}" for path in paths)
    for key, want in truth.items():
        if cumulative_only and key in ("late_events", "grace_ms"):
            continue
        if cumulative_only and key in ("overall", "merchants", "rooms", "sessions"):
            levels = {"-": want} if key == "overall" else want
            got_levels = {"-": operator.get(key)} if key == "overall" else operator.get(key, {})
            for level_id, figures in levels.items():
                got = (got_levels or {}).get(level_id)
                trimmed = {k: v for k, v in figures.items() if k != "windows"}
                _same(f"operator.{key}.{level_id}", got, trimmed, problems, sketched)
            continue
        _same(f"operator.{key}", operator.get(key), want, problems, sketched)
    return problems
