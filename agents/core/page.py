"""The live screen's figures rebuilt from what changed, over a worker's partitions unmerged.

`OperatorBoard.snapshot(merged, detail=False)` and `ScreenState.snapshot(merged)` of the
merged partitions cost the whole state each time: every session's viewers, presence and
products, and first the merge itself. `PageBuilder.build` gives the same two sections from
the partitions' own (ledger, board) pairs, and recomputes a session's parts only when an
event touched it since the last build (`OperatorBoard.session_changed_at`; for group joins, a
group event of its merchant at a time the session was live, from any partition's
`OperatorBoard.group_log`), and of a session not folded only the viewers those events touched
(`OperatorBoard.viewer_log`; `_Viewers` keeps each viewer's part, an open watch interval left
open against the session's last event, which moves with every event). Per level (overall,
room, merchant) the ended sessions' sums, presence by minute and table rows are kept and
changed by the sessions that changed (`_Base`, `_RowBase`); the median watch time is selected
from the sessions' sorted lists (`_kth`), the peak adds the live sessions' minutes to the
ended ones' prefix sums (`_Prefix`). What is left is bounded by what is live or cheap: the
live sessions' sums, the windows' minute buckets (20 minutes), the curves' minute buckets (an
hour), and the refunds (matched to their orders over every partition, as the merged ledger
does, with each partition's orders read once: `_RefundMatch`). The builder's own state per
viewer is held only for sessions not folded and, once a session has ended, for
`SETTLED_BUILDS` builds without change (then its watch times are kept as one array and a
late event reads its viewers again).

The sessions are read through `SessionFacts` (`presence` as the mapping it is for a session
not folded, `interacting_users`, `orders`, `started_ts`, `ended_ts`, `last_ts`) and a folded
one through `OperatorBoard._session_parts`, whatever the ledger keeps of it; a summarized one
(`SessionSummary`, `Ledger(fold_sessions=True)`) too, recomputed when the summary replaces
its folded presence (its fold stage is in the identity checked each build). A level with
summarized sessions is given their distinct buyers and watch times' sketch from the ledgers
(`Ledger.folded_payers`, `folded_watch`), as `operator.add_summarized_levels` gives the
board's: its median is then the sketch's with the level's other watch times added, read
with bisect over the sorted lists (`QuantileSketch.quantile_adding`), not added. The
retired sessions (`Ledger.retire_summaries`) are read as the board reads them, their levels'
totals (`operator.add_retired_levels`): a room or merchant with only retired sessions is
still listed.

Why it equals the merged build: a session's events share its record key, the session id,
hence its partition (event-contract.md), so its facts, follows, clicks, minute buckets,
products and entry sources are all in that partition's ledger and board, as in the merged
ones; group events (keyed by merchant) and refunds (no session id) are read over every
partition; the windows and curves use the largest watermark of all, as the merge does, and
a partition keeps every bucket of a minute at or above that cutoff (agents/core/merge.py).
A session id found in several partitions (a producer that broke the contract's keys) makes
the build merge the partitions instead, so the page never differs from `/report`.
tests/agents/core/test_page.py checks the equality while a fixture is fed.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from agents.core.ledger import (
    _SEQ_BITS,
    OVERALL_LEVEL,
    EventCounts,
    Ledger,
    OrderFact,
    Presence,
    SessionFacts,
    SessionSummary,
    widest_refund_horizon,
)
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.metrics import add_user_rows
from agents.core.operator import DEFINITIONS as OPERATOR_DEFINITIONS
from agents.core.operator import (
    VIEWER_LOG_SIZE,
    WINDOW_MINUTES,
    OperatorBoard,
    _Parts,
    add_retired_levels,
    clicker_count,
    level_curve,
)
from agents.core.screen import (
    CURVES,
    PRODUCTS_TOP_N,
    minute_curves,
    products_figures,
    sources_figures,
)
from agents.core.screen import (
    DEFINITIONS as SCREEN_DEFINITIONS,
)
from agents.core.sketch import DistinctUsers, QuantileSketch
from agents.core.windows import MINUTE_MS

#: Builds an ended session's parts stay unchanged before its viewers are forgotten (late
#: events come soon after an end: until then a change reads only the viewers it touched).
SETTLED_BUILDS = 20


class _PooledGroupEvents(Mapping[tuple[str, str], Sequence[tuple[int, int, str, bool]]]):
    """Every partition's group events of a (merchant, user), as the merged ledger pools them
    (a group join counts the same whatever the order of the list)."""

    def __init__(self, ledgers: Sequence[Ledger]) -> None:
        self._ledgers = ledgers

    def __getitem__(self, key: tuple[str, str]) -> Sequence[tuple[int, int, str, bool]]:
        found = [e for ledger in self._ledgers for e in ledger.group_events.get(key, ())]
        if not found:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter({key for ledger in self._ledgers for key in ledger.group_events})

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def of(self, key: tuple[str, str]) -> Sequence[tuple[int, int, str, bool]]:
        """`get(key, ())` without the KeyError `Mapping.get` goes through (once per viewer
        read)."""
        found: list[tuple[int, int, str, bool]] | None = None
        for ledger in self._ledgers:
            events = ledger.group_events.get(key)
            if events:
                found = list(events) if found is None else [*found, *events]
        return () if found is None else found


@dataclass(slots=True, frozen=True)
class _Viewer:
    """What one (session, user) of a session not folded adds to the session's figures (the
    reading of `OperatorBoard._session_parts`, kept so that only the users an event touched
    are read again)."""

    joins: int
    #: Watch time in the intervals closed (all of them once the session has ended).
    closed_ms: int
    #: Where the interval still open began (a session without end), else None: its watch
    #: time runs to the session's last event, which moves without this user's events.
    open_start: int | None
    #: The first minute the open interval marks (after the closed ones', each minute once).
    open_first: int
    #: The closed intervals' minutes as a difference array: +1 at [0::2], -1 at [1::2].
    marks: tuple[int, ...]
    group_joins: int


@dataclass(slots=True, eq=False)
class _Viewers:
    """A not-folded session's viewers, summed as they change: entries, group joins, watch
    times in sorted lists (the medians select from them), presence by minute."""

    users: dict[str, _Viewer] = field(default_factory=dict)
    entries: int = 0
    #: Sorted watch ms of the viewers with no interval open.
    fixed: list[int] = field(default_factory=list)
    group_joins: int = 0
    #: Sorted (closed ms - open start) of the viewers with one open: + the last event's ts.
    open_keys: list[int] = field(default_factory=list)
    closed_ms: int = 0
    #: The closed intervals' minutes (a difference array).
    diff: Counter[int] = field(default_factory=Counter)
    #: The sum of the open intervals' starts.
    open_starts: int = 0
    #: First minute of an open interval -> user -> its start.
    open_at: dict[int, dict[str, int]] = field(default_factory=dict)

    def put(self, user: str, viewer: _Viewer | None) -> None:
        """Replace what `user` adds (None: nothing, not a viewer)."""
        old = self.users.pop(user, None)
        if old is not None:
            self._count(user, old, -1)
        if viewer is not None:
            self.users[user] = viewer
            self._count(user, viewer, 1)

    def _count(self, user: str, viewer: _Viewer, sign: int) -> None:
        self.entries += sign * viewer.joins
        self.group_joins += sign * viewer.group_joins
        self.closed_ms += sign * viewer.closed_ms
        if viewer.open_start is None:
            _sorted_put(self.fixed, viewer.closed_ms, sign)
        else:
            _sorted_put(self.open_keys, viewer.closed_ms - viewer.open_start, sign)
            self.open_starts += sign * viewer.open_start
            if sign > 0:
                self.open_at.setdefault(viewer.open_first, {})[user] = viewer.open_start
            else:
                at = self.open_at[viewer.open_first]
                del at[user]
                if not at:
                    del self.open_at[viewer.open_first]
        diff, marks = self.diff, viewer.marks
        for i in range(0, len(marks), 2):
            diff[marks[i]] += sign
            diff[marks[i + 1]] -= sign

    def built(
        self, close_ts: int | None
    ) -> tuple[int, int, list[tuple[Sequence[int], int]], Counter[int]]:
        """(viewers online, total watch ms, watch lists as (sorted, offset), presence by
        minute) with the open intervals closed at `close_ts` (None: none is open)."""
        fixed: list[tuple[Sequence[int], int]] = [(self.fixed, 0)]
        if close_ts is None or not self.open_keys:
            return 0, self.closed_ms, fixed, Counter(self.diff)
        online = len(self.open_keys)
        total_ms = self.closed_ms + online * close_ts - self.open_starts
        diff = Counter(self.diff)
        last = (close_ts - 1) // MINUTE_MS  # `presence_minutes`' last minute of an interval
        for minute, users in self.open_at.items():
            if minute < last:
                marked = len(users)
            elif minute == last:  # an interval of no length marks nothing
                marked = sum(1 for start in users.values() if start < close_ts)
            else:
                marked = 0
            if marked:
                diff[minute] += marked
                diff[last + 1] -= marked
        return online, total_ms, [*fixed, (self.open_keys, close_ts)], diff


def _sorted_put(values: list[int], value: int, sign: int) -> None:
    if sign > 0:
        insort(values, value)
    else:
        del values[bisect_left(values, value)]


def _packed_records(presence: Presence, user: str) -> Sequence[int]:
    """A user's presence records as `Presence` packs them (ts, then arrival number, then
    join: ledger.py), sorted: their order is that of the (ts, seq, is_join) tuples, and
    reading them needs no tuple per record (once per viewer read)."""
    held = presence.packed(user)
    if len(held) > 1:
        held.sort()
    return held


_TS_SHIFT = _SEQ_BITS + 1  # a packed record's ts is above its arrival number and join bit


def _viewer_of(records: Sequence[int], ended_ts: int | None, group_joins: int) -> _Viewer:
    """A viewer's part from their presence records (sorted, packed: `_packed_records`), as
    `timeline.watch_intervals` and `presence_minutes` read them, the open interval left open
    while the session is live."""
    joins = closed_ms = 0
    marks: list[int] = []
    last_marked = -(2**63)  # no minute marked yet
    opened: int | None = None
    intervals: list[tuple[int, int]] = []
    shift = _TS_SHIFT
    for record in records:
        ts = record >> shift
        if record & 1:
            joins += 1
            if opened is None:
                opened = ts
        elif opened is not None:
            intervals.append((opened, ts))
            opened = None
    if opened is not None and ended_ts is not None:  # closed at the end (`close_ts`)
        intervals.append((opened, ended_ts))
        opened = None
    for start, end in intervals:
        if ended_ts is not None and end > ended_ts:
            end = ended_ts
        if end <= start:
            continue
        closed_ms += end - start
        first, last = start // MINUTE_MS, (end - 1) // MINUTE_MS
        if first <= last_marked:
            first = last_marked + 1
        if first <= last:
            marks.extend((first, last + 1))
            last_marked = last
    open_first = 0
    if opened is not None:
        open_first = max(opened // MINUTE_MS, last_marked + 1)
    return _Viewer(joins, closed_ms, opened, open_first, tuple(marks), group_joins)


class _RefundMatch:
    """`OperatorBoard._refunds_by_session` over every partition, with each ledger's orders
    read once: the payments by order id are kept between builds and only the orders appended
    since the last build are read (a build walked every held order to match a few thousand
    refunds: half its time at 1,000,000 events, bench/RESULTS.md "Live screen", sixth round).
    A ledger's `orders` is appended to, or replaced whole (the order fold, a restore): a list
    not the one read, shorter, or whose last order read is another object is read again from
    the start, with every other. What it keeps is one entry per order id the ledgers hold
    (their own `OrderFact`s, not copies)."""

    def __init__(self) -> None:
        #: Per ledger: its orders list as read, how many were read, the last one read.
        self._read: list[tuple[list[OrderFact], int, OrderFact | None]] = []
        #: Order id -> its payment, or its payments when several (in the order read).
        self._paid: dict[str, OrderFact | list[OrderFact]] = {}

    def _take_orders(self, ledgers: Sequence[Ledger]) -> None:
        lists = [ledger.orders for ledger in ledgers]
        again = len(lists) != len(self._read) or any(
            orders is not read or len(orders) < n or (n > 0 and orders[n - 1] is not last)
            for orders, (read, n, last) in zip(lists, self._read, strict=True)
        )
        if again:
            self._paid = {}
            self._read = [(orders, 0, None) for orders in lists]
        paid = self._paid
        for i, (orders, n, _last) in enumerate(self._read):
            if len(orders) == n:
                continue
            for order in orders[n:]:
                known = paid.get(order.order_id)
                if known is None:
                    paid[order.order_id] = order
                elif isinstance(known, list):
                    known.append(order)
                else:
                    paid[order.order_id] = [known, order]
            self._read[i] = (orders, len(orders), orders[-1])

    def by_session(
        self, ledgers: Sequence[Ledger], started: Mapping[str, SessionFacts]
    ) -> dict[str, tuple[int, int]]:
        """Refunds per started session (count, cents), as `OperatorBoard._refunds_by_session`
        of the ledgers' orders and refunds chained, their widest refund horizon and their
        order folds' session refunds give."""
        self._take_orders(ledgers)
        horizon_ms = widest_refund_horizon(ledgers)
        paid = self._paid
        by_session: dict[str, tuple[int, int]] = {}
        for ledger in ledgers:
            for refund in ledger.refunds:
                known = paid.get(refund.order_id)
                if known is None:
                    continue  # unmatched
                orders = (known,) if isinstance(known, OrderFact) else known
                if horizon_ms is not None and not any(
                    order.ts <= refund.ts <= order.ts + horizon_ms for order in orders
                ):
                    continue  # late or unmatched (`counted_refunds`)
                # The earliest session order of the id by ts, then session id.
                first: tuple[int, str] | None = None
                for order in orders:
                    sid = order.session_id
                    if (
                        sid is not None
                        and sid in started
                        and (first is None or (order.ts, sid) < first)
                    ):
                        first = (order.ts, sid)
                if first is not None:
                    count, cents = by_session.get(first[1], (0, 0))
                    by_session[first[1]] = (count + 1, cents + refund.amount_cents)
        for ledger in ledgers:
            for sid, (folded_count, folded_cents) in ledger.order_fold.session_refunds.items():
                count, cents = by_session.get(sid, (0, 0))
                by_session[sid] = (count + folded_count, cents + folded_cents)
        return by_session


@dataclass(slots=True)
class _Kept:
    """A session's parts as of its last change (refunds and windows are added per build)."""

    changed_at: int
    #: The build that computed it (`PageBuilder._builds`).
    built: int
    #: The additive parts (watch times and presence are the fields below, not in here).
    parts: _Parts
    sources: dict[str, list[int]]
    products: dict[str, list[int]]
    watch_total_ms: int
    #: The viewers' watch ms as sorted lists, each with an offset to add.
    watch: list[tuple[Sequence[int], int]]
    #: Viewers present by minute, a difference array.
    presence: Counter[int]
    #: (started, ended, room, merchant, fold stage): a change of any reads every viewer
    #: again; a change of the stage (`_fold_stage`: the summary) recomputes the session.
    identity: tuple[Any, ...]
    #: The viewers of a session not folded, kept between its changes.
    viewers: _Viewers | None
    #: (first minute, viewers per minute from it) of the curves, when last asked for.
    present: tuple[int, list[int]] | None = None

    def settle(self) -> None:
        """Forget the viewers of an ended session (a change reads them all again), keeping
        their watch times as a compact array."""
        self.viewers = None
        self.watch = [(array("q", values), offset) for values, offset in self.watch]


class PageBuilder:
    """The live screen's `operator` and `screen` sections, kept per session between builds.

    One builder per worker; `build` may be given a different set of partitions each time
    (a rebalance): a partition's board it has not seen is computed whole.
    """

    def __init__(self) -> None:
        #: id(board) -> (the board, its sessions' kept parts).
        self._kept: dict[int, tuple[OperatorBoard, dict[str, _Kept]]] = {}
        #: id(board) -> its `changes` at the last build (its logs read up to there).
        self._read_up_to: dict[int, int] = {}
        #: Level -> its ended sessions' parts summed; level of the screen's tables -> their
        #: rows summed.
        self._bases: dict[str, _Base] = {}
        self._row_bases: dict[str, _RowBase] = {}
        #: Level -> its settled sessions' watch times.
        self._merged: dict[str, _Settled] = {}
        self._used_bases: set[str] = set()
        self._refunds = _RefundMatch()
        self._builds = 0
        #: The screen's sources and products tables as last computed; whether the last build
        #: computed them (else they are of an earlier one).
        self._tables: dict[str, Any] | None = None
        self.tables_fresh = True
        #: Sessions whose parts the last build computed (the rest were kept), and of those
        #: the ones read whole (every viewer): for tests and the benchmark.
        self.recomputed = 0
        self.recomputed_whole = 0
        #: (session, user) parts the last build read (of the sessions not folded).
        self.viewers_read = 0

    def build(
        self, states: Sequence[tuple[Ledger, OperatorBoard]], *, tables: bool = True
    ) -> dict[str, Any]:
        """{"events", "operator", "screen"}: the counts of every partition, and what
        `board.snapshot(ledger, detail=False)` and `board.screen.snapshot(ledger)` of the
        merged partitions give; with `tables` False, the screen's `sources` and `products`
        are the last build's that computed them (`tables_fresh` False after: the caller says
        how old they are), the rest as of now."""
        events = _counts([ledger for ledger, _board in states])
        seen: set[str] = set()
        total = 0
        for ledger, _board in states:
            total += len(ledger.sessions)
            seen.update(ledger.sessions)
        if not states or len(seen) != total:  # a session in several partitions: merge them
            self._kept.clear()
            self._tables, self.tables_fresh = None, True
            ledger = merge_ledgers([s[0] for s in states])
            board = merge_boards([s[1] for s in states])
            return {
                "events": events,
                "operator": board.snapshot(ledger, detail=False),
                "screen": board.screen.snapshot(ledger),
            }
        return {"events": events, **self._incremental(states, tables)}

    def _level(
        self,
        key: str,
        sids: list[str],
        held: dict[str, tuple[_Kept, bool]],
        extras: dict[str, tuple[tuple[int, int], Any]],
        figures: Callable[..., dict[str, Any]],
        ledgers: Sequence[Ledger],
        retired: _Parts | None = None,
    ) -> dict[str, Any]:
        """A level's figures: the sum of its ended sessions' kept parts (kept, and changed by
        the sessions whose parts changed since), the live sessions' added to it, then every
        session's refunds and windows (which change without the session's events: refunds,
        the watermark); the median watch time selected from the sessions' sorted lists, the
        peak from the ended sessions' presence and the live ones' over their own minutes. A
        level with summarized sessions is given, as `operator.add_summarized_levels` gives
        the board's, their distinct buyers and their watch times' sketch (the median then
        from the sketch with every other value added, as `OperatorBoard._figures` reads it).
        `retired`: the level's retired sessions' parts (`operator.add_retired_levels`), added
        as the board adds them; their watch times are in the level's sketch already."""
        base = self._bases.get(key)
        if base is None:
            base = self._bases[key] = _Base()
        base.update({sid: held[sid][0] for sid in sids if held[sid][1]})
        kind, _, level_id = key.partition(":")
        level = OVERALL_LEVEL if key == "overall" else (kind, level_id)
        base.take_summarized_payers([ledger.folded_payers.get(level) for ledger in ledgers])
        self._used_bases.add(key)
        total = base.parts()
        watch_total_ms = base.watch_total_ms
        settled = self._settled_watch(key, sids, held)
        watch = [(settled.merged, 0), *settled.added_lists()]
        live: Counter[int] = Counter()
        paying_live: set[str] = set()
        for sid in sids:
            entry, has_ended = held[sid]
            if not (has_ended and entry.viewers is None):
                watch.extend(entry.watch)
            if not has_ended:
                paying_live |= entry.parts.paying_users
                total.add(entry.parts)
                watch_total_ms += entry.watch_total_ms
                live.update(entry.presence)
            session_refunds, windows = extras[sid]
            total.refunds += session_refunds[0]
            total.refunded_cents += session_refunds[1]
            if windows is not None:
                for name, window in windows.items():
                    total.windows[name].add(window)
        if retired is not None:
            total.add(retired)
            watch_total_ms += retired.watch_folded[0]
        # The summarized sessions' minutes are their levels' curves (`Ledger.board_curves`).
        curve = level_curve(ledgers, level)
        if curve is not None:
            live.update(curve.as_diff())
        sketches = [
            found for ledger in ledgers if (found := ledger.folded_watch.get(level)) is not None
        ]
        if any(sketch.count for sketch in sketches):
            median = _sketched_median(sketches, watch, settled.removed)
        else:
            median = _median_of(watch, settled.removed)
        peak = max(base.prefix.peak_with(live), 0 if curve is None else curve.peak)
        ceiling: int | None = None
        if curve is not None and curve.uncertain():
            # A merged curve's minutes may lack what partitions dropped from their kept runs:
            # the same peak with each minute's `slack` added is the most it can be, as
            # `LevelCurve.ceiling` gives the report's (`operator.add_level_curves`).
            upper = Counter(live)
            upper.update(curve.slack)
            ceiling = max(base.prefix.peak_with(upper), curve.peak, curve.folded_ceiling)
        return figures(
            total,
            watch=(watch_total_ms, median),
            peak=peak,
            paying_users=base.paying_count(paying_live),
            peak_ceiling=ceiling,
        )

    def _settled_watch(
        self, key: str, sids: list[str], held: dict[str, tuple[_Kept, bool]]
    ) -> _Settled:
        """The watch times of a level's settled sessions (ended, viewers forgotten)."""
        settled = self._merged.get(key)
        if settled is None:
            settled = self._merged[key] = _Settled()
        settled.update(
            {sid: held[sid][0] for sid in sids if held[sid][1] and held[sid][0].viewers is None}
        )
        return settled

    def _rows(
        self,
        key: str,
        sids: list[str],
        held: dict[str, tuple[_Kept, bool]],
        rows_of: Callable[[_Kept], dict[str, list[int]]],
    ) -> list[dict[str, list[int]]]:
        """A level's sources or products rows: its ended sessions' summed (kept, and changed
        by the sessions whose rows changed since), then each live session's."""
        base = self._row_bases.get(key)
        if base is None:
            base = self._row_bases[key] = _RowBase(rows_of)
        base.update({sid: held[sid][0] for sid in sids if held[sid][1]})
        self._used_bases.add(key)
        return [base.rows, *(rows_of(held[sid][0]) for sid in sids if not held[sid][1])]

    def _group_changes(
        self,
        states: Sequence[tuple[Ledger, OperatorBoard]],
        touched: dict[int, dict[str, dict[str, bool]] | None],
        regrouped: bool,
    ) -> set[str]:
        """The sessions a group event since the last build may change (of its merchant, live
        at its ts: `_session_parts` counts a group join then), its user added to their
        `touched` ones; those of a board whose viewers are all read anyway are forgotten;
        with `regrouped` (other partitions' group events than the last build's), all."""
        changed: list[tuple[str, int, str]] = []
        everything = regrouped
        for _ledger, board in states:
            read = self._read_up_to.get(id(board))
            log = board.group_log
            if read is None:
                pass  # a board not built before: all its sessions are computed anyway
            elif log and log[0][0] > read + 1 and len(log) == log.maxlen:
                everything = True  # more group events than the log keeps
            else:
                for n, merchant_id, ts, user in reversed(log):
                    if n <= read:
                        break
                    changed.append((merchant_id, ts, user))
        forced: set[str] = set()
        if not changed and not everything:
            return forced
        by_merchant: dict[str, list[tuple[int, str]]] = {}
        for merchant_id, ts, user in changed:
            by_merchant.setdefault(merchant_id, []).append((ts, user))
        for ledger, board in states:
            kept = self._kept[id(board)][1]
            board_touched = touched[id(board)]
            for sid in list(kept):
                session = ledger.sessions.get(sid)
                if session is None or everything:
                    kept.pop(sid)
                    continue
                for ts, user in by_merchant.get(session.merchant_id or "", ()):
                    if _live_at(session, ts):
                        if board_touched is None:
                            kept.pop(sid)
                            break
                        board_touched.setdefault(sid, {})[user] = True  # its group joins
                        forced.add(sid)
        return forced

    def _touched(
        self, states: Sequence[tuple[Ledger, OperatorBoard]]
    ) -> dict[int, dict[str, dict[str, bool]] | None]:
        """Per board, the (session, users) an event since the last build may have changed
        the part of (`OperatorBoard.viewer_log`), each with whether a join or leave did (else
        only interactions or orders: they change the part of a user not yet counted, never
        of one counted); None: not known, read every viewer."""
        out: dict[int, dict[str, dict[str, bool]] | None] = {}
        for _ledger, board in states:
            read = self._read_up_to.get(id(board))
            log = board.viewer_log
            board.log_viewers()  # from now on (a board nobody watched kept none)
            if read is None or log.maxlen != VIEWER_LOG_SIZE:
                out[id(board)] = None
                continue
            if log and log[0][0] > read + 1 and len(log) == log.maxlen:
                out[id(board)] = None
                continue
            touched: dict[str, dict[str, bool]] = {}
            for n, sid, user, presence in reversed(log):
                if n <= read:
                    break
                users = touched.get(sid)
                if users is None:
                    users = touched[sid] = {}
                if presence or user not in users:
                    users[user] = presence
            out[id(board)] = touched
        return out

    def _session(
        self,
        board: OperatorBoard,
        group_events: _PooledGroupEvents,
        sid: str,
        session: SessionFacts,
        kept: _Kept | None,
        touched: Mapping[str, bool] | None,
    ) -> _Kept:
        """A session's parts: of a folded one from `OperatorBoard._session_parts`; of one not
        folded from its viewers, only the `touched` ones read again when the rest is as
        `kept` had it (None: every viewer); of those, a user touched only by interactions or
        orders (`touched[user]` False) only when not yet counted: their presence records and
        group joins, all a counted viewer's part is made of, are as read before."""
        changed_at = board.session_changed_at.get(sid, 0)
        presence = session.presence
        identity = (
            session.started_ts,
            session.ended_ts,
            session.room_id,
            session.merchant_id,
            _fold_stage(presence),
        )
        sources = board.screen.session_sources(sid, session)
        products = board.screen.session_products(sid)
        if not isinstance(presence, Presence):  # folded: as the board reads it (ledger.py)
            self.recomputed_whole += 1
            # Summarized: no watch time per viewer is left, only their sum (its levels' median
            # reads the ledgers' sketches, `_level`); else one per viewer.
            parts = board._session_parts(group_events, sid, session, (0, 0))
            watch_ms, parts.watch_ms = parts.watch_ms, []
            diff, parts.presence_diff = parts.presence_diff, Counter()
            parts.order_offsets_ms = []  # histograms only: not on the page
            return _Kept(
                changed_at,
                self._builds,
                parts,
                sources,
                products,
                sum(watch_ms) + parts.watch_folded[0],
                [(array("q", sorted(watch_ms)), 0)] if watch_ms else [],
                diff,
                identity,
                None,
            )
        buyers = {order.user_id for order in session.orders}
        viewers = None if kept is None or kept.identity != identity else kept.viewers
        if viewers is None or touched is None:
            self.recomputed_whole += 1
            viewers = _Viewers()
            users: Iterable[str] = {*presence, *session.interacting_users, *buyers}
        else:
            counted = viewers.users
            users = [user for user, full in touched.items() if full or user not in counted]
        started_ts = session.started_ts
        assert started_ts is not None  # only started sessions are passed
        ended_ts = session.ended_ts  # never abandoned: abandoning folds its presence
        merchant_id = session.merchant_id or ""
        interacting = session.interacting_users
        for user in users:
            self.viewers_read += 1
            records = _packed_records(presence, user)
            if not (any(record & 1 for record in records) or user in interacting or user in buyers):
                viewers.put(user, None)
                continue
            group_joins = 0
            for ts, _seq, _group, is_join in group_events.of((merchant_id, user)):
                if is_join and ts >= started_ts and (ended_ts is None or ts <= ended_ts):
                    group_joins += 1
            viewers.put(user, _viewer_of(records, ended_ts, group_joins))
        online, watch_total_ms, watch, diff = viewers.built(
            session.last_ts if ended_ts is None else None
        )
        parts = _Parts()
        parts.entries = viewers.entries
        parts.unique_viewers = len(viewers.users)
        parts.viewers_current = online
        parts.group_joins = viewers.group_joins
        parts.buyers = len(buyers)
        parts.paying_users = buyers
        parts.interacting_viewers = len(interacting)
        parts.orders = len(session.orders)
        for order in session.orders:  # as `OperatorBoard._session_parts`
            parts.gmv_cents += order.amount_cents
            if ended_ts is None or order.ts <= ended_ts:
                parts.orders_by_minute[max(0, order.ts - started_ts) // MINUTE_MS] += 1
        parts.follows = board.follows.get(sid, 0)
        parts.product_clicks = board.product_clicks.get(sid, 0)
        parts.product_clickers = clicker_count(board.product_clickers.get(sid))
        return _Kept(
            changed_at,
            self._builds,
            parts,
            sources,
            products,
            watch_total_ms,
            watch,
            diff,
            identity,
            viewers,
        )

    def _incremental(
        self, states: Sequence[tuple[Ledger, OperatorBoard]], tables: bool
    ) -> dict[str, Any]:
        ledgers = [ledger for ledger, _board in states]
        boards = [board for _ledger, board in states]
        first_board = boards[0]
        group_events = _PooledGroupEvents(ledgers)
        marks = [b.watermark for b in boards if b.watermark is not None]
        watermark = max(marks) if marks else None
        screen_marks = [b.screen.watermark for b in boards if b.screen.watermark is not None]
        retained = first_board.screen.retained_minutes
        first_minute = max(screen_marks) // MINUTE_MS - retained + 1 if screen_marks else None
        started_all: dict[str, SessionFacts] = {}
        for ledger in ledgers:
            for sid, session in ledger.sessions.items():
                if session.started_ts is not None:
                    started_all[sid] = session
        refunds = self._refunds.by_session(ledgers, started_all)
        # The boards held changed (a rebalance): the pooled group events are other ones, so
        # every kept group join may be wrong (the ids compared are of live objects: the old
        # boards are still in `_kept`).
        regrouped = bool(self._kept) and self._kept.keys() != {id(board) for board in boards}
        self._kept = {
            id(board): self._kept.get(id(board), (board, {})) for board in boards
        }  # boards no longer held are forgotten
        touched = self._touched(states)
        forced = self._group_changes(states, touched, regrouped)
        self._read_up_to = {id(board): board.changes for board in boards}
        self.recomputed = self.recomputed_whole = self.viewers_read = 0
        self._builds += 1
        #: Per session: its kept parts, whether it has ended, its refunds and windows.
        held: dict[str, tuple[_Kept, bool]] = {}
        extras: dict[str, tuple[tuple[int, int], Any]] = {}
        levels_of: dict[str, tuple[str, str]] = {}
        present: dict[str, list[int]] = {}
        minute_rows: list[tuple[int, str, Any]] = []
        for ledger, board in states:
            kept_board, kept = self._kept[id(board)]
            if kept_board is not board:  # cannot be (the old board is held), but never mix
                kept = {}
                self._kept[id(board)] = (board, kept)
            started = {
                sid: session
                for sid, session in ledger.sessions.items()
                if session.started_ts is not None
            }
            windows = board._session_windows(started, watermark)
            for sid in [s for s in kept if s not in started]:
                del kept[sid]  # no longer held (never, for a started session: kept for ever)
            board_touched = touched[id(board)]
            for sid in sorted(started):
                session = started[sid]
                entry = kept.get(sid)
                if (
                    entry is None
                    or entry.changed_at != board.session_changed_at.get(sid, 0)
                    or sid in forced
                    or entry.identity[4] != _fold_stage(session.presence)  # summarized since
                ):
                    self.recomputed += 1
                    users = None if board_touched is None else board_touched.get(sid, {})
                    entry = kept[sid] = self._session(
                        board, group_events, sid, session, entry, users
                    )
                # Ended, or abandoned (ledger.py: summarized with no end): no longer live.
                held[sid] = (entry, session.horizon_from is not None)
                if (
                    entry.viewers is not None
                    and session.ended_ts is not None
                    and self._builds - entry.built >= SETTLED_BUILDS
                ):
                    entry.settle()
                extras[sid] = (refunds.get(sid, (0, 0)), windows.get(sid))
                levels_of[sid] = (session.room_id or "", session.merchant_id or "")
                if first_minute is not None and session.last_ts >= first_minute * MINUTE_MS:
                    if entry.present is None or entry.present[0] != first_minute:
                        entry.present = (
                            first_minute,
                            _present_by_minute(entry.presence, first_minute, retained),
                        )
                    present[sid] = entry.present[1]
            if first_minute is not None:
                for minute, by_session in board.screen.minutes.items():
                    if first_minute <= minute < first_minute + retained:
                        for sid, counts in by_session.items():
                            if sid in started:
                                minute_rows.append((minute - first_minute, sid, counts))
        figures = first_board._figures
        everything = sorted(held)
        groups: dict[str, dict[str, list[str]]] = {"rooms": {}, "merchants": {}}
        for sid in everything:
            room_id, merchant_id = levels_of[sid]
            groups["rooms"].setdefault(room_id, []).append(sid)
            groups["merchants"].setdefault(merchant_id, []).append(sid)
        # The retired sessions' parts per level (`Ledger._retire_summaries`): a room or
        # merchant whose sessions are all retired is still listed (the screen's curves and
        # tables, which read only the sessions held, are not given it, as the merged build).
        retired_overall: _Parts | None = None
        retired: dict[str, dict[str, _Parts]] = {"rooms": {}, "merchants": {}}
        if any(ledger.retired_levels for ledger in ledgers) or any(
            board.retired_levels for board in boards
        ):
            retired_overall = _Parts()
            add_retired_levels(
                ledgers, boards, retired_overall, retired["rooms"], retired["merchants"]
            )
        levels = {
            kind: sorted(groups[kind].keys() | retired[kind].keys())
            for kind in ("rooms", "merchants")
        }

        def level_figures(kind: str, level_id: str) -> dict[str, Any]:
            return self._level(
                f"{kind}:{level_id}",
                groups[kind].get(level_id, []),
                held,
                extras,
                figures,
                ledgers,
                retired[kind].get(level_id),
            )

        operator = {
            "definitions": {
                **OPERATOR_DEFINITIONS,
                "gpm_denominator": first_board.gpm_denominator,
                "bucket_minutes": 1,
                "window_minutes": {**WINDOW_MINUTES, "prev_10m": 10},
            },
            "watermark_ts": watermark,
            "late_events": sum(b.late_events for b in boards),
            "grace_ms": first_board.windows.grace_ms,
            "overall": self._level(
                "overall", everything, held, extras, figures, ledgers, retired_overall
            ),
            "merchants": {mid: level_figures("merchants", mid) for mid in levels["merchants"]},
            "rooms": {rid: level_figures("rooms", rid) for rid in levels["rooms"]},
        }
        if self._tables is None:
            tables = True  # none built yet
        folded_sources: dict[tuple[str, str], dict[str, list[int]]] = {}
        folded_products: dict[str, dict[str, list[int]]] = {}
        for board in boards if tables else ():  # the sessions folded (screen.py), per partition
            for level, rows in board.screen.folded_sources.items():
                add_user_rows(folded_sources.setdefault(level, {}), rows)
            for room, rows in board.screen.folded_products.items():
                add_user_rows(folded_products.setdefault(room, {}), rows)

        def sources(key: str, sids: list[str]) -> list[dict[str, list[int]]]:
            return self._rows(f"sources:{key}", sids, held, _sources_of)

        def products(key: str, sids: list[str]) -> list[dict[str, list[int]]]:
            return self._rows(f"products:{key}", sids, held, _products_of)

        def curves(sids: list[str]) -> dict[str, list[Any]]:
            if first_minute is None:
                return {name: [] for name in CURVES}
            return minute_curves(minute_rows, sids, present, retained)

        screen = {
            "definitions": {
                **SCREEN_DEFINITIONS,
                "top_n": PRODUCTS_TOP_N,
                "minutes_kept": retained,
            },
            "first_minute_ts": None if first_minute is None else first_minute * MINUTE_MS,
            "minutes": {
                "overall": curves(everything),
                **{
                    key: {lid: curves(sids) for lid, sids in ids.items()}
                    for key, ids in groups.items()
                },
            },
        }
        if not tables:
            assert self._tables is not None
            screen.update(self._tables)
            self._used_bases.update(self._row_bases)  # kept: they catch up at the next
        else:
            self._tables = self._tables_of(
                groups, everything, folded_sources, folded_products, sources, products
            )
            screen.update(self._tables)
        self.tables_fresh = tables
        self._bases = {key: self._bases[key] for key in self._used_bases if key in self._bases}
        self._row_bases = {
            key: self._row_bases[key] for key in self._used_bases if key in self._row_bases
        }
        self._merged = {key: self._merged[key] for key in self._used_bases if key in self._merged}
        self._used_bases = set()
        return {"operator": operator, "screen": screen}

    @staticmethod
    def _tables_of(
        groups: dict[str, dict[str, list[str]]],
        everything: list[str],
        folded_sources: dict[tuple[str, str], dict[str, list[int]]],
        folded_products: dict[str, dict[str, list[int]]],
        sources: Callable[[str, list[str]], list[dict[str, list[int]]]],
        products: Callable[[str, list[str]], list[dict[str, list[int]]]],
    ) -> dict[str, Any]:
        """The screen's entry sources and products tables of every level."""
        return {
            "sources": {
                "overall": sources_figures(
                    chain(
                        sources("overall", everything),
                        (rows for level, rows in folded_sources.items() if level[0] == "rooms"),
                    )
                ),
                **{
                    key: {
                        lid: sources_figures(
                            chain(
                                sources(f"{key}:{lid}", sids),
                                [folded_sources.get((key, lid), {})],
                            )
                        )
                        for lid, sids in ids.items()
                    }
                    for key, ids in groups.items()
                },
            },
            "products": {
                "overall": products_figures(
                    chain(products("overall", everything), folded_products.values()),
                    PRODUCTS_TOP_N,
                ),
                "rooms": {
                    rid: products_figures(
                        chain(products(f"rooms:{rid}", sids), [folded_products.get(rid, {})]),
                        PRODUCTS_TOP_N,
                    )
                    for rid, sids in groups["rooms"].items()
                },
            },
        }


def _sources_of(entry: _Kept) -> dict[str, list[int]]:
    return entry.sources


def _products_of(entry: _Kept) -> dict[str, list[int]]:
    return entry.products


def _fold_stage(presence: object) -> int:
    """0 a session's raw presence, 1 folded (`FoldedPresence`), 2 summarized."""
    if isinstance(presence, Presence):
        return 0
    return 2 if isinstance(presence, SessionSummary) else 1


def _sketched_median(
    sketches: Sequence[QuantileSketch],
    lists: Sequence[tuple[Sequence[int], int]],
    minus: Sequence[int],
) -> float | None:
    """`OperatorBoard._figures`' median of a level with summarized sessions: the partitions'
    sketches of their watch times merged, every other value (of sorted lists, each plus its
    offset, less `minus`'s) added to it (within the sketch's bound). The values are counted
    with bisect, not added (`QuantileSketch.quantile_adding`: the same number), so it costs
    what `_median_of` does, not the level's viewers."""
    if len(sketches) == 1:
        merged = sketches[0]
    else:
        merged = QuantileSketch()
        for sketch in sketches:
            merged.merge(sketch)
    held = [(values, offset) for values, offset in lists if values]
    added = sum(len(values) for values, _offset in held) - len(minus)
    most = max((values[-1] + offset for values, offset in held), default=0)
    if merged.can_add_without_collapse(most):

        def count_at_most(value: int) -> int:
            return sum(bisect_right(values, value - offset) for values, offset in held) - (
                bisect_right(minus, value)
            )

        return merged.quantile_adding(0.5, added, count_at_most, most)
    # Values beyond the bins' span: added in ascending order, as the board adds them (which
    # bins are collapsed may depend on the order).
    merged = merged.copy()
    taken = Counter(minus)
    kept: list[int] = []
    for values, offset in held:
        for value in values:
            value += offset
            if taken[value]:
                taken[value] -= 1
            else:
                kept.append(value)
    for value in sorted(kept):
        merged.add(value)
    return merged.quantile(0.5)


def _live_at(session: SessionFacts, ts: int) -> bool:
    started_ts = session.started_ts
    end = session.horizon_from  # an abandoned session's group joins stop at its newest event
    return started_ts is not None and ts >= started_ts and (end is None or ts <= end)


def _present_by_minute(presence: Counter[int], first: int, n: int) -> list[int]:
    """Per minute `first..first+n-1`: the viewers present, from a difference array by minute
    (`timeline.presence_minutes`: each minute once per viewer, as `screen._present_by_minute`
    marks them)."""
    viewers = [0] * n
    running = 0
    for minute, change in presence.items():
        if minute < first:
            running += change
        elif minute < first + n:
            viewers[minute - first] += change
    for i in range(n):
        running += viewers[i]
        viewers[i] = running
    return viewers


#: `_Parts`' additive int fields (a level's sum of its ended sessions' is changed in place).
_SUMMED: tuple[str, ...] = (
    "entries",
    "unique_viewers",
    "viewers_current",
    "buyers",
    "interacting_viewers",
    "orders",
    "gmv_cents",
    "follows",
    "group_joins",
    "product_clicks",
    "product_clickers",
)


@dataclass(slots=True, eq=False)
class _Base:
    """A level's ended sessions' parts summed, changed by the sessions that changed: what a
    level's sum costs follows them, not the level's sessions or viewers."""

    _members: dict[str, _Kept] = field(default_factory=dict)
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_SUMMED, 0))
    by_minute: Counter[int] = field(default_factory=Counter)
    #: Paying user -> in how many of the sessions (a set cannot be subtracted from).
    paying: Counter[str] = field(default_factory=Counter)
    #: Viewers present by minute; the changes to it of one `update`.
    prefix: _Prefix = field(default_factory=lambda: _Prefix())
    _pending: Counter[int] = field(default_factory=Counter)
    watch_total_ms: int = 0
    #: The level's summarized sessions' buyers (`Ledger.folded_payers` of every
    #: partition: each counted once in `paying`), and the sets read with their sizes.
    _summarized_payers: set[str] = field(default_factory=set)
    _summarized_sizes: tuple[tuple[int, int], ...] = ()
    #: The sketched ones (`DistinctUsers` past its exact limit) merged, not in `paying`.
    summarized_sketch: DistinctUsers | None = None

    def paying_count(self, live: set[str]) -> int:
        """The level's distinct paying users: those counted in `paying` and the live
        sessions' `live`, with the sketched summarized ones (then within the sketch's bound)."""
        if self.summarized_sketch is not None:
            return self.summarized_sketch.count_with(chain(self.paying, live))
        return len(self.paying) + sum(1 for u in live if u not in self.paying)

    def take_summarized_payers(self, payers: Sequence[DistinctUsers | None]) -> None:
        """Count the level's summarized sessions' buyers (one set per partition) among its
        paying users; read again only when a set changed (one grows at a summary, another is
        read after a rebalance): the union then costs the level's summarized buyers, once per
        summary (a ledger summarizes at most once per hour of each topic's event time)."""
        # A sketch's registers only grow: their sum changes whenever they do.
        sizes = tuple(
            (id(p), len(p.exact) if p.exact is not None else -sum(p.registers or b""))
            for p in payers
            if p is not None
        )
        if sizes == self._summarized_sizes:
            return
        self._summarized_sizes = sizes
        # United as `merge_ledgers` unites them (so the page counts what the merged board
        # does): exact while the union is within the limit, else one sketch of them all.
        united = DistinctUsers()
        for held in payers:
            if held is not None:
                united.merge(held)
        now: set[str] = united.exact if united.exact is not None else set()
        self.summarized_sketch = None if united.exact is not None else united
        before = self._summarized_payers
        _count_into(self.paying, dict.fromkeys(before - now, 1), -1)
        _count_into(self.paying, dict.fromkeys(now - before, 1), 1)
        self._summarized_payers = now

    def update(self, ended: dict[str, _Kept]) -> None:
        """Hold the sum of `ended`'s parts (session id -> its kept entry)."""
        members = self._members
        for sid, entry in list(members.items()):
            if ended.get(sid) is not entry:
                self._count(entry, -1)
                del members[sid]
        for sid, entry in ended.items():
            if sid not in members:
                self._count(entry, 1)
                members[sid] = entry
        if self._pending:
            self.prefix.change(self._pending)
            self._pending.clear()

    def _count(self, entry: _Kept, sign: int) -> None:
        parts, sums = entry.parts, self.sums
        for name in _SUMMED:
            sums[name] += sign * getattr(parts, name)
        self.watch_total_ms += sign * entry.watch_total_ms
        _count_into(self.by_minute, parts.orders_by_minute, sign)
        _count_into(self.paying, dict.fromkeys(parts.paying_users, 1), sign)
        pending = self._pending
        for minute, change in entry.presence.items():
            pending[minute] += sign * change

    def parts(self) -> _Parts:
        """A new `_Parts` holding the sum but the paying users (to add the live sessions
        to)."""
        out = _Parts()
        for name, value in self.sums.items():
            setattr(out, name, value)
        out.orders_by_minute = Counter(self.by_minute)
        return out  # its paying users are `paying`'s keys: counted, not copied


class _RowBase:
    """A level's ended sessions' sources or products rows summed, changed by the sessions
    that changed."""

    __slots__ = ("_members", "_rows_of", "rows")

    def __init__(self, rows_of: Callable[[_Kept], dict[str, list[int]]]) -> None:
        self._rows_of = rows_of
        self._members: dict[str, _Kept] = {}
        self.rows: dict[str, list[int]] = {}

    def update(self, ended: dict[str, _Kept]) -> None:
        members = self._members
        for sid, entry in list(members.items()):
            if ended.get(sid) is not entry:
                for name, row in self._rows_of(entry).items():
                    held = self.rows[name]
                    for i, value in enumerate(row):
                        held[i] -= value
                    if not any(held):  # no session has it any more (a row is never all 0)
                        del self.rows[name]
                del members[sid]
        for sid, entry in ended.items():
            if sid not in members:
                add_user_rows(self.rows, self._rows_of(entry))
                members[sid] = entry


def _count_into(into: Counter[Any], counts: Mapping[Any, int], sign: int) -> None:
    """Add (sign 1) or take away (-1) `counts`, dropping what falls to 0."""
    for key, count in counts.items():
        left = into[key] + sign * count
        if left:
            into[key] = left
        else:
            del into[key]


class _Prefix:
    """Viewers present by minute from a difference array changed in place (a level's ended
    sessions'): the minutes that change it, the viewers from each and the largest up to each,
    recomputed from the earliest minute changed (late events change recent minutes)."""

    __slots__ = ("_dirty", "diff", "highest", "minutes", "present")

    def __init__(self) -> None:
        self.diff: dict[int, int] = {}
        self.minutes: list[int] = []
        self.present: list[int] = []
        self.highest: list[int] = []
        self._dirty: int | None = None

    def change(self, deltas: Mapping[int, int]) -> None:
        diff, minutes = self.diff, self.minutes
        for minute, delta in deltas.items():
            if not delta:
                continue
            held = diff.get(minute)
            if held is None:
                diff[minute] = delta
                insort(minutes, minute)
            elif held + delta:
                diff[minute] = held + delta
            else:
                del diff[minute]
                del minutes[bisect_left(minutes, minute)]
            if self._dirty is None or minute < self._dirty:
                self._dirty = minute

    def _settle(self) -> None:
        if self._dirty is None:
            return
        start = bisect_left(self.minutes, self._dirty)
        present, highest = self.present, self.highest
        del present[start:]
        del highest[start:]
        running = present[-1] if present else 0
        top = highest[-1] if highest else 0
        diff = self.diff
        for minute in self.minutes[start:]:
            running += diff[minute]
            top = max(top, running)
            present.append(running)
            highest.append(top)
        self._dirty = None

    @property
    def peak(self) -> int:
        self._settle()
        return self.highest[-1] if self.highest else 0

    def peak_with(self, live: Counter[int]) -> int:
        """`operator._peak` of this difference array plus `live` (the live sessions'): they
        add viewers (never fewer) only where their own count is above 0, so the largest sum
        is this one's or, over a stretch where theirs is constant and above 0, theirs plus
        the largest of this one there."""
        changes = sorted(minute for minute, change in live.items() if change)
        peak = self.peak  # settles the prefix sums
        minutes, present = self.minutes, self.present
        running = 0
        for n, minute in enumerate(changes):
            running += live[minute]
            if running <= 0 or n + 1 == len(changes):
                continue  # none of theirs from here on (their changes add up to 0)
            i = bisect_right(minutes, minute)
            top = present[i - 1] if i else 0
            j = bisect_left(minutes, changes[n + 1], lo=i)
            if j > i:
                top = max(top, max(present[i:j]))
            peak = max(peak, running + top)
        return peak


def _median_of(
    lists: Sequence[tuple[Sequence[int], int]], minus: Sequence[int] = ()
) -> float | None:
    """`operator._median` of every value of sorted lists, each plus its offset, less the
    values of `minus` (sorted; each one of theirs)."""
    n = sum(len(values) for values, _offset in lists) - len(minus)
    if n == 0:
        return None
    h = (n - 1) * 0.5
    i = int(h)
    low = _kth(lists, minus, i)
    if i + 1 >= n:
        return float(low)
    high = _next_kth(lists, minus, i + 1, low)
    return low + (h - i) * (high - low)


def _next_kth(
    lists: Sequence[tuple[Sequence[int], int]], minus: Sequence[int], k: int, below: int
) -> int:
    """`_kth(lists, minus, k)` given `below`, the (k-1)-th: itself when it is held more than
    k times, else the next value held, stepped to from it (a second binary search cost as
    much as the first: half of a level's median)."""
    held = [(values, offset) for values, offset in lists if values]
    value = below
    while True:
        count = sum(bisect_right(values, value - offset) for values, offset in held)
        if count - bisect_right(minus, value) > k:
            return value
        value = min(
            values[j] + offset
            for values, offset in held
            if (j := bisect_right(values, value - offset)) < len(values)
        )


def _kth(lists: Sequence[tuple[Sequence[int], int]], minus: Sequence[int], k: int) -> int:
    """The k-th smallest (from 0) of the values of sorted int lists, each plus its offset,
    less `minus`'s: a binary search over the values, counting with bisect (no list is merged
    or sorted)."""
    held = [(values, offset) for values, offset in lists if values]
    low = min(values[0] + offset for values, offset in held)
    high = max(values[-1] + offset for values, offset in held)
    while low < high:
        middle = (low + high) // 2
        count = sum(bisect_right(values, middle - offset) for values, offset in held)
        if count - bisect_right(minus, middle) > k:
            high = middle
        else:
            low = middle + 1
    return low


class _Settled:
    """A level's settled sessions' watch times: one sorted array, the values of the sessions
    that left it since (`removed`, sorted: taken away when counting) and the sessions that
    joined since (read as lists of their own), merged again once those are a quarter of it:
    what this costs per build follows the sessions that settled or changed, not the level."""

    __slots__ = ("_added", "_members", "merged", "removed")

    def __init__(self) -> None:
        self.merged: array[int] = array("q")
        self.removed: list[int] = []
        self._members: dict[str, _Kept] = {}
        self._added: dict[str, _Kept] = {}

    def update(self, settled: dict[str, _Kept]) -> None:
        """Hold the watch times of `settled` (session id -> its kept entry)."""
        members, added = self._members, self._added
        removed = False
        for sid, entry in list(members.items()):
            if settled.get(sid) is not entry:
                self.removed.extend(_watch_values(entry))
                del members[sid]
                removed = True
        for sid, entry in list(added.items()):
            if settled.get(sid) is not entry:
                del added[sid]
        for sid, entry in settled.items():
            if sid not in members and sid not in added:
                added[sid] = entry
        pending = len(self.removed) + sum(len(values) for values, _ in self.added_lists())
        if pending and pending * 4 > len(self.merged):
            values = [
                v for entry in (*members.values(), *added.values()) for v in _watch_values(entry)
            ]
            values.sort()
            self.merged = array("q", values)
            self.removed = []
            members.update(added)
            added.clear()
        elif removed:
            self.removed.sort()

    def added_lists(self) -> list[tuple[Sequence[int], int]]:
        return [pair for entry in self._added.values() for pair in entry.watch]


def _watch_values(entry: _Kept) -> Iterator[int]:
    for values, offset in entry.watch:
        for value in values:
            yield value + offset


def _counts(ledgers: Sequence[Ledger]) -> dict[str, int]:
    total = EventCounts()
    for ledger in ledgers:
        total.valid += ledger.counts.valid
        total.rejected += ledger.counts.rejected
        total.duplicates += ledger.counts.duplicates
    return total.as_dict()
