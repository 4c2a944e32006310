"""Processing lag of applied records, counted in 1 ms buckets for `/status`."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from typing import Final

#: Processing lag is counted in 1 ms buckets up to this many ms; anything later in the last one.
_LAG_MAX_MS: Final[int] = 60_000


class LagHistogram:
    """Processing lag of records: the time from a record's Kafka timestamp (its produce time
    with CreateTime topics) until its batch was applied to the state `/report` and `/metrics`
    read. 1 ms buckets, so quantiles are exact to the millisecond; O(1) memory."""

    __slots__ = ("count", "counts")

    def __init__(self) -> None:
        self.counts = [0] * (_LAG_MAX_MS + 1)
        self.count = 0

    def observe(self, now_s: float, timestamps_s: Iterable[float | None]) -> None:
        """Count one applied batch: `now_s` and the records' timestamps, in seconds."""
        counts, cap, n = self.counts, _LAG_MAX_MS, 0
        for ts in timestamps_s:
            if ts is None:
                continue
            lag = int((now_s - ts) * 1000.0)
            counts[lag if 0 <= lag < cap else (0 if lag < 0 else cap)] += 1
            n += 1
        self.count += n

    def observe_many(self, lag_s: float, n: int) -> None:
        """Count `n` records that all waited `lag_s` seconds (one batch's time in the worker)."""
        lag = int(lag_s * 1000.0)
        self.counts[min(max(lag, 0), _LAG_MAX_MS)] += n
        self.count += n

    def quantile(self, q: float) -> int | None:
        """The smallest lag (ms) with at least a share `q` of the records at or below it."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[int | None]:
        """`quantile` of each share in one pass (ascending shares walk once; /status asks for
        three, and with old records all in the last bucket each walk was 60,001 steps, ~8 ms
        on the event loop per call)."""
        if self.count == 0:
            return [None] * len(qs)
        # The cumulative counts, in C; each quantile is the first bucket whose running total
        # reaches its target and that holds records (bisect on the non-decreasing totals).
        running = list(itertools.accumulate(self.counts))
        out: list[int | None] = []
        for q in qs:
            target = q * self.count
            lag = bisect.bisect_left(running, target)
            # The first bucket at or after `lag` that holds records (a bucket reached by an
            # empty run of equal totals is not a lag anyone had).
            while lag < len(running) and self.counts[lag] == 0:
                lag += 1
            out.append(min(lag, _LAG_MAX_MS))
        return out

    def summary(self) -> dict[str, int | None]:
        p50, p99, p100 = self.quantiles((0.5, 0.99, 1.0))
        return {"count": self.count, "p50_ms": p50, "p99_ms": p99, "max_ms": p100}
