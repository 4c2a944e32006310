"""The batch truth reference against tiny streams whose answers are worked out by hand."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from streams.tools.simulator.truth import (
    average_ranks,
    cst_date,
    is_member,
    median,
    percentile,
    read_stream,
    spearman,
    split_lines,
    watch_ms,
)
from streams.tools.simulator.truth_file import compute_truth
from tests.support.extended_stream import EXPECTED as EXTENDED_EXPECTED
from tests.support.extended_stream import extended_events

M = 60_000  # one minute in ms
DAY = 86_400_000
# 2024-07-01 00:00 China Standard Time (2024-06-30 16:00 UTC).
T0 = 1_719_763_200_000


class Lines:
    """Builds contract lines with sequential event ids; times are minutes after T0."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def add(self, event_type: str, minute: float, **fields: Any) -> str:
        self.count += 1
        body = {"event_id": f"e{self.count}", "type": event_type, "ts": T0 + round(minute * M)}
        body.update(fields)
        line = json.dumps(body)
        self.lines.append(line)
        return str(body["event_id"])

    def start(self, minute: float, sid: str = "s1", merchant: str = "m1") -> None:
        self.add("session_started", minute, session_id=sid, room_id="r1", merchant_id=merchant)

    def end(self, minute: float, sid: str = "s1") -> None:
        self.add("session_ended", minute, session_id=sid)

    def join(self, minute: float, user: str, sid: str = "s1") -> None:
        self.add("viewer_joined", minute, session_id=sid, user_id=user)

    def leave(self, minute: float, user: str, sid: str = "s1") -> None:
        self.add("viewer_left", minute, session_id=sid, user_id=user)

    def act(self, minute: float, user: str, kind: str = "comment", sid: str = "s1") -> str:
        return self.add("interaction", minute, session_id=sid, user_id=user, kind=kind)

    def pay(
        self,
        minute: float,
        user: str,
        price_cny: float = 100.0,
        sid: str | None = "s1",
        merchant: str = "m1",
        extra_prices_cny: tuple[float, ...] = (),
    ) -> None:
        prices = (price_cny, *extra_prices_cny)
        items = [
            {
                "sku_id": f"k{i}",
                "category": "apparel",
                "unit_price_cents": round(p * 100),
                "quantity": 1,
            }
            for i, p in enumerate(prices)
        ]
        fields: dict[str, Any] = {
            "order_id": f"o{self.count + 1}",
            "merchant_id": merchant,
            "user_id": user,
            "items": items,
            "amount_cents": sum(round(p * 100) for p in prices),
        }
        if sid is not None:
            fields["session_id"] = sid
        self.add("order_paid", minute, **fields)

    def group(self, minute: float, user: str, group: str = "g1", merchant: str = "m1") -> None:
        self.add("group_joined", minute, merchant_id=merchant, group_id=group, user_id=user)

    def ungroup(self, minute: float, user: str, group: str = "g1", merchant: str = "m1") -> None:
        self.add("group_left", minute, merchant_id=merchant, group_id=group, user_id=user)

    def claims(self) -> dict[str, dict[str, Any]]:
        truth = compute_truth(self.lines, scenario="test", seed=0)
        claims: dict[str, dict[str, Any]] = truth["claims"]
        return claims


def watch_minutes(lines: Lines, user: str, sid: str = "s1", until: float | None = None) -> float:
    until_ts = None if until is None else T0 + round(until * M)
    return watch_ms(read_stream(lines.lines), sid, user, until_ts) / M


# --------------------------------------------------------------------------- helpers


def test_percentile_interpolates_like_numpy() -> None:
    assert median([1, 2, 3, 10]) == 2.5
    assert median([5]) == 5
    assert median([]) is None
    # h = (5-1)*0.95 = 3.8 -> 4 + 0.8*(5-4)
    assert percentile([5, 1, 4, 2, 3], 0.95) == pytest.approx(4.8)
    assert percentile([1, 2], 1.0) == 2


def test_average_ranks_and_spearman_with_ties() -> None:
    assert average_ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([3, 3, 3]) == [2.0, 2.0, 2.0]
    # x ranks 1, 2.5, 2.5, 4; y ranks 1, 4, 2.5, 2.5: sxy = 2.25, sxx = syy = 4.5.
    assert spearman([100, 200, 200, 300], [1, 3, 2, 2]) == pytest.approx(0.5)
    assert spearman([1, 2, 3], [7, 7, 7]) is None
    assert spearman([1], [1]) is None


def test_cst_date_boundaries() -> None:
    assert cst_date(T0) == "2024-07-01"
    assert cst_date(T0 - 1) == "2024-06-30"
    assert cst_date(T0 + DAY - 1) == "2024-07-01"


def test_split_lines() -> None:
    assert split_lines("a\nb\n") == ["a", "b"]
    assert split_lines("a\nb") == ["a", "b"]
    assert split_lines("") == []


# --------------------------------------------------------------------------- counts


def test_counts_dedup_and_first_occurrence_wins() -> None:
    lines = Lines()
    lines.start(0)
    order_id = 'o9","merchant_id":"m1","user_id":"u1"'
    first = (
        f'{{"event_id":"p1","type":"order_paid","ts":{T0 + 6 * M},"order_id":"{order_id},'
        '"session_id":"s1","items":[{"sku_id":"k","category":"x","unit_price_cents":100,'
        '"quantity":1}],"amount_cents":100}'
    )
    # The same id again with another ts: a redelivery, ignored (the first one counts).
    again = first.replace(str(T0 + 6 * M), str(T0 + 1 * M))
    lines.lines += [first, again, first]
    # Junk carrying a real-looking id, then a valid event with that id: the valid one counts.
    lines.lines.append('{"event_id":"j1","type":"viewer_joined","ts":"12"}')
    lines.lines.append("not json")
    lines.lines.append(
        f'{{"event_id":"j1","type":"viewer_joined","ts":{T0},"session_id":"s1","user_id":"u2"}}'
    )
    truth = compute_truth(lines.lines, scenario="t", seed=3)
    assert truth["lines"] == 7
    assert truth["events"] == {"valid": 3, "rejected": 2, "duplicates": 2}
    assert truth["scenario"] == "t" and truth["seed"] == 3
    after = truth["claims"]["orders_after_minute_5"]
    assert after == {"observed": 1.0, "after_5min": 1, "session_orders": 1}


# --------------------------------------------------------------------------- watch time


def test_watch_time_simple_and_several_intervals() -> None:
    lines = Lines()
    lines.start(0)
    lines.join(0, "a")
    lines.leave(5, "a")
    lines.join(10, "a")
    lines.leave(12, "a")
    lines.end(60)
    assert watch_minutes(lines, "a") == 7


def test_watch_time_second_join_and_unmatched_leave_change_nothing() -> None:
    lines = Lines()
    lines.start(0)
    lines.leave(1, "a")  # no open join: ignored
    lines.join(2, "a")
    lines.join(3, "a")  # already in the room: changes nothing
    lines.leave(10, "a")
    lines.leave(12, "a")  # no open join: ignored
    lines.end(60)
    assert watch_minutes(lines, "a") == 8


def test_watch_time_open_interval_closed_by_session_end() -> None:
    lines = Lines()
    lines.start(0)
    lines.join(20, "a")
    lines.join(25, "b")
    lines.leave(40, "b")  # past the end: clipped to 30
    lines.join(35, "c")  # joined after the end: nothing
    lines.leave(45, "c")
    lines.end(30)
    assert watch_minutes(lines, "a") == 10
    assert watch_minutes(lines, "b") == 5
    assert watch_minutes(lines, "c") == 0


def test_watch_time_never_ended_session_closes_at_its_last_event() -> None:
    lines = Lines()
    lines.start(0)
    lines.join(20, "a")
    lines.act(50, "b")  # the session's last event
    lines.add("order_refunded", 90, order_id="o1", amount_cents=100)  # carries no session_id
    lines.start(0, sid="s2")
    lines.act(120, "x", sid="s2")  # another session
    assert watch_minutes(lines, "a") == 30


def test_watch_time_up_to_an_order() -> None:
    lines = Lines()
    lines.start(0)
    lines.join(0, "a")
    lines.leave(5, "a")
    lines.join(10, "a")  # still open at the order: counts until it
    lines.leave(30, "a")
    lines.end(60)
    assert watch_minutes(lines, "a", until=14) == 9
    assert watch_minutes(lines, "a", until=8) == 5
    assert watch_minutes(lines, "a", until=99) == 25


def test_watch_time_sorts_by_ts_and_breaks_ties_by_file_order() -> None:
    lines = Lines()
    lines.start(0)
    lines.end(30)
    lines.leave(10, "a")  # arrives first in the file, before its own join
    lines.join(2, "a")
    # Same ts: leave first (ignored, nothing open), then the join opens until the end.
    lines.leave(10, "b")
    lines.join(10, "b")
    # Same ts: join first, then leave: an empty interval, nothing open afterwards.
    lines.join(12, "c")
    lines.leave(12, "c")
    assert watch_minutes(lines, "a") == 8
    assert watch_minutes(lines, "b") == 20
    assert watch_minutes(lines, "c") == 0


# --------------------------------------------------------------------------- orders


def test_orders_after_minute_5_and_which_orders_count() -> None:
    lines = Lines()
    lines.pay(3, "a")  # its session_started comes later in the file: still a session order
    lines.start(0)
    lines.pay(5, "b")  # exactly 300000 ms: counts as after
    lines.pay(4.99999, "c")
    lines.pay(40, "d", sid="s-none")  # no session_started for s-none
    lines.pay(40, "e", sid=None)  # outside any session
    after = lines.claims()["orders_after_minute_5"]
    assert after == {"observed": pytest.approx(1 / 3), "after_5min": 1, "session_orders": 3}


def test_no_orders_means_null_observed() -> None:
    lines = Lines()
    lines.start(0)
    lines.join(1, "a")
    claims = lines.claims()
    assert claims["orders_after_minute_5"]["observed"] is None
    assert claims["live_aov"]["observed"] is None
    assert claims["price_dwell_association"]["observed"] is None
    assert claims["group_order_share"]["observed"] is None
    assert claims["group_repurchase_30d"]["observed"] is None
    assert claims["group_member_dwell"]["observed"] is None
    assert claims["interaction_uplift"]["observed"] is None


def test_interaction_uplift_pairs() -> None:
    lines = Lines()
    lines.start(0)
    lines.start(0, sid="s2")
    # Interacting pairs: (s1,a) buys, (s1,b) does not, (s1,c) interacts without a join and buys.
    lines.join(1, "a")
    lines.act(2, "a", "like")
    lines.pay(10, "a")
    lines.join(1, "b")
    lines.act(3, "b", "question")
    lines.act(3, "c", "gift")
    lines.pay(12, "c")
    # Other pairs: (s1,d) joins and buys, (s1,e) joins only, (s1,f) only pays (a viewer too),
    # (s2,a) joins only (a is interacting in s1, not in s2).
    lines.join(1, "d")
    lines.pay(20, "d")
    lines.join(1, "e")
    lines.pay(25, "f")
    lines.join(5, "a", sid="s2")
    # A reply makes nobody a viewer or an interacting viewer; a leave makes nobody a viewer.
    lines.act(4, "staff", "reply")
    lines.leave(6, "ghost")
    # A session without session_started forms no pairs.
    lines.act(5, "z", "comment", sid="s-none")
    uplift = lines.claims()["interaction_uplift"]
    assert uplift == {
        "observed": pytest.approx((2 / 3) / (2 / 4)),
        "interacting_pairs": 3,
        "interacting_buyers": 2,
        "other_pairs": 4,
        "other_buyers": 2,
    }


def test_interaction_uplift_null_when_nobody_else_buys() -> None:
    lines = Lines()
    lines.start(0)
    lines.act(1, "a")
    lines.pay(2, "a")
    lines.join(1, "b")
    uplift = lines.claims()["interaction_uplift"]
    assert uplift["observed"] is None
    assert (uplift["other_pairs"], uplift["other_buyers"]) == (1, 0)


def test_live_aov_per_cst_day_and_stability() -> None:
    lines = Lines()
    lines.start(0)
    lines.pay(24 * 60 - 0.001, "a", 600)  # 2024-07-01 23:59:59.940 CST
    lines.pay(24 * 60, "b", 300)  # 2024-07-02 00:00 CST
    lines.pay(24 * 60 + 1, "c", 100, extra_prices_cny=(200,))  # amount 300
    lines.pay(30, "d", 999, sid=None)  # not a session order
    aov = lines.claims()["live_aov"]
    assert aov["observed"] == pytest.approx(1200 / 3)
    assert aov["session_orders"] == 3
    assert aov["gmv_cny"] == 1200
    assert aov["per_day"] == {"2024-07-01": 600, "2024-07-02": 300}
    assert aov["per_day_orders"] == {"2024-07-01": 1, "2024-07-02": 2}
    # Days with fewer than 30 session orders are not judged.
    assert aov["judged_days"] == []


def test_live_aov_judges_days_with_30_session_orders() -> None:
    lines = Lines()
    lines.start(0)
    for k in range(29):
        lines.pay(10 + k, f"u{k}", 499.99)
    assert lines.claims()["live_aov"]["judged_days"] == []
    lines.pay(60, "u29", 499.99)
    lines.pay(30, "x", 999, sid=None)  # not a session order: counts for no day
    aov = lines.claims()["live_aov"]
    assert aov["judged_days"] == ["2024-07-01"]
    assert aov["per_day_orders"] == {"2024-07-01": 30}


def test_price_dwell_association_spearman_and_tiers() -> None:
    lines = Lines()
    lines.start(0)
    lines.end(300)
    for user in "abcde":
        lines.join(0, user)
    lines.pay(1, "a", 100)  # x 10000 cents, y 1 min
    lines.pay(3, "b", 150, extra_prices_cny=(200,))  # x = the dearer item: 200 CNY, y 3
    lines.pay(2, "c", 200)  # y 2
    lines.pay(2, "d", 300)  # y 2
    lines.pay(2, "e", 199.99)  # tier "<200", y 2
    price = lines.claims()["price_dwell_association"]
    # x: 100, 200, 200, 300, 199.99 -> ranks 1, 3.5, 3.5, 5, 2
    # y: 1, 3, 2, 2, 2              -> ranks 1, 5, 3, 3, 3
    expected = spearman([1, 3.5, 3.5, 5, 2], [1, 5, 3, 3, 3])
    assert expected is not None
    assert price["observed"] == pytest.approx(expected)
    assert price["n"] == 5
    assert price["median_watch_minutes_by_tier"] == {
        "<200": 1.5,
        "200-500": 2,
        "500-1000": None,
        ">=1000": None,
    }


def test_price_tier_boundaries() -> None:
    lines = Lines()
    lines.start(0)
    lines.end(300)
    for user, price, minute in (("a", 500, 4), ("b", 999.99, 6), ("c", 1000, 8), ("d", 2500, 10)):
        lines.join(0, user)
        lines.pay(minute, user, price)
    tiers = lines.claims()["price_dwell_association"]["median_watch_minutes_by_tier"]
    assert tiers == {"<200": None, "200-500": None, "500-1000": 5, ">=1000": 9}


# --------------------------------------------------------------------------- groups


def test_membership_across_several_groups() -> None:
    lines = Lines()
    lines.group(0, "a", "g1")
    lines.group(5, "a", "g2")
    lines.ungroup(10, "a", "g1")
    lines.ungroup(12, "a", "g3")  # never joined: ignored
    lines.ungroup(15, "a", "g2")
    lines.group(20, "a", "g1", merchant="m2")  # another merchant's group
    stream = read_stream(lines.lines)

    def member(minute: float, merchant: str = "m1") -> bool:
        return is_member(stream, merchant, "a", T0 + round(minute * M))

    assert not member(-1)
    assert member(0)  # a join at exactly t counts
    assert member(12)
    assert member(14.999)
    assert not member(15)  # a leave at exactly t counts too
    assert not member(25)
    assert member(25, merchant="m2")


def test_membership_same_ts_follows_file_order() -> None:
    lines = Lines()
    lines.group(0, "a")
    lines.ungroup(10, "a")
    lines.group(10, "a")  # leave then join at 10: a member after 10
    lines.group(0, "b")
    lines.group(10, "b", "g2")
    lines.ungroup(10, "b", "g2")
    lines.ungroup(10, "b", "g1")  # join g2, leave g2, leave g1 at 10: not a member
    lines.ungroup(30, "c")  # arrives before the join it follows
    lines.group(20, "c")
    stream = read_stream(lines.lines)
    at10 = T0 + 10 * M
    assert is_member(stream, "m1", "a", at10)
    assert not is_member(stream, "m1", "b", at10)
    assert is_member(stream, "m1", "c", T0 + 25 * M)
    assert not is_member(stream, "m1", "c", T0 + 30 * M)


def test_group_order_share_membership_at_order_time() -> None:
    lines = Lines()
    lines.start(0)
    lines.group(-100, "a")
    lines.pay(10, "a")  # member
    lines.group(20, "b")
    lines.pay(20, "b")  # joined at the same ms: member
    lines.pay(30, "c")
    lines.group(31, "c")  # joined after: not a member at the order
    lines.group(-100, "d", merchant="m2")
    lines.pay(40, "d")  # member of another merchant's group only
    lines.pay(50, "a", sid=None)  # not a session order
    share = lines.claims()["group_order_share"]
    assert share == {"observed": 0.5, "member_orders": 2, "session_orders": 4}


def test_group_repurchase_window_boundaries() -> None:
    window = 30 * 24 * 60  # minutes
    lines = Lines()
    for user in "abcdef":
        lines.group(-1, user)
    lines.pay(0, "a", sid=None)
    lines.pay(window, "a", sid=None)  # t1 + 30 days exactly: repurchased
    lines.pay(0, "b", sid=None)
    lines.pay(window + 1 / M, "b", sid=None)  # 1 ms too late
    lines.pay(0, "c", sid=None)
    lines.pay(0, "c", sid=None)  # same ms as t1: not in (t1, t1 + 30d]
    lines.pay(10, "d", sid=None, merchant="m2")  # member of m1 only: not eligible for m2
    lines.pay(20, "d", sid=None, merchant="m2")
    lines.group(100, "e")
    lines.pay(0, "f", sid=None)
    lines.pay(60, "f", sid=None, merchant="m2")  # another merchant: no repurchase
    # The end is b's last order (t1 + 30 days + 1 ms), so every m1 first order at 0 is eligible.
    repurchase = lines.claims()["group_repurchase_30d"]
    assert repurchase == {"observed": 0.25, "repurchased": 1, "eligible": 4}


def test_group_repurchase_needs_membership_at_the_first_order_and_the_end() -> None:
    window = 30 * 24 * 60
    lines = Lines()
    lines.pay(0, "a", sid=None)  # first order before joining: not eligible
    lines.group(1, "a")
    lines.pay(5, "a", sid=None)
    lines.group(-1, "b")
    lines.pay(10, "b", sid=None)  # t1 + 30d = the end: eligible
    lines.group(-1, "c")
    lines.pay(11, "c", sid=None)  # t1 + 30d is 1 minute after the end: not eligible
    lines.add("session_started", window + 10, session_id="late", room_id="r", merchant_id="m9")
    repurchase = lines.claims()["group_repurchase_30d"]
    assert repurchase == {"observed": 0.0, "repurchased": 0, "eligible": 1}


def test_group_member_dwell_membership_at_first_join() -> None:
    lines = Lines()
    lines.start(0)
    lines.end(100)
    lines.group(-5, "a", "g1")
    lines.group(-4, "a", "g2")
    lines.ungroup(30, "a", "g1")  # still in g2
    lines.join(10, "a")
    lines.leave(40, "a")
    lines.join(50, "a")  # open until the end: 30 + 50 = 80 minutes
    lines.join(10, "b")
    lines.group(11, "b")  # joined the group after the first join: not counted
    lines.leave(20, "b")
    lines.group(-5, "c")
    lines.act(10, "c")  # no viewer_joined: not a dwell pair
    lines.group(-5, "d")
    lines.join(60, "d")
    lines.leave(70, "d")  # 10 minutes
    lines.group(-5, "e", merchant="m2")
    lines.join(0, "e")  # member of another merchant only
    dwell = lines.claims()["group_member_dwell"]
    assert dwell == {"observed": 45, "pairs": 2}


def test_group_spend_multiple_by_merchant_and_month() -> None:
    july_31_2330 = 30 * 24 * 60 + 23.5 * 60  # 2024-07-31 23:30 CST
    lines = Lines()
    lines.start(0, sid="s1", merchant="m1")  # July
    lines.start(july_31_2330, sid="s2", merchant="m1")  # July too, by its start
    lines.start(31 * 24 * 60 + 20 * 60, sid="s3", merchant="m1")  # 2024-08-01 20:00
    lines.group(-1, "a")
    lines.join(10, "a")
    lines.pay(20, "a", 300)
    lines.pay(24 * 60 * 10, "a", 100, sid=None)  # July 11, outside a session: July spend
    lines.join(10, "b")
    lines.pay(15, "b", 100, merchant="m2")  # another merchant: not m1's spend
    lines.join(july_31_2330 + 40, "c", sid="s2")  # joins in August, a session started in July
    lines.group(july_31_2330 + 45, "c")  # member only after the first join: not a member
    lines.pay(july_31_2330 + 50, "c", 200, sid="s2")  # August 1 00:20: August spend
    lines.group(31 * 24 * 60, "d")
    lines.join(31 * 24 * 60 + 20 * 60 + 1, "d", sid="s3")  # August population, member
    lines.pay(31 * 24 * 60 + 21 * 60, "d", 500, sid="s3")
    lines.act(31 * 24 * 60 + 20 * 60 + 2, "e", sid="s3")  # no join: not in the population
    # (m1, July): a 400 member, b 0, c 0 -> population 3, members 1.
    # (m1, August): d 500 member -> population 1, members 1.
    multiple = lines.claims()["group_spend_multiple"]
    assert multiple == {
        "observed": pytest.approx((900 / 2) / (900 / 4)),
        "members": 2,
        "population": 4,
        "member_spend_cny": 900,
        "population_spend_cny": 900,
    }


def test_truth_is_plain_json() -> None:
    lines = Lines()
    lines.start(0)
    lines.join(0, "a")
    lines.pay(6, "a", 250)
    truth = compute_truth(lines.lines, scenario="t", seed=1)
    assert json.loads(json.dumps(truth)) == truth
    assert list(truth) == ["scenario", "seed", "lines", "events", "claims", "operator"]
    assert list(truth["claims"]) == [
        "orders_after_minute_5",
        "price_dwell_association",
        "interaction_uplift",
        "live_aov",
        "group_order_share",
        "group_repurchase_30d",
        "group_member_dwell",
        "group_spend_multiple",
        "size_refund_share",
        "bundle_share",
        "post_live_tail",
        "reply_latency",
        "return_rate",
    ]


def test_truth_is_independent_of_the_streaming_core() -> None:
    import ast
    from pathlib import Path

    import streams.tools.simulator.operator_truth as operator_truth_module
    import streams.tools.simulator.truth as truth_module
    import streams.tools.simulator.truth_file as truth_file_module

    for module in (truth_module, operator_truth_module, truth_file_module):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.append(node.module)
        assert imported, "expected some imports"
        assert not [name for name in imported if name.split(".")[0] == "agents"], module


# --------------------------------------------------------------------------- extended claims


@pytest.mark.parametrize("claim_id", sorted(EXTENDED_EXPECTED))
def test_extended_claim_matches_the_hand_computed_answer(claim_id: str) -> None:
    lines = [json.dumps(event) for event in extended_events()]
    got = compute_truth(lines, scenario="t", seed=0)["claims"][claim_id]
    assert got == pytest.approx(EXTENDED_EXPECTED[claim_id])
    assert list(got) == list(EXTENDED_EXPECTED[claim_id])


def test_extended_claims_ignore_file_order_and_repeats() -> None:
    lines = [json.dumps(event) for event in extended_events()]
    shuffled = lines + lines[:7]
    random.Random(5).shuffle(shuffled)
    claims = compute_truth(shuffled, scenario="t", seed=0)["claims"]
    for claim_id, expected in EXTENDED_EXPECTED.items():
        assert claims[claim_id] == pytest.approx(expected)
