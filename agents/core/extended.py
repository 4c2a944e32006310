"""The extended claims of claims.md (refunds, bundles, the post-live tail, reply latency)."""

from __future__ import annotations

import math
from typing import Final

from agents.core.metrics import Measurement, _Facts, _proportion, _ratio
from agents.core.stats import FloatArray, cluster_bootstrap_interval, percentile, safe_divide

DAY_MS: Final[int] = 86_400_000
TAIL_DAYS: Final[int] = 3
TAIL_WINDOW_MS: Final[int] = TAIL_DAYS * DAY_MS
SECOND_MS: Final[int] = 1_000


def size_refund_share(facts: _Facts) -> Measurement:
    """Paid orders with an `apparel` item that have a refund with reason `size` / such orders.

    Orders are counted as `order_paid` events (as in the core claims); a refund counts whatever
    its `ts` (even before its order's) and however many refunds the order has; a refund of an
    order id never paid counts nowhere; a refund with no reason is not a `size` refund.
    """
    size_refunded = {refund.order_id for refund in facts.ledger.refunds if refund.reason == "size"}
    apparel = [order for order in facts.ledger.orders if order.has_apparel]
    hits = sum(1 for order in apparel if order.order_id in size_refunded)
    return _proportion(hits, len(apparel), "size_refunded", "apparel_orders")


def bundle_share(facts: _Facts) -> Measurement:
    """Paid orders (events, in or out of a session) with >= 2 distinct `sku_id`s / paid orders.

    Pooled over merchants: "a merchant's orders" is read as the share every merchant is claimed
    to reach, measured on all their orders together.
    """
    orders = facts.ledger.orders
    bundles = sum(1 for order in orders if order.distinct_skus >= 2)
    return _proportion(bundles, len(orders), "bundle_orders", "paid_orders")


def _tail_per_day(totals: FloatArray) -> FloatArray:
    return safe_divide(totals[:, 0], TAIL_DAYS * totals[:, 1])


def post_live_tail(facts: _Facts) -> Measurement:
    """GMV of session orders paid in (end, end + 3 days] / 3 / GMV of those paid at or before end.

    Over sessions with a `session_started` and a `session_ended` (a session that never ended
    has no "after"); every such session counts, with or without orders. An order exactly at
    `session_ended` was paid while the room was open (it counts as before the end); orders more
    than 3 days after the end count nowhere. The window is not required to lie inside the stream
    (claims.md asks no such thing, unlike `group_repurchase_30d`), so sessions of the last three
    days can only lower the figure. Interval: percentile bootstrap over sessions of the ratio of
    summed tail GMV to summed live GMV.
    """
    rows: list[tuple[int, int]] = []
    live_orders = tail_orders = 0
    for _sid, session in facts.started.items():
        end = session.ended_ts
        if end is None:
            continue
        tail_cents = live_cents = 0
        for order in session.orders:
            if order.ts <= end:
                live_cents += order.amount_cents
                live_orders += 1
            elif order.ts <= end + TAIL_WINDOW_MS:
                tail_cents += order.amount_cents
                tail_orders += 1
        rows.append((tail_cents, live_cents))
    tail_total = sum(row[0] for row in rows)
    live_total = sum(row[1] for row in rows)
    observed = _ratio(tail_total, TAIL_DAYS * live_total)
    return Measurement(
        observed,
        len(rows),
        cluster_bootstrap_interval(rows, _tail_per_day) if observed is not None else None,
        {
            "sessions": len(rows),
            "live_orders": live_orders,
            "tail_orders": tail_orders,
            "live_gmv_cny": live_total / 100,
            "tail_gmv_cny": tail_total / 100,
        },
    )


def _binomial_cdf(n: int, q: float) -> list[float]:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, q), 0 < q < 1 (log-space pmf, no overflow)."""
    log_q, log_p = math.log(q), math.log1p(-q)
    log_n = math.lgamma(n + 1)
    cdf: list[float] = []
    total = 0.0
    for k in range(n + 1):
        total += math.exp(
            log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_q + (n - k) * log_p
        )
        cdf.append(min(1.0, total))
    return cdf


def quantile_interval(
    sorted_values: list[float], q: float, level: float = 0.95
) -> tuple[float, float] | None:
    """Distribution-free interval for the population q-quantile from order statistics.

    [x_(l), x_(u)] (1-based ranks) with l the largest rank such that P(B <= l - 1) <= alpha/2
    and u the smallest such that P(B <= u - 1) >= 1 - alpha/2, B ~ Binomial(n, q): coverage is
    at least `level` for any continuous distribution, assuming independent values. A side with
    no such rank (too few values) is unbounded (-inf / +inf); None when both are.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    alpha = (1 - level) / 2
    cdf = _binomial_cdf(n, q)
    lower_rank = 0
    for rank in range(1, n + 1):
        if cdf[rank - 1] <= alpha:
            lower_rank = rank
        else:
            break
    upper_rank = n + 1
    for rank in range(1, n + 1):
        if cdf[rank - 1] >= 1 - alpha:
            upper_rank = rank
            break
    if lower_rank == 0 and upper_rank == n + 1:
        return None
    low = sorted_values[lower_rank - 1] if lower_rank else -math.inf
    high = sorted_values[upper_rank - 1] if upper_rank <= n else math.inf
    return float(low), float(high)


def reply_latency(facts: _Facts) -> Measurement:
    """p95 (observed), p50 (seconds) of first reply ts - question ts; the unanswered share.

    Every valid `question` counts (in a started session or not); its first reply is the
    `reply` interaction with `reply_to` = its `event_id` and the smallest `ts`, from whichever
    session. A reply's `ts` earlier than its question's gives a negative latency, kept as the
    definition reads (it signals skewed producer clocks). Interval: the order-statistic interval
    of the 0.95 quantile (`quantile_interval`), treating answered questions as independent.
    """
    ledger = facts.ledger
    latencies: list[float] = []
    for question_id, (asked_ts, _sid) in ledger.questions.items():
        first = ledger.first_reply_ts.get(question_id)
        if first is not None:
            latencies.append((first - asked_ts) / SECOND_MS)
    latencies.sort()
    questions = len(ledger.questions)
    answered = len(latencies)
    p95 = percentile(latencies, 0.95)
    return Measurement(
        p95,
        answered,
        quantile_interval(latencies, 0.95),
        {
            "questions": questions,
            "answered": answered,
            "unanswered_share": _ratio(questions - answered, questions),
            "p50_seconds": percentile(latencies, 0.5),
            "p95_seconds": p95,
        },
    )


def return_rate(facts: _Facts) -> Measurement:
    """Distinct refunded `order_id`s that were paid / distinct paid `order_id`s (report only)."""
    paid = {order.order_id for order in facts.ledger.orders}
    refunded = {refund.order_id for refund in facts.ledger.refunds} & paid
    return _proportion(len(refunded), len(paid), "refunded_orders", "paid_orders")


EXTENDED_CLAIM_FUNCTIONS: Final = {
    "size_refund_share": size_refund_share,
    "bundle_share": bundle_share,
    "post_live_tail": post_live_tail,
    "reply_latency": reply_latency,
    "return_rate": return_rate,
}
