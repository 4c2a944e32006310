"""The offline analyzer: a JSON Lines file through the same metric core the worker runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from agents.core import Ledger, build_report
from schemas import Rejection, decode


def iter_records(path: Path) -> Iterator[bytes]:
    """The records of a JSON Lines file as raw bytes, one a line, as the replayer sends them.

    Only the `\n` is removed (a `\r` before it is JSON whitespace); a blank line is a record
    too, and an invalid one, exactly as it would be on a topic.
    """
    with path.open("rb") as handle:
        for line in handle:
            yield line[:-1] if line.endswith(b"\n") else line


def analyze_records(records: Iterator[bytes], ledger: Ledger | None = None) -> Ledger:
    """Feed raw records through the decoder into a ledger (a new one unless given)."""
    ledger = ledger if ledger is not None else Ledger()
    for record in records:
        decoded = decode(record)
        if isinstance(decoded, Rejection):
            ledger.reject(decoded.reason)
        else:
            ledger.apply(decoded)
    return ledger


def analyze_file(path: Path, progress: IO[str] | None = None) -> dict[str, Any]:
    """The claims report of one fixture file, computed without a broker."""
    started = time.monotonic()
    ledger = Ledger()
    records = iter_records(path)
    if progress is not None:
        records = _with_progress(records, progress)
    analyze_records(records, ledger)
    report = build_report(ledger)
    if progress is not None:
        elapsed = time.monotonic() - started
        total = ledger.counts.valid + ledger.counts.rejected + ledger.counts.duplicates
        progress.write(f"\ranalyzed {total:,} records in {elapsed:.1f} s\n")
    return report


def _with_progress(records: Iterator[bytes], out: IO[str]) -> Iterator[bytes]:
    interactive = out.isatty()
    for count, record in enumerate(records, 1):
        if count % 200_000 == 0:
            out.write(f"\r{count:,} records read" if interactive else f"{count:,} records read\n")
            out.flush()
        yield record
