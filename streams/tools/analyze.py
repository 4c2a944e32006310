"""The offline analyzer: a JSON Lines file through the same metric core the worker runs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ingest import decode_values, ingest_decoded
from agents.core.periods import PeriodSettings, attach, with_periods
from streams.runtime.gcpace import GcPacer
from streams.tools.progress import count_lines, on_terminal, track

#: Records between paced collections in `analyze_file` (streams/runtime/gcpace.py).
GC_PACE_RECORDS = 50_000
_PACE_STEP = 1_000


def iter_records(path: Path) -> Iterator[bytes]:
    """The records of a JSON Lines file as raw bytes, one a line, as the replayer sends them.

    Only the `\n` is removed (a `\r` before it is JSON whitespace); a blank line is a record
    too, and an invalid one, exactly as it would be on a topic.
    """
    with path.open("rb") as handle:
        for line in handle:
            yield line[:-1] if line.endswith(b"\n") else line


def analyze_records(
    records: Iterator[bytes],
    ledger: Ledger | None = None,
    board: OperatorBoard | None = None,
    pacer: GcPacer | None = None,
) -> Ledger:
    """Feed raw records through the core's `ingest` into a ledger (a new one unless given), and
    the events it accepts into the operator board if one is given; `pacer` is told every 1,000."""
    ledger = ledger if ledger is not None else Ledger()
    # Decoded 1,000 at a time, as the worker decodes a fetch (`decode_values`).
    records = iter(records)
    while chunk := list(itertools.islice(records, _PACE_STEP)):
        for decoded in decode_values(chunk):
            ingest_decoded(decoded, ledger, board)
        if pacer is not None and len(chunk) == _PACE_STEP:
            pacer.after(_PACE_STEP)
    return ledger


def analyze_file(
    path: Path,
    progress: IO[str] | None = None,
    board: OperatorBoard | None = None,
    dedupe_window_ms: int | None = None,
    future_tolerance_ms: int | None = None,
    refund_horizon_ms: int | None = None,
    fold_sessions: bool = False,
    periods: PeriodSettings | None = None,
    board_horizon_ms: int | None = None,
    user_horizon_ms: int | None = None,
    pair_horizon_ms: int | None = None,
    board_runs_kept: int | None = None,
    distinct_limit: int | None = None,
    rank_cell_limit: int | None = None,
) -> dict[str, Any]:
    """The claims and operator report of one fixture file, computed without a broker.

    The operator board defaults to the default grace and GPM denominator; the ledger has the
    given dedupe window (None: none, every id kept) and cap on how far ahead of the wall clock
    an event may move its topic's horizon (None: no cap), and refund horizon (None: a refund
    counts for any payment of its order id); with `fold_sessions` it summarizes closed
    sessions past their session horizon, membership from its own group events (one ledger
    holds every one of the file's, so it is exact, as the worker's membership table is) and
    folds `group_spend_multiple`'s closed months (it holds all of each month's rows);
    with `periods` the report has the claims by period (`agents.core.periods`); with
    `board_horizon_ms` too, the operator levels' minutes older are settled into their peaks
    and, with the fold, the summaries of the sessions past it retired into their levels' totals;
    with `user_horizon_ms` (and the fold), users idle that long are retired into the
    intervals' cluster sums (`Ledger.retire_idle_users`); every decided repurchase pair is
    remembered as "bought before", or with `pair_horizon_ms` only that long after its latest
    order (`Ledger.forget_idle_pairs`); `board_runs_kept` and `distinct_limit` bound the
    levels' settled runs and summarized buyers (`Ledger.board_runs_kept`, `distinct_limit`;
    None: the defaults), `rank_cell_limit` the folded rank table's cells
    (`sketch.RankTable.limit`; None: `sketch.RANK_CELL_LIMIT`).
    """
    started = time.monotonic()
    ledger = Ledger(
        dedupe_window_ms,
        future_tolerance_ms,
        refund_horizon_ms,
        fold_sessions=fold_sessions,
        fold_months=fold_sessions,  # one ledger holds every partition's rows of a month
        board_horizon_ms=board_horizon_ms,
        user_horizon_ms=user_horizon_ms,
        pair_horizon_ms=pair_horizon_ms,
    )
    ledger.retire_summaries = fold_sessions  # past the board horizon, as the worker
    ledger.board_runs_kept = board_runs_kept
    if distinct_limit is not None:
        ledger.set_distinct_limit(distinct_limit)
    if rank_cell_limit is not None:
        ledger.folded_figures.price_watch.set_limit(rank_cell_limit)
    if periods is not None:
        attach(ledger, periods)
    board = board if board is not None else OperatorBoard()
    records = iter_records(path)
    if progress is not None and on_terminal(progress):
        records = track(records, desc="analyze", total=count_lines(path), stream=progress)
    pacer = GcPacer(every_records=GC_PACE_RECORDS).install()
    try:
        analyze_records(records, ledger, board, pacer)
        report = with_periods(build_report(ledger, board), ledger, periods)
    finally:
        pacer.uninstall()
    if progress is not None:
        elapsed = time.monotonic() - started
        counts = ledger.counts
        total = counts.valid + counts.rejected + counts.duplicates + counts.expired
        progress.write(f"analyzed {total:,} records in {elapsed:.1f} s\n")
    return report
