"""The worker's ingest: each fetched batch applied to the state, its lag counted and its dead
letters handed to the publishing pipeline (what the batch consumer awaits per fetch)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from streams.runtime.batch_consumer import RawRecord
from streams.runtime.deadletters import DeadLetterPipeline
from streams.runtime.monthrows import MonthRowExchange
from streams.runtime.state import LiveState


class BatchIngest:
    """Applies fetched batches to `state` and submits their dead letters to `dead_letters`."""

    def __init__(
        self,
        state: LiveState,
        dead_letters: DeadLetterPipeline,
        month_rows: MonthRowExchange | None = None,
    ) -> None:
        self.state = state
        self.dead_letters = dead_letters
        #: With the session fold: the month-rows topic's records in, closed months' rows out.
        self.month_rows = month_rows

    async def __call__(self, batch: Sequence[RawRecord], received_at: float) -> None:
        """Apply one fetched batch (on the event loop since `received_at`, wall clock) and hand
        its dead letters to the publishing pipeline."""
        state = self.state
        month_rows = self.month_rows
        if month_rows is not None:
            received, batch = month_rows.split(batch)
            if received:
                month_rows.receive(received)
        letters = state.apply_batch(batch)
        if month_rows is not None:
            month_rows.take()
        now = time.time()
        state.lag.observe(now, [r.timestamp / 1000.0 for r in batch if r.timestamp is not None])
        state.worker_lag.observe_many(now - received_at, len(batch))
        if letters:
            await self.dead_letters.submit(letters)
        state.maybe_log_summary()
