"""Batch reference for the operator figures: the same snapshot as `OperatorBoard`, computed plainly.

Like `truth.py` (whose reading of the stream and of watch time it shares), this module must
never import `agents`. It takes the whole deduplicated stream at once and applies each
definition of docs/metrics.md ("Operator metrics") literally: lists of events per session,
full sorts, sets of minutes. Lateness is simulated by walking the kept events in file order
(the order the offline analyzer reads them) with a running maximum of `ts` per source: the
event's topic and record key, the contract's unit of order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from schemas import (
    TOPIC_BY_TYPE,
    GroupJoined,
    GroupLeft,
    Interaction,
    OrderPaid,
    OrderRefunded,
    ProductClicked,
    ViewerJoined,
)
from streams.tools.simulator.truth import Stream, percentile, read_stream, watch_intervals

MINUTE_MS: Final[int] = 60_000
DEFAULT_GRACE_MS: Final[int] = 120_000
WINDOW_SPANS: Final[dict[str, tuple[int, int]]] = {
    # name -> (first, last) minute, as offsets from the watermark's minute
    "1m": (0, 0),
    "5m": (-4, 0),
    "10m": (-9, 0),
    "prev_10m": (-19, -10),
}
WINDOW_FIGURES: Final[tuple[str, ...]] = (
    "entries",
    "unique_viewers",
    "orders",
    "gmv_cny",
    "product_clicks",
    "interactions",
    "buyers",
    "conversion",
)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def on_time_positions(stream: Stream, grace_ms: int) -> set[int]:
    """File positions of kept events that are not late: ts >= (the largest ts before them of
    the same topic and record key) - grace."""
    on_time: set[int] = set()
    newest: dict[tuple[str, str], int] = {}
    for position, event in stream.events:
        if isinstance(event, GroupJoined | GroupLeft):
            key = event.merchant_id
        else:
            key = getattr(event, "session_id", None) or ""
        source = (TOPIC_BY_TYPE[event.type], key)
        before = newest.get(source)
        if before is None or event.ts >= before - grace_ms:
            on_time.add(position)
        if before is None or event.ts > before:
            newest[source] = event.ts
    return on_time


def session_rows(stream: Stream, grace_ms: int) -> dict[str, dict[str, Any]]:
    """For each started session, the raw material of its figures (lists, sets, counts)."""
    started = stream.started
    on_time = on_time_positions(stream, grace_ms)
    last_minute = stream.end_ts // MINUTE_MS
    rows: dict[str, dict[str, Any]] = {}
    for sid in started:
        rows[sid] = {
            "entries": 0,
            "viewers": set(),
            "interacting": set(),
            "orders": [],
            "follows": 0,
            "clicks": 0,
            "clickers": set(),
            "refunds": [],
            # window name -> list of on-time events of this session in that window
            "window_events": {name: [] for name in WINDOW_SPANS},
        }
    # The earliest session order (ts, then file position) of each order id, for refunds.
    first_order: dict[str, tuple[int, int, str]] = {}
    for position, order in stream.orders:
        if order.session_id in started:
            key = (order.ts, position, order.session_id)
            if order.order_id not in first_order or key < first_order[order.order_id]:
                first_order[order.order_id] = key
    for position, event in stream.events:
        if isinstance(event, OrderRefunded):
            if event.order_id in first_order:
                rows[first_order[event.order_id][2]]["refunds"].append(event.amount_cents)
            continue
        event_sid = getattr(event, "session_id", None)
        if event_sid not in rows:
            continue
        row = rows[event_sid]
        if isinstance(event, ViewerJoined):
            row["entries"] += 1
            row["viewers"].add(event.user_id)
        elif isinstance(event, Interaction) and event.kind != "reply":
            row["viewers"].add(event.user_id)
            row["interacting"].add(event.user_id)
            if event.kind == "follow":
                row["follows"] += 1
        elif isinstance(event, OrderPaid):
            row["viewers"].add(event.user_id)
            row["orders"].append(event)
        elif isinstance(event, ProductClicked):
            row["clicks"] += 1
            row["clickers"].add(event.user_id)
        else:
            continue
        if position in on_time:
            minute = event.ts // MINUTE_MS
            for name, (first, last) in WINDOW_SPANS.items():
                if last_minute + first <= minute <= last_minute + last:
                    row["window_events"][name].append(event)
    return rows


def window_figures(events: list[Any]) -> dict[str, Any]:
    """One window's figures from the on-time events of some sessions (each tagged by session)."""
    entries = sum(1 for e in events if isinstance(e, ViewerJoined))
    viewers = {
        (e.session_id, e.user_id)
        for e in events
        if isinstance(e, ViewerJoined | Interaction | OrderPaid)
    }
    orders = [e for e in events if isinstance(e, OrderPaid)]
    buyers = {(e.session_id, e.user_id) for e in orders}
    return {
        "entries": entries,
        "unique_viewers": len(viewers),
        "orders": len(orders),
        "gmv_cny": sum(e.amount_cents for e in orders) / 100,
        "product_clicks": sum(1 for e in events if isinstance(e, ProductClicked)),
        "interactions": sum(1 for e in events if isinstance(e, Interaction)),
        "buyers": len(buyers),
        "conversion": ratio(len(buyers), len(viewers)),
    }


def level_figures(
    stream: Stream, rows: dict[str, dict[str, Any]], sids: Sequence[str], gpm_denominator: str
) -> dict[str, Any]:
    """The figures of a set of sessions (one session, a room, a merchant, or all)."""
    entries = sum(rows[sid]["entries"] for sid in sids)
    pairs = [(sid, user) for sid in sids for user in rows[sid]["viewers"]]
    unique_viewers = len(pairs)
    watch = []
    current = 0
    present_in_minute: dict[int, int] = {}
    group_joins = 0
    for sid, user in pairs:
        intervals = [(s, e) for s, e in watch_intervals(stream, sid, user) if e > s]
        watch.append(sum(e - s for s, e in intervals))
        minutes: set[int] = set()
        for s, e in intervals:
            minutes.update(range(s // MINUTE_MS, (e - 1) // MINUTE_MS + 1))
        for minute in minutes:
            present_in_minute[minute] = present_in_minute.get(minute, 0) + 1
        # In the room now: the last join/leave (in ts order) is a join (a join opens or keeps
        # an interval open, a leave closes or finds none open), and the session has not ended.
        views = stream.views.get((sid, user), [])
        inside = bool(views) and views[-1][2]
        if inside and sid not in stream.ended_ts and sid not in stream.abandoned_ts:
            current += 1
        start = stream.started[sid]
        # An abandoned session (`truth.abandon_sessions`) counts them up to its newest event.
        ended = stream.ended_ts.get(sid, stream.abandoned_ts.get(sid))
        for ts, _position, _group, is_join in stream.group_events.get(
            (start.merchant_id, user), []
        ):
            if is_join and ts >= start.ts and (ended is None or ts <= ended):
                group_joins += 1
    orders = [order for sid in sids for order in rows[sid]["orders"]]
    gmv = sum(order.amount_cents for order in orders) / 100
    buyers = len({(order.session_id, order.user_id) for order in orders})
    paying_users = len({order.user_id for order in orders})
    interacting = sum(len(rows[sid]["interacting"]) for sid in sids)
    refunds = [amount for sid in sids for amount in rows[sid]["refunds"]]
    clickers = sum(len(rows[sid]["clickers"]) for sid in sids)
    by_minute: dict[int, int] = {}
    for order in orders:
        assert order.session_id is not None
        start_ts = stream.started[order.session_id].ts
        ended = stream.ended_ts.get(order.session_id)
        if ended is None or order.ts <= ended:
            minute = max(0, order.ts - start_ts) // MINUTE_MS
            by_minute[minute] = by_minute.get(minute, 0) + 1
    median = percentile(watch, 0.5)
    gpm_base = entries if gpm_denominator == "entries" else unique_viewers
    windows: dict[str, Any] = {
        name: window_figures([e for sid in sids for e in rows[sid]["window_events"][name]])
        for name in WINDOW_SPANS
    }
    changes: dict[str, float | None] = {}
    for figure in WINDOW_FIGURES:
        now, before = windows["10m"][figure], windows["prev_10m"][figure]
        changes[figure] = None if now is None or not before else (now - before) / before
    windows["change_10m"] = changes
    return {
        "entries": entries,
        "unique_viewers": unique_viewers,
        "viewers_current": current,
        "viewers_peak": max(present_in_minute.values(), default=0),
        "watch_time_seconds_sum": sum(watch) / 1000,
        "avg_watch_minutes": ratio(sum(watch) / MINUTE_MS, unique_viewers),
        "median_watch_minutes": None if median is None else median / MINUTE_MS,
        "buyers": buyers,
        "paying_users": paying_users,
        "conversion": ratio(buyers, unique_viewers),
        "interacting_viewers": interacting,
        "interaction_rate": ratio(interacting, unique_viewers),
        "orders": len(orders),
        "gmv_cny": gmv,
        "aov_cny": ratio(gmv, len(orders)),
        "aov_per_customer_cny": ratio(gmv, paying_users),
        "gpm_cny": ratio(gmv * 1000, gpm_base),
        "uv_value_cny": ratio(gmv, unique_viewers),
        "follows": sum(rows[sid]["follows"] for sid in sids),
        "group_joins": group_joins,
        "refunds": len(refunds),
        "refunded_cny": sum(refunds) / 100,
        "net_gmv_cny": (sum(order.amount_cents for order in orders) - sum(refunds)) / 100,
        "product_clicks": sum(rows[sid]["clicks"] for sid in sids),
        "product_clickers": clickers,
        "click_through_rate": ratio(clickers, unique_viewers),
        "click_to_order_rate": ratio(buyers, clickers),
        "orders_by_minute": [by_minute.get(m, 0) for m in range(max(by_minute, default=-1) + 1)],
        "windows": windows,
    }


def compute_operator(
    stream: Stream, *, grace_ms: int = DEFAULT_GRACE_MS, gpm_denominator: str = "entries"
) -> dict[str, Any]:
    """The operator snapshot of a whole stream (the truth file's `"operator"` section)."""
    rows = session_rows(stream, grace_ms)
    sids = sorted(rows)
    started = stream.started
    rooms = sorted({started[sid].room_id for sid in sids})
    merchants = sorted({started[sid].merchant_id for sid in sids})
    late = len(stream.events) - len(on_time_positions(stream, grace_ms))
    sessions: dict[str, Any] = {}
    for sid in sids:
        sessions[sid] = {
            **level_figures(stream, rows, [sid], gpm_denominator),
            "room_id": started[sid].room_id,
            "merchant_id": started[sid].merchant_id,
            "started_ts": started[sid].ts,
            "ended_ts": stream.ended_ts.get(sid),
        }
    return {
        "definitions": {"gpm_denominator": gpm_denominator},
        "watermark_ts": stream.end_ts if stream.events else None,
        "late_events": late,
        "grace_ms": grace_ms,
        "overall": level_figures(stream, rows, sids, gpm_denominator),
        "merchants": {
            m: level_figures(
                stream, rows, [s for s in sids if started[s].merchant_id == m], gpm_denominator
            )
            for m in merchants
        },
        "rooms": {
            r: level_figures(
                stream, rows, [s for s in sids if started[s].room_id == r], gpm_denominator
            )
            for r in rooms
        },
        "sessions": sessions,
    }


def operator_truth(
    lines: Sequence[str], *, grace_ms: int = DEFAULT_GRACE_MS, gpm_denominator: str = "entries"
) -> dict[str, Any]:
    """The operator snapshot of a stream's lines."""
    return compute_operator(read_stream(lines), grace_ms=grace_ms, gpm_denominator=gpm_denominator)


# --------------------------------------------------------------------------- the live screen

SCREEN_MINUTES: Final[int] = 60
SOURCES: Final[tuple[str, ...]] = (
    "feed",
    "search",
    "follow",
    "short_video",
    "group",
    "note",
    "other",
    "unspecified",
)


def screen_truth(lines: Sequence[str], *, top_n: int = 20) -> dict[str, Any]:
    """The live screen's curves, entry sources and products of a stream's lines
    (`agents.core.screen`'s snapshot, computed plainly from the whole stream)."""
    stream = read_stream(lines)
    started = stream.started
    sids = sorted(started)
    last = stream.end_ts // MINUTE_MS
    first = last - SCREEN_MINUTES + 1
    groups: dict[str, dict[str, list[str]]] = {"rooms": {}, "merchants": {}}
    for sid in sids:
        groups["rooms"].setdefault(started[sid].room_id, []).append(sid)
        groups["merchants"].setdefault(started[sid].merchant_id, []).append(sid)
    by_session: dict[str, list[Any]] = {sid: [] for sid in sids}
    for _position, event in stream.events:
        event_sid = getattr(event, "session_id", None)
        if event_sid in by_session:
            by_session[event_sid].append(event)

    def curves(level_sids: list[str]) -> dict[str, list[Any]]:
        if not stream.events:
            return {name: [] for name in ("viewers", "entries", "product_clicks", "orders")} | {
                "gmv_cny": []
            }
        minutes = range(first, last + 1)
        tallies: dict[str, dict[int, int]] = {
            name: dict.fromkeys(minutes, 0) for name in ("entries", "clicks", "orders", "gmv")
        }
        for sid in level_sids:
            for e in by_session[sid]:
                minute = e.ts // MINUTE_MS
                if minute not in tallies["entries"]:
                    continue
                if isinstance(e, ViewerJoined):
                    tallies["entries"][minute] += 1
                elif isinstance(e, ProductClicked):
                    tallies["clicks"][minute] += 1
                elif isinstance(e, OrderPaid):
                    tallies["orders"][minute] += 1
                    tallies["gmv"][minute] += e.amount_cents

        viewers = dict.fromkeys(minutes, 0)
        for sid in level_sids:
            users = {e.user_id for e in by_session[sid] if isinstance(e, ViewerJoined)}
            for user in users:
                present: set[int] = set()
                for start, end in watch_intervals(stream, sid, user):
                    if end > start:
                        present.update(range(start // MINUTE_MS, (end - 1) // MINUTE_MS + 1))
                for minute in present:
                    if minute in viewers:
                        viewers[minute] += 1
        return {
            "viewers": [viewers[m] for m in minutes],
            "entries": [tallies["entries"][m] for m in minutes],
            "product_clicks": [tallies["clicks"][m] for m in minutes],
            "orders": [tallies["orders"][m] for m in minutes],
            "gmv_cny": [tallies["gmv"][m] / 100 for m in minutes],
        }

    def sources(level_sids: list[str]) -> dict[str, Any]:
        entries = dict.fromkeys(SOURCES, 0)
        viewers = dict.fromkeys(SOURCES, 0)
        buyers = dict.fromkeys(SOURCES, 0)
        gmv_cents = dict.fromkeys(SOURCES, 0)
        for sid in level_sids:
            joins = sorted(
                (e.ts, e.source or "unspecified", e.user_id)
                for e in by_session[sid]
                if isinstance(e, ViewerJoined)
            )
            first_source: dict[str, str] = {}
            for _ts, source, user in joins:
                entries[source] += 1
                first_source.setdefault(user, source)
            for origin in first_source.values():
                viewers[origin] += 1
            spent: dict[str, int] = {}
            for e in by_session[sid]:
                if isinstance(e, OrderPaid):
                    spent[e.user_id] = spent.get(e.user_id, 0) + e.amount_cents
            for user, cents in spent.items():
                if user in first_source:
                    buyers[first_source[user]] += 1
                    gmv_cents[first_source[user]] += cents
        return {
            s: {
                "entries": entries[s],
                "viewers": viewers[s],
                "buyers": buyers[s],
                "conversion": ratio(buyers[s], viewers[s]),
                "gmv_cny": gmv_cents[s] / 100,
            }
            for s in SOURCES
        }

    def products(level_sids: list[str]) -> dict[str, Any]:
        rows: dict[str, dict[str, int]] = {}
        for sid in level_sids:
            clickers: dict[str, set[str]] = {}
            buyers: dict[str, set[str]] = {}
            for e in by_session[sid]:
                if isinstance(e, ProductClicked):
                    row = rows.setdefault(e.sku_id, _product_row())
                    row["clicks"] += 1
                    clickers.setdefault(e.sku_id, set()).add(e.user_id)
                elif isinstance(e, OrderPaid):
                    for sku in {item.sku_id for item in e.items}:
                        rows.setdefault(sku, _product_row())["orders"] += 1
                        buyers.setdefault(sku, set()).add(e.user_id)
                    for item in e.items:
                        row = rows[item.sku_id]
                        row["units"] += item.quantity
                        row["gmv_cents"] += item.unit_price_cents * item.quantity
            for sku, users in clickers.items():
                rows[sku]["clickers"] += len(users)
                rows[sku]["clickers_ordered"] += len(users & buyers.get(sku, set()))
            for sku, users in buyers.items():
                rows[sku]["buyers"] += len(users)
        ranked = sorted(rows, key=lambda sku: (-rows[sku]["gmv_cents"], -rows[sku]["clicks"], sku))
        other = _product_row()
        for sku in ranked[top_n:]:
            for name, value in rows[sku].items():
                other[name] += value
        return {
            "skus": len(rows),
            "top": [{"sku_id": sku, **_product_out(rows[sku])} for sku in ranked[:top_n]],
            "other": _product_out(other),
        }

    return {
        "first_minute_ts": first * MINUTE_MS if stream.events else None,
        "minutes": {
            "overall": curves(sids),
            **{key: {i: curves(s) for i, s in ids.items()} for key, ids in groups.items()},
        },
        "sources": {
            "overall": sources(sids),
            **{key: {i: sources(s) for i, s in ids.items()} for key, ids in groups.items()},
        },
        "products": {
            "overall": products(sids),
            "rooms": {i: products(s) for i, s in groups["rooms"].items()},
        },
    }


def _product_row() -> dict[str, int]:
    return {
        "clicks": 0,
        "clickers": 0,
        "orders": 0,
        "units": 0,
        "gmv_cents": 0,
        "buyers": 0,
        "clickers_ordered": 0,
    }


def _product_out(row: dict[str, int]) -> dict[str, Any]:
    return {
        "clicks": row["clicks"],
        "clickers": row["clickers"],
        "orders": row["orders"],
        "units": row["units"],
        "gmv_cny": row["gmv_cents"] / 100,
        "buyers": row["buyers"],
        "click_to_order": ratio(row["clickers_ordered"], row["clickers"]),
    }
