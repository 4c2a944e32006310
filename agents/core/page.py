"""The live screen's figures rebuilt from what changed, over a worker's partitions unmerged.

`OperatorBoard.snapshot(merged, detail=False)` and `ScreenState.snapshot(merged)` of the
merged partitions cost the whole state each time: every session's viewers, presence and
products, and first the merge itself. `PageBuilder.build` gives the same two sections from
the partitions' own (ledger, board) pairs, and recomputes a session's parts only when an
event touched it since the last build (`OperatorBoard.session_changed_at`; for group joins, a
group event of its merchant at a time the session was live, from any partition's
`OperatorBoard.group_log`). What is left is bounded by what is
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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from agents.core.ledger import EventCounts, Ledger, SessionFacts, widest_refund_horizon
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.operator import DEFINITIONS as OPERATOR_DEFINITIONS
from agents.core.operator import WINDOW_MINUTES, OperatorBoard, _Parts
from agents.core.screen import (
    CURVES,
    PRODUCTS_TOP_N,
    _add_rows,
    _present_by_minute,
    minute_curves,
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
    #: This builder's number of the computation (a level's kept sum names its sessions' ones).
    serial: int
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
        #: id(board) -> its `changes` at the last build (its group events read up to there).
        self._read_up_to: dict[int, int] = {}
        #: Level -> (its ended sessions and their parts' serials, the sum of their parts).
        self._bases: dict[str, tuple[tuple[tuple[str, int], ...], _Parts]] = {}
        self._used_bases: set[str] = set()
        self._serial = 0
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

    def _level(
        self,
        key: str,
        sids: list[str],
        held: dict[str, tuple[_Kept, bool]],
        extras: dict[str, tuple[list[int], Any]],
    ) -> _Parts:
        """A level's parts: the sum of its ended sessions' kept parts (itself kept while none
        of them changes), the live sessions' added to it, then every session's refunds and
        windows (which change without the session's events: refunds, the watermark)."""
        ended = [(sid, held[sid][0].serial) for sid in sids if held[sid][1]]
        signature = tuple(ended)
        base = self._bases.get(key)
        if base is None or base[0] != signature:
            summed = _Parts()
            for sid, _serial in ended:
                summed.add(held[sid][0].parts)
            base = self._bases[key] = (signature, summed)
        self._used_bases.add(key)
        total = _Parts()
        total.add(base[1])  # into an empty one: the Counter and lists are copied at C speed
        for sid in sids:
            entry, has_ended = held[sid]
            if not has_ended:
                total.add(entry.parts)
            session_refunds, windows = extras[sid]
            total.refunds += len(session_refunds)
            total.refunded_cents += sum(session_refunds)
            if windows is not None:
                for name, window in windows.items():
                    total.windows[name].add(window)
        return total

    def _forget_group_changes(self, states: Sequence[tuple[Ledger, OperatorBoard]]) -> None:
        """Drop the kept parts of the sessions a group event since the last build may change:
        of its merchant, live at its ts (`_session_parts` counts a group join then)."""
        changed: list[tuple[str, int]] = []
        everything = False
        for _ledger, board in states:
            read = self._read_up_to.get(id(board))
            log = board.group_log
            if read is None:
                pass  # a board not built before: all its sessions are computed anyway
            elif log and log[0][0] > read + 1 and len(log) == log.maxlen:
                everything = True  # more group events than the log keeps
            else:
                for n, merchant_id, ts in reversed(log):
                    if n <= read:
                        break
                    changed.append((merchant_id, ts))
        self._read_up_to = {id(board): board.changes for _ledger, board in states}
        if not changed and not everything:
            return
        by_merchant: dict[str, list[int]] = {}
        for merchant_id, ts in changed:
            by_merchant.setdefault(merchant_id, []).append(ts)
        for ledger, board in states:
            kept = self._kept[id(board)][1]
            for sid in list(kept):
                session = ledger.sessions.get(sid)
                if session is None or everything:
                    kept.pop(sid)
                    continue
                times = by_merchant.get(session.merchant_id or "")
                if times is not None and any(_live_at(session, ts) for ts in times):
                    kept.pop(sid)

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
            widest_refund_horizon(ledgers),
        )
        self._kept = {
            id(board): self._kept.get(id(board), (board, {})) for board in boards
        }  # boards no longer held are forgotten
        self._forget_group_changes(states)
        self.recomputed = 0
        #: Per session: its kept parts, whether it has ended, its refunds and windows.
        held: dict[str, tuple[_Kept, bool]] = {}
        extras: dict[str, tuple[list[int], Any]] = {}
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
                entry = kept.get(sid)
                changed_at = board.session_changed_at.get(sid, 0)
                if entry is None or entry.changed_at != changed_at:
                    self.recomputed += 1
                    self._serial += 1
                    entry = kept[sid] = _Kept(
                        changed_at,
                        self._serial,
                        board._session_parts(group_events, sid, session, []),
                        board.screen.session_sources(sid, session),
                        board.screen.session_products(sid),
                    )
                held[sid] = (entry, session.ended_ts is not None)
                extras[sid] = (refunds.get(sid, []), windows.get(sid))
                room_id = session.room_id or ""
                levels_of[sid] = (room_id, merchant_id)
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
        overall = self._level("overall", sorted(held), held, extras)
        rooms: dict[str, _Parts] = {}
        merchants: dict[str, _Parts] = {}
        by_room: dict[str, list[str]] = {}
        by_merchant: dict[str, list[str]] = {}
        for sid in sorted(held):
            room_id, merchant_id = levels_of[sid]
            by_room.setdefault(room_id, []).append(sid)
            by_merchant.setdefault(merchant_id, []).append(sid)
        for room_id, sids in by_room.items():
            rooms[room_id] = self._level(f"room:{room_id}", sids, held, extras)
        for merchant_id, sids in by_merchant.items():
            merchants[merchant_id] = self._level(f"merchant:{merchant_id}", sids, held, extras)
        self._bases = {key: self._bases[key] for key in self._used_bases}
        self._used_bases = set()
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
        folded_sources: dict[tuple[str, str], dict[str, list[int]]] = {}
        folded_products: dict[str, dict[str, list[int]]] = {}
        for board in boards:  # the sessions folded (agents/core/screen.py), per partition
            for level, rows in board.screen.folded_sources.items():
                _add_rows(folded_sources.setdefault(level, {}), rows)
            for room, rows in board.screen.folded_products.items():
                _add_rows(folded_products.setdefault(room, {}), rows)
        screen = _screen(
            levels_of,
            sources,
            products,
            (folded_sources, folded_products),
            present,
            minute_rows,
            first_minute,
            retained,
        )
        return {"operator": operator, "screen": screen}


def _live_at(session: SessionFacts, ts: int) -> bool:
    started_ts = session.started_ts
    return (
        started_ts is not None
        and ts >= started_ts
        and (session.ended_ts is None or ts <= session.ended_ts)
    )


def _screen(
    levels_of: dict[str, tuple[str, str]],
    sources: dict[str, dict[str, list[int]]],
    products: dict[str, dict[str, list[int]]],
    folded: tuple[dict[tuple[str, str], dict[str, list[int]]], dict[str, dict[str, list[int]]]],
    present: dict[str, list[int]],
    minute_rows: list[tuple[int, str, Any]],
    first_minute: int | None,
    retained: int,
) -> dict[str, Any]:
    """`ScreenState.snapshot`'s sections from the sessions' parts and the folded totals."""
    folded_sources, folded_products = folded
    everything = sorted(levels_of)
    groups: dict[str, dict[str, list[str]]] = {"rooms": {}, "merchants": {}}
    for sid in everything:
        room_id, merchant_id = levels_of[sid]
        groups["rooms"].setdefault(room_id, []).append(sid)
        groups["merchants"].setdefault(merchant_id, []).append(sid)

    def curves(sids: list[str]) -> dict[str, list[Any]]:
        if first_minute is None:
            return {name: [] for name in CURVES}
        return minute_curves(minute_rows, sids, present, retained)

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
            "overall": sources_figures(
                chain(
                    (sources[sid] for sid in everything),
                    (rows for level, rows in folded_sources.items() if level[0] == "rooms"),
                )
            ),
            **{
                key: {
                    lid: sources_figures(
                        chain((sources[sid] for sid in sids), [folded_sources.get((key, lid), {})])
                    )
                    for lid, sids in ids.items()
                }
                for key, ids in groups.items()
            },
        },
        "products": {
            "overall": products_figures(
                chain((products[sid] for sid in everything), folded_products.values()),
                PRODUCTS_TOP_N,
            ),
            "rooms": {
                rid: products_figures(
                    chain((products[sid] for sid in sids), [folded_products.get(rid, {})]),
                    PRODUCTS_TOP_N,
                )
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
