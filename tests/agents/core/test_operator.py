"""The operator board on small hand-built streams: figures worked out by hand, windows, lateness."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard
from agents.core.operator import watch_intervals
from agents.core.timeline import watch_time_ms
from agents.core.windows import MINUTE_MS, EventTimeWindows
from schemas import Event, Rejection, decode_text
from streams.tools.simulator.operator_truth import operator_truth
from tests.support.truth import operator_mismatches

T0 = 1_721_800_800_000  # a whole minute
MIN = MINUTE_MS


def ev(seq: list[int], type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    seq[0] += 1
    return {"event_id": f"e-{seq[0]}", "type": type_, "ts": ts, **fields}


def feed(events: list[dict[str, Any]], grace_ms: int = 120_000, **kw: Any) -> dict[str, Any]:
    ledger, board = Ledger(), OperatorBoard(grace_ms=grace_ms, **kw)
    for raw in events:
        decoded = decode_text(json.dumps(raw))
        assert not isinstance(decoded, Rejection), decoded
        event: Event = decoded
        if ledger.apply(event):
            board.observe(event)
    return board.snapshot(ledger)


def order(seq: list[int], ts: int, oid: str, user: str, cents: int, sid: str | None = "s-1"):
    item = {"sku_id": "k-1", "category": "apparel", "unit_price_cents": cents, "quantity": 1}
    return ev(
        seq, "order_paid", ts, order_id=oid, session_id=sid, merchant_id="m-1", user_id=user,
        items=[item], amount_cents=cents,
    )  # fmt: skip


def small_stream() -> list[dict[str, Any]]:
    """One session of room r-1 (merchant m-1) with every kind of event the board reads."""
    s: list[int] = [0]
    sid = {"session_id": "s-1"}
    return [
        ev(s, "session_started", T0, room_id="r-1", merchant_id="m-1", **sid),
        ev(s, "viewer_joined", T0 + 10_000, user_id="u-1", **sid),
        ev(s, "viewer_joined", T0 + 20_000, user_id="u-2", **sid),
        ev(s, "product_clicked", T0 + 30_000, user_id="u-1", sku_id="k-1", **sid),
        ev(s, "product_clicked", T0 + 31_000, user_id="u-1", sku_id="k-2", **sid),
        ev(s, "interaction", T0 + 40_000, user_id="u-1", kind="follow", **sid),
        ev(s, "interaction", T0 + 41_000, user_id="host", kind="reply", **sid),
        ev(s, "group_joined", T0 + 50_000, merchant_id="m-1", group_id="g-1", user_id="u-1"),
        # A group join before the session and one by a non-viewer do not count.
        ev(s, "group_joined", T0 - 50_000, merchant_id="m-1", group_id="g-2", user_id="u-2"),
        ev(s, "group_joined", T0 + 55_000, merchant_id="m-1", group_id="g-1", user_id="u-9"),
        order(s, T0 + 2 * MIN + 5_000, "o-1", "u-1", 60_000),
        ev(s, "viewer_left", T0 + 3 * MIN + 10_000, user_id="u-2", **sid),
        # u-2 comes back in the same minute: a second entry, but one viewer in that minute.
        ev(s, "viewer_joined", T0 + 3 * MIN + 30_000, user_id="u-2", **sid),
        # u-3 only comments: a viewer with no watch time.
        ev(s, "interaction", T0 + 4 * MIN, user_id="u-3", kind="comment", **sid),
        order(s, T0 + 4 * MIN + 1_000, "o-2", "u-2", 20_000),
        order(s, T0 + 4 * MIN + 2_000, "o-3", "u-2", 20_000),
        ev(s, "order_refunded", T0 + 9 * MIN, order_id="o-2", amount_cents=20_000),
        ev(s, "viewer_left", T0 + 5 * MIN, user_id="u-1", **sid),
        # An order outside any session and one of a session never started count nowhere.
        order(s, T0 + 5 * MIN, "o-4", "u-1", 99_900, sid=None),
        order(s, T0 + 5 * MIN, "o-5", "u-1", 99_900, sid="s-ghost"),
    ]


def test_figures_of_a_small_session_worked_out_by_hand() -> None:
    snap = feed(small_stream())
    f = snap["overall"]
    assert snap["sessions"]["s-1"]["room_id"] == "r-1"
    assert f["entries"] == 3
    assert f["unique_viewers"] == 3  # u-1, u-2 (joins), u-3 (comment)
    # u-2 is in the room at the end (the session never ended); u-1 left.
    assert f["viewers_current"] == 1
    # u-1: 10 s..5 min; u-2: 20 s..3 min 10 s, 3 min 30 s..the session's last event (5 min).
    watch_ms = [5 * MIN - 10_000, (3 * MIN - 10_000) + (5 * MIN - 3 * MIN - 30_000), 0]
    assert f["watch_time_seconds_sum"] == pytest.approx(sum(watch_ms) / 1000)
    assert f["avg_watch_minutes"] == pytest.approx(sum(watch_ms) / 3 / MIN)
    assert f["median_watch_minutes"] == pytest.approx(sorted(watch_ms)[1] / MIN)
    assert f["viewers_peak"] == 2
    assert f["buyers"] == 2 and f["paying_users"] == 2
    assert f["conversion"] == pytest.approx(2 / 3)
    assert f["interacting_viewers"] == 2  # u-1 (follow), u-3; the host's reply is not one
    assert f["orders"] == 3 and f["gmv_cny"] == 1000.0
    assert f["aov_cny"] == pytest.approx(1000 / 3)
    assert f["aov_per_customer_cny"] == pytest.approx(500.0)
    assert f["gpm_cny"] == pytest.approx(1000 * 1000 / 3)
    assert f["uv_value_cny"] == pytest.approx(1000 / 3)
    assert f["follows"] == 1 and f["group_joins"] == 1
    assert f["refunds"] == 1 and f["refunded_cny"] == 200.0 and f["net_gmv_cny"] == 800.0
    assert f["product_clicks"] == 2 and f["product_clickers"] == 1
    assert f["click_through_rate"] == pytest.approx(1 / 3)
    assert f["click_to_order_rate"] == pytest.approx(2.0)
    assert f["orders_by_minute"] == [0, 0, 1, 0, 2]
    assert snap["rooms"]["r-1"] == f and snap["merchants"]["m-1"] == f
    per_viewer = feed(small_stream(), gpm_denominator="unique_viewers")["overall"]
    assert per_viewer["gpm_cny"] == pytest.approx(1000 * 1000 / 3)


def test_windows_count_whole_minutes_back_from_the_watermark() -> None:
    snap = feed(small_stream())
    # The watermark is the refund at minute 9: 1m = minute 9, 5m = 5..9, 10m = 0..9.
    assert snap["watermark_ts"] == T0 + 9 * MIN
    w = snap["overall"]["windows"]
    assert w["1m"]["entries"] == 0 and w["1m"]["unique_viewers"] == 0
    assert w["5m"]["orders"] == 0
    ten = w["10m"]
    assert (ten["entries"], ten["orders"], ten["gmv_cny"]) == (3, 3, 1000.0)
    assert ten["product_clicks"] == 2 and ten["interactions"] == 2
    assert ten["unique_viewers"] == 3 and ten["buyers"] == 2
    assert w["prev_10m"]["entries"] == 0
    assert w["change_10m"]["entries"] is None  # nothing to compare with


def test_change_against_the_ten_minutes_before() -> None:
    s: list[int] = [0]
    sid = {"session_id": "s-1"}
    events = [ev(s, "session_started", T0, room_id="r", merchant_id="m", **sid)]
    events += [ev(s, "viewer_joined", T0 + i * 1000, user_id=f"a{i}", **sid) for i in range(4)]
    events += [ev(s, "viewer_joined", T0 + 12 * MIN + i, user_id=f"b{i}", **sid) for i in range(6)]
    w = feed(events)["overall"]["windows"]
    assert (w["10m"]["entries"], w["prev_10m"]["entries"]) == (6, 4)
    assert w["change_10m"]["entries"] == pytest.approx(0.5)
    assert w["change_10m"]["unique_viewers"] == pytest.approx(0.5)


def test_late_event_is_counted_and_kept_out_of_the_windows_only() -> None:
    s: list[int] = [0]
    sid = {"session_id": "s-1"}
    events = [
        ev(s, "session_started", T0, room_id="r", merchant_id="m", **sid),
        ev(s, "viewer_joined", T0 + 8 * MIN, user_id="u-1", **sid),
        # 3 minutes behind the watermark with a 2-minute grace: late.
        ev(s, "viewer_joined", T0 + 5 * MIN, user_id="u-2", **sid),
        # 2 minutes behind: exactly at the grace, on time.
        ev(s, "viewer_joined", T0 + 6 * MIN, user_id="u-3", **sid),
    ]
    snap = feed(events, grace_ms=2 * MIN)
    assert snap["late_events"] == 1 and snap["grace_ms"] == 2 * MIN
    f = snap["overall"]
    assert f["entries"] == 3  # cumulative figures come from the facts: exact anyway
    assert f["windows"]["10m"]["entries"] == 2
    assert f["windows"]["5m"]["unique_viewers"] == 2
    # With a longer grace the same event is on time.
    longer = feed(events, grace_ms=3 * MIN)
    assert longer["late_events"] == 0 and longer["overall"]["windows"]["10m"]["entries"] == 3


def test_out_of_order_within_grace_gives_the_in_order_result() -> None:
    rng = random.Random(7)
    s: list[int] = [0]
    events = [
        ev(s, "session_started", T0, room_id="r-1", merchant_id="m-1", session_id="s-1"),
        ev(s, "session_started", T0 + 1000, room_id="r-2", merchant_id="m-1", session_id="s-2"),
    ]
    for i in range(400):
        ts = T0 + 2000 + i * 7_000
        sid = f"s-{1 + i % 2}"
        kind = i % 5
        if kind == 0:
            events.append(ev(s, "viewer_joined", ts, session_id=sid, user_id=f"u{i % 37}"))
        elif kind == 1:
            events.append(ev(s, "viewer_left", ts, session_id=sid, user_id=f"u{(i - 1) % 37}"))
        elif kind == 2:
            events.append(
                ev(s, "interaction", ts, session_id=sid, user_id=f"u{i % 23}", kind="like")
            )
        elif kind == 3:
            events.append(
                ev(s, "product_clicked", ts, session_id=sid, user_id=f"u{i % 19}", sku_id="k")
            )
        else:
            events.append(order(s, ts, f"o-{i}", f"u{i % 11}", 100 * i, sid=sid))
    in_order = feed(events, grace_ms=60_000)
    assert in_order["late_events"] == 0
    # Shuffle within blocks spanning under 60 s of event time: nothing is late.
    shuffled: list[dict[str, Any]] = events[:2]
    for start in range(2, len(events), 8):
        block = events[start : start + 8]
        rng.shuffle(block)
        shuffled.extend(block)
    assert shuffled != events
    out_of_order = feed(shuffled, grace_ms=60_000)
    assert out_of_order["late_events"] == 0
    assert out_of_order == in_order
    assert in_order["overall"]["windows"]["10m"]["orders"] > 0


def test_buckets_older_than_the_windows_are_dropped() -> None:
    source = ("live.views", "s")
    windows = EventTimeWindows(grace_ms=60_000)
    for minute in range(100):
        ts = T0 + minute * MIN
        assert windows.admit(ts, source)
        windows.bucket(ts, "s").entries += 1
    # 20 minutes of buckets back from the watermark's minute, no more.
    assert sorted(windows.buckets) == [T0 // MIN + m for m in range(80, 100)]
    # On time for its own source, but older than every retained bucket: in no window, not late.
    assert not windows.admit(T0 + 10 * MIN, ("live.views", "another session"))
    assert windows.late == 0
    # Late: more than the grace behind the newest event of its own source.
    assert not windows.admit(T0 + 99 * MIN - 60_001, source)
    assert windows.late == 1
    assert windows.admit(T0 + 99 * MIN - 60_000, source)


def test_topics_out_of_step_make_nothing_late() -> None:
    """A replay that reads one topic far ahead of another: lateness is per topic and key."""
    s: list[int] = [0]
    sessions = [
        ev(s, "session_started", T0, room_id="r", merchant_id="m", session_id="s-1"),
        ev(s, "session_ended", T0 + 30 * MIN, session_id="s-1"),
    ]
    views = [
        ev(s, "viewer_joined", T0 + (25 + i % 5) * MIN + i, session_id="s-1", user_id=f"u{i}")
        for i in range(40)
    ]
    views.sort(key=lambda e: e["ts"])
    in_order = feed(sorted(sessions + views, key=lambda e: e["ts"]), grace_ms=MIN)
    skewed = feed(sessions + views, grace_ms=MIN)  # the sessions topic read first, to its end
    assert skewed["late_events"] == in_order["late_events"] == 0
    assert skewed["overall"]["windows"] == in_order["overall"]["windows"]
    assert skewed["overall"]["windows"]["10m"]["entries"] == 40


def test_watch_intervals_add_up_to_the_claims_watch_time() -> None:
    rng = random.Random(3)
    for _ in range(300):
        presence = [
            (rng.randrange(0, 40) * 15_000, seq, rng.random() < 0.55)
            for seq in range(rng.randrange(0, 9))
        ]
        ended = rng.choice([None, rng.randrange(0, 40) * 15_000])
        close = ended if ended is not None else 40 * 15_000
        intervals, _open = watch_intervals(presence, close, ended)
        assert sum(b - a for a, b in intervals) == watch_time_ms(presence, close, ended)
        assert all(b > a for a, b in intervals)


def test_small_streams_agree_with_the_batch_truth() -> None:
    """The hand-built streams through the board and through
    streams.tools.simulator.operator_truth."""
    streams = [small_stream()]
    rng = random.Random(11)
    s: list[int] = [0]
    shuffled = [
        ev(s, "session_started", T0, room_id="r", merchant_id="m", session_id="s-1"),
        ev(s, "session_ended", T0 + 30 * MIN, session_id="s-1"),
    ]
    for i in range(300):
        ts = T0 + rng.randrange(0, 32 * MIN)
        user = f"u{rng.randrange(40)}"
        shuffled.append(
            rng.choice(
                [
                    ev(s, "viewer_joined", ts, session_id="s-1", user_id=user),
                    ev(s, "viewer_left", ts, session_id="s-1", user_id=user),
                    ev(s, "interaction", ts, session_id="s-1", user_id=user, kind="follow"),
                    ev(s, "product_clicked", ts, session_id="s-1", user_id=user, sku_id="k"),
                    order(s, ts, f"o{i}", user, 1000 + i),
                ]
            )
        )
    rng.shuffle(shuffled)
    streams.append(shuffled)
    for events in streams:
        lines = [json.dumps(e) for e in events]
        snap = feed(events, grace_ms=90_000)
        truth = operator_truth(lines, grace_ms=90_000)
        assert operator_mismatches(snap, truth) == []
    assert truth["late_events"] > 0  # the shuffled stream has late events
