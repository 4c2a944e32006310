"""The claims report: figures, intervals and verdicts as JSON, and as a table for people."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agents.core.claims import (
    CLAIMS,
    CLAIMS_BY_ID,
    CONTEXT,
    INTERVAL_SCOPE,
    Claim,
    Verdict,
    judge,
    judge_stable,
)
from agents.core.concurrency import LevelCurve
from agents.core.distributions import compute_distributions
from agents.core.ledger import (
    DAY_MS,
    RETIRED_REPLY_QUESTIONS,
    SESSION_HORIZON_MS,
    Ledger,
    board_sent_by,
    counted_refunds,
)
from agents.core.metrics import Measurement, compute_claims
from agents.core.operator import OperatorBoard, render_operator_summary


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def claim_verdict(claim: Claim, m: Measurement) -> Verdict:
    """A claim's verdict from its measurement: `judge`, or for `live_aov` ("stable", every
    day) `judge_stable` over the judged days' Bonferroni intervals."""
    if claim.id == "live_aov":
        days = m.detail.get("day_intervals") or {}
        return judge_stable(
            claim,
            m.observed,
            m.n,
            m.interval,
            [(iv[0], iv[1]) if iv is not None else None for iv in days.values()],
            clusters=m.clusters,
        )
    return judge(claim, m.observed, m.n, m.interval, clusters=m.clusters)


def build_report(ledger: Ledger, board: OperatorBoard | None = None) -> dict[str, Any]:
    """The report of every claim over the ledger's facts (JSON-ready), and the context figures.

    Each claim's entry says its `group` (`core` or `extended`); `context` lists the published
    figures a live-room stream cannot check (source, text), never judged. With the operator
    board fed the same events, the report has an `"operator"` section too.
    """
    measured = compute_claims(ledger)
    claims: dict[str, Any] = {}
    for claim in CLAIMS:
        m = measured[claim.id]
        verdict = claim_verdict(claim, m)
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
            "group": claim.group,
        }
    _counted, late_refunds, unmatched_refunds = counted_refunds(
        ledger.orders, ledger.refunds, ledger.refund_horizon_ms
    )
    report: dict[str, Any] = {
        "claims": claims,
        "interval_scope": INTERVAL_SCOPE,
        "events": ledger.counts.as_dict(),
        # What the state forgets (docs/design.md, "Worker state: what is kept"): events older
        # than their topic's dedupe window are expired, neither applied nor counted as events.
        "retention": {
            "dedupe_window_s": (
                ledger.dedupe_window_ms / 1000 if ledger.dedupe_window_ms is not None else None
            ),
            "expired": ledger.counts.expired,
            # Applied, but stamped too far ahead of the wall clock to move the horizon.
            "future_tolerance_s": (
                ledger.future_tolerance_ms / 1000
                if ledger.future_tolerance_ms is not None
                else None
            ),
            "future": ledger.counts.future,
            "folded_sessions": ledger.folded_sessions,
            # Questions folded past the answer horizon, and replies that answered no question
            # within it (a reply later than the horizon: counted here, never lost).
            "folded_questions": sum(ledger.folded_questions.values())
            + ledger.retired_replies[RETIRED_REPLY_QUESTIONS],
            "unmatched_replies": ledger.unmatched_replies,
            # Closed sessions summarized past their session horizon (`Ledger(fold_sessions=
            # True)`), and events naming a session stamped after it: not the session's.
            "summarized_sessions": ledger.summarized_sessions,
            # Started sessions with no end abandoned: their newest event + the session horizon
            # behind every topic's horizon (docs/design.md, "The session horizon"); folded at
            # once, in `summarized_sessions` too once summarized.
            "abandoned_sessions": ledger.abandoned_sessions,
            # Operator levels whose peak viewers is a lower bound: merged from partitions
            # whose settled minutes outside their kept runs could give a larger sum
            # (docs/design.md, "The board's concurrency by minute"); 0 in one ledger.
            "board_peaks_bounded": sum(
                LevelCurve.merged(curves).bounded if len(curves) > 1 else curves[0].bounded
                for level in ledger.board_levels()
                if (curves := ledger.curves_of(level, board_sent_by([ledger])))
            ),
            "after_session_horizon": sum(ledger.after_session_horizon),
            # Closed (merchant, month)s of `group_spend_multiple` folded into per-user totals
            # (`Ledger(fold_months=True)`: a ledger holding every partition), or combined
            # across a worker's partitions from the month-rows topic (`receive_month_closed`).
            "folded_months": ledger.folded_months + len(ledger._months_combined),
            # Refunds that count for no payment: later than the refund horizon after every
            # payment of their order id, or with no payment at or before them.
            "refund_horizon_days": (
                ledger.refund_horizon_ms / DAY_MS if ledger.refund_horizon_ms is not None else None
            ),
            # With the order fold, those the fold decided too; `folded_orders` paid orders
            # are in its sums (`Ledger.order_fold`), `dropped_refunds` refunds were dropped by
            # a partition that did not hold their orders (docs/design.md, "The order fold").
            "late_refunds": late_refunds + ledger.order_fold.late_refunds,
            "unmatched_refunds": unmatched_refunds + ledger.order_fold.unmatched_refunds,
            "folded_orders": ledger.order_fold.orders,
            "dropped_refunds": ledger.order_fold.dropped_refunds,
        },
        "context": [{"source": figure.source, "text": figure.text} for figure in CONTEXT],
        # What the HTML report plots, so it can be drawn from a live worker's /report too.
        "distributions": compute_distributions(ledger),
    }
    if board is not None:
        report["operator"] = board.snapshot(ledger)
        # The live screen's curves, products and entry sources (agents/core/screen.py).
        report["screen"] = board.screen.snapshot(ledger)
    return report


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
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "per day":
        return f"{value:.1%}/day"
    return f"{value:.3f}"


def _group_of(claim_id: str, entry: dict[str, Any]) -> str:
    group = entry.get("group")
    if isinstance(group, str):
        return group
    return CLAIMS_BY_ID[claim_id].group if claim_id in CLAIMS_BY_ID else "core"


def simulated_note(report: Mapping[str, Any]) -> str | None:
    """The warning that goes next to the verdicts of a report on simulated events (its
    `"simulated"` key, set by the commands that know the events' origin), or None."""
    origin = report.get("simulated")
    if not isinstance(origin, Mapping):
        return None
    scenario = f"scenario {origin.get('scenario', '?')}, seed {origin.get('seed', '?')}"
    return (
        f"SIMULATED DATA ({scenario}, from `livepulse simulate`): these verdicts describe the "
        "simulated rooms, not the platforms the claims are about."
    )


def _period_cell(entry: Mapping[str, Any] | None, unit: str) -> str:
    if not entry or entry.get("observed") is None:
        return "folded" if entry and entry.get("folded") else "-"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    ci = "" if low is None or high is None else f" [{_fmt(low, unit)}, {_fmt(high, unit)}]"
    return f"{_fmt(entry['observed'], unit)}{ci}"


def _period_table(periods: Mapping[str, Any]) -> list[str]:
    """The claims by period (docs/metrics.md): the latest CST day's, the latest month's and
    the rolling horizon's observed value and 95% interval per claim."""
    by_claim: Mapping[str, Any] = periods.get("claims") or {}
    first = next(iter(by_claim.values()), None)
    if first is None:
        return []
    day = (first.get("day") or [{}])[-1].get("period", "-")
    month = (first.get("month") or [{}])[-1].get("period", "-")
    header = (
        "claim by period",
        f"day {day}",
        f"month {month}",
        f"last {periods['horizon_days']} d",
    )
    rows: list[tuple[str, ...]] = [header]
    for claim_id, figures in by_claim.items():
        unit = CLAIMS_BY_ID[claim_id].unit if claim_id in CLAIMS_BY_ID else ""
        rows.append(
            (
                claim_id,
                _period_cell((figures.get("day") or [None])[-1], unit),
                _period_cell((figures.get("month") or [None])[-1], unit),
                _period_cell(figures.get("rolling"), unit),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    for claim_id, why in (periods.get("not_per_period") or {}).items():
        out.append(f"{claim_id}: no figure by period ({why})")
    return out


def render_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report for a terminal: core claims, then extended ones, the
    context figures (not checked), the event counts, and the operator summary if present."""
    header = ("claim", "claimed", "observed", "95% CI", "n", "verdict")
    rows: list[tuple[str, ...]] = [header]
    # Row index before which a group title goes.
    titles: dict[int, str] = {}
    for group in ("core", "extended"):
        entries = [
            (claim_id, entry)
            for claim_id, entry in report["claims"].items()
            if _group_of(claim_id, entry) == group
        ]
        if entries and group == "extended":
            titles[len(rows)] = "extended claims"
        for claim_id, entry in entries:
            unit = entry.get("unit") or (
                CLAIMS_BY_ID[claim_id].unit if claim_id in CLAIMS_BY_ID else ""
            )
            low, high = entry.get("ci_low"), entry.get("ci_high")
            if low is None and high is None:
                ci = "-"
            else:
                ci = f"[{_fmt(low, unit)}, {_fmt(high, unit)}]"
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
    note = simulated_note(report)
    lines: list[str] = [note, ""] if note else []
    for index, row in enumerate(rows):
        if index in titles:
            lines.extend(["", titles[index]])
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    periods = report.get("periods")
    if isinstance(periods, dict):
        lines.extend(["", *_period_table(periods)])
    scope = report.get("interval_scope")
    if isinstance(scope, str):
        lines.extend(["", scope])
    context = report.get("context") or []
    if context:
        lines.extend(["", "context (not checked):"])
        lines.extend(f"  [{item['source']}] {item['text']}" for item in context)
    events = report.get("events", {})
    lines.append("")
    lines.append(
        f"events: {events.get('valid', 0):,} valid, {events.get('rejected', 0):,} rejected, "
        f"{events.get('duplicates', 0):,} duplicates"
    )
    expired = (report.get("retention") or {}).get("expired") or 0
    if expired:
        lines.append(
            f"        {expired:,} expired (older than the dedupe window of their topic: "
            "not applied)"
        )
    future = (report.get("retention") or {}).get("future") or 0
    if future:
        lines.append(
            f"        {future:,} stamped too far ahead of the wall clock (applied, but kept "
            "from moving their topic's dedupe horizon)"
        )
    unmatched = (report.get("retention") or {}).get("unmatched_replies") or 0
    if unmatched:
        lines.append(
            f"        {unmatched:,} replies answered no question within the answer horizon "
            "(the dedupe window)"
        )
    after = (report.get("retention") or {}).get("after_session_horizon") or 0
    if after:
        lines.append(
            f"        {after:,} named a session more than {SESSION_HORIZON_MS // DAY_MS} days "
            "after its end, or an abandoned one's newest event (the session horizon: not the "
            "session's)"
        )
    abandoned = (report.get("retention") or {}).get("abandoned_sessions") or 0
    if abandoned:
        lines.append(
            f"        {abandoned:,} sessions that never ended abandoned (their newest event + "
            f"{SESSION_HORIZON_MS // DAY_MS} days behind every topic's horizon: folded like "
            "ended sessions)"
        )
    retention = report.get("retention") or {}
    late, unmatched_refunds = retention.get("late_refunds"), retention.get("unmatched_refunds")
    if late or unmatched_refunds:
        horizon = retention.get("refund_horizon_days")
        lines.append(
            f"        {late or 0:,} refunds later than the refund horizon"
            + (f" ({horizon:g} days)" if horizon is not None else "")
            + f" after their order, {unmatched_refunds or 0:,} with no payment of their order "
            "at or before them: counted nowhere"
        )
    if "operator" in report:
        lines.extend(["", render_operator_summary(report["operator"])])
    return "\n".join(lines)
