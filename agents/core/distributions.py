"""Distributions behind the claims, for plots: order timing, conversion and watch time (JSON)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Final

from agents.core.facts import ClaimFacts
from agents.core.ledger import Ledger, OrderFact, SessionFacts
from agents.core.metrics import (
    FIVE_MINUTES_MS,
    MINUTE_MS,
    PRICE_TIERS,
    interaction_pairs,
    orders_after_minute_5,
)
from agents.core.sketch import QuantileSketch, quantile
from agents.core.stats import (
    cluster_sums,
    cluster_wilson_from_sums,
    cluster_wilson_interval,
    percentile,
    two_way_wilson_interval,
)
from agents.core.timeline import NEVER_MEMBER, Membership

# Orders are binned one per minute since the session's start up to this cap; later ones
# share one overflow bin (a session's long tail would otherwise dwarf the first minutes).
ORDER_MINUTE_CAP: Final[int] = 120
# Watch-time histograms: the narrowest of these widths (minutes) that covers the 99th
# percentile in at most WATCH_MAX_BINS bins; the rest goes to an overflow bin.
WATCH_BIN_WIDTHS_MINUTES: Final[tuple[int, ...]] = (1, 2, 5, 10, 15, 20, 30, 60, 120, 240)
WATCH_MAX_BINS: Final[int] = 30
QUANTILES: Final[tuple[tuple[str, float], ...]] = (
    ("p10", 0.10),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
)


def _started(ledger: Ledger) -> Iterator[tuple[str, SessionFacts]]:
    """Sessions with a `session_started`, by id (the only sessions claims.md knows)."""
    for sid, session in sorted(ledger.sessions.items()):
        if session.started_ts is not None:
            yield sid, session


def _session_orders(ledger: Ledger) -> Iterator[tuple[SessionFacts, OrderFact]]:
    for _sid, session in _started(ledger):
        for order in session.orders:
            yield session, order


def _close_ts(session: SessionFacts) -> int:
    return session.ended_ts if session.ended_ts is not None else session.last_ts


def orders_by_minute(ledger: Ledger, cap_minutes: int = ORDER_MINUTE_CAP) -> dict[str, Any]:
    """Session orders per whole minute since their session's start, and the share at >= 5 min.

    `counts[i]` holds orders with `i <= (ts - started) / 1 min < i + 1`; `overflow` those at
    `cap_minutes` or later, `before_start` those paid before their session's start (counted
    with the orders before minute 5, as the claim does). Summarized sessions' orders are
    counted by minute in `folded_figures.order_minutes`; with any, the share and its
    interval are the claim's, read from their sums (exact).
    """
    counts = [0] * cap_minutes
    overflow = before_start = after = total = 0
    cases: list[tuple[bool, str, str]] = []
    for session, order in _session_orders(ledger):
        assert session.started_ts is not None
        since_ms = order.ts - session.started_ts
        total += 1
        cases.append((since_ms >= FIVE_MINUTES_MS, order.session_id or "", order.user_id))
        if since_ms >= FIVE_MINUTES_MS:
            after += 1
        if since_ms < 0:
            before_start += 1
        elif since_ms >= cap_minutes * MINUTE_MS:
            overflow += 1
        else:
            counts[since_ms // MINUTE_MS] += 1
    folded = ledger.folded_figures.order_minutes
    for minute, count in folded.items():
        total += count
        after += count if minute * MINUTE_MS >= FIVE_MINUTES_MS else 0
        if minute < 0:
            before_start += count
        elif minute >= cap_minutes:
            overflow += count
        else:
            counts[minute] += count
    binned: dict[str, Any] = {
        "bin_minutes": 1,
        "cap_minutes": cap_minutes,
        "counts": counts,
        "overflow": overflow,
        "before_start": before_start,
        "session_orders": total,
        "after_5min": after,
    }
    # The claim's interval (`orders_after_minute_5`): Wilson on the effective sample of orders
    # clustered by session and by buyer, not plain Wilson on orders counted as independent.
    if folded:
        interval = orders_after_minute_5(ClaimFacts(ledger)).interval
    else:
        interval = two_way_wilson_interval(
            [hit for hit, _s, _u in cases], [s for _h, s, _u in cases], [u for _h, _s, u in cases]
        )
    return {
        **binned,
        "share_after_5min": after / total if total else None,
        "ci_low": interval[0] if interval else None,
        "ci_high": interval[1] if interval else None,
    }


def _session_share(
    rows: Sequence[tuple[int, int]], retired: Sequence[int] = (0,) * 6
) -> dict[str, Any]:
    """A share of (session, viewer) pairs, rows (hits, pairs) per session, with Wilson on the
    effective sample of pairs clustered by session (`cluster_wilson_interval`): the viewers
    of one session share its host and line-up. No interval from one session. `retired`: the
    retired sessions' clusters as sums (G, hits, pairs, hits^2, hits pairs, pairs^2)."""
    sessions = [(hits, pairs) for hits, pairs in rows if pairs]
    hits, total = sum(r[0] for r in sessions), sum(r[1] for r in sessions)
    if retired[0]:
        g, h2, hn, n2 = cluster_sums(sessions)
        hits, total = hits + retired[1], total + retired[2]
        interval = cluster_wilson_from_sums(
            hits, total, (g + retired[0], h2 + retired[3], hn + retired[4], n2 + retired[5])
        )
    else:
        interval = cluster_wilson_interval([r[0] for r in sessions], [r[1] for r in sessions])
    return {
        "rate": hits / total if total else None,
        "ci_low": interval[0] if interval else None,
        "ci_high": interval[1] if interval else None,
    }


def conversion_by_interaction(ledger: Ledger) -> dict[str, Any]:
    """Purchase conversion of (session, viewer) pairs with and without a viewer interaction,
    each with its session-clustered 95% interval."""
    rows = [interaction_pairs(session) for _sid, session in _started(ledger)]
    ib, ip, ob, op = (sum(col) for col in zip(*rows, strict=True)) if rows else (0, 0, 0, 0)
    # Retired sessions (`Ledger._retire_summaries`): per rate their clusters' sums.
    retired = ledger.retired_conversion
    ib, ip, ob, op = ib + retired[1], ip + retired[2], ob + retired[7], op + retired[8]
    interacting = {
        "pairs": ip,
        "buyers": ib,
        **_session_share([(r[0], r[1]) for r in rows], retired[0:6]),
    }
    other = {
        "pairs": op,
        "buyers": ob,
        **_session_share([(r[2], r[3]) for r in rows], retired[6:12]),
    }
    cr_i, cr_n = interacting["rate"], other["rate"]
    return {
        "interacting": interacting,
        "other": other,
        "multiple": cr_i / cr_n if cr_i is not None and cr_n else None,
    }


def summarize(values: Sequence[float], folded: QuantileSketch | None = None) -> dict[str, Any]:
    """n, mean, max and the percentiles of `QUANTILES` (claims.md's linear interpolation), over
    `values` and the values `folded` into a sketch (its percentiles within the sketch's bound,
    agents/core/sketch.py; n, mean and max exact)."""
    ordered = sorted(values)
    summary: dict[str, Any]
    if folded is not None and folded.count:
        n = len(ordered) + folded.count
        largest = folded.max
        summary = {"n": n, "mean": (sum(ordered) + folded.sum) / n}
        for name, q in QUANTILES:
            summary[name] = quantile(q, folded, ordered)
        summary["max"] = max(ordered[-1], largest) if ordered and largest is not None else largest
        return summary
    summary = {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered) if ordered else None,
    }
    for name, q in QUANTILES:
        summary[name] = percentile(ordered, q)
    summary["max"] = ordered[-1] if ordered else None
    return summary


def histogram_bins(
    values: Sequence[float], folded: QuantileSketch | None = None
) -> tuple[int, int]:
    """(bin width in minutes, number of bins) covering the 99th percentile of `values` and
    the values `folded` (the percentile then within the sketch's bound)."""
    top = quantile(0.99, folded, sorted(values)) or 0.0
    for width in WATCH_BIN_WIDTHS_MINUTES:
        if top <= width * WATCH_MAX_BINS:
            return width, max(1, math.ceil(top / width))
    width = WATCH_BIN_WIDTHS_MINUTES[-1]
    return width, WATCH_MAX_BINS


def histogram(
    values: Sequence[float], width: int, bins: int, minute_counts: dict[int, int] | None = None
) -> dict[str, Any]:
    """Counts of `values` in `[i * width, (i + 1) * width)` for i < bins, and the overflow;
    `minute_counts` values already counted per whole minute (exact: a bin is whole minutes)."""
    counts = [0] * bins
    overflow = 0
    for minute, count in (minute_counts or {}).items():
        index = minute // width
        if index >= bins:
            overflow += count
        else:
            counts[max(index, 0)] += count
    for value in values:
        index = int(value // width)
        if index >= bins:
            overflow += 1
        else:
            counts[max(index, 0)] += 1
    return {"counts": counts, "overflow": overflow}


class _Members:
    """Group membership per (merchant, user), built lazily from the ledger's group events."""

    def __init__(self, ledger: Ledger) -> None:
        self._events = ledger.group_events
        self._cache: dict[tuple[str, str], Membership] = {}

    def member_at(self, merchant_id: str, user_id: str, ts: int) -> bool:
        key = (merchant_id, user_id)
        found = self._cache.get(key)
        if found is None:
            events = self._events.get(key)
            found = Membership(events) if events else NEVER_MEMBER
            self._cache[key] = found
        return found.member_at(ts)


def watch_minutes_by_membership(ledger: Ledger) -> dict[str, Any]:
    """Watch time per (session, user) with a `viewer_joined`, members vs others.

    A member is in a group of the session's merchant at their first join in that session
    (as `group_member_dwell` counts them); the others are every other such pair.
    """
    members = _Members(ledger)
    minutes: dict[str, list[float]] = {"members": [], "others": []}
    for _sid, session in _started(ledger):
        assert session.merchant_id is not None
        for user, first_join_ts in session.first_joins():
            watched = session.watch_ms(user) / MINUTE_MS
            member = members.member_at(session.merchant_id, user, first_join_ts)
            minutes["members" if member else "others"].append(watched)
    # Summarized sessions' pairs (`Ledger._summarize`): sketched and counted per minute.
    folded = ledger.folded_figures
    both = QuantileSketch()
    for sketch in folded.watch_minutes_by_membership.values():
        both.merge(sketch)
    width, bins = histogram_bins(minutes["members"] + minutes["others"], both)
    return {
        "bin_minutes": width,
        "groups": {
            name: {
                **summarize(values, folded.watch_minutes_by_membership.get(name)),
                "histogram": histogram(values, width, bins, folded.watch_minute_counts.get(name)),
            }
            for name, values in minutes.items()
        },
    }


def _tier(price_cents: int) -> str:
    for name, upper in PRICE_TIERS:
        if price_cents < upper:
            return name
    return PRICE_TIERS[-1][0]


def watch_minutes_to_order_by_price_tier(ledger: Ledger) -> dict[str, Any]:
    """The buyer's watch time up to each session order, by the order's highest unit price tier."""
    by_tier: dict[str, list[float]] = {name: [] for name, _upper in PRICE_TIERS}
    for session, order in _session_orders(ledger):
        watched = session.watch_ms(order.user_id, until_ts=order.ts)
        by_tier[_tier(order.max_unit_price_cents)].append(watched / MINUTE_MS)
    # Orders folded out of the ledger are in its sketches (agents/core/sketch.py).
    folded = ledger.folded_figures.watch_minutes_by_tier
    return {
        "tiers": {name: summarize(values, folded.get(name)) for name, values in by_tier.items()}
    }


def compute_distributions(ledger: Ledger) -> dict[str, Any]:
    """Every distribution the HTML report plots, from the ledger's facts (JSON-ready)."""
    return {
        "orders_by_minute": orders_by_minute(ledger),
        "conversion_by_interaction": conversion_by_interaction(ledger),
        "watch_minutes_by_membership": watch_minutes_by_membership(ledger),
        "watch_minutes_to_order_by_price_tier": watch_minutes_to_order_by_price_tier(ledger),
    }
