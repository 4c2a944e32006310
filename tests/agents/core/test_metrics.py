"""Hand-computed cases for every core definition of claims.md, run through the metric core."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from agents.core import Ledger, build_report, compute_claims
from agents.core.metrics import cst_day
from agents.core.timeline import Membership, watch_time_ms
from schemas import event_adapter

T0 = 1_721_800_800_000  # 2024-07-24 06:00 UTC = 14:00 CST
MIN = 60_000
DAY = 24 * 3600 * 1000
_ids = itertools.count()


def ev(type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{next(_ids)}", "type": type_, "ts": ts, **fields}


def start(sid: str, ts: int, merchant: str = "m1", room: str = "r1") -> dict[str, Any]:
    return ev("session_started", ts, session_id=sid, room_id=room, merchant_id=merchant)


def order(
    ts: int,
    user: str,
    sid: str | None = "s1",
    amount: int = 10_000,
    price: int | None = None,
    merchant: str = "m1",
) -> dict[str, Any]:
    item = {
        "sku_id": "k1",
        "category": "apparel",
        "unit_price_cents": price or amount,
        "quantity": 1,
    }
    return ev(
        "order_paid",
        ts,
        order_id=f"o{next(_ids)}",
        session_id=sid,
        merchant_id=merchant,
        user_id=user,
        items=[item],
        amount_cents=amount,
    )


def join(ts: int, user: str, sid: str = "s1") -> dict[str, Any]:
    return ev("viewer_joined", ts, session_id=sid, user_id=user)


def leave(ts: int, user: str, sid: str = "s1") -> dict[str, Any]:
    return ev("viewer_left", ts, session_id=sid, user_id=user)


def gjoin(ts: int, user: str, group: str = "g1", merchant: str = "m1") -> dict[str, Any]:
    return ev("group_joined", ts, merchant_id=merchant, group_id=group, user_id=user)


def gleave(ts: int, user: str, group: str = "g1", merchant: str = "m1") -> dict[str, Any]:
    return ev("group_left", ts, merchant_id=merchant, group_id=group, user_id=user)


def ledger_of(events: list[dict[str, Any]]) -> Ledger:
    ledger = Ledger()
    for raw in events:
        ledger.apply(event_adapter.validate_python(raw))
    return ledger


def observed(events: list[dict[str, Any]], claim: str) -> Any:
    return compute_claims(ledger_of(events))[claim]


def test_orders_after_minute_5_counts_boundary_and_needs_a_started_session() -> None:
    events = [
        order(T0 + 5 * MIN, "u1"),  # arrives before its session_started: still counts
        start("s1", T0),
        order(T0 + 5 * MIN - 1, "u2"),
        order(T0 + 20 * MIN, "u3"),
        order(T0 + 20 * MIN, "u4", sid="s-never-started"),
        order(T0 + 20 * MIN, "u5", sid=None),
    ]
    m = observed(events, "orders_after_minute_5")
    assert m.detail == {"after_5min": 2, "session_orders": 3}
    assert m.observed == pytest.approx(2 / 3)


def test_watch_time_rules() -> None:
    # join, a second join (ignored), leave, a leave with no open join (ignored), join again,
    # still open when the session ends at 70: 30 + 20.
    presence = [(0, 1, True), (10, 2, True), (30, 3, False), (40, 4, False), (50, 5, True)]
    assert watch_time_ms(presence, close_ts=70, ended_ts=70) == 50
    # No interval counts past the end: a leave after the end is cut, a join after it is nothing.
    assert watch_time_ms([(0, 1, True), (90, 2, False)], close_ts=70, ended_ts=70) == 70
    assert watch_time_ms([(80, 1, True), (90, 2, False)], close_ts=70, ended_ts=70) == 0
    # Never ended: an open interval runs to the session's last event.
    assert watch_time_ms([(0, 1, True)], close_ts=95, ended_ts=None) == 95
    # Up to an order: the open interval counts until it.
    assert watch_time_ms([(0, 1, True)], close_ts=95, ended_ts=None, until_ts=40) == 40
    # Arrival order does not matter, ties keep arrival (seq) order: join then leave at 10.
    assert watch_time_ms([(10, 2, False), (0, 1, True), (10, 3, True)], 20, 20) == 20


def test_watch_time_of_a_never_ended_session_runs_to_its_last_event() -> None:
    events = [
        start("s1", T0),
        join(T0, "u1"),
        ev("interaction", T0 + 7 * MIN, session_id="s1", user_id="u2", kind="like"),
        gjoin(T0 - 1, "u1"),
    ]
    m = observed(events, "group_member_dwell")
    assert m.detail == {"pairs": 1}
    assert m.observed == pytest.approx(7.0)


def test_price_dwell_spearman_with_ties_and_tier_medians() -> None:
    events = [start("s1", T0)]
    # (price in cents, watch minutes before the order)
    cases = [(10_000, 1), (10_000, 3), (30_000, 2), (60_000, 10), (150_000, 8)]
    for i, (price, minutes) in enumerate(cases):
        user = f"u{i}"
        events += [join(T0, user), order(T0 + minutes * MIN, user, price=price, amount=price)]
    m = observed(events, "price_dwell_association")
    # ranks x: 1.5 1.5 3 4 5 ; ranks y: 1 3 2 5 4 -> Pearson r of the ranks.
    rx, ry = [1.5, 1.5, 3, 4, 5], [1, 3, 2, 5, 4]
    mx, my = sum(rx) / 5, sum(ry) / 5
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    assert m.observed == pytest.approx(cov / var)
    assert m.detail["median_watch_minutes_by_tier"] == {
        "<200": 2.0,
        "200-500": 2.0,
        "500-1000": 10.0,
        ">=1000": 8.0,
    }


def test_price_dwell_watch_time_stops_at_the_order_and_ignores_later_rejoin() -> None:
    events = [
        start("s1", T0),
        join(T0, "u1"),
        leave(T0 + 2 * MIN, "u1"),
        join(T0 + 4 * MIN, "u1"),
        order(T0 + 5 * MIN, "u1"),
        leave(T0 + 50 * MIN, "u1"),
    ]
    m = observed(events, "price_dwell_association")
    assert m.detail["median_watch_minutes_by_tier"]["<200"] == pytest.approx(3.0)


def test_interaction_uplift_pools_pairs_and_ignores_replies() -> None:
    events = [
        start("s1", T0),
        # s1: interacting u1 (buys), u2 (no); non-interacting u3 (buys), u4, u5, u6 (no)
        ev("interaction", T0, session_id="s1", user_id="u1", kind="comment"),
        ev("interaction", T0, session_id="s1", user_id="u2", kind="question"),
        ev("interaction", T0, session_id="s1", user_id="host", kind="reply"),
        join(T0, "u3"),
        join(T0, "u4"),
        join(T0, "u5"),
        join(T0, "u6"),
        order(T0 + MIN, "u1"),
        order(T0 + MIN, "u3"),
        # s2: u1 interacts, does not buy; u7 only buys (a viewer by its order).
        start("s2", T0),
        ev("interaction", T0, session_id="s2", user_id="u1", kind="like"),
        order(T0 + MIN, "u7", sid="s2"),
        # s3 has no session_started: not a session, its pairs do not count.
        ev("interaction", T0, session_id="s3", user_id="u8", kind="like"),
        order(T0 + MIN, "u9", sid="s3"),
    ]
    m = observed(events, "interaction_uplift")
    assert m.detail["interacting_pairs"] == 3 and m.detail["interacting_buyers"] == 1
    assert m.detail["other_pairs"] == 5 and m.detail["other_buyers"] == 2
    assert m.observed == pytest.approx((1 / 3) / (2 / 5))


def test_live_aov_per_cst_day() -> None:
    # 2024-07-24 15:59:59.999 UTC is the 24th in CST; one ms later is the 25th.
    midnight_cst = 1_721_836_800_000
    assert cst_day(midnight_cst - 1) == "2024-07-24"
    assert cst_day(midnight_cst) == "2024-07-25"
    events = [
        start("s1", midnight_cst - 3600_000),
        order(midnight_cst - 1, "u1", amount=40_000),
        order(midnight_cst, "u2", amount=80_000),
        order(midnight_cst + 1, "u3", amount=100_000),
        order(midnight_cst, "u4", sid=None, amount=999_999),
    ]
    m = observed(events, "live_aov")
    assert m.observed == pytest.approx(220_000 / 3 / 100)
    assert m.detail["per_day"] == {"2024-07-24": 400.0, "2024-07-25": 900.0}
    assert m.detail["gmv_cny"] == pytest.approx(2200.0)


def test_membership_lasts_until_every_group_is_left() -> None:
    membership = Membership(
        [
            (10, 1, "g1", True),
            (20, 2, "g2", True),
            (30, 3, "g1", False),
            (40, 4, "g2", False),
            (50, 5, "g9", False),
            (60, 6, "g1", True),
        ]
    )
    assert [membership.member_at(t) for t in (5, 10, 25, 30, 39, 40, 55, 60)] == [
        False,
        True,
        True,
        True,
        True,
        False,
        False,
        True,
    ]


def test_group_order_share_uses_membership_at_the_order_time() -> None:
    events = [
        start("s1", T0),
        gjoin(T0, "u1", "g1"),
        gjoin(T0, "u1", "g2"),
        gleave(T0 + MIN, "u1", "g1"),
        order(T0 + 2 * MIN, "u1"),  # still in g2: member
        gjoin(T0 + 3 * MIN, "u2"),
        order(T0 + 2 * MIN, "u2"),  # joins after the order: not yet
        gjoin(T0, "u3", merchant="m2"),
        order(T0 + 2 * MIN, "u3"),  # member of another merchant's group: not
        order(T0 + 3 * MIN, "u2"),  # same ms as the join: member
    ]
    m = observed(events, "group_order_share")
    assert m.detail == {"member_orders": 2, "session_orders": 4}


def test_group_repurchase_window_and_eligibility() -> None:
    t1 = T0
    events = [
        gjoin(t1 - 1, "a"),
        order(t1, "a", sid=None),
        order(t1 + 30 * DAY, "a", sid=None),
        gjoin(t1 - 1, "b"),
        order(t1, "b"),
        order(t1 + 30 * DAY + 1, "b"),
        gjoin(t1 - 1, "c"),
        order(t1, "c"),
        order(t1, "c"),  # same ms is not "again"
        order(t1, "d"),
        order(t1 + DAY, "d"),  # not a member: not eligible
        gjoin(t1 - 1, "e"),
        order(t1 + 10 * DAY, "e"),  # too late: t1 + 30d > end
        gjoin(t1, "f", merchant="m2"),
        order(t1, "f", merchant="m2"),
        order(t1 + DAY, "f", merchant="m1"),  # another merchant does not count
        order(t1 + 31 * DAY, "z", sid=None),  # the end of the stream
    ]
    m = observed(events, "group_repurchase_30d")
    assert m.detail == {"repurchased": 1, "eligible": 4}


def test_group_member_dwell_membership_at_first_join() -> None:
    events = [
        start("s1", T0),
        gjoin(T0 + 5 * MIN, "u1"),
        join(T0 + 5 * MIN, "u1"),
        leave(T0 + 10 * MIN, "u1"),
        join(T0, "u2"),
        gjoin(T0 + MIN, "u2"),
        leave(T0 + 40 * MIN, "u2"),  # joined group later
        gjoin(T0, "u3"),
        join(T0 + 20 * MIN, "u3"),  # open until the end at 60
        ev("session_ended", T0 + 60 * MIN, session_id="s1"),
    ]
    m = observed(events, "group_member_dwell")
    assert m.detail == {"pairs": 2}
    assert m.observed == pytest.approx((5 + 40) / 2)


def test_group_spend_multiple_pools_merchant_months() -> None:
    events = [
        start("s1", T0, merchant="m1"),
        gjoin(T0 - 1, "u1"),
        join(T0, "u1"),
        join(T0, "u2"),
        join(T0, "u3"),
        join(T0, "u4"),
        order(T0 + MIN, "u1", amount=90_000),
        order(T0 + MIN, "u2", amount=10_000),
        order(T0 + 2 * DAY, "u1", sid=None, amount=10_000),  # same month, outside the session
        order(T0 + 2 * DAY, "u9", sid=None, amount=500_000),  # not in the population
        start("s2", T0 + 40 * DAY, merchant="m1"),  # September: u1 no longer a member
        gleave(T0 + 39 * DAY, "u1"),
        join(T0 + 40 * DAY, "u1", "s2"),
        join(T0 + 40 * DAY, "u5", "s2"),
        order(T0 + 40 * DAY, "u5", "s2", amount=20_000),
    ]
    m = observed(events, "group_spend_multiple")
    # July: members {u1: 1000}; population u1..u4 spend 1100. September: u1, u5 (200), no members.
    assert m.detail == {
        "members": 1,
        "population": 6,
        "member_spend_cny": 1000.0,
        "population_spend_cny": 1300.0,
    }
    assert m.observed == pytest.approx(1000 / (1300 / 6))


def test_duplicates_are_counted_once() -> None:
    events = [start("s1", T0), order(T0 + 6 * MIN, "u1")]
    ledger = ledger_of(events + events)
    assert ledger.counts.as_dict() == {"valid": 2, "rejected": 0, "duplicates": 2}
    assert compute_claims(ledger)["orders_after_minute_5"].detail["session_orders"] == 1


def test_report_does_not_depend_on_arrival_order_across_topics() -> None:
    rng = random.Random(7)
    events = [start("s1", T0), start("s2", T0 + MIN, merchant="m2")]
    for i in range(60):
        sid = "s1" if i % 2 else "s2"
        merchant = "m1" if i % 2 else "m2"
        user = f"u{i % 17}"
        t = T0 + rng.randrange(0, 50 * MIN)
        events.append(join(t, user, sid))
        if rng.random() < 0.5:
            events.append(ev("interaction", t + 1000, session_id=sid, user_id=user, kind="like"))
        if rng.random() < 0.3:
            events.append(gjoin(t - 5000, user, merchant=merchant))
        if rng.random() < 0.4:
            events.append(order(t + rng.randrange(MIN, 20 * MIN), user, sid, merchant=merchant))
        events.append(leave(t + rng.randrange(0, 30 * MIN), user, sid))
    events += [ev("session_ended", T0 + 60 * MIN, session_id=s) for s in ("s1", "s2")]
    baseline = build_report(ledger_of(events))

    def topic(e: dict[str, Any]) -> str:
        return e["type"].split("_")[0]

    for _ in range(3):
        # Interleave the topics at random, keeping each topic's own order.
        streams = {name: [e for e in events if topic(e) == name] for name in map(topic, events)}
        shuffled: list[dict[str, Any]] = []
        while any(streams.values()):
            name = rng.choice([n for n, s in streams.items() if s])
            shuffled.append(streams[name].pop(0))
        assert build_report(ledger_of(shuffled)) == baseline
