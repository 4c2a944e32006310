"""The extended claims of claims.md (refunds, bundles, the post-live tail, reply latency)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from agents.core.facts import ClaimFacts as _Facts
from agents.core.facts import Measurement
from agents.core.facts import ratio as _ratio
from agents.core.ledger import (
    BUNDLES,
    FOLDED_ANSWERED,
    FOLDED_WITHIN_3S,
    OLD_REPLY_BAR_MS,
    POST_LIVE_TAIL_MS,
    REPLY_BAR_MS,
    RETIRED_REPLY_ANSWERED,
    RETIRED_REPLY_G,
    RETIRED_REPLY_H2,
    RETIRED_REPLY_HN,
    RETIRED_REPLY_N2,
    RETIRED_REPLY_QUESTIONS,
    RETIRED_REPLY_WITHIN_3S,
    RETIRED_USERS,
    RETURNS,
    SESSION_HORIZON_MS,
    SIZE_REFUNDS,
    TAIL_COLUMNS,
    OrderFact,
)
from agents.core.sketch import QuantileSketch, quantile
from agents.core.stats import (
    ClusterSums,
    add_cluster_sums,
    add_moments,
    cluster_sums,
    cluster_wilson_from_sums,
    cluster_wilson_interval,
    rate_score_from_moments,
    row_moments,
    two_way_wilson_from_sums,
    user_cluster_sums,
)

DAY_MS: Final[int] = 86_400_000
TAIL_DAYS: Final[int] = 3
TAIL_WINDOW_MS: Final[int] = TAIL_DAYS * DAY_MS
# The session fold counts tail orders by the ledger's copy; the session horizon (after which a
# session's orders are not its own) must cover the tail window.
assert TAIL_WINDOW_MS == POST_LIVE_TAIL_MS <= SESSION_HORIZON_MS
SECOND_MS: Final[int] = 1_000
# `reply_latency`: the bar claimed (3 s, inclusive) and the old one it is contrasted with are
# the ledger's `REPLY_BAR_MS` and `OLD_REPLY_BAR_MS` (its fold counts against them).


#: An order share as mergeable parts: hits, cases, the `ClusterSums` of the first clustering
#: (sessions and lone orders) and of the (cluster, buyer) pairs, per buyer (hits, cases).
OrderSharePart = tuple[int, int, ClusterSums, ClusterSums, dict[str, list[int]]]


def _order_share(
    facts: _Facts, hits: list[bool], orders: list[OrderFact], claim: int
) -> OrderSharePart:
    """A share of paid orders with Wilson on the effective sample size of two crossed
    clusterings (`two_way_wilson_from_sums`): orders of one session share its line-up and
    audience, and one buyer orders many times (their size, their taste for bundles, their
    habit of returning). `clusters` counts the first clustering (sessions and lone orders,
    `ledger.order_cluster`). The held orders' cases are added to the folded ones
    (`Ledger.order_fold`, claim index `claim`: whole clusters and pairs, per buyer running
    totals wherever held, the buyers retired past the user horizon as their `ClusterSums`
    under `RETIRED_USERS`), all in integer sums, so the interval is the one of every case
    together."""
    fold = facts.ledger.order_fold
    by_cluster: dict[tuple[str, str], list[int]] = {}
    by_user: dict[str, list[int]] = {}
    by_pair: dict[tuple[tuple[str, str], str], list[int]] = {}
    for hit, order in zip(hits, orders, strict=True):
        key = facts.order_cluster(order)
        for row in (
            by_cluster.setdefault(key, [0, 0]),
            by_user.setdefault(order.user_id, [0, 0]),
            by_pair.setdefault((key, order.user_id), [0, 0]),
        ):
            row[0] += hit
            row[1] += 1
    for user, totals in fold.user_rows():
        h, n = totals[2 * claim], totals[2 * claim + 1]
        if n:
            row = by_user.setdefault(user, [0, 0])
            row[0] += h
            row[1] += n
    retired = fold.retired[claim]
    if retired[0]:  # the retired buyers' clusters, as `ClusterSums` (stats.user_cluster_sums)
        by_user[RETIRED_USERS] = list(retired)
    count = sum(hits) + fold.hits[claim]
    total = len(orders) + fold.cases[claim]
    folded_first = fold.first[claim]
    first: ClusterSums = add_cluster_sums(
        cluster_sums(by_cluster.values()),
        (folded_first[0], folded_first[1], folded_first[2], folded_first[3]),
    )
    folded_pairs = fold.pairs[claim]
    pairs: ClusterSums = add_cluster_sums(
        cluster_sums(by_pair.values()),
        (folded_pairs[0], folded_pairs[1], folded_pairs[2], folded_pairs[3]),
    )
    return count, total, first, pairs, by_user


def order_share_from_part(part: OrderSharePart, hits_key: str, total_key: str) -> Measurement:
    count, total, first, pairs, by_user = part
    return Measurement(
        _ratio(count, total),
        total,
        two_way_wilson_from_sums(count, total, first, user_cluster_sums(by_user), pairs)
        if total
        else None,
        {hits_key: count, total_key: total},
        clusters=first[0],
    )


def size_refund_share_part(facts: _Facts) -> OrderSharePart:
    """Paid orders with an `apparel` item that have a refund with reason `size` / such orders.

    Orders are counted as `order_paid` events (as in the core claims); a refund counts however
    many refunds the order has, if it counts at all under the refund horizon (for a payment of
    its order id at or before it and at most `LIVEPULSE_REFUND_HORIZON_DAYS` before it;
    `Ledger.refund_counts`); a refund of an order id never paid counts nowhere; a refund with
    no reason is not a `size` refund.
    """
    size_refunded = {refund.order_id for refund in facts.refunds if refund.reason == "size"}
    apparel = [order for order in facts.orders if order.has_apparel]
    hits = [order.order_id in size_refunded for order in apparel]
    return _order_share(facts, hits, apparel, SIZE_REFUNDS)


def size_refund_share(facts: _Facts) -> Measurement:
    return size_refund_share_from_part(size_refund_share_part(facts))


def size_refund_share_from_part(part: OrderSharePart) -> Measurement:
    return order_share_from_part(part, "size_refunded", "apparel_orders")


def bundle_share_part(facts: _Facts) -> OrderSharePart:
    """Paid orders (events, in or out of a session) with >= 2 distinct `sku_id`s / paid orders.

    Pooled over merchants: "a merchant's orders" is read as the share every merchant is claimed
    to reach, measured on all their orders together.
    """
    orders = facts.orders
    hits = [order.distinct_skus >= 2 for order in orders]
    return _order_share(facts, hits, orders, BUNDLES)


def bundle_share_from_part(part: OrderSharePart) -> Measurement:
    return order_share_from_part(part, "bundle_orders", "paid_orders")


def bundle_share(facts: _Facts) -> Measurement:
    return bundle_share_from_part(bundle_share_part(facts))


#: `post_live_tail` as parts: per ended session (tail cents, live cents), and the live and
#: tail orders' counts and the amounts' count, sum and sum of squares.
TailPart = tuple[dict[str, tuple[int, int]], tuple[int, int, int, int, int], tuple[int, ...]]


def post_live_tail(facts: _Facts) -> Measurement:
    return post_live_tail_from_part(post_live_tail_part(facts))


def post_live_tail_part(facts: _Facts) -> TailPart:
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
    rows: dict[str, tuple[int, int]] = {}
    # The amounts' count, sum and sum of squares (a summarized session keeps only these).
    amount_count = amount_sum = amount_squares = 0
    live_orders = tail_orders = 0
    for sid, session in facts.started.items():
        end = session.ended_ts
        if end is None:
            continue
        if session.summary is not None:  # its row and sums are in the ledger's `folded_tail`
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
            amount_count += 1
            amount_sum += order.amount_cents
            amount_squares += order.amount_cents * order.amount_cents
        rows[sid] = (tail_cents, live_cents)
    folded = facts.ledger.folded_tail
    live_orders += folded[0]
    tail_orders += folded[1]
    amount_count += folded[2]
    amount_sum += folded[3]
    amount_squares += folded[4]
    sums = (live_orders, tail_orders, amount_count, amount_sum, amount_squares)
    return rows, sums, folded[5:]


def tail_part(part: TailPart | tuple[dict[str, tuple[int, int]], tuple[int, ...]]) -> TailPart:
    """A part as this version keeps it; a snapshot version 9 frozen part has no moments."""
    if len(part) == 2:
        rows, (live_n, tail_n, count, total, squares) = part[0], part[1]
        return rows, (live_n, tail_n, count, total, squares), row_moments([], TAIL_COLUMNS)
    return part


def compact_tail_part(part: TailPart) -> TailPart:
    """A frozen period's part bounded: its rows folded into its moments, unless they are
    fewer numbers than the moments (a day of a few sessions), which then stay as they are."""
    rows, sums, folded = tail_part(part)
    if not any(folded) and len(rows) * TAIL_COLUMNS <= len(folded):
        return rows, sums, folded
    return {}, sums, add_moments([folded, row_moments(rows.values(), TAIL_COLUMNS)])


def post_live_tail_from_part(part: TailPart) -> Measurement:
    # The held rows' moments with the folded ones: the same figure and interval whether a
    # session is held or summarized, in one ledger or over merged partitions.
    by_session, sums, folded = tail_part(part)
    live_orders, tail_orders, amount_count, amount_sum, amount_squares = sums
    moments = add_moments(
        [folded, row_moments((by_session[sid] for sid in sorted(by_session)), TAIL_COLUMNS)]
    )
    sessions, tail_total, live_total = moments[0], moments[1], moments[2]
    observed = _ratio(tail_total, TAIL_DAYS * live_total)
    return Measurement(
        observed,
        sessions,
        rate_score_from_moments(moments, TAIL_DAYS, amount_count, amount_sum, amount_squares)
        if observed is not None
        else None,
        {
            "sessions": sessions,
            "live_orders": live_orders,
            "tail_orders": tail_orders,
            "live_gmv_cny": live_total / 100,
            "tail_gmv_cny": tail_total / 100,
        },
        clusters=sessions,
    )


#: `reply_latency` as parts: per session [answered within 3 s, questions], the answered
#: folded count and those within 3 min, the held latencies (ms) and the folded ones' sketch
#: (s). A frozen period keeps its latencies sketched (`compact_reply_part`): its p50/p95
#: (not shown by period) are then within the sketch's bound; the share is exact. Retired
#: sessions (`Ledger.retired_replies`) are one row under `RETIRED_REPLIES`: [answered within
#: 3 s, questions, sessions, sum within^2, sum within x questions, sum questions^2].
ReplyPart = tuple[dict[str, list[float]], int, int, list[int], QuantileSketch]
#: The key of the retired sessions' row in `ReplyPart`'s sessions (the contract rules out an
#: empty session id).
RETIRED_REPLIES: Final[str] = ""


def reply_latency(facts: _Facts) -> Measurement:
    return reply_latency_from_part(reply_latency_part(facts))


def reply_latency_part(facts: _Facts) -> ReplyPart:
    """Share of all questions answered within 3 s (observed); beside it p50/p95 (seconds) of
    the answered latencies, the unanswered share and the share answered within 3 min.

    Every valid `question` counts (in a started session or not); its first reply is the
    `reply` interaction with `reply_to` = its `event_id` and the smallest `ts`, from whichever
    session. An unanswered question is a miss, never dropped (claims.md). A reply's `ts`
    earlier than its question's gives a negative latency, kept as the definition reads (it
    signals skewed producer clocks). Interval: Wilson on the effective sample of questions
    clustered by session (`cluster_wilson_interval`): questions of one room share its staff
    and how busy they are.
    """
    ledger = facts.ledger
    latencies_ms: list[int] = []
    # session -> [questions answered within 3 s, questions], by session id
    per_session: dict[str, list[float]] = {}
    # What is folded (`Ledger._fold_questions`) is counted exactly; its latencies are in the
    # ledger's sketch, which p50/p95 read beside the held ones (agents/core/sketch.py).
    within_3min = ledger.folded_within_3min
    answered = 0
    # Held and folded questions alike (`Ledger.reply_latencies_by_session`); with a dedupe
    # window a reply answers only within the answer horizon (docs/design.md, "Worker state").
    for sid, (asked, answered_ms) in ledger.reply_latencies_by_session().items():
        folded = ledger.folded_replies.get(sid)
        within_3s_here = sum(ms <= REPLY_BAR_MS for ms in answered_ms)
        if folded is not None:
            within_3s_here += folded[FOLDED_WITHIN_3S]
            answered += folded[FOLDED_ANSWERED]
        per_session[sid] = [float(within_3s_here), float(asked)]
        latencies_ms.extend(answered_ms)
        within_3min += sum(ms <= OLD_REPLY_BAR_MS for ms in answered_ms)
    retired = ledger.retired_replies
    if retired[RETIRED_REPLY_G]:
        per_session[RETIRED_REPLIES] = [
            float(retired[column])
            for column in (
                RETIRED_REPLY_WITHIN_3S,
                RETIRED_REPLY_QUESTIONS,
                RETIRED_REPLY_G,
                RETIRED_REPLY_H2,
                RETIRED_REPLY_HN,
                RETIRED_REPLY_N2,
            )
        ]
        answered += retired[RETIRED_REPLY_ANSWERED]
    return per_session, answered, within_3min, latencies_ms, ledger.folded_figures.reply_latency_s


def compact_reply_part(part: ReplyPart) -> ReplyPart:
    """The part with its held latencies folded into a new sketch (bounded)."""
    sketch = part[4].copy()
    sketch.add_many(latency / SECOND_MS for latency in part[3])
    return part[0], part[1], part[2], [], sketch


def merge_reply_parts(parts: Sequence[ReplyPart]) -> ReplyPart:
    per_session: dict[str, list[float]] = {}
    answered = within_3min = 0
    latencies_ms: list[int] = []
    sketch = QuantileSketch()
    for part in parts:
        for sid, row in part[0].items():
            held = per_session.get(sid)
            per_session[sid] = (
                list(row) if held is None else [a + b for a, b in zip(held, row, strict=True)]
            )
        answered += part[1]
        within_3min += part[2]
        latencies_ms.extend(part[3])
        sketch.merge(part[4])
    return per_session, answered, within_3min, latencies_ms, sketch


def reply_latency_from_part(part: ReplyPart) -> Measurement:
    per_session, answered, within_3min, latencies_ms, folded_latencies = part
    latencies = sorted(latency / SECOND_MS for latency in latencies_ms)
    questions = int(sum(row[1] for row in per_session.values()))
    answered += len(latencies)
    within_3s = int(sum(row[0] for row in per_session.values()))
    retired = per_session.get(RETIRED_REPLIES)
    clusters = len(per_session)
    if retired is None:
        rows = list(per_session.values())
        interval = cluster_wilson_interval([r[0] for r in rows], [r[1] for r in rows])
    else:  # the held sessions' rows with the retired ones' sums: the same, exact integers
        g, h2, hn, n2 = (int(value) for value in retired[2:6])
        for sid, row in per_session.items():
            if sid != RETIRED_REPLIES:
                hits, asked = row
                g += 1
                h2, hn, n2 = h2 + int(hits * hits), hn + int(hits * asked), n2 + int(asked * asked)
        clusters = g
        interval = cluster_wilson_from_sums(within_3s, questions, (g, h2, hn, n2))
    return Measurement(
        _ratio(within_3s, questions),
        questions,
        interval,
        {
            "questions": questions,
            "answered": answered,
            "answered_within_3s": within_3s,
            "answered_within_3min": within_3min,
            "unanswered_share": _ratio(questions - answered, questions),
            "share_within_3min": _ratio(within_3min, questions),
            # Latencies folded out of the ledger are in its sketch (agents/core/sketch.py).
            "p50_seconds": quantile(0.5, folded_latencies, latencies),
            "p95_seconds": quantile(0.95, folded_latencies, latencies),
        },
        clusters=clusters,
    )


def return_rate_part(facts: _Facts) -> OrderSharePart:
    """Distinct refunded `order_id`s that were paid / distinct paid `order_id`s (report only).

    Each distinct order id is one case, clustered by the session and buyer of its first
    `order_paid` (the earliest by ts, ties by `facts.order_key`: not the arrival order,
    which differs between topics and partitions) for the interval.
    """
    first: dict[str, OrderFact] = {}
    for order in facts.orders:
        first.setdefault(order.order_id, order)
    refunded = {refund.order_id for refund in facts.refunds}  # under the refund horizon
    orders = list(first.values())
    hits = [order.order_id in refunded for order in orders]
    return _order_share(facts, hits, orders, RETURNS)


def return_rate_from_part(part: OrderSharePart) -> Measurement:
    return order_share_from_part(part, "refunded_orders", "paid_orders")


def return_rate(facts: _Facts) -> Measurement:
    return return_rate_from_part(return_rate_part(facts))


EXTENDED_CLAIM_FUNCTIONS: Final = {
    "size_refund_share": size_refund_share,
    "bundle_share": bundle_share,
    "post_live_tail": post_live_tail,
    "reply_latency": reply_latency,
    "return_rate": return_rate,
}
