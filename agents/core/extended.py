"""The extended claims of claims.md (refunds, bundles, the post-live tail, reply latency)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Final

from agents.core.ledger import OrderFact
from agents.core.metrics import Measurement, _Facts, _ratio
from agents.core.stats import (
    design_effect,
    percentile,
    rate_score_interval,
    two_way_wilson_interval,
)

DAY_MS: Final[int] = 86_400_000
TAIL_DAYS: Final[int] = 3
TAIL_WINDOW_MS: Final[int] = TAIL_DAYS * DAY_MS
SECOND_MS: Final[int] = 1_000


def _order_cluster(order: OrderFact) -> tuple[str, str]:
    """An order's session, or the order itself when it has no session (a group-chat link or a
    reorder is an independent purchase)."""
    return (
        ("session", order.session_id) if order.session_id is not None else ("order", order.order_id)
    )


def _order_share(
    hits: list[bool], orders: list[OrderFact], hits_key: str, total_key: str
) -> Measurement:
    """A share of paid orders with Wilson on the effective sample size of two crossed
    clusterings (`two_way_wilson_interval`): orders of one session share its line-up and
    audience, and one buyer orders many times (their size, their taste for bundles, their
    habit of returning). `clusters` counts the first clustering (sessions and lone orders)."""
    count = sum(hits)
    total = len(orders)
    sessions = [_order_cluster(order) for order in orders]
    return Measurement(
        _ratio(count, total),
        total,
        two_way_wilson_interval(hits, sessions, [order.user_id for order in orders]),
        {hits_key: count, total_key: total},
        clusters=len(set(sessions)),
    )


def size_refund_share(facts: _Facts) -> Measurement:
    """Paid orders with an `apparel` item that have a refund with reason `size` / such orders.

    Orders are counted as `order_paid` events (as in the core claims); a refund counts whatever
    its `ts` (even before its order's) and however many refunds the order has; a refund of an
    order id never paid counts nowhere; a refund with no reason is not a `size` refund.
    """
    size_refunded = {refund.order_id for refund in facts.ledger.refunds if refund.reason == "size"}
    apparel = [order for order in facts.orders if order.has_apparel]
    hits = [order.order_id in size_refunded for order in apparel]
    return _order_share(hits, apparel, "size_refunded", "apparel_orders")


def bundle_share(facts: _Facts) -> Measurement:
    """Paid orders (events, in or out of a session) with >= 2 distinct `sku_id`s / paid orders.

    Pooled over merchants: "a merchant's orders" is read as the share every merchant is claimed
    to reach, measured on all their orders together.
    """
    orders = facts.orders
    hits = [order.distinct_skus >= 2 for order in orders]
    return _order_share(hits, orders, "bundle_orders", "paid_orders")


def post_live_tail(facts: _Facts) -> Measurement:
    """GMV of session orders paid in (end, end + 3 days] / 3 / GMV of those paid at or before end.

    Over sessions with a `session_started` and a `session_ended` (a session that never ended
    has no "after"); every such session counts, with or without orders. An order exactly at
    `session_ended` was paid while the room was open (it counts as before the end); orders more
    than 3 days after the end count nowhere. The window is not required to lie inside the stream
    (claims.md asks no such thing, unlike `group_repurchase_30d`), so sessions of the last three
    days can only lower the figure. Interval: `rate_score_interval`, a compound-Poisson score
    interval with the sessions' design effect (a tail of a few orders, or none, still gets an
    interval that can reach the truth).
    """
    rows: list[tuple[int, int]] = []
    amounts: list[int] = []
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
            else:
                continue
            amounts.append(order.amount_cents)
        rows.append((tail_cents, live_cents))
    tail_total = sum(row[0] for row in rows)
    live_total = sum(row[1] for row in rows)
    observed = _ratio(tail_total, TAIL_DAYS * live_total)
    return Measurement(
        observed,
        len(rows),
        rate_score_interval([(tail, TAIL_DAYS * live) for tail, live in rows], amounts)
        if observed is not None
        else None,
        {
            "sessions": len(rows),
            "live_orders": live_orders,
            "tail_orders": tail_orders,
            "live_gmv_cny": live_total / 100,
            "tail_gmv_cny": tail_total / 100,
        },
        clusters=len(rows),
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


def _order_statistic_ranks(n: int, q: float, level: float) -> tuple[int, int]:
    """1-based ranks (l, u) of the order-statistic interval for the q-quantile of n independent
    values: l the largest rank with P(B <= l - 1) <= alpha/2, u the smallest with P(B <= u - 1)
    >= 1 - alpha/2, B ~ Binomial(n, q); 0 and n + 1 when no rank qualifies (unbounded)."""
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
    return lower_rank, upper_rank


def quantile_interval(
    sorted_values: list[float],
    q: float,
    level: float = 0.95,
    clusters: Sequence[Hashable] | None = None,
) -> tuple[float, float] | None:
    """Distribution-free interval for the population q-quantile from order statistics.

    [x_(l), x_(u)] with the ranks of `_order_statistic_ranks`: coverage is at least `level` for
    any continuous distribution of independent values. A side with no such rank (too few
    values) is unbounded (-inf / +inf); None when both are.

    With `clusters` (the cluster of each sorted value, e.g. the session of each question:
    questions of one room share its staff and how busy they are), Woodruff's (1952) reading
    of the interval is used: it is the inverse of an interval for the share of values at or
    below the quantile, a share of clustered cases. Its design effect (`design_effect`, by
    cluster, floored at 1) shrinks the sample to n_eff = n / deff, the ranks are chosen on
    n_eff values and carried back to the same quantile levels of the n values (rank r of m
    -> round(r (n + 1) / (m + 1))), as Korn and Graubard (1998) do for Wilson's interval.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    m = n
    if clusters is not None and n > 1:
        estimate = percentile(sorted_values, q)
        assert estimate is not None
        index: dict[Hashable, int] = {}
        hits: list[float] = []
        trials: list[float] = []
        for value, key in zip(sorted_values, clusters, strict=True):
            g = index.setdefault(key, len(index))
            if g == len(hits):
                hits.append(0.0)
                trials.append(0.0)
            hits[g] += value <= estimate
            trials[g] += 1.0
        m = max(1, math.floor(n / design_effect(hits, trials)))
    low_rank, high_rank = _order_statistic_ranks(m, q, level)
    if low_rank == 0 and high_rank == m + 1:
        return None
    if m != n:
        low_rank = min(n, max(1, round(low_rank * (n + 1) / (m + 1)))) if low_rank else 0
        high_rank = (
            min(n, max(1, round(high_rank * (n + 1) / (m + 1)))) if high_rank <= m else n + 1
        )
    low = sorted_values[low_rank - 1] if low_rank else -math.inf
    high = sorted_values[high_rank - 1] if high_rank <= n else math.inf
    return float(low), float(high)


def reply_latency(facts: _Facts) -> Measurement:
    """p95 (observed), p50 (seconds) of first reply ts - question ts; the unanswered share.

    Every valid `question` counts (in a started session or not); its first reply is the
    `reply` interaction with `reply_to` = its `event_id` and the smallest `ts`, from whichever
    session. A reply's `ts` earlier than its question's gives a negative latency, kept as the
    definition reads (it signals skewed producer clocks). Interval: the order-statistic interval
    of the 0.95 quantile on the effective sample of questions clustered by session
    (`quantile_interval` with `clusters`, Woodruff's method).
    """
    ledger = facts.ledger
    answered_in: list[tuple[float, str]] = []
    for question_id, (asked_ts, sid) in ledger.questions.items():
        first = ledger.first_reply_ts.get(question_id)
        if first is not None:
            answered_in.append(((first - asked_ts) / SECOND_MS, sid))
    answered_in.sort()
    latencies = [latency for latency, _sid in answered_in]
    sessions = [sid for _latency, sid in answered_in]
    questions = len(ledger.questions)
    answered = len(latencies)
    p95 = percentile(latencies, 0.95)
    return Measurement(
        p95,
        answered,
        quantile_interval(latencies, 0.95, clusters=sessions),
        {
            "questions": questions,
            "answered": answered,
            "unanswered_share": _ratio(questions - answered, questions),
            "p50_seconds": percentile(latencies, 0.5),
            "p95_seconds": p95,
        },
        clusters=len(set(sessions)),
    )


def return_rate(facts: _Facts) -> Measurement:
    """Distinct refunded `order_id`s that were paid / distinct paid `order_id`s (report only).

    Each distinct order id is one case, clustered by the session and buyer of its first
    `order_paid` (the earliest by ts, ties by `metrics.order_key`: not the arrival order,
    which differs between topics and partitions) for the interval.
    """
    first: dict[str, OrderFact] = {}
    for order in facts.orders:
        first.setdefault(order.order_id, order)
    refunded = {refund.order_id for refund in facts.ledger.refunds}
    orders = list(first.values())
    hits = [order.order_id in refunded for order in orders]
    return _order_share(hits, orders, "refunded_orders", "paid_orders")


EXTENDED_CLAIM_FUNCTIONS: Final = {
    "size_refund_share": size_refund_share,
    "bundle_share": bundle_share,
    "post_live_tail": post_live_tail,
    "reply_latency": reply_latency,
    "return_rate": return_rate,
}
