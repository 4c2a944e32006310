"""bench.stream_live: a stream's live quantities at event days, against hand counts and a
direct count over the events of each day."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.stream_live import DAY_MS, live_quantities

T0 = 1_719_792_000_000


def _at(day: float) -> int:
    return T0 + round(day * DAY_MS)


def _started(event_id: str, day: float, session_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "session_started",
        "ts": _at(day),
        "session_id": session_id,
        "room_id": "r-1",
        "merchant_id": "m-1",
    }


def _order(event_id: str, day: float, user_id: str, session_id: str | None) -> dict[str, Any]:
    item = {"sku_id": "k-1", "category": "apparel", "unit_price_cents": 100, "quantity": 1}
    return {
        "event_id": event_id,
        "type": "order_paid",
        "ts": _at(day),
        "order_id": f"o-{event_id}",
        "session_id": session_id,
        "merchant_id": "m-1",
        "user_id": user_id,
        "items": [item],
        "amount_cents": 100,
    }


def _event(event_id: str, event_type: str, day: float, **fields: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": event_type, "ts": _at(day), **fields}


def _stream() -> list[dict[str, Any]]:
    """Two sessions (s-2's end lost), two buyers, a host's reply, a group joined and left,
    a redelivery and a late event, each valid under the contract; day 0 is the first line."""
    group = {"merchant_id": "m-1", "group_id": "g-1", "user_id": "u-2"}
    return [
        _started("e1", 0, "s-1"),
        _event("e2", "viewer_joined", 1, session_id="s-1", user_id="u-1"),
        _order("e3", 2, "u-1", "s-1"),
        _event("e4", "interaction", 3, session_id="s-1", user_id="host", kind="reply"),
        _event("e5", "group_joined", 4, **group),
        _event("e6", "session_ended", 10, session_id="s-1"),
        _started("e7", 20, "s-2"),
        # Late: in the file after day 20, counted at day 18; then redelivered.
        _order("e8", 18, "u-3", None),
        _order("e8", 18, "u-3", None),
        _event("e9", "group_left", 30, **group),
        _event("e10", "viewer_joined", 60, session_id="s-2", user_id="u-4"),
    ]


def test_live_quantities_by_hand() -> None:
    found = live_quantities(
        _stream(),
        [5, 12, 25, 50, 60, 64],
        first_ts=T0,
        user_horizon_days=45,
        refund_horizon_days=10,
        window_days=7,
    )
    assert found[5] == {
        "users_active": 2,  # u-1, u-2 (the host's reply is no user's activity)
        "viewers_active": 1,
        "buyers_active": 1,
        "orders_in_refund_horizon": 1,
        "records_in_window": 5,
        "sessions_open": 1,
        "sessions_open_never_ended": 0,
        "group_members": 1,
        "users_seen": 2,
        "buyers_seen": 1,
    }
    assert found[12]["sessions_open"] == 0
    assert found[12]["orders_in_refund_horizon"] == 0  # o-1 on day 2, 10 days before
    assert found[12]["records_in_window"] == 1  # s-1's end on day 10
    assert found[25]["sessions_open"] == 1
    assert found[25]["sessions_open_never_ended"] == 1
    assert found[25]["orders_in_refund_horizon"] == 1  # the late o-2, once
    assert found[25]["buyers_active"] == 2
    assert found[25]["group_members"] == 1
    assert found[50]["group_members"] == 0
    # Day 50: u-1 last active on day 2, 48 days before; u-2 on 30, u-3 on 18.
    assert found[50]["users_active"] == 2
    assert found[50]["buyers_active"] == 1
    assert found[60]["users_active"] == 3  # u-2 (day 30), u-3 (18) and u-4
    assert found[64]["users_active"] == 2  # u-3 46 days idle
    assert found[64]["buyers_active"] == 0
    assert found[60]["viewers_active"] == 1
    assert found[60]["users_seen"] == 4
    assert found[60]["buyers_seen"] == 2


def _direct(events: list[dict[str, Any]], day: float, horizon: float) -> dict[str, int]:
    """The same quantities counted directly over the events up to `day`, each from scratch."""
    cutoff = _at(day)
    unique = list({e["event_id"]: e for e in events}.values())
    upto = [e for e in unique if e["ts"] <= cutoff]
    recent = [e for e in upto if e["ts"] > cutoff - round(horizon * DAY_MS)]
    started = {e["session_id"] for e in upto if e["type"] == "session_started"}
    ended = {e["session_id"] for e in upto if e["type"] == "session_ended"}
    ended_ever = {e["session_id"] for e in unique if e["type"] == "session_ended"}
    last_group: dict[tuple[str, str], tuple[int, str, str]] = {}
    for e in upto:
        if e["type"].startswith("group_"):
            pair = (e["group_id"], e["user_id"])
            last_group[pair] = max(
                last_group.get(pair, (-1, "", "")), (e["ts"], e["event_id"], e["type"])
            )
    return {
        "users_active": len({e["user_id"] for e in recent if "user_id" in e}),
        "buyers_active": len({e["user_id"] for e in recent if e["type"] == "order_paid"}),
        "orders_in_refund_horizon": sum(e["type"] == "order_paid" for e in recent),
        "sessions_open": len(started - ended),
        "sessions_open_never_ended": len(started - ended - ended_ever),
        "group_members": sum(v[2] == "group_joined" for v in last_group.values()),
        "users_seen": len({e["user_id"] for e in upto if "user_id" in e}),
    }


def test_live_quantities_match_a_direct_count_on_a_random_stream() -> None:
    rng = random.Random(17)
    events: list[dict[str, Any]] = []
    for n in range(3000):
        ts = _at(rng.uniform(0, 100))
        kind = rng.choice(
            ["session_started", "session_ended", "order_paid", "group_joined", "group_left"]
        )
        event: dict[str, Any] = {
            "event_id": f"e{n}",
            "type": kind,
            "ts": ts,
            "session_id": f"s-{rng.randrange(200)}",
        }
        if kind != "session_started" and kind != "session_ended":
            event["user_id"] = f"u-{rng.randrange(300)}"
        if kind.startswith("group_"):
            event |= {"merchant_id": "m-1", "group_id": f"g-{rng.randrange(3)}"}
        events.append(event)
    events += rng.sample(events, 200)  # redeliveries
    days = [10.0, 33.3, 50.0, 99.0]
    found = live_quantities(events, days, first_ts=T0, user_horizon_days=20, refund_horizon_days=20)
    for day in days:
        expected = _direct(events, day, 20)
        assert {k: found[day][k] for k in expected} == expected


def test_the_command_reads_a_stream_file(tmp_path: Path) -> None:
    stream = tmp_path / "s.jsonl"
    lines = [json.dumps(e) for e in _stream()]
    # What the contract rejects is no event: a line that is not JSON, an order with no user.
    lines[3:3] = ["{not json", json.dumps({"event_id": "x1", "type": "order_paid", "ts": 0})]
    stream.write_text("".join(line + "\n" for line in lines), "utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.stream_live",
            "--stream",
            str(stream),
            "--at",
            "25",
            "--at",
            "5",
            "--refund-horizon-days",
            "10",
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    out = json.loads(done.stdout)
    assert list(out["at"]) == ["5.0", "25.0"]
    assert out["at"]["25.0"]["sessions_open_never_ended"] == 1
    assert out["at"]["25.0"]["orders_in_refund_horizon"] == 1
    assert out["at"]["5.0"]["users_active"] == 2
