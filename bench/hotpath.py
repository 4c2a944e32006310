"""The core's hot path in one process, no broker (issue 19): CPU seconds, to compare trees.

    python -m bench.hotpath ingest FILE [--window-s 604800] [--passes 1] [--gc-pace N]
    python -m bench.hotpath report FILE
    python -m bench.hotpath batch-decode FILE [--valid-only]
    python -m bench.hotpath page FILE [--step 5000] [--builds 24] [--partitions 4]
                                      [--fold-sessions] [--tables-every N]

FILE: a stream of JSON lines (a bench data file, `~/.cache/livepulse/bench/*.jsonl`).
`ingest`: the core's ingest over every line into `Ledger(window)` + `OperatorBoard`, 500 values
decoded at once (`decode_values`, as the worker decodes a fetch; one by one with `ingest` in a
tree without it), CPU microseconds per record (to compare commits, run this file as a script
from another checkout's directory, `PYTHONSAFEPATH=1 PYTHONPATH=<checkout> python <this
tree>/bench/hotpath.py ingest FILE`, interleaved with this tree's: bench/RESULTS.md, Session 7;
a checkout from issue 17 on, whose `Ledger` takes a dedupe window); `--gc-pace N`: the
worker's paced collections every N records (`streams.runtime.gcpace.GcPacer`, as (a) and the
worker collect; without it CPython's default thresholds, whose young collections walk each
fetch's decoded events). `report`: CPU seconds of
`build_report` over that state (what `/report` and a `/metrics` scrape build on the worker's
event loop) against the ingest's. `batch-decode`: `schemas.decode_many` (a fetch's values in
one validator call) in fetches of 100, 500 and 2,000 values against `schemas.decode` per value.
`page` (issue 18): the live screen's incremental
build (`agents.core.page.PageBuilder`, what `/screen/data` runs on the event loop) over the
records split into partitions by the contract's record keys, after the first build at the
end of all but the last `--builds` x `--step` records, once after each further `--step`:
CPU seconds per build (to compare trees, run it from another checkout as `ingest` says), and
the memory the builder keeps after its first build; `--fold-sessions`: the partitions'
ledgers summarize closed sessions (`Ledger(fold_sessions=True)`, membership from a ledger of
every group event, as the worker's table), as a worker with `LIVEPULSE_FOLD_SESSIONS=true`;
`--tables-every N`: the sources and products tables computed by one build in N, as the
worker's feed does (`streams.runtime.screen.TABLES_EVERY`; 1, the default, every build).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ingest import ingest

if TYPE_CHECKING:
    from streams.runtime.gcpace import GcPacer

#: Values per decode call in `ingest` (a typical fetch of the worker, 4 partitions).
_FETCH = 500
#: `ingest --gc-pace`: the worker's pacer, told of each fetch.
_PACER: GcPacer | None = None


def _lines(path: Path) -> list[bytes]:
    return [line.encode() for line in path.read_text(encoding="utf-8").splitlines()]


def _cpu(run: Callable[[], object]) -> float:
    began = time.process_time()
    run()
    return time.process_time() - began


def _ingested(values: list[bytes], window_ms: int | None) -> tuple[Ledger, OperatorBoard]:
    ledger, board = Ledger(window_ms), OperatorBoard()
    try:  # a fetch (500 values) decoded at once, as the worker does, where the tree can
        from agents.core.ingest import decode_values, ingest_decoded  # noqa: PLC0415
    except ImportError:  # a tree before issue 19's Session 9: one value at a time
        for value in values:
            ingest(value, ledger, board)
        return ledger, board
    for i in range(0, len(values), _FETCH):
        for decoded in decode_values(values[i : i + _FETCH]):
            ingest_decoded(decoded, ledger, board)
        if _PACER is not None:
            _PACER.after(_FETCH)
    return ledger, board


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath")
    parser.add_argument("what", choices=("ingest", "report", "batch-decode", "page"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--window-s", type=int, default=7 * 86_400)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--gc-pace", type=int, default=0)
    parser.add_argument("--valid-only", action="store_true")
    parser.add_argument("--step", type=int, default=5000)
    parser.add_argument("--builds", type=int, default=24)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--tables-every", type=int, default=1)
    parser.add_argument("--fold-sessions", action="store_true")
    args = parser.parse_args()
    values = _lines(args.file)
    window_ms = args.window_s * 1000 or None
    if args.what == "ingest":
        if args.gc_pace:
            from streams.runtime.gcpace import GcPacer  # noqa: PLC0415 (only this measurement)

            pacer = GcPacer(args.gc_pace).install()
            pacer.start()
            global _PACER  # noqa: PLW0603 (read by `_ingested`)
            _PACER = pacer
        for _ in range(args.passes):
            seconds = _cpu(lambda: _ingested(values, window_ms))
            print(f"{len(values)} records: {1e6 * seconds / len(values):.2f} us CPU per record")
    elif args.what == "report":
        held: list[tuple[Ledger, OperatorBoard]] = []
        ingest_s = _cpu(lambda: held.append(_ingested(values, window_ms)))
        ledger, board = held[0]
        builds = [_cpu(lambda: build_report(ledger, board)) for _ in range(3)]
        print(
            f"{len(values)} records: ingest {ingest_s:.2f} s CPU; build_report "
            f"{min(builds):.2f} s CPU (min of 3, max {max(builds):.2f}) = "
            f"{min(builds) / ingest_s:.0%} of the ingest"
        )
    elif args.what == "page":
        _page(
            values,
            window_ms,
            args.step,
            args.builds,
            args.partitions,
            args.fold_sessions,
            args.tables_every,
        )
    else:
        _batch_decode(values[:100_000], args.valid_only)


def _page(
    values: list[bytes],
    window_ms: int | None,
    step: int,
    builds: int,
    partitions: int,
    fold_sessions: bool = False,
    tables_every: int = 1,
) -> None:
    import orjson  # noqa: PLC0415 (only this measurement)

    from agents.core.page import PageBuilder  # noqa: PLC0415
    from schemas.events import record_key  # noqa: PLC0415

    states = [
        (Ledger(window_ms, fold_sessions=fold_sessions), OperatorBoard()) for _ in range(partitions)
    ]
    groups = Ledger(window_ms)  # the membership table (streams/runtime/membership.py)
    for ledger, _board in states:
        ledger.membership_from = groups if fold_sessions else None

    def feed(chunk: list[bytes]) -> None:
        for value in chunk:
            try:
                key = record_key(orjson.loads(value))
            except (ValueError, TypeError, AttributeError):
                key = ""
            if fold_sessions and b'"group_' in value:
                ingest(value, groups, None)
            ingest(value, *states[zlib.crc32(key.encode()) % partitions])

    tail = step * builds
    feed(values[: len(values) - tail])
    builder = PageBuilder()
    gc.collect()
    tracemalloc.start()  # what the builder keeps: allocated by its first build, still held
    first_s = _cpu(lambda: builder.build(states))
    gc.collect()
    kept_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    seconds: list[float] = []
    recomputed: list[int] = []
    for i in range(builds):
        start = len(values) - tail + i * step
        feed(values[start : start + step])
        tables = (i + 1) % tables_every == 0
        seconds.append(_cpu(lambda: builder.build(states, tables=tables)))  # noqa: B023
        recomputed.append(builder.recomputed)
    print(
        f"{len(values)} records, {partitions} partitions: first build {first_s:.2f} s CPU "
        f"(the builder keeps {kept_mb:.1f} MB after it, tracemalloc); "
        f"{builds} builds {step:,} records apart: median {statistics.median(seconds):.3f} s "
        f"CPU, max {max(seconds):.3f}, mean {statistics.mean(seconds):.3f} "
        f"(sessions recomputed: median {statistics.median(recomputed):g})"
        + (
            f"; {sum(ledger.summarized_sessions for ledger, _ in states)} sessions summarized"
            if fold_sessions
            else ""
        )
    )


def _batch_decode(values: list[bytes], valid_only: bool) -> None:
    from schemas import Rejection, decode, decode_many  # noqa: PLC0415 (only this measurement)

    if valid_only:
        values = [v for v in values if not isinstance(decode(v), Rejection)]

    def one_by_one() -> None:
        for value in values:
            decode(value)

    def in_fetches(size: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(0, len(values), size):
                decode_many(values[i : i + size])

        return run

    per = min(_cpu(one_by_one) for _ in range(3))
    line = f"{len(values)} values: one call each {per:.2f} s CPU"
    for size in (100, 500, 2000):
        batched = min(_cpu(in_fetches(size)) for _ in range(3))
        line += f"; decode_many of {size:,}: {batched:.2f} s = {batched / per:.2f}x"
    print(line)


if __name__ == "__main__":
    main()
