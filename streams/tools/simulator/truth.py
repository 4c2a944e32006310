"""Batch reference: the exact value of every claim, computed plainly from a stream's lines.

This module is the independent check on the streaming core in `agents/core/`: it must never
import `agents`. It reads the whole stream at once and follows `claims.md`'s "Exact
definitions" literally, with full sorts and dicts of lists rather than anything incremental,
so that each step can be checked by eye against the definition it implements.

Choices where the definitions leave room (the literal reading each time):

- Dedup: lines are taken in file order; an invalid line is counted as rejected and its
  `event_id` (if any) is *not* remembered, so a later valid line with that id still counts.
  A valid line whose `event_id` was already kept is a duplicate. "File order" for tie-breaks
  is the position of an event's first valid occurrence.
- A session is a `session_id` with a `session_started`. If a session has several
  `session_started` (or `session_ended`) events, the earliest (by ts, then file order) is used.
  Viewer pairs and dwell pairs are only formed in such sessions (a pair needs the session's
  merchant, and "session orders" are defined the same way).
- Watch time: intervals are not clipped at `session_started` (only the end is bounded). A
  session's "last event" is the largest ts among all events carrying that `session_id`
  (`order_refunded` carries none).
- Orders are counted as `order_paid` events, one each, even if two events shared an `order_id`.
- `live_aov`: `per_day` (AOV) and `per_day_orders` list every CST day; `judged_days` are the
  days with >= 30 session orders. Whether the claim holds is a verdict from intervals (the
  core's job), not a figure: the truth gives the figures the intervals are built around.
- `group_repurchase_30d`: "first order" is the earliest `order_paid` of the (merchant, user)
  among all orders (with or without a session); another order at exactly t1 does not count.
- `group_spend_multiple`: a (merchant, month)'s population is built from sessions whose
  `session_started` falls in that CST month; "the user's first join that month" is their earliest
  `viewer_joined` in those sessions. Spend counts every `order_paid` with the merchant whose own
  ts falls in the month, in a session or not.
- Extended claims. `size_refund_share` and `bundle_share` count `order_paid` events (as above);
  `return_rate` counts distinct `order_id`s (claims.md says "distinct"). A refund counts
  whatever its ts; one whose `order_id` was never paid counts nowhere; a refund without a reason
  is not a `size` refund. `bundle_share` pools all merchants' orders, in sessions or not.
- `post_live_tail`: the sessions are those with a `session_started` and a `session_ended`
  (all of them, with or without orders); an order with ts <= the end is "before the end", one
  with end < ts <= end + 3 days is in the tail, later ones count nowhere. The 3-day window need
  not lie inside the stream.
- `reply_latency`: every valid `question` (any session); its first reply is the `reply` with
  `reply_to` = its `event_id` and the smallest ts (a negative latency is kept as is). `observed` is
  the share of all questions answered within 3 s (latency <= 3000 ms; an unanswered question is a
  miss); p50 and p95 in seconds over answered questions; `unanswered_share` and
  `share_within_3min` over all questions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

from schemas import (
    TOPIC_BY_TYPE,
    Event,
    GroupJoined,
    GroupLeft,
    Interaction,
    OrderPaid,
    OrderRefunded,
    Rejection,
    SessionEnded,
    SessionStarted,
    ViewerJoined,
    ViewerLeft,
    decode_text,
    record_key,
)

MINUTE_MS: Final[int] = 60_000
DAY_MS: Final[int] = 86_400_000
CST_OFFSET_MS: Final[int] = 8 * 3_600_000
AFTER_MINUTES_MS: Final[int] = 5 * MINUTE_MS
REPURCHASE_WINDOW_MS: Final[int] = 30 * DAY_MS
TAIL_WINDOW_MS: Final[int] = 3 * DAY_MS
STABLE_DAY_MIN_ORDERS: Final[int] = 30
PRICE_TIERS: Final[tuple[str, ...]] = ("<200", "200-500", "500-1000", ">=1000")
_EPOCH: Final[date] = date(1970, 1, 1)

SessionUser = tuple[str, str]
MerchantUser = tuple[str, str]


# --------------------------------------------------------------------------- small helpers


def cst_date(ts_ms: int) -> str:
    """The China Standard Time (UTC+8) calendar date of an epoch-millisecond time, ISO format."""
    return (_EPOCH + timedelta(days=(ts_ms + CST_OFFSET_MS) // DAY_MS)).isoformat()


def cst_month(ts_ms: int) -> str:
    """The CST calendar month (`YYYY-MM`) of an epoch-millisecond time."""
    return cst_date(ts_ms)[:7]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return None
    h = (n - 1) * q
    i = math.floor(h)
    if i + 1 >= n:
        return float(xs[n - 1])
    return float(xs[i] + (h - i) * (xs[i + 1] - xs[i]))


def median(values: Sequence[float]) -> float | None:
    """The 0.5 percentile (numpy-style); None for no values."""
    return percentile(values, 0.5)


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, tied values sharing the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda k: values[k])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        shared = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = shared
        i = j + 1
    return ranks


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r; None with fewer than two points or a constant side."""
    n = len(xs)
    if n < 2:
        return None
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the average ranks."""
    return pearson(average_ranks(xs), average_ranks(ys))


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is 0."""
    return None if denominator == 0 else numerator / denominator


def price_tier(unit_price_cents: int) -> str:
    """The claim's price tier of a unit price: < 200, 200-500, 500-1000, >= 1000 CNY."""
    if unit_price_cents < 20_000:
        return "<200"
    if unit_price_cents < 50_000:
        return "200-500"
    if unit_price_cents < 100_000:
        return "500-1000"
    return ">=1000"


# --------------------------------------------------------------------------- the facts


@dataclass(frozen=True, slots=True)
class Counts:
    """Line counts: unique valid events, invalid lines, repeated valid event ids."""

    valid: int
    rejected: int
    duplicates: int


@dataclass(slots=True)
class Stream:
    """The kept events of one stream (deduplicated, valid), each with its file position."""

    counts: Counts
    events: list[tuple[int, Event]]
    started: dict[str, SessionStarted] = field(default_factory=dict)
    ended_ts: dict[str, int] = field(default_factory=dict)
    last_ts: dict[str, int] = field(default_factory=dict)
    views: dict[SessionUser, list[tuple[int, int, bool]]] = field(default_factory=dict)
    group_events: dict[MerchantUser, list[tuple[int, int, str, bool]]] = field(default_factory=dict)
    orders: list[tuple[int, OrderPaid]] = field(default_factory=list)
    end_ts: int = 0
    #: Sessions abandoned under the session fold's rule (`abandon_sessions`): id -> the `ts`
    #: of its newest event then. Empty unless that rule is asked for.
    abandoned_ts: dict[str, int] = field(default_factory=dict)


def read_stream(lines: Iterable[str]) -> Stream:
    """Classify lines, drop invalid ones and repeated event ids (first occurrence wins)."""
    kept: list[tuple[int, Event]] = []
    seen: set[str] = set()
    rejected = 0
    duplicates = 0
    for position, line in enumerate(lines):
        decoded = decode_text(line)
        if isinstance(decoded, Rejection):
            rejected += 1
            continue
        if decoded.event_id in seen:
            duplicates += 1
            continue
        seen.add(decoded.event_id)
        kept.append((position, decoded))
    stream = Stream(Counts(len(kept), rejected, duplicates), kept)
    _index(stream)
    return stream


def _index(stream: Stream) -> None:
    # Earliest session_started / session_ended per session, by (ts, file position).
    started_at: dict[str, tuple[int, int]] = {}
    ended_at: dict[str, tuple[int, int]] = {}
    for position, event in stream.events:
        stream.end_ts = max(stream.end_ts, event.ts)
        session_id = getattr(event, "session_id", None)
        if isinstance(session_id, str):
            stream.last_ts[session_id] = max(stream.last_ts.get(session_id, event.ts), event.ts)
        if isinstance(event, SessionStarted):
            key = (event.ts, position)
            if event.session_id not in started_at or key < started_at[event.session_id]:
                started_at[event.session_id] = key
                stream.started[event.session_id] = event
        elif isinstance(event, SessionEnded):
            key = (event.ts, position)
            if event.session_id not in ended_at or key < ended_at[event.session_id]:
                ended_at[event.session_id] = key
                stream.ended_ts[event.session_id] = event.ts
        elif isinstance(event, ViewerJoined | ViewerLeft):
            pair = (event.session_id, event.user_id)
            is_join = isinstance(event, ViewerJoined)
            stream.views.setdefault(pair, []).append((event.ts, position, is_join))
        elif isinstance(event, GroupJoined | GroupLeft):
            member_key = (event.merchant_id, event.user_id)
            is_join = isinstance(event, GroupJoined)
            stream.group_events.setdefault(member_key, []).append(
                (event.ts, position, event.group_id, is_join)
            )
        elif isinstance(event, OrderPaid):
            stream.orders.append((position, event))
    # Walk views and group events in ts order, ties in file order.
    for view_list in stream.views.values():
        view_list.sort()
    for group_list in stream.group_events.values():
        group_list.sort()


def abandon_sessions(
    stream: Stream, session_horizon_ms: int, window_ms: int, cut: dict[str, int] | None = None
) -> None:
    """Apply the session fold's rule for sessions that never end (docs/design.md, "The session
    horizon"), in place: a session with a `session_started` and no `session_ended` is
    abandoned at an event naming it when the next event naming it (by `ts`, its end included:
    an end after such a gap is not the session's either) is more than
    `session_horizon_ms` + `window_ms` later, or none comes and the stream's every summary
    topic (all five contract topics) reaches past that. An event naming
    it stamped more than `session_horizon_ms` after that is not the session's: a view, an
    interaction or a click is dropped, an order stays an order with no session. Read in event
    time, so it holds for a stream whose events arrive within the window of their `ts`
    order (the fixtures, the simulator). With `cut` (session id -> the `ts` it is abandoned
    at, as found on other streams: a worker's partitions, each with its own horizons), those
    sessions are abandoned instead of the ones this stream's horizons give."""
    if cut is None:
        cut = _abandoned(stream, session_horizon_ms + window_ms)
    if not cut:
        return
    kept: list[tuple[int, Event]] = []
    for position, event in stream.events:
        session_id = getattr(event, "session_id", None)
        abandoned_at = cut.get(session_id) if isinstance(session_id, str) else None
        if abandoned_at is not None and event.ts > abandoned_at + session_horizon_ms:
            if not isinstance(event, OrderPaid):
                continue  # not the session's
            event = event.model_copy(update={"session_id": None})
        kept.append((position, event))
    rebuilt = Stream(stream.counts, kept)
    _index(rebuilt)
    for name in ("events", "started", "ended_ts", "last_ts", "views", "group_events", "orders"):
        setattr(stream, name, getattr(rebuilt, name))
    stream.abandoned_ts = cut


def _abandoned(stream: Stream, limit: int) -> dict[str, int]:
    """`abandon_sessions`' cut of `stream`: session id -> the newest `ts` before its gap."""

    newest_by_topic: dict[str, int] = {}
    for _position, event in stream.events:
        topic = TOPIC_BY_TYPE[event.type]  # every contract topic is one the fold waits for
        newest_by_topic[topic] = max(newest_by_topic.get(topic, event.ts), event.ts)
    reach = (
        min(newest_by_topic.values())
        if len(newest_by_topic) == len(set(TOPIC_BY_TYPE.values()))
        else None
    )
    naming: dict[str, list[int]] = {}
    for _position, event in stream.events:
        session_id = getattr(event, "session_id", None)
        if isinstance(session_id, str):
            naming.setdefault(session_id, []).append(event.ts)
    cut: dict[str, int] = {}
    for session_id in stream.started:
        ended = stream.ended_ts.get(session_id)
        times = sorted(naming[session_id])
        for newest, following in zip(times, [*times[1:], None], strict=True):
            if ended is not None and newest >= ended:
                break  # ended before any gap that long: an ended session
            if (following is not None and following > newest + limit) or (
                following is None and reach is not None and reach > newest + limit
            ):
                cut[session_id] = newest
                break
    return cut


def partition_cut(
    lines: Sequence[str], partitions: int, session_horizon_ms: int, window_ms: int
) -> dict[str, int]:
    """`abandon_sessions`' cut as a worker with `partitions` partitions finds it (README,
    `LIVEPULSE_FOLD_SESSIONS`: "a worker's partition abandons by its own horizons"): each
    partition's sessions cut by that partition's horizons alone, over the lines its record key
    routes to (Kafka's default partitioner: murmur2 of `schemas.record_key`, an order with no
    session keyed empty) and every `group_joined`/`group_left` line (its groups horizon is the
    membership table's, over the whole groups topic). Near a finite stream's end a partition
    whose newest line on some topic is older than the stream's keeps a session live that the
    whole stream's horizons would abandon. Assumes no partition went idle long enough for its
    horizons to follow the others' (`LIVEPULSE_HORIZON_IDLE_S`)."""
    import json

    from aiokafka.partitioner import murmur2

    parts: list[list[str]] = [[] for _ in range(partitions)]
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict) or obj.get("type") not in TOPIC_BY_TYPE:
            continue
        if obj["type"] in ("group_joined", "group_left"):
            for part in parts:
                part.append(line)
            continue
        key = record_key(obj).encode()
        parts[(murmur2(key) & 0x7FFFFFFF) % partitions].append(line)
    cut: dict[str, int] = {}
    for part in parts:
        cut.update(_abandoned(read_stream(part), session_horizon_ms + window_ms))
    return cut


# --------------------------------------------------------------------------- definitions


def watch_intervals(stream: Stream, session_id: str, user_id: str) -> list[tuple[int, int]]:
    """The (session, user)'s joined-to-left intervals, closed and clipped as claims.md says."""
    ended = stream.ended_ts.get(session_id)
    # An open interval is closed by session_ended, or by the session's last event.
    close_ts = ended if ended is not None else stream.last_ts.get(session_id, 0)
    intervals: list[tuple[int, int]] = []
    open_since: int | None = None
    for ts, _position, is_join in stream.views.get((session_id, user_id), []):
        if is_join:
            if open_since is None:
                open_since = ts
            # A second join while in the room changes nothing.
        elif open_since is not None:
            intervals.append((open_since, ts))
            open_since = None
        # A leave with no open join is ignored.
    if open_since is not None:
        intervals.append((open_since, max(open_since, close_ts)))
    if ended is not None:
        # No interval counts past the session's session_ended.
        intervals = [(start, min(end, ended)) for start, end in intervals if start < ended]
    return intervals


def watch_ms(stream: Stream, session_id: str, user_id: str, until_ts: int | None = None) -> int:
    """Total watch time of a (session, user); with `until_ts`, only the part before it."""
    total = 0
    for start, end in watch_intervals(stream, session_id, user_id):
        if until_ts is not None:
            end = min(end, until_ts)
        total += max(0, end - start)
    return total


def is_member(stream: Stream, merchant_id: str, user_id: str, at_ts: int) -> bool:
    """Whether the user is in at least one of the merchant's groups at `at_ts` (inclusive)."""
    groups_in: list[str] = []
    for ts, _position, group_id, is_join in stream.group_events.get((merchant_id, user_id), []):
        if ts > at_ts:
            break
        if is_join:
            if group_id not in groups_in:
                groups_in.append(group_id)
        elif group_id in groups_in:
            groups_in.remove(group_id)
    return len(groups_in) > 0


def session_orders(stream: Stream) -> list[OrderPaid]:
    """`order_paid` events whose session_id names a session that has a `session_started`."""
    return [
        order
        for _position, order in stream.orders
        if order.session_id is not None and order.session_id in stream.started
    ]


def order_price_watch(stream: Stream) -> list[tuple[OrderPaid, int, int]]:
    """Every session order (`session_orders`, in their order) with its dearest unit price in
    cents and its buyer's watch time in its session up to it, in ms: the pairs of
    `price_dwell_association`."""
    pairs: list[tuple[OrderPaid, int, int]] = []
    for order in session_orders(stream):
        assert order.session_id is not None
        top_price = max(item.unit_price_cents for item in order.items)
        watch = watch_ms(stream, order.session_id, order.user_id, until_ts=order.ts)
        pairs.append((order, top_price, watch))
    return pairs


def orders_after_minute_5(stream: Stream) -> dict[str, Any]:
    orders = session_orders(stream)
    after = 0
    for order in orders:
        assert order.session_id is not None
        if order.ts - stream.started[order.session_id].ts >= AFTER_MINUTES_MS:
            after += 1
    return {
        "observed": ratio(after, len(orders)),
        "after_5min": after,
        "session_orders": len(orders),
    }


def price_dwell_association(stream: Stream) -> dict[str, Any]:
    prices: list[float] = []
    watched: list[float] = []
    by_tier: dict[str, list[float]] = {tier: [] for tier in PRICE_TIERS}
    for _order, top_price, watch in order_price_watch(stream):
        prices.append(top_price)
        watched.append(watch)
        by_tier[price_tier(top_price)].append(watch)
    medians: dict[str, float | None] = {}
    for tier in PRICE_TIERS:
        tier_median_ms = median(by_tier[tier])
        medians[tier] = None if tier_median_ms is None else tier_median_ms / MINUTE_MS
    return {
        "observed": spearman(prices, watched),
        "n": len(prices),
        "median_watch_minutes_by_tier": medians,
    }


def interaction_uplift(stream: Stream) -> dict[str, Any]:
    viewers: dict[SessionUser, None] = {}
    interacting: set[SessionUser] = set()
    buying: set[SessionUser] = set()
    for _position, event in stream.events:
        if isinstance(event, ViewerJoined):
            pair = (event.session_id, event.user_id)
        elif isinstance(event, Interaction) and event.kind != "reply":
            pair = (event.session_id, event.user_id)
            interacting.add(pair)
        elif isinstance(event, OrderPaid) and event.session_id is not None:
            pair = (event.session_id, event.user_id)
            buying.add(pair)
        else:
            continue
        if pair[0] in stream.started:
            viewers[pair] = None
    interacting_pairs = interacting_buyers = other_pairs = other_buyers = 0
    for pair in viewers:
        if pair in interacting:
            interacting_pairs += 1
            interacting_buyers += pair in buying
        else:
            other_pairs += 1
            other_buyers += pair in buying
    rate_interacting = ratio(interacting_buyers, interacting_pairs)
    rate_other = ratio(other_buyers, other_pairs)
    observed = None
    if rate_interacting is not None and rate_other is not None:
        observed = ratio(rate_interacting, rate_other)
    return {
        "observed": observed,
        "interacting_pairs": interacting_pairs,
        "interacting_buyers": interacting_buyers,
        "other_pairs": other_pairs,
        "other_buyers": other_buyers,
    }


def live_aov(stream: Stream) -> dict[str, Any]:
    orders = session_orders(stream)
    total_cents = sum(order.amount_cents for order in orders)
    day_amounts: dict[str, list[int]] = {}
    for order in orders:
        day_amounts.setdefault(cst_date(order.ts), []).append(order.amount_cents)
    per_day: dict[str, float] = {}
    per_day_orders: dict[str, int] = {}
    judged_days: list[str] = []
    for day in sorted(day_amounts):
        amounts = day_amounts[day]
        per_day[day] = sum(amounts) / len(amounts) / 100
        per_day_orders[day] = len(amounts)
        if len(amounts) >= STABLE_DAY_MIN_ORDERS:
            judged_days.append(day)
    observed = None if not orders else total_cents / len(orders) / 100
    return {
        "observed": observed,
        "session_orders": len(orders),
        "gmv_cny": total_cents / 100,
        "per_day": per_day,
        "per_day_orders": per_day_orders,
        "judged_days": judged_days,
    }


def group_order_share(stream: Stream) -> dict[str, Any]:
    orders = session_orders(stream)
    member_orders = sum(
        1 for order in orders if is_member(stream, order.merchant_id, order.user_id, order.ts)
    )
    return {
        "observed": ratio(member_orders, len(orders)),
        "member_orders": member_orders,
        "session_orders": len(orders),
    }


def group_repurchase_30d(stream: Stream) -> dict[str, Any]:
    order_times: dict[MerchantUser, list[int]] = {}
    for _position, order in stream.orders:
        order_times.setdefault((order.merchant_id, order.user_id), []).append(order.ts)
    eligible = repurchased = 0
    for (merchant_id, user_id), times in order_times.items():
        times.sort()
        first = times[0]
        if not is_member(stream, merchant_id, user_id, first):
            continue
        if first + REPURCHASE_WINDOW_MS > stream.end_ts:
            continue
        eligible += 1
        if any(first < ts <= first + REPURCHASE_WINDOW_MS for ts in times):
            repurchased += 1
    return {
        "observed": ratio(repurchased, eligible),
        "repurchased": repurchased,
        "eligible": eligible,
    }


def group_member_dwell(stream: Stream) -> dict[str, Any]:
    watched: list[int] = []
    for (session_id, user_id), views in stream.views.items():
        joins = [ts for ts, _position, is_join in views if is_join]
        started = stream.started.get(session_id)
        if not joins or started is None:
            continue
        if is_member(stream, started.merchant_id, user_id, min(joins)):
            watched.append(watch_ms(stream, session_id, user_id))
    observed = None if not watched else sum(watched) / len(watched) / MINUTE_MS
    return {"observed": observed, "pairs": len(watched)}


def group_spend_multiple(stream: Stream) -> dict[str, Any]:
    # (merchant, month) -> user -> first join ts in that merchant's sessions started that month.
    first_join: dict[tuple[str, str], dict[str, int]] = {}
    for (session_id, user_id), views in stream.views.items():
        started = stream.started.get(session_id)
        joins = [ts for ts, _position, is_join in views if is_join]
        if started is None or not joins:
            continue
        users = first_join.setdefault((started.merchant_id, cst_month(started.ts)), {})
        users[user_id] = min(users.get(user_id, joins[0]), min(joins))
    spend: dict[tuple[str, str, str], int] = {}
    for _position, order in stream.orders:
        key = (order.merchant_id, cst_month(order.ts), order.user_id)
        spend[key] = spend.get(key, 0) + order.amount_cents
    members = population = 0
    member_cents = population_cents = 0
    for (merchant_id, month), users in first_join.items():
        for user_id, joined_ts in users.items():
            cents = spend.get((merchant_id, month, user_id), 0)
            population += 1
            population_cents += cents
            if is_member(stream, merchant_id, user_id, joined_ts):
                members += 1
                member_cents += cents
    member_mean = ratio(member_cents, members)
    population_mean = ratio(population_cents, population)
    observed = None
    if member_mean is not None and population_mean is not None:
        observed = ratio(member_mean, population_mean)
    return {
        "observed": observed,
        "members": members,
        "population": population,
        "member_spend_cny": member_cents / 100,
        "population_spend_cny": population_cents / 100,
    }


def _refunds(stream: Stream) -> list[OrderRefunded]:
    return [event for _position, event in stream.events if isinstance(event, OrderRefunded)]


def size_refund_share(stream: Stream) -> dict[str, Any]:
    size_refunded_ids = {refund.order_id for refund in _refunds(stream) if refund.reason == "size"}
    apparel_orders = [
        order
        for _position, order in stream.orders
        if any(item.category == "apparel" for item in order.items)
    ]
    refunded = sum(1 for order in apparel_orders if order.order_id in size_refunded_ids)
    return {
        "observed": ratio(refunded, len(apparel_orders)),
        "size_refunded": refunded,
        "apparel_orders": len(apparel_orders),
    }


def bundle_share(stream: Stream) -> dict[str, Any]:
    bundles = 0
    for _position, order in stream.orders:
        skus = {item.sku_id for item in order.items}
        if len(skus) >= 2:
            bundles += 1
    return {
        "observed": ratio(bundles, len(stream.orders)),
        "bundle_orders": bundles,
        "paid_orders": len(stream.orders),
    }


def post_live_tail(stream: Stream) -> dict[str, Any]:
    ended_sessions = [sid for sid in stream.started if sid in stream.ended_ts]
    live_cents = tail_cents = live_orders = tail_orders = 0
    for order in session_orders(stream):
        assert order.session_id is not None
        end = stream.ended_ts.get(order.session_id)
        if end is None:
            continue
        if order.ts <= end:
            live_cents += order.amount_cents
            live_orders += 1
        elif order.ts <= end + TAIL_WINDOW_MS:
            tail_cents += order.amount_cents
            tail_orders += 1
    return {
        "observed": ratio(tail_cents / 3, live_cents),
        "sessions": len(ended_sessions),
        "live_orders": live_orders,
        "tail_orders": tail_orders,
        "live_gmv_cny": live_cents / 100,
        "tail_gmv_cny": tail_cents / 100,
    }


def reply_latency(stream: Stream) -> dict[str, Any]:
    asked: dict[str, int] = {}
    replies: dict[str, list[int]] = {}
    for _position, event in stream.events:
        if isinstance(event, Interaction) and event.kind == "question":
            asked[event.event_id] = event.ts
        elif isinstance(event, Interaction) and event.kind == "reply" and event.reply_to:
            replies.setdefault(event.reply_to, []).append(event.ts)
    latencies_ms = [
        min(replies[question_id]) - asked_ts
        for question_id, asked_ts in asked.items()
        if question_id in replies
    ]
    latencies_s = [latency / 1000 for latency in latencies_ms]
    within_3s = sum(1 for latency in latencies_ms if latency <= 3000)
    within_3min = sum(1 for latency in latencies_ms if latency <= 180_000)
    return {
        # Unanswered questions stay in the denominator: they were not answered within 3 s.
        "observed": ratio(within_3s, len(asked)),
        "questions": len(asked),
        "answered": len(latencies_ms),
        "answered_within_3s": within_3s,
        "answered_within_3min": within_3min,
        "unanswered_share": ratio(len(asked) - len(latencies_ms), len(asked)),
        "share_within_3min": ratio(within_3min, len(asked)),
        "p50_seconds": percentile(latencies_s, 0.5),
        "p95_seconds": percentile(latencies_s, 0.95),
    }


def return_rate(stream: Stream) -> dict[str, Any]:
    paid_ids = {order.order_id for _position, order in stream.orders}
    refunded_ids = {refund.order_id for refund in _refunds(stream) if refund.order_id in paid_ids}
    return {
        "observed": ratio(len(refunded_ids), len(paid_ids)),
        "refunded_orders": len(refunded_ids),
        "paid_orders": len(paid_ids),
    }


def compute_claims(stream: Stream) -> dict[str, dict[str, Any]]:
    """Every claim's observed value and supporting counts (core, then extended), by claim id."""
    return {
        "orders_after_minute_5": orders_after_minute_5(stream),
        "price_dwell_association": price_dwell_association(stream),
        "interaction_uplift": interaction_uplift(stream),
        "live_aov": live_aov(stream),
        "group_order_share": group_order_share(stream),
        "group_repurchase_30d": group_repurchase_30d(stream),
        "group_member_dwell": group_member_dwell(stream),
        "group_spend_multiple": group_spend_multiple(stream),
        "size_refund_share": size_refund_share(stream),
        "bundle_share": bundle_share(stream),
        "post_live_tail": post_live_tail(stream),
        "reply_latency": reply_latency(stream),
        "return_rate": return_rate(stream),
    }


def split_lines(text: str) -> list[str]:
    """A JSON Lines file's lines, without their terminators (a final newline ends the last)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
