"""Watch time and group membership: the two time-interval definitions of claims.md."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence

_MINUTE_MS = 60_000


def watch_time_ms(
    presence: Sequence[tuple[int, int, bool]],
    close_ts: int,
    ended_ts: int | None,
    until_ts: int | None = None,
) -> int:
    """Total time in the room from `(ts, seq, is_join)` records of one (session, user).

    Intervals run from a join to the next leave; a second join while in the room changes
    nothing and a leave with no open join is ignored. An interval still open is closed at
    `close_ts` (the session's end, or its last event if it never ended). Nothing counts past
    `ended_ts`, nor past `until_ts` when given (an open interval then counts until it).
    """
    bound = ended_ts
    if until_ts is not None and (bound is None or until_ts < bound):
        bound = until_ts
    total = 0
    opened: int | None = None
    for ts, _seq, is_join in sorted(presence):
        if is_join:
            if opened is None:
                opened = ts
        elif opened is not None:
            total += _clipped(opened, ts, bound)
            opened = None
    if opened is not None:
        total += _clipped(opened, close_ts, bound)
    return total


def _clipped(start: int, end: int, bound: int | None) -> int:
    if bound is not None and end > bound:
        end = bound
    return end - start if end > start else 0


def watch_intervals(
    presence: Iterable[tuple[int, int, bool]], close_ts: int, ended_ts: int | None
) -> tuple[list[tuple[int, int]], bool]:
    """A (session, user)'s watch intervals of positive length, and whether one is still open.

    The same reading as `timeline.watch_time_ms` (claims.md's watch time), kept as intervals so
    that presence per minute can be counted.
    """
    intervals: list[tuple[int, int]] = []
    opened: int | None = None
    for ts, _seq, is_join in sorted(presence):
        if is_join:
            if opened is None:
                opened = ts
        elif opened is not None:
            _append_clipped(intervals, opened, ts, ended_ts)
            opened = None
    still_open = opened is not None
    if opened is not None:
        _append_clipped(intervals, opened, close_ts, ended_ts)
    return intervals, still_open


def _append_clipped(
    intervals: list[tuple[int, int]], start: int, end: int, ended_ts: int | None
) -> None:
    if ended_ts is not None and end > ended_ts:
        end = ended_ts
    if end > start:
        intervals.append((start, end))


def presence_minutes(diff: Counter[int], intervals: Iterable[tuple[int, int]]) -> None:
    """Mark the minutes a pair was present in at some moment, each minute once per pair."""
    last_marked: int | None = None
    for start, end in intervals:
        first, last = start // _MINUTE_MS, (end - 1) // _MINUTE_MS
        if last_marked is not None and first <= last_marked:
            first = last_marked + 1
        if first > last:
            continue
        diff[first] += 1
        diff[last + 1] -= 1
        last_marked = last


class Membership:
    """Whether a user is in any group of one merchant at a given time."""

    __slots__ = ("_change_ts", "_member_after")

    def __init__(self, group_events: Sequence[tuple[int, int, str, bool]]) -> None:
        joined: set[str] = set()
        self._change_ts: list[int] = []
        self._member_after: list[bool] = []
        for ts, _seq, group_id, is_join in sorted(group_events):
            if is_join:
                joined.add(group_id)
            else:
                joined.discard(group_id)
            self._change_ts.append(ts)
            self._member_after.append(bool(joined))

    def member_at(self, ts: int) -> bool:
        """Member at `ts`, counting every group event with a timestamp <= `ts`."""
        i = bisect_right(self._change_ts, ts)
        return i > 0 and self._member_after[i - 1]


NEVER_MEMBER = Membership(())
