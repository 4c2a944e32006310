"""The operator's live board: per session, room, merchant and overall figures, cumulative and
over event-time windows, as the platforms' live dashboards show them (docs/metrics.md)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from agents.core.concurrency import LevelCurve
from agents.core.ledger import (
    FOLDED_BUCKETS,
    FOLDED_SUM_MS,
    ORDER_TIME_BOUNDS_S,
    OVERALL_LEVEL,
    REPLY_LATENCY_BOUNDS_S,
    RETIRED_BUYERS,
    RETIRED_COLUMNS,
    RETIRED_ENTRIES,
    RETIRED_GMV,
    RETIRED_GROUP_JOINS,
    RETIRED_INTERACTING,
    RETIRED_OFFSETS,
    RETIRED_ORDERS,
    RETIRED_REFUNDED,
    RETIRED_REFUNDS,
    RETIRED_REPLIES,
    RETIRED_SESSIONS,
    RETIRED_VIEWERS,
    RETIRED_WATCH,
    SHARE_PAIRS,
    WATCH_TIME_BOUNDS_S,
    FoldedPresence,
    Ledger,
    OrderFact,
    Presence,
    RefundFact,
    SessionFacts,
    SessionSummary,
    board_sent_by,
    counted_refunds,
)
from agents.core.screen import ScreenState
from agents.core.sketch import DistinctUsers, QuantileSketch, quantile
from agents.core.timeline import presence_minutes, watch_intervals
from agents.core.windows import DEFAULT_GRACE_MS, MINUTE_MS, EventTimeWindows
from schemas.events import (
    TOPIC_BY_TYPE,
    Event,
    Interaction,
    OrderPaid,
    ProductClicked,
    ViewerJoined,
    ViewerLeft,
)

GpmDenominator = Literal["entries", "unique_viewers"]

#: Window name -> how many event-time minutes it spans, ending with the watermark's minute.
WINDOW_MINUTES: Final[dict[str, int]] = {"1m": 1, "5m": 5, "10m": 10}
WINDOW_NAMES: Final[tuple[str, ...]] = ("1m", "5m", "10m", "prev_10m")
WINDOW_FIGURES: Final[tuple[str, ...]] = (
    "entries",
    "unique_viewers",
    "orders",
    "gmv_cny",
    "product_clicks",
    "interactions",
    "buyers",
    "conversion",
)
# Histogram bounds (seconds) for /metrics, `WATCH_TIME_BOUNDS_S`, `ORDER_TIME_BOUNDS_S` and
# `REPLY_LATENCY_BOUNDS_S` (3 s is the claimed bound of `reply_latency`, ks-gravity-2023), are
# the ledger's: its folds count by these buckets.

DEFINITIONS: Final[dict[str, str]] = {
    "session": "a session_id with a session_started (claims.md); its room and merchant are the "
    "earliest start's",
    "entries": "viewer_joined events",
    "unique_viewers": "distinct (session, user) viewers: a viewer_joined, a non-reply "
    "interaction or a session order (claims.md); summed over sessions above session level",
    "viewers_current": "(session, user) pairs in the room at the watermark: an open watch "
    "interval in a session without session_ended",
    "viewers_peak": "the largest count, over event-time minutes, of (session, user) pairs in "
    "the room at some moment of that minute",
    "viewers_peak_ceiling": "only where viewers_peak merged over partitions is a lower bound "
    "(retention.board_peaks_bounded): the largest the level's peak can be given the settled "
    "minutes a partition dropped",
    "avg_watch_minutes": "total watch time (claims.md) / unique viewers",
    "median_watch_minutes": "median watch time over the viewer pairs (0 for a viewer who "
    "never joined); above session level, once sessions are summarized, within 1% (a sketch)",
    "buyers": "distinct (session, user) with a session order",
    "paying_users": "distinct user ids with a session order at that level",
    "conversion": "buyers / unique viewers",
    "interaction_rate": "interacting viewers (a non-reply interaction) / unique viewers",
    "gmv_cny": "paid GMV: session orders' amount_cents / 100",
    "aov_cny": "GMV / session orders",
    "aov_per_customer_cny": "GMV / paying users",
    "gpm_cny": "GMV x 1000 / the GPM denominator (entries or unique viewers)",
    "uv_value_cny": "GMV / unique viewers",
    "follows": "interactions of kind follow",
    "group_joins": "group_joined events of a session viewer into the session's merchant's "
    "groups with started_ts <= ts <= ended_ts (no upper bound while live; an abandoned "
    "session's stop at its newest event)",
    "refunds": "order_refunded events whose order_id is a session order's (the earliest by "
    "ts with that id)",
    "net_gmv_cny": "GMV - refunded CNY",
    "click_through_rate": "product clickers / unique viewers",
    "click_to_order_rate": "buyers / product clickers",
    "orders_by_minute": "session orders paid by session_ended, by whole minutes since start "
    "(an order stamped before the start counts in minute 0)",
    "windows": "event-time minutes ending with the watermark's: 1m, 5m, 10m, and prev_10m "
    "(the 10 before); late events (more than the grace older than the newest event of the "
    "same topic and record key) are left out; change_10m = (10m - prev_10m) / prev_10m",
}


@dataclass(slots=True)
class _WindowParts:
    """The additive counts of one window at one level."""

    entries: int = 0
    unique_viewers: int = 0
    orders: int = 0
    gmv_cents: int = 0
    product_clicks: int = 0
    interactions: int = 0
    buyers: int = 0

    def add(self, other: _WindowParts) -> None:
        self.entries += other.entries
        self.unique_viewers += other.unique_viewers
        self.orders += other.orders
        self.gmv_cents += other.gmv_cents
        self.product_clicks += other.product_clicks
        self.interactions += other.interactions
        self.buyers += other.buyers

    def figures(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "unique_viewers": self.unique_viewers,
            "orders": self.orders,
            "gmv_cny": self.gmv_cents / 100,
            "product_clicks": self.product_clicks,
            "interactions": self.interactions,
            "buyers": self.buyers,
            "conversion": _ratio(self.buyers, self.unique_viewers),
        }


@dataclass(slots=True)
class _Parts:
    """Everything a level's figures are made of; sessions' parts add up to a room's, etc."""

    entries: int = 0
    unique_viewers: int = 0
    viewers_current: int = 0
    watch_ms: list[int] = field(default_factory=list)
    #: Summarized sessions' watch times (`SessionSummary.watch`): [sum in ms, count per
    #: bucket of `WATCH_TIME_BOUNDS_S`]; a summarized session's own exact median; a level's
    #: sketch of its summarized sessions' values (`Ledger.folded_watch`).
    watch_folded: list[int] = field(default_factory=lambda: [0] * (len(WATCH_TIME_BOUNDS_S) + 2))
    watch_median_ms: float | None = None
    watch_sketch: QuantileSketch | None = None
    #: Event-time minute -> change in the number of pairs present (a difference array).
    presence_diff: Counter[int] = field(default_factory=Counter)
    #: The peak when known apart from `presence_diff` (not added up by `add`): a summarized
    #: session's own, or a level's with its summarized sessions' curve (`add_level_curves`).
    peak: int | None = None
    #: A level's peak's ceiling when its merged curve leaves the peak a lower bound
    #: (`LevelCurve.ceiling` above `peak`: a minute a partition dropped could sum above it);
    #: None when the peak is exact.
    peak_ceiling: int | None = None
    buyers: int = 0
    paying_users: set[str] = field(default_factory=set)
    #: A summarized session's paying users (its buyers: their ids are in the levels' sets).
    paying_count: int | None = None
    #: A level's summarized sessions' buyers once past the exact limit (`DistinctUsers`
    #: sketched): the level's paying users are then this sketch's count with `paying_users`.
    payers_sketch: DistinctUsers | None = None
    interacting_viewers: int = 0
    orders: int = 0
    gmv_cents: int = 0
    follows: int = 0
    group_joins: int = 0
    refunds: int = 0
    refunded_cents: int = 0
    product_clicks: int = 0
    product_clickers: int = 0
    orders_by_minute: Counter[int] = field(default_factory=Counter)
    order_offsets_ms: list[int] = field(default_factory=list)
    #: Summarized sessions' order offsets: [sum in ms, count per bucket of the bounds].
    order_offsets_folded: list[int] = field(
        default_factory=lambda: [0] * (len(ORDER_TIME_BOUNDS_S) + 2)
    )
    reply_latency_ms: list[int] = field(default_factory=list)
    #: The folded answered questions' latencies: [sum in ms, count per reply bucket] (the
    #: ledger's `folded_replies` without its counts), added to `reply_latency_ms`'s histogram.
    reply_folded: list[int] = field(default_factory=lambda: [0] * (len(REPLY_LATENCY_BOUNDS_S) + 2))
    windows: dict[str, _WindowParts] = field(
        default_factory=lambda: {name: _WindowParts() for name in WINDOW_NAMES}
    )

    def add(self, other: _Parts) -> None:
        self.entries += other.entries
        self.unique_viewers += other.unique_viewers
        self.viewers_current += other.viewers_current
        self.watch_ms.extend(other.watch_ms)
        self.watch_folded = [
            a + b for a, b in zip(self.watch_folded, other.watch_folded, strict=True)
        ]
        self.presence_diff.update(other.presence_diff)
        self.buyers += other.buyers
        self.paying_users |= other.paying_users
        if other.payers_sketch is not None:
            self.payers_sketch = _merged_payers(self.payers_sketch, other.payers_sketch)
        self.interacting_viewers += other.interacting_viewers
        self.orders += other.orders
        self.gmv_cents += other.gmv_cents
        self.follows += other.follows
        self.group_joins += other.group_joins
        self.refunds += other.refunds
        self.refunded_cents += other.refunded_cents
        self.product_clicks += other.product_clicks
        self.product_clickers += other.product_clickers
        self.orders_by_minute.update(other.orders_by_minute)
        self.order_offsets_ms.extend(other.order_offsets_ms)
        self.order_offsets_folded = [
            a + b
            for a, b in zip(self.order_offsets_folded, other.order_offsets_folded, strict=True)
        ]
        self.reply_latency_ms.extend(other.reply_latency_ms)
        self.reply_folded = [
            a + b for a, b in zip(self.reply_folded, other.reply_folded, strict=True)
        ]
        for name, window in other.windows.items():
            self.windows[name].add(window)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _median(values: Sequence[int]) -> float | None:
    """claims.md's percentile at 0.5 (numpy's linear interpolation)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return None
    h = (n - 1) * 0.5
    i = int(h)
    if i + 1 >= n:
        return float(xs[i])
    return xs[i] + (h - i) * (xs[i + 1] - xs[i])


def _peak(diff: Counter[int]) -> int:
    present = peak = 0
    for minute in sorted(diff):
        present += diff[minute]
        peak = max(peak, present)
    return peak


def _histogram(
    values_ms: Iterable[int], bounds_s: Sequence[float], folded: Sequence[int] | None = None
) -> dict[str, Any]:
    """Cumulative counts per upper bound (the last is +Inf) and the sum, in seconds; `folded`
    ([sum in ms, count per bucket]) the values already bucketed (folded out of the ledger)."""
    counts = [0] * (len(bounds_s) + 1) if folded is None else list(folded[1:])
    total_ms = 0 if folded is None else folded[0]
    for value_ms in values_ms:
        seconds = value_ms / 1000
        total_ms += value_ms
        for i, bound in enumerate(bounds_s):
            if seconds <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
    cumulative: list[int] = []
    running = 0
    for count in counts:
        running += count
        cumulative.append(running)
    return {"counts": cumulative, "sum": total_ms / 1000}


_GROUP_TYPES: Final[frozenset[str]] = frozenset({"group_joined", "group_left"})
#: Group events remembered for the live screen's incremental build: more between two builds
#: and it recomputes every session (agents/core/page.py).
GROUP_LOG_SIZE: Final[int] = 100_000
#: Viewer events (views, interactions, session orders) remembered for the same build: more
#: between two builds and it recomputes every viewer of the sessions that changed. Each says
#: whether it can change a viewer already counted (a join or leave: their watch intervals)
#: or only make one counted (an interaction, an order: agents/core/page.py skips reading
#: such a viewer again when they already are).
VIEWER_LOG_SIZE: Final[int] = 100_000


def _source(event: Event) -> tuple[str, str]:
    """The contract's unit of order of an event: its topic and its record key."""
    # By the type string: `isinstance(event, A | B)` builds a union object on every call, and
    # this runs once per event (it was 17% of the batch path's samples).
    event_type = event.type
    if event_type in _GROUP_TYPES:
        key: str = getattr(event, "merchant_id")  # noqa: B009 (typed via the type string)
    else:
        key = getattr(event, "session_id", None) or ""
    return TOPIC_BY_TYPE[event_type], key


def clicker_count(clickers: set[str] | int | None) -> int:
    """A session's distinct product clickers, kept as a set or (summarized) as their count."""
    if clickers is None:
        return 0
    return clickers if isinstance(clickers, int) else len(clickers)


class OperatorBoard:
    """The state the operator figures need beyond the ledger's facts, and the figures.

    Feed it every event the ledger accepted (`observe` when `Ledger.apply` returned True).
    Per event it counts follows and product clicks per session and fills the event-time
    minute buckets; presence, orders, refunds and group events are read from the ledger when
    `snapshot` is asked for, so cumulative figures do not depend on arrival order.
    """

    def __init__(
        self, grace_ms: int = DEFAULT_GRACE_MS, gpm_denominator: GpmDenominator = "entries"
    ) -> None:
        if gpm_denominator not in ("entries", "unique_viewers"):
            raise ValueError(
                f"gpm_denominator must be entries or unique_viewers: {gpm_denominator}"
            )
        self.gpm_denominator: GpmDenominator = gpm_denominator
        self.windows = EventTimeWindows(grace_ms)
        self.follows: dict[str, int] = {}
        #: Per level the retired sessions' follows, product clicks and clickers
        #: (`take_retired`).
        self.retired_levels: dict[tuple[str, str], list[int]] = {}
        self.product_clicks: dict[str, int] = {}
        #: Per session its distinct clickers; once the ledger summarized it, their count
        #: (`take_folded`: a click naming it now is past its session horizon, not its own).
        self.product_clickers: dict[str, set[str] | int] = {}
        #: The live screen's curves, products and sources (agents/core/screen.py).
        self.screen = ScreenState()
        #: What changed when, for the live screen's incremental build (agents/core/page.py):
        #: events observed, per session id the number of the last event that touched it, and
        #: the latest group events as (number, merchant, ts, user) (a group join counts in the
        #: sessions of its merchant live at its ts), and the latest events that can change
        #: what a (session, user) adds as (number, session id, user, presence: a join or
        #: leave, else an interaction or order) (neither log is saved).
        self.changes = 0
        self.session_changed_at: dict[str, int] = {}
        self.group_log: deque[tuple[int, str, int, str]] = deque(maxlen=GROUP_LOG_SIZE)
        #: Kept only once a live screen reads it (`log_viewers`): a worker nobody watches keeps
        #: none (100,000 entries per partition were ~9 MB each in the 150-day worker soak).
        self.viewer_log: deque[tuple[int, str, str, bool]] = deque(maxlen=0)

    def log_viewers(self) -> None:
        """Keep the viewer log from now on (the live screen's builder calls it at each build:
        until then a build reads every viewer, as it does after the log overflowed)."""
        if self.viewer_log.maxlen != VIEWER_LOG_SIZE:
            self.viewer_log = deque(maxlen=VIEWER_LOG_SIZE)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "group_log": None, "viewer_log": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A board pickled before the incremental screen: nothing known to have changed when.
        self.__dict__.update(state)
        if "changes" not in state:
            self.changes = 0
            self.session_changed_at = {}
        if "retired_levels" not in state:  # version 10 or older: nothing retired
            self.retired_levels = {}
        self.group_log = deque(maxlen=GROUP_LOG_SIZE)
        self.viewer_log = deque(maxlen=0)

    @property
    def late_events(self) -> int:
        return self.windows.late

    @property
    def watermark(self) -> int | None:
        return self.windows.watermark

    def observe(self, event: Event, ledger: Ledger | None = None) -> None:
        """Take one accepted (non-duplicate) event: O(1) work. `ledger`, the one that
        accepted it (`ingest` gives it): the screen then shares its per-session slot tables."""
        self.screen.observe(event, ledger)
        self.changes += 1
        # `_source(event)` inlined: its record key is what the logs below are keyed by too.
        event_type = event.type
        if event_type in _GROUP_TYPES:
            key: str = getattr(event, "merchant_id")  # noqa: B009
            user_id: str = getattr(event, "user_id")  # noqa: B009
            self.group_log.append((self.changes, key, event.ts, user_id))
        else:
            # Read from the model's fields: a refund has no `session_id`, and a `getattr`
            # default is a miss through pydantic's `__getattr__` (~2.6 us, as in the screen).
            key = event.__dict__.get("session_id") or ""
            self.session_changed_at[key] = self.changes
        windows = self.windows
        on_time = windows.admit(event.ts, (TOPIC_BY_TYPE[event_type], key))
        # No entry built for a log nobody reads (`log_viewers`: kept only once a live screen
        # builds): a worker that no screen watches had a tuple a view event for nothing.
        viewer_log = self.viewer_log if self.viewer_log.maxlen else None
        if type(event) is ViewerJoined:
            if viewer_log is not None:
                viewer_log.append((self.changes, event.session_id, event.user_id, True))
            if on_time:
                bucket = windows.bucket(event.ts, event.session_id)
                bucket.entries += 1
                bucket.viewers.add(event.user_id)
        elif type(event) is Interaction:
            if event.kind == "reply":  # the host's, not a viewer's
                return
            session_id = event.session_id
            if viewer_log is not None:
                viewer_log.append((self.changes, session_id, event.user_id, False))
            if event.kind == "follow":
                self.follows[session_id] = self.follows.get(session_id, 0) + 1
            if on_time:
                bucket = windows.bucket(event.ts, session_id)
                bucket.interactions += 1
                bucket.viewers.add(event.user_id)
        elif type(event) is OrderPaid:
            if event.session_id is not None and viewer_log is not None:
                viewer_log.append((self.changes, event.session_id, event.user_id, False))
            if event.session_id is not None and on_time:
                bucket = windows.bucket(event.ts, event.session_id)
                bucket.orders += 1
                bucket.gmv_cents += event.amount_cents
                bucket.buyers.add(event.user_id)
                bucket.viewers.add(event.user_id)
        elif type(event) is ProductClicked:
            session_id = event.session_id
            clickers = self.product_clickers.get(session_id)
            if clickers is None:
                clickers = self.product_clickers[session_id] = set()
            if not isinstance(clickers, int):  # an int: summarized, the click is not its own
                self.product_clicks[session_id] = self.product_clicks.get(session_id, 0) + 1
                clickers.add(event.user_id)
            if on_time:
                windows.bucket(event.ts, session_id).product_clicks += 1
        elif type(event) is ViewerLeft and viewer_log is not None:
            viewer_log.append((self.changes, event.session_id, event.user_id, True))

    def take_folded(self, ledger: Ledger) -> None:
        """Fold what the screen keeps of the sessions the ledger has just folded (call after
        `Ledger.apply` when `ledger.folded_ids` is not empty; `ingest` does)."""
        for sid in ledger.folded_ids:
            session = ledger.sessions[sid]
            if ledger.fold_sessions and session.summary is None:
                # Folded, summarized later: an event may still name it until its session
                # horizon, and the screen's distinct figures need its users (screen.py).
                self.screen.hold_session(sid, session)
            else:
                self.screen.fold_session(sid, session)
            clickers = self.product_clickers.get(sid)
            if isinstance(clickers, set) and session.summary is not None:
                # Issue 17: a summarized session keeps nothing per (session, user).
                self.product_clickers[sid] = len(clickers)
            self.changes += 1
            self.session_changed_at[sid] = self.changes  # its screen parts moved
        ledger.folded_ids.clear()
        self.take_retired(ledger)

    def take_retired(self, ledger: Ledger) -> None:
        """Fold this board's per-session counts of the sessions the ledger has retired
        (`Ledger._retire_summaries`) into its levels' totals (`retired_levels`: follows,
        product clicks, product clickers), as the ledger folds its own parts of them."""
        if not ledger.retired_ids:
            return
        retired = self.retired_levels
        for sid, room, merchant in ledger.retired_ids:
            clickers = self.product_clickers.pop(sid, None)
            row = (
                self.follows.pop(sid, 0),
                self.product_clicks.pop(sid, 0),
                clicker_count(clickers),
            )
            self.session_changed_at.pop(sid, None)
            for level in (OVERALL_LEVEL, ("rooms", room), ("merchants", merchant)):
                held = retired.get(level)
                retired[level] = (
                    list(row) if held is None else [a + b for a, b in zip(held, row, strict=True)]
                )
        ledger.retired_ids.clear()

    # ------------------------------------------------------------------ snapshot

    def snapshot(self, ledger: Ledger, *, detail: bool = True) -> dict[str, Any]:
        """Every figure, JSON-ready (docs/metrics.md, "Operator metrics").

        `detail=False` leaves out what the live screen does not show, the per-session figures
        and the histograms (at 200,000 events more than half of the cost); the levels' figures
        are the same."""
        started = {
            sid: session
            for sid, session in ledger.sessions.items()
            if session.started_ts is not None
        }
        refunds_by_session = self._refunds_by_session(
            ledger.orders,
            ledger.refunds,
            started,
            ledger.refund_horizon_ms,
            [ledger.order_fold.session_refunds],
        )
        replies_by_session = _reply_latencies_by_session(ledger)
        session_windows = self._session_windows(started)
        overall = _Parts()
        rooms: dict[str, _Parts] = {}
        merchants: dict[str, _Parts] = {}
        sessions_out: dict[str, Any] = {}
        # Summarized sessions that ended (or were abandoned) longer than the board horizon
        # before the newest event leave the sessions table; their levels still count them.
        horizon_ms = ledger.board_horizon_ms
        table_from = (
            None if horizon_ms is None or ledger.max_ts is None else ledger.max_ts - horizon_ms
        )
        folded_out = 0
        for sid in sorted(started):
            session = started[sid]
            parts = self._session_parts(
                ledger.group_events, sid, session, refunds_by_session.get(sid, (0, 0))
            )
            parts.reply_latency_ms = replies_by_session.get(sid, [])
            folded_replies = ledger.folded_replies.get(sid)
            if folded_replies is not None:
                parts.reply_folded = [
                    folded_replies[FOLDED_SUM_MS],
                    *folded_replies[FOLDED_BUCKETS:],
                ]
            if sid in session_windows:
                parts.windows = session_windows[sid]
            room_id, merchant_id = session.room_id or "", session.merchant_id or ""
            horizon_from = session.horizon_from
            if (
                table_from is not None
                and horizon_from is not None
                and horizon_from < table_from
                and session.summary is not None
            ):
                folded_out += 1
            elif detail:
                sessions_out[sid] = {
                    **self._figures(parts),
                    "room_id": room_id,
                    "merchant_id": merchant_id,
                    "started_ts": session.started_ts,
                    "ended_ts": session.ended_ts,
                }
            rooms.setdefault(room_id, _Parts()).add(parts)
            merchants.setdefault(merchant_id, _Parts()).add(parts)
            overall.add(parts)
        folded_out += add_retired_levels([ledger], [self], overall, rooms, merchants)
        add_summarized_levels([ledger], overall, rooms, merchants)
        add_level_curves([ledger], overall, rooms, merchants)
        levels = {"overall": overall, "merchants": merchants, "rooms": rooms}
        figures = {
            "definitions": {
                **DEFINITIONS,
                "gpm_denominator": self.gpm_denominator,
                "bucket_minutes": 1,
                "window_minutes": {**WINDOW_MINUTES, "prev_10m": 10},
            },
            "watermark_ts": self.watermark,
            "late_events": self.late_events,
            "grace_ms": self.windows.grace_ms,
            "overall": self._figures(overall),
            "merchants": {mid: self._figures(p) for mid, p in sorted(merchants.items())},
            "rooms": {rid: self._figures(p) for rid, p in sorted(rooms.items())},
        }
        if detail:
            figures["sessions"] = sessions_out
            figures["sessions_folded_out"] = folded_out
            figures["histograms"] = _histograms(levels)
        return figures

    @staticmethod
    def _refunds_by_session(
        orders: Iterable[OrderFact],
        refunds: Iterable[RefundFact],
        started: dict[str, SessionFacts],
        refund_horizon_ms: int | None,
        folded: Iterable[Mapping[str, list[int]]] = (),
    ) -> dict[str, tuple[int, int]]:
        """Refunds per session (their count and cents), by the refunded order id's session
        order, with the order fold's (`folded`: each ledger's `order_fold.session_refunds`).

        The earliest session order of an order id by ts; at equal ts the smallest session id
        (only its session is read), not the earlier arrival: arrival order across sessions
        differs between topics' partitions, and a report is a function of the events. Only the
        refunds that count under the refund horizon (`counted_refunds`), as in the claims.
        """
        orders = list(orders)
        refunds = counted_refunds(orders, refunds, refund_horizon_ms)[0]
        first_order: dict[str, OrderFact] = {}
        for order in orders:
            if order.session_id is None or order.session_id not in started:
                continue
            known = first_order.get(order.order_id)
            if known is None or (order.ts, order.session_id) < (known.ts, known.session_id or ""):
                first_order[order.order_id] = order
        by_session: dict[str, tuple[int, int]] = {}
        for refund in refunds:
            refunded = first_order.get(refund.order_id)
            if refunded is not None and refunded.session_id is not None:
                count, cents = by_session.get(refunded.session_id, (0, 0))
                by_session[refunded.session_id] = (count + 1, cents + refund.amount_cents)
        for session_refunds in folded:
            for sid, (folded_count, folded_cents) in session_refunds.items():
                count, cents = by_session.get(sid, (0, 0))
                by_session[sid] = (count + folded_count, cents + folded_cents)
        return by_session

    def _session_windows(
        self, started: Mapping[str, SessionFacts], watermark: int | None = None
    ) -> dict[str, dict[str, _WindowParts]]:
        """Window counts per started session, from the minute buckets around the watermark
        (this board's, or a larger one: all partitions', see agents/core/page.py)."""
        out: dict[str, dict[str, _WindowParts]] = {}
        if watermark is None:
            watermark = self.watermark
        if watermark is None:
            return out
        last = watermark // MINUTE_MS
        spans = {
            "1m": (last, last),
            "5m": (last - 4, last),
            "10m": (last - 9, last),
            "prev_10m": (last - 19, last - 10),
        }
        for name, (first, end) in spans.items():
            viewers: dict[str, set[str]] = {}
            buyers: dict[str, set[str]] = {}
            for _minute, by_session in self.windows.minutes(first, end):
                for sid, bucket in by_session.items():
                    if sid not in started:
                        continue
                    windows = out.get(sid)
                    if windows is None:
                        windows = out[sid] = {n: _WindowParts() for n in WINDOW_NAMES}
                    window = windows[name]
                    window.entries += bucket.entries
                    window.orders += bucket.orders
                    window.gmv_cents += bucket.gmv_cents
                    window.product_clicks += bucket.product_clicks
                    window.interactions += bucket.interactions
                    viewers.setdefault(sid, set()).update(bucket.viewers)
                    buyers.setdefault(sid, set()).update(bucket.buyers)
            for sid, users in viewers.items():
                out[sid][name].unique_viewers = len(users)
                out[sid][name].buyers = len(buyers[sid])
        return out

    def _session_parts(
        self,
        group_events: Mapping[tuple[str, str], Sequence[tuple[int, int, str, bool]]],
        sid: str,
        session: SessionFacts,
        refunds: tuple[int, int],
    ) -> _Parts:
        parts = _Parts()
        started_ts = session.started_ts
        assert started_ts is not None  # only started sessions are passed
        ended_ts = session.ended_ts
        close_ts = ended_ts if ended_ts is not None else session.last_ts
        viewers = session.viewers  # derived from the facts each time it is read: once here
        parts.unique_viewers = len(viewers)
        folded = session.presence
        if isinstance(folded, FoldedPresence):  # a closed session: its summary (ledger.py)
            parts.entries += folded.entries
            parts.watch_ms.extend(folded.watch_ms(user) for user in viewers)
            parts.presence_diff.update(folded.minutes)
            viewers_live: set[str] = set()
        elif isinstance(folded, SessionSummary):
            # Summarized (`Ledger(fold_sessions=True)`): its viewers, orders and interacting
            # users are gone, their parts were computed at the summary (`SessionSummary`).
            return self._summary_parts(sid, folded, refunds)
        else:
            for records in folded.values():
                for _ts, _seq, is_join in records:
                    if is_join:
                        parts.entries += 1
            viewers_live = viewers
        for user in viewers_live:
            assert isinstance(folded, Presence)
            presence = folded.get(user)
            if presence is None:  # a viewer by an interaction or an order only
                parts.watch_ms.append(0)
                continue
            intervals, still_open = watch_intervals(presence, close_ts, ended_ts)
            parts.watch_ms.append(sum(end - start for start, end in intervals))
            if still_open and ended_ts is None:
                parts.viewers_current += 1
            presence_minutes(parts.presence_diff, intervals)
        buyers = {order.user_id for order in session.orders}
        parts.buyers = len(buyers)
        parts.paying_users = buyers
        parts.interacting_viewers = len(session.interacting_users)
        parts.orders = len(session.orders)
        for order in session.orders:
            parts.gmv_cents += order.amount_cents
            offset = max(0, order.ts - started_ts)
            parts.order_offsets_ms.append(offset)
            if ended_ts is None or order.ts <= ended_ts:
                parts.orders_by_minute[offset // MINUTE_MS] += 1
        parts.follows = self.follows.get(sid, 0)
        merchant_id = session.merchant_id or ""
        # An abandoned session's (ledger.py: no end) stop at its newest event, as its summary's.
        joins_until = session.horizon_from
        for user in viewers:
            for ts, _seq, _group, is_join in group_events.get((merchant_id, user), ()):
                if is_join and ts >= started_ts and (joins_until is None or ts <= joins_until):
                    parts.group_joins += 1
        parts.refunds, parts.refunded_cents = refunds
        parts.product_clicks = self.product_clicks.get(sid, 0)
        parts.product_clickers = clicker_count(self.product_clickers.get(sid))
        return parts

    def _summary_parts(self, sid: str, summary: SessionSummary, refunds: tuple[int, int]) -> _Parts:
        """A summarized session's parts, from its summary and this board's counts."""
        parts = _Parts()
        parts.entries = summary.entries
        parts.peak = summary.peak  # its minutes are in its levels' curves (`board_curves`)
        parts.unique_viewers = summary.viewers
        parts.watch_folded = list(summary.watch)
        parts.watch_median_ms = summary.watch_median_ms
        parts.buyers = parts.paying_count = summary.share_sums[SHARE_PAIRS]
        parts.interacting_viewers = summary.uplift[1]
        parts.orders = summary.orders
        parts.gmv_cents = summary.gmv_cents
        parts.orders_by_minute.update(summary.order_minutes)
        parts.order_offsets_folded = list(summary.order_offsets)
        parts.follows = self.follows.get(sid, 0)
        parts.group_joins = summary.group_joins
        parts.refunds, parts.refunded_cents = refunds
        parts.product_clicks = self.product_clicks.get(sid, 0)
        parts.product_clickers = clicker_count(self.product_clickers.get(sid))
        return parts

    def _figures(
        self,
        parts: _Parts,
        watch: tuple[int, float | None] | None = None,
        peak: int | None = None,
        paying_users: int | None = None,
        peak_ceiling: int | None = None,
    ) -> dict[str, Any]:
        """A level's figures; `watch` (total and median watch ms), `peak` and `paying_users`
        when already known (agents/core/page.py keeps them per level), else from `parts`
        (with its summarized sessions' sums, sketch and buyers where it has them).
        `peak_ceiling`, with `peak`: the most that peak can be (the page's, as
        `add_level_curves` gives `parts.peak_ceiling`), given where it is above it."""
        gmv = parts.gmv_cents / 100
        median_ms: float | None
        if watch is not None:
            watch_total_ms, median_ms = watch
        else:
            watch_total_ms = sum(parts.watch_ms) + parts.watch_folded[0]
            if parts.watch_median_ms is not None:  # a summarized session's own, exact
                median_ms = parts.watch_median_ms
            elif parts.watch_sketch is not None and parts.watch_sketch.count:
                # A level with summarized sessions: within the sketch's bound (sketch.py).
                median_ms = quantile(0.5, parts.watch_sketch, sorted(parts.watch_ms))
            else:
                median_ms = _median(parts.watch_ms)
        if paying_users is None:
            if parts.payers_sketch is not None:  # within the sketch's bound (sketch.py)
                paying_users = parts.payers_sketch.count_with(parts.paying_users)
            elif parts.paying_count is not None:
                paying_users = parts.paying_count
            else:
                paying_users = len(parts.paying_users)
        gpm_base = parts.entries if self.gpm_denominator == "entries" else parts.unique_viewers
        by_minute = parts.orders_by_minute
        last_minute = max(by_minute) if by_minute else -1
        windows: dict[str, Any] = {name: parts.windows[name].figures() for name in WINDOW_NAMES}
        current, before = windows["10m"], windows["prev_10m"]
        windows["change_10m"] = {
            figure: _change(current[figure], before[figure]) for figure in WINDOW_FIGURES
        }
        return {
            "entries": parts.entries,
            "unique_viewers": parts.unique_viewers,
            "viewers_current": parts.viewers_current,
            "viewers_peak": (
                peak
                if peak is not None
                else parts.peak
                if parts.peak is not None
                else _peak(parts.presence_diff)
            ),
            # Only where that peak is a lower bound (merged over partitions; docs/metrics.md).
            **(
                {"viewers_peak_ceiling": parts.peak_ceiling}
                if peak is None and parts.peak_ceiling is not None
                else {"viewers_peak_ceiling": peak_ceiling}
                if peak is not None and peak_ceiling is not None and peak_ceiling > peak
                else {}
            ),
            "watch_time_seconds_sum": watch_total_ms / 1000,
            "avg_watch_minutes": _ratio(watch_total_ms / MINUTE_MS, parts.unique_viewers),
            "median_watch_minutes": None if median_ms is None else median_ms / MINUTE_MS,
            "buyers": parts.buyers,
            "paying_users": paying_users,
            "conversion": _ratio(parts.buyers, parts.unique_viewers),
            "interacting_viewers": parts.interacting_viewers,
            "interaction_rate": _ratio(parts.interacting_viewers, parts.unique_viewers),
            "orders": parts.orders,
            "gmv_cny": gmv,
            "aov_cny": _ratio(gmv, parts.orders),
            "aov_per_customer_cny": _ratio(gmv, paying_users),
            "gpm_cny": _ratio(gmv * 1000, gpm_base),
            "uv_value_cny": _ratio(gmv, parts.unique_viewers),
            "follows": parts.follows,
            "group_joins": parts.group_joins,
            "refunds": parts.refunds,
            "refunded_cny": parts.refunded_cents / 100,
            "net_gmv_cny": (parts.gmv_cents - parts.refunded_cents) / 100,
            "product_clicks": parts.product_clicks,
            "product_clickers": parts.product_clickers,
            "click_through_rate": _ratio(parts.product_clickers, parts.unique_viewers),
            "click_to_order_rate": _ratio(parts.buyers, parts.product_clickers),
            "orders_by_minute": [by_minute.get(m, 0) for m in range(last_minute + 1)],
            "windows": windows,
        }


def add_retired_levels(
    ledgers: Sequence[Ledger],
    boards: Sequence[OperatorBoard],
    overall: _Parts,
    rooms: dict[str, _Parts],
    merchants: dict[str, _Parts],
) -> int:
    """Add to each level the parts of its retired sessions (`Ledger.retired_levels`, the
    boards' `retired_levels`), as their summaries' `_summary_parts` added them; a level with
    only retired sessions is created. Returns the retired sessions (left out of the sessions
    table, as `sessions_folded_out` counts them)."""
    retired_sessions = 0
    by_level: dict[tuple[str, str], _Parts] = {}
    for ledger in ledgers:
        for level, row in ledger.retired_levels.items():
            parts = by_level.setdefault(level, _Parts())
            parts.entries += row[RETIRED_ENTRIES]
            parts.unique_viewers += row[RETIRED_VIEWERS]
            parts.buyers += row[RETIRED_BUYERS]
            parts.interacting_viewers += row[RETIRED_INTERACTING]
            parts.orders += row[RETIRED_ORDERS]
            parts.gmv_cents += row[RETIRED_GMV]
            parts.group_joins += row[RETIRED_GROUP_JOINS]
            parts.refunds += row[RETIRED_REFUNDS]
            parts.refunded_cents += row[RETIRED_REFUNDED]
            for name, first, end in (
                ("watch_folded", RETIRED_WATCH, RETIRED_OFFSETS),
                ("order_offsets_folded", RETIRED_OFFSETS, RETIRED_REPLIES),
                ("reply_folded", RETIRED_REPLIES, RETIRED_COLUMNS),
            ):
                held = getattr(parts, name)
                setattr(parts, name, [a + b for a, b in zip(held, row[first:end], strict=True)])
            parts.orders_by_minute.update(ledger.retired_order_minutes.get(level, {}))
            if level == OVERALL_LEVEL:
                retired_sessions += row[RETIRED_SESSIONS]
    for board in boards:
        for level, (follows, clicks, clickers) in board.retired_levels.items():
            parts = by_level.setdefault(level, _Parts())
            parts.follows += follows
            parts.product_clicks += clicks
            parts.product_clickers += clickers
    for level, parts in by_level.items():
        kind, level_id = level
        if level == OVERALL_LEVEL:
            overall.add(parts)
        elif kind == "rooms":
            rooms.setdefault(level_id, _Parts()).add(parts)
        else:
            merchants.setdefault(level_id, _Parts()).add(parts)
    return retired_sessions


def add_summarized_levels(
    ledgers: Sequence[Ledger],
    overall: _Parts,
    rooms: Mapping[str, _Parts],
    merchants: Mapping[str, _Parts],
) -> None:
    """Give each level the part of its summarized sessions that is not a sum of sessions'
    parts (`Ledger._summarize_board`): their watch times' sketch (for the median) and their
    distinct buyers (paying users), from one ledger or every partition's. Idempotent: a
    level's parts may be given them again (the live screen's cached levels)."""
    for level, parts in (
        (OVERALL_LEVEL, overall),
        *((("rooms", rid), p) for rid, p in rooms.items()),
        *((("merchants", mid), p) for mid, p in merchants.items()),
    ):
        sketches = [
            ledger.folded_watch[level] for ledger in ledgers if level in ledger.folded_watch
        ]
        if len(sketches) > 1:
            merged = QuantileSketch()
            for sketch in sketches:
                merged.merge(sketch)
            sketches = [merged]
        parts.watch_sketch = sketches[0] if sketches else None
        found = [p for ledger in ledgers if (p := ledger.folded_payers.get(level)) is not None]
        if not found:
            continue
        # United as `merge_ledgers` unites them: exact within the limit, else one sketch.
        united = found[0] if len(found) == 1 else DistinctUsers()
        if len(found) > 1:
            for payers in found:
                united.merge(payers)
        if united.exact is not None:
            if united.exact:  # a new set: the level's own may be shared with a cached one
                parts.paying_users = parts.paying_users | united.exact
        else:  # a new sketch too (merging twice is merging once: register maxima)
            parts.payers_sketch = _merged_payers(parts.payers_sketch, united)


def _merged_payers(held: DistinctUsers | None, more: DistinctUsers) -> DistinctUsers:
    """A new count of both (neither is changed)."""
    merged = DistinctUsers(more.limit, more.precision) if held is None else held.copy()
    merged.merge(more)
    return merged


def level_curve(ledgers: Sequence[Ledger], level: tuple[str, str]) -> LevelCurve | None:
    """A level's summarized sessions' concurrency curve, from one ledger or every
    partition's (`LevelCurve.merged`), with the runs a partition holds or folded as the
    level's owner (`Ledger.curves_of`); None: the level has none."""
    sent_to = board_sent_by(ledgers)
    curves = [found for ledger in ledgers for found in ledger.curves_of(level, sent_to)]
    if len(curves) > 1:
        return LevelCurve.merged(curves)
    return curves[0] if curves else None


def add_level_curves(
    ledgers: Sequence[Ledger],
    overall: _Parts,
    rooms: Mapping[str, _Parts],
    merchants: Mapping[str, _Parts],
) -> None:
    """Give each level its peak with its summarized sessions' concurrency curve
    (`Ledger.board_curves`: their minutes not in the sessions' parts) added to the minutes
    of its other sessions (`presence_diff`). Idempotent."""
    for level, parts in (
        (OVERALL_LEVEL, overall),
        *((("rooms", rid), p) for rid, p in rooms.items()),
        *((("merchants", mid), p) for mid, p in merchants.items()),
    ):
        curve = level_curve(ledgers, level)
        if curve is not None:
            parts.peak = curve.level_peak(parts.presence_diff)[0]
            # Only a merged curve has slack (minutes a partition dropped from its kept runs).
            ceiling = curve.ceiling(parts.presence_diff) if curve.uncertain() else parts.peak
            parts.peak_ceiling = ceiling if ceiling > parts.peak else None


def _change(current: float | None, before: float | None) -> float | None:
    """Relative change against the window before; None when there is nothing to compare to."""
    if current is None or before is None or before == 0:
        return None
    return (current - before) / before


def _reply_latencies_by_session(ledger: Ledger) -> dict[str, list[int]]:
    """First-reply latency (ms) of each answered question, by the question's session
    (`reply_latency`'s definition; a reply stamped before its question gives a negative one)."""
    return {
        sid: answered_ms
        for sid, (_asked, answered_ms) in ledger.reply_latencies_by_session().items()
        if answered_ms
    }


def _level_histogram(parts: _Parts, attribute: str, bounds: Sequence[float]) -> dict[str, Any]:
    """The histogram of one level's `attribute` with its folded part (already bucketed)."""
    folded = {
        "reply_latency_ms": parts.reply_folded,
        "watch_ms": parts.watch_folded,
        "order_offsets_ms": parts.order_offsets_folded,
    }[attribute]
    return _histogram(getattr(parts, attribute), bounds, folded)


def _histograms(levels: dict[str, Any]) -> dict[str, Any]:
    """Watch time per viewer pair, order time since start and first-reply latency, per level
    (for /metrics)."""
    out: dict[str, Any] = {}
    for name, attribute, bounds in (
        ("watch_time_seconds", "watch_ms", WATCH_TIME_BOUNDS_S),
        ("order_time_since_start_seconds", "order_offsets_ms", ORDER_TIME_BOUNDS_S),
        ("reply_latency_seconds", "reply_latency_ms", REPLY_LATENCY_BOUNDS_S),
    ):
        overall: _Parts = levels["overall"]
        out[name] = {
            "bounds": list(bounds),
            "overall": _level_histogram(overall, attribute, bounds),
            "merchants": {
                mid: _level_histogram(p, attribute, bounds)
                for mid, p in sorted(levels["merchants"].items())
            },
            "rooms": {
                rid: _level_histogram(p, attribute, bounds)
                for rid, p in sorted(levels["rooms"].items())
            },
        }
    return out


def render_operator_summary(operator: dict[str, Any]) -> str:
    """A few lines of the overall operator figures for a terminal."""
    f = operator["overall"]

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    w10 = f["windows"]["10m"]
    change = f["windows"]["change_10m"]
    lines = [
        "operator (overall, session figures):",
        f"  entries {f['entries']:,}  unique viewers {f['unique_viewers']:,}  "
        f"peak concurrent {f['viewers_peak']:,}  now {f['viewers_current']:,}",
        f"  avg watch {num(f['avg_watch_minutes'], '.1f')} min  "
        f"median {num(f['median_watch_minutes'], '.1f')} min  "
        f"interaction rate {num(f['interaction_rate'], '.1%')}",
        f"  orders {f['orders']:,}  GMV {f['gmv_cny']:,.2f}  AOV {num(f['aov_cny'], ',.2f')}  "
        f"GPM {num(f['gpm_cny'], ',.2f')}  UV value {num(f['uv_value_cny'], ',.2f')}  "
        f"conversion {num(f['conversion'], '.1%')}",
        f"  refunds {f['refunds']:,} ({f['refunded_cny']:,.2f})  net GMV {f['net_gmv_cny']:,.2f}  "
        f"follows {f['follows']:,}  group joins {f['group_joins']:,}",
        f"  funnel: entries {f['entries']:,} -> clicks {f['product_clicks']:,} "
        f"(CTR {num(f['click_through_rate'], '.1%')}) -> orders {f['orders']:,} "
        f"(click-to-order {num(f['click_to_order_rate'], '.1%')})",
        f"  last 10 min of event time: entries {w10['entries']:,} "
        f"({num(change['entries'], '+.1%')}), orders {w10['orders']:,} "
        f"({num(change['orders'], '+.1%')}), GMV {w10['gmv_cny']:,.2f} "
        f"({num(change['gmv_cny'], '+.1%')}); late events {operator['late_events']:,} "
        f"(grace {operator['grace_ms'] / 1000:g} s)",
    ]
    return "\n".join(lines)
