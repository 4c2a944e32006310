"""The claims report: figures, intervals and verdicts as JSON, and as a table for people."""

from __future__ import annotations

import math
from typing import Any

from agents.core.claims import CLAIMS, CLAIMS_BY_ID, judge
from agents.core.ledger import Ledger
from agents.core.metrics import compute_claims


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def build_report(ledger: Ledger) -> dict[str, Any]:
    """The report of every core claim over the ledger's facts (JSON-ready)."""
    measured = compute_claims(ledger)
    claims: dict[str, Any] = {}
    for claim in CLAIMS:
        m = measured[claim.id]
        contradicted_anyway = False
        if claim.id == "live_aov":
            # "稳定" (stable): a judged day below the bar contradicts the claim outright.
            contradicted_anyway = bool(m.detail["days_below"]) and m.n >= claim.min_n
        verdict = judge(
            claim,
            m.observed,
            m.n,
            m.interval,
            contradicted_anyway=contradicted_anyway,
            clusters=m.clusters,
        )
        claims[claim.id] = {
            "observed": _finite(m.observed),
            "claimed": claim.claimed_display(),
            "ci_low": _finite(m.interval[0]) if m.interval else None,
            "ci_high": _finite(m.interval[1]) if m.interval else None,
            "verdict": verdict,
            "n": m.n,
            "clusters": m.clusters,
            "unit": claim.unit,
            "source": claim.source,
            "detail": m.detail,
        }
    return {"claims": claims, "events": ledger.counts.as_dict()}


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "CNY":
        return f"{value:,.2f}"
    if unit == "min":
        return f"{value:.1f} min"
    return f"{value:.3f}"


def render_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report for a terminal."""
    header = ("claim", "claimed", "observed", "95% CI", "n", "verdict")
    rows = [header]
    for claim_id, entry in report["claims"].items():
        unit = entry.get("unit") or (
            CLAIMS_BY_ID[claim_id].unit if claim_id in CLAIMS_BY_ID else ""
        )
        low, high = entry.get("ci_low"), entry.get("ci_high")
        ci = f"[{_fmt(low, unit)}, {_fmt(high, unit)}]" if low is not None else "-"
        rows.append(
            (
                claim_id,
                _fmt(entry.get("claimed"), unit),
                _fmt(entry.get("observed"), unit),
                ci,
                str(entry.get("n", "")),
                entry.get("verdict", ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    events = report.get("events", {})
    lines.append("")
    lines.append(
        f"events: {events.get('valid', 0):,} valid, {events.get('rejected', 0):,} rejected, "
        f"{events.get('duplicates', 0):,} duplicates"
    )
    return "\n".join(lines)
