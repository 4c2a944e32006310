"""The live screen's state: per-minute curves of the last hour, products and entry sources.

What an operator's live screen (直播大屏) shows beyond the board's figures, kept per session and
summed into rooms, merchants and overall at snapshot time (a session's room is known only once
its `session_started` arrived, which may be after its other events). Bounded: a fixed number
of event-time minute buckets (older ones are dropped as the largest `ts` moves, like
`windows.EventTimeWindows`), at most `SKU_LIMIT` products per session (further ones are
counted together under `OTHER_SKU`), and per (session, user) one first entry, only until the
ledger folds the session (`Ledger.folded_ids`, `fold_session`): its products and sources are
then added to its room's and merchant's totals and forgotten, so what is kept per session ends
with the session. Mergeable across partitions by `merge_screens`, with the same argument as
`merge.merge_windows`: buckets of a minute at or above the merged cutoff got every event of
that minute in every input.

Where the ledger summarizes sessions (`Ledger(fold_sessions=True)`), the screen folds a session
at its summary, not at the presence fold before it (the end older than the dedupe window):
between the two a click, an order or a view after the end may still come within the session
horizon, and the distinct figures need the session's users until then (`hold_session` keeps
its products, entries and its buyers' spend up to the horizon, `session_sources` reads them at
the summary, when the ledger no longer has the orders). Past the summary every event still
applied is past the session horizon, so the distinct figures are final. Without summaries the
screen folds at the presence fold (bounded, where the ledger is not); an event of the session
after it still counts in the totals, exactly in the additive figures (entries, clicks, orders,
units, GMV of the products) but not in the distinct ones (clickers, buyers, viewers and their
buyers by source stay as folded); `after_fold_events` counts such events.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final

from agents.core.ledger import (
    SESSION_HORIZON_MS,
    FoldedPresence,
    Ledger,
    SessionFacts,
    SessionSummary,
)
from agents.core.metrics import add_user_rows
from agents.core.slots import (
    INT64_MAX,
    INT64_MIN,
    SLOTS,
    int64s_from_bytes,
    int64s_to_bytes,
    slot_int,
)
from agents.core.windows import MINUTE_MS
from schemas.events import Event, OrderPaid, ProductClicked, ViewerJoined

#: Minutes of event time the curves cover, ending with the minute of the largest `ts`.
SCREEN_MINUTES: Final[int] = 60
#: Products listed per room (by GMV); the rest are summed in the room's `other` line.
PRODUCTS_TOP_N: Final[int] = 20
#: Products tracked per session; a live room's shelf rarely holds more than a few hundred.
SKU_LIMIT: Final[int] = 1000
#: Where a session's products beyond `SKU_LIMIT` are counted (the contract's ids are non-empty).
OTHER_SKU: Final[str] = ""
#: `viewer_joined.source` values (the contract's), then the name for an entry without one.
SOURCES: Final[tuple[str, ...]] = (
    "feed",
    "search",
    "follow",
    "short_video",
    "group",
    "note",
    "other",
    "unspecified",
)
CURVES: Final[tuple[str, ...]] = ("viewers", "entries", "product_clicks", "orders", "gmv_cny")
#: A user's first entry into a session, `(ts, source)`, is kept packed in one int (issue 19: a
#: tuple and its `ts` were ~90 of the bytes each concurrent viewer costs):
#: `ts << _SOURCE_BITS | rank of the source`, ranks in the sources' alphabetical order, so
#: comparing packed entries compares `(ts, source)` as the tuples did.
_SOURCE_BY_RANK: Final[tuple[str, ...]] = tuple(sorted(SOURCES))
_SOURCE_RANK: Final[dict[str, int]] = {source: rank for rank, source in enumerate(_SOURCE_BY_RANK)}
_SOURCE_BITS: Final[int] = (len(SOURCES) - 1).bit_length()
_SOURCE_MASK: Final[int] = (1 << _SOURCE_BITS) - 1


def _pack_entry(ts: int, source: str) -> int:
    """`(ts, source)` of a first entry as one int (`_SOURCE_BY_RANK`)."""
    return ts << _SOURCE_BITS | _SOURCE_RANK[source]


def _entry_source(entry: int) -> str:
    """The source of a packed first entry."""
    return _SOURCE_BY_RANK[entry & _SOURCE_MASK]


DEFINITIONS: Final[dict[str, str]] = {
    "minutes": "per event-time minute of the last hour (ending with the largest ts seen): "
    "viewers = (session, user) pairs in the room at some moment of the minute (as "
    "viewers_peak), entries, product clicks, session orders and their GMV by the event's ts; "
    "late events count too",
    "products": "per sku_id of a room's sessions: clicks, clickers (distinct per session, "
    "summed), session orders listing it, units, GMV (unit price x quantity of its lines), "
    "buyers (distinct per session, summed), click_to_order = clickers who ordered it / "
    "clickers; the top N by GMV, the rest in `other`",
    "sources": "per viewer_joined.source (unspecified when absent): entries; viewers = "
    "(session, user) pairs whose first entry (earliest ts) came from it; buyers and GMV = "
    "those viewers' session orders; conversion = buyers / viewers",
}


#: A `FirstEntries` array value for a slot with no entry (a user of the shared table with no
#: join seen here: a leave only, or a join the presence took and the screen has not yet). A
#: real entry of that value (less the table's base) is kept in the overflow, as one outside
#: int32 of the base is.
_NO_ENTRY: Final[int] = -(1 << 31)
_INT32_MAX: Final[int] = (1 << 31) - 1


class FirstEntries(Mapping[str, int]):
    """One session's first entry per user (`_pack_entry`), held by slot: the user's dict entry
    holds a slot int every table shares (`agents.core.slots`) and the entry is an int32 at that
    slot, less the table's base (`_base`: its first entry's, the source bits clear; issue 19:
    4 B a viewer where an int64 was 8); one that does not fit (2**(31 - `_SOURCE_BITS`) ms
    from the first, ~3 days) is kept whole in an overflow.

    The user -> slot dict is the session's raw presence's (`Ledger` presence, given as
    `slots`) while every user offered is in it: the ledger takes a join before the screen
    does, so a viewer costs the screen 8 B and no dict entry of its own. A user not in that
    table (a join after the presence folded) makes the entries take a table of their own
    (`_own`), which the presence never writes. Users of the shared table with no entry here
    (`_NO_ENTRY`: those with a leave only) are not keys of this mapping.

    Why: a dict of packed ints cost a 32-B int and a dict entry per viewer; a dict of its own
    by slot, 8 B and the entry (26 B a viewer); sharing the presence's, 8 B; int32s, 4 B
    (issue 19).
    """

    __slots__ = ("_slots", "_entries", "_base", "_wide", "_count", "_shared")

    def __init__(self, slots: dict[str, int] | None = None) -> None:
        #: user -> slot: the presence's (`_shared`, read only here) or this table's own.
        self._slots: dict[str, int] = {} if slots is None else slots
        self._shared = slots is not None
        #: Per slot its entry less `_base`, `_NO_ENTRY` for none; as long as the last slot
        #: offered.
        self._entries: array[int] = array("i")
        #: The first entry offered with its source bits clear (so an entry's source is its
        #: array value's low bits, `sources`); None until then.
        self._base: int | None = None
        #: slot -> a whole entry whose value less `_base` is outside int32 or equal to
        #: `_NO_ENTRY` (its `_entries` value: 0).
        self._wide: dict[int, int] = {}
        #: Users with an entry.
        self._count = 0

    def offer(self, user: str, entry: int) -> None:
        """Keep `entry` as the user's if it is their first or smaller than the one held."""
        slot = self._slots.get(user)
        entries = self._entries
        base = self._base
        if base is None:
            base = self._base = entry & ~_SOURCE_MASK
        if slot is None:
            if self._shared:
                self._own()
                entries = self._entries
            n = len(entries)
            slot = self._slots[user] = SLOTS[n] if n < len(SLOTS) else slot_int(n)
        else:
            n = len(entries)
            if slot < n:
                held = entries[slot]
                if held == _NO_ENTRY:  # a slot of the shared table with no entry yet
                    self._count += 1
                    self._set(slot, entry)
                elif entry < (self._wide.get(slot, held + base) if self._wide else held + base):
                    self._set(slot, entry)
                return
            if slot > n:  # slots of the shared table with no entry before it
                entries.extend(array("i", (_NO_ENTRY,)) * (slot - n))
        # The usual viewer: the next slot (a new one, or the join the presence just took).
        self._count += 1
        relative = entry - base
        if relative != _NO_ENTRY:
            try:
                entries.append(relative)
                return
            except OverflowError:  # outside int32 of the base
                pass
        entries.append(0)
        self._wide[slot] = entry

    def _set(self, slot: int, entry: int) -> None:
        assert self._base is not None  # set by the first `offer`
        relative = entry - self._base
        try:
            if relative == _NO_ENTRY:
                raise OverflowError
            self._entries[slot] = relative
        except OverflowError:  # outside int32 of the base, or the marker's value
            self._entries[slot] = 0
            self._wide[slot] = entry
        else:
            if self._wide:
                self._wide.pop(slot, None)

    def _own(self) -> None:
        """Stop sharing the presence's table: one of this table's own, its users only."""
        entries, wide = self._entries, self._wide
        users = [
            (user, slot)
            for user, slot in self._slots.items()
            if slot < len(entries) and entries[slot] != _NO_ENTRY
        ]
        self._slots = {user: slot_int(n) for n, (user, _) in enumerate(users)}
        self._entries = array("i", (entries[slot] for _, slot in users))
        self._wide = {slot_int(n): wide[slot] for n, (_, slot) in enumerate(users) if slot in wide}
        self._shared = False

    def share(self, slots: dict[str, int]) -> bool:
        """Read the presence's table `slots` from now on if it has every user held here (a
        state just loaded: each saved its own users), the entries laid out by its slots;
        False (nothing changed) if not."""
        if self._shared or not all(user in slots for user in self._slots):
            return False
        size = max((slots[user] for user in self._slots), default=-1) + 1
        entries = array("i", (_NO_ENTRY,)) * size
        wide: dict[int, int] = {}
        for user, slot in self._slots.items():
            shared = slots[user]
            entries[shared] = self._entries[slot]
            if slot in self._wide:
                wide[shared] = self._wide[slot]
        self._slots, self._entries, self._wide, self._shared = slots, entries, wide, True
        return True

    def _slot(self, user: object) -> int | None:
        slot: int | None = self._slots.get(user)  # type: ignore[call-overload]
        if slot is None or slot >= len(self._entries) or self._entries[slot] == _NO_ENTRY:
            return None
        return slot

    def __getitem__(self, user: str) -> int:
        slot = self._slot(user)
        if slot is None:
            raise KeyError(user)
        if self._wide:
            wide = self._wide.get(slot)
            if wide is not None:
                return wide
        assert self._base is not None  # an entry was offered
        return self._entries[slot] + self._base

    def __contains__(self, user: object) -> bool:
        return self._slot(user) is not None

    def __iter__(self) -> Iterator[str]:
        if not self._shared:
            return iter(self._slots)
        entries = self._entries
        return (
            user
            for user, slot in self._slots.items()
            if slot < len(entries) and entries[slot] != _NO_ENTRY
        )

    def __len__(self) -> int:
        return self._count

    def sources(self) -> Counter[int]:
        """Viewers by the rank of their first entry's source (`_SOURCE_BY_RANK`)."""
        if self._wide:
            return Counter(self[user] & _SOURCE_MASK for user in self)
        # An array value's low bits are its entry's: the base's are clear.
        ranks = Counter(map(_SOURCE_MASK.__and__, self._entries))
        absent = len(self._entries) - self._count  # `_NO_ENTRY` & the mask: rank 0
        if absent:
            ranks[0] -= absent
            if not ranks[0]:
                del ranks[0]
        return ranks

    def __getstate__(self) -> dict[str, object]:
        # Its own users only, in slot order (a shared table is the presence's to save); the
        # entries whole, as int64s (the format before int32s): one outside int64, or of the
        # value `INT64_MIN`, as 0 and in "wide".
        users = list(self)
        base = self._base
        if (
            not self._wide
            and base is not None
            and INT64_MIN < base + _NO_ENTRY
            and base + _INT32_MAX <= INT64_MAX
        ):
            # The usual table: every entry in the array, within int64 (a loop as before).
            held, slots = self._entries, self._slots
            entries = array("q", (held[slot] + base for slot in map(slots.__getitem__, users)))
            return {"users": users, "entries": int64s_to_bytes(entries), "wide": {}}
        entries, wide = array("q"), {}
        for n, user in enumerate(users):
            entry = self[user]
            if INT64_MIN < entry <= INT64_MAX:
                entries.append(entry)
            else:
                entries.append(0)
                wide[n] = entry
        return {"users": users, "entries": int64s_to_bytes(entries), "wide": wide}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._slots = {user: slot_int(n) for n, user in enumerate(state["users"])}
        saved = int64s_from_bytes(state["entries"])
        self._wide = wide = {slot_int(slot): entry for slot, entry in state["wide"].items()}
        self._count = len(self._slots)
        self._shared = False
        # Whole int64s (an entry of `INT64_MIN` saved before the overflow took it included)
        # less the first one's base; one outside int32 of it to the overflow.
        firsts = (entry for slot, entry in enumerate(saved) if slot not in wide)
        first = next(firsts, None)
        self._base = base = None if first is None else first & ~_SOURCE_MASK
        self._entries = entries = array("i")
        for slot, entry in enumerate(saved):
            if slot in wide:
                entries.append(0)
                continue
            assert base is not None
            relative = entry - base
            if _NO_ENTRY < relative <= _INT32_MAX:
                entries.append(relative)
            else:
                entries.append(0)
                wide[slot_int(slot)] = entry

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]]) -> FirstEntries:
        """From (user, packed entry) pairs: each user's smallest."""
        out = cls()
        for user, entry in entries:
            out.offer(user, entry)
        return out


@dataclass(slots=True)
class MinuteCounts:
    """What one session did in one event-time minute."""

    entries: int = 0
    product_clicks: int = 0
    orders: int = 0
    gmv_cents: int = 0


@dataclass(slots=True)
class SkuTally:
    """One product in one session, cumulative."""

    clicks: int = 0
    clickers: set[str] = field(default_factory=set)
    orders: int = 0
    units: int = 0
    gmv_cents: int = 0
    buyers: set[str] = field(default_factory=set)

    def add(self, other: SkuTally) -> None:
        self.clicks += other.clicks
        self.clickers |= other.clickers
        self.orders += other.orders
        self.units += other.units
        self.gmv_cents += other.gmv_cents
        self.buyers |= other.buyers


class ScreenState:
    """Per-session minute buckets, product tallies and entry sources (see the module)."""

    __slots__ = (
        "after_fold_events",
        "first_entry",
        "folded",
        "folded_products",
        "folded_sources",
        "held_paid",
        "minutes",
        "retained_minutes",
        "skus",
        "source_entries",
        "watermark",
    )

    def __init__(self, retained_minutes: int = SCREEN_MINUTES) -> None:
        self.retained_minutes = retained_minutes
        self.watermark: int | None = None
        #: Event-time minute -> session id -> counts.
        self.minutes: dict[int, dict[str, MinuteCounts]] = {}
        #: Session id -> sku_id -> tally.
        self.skus: dict[str, dict[str, SkuTally]] = {}
        #: Session id -> user -> (ts, source) of the user's earliest entry, packed
        #: (`_pack_entry`), by slot (`FirstEntries`).
        self.first_entry: dict[str, FirstEntries] = {}
        #: Session id -> source -> entries.
        self.source_entries: dict[str, Counter[str]] = {}
        self._init_folded()

    def _init_folded(self) -> None:
        #: Folded session id -> its (room, merchant): where its later events count.
        self.folded: dict[str, tuple[str, str]] = {}
        #: ("rooms" or "merchants", id) -> source -> folded sessions' sums
        #: (`session_sources`).
        self.folded_sources: dict[tuple[str, str], dict[str, list[int]]] = {}
        #: Room -> sku_id -> folded sessions' sums (`session_products`).
        self.folded_products: dict[str, dict[str, list[int]]] = {}
        self.after_fold_events = 0
        self._init_held()

    def _init_held(self) -> None:
        #: Session the ledger folded and will summarize -> (its end, user -> cents paid in
        #: its orders up to its session horizon): what `session_sources` reads at the summary.
        self.held_paid: dict[str, tuple[int, dict[str, int]]] = {}

    def __setstate__(self, state: tuple[Any, dict[str, Any]]) -> None:
        # A state saved before sessions were folded here has nothing folded (or held).
        _dict, slots = state
        if "folded" not in slots:
            self._init_folded()
        elif "held_paid" not in slots:
            self._init_held()
        for name, value in slots.items():
            setattr(self, name, value)
        for sid, firsts in self.first_entry.items():
            if isinstance(firsts, dict):  # saved before slots (state version 10 and older)
                self.first_entry[sid] = FirstEntries.of(
                    # saved before entries were packed: (ts, source)
                    (user, _pack_entry(*entry) if isinstance(entry, tuple) else entry)
                    for user, entry in firsts.items()
                )

    def share_slots(self, ledger: Ledger) -> None:
        """Let each session's first entries read its raw presence's slot table in `ledger`
        again (`FirstEntries.share`), as before the state was saved."""
        for sid, firsts in self.first_entry.items():
            slots = ledger.presence_slots(sid)
            if slots is not None:
                firsts.share(slots)

    def hold_session(self, sid: str, session: SessionFacts) -> None:
        """Keep what the screen has of a session the ledger folded and will summarize past
        its session horizon, and its buyers' spend up to that horizon (the ledger drops its
        orders at the summary; `fold_session` then)."""
        # Its end, or, for a session that never ended, the newest event it was abandoned at.
        horizon_from = session.horizon_from
        if sid in self.folded or horizon_from is None:
            return
        last = horizon_from + SESSION_HORIZON_MS
        paid: dict[str, int] = {}
        for order in session.orders:
            if order.ts <= last:
                paid[order.user_id] = paid.get(order.user_id, 0) + order.amount_cents
        self.held_paid[sid] = (horizon_from, paid)

    def fold_session(self, sid: str, session: SessionFacts) -> None:
        """Add a session the ledger folded to its room's and merchant's totals and forget its
        products, entries and first entries (its minute buckets go with the hour)."""
        if sid in self.folded:
            return
        room, merchant = session.room_id or "", session.merchant_id or ""
        held = self.held_paid.pop(sid, None)
        sources = self.session_sources(sid, session, None if held is None else held[1])
        for key in (("rooms", room), ("merchants", merchant)):
            add_user_rows(self.folded_sources.setdefault(key, {}), sources)
        add_user_rows(self.folded_products.setdefault(room, {}), self.session_products(sid))
        self.folded[sid] = (room, merchant)
        self.skus.pop(sid, None)
        self.first_entry.pop(sid, None)
        self.source_entries.pop(sid, None)

    def _after_fold(self, event: Event, sid: str) -> None:
        """An event of a folded session: into its totals, additive figures only."""
        room, merchant = self.folded[sid]
        self.after_fold_events += 1
        if isinstance(event, ViewerJoined):
            source = event.source or "unspecified"
            for key in (("rooms", room), ("merchants", merchant)):
                row = self.folded_sources.setdefault(key, {}).setdefault(source, [0, 0, 0, 0])
                row[0] += 1
        elif isinstance(event, ProductClicked):
            products = self.folded_products.setdefault(room, {})
            products.setdefault(event.sku_id, [0] * len(_PRODUCT_SUMS))[0] += 1
        elif isinstance(event, OrderPaid):
            products = self.folded_products.setdefault(room, {})
            seen: set[str] = set()
            for item in event.items:
                row = products.setdefault(item.sku_id, [0] * len(_PRODUCT_SUMS))
                if item.sku_id not in seen:
                    seen.add(item.sku_id)
                    row[2] += 1
                row[3] += item.quantity
                row[4] += item.unit_price_cents * item.quantity

    def cutoff(self) -> int | None:
        """The oldest minute kept, or None before any event."""
        if self.watermark is None:
            return None
        return self.watermark // MINUTE_MS - self.retained_minutes + 1

    def observe(self, event: Event, ledger: Ledger | None = None) -> None:
        """Take one accepted (non-duplicate) event: O(items) work. `ledger`, the one that
        accepted it: a session's first entries then share its raw presence's slot table."""
        ts = event.ts
        watermark = self.watermark
        if watermark is None or ts > watermark:
            self.watermark = ts
            # The cutoff moves only when the watermark's minute does (`cutoff`).
            if watermark is None or ts // MINUTE_MS != watermark // MINUTE_MS:
                self._expire()
        if self.folded:
            # The fields are the model's `__dict__`: a `getattr` default for an event with no
            # `session_id` (a group event, a refund) is a miss through pydantic's `__getattr__`,
            # which raises and catches an AttributeError in Python (~2.6 us, issue 19).
            folded_sid = event.__dict__.get("session_id")
            if folded_sid in self.folded:
                assert folded_sid is not None
                self._after_fold(event, folded_sid)
                if (
                    type(event) is ViewerJoined
                    or type(event) is ProductClicked
                    or type(event) is OrderPaid
                ):
                    counts = self._minute(ts, folded_sid)
                    if counts is not None:
                        _count_minute(counts, event)
                return
        if type(event) is ViewerJoined:
            sid, source = event.session_id, event.source or "unspecified"
            entries = self.source_entries.get(sid)
            if entries is None:
                entries = self.source_entries[sid] = Counter()
            entries[source] += 1
            firsts = self.first_entry.get(sid)
            if firsts is None:
                firsts = self.first_entry[sid] = FirstEntries(
                    None if ledger is None else ledger.presence_slots(sid)
                )
            # At equal ts the smaller source name: a function of the events, not their order.
            firsts.offer(event.user_id, ts << _SOURCE_BITS | _SOURCE_RANK[source])
            counts = self._minute(ts, sid)
            if counts is not None:
                counts.entries += 1
        elif type(event) is ProductClicked:
            tally = self._sku(event.session_id, event.sku_id)
            tally.clicks += 1
            tally.clickers.add(event.user_id)
            counts = self._minute(ts, event.session_id)
            if counts is not None:
                counts.product_clicks += 1
        elif type(event) is OrderPaid and event.session_id is not None:
            sid = event.session_id
            held = self.held_paid.get(sid) if self.held_paid else None
            if held is not None and ts <= held[0] + SESSION_HORIZON_MS:  # as the ledger's
                held[1][event.user_id] = held[1].get(event.user_id, 0) + event.amount_cents
            seen: set[str] = set()
            for item in event.items:
                tally = self._sku(sid, item.sku_id)
                if item.sku_id not in seen:
                    seen.add(item.sku_id)
                    tally.orders += 1
                tally.units += item.quantity
                tally.gmv_cents += item.unit_price_cents * item.quantity
                tally.buyers.add(event.user_id)
            counts = self._minute(ts, sid)
            if counts is not None:
                counts.orders += 1
                counts.gmv_cents += event.amount_cents

    def _minute(self, ts: int, sid: str) -> MinuteCounts | None:
        minute = ts // MINUTE_MS
        watermark = self.watermark  # set: `observe` saw this event first
        # `cutoff`, inlined (once per entry, click and order).
        if watermark is not None and minute <= watermark // MINUTE_MS - self.retained_minutes:
            return None  # older than the curves reach
        by_session = self.minutes.get(minute)
        if by_session is None:
            by_session = self.minutes[minute] = {}
        counts = by_session.get(sid)
        if counts is None:
            counts = by_session[sid] = MinuteCounts()
        return counts

    def _sku(self, sid: str, sku_id: str) -> SkuTally:
        tallies = self.skus.get(sid)
        if tallies is None:
            tallies = self.skus[sid] = {}
        tally = tallies.get(sku_id)
        if tally is None:
            if len(tallies) >= SKU_LIMIT and sku_id != OTHER_SKU:
                return self._sku(sid, OTHER_SKU)
            tally = tallies[sku_id] = SkuTally()
        return tally

    def _expire(self) -> None:
        cutoff = self.cutoff()
        assert cutoff is not None
        for minute in [m for m in self.minutes if m < cutoff]:
            del self.minutes[minute]

    # ------------------------------------------------------------------ snapshot

    def snapshot(self, ledger: Ledger, top_n: int = PRODUCTS_TOP_N) -> dict[str, Any]:
        """The screen's figures over the ledger's started sessions, JSON-ready."""
        started = {
            sid: session
            for sid, session in ledger.sessions.items()
            if session.started_ts is not None
        }
        levels: dict[str, dict[str, list[str]]] = {"rooms": {}, "merchants": {}}
        for sid in sorted(started):
            session = started[sid]
            levels["rooms"].setdefault(session.room_id or "", []).append(sid)
            levels["merchants"].setdefault(session.merchant_id or "", []).append(sid)
        everything = sorted(started)
        first = self.cutoff()
        # Viewers per minute of each session that can have been in the room in the last hour
        # (its last event is in it): presence is read once, sessions long over cost nothing.
        present: dict[str, list[int]] = {}
        if first is not None:
            for sid, session in started.items():
                if session.last_ts >= first * MINUTE_MS:
                    present[sid] = _present_by_minute(session, first, self.retained_minutes)
        return {
            "definitions": {**DEFINITIONS, "top_n": top_n, "minutes_kept": self.retained_minutes},
            "first_minute_ts": None if first is None else first * MINUTE_MS,
            "minutes": {
                "overall": self._curves(present, everything, first),
                **{
                    key: {lid: self._curves(present, sids, first) for lid, sids in ids.items()}
                    for key, ids in levels.items()
                },
            },
            "sources": {
                "overall": sources_figures(
                    chain(
                        (self.session_sources(sid, started[sid]) for sid in everything),
                        (
                            rows
                            for (key, _id), rows in self.folded_sources.items()
                            if key == "rooms"
                        ),
                    )
                ),
                **{
                    key: {
                        lid: sources_figures(
                            chain(
                                (self.session_sources(sid, started[sid]) for sid in sids),
                                [self.folded_sources.get((key, lid), {})],
                            )
                        )
                        for lid, sids in ids.items()
                    }
                    for key, ids in levels.items()
                },
            },
            "products": {
                "overall": products_figures(
                    chain(
                        (self.session_products(sid) for sid in everything),
                        self.folded_products.values(),
                    ),
                    top_n,
                ),
                "rooms": {
                    rid: products_figures(
                        chain(
                            (self.session_products(sid) for sid in sids),
                            [self.folded_products.get(rid, {})],
                        ),
                        top_n,
                    )
                    for rid, sids in levels["rooms"].items()
                },
            },
        }

    def _curves(
        self, present: dict[str, list[int]], sids: Sequence[str], first: int | None
    ) -> dict[str, list[Any]]:
        n = self.retained_minutes
        if first is None:
            return {name: [] for name in CURVES}
        rows = (
            (minute - first, sid, counts)
            for minute, by_session in self.minutes.items()
            if 0 <= minute - first < n
            for sid, counts in by_session.items()
        )
        return minute_curves(rows, sids, present, n)

    def session_sources(
        self, sid: str, session: SessionFacts, paid: dict[str, int] | None = None
    ) -> dict[str, list[int]]:
        """One session's sources: source -> [entries, viewers, buyers, GMV cents], its
        buyers' spend `paid` (user -> cents) or else from its orders."""
        out: dict[str, list[int]] = {}
        for source, count in self.source_entries.get(sid, {}).items():
            out.setdefault(source, [0, 0, 0, 0])[0] += count
        firsts = self.first_entry.get(sid) or FirstEntries()
        # Counted by the source's rank without a Python call per viewer (a page build reads
        # every viewer of each session that changed: 14% of a build at 1,000,000 events).
        for rank, viewers in firsts.sources().items():
            out.setdefault(_SOURCE_BY_RANK[rank], [0, 0, 0, 0])[1] += viewers
        if paid is None:
            paid = {}
            for order in session.orders:
                paid[order.user_id] = paid.get(order.user_id, 0) + order.amount_cents
        for user, cents in paid.items():
            first_entry = firsts.get(user)
            if first_entry is not None:
                row = out.setdefault(_entry_source(first_entry), [0, 0, 0, 0])
                row[2] += 1
                row[3] += cents
        return out

    def session_products(self, sid: str) -> dict[str, list[int]]:
        """One session's products: sku_id -> its sums, in the order of `_PRODUCT_SUMS`."""
        return {
            sku_id: [
                tally.clicks,
                len(tally.clickers),
                tally.orders,
                tally.units,
                tally.gmv_cents,
                len(tally.buyers),
                len(tally.clickers & tally.buyers),
            ]
            for sku_id, tally in self.skus.get(sid, {}).items()
        }


def sources_figures(sessions: Iterable[dict[str, list[int]]]) -> dict[str, Any]:
    """A level's sources table from its sessions' `ScreenState.session_sources`."""
    total = {source: [0, 0, 0, 0] for source in SOURCES}
    for by_source in sessions:
        for source, row in by_source.items():
            into = total.setdefault(source, [0, 0, 0, 0])
            for i, value in enumerate(row):
                into[i] += value
    return {
        source: {
            "entries": total[source][0],
            "viewers": total[source][1],
            "buyers": total[source][2],
            "conversion": _ratio(total[source][2], total[source][1]),
            "gmv_cny": total[source][3] / 100,
        }
        for source in SOURCES
    }


def products_figures(sessions: Iterable[dict[str, list[int]]], top_n: int) -> dict[str, Any]:
    """A level's products table from its sessions' `ScreenState.session_products`."""
    sums: dict[str, list[int]] = {}
    for by_sku in sessions:
        add_user_rows(sums, by_sku)
    rows = {sku: dict(zip(_PRODUCT_SUMS, values, strict=True)) for sku, values in sums.items()}
    ranked = sorted(
        (sku for sku in rows if sku != OTHER_SKU),
        key=lambda sku: (-rows[sku]["gmv_cents"], -rows[sku]["clicks"], sku),
    )
    other = dict.fromkeys(_PRODUCT_SUMS, 0)
    for sku in [*ranked[top_n:], *([OTHER_SKU] if OTHER_SKU in rows else [])]:
        for name in _PRODUCT_SUMS:
            other[name] += rows[sku][name]
    return {
        "skus": len(rows) - (OTHER_SKU in rows),
        "top": [{"sku_id": sku, **_product_figures(rows[sku])} for sku in ranked[:top_n]],
        "other": _product_figures(other),
    }


def _count_minute(counts: MinuteCounts, event: Event) -> None:
    if isinstance(event, ViewerJoined):
        counts.entries += 1
    elif isinstance(event, ProductClicked):
        counts.product_clicks += 1
    elif isinstance(event, OrderPaid):
        counts.orders += 1
        counts.gmv_cents += event.amount_cents


_PRODUCT_SUMS: Final[tuple[str, ...]] = (
    "clicks",
    "clickers",
    "orders",
    "units",
    "gmv_cents",
    "buyers",
    "clickers_ordered",
)


def _product_figures(row: dict[str, int]) -> dict[str, Any]:
    return {
        "clicks": row["clicks"],
        "clickers": row["clickers"],
        "orders": row["orders"],
        "units": row["units"],
        "gmv_cny": row["gmv_cents"] / 100,
        "buyers": row["buyers"],
        "click_to_order": _ratio(row["clickers_ordered"], row["clickers"]),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _present_by_minute(session: SessionFacts, first: int, n: int) -> list[int]:
    """Per minute `first..first+n-1`: the session's users in the room at some moment of it.

    Watch intervals as claims.md reads them (a join to the next leave; an open one closed at
    the session's end or last event; nothing past its end), the reading of
    `operator.watch_intervals`.
    """
    viewers = [0] * n
    presence = session.presence
    if isinstance(presence, FoldedPresence | SessionSummary):
        # A folded session keeps the same count as a difference array by minute
        # (`FoldedPresence.minutes`, from `timeline.presence_minutes`): sum it up.
        running = 0
        for minute, change in sorted(presence.minutes.items()):
            if minute >= first + n:
                break
            if minute >= first:
                viewers[minute - first] = change  # a change at this minute, summed below
            else:
                running += change
        for i in range(n):
            running += viewers[i]
            viewers[i] = running
        return viewers
    ended_ts = session.ended_ts
    close_ts = ended_ts if ended_ts is not None else session.last_ts
    for user in presence:
        marked: set[int] = set()
        opened: int | None = None
        for ts, _seq, is_join in sorted(presence[user]):
            if is_join:
                if opened is None:
                    opened = ts
            elif opened is not None:
                _mark(marked, opened, ts, ended_ts, first, n)
                opened = None
        if opened is not None:
            _mark(marked, opened, close_ts, ended_ts, first, n)
        for i in marked:
            viewers[i] += 1
    return viewers


def _mark(marked: set[int], start: int, end: int, ended_ts: int | None, first: int, n: int) -> None:
    if ended_ts is not None and end > ended_ts:
        end = ended_ts
    if end <= start:
        return
    low = max(start // MINUTE_MS - first, 0)
    high = min((end - 1) // MINUTE_MS - first, n - 1)
    marked.update(range(low, high + 1))


def merge_screens(screens: Sequence[ScreenState]) -> ScreenState:
    """One screen state from several with the same retention (ValueError otherwise); the
    inputs are not changed and share no mutable container with the result."""
    if not screens:
        return ScreenState()
    retained = screens[0].retained_minutes
    if any(s.retained_minutes != retained for s in screens):
        raise ValueError("screen states with different retention cannot be merged")
    merged = ScreenState(retained)
    marks = [s.watermark for s in screens if s.watermark is not None]
    merged.watermark = max(marks) if marks else None
    cutoff = merged.cutoff()
    for screen in screens:
        for minute, by_session in screen.minutes.items():
            if cutoff is not None and minute < cutoff:
                continue
            target = merged.minutes.setdefault(minute, {})
            for sid, counts in by_session.items():
                held = target.setdefault(sid, MinuteCounts())
                held.entries += counts.entries
                held.product_clicks += counts.product_clicks
                held.orders += counts.orders
                held.gmv_cents += counts.gmv_cents
        for sid, tallies in screen.skus.items():
            into = merged.skus.setdefault(sid, {})
            for sku_id, tally in tallies.items():
                into.setdefault(sku_id, SkuTally()).add(tally)
        for sid, firsts in screen.first_entry.items():
            into_firsts = merged.first_entry.get(sid)
            if into_firsts is None:
                into_firsts = merged.first_entry[sid] = FirstEntries()
            for user, entry in firsts.items():
                into_firsts.offer(user, entry)
        for sid, entries in screen.source_entries.items():
            merged.source_entries.setdefault(sid, Counter()).update(entries)
        merged.folded.update(screen.folded)
        for sid, (ended_ts, paid) in screen.held_paid.items():
            merged.held_paid[sid] = (ended_ts, dict(paid))
        for level, rows in screen.folded_sources.items():
            add_user_rows(merged.folded_sources.setdefault(level, {}), rows)
        for room, rows in screen.folded_products.items():
            add_user_rows(merged.folded_products.setdefault(room, {}), rows)
        merged.after_fold_events += screen.after_fold_events
    return merged


def minute_curves(
    rows: Iterable[tuple[int, str, MinuteCounts]],
    sids: Sequence[str],
    present: Mapping[str, list[int]],
    n: int,
) -> dict[str, list[Any]]:
    """The per-minute curves of the sessions `sids`: `rows` are (minute index, session id,
    its `MinuteCounts`) and `present` each session's viewers online by minute index."""
    entries, clicks, orders, gmv_cents = [0] * n, [0] * n, [0] * n, [0] * n
    wanted = set(sids)
    for i, sid, counts in rows:
        if sid in wanted:
            entries[i] += counts.entries
            clicks[i] += counts.product_clicks
            orders[i] += counts.orders
            gmv_cents[i] += counts.gmv_cents
    viewers = [0] * n
    for sid in sids:
        by_minute = present.get(sid)
        if by_minute is not None:
            for i, count in enumerate(by_minute):
                viewers[i] += count
    return {
        "viewers": viewers,
        "entries": entries,
        "product_clicks": clicks,
        "orders": orders,
        "gmv_cny": [cents / 100 for cents in gmv_cents],
    }
