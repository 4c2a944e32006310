"""The live screen's figures rebuilt from what changed, over a worker's partitions unmerged.

`OperatorBoard.snapshot(merged, detail=False)` and `ScreenState.snapshot(merged)` of the
merged partitions cost the whole state each time: every session's viewers, presence and
products, and first the merge itself. `PageBuilder.build` gives the same two sections from
the partitions' own (ledger, board) pairs, and recomputes a session's parts only when an
event touched it since the last build (`OperatorBoard.session_changed_at`; for group joins,
any partition's `merchant_changed_at` of its merchant). What is left is bounded by what is
live or cheap: the level sums, the windows' minute buckets (20 minutes), the curves' minute
buckets (an hour), viewers per minute of the sessions of the last hour, and the refunds
(matched to their orders over every partition, as the merged ledger does).

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

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from agents.core.ledger import EventCounts, Ledger, SessionFacts
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.operator import DEFINITIONS as OPERATOR_DEFINITIONS
from agents.core.operator import WINDOW_MINUTES, OperatorBoard, _Parts
from agents.core.screen import (
    CURVES,
    PRODUCTS_TOP_N,
    _present_by_minute,
    products_figures,
    sources_figures,
)
from agents.core.screen import (
    DEFINITIONS as SCREEN_DEFINITIONS,
)
from agents.core.windows import MINUTE_MS


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


@dataclass(slots=True)
class _Kept:
    """A session's parts as of its last change (refunds and windows are added per build)."""

    changed_at: int
    merchant_changed_at: tuple[int, ...]
    parts: _Parts
    sources: dict[str, list[int]]
    products: dict[str, list[int]]
    #: (first minute, viewers per minute from it) of the curves, when last asked for.
    present: tuple[int, list[int]] | None = None


class PageBuilder:
    """The live screen's `operator` and `screen` sections, kept per session between builds.

    One builder per worker; `build` may be given a different set of partitions each time
    (a rebalance): a partition's board it has not seen is computed whole.
    """

    def __init__(self) -> None:
        #: id(board) -> (the board, its sessions' kept parts).
        self._kept: dict[int, tuple[OperatorBoard, dict[str, _Kept]]] = {}
        #: Sessions whose parts the last build computed (the rest were kept): for tests and
        #: the benchmark.
        self.recomputed = 0

    def build(self, states: Sequence[tuple[Ledger, OperatorBoard]]) -> dict[str, Any]:
        """{"events", "operator", "screen"}: the counts of every partition, and what
        `board.snapshot(ledger, detail=False)` and `board.screen.snapshot(ledger)` of the
        merged partitions give."""
        events = _counts([ledger for ledger, _board in states])
        seen: set[str] = set()
        total = 0
        for ledger, _board in states:
            total += len(ledger.sessions)
            seen.update(ledger.sessions)
        if not states or len(seen) != total:  # a session in several partitions: merge them
            self._kept.clear()
            ledger = merge_ledgers([s[0] for s in states])
            board = merge_boards([s[1] for s in states])
            return {
                "events": events,
                "operator": board.snapshot(ledger, detail=False),
                "screen": board.screen.snapshot(ledger),
            }
        return {"events": events, **self._incremental(states)}

    def _incremental(self, states: Sequence[tuple[Ledger, OperatorBoard]]) -> dict[str, Any]:
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
        refunds = OperatorBoard._refunds_by_session(
            chain.from_iterable(ledger.orders for ledger in ledgers),
            chain.from_iterable(ledger.refunds for ledger in ledgers),
            started_all,
        )
        self._kept = {
            id(board): self._kept.get(id(board), (board, {})) for board in boards
        }  # boards no longer held are forgotten
        self.recomputed = 0
        overall = _Parts()
        rooms: dict[str, _Parts] = {}
        merchants: dict[str, _Parts] = {}
        levels_of: dict[str, tuple[str, str]] = {}
        sources: dict[str, dict[str, list[int]]] = {}
        products: dict[str, dict[str, list[int]]] = {}
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
            for sid in sorted(started):
                session = started[sid]
                merchant_id = session.merchant_id or ""
                stamps = tuple(b.merchant_changed_at.get(merchant_id, 0) for b in boards)
                entry = kept.get(sid)
                changed_at = board.session_changed_at.get(sid, 0)
                if (
                    entry is None
                    or entry.changed_at != changed_at
                    or entry.merchant_changed_at != stamps
                ):
                    self.recomputed += 1
                    entry = kept[sid] = _Kept(
                        changed_at,
                        stamps,
                        board._session_parts(group_events, sid, session, []),
                        board.screen.session_sources(sid, session),
                        board.screen.session_products(sid),
                    )
                session_refunds = refunds.get(sid, [])
                parts = dataclasses.replace(
                    entry.parts,
                    refunds=len(session_refunds),
                    refunded_cents=sum(session_refunds),
                )
                if sid in windows:
                    parts.windows = windows[sid]
                room_id = session.room_id or ""
                levels_of[sid] = (room_id, merchant_id)
                rooms.setdefault(room_id, _Parts()).add(parts)
                merchants.setdefault(merchant_id, _Parts()).add(parts)
                overall.add(parts)
                sources[sid] = entry.sources
                products[sid] = entry.products
                if first_minute is not None and session.last_ts >= first_minute * MINUTE_MS:
                    if entry.present is None or entry.present[0] != first_minute:
                        entry.present = (
                            first_minute,
                            _present_by_minute(session, first_minute, retained),
                        )
                    present[sid] = entry.present[1]
            if first_minute is not None:
                for minute, by_session in board.screen.minutes.items():
                    if first_minute <= minute < first_minute + retained:
                        for sid, counts in by_session.items():
                            if sid in started:
                                minute_rows.append((minute - first_minute, sid, counts))
        figures = first_board._figures
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
            "overall": figures(overall),
            "merchants": {mid: figures(p) for mid, p in sorted(merchants.items())},
            "rooms": {rid: figures(p) for rid, p in sorted(rooms.items())},
        }
        screen = _screen(levels_of, sources, products, present, minute_rows, first_minute, retained)
        return {"operator": operator, "screen": screen}


def _screen(
    levels_of: dict[str, tuple[str, str]],
    sources: dict[str, dict[str, list[int]]],
    products: dict[str, dict[str, list[int]]],
    present: dict[str, list[int]],
    minute_rows: list[tuple[int, str, Any]],
    first_minute: int | None,
    retained: int,
) -> dict[str, Any]:
    """`ScreenState.snapshot`'s sections from the sessions' parts."""
    everything = sorted(levels_of)
    groups: dict[str, dict[str, list[str]]] = {"rooms": {}, "merchants": {}}
    for sid in everything:
        room_id, merchant_id = levels_of[sid]
        groups["rooms"].setdefault(room_id, []).append(sid)
        groups["merchants"].setdefault(merchant_id, []).append(sid)

    def curves(sids: list[str]) -> dict[str, list[Any]]:
        if first_minute is None:
            return {name: [] for name in CURVES}
        wanted = set(sids)
        entries, clicks, orders, gmv_cents = (
            [0] * retained,
            [0] * retained,
            [0] * retained,
            [0] * retained,
        )
        for i, sid, counts in minute_rows:
            if sid in wanted:
                entries[i] += counts.entries
                clicks[i] += counts.product_clicks
                orders[i] += counts.orders
                gmv_cents[i] += counts.gmv_cents
        viewers = [0] * retained
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

    return {
        "definitions": {
            **SCREEN_DEFINITIONS,
            "top_n": PRODUCTS_TOP_N,
            "minutes_kept": retained,
        },
        "first_minute_ts": None if first_minute is None else first_minute * MINUTE_MS,
        "minutes": {
            "overall": curves(everything),
            **{
                key: {lid: curves(sids) for lid, sids in ids.items()} for key, ids in groups.items()
            },
        },
        "sources": {
            "overall": sources_figures(sources[sid] for sid in everything),
            **{
                key: {
                    lid: sources_figures(sources[sid] for sid in sids) for lid, sids in ids.items()
                }
                for key, ids in groups.items()
            },
        },
        "products": {
            "overall": products_figures((products[sid] for sid in everything), PRODUCTS_TOP_N),
            "rooms": {
                rid: products_figures((products[sid] for sid in sids), PRODUCTS_TOP_N)
                for rid, sids in groups["rooms"].items()
            },
        },
    }


def _counts(ledgers: Sequence[Ledger]) -> dict[str, int]:
    total = EventCounts()
    for ledger in ledgers:
        total.valid += ledger.counts.valid
        total.rejected += ledger.counts.rejected
        total.duplicates += ledger.counts.duplicates
    return total.as_dict()
