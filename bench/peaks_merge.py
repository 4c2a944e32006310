"""A soak stream over partitions with a short board horizon, merged: which levels' merged peaks
are bounded (their peak and ceiling), and the merged peaks against one ledger keeping every
minute (docs/design.md, "The board's concurrency by minute").

    python -m bench.peaks_merge --stream /tmp/s11-board-soak-240d-x4.jsonl [--runs-kept N]
        [--runs-per-day K --retire-after-days D] [--exchange [--sample-days S]]

`--runs-per-day`: what a time rule would give instead of the count (session 16, issue 17): each
partition's settled runs older than `--retire-after-days` before its settled minutes are cut to
the K of the largest counts of each CST day (the others joined into the gaps), as a curve
keeping a per-day summary would hold them, before the merge.

`--exchange` (session 20): the partitions are fed in chunks, each one's settled runs taken
after every chunk and delivered to their level's owner partition (`Ledger.take_board_runs`,
as a worker's month-rows topic carries them; announcements to every partition), and the
board's state (each partition's curves and what it holds as an owner, pickled and zlib'd as
the snapshot packs them) is sampled every `--sample-days` of event time; without it the same
samples are taken of the partitions fed the same way with nothing taken.
"""

from __future__ import annotations

import argparse
import json
import time
from array import array
from pathlib import Path

import orjson
from aiokafka.partitioner import murmur2

from agents.core import Ledger, OperatorBoard, build_report, concurrency
from agents.core.ingest import ingest_decoded
from agents.core.ledger import BoardRuns
from agents.core.merge import merge_boards, merge_ledgers
from bench.soak_profile import packed_bytes
from schemas import TOPIC_BY_TYPE, Event, Rejection, decode, record_key
from streams.runtime.monthrows import board_owner, deliver

DAY_MS = 86_400_000
_DAY_MINUTES = 24 * 60
_CST_OFFSET_MINUTES = 8 * 60


def keep_per_day(curve: concurrency.LevelCurve, retire_before: int, per_day: int) -> None:
    """Cut `curve`'s settled runs ending at or before minute `retire_before` to the `per_day`
    of the largest counts (the earliest of equal ones) of each CST day of their first minute,
    a dropped run's count and gaps joined into the gap it leaves (`concurrency.keep_runs`, as
    the curve's own cut to its largest runs)."""
    runs = curve._run_list()
    gaps = list(curve.gaps) or [0] * (len(runs) + 1)
    by_day: dict[int, list[int]] = {}
    keep: set[int] = set()
    for i, (_count, first, end) in enumerate(runs):
        if end > retire_before:
            keep.add(i)
        else:
            by_day.setdefault((first + _CST_OFFSET_MINUTES) // _DAY_MINUTES, []).append(i)
    for indices in by_day.values():
        keep.update(sorted(indices, key=lambda i: -runs[i][0])[:per_day])
    out_runs, out_gaps = concurrency.keep_runs(runs, gaps, keep)
    curve.runs = array("q", [value for run in out_runs for value in run])
    curve.gaps = array("q", out_gaps)
    curve.dropped = max(out_gaps)


def _fed(
    decoded: list[Event | Rejection],
    window_days: int,
    horizon_days: int | None,
    groups: Ledger | None = None,
) -> tuple[Ledger, OperatorBoard]:
    ledger = Ledger(
        window_days * DAY_MS,
        fold_sessions=True,
        board_horizon_ms=None if horizon_days is None else horizon_days * DAY_MS,
    )
    ledger.membership_from = groups
    board = OperatorBoard()
    for event in decoded:
        ingest_decoded(event, ledger, board)
    return ledger, board


#: What a partition's board curves state is, as the snapshot pickles it (its own curves, and
#: as an owner: the runs held and the folded peaks).
BOARD_PARTS = ("board_curves", "board_runs_in", "board_folded", "board_settled_by")


def board_bytes(ledger: Ledger) -> int:
    """The board curves' state of `ledger` as the snapshot packs it (`BOARD_PARTS`)."""
    return packed_bytes({name: getattr(ledger, name) for name in BOARD_PARTS})


def _fed_in_chunks(
    parts: list[list[Event | Rejection]],
    window_days: int,
    horizon_days: int,
    groups: Ledger,
    exchange: bool,
    sample_days: float,
    chunk: int = 2000,
) -> tuple[list[tuple[Ledger, OperatorBoard]], list[dict[str, float]]]:
    """The partitions fed `chunk` events at a time in turn; with `exchange`, each one's taken
    runs delivered after its chunk to their owner (announcements to every partition). The
    fed pairs, and a sample of the board state's packed bytes every `sample_days`."""
    fed = [
        (
            Ledger(
                window_days * DAY_MS, fold_sessions=True, board_horizon_ms=horizon_days * DAY_MS
            ),
            OperatorBoard(),
        )
        for _ in parts
    ]
    for ledger, _board in fed:
        ledger.membership_from = groups
    ledgers = [ledger for ledger, _board in fed]
    samples: list[dict[str, float]] = []
    first_ts: int | None = None
    for begin in range(0, max(len(part) for part in parts), chunk):
        for source, ((ledger, board), part) in enumerate(zip(fed, parts, strict=True)):
            for event in part[begin : begin + chunk]:
                ingest_decoded(event, ledger, board)
            if not exchange:
                continue
            for message in ledger.take_board_runs(source):
                if isinstance(message, BoardRuns):
                    deliver(ledgers[board_owner(message, len(parts))], message, len(parts))
                else:
                    for each in ledgers:
                        deliver(each, message, len(parts))
        newest = max((x.max_ts for x in ledgers if x.max_ts is not None), default=None)
        if newest is None:
            continue
        first_ts = newest if first_ts is None else first_ts
        day = (newest - first_ts) / DAY_MS
        if not samples or day >= samples[-1]["day"] + sample_days:
            samples.append(
                {
                    "day": round(day, 1),
                    "board_kb": round(sum(board_bytes(x) for x in ledgers) / 1e3, 1),
                    "runs_at_sources": sum(
                        len(c.runs) // 3 for x in ledgers for c in x.board_curves.values()
                    ),
                    "runs_at_owners": sum(
                        len(items)
                        for x in ledgers
                        for by_source in x.board_runs_in.values()
                        for items in by_source.values()
                    ),
                }
            )
    return fed, samples


def _level_peaks(ledger: Ledger, board: OperatorBoard, key: str = "viewers_peak") -> dict[str, int]:
    """Each level's `key` in the report's operator figures (a level without it left out:
    `viewers_peak_ceiling` is only where the peak is a lower bound)."""
    operator = build_report(ledger, board)["operator"]
    levels = {"overall": operator["overall"]}
    for kind in ("rooms", "merchants"):
        for level_id, figures in operator[kind].items():
            levels[f"{kind}:{level_id}"] = figures
    return {name: figures[key] for name, figures in levels.items() if key in figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=Path, required=True, help="a bench.soak stream file")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--window-days", type=int, default=7)
    parser.add_argument("--board-horizon-days", type=int, default=8)
    parser.add_argument("--runs-kept", type=int, help="SETTLED_RUNS_KEPT (default: the code's)")
    parser.add_argument(
        "--runs-per-day", type=int, help="what-if: runs kept per CST day once retired"
    )
    parser.add_argument(
        "--retire-after-days",
        type=float,
        default=0.0,
        help="what-if: runs retire this long before a curve's settled minutes (default 0)",
    )
    parser.add_argument(
        "--exchange",
        action="store_true",
        help="the settled runs exchanged to each level's owner partition (session 20)",
    )
    parser.add_argument(
        "--chunked",
        action="store_true",
        help="fed in chunks with board samples as --exchange, nothing exchanged (its baseline)",
    )
    parser.add_argument("--sample-days", type=float, default=30.0)
    args = parser.parse_args()
    if args.runs_kept is not None:
        concurrency.SETTLED_RUNS_KEPT = args.runs_kept  # type: ignore[misc]
    started = time.monotonic()
    keyed: list[tuple[bytes, Event | Rejection]] = []
    for raw in args.stream.read_bytes().splitlines():
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        known = isinstance(obj, dict) and obj.get("type") in TOPIC_BY_TYPE
        keyed.append((record_key(obj).encode() if known else b"", decode(raw)))
    decoded = [event for _key, event in keyed]
    groups, _ = _fed(
        [e for e in decoded if getattr(e, "type", "").startswith("group_")], args.window_days, None
    )
    parts: list[list[Event | Rejection]] = [[] for _ in range(args.partitions)]
    for key, event in keyed:
        parts[(murmur2(key) & 0x7FFFFFFF) % args.partitions].append(event)
    samples: list[dict[str, float]] = []
    if args.exchange or args.chunked:
        fed, samples = _fed_in_chunks(
            parts,
            args.window_days,
            args.board_horizon_days,
            groups,
            args.exchange,
            args.sample_days,
        )
    else:
        fed = [_fed(part, args.window_days, args.board_horizon_days, groups) for part in parts]
    ledgers = [ledger for ledger, _board in fed]
    if args.runs_per_day is not None:
        for ledger in ledgers:
            for curve in ledger.board_curves.values():
                if curve.settled_to is not None:
                    retire_before = curve.settled_to - round(args.retire_after_days * _DAY_MINUTES)
                    keep_per_day(curve, retire_before, args.runs_per_day)
    merged = merge_ledgers(ledgers)
    merged_board = merge_boards([board for _ledger, board in fed])
    got = _level_peaks(merged, merged_board)
    reported = _level_peaks(merged, merged_board, "viewers_peak_ceiling")
    # One ledger keeping every minute: exact (tests/agents/core/test_board_fold.py).
    want = _level_peaks(*_fed(decoded, args.window_days, None))
    levels = {}
    for level, curve in merged.board_curves.items():
        name = ":".join(level) if level[1] else level[0]
        levels[name] = {
            "merged_peak": got.get(name),
            "ceiling": curve.ceiling(),
            # The report's (with the live sessions' minutes; None where the peak is exact).
            "report_ceiling": reported.get(name),
            "bounded": curve.bounded,
            "one_ledger_every_minute": want.get(name),
        }
    runs = [len(c.runs) // 3 for ledger in ledgers for c in ledger.board_curves.values()]
    out = {
        "exchange": args.exchange,
        "board_kb_by_partition": [round(board_bytes(x) / 1e3, 1) for x in ledgers],
        "samples": samples,
        "equal_to_one_ledger": sum(
            v["merged_peak"] == v["one_ledger_every_minute"] for v in levels.values()
        ),
        "runs_kept": concurrency.SETTLED_RUNS_KEPT,
        "runs_per_day": args.runs_per_day,
        "retire_after_days": args.retire_after_days if args.runs_per_day is not None else None,
        "runs_held": sum(runs),
        "bounded": sum(c.bounded for c in merged.board_curves.values()),
        "levels": levels,
        "largest_runs_held": max(runs, default=0),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
