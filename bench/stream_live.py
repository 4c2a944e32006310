"""`python -m bench.stream_live --stream FILE --at 140 --at 300`: what a soak's stream itself
has live at each event day, read from the stream file alone (no pipeline): the distinct
viewers, buyers and users active within the trailing user horizon, the orders within the
trailing refund horizon, the records within the trailing dedupe window, the sessions open
(split into those whose end comes later in the stream and those whose end never comes), the
group members, and for contrast what only grows with the stream's length (every user and
buyer seen). State that follows what is live may grow by as much as these do (issue 17,
session 17). JSON on stdout.

    python -m bench.stream_live --stream /tmp/livepulse-soak-300d-x12.0-s1.jsonl \
        --at 140 --at 150 ... --at 300 > bench/state-parts/s17-soak-stream-live.json
"""

from __future__ import annotations

import argparse
import json
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas import Rejection, decode

DAY_MS = 86_400_000


def read_stream(path: Path) -> Iterator[dict[str, Any]]:
    """The stream file's valid events in the file's order (JSON Lines), as the contract
    decodes them (`schemas.decode`: what the worker and the truth reference reject is left
    out)."""
    with path.open("rb") as handle:
        for line in handle:
            event = decode(line.rstrip(b"\n"))
            if not isinstance(event, Rejection):
                yield event.model_dump(mode="json")


def _ts(row: tuple[int, str, str, str, str]) -> int:
    return row[0]


def live_quantities(
    events: Iterable[Mapping[str, Any]],
    days: Sequence[float],
    *,
    first_ts: int,
    user_horizon_days: float = 45.0,
    refund_horizon_days: float = 30.0,
    window_days: float = 7.0,
) -> dict[float, dict[str, int]]:
    """At each of `days` (event days after `first_ts`), the stream's live quantities over the
    events whose `ts` is at or before that instant, in event-time order whatever the order
    given (a late event counts at its `ts`). A redelivered `event_id` counts once.

    - `users_active`, `viewers_active`, `buyers_active`: distinct users with any event, a
      `viewer_joined`, an `order_paid` within the trailing `user_horizon_days` (a host's
      `reply` is not a user's activity);
    - `orders_in_refund_horizon`: orders paid within the trailing `refund_horizon_days`;
    - `records_in_window`: distinct events within the trailing `window_days`;
    - `sessions_open`: started and not ended by then, of which `sessions_open_never_ended` have no
      `session_ended` anywhere in `events` (a lost end: held for ever, so they grow with the
      stream's length);
    - `group_members`: (group, user) pairs whose last event is a `group_joined`;
    - `users_seen`, `buyers_seen`: every distinct user, buyer so far."""
    seen_ids: set[str] = set()
    timeline: list[tuple[int, str, str, str, str]] = []
    ended_ever: set[str] = set()
    for event in events:
        event_id = str(event["event_id"])
        if event_id in seen_ids:
            continue
        seen_ids.add(event_id)
        kind = str(event["type"])
        if kind == "session_ended":
            ended_ever.add(str(event["session_id"]))
        if kind.startswith("group_"):
            key = f"{event['merchant_id']}/{event['group_id']}"
        else:
            key = str(event.get("session_id") or "")
        user = "" if event.get("kind") == "reply" else str(event.get("user_id") or "")
        timeline.append((int(event["ts"]), event_id, kind, user, key))
    timeline.sort()
    last_active: dict[str, int] = {}
    last_viewed: dict[str, int] = {}
    last_bought: dict[str, int] = {}
    order_ts: list[int] = []
    started: set[str] = set()
    ended: set[str] = set()
    members: set[tuple[str, str]] = set()
    out: dict[float, dict[str, int]] = {}
    at = 0
    for day in sorted(days):
        cutoff = first_ts + round(day * DAY_MS)
        while at < len(timeline) and timeline[at][0] <= cutoff:
            ts, _, kind, user, key = timeline[at]
            at += 1
            if user:
                last_active[user] = ts
            if kind == "viewer_joined":
                last_viewed[user] = ts
            elif kind == "order_paid":
                last_bought[user] = ts
                order_ts.append(ts)
            elif kind == "session_started":
                started.add(key)
            elif kind == "session_ended":
                ended.add(key)
            elif kind == "group_joined":
                members.add((key, user))
            elif kind == "group_left":
                members.discard((key, user))
        users_since = cutoff - round(user_horizon_days * DAY_MS)
        orders_since = cutoff - round(refund_horizon_days * DAY_MS)
        window_since = cutoff - round(window_days * DAY_MS)
        open_sessions = started - ended
        out[day] = {
            "users_active": sum(ts > users_since for ts in last_active.values()),
            "viewers_active": sum(ts > users_since for ts in last_viewed.values()),
            "buyers_active": sum(ts > users_since for ts in last_bought.values()),
            "orders_in_refund_horizon": sum(ts > orders_since for ts in order_ts),
            "records_in_window": at - bisect_right(timeline, window_since, hi=at, key=_ts),
            "sessions_open": len(open_sessions),
            "sessions_open_never_ended": len(open_sessions - ended_ever),
            "group_members": len(members),
            "users_seen": len(last_active),
            "buyers_seen": len(last_bought),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stream", type=Path, required=True, help="its first line is day 0")
    parser.add_argument("--at", type=float, action="append", required=True)
    parser.add_argument("--user-horizon-days", type=float, default=45.0)
    parser.add_argument("--refund-horizon-days", type=float, default=30.0)
    parser.add_argument("--window-days", type=float, default=7.0)
    args = parser.parse_args()
    with args.stream.open("rb") as handle:
        first_ts = int(json.loads(handle.readline())["ts"])
    found = live_quantities(
        read_stream(args.stream),
        args.at,
        first_ts=first_ts,
        user_horizon_days=args.user_horizon_days,
        refund_horizon_days=args.refund_horizon_days,
        window_days=args.window_days,
    )
    out = {
        "stream": str(args.stream),
        "user_horizon_days": args.user_horizon_days,
        "refund_horizon_days": args.refund_horizon_days,
        "window_days": args.window_days,
        "at": {str(day): found[day] for day in sorted(found)},
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
