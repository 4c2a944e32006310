"""The worker's ingest: each fetched batch applied to the state, its lag counted and its dead
letters handed to the publishing pipeline (what the batch consumer awaits per fetch)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Final

from streams.runtime.batch_consumer import FetchedRecord
from streams.runtime.deadletters import DeadLetter, DeadLetterPipeline
from streams.runtime.monthrows import MonthRowExchange
from streams.runtime.state import LiveState

#: How long applying one fetch may hold the event loop before it lets the other tasks run
#: (wall clock): a fetch is up to `broker_max_poll_records` (10,000) records, 0.5-1 s of work
#: at 1,000,000 events on this machine, and the live screen's data, /metrics and /status waited
#: behind all of it (bench/RESULTS.md, "Live screen"). The batch consumer's lock stays held
#: between slices, so a snapshot or a rebalance still never sees part of a fetch.
SLICE_S: Final[float] = 0.05
#: Records applied between two looks at the clock (each slice is one `apply_batch`: its
#: counters and positions are written per slice, ~0.1% of a slice's cost).
SLICE_RECORDS: Final[int] = 500
#: Event loop turns given at each yield. One `sleep(0)` is one turn, and this task's next
#: step is first in it: a request is a chain of callbacks, each scheduled by the one before
#: (accept, connection made, data received, the handler's task), so with one turn per yield
#: a request waited ~4 slices (bench/RESULTS.md, "Live screen", fourth round).
YIELD_TURNS: Final[int] = 4


class BatchIngest:
    """Applies fetched batches to `state` and submits their dead letters to `dead_letters`,
    yielding to the event loop whenever a fetch has held it `slice_s` (by `clock`)."""

    def __init__(
        self,
        state: LiveState,
        dead_letters: DeadLetterPipeline,
        month_rows: MonthRowExchange | None = None,
        *,
        slice_s: float = SLICE_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.state = state
        self.dead_letters = dead_letters
        #: With the session fold: the month-rows topic's records in, closed months' rows out.
        self.month_rows = month_rows
        self.slice_s = slice_s
        self._clock = clock
        #: Times a fetch let the event loop run before it was all applied (for tests, /status).
        self.yields = 0

    async def __call__(self, batch: Sequence[FetchedRecord], received_at: float) -> None:
        """Apply one fetched batch (on the event loop since `received_at`, wall clock) and hand
        its dead letters to the publishing pipeline."""
        state, clock = self.state, self._clock
        month_rows = self.month_rows
        if month_rows is not None:
            received, batch = month_rows.split(batch)
            if received:
                month_rows.receive(received)
        letters: list[DeadLetter] = []
        since = clock()
        for start in range(0, len(batch), SLICE_RECORDS):
            if start and clock() - since >= self.slice_s:
                # The records so far are applied, counted and their positions advanced: what
                # runs now (a page build, a scrape) reads a state as of a record boundary.
                self.yields += 1
                for _turn in range(YIELD_TURNS):
                    await asyncio.sleep(0)
                since = clock()
            piece = batch[start : start + SLICE_RECORDS]
            letters += state.apply_batch(piece)
            now = time.time()
            state.lag.observe(now, [r.timestamp / 1000.0 for r in piece if r.timestamp is not None])
            state.worker_lag.observe_many(now - received_at, len(piece))
        if batch:
            state.batch_sizes.observe(len(batch))
        if month_rows is not None:
            month_rows.take()
        if letters:
            await self.dead_letters.submit(letters)
        state.maybe_log_summary()
