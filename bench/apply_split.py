"""`Ledger.apply` over the same records, configured as (a) configures it against as the worker
does (issue 19, session 18): us a record, and what of it is the folds and the collector.

    python -m bench.apply_split FILE [--config NAME ...] [--rounds 2] [--lines N]

FILE: JSON lines (a bench data file, `~/.cache/livepulse/bench/*.jsonl`). The lines are decoded
once (`decode_values`, 500 at a time; not timed), then each pass feeds the events into fresh
state under one configuration (`--config`, every one by default, in the order given, each
round the reverse of the one before, so a drift in the machine's load hits all alike):

- `a`: bench/ceiling.py's: one `Ledger(dedupe window)` and its `OperatorBoard`;
- `one-off`, `one-on`: one partition state built as the worker builds one
  (`LiveState.from_settings` under the default `Settings`, `new_partition`), the session fold
  off or on (on: claims by period attached, summaries retired, membership and refunds from
  the ledger's own events, as `livepulse analyze` and bench/fold_cpu.py);
- `worker-off`, `worker`: `Settings.partitions` such states, each record in the partition
  Kafka's default partitioner gives its contract key (`schemas.record_key`, murmur2), fed a
  partition's run of at most 500 records at a time, round robin over a window of 2,000
  stream records (as a fetch of a worker that is behind comes); with the fold (`worker`),
  membership and refunds from the worker's tables (`MembershipTable`, `WorkerRefundTable`,
  read from the topics' start, so caught up at once), each fed a run's group events or
  orders and refunds before the run's partition applies it (their ingest is not timed).

Each run's events go through `Ledger.apply`, then those applied through
`OperatorBoard.observe` (a run at a time, not one event at a time as `ingest_decoded` does, so
that the clock is read twice a run: a thread CPU clock read costs ~1 us here), with the
collector paced as (a) paces it (`GcPacer`, every `Settings.gc_pace_records`). Printed per
pass, one JSON line: `apply_us` (thread CPU inside the runs' `apply` loops), of it `fold_us`
(the folds `apply` runs when a topic's horizon crosses an hour: closed sessions and their
summaries with the period freeze, orders, questions, retired summaries, the seen ids
compacted; thread CPU at their entry points) and `gc_in_apply_us` (collections that ran
inside those loops, `gc.callbacks`), `gc_us` (every collection of the pass), and `cpu_us`
(process CPU of the whole pass, observe and the pacer included).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from agents.core import Ledger, OperatorBoard, periods
from agents.core.ingest import Rejected, decode_values
from schemas import Rejection
from streams.runtime.gcpace import GcPacer
from streams.runtime.membership import MembershipTable
from streams.runtime.refunds import WorkerRefundTable
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState

CONFIGS = ("a", "one-off", "one-on", "worker-off", "worker")
_FETCH = 500
_WINDOW = 2000
#: The folds `Ledger.apply` starts when a topic's horizon crosses an hour (`_drop_ids_below`).
_FOLDS = (
    "_fold_closed_sessions",
    "_fold_orders",
    "_own_order_users",
    "_fold_questions",
    "_retire_summaries",
    "_compact_seen_ids",
)
#: Inside those: the abandoned sessions, the summary pass, each summary, the board's curves.
_INSIDE = ("_abandon_sessions", "_summarize_sessions", "_summarize", "_settle_board_curves")


class _Clock:
    """Nanoseconds in the folds and in the collector, and whether `apply` is running."""

    def __init__(self) -> None:
        self.fold_ns = 0
        self.gc_ns = 0
        self.gc_in_apply_ns = 0
        self.in_apply = False
        self._depth = 0
        self._gc_began = 0
        #: Thread CPU ns by fold entry point and by the parts inside them (`_INSIDE`).
        self.parts: dict[str, int] = {}

    def on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.thread_time_ns()
            return
        took = time.thread_time_ns() - self._gc_began
        self.gc_ns += took
        if self.in_apply:
            self.gc_in_apply_ns += took

    def timed(self, name: str, method: Callable[..., Any], outer: bool) -> Callable[..., Any]:
        """`method` timed into `parts[name]` (every call), and into `fold_ns` if `outer`
        (the outermost of those only: one fold may call another)."""

        def run(*args: Any, **kwargs: Any) -> Any:
            if outer:
                self._depth += 1
            began = time.thread_time_ns()
            try:
                return method(*args, **kwargs)
            finally:
                took = time.thread_time_ns() - began
                self.parts[name] = self.parts.get(name, 0) + took
                if outer:
                    self._depth -= 1
                    if not self._depth:
                        self.fold_ns += took

        return run


def _partition_of(event: Any, partitions: int) -> int:
    """Kafka's default partitioner over the contract key (`schemas.record_key`, as the
    replayer keys a record: a group event's merchant, else its session, or empty)."""
    if event.type in ("group_joined", "group_left"):
        key = event.merchant_id
    else:
        key = getattr(event, "session_id", None)
    return (murmur2((key or "").encode()) & 0x7FFFFFFF) % partitions


def _runs(events: list[Any], partitions: int) -> Iterator[tuple[int, list[Any]]]:
    """(partition, its run of events), a window of `_WINDOW` stream records at a time."""
    for start in range(0, len(events), _WINDOW):
        split: list[list[Any]] = [[] for _ in range(partitions)]
        for event in events[start : start + _WINDOW]:
            split[_partition_of(event, partitions)].append(event)
        for part, run in enumerate(split):
            for at in range(0, len(run), _FETCH):
                yield part, run[at : at + _FETCH]


def _states(
    config: str, settings: Settings, reached: dict[str, set[int]]
) -> tuple[list[tuple[Ledger, OperatorBoard]], Any]:
    """The partitions' (ledger, board), and the tables (None: none) of a configuration."""
    if config == "a":
        board = OperatorBoard(settings.window_grace_ms, gpm_denominator=settings.gpm_denominator)
        return [(Ledger(settings.dedupe_window_ms), board)], None
    fold = config in ("one-on", "worker")
    count = settings.partitions if config.startswith("worker") else 1
    tables = None
    if config == "worker":
        window, tolerance = settings.dedupe_window_ms, settings.future_tolerance_ms
        held: list[Ledger] = []
        tables = (
            MembershipTable(window, tolerance),
            WorkerRefundTable(window, tolerance, settings.refund_horizon_ms, lambda: held),
        )
        # Read from the topics' start, so caught up at once; over the partitions the stream's
        # records reach (`reached`): one with none is left out of the horizon, as the worker
        # leaves out a partition idle for `Settings.groups_idle_s` (`refund_idle_s`).
        for table, topic in zip(tables, ("groups", "orders"), strict=True):
            table.catch_up_to(dict.fromkeys(reached[topic], 0))
        live = LiveState.from_settings(settings, membership=tables[0], refunds=tables[1])
    else:
        live = LiveState.from_settings(settings, fold_sessions=fold)
    states = [live.new_partition() for _ in range(count)]
    if tables is not None:
        held.extend(state.ledger for state in states)
    return [(state.ledger, state.board) for state in states], tables


def _reached(feed: list[tuple[int, list[Any]]]) -> dict[str, set[int]]:
    """The partitions holding a group event, and an order or refund, of a feed."""
    reached: dict[str, set[int]] = {"groups": set(), "orders": set()}
    for part, run in feed:
        for event in run:
            if event.type in ("group_joined", "group_left"):
                reached["groups"].add(part)
            elif event.type in ("order_paid", "order_refunded"):
                reached["orders"].add(part)
    return reached


def one_pass(config: str, events: list[Any], feed: list[tuple[int, list[Any]]]) -> dict[str, Any]:
    settings = Settings()
    states, tables = _states(config, settings, _reached(feed))
    clock = _Clock()
    originals = {name: getattr(Ledger, name) for name in _FOLDS + _INSIDE}
    for name, method in originals.items():
        setattr(Ledger, name, clock.timed(name, method, name in _FOLDS))
    freeze = periods.freeze_closed  # the period gate calls it through the module
    periods.freeze_closed = clock.timed("freeze_closed", freeze, False)  # type: ignore[assignment]
    pacer = GcPacer(settings.gc_pace_records).install()
    pacer.start()
    gc.callbacks.append(clock.on_gc)
    apply_ns = 0
    ns = time.thread_time_ns
    began = time.process_time()
    try:
        for part, run in feed:
            ledger, board = states[part]
            if tables is not None:  # the tables read up to the run (not timed as apply)
                for event in run:
                    kind = event.type
                    if kind in ("group_joined", "group_left"):
                        tables[0]._ingest(part, event)
                    elif kind in ("order_paid", "order_refunded"):
                        tables[1]._ingest(part, event)
            apply = ledger.apply
            clock.in_apply = True
            t0 = ns()
            applied = [event for event in run if apply(event)]
            apply_ns += ns() - t0
            clock.in_apply = False
            for event in applied:
                board.observe(event, ledger)
            if ledger.folded_ids or ledger.retired_ids:
                board.take_folded(ledger)
            pacer.after(len(run))
        cpu = time.process_time() - began
    finally:
        gc.callbacks.remove(clock.on_gc)
        pacer.uninstall()
        for name, method in originals.items():
            setattr(Ledger, name, method)
        periods.freeze_closed = freeze  # type: ignore[assignment]
    n = len(events)
    return {
        "config": config,
        "records": n,
        "ledgers": len(states),
        "apply_us": round(apply_ns / 1e3 / n, 3),
        "fold_us": round(clock.fold_ns / 1e3 / n, 3),
        "gc_in_apply_us": round(clock.gc_in_apply_ns / 1e3 / n, 3),
        "gc_us": round(clock.gc_ns / 1e3 / n, 3),
        "cpu_us": round(cpu * 1e6 / n, 3),
        "parts_us": {name: round(took / 1e3 / n, 3) for name, took in sorted(clock.parts.items())},
        "summarized": sum(ledger.summarized_sessions for ledger, _ in states),
        "valid": sum(ledger.counts.valid for ledger, _ in states),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apply_split")
    parser.add_argument("file", type=Path)
    parser.add_argument("--config", action="append", choices=CONFIGS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lines", type=int, default=0)
    args = parser.parse_args()
    lines = args.file.read_bytes().splitlines()
    if args.lines:
        lines = lines[: args.lines]
    events: list[Any] = []
    for at in range(0, len(lines), _FETCH):
        events.extend(
            e
            for e in decode_values(lines[at : at + _FETCH])
            if not isinstance(e, Rejection | Rejected)
        )
    partitions = Settings().partitions
    feeds = {1: [(0, events[at : at + _FETCH]) for at in range(0, len(events), _FETCH)]}
    feeds[partitions] = list(_runs(events, partitions))
    configs = list(args.config or CONFIGS)
    results: dict[str, list[float]] = {config: [] for config in configs}
    for round_no in range(args.rounds):
        order = configs if round_no % 2 == 0 else configs[::-1]
        for config in order:
            gc.collect()
            feed = feeds[partitions if config.startswith("worker") else 1]
            line = one_pass(config, events, feed)
            results[config].append(line["apply_us"])
            print(json.dumps(line), flush=True)
    for config, values in results.items():
        print(f"{config}: apply median {statistics.median(values):.2f} us a record", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
