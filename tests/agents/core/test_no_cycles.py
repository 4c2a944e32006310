"""The metric core leaves no reference cycles behind, so paced GC (streams/runtime/gcpace.py) is
safe."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from agents.core import Ledger, OperatorBoard, build_report
from streams.tools.analyze import analyze_records, iter_records

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"


def _warm_up() -> None:
    """Import and cache everything the core touches lazily (imports leave cycles, once)."""
    ledger, board = Ledger(), OperatorBoard()
    analyze_records(iter_records(FIXTURES / "xhs.jsonl"), ledger, board)
    build_report(ledger, board)


def _garbage_of(run: Iterator[None]) -> list[int]:
    """Unreachable objects found by a full collection after each step, the collector off."""
    _warm_up()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return [gc.collect() for _ in run]
    finally:
        if was_enabled:
            gc.enable()


def test_applying_and_reporting_create_no_cycles() -> None:
    def steps() -> Iterator[None]:
        for name in ("xhs", "impulse"):
            ledger, board = Ledger(), OperatorBoard()
            analyze_records(iter_records(FIXTURES / f"{name}.jsonl"), ledger, board)
            # Not vacuous: the stream has invalid records and repeated ids too.
            assert ledger.counts.rejected > 0 and ledger.counts.duplicates > 0
            yield
            build_report(ledger, board)
            yield

    assert _garbage_of(steps()) == [0, 0, 0, 0]


def test_the_check_sees_a_cycle() -> None:
    """The measurement above can fail: a cycle made between two collections is counted."""

    class Node:
        other: object = None

    def steps() -> Iterator[None]:
        ledger = Ledger()
        analyze_records(islice(iter_records(FIXTURES / "xhs.jsonl"), 100), ledger)
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        yield

    assert _garbage_of(steps())[0] >= 2
