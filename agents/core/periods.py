"""Claims by CST day, by CST month and over a rolling horizon, frozen once a period is closed.

A claim's figure for a period is the claim computed exactly as claims.md defines it on the
period's sub-stream (docs/metrics.md, "Claims by period"): the events of the sessions started
in it, the events naming no started session stamped in it, every refund of an order in it, and
every group event (membership is as of a time, not per period). The sub-stream is taken from
the ledger's facts (`period_ledger`), so the figure is `compute_claims` of it, exact wherever
the whole-stream figure is; `group_repurchase_30d` has none (a period's sub-stream holds no
order 30 days after its first ones).

A period is closed once its end plus the session horizon is older than every topic's dedupe
horizon: no event of it can be applied any more. A closed period's figures are frozen into the
ledger (`Ledger.frozen_periods`: per claim the observed value, interval, verdict and counts,
plain tuples) and read from there; a bounded number are kept (`PeriodSettings`). The claims
reading refunds (`REFUND_CLAIMS`) are frozen in a second stage, once the period's end plus the
session horizon and the refund horizon is behind the order fold's horizon (every refund that
can count for its orders is applied); until then they are computed from the held orders and
refunds (held raw for that: `PeriodGate.orders_held_from`), and without a refund horizon never
frozen.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Final

from agents.core.claims import CLAIMS
from agents.core.facts import ClaimFacts
from agents.core.ledger import (
    DAY_MS,
    SESSION_HORIZON_MS,
    TOPICS,
    FoundMembers,
    FrozenFigure,
    Ledger,
    OrderFact,
    SessionSummary,
    cst_day,
    cst_day_start,
    cst_month,
    cst_month_end,
    cst_month_start,
    late_group_events,
)
from agents.core.metrics import CLAIM_PARTS, Measurement, PricePart, dwell_with_quantiles
from agents.core.period_rows import (
    REFUND_CLAIMS,
    PeriodRows,
    owner_parts,
    prune_owned,
    routes_rows,
    rows_part,
)
from agents.core.report import claim_verdict
from agents.core.sketch import FoldedFigures

_CST_OFFSET_MS: Final[int] = 8 * 3_600_000
#: The topics whose horizons make a first join's membership final (`PeriodGate.note_members`).
_VIEWS: Final[int] = TOPICS.index("live.views")
_ORDERS: Final[int] = TOPICS.index("live.orders")
_GROUPS: Final[int] = TOPICS.index("live.groups")
#: Before any `ts`: nothing found before it (`PeriodGate.note_members`).
_NO_TS: Final[int] = -(2**62)

#: Claims with no figure per period, and why (the report says so beside them).
NOT_PER_PERIOD: Final[dict[str, str]] = {
    "group_repurchase_30d": (
        "needs the 30 days after each first order: a period's sub-stream holds no later "
        "order, so the rate would read ~0; whole-stream figure only"
    ),
}
#: The claims reading refunds (`period_rows.REFUND_CLAIMS`): a refund counts up to the refund
#: horizon after its order, long after the period closed, so they are frozen only once that
#: horizon has passed too.
#: `LIVEPULSE_CLAIM_HORIZON_DAYS`' default: the rolling horizon, in days of event time.
DEFAULT_HORIZON_DAYS: Final[int] = 7
#: How many of the latest CST days and months are reported and kept frozen.
DEFAULT_DAYS_KEPT: Final[int] = 62
DEFAULT_MONTHS_KEPT: Final[int] = 24
#: The period kinds, as the report, `/metrics`' `period` label and the frozen keys name them.
DAY: Final[str] = "day"
MONTH: Final[str] = "month"
ROLLING: Final[str] = "rolling"


@dataclass(frozen=True, slots=True)
class PeriodSettings:
    """How the period figures are taken: the rolling horizon and how many days and months
    are reported and kept frozen (`LIVEPULSE_CLAIM_HORIZON_DAYS`, `..._DAYS_KEPT`,
    `..._MONTHS_KEPT`)."""

    horizon_days: int = DEFAULT_HORIZON_DAYS
    days_kept: int = DEFAULT_DAYS_KEPT
    months_kept: int = DEFAULT_MONTHS_KEPT

    def __post_init__(self) -> None:
        for name in ("horizon_days", "days_kept", "months_kept"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")


def month_start_ms(ts_ms: int) -> int:
    """The first millisecond of the CST month of `ts_ms`."""
    day = datetime.fromtimestamp((ts_ms + _CST_OFFSET_MS) / 1000, tz=UTC)
    first = datetime(day.year, day.month, 1, tzinfo=UTC)
    return int(first.timestamp() * 1000) - _CST_OFFSET_MS


def month_end_ms(ts_ms: int) -> int:
    """The first millisecond after the CST month of `ts_ms`."""
    return month_start_ms(month_start_ms(ts_ms) + 32 * DAY_MS)


def period_key(kind: str, ts_ms: int) -> str:
    """The name of the day (`YYYY-MM-DD`) or month (`YYYY-MM`) of `ts_ms` in CST."""
    return cst_day(ts_ms) if kind == DAY else cst_month(ts_ms)


def _period_end_ms(kind: str, ts_ms: int) -> int:
    return cst_day_start(ts_ms) + DAY_MS if kind == DAY else month_end_ms(ts_ms)


class Span:
    """The test of whether a `ts` is in a period, `start <= ts < end`, with its bounds kept:
    `period_ledger` compares them inline over every held fact instead of calling the test
    for each (issue 19: a day's freeze walks every held order, question and refund)."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end

    def __call__(self, ts: int) -> bool:
        return self.start <= ts < self.end

    def __repr__(self) -> str:
        return f"Span({self.start}, {self.end})"


#: Past every `ts` (a rolling horizon's period has no end).
_NO_END: Final[int] = 2**62


def period_ledger(ledger: Ledger, in_period: Span) -> Ledger:
    """A ledger holding the facts of one period's sub-stream (module docstring), sharing the
    input's objects (read it, never feed it): sessions whose start is `in_period`, their
    orders and questions; orders and questions naming no started session by their own `ts`;
    the refunds of the kept orders' ids (and a refund of an id never paid by its `ts`); every
    group event."""
    sub = Ledger(
        ledger.dedupe_window_ms,
        refund_horizon_ms=ledger.refund_horizon_ms,
        fold_sessions=ledger.fold_sessions,
    )
    start, end = in_period.start, in_period.end
    started = {sid for sid, s in ledger.sessions.items() if s.started_ts is not None}
    sub.sessions = {
        sid: s
        for sid, s in ledger.sessions.items()
        if s.started_ts is not None and start <= s.started_ts < end
    }
    kept = sub.sessions

    # What belongs to the period: a kept session's order, or one naming no started session
    # (None is no session id) in the period. `kept` is within `started`. With a period gate,
    # from its index of the held orders (`HeldOrders`: a day's freeze read every held order,
    # up to 7,000 here, twice to find its ~150; issue 19), else written out.
    gate = ledger.period_gate
    held = gate.held_orders(ledger.orders) if isinstance(gate, PeriodGate) else None
    if held is not None:
        sub.orders = held.of_period(kept, started, start, end)
    else:
        sub.orders = [
            order
            for order in ledger.orders
            if order.session_id in kept
            or (order.session_id not in started and start <= order.ts < end)
        ]
    for order in sub.orders:
        sub._note_order(order.merchant_id, order.user_id, order.ts, order.amount_cents)
    kept_ids = {order.order_id for order in sub.orders}
    source = ledger.refunds_from
    if source is None:
        # Whether an id was ever paid matters only for the period's refunds of no kept order:
        # the held orders are tested against those few ids, not all put in a set (issue 19).
        outside = {
            refund.order_id
            for refund in ledger.refunds
            if refund.order_id not in kept_ids and start <= refund.ts < end
        }
        if held is not None:
            paid = outside & held.ids
        else:
            paid = {order.order_id for order in ledger.orders if order.order_id in outside}
        sub.refunds = [
            refund
            for refund in ledger.refunds
            if refund.order_id in kept_ids
            or (refund.order_id not in paid and start <= refund.ts < end)
        ]
    else:
        # A worker's partition: its orders' refunds are in the refund table (another
        # partition's records), as the order fold reads them.
        sub.refunds = [
            refund for order_id in sorted(kept_ids) for refund in source.refunds_of(order_id)
        ]
    # Membership as the session summaries read it: a worker's partition holds its sessions,
    # their merchants' group events are in its membership table (other partitions' records).
    sub.group_events = (ledger.membership_from or ledger).group_events  # type: ignore[assignment]
    # The same for every held question (once a frozen day), no call a question (issue 19).
    sub.questions = {
        question_id: (ts, sid)
        for question_id, (ts, sid) in ledger.questions.items()
        if (sid in kept if sid is not None and sid in started else start <= ts < end)
    }
    sub.first_reply_ts = ledger.first_reply_ts
    # Folded questions are kept per session (no ts): those of a started session follow it.
    sub.folded_questions = {s: n for s, n in ledger.folded_questions.items() if s in kept}
    sub.folded_replies = {s: r for s, r in ledger.folded_replies.items() if s in kept}
    # "The end" of the sub-stream holds every group event, so it is at least the input's
    # newest group event; only `group_repurchase_30d` reads it, which has no period figure:
    # the input's end stands in (no scan of every group event per period).
    sub.max_ts = ledger.max_ts
    return sub


class HeldOrders:
    """A ledger's held orders (`Ledger.orders`) by session id and by the CST day of their own
    `ts`, each with its place in the list, and their ids: `period_ledger` takes a period's
    orders from here (issue 19). Kept by the ledger's `PeriodGate` (not part of the state)
    and brought up to date at each use by reading only the orders appended since; rebuilt
    whole when the list is not the one indexed or not that one grown (the order fold writes
    a new list, a restore another)."""

    __slots__ = ("_last", "_list", "_seen", "by_day", "by_session", "ids", "sessionless")

    def __init__(self) -> None:
        self._list: list[OrderFact] | None = None
        #: How many of `_list` are indexed, and the last of them (to tell an emptied and
        #: refilled list from the one indexed).
        self._seen = 0
        self._last: OrderFact | None = None
        #: Session id -> (place in the list, order), by place.
        self.by_session: dict[str, list[tuple[int, OrderFact]]] = {}
        #: CST day number (`(ts + 8 h) // DAY_MS`) -> (place, order), by place.
        self.by_day: dict[int, list[tuple[int, OrderFact]]] = {}
        #: (place, order) of the orders naming no session, by place.
        self.sessionless: list[tuple[int, OrderFact]] = []
        #: Every held order's id.
        self.ids: set[str] = set()

    def sync(self, orders: list[OrderFact]) -> HeldOrders:
        """Index the orders appended to `orders` since the last call (all of them when it is
        another list, or has fewer orders, or another order where the last indexed was)."""
        seen = self._seen
        if (
            orders is not self._list
            or len(orders) < seen
            or (seen and orders[seen - 1] is not self._last)
        ):
            self._list, seen = orders, 0
            self.by_session, self.by_day, self.ids, self.sessionless = {}, {}, set(), []
        by_session, by_day, sessionless = self.by_session, self.by_day, self.sessionless
        for place in range(seen, len(orders)):
            order = orders[place]
            entry = (place, order)
            if order.session_id is not None:
                found = by_session.get(order.session_id)
                if found is None:
                    by_session[order.session_id] = [entry]
                else:
                    found.append(entry)
            else:
                sessionless.append(entry)
            day = (order.ts + _CST_OFFSET_MS) // DAY_MS
            found = by_day.get(day)
            if found is None:
                by_day[day] = [entry]
            else:
                found.append(entry)
        self.ids.update(order.order_id for order in orders[seen:])
        self._seen = len(orders)
        self._last = orders[-1] if orders else None
        return self

    def of_period(
        self, kept: Mapping[str, Any], started: set[str], start: int, end: int
    ) -> list[OrderFact]:
        """The orders of the sessions `kept` and those naming no session in `started` with
        `start <= ts < end`, in the list's order (what `period_ledger` wrote out)."""
        first = (start + _CST_OFFSET_MS) // DAY_MS
        last = (end - 1 + _CST_OFFSET_MS) // DAY_MS
        picked = [entry for sid in kept for entry in self.by_session.get(sid, ())]
        picked += [
            entry
            for day, entries in self.by_day.items()
            if first <= day <= last
            for entry in entries
            if entry[1].session_id not in started and start <= entry[1].ts < end
        ]
        picked.sort(key=_place)
        return [order for _place_, order in picked]

    def unstarted_ts(self, started: set[str]) -> list[int]:
        """The `ts` of the orders naming no session in `started`, in the list's order."""
        picked = list(self.sessionless)
        picked += [
            entry
            for sid, entries in self.by_session.items()
            if sid not in started
            for entry in entries
        ]
        picked.sort(key=_place)
        return [order.ts for _place_, order in picked]


def _place(entry: tuple[int, OrderFact]) -> int:
    return entry[0]


def _session_of(row: tuple[str, int, float]) -> str:
    return row[0]


def closing_horizon(ledger: Ledger) -> int | None:
    """The time up to which every period ending `SESSION_HORIZON_MS` before it is closed: the
    oldest dedupe horizon over every topic (the groups topic's from the ledger's membership
    source, as the session summary reads it); None while some topic has none."""
    groups = ledger.membership_from or ledger
    horizons = [
        (groups if TOPICS[topic] == "live.groups" else ledger).horizon_ts(topic)
        for topic in range(len(TOPICS))
    ]
    if any(h is None for h in horizons):
        return None
    return min(h for h in horizons if h is not None) - SESSION_HORIZON_MS


def refund_closing_horizon(ledger: Ledger, fold_ts: int | None = None) -> int | None:
    """The time up to which every period ending before it has its refund claims final: the
    order fold's horizon (`fold_ts`, by default `Ledger.order_fold_ts`: no refund older can be
    applied) less the refund horizon and the session horizon (a period's orders come up to
    the session horizon after its end); None without a refund horizon or before the order
    fold has run."""
    horizon_ms = ledger.refund_horizon_ms
    fold_ts = ledger.order_fold_ts if fold_ts is None else fold_ts
    if horizon_ms is None or fold_ts is None:
        return None
    return fold_ts - horizon_ms - SESSION_HORIZON_MS


def _period_stamps(ledger: Ledger) -> list[int]:
    """The `ts` that place facts in periods: session starts, and orders and questions naming
    no started session (comprehensions, not a generator: every held question at each
    freeze; the orders from the period gate's index, `HeldOrders`, when there is one: issue
    19)."""
    started = {sid for sid, s in ledger.sessions.items() if s.started_ts is not None}
    stamps = [s.started_ts for s in ledger.sessions.values() if s.started_ts is not None]
    gate = ledger.period_gate
    if isinstance(gate, PeriodGate):  # from its index of the held orders (`HeldOrders`)
        stamps += gate.held_orders(ledger.orders).unstarted_ts(started)
    else:
        stamps += [
            order.ts
            for order in ledger.orders
            if order.session_id is None or order.session_id not in started
        ]
    stamps += [ts for ts, sid in ledger.questions.values() if sid not in started]
    return stamps


_BY_ID: Final[dict[str, Any]] = {claim.id: claim for claim in CLAIMS}


def _figure(claim_id: str, m: Measurement) -> FrozenFigure:
    interval = m.interval
    return (
        m.observed,
        interval[0] if interval else None,
        interval[1] if interval else None,
        claim_verdict(_BY_ID[claim_id], m),
        m.n,
        m.clusters,
    )


def _figures(claim_ids: Iterable[str], measured: dict[str, Measurement]) -> dict[str, FrozenFigure]:
    return {claim_id: _figure(claim_id, measured[claim_id]) for claim_id in claim_ids}


class FrozenFigures(MutableMapping[str, FrozenFigure]):
    """A frozen period's figures (`Ledger.frozen_periods`' values), each finished from its
    kept part (`metrics.CLAIM_PARTS`, the same object as in `Ledger.frozen_parts`) when first
    read and kept from then on (issue 17: finishing every closed day's figures at its freeze
    cost ~4.3 us of the fold's ~25 us per record, mostly the per-user bootstrap intervals, and
    a figure no one reads need never be computed). `in`, `len` and iteration finish nothing;
    reading a figure (`[]`, `get`, `items`, `==`) finishes it. A snapshot taken before a read
    carries the part only; one taken after carries the figure too (the part stays, for merges).
    Finished in a forked child (the worker's report), a figure is not written back: the
    parent's stays unfinished (docs/design.md, "Claims by period")."""

    __slots__ = ("_figures", "_parts")

    def __init__(
        self,
        figures: Mapping[str, FrozenFigure] | None = None,
        parts: Mapping[str, Any] | None = None,
    ) -> None:
        #: Claim id -> its finished figure.
        self._figures: dict[str, FrozenFigure] = dict(figures or {})
        #: Claim id -> the part its figure is finished from on the first read (not finished yet).
        self._parts: dict[str, Any] = dict(parts or {})

    def defer(self, claim_id: str, part: Any) -> None:
        """Keep `claim_id`'s figure unfinished: it is `finish(part)`, computed when first read."""
        self._figures.pop(claim_id, None)
        self._parts[claim_id] = part

    def repoint(self, claim_id: str, part: Any) -> None:
        """If `claim_id`'s figure is not finished yet, finish it from `part` when first read
        (a kept part replaced by one giving the same figure: `_fold_settled`)."""
        if claim_id in self._parts:
            self._parts[claim_id] = part

    def take(self, other: FrozenFigures) -> None:
        """Add `other`'s figures, unfinished ones unfinished."""
        self._figures.update(other._figures)
        for claim_id, part in other._parts.items():
            self.defer(claim_id, part)

    def unfinished(self) -> int:
        """How many figures are not finished yet."""
        return len(self._parts)

    def __getitem__(self, claim_id: str) -> FrozenFigure:
        figure = self._figures.get(claim_id)
        if figure is None:
            part = self._parts[claim_id]  # KeyError: no such figure
            figure = _figure(claim_id, CLAIM_PARTS[claim_id].finish(part))
            self._figures[claim_id] = figure
            del self._parts[claim_id]
        return figure

    def __setitem__(self, claim_id: str, figure: FrozenFigure) -> None:
        self._parts.pop(claim_id, None)
        self._figures[claim_id] = figure

    def __delitem__(self, claim_id: str) -> None:
        if claim_id in self._figures:
            del self._figures[claim_id]
            self._parts.pop(claim_id, None)
        else:
            del self._parts[claim_id]

    def __contains__(self, claim_id: object) -> bool:
        return claim_id in self._figures or claim_id in self._parts

    def __iter__(self) -> Iterator[str]:
        yield from list(self._figures)
        yield from [c for c in self._parts if c not in self._figures]

    def __len__(self) -> int:
        return len(self._figures) + len(self._parts)

    def __repr__(self) -> str:
        return f"FrozenFigures({self._figures!r}, unfinished={sorted(self._parts)!r})"

    def __getstate__(self) -> tuple[dict[str, FrozenFigure], dict[str, Any]]:
        return self._figures, self._parts

    def __setstate__(self, state: tuple[dict[str, FrozenFigure], dict[str, Any]]) -> None:
        self._figures, self._parts = state


#: The claims with a period figure, in the registry's order.
PERIOD_CLAIMS: Final[tuple[str, ...]] = tuple(
    claim.id for claim in CLAIMS if claim.id not in NOT_PER_PERIOD
)
#: Frozen at a period's close (the refund claims in a second stage).
FIRST_STAGE: Final[tuple[str, ...]] = tuple(c for c in PERIOD_CLAIMS if c not in REFUND_CLAIMS)
#: The claim whose frozen part is sketched (`metrics.compact_price_part`): a month's figure
#: alone is not taken from its days' frozen parts but from their raw rows, kept by the period
#: gate until the month is frozen (`PeriodGate.month_price`), or from its facts (exact).
SKETCHED: Final[str] = "price_dwell_association"
#: The claim whose bootstrap a ledger holding every partition keeps with its frozen part.
DWELL: Final[str] = "group_member_dwell"

Parts = dict[str, Any]


def _parts(
    ledger: Ledger, in_period: Span, claim_ids: Iterable[str], note_members: bool = False
) -> Parts | None:
    """The period's raw parts of `claim_ids` (`metrics.CLAIM_PARTS`), or None when some
    session of it is summarized (its raw facts gone: a period's parts need them).
    `note_members`: the membership at each first join its sessions' parts looked up is kept
    by the ledger's `PeriodGate` for their summaries (`PeriodGate.note_members`)."""
    sub = period_ledger(ledger, in_period)
    if any(isinstance(s.presence, SessionSummary) for s in sub.sessions.values()):
        return None
    facts = ClaimFacts(sub)
    parts = {claim_id: CLAIM_PARTS[claim_id].part(facts) for claim_id in claim_ids}
    gate = ledger.period_gate
    if note_members and ledger.fold_sessions and isinstance(gate, PeriodGate):
        gate.note_members(ledger, facts)
    return parts


def _finish(parts: Parts) -> dict[str, FrozenFigure]:
    return _figures(parts, {c: CLAIM_PARTS[c].finish(part) for c, part in parts.items()})


def _compact(parts: Parts) -> Parts:
    """The parts to keep: bounded (`ClaimParts.compact`), and their rows of ints as tuples,
    which the garbage collector stops tracking (a frozen record holds one per user)."""
    return {c: _untracked(CLAIM_PARTS[c].compact(part)) for c, part in parts.items()}


def _frozen(parts: Parts) -> tuple[FrozenFigures, Parts]:
    """The frozen figures of a period's raw `parts` and the parts to keep (`_compact`). A
    part kept whole (`compact` is the identity: counts and integer sums, per-user rows) gives
    its figure on first read (`FrozenFigures`), the same as finished now; a compacted one
    (sketched: its figure from the kept part would differ) is finished now, from the raw."""
    figures = FrozenFigures()
    kept: Parts = {}
    for claim_id, part in parts.items():
        compacted = CLAIM_PARTS[claim_id].compact(part)
        kept[claim_id] = _untracked(compacted)
        if compacted is part:
            figures.defer(claim_id, kept[claim_id])
        else:
            figures[claim_id] = _figure(claim_id, CLAIM_PARTS[claim_id].finish(part))
    return figures, kept


#: The items a tuple may hold and be kept as it is (`_untracked`): nothing in it to convert.
_SCALARS: Final[frozenset[type]] = frozenset((int, float, bool, str, type(None)))
_INTS: Final[frozenset[type]] = frozenset((int,))
_LIST: Final[frozenset[type]] = frozenset((list,))
_TUPLE: Final[frozenset[type]] = frozenset((tuple,))


def _untracked(value: Any) -> Any:
    # Called for every per-user row of every frozen day (issue 17: ~3.6 ms a day, 5% of the
    # fold's cost per record before): the common rows, a list of ints and a tuple of scalars,
    # are told by their items' types in one C-level pass (`map(type, ...)`).
    if isinstance(value, list):
        return tuple(value) if set(map(type, value)) <= _INTS else value
    if isinstance(value, dict):
        # A part's per-user dict holds rows of one shape (ints, int lists, scalar tuples):
        # told whole by the types of its values and their items, no call a row (issue 19:
        # ~2,600 calls a frozen day were half of keeping its parts). Anything else, a row
        # at a time as before.
        kinds = set(map(type, value.values()))
        if kinds <= _SCALARS:
            return dict(value)
        if kinds == _LIST and set(map(type, chain.from_iterable(value.values()))) <= _INTS:
            return dict(zip(value, map(tuple, value.values()), strict=True))
        if kinds == _TUPLE and set(map(type, chain.from_iterable(value.values()))) <= _SCALARS:
            return dict(value)
        return {
            key: item if type(item) in _SCALARS else _untracked(item) for key, item in value.items()
        }
    if isinstance(value, tuple):
        if set(map(type, value)) <= _SCALARS:
            return value
        return tuple(_untracked(item) for item in value)
    return value


def _measure(ledger: Ledger, in_period: Span) -> dict[str, FrozenFigure] | None:
    """The period's figures from its facts, or None when some session of it is summarized."""
    parts = _parts(ledger, in_period, PERIOD_CLAIMS)
    return None if parts is None else _finish(parts)


def _measure_refunds(ledger: Ledger, in_period: Span) -> dict[str, FrozenFigure]:
    """The period's `REFUND_CLAIMS` figures from the held orders and refunds: they read no
    session fact a summary drops (an order keeps its session id, a summarized session its
    start and end), so they are exact while the period's orders are held."""
    return _finish(_refund_parts(ledger, in_period))


def _refund_parts(ledger: Ledger, in_period: Span) -> Parts:
    facts = ClaimFacts(period_ledger(ledger, in_period))
    return {claim_id: CLAIM_PARTS[claim_id].part(facts) for claim_id in REFUND_CLAIMS}


def finish_frozen(ledger: Ledger, budget_s: float | None = None) -> int:
    """Finish the frozen figures of `ledger` not read yet (`FrozenFigures`) and keep them
    there, newest period first; return how many. With `budget_s`, stop after the first period
    that took the CPU time past it (the rest wait for the next call). For a process that reads
    the ledger elsewhere (the worker's report, built in a forked child that cannot write a
    figure back): called in the parent before the fork, it finishes each figure once, not
    once per report."""
    began = time.process_time()
    finished = 0
    for key in sorted(ledger.frozen_periods, key=lambda k: (k[1], k[0]), reverse=True):
        figures = ledger.frozen_periods[key]
        if isinstance(figures, FrozenFigures) and figures.unfinished():
            finished += figures.unfinished()
            for claim_id in list(figures):
                figures[claim_id]
            if budget_s is not None and time.process_time() - began >= budget_s:
                break
    return finished


def merge_frozen(
    ledgers: Sequence[Ledger],
) -> tuple[dict[tuple[str, str], MutableMapping[str, FrozenFigure]], dict[tuple[str, str], Parts]]:
    """The frozen periods of several partitions' ledgers merged (`merge.merge_ledgers`): for
    each period some input froze, the parts of every input added (an input that has not
    frozen it yet gives the parts of its raw facts for it; one with no facts in it, none) and
    the figures finished from them: the figures of the whole stream's period, exact where the
    claim is from counts and integer sums (all but `price_dwell_association`, read from the
    merged sketch). A period some input can give no parts for (it summarized its sessions
    without parts: a state of snapshot version 8) is left out (reported `"folded": true`).
    The refund claims are merged where every input has frozen them (else the report computes
    them from the merged held orders, as for one ledger)."""
    if len(ledgers) == 1 and not ledgers[0].period_users and not ledgers[0].period_rows_in:
        # (A partition's own figures were finished before its rows were taken.)
        return dict(ledgers[0].frozen_periods), dict(ledgers[0].frozen_parts)
    routed = routes_rows(ledgers)
    keys = sorted({key for ledger in ledgers for key in ledger.frozen_periods})
    stamps = [_found(ledger) for ledger in ledgers]
    figures_out: dict[tuple[str, str], MutableMapping[str, FrozenFigure]] = {}
    parts_out: dict[tuple[str, str], Parts] = {}
    for kind, key in keys:
        first: list[Parts] = []
        refunds: list[Parts] | None = []
        for ledger, stamped in zip(ledgers, stamps, strict=True):
            # A ledger holding every partition folds its parts' rows (`_fold_settled`): they
            # add to no other ledger's.
            frozen = None if ledger.fold_months else ledger.frozen_parts.get((kind, key))
            if frozen is not None and all(c in frozen for c in FIRST_STAGE):
                first.append({c: frozen[c] for c in FIRST_STAGE})
                if refunds is not None and all(c in frozen for c in REFUND_CLAIMS):
                    refunds.append({c: frozen[c] for c in REFUND_CLAIMS})
                else:
                    refunds = None
                continue
            if (kind, key) in ledger.frozen_periods:
                break  # frozen without parts (version 8): no exact merge
            if key not in stamped[kind]:
                if key <= ledger.frozen_dropped.get(kind, ""):
                    break  # frozen and dropped here (beyond its kept periods): no parts left
                continue  # no facts of this period here
            raw = _parts(ledger, _in_key(kind, key), FIRST_STAGE)
            if raw is None:
                break
            first.append(_compact(raw))
            refunds = None  # not frozen here: the report computes them from held orders
        else:
            # The owners' parts of the users whose rows the partitions sent them
            # (agents/core/period_rows.py): each user's rows are in one place, so they add.
            owned: dict[str, list[Any]] = {}
            if routed:
                for ledger in ledgers:
                    for claim, extra in owner_parts(ledger, (kind, key)).items():
                        owned.setdefault(claim, []).extend(extra)
            merged = {
                c: CLAIM_PARTS[c].merge([p[c] for p in first] + owned.get(c, []))
                for c in FIRST_STAGE
            }
            if refunds:
                # Frozen at every input: with the owners' parts of the rows routed in the
                # second stage (an owner's refund rows are of inputs that froze the period).
                merged.update(
                    {
                        c: CLAIM_PARTS[c].merge([p[c] for p in refunds] + owned.get(c, []))
                        for c in REFUND_CLAIMS
                    }
                )
            parts_out[(kind, key)] = merged
            figures_out[(kind, key)] = _finish(merged)
    return figures_out, parts_out


def add_rows_in_flight(merged: Ledger, rows: Sequence[PeriodRows]) -> None:
    """Period rows taken and not yet held by their owner, added to a merged ledger's frozen
    parts (a worker's view over several partitions: `merge_ledgers` gave those parts), and
    the figures of the parts they change finished anew."""
    touched: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        parts = merged.frozen_parts.get((row.kind, row.key))
        if parts is None or row.claim not in parts:
            continue
        merge = CLAIM_PARTS[row.claim].merge
        parts[row.claim] = merge([parts[row.claim], rows_part(row.claim, [row.rows])])
        touched.setdefault((row.kind, row.key), set()).add(row.claim)
    for period, claims in touched.items():
        figures = merged.frozen_periods.get(period)
        if figures is None:
            continue
        added = _finish({c: merged.frozen_parts[period][c] for c in claims})
        merged.frozen_periods[period] = FrozenFigures({**figures, **added})


def _in_key(kind: str, key: str) -> Span:
    """The test of whether a `ts` is in the day (`YYYY-MM-DD`) or month (`YYYY-MM`) `key`."""
    if kind == DAY:
        start = cst_month_start(key[:7]) + (int(key[8:10]) - 1) * DAY_MS
        end = start + DAY_MS
    else:
        start, end = cst_month_start(key), cst_month_end(key)
    return Span(start, end)


def _key_end_ms(kind: str, key: str) -> int:
    return cst_month_start(key[:7]) + int(key[8:10]) * DAY_MS if kind == DAY else cst_month_end(key)


def _in(kind: str, ts_in: int) -> Span:
    """The test of whether a `ts` is in the day or month of `ts_in` (its CST bounds)."""
    start = cst_day_start(ts_in) if kind == DAY else month_start_ms(ts_in)
    return Span(start, _period_end_ms(kind, ts_in))


def freeze_closed(
    ledger: Ledger, settings: PeriodSettings, first_stage: bool = True, refund_stage: bool = True
) -> int | None:
    """Freeze the figures of every closed day and month not frozen yet into
    `ledger.frozen_periods`, with their mergeable parts (`ledger.frozen_parts`), drop the
    frozen ones beyond the kept counts, and return the earliest start ts of a session whose
    raw facts a period still needs (the ledger does not summarize it: `Ledger.period_gate`);
    None when nothing is held back. A day's parts are taken from its facts; a month's are its
    days' parts added (each fact is in one day), but for `SKETCHED`, from its days' raw rows
    the gate kept (`PeriodGate.month_price`), or else from its facts.
    `first_stage`, `refund_stage` False: that stage is skipped (`PeriodGate`: its horizon has
    crossed no day start since it last ran)."""
    closed_to = closing_horizon(ledger)
    frozen = ledger.frozen_periods
    if closed_to is not None and first_stage:
        found = _found(ledger)
        wanted = _kept_keys(ledger, settings, found)
        for kind in (DAY, MONTH):
            for key, ts in wanted[kind].items():
                if (kind, key) in frozen or _period_end_ms(kind, ts) > closed_to:
                    continue
                parts = _month_of_days(ledger, key, found) if kind == MONTH else None
                if parts is None:
                    parts = _parts(ledger, _in(kind, ts), FIRST_STAGE, note_members=True)
                if parts is not None:
                    if ledger.fold_months:  # its bootstrap once, for the figure and the fold
                        parts[DWELL] = dwell_with_quantiles(parts[DWELL])
                    gate = ledger.period_gate
                    if kind == DAY and isinstance(gate, PeriodGate):
                        gate.note_day_price(key, parts[SKETCHED])
                    frozen[(kind, key)], ledger.frozen_parts[(kind, key)] = _frozen(parts)
        # Every period ending by then is frozen here: a worker's take sends their rows
        # (`period_rows.take_period_rows`).
        ledger.periods_frozen_to = closed_to
        _prune(ledger, settings)
    refunds_to = refund_closing_horizon(ledger)
    if refunds_to is not None and refund_stage:
        for (kind, key), figures in frozen.items():
            if REFUND_CLAIMS[0] not in figures and _key_end_ms(kind, key) <= refunds_to:
                added, kept = _frozen(_refund_parts(ledger, _in_key(kind, key)))
                if isinstance(figures, FrozenFigures):
                    figures.take(added)
                else:  # a plain dict (restored from snapshot version 10 or older)
                    figures.update(added)
                ledger.frozen_parts.setdefault((kind, key), {}).update(kept)
        # Every frozen period ending by then has its refund claims frozen here: a worker's
        # take sends their rows (`period_rows.take_period_rows`).
        ledger.period_refunds_frozen_to = refunds_to
    if ledger.fold_months and (first_stage or refund_stage):
        _fold_settled(ledger)
    return held_from(ledger, settings, closed_to)


def _fold_settled(ledger: Ledger) -> None:
    """In a ledger holding every partition (`Ledger.fold_months`: its frozen parts merge
    with no other ledger's, `merge_frozen`), fold the frozen parts no merge needs any more
    (`ClaimParts.fold`: per-user rows into the sums or moments their intervals read, the
    same figures): every frozen month's, and every day's whose month is frozen (a month's
    first-stage parts are its days' merged, `_month_of_days`, the days' last use). The folds
    are idempotent: a part already folded is kept as it is (after a restore too)."""
    frozen = ledger.frozen_periods
    for (kind, key), parts in ledger.frozen_parts.items():
        if kind == MONTH or (MONTH, key[:7]) in frozen:
            figures = frozen.get((kind, key))
            # Once a day: a part folded already is returned as it is, and left in place (no
            # new dict to track, nothing walked).
            for claim_id, part in parts.items():
                folded = CLAIM_PARTS[claim_id].fold(part)
                if folded is not part:
                    parts[claim_id] = _untracked(folded)
                    if isinstance(figures, FrozenFigures):
                        # A figure not read yet is finished from the folded part (the same
                        # figure): the raw rows are let go, in memory and in snapshots.
                        figures.repoint(claim_id, parts[claim_id])


def _month_of_days(ledger: Ledger, month: str, found: dict[str, dict[str, int]]) -> Parts | None:
    """The month's first-stage parts from its days' frozen parts and `SKETCHED`'s from its
    days' raw rows (`PeriodGate.month_price`; issue 19: not a month's sub-ledger of every
    held fact), or from its facts when some were not kept; None when some day of it with
    facts has no frozen parts (pruned, or frozen by a state of snapshot version 8)."""
    days = [day for day in found[DAY] if day.startswith(month)]
    day_parts = [ledger.frozen_parts.get((DAY, day)) for day in days]
    if not days or any(p is None or any(c not in p for c in FIRST_STAGE) for p in day_parts):
        return None
    gate = ledger.period_gate
    price = gate.month_price(month, days) if isinstance(gate, PeriodGate) else None
    if price is None:
        sketched = _parts(ledger, _in_key(MONTH, month), (SKETCHED,))
        if sketched is None:
            return None
        price = sketched[SKETCHED]
    parts = {
        c: CLAIM_PARTS[c].merge([p[c] for p in day_parts if p is not None])
        for c in FIRST_STAGE
        if c != SKETCHED
    }
    parts[SKETCHED] = price
    return {c: parts[c] for c in FIRST_STAGE}


def _found(ledger: Ledger) -> dict[str, dict[str, int]]:
    """Per kind, the periods with facts held, each with a `ts` in it (one scan of the stamps;
    a day's name formatted once per day)."""
    stamps = _period_stamps(ledger)
    # Each stamp's CST day number in one comprehension, not a call a stamp (issue 19: every
    # held order and question at each freeze); the days in the order of their first stamp,
    # each with that first stamp (of the reversed pairs, the first one's `ts` is left).
    numbers = [(ts + _CST_OFFSET_MS) // DAY_MS for ts in stamps]
    first = dict(zip(reversed(numbers), reversed(stamps), strict=True))
    out: dict[str, dict[str, int]] = {DAY: {}, MONTH: {}}
    for number in dict.fromkeys(numbers):
        ts = first[number]
        out[DAY].setdefault(_day_name(number), ts)
        out[MONTH].setdefault(cst_month(ts), ts)
    return out


@functools.lru_cache(maxsize=1024)
def _day_name(number: int) -> str:
    """`cst_day` of the CST day number `number`, formatted once a day, not at each freeze
    (`_found`: every held day's name at each, ~60 here)."""
    return cst_day(number * DAY_MS - _CST_OFFSET_MS)


def held_from(ledger: Ledger, settings: PeriodSettings, closed_to: int | None) -> int | None:
    """The earliest start of a session whose raw facts a period still needs: the first month
    not closed, or the rolling horizon's start if earlier; before any closing horizon, every
    session (-2**62: none is summarized then anyway); None for an empty ledger."""
    newest = ledger.max_ts
    if newest is None or closed_to is None:
        return None if newest is None else -(2**62)
    return min(newest - settings.horizon_days * DAY_MS, month_start_ms(closed_to))


class PeriodGate:
    """`Ledger.period_gate`: freezes the closed periods (only when the closing horizon or the
    refund closing horizon has crossed a CST day start since the last freeze: every period
    ends at one, so nothing else can close one) and holds back the summary of the sessions
    the open periods still need."""

    def __init__(self, settings: PeriodSettings) -> None:
        self.settings = settings
        #: The CST days of the closing and refund closing horizons at the last freeze.
        self._frozen_at: tuple[int | None, int | None] | None = None
        self._held = HeldOrders()
        #: Session id -> what the freeze of its day found of its membership lookups, for its
        #: summary (`note_members`).
        self._members: dict[str, FoundMembers] = {}
        #: A frozen day (`YYYY-MM-DD`) of a month not frozen yet -> its raw `SKETCHED` part's
        #: rows (prices, watch minutes, session ids), for the month's (`month_price`).
        self._day_prices: dict[str, tuple[list[int], list[float], list[str]]] = {}

    def held_orders(self, orders: list[OrderFact]) -> HeldOrders:
        """The index of the ledger's held orders `orders` (`HeldOrders`), up to date."""
        return self._held.sync(orders)

    def note_members(self, ledger: Ledger, facts: ClaimFacts) -> None:
        """Keep what a day's parts found of its sessions' membership (`ClaimFacts.
        member_joins`, `member_orders`) for the sessions' summaries, which look the same up
        (`Ledger._summarize`; issue 19: once a pair, not twice): what is final only
        (`FoundMembers`), as of the ledger's horizons now. Not part of the state: a restored
        ledger's summaries look every pair up."""
        source = ledger.membership_from or ledger
        groups = source.horizon_ts(_GROUPS)
        views, orders = ledger.horizon_ts(_VIEWS), ledger.horizon_ts(_ORDERS)
        if groups is None or views is None or orders is None:
            return
        joins_to, orders_to = min(views, groups), min(orders, groups)
        ordered: dict[str, set[tuple[str, int]]] = {}
        members = facts.looked_up_orders()
        if members is not None:
            for (sid, _session, order), member in zip(facts.session_orders(), members, strict=True):
                if member and order.ts < orders_to:
                    ordered.setdefault(sid, set()).add((order.user_id, order.ts))
        if members is None:
            orders_to = _NO_TS  # none looked up: the summary looks them up
        late = late_group_events(source)
        sessions = facts.started
        for sid, found in facts.looked_up().items():
            joined = frozenset(
                [user for user, first, member in found if member and first < joins_to]
            )
            # Its orders looked up were those up to its session horizon then
            # (`SessionFacts.horizon_orders`): one after it may be the session's later.
            horizon_from = sessions[sid].horizon_from
            session_orders_to = (
                orders_to
                if horizon_from is None
                else min(orders_to, horizon_from + SESSION_HORIZON_MS + 1)
            )
            self._members[sid] = FoundMembers(
                joins_to, joined, session_orders_to, frozenset(ordered.get(sid, ())), late
            )
        # A session the ledger no longer holds (dropped before its summary): let go.
        if len(self._members) > 2 * len(ledger.sessions):
            held = ledger.sessions
            self._members = {sid: found for sid, found in self._members.items() if sid in held}

    def note_day_price(self, day: str, part: PricePart) -> None:
        """Keep a frozen day's raw `SKETCHED` part (its orders' rows, before `_frozen` sketches
        them) until its month is frozen (`month_price`)."""
        prices, minutes, sessions, folded = part
        if not folded.price_watch.count:  # a period's sub-ledger folds nothing
            self._day_prices[day] = (prices, minutes, sessions)
        # A month holds 31 days at most: more are days of a month frozen without asking (a
        # restored state's); the oldest are let go (their month's part from its facts).
        for old in sorted(self._day_prices)[: max(0, len(self._day_prices) - 62)]:
            del self._day_prices[old]

    def month_price(self, month: str, days: Sequence[str]) -> PricePart | None:
        """The month's raw `SKETCHED` part from its days' (`days`: those with facts), let go
        with every kept day of the month; None unless every one of them was kept (after a
        restore: not part of the state), and then the month's part is taken from its facts.
        Its rows are in the order the month's facts give them: a session's orders are all in
        its start's day, by `order_key` there, and the sessions by id (a stable sort of the
        days' rows by session id), so the figure and its resampled interval are the same."""
        kept = [self._day_prices.get(day) for day in days]
        for day in [day for day in self._day_prices if day.startswith(month)]:
            del self._day_prices[day]
        if any(found is None for found in kept):
            return None
        rows = sorted(
            (
                (sid, price, minutes)
                for found in kept
                if found is not None
                for price, minutes, sid in zip(found[0], found[1], found[2], strict=True)
            ),
            key=_session_of,
        )
        return (
            [price for _sid, price, _minutes in rows],
            [minutes for _sid, _price, minutes in rows],
            [sid for sid, _price, _minutes in rows],
            FoldedFigures(),
        )

    def members_found(self, sid: str) -> FoundMembers | None:
        """What the freeze of the session's day found of its membership (`note_members`),
        let go; None: nothing kept."""
        return self._members.pop(sid, None)

    def _freeze_due(self, ledger: Ledger) -> None:
        # The summaries' call and the order fold's each came once a day of their horizons,
        # and the second found nothing new but still scanned every held fact for the periods
        # (`_found`, `_kept_keys`): one freeze per day crossed now serves both.
        closed_to = closing_horizon(ledger)
        refunds_to = refund_closing_horizon(ledger)
        at = (
            None if closed_to is None else cst_day_start(closed_to),
            None if refunds_to is None else cst_day_start(refunds_to),
        )
        last = self._frozen_at
        if last is None or at != last:
            # A stage runs when its own horizon moved: a period newly frozen in the first stage
            # whose refund horizon has passed too (a restored state) gets its second with it.
            first = last is None or at[0] != last[0]
            freeze_closed(ledger, self.settings, first, last is None or first or at[1] != last[1])
            self._frozen_at = at

    def orders_held_from(self, ledger: Ledger, fold_horizon: int) -> int | None:
        """The earliest period stamp whose orders must stay raw when the order fold runs at
        `fold_horizon` (`Ledger._fold_orders`): the first month whose figures or refund claims
        are not closed, or the rolling horizon's start if earlier."""
        refunds_to = refund_closing_horizon(ledger, fold_horizon)
        closed_to = closing_horizon(ledger)
        newest = ledger.max_ts
        if refunds_to is None or closed_to is None or newest is None:
            return -(2**62)  # no period closed for good: every order stays
        rolling_from = newest - self.settings.horizon_days * DAY_MS
        return min(rolling_from, month_start_ms(min(refunds_to, closed_to)))

    def freeze(self, ledger: Ledger) -> None:
        """Freeze what has closed, both stages (before the order fold folds their orders)."""
        self._freeze_due(ledger)

    def __call__(self, ledger: Ledger) -> int | None:
        closed_to = closing_horizon(ledger)
        if closed_to is not None:
            self._freeze_due(ledger)
        return held_from(ledger, self.settings, closed_to)


def attach(ledger: Ledger, settings: PeriodSettings) -> Ledger:
    """Set the ledger's `period_gate` (after a restore too: it is not part of the state)."""
    ledger.period_gate = PeriodGate(settings)
    return ledger


def _prune(ledger: Ledger, settings: PeriodSettings) -> None:
    frozen = ledger.frozen_periods
    for kind, kept in ((DAY, settings.days_kept), (MONTH, settings.months_kept)):
        keys = sorted(key for k, key in frozen if k == kind)
        for key in keys[: max(0, len(keys) - kept)]:
            del frozen[(kind, key)]
            ledger.frozen_parts.pop((kind, key), None)
            ledger.frozen_dropped[kind] = max(key, ledger.frozen_dropped.get(kind, ""))
        if keys[: max(0, len(keys) - kept)]:  # an owner's parts of the periods dropped
            prune_owned(ledger, kind, keys[max(0, len(keys) - kept)])


def _kept_keys(
    ledger: Ledger, settings: PeriodSettings, stamped: dict[str, dict[str, int]] | None = None
) -> dict[str, dict[str, int]]:
    """Per kind, the periods reported, with a `ts` in each (-1: known only frozen), oldest
    first: the latest `days_kept` (`months_kept`) closed ones and as many open ones."""
    closed_to = closing_horizon(ledger)
    out: dict[str, dict[str, int]] = {DAY: {}, MONTH: {}}
    found = {kind: dict(keys) for kind, keys in (stamped or _found(ledger)).items()}
    for kind, kept in ((DAY, settings.days_kept), (MONTH, settings.months_kept)):
        for k, key in ledger.frozen_periods:
            if k == kind:
                found[kind].setdefault(key, -1)
        closed = sorted(
            key
            for key, ts in found[kind].items()
            if (kind, key) in ledger.frozen_periods
            or (closed_to is not None and _period_end_ms(kind, ts) <= closed_to)
        )
        open_ = sorted(set(found[kind]) - set(closed))
        out[kind] = {key: found[kind][key] for key in closed[-kept:] + open_[-kept:]}
    return out


def _entry(figure: FrozenFigure | None, **extra: Any) -> dict[str, Any]:
    if figure is None:
        # A period whose sessions were summarized before it was frozen (several partitions
        # merged, each frozen alone): no exact figure from what is left.
        return {
            "observed": None,
            "ci_low": None,
            "ci_high": None,
            "verdict": None,
            "n": None,
            "clusters": None,
            "folded": True,
            **extra,
        }
    observed, low, high, verdict, n, clusters = figure
    return {
        "observed": observed,
        "ci_low": low,
        "ci_high": high,
        "verdict": verdict,
        "n": n,
        "clusters": clusters,
        **extra,
    }


def claim_periods(ledger: Ledger, settings: PeriodSettings) -> dict[str, Any]:
    """The report's `periods` (docs/design.md, "Report JSON"): the settings, and per claim
    its figures by CST day and month (the latest kept, oldest first, each marked `frozen`
    when read from a frozen record) and over the rolling horizon."""
    freeze_closed(ledger, settings)
    wanted = _kept_keys(ledger, settings)
    claim_ids = [claim.id for claim in CLAIMS if claim.id not in NOT_PER_PERIOD]
    by_claim: dict[str, dict[str, Any]] = {
        claim_id: {DAY: [], MONTH: [], ROLLING: None} for claim_id in claim_ids
    }
    for kind in (DAY, MONTH):
        for key, ts in wanted[kind].items():
            figures = ledger.frozen_periods.get((kind, key))
            frozen = figures is not None
            live: tuple[str, ...] = ()  # claims of a frozen period still computed
            if figures is None:
                figures = _measure(ledger, _in(kind, ts))
            elif REFUND_CLAIMS[0] not in figures:  # refunds may still come: from held facts
                figures = {**figures, **_measure_refunds(ledger, _in_key(kind, key))}
                live = REFUND_CLAIMS
            for claim_id in claim_ids:
                figure = None if figures is None else figures.get(claim_id)
                by_claim[claim_id][kind].append(
                    _entry(figure, period=key, frozen=frozen and claim_id not in live)
                )
    newest = ledger.max_ts
    rolling_from = None if newest is None else newest - settings.horizon_days * DAY_MS
    if rolling_from is not None:
        # After `rolling_from` (every `ts` is an int), with no end.
        figures = _measure(ledger, Span(rolling_from + 1, _NO_END))
        for claim_id in claim_ids:
            figure = None if figures is None else figures.get(claim_id)
            by_claim[claim_id][ROLLING] = _entry(figure)
    return {
        "horizon_days": settings.horizon_days,
        "days_kept": settings.days_kept,
        "months_kept": settings.months_kept,
        "rolling_from_ts": rolling_from,
        "frozen": {
            kind: sum(1 for k, _key in ledger.frozen_periods if k == kind) for kind in (DAY, MONTH)
        },
        "not_per_period": dict(NOT_PER_PERIOD),
        "claims": by_claim,
    }


def with_periods(
    report: dict[str, Any], ledger: Ledger, settings: PeriodSettings | None
) -> dict[str, Any]:
    """`report` (`build_report` of `ledger`) with its `periods` added (None: unchanged)."""
    if settings is not None:
        report["periods"] = claim_periods(ledger, settings)
    return report
