"""Processing lag of applied records, counted in 1 ms buckets for `/status`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np

#: Processing lag is counted in 1 ms buckets up to this many ms; anything later in the last one.
_LAG_MAX_MS: Final[int] = 60_000

#: Batches smaller than this are counted a record at a time: numpy's ~6-7 us a call is more
#: than a Python loop's ~0.23 us a record below ~30 records (CPU per `observe`, session 19: 1
#: record 0.43 us against main's 0.29, 10 records 2.4 against 1.4, 100 records 8.2 against
#: 12.8, 500 records 16.9 against 67.9).
_NUMPY_FROM: Final[int] = 32


class LagHistogram:
    """Processing lag of records: the time from a record's Kafka timestamp (its produce time
    with CreateTime topics) until its batch was applied to the state `/report` and `/metrics`
    read. 1 ms buckets, so quantiles are exact to the millisecond; O(1) memory.

    The buckets are a numpy array, counted a batch at a time and summed in C: /status asks for
    three quantiles of two histograms, and the running totals of 60,001 buckets as Python ints
    (`itertools.accumulate`) took ~1.8 ms a summary, 9% of a worker's samples at the bench's
    10 polls a second, which a fleet of N workers pays N times (issue 19, session 19)."""

    __slots__ = ("count", "counts")

    def __init__(self) -> None:
        self.counts = np.zeros(_LAG_MAX_MS + 1, dtype=np.int64)
        self.count = 0

    def observe(self, now_s: float, timestamps_s: Iterable[float | None]) -> None:
        """Count one applied batch: `now_s` and the records' timestamps, in seconds."""
        values = timestamps_s if isinstance(timestamps_s, list) else list(timestamps_s)
        if len(values) < _NUMPY_FROM:
            counts, cap, n = self.counts, _LAG_MAX_MS, 0
            for ts in values:
                if ts is None:
                    continue
                lag = int((now_s - ts) * 1000.0)
                counts[lag if 0 <= lag < cap else (0 if lag < 0 else cap)] += 1
                n += 1
            self.count += n
            return
        stamps = np.array(values, dtype=np.float64)  # a None is NaN here, and not counted
        known = ~np.isnan(stamps)
        if not known.all():
            stamps = stamps[known]
        # As `int((now_s - ts) * 1000.0)` a record: the same float operations, truncated
        # toward zero; a negative lag (a clock step back) counts as 0, a longer one than the
        # last bucket in it.
        lags = ((now_s - stamps) * 1000.0).astype(np.int64)
        np.maximum(lags, 0, out=lags)  # not `np.clip`: ~10x its cost on a small batch
        np.minimum(lags, _LAG_MAX_MS, out=lags)
        np.add.at(self.counts, lags, 1)
        self.count += int(lags.size)

    def observe_many(self, lag_s: float, n: int) -> None:
        """Count `n` records that all waited `lag_s` seconds (one batch's time in the worker)."""
        lag = int(lag_s * 1000.0)
        self.counts[min(max(lag, 0), _LAG_MAX_MS)] += n
        self.count += n

    def quantile(self, q: float) -> int | None:
        """The smallest lag (ms) with at least a share `q` of the records at or below it."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[int | None]:
        """`quantile` of each share, over one pass of running totals (in C)."""
        if self.count == 0:
            return [None] * len(qs)
        counts = self.counts
        running = np.cumsum(counts)
        out: list[int | None] = []
        for q in qs:
            # The first bucket whose running total reaches the target (a bisect on the
            # non-decreasing totals; whole totals reach a share's target where they reach
            # its ceiling, which keeps the search in int64, not a float copy of the totals),
            # then the first at or after it that holds records (a bucket reached by an empty
            # run of equal totals is not a lag anyone had).
            target = np.int64(math.ceil(q * self.count))
            lag = int(np.searchsorted(running, target, side="left"))
            if lag < len(counts) and counts[lag] == 0:
                held = np.flatnonzero(counts[lag:])
                lag = lag + int(held[0]) if held.size else len(counts)
            out.append(min(lag, _LAG_MAX_MS))
        return out

    def summary(self) -> dict[str, int | None]:
        p50, p99, p100 = self.quantiles((0.5, 0.99, 1.0))
        return {"count": self.count, "p50_ms": p50, "p99_ms": p99, "max_ms": p100}
