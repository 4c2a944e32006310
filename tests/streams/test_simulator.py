"""The simulator: deterministic output, the model's features and the contract noise it mixes in,
the committed fixtures, and the scenarios pulling their figures in the designed directions."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import EVENT_TYPES, Rejection, decode_text
from streams.commands import simulate as simulate_command
from streams.tools.simulator import (
    JUNK_KINDS,
    compute_truth,
    generate,
    get_scenario,
    split_lines,
    truth_path,
)
from streams.tools.simulator.truth import (
    REPURCHASE_WINDOW_MS,
    Stream,
    cst_date,
    is_member,
    read_stream,
    watch_ms,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HOUR_MS = 3_600_000
CST_OFFSET_MS = 8 * HOUR_MS
KNOWN_FIELDS = {
    "event_id",
    "type",
    "ts",
    "session_id",
    "room_id",
    "merchant_id",
    "host_kind",
    "user_id",
    "source",
    "kind",
    "reply_to",
    "order_id",
    "items",
    "amount_cents",
    "reason",
    "group_id",
    "sku_id",
}


def _lines(name: str) -> list[str]:
    return split_lines((FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fixture_lines() -> dict[str, list[str]]:
    return {name: _lines(name) for name in ("xhs", "impulse")}


@pytest.fixture(scope="module")
def fixture_truth() -> dict[str, dict[str, Any]]:
    return {
        name: json.loads((FIXTURES / f"{name}.truth.json").read_text(encoding="utf-8"))
        for name in ("xhs", "impulse")
    }


@pytest.fixture(scope="module")
def streams(fixture_lines: dict[str, list[str]]) -> dict[str, Stream]:
    return {name: read_stream(lines) for name, lines in fixture_lines.items()}


def _objects(lines: list[str]) -> Iterator[dict[str, Any]]:
    """The lines that decode as valid events, as plain JSON objects (repeats included)."""
    for line in lines:
        if not isinstance(decode_text(line), Rejection):
            yield json.loads(line)


# --------------------------------------------------------------------------- determinism


def test_same_inputs_same_bytes_and_other_seeds_differ() -> None:
    scenario = get_scenario("xhs")
    first = generate(scenario, 7, 0.2)
    again = generate(scenario, 7, 0.2)
    assert first.lines == again.lines
    assert generate(scenario, 8, 0.2).lines != first.lines
    assert generate(get_scenario("impulse"), 7, 0.2).lines != first.lines


def test_command_writes_identical_files_and_the_truth_beside_them(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    simulate_command.register(parser.add_subparsers(dest="command"))
    written = []
    for run in ("a", "b"):
        out = tmp_path / run / "room.jsonl"
        args = parser.parse_args(
            [
                "simulate",
                "--scenario",
                "impulse",
                "--seed",
                "3",
                "--out",
                str(out),
                "--scale",
                "0.2",
            ]
        )
        assert args.func(args) == 0
        written.append((out.read_bytes(), (tmp_path / run / "room.truth.json").read_bytes()))
    assert written[0] == written[1]
    truth = json.loads(written[0][1])
    assert truth["scenario"] == "impulse" and truth["seed"] == 3
    assert truth["lines"] == written[0][0].count(b"\n")
    assert truth_path(Path("x/y.jsonl")) == Path("x/y.truth.json")
    assert truth_path(Path("x/y.data")) == Path("x/y.data.truth.json")


def test_scale_changes_the_size() -> None:
    scenario = get_scenario("impulse")
    assert len(generate(scenario, 1, 0.3).lines) < len(generate(scenario, 1, 0.6).lines)
    with pytest.raises(ValueError, match="scale"):
        generate(scenario, 1, 0)


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_fixture_is_what_the_generator_makes(
    name: str, fixture_lines: dict[str, list[str]]
) -> None:
    assert generate(get_scenario(name), 1, 1.0).lines == fixture_lines[name]


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_fixture_truth_equals_recomputed_truth(
    name: str, fixture_lines: dict[str, list[str]], fixture_truth: dict[str, dict[str, Any]]
) -> None:
    recomputed = compute_truth(fixture_lines[name], scenario=name, seed=1)
    assert json.loads(json.dumps(recomputed)) == fixture_truth[name]


def test_fixtures_are_small_but_meaningful(fixture_truth: dict[str, dict[str, Any]]) -> None:
    total = sum((FIXTURES / f"{n}.jsonl").stat().st_size for n in ("xhs", "impulse"))
    assert 1_500_000 < total < 3_500_000
    for truth in fixture_truth.values():
        claims = truth["claims"]
        assert claims["orders_after_minute_5"]["session_orders"] >= 200
        assert claims["group_member_dwell"]["pairs"] >= 100
        assert claims["group_spend_multiple"]["members"] >= 50
        assert all(claim["observed"] is not None for claim in claims.values())
    assert fixture_truth["xhs"]["claims"]["group_repurchase_30d"]["eligible"] >= 24
    assert fixture_truth["impulse"]["claims"]["group_repurchase_30d"]["eligible"] >= 10


# --------------------------------------------------------------------------- the noise


def test_every_junk_kind_is_present(fixture_lines: dict[str, list[str]]) -> None:
    found: Counter[str] = Counter()
    for lines in fixture_lines.values():
        for line in lines:
            decoded = decode_text(line)
            if not isinstance(decoded, Rejection):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                found["not_json"] += 1
                continue
            if not isinstance(obj, dict):
                found["not_object"] += 1
            elif obj.get("type") not in EVENT_TYPES:
                found["unknown_type" if "type" in obj else "missing_field"] += 1
            elif isinstance(obj.get("amount_cents"), int) and obj["amount_cents"] < 0:
                found["negative_amount"] += 1
            elif obj.get("items") == []:
                found["empty_items"] += 1
            elif any(value == "" for key, value in obj.items() if key.endswith("_id")):
                found["empty_id"] += 1
            elif decoded.reason == "wrong_type":
                found["wrong_type"] += 1
            elif decoded.reason == "missing_field":
                found["missing_field"] += 1
            if isinstance(obj, dict) and isinstance(obj.get("ts"), str):
                found["ts_as_string"] += 1
    for kind in JUNK_KINDS:
        assert found[kind] > 0, kind
    assert found["ts_as_string"] > 0
    rejected = sum(found[kind] for kind in JUNK_KINDS)
    total_lines = sum(len(lines) for lines in fixture_lines.values())
    assert 0.002 < rejected / total_lines < 0.01


def test_redeliveries_repeat_the_same_line_later(fixture_lines: dict[str, list[str]]) -> None:
    lines = fixture_lines["xhs"]
    first_at: dict[str, int] = {}
    repeats = 0
    for position, line in enumerate(lines):
        if isinstance(decode_text(line), Rejection):
            continue
        event_id = json.loads(line)["event_id"]
        if event_id in first_at:
            assert lines[first_at[event_id]] == line
            repeats += 1
        else:
            first_at[event_id] = position
    assert repeats > 50


def test_topics_out_of_step_but_sessions_in_order_within_a_topic(
    fixture_lines: dict[str, list[str]],
) -> None:
    topic_of = {
        "session_started": "sessions",
        "session_ended": "sessions",
        "viewer_joined": "views",
        "viewer_left": "views",
        "interaction": "interactions",
        "product_clicked": "interactions",
        "order_paid": "orders",
        "order_refunded": "orders",
        "group_joined": "groups",
        "group_left": "groups",
    }
    seen: set[str] = set()
    last_ts: dict[tuple[str, str], int] = {}
    max_ts = 0
    behind = late = 0
    for obj in _objects(fixture_lines["xhs"]):
        if obj["event_id"] in seen:
            continue
        seen.add(obj["event_id"])
        topic = topic_of[obj["type"]]
        key = obj.get("merchant_id") if topic == "groups" else obj.get("session_id")
        stream = (topic, str(key or ""))
        assert obj["ts"] >= last_ts.get(stream, 0), stream
        last_ts[stream] = obj["ts"]
        behind += obj["ts"] < max_ts
        late += obj["ts"] < max_ts - 30_000
        max_ts = max(max_ts, obj["ts"])
    assert behind > 100  # topics drift seconds apart
    assert late > 0  # and a few records are held back


def test_view_noise_and_optional_fields(fixture_lines: dict[str, list[str]]) -> None:
    objects = list(_objects(fixture_lines["xhs"]))
    views: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for obj in objects:
        if obj["type"] in ("viewer_joined", "viewer_left"):
            pair = (obj["session_id"], obj["user_id"])
            views.setdefault(pair, []).append((obj["ts"], obj["type"]))
    leave_without_join = second_join = rejoined = 0
    for events in views.values():
        events.sort()
        inside = False
        joins = 0
        for _ts, kind in events:
            if kind == "viewer_joined":
                second_join += inside
                joins += not inside
                inside = True
            else:
                leave_without_join += not inside
                inside = False
        rejoined += joins >= 2
    assert leave_without_join > 20
    assert second_join > 20
    assert rejoined > 200
    extra = [obj for obj in objects if set(obj) - KNOWN_FIELDS]
    assert len(extra) > 100
    by_type: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_type.setdefault(obj["type"], []).append(obj)
    assert any("source" not in obj for obj in by_type["viewer_joined"])
    assert any("source" in obj for obj in by_type["viewer_joined"])
    assert any("host_kind" not in obj for obj in by_type["session_started"])
    assert any("reason" not in obj for obj in by_type["order_refunded"])


# --------------------------------------------------------------------------- the model


def test_rooms_days_months_and_recurring_users(streams: dict[str, Stream]) -> None:
    stream = streams["xhs"]
    starts = list(stream.started.values())
    days = {cst_date(s.ts) for s in starts}
    assert len({s.merchant_id for s in starts}) >= 3
    assert len({s.room_id for s in starts}) >= 4
    assert len(days) >= 40
    assert len({day[:7] for day in days}) >= 2
    assert len(starts) / len(days) > 1.5
    # Evenings in China Standard Time.
    assert all(18 <= ((s.ts + CST_OFFSET_MS) // HOUR_MS) % 24 <= 23 for s in starts)
    assert sum(1 for sid in stream.started if sid not in stream.ended_ts) >= 1
    days_seen: dict[str, set[str]] = {}
    for session_id, user_id in stream.views:
        days_seen.setdefault(user_id, set()).add(cst_date(stream.started[session_id].ts))
    assert sum(1 for seen in days_seen.values() if len(seen) >= 3) > 100


def test_orders_refunds_and_groups(streams: dict[str, Stream]) -> None:
    stream = streams["xhs"]
    orders = [order for _position, order in stream.orders]
    outside = [order for order in orders if order.session_id is None]
    after_end = [
        order
        for order in orders
        if order.session_id in stream.ended_ts and order.ts > stream.ended_ts[order.session_id]
    ]
    bundles = [order for order in orders if len({item.sku_id for item in order.items}) >= 2]
    assert len(outside) > 10
    assert len(after_end) > 5
    assert 0.05 < len(bundles) / len(orders) < 0.4
    assert all(
        order.amount_cents == sum(i.unit_price_cents * i.quantity for i in order.items)
        for order in orders
    )
    raw_orders = [
        json.loads(line)
        for line in _lines("xhs")
        if '"order_paid"' in line and not isinstance(decode_text(line), Rejection)
    ]
    assert any("session_id" not in obj for obj in raw_orders)
    assert any("session_id" in obj and obj["session_id"] is None for obj in raw_orders)
    categories = {order.order_id: {i.category for i in order.items} for order in orders}
    reasons: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    for _position, event in stream.events:
        if event.type == "order_refunded":
            apparel = "apparel" in categories.get(event.order_id, set())
            reasons[apparel][event.reason or "absent"] += 1
    apparel_size = reasons[True]["size"] / sum(reasons[True].values())
    other_size = reasons[False]["size"] / max(1, sum(reasons[False].values()))
    assert apparel_size > other_size
    joined_groups: dict[tuple[str, str], set[str]] = {}
    for key, group_events in stream.group_events.items():
        for _ts, _position, group_id, is_join in group_events:
            if is_join:
                joined_groups.setdefault(key, set()).add(group_id)
    assert sum(1 for groups in joined_groups.values() if len(groups) >= 2) > 5
    assert any(not is_join for events in stream.group_events.values() for *_, is_join in events)


def test_replies_answer_questions_after_a_delay(streams: dict[str, Stream]) -> None:
    stream = streams["xhs"]
    questions = {
        event.event_id: event
        for _position, event in stream.events
        if event.type == "interaction" and event.kind == "question"
    }
    replies = [
        event
        for _position, event in stream.events
        if event.type == "interaction" and event.kind == "reply"
    ]
    assert len(replies) > 50
    for reply in replies:
        question = questions[reply.reply_to or ""]
        assert reply.session_id == question.session_id
        assert reply.ts > question.ts
        assert reply.user_id.startswith(("h-", "st-"))


def test_product_clicks_come_before_most_orders_and_many_lead_nowhere(
    streams: dict[str, Stream],
) -> None:
    for name, stream in streams.items():
        clicks: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for _position, event in stream.events:
            if event.type == "product_clicked":
                assert event.session_id in stream.started
                clicks.setdefault((event.session_id, event.user_id), []).append(
                    (event.ts, event.sku_id)
                )
        in_room = [
            order
            for _position, order in stream.orders
            if order.session_id in stream.ended_ts and order.ts <= stream.ended_ts[order.session_id]
        ]
        clicked_first = sum(
            1
            for order in in_room
            if any(
                sku in {item.sku_id for item in order.items} and ts <= order.ts
                for ts, sku in clicks.get((order.session_id or "", order.user_id), [])
            )
        )
        # Buyers usually open the card first, but some pay from the pinned button.
        assert 0.6 < clicked_first / len(in_room) < 0.98, name
        bought = {
            (order.session_id, order.user_id, item.sku_id)
            for _position, order in stream.orders
            for item in order.items
        }
        clicked = {(sid, user, sku) for (sid, user), seen in clicks.items() for _ts, sku in seen}
        # Most product cards opened are never bought.
        assert len(clicked - bought) > 2 * len(clicked & bought), name


# --------------------------------------------------------------------------- the scenarios


def _member_contrasts(stream: Stream) -> dict[str, tuple[float, float]]:
    """(members, others) for mean dwell and 30-day repurchase, computed the way truth.py does."""
    dwell: dict[bool, list[int]] = {True: [], False: []}
    for (session_id, user_id), views in stream.views.items():
        started = stream.started.get(session_id)
        joins = [ts for ts, _position, is_join in views if is_join]
        if started is None or not joins:
            continue
        member = is_member(stream, started.merchant_id, user_id, min(joins))
        dwell[member].append(watch_ms(stream, session_id, user_id))
    times: dict[tuple[str, str], list[int]] = {}
    for _position, order in stream.orders:
        times.setdefault((order.merchant_id, order.user_id), []).append(order.ts)
    repurchase: dict[bool, list[bool]] = {True: [], False: []}
    for (merchant_id, user_id), order_times in times.items():
        first = min(order_times)
        if first + REPURCHASE_WINDOW_MS > stream.end_ts:
            continue
        again = any(first < ts <= first + REPURCHASE_WINDOW_MS for ts in order_times)
        repurchase[is_member(stream, merchant_id, user_id, first)].append(again)
    return {
        "dwell": (sum(dwell[True]) / len(dwell[True]), sum(dwell[False]) / len(dwell[False])),
        "repurchase": (
            sum(repurchase[True]) / len(repurchase[True]),
            sum(repurchase[False]) / len(repurchase[False]),
        ),
    }


def test_scenarios_pull_in_the_designed_directions(
    fixture_truth: dict[str, dict[str, Any]], streams: dict[str, Stream]
) -> None:
    xhs = {k: v["observed"] for k, v in fixture_truth["xhs"]["claims"].items()}
    imp = {k: v["observed"] for k, v in fixture_truth["impulse"]["claims"].items()}
    # Most xhs orders come after minute 5; most impulse orders in the first minutes.
    assert xhs["orders_after_minute_5"] > 0.5 > imp["orders_after_minute_5"]
    # Dearer xhs items are bought after longer watching; impulse decisions ignore price.
    assert xhs["price_dwell_association"] > 0.15 > imp["price_dwell_association"]
    # Interacting viewers convert much more often in xhs, barely more in impulse.
    assert xhs["interaction_uplift"] > 3 > 2 > imp["interaction_uplift"]
    assert xhs["live_aov"] > 500 > imp["live_aov"]
    assert xhs["group_order_share"] > imp["group_order_share"]
    assert xhs["group_member_dwell"] > 3 * imp["group_member_dwell"]
    assert xhs["group_spend_multiple"] > 3 > 2 > imp["group_spend_multiple"]
    # Members stay longer and come back in xhs; in impulse membership changes nothing.
    xhs_contrast = _member_contrasts(streams["xhs"])
    imp_contrast = _member_contrasts(streams["impulse"])
    assert xhs_contrast["dwell"][0] > 2 * xhs_contrast["dwell"][1]
    assert 0.67 < imp_contrast["dwell"][0] / imp_contrast["dwell"][1] < 1.5
    assert xhs_contrast["repurchase"][0] > 1.5 * xhs_contrast["repurchase"][1]
