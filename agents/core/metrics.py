"""The core claims of claims.md computed from a ledger's facts, with their 95% intervals."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agents.core.extended import (
    EXTENDED_CLAIM_FUNCTIONS,
    TailPart,
    bundle_share_from_part,
    bundle_share_part,
    compact_reply_part,
    compact_tail_part,
    merge_reply_parts,
    post_live_tail_from_part,
    post_live_tail_part,
    reply_latency_from_part,
    reply_latency_part,
    return_rate_from_part,
    return_rate_part,
    size_refund_share_from_part,
    size_refund_share_part,
    tail_part,
)
from agents.core.facts import ClaimFacts, Measurement, order_key, ratio
from agents.core.ledger import (
    BUYER_AFTER5,
    BUYER_MEMBER,
    BUYER_ORDERS,
    CST,
    FIVE_MINUTES_MS,
    MONTH_CENTS,
    MONTH_LAST_DAY,
    MONTH_MEMBER_CENTS,
    MONTH_MEMBERS,
    MONTH_ROWS,
    PRICE_TIERS,
    RETIRED_AFTER5_H2,
    RETIRED_AFTER5_HN,
    RETIRED_G,
    RETIRED_MEMBER_H2,
    RETIRED_MEMBER_HN,
    RETIRED_N2,
    RETIRED_USERS,
    SHARE_AFTER5_H2,
    SHARE_AFTER5_HN,
    SHARE_MEMBER_H2,
    SHARE_MEMBER_HN,
    SPEND_MOMENTS,
    TAIL_COLUMNS,
    UPLIFT_COLUMNS,
    Ledger,
    SessionFacts,
    cst_day,
    cst_month,
    price_tier,
    uplift_counts,
)
from agents.core.sample import AOV_SAMPLE_SIZE, bottom_k
from agents.core.sketch import FoldedFigures, quantile, spearman_bounded
from agents.core.stats import (
    ClusterSums,
    add_cluster_sums,
    add_moments,
    cluster_ratio_t_interval,
    cluster_ratio_t_quantiles,
    cluster_spearman_interval,
    cluster_sums,
    day_ratio_intervals,
    day_ratio_intervals_from_sums,
    empty_moments,
    log_ratio_interval,
    moments_log_ratio_interval,
    ratio_se_from_sums,
    row_moments,
    spearman_interval,
    spearman_rho,
    t_interval,
    two_way_mean_se_from_sums,
    two_way_wilson_from_sums,
    user_cluster_sums,
    wilson_interval,
)

MINUTE_MS: Final[int] = 60_000
THIRTY_DAYS_MS: Final[int] = 30 * 24 * 3600 * 1000
# Price tiers of `price_dwell_association` (`PRICE_TIERS`, by the order's highest unit price
# in cents), the CST calendar (`cst_day`, `cst_month`) and minute 5 live in the ledger, whose
# session fold computes with them.
STABLE_DAY_MIN_ORDERS: Final[int] = 30
AOV_BAR_CNY: Final[float] = 500.0
# The family error of `live_aov`'s judged days, split evenly over them (Bonferroni).
DAY_FAMILY_ALPHA: Final[float] = 0.05


# The claim functions' own names for the shared views and the guarded ratio (agents.core.facts).
_Facts = ClaimFacts
_ratio = ratio
__all__ = [
    "CST",
    "FIVE_MINUTES_MS",
    "PRICE_TIERS",
    "Measurement",
    "cst_day",
    "cst_month",
    "order_key",
]


def _same(part: Any) -> Any:
    return part


def _proportion(hits: int, total: int, hits_key: str, total_key: str) -> Measurement:
    """A share of independent cases with its Wilson interval, and both counts under the truth
    file's names."""
    return Measurement(
        _ratio(hits, total), total, wilson_interval(hits, total), {hits_key: hits, total_key: total}
    )


#: A share of session orders as mergeable parts (`_session_proportion_part`): hits, cases, the
#: `ClusterSums` of the session clusters and of the (session, buyer) pairs, and per buyer the
#: (hits, cases) row. Sessions and pairs are whole in one partition (a session's record key),
#: so their sums add; a buyer orders in several, so their rows add per user (docs/metrics.md,
#: "Claims by period": merged partitions).
SharePart = tuple[int, int, ClusterSums, ClusterSums, dict[str, list[int]]]


def _session_proportion_part(
    facts: _Facts, cases: list[tuple[bool, str, str]], folded: tuple[str, int, int, int]
) -> SharePart:
    """A share of session orders, each held case (hit, session id, buyer), plus the summarized
    sessions' (`folded`: the `SessionSummary` attribute of their hits, the `SHARE_*` indices of
    its pair sums h^2 and h n, the `BUYER_*` index of the buyers' running hits), as parts: its
    cluster sums are integers, the held cases' and the summarized ones' added exactly."""
    attribute, _h2_index, _hn_index, buyer_index = folded  # the pair sums: `FOLDED_SHARES`
    by_session: dict[str, list[int]] = {}
    by_user: dict[str, list[int]] = {}
    by_pair: dict[tuple[str, str], list[int]] = {}
    for hit, sid, user in cases:
        for row in (
            by_session.setdefault(sid, [0, 0]),
            by_user.setdefault(user, [0, 0]),
            by_pair.setdefault((sid, user), [0, 0]),
        ):
            row[0] += hit
            row[1] += 1
    hits = sum(hit for hit, _sid, _user in cases)
    total = len(cases)
    pairs: ClusterSums = cluster_sums(by_pair.values())
    sessions = cluster_sums(by_session.values())
    # The summarized sessions' clusters, folded into the ledger's sums at their summary.
    folded_row = facts.ledger.folded_shares.get(attribute)
    if folded_row is not None:
        hits += folded_row[0]
        total += folded_row[1]
        g, h2, hn, n2, pair_g, pair_h2, pair_hn, pair_n2 = folded_row[2:]
        sessions = add_cluster_sums(sessions, (g, h2, hn, n2))
        pairs = add_cluster_sums(pairs, (pair_g, pair_h2, pair_hn, pair_n2))
    for user, running in facts.ledger.folded_buyers.items():
        held = by_user.get(user)
        if held is None:
            by_user[user] = [running[buyer_index], running[BUYER_ORDERS]]
        else:
            held[0] += running[buyer_index]
            held[1] += running[BUYER_ORDERS]
    retired = facts.ledger.retired_buyers
    if retired[RETIRED_G]:  # the retired users' clusters, as `ClusterSums` (stats.py)
        h2, hn = (
            (RETIRED_AFTER5_H2, RETIRED_AFTER5_HN)
            if buyer_index == BUYER_AFTER5
            else (RETIRED_MEMBER_H2, RETIRED_MEMBER_HN)
        )
        by_user[RETIRED_USERS] = [retired[RETIRED_G], retired[h2], retired[hn], retired[RETIRED_N2]]
    return hits, total, sessions, pairs, by_user


def add_user_rows(
    into: dict[str, list[int]], rows: dict[str, list[int]], last_day: int | None = None
) -> None:
    """Rows of integers by key (a user's; the screen's by source or SKU) added into `into`
    (copies: `rows` is not shared). `last_day`: the index of a per-user row's last-day
    column (`ledger.BUYER_LAST_DAY`), where present the maximum of the two rows', not the sum
    (the retired users' row, `RETIRED_USERS`, is moments: summed whole)."""
    for user, row in rows.items():
        held = into.get(user)
        if held is None:
            into[user] = list(row)
            continue
        summed = len(row) if last_day is None or user == RETIRED_USERS else last_day
        for i, value in enumerate(row[:summed]):
            held[i] += value
        if len(row) > summed:
            if len(held) > summed:
                held[summed] = max(held[summed], row[summed])
            else:
                held.append(row[summed])


def merge_share_parts(parts: Sequence[SharePart]) -> SharePart:
    """Parts of disjoint sessions (partitions, or days of a month) added."""
    hits = total = 0
    sessions: ClusterSums = (0, 0, 0, 0)
    pairs: ClusterSums = (0, 0, 0, 0)
    users: dict[str, list[int]] = {}
    for part in parts:
        hits += part[0]
        total += part[1]
        sessions = add_cluster_sums(sessions, part[2])
        pairs = add_cluster_sums(pairs, part[3])
        add_user_rows(users, part[4])
    return hits, total, sessions, pairs, users


def fold_share_part(part: SharePart) -> SharePart:
    """The part with its per-user rows folded into their `ClusterSums` under the retired
    users' id (`RETIRED_USERS`): the same figure and interval (integer sums), bounded. Only
    for a part whose users are whole in it (`ClaimParts.fold`)."""
    hits, total, sessions, pairs, by_user = part
    if not any(user != RETIRED_USERS for user in by_user):
        return part
    return hits, total, sessions, pairs, {RETIRED_USERS: list(user_cluster_sums(by_user))}


def share_from_part(part: SharePart, hits_key: str, total_key: str) -> Measurement:
    """The share and its interval: Wilson on the effective sample size of the two crossed
    clusterings (orders of one session share its timing and audience, and one buyer orders in
    several sessions), from the integer sums."""
    hits, total, sessions, pairs, by_user = part
    interval = (
        two_way_wilson_from_sums(hits, total, sessions, user_cluster_sums(by_user), pairs)
        if total
        else None
    )
    return Measurement(
        _ratio(hits, total),
        total,
        interval,
        {hits_key: hits, total_key: total},
        clusters=sessions[0],
    )


def _close_ts(session: SessionFacts) -> int:
    return session.ended_ts if session.ended_ts is not None else session.last_ts


def orders_after_minute_5_part(facts: _Facts) -> SharePart:
    cases: list[tuple[bool, str, str]] = []
    for sid, session, order in facts.session_orders():
        assert session.started_ts is not None
        cases.append((order.ts - session.started_ts >= FIVE_MINUTES_MS, sid, order.user_id))
    folded = ("after_5min", SHARE_AFTER5_H2, SHARE_AFTER5_HN, BUYER_AFTER5)
    return _session_proportion_part(facts, cases, folded)


def orders_after_minute_5_from_part(part: SharePart) -> Measurement:
    return share_from_part(part, "after_5min", "session_orders")


def orders_after_minute_5(facts: _Facts) -> Measurement:
    return orders_after_minute_5_from_part(orders_after_minute_5_part(facts))


_tier = price_tier


#: `price_dwell_association` as parts: the held session orders' (dearest unit price in cents,
#: watch minutes, session id), and the sketched part (`FoldedFigures`: the orders folded out).
#: Raw pairs are not bounded: a frozen period keeps its pairs sketched (`compact_price_part`),
#: so a period merged over partitions reads rho from the merged `RankTable`, within its bound.
PricePart = tuple[list[int], list[float], list[str], FoldedFigures]


def price_dwell_part(facts: _Facts) -> PricePart:
    prices: list[int] = []
    watch_minutes: list[float] = []
    order_sessions: list[str] = []
    for sid, session, order in facts.session_orders():
        order_sessions.append(sid)
        watched = session.watch_ms(order.user_id, until_ts=order.ts)
        prices.append(order.max_unit_price_cents)
        watch_minutes.append(watched / MINUTE_MS)
    # Orders folded out of the ledger (their watch time final) are in its sketches
    # (agents/core/sketch.py): with none, every figure here is exact.
    return prices, watch_minutes, order_sessions, facts.ledger.folded_figures


def compact_price_part(part: PricePart) -> PricePart:
    """The part with its raw pairs folded into a new sketch (bounded: a frozen period's)."""
    prices, minutes, sessions, folded = part
    sketch = FoldedFigures()
    sketch.merge(folded)
    for price, watched in zip(prices, minutes, strict=True):
        sketch.fold_order(_tier(price), price, watched)
    sketch.price_watch_sessions += len(set(sessions))
    return [], [], [], sketch


def merge_price_parts(parts: Sequence[PricePart]) -> PricePart:
    sketch = FoldedFigures()
    prices: list[int] = []
    minutes: list[float] = []
    sessions: list[str] = []
    for part in parts:
        prices.extend(part[0])
        minutes.extend(part[1])
        sessions.extend(part[2])
        sketch.merge(part[3])
    return prices, minutes, sessions, sketch


def price_dwell_from_part(part: PricePart) -> Measurement:
    prices, watch_minutes, order_sessions, folded = part
    by_tier: dict[str, list[float]] = {name: [] for name, _ in PRICE_TIERS}
    for price, minutes in zip(prices, watch_minutes, strict=True):
        by_tier[_tier(price)].append(minutes)
    n = len(prices) + folded.price_watch.count
    clusters = len(set(order_sessions)) + folded.price_watch_sessions
    interval: tuple[float, float] | None
    rho: float | None
    bound: float | None = None
    if folded.price_watch.count == 0:
        rho = spearman_rho(prices, watch_minutes)
        # Clustered by session: orders of one session are not independent pairs.
        interval = (
            cluster_spearman_interval(prices, watch_minutes, order_sessions)
            if rho is not None
            else None
        )
    else:
        live = [(int(price), minutes) for price, minutes in zip(prices, watch_minutes, strict=True)]
        rho, bound = spearman_bounded(folded.price_watch, live, None)
        # The pairs the cluster bootstrap resamples are gone: Fisher-z with one observation
        # per session, wider than any clustering of the orders within them, and widened by
        # how far the binned rho (its ties) can be from the pairs' exact rho.
        interval = spearman_interval(rho, clusters, bound=bound) if rho is not None else None
    detail: dict[str, Any] = {
        "n": n,
        "median_watch_minutes_by_tier": {
            name: quantile(0.5, folded.watch_minutes_by_tier.get(name), sorted(values))
            for name, values in by_tier.items()
        },
    }
    if bound is not None:  # read from the rank table: how far from the exact rho it can be
        detail["rho_bound"] = bound
    return Measurement(rho, n, interval, detail, clusters=clusters)


def price_dwell_association(facts: _Facts) -> Measurement:
    return price_dwell_from_part(price_dwell_part(facts))


def interaction_pairs(session: SessionFacts, horizon: bool = False) -> tuple[int, int, int, int]:
    """A session's (viewer) pairs by interaction: interacting buyers, interacting pairs, other
    buyers, other pairs (with `horizon`, the session horizon's rule: no buyer by an order
    after it, as a summary counts them)."""
    summary = session.summary
    if summary is not None:
        return summary.uplift
    orders = session.horizon_orders() if horizon else session.orders
    buyers = {order.user_id for order in orders}
    return uplift_counts(session.viewers, session.interacting_users, buyers)


#: `interaction_uplift` as parts: per held session with viewers its row (interacting buyers,
#: interacting pairs, other buyers, other pairs) by session id, and the `stats.row_moments`
#: of the rows folded out of the sessions (`Ledger.folded_uplift`, a frozen period's).
UpliftPart = tuple[dict[str, tuple[int, int, int, int]], tuple[int, ...]]
#: The exponents of the ratio of ratios (IB / IP) / (OB / OP) over a row's columns.
UPLIFT_EXPONENTS: Final[tuple[int, int, int, int]] = (1, -1, -1, 1)


def interaction_uplift_part(facts: _Facts) -> UpliftPart:
    # Only sessions with a `session_started` are sessions (as for "session orders"). A
    # summarized session's row is in the ledger's moments (`Ledger._summarize`).
    rows = {
        sid: interaction_pairs(s, facts.ledger.fold_sessions)
        for sid, s in facts.started.items()
        if s.summary is None and s.viewers
    }
    return rows, facts.ledger.folded_uplift


def _uplift_part(part: UpliftPart | dict[str, tuple[int, int, int, int]]) -> UpliftPart:
    """A part as this version keeps it; a snapshot version 9 frozen part is its rows only."""
    if isinstance(part, dict):
        return part, empty_moments(UPLIFT_COLUMNS)
    return part


def merge_uplift_parts(parts: Sequence[UpliftPart]) -> UpliftPart:
    """Rows by session united (`merge_session_rows`), folded moments added: exact when each
    folded session was folded in one part (a session's events share its record key)."""
    held = [_uplift_part(part) for part in parts]
    rows = merge_session_rows([part[0] for part in held])
    return rows, add_moments([empty_moments(UPLIFT_COLUMNS), *(part[1] for part in held)])


def compact_uplift_part(part: UpliftPart) -> UpliftPart:
    """A frozen period's part bounded: its rows folded into its moments, unless they are
    fewer numbers than the moments (a day of a few sessions), which then stay as they are."""
    rows, folded = _uplift_part(part)
    if not any(folded) and len(rows) * UPLIFT_COLUMNS <= len(folded):
        return rows, folded
    return {}, add_moments([folded, row_moments(rows.values(), UPLIFT_COLUMNS)])


def merge_session_rows(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-session rows of disjoint sessions united (a session id in two parts, a producer
    that keyed it apart: its rows added, as `SessionSummary.combined` does)."""
    out: dict[str, Any] = {}
    for part in parts:
        for sid, row in part.items():
            held = out.get(sid)
            out[sid] = (
                row if held is None else type(row)(a + b for a, b in zip(held, row, strict=True))
            )
    return out


def interaction_uplift_from_part(part: UpliftPart) -> Measurement:
    # The held rows' moments with the folded ones: the same figure and interval whether a
    # session is held or folded, in one ledger or over merged partitions (docs/metrics.md).
    rows, folded = _uplift_part(part)
    moments = add_moments(
        [folded, row_moments((rows[sid] for sid in sorted(rows)), UPLIFT_COLUMNS)]
    )
    clusters = moments[0]
    ib, ip, ob, op = moments[1 : 1 + UPLIFT_COLUMNS]
    cr_i = _ratio(ib, ip)
    cr_n = _ratio(ob, op)
    observed = cr_i / cr_n if cr_i is not None and cr_n else None
    return Measurement(
        observed,
        ip + op,
        moments_log_ratio_interval(moments, UPLIFT_EXPONENTS) if observed is not None else None,
        {
            "interacting_pairs": ip,
            "interacting_buyers": ib,
            "other_pairs": op,
            "other_buyers": ob,
            "cr_interacting": cr_i,
            "cr_other": cr_n,
        },
        clusters=clusters,
    )


def interaction_uplift(facts: _Facts) -> Measurement:
    return interaction_uplift_from_part(interaction_uplift_part(facts))


#: `live_aov` as parts: per session [GMV cents, orders], and per CST day per session the same
#: (a session running past midnight is a cluster of each day it has orders in). Retired
#: sessions trimmed out of the sample (`Ledger.trim_aov_rows`) are one row of their sums G, y,
#: m, y^2, y m, m^2 under `RETIRED_AOV`, in the sessions as in each day.
AovPart = tuple[dict[str, list[int]], dict[str, dict[str, list[int]]]]


def live_aov_part(facts: _Facts) -> AovPart:
    per_session: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_day: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for sid, _session, order in facts.session_orders():
        day_bucket = per_day[cst_day(order.ts)].setdefault(sid, [0, 0])
        for bucket in (per_session[sid], day_bucket):
            bucket[0] += order.amount_cents
            bucket[1] += 1
    for sid, summary in facts.summaries():
        if summary.orders:
            per_session[sid] = [summary.gmv_cents, summary.orders]
            for day_start, (gmv, n) in summary.days.items():
                per_day[cst_day(day_start)][sid] = [gmv, n]
    # Retired summaries (`Ledger._retire_summaries`): their rows, and per day the sums of
    # their clusters under `RETIRED_AOV` (added by `merge_session_rows` like a row).
    ledger = facts.ledger
    for sid, (gmv, n) in ledger.retired_aov_rows.items():
        per_session[sid] = [gmv, n]
    if ledger.retired_aov_sums[0]:
        per_session[RETIRED_AOV] = list(ledger.retired_aov_sums)
    for day_start, sums in ledger.retired_aov_days.items():
        per_day[cst_day(day_start)][RETIRED_AOV] = list(sums)
    return dict(per_session), dict(per_day)


#: The key of a day's retired (session, day) clusters in `AovPart`'s days: their sums G, y, m,
#: y^2, y m, m^2 (`ratio_sums`), not a session's row.
RETIRED_AOV: Final[str] = ""


def _day_sums(sessions: Mapping[str, Sequence[int]]) -> tuple[int, int, int, int, int, int]:
    """A day's clusters as `ratio_sums`: its sessions' rows with its retired clusters' sums."""
    g = y = m = y2 = ym = m2 = 0
    for sid, row in sessions.items():
        if sid == RETIRED_AOV:
            g, y, m = g + row[0], y + row[1], m + row[2]
            y2, ym, m2 = y2 + row[3], ym + row[4], m2 + row[5]
        else:
            g, y, m = g + 1, y + row[0], m + row[1]
            y2, ym, m2 = y2 + row[0] * row[0], ym + row[0] * row[1], m2 + row[1] * row[1]
    return g, y, m, y2, ym, m2


def merge_aov_parts(parts: Sequence[AovPart]) -> AovPart:
    per_day: dict[str, dict[str, list[int]]] = {}
    for part in parts:
        for day, sessions in part[1].items():
            per_day[day] = merge_session_rows([per_day.get(day, {}), sessions])
    return merge_session_rows([part[0] for part in parts]), per_day


def live_aov(facts: _Facts) -> Measurement:
    return live_aov_from_part(live_aov_part(facts))


def live_aov_from_part(part: AovPart) -> Measurement:
    """Session GMV / session orders (CNY), overall and per CST day, with the intervals the
    verdict rests on (claims.md): the overall 95% interval, and for each judged day (>= 30
    session orders) an interval clustered by session at 1 - 0.05 / k (`day_ratio_intervals`),
    k the number of judged days (Bonferroni: together the k days' intervals hold their truths
    with >= 95%).
    A judged day with orders from one session only has no interval (no spread between rooms
    to speak from): it can never count as at or above the bar."""
    # Clusters in session id order (the held sessions' loop's, the summaries' and the merged
    # parts' alike).
    per_session = dict(sorted(part[0].items()))
    per_day = {day: dict(sorted(sessions.items())) for day, sessions in part[1].items()}
    overall = _day_sums(per_session)
    clusters, gmv_cents, count = overall[0], overall[1], overall[2]
    observed = gmv_cents / count / 100 if count else None
    interval = _aov_interval(per_session, overall)
    if interval is not None:
        interval = (interval[0] / 100, interval[1] / 100)
    retired = any(RETIRED_AOV in sessions for sessions in per_day.values())
    day_sums = {day: _day_sums(sessions) for day, sessions in sorted(per_day.items())}
    day_totals = {day: (sums[1], sums[2]) for day, sums in day_sums.items()}
    judged_days = [day for day, (_gmv, n) in day_totals.items() if n >= STABLE_DAY_MIN_ORDERS]
    day_level = 1 - DAY_FAMILY_ALPHA / len(judged_days) if judged_days else None
    day_intervals: dict[str, list[float] | None] = {}
    if day_level is not None:
        # With retired sessions the days' sums (exact integers) give the same intervals.
        found = (
            day_ratio_intervals_from_sums([day_sums[day] for day in judged_days], day_level)
            if retired
            else day_ratio_intervals(
                [list(per_day[day].values()) for day in judged_days], level=day_level
            )
        )
        for day, iv in zip(judged_days, found, strict=True):
            day_intervals[day] = [iv[0] / 100, iv[1] / 100] if iv is not None else None
    return Measurement(
        observed,
        count,
        interval,
        {
            "session_orders": count,
            "gmv_cny": gmv_cents / 100,
            "per_day": {day: gmv / n / 100 for day, (gmv, n) in day_totals.items()},
            "per_day_orders": {day: n for day, (_gmv, n) in day_totals.items()},
            "judged_days": judged_days,
            "day_level": day_level,
            "day_intervals": day_intervals,
            "days_below": [
                day for day, iv in day_intervals.items() if iv is not None and iv[1] < AOV_BAR_CNY
            ],
            "days_at_or_above": [
                day for day, iv in day_intervals.items() if iv is not None and iv[0] >= AOV_BAR_CNY
            ],
        },
        clusters=clusters,
    )


def _aov_interval(
    per_session: Mapping[str, Sequence[int]], overall: tuple[int, int, int, int, int, int]
) -> tuple[float, float] | None:
    """`live_aov`'s overall interval in cents: the bootstrap-t over sessions
    (`cluster_ratio_t_interval`). With at most `AOV_SAMPLE_SIZE` sessions, over their rows, as
    always; with more, its centre and se from the sessions' exact sums and its t* quantiles
    from the sample's rows (`sample.bottom_k`: the same sessions in a ledger and in merged
    partitions), the rows past it not kept (`Ledger.trim_aov_rows`)."""
    rows = {sid: row for sid, row in per_session.items() if sid != RETIRED_AOV}
    if overall[0] <= AOV_SAMPLE_SIZE:
        return cluster_ratio_t_interval(list(rows.values()))
    sample = bottom_k(rows, AOV_SAMPLE_SIZE)
    g, y, m, y2, ym, m2 = overall
    if not m:
        return None
    se = ratio_se_from_sums((g, y2, ym, m2), y, m)  # from exact integers
    return cluster_ratio_t_interval([sample[sid] for sid in sorted(sample)], whole=(y / m, se))


def group_order_share_part(facts: _Facts) -> SharePart:
    cases = [
        (member, sid, order.user_id)
        for (sid, _session, order), member in zip(
            facts.session_orders(), facts.member_orders(), strict=True
        )
    ]
    folded = ("member_orders", SHARE_MEMBER_H2, SHARE_MEMBER_HN, BUYER_MEMBER)
    return _session_proportion_part(facts, cases, folded)


def group_order_share_from_part(part: SharePart) -> Measurement:
    return share_from_part(part, "member_orders", "session_orders")


def group_order_share(facts: _Facts) -> Measurement:
    return group_order_share_from_part(group_order_share_part(facts))


def group_repurchase_30d(facts: _Facts) -> Measurement:
    # The pairs whose outcome is final, folded (`Ledger.repurchase_folded`), then those held.
    eligible, repurchased = facts.ledger.repurchase_folded
    end_ts = facts.end_ts
    # Per (merchant, user): the first order's ts and the earliest later one (`Ledger.first_orders`,
    # with a worker's the parts an owner partition holds: `Ledger.first_order_pairs`), and
    # membership at it as the owner recorded it (`Ledger.first_order_members`: the group events
    # before it may be compacted), else as the group events say.
    recorded = facts.ledger.first_order_members()
    for pair, (first, later) in sorted(facts.ledger.first_order_pairs().items()):
        if end_ts is None or first + THIRTY_DAYS_MS > end_ts:
            continue
        member = recorded.get(pair)
        if member is None:
            member = facts.membership(*pair).member_at(first)
        if not member:
            continue
        eligible += 1
        # Another order strictly after the first, within 30 days of it (inclusive).
        if later is not None and later <= first + THIRTY_DAYS_MS:
            repurchased += 1
    return _proportion(repurchased, eligible, "repurchased", "eligible")


#: `group_member_dwell` as parts: pairs, their watch ms and its sum of squares, the
#: `ClusterSums` of the sessions' (watch ms, pairs), and per member user the same row. A
#: folded part (`fold_dwell_part`) has its users' rows as `ClusterSums` under
#: `RETIRED_USERS` and a sixth item: its bootstrap's t* quantiles, or None for no interval.
DwellPart = tuple[int, int, int, ClusterSums, dict[str, list[int]]]
FoldedDwellPart = tuple[
    int, int, int, ClusterSums, dict[str, list[int]], tuple[float, float] | None
]


def group_member_dwell_part(facts: _Facts) -> DwellPart:
    # One case per (session, member) pair: its watch time in ms, session and user; the
    # summarized sessions' pairs as sums (`SessionSummary.dwell`, `Ledger.folded_dwellers`).
    by_session: dict[str, list[int]] = {}
    by_user: dict[str, list[int]] = {}
    pairs = total_ms = squares_ms = 0
    for sid, session in facts.started.items():
        if session.summary is not None:  # its pairs are in the ledger's `folded_dwell`
            continue
        # Membership at each first join, looked up once for this claim and the next.
        for user, _first, member in facts.member_joins(sid):
            if not member:
                continue
            watched = session.watch_ms(user)
            row = by_session.get(sid)  # the two rows written out: no tuple a pair
            if row is None:
                by_session[sid] = [watched, 1]
            else:
                row[0] += watched
                row[1] += 1
            row = by_user.get(user)
            if row is None:
                by_user[user] = [watched, 1]
            else:
                row[0] += watched
                row[1] += 1
            pairs += 1
            total_ms += watched
            squares_ms += watched * watched
    for user, dwelled in facts.ledger.folded_dwellers.items():
        watched, count = dwelled[0], dwelled[1]  # (then the last day, with a user horizon)
        row = by_user.get(user)
        if row is None:
            by_user[user] = [watched, count]
        else:
            row[0] += watched
            row[1] += count
    if facts.ledger.retired_dwellers[0]:  # the retired users' clusters, as `ClusterSums`
        by_user[RETIRED_USERS] = list(facts.ledger.retired_dwellers)
    folded = facts.ledger.folded_dwell
    sessions = add_cluster_sums(
        cluster_sums(by_session.values()), (folded[3], folded[4], folded[5], folded[6])
    )
    return pairs + folded[0], total_ms + folded[1], squares_ms + folded[2], sessions, by_user


def merge_dwell_parts(
    parts: Sequence[DwellPart | FoldedDwellPart],
) -> DwellPart | FoldedDwellPart:
    """The parts of disjoint sub-streams added. A folded part (its users' rows folded with
    their bootstrap, `fold_dwell_part`) adds only to parts holding no user rows: then it
    holds every user of the union (a period's rows folded at its owner partition,
    agents/core/period_rows.py, and the sources' parts without them), and the sum is folded."""
    pairs = total_ms = squares_ms = 0
    sessions: ClusterSums = (0, 0, 0, 0)
    users: dict[str, list[int]] = {}
    whole: FoldedDwellPart | None = None
    for part in parts:
        if len(part) > 5 and RETIRED_USERS in part[4]:
            # Folded: its bootstrap's rows are gone, no merged interval with other rows. (A
            # period's raw part has no retired users: `periods.period_ledger` is a fresh
            # ledger.)
            if whole is not None:
                raise ValueError("two folded group_member_dwell parts do not merge")
            whole = part
        else:
            add_user_rows(users, part[4])
        pairs += part[0]
        total_ms += part[1]
        squares_ms += part[2]
        sessions = add_cluster_sums(sessions, part[3])
    if whole is None:
        return pairs, total_ms, squares_ms, sessions, users
    if users:
        raise ValueError("a folded group_member_dwell part does not merge with user rows")
    return pairs, total_ms, squares_ms, sessions, whole[4], whole[5]


def group_member_dwell(facts: _Facts) -> Measurement:
    return group_member_dwell_from_part(group_member_dwell_part(facts))


def _dwell_rows(by_user: dict[str, list[int]]) -> list[list[float]]:
    """The bootstrap's rows: the kept users' (minutes, pairs), by user id (a retired user's
    row is gone)."""
    return [
        [watched / MINUTE_MS, count]
        for user, (watched, count, *_) in sorted(by_user.items())
        if user != RETIRED_USERS
    ]


def fold_dwell_part(part: DwellPart | FoldedDwellPart) -> FoldedDwellPart:
    """The part with its per-user rows folded into their `ClusterSums` and its bootstrap
    kept as the t* quantiles of those rows (`stats.cluster_ratio_t_quantiles`): the centre
    and se come from the sums, so the same figure and interval (to rounding), bounded. Only
    for a part whose users are whole in it and which is never merged again
    (`ClaimParts.fold`); a folded part merges only with parts holding no user rows
    (`merge_dwell_parts`)."""
    pairs, total_ms, squares_ms, sessions, by_user, quantiles = dwell_with_quantiles(part)
    if not any(user != RETIRED_USERS for user in by_user):
        return part if len(part) > 5 else (pairs, total_ms, squares_ms, sessions, by_user, None)
    folded = {RETIRED_USERS: list(user_cluster_sums(by_user))}
    return pairs, total_ms, squares_ms, sessions, folded, quantiles


def dwell_with_quantiles(part: DwellPart | FoldedDwellPart) -> FoldedDwellPart:
    """The part with its bootstrap's t* quantiles as a sixth item (its rows kept, so it
    still merges): `finish` then reads them, and `fold_dwell_part` runs no bootstrap again
    (`periods.freeze_closed` in a ledger holding every partition: one bootstrap a period)."""
    if len(part) > 5:
        return part
    pairs, total_ms, squares_ms, sessions, by_user = part[:5]
    # From the rows, not the pairs: an owner partition's part of a period holds the rows and
    # no pairs (the sources keep those sums: agents/core/period_rows.py).
    rows = _dwell_rows(by_user)
    quantiles = cluster_ratio_t_quantiles(rows) if rows else None
    return pairs, total_ms, squares_ms, sessions, by_user, quantiles


def group_member_dwell_from_part(part: DwellPart | FoldedDwellPart) -> Measurement:
    if len(part) > 5:
        return _folded_dwell_from_part(part)
    pairs, total_ms, squares_ms, sessions, by_user = part[:5]
    # A member's watch habit goes with them to every session they attend, and a session's
    # length and audience with all its members: the pairs are clustered both ways. The
    # bootstrap-t resamples users (their rows: summed minutes, pairs, by user id) for the skew
    # of the mean of long-tailed times, and its quantiles are scaled by the two-way (session,
    # user) se, from integer sums of ms (each pair is its own pair cluster).
    interval = None
    if pairs:
        se_ms = two_way_mean_se_from_sums(
            total_ms,
            pairs,
            sessions,
            user_cluster_sums(by_user),
            (pairs, squares_ms, total_ms, pairs),
        )
        # The bootstrap-t resamples the kept users' rows only (a retired user's row is gone:
        # a bootstrap needs every cluster's): its t* quantiles bring their skew, scaled by the
        # two-way se above, which counts the retired users' clusters too (docs/design.md).
        rows = _dwell_rows(by_user)
        whole = None
        if RETIRED_USERS in by_user:  # centred and scaled by every user's clusters
            by_users = user_cluster_sums(by_user)
            whole = (
                total_ms / pairs / MINUTE_MS,
                ratio_se_from_sums(by_users, total_ms, pairs) / MINUTE_MS,
            )
        interval = cluster_ratio_t_interval(rows, se_floor=se_ms / MINUTE_MS, whole=whole)
    return Measurement(
        _ratio(total_ms / MINUTE_MS, pairs),
        pairs,
        interval,
        {"pairs": pairs},
        # The fewer of the two kinds of cluster bounds what the spread between them can say.
        clusters=min(sessions[0], user_cluster_sums(by_user)[0]),
    )


def _folded_dwell_from_part(part: FoldedDwellPart) -> Measurement:
    """`group_member_dwell_from_part` of a folded part: the interval centred on the ratio of
    the sums, scaled by the two-way se (or the users' one-way se, the larger), with the
    kept t* quantiles (`cluster_ratio_t_interval` of the rows it was folded from)."""
    pairs, total_ms, squares_ms, sessions, by_user, quantiles = part
    users = user_cluster_sums(by_user)  # rows, or their sums once folded
    interval = None
    if pairs and quantiles is not None:
        se_ms = two_way_mean_se_from_sums(
            total_ms, pairs, sessions, users, (pairs, squares_ms, total_ms, pairs)
        )
        se = ratio_se_from_sums(users, total_ms, pairs) / MINUTE_MS
        interval = t_interval(total_ms / pairs / MINUTE_MS, se, quantiles, se_ms / MINUTE_MS)
    return Measurement(
        _ratio(total_ms / MINUTE_MS, pairs),
        pairs,
        interval,
        {"pairs": pairs},
        clusters=min(sessions[0], users[0]),
    )


#: `group_spend_multiple` as parts: per user the closed months' summed rows (`MONTH_*`), and
#: of the open ones per (merchant, month, user) the earliest first join with whether the user
#: was a member then, and the spend in cents. A user's first join of a month may be in
#: several partitions' sessions: merged, the earliest wins (its membership with it) and spend
#: adds; a key with spend and no join anywhere is not in the population.
SpendPart = tuple[
    dict[str, list[int]],
    dict[tuple[str, str, str], tuple[int, bool]],
    dict[tuple[str, str, str], int],
]


def group_spend_multiple_part(facts: _Facts) -> SpendPart:
    # (merchant, month, user) -> first join in a session of that merchant started that month:
    # of the sessions folded out of the ledger (`Ledger.month_first_joins`), then of those held.
    first_join: dict[tuple[str, str, str], int] = {}
    for (merchant, month), joins in facts.ledger.month_first_joins.items():
        for user, earliest in joins.items():
            first_join[(merchant, month, user)] = earliest
    # Membership at a held session's first join, as `group_member_dwell` looked it up: a
    # key's earliest join is some session's first join, so its membership is that pair's (at
    # the same `ts`, whichever pair). The keys whose earliest is elsewhere are looked up.
    member_of: dict[tuple[str, str, str], tuple[int, bool]] = {}
    for sid, session in facts.started.items():
        assert session.merchant_id is not None and session.started_ts is not None
        month = cst_month(session.started_ts)
        for user, earliest, member in facts.member_joins(sid):
            key = (session.merchant_id, month, user)
            if key not in first_join or earliest < first_join[key]:
                first_join[key] = earliest
                member_of[key] = (earliest, member)
    spend = facts.ledger.month_spend  # (merchant, month, user) -> cents
    if facts.ledger.month_rows_in:
        # Rows a partition sent on at its month's close, held by their user's owner until
        # every partition has closed the month: read as the partitions' own rows are.
        spend = dict(spend)
        for (merchant, month), users in facts.ledger.month_rows_in.items():
            for user, parts in users.items():
                key = (merchant, month, user)
                for joined_ts, cents in parts.values():
                    if cents:
                        spend[key] = spend.get(key, 0) + cents
                    if joined_ts is not None and (
                        key not in first_join or joined_ts < first_join[key]
                    ):
                        first_join[key] = joined_ts
    joined_at = {
        key: (
            joined_ts,
            found[1]
            if (found := member_of.get(key)) is not None and found[0] == joined_ts
            else facts.membership(key[0], key[2]).member_at(joined_ts),
        )
        for key, joined_ts in first_join.items()
    }
    folded = facts.ledger.month_folded_users
    if facts.ledger.retired_spend[0]:  # the retired users' moments under the empty id
        folded = {**folded, RETIRED_USERS: list(facts.ledger.retired_spend)}
    return folded, joined_at, spend


def merge_spend_parts(parts: Sequence[SpendPart]) -> SpendPart:
    folded: dict[str, list[int]] = {}
    joins: dict[tuple[str, str, str], tuple[int, bool]] = {}
    spend: dict[tuple[str, str, str], int] = {}
    for part in parts:
        add_user_rows(folded, part[0], MONTH_LAST_DAY)
        for key, joined in part[1].items():
            held = joins.get(key)
            if held is None or joined[0] < held[0]:
                joins[key] = joined
        for key, cents in part[2].items():
            spend[key] = spend.get(key, 0) + cents
    return folded, joins, spend


def group_spend_multiple(facts: _Facts) -> Measurement:
    return group_spend_multiple_from_part(group_spend_multiple_part(facts))


def _spend_user_rows(part: SpendPart) -> dict[str, list[int]]:
    """Per user, their rows summed (`MONTH_*` columns): the folded ones, then one row per
    population member of the open (merchant, month)s (the retired users' moments apart)."""
    folded, joins, spend = part
    totals: dict[str, list[int]] = {
        user: list(row) for user, row in folded.items() if user != RETIRED_USERS
    }
    for key, (_joined_ts, member) in joins.items():
        user = key[2]
        cents = spend.get(key, 0)
        row = totals.get(user)
        if row is None:
            row = totals[user] = [0, 0, 0, 0]
        row[MONTH_MEMBER_CENTS] += cents if member else 0
        row[MONTH_MEMBERS] += member
        row[MONTH_CENTS] += cents
        row[MONTH_ROWS] += 1
    return totals


def fold_spend_part(part: SpendPart) -> SpendPart:
    """The part with every user's summed row folded into the retired users' moments
    (`SPEND_MOMENTS`, under `RETIRED_USERS`), which `log_ratio_interval` reads as those
    rows: the same figure and interval (to rounding), bounded. Only for a part whose users
    and (merchant, month)s are whole in it (`ClaimParts.fold`): no join or spend is left to
    merge with another part's."""
    folded, joins, spend = part
    if not joins and not spend and not any(user != RETIRED_USERS for user in folded):
        return part
    moments = list(folded.get(RETIRED_USERS, [0] * len(SPEND_MOMENTS)))
    # Each row's products of `SPEND_MOMENTS` (a fourth-degree one as two pairs' products),
    # summed column by column: exact integers, once per user of a closed month.
    products = [
        (1, *r, *pair, *(pair[a] * pair[b] for a, b in _SPEND_QUADS))
        for r in (row[:4] for row in _spend_user_rows(part).values())
        for pair in ([r[j] * r[k] for j, k in _SPEND_PAIRS],)
    ]
    for i, column in enumerate(zip(*products, strict=True)):
        moments[i] += sum(column)
    return {RETIRED_USERS: moments}, {}, {}


#: `SPEND_MOMENTS`' second-degree index pairs, and each fourth-degree one as the positions of
#: two of them in that list (`fold_spend_part`).
_SPEND_PAIRS: Final[tuple[tuple[int, ...], ...]] = tuple(c for c in SPEND_MOMENTS if len(c) == 2)
_SPEND_QUADS: Final[tuple[tuple[int, int], ...]] = tuple(
    (_SPEND_PAIRS.index(c[:2]), _SPEND_PAIRS.index(c[2:])) for c in SPEND_MOMENTS if len(c) == 4
)


def group_spend_multiple_from_part(part: SpendPart) -> Measurement:
    folded = part[0]
    # Per user, their rows summed (`MONTH_*` columns, cents and counts): the closed months'
    # (`Ledger.month_folded_users`), then one row per population member of the open ones:
    # member spend, member flag, spend, 1. The held rows go through the same integer sums as
    # the folded ones, so the figure and its interval do not depend on what is folded.
    totals = _spend_user_rows(part)
    retired = folded.get(RETIRED_USERS)  # the retired users' moments (`SPEND_MOMENTS`)
    first = retired[1:5] if retired is not None else [0, 0, 0, 0]
    member_cents = sum(row[MONTH_MEMBER_CENTS] for row in totals.values()) + first[0]
    members = sum(row[MONTH_MEMBERS] for row in totals.values()) + first[1]
    population_cents = sum(row[MONTH_CENTS] for row in totals.values()) + first[2]
    population = sum(row[MONTH_ROWS] for row in totals.values()) + first[3]
    member_mean = _ratio(member_cents / 100, members)
    population_mean = _ratio(population_cents / 100, population)
    observed = (
        member_mean / population_mean if member_mean is not None and population_mean else None
    )
    # (member spend / members) / (spend / population): exponents +1, -1, -1, +1. One user
    # is in the population of several (merchant, month)s with a spending habit of their own,
    # so the rows are clustered by user: the interval reads each user's summed row (its
    # influence is the sum of their rows', tests/agents/core/test_order_state.py), by user id.
    user_rows = [
        (row[0] / 100, float(row[1]), row[2] / 100, float(row[3]))
        for _user, row in sorted(totals.items())
    ]
    return Measurement(
        observed,
        members,
        (
            log_ratio_interval(user_rows, (1, -1, -1, 1), retired=_scaled_moments(retired))
            if observed is not None
            else None
        ),
        {
            "members": members,
            "population": population,
            "member_spend_cny": member_cents / 100,
            "population_spend_cny": population_cents / 100,
        },
        clusters=len(totals) + (retired[0] if retired is not None else 0),
    )


def _scaled_moments(retired: list[int] | None) -> list[float] | None:
    """The retired users' spend moments in the interval's units (cents as CNY, as the
    rows given to `log_ratio_interval`), None without any."""
    if retired is None or not retired[0]:
        return None
    scale = (0.01, 1.0, 0.01, 1.0)
    out: list[float] = []
    for columns, value in zip(SPEND_MOMENTS, retired, strict=True):
        factor = 1.0
        for j in columns:
            factor *= scale[j]
        out.append(value * factor)
    return out


CLAIM_FUNCTIONS: Final = {
    "orders_after_minute_5": orders_after_minute_5,
    "price_dwell_association": price_dwell_association,
    "interaction_uplift": interaction_uplift,
    "live_aov": live_aov,
    "group_order_share": group_order_share,
    "group_repurchase_30d": group_repurchase_30d,
    "group_member_dwell": group_member_dwell,
    "group_spend_multiple": group_spend_multiple,
}


def merge_tail_parts(parts: Sequence[TailPart]) -> TailPart:
    """Rows by session united, sums and folded moments added (as `merge_uplift_parts`)."""
    held = [tail_part(part) for part in parts]
    sums = [0, 0, 0, 0, 0]
    for part in held:
        for i, value in enumerate(part[1]):
            sums[i] += value
    rows = merge_session_rows([part[0] for part in held])
    moments = add_moments([row_moments([], TAIL_COLUMNS), *(part[2] for part in held)])
    return rows, (sums[0], sums[1], sums[2], sums[3], sums[4]), moments


@dataclass(frozen=True, slots=True)
class ClaimParts:
    """A claim split into mergeable parts (docs/metrics.md, "Claims by period": merged
    partitions): `part` of a ledger's facts; `merge` of parts of disjoint sub-streams (the
    partitions of one stream, the days of a month) is the part of their union; `finish` is
    the claim's `Measurement` of a part (`finish(part(facts))` is the claim function's);
    `compact` bounds a part to keep (the raw pairs of a rank correlation and the held reply
    latencies sketched; identity for the others, which hold counts and integer sums only);
    and `fold` bounds a compacted part whose clusters are whole in it and which no merge
    needs any more (a ledger holding every partition, once the month is frozen:
    `periods.freeze_closed`): its per-user rows folded into the sums or moments the interval
    reads, so that `finish` gives the same figure (to rounding); identity where the part
    holds no per-user row."""

    part: Callable[[_Facts], Any]
    merge: Callable[[Sequence[Any]], Any]
    finish: Callable[[Any], Measurement]
    compact: Callable[[Any], Any] = _same
    fold: Callable[[Any], Any] = _same


#: Every claim with a period figure (not `group_repurchase_30d`: agents/core/periods.py).
CLAIM_PARTS: Final[dict[str, ClaimParts]] = {
    "orders_after_minute_5": ClaimParts(
        orders_after_minute_5_part,
        merge_share_parts,
        orders_after_minute_5_from_part,
        fold=fold_share_part,
    ),
    "price_dwell_association": ClaimParts(
        price_dwell_part, merge_price_parts, price_dwell_from_part, compact_price_part
    ),
    "interaction_uplift": ClaimParts(
        interaction_uplift_part,
        merge_uplift_parts,
        interaction_uplift_from_part,
        compact_uplift_part,
    ),
    "live_aov": ClaimParts(live_aov_part, merge_aov_parts, live_aov_from_part),
    "group_order_share": ClaimParts(
        group_order_share_part, merge_share_parts, group_order_share_from_part, fold=fold_share_part
    ),
    "group_member_dwell": ClaimParts(
        group_member_dwell_part,
        merge_dwell_parts,
        group_member_dwell_from_part,
        fold=fold_dwell_part,
    ),
    "group_spend_multiple": ClaimParts(
        group_spend_multiple_part,
        merge_spend_parts,
        group_spend_multiple_from_part,
        fold=fold_spend_part,
    ),
    "size_refund_share": ClaimParts(
        size_refund_share_part, merge_share_parts, size_refund_share_from_part, fold=fold_share_part
    ),
    "bundle_share": ClaimParts(
        bundle_share_part, merge_share_parts, bundle_share_from_part, fold=fold_share_part
    ),
    "post_live_tail": ClaimParts(
        post_live_tail_part, merge_tail_parts, post_live_tail_from_part, compact_tail_part
    ),
    "reply_latency": ClaimParts(
        reply_latency_part, merge_reply_parts, reply_latency_from_part, compact_reply_part
    ),
    "return_rate": ClaimParts(
        return_rate_part, merge_share_parts, return_rate_from_part, fold=fold_share_part
    ),
}


def compute_claims(ledger: Ledger) -> dict[str, Measurement]:
    """Every claim's figure (core, then extended) from the ledger's facts."""
    facts = _Facts(ledger)
    functions = {**CLAIM_FUNCTIONS, **EXTENDED_CLAIM_FUNCTIONS}
    return {claim_id: fn(facts) for claim_id, fn in functions.items()}
