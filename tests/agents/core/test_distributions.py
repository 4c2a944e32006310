"""The plotted distributions on hand-built streams, against figures worked out by hand."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from agents.core import Ledger, build_report
from agents.core.distributions import (
    compute_distributions,
    conversion_by_interaction,
    histogram_bins,
    orders_by_minute,
    watch_minutes_by_membership,
    watch_minutes_to_order_by_price_tier,
)
from schemas import event_adapter

T0 = 1_721_800_800_000  # 2024-07-24 14:00 CST
MIN = 60_000
_ids = itertools.count()


def ev(type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"d{next(_ids)}", "type": type_, "ts": ts, **fields}


def start(sid: str, ts: int, merchant: str = "m1") -> dict[str, Any]:
    return ev("session_started", ts, session_id=sid, room_id="r1", merchant_id=merchant)


def end(sid: str, ts: int) -> dict[str, Any]:
    return ev("session_ended", ts, session_id=sid)


def order(
    ts: int, user: str, sid: str | None = "s1", prices: tuple[int, ...] = (10_000,)
) -> dict[str, Any]:
    items = [
        {"sku_id": f"k{i}", "category": "apparel", "unit_price_cents": p, "quantity": 1}
        for i, p in enumerate(prices)
    ]
    return ev(
        "order_paid",
        ts,
        order_id=f"o{next(_ids)}",
        session_id=sid,
        merchant_id="m1",
        user_id=user,
        items=items,
        amount_cents=sum(prices),
    )


def join(ts: int, user: str, sid: str = "s1") -> dict[str, Any]:
    return ev("viewer_joined", ts, session_id=sid, user_id=user)


def leave(ts: int, user: str, sid: str = "s1") -> dict[str, Any]:
    return ev("viewer_left", ts, session_id=sid, user_id=user)


def act(ts: int, user: str, kind: str, sid: str = "s1") -> dict[str, Any]:
    return ev("interaction", ts, session_id=sid, user_id=user, kind=kind)


def gjoin(ts: int, user: str, merchant: str = "m1") -> dict[str, Any]:
    return ev("group_joined", ts, merchant_id=merchant, group_id=f"g-{merchant}", user_id=user)


def gleave(ts: int, user: str, merchant: str = "m1") -> dict[str, Any]:
    return ev("group_left", ts, merchant_id=merchant, group_id=f"g-{merchant}", user_id=user)


def ledger_of(events: list[dict[str, Any]]) -> Ledger:
    ledger = Ledger()
    for raw in events:
        ledger.apply(event_adapter.validate_python(raw))
    return ledger


def wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_orders_by_minute_bins_overflow_and_share_after_minute_5() -> None:
    events = [
        order(T0, "u1"),  # minute 0, paid before its session_started arrived
        start("s1", T0),
        order(T0 + MIN - 1, "u2"),  # minute 0
        order(T0 + MIN, "u3"),  # minute 1
        order(T0 + 5 * MIN - 1, "u4"),  # minute 4: before the line
        order(T0 + 5 * MIN, "u5"),  # minute 5: after it
        order(T0 - 1_000, "u6"),  # paid before the start
        order(T0 + 10 * MIN, "u7"),  # the cap (10 here): overflow
        order(T0 + 9 * MIN, "u8", sid="s-never-started"),  # not a session order
        order(T0 + 9 * MIN, "u9", sid=None),  # not a session order
    ]
    got = orders_by_minute(ledger_of(events), cap_minutes=10)
    assert got["counts"] == [2, 1, 0, 0, 1, 1, 0, 0, 0, 0]
    assert got["overflow"] == 1
    assert got["before_start"] == 1
    assert got["session_orders"] == 7
    assert got["after_5min"] == 2
    assert got["share_after_5min"] == pytest.approx(2 / 7)
    # One session shows nothing of the spread between sessions: no interval, rather than
    # plain Wilson (0.08 to 0.64) passing for the clustered one.
    assert (got["ci_low"], got["ci_high"]) == (None, None)
    # The default cap keeps the 10-minute order in its own bin.
    assert orders_by_minute(ledger_of(events))["counts"][10] == 1


def test_conversion_of_interacting_and_other_pairs() -> None:
    events = [
        start("s1", T0),
        start("s2", T0),
        join(T0, "u1"),
        act(T0 + 1, "u1", "comment"),
        order(T0 + 2, "u1"),  # interacting buyer
        act(T0, "u2", "like"),  # interacting, no order (a viewer without a join)
        join(T0, "u3"),  # other
        order(T0 + 3, "u4"),  # other buyer: a viewer by the order alone
        join(T0, "u6"),  # other
        act(T0, "host", "reply"),  # a reply makes no viewer
        ev("product_clicked", T0, session_id="s1", user_id="u7", sku_id="k1"),  # nor a click
        join(T0, "u1", sid="s2"),  # the same user in another session: another (other) pair
        join(T0, "u5", sid="s9"),  # a session never started: not counted
        act(T0, "u5", "comment", sid="s9"),
    ]
    got = conversion_by_interaction(ledger_of(events))
    assert {k: got["interacting"][k] for k in ("pairs", "buyers", "rate")} == {
        "pairs": 2,
        "buyers": 1,
        "rate": 0.5,
    }
    assert {k: got["other"][k] for k in ("pairs", "buyers", "rate")} == {
        "pairs": 4,
        "buyers": 1,
        "rate": 0.25,
    }
    assert got["multiple"] == pytest.approx(2.0)
    # Clustered by session (1 of 3 pairs in s1, 0 of 1 in s2): the design effect is floored at
    # 1 here, so the interval of 1 of 4 pairs; with 1 hit and 3 misses (under 4 each) both ends
    # are the exact Poisson ones (stats.modified_wilson_interval): -ln(0.975) / 4 and
    # 1 - 0.61867 / 4 (Wilson's would be 0.046 to 0.699). The interacting pairs are all in s1:
    # no interval.
    assert (got["other"]["ci_low"], got["other"]["ci_high"]) == pytest.approx(
        (-math.log(0.975) / 4, 1 - 0.6186721 / 4), abs=1e-6
    )
    assert got["interacting"]["ci_low"] is None


def test_plotted_share_after_minute_5_has_the_claims_clustered_interval() -> None:
    from streams.tools.analyze import analyze_file

    root = Path(__file__).resolve().parents[3] / "fixtures"
    report = analyze_file(root / "xhs.jsonl")
    plotted = report["distributions"]["orders_by_minute"]
    claim = report["claims"]["orders_after_minute_5"]
    assert plotted["ci_low"] == pytest.approx(claim["ci_low"], rel=1e-9)
    assert plotted["ci_high"] == pytest.approx(claim["ci_high"], rel=1e-9)
    # Wider than plain Wilson on orders counted as independent (sessions cluster them).
    plain = wilson(claim["detail"]["after_5min"], claim["detail"]["session_orders"])
    assert plotted["ci_high"] - plotted["ci_low"] > plain[1] - plain[0]


def test_watch_time_of_members_and_others() -> None:
    events = [
        start("s1", T0),
        end("s1", T0 + 60 * MIN),
        # u1: member before the first join; 10 min, then 10 more closed by the end.
        gjoin(T0 - MIN, "u1"),
        join(T0, "u1"),
        leave(T0 + 10 * MIN, "u1"),
        join(T0 + 50 * MIN, "u1"),
        # u2: joins the group only after the first join, so an other; 30 min.
        join(T0 + 5 * MIN, "u2"),
        gjoin(T0 + 6 * MIN, "u2"),
        leave(T0 + 35 * MIN, "u2"),
        # u3: in another merchant's group; 1 min counted up to the end.
        gjoin(T0 - MIN, "u3", merchant="m2"),
        join(T0 + 59 * MIN, "u3"),
        leave(T0 + 70 * MIN, "u3"),
        # u4: left the group before joining; never leaves the room: 60 min.
        gjoin(T0 - 2 * MIN, "u4"),
        gleave(T0 - MIN, "u4"),
        join(T0, "u4"),
        # u5: no viewer_joined, so no watch-time pair.
        act(T0, "u5", "like"),
    ]
    got = watch_minutes_by_membership(ledger_of(events))
    members, others = got["groups"]["members"], got["groups"]["others"]
    assert members["n"] == 1 and members["mean"] == pytest.approx(20.0)
    assert others["n"] == 3
    assert others["mean"] == pytest.approx(91 / 3)
    # Sorted [1, 30, 60], numpy's linear percentiles worked by hand.
    assert [others[p] for p in ("p10", "p25", "p50", "p75", "p90")] == pytest.approx(
        [6.8, 15.5, 30.0, 45.0, 54.0]
    )
    assert others["max"] == pytest.approx(60.0)
    # All four values [1, 20, 30, 60]: p99 = 59.1 -> 2-minute bins, 30 of them; 60 overflows.
    assert got["bin_minutes"] == 2
    assert members["histogram"]["counts"] == [0] * 10 + [1] + [0] * 19
    assert others["histogram"]["counts"][0] == 1 and others["histogram"]["counts"][15] == 1
    assert sum(others["histogram"]["counts"]) == 2 and others["histogram"]["overflow"] == 1


def test_watch_time_to_the_order_by_price_tier() -> None:
    events = [
        start("s1", T0),
        join(T0, "u1"),
        order(T0 + 5 * MIN, "u1", prices=(199_99,)),  # < 200 CNY, 5 min
        join(T0 + MIN, "u2"),
        leave(T0 + 3 * MIN, "u2"),
        join(T0 + 4 * MIN, "u2"),
        order(T0 + 6 * MIN, "u2", prices=(200_00,)),  # 200-500 (lower edge), 2 + 2 min
        order(T0 + 7 * MIN, "u3", prices=(1000_00,)),  # >= 1000, never joined: 0 min
        join(T0, "u4"),
        order(T0 + 10 * MIN, "u4", prices=(100_00, 600_00)),  # highest item: 500-1000, 10 min
        leave(T0 + 30 * MIN, "u4"),
    ]
    tiers = watch_minutes_to_order_by_price_tier(ledger_of(events))["tiers"]
    assert list(tiers) == ["<200", "200-500", "500-1000", ">=1000"]
    assert [tiers[t]["n"] for t in tiers] == [1, 1, 1, 1]
    assert [tiers[t]["p50"] for t in tiers] == pytest.approx([5.0, 4.0, 10.0, 0.0])


def test_an_empty_ledger_gives_empty_distributions() -> None:
    got = compute_distributions(Ledger())
    assert got["orders_by_minute"]["session_orders"] == 0
    assert got["orders_by_minute"]["share_after_5min"] is None
    assert got["conversion_by_interaction"]["multiple"] is None
    assert got["watch_minutes_by_membership"]["groups"]["members"]["mean"] is None
    assert histogram_bins([]) == (1, 1)


def test_report_carries_the_distributions_as_strict_json() -> None:
    events = [start("s1", T0), join(T0, "u1"), order(T0 + 6 * MIN, "u1")]
    report = build_report(ledger_of(events))
    text = json.dumps(report["distributions"], allow_nan=False)
    assert json.loads(text)["orders_by_minute"]["counts"][6] == 1


@pytest.mark.parametrize("scenario", ["xhs", "impulse"])
def test_fixture_distributions_agree_with_the_independent_truth(scenario: str) -> None:
    """The plotted counts, medians and means against the simulator's batch reference."""
    from streams.tools.analyze import analyze_file

    root = Path(__file__).resolve().parents[3] / "fixtures"
    truth = json.loads((root / f"{scenario}.truth.json").read_text())["claims"]
    got = analyze_file(root / f"{scenario}.jsonl")["distributions"]

    by_minute = got["orders_by_minute"]
    binned = sum(by_minute["counts"]) + by_minute["overflow"] + by_minute["before_start"]
    assert binned == by_minute["session_orders"] == truth["orders_after_minute_5"]["session_orders"]
    assert (
        sum(by_minute["counts"][5:]) + by_minute["overflow"]
        == (truth["orders_after_minute_5"]["after_5min"])
    )
    conversion = got["conversion_by_interaction"]
    uplift = truth["interaction_uplift"]
    assert conversion["interacting"]["pairs"] == uplift["interacting_pairs"]
    assert conversion["interacting"]["buyers"] == uplift["interacting_buyers"]
    assert conversion["other"]["pairs"] == uplift["other_pairs"]
    assert conversion["other"]["buyers"] == uplift["other_buyers"]
    assert conversion["multiple"] == pytest.approx(uplift["observed"])
    tiers = got["watch_minutes_to_order_by_price_tier"]["tiers"]
    medians = truth["price_dwell_association"]["median_watch_minutes_by_tier"]
    for tier, median in medians.items():
        assert tiers[tier]["p50"] == (pytest.approx(median) if median is not None else None)
    assert sum(t["n"] for t in tiers.values()) == truth["price_dwell_association"]["n"]
    members = got["watch_minutes_by_membership"]["groups"]["members"]
    assert members["n"] == truth["group_member_dwell"]["pairs"]
    assert members["mean"] == pytest.approx(truth["group_member_dwell"]["observed"])
