"""A small hand-built stream for the extended claims, with every answer worked out by hand."""

from __future__ import annotations

from typing import Any

T0 = 1_721_800_800_000  # 2024-07-24 14:00 CST
SEC = 1_000
MIN = 60_000
DAY = 86_400_000


def _ev(event_id: str, type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "ts": ts, **fields}


def _order(
    event_id: str,
    ts: int,
    order_id: str,
    items: list[tuple[str, str, int]],
    sid: str | None = "s1",
) -> dict[str, Any]:
    """An order of (sku, category, unit price in CNY) lines, one of each."""
    lines = [
        {"sku_id": sku, "category": cat, "unit_price_cents": price * 100, "quantity": 1}
        for sku, cat, price in items
    ]
    fields: dict[str, Any] = {
        "order_id": order_id,
        "merchant_id": "m1",
        "user_id": f"u-{order_id}",
        "items": lines,
        "amount_cents": sum(price * 100 for _sku, _cat, price in items),
    }
    if sid is not None:
        fields["session_id"] = sid
    return _ev(event_id, "order_paid", ts, **fields)


def _refund(event_id: str, ts: int, order_id: str, reason: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"order_id": order_id, "amount_cents": 100}
    if reason is not None:
        fields["reason"] = reason
    return _ev(event_id, "order_refunded", ts, **fields)


def _ask(event_id: str, ts: int, sid: str = "s1", kind: str = "question") -> dict[str, Any]:
    return _ev(event_id, "interaction", ts, session_id=sid, user_id="v1", kind=kind)


def _reply(event_id: str, ts: int, reply_to: str, sid: str = "s1") -> dict[str, Any]:
    return _ev(
        event_id, "interaction", ts, session_id=sid, user_id="h-1", kind="reply", reply_to=reply_to
    )


END = T0 + 60 * MIN  # s1's session_ended


def extended_events() -> list[dict[str, Any]]:
    """The stream, in a producer's order (some refunds and replies before what they refer to)."""
    ap, sh, be = "apparel", "shoes", "beauty"
    return [
        # o1's size refund comes first, with a ts before the order's: it still counts.
        _refund("r1", T0 + 10 * MIN, "o1", "size"),
        _ev("s1-start", "session_started", T0, session_id="s1", room_id="r1", merchant_id="m1"),
        _order("p1", T0 + 20 * MIN, "o1", [("k1", ap, 100)]),  # live
        _order("p2", T0 + 30 * MIN, "o2", [("k1", ap, 100), ("k2", be, 50)]),  # live, bundle
        _order("p3", END, "o3", [("k3", be, 200), ("k3", be, 200)]),  # at the end: live, 1 sku
        _order("p4", END + 1, "o4", [("k4", sh, 60)]),  # tail
        _order("p5", END + 3 * DAY, "o5", [("k5", ap, 40), ("k6", ap, 30)]),  # tail, bundle
        _order("p6", END + 3 * DAY + 1, "o6", [("k1", ap, 1000)]),  # past the window
        _ev("s1-end", "session_ended", END, session_id="s1"),
        # s2 never ends: none of its orders is before or after an end.
        _ev("s2-start", "session_started", T0, session_id="s2", room_id="r2", merchant_id="m1"),
        _order("p7", T0 + 5 * MIN, "o7", [("k1", ap, 100)], sid="s2"),
        _order("p8", T0 + 2 * DAY, "o8", [("k1", ap, 100)], sid="s2"),
        # s3 ended with no orders: a session with zero GMV.
        _ev("s3-start", "session_started", T0, session_id="s3", room_id="r3", merchant_id="m1"),
        _ev("s3-end", "session_ended", T0 + 30 * MIN, session_id="s3"),
        # s4 ended but never started: not a session.
        _ev("s4-end", "session_ended", T0, session_id="s4"),
        _order("p9", T0 + MIN, "o9", [("k1", ap, 100)], sid="s4"),
        # An order with no session, a bundle of three.
        _order("p10", T0 + DAY, "o10", [("k1", ap, 10), ("k2", be, 10), ("k7", sh, 10)], sid=None),
        # Refunds: o2 (quality), o4 (size, but shoes), o5 twice (size and absent reason), o7
        # (no reason), a size refund of an order never paid.
        _refund("r2", T0 + DAY, "o2", "quality"),
        _refund("r3", T0 + DAY, "o4", "size"),
        _refund("r4", T0 + 4 * DAY, "o5", "size"),
        _refund("r5", T0 + 5 * DAY, "o5", None),
        _refund("r6", T0 + DAY, "o7", None),
        _refund("r7", T0 + DAY, "o-ghost", "size"),
        # Questions: q1 answered twice (2 s, then 9 s); q2's reply arrives before it (10 s); q3
        # never answered; q4 in a session never started, answered after 4 s; q5's reply has a ts
        # 1 s before the question's (skewed clocks). A reply to a comment and one to an unknown
        # id count nowhere.
        _ask("q1", T0 + 10 * MIN),
        _reply("a1b", T0 + 10 * MIN + 9 * SEC, "q1"),
        _reply("a1a", T0 + 10 * MIN + 2 * SEC, "q1"),
        _reply("a2", T0 + 11 * MIN + 10 * SEC, "q2"),
        _ask("q2", T0 + 11 * MIN),
        _ask("q3", T0 + 12 * MIN),
        _ask("q4", T0 + 13 * MIN, sid="s-unstarted"),
        _reply("a4", T0 + 13 * MIN + 4 * SEC, "q4", sid="s-unstarted"),
        _ask("q5", T0 + 14 * MIN),
        _reply("a5", T0 + 14 * MIN - 1 * SEC, "q5"),
        _ask("c1", T0 + 15 * MIN, kind="comment"),
        _reply("a6", T0 + 15 * MIN + SEC, "c1"),
        _reply("a7", T0 + 15 * MIN + SEC, "no-such-question"),
    ]


# Paid orders (events): o1..o10, 10 of them.
# Apparel orders: o1, o2, o5, o6, o7, o8, o9, o10 = 8; size-refunded among them: o1, o5 = 2.
# Bundles (>= 2 distinct SKUs): o2, o5, o10 = 3 (o3 repeats one SKU).
# Tail, sessions s1 and s3: live o1 + o2 + o3 = 100 + 150 + 400 = 650 CNY (3 orders);
#   tail o4 + o5 = 60 + 70 = 130 CNY (2 orders); 130 / 3 / 650.
# Latencies (s): q1 2, q2 10, q4 4, q5 -1 -> sorted [-1, 2, 4, 10]; p50 = 3,
#   p95: h = 3 * 0.95 = 2.85 -> 4 + 0.85 * 6 = 9.1; unanswered q3: 1 of 5.
#   Within 3 s: q1, q5 = 2 of the 5 questions (q3 unanswered is a miss); within 3 min: 4 of 5.
# Returns: distinct paid ids refunded: o1, o2, o4, o5, o7 = 5 of 10.
EXPECTED: dict[str, dict[str, Any]] = {
    "size_refund_share": {"observed": 2 / 8, "size_refunded": 2, "apparel_orders": 8},
    "bundle_share": {"observed": 3 / 10, "bundle_orders": 3, "paid_orders": 10},
    "post_live_tail": {
        "observed": 130 / 3 / 650,
        "sessions": 2,
        "live_orders": 3,
        "tail_orders": 2,
        "live_gmv_cny": 650.0,
        "tail_gmv_cny": 130.0,
    },
    "reply_latency": {
        "observed": 2 / 5,
        "questions": 5,
        "answered": 4,
        "answered_within_3s": 2,
        "answered_within_3min": 4,
        "unanswered_share": 1 / 5,
        "share_within_3min": 4 / 5,
        "p50_seconds": 3.0,
        "p95_seconds": 9.1,
    },
    "return_rate": {"observed": 5 / 10, "refunded_orders": 5, "paid_orders": 10},
}
