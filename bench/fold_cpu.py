"""The session fold's CPU on the core: a worker partition's ledger with the fold on against
off, over the same decoded stream, in one process (issue 19, session 15).

    python -m bench.fold_cpu FILE [--rounds 3] [--lines N]
    python -m bench.fold_cpu FILE --profile on [--top 40]
    python -m bench.fold_cpu FILE --once on|off|none      # under valgrind --tool=callgrind

FILE: JSON lines (a bench data file, `~/.cache/livepulse/bench/*.jsonl`). The lines are decoded
once (`decode_values`, 500 at a time, as the worker decodes a fetch; not timed), then each pass
feeds them through `ingest_decoded` into fresh partition states built as a worker builds them
(`streams.runtime.state.LiveState.from_settings` under the default `Settings`, then
`new_partition`: window, refund, user, board and pair horizons, claims by period attached,
summaries retired), fold on or off: one ledger holding every record, membership from its own
group events (as `livepulse analyze`). Passes run on, off, off, on per round (ABBA) and print
process CPU microseconds per record (`time.process_time`, collector included, a full collection
before each pass) and the on/off ratio per round, as JSON lines, with the part of each fold-on
pass spent in the period freeze (`periods.freeze_closed`, timed around each call:
`on_freeze_us`; session 16). To compare trees, run this
file as a script with the other checkout first on `PYTHONPATH` (`PYTHONSAFEPATH=1
PYTHONPATH=<checkout> python <this tree>/bench/fold_cpu.py FILE`), alternating with this tree's
runs; a checkout without `LiveState.from_settings` (before session 16) takes this file as of
e81b971, which builds the same state field by field. `--profile on|off`: one cProfile pass of
that mode instead, the `--top` functions by internal time (us per record). `--once MODE`: one
pass (`none`: the decoding only), to count instructions with callgrind, which the machine's
load does not move: (pass's instructions - none's) / records.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from agents.core import periods
from agents.core.ingest import decode_values, ingest_decoded
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState

_FETCH = 500
#: CPU seconds spent in `periods.freeze_closed` since the pass began (`_time_the_freeze`).
_FREEZE_S = [0.0]


def _time_the_freeze() -> None:
    """Time every call of the period freeze (`periods.freeze_closed`, called by the period
    gate through the module) into `_FREEZE_S`: the part of a pass the freeze is (issue 19)."""
    freeze = periods.freeze_closed

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return freeze(*args, **kwargs)
        finally:
            _FREEZE_S[0] += time.process_time() - began

    periods.freeze_closed = timed


def _state(fold: bool) -> LiveState:
    return LiveState.from_settings(Settings(), fold_sessions=fold)


def _decoded(lines: list[bytes]) -> list[Any]:
    decoded: list[Any] = []
    for start in range(0, len(lines), _FETCH):
        decoded.extend(decode_values(lines[start : start + _FETCH]))
    return decoded


def _pass(events: list[Any], fold: bool) -> float:
    """Process CPU seconds of one pass: the events into a fresh partition state."""
    state = _state(fold).new_partition()
    ledger, board = state.ledger, state.board
    gc.collect()
    _FREEZE_S[0] = 0.0
    began = time.process_time()
    for event in events:
        ingest_decoded(event, ledger, board)
    return time.process_time() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=0, help="the first N lines (0: all)")
    parser.add_argument("--profile", choices=("on", "off"))
    parser.add_argument(
        "--once",
        choices=("on", "off", "none"),
        help="one pass of that mode and nothing else (none: decode only), for callgrind",
    )
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--label", default="")
    parser.add_argument("--dump", type=Path, help="with --profile: also write the pstats here")
    args = parser.parse_args()
    lines = args.file.read_bytes().splitlines()
    if args.lines:
        lines = lines[: args.lines]
    parts = _decoded(lines)
    n = len(lines)
    if args.once:
        cpu = 0.0 if args.once == "none" else _pass(parts, args.once == "on")
        print(json.dumps({"label": args.label, "mode": args.once, "us": cpu / n * 1e6}))
        return 0
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        _pass(parts, args.profile == "on")
        profiler.disable()
        if args.dump:
            profiler.dump_stats(args.dump)
        stats = pstats.Stats(profiler)
        rows = sorted(
            stats.stats.items(),  # type: ignore[attr-defined]
            key=lambda item: item[1][2],
            reverse=True,
        )
        print(f"{'tottime us/rec':>14} {'cum us/rec':>10} {'calls':>9}  function")
        for (path, line, name), (_cc, calls, tottime, cumtime, _callers) in rows[: args.top]:
            where = f"{Path(path).name}:{line}({name})"
            print(f"{tottime / n * 1e6:14.3f} {cumtime / n * 1e6:10.3f} {calls:9d}  {where}")
        return 0
    on: list[float] = []
    off: list[float] = []
    _time_the_freeze()
    for number in range(args.rounds):
        a = _pass(parts, True)
        freeze_a = _FREEZE_S[0]
        b = _pass(parts, False)
        c = _pass(parts, False)
        d = _pass(parts, True)
        freeze_d = _FREEZE_S[0]
        on += [a / n * 1e6, d / n * 1e6]
        off += [b / n * 1e6, c / n * 1e6]
        print(
            json.dumps(
                {
                    "label": args.label,
                    "round": number,
                    "on_us": [round(a / n * 1e6, 3), round(d / n * 1e6, 3)],
                    "off_us": [round(b / n * 1e6, 3), round(c / n * 1e6, 3)],
                    "on_over_off": round((a + d) / (b + c), 4),
                    "on_freeze_us": [round(freeze_a / n * 1e6, 3), round(freeze_d / n * 1e6, 3)],
                    "on_freeze_share": round((freeze_a + freeze_d) / (a + d), 4),
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "label": args.label,
                "records": n,
                "on_us_median": round(statistics.median(on), 3),
                "off_us_median": round(statistics.median(off), 3),
                "on_over_off_median": round(statistics.median(on) / statistics.median(off), 4),
            }
        ),
        file=sys.stdout,
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
