"""The ledger: an order-insensitive store of the facts every claim is computed from."""

from __future__ import annotations

import functools
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import (
    Callable,
    Collection,
    Container,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, NamedTuple, Protocol

import numpy as np

from agents.core.concurrency import LevelCurve, peak_of
from agents.core.pairs import PairDays
from agents.core.sample import AOV_SAMPLE_SIZE, bottom_k
from agents.core.seen import (
    _MASK64,
    _SPREAD,
    _SPREAD2,
    KEY_LIMIT,
    MIN_BATCH,
    TAG_LIMIT,
    TOPIC_SLOTS,
    WIDE_BYTES,
    SeenRuns,
    wide_id,
    wide_key,
)
from agents.core.sketch import DistinctUsers, FoldedFigures, QuantileSketch
from agents.core.slots import (
    SLOTS,
    SlotKeys,
    slot_int,
)
from agents.core.stats import add_moments, percentile, row_moments
from agents.core.timeline import (
    NEVER_MEMBER,
    Membership,
    presence_minutes,
    watch_intervals,
    watch_time_ms,
)
from schemas.events import (
    TOPIC_BY_TYPE,
    Event,
    GroupJoined,
    GroupLeft,
    Interaction,
    OrderPaid,
    OrderRefunded,
    ProductClicked,
    SessionEnded,
    SessionStarted,
    ViewerJoined,
    ViewerLeft,
)


@dataclass(slots=True)
class EventCounts:
    """Records seen: valid distinct events, invalid records, and repeated event ids."""

    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    #: Events older than the dedupe window of their topic: neither applied nor valid (the
    #: report's `retention`, not its `events`, whose three counts the truth files hold).
    expired: int = 0
    #: Events stamped more than the ledger's `future_tolerance_ms` ahead of the wall clock:
    #: applied (valid) but kept from moving their topic's horizon (`Ledger.apply`).
    future: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"valid": self.valid, "rejected": self.rejected, "duplicates": self.duplicates}


@dataclass(slots=True, frozen=True)
class OrderFact:
    """What the claims need of one `order_paid` event."""

    seq: int
    ts: int
    order_id: str
    session_id: str | None
    merchant_id: str
    user_id: str
    amount_cents: int
    max_unit_price_cents: int
    # For the extended claims (`size_refund_share`, `bundle_share`).
    has_apparel: bool = False
    distinct_skus: int = 1


@dataclass(slots=True, frozen=True)
class RefundFact:
    """What the claims need of one `order_refunded` event."""

    ts: int
    order_id: str
    amount_cents: int
    reason: str | None


#: A closed period's frozen claim figure (`agents.core.periods`): observed, ci_low, ci_high,
#: verdict, n, clusters.
FrozenFigure = tuple[float | None, float | None, float | None, str, int, int | None]
#: China Standard Time (UTC+8): claims.md's calendar days and months.
CST: Final = timezone(timedelta(hours=8), "CST")
#: `LIVEPULSE_REFUND_HORIZON_DAYS`' default: a refund counts for an order paid at most this
#: long before it (docs/design.md, "Worker state: what is kept").
DEFAULT_REFUND_HORIZON_DAYS: Final[int] = 90
DAY_MS: Final[int] = 86_400_000
#: Day numbers as shared int objects: the per-user rows' last-day columns (`BUYER_LAST_DAY`)
#: point at one object per day rather than one each (28 bytes a row); a day a key, so this
#: grows by one a day of event time, not with users or records.
_DAYS: dict[int, int] = {}


def _day_of(ts: int) -> int:
    """The day number of `ts` (`ts // DAY_MS`), as the shared object of that day."""
    day = ts // DAY_MS
    return _DAYS.setdefault(day, day)


def cst_month(ts_ms: int) -> str:
    """Calendar month in China Standard Time (UTC+8) of an epoch-millisecond ts, as YYYY-MM."""
    return _cst_month_of_day((ts_ms + _CST_OFFSET_MS) // DAY_MS)


_CST_OFFSET_MS: Final[int] = 8 * 3_600_000


@functools.lru_cache(maxsize=1024)
def _cst_month_of_day(cst_day: int) -> str:
    # Once per CST day number, not per order (`Ledger.apply` files every order by month).
    return datetime.fromtimestamp(cst_day * 86_400, tz=UTC).strftime("%Y-%m")


def counted_refunds(
    orders: Iterable[OrderFact], refunds: Iterable[RefundFact], horizon_ms: int | None
) -> tuple[list[RefundFact], int, int]:
    """The refunds that count (`Ledger.refund_counts`: for a payment of their order id at or
    before them and within the horizon), then how many do not: late (a payment of the id more
    than the horizon before, none within it) and unmatched (no payment of the id at or
    before them: never paid, or paid only after the refund)."""
    paid: dict[str, list[int]] = {}
    for order in orders:
        paid.setdefault(order.order_id, []).append(order.ts)
    counted: list[RefundFact] = []
    late = unmatched = 0
    for refund in refunds:
        times = paid.get(refund.order_id)
        if times is None:
            unmatched += 1
        elif horizon_ms is None or any(t <= refund.ts <= t + horizon_ms for t in times):
            counted.append(refund)
        elif any(t < refund.ts - horizon_ms for t in times):
            late += 1
        else:
            unmatched += 1
    return counted, late, unmatched


def widest_refund_horizon(ledgers: Iterable[Ledger]) -> int | None:
    """The refund horizon of ledgers read together: the widest (None, no horizon, if any has
    none), so no refund that counts in one of them is dropped."""
    horizons = [ledger.refund_horizon_ms for ledger in ledgers]
    if not horizons or any(h is None for h in horizons):
        return None
    return max(h for h in horizons if h is not None)


#: `Ledger._clock_ceiling_ms` without a cap: above any `ts` a clock gives (a `ts` above it only
#: costs a call that finds no cap).
_NO_CEILING_MS: Final[int] = 2**63

#: The contract topics (event-contract.md); `Ledger.newest_ts` and the horizons are per index.
TOPICS: tuple[str, ...] = tuple(dict.fromkeys(TOPIC_BY_TYPE.values()))
#: Each event type's topic, as an index into `TOPICS`.
_TOPIC_OF: dict[str, int] = {kind: TOPICS.index(topic) for kind, topic in TOPIC_BY_TYPE.items()}
#: The topics whose events can change a session's presence figures: sessions (its start and
#: end), views, orders (the watch time up to an order).
_PRESENCE_TOPICS: tuple[int, ...] = tuple(
    TOPICS.index(topic) for topic in ("live.sessions", "live.views", "live.orders")
)
#: The topics whose events can change a closed session's figures up to its session horizon:
#: the presence topics, interactions (`interaction_uplift`'s viewers) and groups (membership).
_SUMMARY_TOPICS: tuple[int, ...] = tuple(
    TOPICS.index(topic)
    for topic in ("live.sessions", "live.views", "live.orders", "live.interactions", "live.groups")
)
_GROUPS: int = TOPICS.index("live.groups")
#: Later than any `ts`: a floor no held lookup lowered (`Ledger.held_group_floor`).
_NO_FLOOR: int = 1 << 62
_ORDERS: int = TOPICS.index("live.orders")
_VIEWS: int = TOPICS.index("live.views")
#: The topic of questions and their replies (`interaction` events).
_INTERACTIONS: int = _TOPIC_OF["interaction"]
#: Event ids are filed and dropped by the hour of their event time.
_ID_BUCKET_MS = 3_600_000

#: `reply_latency`'s bars: a question answered within 3 s (the claim's) and within 3 min.
REPLY_BAR_MS: Final[int] = 3_000
OLD_REPLY_BAR_MS: Final[int] = 180_000
#: The operator's first-reply latency histogram: upper bounds in seconds, one more for +Inf.
REPLY_LATENCY_BOUNDS_S: Final[tuple[float, ...]] = (1, 3, 10, 30, 60, 120, 300, 600, 1800)
#: `reply_latency`'s retired sessions (`Ledger.retired_replies`): how many sessions, their
#: questions answered within 3 s, questions and answered ones, and the sums of within^2,
#: within x questions and questions^2 over them (`stats.ClusterSums` with the first).
RETIRED_REPLY_G: Final[int] = 0
RETIRED_REPLY_WITHIN_3S: Final[int] = 1
RETIRED_REPLY_QUESTIONS: Final[int] = 2
RETIRED_REPLY_ANSWERED: Final[int] = 3
RETIRED_REPLY_H2: Final[int] = 4
RETIRED_REPLY_HN: Final[int] = 5
RETIRED_REPLY_N2: Final[int] = 6
RETIRED_REPLY_COLUMNS: Final[int] = 7
#: A folded session's answered questions (`Ledger.folded_replies`), a list of ints: how many,
#: how many within `REPLY_BAR_MS`, the sum of their latencies in ms, then the count per
#: bucket of `REPLY_LATENCY_BOUNDS_S` (not cumulative, the last above every bound).
FOLDED_ANSWERED: Final[int] = 0
FOLDED_WITHIN_3S: Final[int] = 1
FOLDED_SUM_MS: Final[int] = 2
FOLDED_BUCKETS: Final[int] = 3
#: The operator's histograms of watch time per viewer pair and of order time since the start:
#: upper bounds in seconds, one more for +Inf (300 s is `orders_after_minute_5`'s boundary).
#: Here because a summarized session keeps its counts per bucket (`SessionSummary`).
WATCH_TIME_BOUNDS_S: Final[tuple[float, ...]] = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
ORDER_TIME_BOUNDS_S: Final[tuple[float, ...]] = (60, 300, 600, 1200, 1800, 3600, 7200, 14400)
#: The operator's levels above the session, as `Ledger.folded_watch` and
#: `Ledger.folded_payers` key them: ("overall", ""), ("rooms", room id), ("merchants", id).
OVERALL_LEVEL: Final[tuple[str, str]] = ("overall", "")

#: The session horizon (docs/design.md, "Worker state: what is kept"): an event naming a session
#: stamped more than this after its `session_ended` is not the session's (a view or an
#: interaction is counted in `after_session_horizon` and changes no session figure; an order is
#: an order outside a session). 7 days: longer than `post_live_tail`'s 3-day window (which it
#: must cover) so that the rare tail order a few days late stays the session's (the simulator's
#: post-session delays are exponential with a 12 h mean: one in ~1,000 is past 3 days, one in
#: ~10^6 past 7); a session is summarized that much later (docs/design.md, "The session
#: horizon").
SESSION_HORIZON_MS: Final[int] = 7 * 86_400_000
#: `post_live_tail`'s window: a session order paid after the end and at most this long after it
#: is a tail order (`extended.TAIL_WINDOW_MS` is this).
POST_LIVE_TAIL_MS: Final[int] = 3 * 86_400_000
#: Claims' constants the session fold computes with (`metrics` reads them from here): an order
#: at or after minute 5 of its session (`orders_after_minute_5`), and the price tiers of
#: `price_dwell_association` by the order's dearest unit price in cents.
FIVE_MINUTES_MS: Final[int] = 300_000
_MINUTE_MS: Final[int] = 60_000
#: The board's curves settle once their settled minutes can move on by a day or more
#: (`Ledger._settle_board_curves`).
_SETTLE_STEP_MINUTES: Final[int] = 24 * 60
#: The window start of a source's first take of settled runs (`BoardRuns.start`), and a
#: minute after every event's.
_EARLIEST_MINUTE: Final[int] = -(2**62)
_LATEST_MINUTE: Final[int] = 2**62
PRICE_TIERS: Final[tuple[tuple[str, int], ...]] = (
    ("<200", 200_00),
    ("200-500", 500_00),
    ("500-1000", 1000_00),
    (">=1000", 2**63),
)
_DAY_MS: Final[int] = 86_400_000


def price_tier(price_cents: int) -> str:
    """The `PRICE_TIERS` name of a dearest unit price in cents."""
    for name, upper in PRICE_TIERS:
        if price_cents < upper:
            return name
    return PRICE_TIERS[-1][0]


def cst_day(ts_ms: int) -> str:
    """Calendar day in China Standard Time (UTC+8) of an epoch-millisecond timestamp."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(CST).strftime("%Y-%m-%d")


#: Columns of an `interaction_uplift` row (`uplift_counts`).
UPLIFT_COLUMNS: Final[int] = 4
#: Columns of a `post_live_tail` row: tail cents, live cents.
TAIL_COLUMNS: Final[int] = 2


def uplift_counts(
    viewers: Iterable[str], interacting: Container[str], buyers: Container[str]
) -> tuple[int, int, int, int]:
    """A session's `interaction_uplift` row: interacting buyers, interacting viewers, other
    buyers, other viewers (the held session's claim and its summary count alike)."""
    ib = ip = ob = op = 0
    for user in viewers:
        bought = user in buyers
        if user in interacting:
            ip += 1
            ib += bought
        else:
            op += 1
            ob += bought
    return ib, ip, ob, op


def cst_day_start(ts_ms: int) -> int:
    """The first millisecond of the CST day of `ts_ms` (a folded session's day key: an int,
    `cst_day` of it gives the day's name)."""
    return (ts_ms + _CST_OFFSET_MS) // _DAY_MS * _DAY_MS - _CST_OFFSET_MS


def cst_month_start(month: str) -> int:
    """The first millisecond of the CST calendar month `month` (YYYY-MM)."""
    return int(datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=CST).timestamp()) * 1000


@functools.lru_cache(maxsize=256)
def cst_month_end(month: str) -> int:
    """The first millisecond after the CST calendar month `month` (YYYY-MM, as `cst_month`)."""
    year, number = int(month[:4]), int(month[5:7])
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return int(datetime(year, number, 1, tzinfo=CST).timestamp()) * 1000


#: `Ledger.month_folded_users`' columns: a user's `group_spend_multiple` rows of closed
#: (merchant, month)s summed (the four columns its `log_ratio_interval` reads, in cents and
#: counts): spend while a member at the first join, member rows, spend, rows.
MONTH_MEMBER_CENTS: Final[int] = 0
MONTH_MEMBERS: Final[int] = 1
MONTH_CENTS: Final[int] = 2
MONTH_ROWS: Final[int] = 3
#: With a user horizon (`Ledger.user_horizon_ms`), each per-user row carries one more column
#: after its own: the latest day (`ts // DAY_MS`) of an event the row was changed at. The
#: user's last active day is the maximum over their rows (`Ledger.retire_idle_users`), and
#: merging takes the maximum of the column, not the sum (`metrics.add_user_rows`).
MONTH_LAST_DAY: Final[int] = 4
#: `Ledger.folded_dwellers`' last-day column (after watch ms and pairs).
DWELL_LAST_DAY: Final[int] = 2


class MonthRow(NamedTuple):
    """A source partition's part of one (merchant, month, user) row of `group_spend_multiple`
    (`Ledger.take_closed_month_rows`): the user's earliest first join in its sessions of the
    merchant started that month (None: none there) and their spend with the merchant that
    month in its orders."""

    source: int
    merchant: str
    month: str
    user: str
    first_join_ts: int | None
    cents: int


def two_earliest(
    held: tuple[int, int | None] | None, first: int, later: int | None
) -> tuple[int, int | None]:
    """The two earliest distinct times of a pair's `held` (first, later) and another part's
    (None: none later): all `group_repurchase_30d` reads of a (merchant, user)'s orders. Any
    order of adding, and adding a part again, gives the same."""
    times = {first} if later is None else {first, later}
    if held is not None:
        times.add(held[0])
        if held[1] is not None:
            times.add(held[1])
    earliest = sorted(times)[:2]
    return earliest[0], earliest[1] if len(earliest) > 1 else None


#: A `group_repurchase_30d` pair held at its owner partition (`Ledger.first_orders_in`): its
#: first order's ts, the earliest later one (None: none), and membership at that first order
#: (None: not recorded yet; `Ledger.note_first_members`).
OwnerPair = tuple[int, int | None, bool | None]


def add_owner_part(
    held: OwnerPair | None, first: int, later: int | None, member: bool | None = None
) -> OwnerPair:
    """An owner's pair `held` with another part added (`two_earliest`) whose membership at its
    own `first` is `member` (None: not known): membership is kept for the pair's first order,
    so a part with an earlier first order leaves it not known (recorded again from that one)."""
    times = two_earliest(None if held is None else (held[0], held[1]), first, later)
    if held is not None and held[2] is not None and held[0] == times[0]:
        member = held[2]
    elif first != times[0]:
        member = None
    return times[0], times[1], member


class MonthClosed(NamedTuple):
    """A source partition's announcement that every month up to `through` (YYYY-MM) is
    closed on its side but the (merchant, month)s `still_open` (a session of theirs started
    in it not summarized); each supersedes the source's earlier ones."""

    source: int
    through: str
    still_open: frozenset[tuple[str, str]]


class FirstOrder(NamedTuple):
    """A source partition's part of one (merchant, user)'s `group_repurchase_30d` pair
    (`Ledger.take_first_orders`): the earliest order `ts` of the pair in its orders and the
    earliest later one (None: none), final there for every order up to first + 30 days, and
    whether the user was a member of the merchant's group at that first order (recorded by the
    source from the groups it reads; None: not sent, as by a worker from before session 20,
    so the owner looks it up itself)."""

    source: int
    merchant: str
    user: str
    first_ts: int
    later_ts: int | None
    member: bool | None = None


class FirstsClosed(NamedTuple):
    """A source partition's announcement that every (merchant, user) pair of its own whose
    first order + 30 days is before `cutoff_ts` has been sent (`FirstOrder`), and that no
    order stamped at or before `cutoff_ts` can reach it any more; each supersedes the
    source's earlier ones."""

    source: int
    cutoff_ts: int


class GroupFloor(NamedTuple):
    """A worker partition's announcement of the "member at ts" lookups it may still ask
    (`Ledger.group_floor_announcement`), as of its last snapshot written: `own_ts`, the oldest
    `ts` its own held state or an event still to be applied to it may look up (None: not
    known yet), and `inflight_ts`, the oldest every source partition had announced as its
    own when this one read it (the rows and first orders in flight to it are no older; None:
    not every source read yet). Each supersedes the source's earlier ones; every partition
    compacts its group events before the oldest of all partitions' two
    (`Ledger.receive_group_floor`)."""

    source: int
    own_ts: int | None
    inflight_ts: int | None


class BoardRuns(NamedTuple):
    """A source partition's settled runs of one operator level (`Ledger.take_board_runs`)
    for the minutes from `start` to `through` (exclusive), for the level's owner partition:
    `runs` flattened (count, first minute, minute after the last), `slack` flattened (the
    largest count of a run dropped there, first minute, minute after the last; none unless
    the level kept more than `board_runs_kept` runs between two takes). Every other minute
    of the window counts 0 there. A window sent again overwrites the one held."""

    source: int
    kind: str
    name: str
    start: int
    through: int
    runs: tuple[int, ...]
    slack: tuple[int, ...]


class BoardSettled(NamedTuple):
    """A source partition's announcement that every settled run of every level before minute
    `through` has been sent (`BoardRuns`), and that its counts there can no longer change;
    each supersedes the source's earlier ones."""

    source: int
    through: int


def add_board_runs_in_flight(ledger: Ledger, runs: BoardRuns) -> None:
    """Merge a level's runs taken and not yet held by their owner into `ledger`'s curve of
    the level (a view's ledger: its `board_curves` its own), as the owner will hold them."""
    held = Ledger.__new__(Ledger)
    held._init_board_exchange()
    held.receive_board_runs(runs)
    level = (runs.kind, runs.name)
    owned = held.owned_curve(level)
    if owned is None:
        return
    own = ledger.board_curves.get(level)
    ledger.board_curves[level] = owned if own is None else LevelCurve.merged([own, owned])


def board_sent_by(ledgers: Iterable[Ledger]) -> dict[int, int | None]:
    """Each worker partition's minute its levels' runs were taken through (`board_sent_to`),
    by its number, for `Ledger.curves_of` in a merge of these ledgers."""
    return {x.board_source: x.board_sent_to for x in ledgers if x.board_source is not None}


def board_owner_key(level: tuple[str, str]) -> str:
    """The key whose owner partition folds a level's settled runs (as a user id keys rows)."""
    return f"{level[0]}:{level[1]}"


# `Ledger.apply` dispatches on `type(event) is A`, not `isinstance` (issue 19): an event's
# class is exactly one of the schema's (decoded by `schemas`, never subclassed), and an
# `isinstance` that misses a pydantic model class costs ~0.3 us (its metaclass defines
# `__instancecheck__`, so every miss is a call), against ~0.03 us for an identity test; the
# chain missed up to eight times an event. `OperatorBoard.observe` and `ScreenState.observe`
# do the same (tests/agents/core/test_dispatch.py).

#: Bits of a packed presence record (`Presence`) that hold the ledger's arrival number.
_SEQ_BITS = 48
_SEQ_LIMIT = 1 << _SEQ_BITS
#: A user's records stay a tuple up to this many, then become a list (appends in O(1)).
_TUPLE_MAX = 16
#: An `array("i")`'s bounds (`Presence`'s first records, from the session's bases).
_INT32_MIN: Final[int] = -(1 << 31)
_INT32_MAX: Final[int] = (1 << 31) - 1


def _pack(ts: int, seq: int, joined: bool) -> int:
    """One presence record as one int that sorts as `(ts, seq, joined)` does (any sign of ts)."""
    if not 0 <= seq < _SEQ_LIMIT:
        raise OverflowError(f"arrival number {seq} does not fit in {_SEQ_BITS} bits")
    return (((ts << _SEQ_BITS) | seq) << 1) | joined


def _unpack(packed: int) -> tuple[int, int, bool]:
    return packed >> (_SEQ_BITS + 1), (packed >> 1) & (_SEQ_LIMIT - 1), bool(packed & 1)


def _id_key(event_id: str) -> int:
    """An event id as an int, one-to-one: its UTF-8 bytes read as a base-256 number behind a
    leading 1 byte (which keeps ids that differ only by leading NUL characters apart)."""
    return int.from_bytes(b"\x01" + event_id.encode(), "big")


#: In the dedupe set an id with a `wide_key` is that key plus `_WIDE_TAG` (read once, when it
#: arrives): from `_WIDE_TAG` to `_WIDE_END` (256-bit ints), where no `_id_key` is (theirs
#: have `8 * k + 1` bits), so the set's keys stay one-to-one with the ids.
_WIDE_TAG: Final[int] = 1 << 255
#: A key below this is its own 64-bit mix in the seen runs' filter (`SeenRuns.might_hold`:
#: the xor of its 64-bit words is the key itself).
_FILTER_DIRECT: Final[int] = 1 << 64
_WIDE_END: Final[int] = 1 << 256


def _set_key(key: int) -> int:
    """An `_id_key` as the dedupe set holds it (`_WIDE_TAG`)."""
    if key < KEY_LIMIT or _WIDE_TAG <= key < _WIDE_END:
        return key
    wide = wide_key(key.to_bytes((key.bit_length() + 7) // 8, "big")[1:].decode())
    return key if wide < 0 else _WIDE_TAG + wide


def _from_set_key(key: int) -> int:
    """`_set_key`'s inverse."""
    return _id_key(wide_id(key - _WIDE_TAG)) if _WIDE_TAG <= key < _WIDE_END else key


class Presence(SlotKeys, Mapping[str, list[tuple[int, int, bool]]]):
    """user -> [(ts, seq, is_join)] in arrival order (sort by (ts, seq) to use), stored by slot.

    Why: one entry per (session, user) is most of the ledger's state per viewer. A user gets a
    slot (`agents.core.slots`: the user's dict entry holds a slot int every session shares) and
    their first record is two int32s at that slot (its `ts` and `seq << 1 | joined`, each less
    the session's first record's, `_base_ts` and `_base_sj`: a session's records lie within days
    and a few hundred million arrivals of its first, issue 19: 8 B a viewer where two int64s were
    16); a first record that does not fit, and further records (a leave, a rejoin) are packed
    ints in an overflow by slot, one int (one more record) or a tuple of ints, a list past
    `_TUPLE_MAX`. ~34 B for a viewer who is there against ~62 for one int in a dict (and ~210
    for a list of tuples); reading decodes them. Slots follow first arrival, so iterating the
    users is iterating the slots in order.
    """

    __slots__ = (
        "_slots",
        "_ts",
        "_sj",
        "_base_ts",
        "_base_sj",
        "_more",
        "_flags",
        "_interacting_only",
    )

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        #: Per slot, 1 if the user interacted (`interact`; a byte, where a set entry was 8-27 B
        #: a viewer); as long as the last flagged slot (the slots after it: 0).
        self._flags = bytearray()
        #: Interacting users with no record (yet): a join moves them to their slot's flag.
        self._interacting_only: set[str] = set()
        #: The first record of each slot: its ts less `_base_ts`, and `seq << 1 | joined` less
        #: `_base_sj` (-1: the first record is in `_more`, one of them outside int32).
        self._ts: array[int] = array("i")
        self._sj: array[int] = array("i")
        #: The first slot's first record's `ts` and `seq << 1` (set by its `add` or `_put`).
        self._base_ts = 0
        self._base_sj = 0
        #: slot -> the records after the first (packed as `_pack`), in arrival order.
        self._more: dict[int, int | tuple[int, ...] | list[int]] = {}

    def add(self, user: str, ts: int, seq: int, joined: bool) -> None:
        if not 0 <= seq < _SEQ_LIMIT:
            raise OverflowError(f"arrival number {seq} does not fit in {_SEQ_BITS} bits")
        slots = self._slots
        slot = slots.get(user)
        if slot is None:
            sj = self._sj
            n = len(sj)
            slot = slots[user] = SLOTS[n] if n < len(SLOTS) else slot_int(n)
            if self._interacting_only and user in self._interacting_only:
                self._interacting_only.discard(user)
                self._flag(slot)
            if not n:
                self._base_ts, self._base_sj = ts, seq << 1
            # Outside int32 from the bases (weeks after the session's first record, or a
            # session older than 2**30 of the ledger's events; seq only grows): the overflow.
            try:
                self._ts.append(ts - self._base_ts)
            except OverflowError:
                self._ts.append(0)
                sj.append(-1)
                self._more[slot] = (((ts << _SEQ_BITS) | seq) << 1) | joined
                return
            rel = (seq << 1 | joined) - self._base_sj
            try:
                if rel < 0:  # an arrival before the first slot's (a merged presence's)
                    raise OverflowError
                sj.append(rel)
            except OverflowError:
                self._ts[-1] = 0
                sj.append(-1)
                self._more[slot] = (((ts << _SEQ_BITS) | seq) << 1) | joined
            return
        # `_pack`, inlined (once per view event).
        record = (((ts << _SEQ_BITS) | seq) << 1) | joined
        more = self._more
        held = more.get(slot)
        if held is None:
            more[slot] = record
        elif isinstance(held, int):
            more[slot] = (held, record)
        elif isinstance(held, list):
            held.append(record)
        elif len(held) < _TUPLE_MAX:
            more[slot] = (*held, record)
        else:
            more[slot] = [*held, record]

    def slot_table(self) -> dict[str, int]:
        """user -> slot, for a table by slot of the same session to read and not write
        (`screen.FirstEntries`: one dict entry a viewer, not one per table)."""
        return self._slots

    def interact(self, user: str) -> None:
        """Note a (non-reply) interaction of `user` in the session."""
        slot = self._slots.get(user)
        if slot is None:
            self._interacting_only.add(user)
        else:
            self._flag(slot)

    def _flag(self, slot: int) -> None:
        flags = self._flags
        if slot >= len(flags):
            flags.extend(bytes(slot + 1 - len(flags)))
        flags[slot] = 1

    def interacting(self, user: object) -> bool:
        """Whether `user` interacted (`interact`)."""
        slot = self._slots.get(user)  # type: ignore[call-overload]
        if slot is None:
            return user in self._interacting_only
        return slot < len(self._flags) and bool(self._flags[slot])

    def interacting_users(self) -> Iterator[str]:
        """The interacting users: those with records in slot order, then the others."""
        # The slots past the last flagged one: 0.
        for user, flag in zip(self._slots, self._flags, strict=False):
            if flag:
                yield user
        yield from self._interacting_only

    def interacting_count(self) -> int:
        return len(self._flags) - self._flags.count(0) + len(self._interacting_only)

    def packed(self, user: str) -> list[int]:
        """`user`'s records packed (`_pack`: they sort as `(ts, seq, joined)`), in arrival
        order; empty if none (the live screen's page reads them so, `page._packed_records`)."""
        slot = self._slots.get(user)
        return [] if slot is None else self._records(slot)

    def _records(self, slot: int) -> list[int]:
        """A slot's records, packed (`_pack`), in arrival order."""
        sj = self._sj[slot]
        out = (
            []
            if sj < 0
            else [((self._ts[slot] + self._base_ts) << (_SEQ_BITS + 1)) | (sj + self._base_sj)]
        )
        held = self._more.get(slot)
        if held is not None:
            if isinstance(held, int):
                out.append(held)
            else:
                out.extend(held)
        return out

    def earliest_ts(self) -> int | None:
        """The oldest `ts` of any record (None: no record): the least of the slots' first
        records' and of the overflow's packed ints, which sort as `(ts, seq, joined)`
        (`Ledger._group_lookup_floor`, once a day)."""
        # A slot's first record (`_ts`, where `_sj` is not -1), then the overflow's records.
        base = self._base_ts
        firsts = [ts + base for ts, sj in zip(self._ts, self._sj, strict=True) if sj >= 0]
        least = min(
            (held if isinstance(held, int) else min(held) for held in self._more.values()),
            default=None,
        )
        later = None if least is None else least >> (_SEQ_BITS + 1)
        earliest = min(firsts, default=None)
        if earliest is None or (later is not None and later < earliest):
            return later
        return earliest

    def joined_users(self) -> list[str]:
        """The users with at least one join record."""
        more = self._more
        out: list[str] = []
        for slot, (user, sj) in enumerate(zip(self._slots, self._sj, strict=True)):
            if sj >= 0 and sj & 1:
                out.append(user)
                continue
            held = more.get(slot)
            if held is not None and (
                held & 1 if isinstance(held, int) else any(record & 1 for record in held)
            ):
                out.append(user)
        return out

    def first_joins(self) -> list[tuple[str, int]]:
        """(user, ts of their first join) for each user with a join, by user: read off the
        packed records (a join's has its low bit set; they sort as `(ts, seq, joined)`, so the
        least is the first join), none decoded into a tuple (issue 19, session 19: a day's
        freeze reads every viewer of its sessions, `SessionFacts.first_joins`)."""
        slots, more, ts_of, sj_of = self._slots, self._more, self._ts, self._sj
        # The first records are less the bases (`_base_sj` is even: the joined bit is `sj`'s).
        base_ts, base_sj = self._base_ts, self._base_sj
        shift = _SEQ_BITS + 1
        out: list[tuple[str, int]] = []
        for user in sorted(slots):
            slot = slots[user]
            sj = sj_of[slot]
            held = more.get(slot)
            if held is None:  # the usual viewer: one record
                if sj >= 0 and sj & 1:
                    out.append((user, ts_of[slot] + base_ts))
                continue
            records = [held] if isinstance(held, int) else list(held)
            if sj >= 0:  # (-1: the first record is in the overflow)
                records.append(((ts_of[slot] + base_ts) << shift) | (sj + base_sj))
            joins = [record for record in records if record & 1]
            if joins:
                out.append((user, min(joins) >> shift))
        return out

    def __getitem__(self, user: str) -> list[tuple[int, int, bool]]:
        slot = self._slots[user]
        sj = self._sj[slot]
        held = self._more.get(slot)
        if held is None and sj >= 0:  # the usual viewer: one record
            return [(self._ts[slot] + self._base_ts, (sj + self._base_sj) >> 1, bool(sj & 1))]
        # _unpack inlined: reports decode every record of every session.
        shift, mask = _SEQ_BITS + 1, _SEQ_LIMIT - 1
        return [(r >> shift, (r >> 1) & mask, bool(r & 1)) for r in self._records(slot)]

    def __getstate__(self) -> dict[str, object]:
        # The users in slot order (the slot ints are shared, `slot_int`, not pickled), the
        # first records as int64s (bases added back; the format before the int32 arrays), as
        # little-endian bytes, the overflow by slot number.
        ts = np.frombuffer(self._ts, dtype=np.int32).astype("<i8")
        sj = np.frombuffer(self._sj, dtype=np.int32).astype("<i8")
        held = sj >= 0
        ts[held] += self._base_ts
        sj[held] += self._base_sj
        return {
            "users": list(self._slots),
            "ts": ts.tobytes(),
            "sj": sj.tobytes(),
            "more": self._more,
            "flags": bytes(self._flags),
            "interacting_only": self._interacting_only,
        }

    def __setstate__(self, state: object) -> None:
        self.__init__()  # type: ignore[misc]
        if isinstance(state, tuple):  # version 10 and older: (None, {"_packed": user -> held})
            for user, held in state[1]["_packed"].items():
                self._put(user, [held] if isinstance(held, int) else list(held))
            return
        assert isinstance(state, dict)
        more = {slot_int(slot): held for slot, held in state["more"].items()}
        self._flags = bytearray(state["flags"])
        self._interacting_only = state["interacting_only"]
        ts = np.frombuffer(state["ts"], dtype="<i8").astype(np.int64)
        sj = np.frombuffer(state["sj"], dtype="<i8").astype(np.int64)
        held = sj >= 0
        ts[~held] = 0
        if held.any():
            base_ts, base_sj = int(ts[held][0]), int(sj[held].min()) & ~1
            ts[held] -= base_ts
            sj[held] -= base_sj
            fits = ts.min() >= _INT32_MIN and ts.max() <= _INT32_MAX
            if not (fits and sj.min() >= -1 and sj.max() <= _INT32_MAX):
                # A first record outside int32 from the first slot's: user by user, as saved.
                for user, slot in zip(state["users"], range(len(sj)), strict=True):
                    first = sj[slot] >= 0
                    packed = (
                        [(int(ts[slot] + base_ts) << (_SEQ_BITS + 1)) | int(sj[slot] + base_sj)]
                        if first
                        else []
                    )
                    rest = more.get(slot)
                    if rest is not None:
                        packed.extend([rest] if isinstance(rest, int) else rest)
                    self._put(user, packed)
                return
            self._base_ts, self._base_sj = base_ts, base_sj
        self._slots = {user: slot_int(n) for n, user in enumerate(state["users"])}
        self._ts = array("i", ts.astype(np.int32).tobytes())
        self._sj = array("i", sj.astype(np.int32).tobytes())
        self._more = more

    def _put(self, user: str, records: list[int]) -> None:
        """A user new to this presence with their packed records, in arrival order."""
        first, rest = records[0], records[1:]
        n = len(self._sj)
        slot = self._slots[user] = slot_int(n)
        ts = first >> (_SEQ_BITS + 1)
        sj = first & ((_SEQ_LIMIT << 1) - 1)
        if not n:
            self._base_ts, self._base_sj = ts, sj & ~1
        ts -= self._base_ts
        sj -= self._base_sj
        if _INT32_MIN <= ts <= _INT32_MAX and 0 <= sj <= _INT32_MAX:
            self._ts.append(ts)
            self._sj.append(sj)
        else:
            self._ts.append(0)
            self._sj.append(-1)
            rest = records
        if rest:
            self._more[slot] = _held(rest)

    @classmethod
    def merged(cls, parts: Sequence[tuple[Presence, int]]) -> Presence:
        """One presence from several `(presence, seq offset)`, sharing no mutable container.

        A user found in one part keeps its records as they are (their arrival numbers are
        only ever compared with each other); a user found in several gets each part's
        records with that part's offset added to their arrival numbers, so that they sort
        as `(ts, then the part's order, then the part's own arrival order)`.
        """
        owners: dict[str, int] = {}
        for presence, _offset in parts:
            for user in presence._slots:
                owners[user] = owners.get(user, 0) + 1
        gathered: dict[str, list[int]] = {}
        for presence, offset in parts:
            shift = offset << 1  # a packed record's arrival number starts at bit 1
            for user, slot in presence._slots.items():
                records = presence._records(slot)
                if owners[user] > 1:
                    for record in records:
                        if (record >> 1) % _SEQ_LIMIT + offset >= _SEQ_LIMIT:
                            raise OverflowError(f"arrival numbers do not fit in {_SEQ_BITS} bits")
                    records = [record + shift for record in records]
                earlier = gathered.get(user)
                if earlier is None:
                    gathered[user] = records
                else:
                    earlier.extend(records)
        out = cls()
        for user, records in gathered.items():
            out._put(user, records)
        return out


class InteractingUsers(AbstractSet[str]):
    """A session's interacting users (`SessionFacts.interacting_users`) while its presence is
    held raw: a view of the presence's flags (`Presence.interact`), added to with `add` and
    `update` as the set it replaces. It keeps its presence: a view still reads (and takes)
    the same users after the session's presence is replaced; the ledger turns it into a set
    then (`SessionFacts.settle_interacting`), so the raw presence is freed."""

    __slots__ = ("_presence",)

    def __init__(self, presence: Presence) -> None:
        self._presence = presence

    @classmethod
    def _from_iterable(cls, users: Iterable[Any]) -> set[Any]:
        return set(users)  # `|`, `&`, `-` give plain sets

    def add(self, user: str) -> None:
        self._presence.interact(user)

    def update(self, users: Iterable[str]) -> None:
        for user in users:
            self._presence.interact(user)

    def __contains__(self, user: object) -> bool:
        return self._presence.interacting(user)

    def __iter__(self) -> Iterator[str]:
        return self._presence.interacting_users()

    def __len__(self) -> int:
        return self._presence.interacting_count()


def _held(records: list[int]) -> int | tuple[int, ...] | list[int]:
    """Packed records in the form `Presence.add` would have left them."""
    if len(records) == 1:
        return records[0]
    if len(records) <= _TUPLE_MAX:
        return tuple(records)
    return records


#: Bits of a folded (session, user)'s watch time in its packed int (`FoldedPresence`).
_WATCH_BITS = 42


def bucket_of(value_ms: int, bounds_s: Sequence[float]) -> int:
    """The index of a value's bucket in `bounds_s` (the first bound in seconds it is at most;
    one past the last above every bound), as the operator's histograms count it. The bounds
    ascend (`WATCH_TIME_BOUNDS_S`, `ORDER_TIME_BOUNDS_S`): found by bisection (issue 19: once
    per viewer and order of every session summarized)."""
    return bisect_left(bounds_s, value_ms / 1000)


def reply_bucket(latency_ms: int) -> int:
    """The index of a latency's bucket in `REPLY_LATENCY_BOUNDS_S` (the first bound it is at
    most, in seconds; one past the last above every bound)."""
    seconds = latency_ms / 1000
    for i, bound in enumerate(REPLY_LATENCY_BOUNDS_S):
        if seconds <= bound:
            return i
    return len(REPLY_LATENCY_BOUNDS_S)


class FoldedPresence:
    """A closed session's presence once nothing can change it (docs/design.md, "Worker state:
    what is kept"): per user with a join, the first join's ts and the total watch time, one
    int; the watch time up to each order placed before the end; the count of joins; and the
    concurrency by minute. Every figure that reads presence gets from it what it got from
    the records, to the millisecond.

    Why: the records of a session's viewers are most of the state, and they stop changing once
    the session has ended and the horizon has passed its end (an event older is expired). A
    view that still comes (a join after the end: it is later than the horizon) counts as a
    join and may be a user's first; it adds no watch time (none counts past the end).
    """

    __slots__ = ("_users", "entries", "minutes", "_watch_before")

    def __init__(self) -> None:
        self._users: dict[str, int] = {}
        self.entries = 0
        self.minutes: dict[int, int] = {}
        # (user, order ts) -> watch ms up to it, for orders before the session's end.
        self._watch_before: dict[tuple[str, int], int] = {}

    @classmethod
    def fold(
        cls,
        presence: Presence,
        close_ts: int,
        ended_ts: int | None,
        order_points: Iterable[tuple[str, int]],
    ) -> FoldedPresence:
        """The summary of `presence`, with the watch time up to each (user, ts) given."""
        out = cls()
        diff: Counter[int] = Counter()
        for user in presence:
            records = presence[user]
            joins = [ts for ts, _seq, is_join in records if is_join]
            if not joins:
                continue  # leaves only: no viewer, no watch time, no entry
            out.entries += len(joins)
            intervals, _open = watch_intervals(records, close_ts, ended_ts)
            presence_minutes(diff, intervals)
            watched = sum(end - start for start, end in intervals)
            out._users[user] = (min(joins) << _WATCH_BITS) | watched
        for user, ts in order_points:
            if user in presence:
                out._watch_before[(user, ts)] = watch_time_ms(
                    presence[user], close_ts, ended_ts, until_ts=ts
                )
        out.minutes = {minute: n for minute, n in sorted(diff.items()) if n}
        return out

    def add(self, user: str, ts: int, seq: int, joined: bool) -> None:
        """A view of the session after it was folded (never before its end, see the class)."""
        del seq
        if not joined:
            return
        self.entries += 1
        held = self._users.get(user)
        if held is None or ts < held >> _WATCH_BITS:
            watched = 0 if held is None else held & ((1 << _WATCH_BITS) - 1)
            self._users[user] = (ts << _WATCH_BITS) | watched

    def joined_users(self) -> list[str]:
        return list(self._users)

    def first_join_ts(self, user: str) -> int | None:
        held = self._users.get(user)
        return None if held is None else held >> _WATCH_BITS

    def earliest_join_ts(self) -> int | None:
        """The oldest first join of any user (None: no user): the least packed int, which
        sorts by its first join (`Ledger._group_lookup_floor`, once a day)."""
        least = min(self._users.values(), default=None)
        return None if least is None else least >> _WATCH_BITS

    def watch_ms(self, user: str, until_ts: int | None = None) -> int:
        if until_ts is not None:
            before = self._watch_before.get((user, until_ts))
            if before is not None:
                return before
        # An order at or after the end (the only kind that can come after the fold) sees
        # the whole watch time: none counts past the end.
        held = self._users.get(user)
        return 0 if held is None else held & ((1 << _WATCH_BITS) - 1)

    def __contains__(self, user: object) -> bool:
        return user in self._users

    def __len__(self) -> int:
        return len(self._users)

    @classmethod
    def combined(cls, parts: Sequence[FoldedPresence]) -> FoldedPresence:
        """Several folds of one session id (a producer that keyed its views apart): joins and
        concurrency added, a user's first join the earliest and watch times added (exact
        when each user's views were in one part)."""
        out = cls()
        minutes: Counter[int] = Counter()
        mask = (1 << _WATCH_BITS) - 1
        for part in parts:
            out.entries += part.entries
            minutes.update(part.minutes)
            out._watch_before.update(part._watch_before)
            for user, held in part._users.items():
                known = out._users.get(user)
                if known is None:
                    out._users[user] = held
                else:
                    first = min(known >> _WATCH_BITS, held >> _WATCH_BITS)
                    out._users[user] = (first << _WATCH_BITS) | ((known & mask) + (held & mask))
        out.minutes = {minute: n for minute, n in sorted(minutes.items()) if n}
        return out


#: Indices of `SessionSummary.share_sums` (the two shares of session orders with a two-way
#: (session, buyer) interval, `orders_after_minute_5` and `group_order_share`): per pair
#: (session, buyer) sums over the session's buyers, and the session's own totals.
SHARE_PAIRS: Final[int] = 0  # (session, buyer) pairs: clusters of the pair clustering
SHARE_N2: Final[int] = 1  # sum of n^2 over pairs (n: the pair's orders)
SHARE_AFTER5_H2: Final[int] = 2  # sum of h^2, h: the pair's orders at or after minute 5
SHARE_AFTER5_HN: Final[int] = 3  # sum of h n
SHARE_MEMBER_H2: Final[int] = 4  # sum of h^2, h: the pair's orders by a group member
SHARE_MEMBER_HN: Final[int] = 5  # sum of h n
#: Indices of a user's running totals of folded session orders (`Ledger.folded_buyers`).
BUYER_ORDERS: Final[int] = 0
BUYER_AFTER5: Final[int] = 1
BUYER_MEMBER: Final[int] = 2
#: Its last-day column, with a user horizon only (`MONTH_LAST_DAY`).
BUYER_LAST_DAY: Final[int] = 3
#: The user id under which a part's per-user rows carry the retired users' cluster sums
#: (`Ledger.retire_idle_users`): the empty id, which the event contract rules out.
RETIRED_USERS: Final[str] = ""
#: `Ledger.retired_buyers`' columns: clusters G, then over them sums of n^2, h^2 and h n of
#: the orders at or after minute 5, h^2 and h n of the members' orders (n: the user's orders).
RETIRED_G, RETIRED_N2, RETIRED_AFTER5_H2, RETIRED_AFTER5_HN = 0, 1, 2, 3
RETIRED_MEMBER_H2, RETIRED_MEMBER_HN = 4, 5
#: `LIVEPULSE_USER_HORIZON_DAYS`' default: a user whose folded rows have not changed for this
#: long is retired into the intervals' cluster sums (longer than every fixture and truth test).
DEFAULT_USER_HORIZON_DAYS: Final[int] = 180
#: The moments of `group_spend_multiple`'s 4-column user rows kept for the retired users:
#: G, the first, second and fourth moments (index tuples of the columns, in this order).
SPEND_MOMENTS: Final[tuple[tuple[int, ...], ...]] = (
    (),
    *((j,) for j in range(4)),
    *((j, k) for j in range(4) for k in range(j, 4)),
    *(
        (j, k, l, m)
        for j in range(4)
        for k in range(j, 4)
        for l in range(k, 4)  # noqa: E741 - the moment's indices
        for m in range(l, 4)
    ),
)
#: The shares of session orders folded per summarized session (`Ledger.folded_shares`): the
#: `SessionSummary` attribute of its hits, the `SHARE_*` indices of its pair sums h^2 and h n.
#: Each folded row: hits, orders, then the session clustering's `ClusterSums` (1, h^2, h n,
#: n^2), then the pair clustering's (pairs, sum h^2, sum h n, sum n^2).
FOLDED_SHARES: Final[tuple[tuple[str, int, int], ...]] = (
    ("after_5min", SHARE_AFTER5_H2, SHARE_AFTER5_HN),
    ("member_orders", SHARE_MEMBER_H2, SHARE_MEMBER_HN),
)


class _PickledBySlot:
    """Pickled as its slots by name, and restored over a fresh instance: a slot a state from
    an older version lacks keeps its default (a summary from before the board's parts,
    snapshot version 6, gets them empty)."""

    __slots__: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, object]:
        # A slot left unset (a test writing an older version's state) is left out.
        return {name: getattr(self, name) for name in self.__slots__ if hasattr(self, name)}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]
        for name in self.__slots__:
            if name in state:
                setattr(self, name, state[name])


#: Columns of a level's retired summaries (`Ledger.retired_levels`, `Ledger._retire_summaries`):
#: what the operator board adds of a session past its table (`OperatorBoard._summary_parts`),
#: then its watch times' [sum in ms, count per bucket of `WATCH_TIME_BOUNDS_S`], its order
#: offsets' (`ORDER_TIME_BOUNDS_S`) and its folded answered questions' [sum in ms, count per
#: bucket of `REPLY_LATENCY_BOUNDS_S`].
(
    RETIRED_SESSIONS,
    RETIRED_ENTRIES,
    RETIRED_VIEWERS,
    RETIRED_BUYERS,
    RETIRED_INTERACTING,
    RETIRED_ORDERS,
    RETIRED_GMV,
    RETIRED_GROUP_JOINS,
    RETIRED_REFUNDS,
    RETIRED_REFUNDED,
) = range(10)
RETIRED_WATCH: Final[int] = 10
RETIRED_OFFSETS: Final[int] = RETIRED_WATCH + len(WATCH_TIME_BOUNDS_S) + 2
RETIRED_REPLIES: Final[int] = RETIRED_OFFSETS + len(ORDER_TIME_BOUNDS_S) + 2
RETIRED_COLUMNS: Final[int] = RETIRED_REPLIES + len(REPLY_LATENCY_BOUNDS_S) + 2


class SessionSummary(_PickledBySlot):
    """A closed session once the session horizon has passed (docs/design.md, "Worker state:
    what is kept"): what every session claim and its interval read of it, as counts and
    integer sums, never a value per viewer or per order. It replaces the session's presence;
    its orders and interacting users are dropped.

    - `orders`, `after_5min`, `member_orders`: its session orders, those at or after minute 5,
      those by a member of its merchant's group at the order's `ts`; `share_sums` the
      (session, buyer) pair sums of both shares (`SHARE_*`); per buyer the totals are in the
      ledger (`Ledger.folded_buyers`), since a buyer orders in many sessions;
    - `uplift`: `interaction_uplift`'s row (interacting buyers, interacting pairs, other
      buyers, other pairs) and `viewers`, the session's viewers;
    - `gmv_cents` and `days` (CST day start ms -> [GMV cents, orders]): `live_aov`'s clusters;
    - `tail`: `post_live_tail`'s (tail cents, live cents, tail orders, live orders, and the
      amounts' count, sum and sum of squares);
    - `dwell`: `group_member_dwell`'s member pairs, their watch ms and its sum of squares (per
      member the totals are in `Ledger.folded_dwellers`);
    - `entries`: the operator's joins (`FoldedPresence`) and `peak` the session's own
      concurrency peak: its concurrency by minute is added to its levels' curves
      (`Ledger.board_curves`), `minutes` is left empty (a version 9 state's are moved there);
    - the operator board's other parts of it, final at the summary (its buyers are
      `share_sums[SHARE_PAIRS]`, its interacting viewers `uplift[1]`): `watch` the viewers'
      watch times as [sum in ms, count per bucket of `WATCH_TIME_BOUNDS_S`] and
      `watch_median_ms` their exact median (per room, merchant and overall the values are in
      `Ledger.folded_watch`'s sketches, the buyers in `Ledger.folded_payers`); `order_minutes`
      (whole minute since the start -> orders paid by the end) and `order_offsets` ([sum in
      ms, count per bucket of `ORDER_TIME_BOUNDS_S`]); `group_joins`.
    """

    __slots__ = (
        "after_5min",
        "days",
        "dwell",
        "entries",
        "gmv_cents",
        "group_joins",
        "member_orders",
        "minutes",
        "order_minutes",
        "order_offsets",
        "orders",
        "peak",
        "share_sums",
        "tail",
        "uplift",
        "viewers",
        "watch",
        "watch_median_ms",
    )

    def __init__(self) -> None:
        self.viewers = 0
        self.uplift: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.orders = 0
        self.after_5min = 0
        self.member_orders = 0
        self.share_sums: list[int] = [0] * 6
        self.gmv_cents = 0
        self.days: dict[int, list[int]] = {}
        self.tail: list[int] = [0] * 7
        self.dwell: list[int] = [0, 0, 0]
        self.minutes: dict[int, int] = {}
        self.peak = 0
        self.entries = 0
        self.watch: list[int] = [0] * (len(WATCH_TIME_BOUNDS_S) + 2)
        self.watch_median_ms: float | None = None
        self.order_minutes: dict[int, int] = {}
        self.order_offsets: list[int] = [0] * (len(ORDER_TIME_BOUNDS_S) + 2)
        self.group_joins = 0

    def add(self, user: str, ts: int, seq: int, joined: bool) -> None:
        """A view of the session after its horizon: not the session's (`Ledger.apply` counts
        it before it gets here)."""
        del user, ts, seq, joined

    def joined_users(self) -> list[str]:
        return []

    def watch_ms(self, user: str, until_ts: int | None = None) -> int:
        del user, until_ts
        return 0

    def __contains__(self, user: object) -> bool:
        return False

    def __len__(self) -> int:
        return self.viewers

    def __setstate__(self, state: dict[str, object]) -> None:
        super().__setstate__(state)
        if "peak" not in state:  # version 9 or older: its minutes (moved by the ledger's load)
            self.peak = peak_of(self.minutes)[0]

    @classmethod
    def combined(cls, parts: Sequence[SessionSummary]) -> SessionSummary:
        """Several summaries of one session id (a producer that keyed its events apart):
        counts and sums added (exact when each part holds whole (session, buyer) pairs)."""
        out = cls()
        for part in parts:
            out.viewers += part.viewers
            out.uplift = (
                out.uplift[0] + part.uplift[0],
                out.uplift[1] + part.uplift[1],
                out.uplift[2] + part.uplift[2],
                out.uplift[3] + part.uplift[3],
            )
            out.orders += part.orders
            out.after_5min += part.after_5min
            out.member_orders += part.member_orders
            out.share_sums = [a + b for a, b in zip(out.share_sums, part.share_sums, strict=True)]
            out.gmv_cents += part.gmv_cents
            for day, (gmv, n) in part.days.items():
                held = out.days.setdefault(day, [0, 0])
                held[0] += gmv
                held[1] += n
            out.tail = [a + b for a, b in zip(out.tail, part.tail, strict=True)]
            out.dwell = [a + b for a, b in zip(out.dwell, part.dwell, strict=True)]
            minutes = Counter(out.minutes)
            minutes.update(part.minutes)
            out.minutes = {minute: n for minute, n in sorted(minutes.items()) if n}
            out.entries += part.entries
            # Its parts' minutes are in the levels' curves: the session's own peak is at
            # least the largest part's (a producer that keyed its views apart).
            out.peak = max(out.peak, part.peak)
            out.watch = [a + b for a, b in zip(out.watch, part.watch, strict=True)]
            order_minutes = Counter(out.order_minutes)
            order_minutes.update(part.order_minutes)
            out.order_minutes = dict(sorted(order_minutes.items()))
            out.order_offsets = [
                a + b for a, b in zip(out.order_offsets, part.order_offsets, strict=True)
            ]
            out.group_joins += part.group_joins
        out.days = dict(sorted(out.days.items()))
        # The median of the parts' values together is not in their sums: the largest part's
        # (a session id summarized in several inputs only when a producer keyed its events
        # apart; its levels' figures read the sketches, which merge exactly).
        largest = max(parts, key=lambda part: part.viewers, default=None)
        out.watch_median_ms = None if largest is None else largest.watch_median_ms
        return out


@dataclass(slots=True)
class SessionFacts:
    """Everything known about one session id, whatever order its events arrived in."""

    started_ts: int | None = None
    room_id: str | None = None
    merchant_id: str | None = None
    ended_ts: int | None = None
    last_ts: int = -1
    # user -> [(ts, seq, is_join)] in arrival order; sorted by (ts, seq) when used. Folded
    # (`FoldedPresence`) once the session has ended and the horizon has passed its end.
    # Summarized (`SessionSummary`, its orders and interacting users dropped) once the
    # session horizon (its end + `SESSION_HORIZON_MS`) has passed every topic's horizon.
    presence: Presence | FoldedPresence | SessionSummary = field(default_factory=Presence)
    #: A view of the raw presence's flags (`InteractingUsers`) while it is held, else a set.
    interacting_users: set[str] | InteractingUsers = field(default_factory=set)
    orders: list[OrderFact] = field(default_factory=list)
    #: With the session fold, a started session with no `session_ended` is abandoned once its
    #: newest event + `SESSION_HORIZON_MS` is behind every summary topic's horizon
    #: (`Ledger._abandon_sessions`): its newest event's `ts` then, fixed (`last_ts` stops
    #: there), and its session horizon is that + `SESSION_HORIZON_MS`. Still a session with
    #: no end for every claim. None: not abandoned.
    abandoned_ts: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.presence, Presence) and not self.interacting_users:
            self.interacting_users = InteractingUsers(self.presence)

    def settle_interacting(self) -> None:
        """The interacting users as a set of their own (before the raw presence is replaced)."""
        if isinstance(self.interacting_users, InteractingUsers):
            self.interacting_users = set(self.interacting_users)

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        # Pickled as (None, slots); one pickled before `abandoned_ts` lacks it: not abandoned.
        self.abandoned_ts = None
        for name, value in state[1].items():
            object.__setattr__(self, name, value)

    @property
    def horizon_from(self) -> int | None:
        """What its session horizon counts from: its end, or the newest event it was abandoned
        at (None: neither, every event naming it is the session's)."""
        return self.ended_ts if self.ended_ts is not None else self.abandoned_ts

    @property
    def close_ts(self) -> int:
        """Where an interval still open closes: the end, or the last event if it never ended."""
        return self.ended_ts if self.ended_ts is not None else self.last_ts

    def watch_ms(self, user: str, until_ts: int | None = None) -> int:
        """The user's watch time in the session (claims.md), up to `until_ts` when given."""
        presence = self.presence
        if not isinstance(presence, Presence):
            return presence.watch_ms(user, until_ts)
        records = presence.get(user)
        if records is None:
            return 0
        return watch_time_ms(records, self.close_ts, self.ended_ts, until_ts=until_ts)

    def first_joins(self) -> list[tuple[str, int]]:
        """(user, ts of their first join) for each user with a join, by user."""
        presence = self.presence
        if isinstance(presence, SessionSummary):
            return []  # summarized: its first joins are in the ledger's sums
        if isinstance(presence, FoldedPresence):
            # The users sorted, not (user, ts) tuples: a user is there once, so the order is
            # the same (a day's freeze reads a closed session's first joins from here; issue 19).
            users = presence._users
            return [(user, users[user] >> _WATCH_BITS) for user in sorted(users)]
        return presence.first_joins()

    @property
    def viewers(self) -> set[str]:
        """Users with a join, a (non-reply) interaction or an order in the session.

        Derived when read rather than kept as a set of its own (one more set entry per viewer).
        """
        users = set(self.presence.joined_users())
        users.update(self.interacting_users)
        users.update(order.user_id for order in self.orders)
        return users

    @property
    def summary(self) -> SessionSummary | None:
        """The session's summary once it is folded for good (`Ledger._summarize_sessions`)."""
        presence = self.presence
        return presence if isinstance(presence, SessionSummary) else None

    def horizon_orders(self) -> list[OrderFact]:
        """Its orders that are the session's: all of them, less those stamped after the
        session horizon of an ended session (orders outside a session from then on)."""
        end = self.horizon_from
        if end is None:
            return self.orders
        last = end + SESSION_HORIZON_MS
        return [order for order in self.orders if order.ts <= last]


#: The claims the order fold keeps sums for (`OrderFold`), by index: each a share of paid
#: orders clustered by (session or lone order) and by buyer (`extended._order_share`).
ORDER_CLAIMS: Final[tuple[str, ...]] = ("size_refund_share", "bundle_share", "return_rate")
SIZE_REFUNDS: Final[int] = 0
BUNDLES: Final[int] = 1
RETURNS: Final[int] = 2
#: A buyer's row of the order fold (`OrderFold.users`, `months`, `rows_in`): [hits, cases]
#: of each claim, then at this index the latest day (`ts // DAY_MS`) of a case's order.
ORDER_LAST_DAY: Final[int] = 2 * len(ORDER_CLAIMS)


def order_cluster(
    order: OrderFact, sessions: Mapping[str, SessionFacts], fold_sessions: bool
) -> tuple[str, str]:
    """An order's first clustering for the refund and bundle shares: its session, or the order
    itself when it has none (a group-chat link or a reorder is an independent purchase). With
    the session fold, an order stamped after its session's horizon is an order outside a
    session (docs/design.md, "The session horizon"): its own cluster, so that a summarized
    session's cluster is whole when its orders fold (`Ledger._fold_orders`)."""
    sid = order.session_id
    if sid is None:
        return ("order", order.order_id)
    if fold_sessions:
        session = sessions.get(sid)
        end = None if session is None else session.horizon_from
        if end is not None and order.ts > end + SESSION_HORIZON_MS:
            return ("order", order.order_id)
    return ("session", sid)


def _period_stamp(order: OrderFact, sessions: Mapping[str, SessionFacts]) -> int:
    """The `ts` that places an order in a period (`agents.core.periods`): its session's start,
    or its own `ts` when it names no started session."""
    session = sessions.get(order.session_id) if order.session_id is not None else None
    started = None if session is None else session.started_ts
    return order.ts if started is None else started


def order_key(order: OrderFact) -> tuple[int, str, str, str, str, int, int, bool, int]:
    """A canonical order of orders: by ts, then every field a claim can read (not `seq`).

    Claims iterate orders in this order, so that a report is a function of the set of events
    and not of their arrival order across topics and partitions (a case list's order moves
    the last bits of float sums in the intervals): two orders equal under it are
    indistinguishable to every claim.
    """
    return (
        order.ts,
        order.order_id,
        order.session_id or "",
        order.merchant_id,
        order.user_id,
        order.amount_cents,
        order.max_unit_price_cents,
        order.has_apparel,
        order.distinct_skus,
    )


class OrderFold(_PickledBySlot):
    """The paid orders folded out of a ledger once no refund that can count for them can still
    come (`Ledger._fold_orders`; docs/design.md, "Worker state: what is kept"): for each of
    `ORDER_CLAIMS` its hits and cases and the integer `ClusterSums` (clusters, sum h^2, sum h n,
    sum n^2) of the first clustering (sessions and lone orders) and of the (cluster, buyer)
    pairs, whole clusters only; per buyer the running (hits, cases) of each claim (the second
    clustering, added to the held orders' at report time); the refunds the fold decided
    (counted, late, unmatched, and dropped by a ledger that does not hold their orders);
    and per session the counted refunds and their cents (the operator's refunds by session).
    Nothing per order: it grows with sessions and buyers, not with orders.
    """

    __slots__ = (
        "cases",
        "counted_refunds",
        "dropped_refunds",
        "first",
        "hits",
        "late_refunds",
        "months",
        "orders",
        "owner_through",
        "pairs",
        "retired",
        "retired_users",
        "rows_in",
        "sent_through",
        "session_refunds",
        "through_by",
        "unmatched_refunds",
        "users",
    )

    def __init__(self) -> None:
        self.orders = 0
        self.hits: list[int] = [0] * len(ORDER_CLAIMS)
        self.cases: list[int] = [0] * len(ORDER_CLAIMS)
        self.first: list[list[int]] = [[0, 0, 0, 0] for _ in ORDER_CLAIMS]
        self.pairs: list[list[int]] = [[0, 0, 0, 0] for _ in ORDER_CLAIMS]
        #: The buyers' rows ([hits, cases] of each claim in `ORDER_CLAIMS` order, then at
        #: `ORDER_LAST_DAY` the latest day, `ts // DAY_MS`, of a case's order) travel to their
        #: buyer's owner partition (docs/design.md, "The order fold's buyers at their owner"). As a
        #: source: CST month of the case's order -> user -> row, until the month is final here
        #: (`take`); "" holds the rows of a state of snapshot version 13 or older.
        self.months: dict[str, dict[str, list[int]]] = {}
        #: As the owner: (source, month) -> user -> row, until the source announces the month
        #: sent (`receive_closed`; a row sent again overwrites); then summed into `users`.
        self.rows_in: dict[tuple[int, str], dict[str, list[int]]] = {}
        #: As the owner: user -> row, the rows of every month its sources announced summed
        #: (the last day their maximum), until the user is retired (`_retire`).
        self.users: dict[str, list[int]] = {}
        #: As the owner: source -> the last month it announced sent (`OrderUsersClosed`).
        self.through_by: dict[int, str] = {}
        #: As the owner: the smallest announced month at the last retirement pass ("": none).
        self.owner_through = ""
        #: As a source: the last month announced (None: none yet).
        self.sent_through: str | None = None
        #: The retired buyers' rows as `ClusterSums` [G, sum h^2, sum h n, sum n^2] per claim.
        self.retired: list[list[int]] = [[0, 0, 0, 0] for _ in ORDER_CLAIMS]
        self.retired_users = 0
        self.counted_refunds = 0
        self.late_refunds = 0
        self.unmatched_refunds = 0
        self.dropped_refunds = 0
        #: session id -> [counted refunds, their cents], by the refunded order id's earliest
        #: session order (`OperatorBoard._refunds_by_session`'s rule).
        self.session_refunds: dict[str, list[int]] = {}

    def add(self, other: OrderFold) -> None:
        """Another ledger's fold added (disjoint clusters: partitions of one stream)."""
        self.orders += other.orders
        for i in range(len(ORDER_CLAIMS)):
            self.hits[i] += other.hits[i]
            self.cases[i] += other.cases[i]
            self.first[i] = [a + b for a, b in zip(self.first[i], other.first[i], strict=True)]
            self.pairs[i] = [a + b for a, b in zip(self.pairs[i], other.pairs[i], strict=True)]
        # A merged view: every buyer row of the other's, wherever it is held there (as a
        # source, received or summed at the owner), summed into `users` (one place each).
        for user, row in other.user_rows():
            self.add_row(user, row)
        for i, sums in enumerate(other.retired):
            self.retired[i] = [a + b for a, b in zip(self.retired[i], sums, strict=True)]
        self.retired_users += other.retired_users
        self.counted_refunds += other.counted_refunds
        self.late_refunds += other.late_refunds
        self.unmatched_refunds += other.unmatched_refunds
        self.dropped_refunds += other.dropped_refunds
        for sid, (count, cents) in other.session_refunds.items():
            held_refunds = self.session_refunds.setdefault(sid, [0, 0])
            held_refunds[0] += count
            held_refunds[1] += cents

    def case(self, claim: int, user: str, hit: bool, ts: int) -> None:
        """One folded case of `claim` for `user`, whose order is stamped `ts`: into the user's
        row of the order's CST month (as a source, `months`)."""
        users = self.months.get(month := cst_month(ts))
        if users is None:
            users = self.months[month] = {}
        row = users.get(user)
        day = ts // DAY_MS
        if row is None:
            row = users[user] = [0] * ORDER_LAST_DAY + [_day_of(ts)]
        elif day > row[ORDER_LAST_DAY]:
            row[ORDER_LAST_DAY] = _day_of(ts)
        row[2 * claim] += hit
        row[2 * claim + 1] += 1

    def add_row(self, user: str, row: Sequence[int]) -> None:
        """A buyer's row added into `users` (the counts summed, the last day the later)."""
        held = self.users.get(user)
        if held is None:
            self.users[user] = list(row)
            return
        for i in range(ORDER_LAST_DAY):
            held[i] += row[i]
        if row[ORDER_LAST_DAY] > held[ORDER_LAST_DAY]:
            held[ORDER_LAST_DAY] = row[ORDER_LAST_DAY]

    def user_rows(self) -> Iterator[tuple[str, list[int]]]:
        """Every buyer row held here: as a source (not sent yet), received as the owner (not
        announced yet) and summed as the owner; a buyer may have several (they add)."""
        yield from self.users.items()
        for held in (self.months, self.rows_in):
            for users in held.values():
                yield from users.items()

    def take(self, source: int, bound: int) -> list[OrderUsers | OrderUsersClosed]:
        """As partition `source`: the rows of every month that ends by `bound` (no case of an
        order stamped before it can be folded here any more: `Ledger.take_order_users`),
        dropped here, then an announcement of the last such month; nothing if that month
        was announced already."""
        through = cst_month(bound - 1)
        if cst_month_end(through) > bound:  # the month of the bound is not over
            through = cst_month(cst_month_start(through) - 1)
        if self.sent_through is not None and through <= self.sent_through:
            return []
        out: list[OrderUsers | OrderUsersClosed] = []
        for month in sorted(m for m in self.months if m <= through):
            for user, row in sorted(self.months.pop(month).items()):
                out.append(OrderUsers(source, month, user, tuple(row)))
        out.append(OrderUsersClosed(source, through))
        self.sent_through = through
        return out

    def receive(self, part: OrderUsers) -> None:
        """Hold a source's row of a month for its user (a row sent again overwrites; one of a
        month the source announced sent already is a redelivery, ignored)."""
        through = self.through_by.get(part.source)
        if through is not None and part.month <= through:
            return
        self.rows_in.setdefault((part.source, part.month), {})[part.user] = list(part.row)

    def receive_closed(self, closed: OrderUsersClosed, sources: int, horizon_ms: int | None) -> int:
        """Note a source's announcement: its rows of the months it covers are summed into
        `users`. Once all `sources` have announced, with C the smallest announced month (every
        row of a month up to C is here; any row still to come is of an order stamped after
        C), retire each buyer whose last day is at least `horizon_ms` before C's end: their
        row is added into `retired` and dropped. How many were retired."""
        held = self.through_by.get(closed.source)
        if held is None or closed.through > held:
            self.through_by[closed.source] = closed.through
            for key in sorted(k for k in self.rows_in if k[0] == closed.source):
                if key[1] <= closed.through:
                    for user, row in self.rows_in.pop(key).items():
                        self.add_row(user, row)
        if len(self.through_by) < sources or horizon_ms is None:
            return 0
        through = min(self.through_by.values())
        if through <= self.owner_through:
            return 0
        self.owner_through = through
        return self._retire((cst_month_end(through) - horizon_ms) // DAY_MS)

    def _retire(self, cut: int) -> int:
        """Retire the buyers whose last day is before the day `cut` into `retired`."""
        idle = [user for user, row in self.users.items() if row[ORDER_LAST_DAY] < cut]
        for user in idle:
            row = self.users.pop(user)
            for claim, sums in enumerate(self.retired):
                h, n = row[2 * claim], row[2 * claim + 1]
                if n:
                    sums[0] += 1
                    sums[1] += h * h
                    sums[2] += h * n
                    sums[3] += n * n
        self.retired_users += len(idle)
        return len(idle)


class OrderUsers(NamedTuple):
    """A source partition's row of one buyer's folded order cases of one CST month
    (`OrderFold.take`), final there: [hits, cases] of each of `ORDER_CLAIMS`, then the latest
    day of a case's order (`ORDER_LAST_DAY`)."""

    source: int
    month: str
    user: str
    row: tuple[int, ...]


class OrderUsersClosed(NamedTuple):
    """A source partition's announcement that its buyers' rows of every month up to
    `through` are sent (`OrderUsers`) and that no order stamped in them can fold there any
    more; each supersedes the source's earlier ones."""

    source: int
    through: str


class RefundSource(Protocol):
    """Where a ledger's order fold reads the refunds of an order id (`Ledger.refunds_from`):
    every refund applied so far, and the oldest `ts` a refund may have and still be applied
    (None: any). A `Ledger` is one (a ledger fed every refund: `livepulse analyze`); a worker's
    is its table over every partition of the orders topic (`agents.core.refunds.RefundTable`)."""

    def refunds_of(self, order_id: str) -> Sequence[RefundFact]: ...

    def refund_fold_ts(self) -> int | None: ...

    def note_folded(self, order_id: str) -> None:
        """A ledger reading this source folded `order_id` with its refunds here (they are
        decided: a copy held by another partition is no unmatched refund)."""


class PeriodHook(Protocol):
    """`Ledger.period_gate` (`agents.core.periods.PeriodGate`): called before sessions are
    summarized (it freezes what has closed), and before orders fold: `orders_held_from` at the
    fold's horizon (cheap), then `freeze` when the fold runs. `__call__` and `orders_held_from`
    return the earliest period stamp (a session's start, a sessionless order's `ts`) whose raw
    facts a period still needs (None: none)."""

    def __call__(self, ledger: Ledger) -> int | None: ...

    def orders_held_from(self, ledger: Ledger, fold_horizon: int) -> int | None: ...

    def freeze(self, ledger: Ledger) -> None: ...

    def members_found(self, sid: str) -> FoundMembers | None:
        """What the freeze of the session's day found of its members, let go (None: nothing
        kept, the summary looks every pair up)."""
        ...


class FoundMembers:
    """What a period freeze found of one held session's membership lookups, kept (not in the
    state) for the session's summary, which would look the same up again (issue 19: one
    lookup a (session, viewer) pair and a session order, not two; `periods.PeriodGate`).
    Only what is final is kept: the lookups at `ts` before both the groups topic's horizon
    (no group event deciding them can come any more) and the horizon of the topic of what was
    looked up at (views: no earlier first join can come, so a user's first join before it is
    the one looked up; orders: every session order before it was looked up, and for a
    session with a horizon then, before that + 1 ms: its orders then)."""

    __slots__ = ("joined", "joins_to", "late", "ordered", "orders_to")

    def __init__(
        self,
        joins_to: int,
        joined: frozenset[str],
        orders_to: int,
        ordered: frozenset[tuple[str, int]],
        late: int,
    ) -> None:
        #: The users whose first join is before `joins_to` and who were members then.
        self.joins_to = joins_to
        self.joined = joined
        #: The (buyer, ts) of the session's orders before `orders_to` whose buyer was a member.
        self.orders_to = orders_to
        self.ordered = ordered
        #: The membership source's count of late group events applied (`late_group_events`)
        #: when it was found: another count, and the summary looks every pair up again.
        self.late = late


def late_group_events(source: MembershipSource) -> int:
    """How many group events a membership source applied stamped before a horizon it had
    given (a worker's table: an idle partition's late events, `after_horizon`; a ledger
    applies none)."""
    return int(getattr(source, "after_horizon", 0))


#: Nothing found: every lookup of the summary done again (`Ledger._summarize`).
_NOTHING_FOUND = FoundMembers(-(1 << 62), frozenset(), -(1 << 62), frozenset(), 0)


class MembershipSource(Protocol):
    """Where a ledger's summaries read membership (`Ledger.membership_from`): the group events
    by (merchant, user), and a horizon per topic of which only the groups topic's is read (no
    group event stamped before it can be applied any more). A `Ledger` is one; a worker's is
    its table over every partition of the groups topic (`streams.runtime.membership`)."""

    @property
    def group_events(self) -> Mapping[tuple[str, str], Sequence[tuple[int, int, str, bool]]]: ...

    def horizon_ts(self, topic: int) -> int | None: ...


def _groups_joined(ordered: Sequence[tuple[int, int, str, bool]], until_ts: int) -> set[str]:
    """The groups a user is in after their (sorted) group events stamped at or before
    `until_ts` (`timeline.Membership`'s reading)."""
    joined: set[str] = set()
    for ts, _seq, group_id, is_join in ordered:
        if ts > until_ts:
            break
        if is_join:
            joined.add(group_id)
        else:
            joined.discard(group_id)
    return joined


class Ledger:
    """Facts from decoded events, deduplicated by `event_id`.

    Nothing is computed here beyond bookkeeping: every figure is derived from these facts when
    asked for (`agents.core.metrics`), so events of different topics may arrive in any order.

    With a `dedupe_window_ms`, an event more than that older (by `ts`) than the newest event
    its own topic has brought is expired: counted in `counts.expired`, not applied. Event ids
    are then remembered only while their `ts` is inside their topic's window, so the dedupe
    set follows the window, not the stream's whole history (docs/design.md, "Worker state:
    what is kept"). None keeps every id for ever and expires nothing.

    With a `future_tolerance_ms` too, an event stamped more than that ahead of the wall clock
    (a broken producer clock) is applied like any other but does not move its topic's horizon,
    so it cannot expire the events that follow it; it is counted in `counts.future`. None: any
    `ts` moves the horizon.
    """

    #: A level's summarized buyers (`folded_payers`) are kept as ids up to this many, then a
    #: HyperLogLog (`LIVEPULSE_DISTINCT_EXACT_LIMIT`; `set_distinct_limit`); None:
    #: `sketch.DISTINCT_EXACT_LIMIT`. Not pickled: the owner sets it again at every install.
    distinct_limit: int | None = None
    #: The settled runs each level's curve keeps for a merge over partitions
    #: (`LIVEPULSE_BOARD_RUNS_KEPT`); None: `concurrency.SETTLED_RUNS_KEPT`. Not pickled.
    board_runs_kept: int | None = None
    #: Whether an applied `order_paid` is kept as facts (`orders`, `first_orders`,
    #: `month_spend`, its session's orders); a class's choice, not pickled. Not in a ledger that
    #: needs of a payment only its id (dedupe) and its `ts` (the orders horizon), which `apply`
    #: decides before any fact: `agents.core.refunds.RefundPartition` (issue 19).
    keeps_orders: bool = True

    def __init__(
        self,
        dedupe_window_ms: int | None = None,
        future_tolerance_ms: int | None = None,
        refund_horizon_ms: int | None = None,
        fold_sessions: bool = False,
        fold_months: bool = False,
        user_horizon_ms: int | None = None,
        board_horizon_ms: int | None = None,
        pair_horizon_ms: int | None = None,
    ) -> None:
        if user_horizon_ms is not None and user_horizon_ms <= 0:
            raise ValueError(f"user_horizon_ms must be positive or None, not {user_horizon_ms}")
        if pair_horizon_ms is not None and pair_horizon_ms <= 0:
            raise ValueError(f"pair_horizon_ms must be positive or None, not {pair_horizon_ms}")
        if fold_months and not fold_sessions:
            raise ValueError("fold_months needs fold_sessions (a month closes on summaries)")
        if dedupe_window_ms is not None and dedupe_window_ms <= 0:
            raise ValueError(f"dedupe_window_ms must be positive or None, not {dedupe_window_ms}")
        if refund_horizon_ms is not None and refund_horizon_ms <= 0:
            raise ValueError(f"refund_horizon_ms must be positive or None, not {refund_horizon_ms}")
        self.counts = EventCounts()
        #: A refund counts for an order paid at or before it and at most this long before it
        #: (`refund_counts`); None: for any payment of its order id, whenever (before issue 17).
        self.refund_horizon_ms = refund_horizon_ms
        #: With the session fold, the operator levels' concurrency by minute older than this
        #: before the newest event (and final) is settled into each level's peak
        #: (`_settle_board_curves`); None: every minute kept.
        self.board_horizon_ms = board_horizon_ms
        self.dedupe_window_ms = dedupe_window_ms
        self.future_tolerance_ms = future_tolerance_ms
        # The wall clock plus the tolerance when last read (`_ahead_of_clock`): a `ts` at or
        # below it needs no clock read. An int (an int-float comparison costs more per event).
        self._clock_ceiling_ms = -1 if future_tolerance_ms is not None else _NO_CEILING_MS
        # Every event id remembered, each as `_id_key(event_id)`: an exact, reversible int (no
        # hash, so two distinct ids never collide), ~20 bytes smaller than the str it replaces.
        self._seen_ids: set[int] = set()
        # The ids moved out of `_seen_ids` once it holds `_seen_batch` (`_compact_seen_ids`):
        # ~22 bytes an id against ~75 in the set (issue 19).
        self._seen_runs = SeenRuns()
        # Those too long for its keys with a shape `wide_key` reads (UUIDs, ULIDs): ~31 bytes
        # an id against ~100 in the set.
        self._seen_wide = SeenRuns(WIDE_BYTES)
        self._seen_batch = MIN_BATCH
        # With a window: per topic, hour of `ts` -> the ids first seen with it, to drop them
        # from `_seen_ids` once the hour is wholly below the topic's horizon; and per topic the
        # newest accepted `ts` (None: none yet) and the first hour still filed.
        self._id_hours: list[dict[int, list[int]]] = [{} for _ in TOPICS]
        self.newest_ts: list[int | None] = [None for _ in TOPICS]
        self._kept_from_hour: list[int | None] = [None for _ in TOPICS]
        # Sessions ended and not folded yet: id -> end ts (`_fold_closed_sessions`).
        self._ended_unfolded: dict[str, int] = {}
        self.folded_sessions = 0
        #: Whether closed sessions are summarized once their session horizon has passed
        #: (`_summarize_sessions`). Their group figures are then fixed with the group events
        #: of `membership_from` or, without one, this ledger's, so only a ledger that holds
        #: every group event of the sessions' merchants may go without (one fed every
        #: partition: the soak); a worker's partition reads its process's membership table
        #: (`streams.runtime.membership`).
        self.fold_sessions = fold_sessions
        #: The session horizon's rule holds with the session fold only (without it every
        #: event naming a session is the session's, as before: `_NO_CEILING_MS` is past any
        #: `ts`); a flag read once per event naming a session.
        self._session_horizon_ms = SESSION_HORIZON_MS if fold_sessions else _NO_CEILING_MS
        #: The ledger whose group events (and groups topic's horizon) fix membership at the
        #: fold, when not this one: a worker's partition holds its sessions, while their
        #: merchants' group events are keyed to other partitions. Not part of the state.
        self.membership_from: MembershipSource | None = None
        #: Where the order fold reads refunds and the refund horizon (`RefundSource`), when
        #: not this ledger: a worker's partition holds its sessions' orders, while refunds
        #: (no session id, so the empty key) are in another partition. Not part of the state.
        self.refunds_from: RefundSource | None = None
        #: In a state loaded from a snapshot: the refund source's refunds of the payments it
        #: held when dumped (`__getstate__`, read by `merge`); empty in a live one.
        self.borrowed_refunds: dict[str, list[RefundFact]] = {}
        #: The orders folded out of `orders` (`_fold_orders`), and the refunds it decided.
        self.order_fold = OrderFold()
        # Own refunds by order id (`refunds_of`), rebuilt after a refund is applied or dropped.
        self._refund_index: dict[str, list[RefundFact]] | None = None
        # The day of `ts` the order fold last ran to (it runs once per day of its horizon).
        self._order_fold_day: int | None = None
        # The period gate's bound on the orders at that pass (`PeriodHook.orders_held_from`): a
        # new bound runs the fold again within the day. Not part of the state.
        self._order_fold_held: int | None = None
        # The sessions whose missing summary alone held back a cluster of orders due at that
        # pass (None: not known, as in a restored state: any summary counts). Their summary
        # runs the fold again within the day (`_order_fold_unblocked`): else those orders, and
        # so their month's announcement (`take_order_users`), waited for the next day of the
        # orders horizon, which a partition whose orders stopped never reaches (issue 17,
        # session 18: an abandoned session is summarized a pass after the one that abandons
        # it). Not part of the state.
        self._order_fold_waits: set[str] | None = set()
        self._order_fold_unblocked = False
        #: The horizon the order fold last ran at (None: never): every order paid more than
        #: the refund horizon before it is folded, but those whose cluster was not whole.
        self.order_fold_ts: int | None = None
        # The fold horizon at the last `take_order_users` (None: none taken).
        self._order_take_ts: int | None = None
        # The orders folded by then (`OrderFold.orders`): a pass at the same horizon that
        # folded more may let a month be announced. Not part of the state (None: take again).
        self._order_take_folded: int | None = None
        #: Claims by period (`agents.core.periods`): called before sessions are summarized,
        #: it freezes the closed periods' figures and returns the earliest start of a session
        #: whose raw facts a period still needs (None: none); such sessions wait. Called
        #: before orders fold too (`PeriodHook.orders_held_from`): the orders of a period whose
        #: refund claims are not frozen yet wait. Not part of the state (`periods.PeriodGate`).
        self.period_gate: PeriodHook | None = None
        #: Frozen figures of closed periods: (kind, name) -> claim id -> (observed, ci_low,
        #: ci_high, verdict, n, clusters), bounded (`agents.core.periods`; a value is a
        #: `periods.FrozenFigures`, finishing a figure from its part when first read).
        self.frozen_periods: dict[tuple[str, str], MutableMapping[str, FrozenFigure]] = {}
        #: The mergeable parts of the frozen figures (`metrics.CLAIM_PARTS`, compacted):
        #: (kind, name) -> claim id -> part, so that partitions' closed periods merge into the
        #: figure of the whole stream (`periods.merge_frozen`).
        self.frozen_parts: dict[tuple[str, str], dict[str, Any]] = {}
        #: Per kind ("day", "month") the newest frozen period dropped (beyond the kept ones):
        #: a merge must not take the other partitions' parts of it for the whole stream's.
        self.frozen_dropped: dict[str, str] = {}
        self._init_period_rows()
        self._init_session_fold()
        #: Sessions folded or summarized since the board last took them
        #: (`OperatorBoard.take_folded`).
        self.folded_ids: list[str] = []
        #: Why `apply` last returned False: "duplicate" or "expired" (for the caller's metrics).
        self.refused_as = ""
        self._seq = 0
        self.max_ts: int | None = None
        self.sessions: dict[str, SessionFacts] = {}
        self.orders: list[OrderFact] = []
        self.refunds: list[RefundFact] = []
        #: Per (merchant, user) who paid: their earliest order's ts and the earliest later one
        #: (None: none yet), all `group_repurchase_30d` reads of their orders. Two ints a pair,
        #: whatever the number of orders, and exact in any arrival order (`_note_order`).
        self.first_orders: dict[tuple[str, str], tuple[int, int | None]] = {}
        #: Per (merchant, CST month of the order, user): spend in cents (`group_spend_multiple`).
        self.month_spend: dict[tuple[str, str, str], int] = {}
        #: (merchant, CST month of a session's start) -> user -> earliest first join, from the
        #: sessions folded out of `sessions` (`group_spend_multiple`'s population, read with the
        #: held sessions' first joins).
        self.month_first_joins: dict[tuple[str, str], dict[str, int]] = {}
        self._init_month_fold(fold_months)
        self._init_first_order_exchange()
        self._init_user_horizon(user_horizon_ms)
        #: `group_repurchase_30d`'s decided pairs idle (no order) this long before the
        #: summaries' horizon are forgotten (`forget_idle_pairs`: a later order then counts as a
        #: first one again); None, the default: every decided pair kept, exact (claims.md asks
        #: for the *first* order at any age; docs/design.md, "First orders").
        self.pair_horizon_ms = pair_horizon_ms
        self._pair_forget_day = -1
        # (merchant, user) -> [(ts, seq, group_id, is_join)]; in a ledger that holds every
        # partition (`fold_months`), compacted before the oldest `ts` a lookup can still ask
        # (`_compact_group_events`).
        self.group_events: dict[tuple[str, str], list[tuple[int, int, str, bool]]] = {}
        #: The cutoff the group events were last compacted at (None: never), and the summary
        #: topics' horizon when it was last sought (the search walks every held session).
        self.groups_compacted_to: int | None = None
        self._groups_sought_at: int | None = None
        # `question` event id -> (ts, session_id), and a question's id -> its earliest reply's
        # ts, kept apart so a reply may arrive before (or without) its question. With a window,
        # both are held only for the answer horizon (`_fold_questions`): per hour of `ts`, the
        # questions and the replies filed then; what is folded is kept per session as counts
        # (`folded_questions`, `folded_replies`), overall as the count answered within 3 min
        # and the latencies' sketch (`folded_figures.reply_latency_s`), never one value per
        # question; a reply that answered nothing held is counted in `unmatched_replies`.
        self.questions: dict[str, tuple[int, str]] = {}
        self.first_reply_ts: dict[str, int] = {}
        #: The sketched part of the figures not exact from bounded state (`agents.core.sketch`):
        #: what folding feeds once their raw facts are dropped; empty, every figure is exact.
        self.folded_figures = FoldedFigures()
        self._question_hours: dict[int, list[str]] = {}
        self._reply_hours: dict[int, list[str]] = {}
        self.folded_questions: dict[str, int] = {}
        self.folded_replies: dict[str, list[int]] = {}
        self.folded_within_3min = 0
        self.unmatched_replies = 0

    def presence_slots(self, session_id: str) -> dict[str, int] | None:
        """The session's raw presence's user -> slot table (`Presence.slot_table`), or None
        when it has no raw presence (unknown, folded, summarized)."""
        session = self.sessions.get(session_id)
        if session is None or not isinstance(session.presence, Presence):
            return None
        return session.presence.slot_table()

    def reject(self, reason: str) -> None:
        """Count one invalid record (the reason is for the caller's metrics and dead letter)."""
        del reason
        self.counts.rejected += 1

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        # The refund source's refunds of the payments held here (snapshot v10): a worker's
        # table holds them, the partition of the refunds' key may not any more (another
        # worker's table dropped them, not knowing this partition holds the order), and a
        # report merged from snapshots (no table) reads them for the held orders (`merge`).
        # (absent from a ledger whose dict was filled from another's state, as tests do)
        source: RefundSource | None = getattr(self, "refunds_from", None)
        borrowed: dict[str, list[RefundFact]] = {}
        if source is not None and source is not self:
            for order in self.orders:
                if order.order_id not in borrowed:
                    borrowed[order.order_id] = list(source.refunds_of(order.order_id))
        state["borrowed_refunds"] = {oid: refunds for oid, refunds in borrowed.items() if refunds}
        state.pop("membership_from", None)  # another ledger, not this one's state
        state.pop("refunds_from", None)  # likewise (a worker's refund table)
        state.pop("_refund_index", None)  # derived from `refunds`
        state.pop("period_gate", None)  # a callable set by whoever reads the periods
        state.pop("_order_fold_held", None)  # the gate's, as it
        state.pop("_order_fold_waits", None)  # known at the next pass
        state.pop("_order_fold_unblocked", None)
        state.pop("_order_take_folded", None)
        # Settings of the ledger's owner, set again at every install (`LiveState.install`).
        state.pop("distinct_limit", None)
        state.pop("board_runs_kept", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        # A state pickled before issue 17 (snapshot version 1) has no window: every id kept.
        self.__dict__.update(state)
        self.membership_from = None
        self.refunds_from = None
        self._refund_index = None
        if "order_fold" not in state:  # version 7 or older: no order folded
            self.order_fold = OrderFold()
            self._order_fold_day = None
        if "order_fold_ts" not in state:
            self.order_fold_ts = None
        if "_order_take_ts" not in state:  # version 13 or older: every buyer's row kept here
            self._order_take_ts = None
            fold = self.order_fold
            if fold.users:  # six ints each, this partition's part: sent on as month ""
                day = _day_of(self.order_fold_ts or 0)
                fold.months[""] = {user: [*row, day] for user, row in fold.users.items()}
                fold.users = {}
        if "borrowed_refunds" not in state:  # version 9 or older
            self.borrowed_refunds = {}
        self.period_gate = None
        self._order_fold_held = None
        self._order_fold_waits = None  # not known: the next summary runs the fold again
        self._order_fold_unblocked = False
        self._order_take_folded = None
        if "frozen_periods" not in state:  # a state from before the claims by period
            self.frozen_periods = {}
        if "_seen_runs" not in state:  # version 9 or older: every id remembered in the set
            self._seen_runs = SeenRuns()
            self._seen_batch = MIN_BATCH
        if "_seen_wide" not in state:  # version 1-9 or an early 10: the long ids in the set
            self._seen_wide = SeenRuns(WIDE_BYTES)
            self._seen_ids = {_set_key(key) for key in self._seen_ids}
            for hours in getattr(self, "_id_hours", []):  # none before version 2
                for hour, keys in hours.items():
                    hours[hour] = [_set_key(key) for key in keys]
        if "frozen_parts" not in state:  # version 8: frozen figures only, which do not merge
            self.frozen_parts = {}
            self.frozen_dropped = {}
        if "period_rows_in" not in state:  # version 11 or older: no rows routed
            self._init_period_rows()
        if "period_dwell_after" not in state:  # version 12: no dwell rows routed
            self.period_dwell_after = self.period_rows_sent_through
            self.__dict__["period_dwell_after_by"] = {}
        if "period_refunds_sent_through" not in state:  # version 16 or older: kept at home
            self.__dict__["period_refunds_frozen_to"] = None
            self.__dict__["period_refunds_sent_through"] = ""
            self.__dict__["period_refund_sources_through"] = {}
        if "dedupe_window_ms" not in state:
            self.dedupe_window_ms = None
            self._id_hours = [{} for _ in TOPICS]
            self.newest_ts = [None for _ in TOPICS]
            self._kept_from_hour = [None for _ in TOPICS]
            self._ended_unfolded = {}
            self.folded_sessions = 0
            self.refused_as = ""
        if "folded_ids" not in state:
            self.folded_ids = []
        if "retired_levels" not in state:  # version 10 or older: nothing retired
            self._init_retired()
        if "retired_replies" not in state:  # version 11 or older: retired sessions' rows kept
            self.__dict__["retired_replies"] = [0] * RETIRED_REPLY_COLUMNS
        if "retired_aov_sums" not in state:  # version 11 or older: every retired row kept
            self.__dict__["retired_aov_sums"] = [0] * 6
            if len(self.retired_aov_rows) > 2 * AOV_SAMPLE_SIZE:
                self.trim_aov_rows()
        if "fold_sessions" not in state:  # version 4 or older: no session summaries
            self.fold_sessions = False
            self._session_horizon_ms = _NO_CEILING_MS
            self._init_session_fold()
        if "abandoned_sessions" not in state:  # a state from before the abandoned-session rule
            self.abandoned_sessions = 0
        if not hasattr(self.counts, "expired"):  # an EventCounts pickled before the field
            self.counts.expired = 0
        if not hasattr(self.counts, "future"):
            self.counts.future = 0
        if "future_tolerance_ms" not in state:  # a state from before the future-stamp cap
            self.set_future_tolerance(None)
        if "folded_figures" not in state:  # nor sketches: nothing was folded into one
            self.folded_figures = FoldedFigures()
        if "folded_latencies_ms" in state:  # version 3: every folded latency kept, summed now
            latencies: dict[str, list[int]] = self.__dict__.pop("folded_latencies_ms")
            self.folded_replies = {}
            self.folded_within_3min = 0
            for sid, answered_ms in latencies.items():
                for latency_ms in answered_ms:
                    self._fold_answer(sid, latency_ms)
        if "folded_questions" not in state:  # version 1 or 2: every question held
            self.folded_questions = {}
            self.folded_replies = {}
            self.folded_within_3min = 0
            self.unmatched_replies = 0
            self._question_hours = {}
            self._reply_hours = {}
            if self.dedupe_window_ms is not None:  # file what is held, to fold it in time
                for question_id, (asked_ts, _sid) in self.questions.items():
                    self._question_hours.setdefault(asked_ts // _ID_BUCKET_MS, []).append(
                        question_id
                    )
                for question_id, replied_ts in self.first_reply_ts.items():
                    self._reply_hours.setdefault(replied_ts // _ID_BUCKET_MS, []).append(
                        question_id
                    )
        if "folded_uplift" not in state:  # version 9 or older: summed from the summaries held
            self._init_summary_sums()
        if "groups_compacted_to" not in state:  # version 9 or older: every group event held
            self.groups_compacted_to = None
            self._groups_sought_at = None
        if "month_first_joins" not in state:
            self.month_first_joins = {}
        if "month_folded_users" not in state:  # version 7 or older: no month folded
            self._init_month_fold(False)
        if "board_runs_in" not in state:  # version 18 or older: no run taken nor held
            self._init_board_exchange()
            # Its next take sends every run kept (`take_board_runs`).
            settled = [c.settled_to for c in self.board_curves.values() if c.settled_to is not None]
            self.__dict__["board_settled_to"] = max(settled, default=None)
        if "first_orders_in" not in state:  # version 10 or older: no pair sent to an owner
            self._init_first_order_exchange()
        elif "group_floors_by" not in state:  # version 11 or older: no floor read
            self._init_group_floors()
        if "_first_member_day" not in state:  # version 11-17: no membership recorded
            pairs: dict[tuple[str, str], tuple[int, int | None]] = self.__dict__["first_orders_in"]
            self.__dict__["first_orders_in"] = {
                pair: (f, later, None) for pair, (f, later) in pairs.items()
            }
            self._first_member_day = -1
        if "first_members" not in state:  # version 18 or older: none recorded as a source
            self.__dict__["first_members"] = {}
        if "group_floor_given" not in state:  # before session 14: no idle floor announced
            self._init_group_floor_given()
        if "retired_users" not in state:  # version 9 or older: users kept for ever
            self._init_user_horizon(None)
        if "pair_horizon_ms" not in state:  # version 11 or older: forgot by the user horizon
            self.pair_horizon_ms = None  # the owner of the state sets it (`LiveState.restore`)
            self._pair_forget_day = -1
        for name in ("bought_before", "pairs_decided"):  # version 11 or older: dicts
            if not isinstance(self.__dict__[name], PairDays):
                self.__dict__[name] = PairDays(self.__dict__[name])
        last_days = state.get("user_last_day")
        if isinstance(last_days, dict):  # an early version 10: the last days in a dict
            del self.__dict__["user_last_day"]
            for user, day in last_days.items():
                for held, column in (
                    (self.folded_buyers, BUYER_LAST_DAY),
                    (self.folded_dwellers, DWELL_LAST_DAY),
                    (self.month_folded_users, MONTH_LAST_DAY),
                ):
                    row = held.get(user)
                    if row is not None and len(row) == column:
                        row.append(day)
        if self.user_horizon_ms is not None:  # one int object per day, not per row
            for held, column in (
                (self.folded_buyers, BUYER_LAST_DAY),
                (self.folded_dwellers, DWELL_LAST_DAY),
                (self.month_folded_users, MONTH_LAST_DAY),
            ):
                for row in held.values():
                    if len(row) > column:
                        row[column] = _DAYS.setdefault(row[column], row[column])
        if "folded_watch" not in state:  # version 6 or older: the board read no summary
            self._init_board_fold()
        for level, payers in self.folded_payers.items():  # version 9 or older: plain sets
            if isinstance(payers, set):
                self.folded_payers[level] = DistinctUsers.of(payers)
        if "board_curves" not in state:  # version 9 or older: the minutes in the summaries
            self.board_horizon_ms = None
            self._init_board_curves()
            for session in self.sessions.values():
                summary = session.presence
                if isinstance(summary, SessionSummary):
                    self._add_board_minutes(session, summary.minutes)
                    summary.minutes = {}
        if "first_orders" not in state:  # version 5 or older: filed from the orders held
            self.refund_horizon_ms = None  # as it was written: every refund counted
            self.first_orders = {}
            self.month_spend = {}
            for order in self.orders:
                self._note_order(order.merchant_id, order.user_id, order.ts, order.amount_cents)

    def _init_session_fold(self) -> None:
        """The session fold's state, empty (docs/design.md, "Worker state: what is kept")."""
        #: Per topic, events naming a session stamped after its session horizon: not the
        #: session's (a view or interaction changes nothing; an order is outside a session).
        self.after_session_horizon: list[int] = [0 for _ in TOPICS]
        #: Sessions whose presence is folded and which wait for their session horizon.
        self._awaiting_summary: dict[str, int] = {}
        self.summarized_sessions = 0
        #: Started sessions with no end abandoned (`_abandon_sessions`), summarized like ended ones.
        self.abandoned_sessions = 0
        #: user -> running totals over summarized sessions (`BUYER_*`): session orders, those
        #: at or after minute 5, those by a group member (the buyer clusters of the shares).
        self.folded_buyers: dict[str, list[int]] = {}
        #: user -> [watch ms, pairs] over the summarized sessions' group-member pairs
        #: (`group_member_dwell`'s user rows).
        self.folded_dwellers: dict[str, list[int]] = {}
        self._init_summary_sums()
        self._init_board_fold()
        self._init_retired()

    def _init_retired(self) -> None:
        """Summaries retired past the board horizon (`_retire_summaries`), none yet."""
        #: Retire summaries at all (`_retire_summaries`; off: every summary kept, as before).
        self.retire_summaries = vars(self).get("retire_summaries", False)
        #: Per level (`OVERALL_LEVEL`, ("rooms", id), ("merchants", id)) the retired
        #: sessions' board parts (`RETIRED_*` columns) and their orders by minute since start.
        self.retired_levels: dict[tuple[str, str], list[int]] = {}
        self.retired_order_minutes: dict[tuple[str, str], dict[int, int]] = {}
        #: `live_aov`: per retired started session with orders its [GMV cents, orders], for
        #: at most twice `AOV_SAMPLE_SIZE` sessions: past that, trimmed to the sample's (the
        #: overall interval's t* quantiles resample it: `agents/core/sample.py`) and the
        #: others added into `retired_aov_sums` (G, y, m, y^2, y m, m^2: its centre and se);
        #: and per CST day (start ms) the sums of its (session, day) clusters, the same six.
        self.retired_aov_rows: dict[str, tuple[int, int]] = {}
        self.retired_aov_sums: list[int] = [0] * 6
        self.retired_aov_days: dict[int, list[int]] = {}
        #: The HTML report's conversion by interaction: per rate (interacting, other) the
        #: sessions with pairs of it and the sums of hits, pairs, hits^2, hits pairs, pairs^2.
        self.retired_conversion: list[int] = [0] * 12
        #: `reply_latency`: the retired sessions' folded questions (`folded_questions`,
        #: `folded_replies`, dropped at the retirement) as `RETIRED_REPLY_*` sums: the share
        #: and its session-clustered interval are exact from them (`stats.ClusterSums`).
        self.retired_replies: list[int] = [0] * RETIRED_REPLY_COLUMNS
        #: (session id, room id, merchant id) retired since the board last took them.
        self.retired_ids: list[tuple[str, str, str]] = []
        self.retired_sessions = 0
        #: What the last retire pass saw (`_retire_summaries`).
        self._retire_tried: tuple[int, ...] = ()

    def _init_summary_sums(self) -> None:
        """The summarized sessions' clusters as ledger-level sums, which the claims read
        instead of the summaries: `interaction_uplift`'s rows' moments (`folded_uplift`), the
        shares' and the member dwell's cluster sums."""
        #: The `stats.row_moments` of the summarized started sessions' `interaction_uplift`
        #: rows (those with viewers): what the claim's interval reads of them, whatever their
        #: number (`metrics.interaction_uplift_part`).
        self.folded_uplift: tuple[int, ...] = row_moments(
            (
                s.presence.uplift
                for s in vars(self).get("sessions", {}).values()
                if isinstance(s.presence, SessionSummary)
                and s.started_ts is not None
                and s.presence.viewers
            ),
            UPLIFT_COLUMNS,
        )
        #: The share claims' and `group_member_dwell`'s sums over the summarized sessions
        #: (`FOLDED_SHARES`, `folded_dwell`), which their parts add as they add a held
        #: session's: from the summaries held (none in a fresh ledger; a version 9 state's).
        self.folded_shares: dict[str, tuple[int, ...]] = {}
        self.folded_dwell: tuple[int, ...] = (0,) * 7
        #: `post_live_tail`'s summarized ended sessions: live orders, tail orders, the
        #: amounts' count, sum and sum of squares, then the `row_moments` of their (tail
        #: cents, live cents) rows.
        self.folded_tail: tuple[int, ...] = (0,) * 5 + row_moments([], TAIL_COLUMNS)
        for session in vars(self).get("sessions", {}).values():
            if isinstance(session.presence, SessionSummary) and session.started_ts is not None:
                self._fold_session_sums(session.presence, session.ended_ts is not None)

    def _fold_session_sums(self, summary: SessionSummary, ended: bool) -> None:
        """A summarized session's share, dwell and (`ended`) tail clusters added to the
        ledger's sums (exact integers: the claims' intervals read a session only through
        them)."""
        if ended:
            tail_cents, live_cents, tail_n, live_n, count, total, squares = summary.tail
            tail_row: tuple[int, ...] = (live_n, tail_n, count, total, squares)
            tail_row += row_moments([(tail_cents, live_cents)], TAIL_COLUMNS)
            self.folded_tail = tuple(a + b for a, b in zip(self.folded_tail, tail_row, strict=True))
        if summary.orders:
            sums = summary.share_sums
            for attribute, h2_index, hn_index in FOLDED_SHARES:
                hits, n = getattr(summary, attribute), summary.orders
                row: tuple[int, ...] = (hits, n, 1, hits * hits, hits * n, n * n)
                row += (sums[SHARE_PAIRS],)
                row += (sums[h2_index], sums[hn_index], sums[SHARE_N2])
                held = self.folded_shares.get(attribute)
                self.folded_shares[attribute] = (
                    row if held is None else tuple(a + b for a, b in zip(held, row, strict=True))
                )
        pairs, watched, squares = summary.dwell
        if pairs:
            dwell = (pairs, watched, squares, 1, watched * watched, watched * pairs, pairs * pairs)
            self.folded_dwell = tuple(a + b for a, b in zip(self.folded_dwell, dwell, strict=True))

    def _init_board_fold(self) -> None:
        """The operator board's part of the session fold, empty: per level (`OVERALL_LEVEL`,
        ("rooms", id), ("merchants", id)) of the summarized sessions, the viewers' watch
        times in ms in a sketch (the level's median within the sketch's bound) and the
        distinct buyers (the level's paying users: exact up to `DISTINCT_EXACT_LIMIT`, then
        a HyperLogLog within its stated error, agents/core/sketch.py)."""
        self.folded_watch: dict[tuple[str, str], QuantileSketch] = {}
        self.folded_payers: dict[tuple[str, str], DistinctUsers] = {}
        self._init_board_curves()

    def _init_board_curves(self) -> None:
        """The operator levels' concurrency curves (`LevelCurve`), empty."""
        #: Per level its summarized sessions' concurrency by minute, the minutes past the
        #: board horizon settled into the level's peak (`LevelCurve`).
        self.board_curves: dict[tuple[str, str], LevelCurve] = {}
        #: Summarized sessions' minutes that came before their level's settled minutes (0
        #: unless the settling rule is broken; a test holds it at 0).
        self.board_minutes_late = 0
        self._init_board_exchange()

    def _init_board_exchange(self) -> None:
        """The levels' settled runs across a worker's partitions, none taken or held
        (docs/design.md, "The board's concurrency by minute", merged over partitions)."""
        #: As a source: the minute every curve is settled to (`_settle_board_curves`; None:
        #: none yet), the minute its runs were taken through (`take_board_runs`), the last
        #: minute announced, and the CST day of the summaries' horizon at the last take.
        self.board_settled_to: int | None = None
        self.board_sent_to: int | None = None
        #: As a source: its partition number (set at its take and by the worker's install;
        #: None: not a worker's partition), so that a merge knows whose runs it holds.
        self.board_source: int | None = None
        self._board_announced: int | None = None
        self._board_take_day = -1
        #: As a level's owner: level -> source partition -> its runs received and not folded
        #: yet, as (count, first minute, minute after the last, 1 if a dropped stretch's
        #: largest count else 0), in time order.
        self.board_runs_in: dict[tuple[str, str], dict[int, list[tuple[int, int, int, int]]]]
        self.board_runs_in = {}
        #: As the owner: level -> [its largest merged count over the folded minutes, its
        #: minute, the largest it may have had where a source dropped runs (0: none)].
        self.board_folded: dict[tuple[str, str], list[Any]] = {}
        #: As the owner: the minute before which every source's runs are folded (None: none).
        self.board_folded_to: int | None = None
        #: As the owner: source -> its announced minute (`BoardSettled`), and the furthest
        #: window end of the runs received from it (`BoardRuns.through`).
        self.board_settled_by: dict[int, int] = {}
        self.board_runs_through: dict[int, int] = {}

    def fold_sessions_from_now(self) -> None:
        """Summarize closed sessions from now on (a restored state written without the fold,
        taken by a worker with it on); the sessions already folded wait for their horizon."""
        if self.fold_sessions:
            return
        self.fold_sessions = True
        self._session_horizon_ms = SESSION_HORIZON_MS
        for sid, session in self.sessions.items():
            if isinstance(session.presence, FoldedPresence) and session.ended_ts is not None:
                self._awaiting_summary[sid] = session.ended_ts

    def set_future_tolerance(self, future_tolerance_ms: int | None) -> None:
        """Cap how far ahead of the wall clock an event may be and still move its topic's
        horizon (None: no cap); for the events from now on (a restored state takes its
        worker's setting)."""
        self.future_tolerance_ms = future_tolerance_ms
        self._clock_ceiling_ms = -1 if future_tolerance_ms is not None else _NO_CEILING_MS

    def _ahead_of_clock(self, ts: int) -> bool:
        """Whether `ts` is more than the tolerance ahead of the wall clock now (read only for a
        new newest `ts` of a topic past the last reading's ceiling: rarely, but on every event
        stamped ahead)."""
        tolerance = self.future_tolerance_ms
        if tolerance is None:
            return False
        self._clock_ceiling_ms = ceiling = time.time_ns() // 1_000_000 + tolerance
        return ts > ceiling

    def horizon_ts(self, topic: int) -> int | None:
        """The oldest `ts` an event of `TOPICS[topic]` may have and still be applied (None:
        any, no window or no event of that topic yet)."""
        newest = self.newest_ts[topic]
        if self.dedupe_window_ms is None or newest is None:
            return None
        return newest - self.dedupe_window_ms

    def apply(self, event: Event) -> bool:
        """Record one event; False (and nothing recorded) if its `event_id` was seen before
        (counted as a duplicate) or it is older than its topic's dedupe window (expired)."""
        ts = event.ts
        window = self.dedupe_window_ms
        if window is not None:
            topic = _TOPIC_OF[event.type]
            newest = self.newest_ts[topic]
            # Expired before the id is looked at, so whether a copy this old is expired never
            # depends on when its hour's ids were dropped.
            if newest is not None and ts < newest - window:
                self.counts.expired += 1
                self.refused_as = "expired"
                return False
        event_id = event.event_id
        # `_id_key`, inlined; big-endian is `from_bytes`' default (Python 3.11), and the
        # argument left out is ~0.1 us a record less (its keyword parsed, its string compared).
        key = int.from_bytes(b"\x01" + event_id.encode())
        wide = -1
        if key >= KEY_LIMIT:  # `_set_key`, from the str
            wide = wide_key(event_id)
            if wide >= 0:
                key = _WIDE_TAG + wide
        seen = self._seen_ids
        runs = self._seen_runs
        duplicate = key in seen
        if not duplicate and key <= runs.max_key and runs._bits:
            # `runs.might_hold`, inlined (issue 19: on a stream whose ids come out of order,
            # as the simulator's, half the new ids read the filter; the call was ~a quarter).
            mixed = key if key < _FILTER_DIRECT else (key ^ (key >> 64) ^ (key >> 128)) & _MASK64
            shift = 64 - runs._bits
            first = (mixed * _SPREAD & _MASK64) >> shift
            table = runs._filter
            if table[first >> 3] >> (first & 7) & 1:
                second = (mixed * _SPREAD2 & _MASK64) >> shift
                duplicate = bool(table[second >> 3] >> (second & 7) & 1) and runs.holds(
                    key, self._kept_from_hour
                )
        if duplicate or (wide >= 0 and self._holds_wide(wide)):
            self.counts.duplicates += 1
            self.refused_as = "duplicate"
            return False
        seen.add(key)
        if window is not None:
            if ts < self.group_floor_given and topic in _PRESENCE_TOPICS:
                # Behind an idle floor this partition announced: a lookup of it may read
                # group events the others compacted (docs/design.md, "Group events compacted").
                self.after_group_floor += 1
            hours = self._id_hours[topic]
            hour = ts // _ID_BUCKET_MS
            filed = hours.get(hour)
            if filed is None:
                hours[hour] = [key]
            else:
                filed.append(key)
            if newest is None or ts > newest:
                # A `ts` far ahead of the wall clock would move the horizon with it and expire
                # every event of the topic that follows (docs/threat-model.md): applied, counted,
                # but the horizon stays.
                if ts > self._clock_ceiling_ms and self._ahead_of_clock(ts):
                    self.counts.future += 1
                else:
                    self.newest_ts[topic] = ts
                    below = (ts - window) // _ID_BUCKET_MS
                    # `_drop_ids_below`'s own first test, here: the horizon moves on nearly
                    # every record, its hour once an hour (issue 19: a call per record saved).
                    kept_from = self._kept_from_hour[topic]
                    if (kept_from is None or below > kept_from) and self._drop_ids_below(
                        below, topic
                    ):
                        self._fold_closed_sessions()
                        if self.fold_sessions and self.refund_horizon_ms is not None:
                            self._fold_orders()
                            if self.fold_months:
                                self._own_order_users()
                        if topic == _INTERACTIONS:
                            self._fold_questions()
                        if self.retire_summaries:
                            self._retire_summaries()
        if len(seen) >= self._seen_batch:
            self._compact_seen_ids()
        self.counts.valid += 1
        self._seq += 1
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        if type(event) is ViewerJoined or type(event) is ViewerLeft:
            session = self._session(event.session_id, ts)
            end = session.ended_ts
            if end is None:
                end = session.abandoned_ts
            if end is None or ts <= end + self._session_horizon_ms:
                session.presence.add(event.user_id, ts, self._seq, type(event) is ViewerJoined)
            else:
                self.after_session_horizon[_TOPIC_OF[event.type]] += 1
        elif type(event) is Interaction:
            session = self._session(event.session_id, ts)
            if event.kind != "reply":
                end = session.ended_ts
                if end is None:
                    end = session.abandoned_ts
                if end is None or ts <= end + self._session_horizon_ms:
                    interacting = session.interacting_users
                    if type(interacting) is InteractingUsers:  # its `add`, inlined
                        interacting._presence.interact(event.user_id)
                    else:
                        interacting.add(event.user_id)
                else:
                    self.after_session_horizon[_TOPIC_OF[event.type]] += 1
                if event.kind == "question":
                    self.questions[event.event_id] = (ts, event.session_id)
                    if window is not None:
                        self._question_hours.setdefault(ts // _ID_BUCKET_MS, []).append(
                            event.event_id
                        )
            elif event.reply_to is not None:
                earliest = self.first_reply_ts.get(event.reply_to)
                if earliest is None or ts < earliest:
                    self.first_reply_ts[event.reply_to] = ts
                    if window is not None:
                        self._reply_hours.setdefault(ts // _ID_BUCKET_MS, []).append(event.reply_to)
        elif type(event) is OrderPaid and self.keeps_orders:
            order = OrderFact(
                seq=self._seq,
                ts=ts,
                order_id=event.order_id,
                session_id=event.session_id,
                merchant_id=event.merchant_id,
                user_id=event.user_id,
                amount_cents=event.amount_cents,
                max_unit_price_cents=max(item.unit_price_cents for item in event.items),
                has_apparel=any(item.category == "apparel" for item in event.items),
                distinct_skus=len({item.sku_id for item in event.items}),
            )
            self.orders.append(order)
            self._note_order(event.merchant_id, event.user_id, ts, event.amount_cents)
            if event.session_id is not None:
                session = self._session(event.session_id, ts)
                end = session.horizon_from
                if end is None or ts <= end + self._session_horizon_ms:
                    session.orders.append(order)
                else:  # an order outside a session (still in `orders`)
                    self.after_session_horizon[_TOPIC_OF[event.type]] += 1
        elif type(event) is SessionStarted:
            session = self._session(event.session_id, ts)
            # A repeated start under a new event id keeps the earliest one.
            if session.started_ts is None or ts < session.started_ts:
                session.started_ts = ts
                session.room_id = event.room_id
                session.merchant_id = event.merchant_id
        elif type(event) is SessionEnded:
            session = self._session(event.session_id, ts)
            if session.abandoned_ts is not None:
                # Abandoned: only an end stamped past its session horizon can still be applied
                # (any earlier one is expired), and it is not the session's.
                self.after_session_horizon[_TOPIC_OF[event.type]] += 1
            elif session.ended_ts is None or ts < session.ended_ts:
                session.ended_ts = ts
                if self.dedupe_window_ms is not None and isinstance(session.presence, Presence):
                    self._ended_unfolded[event.session_id] = ts
        elif type(event) is GroupJoined or type(event) is GroupLeft:
            member = (event.merchant_id, event.user_id)
            joined = type(event) is GroupJoined
            self.group_events.setdefault(member, []).append((ts, self._seq, event.group_id, joined))
        elif type(event) is OrderRefunded:
            self.refunds.append(RefundFact(ts, event.order_id, event.amount_cents, event.reason))
            self._refund_index = None
        elif type(event) is ProductClicked:
            # No claim uses clicks, but they are events of the session (its last event).
            session = self._session(event.session_id, ts)
            end = session.horizon_from
            if end is not None and ts > end + self._session_horizon_ms:
                self.after_session_horizon[_TOPIC_OF[event.type]] += 1
        return True

    def fold_due(self) -> bool:
        """Run the folds the horizons allow now (closed sessions' presence and summaries with
        the period gate, closed months, orders), as `apply` does when a topic's horizon
        crosses an hour: for a ledger whose sources (`membership_from`, `refunds_from`) moved
        on while it applied nothing (the worker calls it for its idle partitions, else a
        summary waits for a record that may never come). True when something was folded."""

        def done() -> tuple[object, ...]:
            frozen = sum(len(figures) for figures in self.frozen_periods.values())
            return (self.folded_sessions, self.summarized_sessions, self.order_fold_ts, frozen)

        before = step = done()
        while True:  # until nothing moves: a session abandoned in one pass is summarized next
            self._fold_closed_sessions()
            if self.fold_sessions and self.refund_horizon_ms is not None:
                self._fold_orders()
                if self.fold_months:
                    self._own_order_users()
            if self.retire_summaries:
                self._retire_summaries()
            now = done()
            if now == step:
                return now != before
            step = now

    def _note_order(self, merchant_id: str, user_id: str, ts: int, amount_cents: int) -> None:
        """File one paid order under its (merchant, user) and its (merchant, month, user)."""
        pair = (merchant_id, user_id)
        held = self.first_orders.get(pair)
        bought = self.bought_before.get(pair) if held is None and self.bought_before else None
        if bought is not None:  # its first order's outcome folded
            if ts // DAY_MS > bought:  # its latest day: only the pair horizon reads it
                self.bought_before[pair] = ts // DAY_MS
        elif held is None:
            self.first_orders[pair] = (ts, None)
        else:
            first, later = held
            if ts < first:
                self.first_orders[pair] = (ts, first)
            elif ts > first and (later is None or ts < later):
                self.first_orders[pair] = (first, ts)
        key = (merchant_id, cst_month(ts), user_id)
        self.month_spend[key] = self.month_spend.get(key, 0) + amount_cents

    def refund_counts(self, paid_ts: int, refunded_ts: int) -> bool:
        """Whether a refund at `refunded_ts` counts for a payment of its order at `paid_ts`:
        at or after it and within the refund horizon (docs/design.md, "Worker state"); any
        with no horizon."""
        horizon = self.refund_horizon_ms
        return horizon is None or paid_ts <= refunded_ts <= paid_ts + horizon

    def refunds_of(self, order_id: str) -> Sequence[RefundFact]:
        """The refunds of an order id held (`RefundSource`: a ledger fed every refund)."""
        index = self._refund_index
        if index is None:
            index = self._refund_index = {}
            for refund in self.refunds:
                index.setdefault(refund.order_id, []).append(refund)
        return index.get(order_id, ())

    def refund_fold_ts(self) -> int | None:
        """The oldest `ts` a refund may have and still be applied here (`RefundSource`): the
        orders topic's horizon."""
        return self.horizon_ts(_ORDERS)

    def note_folded(self, order_id: str) -> None:
        """`RefundSource`: a ledger fed every refund decides its own at the fold."""

    def _fold_orders(self) -> None:
        """Fold the paid orders whose refunds are final (docs/design.md, "Worker state: what
        is kept", "The order fold"): with H the older of this ledger's orders horizon and the
        refund source's (`refunds_from`, or this ledger), an order paid at t folds once
        t + the refund horizon < H (every refund that can count for it, stamped at most the
        horizon after it, is applied: a later one is expired) and its cluster is whole: a
        summarized session's orders (no session order can come any more) or a lone order.
        An order id folds whole (all its held payments at once, `return_rate` counts it at
        its first): one of its clusters not yet due holds the others back. Its hits are read
        from the source's refunds under the horizon (`refund_counts`), its cases are added
        into `order_fold` (per claim the clusters' and pairs' integer sums, per buyer the
        running totals), and it leaves `orders`. This ledger's own refunds of a folded id
        stamped before H are decided (counted, late, unmatched) and dropped with it; a refund
        whose id has no held payment is dropped once H has passed its ts + the horizon (no
        payment it can count for can still be unfolded here): unmatched in a ledger that is
        its own source, else `dropped_refunds` once the source has dropped it too (its
        orders, if any, are another partition's, which folds them from its source, and may
        hold them unfolded until then)."""
        horizon_ms = self.refund_horizon_ms
        own = self.horizon_ts(_ORDERS)
        if horizon_ms is None or own is None:
            return
        source = self.refunds_from
        theirs = source.refund_fold_ts() if source is not None else own
        if theirs is None:
            return
        horizon = min(own, theirs)
        # Once a day of the horizon (each pass reads every held order): an order folds at most
        # a day late, and the passes cost ~0.1% of the soak's apply time.
        day = horizon // _DAY_MS
        # Orders of a period whose refund claims are not frozen yet stay (`agents.core.periods`):
        # those of sessions started from `held_from`, and sessionless ones paid from it. The
        # bound moves with the membership table's horizon too, which may catch up within a day.
        gate = self.period_gate
        held_from = gate.orders_held_from(self, horizon) if gate is not None else None
        if (
            self._order_fold_day is not None
            and day <= self._order_fold_day
            and held_from == self._order_fold_held
            and not self._order_fold_unblocked
        ):
            return
        self._order_fold_day = day
        self._order_fold_held = held_from
        self._order_fold_unblocked = False
        waits: set[str] = set()
        self._order_fold_waits = waits
        self.order_fold_ts = horizon
        if gate is not None:
            gate.freeze(self)  # both stages, before any order of theirs folds
        due = horizon - horizon_ms  # an order paid before it has all its refunds
        sessions, fold_sessions = self.sessions, self.fold_sessions
        # Only an order paid before `due` and stamped before `held_from` can fold: without one
        # the pass folds nothing, and the cluster walk below (every held order, ids joined
        # across clusters) is skipped. With the claims by period that is nearly every pass:
        # the gate holds a month's orders until its refund claims freeze, so a ledger walked
        # ~10,000 held orders a day and folded some once a month (issue 17, bench/RESULTS.md
        # "Soak"). This test reads two fields of each held order.
        if not any(
            order.ts < due and (held_from is None or _period_stamp(order, sessions) < held_from)
            for order in self.orders
        ):
            self._drop_unpaid_refunds(horizon, horizon_ms)
            return
        clusters: dict[tuple[str, str], list[OrderFact]] = {}
        blocked: set[tuple[str, str]] = set()
        keys_of_id: dict[str, set[tuple[str, str]]] = {}
        for order in self.orders:
            key = order_cluster(order, sessions, fold_sessions)
            clusters.setdefault(key, []).append(order)
            keys_of_id.setdefault(order.order_id, set()).add(key)
            if order.ts >= due:
                blocked.add(key)
            elif held_from is not None and _period_stamp(order, sessions) >= held_from:
                blocked.add(key)
            elif key[0] == "session":
                session = sessions.get(key[1])
                if session is None or session.summary is None:
                    blocked.add(key)  # its session can still get orders
                    waits.add(key[1])  # its summary runs the fold again
        changed = bool(blocked)
        while changed:  # an order id folds whole: a blocked cluster blocks its ids' others
            changed = False
            for keys in keys_of_id.values():
                if keys & blocked and not keys <= blocked:
                    blocked |= keys
                    changed = True
        folding = {key: orders for key, orders in clusters.items() if key not in blocked}
        if folding:
            self._fold_clusters(folding, horizon, horizon_ms)
            self.orders = [
                order for key, orders in clusters.items() if key in blocked for order in orders
            ]
            self.orders.sort(key=lambda order: order.seq)
        self._drop_unpaid_refunds(horizon, horizon_ms)

    def take_order_users(self, source: int) -> list[OrderUsers | OrderUsersClosed]:
        """As partition `source` of a worker: the order fold's buyer rows of every CST month
        final here, dropped here, then an announcement of the last such month
        (`OrderFold.take`); to be sent on, the rows to their buyer's owner and the
        announcement to every owner, rows first (docs/design.md, "The order fold's buyers at
        their owner"). A month is final once it ends by the last fold's due time (its
        horizon less the refund horizon: an order stamped before it can no longer be
        applied) and by the earliest order still held here (which may fold later). Once a
        fold's horizon, when it moved or a fold at the same horizon folded more (a session
        summarized after the pass of its day: `_order_fold_unblocked`)."""
        fold_ts, horizon_ms = self.order_fold_ts, self.refund_horizon_ms
        folded = self.order_fold.orders
        if (
            fold_ts is None
            or horizon_ms is None
            or (fold_ts == self._order_take_ts and folded == self._order_take_folded)
        ):
            return []
        self._order_take_ts = fold_ts
        self._order_take_folded = folded
        bound = fold_ts - horizon_ms
        if self.orders:
            bound = min(bound, min(order.ts for order in self.orders))
        return self.order_fold.take(source, bound)

    def receive_order_users(self, part: OrderUsers) -> None:
        """As the owner: hold a source partition's buyer row (`OrderFold.receive`)."""
        self.order_fold.receive(part)

    def receive_order_users_closed(self, closed: OrderUsersClosed, sources: int) -> int:
        """As the owner: note a source partition's announcement, and retire the buyers idle for
        the user horizon once every source has announced (`OrderFold.receive_closed`)."""
        return self.order_fold.receive_closed(closed, sources, self.user_horizon_ms)

    def _own_order_users(self) -> None:
        """A ledger fed every partition (`fold_months`: `livepulse analyze`) is its buyers'
        only source and their owner: its final months' rows go straight to itself."""
        for message in self.take_order_users(0):
            if isinstance(message, OrderUsers):
                self.receive_order_users(message)
            else:
                self.receive_order_users_closed(message, 1)

    def _fold_clusters(
        self, folding: Mapping[tuple[str, str], list[OrderFact]], horizon: int, horizon_ms: int
    ) -> None:
        """Add whole clusters of orders to `order_fold` (`_fold_orders`)."""
        fold = self.order_fold
        source = self.refunds_from or self
        payments: dict[str, list[tuple[tuple[str, str], OrderFact]]] = {}
        for key, orders in folding.items():
            for order in orders:
                payments.setdefault(order.order_id, []).append((key, order))
        # Per claim: (cluster) -> [h, n] and (cluster, buyer) -> [h, n] of this pass.
        by_cluster: list[dict[tuple[str, str], list[int]]] = [{} for _ in ORDER_CLAIMS]
        by_pair: list[dict[tuple[tuple[str, str], str], list[int]]] = [{} for _ in ORDER_CLAIMS]

        def case(claim: int, key: tuple[str, str], user: str, hit: bool, ts: int) -> None:
            for row in (
                by_cluster[claim].setdefault(key, [0, 0]),
                by_pair[claim].setdefault((key, user), [0, 0]),
            ):
                row[0] += hit
                row[1] += 1
            fold.case(claim, user, hit, ts)
            fold.hits[claim] += hit
            fold.cases[claim] += 1

        own = self._refund_index_or_build()
        dropped_own: set[int] = set()
        for order_id, paid in payments.items():
            of_id = source.refunds_of(order_id)
            if of_id and source is not self:
                source.note_folded(order_id)
            counted = [
                refund
                for refund in of_id
                if any(self.refund_counts(order.ts, refund.ts) for _key, order in paid)
            ]
            size_refunded = any(refund.reason == "size" for refund in counted)
            for key, order in paid:
                if order.has_apparel:
                    case(SIZE_REFUNDS, key, order.user_id, size_refunded, order.ts)
                case(BUNDLES, key, order.user_id, order.distinct_skus >= 2, order.ts)
                fold.orders += 1
            first_key, first = min(paid, key=lambda pair: order_key(pair[1]))
            case(RETURNS, first_key, first.user_id, bool(counted), first.ts)
            # The operator's refunds by session: the id's earliest session order's session.
            in_sessions = [
                order
                for _key, order in paid
                if order.session_id is not None
                and (session := self.sessions.get(order.session_id)) is not None
                and session.started_ts is not None
            ]
            if counted and in_sessions:
                earliest = min(in_sessions, key=lambda o: (o.ts, o.session_id or ""))
                assert earliest.session_id is not None
                row = fold.session_refunds.setdefault(earliest.session_id, [0, 0])
                row[0] += len(counted)
                row[1] += sum(refund.amount_cents for refund in counted)
            # This ledger's own refunds of the id stamped before the horizon: final now.
            for refund in own.get(order_id, ()):
                if refund.ts >= horizon:
                    continue  # may still count for a payment to come
                dropped_own.add(id(refund))
                if any(self.refund_counts(order.ts, refund.ts) for _key, order in paid):
                    fold.counted_refunds += 1
                elif any(order.ts < refund.ts - horizon_ms for _key, order in paid):
                    fold.late_refunds += 1
                else:
                    fold.unmatched_refunds += 1
        for claim in range(len(ORDER_CLAIMS)):
            for sums, totals in (
                (fold.first[claim], by_cluster[claim].values()),
                (fold.pairs[claim], by_pair[claim].values()),
            ):
                for h, n in totals:
                    sums[0] += 1
                    sums[1] += h * h
                    sums[2] += h * n
                    sums[3] += n * n
        if dropped_own:
            self.refunds = [refund for refund in self.refunds if id(refund) not in dropped_own]
            self._refund_index = None

    def _refund_index_or_build(self) -> dict[str, list[RefundFact]]:
        self.refunds_of("")
        assert self._refund_index is not None
        return self._refund_index

    def drop_refunds_the_source_dropped(self) -> bool:
        """Run the last order fold's drop of refunds with no held payment again, now (the
        refund source has just dropped some: this ledger's copies of them, decided by the
        fold that read the source, or never matched, go at once instead of at its next fold,
        and a report meanwhile does not count them as unmatched). True if any went."""
        horizon, horizon_ms = self.order_fold_ts, self.refund_horizon_ms
        if horizon is None or horizon_ms is None or self.refunds_from is None:
            return False
        held = len(self.refunds)
        self._drop_unpaid_refunds(horizon, horizon_ms)
        return len(self.refunds) != held

    def _drop_unpaid_refunds(self, horizon: int, horizon_ms: int) -> None:
        """Drop the refunds whose id has no held payment once every payment they can count for
        is past the fold (`_fold_orders`)."""
        # Only a refund stamped before the fold's horizon less the refund horizon can go:
        # with none (every pass of a ledger younger than that horizon), no set of every held
        # order's id is built (issue 19: a daily pass over ~10,000 held orders).
        due = horizon - horizon_ms
        if all(refund.ts >= due for refund in self.refunds):
            return
        held_ids = {order.order_id for order in self.orders}
        source = self.refunds_from
        keep: list[RefundFact] = []
        for refund in self.refunds:
            if refund.ts + horizon_ms >= horizon or refund.order_id in held_ids:
                keep.append(refund)
            elif source is None:
                self.order_fold.unmatched_refunds += 1  # no payment of it at or before it
            elif refund in source.refunds_of(refund.order_id):
                # Another partition may still hold its order unfolded (a session not yet
                # summarized), whose held claims read this copy in a merged report: kept
                # until the source, which knows its process's held orders, drops it.
                keep.append(refund)
            else:
                self.order_fold.dropped_refunds += 1
        if len(keep) != len(self.refunds):
            self.refunds = keep
            self._refund_index = None

    def _drop_ids_below(self, hour: int, topic: int) -> bool:
        """Forget the ids of `topic` filed under hours before `hour` (wholly below the
        horizon: an event that old is expired before its id is looked up); False if the
        topic's horizon had already passed that hour (nothing to do)."""
        kept_from = self._kept_from_hour[topic]
        if kept_from is not None and hour <= kept_from:
            return False
        self._kept_from_hour[topic] = hour
        hours = self._id_hours[topic]
        seen = self._seen_ids
        for old in [h for h in hours if h < hour]:
            seen.difference_update(hours.pop(old))
        if len(self._seen_runs):
            self._seen_runs.expire(topic, self._kept_from_hour)
        if len(self._seen_wide):
            self._seen_wide.expire(topic, self._kept_from_hour)
        return True

    def _holds_wide(self, key: int) -> bool:
        """Whether the wide runs hold `key` (a `wide_key`)."""
        wide = self._seen_wide
        return (
            key <= wide.max_key and wide.might_hold(key) and wide.holds(key, self._kept_from_hour)
        )

    @staticmethod
    def _split_keys(keys: Collection[int]) -> tuple[list[int], list[int], list[int]]:
        """The set's keys as those that fit the runs, the `wide_key`s of those the wide runs
        take, and the rest (which stay in the set)."""
        if max(keys, default=-1) < KEY_LIMIT:  # every key fits (the usual batch): no loop
            return list(keys), [], []
        short: list[int] = []
        wide: list[int] = []
        rest: list[int] = []
        for key in keys:
            if key < KEY_LIMIT:
                short.append(key)
                continue
            if _WIDE_TAG <= key < _WIDE_END:
                wide.append(key - _WIDE_TAG)
            else:
                rest.append(key)
        return short, wide, rest

    def _compact_seen_ids(self) -> None:
        """Move the ids of `_seen_ids` into `_seen_runs` (16 bytes and a tag each) or, too long
        for its keys, with a shape `wide_key` reads, into `_seen_wide` (24 bytes and a tag); the
        others (and, with a window, any not filed by hour) stay."""
        runs = self._seen_runs
        seen = self._seen_ids
        moved: list[tuple[list[int], int]] = []
        moved_wide: list[tuple[list[int], int]] = []
        if self.dedupe_window_ms is None:
            short, wide, rest = self._split_keys(seen)
            moved.append((short, 0))
            moved_wide.append((wide, 0))
            stay = set(rest)
        else:
            filed = 0
            stay = set()
            for topic, hours in enumerate(self._id_hours):
                for hour, keys in list(hours.items()):
                    filed += len(keys)
                    if not 0 <= hour * TOPIC_SLOTS + topic < TAG_LIMIT:
                        stay.update(keys)  # stamped past year ~32,000: its tag does not fit
                        continue
                    short, wide, rest = self._split_keys(keys)
                    moved.append((short, hour * TOPIC_SLOTS + topic))
                    if wide:
                        moved_wide.append((wide, hour * TOPIC_SLOTS + topic))
                    if rest:
                        hours[hour] = rest
                        stay.update(rest)
                    else:
                        del hours[hour]
            if filed != len(seen):  # ids not filed by hour (none, unless a state had some)
                moved_keys = {key for keys, _tag in moved for key in keys}
                moved_keys |= {_WIDE_TAG + key for keys, _tag in moved_wide for key in keys}
                stay |= {key for key in seen if key not in moved_keys}
        if moved:
            runs.absorb(moved, self._kept_from_hour)
        if moved_wide:
            self._seen_wide.absorb(moved_wide, self._kept_from_hour)
        self._seen_ids = stay
        # Ids that stay count in the step (ids all too long would otherwise be rescanned
        # every `MIN_BATCH` ids: quadratic).
        held = len(runs) + len(self._seen_wide) + len(stay)
        self._seen_batch = max(MIN_BATCH, held // 4) + len(stay)

    def seen_id_count(self) -> int:
        """How many event ids are remembered (`seen_ids`' size, without building it)."""
        return len(self._seen_ids) + self._seen_runs.live_count() + self._seen_wide.live_count()

    def seen_ids(self) -> set[int]:
        """Every event id remembered (each as `_id_key` of it): the set's and the runs' held
        inside their window."""
        return (
            {_from_set_key(key) for key in self._seen_ids}
            | {key for key, _tag in self._seen_runs.live_keys(self._kept_from_hour)}
            | {
                _id_key(wide_id(key))
                for key, _tag in self._seen_wide.live_keys(self._kept_from_hour)
            }
        )

    def answers(self, asked_ts: int, replied_ts: int | None) -> bool:
        """Whether a question's earliest reply answers it: with a window, only within the
        answer horizon (the window) of the question, either way (docs/design.md, "Worker
        state: what is kept"); without one, any reply."""
        if replied_ts is None:
            return False
        window = self.dedupe_window_ms
        return window is None or abs(replied_ts - asked_ts) <= window

    def reply_latencies_by_session(self) -> dict[str, tuple[int, list[int]]]:
        """Per session id (sorted) of the questions: (questions, held and folded together;
        the first-reply latencies in ms of the held answered ones) (`reply_latency`'s
        definition). The folded answered ones are in `folded_replies` (per session: counts,
        sum and histogram buckets), `folded_within_3min` and `folded_figures.reply_latency_s`.
        """
        asked: dict[str, int] = dict(self.folded_questions)
        latencies: dict[str, list[int]] = {}
        first_reply = self.first_reply_ts
        for question_id, (asked_ts, sid) in self.questions.items():
            asked[sid] = asked.get(sid, 0) + 1
            replied_ts = first_reply.get(question_id)
            if self.answers(asked_ts, replied_ts):
                assert replied_ts is not None
                latencies.setdefault(sid, []).append(replied_ts - asked_ts)
        return {sid: (asked[sid], latencies.get(sid, [])) for sid in sorted(asked)}

    def _fold_questions(self) -> None:
        """Fold the questions whose answer horizon has passed, and drop the replies that
        answered no question within theirs (`unmatched_replies`).

        A question asked at `a` is folded once the interactions topic's horizon `h` passes
        `a + window`: every reply still applicable has `ts >= h`, too late to answer it. Its
        earliest reply, if within the horizon of it, gives its latency; a reply outside it
        answered nothing and is counted. A reply (its question unseen) at `t` is dropped once
        `h` passes `t + window`: a question still applicable is asked after `h`, too late.
        Whole hours of `ts` are folded, so each question is folded at most an hour late.
        """
        window = self.dedupe_window_ms
        horizon = self.horizon_ts(_INTERACTIONS)
        if window is None or horizon is None:
            return
        below_hour = (horizon - window) // _ID_BUCKET_MS  # hours wholly before horizon - window
        first_reply = self.first_reply_ts
        questions = self.questions
        for hour in [h for h in self._question_hours if h < below_hour]:
            for question_id in self._question_hours.pop(hour):
                held = questions.pop(question_id, None)
                if held is None:
                    continue
                asked_ts, sid = held
                replied_ts = first_reply.pop(question_id, None)
                self.folded_questions[sid] = self.folded_questions.get(sid, 0) + 1
                if self.answers(asked_ts, replied_ts):
                    assert replied_ts is not None
                    self._fold_answer(sid, replied_ts - asked_ts)
                elif replied_ts is not None:
                    self.unmatched_replies += 1
        for hour in [h for h in self._reply_hours if h < below_hour]:
            for question_id in self._reply_hours.pop(hour):
                if question_id in questions:
                    continue  # its question is held: folded with it
                replied_ts = first_reply.get(question_id)
                if replied_ts is not None and replied_ts // _ID_BUCKET_MS < below_hour:
                    del first_reply[question_id]
                    self.unmatched_replies += 1

    def _fold_answer(self, sid: str, latency_ms: int) -> None:
        """One answered question of session `sid` folded: into its session's counts (exact:
        `reply_latency`'s clustered interval and the operator's histogram read them), the
        overall count within 3 min (exact), and the sketch of the latencies in seconds (p50
        and p95, within its bound)."""
        summary = self.folded_replies.get(sid)
        if summary is None:
            summary = self.folded_replies[sid] = [0] * (
                FOLDED_BUCKETS + len(REPLY_LATENCY_BOUNDS_S) + 1
            )
        summary[FOLDED_ANSWERED] += 1
        summary[FOLDED_WITHIN_3S] += latency_ms <= REPLY_BAR_MS
        summary[FOLDED_SUM_MS] += latency_ms
        summary[FOLDED_BUCKETS + reply_bucket(latency_ms)] += 1
        self.folded_within_3min += latency_ms <= OLD_REPLY_BAR_MS
        self.folded_figures.reply_latency_s.add(latency_ms / 1000)

    def _fold_closed_sessions(self) -> None:
        """Fold the presence of every started session whose end is older than the horizons of
        the sessions, views and orders topics (docs/design.md, "Worker state: what is kept"):
        no start, end, view or order older than the end can be applied any more, so the
        watch times and first joins are final, and so is every order's watch time up to it
        for the orders before the end."""
        if self._awaiting_summary:
            self._summarize_sessions()
        if self.fold_sessions:  # after: the board takes an abandoned session's facts first
            self._abandon_sessions()
        if self.fold_months:
            self._fold_closed_months()
            self._compact_group_events()
        if self.fold_months and self.first_orders:
            self._fold_first_orders()
        if self.user_horizon_ms is not None and (
            self.folded_buyers or self.folded_dwellers or self.month_folded_users
        ):
            self.retire_idle_users()
        if self.pair_horizon_ms is not None and (self.bought_before or self.pairs_decided):
            self.forget_idle_pairs()
        horizons = [self.horizon_ts(topic) for topic in _PRESENCE_TOPICS]
        if not self._ended_unfolded or any(h is None for h in horizons):
            return
        horizon = min(h for h in horizons if h is not None)
        for sid, ended_ts in list(self._ended_unfolded.items()):
            if ended_ts >= horizon:
                continue
            del self._ended_unfolded[sid]
            session = self.sessions[sid]
            presence = session.presence
            if session.started_ts is None or not isinstance(presence, Presence):
                continue  # no session for any claim: left as it is
            session.settle_interacting()
            session.presence = FoldedPresence.fold(
                presence,
                session.close_ts,
                session.ended_ts,
                [(order.user_id, order.ts) for order in session.orders if order.ts < ended_ts],
            )
            self.folded_sessions += 1
            self.folded_ids.append(sid)
            if self.fold_sessions:  # summarized at a later call, past its session horizon
                self._awaiting_summary[sid] = ended_ts

    def _summary_horizon(self) -> int | None:
        """The latest `ts` whose session horizon (+ `SESSION_HORIZON_MS`) is behind every summary
        topic's horizon, the groups' of `membership_from` included (None: a topic has none)."""
        groups = self.membership_from or self
        horizons = [
            (groups if topic == _GROUPS else self).horizon_ts(topic) for topic in _SUMMARY_TOPICS
        ]
        if any(h is None for h in horizons):
            return None
        return min(h for h in horizons if h is not None) - SESSION_HORIZON_MS

    def _abandon_sessions(self) -> None:
        """Abandon every started session with no end whose newest event + the session horizon
        is behind every summary topic's horizon (docs/design.md, "The session horizon"): no
        event stamped up to that can be applied any more, so every event naming it from now
        on is past its session horizon and not the session's. Its presence is folded as it
        stands (intervals still open close at its newest event, as a never-ended session's
        always do) and it waits for its summary like an ended one. O(sessions held), once per
        hour of the horizons; a session with no `session_started` is left as it is."""
        horizon = self._summary_horizon()
        if horizon is None:
            return
        for sid, session in self.sessions.items():
            presence = session.presence
            if (
                session.ended_ts is not None
                or session.abandoned_ts is not None
                or session.started_ts is None
                or session.last_ts >= horizon
                or not isinstance(presence, Presence)
            ):
                continue
            session.abandoned_ts = last = session.last_ts
            session.settle_interacting()
            session.presence = FoldedPresence.fold(
                presence, last, None, [(order.user_id, order.ts) for order in session.orders]
            )
            self.abandoned_sessions += 1
            self.folded_sessions += 1
            self.folded_ids.append(sid)
            self._awaiting_summary[sid] = last

    def _summarize_sessions(self) -> None:
        """Summarize every folded session whose session horizon (end + `SESSION_HORIZON_MS`)
        is older than the horizons of the sessions, views, orders, interactions and groups
        topics: no event stamped at or before it can be applied any more, and every event
        applicable later is after it (not the session's), so its figures are final, its
        members' membership at its orders and first joins too (docs/design.md)."""
        groups = self.membership_from or self
        horizons = [
            (groups if topic == _GROUPS else self).horizon_ts(topic) for topic in _SUMMARY_TOPICS
        ]
        if any(h is None for h in horizons):
            return
        horizon = min(h for h in horizons if h is not None) - SESSION_HORIZON_MS
        if horizon <= min(self._awaiting_summary.values()):
            return  # none is due (once an hour of each topic: O(sessions waiting))
        held_from = self.period_gate(self) if self.period_gate is not None else None
        summarized = False
        for sid, ended_ts in list(self._awaiting_summary.items()):
            if ended_ts >= horizon:
                continue
            started_ts = self.sessions[sid].started_ts
            if held_from is not None and started_ts is not None and started_ts >= held_from:
                continue  # a period still needs its raw facts (`agents.core.periods`)
            del self._awaiting_summary[sid]
            session = self.sessions[sid]
            if isinstance(session.presence, FoldedPresence) and session.horizon_from is not None:
                self._summarize(session, session.presence, sid)
                # For the board too: what it keeps per (session, user) becomes counts.
                self.folded_ids.append(sid)
                summarized = True
                waits = self._order_fold_waits
                if waits is None or sid in waits:  # orders due wait for it: fold again
                    self._order_fold_unblocked = True
        if summarized and self.board_horizon_ms is not None:
            self._settle_board_curves(horizon)
            self._retire_summaries()

    def _summarize(self, session: SessionFacts, presence: FoldedPresence, sid: str) -> None:
        """Replace a closed session's raw facts by its `SessionSummary` (every sum a claim
        or its interval reads of it, see the class) and the ledger's per-user totals."""
        horizon_from = session.horizon_from
        assert horizon_from is not None and session.started_ts is not None
        assert session.merchant_id is not None
        ended, started, merchant = session.ended_ts, session.started_ts, session.merchant_id
        last = horizon_from + SESSION_HORIZON_MS
        memberships: dict[str, Membership] = {}
        group_events = (self.membership_from or self).group_events

        def member_at(user: str, ts: int) -> bool:
            found = memberships.get(user)
            if found is None:
                events = group_events.get((merchant, user))
                found = memberships[user] = Membership(events) if events else NEVER_MEMBER
            return found.member_at(ts)

        # What the freeze of the session's day found, final then (`FoundMembers`): not looked
        # up again (issue 19).
        gate = self.period_gate
        found = gate.members_found(sid) if gate is not None else None
        if found is None or found.late != late_group_events(self.membership_from or self):
            found = _NOTHING_FOUND
        orders_to, ordered = found.orders_to, found.ordered
        summary = SessionSummary()
        orders = sorted(session.horizon_orders(), key=lambda order: (order.ts, order.order_id))
        # Events after the session horizon that came before its end was known: counted now
        # (the others were at their apply), so the count does not depend on arrival order.
        self.after_session_horizon[_ORDERS] += len(session.orders) - len(orders)
        pairs: dict[str, list[int]] = {}
        tail = summary.tail
        for order in orders:
            after_5min = order.ts - started >= FIVE_MINUTES_MS
            member = (
                (order.user_id, order.ts) in ordered
                if order.ts < orders_to
                else member_at(order.user_id, order.ts)
            )
            pair = pairs.setdefault(order.user_id, [0, 0, 0])
            pair[BUYER_ORDERS] += 1
            pair[BUYER_AFTER5] += after_5min
            pair[BUYER_MEMBER] += member
            amount = order.amount_cents
            summary.gmv_cents += amount
            day = summary.days.setdefault(cst_day_start(order.ts), [0, 0])
            day[0] += amount
            day[1] += 1
            # `post_live_tail`: paid while live, or in the 3-day tail; a session order later
            # than that (up to the session horizon) counts in neither; nor, having no end, does
            # an abandoned session's.
            if ended is not None and order.ts <= ended + POST_LIVE_TAIL_MS:
                if order.ts <= ended:
                    tail[1] += amount
                    tail[3] += 1
                else:
                    tail[0] += amount
                    tail[2] += 1
                tail[4] += 1
                tail[5] += amount
                tail[6] += amount * amount
            price = order.max_unit_price_cents
            minutes = presence.watch_ms(order.user_id, until_ts=order.ts) / 60_000
            self.folded_figures.fold_order(price_tier(price), price, minutes)
        if orders:
            self.folded_figures.price_watch_sessions += 1
        sums = summary.share_sums
        for user, pair in pairs.items():
            n, hits_after, hits_member = pair
            summary.orders += n
            summary.after_5min += hits_after
            summary.member_orders += hits_member
            sums[SHARE_PAIRS] += 1
            sums[SHARE_N2] += n * n
            sums[SHARE_AFTER5_H2] += hits_after * hits_after
            sums[SHARE_AFTER5_HN] += hits_after * n
            sums[SHARE_MEMBER_H2] += hits_member * hits_member
            sums[SHARE_MEMBER_HN] += hits_member * n
            totals = self.folded_buyers.get(user)
            if totals is None:
                self.folded_buyers[user] = self._user_row(pair, started)
            else:
                for i, value in enumerate(pair):
                    totals[i] += value
                self._touch_row(totals, BUYER_LAST_DAY, started)
        summary.days = dict(sorted(summary.days.items()))
        joined = {user: first for user, first in session.first_joins() if first <= last}
        # A user whose joins all came after the horizon (the fold keeps first joins only).
        self.after_session_horizon[_VIEWS] += len(presence) - len(joined)
        viewers = set(joined)
        viewers.update(session.interacting_users)
        viewers.update(pairs)
        summary.viewers = len(viewers)
        summary.uplift = uplift_counts(viewers, session.interacting_users, pairs)
        if viewers:  # `interaction_uplift` reads it from the ledger's moments from now on
            self.folded_uplift = add_moments(
                [self.folded_uplift, row_moments([summary.uplift], UPLIFT_COLUMNS)]
            )
        month = self.month_first_joins.setdefault((merchant, cst_month(started)), {})
        dwell = summary.dwell
        members: set[str] = set()  # member at their first join: looked up once a user
        joins_to, joined_members = found.joins_to, found.joined
        for user, first in joined.items():
            known = month.get(user)
            if known is None or first < known:
                month[user] = first
            if not (user in joined_members if first < joins_to else member_at(user, first)):
                continue
            members.add(user)
            watched = presence.watch_ms(user)
            dwell[0] += 1
            dwell[1] += watched
            dwell[2] += watched * watched
            row = self.folded_dwellers.get(user)
            if row is None:
                self.folded_dwellers[user] = self._user_row((watched, 1), first)
            else:
                row[0] += watched
                row[1] += 1
                self._touch_row(row, DWELL_LAST_DAY, first)
        self._fold_session_sums(summary, ended is not None)
        by_membership: dict[str, list[int]] = {"members": [], "others": []}
        for user in joined:  # the HTML report's watch time by membership
            group = "members" if user in members else "others"
            by_membership[group].append(presence.watch_ms(user))
        for group, watch_ms in by_membership.items():
            self.folded_figures.fold_watch(group, watch_ms)
        self._summarize_board(session, summary, presence, orders, viewers, set(pairs))
        summary.peak = peak_of(presence.minutes)[0]
        self._add_board_minutes(session, presence.minutes)
        summary.entries = presence.entries
        session.presence = summary
        session.orders = []
        session.interacting_users = set()
        self.summarized_sessions += 1

    def _init_user_horizon(self, user_horizon_ms: int | None) -> None:
        """The user horizon's state, empty (docs/design.md, "The user horizon")."""
        #: A user whose folded rows (`folded_buyers`, `folded_dwellers`, `month_folded_users`)
        #: last changed at an event stamped more than this before the summaries' horizon is
        #: retired (`retire_idle_users`); None: every user's rows kept for ever.
        self.user_horizon_ms = user_horizon_ms
        #: Each user's last active day is kept in their rows: with a horizon, every row of
        #: `folded_buyers`, `folded_dwellers` and `month_folded_users` ends with the latest
        #: day (`ts // DAY_MS`, 3 bytes pickled) of an event it was changed at
        #: (`BUYER_LAST_DAY`, `DWELL_LAST_DAY`, `MONTH_LAST_DAY`; `_user_row`, `_touch_row`).
        self.retired_users = 0
        #: The retired users' buyer rows as cluster sums (`RETIRED_*` columns).
        self.retired_buyers: list[int] = [0] * 6
        #: The retired users' dweller rows as `ClusterSums` (G, sum w^2, sum w n, sum n^2).
        self.retired_dwellers: list[int] = [0] * 4
        #: The retired users' month rows' moments (`SPEND_MOMENTS`).
        self.retired_spend: list[int] = [0] * len(SPEND_MOMENTS)
        # The CST day of the last pass's cutoff: a pass at most once a day of event time.
        self._user_retire_day = -1
        #: `group_repurchase_30d`'s (merchant, user) pairs whose outcome is final (first
        #: order + 30 days behind the summaries' horizon), folded into counts: [eligible,
        #: repurchased] (`_fold_first_orders`; with `fold_months` only: one ledger that
        #: holds every order of its users, since a first order is a minimum over partitions).
        self.repurchase_folded: list[int] = [0, 0]
        #: Those pairs -> their latest order's day (`ts // DAY_MS`): "this user already bought
        #: from this merchant" (a later order is not a first one). Kept for ever by default
        #: (`PairDays`: 18 bytes a pair); with the opt-in pair horizon (`pair_horizon_ms`),
        #: dropped once that is older than it (a later order then counts as a first one).
        self.bought_before = PairDays()
        self.forgotten_pairs = 0
        self._first_fold_day = -1

    def _fold_first_orders(self) -> None:
        """Fold every (merchant, user) whose first order + 30 days is behind the summaries'
        horizon (`_month_cutoff`: no order stamped at or before it, nor a group event
        deciding membership at the first order, can be applied any more): whether it is
        eligible (a member at the first order) and repurchased is final, counted in
        `repurchase_folded`; the pair is kept only as bought before. Once a day."""
        cutoff = self._month_cutoff()
        if cutoff is None or cutoff // DAY_MS <= self._first_fold_day:
            return
        self._first_fold_day = cutoff // DAY_MS
        member_at = self._member_lookup()
        window = 30 * DAY_MS
        for pair, (first, later) in list(self.first_orders.items()):
            if first + window >= cutoff:
                continue
            del self.first_orders[pair]
            self.first_members.pop(pair, None)  # (none recorded in one ledger: no take)
            if member_at(pair[0], pair[1], first):
                self.repurchase_folded[0] += 1
                self.repurchase_folded[1] += later is not None and later <= first + window
            self.bought_before[pair] = (later if later is not None else first) // DAY_MS

    def _user_row(self, values: tuple[int, ...] | list[int], ts: int) -> list[int]:
        """A new per-user row of `values`, with the day of `ts` after them with a horizon
        (one list of the final length: no over-allocation from a later append)."""
        if self.user_horizon_ms is None:
            return list(values)
        return list(values) + [_day_of(ts)]  # exact: `[*values, day]` over-allocates

    def _touch_row(self, row: list[int], column: int, ts: int) -> None:
        """Move a per-user row's last-day `column` on to the day of `ts` (with a horizon;
        a row written before the horizon was set gets the column)."""
        if self.user_horizon_ms is None:
            return
        day = ts // DAY_MS
        if len(row) <= column:
            row.append(_day_of(ts))
        elif day > row[column]:
            row[column] = _day_of(ts)

    def _idle_users(self, cut: int) -> list[str]:
        """The users whose rows carry a last day, all of them before the day `cut`."""
        rows = (
            (self.folded_buyers, BUYER_LAST_DAY),
            (self.folded_dwellers, DWELL_LAST_DAY),
            (self.month_folded_users, MONTH_LAST_DAY),
        )
        idle: set[str] = set()
        for held, column in rows:
            idle.update(
                user for user, row in held.items() if len(row) > column and row[column] < cut
            )
        for held, column in rows:  # active in another row: kept
            idle.difference_update(
                [
                    user
                    for user in idle
                    if len(row := held.get(user, ())) > column and row[column] >= cut
                ]
            )
        return sorted(idle)

    def retire_idle_users(self) -> int:
        """Retire every user whose folded rows last changed more than the user horizon
        before the summaries' horizon (`_month_cutoff`): their rows leave `folded_buyers`,
        `folded_dwellers` and `month_folded_users` and are added into the retired users'
        cluster sums and moments, which the intervals read as clusters of their own. Every
        observed value is unchanged (the rows' totals stay in the sums); a user who comes
        back starts a new cluster. Once a day of event time; how many were retired."""
        assert self.user_horizon_ms is not None
        cutoff = self._month_cutoff()
        if cutoff is None or cutoff // DAY_MS <= self._user_retire_day:
            return 0
        self._user_retire_day = cutoff // DAY_MS
        cut = (cutoff - self.user_horizon_ms) // DAY_MS  # the first day still kept
        idle = self._idle_users(cut)
        buyers, dwellers, spend = self.retired_buyers, self.retired_dwellers, self.retired_spend
        for user in idle:
            bought = self.folded_buyers.pop(user, None)
            if bought is not None:
                n = bought[BUYER_ORDERS]
                after5, member = bought[BUYER_AFTER5], bought[BUYER_MEMBER]
                buyers[RETIRED_G] += 1
                buyers[RETIRED_N2] += n * n
                buyers[RETIRED_AFTER5_H2] += after5 * after5
                buyers[RETIRED_AFTER5_HN] += after5 * n
                buyers[RETIRED_MEMBER_H2] += member * member
                buyers[RETIRED_MEMBER_HN] += member * n
            dwelled = self.folded_dwellers.pop(user, None)
            if dwelled is not None:
                watched, count = dwelled[0], dwelled[1]
                dwellers[0] += 1
                dwellers[1] += watched * watched
                dwellers[2] += watched * count
                dwellers[3] += count * count
            row = self.month_folded_users.pop(user, None)
            if row is not None:
                for i, columns in enumerate(SPEND_MOMENTS):
                    product = 1
                    for j in columns:
                        product *= row[j]
                    spend[i] += product
        self.retired_users += len(idle)
        return len(idle)

    def _init_period_rows(self) -> None:
        """A worker partition's frozen parts' per-user rows routed to their user's owner
        partition (`agents.core.period_rows`)."""
        #: As a source: the closing horizon at the last first-stage freeze
        #: (`periods.freeze_closed`), and the last month whose rows were taken.
        self.periods_frozen_to: int | None = None
        self.period_rows_sent_through = ""
        #: The last month whose `group_member_dwell` rows were not taken (`period_rows.
        #: WHOLE_PERIOD`: "" for a state that routes them from the start; a state of snapshot
        #: version 12 routed none of the months it had sent).
        self.period_dwell_after = ""
        #: As a source: the refund closing horizon at the last second-stage freeze (the
        #: `REFUND_CLAIMS`' own), and the last month whose refund claims' rows were taken.
        self.period_refunds_frozen_to: int | None = None
        self.period_refunds_sent_through = ""
        #: As the owner: (kind, period) -> source partition -> claim -> user -> row, until
        #: every source has announced the period's month (`period_sources_through`); then
        #: folded into `period_users`, (kind, period) -> claim -> folded part.
        self.period_rows_in: dict[tuple[str, str], dict[int, dict[str, dict[str, Any]]]] = {}
        self.period_sources_through: dict[int, str] = {}
        #: As the owner: each source's announced `period_dwell_after`.
        self.period_dwell_after_by: dict[int, str] = {}
        #: As the owner: each source's announced month through which its refund claims' rows
        #: were sent (their second stage: `period_rows_in` holds them until every source's).
        self.period_refund_sources_through: dict[int, str] = {}
        self.period_users: dict[tuple[str, str], dict[str, Any]] = {}

    def _init_month_fold(self, fold_months: bool) -> None:
        """The closed months' fold of `group_spend_multiple`, empty (docs/design.md, "Closed
        months of `group_spend_multiple`")."""
        #: Whether closed (merchant, month)s fold into per-user totals (`_fold_closed_months`):
        #: only a ledger that holds every partition's sessions, orders and group events (one
        #: fed every topic: `livepulse analyze`, the core soak); a partition of a worker holds
        #: a month's rows in part (its sessions' joins, its orders' spend) and folds them
        #: across partitions instead (`take_closed_month_rows`, `receive_month_row`).
        self.fold_months = fold_months
        #: user -> their rows of the closed (merchant, month)s summed (`MONTH_*` columns):
        #: grows with distinct users, not with months.
        self.month_folded_users: dict[str, list[int]] = {}
        self.folded_months = 0
        # The CST day of the last pass's cutoff: a pass at most once a day of event time.
        self._month_fold_day = -1
        # As a source partition: `summarized_sessions` at its last take (a take runs again
        # when it moved, within the day: `take_closed_month_rows`; absent in a v9 state).
        self._month_take_summarized = 0
        # As a source partition: its last announcement (`MonthClosed`), None before any.
        self._month_announced: MonthClosed | None = None
        #: As the owner of a part of the users (rows keyed by user): (merchant, month) -> user
        #: -> source partition -> (its earliest first join or None, its spend in cents), held
        #: until every source has announced the month closed (`receive_month_closed`).
        self.month_rows_in: dict[tuple[str, str], dict[str, dict[int, tuple[int | None, int]]]]
        self.month_rows_in = {}
        # source partition -> its latest announcement.
        self._month_closed_by: dict[int, MonthClosed] = {}
        # (merchant, month)s combined here: a row or announcement of one sent again (a source
        # restored from an older snapshot) is ignored, never added twice.
        self._months_combined: set[tuple[str, str]] = set()

    def _month_cutoff(self) -> int | None:
        """The latest CST month end a (merchant, month) may have and be closed: the horizons
        of the sessions, views, orders, interactions and groups topics less the session
        horizon (None: a topic has no horizon yet): the summaries' own horizon."""
        return self._summary_horizon()

    def _closed_months(self, cutoff: int) -> tuple[set[str], set[tuple[str, str]]]:
        """The months with rows held that end by `cutoff`, and the (merchant, month)s ending
        by it with a session not summarized yet (still live, or ended late): those stay
        open, as their first joins may still change."""
        closed = {
            month
            for month in {key[1] for key in self.month_first_joins}
            if cst_month_end(month) <= cutoff
        }
        closed.update(
            key[1]
            for key in self.month_spend
            if key[1] not in closed and cst_month_end(key[1]) <= cutoff
        )
        if self._month_announced is not None:  # its open (merchant, month)s, to announce
            closed.update(month for _merchant, month in self._month_announced.still_open)
        held = {
            (session.merchant_id, cst_month(session.started_ts))
            for session in self.sessions.values()
            if session.started_ts is not None
            and session.merchant_id is not None
            and not isinstance(session.presence, SessionSummary)
            and cst_month_end(cst_month(session.started_ts)) <= cutoff
        }
        return closed, held

    def _member_lookup(self) -> Callable[[str, str, int], bool]:
        """Membership at a ts by (merchant, user), from the group events that decide it."""
        groups = self.membership_from or self
        memberships: dict[tuple[str, str], Membership] = {}

        def member_at(merchant: str, user: str, ts: int) -> bool:
            found = memberships.get((merchant, user))
            if found is None:
                events = groups.group_events.get((merchant, user))
                found = Membership(events) if events else NEVER_MEMBER
                memberships[(merchant, user)] = found
            return found.member_at(ts)

        return member_at

    def _fold_month_row(self, user: str, member: bool, cents: int, joined_ts: int) -> None:
        """Add one population row of a closed month into its user's totals."""
        row = self.month_folded_users.get(user)
        if row is None:
            row = self.month_folded_users[user] = self._user_row((0, 0, 0, 0), joined_ts)
        else:
            self._touch_row(row, MONTH_LAST_DAY, joined_ts)
        row[MONTH_MEMBER_CENTS] += cents if member else 0
        row[MONTH_MEMBERS] += member
        row[MONTH_CENTS] += cents
        row[MONTH_ROWS] += 1

    def _fold_closed_months(self) -> None:
        """Fold every closed (merchant, month) of `group_spend_multiple` into the per-user
        totals (`month_folded_users`) and drop its rows (`month_first_joins`, `month_spend`).

        A (merchant, month) is closed once the horizons of the sessions, views, orders,
        interactions and groups topics are past the month's end + the session horizon (no
        session start or order stamped in it can be applied any more) and every session of
        the merchant started in it is summarized (its first joins are final: a view after its
        session horizon is not the session's; and so is membership at them, fixed as at the
        summary). Its population and each member's spend and membership at the first join
        are then final, so are its rows; they are summed per user, which is all the claim's
        observed value and its interval (clustered by user) read of them.
        """
        cutoff = self._month_cutoff()
        if cutoff is None or cutoff // DAY_MS <= self._month_fold_day:
            return
        self._month_fold_day = cutoff // DAY_MS
        closed, held = self._closed_months(cutoff)
        if not closed:
            return
        member_at = self._member_lookup()
        spend = self.month_spend
        for key in sorted(k for k in self.month_first_joins if k[1] in closed and k not in held):
            merchant, month = key
            for user, joined_ts in self.month_first_joins.pop(key).items():
                cents = spend.pop((merchant, month, user), 0)
                self._fold_month_row(user, member_at(merchant, user, joined_ts), cents, joined_ts)
            self.folded_months += 1
        # Spend of a closed month by users outside its population is read by no figure.
        for spend_key in [k for k in spend if k[1] in closed and (k[0], k[1]) not in held]:
            del spend[spend_key]

    def take_closed_month_rows(self, source: int) -> list[MonthRow | MonthClosed]:
        """As partition `source` of a worker: the rows of the (merchant, month)s closed on
        its side (as `_fold_closed_months` decides, from its own topics' horizons and
        sessions), dropped here, then for each such month an announcement naming the
        merchants it still holds open; to be sent on, the rows to their user's owner and
        the announcements to every owner, rows first (docs/design.md, "Closed months of
        `group_spend_multiple`", across a worker's partitions)."""
        cutoff = self._month_cutoff()
        # Once a day of event time, as the one-ledger fold (a call after every batch costs
        # one comparison otherwise), and again when sessions were summarized since: a take
        # may come after the horizons moved and before the sessions they close are summarized
        # (the membership table's horizon moves no fold), and its announcement holds their
        # months open until a later take says otherwise (two workers: no month combined).
        summarized = self.summarized_sessions
        if cutoff is None or (
            cutoff // DAY_MS <= self._month_fold_day
            and summarized == getattr(self, "_month_take_summarized", summarized)
        ):
            return []
        self._month_fold_day = cutoff // DAY_MS
        self._month_take_summarized = summarized
        closed, held = self._closed_months(cutoff)
        out: list[MonthRow | MonthClosed] = []
        spend = self.month_spend
        for key in sorted(k for k in self.month_first_joins if k[1] in closed and k not in held):
            merchant, month = key
            for user, joined_ts in sorted(self.month_first_joins.pop(key).items()):
                cents = spend.pop((merchant, month, user), 0)
                out.append(MonthRow(source, merchant, month, user, joined_ts, cents))
        # Spend of users with no join here: their join, if any, is in another partition.
        for spend_key in sorted(k for k in spend if k[1] in closed and (k[0], k[1]) not in held):
            merchant, month, user = spend_key
            out.append(MonthRow(source, merchant, month, user, None, spend.pop(spend_key)))
        through = cst_month(cutoff - 1)
        if cst_month_end(through) > cutoff:  # the month of the cutoff is not over
            through = cst_month(cst_month_start(through) - 1)
        announced = MonthClosed(source, through, frozenset(held))
        if announced != self._month_announced:
            out.append(announced)
            self._month_announced = announced
        return out

    def receive_month_row(self, row: MonthRow) -> None:
        """Hold a source partition's row of a (merchant, month) for its user (a row sent
        again overwrites; one of a month combined here already is ignored)."""
        key = (row.merchant, row.month)
        if key in self._months_combined:
            return
        users = self.month_rows_in.setdefault(key, {})
        users.setdefault(row.user, {})[row.source] = (row.first_join_ts, row.cents)

    def receive_month_closed(self, closed: MonthClosed, sources: int) -> None:
        """Note a source partition's announcement; combine every (merchant, month) held that
        all `sources` have announced closed: per user the earliest
        first join over the sources (none: not in the population), the spend summed, and
        membership at that join, folded into the user's totals."""
        self._month_closed_by[closed.source] = closed
        announced = self._month_closed_by.values()
        if len(announced) < sources:
            return
        through = min(each.through for each in announced)
        still_open = frozenset().union(*(each.still_open for each in announced))
        ready = sorted(
            key for key in self.month_rows_in if key[1] <= through and key not in still_open
        )
        member_at = self._member_lookup()
        for key in ready:
            merchant, _month = key
            for user, parts in sorted(self.month_rows_in.pop(key).items()):
                joins = [joined for joined, _cents in parts.values() if joined is not None]
                if joins:
                    first = min(joins)
                    cents = sum(cents for _joined, cents in parts.values())
                    self._fold_month_row(user, member_at(merchant, user, first), cents, first)
            self._months_combined.add(key)

    def _init_first_order_exchange(self) -> None:
        """`group_repurchase_30d`'s pairs across a worker's partitions, empty (docs/design.md,
        "First orders at an owner partition")."""
        #: As the owner of a part of the users (pairs keyed by user): (merchant, user) -> the
        #: two earliest distinct order times of the parts the sources sent (`two_earliest`)
        #: and membership at the first (`OwnerPair`, recorded once the groups horizon has
        #: passed it: `note_first_members`), held until every source's announced cutoff is
        #: past the first + 60 days (`receive_firsts_closed`).
        self.first_orders_in: dict[tuple[str, str], OwnerPair] = {}
        #: As a source: membership at the first order of a pair held in `first_orders`, as
        #: (that first order's ts, member), recorded once the groups horizon has passed it
        #: (`note_first_members`) and sent in the pair's `FirstOrder`. Read only while it is
        #: still the pair's first order here (an earlier order applied later leaves it stale
        #: until the next pass records that one); a pair with it read asks no "member at ts"
        #: lookup, so it no longer holds the group floor (`_held_group_floor`).
        self.first_members: dict[tuple[str, str], tuple[int, bool]] = {}
        #: As the owner: the pairs decided here (counted in `repurchase_folded`) -> their latest
        #: order's day known here: a part sent later is not a first order (it is ignored), and
        #: a source's pair still held is left out of the report (`first_order_pairs`). Dropped
        #: with the opt-in pair horizon only, as `bought_before` is (`PairDays`).
        self.pairs_decided = PairDays()
        # As the owner: source partition -> its latest announced cutoff (`FirstsClosed`).
        self._firsts_closed_by: dict[int, int] = {}
        # As the owner: how many source partitions there are (from `receive_firsts_closed`).
        self._first_sources = 0
        # The CST day of the last take's cutoff (as a source) and of the last decision's
        # (as the owner): each at most once a day of event time.
        self._first_take_day = -1
        self._first_decide_day = -1
        # The day of the groups horizon (or of this partition's newest event, if older) at
        # the last `note_first_members` pass.
        self._first_member_day = -1
        self._init_group_floors()

    def _init_group_floors(self) -> None:
        """The group events' compaction across a worker's partitions, nothing read yet
        (docs/design.md, "Group events compacted", in a worker)."""
        #: Source partition -> its latest `GroupFloor` (own, in flight), read from the
        #: month-rows topic; and how many source partitions there are.
        self.group_floors_by: dict[int, tuple[int | None, int | None]] = {}
        self._group_floor_sources = 0
        self._init_group_floor_given()

    def _init_group_floor_given(self) -> None:
        """No own floor announced yet, so no event counted as applied behind one."""
        #: The newest own floor this partition has announced (-1: none). Only an idle
        #: partition's floor (`group_floor_announcement(idle=True)`) can pass its horizons, so
        #: an event applied later stamped before it may look up membership the others have
        #: compacted: counted in `after_group_floor` (per presence topic event applied).
        self.group_floor_given = -1
        self.after_group_floor = 0

    def take_first_orders(self, source: int) -> list[FirstOrder | FirstsClosed]:
        """As partition `source` of a worker: every (merchant, user) pair held whose first order
        + 30 days is before the summaries' horizon (`_month_cutoff`: no order stamped at or
        before it can be applied any more, so the pair's first order and earliest later one
        are final here up to first + 30 days), dropped here with membership at its first order
        (recorded, else looked up: that horizon is behind the groups horizon), then an
        announcement of the cutoff; to be sent on, the pairs to their user's owner and the
        announcement to every owner, pairs first. A later order here starts the pair again,
        after the cutoff: its owner ignores it once decided, and adds its times before. At
        most once a day of event time (membership recorded first, at most once a day of the
        groups horizon: `note_first_members`)."""
        self.note_first_members()
        cutoff = self._month_cutoff()
        if cutoff is None or cutoff // DAY_MS <= self._first_take_day:
            return []
        self._first_take_day = cutoff // DAY_MS
        window = 30 * DAY_MS
        out: list[FirstOrder | FirstsClosed] = []
        held, recorded = self.first_orders, self.first_members
        groups = (self.membership_from or self).horizon_ts(_GROUPS)
        member_at: Callable[[str, str, int], bool] | None = None
        # The due pairs only, sorted (a sort of every held pair cost ~1 us a record).
        due = sorted(pair for pair, (first, _later) in held.items() if first + window < cutoff)
        for pair in due:
            first, later = held.pop(pair)
            known = recorded.pop(pair, None)
            member: bool | None = None
            if known is not None and known[0] == first:
                member = known[1]
            elif groups is not None and first < groups:  # not recorded yet, known all the same
                member_at = member_at or self._member_lookup()
                member = member_at(pair[0], pair[1], first)
            out.append(FirstOrder(source, pair[0], pair[1], first, later, member))
        out.append(FirstsClosed(source, cutoff))
        return out

    def receive_first_order(self, part: FirstOrder) -> None:
        """Add a source partition's part of a pair for its user (the two earliest distinct
        times kept: a part sent again changes nothing); one of a pair decided here only moves
        its latest day on."""
        pair = (part.merchant, part.user)
        decided = self.pairs_decided.get(pair)
        if decided is not None and self._forgets_after(decided, part.first_ts):
            # Back after the pair horizon (+ 30 days: what a source's part may lag by): a new
            # first order, whenever the part arrives (`_forget_decided_pairs`).
            del self.pairs_decided[pair]
            self.forgotten_pairs += 1
            decided = None
        if decided is not None:
            latest = (part.later_ts if part.later_ts is not None else part.first_ts) // DAY_MS
            if latest > decided:
                self.pairs_decided[pair] = latest
            return
        inbox = self.first_orders_in
        held = inbox[pair] = add_owner_part(
            inbox.get(pair), part.first_ts, part.later_ts, part.member
        )
        if held[2] is None:  # new, its first order moved earlier, or sent without the bit
            horizon = (self.membership_from or self).horizon_ts(_GROUPS)
            if horizon is not None and held[0] < horizon:
                member = self._member_lookup()(pair[0], pair[1], held[0])
                inbox[pair] = (held[0], held[1], member)

    def note_first_members(self) -> None:
        """As a source and as the owner: record membership at the first order of every pair
        held (`first_orders`, `first_orders_in`) whose first order is before the groups horizon
        (of `membership_from`: no group event stamped before it can be applied any more, so
        membership there is final), once a day of that horizon. A report merged over
        partitions reads it (`first_order_members`) instead of the group events, and the pair
        no longer holds the group floor (`_held_group_floor`): its events before the floor may
        be compacted. A source sends it with the pair (`take_first_orders`); an owner most
        often receives a part with it, or with its first order behind the horizon already,
        and records it then (`receive_first_order`). Once a day of that horizon or, when the
        horizon runs ahead of this partition's own events (a worker's membership table reads
        a replay's groups topic to its end long before the partitions catch up, and then never
        moves again), once a day of those: a source's pairs come with its own orders."""
        horizon = (self.membership_from or self).horizon_ts(_GROUPS)
        if horizon is None:
            return
        day = (horizon if self.max_ts is None else min(horizon, self.max_ts)) // DAY_MS
        if day <= self._first_member_day:
            return
        self._first_member_day = day
        recorded = self.first_members
        member_at = self._member_lookup()
        for pair, (first, _later) in self.first_orders.items():
            if first < horizon:
                known = recorded.get(pair)
                if known is None or known[0] != first:  # new, or its first order moved earlier
                    recorded[pair] = (first, member_at(pair[0], pair[1], first))
        inbox = self.first_orders_in
        due = [
            pair
            for pair, (first, _later, member) in inbox.items()
            if member is None and first < horizon
        ]
        for pair in due:
            first, later, _member = inbox[pair]
            inbox[pair] = (first, later, member_at(pair[0], pair[1], first))

    def receive_firsts_closed(self, closed: FirstsClosed, sources: int) -> None:
        """Note a source partition's announcement; once all `sources` have announced, decide
        every pair held whose first order t1 (the earliest over the parts) + 60 days is before
        each source's cutoff: a source sends a pair once its own first + 30 days is before its
        cutoff, so a part not received has its first order after t1 + 30 days, outside the
        repurchase window, and the parts received give the pair's two earliest distinct order
        times up to t1 + 30 days. Eligible (a member at t1) and repurchased (the earliest later
        order within 30 days) are counted in `repurchase_folded`, as one ledger fed every
        partition counts them (`metrics.group_repurchase_30d`)."""
        if closed.cutoff_ts > self._firsts_closed_by.get(closed.source, closed.cutoff_ts - 1):
            self._firsts_closed_by[closed.source] = closed.cutoff_ts
        self._first_sources = sources
        self.note_first_members()
        if len(self._firsts_closed_by) < sources or not self.first_orders_in:
            return
        cutoff = min(self._firsts_closed_by.values())
        if cutoff // DAY_MS <= self._first_decide_day:
            return
        self._first_decide_day = cutoff // DAY_MS
        window = 30 * DAY_MS
        member_at = self._member_lookup()
        inbox = self.first_orders_in
        due = sorted(pair for pair, (first, *_rest) in inbox.items() if first + 2 * window < cutoff)
        for pair in due:
            first, later, member = inbox.pop(pair)
            # Recorded: the group events at the first order may be compacted since.
            if member if member is not None else member_at(pair[0], pair[1], first):
                self.repurchase_folded[0] += 1
                self.repurchase_folded[1] += later is not None and later <= first + window
            self.pairs_decided[pair] = (later if later is not None else first) // DAY_MS

    def _forgets_after(self, decided_day: int, first_ts: int) -> bool:
        """Whether a part whose first order is at `first_ts` comes back to a pair decided with
        its latest order on `decided_day` after the pair horizon + 30 days (None: never)."""
        if self.pair_horizon_ms is None:
            return False
        return first_ts // DAY_MS > decided_day + (self.pair_horizon_ms + 30 * DAY_MS) // DAY_MS

    def forget_idle_pairs(self) -> int:
        """With the opt-in pair horizon (`pair_horizon_ms`): forget the decided pairs whose
        latest order's day is more than it before the summaries' horizon (`bought_before`),
        and those an owner holds that no part can come back to within it
        (`_forget_decided_pairs`). A user who buys again from the merchant after that counts
        as a first order again: eligible pairs are then at least the truth's and exceed it by
        at most `forgotten_pairs`. Once a day of event time; how many were forgotten."""
        assert self.pair_horizon_ms is not None
        cutoff = self._month_cutoff()
        if cutoff is None or cutoff // DAY_MS <= self._pair_forget_day:
            return 0
        self._pair_forget_day = cutoff // DAY_MS
        before = self.forgotten_pairs
        forgotten = self.bought_before.forget_before((cutoff - self.pair_horizon_ms) // DAY_MS)
        self.forgotten_pairs += forgotten
        self._forget_decided_pairs()
        return self.forgotten_pairs - before

    def _forget_decided_pairs(self) -> None:
        """Drop the decided pairs no part can come back to within the pair horizon + 30 days:
        a part not received yet has its first order at or after the smallest announced cutoff
        - 30 days, so one more than that after the pair's latest day is a new first order
        whether the pair is held or not (`receive_first_order`). With every source announced
        only: the owner's own cutoff may run far ahead of a source's (partitions move at
        their own pace), and forgetting by it made the count depend on that pace."""
        if self.pair_horizon_ms is None or not self.pairs_decided:
            return
        if not self._firsts_closed_by or len(self._firsts_closed_by) < self._first_sources:
            return
        reach = min(self._firsts_closed_by.values()) - 30 * DAY_MS
        cut = reach // DAY_MS - (self.pair_horizon_ms + 30 * DAY_MS) // DAY_MS - 1
        self.forgotten_pairs += self.pairs_decided.forget_before(cut)

    def first_order_pairs(self) -> dict[tuple[str, str], tuple[int, int | None]]:
        """Every (merchant, user) pair not decided yet -> its first order's ts and earliest
        later one: the pairs held here and those received as an owner, merged
        (`two_earliest`), less the pairs decided here (`pairs_decided`: a part a source
        still holds of one is a later order, not a first one)."""
        if not self.first_orders_in and not self.pairs_decided:
            return self.first_orders
        decided = self.pairs_decided
        pairs = {pair: held for pair, held in self.first_orders.items() if pair not in decided}
        for pair, (first, later, _member) in self.first_orders_in.items():
            if pair not in decided:
                pairs[pair] = two_earliest(pairs.get(pair), first, later)
        return pairs

    def source_members(self) -> dict[tuple[str, str], tuple[int, bool]]:
        """The pairs held here as a source with membership at their first order recorded
        (`first_members`) that is still their first order here -> (that ts, member)."""
        held = self.first_orders
        return {
            pair: known
            for pair, known in self.first_members.items()
            if (times := held.get(pair)) is not None and times[0] == known[0]
        }

    def first_order_members(self) -> dict[tuple[str, str], bool]:
        """Membership at the first order of the pairs of `first_order_pairs` for which a
        source or an owner has recorded it (`note_first_members`), where that is still the
        pair's first order here (a part held here as a source with an earlier one than the
        owner's leaves the owner's bit out, and one held at the owner with an earlier one than
        the source's the source's): a report reads it instead of the group events, which may
        be compacted before it."""
        if not self.first_orders_in and not self.first_members:
            return {}
        decided, held, inbox = self.pairs_decided, self.first_orders, self.first_orders_in
        members: dict[tuple[str, str], bool] = {}
        for pair, (first, recorded) in self.source_members().items():
            owner = inbox.get(pair)
            if (owner is None or owner[0] >= first) and pair not in decided:
                members[pair] = recorded
        for pair, (first, _later, member) in inbox.items():
            if member is None or pair in decided:
                continue
            source = held.get(pair)
            if source is None or source[0] >= first:
                members[pair] = member
        return members

    def _summarize_board(
        self,
        session: SessionFacts,
        summary: SessionSummary,
        presence: FoldedPresence,
        orders: Sequence[OrderFact],
        viewers: set[str],
        buyers: set[str],
    ) -> None:
        """The operator board's parts of a session being summarized (`SessionSummary`), and
        its levels' sketches and paying users (`folded_watch`, `folded_payers`): what
        `OperatorBoard` read of its viewers, orders and group events, final now."""
        # An abandoned session (no end) counts what a never-ended one does up to its newest event.
        started, ended = session.started_ts, session.horizon_from
        assert started is not None and ended is not None
        levels = (
            OVERALL_LEVEL,
            ("rooms", session.room_id or ""),
            ("merchants", session.merchant_id or ""),
        )
        watch = summary.watch
        watched_ms: list[int] = []
        session_sketch = QuantileSketch()  # merged into each level's: bins add, one add a value
        for user in viewers:  # 0 for a viewer by an interaction or an order only
            watched = presence.watch_ms(user)
            watched_ms.append(watched)
            watch[0] += watched
            watch[1 + bucket_of(watched, WATCH_TIME_BOUNDS_S)] += 1
        session_sketch.add_many(watched_ms)
        for level in levels:
            sketch = self.folded_watch.get(level)
            if sketch is None:
                sketch = self.folded_watch[level] = QuantileSketch()
            sketch.merge(session_sketch)
            payers = self.folded_payers.get(level)
            if payers is None:
                limit = self.distinct_limit
                payers = self.folded_payers[level] = (
                    DistinctUsers() if limit is None else DistinctUsers(limit)
                )
            payers.update(buyers)
        watched_ms.sort()
        summary.watch_median_ms = percentile(watched_ms, 0.5)
        offsets = summary.order_offsets
        order_minutes: Counter[int] = Counter()
        for order in orders:
            offset = max(0, order.ts - started)
            offsets[0] += offset
            offsets[1 + bucket_of(offset, ORDER_TIME_BOUNDS_S)] += 1
            if order.ts <= ended:
                order_minutes[offset // _MINUTE_MS] += 1
            self.folded_figures.fold_order_minute(order.ts - started)
        summary.order_minutes = dict(sorted(order_minutes.items()))
        group_events = (self.membership_from or self).group_events
        merchant = session.merchant_id or ""
        for user in viewers:
            for ts, _seq, _group, is_join in group_events.get((merchant, user), ()):
                if is_join and started <= ts <= ended:
                    summary.group_joins += 1

    def _group_lookup_floor(self) -> int | None:
        """The oldest `ts` a "member at ts" lookup can still ask of any (merchant, user) but at
        their first order (None: a topic has no horizon yet): every summary topic's horizon
        (an event applied later is stamped after it: a group event, a session's start or
        view, an order that could become a pair's first), every unsummarized session's
        start, orders and presence records (its summary and the board read membership and
        group joins from then on), and the unfolded months' first joins
        (`group_spend_multiple`'s population)."""
        horizons = [self.horizon_ts(topic) for topic in _SUMMARY_TOPICS]
        if any(h is None for h in horizons):
            return None
        return self._held_lookup_floor(min(h for h in horizons if h is not None))

    def _held_lookup_floor(self, floor: int) -> int:
        """`floor`, or the oldest `ts` a lookup may ask of the held state if older: every
        unsummarized session's start, orders and presence records, and the unfolded months'
        first joins (`_group_lookup_floor`, `worker_group_floor`)."""
        for session in self.sessions.values():
            presence = session.presence
            if isinstance(presence, SessionSummary):
                continue
            if session.started_ts is not None:
                floor = min(floor, session.started_ts)
            if session.orders:
                floor = min(floor, min(order.ts for order in session.orders))
            # The least packed record of each (issue 17: a Python loop over every held
            # session's users here was ~3 us of the fold's cost per record).
            earliest = (
                presence.earliest_join_ts()
                if isinstance(presence, FoldedPresence)
                else presence.earliest_ts()
            )
            if earliest is not None:
                floor = min(floor, earliest)
        for joins in self.month_first_joins.values():
            if joins:
                floor = min(floor, min(joins.values()))
        return floor

    def _compact_group_events(self) -> None:
        """Replace each (merchant, user)'s group events before the lookup floor (and before
        their first order with the merchant, which `group_repurchase_30d` asks about at any
        age) by their state there: one join per group still joined, stamped just before it,
        or nothing when they were in no group (the pair is dropped). Membership at any `ts`
        from that stamp on is what the whole history gives (docs/design.md, "The board's
        concurrency by minute", group events). Only in a ledger holding every partition
        (`fold_months`: a partition cannot know the others' lookups); at most once a day of
        event time (each pass walks every pair)."""
        horizons = [self.horizon_ts(topic) for topic in _SUMMARY_TOPICS]
        if any(h is None for h in horizons):
            return
        horizon = min(h for h in horizons if h is not None)
        sought = self._groups_sought_at
        if sought is not None and horizon < sought + _DAY_MS:
            return  # sought at most once a day of event time (the floor is at most the horizon)
        self._groups_sought_at = horizon
        floor = self._group_lookup_floor()
        if floor is None:
            return
        done = self.groups_compacted_to
        if done is not None and floor < done + _DAY_MS:
            return
        self.groups_compacted_to = floor
        self._compact_groups_before(floor)

    def _compact_groups_before(self, floor: int) -> None:
        """Each (merchant, user)'s group events before `floor` replaced by their state there
        (and at their first order held here, when older): `_compact_group_events`."""
        group_events = self.group_events
        for pair in list(group_events):
            events = group_events[pair]
            if all(seq == 0 for ts, seq, _group, _join in events if ts < floor):
                continue  # nothing before the floor, or only what was compacted before
            ordered = sorted(events)
            first = self.first_orders.get(pair)
            asked = first[0] if first is not None and first[0] < floor - 1 else None
            at_floor = _groups_joined(ordered, floor - 1)
            at_first = _groups_joined(ordered, asked) if asked is not None else set()
            kept = [(asked, 0, group, True) for group in sorted(at_first) if asked is not None]
            kept.extend((floor - 1, 0, group, False) for group in sorted(at_first - at_floor))
            kept.extend((floor - 1, 0, group, True) for group in sorted(at_floor - at_first))
            kept.extend(event for event in ordered if event[0] >= floor)
            if kept:
                group_events[pair] = kept
            else:
                del group_events[pair]

    def worker_group_floor(self) -> int | None:
        """As a worker partition: the oldest `ts` a "member at ts" lookup of a report merged
        over partitions may still ask because of this partition (None: a presence topic has
        no horizon yet): the sessions, views and orders topics' horizons (a start, view or
        order applied later is stamped after them; group events and interactions add no
        lookup), the held sessions and unfolded months' first joins (`_held_lookup_floor`),
        the rows held as an owner (`month_rows_in`' first joins), and the first orders of
        the `group_repurchase_30d` pairs not decided whose membership at it is not recorded
        (`first_orders`, `first_orders_in`: a report asks it of them). Rounded down to a whole
        day (UTC), so that a partition announces a new floor at most once a day of event time
        (lower is safe)."""
        horizons = [self.horizon_ts(topic) for topic in _PRESENCE_TOPICS]
        if any(h is None for h in horizons):
            return None
        floor = self._held_group_floor(min(h for h in horizons if h is not None))
        return floor // _DAY_MS * _DAY_MS

    def _held_group_floor(self, floor: int) -> int:
        """`floor`, or the oldest `ts` a lookup of the state held here may ask if older (no
        horizon: what is held, not what may still come; `worker_group_floor`)."""
        floor = self._held_lookup_floor(floor)
        # A pair with membership at its first order recorded asks no lookup: as a source
        # (`first_members`, while that is still its first order here) and as the owner.
        recorded = self.first_members
        for pair, (first, _later) in self.first_orders.items():
            if first < floor:
                known = recorded.get(pair)
                if known is None or known[0] != first:
                    floor = first
        for first, _later, member in self.first_orders_in.values():
            if member is None and first < floor:
                floor = first
        for users in self.month_rows_in.values():
            for parts in users.values():
                for joined, _cents in parts.values():
                    if joined is not None and joined < floor:
                        floor = joined
        return floor

    def held_group_floor(self) -> int | None:
        """The oldest `ts` a "member at ts" lookup of the state held here may ask (None:
        none): its held sessions, months' first joins, first orders and owner rows, no
        horizon (a report merged over partitions asks these; `global_report` checks them
        against the others' compaction)."""
        floor = self._held_group_floor(_NO_FLOOR)
        return None if floor == _NO_FLOOR else floor

    def idle_group_floor(self, source: int) -> int | None:
        """As partition `source` of a worker that has applied no event for a while (the
        worker's `LIVEPULSE_GROUP_FLOOR_IDLE_S`): the own floor it announces then. Its
        horizons no longer hold the others back, as the refund table's idle rule leaves a
        quiet orders partition out: it follows the newest own floor it has read of the other
        partitions (so an idle partition holds no one back that an active one does not, and
        when every one is idle the newest holds), never past the lookups of the state it holds
        (`_held_group_floor`: its held sessions, months' first joins, first orders and owner
        rows are still read at every report) nor below its floor when active. None while it
        knows no floor at all (its own nor any other's)."""
        own = self.worker_group_floor()
        others = [
            floor
            for number, (floor, _inflight) in self.group_floors_by.items()
            if number != source and floor is not None
        ]
        if own is not None:
            others.append(own)
        if not others:
            return own
        held = self._held_group_floor(max(others)) // _DAY_MS * _DAY_MS
        return held if own is None else max(own, held)

    def follow_idle_horizons(self, source: int) -> bool:
        """As partition `source` of a worker that has read its topics to their end and applied
        no event for a while (the worker's `LIVEPULSE_HORIZON_IDLE_S`): move its horizons up
        to the newest summaries' horizon another partition has announced (`FirstsClosed`), so
        that its own cutoffs follow the others' instead of holding them for good. A partition
        that gets no more records keeps its horizons, so it never announces its months closed
        (`MonthClosed`) nor its first orders' cutoff, and every owner then holds the other
        partitions' month rows and undecided pairs, and every partition its group events, for
        as long as the stream runs (docs/design.md, "Idle horizons follow the others'").

        Each topic's newest `ts` is raised to where its horizon gives that summaries' horizon
        (`_summary_horizon`: + the session horizon + the dedupe window); the groups topic's
        too unless the summaries read the worker's membership table (`membership_from`),
        which has an idle rule of its own. Nothing else changes: what the horizons close is
        closed by the folds, takes and floors as for any partition, and an event applied later
        stamped before its topic's new horizon is expired, counted as any late event
        (`counts.expired`). Like the idle group floor it follows the newest, so an idle
        partition holds no one back that an active one does not, and it never passes the
        newest partition's own horizons: it only follows. True if a horizon moved."""
        window = self.dedupe_window_ms
        others = [ts for number, ts in self._firsts_closed_by.items() if number != source]
        if window is None or not others:
            return False
        target = max(others) + SESSION_HORIZON_MS + window
        moved = False
        newest = self.newest_ts
        for topic in range(len(TOPICS)):
            if topic == _GROUPS and self.membership_from is not None:
                continue
            current = newest[topic]
            if current is None or current < target:
                newest[topic] = target
                moved = True
        return moved

    def follow_idle_orders(self, source: int) -> bool:
        """As partition `source` of a worker whose orders topic partition is read to its end
        with no record for a while (the refund table's idle rule, `ReadTable.idle`) while the
        partition's other topics still bring events (a room that sells nothing; else
        `follow_idle_horizons` does it all): `follow_idle_topics` of the orders topic. Without
        it a partition that never gets an order has no orders horizon, so its order fold never
        runs and it never announces its buyers' months (`OrderUsersClosed`), and no owner
        ever retires a buyer (docs/design.md, "The order fold's buyers at their owner"); nor
        does it freeze a period (the closing horizon reads every topic's) or announce either
        stage (`PeriodsClosed`), so every owner holds the others' period rows unfolded. True
        if it moved."""
        return self.follow_idle_topics(source, (_ORDERS,))

    def follow_idle_topics(self, source: int, topics: Iterable[int]) -> bool:
        """As partition `source` of a worker, some of whose contract topics' partitions
        (`topics`, indexes into `TOPICS`; the groups topic is the membership table's) are read
        to their end with no record for a while while its other topics still bring events
        (rooms that sell nothing, sessions with no interaction, a partition of sessionless
        orders only): raise each one's newest `ts` to where the others' summaries horizon puts
        it (`follow_idle_horizons`' target), but never past this partition's own newest event
        of a contract topic not in `topics`. Without it such a topic has no horizon (or an old
        one), and the closing and summaries horizons read every topic's: the partition never
        summarizes, never freezes a period, never announces its first orders' cutoff, its
        months nor either stage of its periods (`PeriodsClosed`), and every owner holds the
        others' rows for as long as the stream runs. An event of such a topic applied later
        stamped before the new horizon is expired, as in `follow_idle_horizons`. True if one
        moved."""
        window = self.dedupe_window_ms
        others = [ts for number, ts in self._firsts_closed_by.items() if number != source]
        quiet = {topic for topic in topics if topic != _GROUPS}
        own = [
            ts
            for topic, ts in enumerate(self.newest_ts)
            if ts is not None and topic not in quiet and topic != _GROUPS
        ]
        if window is None or not others or not own or not quiet:
            return False
        target = min(max(others) + SESSION_HORIZON_MS + window, max(own))
        moved = False
        newest = self.newest_ts
        for topic in sorted(quiet):
            current = newest[topic]
            if current is None or current < target:
                newest[topic] = target
                moved = True
        return moved

    def group_floor_announcement(self, source: int, *, idle: bool = False) -> GroupFloor:
        """As partition `source` of a worker: its `GroupFloor` now (to be sent only once the
        state it was taken from is snapshotted: a partition restored from its snapshot asks
        nothing older). With `idle`, its own floor is `idle_group_floor`; the newest own
        floor announced is noted (`group_floor_given`: an event applied later stamped before
        it is counted in `after_group_floor`)."""
        read = self.group_floors_by
        sources = self._group_floor_sources
        owns = [own for own, _inflight in read.values()]
        inflight = (
            min(own for own in owns if own is not None)
            if sources and len(read) >= sources and all(own is not None for own in owns)
            else None
        )
        own_ts = self.idle_group_floor(source) if idle else self.worker_group_floor()
        if own_ts is not None and own_ts > self.group_floor_given:
            self.group_floor_given = own_ts
        return GroupFloor(source, own_ts, inflight)

    def receive_group_floor(self, floor: GroupFloor, sources: int) -> None:
        """Note a source partition's `GroupFloor`; once all `sources` have announced both
        of theirs, compact the group events held here before the oldest of them and of this
        partition's groups horizon (a group event applied later is stamped after it), at most
        once a day of that floor (docs/design.md, "Group events compacted", in a worker)."""
        self.group_floors_by[floor.source] = (floor.own_ts, floor.inflight_ts)
        self._group_floor_sources = sources
        floors = [ts for pair in self.group_floors_by.values() for ts in pair]
        groups = self.horizon_ts(_GROUPS)
        if len(self.group_floors_by) < sources or groups is None or None in floors:
            return
        cut = min(groups, *(ts for ts in floors if ts is not None))
        done = self.groups_compacted_to
        if done is not None and cut < done + _DAY_MS:
            return
        self.groups_compacted_to = cut
        self._compact_groups_before(cut)

    def set_distinct_limit(self, limit: int) -> None:
        """Keep each level's summarized buyers as ids up to `limit` from now on: a level
        holding more is sketched at once (docs/design.md, "The user horizon and the distinct
        payers")."""
        self.distinct_limit = limit
        for payers in self.folded_payers.values():
            payers.set_limit(limit)

    def _add_board_minutes(self, session: SessionFacts, minutes: Mapping[int, int]) -> None:
        """Add a summarized session's concurrency by minute to its levels' curves."""
        if not minutes:
            return
        for level in (
            OVERALL_LEVEL,
            ("rooms", session.room_id or ""),
            ("merchants", session.merchant_id or ""),
        ):
            curve = self.board_curves.get(level)
            if curve is None:
                curve = self.board_curves[level] = LevelCurve()
            self.board_minutes_late += curve.add(minutes)

    def _retire_summaries(self) -> None:
        """Drop the summaries of sessions that left the operator's sessions table (their
        horizon older than the board horizon before the newest event) and whose month is
        frozen (a summary waits for it), each one's contribution to every reader kept in
        bounded totals (docs/design.md, "Retired summaries"): its levels' board parts
        (`retired_levels`), `live_aov`'s row and day sums, the conversion bars' sums. A
        session with an order or a question still held waits (its refunds and replies may
        still move). With `retire_summaries` off, nothing is retired."""
        if not self.retire_summaries or self.board_horizon_ms is None or self.max_ts is None:
            return
        # At most once a day of event time: each try walks the sessions and the held orders
        # and questions (an order fold moves many times a day; a day's wait costs nothing).
        day = self.max_ts // DAY_MS
        if self._retire_tried == (day,):
            return
        self._retire_tried = (day,)
        table_from = self.max_ts - self.board_horizon_ms
        due = [
            sid
            for sid, session in self.sessions.items()
            if isinstance(session.presence, SessionSummary)
            and session.started_ts is not None
            and session.horizon_from is not None
            and session.horizon_from < table_from
        ]
        if not due:
            return
        busy = {order.session_id for order in self.orders}
        busy.update(sid for _ts, sid in self.questions.values())
        busy.update(self.folded_ids)  # the board has not taken its summary yet
        for sid in due:
            if sid not in busy:
                self._retire(sid, self.sessions.pop(sid))

    def _retire(self, sid: str, session: SessionFacts) -> None:
        summary = session.presence
        assert isinstance(summary, SessionSummary)
        room, merchant = session.room_id or "", session.merchant_id or ""
        row = [0] * RETIRED_COLUMNS
        row[RETIRED_SESSIONS] = 1
        row[RETIRED_ENTRIES] = summary.entries
        row[RETIRED_VIEWERS] = summary.viewers
        row[RETIRED_BUYERS] = summary.share_sums[SHARE_PAIRS]
        row[RETIRED_INTERACTING] = summary.uplift[1]
        row[RETIRED_ORDERS] = summary.orders
        row[RETIRED_GMV] = summary.gmv_cents
        row[RETIRED_GROUP_JOINS] = summary.group_joins
        refunds = self.order_fold.session_refunds.pop(sid, None)
        if refunds is not None:
            row[RETIRED_REFUNDS], row[RETIRED_REFUNDED] = refunds
        row[RETIRED_WATCH:RETIRED_OFFSETS] = summary.watch
        row[RETIRED_OFFSETS:RETIRED_REPLIES] = summary.order_offsets
        replies = self.folded_replies.pop(sid, None)
        if replies is not None:
            row[RETIRED_REPLIES:] = [replies[FOLDED_SUM_MS], *replies[FOLDED_BUCKETS:]]
        asked = self.folded_questions.pop(sid, 0)  # none held: the session waited for them
        if asked:
            hits = replies[FOLDED_WITHIN_3S] if replies is not None else 0
            answered = replies[FOLDED_ANSWERED] if replies is not None else 0
            sums = self.retired_replies
            for index, value in enumerate(
                (1, hits, asked, answered, hits * hits, hits * asked, asked * asked)
            ):
                sums[index] += value
        for level in (OVERALL_LEVEL, ("rooms", room), ("merchants", merchant)):
            held = self.retired_levels.get(level)
            self.retired_levels[level] = (
                row.copy() if held is None else [a + b for a, b in zip(held, row, strict=True)]
            )
            if summary.order_minutes:
                minutes = self.retired_order_minutes.setdefault(level, {})
                for minute, n in summary.order_minutes.items():
                    minutes[minute] = minutes.get(minute, 0) + n
        if summary.orders:
            self.retired_aov_rows[sid] = (summary.gmv_cents, summary.orders)
            if len(self.retired_aov_rows) > 2 * AOV_SAMPLE_SIZE:
                self.trim_aov_rows()
            for day_start, (gmv, n) in summary.days.items():
                sums = self.retired_aov_days.setdefault(day_start, [0] * 6)
                for index, value in enumerate((1, gmv, n, gmv * gmv, gmv * n, n * n)):
                    sums[index] += value
        if summary.viewers:
            for offset, (hits, pairs) in ((0, summary.uplift[0:2]), (6, summary.uplift[2:4])):
                if pairs:
                    conversion = self.retired_conversion
                    for index, value in enumerate(
                        (1, hits, pairs, hits * hits, hits * pairs, pairs * pairs)
                    ):
                        conversion[offset + index] += value
        self.retired_ids.append((sid, room, merchant))
        self.retired_sessions += 1

    def trim_aov_rows(self) -> None:
        """Keep the retired `live_aov` rows of the sample (`sample.bottom_k`), the others
        added into `retired_aov_sums`: the overall figure, centre and se stay exact."""
        rows = self.retired_aov_rows
        kept = bottom_k(rows, AOV_SAMPLE_SIZE)
        sums = self.retired_aov_sums
        for sid, (gmv, n) in rows.items():
            if sid not in kept:
                for index, value in enumerate((1, gmv, n, gmv * gmv, gmv * n, n * n)):
                    sums[index] += value
        self.retired_aov_rows = kept

    def _settle_board_curves(self, summary_horizon: int, newest: int | None = None) -> None:
        """Settle the levels' minutes that are final and older than the board horizon
        (docs/design.md, "The board's concurrency by minute"): a minute is final once no
        session that can still add to it is unsummarized. Every event applied from now on is
        stamped after `summary_horizon`, so a session not seen yet adds nothing before it; a
        session held unsummarized adds nothing before its earliest presence record. O(sessions
        held), at a summary pass that summarized something, and at a worker's take
        (`take_board_runs`, with `newest` its horizons' newest `ts`: an idle partition's
        follow the others')."""
        newest = self.max_ts if newest is None else newest
        assert self.board_horizon_ms is not None and newest is not None
        before = min(summary_horizon, newest - self.board_horizon_ms) // _MINUTE_MS
        overall = self.board_curves.get(OVERALL_LEVEL)  # every session's level: the furthest
        if overall is not None and overall.settled_to is not None:
            if before < overall.settled_to + _SETTLE_STEP_MINUTES:
                return  # at most once a day of event time: each pass walks the kept minutes
        for session in self.sessions.values():
            presence = session.presence
            if isinstance(presence, SessionSummary):
                continue
            if isinstance(presence, FoldedPresence):
                if presence.minutes:
                    before = min(before, min(presence.minutes))
                continue
            # Its oldest record's minute: the least packed int (issue 19: each user's records
            # decoded here cost more than the rest of the pass).
            earliest = presence.earliest_ts()
            if earliest is not None:
                before = min(before, earliest // _MINUTE_MS)
        for curve in self.board_curves.values():
            curve.settle(before, self.board_runs_kept)
        if self.board_settled_to is None or before > self.board_settled_to:
            self.board_settled_to = before

    def take_board_runs(self, source: int) -> list[BoardRuns | BoardSettled]:
        """As partition `source` of a worker: settle the levels' curves if due (as after a
        summary pass, the board horizon counted from the horizons' newest `ts`, so that an
        idle partition, whose horizons follow the others', settles and announces as they
        do), take every level's settled runs (`LevelCurve.take_runs`: to the level's owner
        partition) and announce the minute they are settled to, runs first. Settled here at
        most once a day of the summaries' horizon; the runs a summary pass settled meanwhile
        are taken at the next call (docs/design.md, "The board's concurrency by minute")."""
        horizon = self._summary_horizon()
        if self.board_horizon_ms is None or horizon is None:
            return []
        if horizon // DAY_MS > self._board_take_day:
            self._board_take_day = horizon // DAY_MS
            newest = (self.max_ts, *self.newest_ts)
            self._settle_board_curves(horizon, max(ts for ts in newest if ts is not None))
        elif self.board_settled_to == self.board_sent_to:
            # Nothing settled since the last take (a summary pass settles too: its runs are
            # taken at the next take, the horizon's day moved or not).
            return []
        self.board_source = source
        through = self.board_settled_to
        if through is None:
            return []
        start = _EARLIEST_MINUTE if self.board_sent_to is None else self.board_sent_to
        out: list[BoardRuns | BoardSettled] = []
        for level in sorted(self.board_curves):
            curve = self.board_curves[level]
            if not curve.runs and not any(curve.gaps):
                continue
            runs, slack = curve.take_runs()
            out.append(
                BoardRuns(source, level[0], level[1], start, through, tuple(runs), tuple(slack))
            )
        self.board_sent_to = through
        if through != self._board_announced:
            out.append(BoardSettled(source, through))
            self._board_announced = through
        return out

    def receive_board_runs(self, runs: BoardRuns) -> None:
        """As a level's owner: hold a source's runs of its window (`BoardRuns`), replacing
        what is held of that source in the window (a window sent again, or a restored source's
        with other bounds: a minute's count is the same in both), the folded minutes left out."""
        level = (runs.kind, runs.name)
        by_source = self.board_runs_in.setdefault(level, {})
        start, through = runs.start, runs.through
        kept: list[tuple[int, int, int, int]] = []
        for count, first, end, gap in by_source.get(runs.source, ()):
            if first < start:
                kept.append((count, first, min(end, start), gap))
            if end > through:
                kept.append((count, max(first, through), end, gap))
        folded_to = self.board_folded_to
        for values, gap in ((runs.runs, 0), (runs.slack, 1)):
            for i in range(0, len(values), 3):
                count, end = values[i], min(values[i + 2], through)
                # Within the window (a first stretch of dropped runs starts before any minute).
                first = max(values[i + 1], start, -(2**62) if folded_to is None else folded_to)
                if end > first and count:
                    kept.append((count, first, end, gap))
        kept.sort(key=lambda item: item[1])
        if kept:
            by_source[runs.source] = kept
        else:  # (a window of folded minutes sent again: nothing left to hold)
            by_source.pop(runs.source, None)
            if not by_source:
                del self.board_runs_in[level]
        if through > self.board_runs_through.get(runs.source, through - 1):
            self.board_runs_through[runs.source] = through

    def receive_board_settled(self, settled: BoardSettled, sources: int) -> None:
        """As an owner: note a source's announcement; once all `sources` have announced, fold
        every level's runs held before the earliest announced minute m into the level's
        folded peak (the minutes' counts summed over the sources, then the largest), and
        drop them: no source can send more of those minutes."""
        if settled.through > self.board_settled_by.get(settled.source, settled.through - 1):
            self.board_settled_by[settled.source] = settled.through
        if len(self.board_settled_by) < sources:
            return
        m = min(self.board_settled_by.values())
        if self.board_folded_to is not None and m <= self.board_folded_to:
            return
        for level, by_source in self.board_runs_in.items():
            known: Counter[int] = Counter()
            upper: Counter[int] = Counter()
            for source, items in by_source.items():
                rest: list[tuple[int, int, int, int]] = []
                for count, first, end, gap in items:
                    if first < m:
                        cut = min(end, m)
                        upper[first] += count
                        upper[cut] -= count
                        if not gap:
                            known[first] += count
                            known[cut] -= count
                    if end > m:
                        rest.append((count, max(first, m), end, gap))
                by_source[source] = rest
            if not upper:
                continue
            folded = self.board_folded.setdefault(level, [0, None, 0])
            peak, at = peak_of(known)
            if peak > folded[0]:
                folded[0], folded[1] = peak, at
            if upper != known:
                folded[2] = max(folded[2], peak_of(upper)[0])
        self.board_runs_in = {
            level: {source: items for source, items in by_source.items() if items}
            for level, by_source in self.board_runs_in.items()
            if any(by_source.values())
        }
        self.board_folded_to = m

    def owned_curve(
        self, level: tuple[str, str], sent_to: Mapping[int, int | None] | None = None
    ) -> LevelCurve | None:
        """What this partition holds as the level's owner, as a curve to merge: the runs not
        folded yet as its known counts (a dropped stretch as slack), its folded peak as its
        peak (None: nothing held). `sent_to` (`board_sent_by`): for the source partitions in
        the same merge, the minute each one's runs were taken through; their runs held here
        from that minute on are left out, as that source's own curve holds those minutes (a
        source restored from a snapshot older than what it had sent here: it sends them
        again at its next take, replacing them here)."""
        held = self.board_runs_in.get(level)
        folded = self.board_folded.get(level)
        if not held and folded is None:
            return None
        curve = LevelCurve()
        known: Counter[int] = Counter()
        slack: Counter[int] = Counter()
        for source, items in (held or {}).items():
            limit = _LATEST_MINUTE
            if sent_to is not None and source in sent_to:
                limit = _EARLIEST_MINUTE if (to := sent_to[source]) is None else to
            for count, first, end, gap in items:
                if first >= limit:
                    continue
                end = min(end, limit)
                into = slack if gap else known
                into[first] += count
                into[end] -= count
        curve.diff = {minute: n for minute, n in known.items() if n}
        curve.slack = {minute: n for minute, n in slack.items() if n}
        if folded is not None:
            curve.peak, curve.peak_minute, curve.folded_ceiling = folded
        return curve

    def curves_of(
        self, level: tuple[str, str], sent_to: Mapping[int, int | None] | None = None
    ) -> list[LevelCurve]:
        """The level's curves here to merge: its own (`board_curves`) and what this partition
        holds as its owner (`owned_curve`, with `sent_to`: `board_sent_by` of the ledgers
        merged)."""
        out = []
        own = self.board_curves.get(level)
        if own is not None:
            out.append(own)
        if self.board_runs_in or self.board_folded:
            owned = self.owned_curve(level, sent_to)
            if owned is not None:
                out.append(owned)
        return out

    def board_levels(self) -> set[tuple[str, str]]:
        """Every level with a curve here, its own or held as its owner."""
        return {*self.board_curves, *self.board_runs_in, *self.board_folded}

    def _session(self, session_id: str, ts: int) -> SessionFacts:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = SessionFacts()
        if ts > session.last_ts and session.abandoned_ts is None:
            session.last_ts = ts  # its newest event; fixed once abandoned
        return session
