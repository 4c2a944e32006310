"""Where the core's time and state go at two points of a long stream, side by side.

Feeds the soak's stream (`bench.soak`, its `--stream` file) through decode -> `Ledger.apply`
-> `OperatorBoard.observe` (the session fold on, as `bench.soak --fold-sessions`) and, at each
`--at` day of event time, keeps the state (`persist.dump_state`) and the records of the next
`--span` days. Then, in `--rounds` interleaved rounds (A, B, A, B, ...: the shared machine's
load falls on both alike), restores each state and times its records in CPU seconds
(`time.process_time`), the garbage collector's passes by generation timed apart
(`gc.callbacks`); then `--profile-rounds` interleaved cProfile passes of each, whose per-record
cumulative time per function (the smallest of its passes) is printed side by side. Also the
state's parts' pickled sizes at each point (zlib level 1, as the snapshot) and their sizes in
memory (`sys.getsizeof` over what each reaches, as RSS holds them): what grows between them.
The state is the one `bench.soak --fold-sessions` keeps (closed months folded, claims by
period attached; `--no-claim-periods` as there).

    python -m bench.soak_profile --stream /tmp/livepulse-soak-150d-x12.0-s1.jsonl \
        --at 20 --at 140 --span 5 --rounds 5 --out bench/soak-profile-150d-x12.json

A state restored from its snapshot is laid out afresh in memory (no fragmentation of a heap
that has lived 140 days), so each window's CPU time as measured in the feeding run itself is
printed too (one measurement each, not interleaved).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import pickle
import pstats
import statistics
import sys
import time
import types
import zlib
from pathlib import Path
from typing import Any

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from agents.core.ledger import SessionSummary
from agents.core.periods import PeriodSettings, attach
from agents.core.persist import dump_state, load_state
from bench.proc import machine
from schemas import Rejection, decode

DAY_MS = 86_400_000


def feed(ledger: Ledger, board: OperatorBoard, records: list[bytes]) -> None:
    """The soak's per-record path (`bench.soak.soak`)."""
    for record in records:
        ingest(record, ledger, board)


#: The claims by period attached to every ledger fed (`main`: off with --no-claim-periods).
_PERIODS: list[PeriodSettings] = [PeriodSettings()]


def _restore(blob: bytes) -> tuple[Ledger, OperatorBoard]:
    """A state kept by `main`, with its claims by period attached again (not in the state)."""
    ledger, board = load_state(blob)
    for settings in _PERIODS:
        attach(ledger, settings)
    return ledger, board


def packed_bytes(value: object) -> int:
    """`value`'s size as the snapshot packs it: its pickle (protocol 5), zlib level 1."""
    return len(zlib.compress(pickle.dumps(value, protocol=5), 1))


def packed_kb(value: object) -> float:
    """`packed_bytes` in kB (the state benches' part sizes)."""
    return packed_bytes(value) / 1e3


def part_sizes(ledger: Ledger, board: OperatorBoard) -> dict[str, float]:
    """Each part of the state's pickled size in kB (zlib level 1): the ledger's and the
    board's attributes, the board's screen's slots, and the sessions split into summarized,
    held ones (ended, and with no end yet: live or never to end), and the screen's and
    board's per-session parts of the sessions with no end."""
    sizes: dict[str, float] = {}
    for name, value in vars(ledger).items():
        if name != "sessions":
            sizes[f"ledger.{name}"] = packed_kb(value)
    summarized = {
        s: f for s, f in ledger.sessions.items() if isinstance(f.presence, SessionSummary)
    }
    ended = {s: f for s, f in ledger.sessions.items() if s not in summarized and f.ended_ts}
    open_ = {s: f for s, f in ledger.sessions.items() if f.ended_ts is None}
    sizes["ledger.sessions (summarized)"] = packed_kb(summarized)
    sizes["ledger.sessions (held, ended)"] = packed_kb(ended)
    # Live, or never to end (a `session_ended` lost: the simulator's `never_ended_prob`).
    sizes["ledger.sessions (held, no end)"] = packed_kb(open_)
    sizes["board.screen.first_entry (sessions with no end)"] = packed_kb(
        {s: v for s, v in board.screen.first_entry.items() if s in open_}
    )
    sizes["board.product_clickers (sessions with no end)"] = packed_kb(
        {s: v for s, v in board.product_clickers.items() if s in open_}
    )
    for name, value in board.__getstate__().items():
        if name != "screen":
            sizes[f"board.{name}"] = packed_kb(value)
    screen = board.screen
    for name in type(screen).__slots__:
        sizes[f"board.screen.{name}"] = packed_kb(getattr(screen, name))
    # The order fold by slot (its buyer rows as a source, `months`, and at their owner,
    # `rows_in` and `users`, apart from the rest: issue 17, session 16).
    fold = ledger.order_fold
    for name in type(fold).__slots__:
        sizes[f"ledger.order_fold.{name}"] = packed_kb(getattr(fold, name))
    return sizes


def _keyed_rows(value: object) -> int:
    """The entries of the dicts within `value` (per-user, per-session or per-key rows): what
    a part holds that grows with the users and sessions of its period."""
    if isinstance(value, dict):
        return len(value) + sum(_keyed_rows(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_keyed_rows(item) for item in value if isinstance(item, dict | list | tuple))
    return 0


def frozen_part_sizes(ledger: Ledger) -> dict[str, dict[str, float]]:
    """`Ledger.frozen_parts` by period kind and claim: the periods frozen, each claim's parts'
    pickled kB (zlib level 1, each part alone, summed over the periods), the largest one
    period's, and their keyed rows (`_keyed_rows`) summed: what the frozen parts cost."""
    out: dict[str, dict[str, float]] = {}
    for (kind, _key), parts in ledger.frozen_parts.items():
        out.setdefault(kind, {})["periods"] = out.get(kind, {}).get("periods", 0) + 1
        for claim, part in parts.items():
            size = packed_kb(part)
            row = out.setdefault(f"{kind}.{claim}", {"kb": 0.0, "max_kb": 0.0, "rows": 0})
            row["kb"] += size
            row["max_kb"] = max(row["max_kb"], size)
            row["rows"] += _keyed_rows(part)
    return out


def _deep_bytes(root: object, seen: set[int]) -> int:
    """`sys.getsizeof` summed over the objects reachable from `root` (`gc.get_referents`)
    not in `seen` (which it extends), classes, modules and functions left out."""
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def part_memory(ledger: Ledger, board: OperatorBoard) -> dict[str, float]:
    """Each part of the state's size in memory in kB (`sys.getsizeof` over what it reaches):
    what RSS holds of it, where the pickled sizes (`part_sizes`) are what a snapshot holds.
    An object reached from several parts (a user id string in several per-user tables) is
    counted once, in the first part in this order: the ledger's attributes as `vars` lists
    them, the sessions split as in `part_sizes`, then the board's; `total` is the sum."""
    seen: set[int] = set()
    sizes: dict[str, float] = {}
    summarized = {
        s: f for s, f in ledger.sessions.items() if isinstance(f.presence, SessionSummary)
    }
    held = {s: f for s, f in ledger.sessions.items() if s not in summarized}
    sizes["ledger.sessions (summarized)"] = _deep_bytes(summarized, seen) / 1e3
    sizes["ledger.sessions (held)"] = _deep_bytes(held, seen) / 1e3
    for name, value in vars(ledger).items():
        if name not in ("sessions", "period_gate", "membership_from", "refunds_from"):
            sizes[f"ledger.{name}"] = _deep_bytes(value, seen) / 1e3
    for name, value in board.__getstate__().items():
        sizes[f"board.{name}"] = _deep_bytes(value, seen) / 1e3
    sizes["total"] = sum(sizes.values())
    return sizes


class _GcTimer:
    """Seconds spent in the collector's passes by generation, while installed."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.passes = [0, 0, 0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.process_time()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.process_time() - self._began
            self.passes[generation] += 1


def timed(blob: bytes, records: list[bytes]) -> dict[str, Any]:
    """CPU seconds to feed `records` into the state `blob` holds, and the collector's share."""
    ledger, board = _restore(blob)
    ledger.fold_sessions = True  # as fed (the flag is state; said again for clarity)
    gc.collect()
    timer = _GcTimer()
    gc.callbacks.append(timer)
    try:
        began = time.process_time()
        feed(ledger, board, records)
        cpu_s = time.process_time() - began
    finally:
        gc.callbacks.remove(timer)
    return {
        "cpu_us_per_record": cpu_s / len(records) * 1e6,
        "gc_share": [s / cpu_s for s in timer.seconds],
        "gc_passes": timer.passes,
        "tracked_objects": len(gc.get_objects()),
    }


def profiled(blob: bytes, records: list[bytes]) -> dict[str, tuple[float, float]]:
    """Per function ("file:line name"): calls per record and cumulative us per record."""
    ledger, board = _restore(blob)
    profile = cProfile.Profile()
    profile.enable()
    feed(ledger, board, records)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    out: dict[str, tuple[float, float]] = {}
    for (path, line, name), (_cc, calls, _tt, cumulative, _callers) in stats.items():
        key = f"{Path(path).name}:{line} {name}"
        out[key] = (calls / len(records), cumulative / len(records) * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stream", type=Path, required=True, help="a bench.soak stream file")
    parser.add_argument("--at", type=float, action="append", help="event day (repeatable)")
    parser.add_argument("--span", type=float, default=5.0, help="days of records timed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window-days", type=float, default=7.0)
    parser.add_argument("--profile-rounds", type=int, default=3, help="cProfile passes each")
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile")
    parser.add_argument("--out", type=Path, help="the figures as JSON")
    parser.add_argument(
        "--board-horizon-days",
        type=float,
        default=90.0,
        help="the operator levels' minutes kept (LIVEPULSE_BOARD_HORIZON_DAYS; 0: every one)",
    )
    parser.add_argument(
        "--retire-summaries",
        action="store_true",
        help="retire summaries past the board horizon (Ledger.retire_summaries)",
    )
    parser.add_argument(
        "--days-kept",
        type=int,
        default=PeriodSettings().days_kept,
        help="CST days kept frozen (LIVEPULSE_CLAIM_DAYS_KEPT)",
    )
    parser.add_argument(
        "--months-kept",
        type=int,
        default=PeriodSettings().months_kept,
        help="CST months kept frozen (LIVEPULSE_CLAIM_MONTHS_KEPT)",
    )
    parser.add_argument(
        "--no-claim-periods",
        action="store_true",
        help="no claims by period (as bench.soak's flag): summaries not held for their month",
    )
    parser.add_argument(
        "--user-horizon-days",
        type=float,
        default=180.0,
        help="the ledger's user horizon (LIVEPULSE_USER_HORIZON_DAYS; 0: users kept for ever)",
    )
    args = parser.parse_args()
    points = sorted(args.at or [20.0, 140.0])

    # The state `bench.soak --fold-sessions` keeps: one ledger, so closed months fold too, and
    # the claims by period attached as a worker's partitions have them (a summary waits for
    # its month's freeze).
    ledger = Ledger(
        round(args.window_days * DAY_MS) or None,
        refund_horizon_ms=90 * DAY_MS,
        fold_sessions=True,
        fold_months=True,
        user_horizon_ms=round(args.user_horizon_days * DAY_MS) or None,
        board_horizon_ms=round(args.board_horizon_days * DAY_MS) or None,
    )
    ledger.retire_summaries = args.retire_summaries  # state: restored with it
    _PERIODS[:] = [PeriodSettings(days_kept=args.days_kept, months_kept=args.months_kept)]
    if args.no_claim_periods:
        _PERIODS.clear()
    for settings in _PERIODS:
        attach(ledger, settings)
    board = OperatorBoard()
    first_ts: int | None = None
    states: dict[float, bytes] = {}
    windows: dict[float, list[bytes]] = {point: [] for point in points}
    in_run: dict[float, float] = dict.fromkeys(points, 0.0)
    sizes: dict[float, dict[str, float]] = {}
    memory: dict[float, dict[str, float]] = {}
    counts: dict[float, dict[str, int]] = {}
    frozen_sizes: dict[float, dict[str, dict[str, float]]] = {}
    with args.stream.open("rb") as handle:
        while batch := [line.rstrip(b"\n") for line in itertools.islice(handle, 100)]:
            if first_ts is None:  # the first event's ts, as bench.soak's day 0
                decoded = next(
                    (d for d in map(decode, batch) if not isinstance(d, Rejection)), None
                )
                first_ts = None if decoded is None else decoded.ts
            day = (
                None
                if first_ts is None or ledger.max_ts is None
                else (ledger.max_ts - first_ts) / DAY_MS
            )
            inside = [p for p in points if day is not None and p <= day < p + args.span]
            for point in points:
                if day is not None and day >= point and point not in states:
                    states[point] = dump_state(ledger, board)
                    sizes[point] = part_sizes(ledger, board)
                    memory[point] = part_memory(ledger, board)
                    counts[point] = {
                        "summaries_held": sum(
                            isinstance(f.presence, SessionSummary) for f in ledger.sessions.values()
                        ),
                        "summaries_retired": ledger.retired_sessions,
                    }
                    frozen_sizes[point] = frozen_part_sizes(ledger)
            began = time.process_time()
            feed(ledger, board, batch)
            for point in inside:
                in_run[point] += time.process_time() - began
                windows[point].extend(batch)
            if day is not None and day >= points[-1] + args.span:
                break
    missing = [p for p in points if p not in states or not windows[p]]
    if missing:
        parser.error(f"the stream ends before day(s) {missing} + --span")

    runs: dict[float, list[dict[str, Any]]] = {p: [] for p in points}
    for _ in range(args.rounds):
        for point in points:
            runs[point].append(timed(states[point], windows[point]))
    # cProfile passes interleaved too, each function's figure the smallest of its passes (the
    # least disturbed by the machine's other load).
    profiles: dict[float, dict[str, tuple[float, float]]] = {p: {} for p in points}
    for _ in range(args.profile_rounds):
        for point in points:
            for key, (calls, cumulative_us) in profiled(states[point], windows[point]).items():
                kept = profiles[point].get(key)
                if kept is None or cumulative_us < kept[1]:
                    profiles[point][key] = (calls, cumulative_us)

    result: dict[str, Any] = {"machine": machine(), "stream": str(args.stream), "points": {}}
    for point in points:
        cpu = [r["cpu_us_per_record"] for r in runs[point]]
        result["points"][str(point)] = {
            "records": len(windows[point]),
            "snapshot_mb": len(states[point]) / 1e6,
            "cpu_us_per_record": cpu,
            "median_cpu_us_per_record": statistics.median(cpu),
            "in_run_cpu_us_per_record": in_run[point] / len(windows[point]) * 1e6,
            "gc_share_median": [
                statistics.median(r["gc_share"][g] for r in runs[point]) for g in range(3)
            ],
            "gc_passes": runs[point][0]["gc_passes"],
            "tracked_objects": runs[point][0]["tracked_objects"],
            "part_kb": sizes[point],
            "part_memory_kb": memory[point],
            "summaries": counts[point],
            "frozen_parts_by_claim": frozen_sizes[point],
        }
    first, last = points[0], points[-1]
    a, b = profiles[first], profiles[last]
    ranked = sorted(set(a) | set(b), key=lambda k: -max(a.get(k, (0, 0))[1], b.get(k, (0, 0))[1]))
    result["profile"] = {key: {"a": a.get(key), "b": b.get(key)} for key in ranked[: args.top]}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"| figure | day {first:g} | day {last:g} | ratio |")  # noqa: T201
    print("|---|---|---|---|")  # noqa: T201
    pa, pb = result["points"][str(first)], result["points"][str(last)]
    for label, key in (
        ("CPU us per record (median of rounds)", "median_cpu_us_per_record"),
        ("CPU us per record (in the feeding run)", "in_run_cpu_us_per_record"),
        ("records timed", "records"),
        ("tracked objects", "tracked_objects"),
        ("snapshot MB", "snapshot_mb"),
    ):
        print(f"| {label} | {pa[key]:,.2f} | {pb[key]:,.2f} | {pb[key] / pa[key]:.3f} |")  # noqa: T201
    for key in ("summaries_held", "summaries_retired"):
        held_a, held_b = pa["summaries"][key], pb["summaries"][key]
        print(f"| {key.replace('_', ' ')} | {held_a:,} | {held_b:,} | |")  # noqa: T201
    for generation in range(3):
        print(  # noqa: T201
            f"| GC gen {generation} share of CPU | {pa['gc_share_median'][generation]:.1%} | "
            f"{pb['gc_share_median'][generation]:.1%} | |"
        )
    print(f"\nper-function cumulative us per record (calls per record), day {first:g} -> {last:g}:")  # noqa: T201
    for key in ranked[: args.top]:
        ca, cb = a.get(key, (0.0, 0.0)), b.get(key, (0.0, 0.0))
        print(f"  {ca[1]:7.2f} ({ca[0]:.3f}) -> {cb[1]:7.2f} ({cb[0]:.3f})  {key}")  # noqa: T201
    print(f"\nstate parts, kB (zlib 1), day {first:g} -> {last:g}, growing first:")  # noqa: T201
    sa, sb = pa["part_kb"], pb["part_kb"]
    for key in sorted(sb, key=lambda k: -(sb[k] - sa.get(k, 0.0))):
        if sb[key] >= 1 or sa.get(key, 0.0) >= 1:
            print(f"  {sa.get(key, 0.0):8.1f} -> {sb[key]:8.1f}  {key}")  # noqa: T201
    print(f"\nstate parts in memory, kB (getsizeof), day {first:g} -> {last:g}, growing first:")  # noqa: T201
    ma, mb = pa["part_memory_kb"], pb["part_memory_kb"]
    for key in sorted(mb, key=lambda k: -(mb[k] - ma.get(k, 0.0))):
        if mb[key] >= 10 or ma.get(key, 0.0) >= 10:
            print(f"  {ma.get(key, 0.0):8.0f} -> {mb[key]:8.0f}  {key}")  # noqa: T201
    fa, fb = pa["frozen_parts_by_claim"], pb["frozen_parts_by_claim"]
    print(  # noqa: T201
        f"\nfrozen parts by kind and claim, day {first:g} -> {last:g}: periods; "
        "kB, largest one kB, keyed rows"
    )
    for key in sorted(fb, key=lambda k: -fb[k].get("kb", 0.0)):
        if "kb" not in fb[key]:
            print(f"  {fa.get(key, {}).get('periods', 0):g} -> {fb[key]['periods']:g}  {key}")  # noqa: T201
            continue
        ra = fa.get(key, {"kb": 0.0, "max_kb": 0.0, "rows": 0})
        rb = fb[key]
        print(  # noqa: T201
            f"  {ra['kb']:8.1f} -> {rb['kb']:8.1f} kB; {ra['max_kb']:6.1f} -> {rb['max_kb']:6.1f}"
            f" kB; {ra['rows']:7,} -> {rb['rows']:7,} rows  {key}"
        )


if __name__ == "__main__":
    main()
