"""Processing lag of applied records, counted in 1 ms buckets, and the sizes of the batches
applied, for `/status`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

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


#: Batch sizes below this are counted exactly, a bucket each; above, each power of two is cut
#: into `_SIZE_STEPS` buckets (so a bucket is within 1/16 of the sizes it holds).
_SIZE_EXACT: Final[int] = 32
_SIZE_STEPS: Final[int] = 16
#: Powers of two counted above `_SIZE_EXACT` (up to 2**25 records: past the largest batch the
#: settings allow, `batch_max_records` <= 1,000,000); a larger size counts in the last bucket.
_SIZE_OCTAVES: Final[int] = 20


def _size_bucket(size: int) -> int:
    """The bucket of a batch of `size` records (exact below `_SIZE_EXACT`, then 16 a power
    of two)."""
    if size < _SIZE_EXACT:
        return max(size, 0)
    shift = size.bit_length() - 5  # keeps the size's top 5 bits: 16-31
    bucket = _SIZE_EXACT + (shift - 1) * _SIZE_STEPS + (size >> shift) - _SIZE_STEPS
    return min(bucket, _SIZE_EXACT + _SIZE_OCTAVES * _SIZE_STEPS - 1)


def _size_range(bucket: int) -> tuple[int, int]:
    """The smallest and largest batch size counted in `bucket`."""
    if bucket < _SIZE_EXACT:
        return bucket, bucket
    shift, step = divmod(bucket - _SIZE_EXACT, _SIZE_STEPS)
    shift += 1
    low = (_SIZE_STEPS + step) << shift
    return low, low + (1 << shift) - 1


class BatchSizes:
    """Records per applied batch (one fetch handed to the ingest), for `/status`: how large the
    batches are that the in-worker lag follows (a record waits for its batch's whole apply).

    A fixed set of 352 buckets: sizes below 32 exactly, above within 1/16 of the size (a
    quantile is its bucket's largest size, never more than the largest batch seen); the count
    of batches, of their records and the largest exactly. O(1) memory, one bucket a batch."""

    __slots__ = ("count", "counts", "largest", "records")

    def __init__(self) -> None:
        self.counts = [0] * (_SIZE_EXACT + _SIZE_OCTAVES * _SIZE_STEPS)
        self.count = 0
        self.records = 0
        self.largest = 0

    def observe(self, size: int) -> None:
        """Count one applied batch of `size` records."""
        self.counts[_size_bucket(size)] += 1
        self.count += 1
        self.records += size
        if size > self.largest:
            self.largest = size

    def quantiles(self, qs: Sequence[float]) -> list[int | None]:
        """The smallest batch size with at least a share `q` of the batches at or below it, for
        each `q` (its bucket's largest size, at most the largest batch)."""
        if self.count == 0:
            return [None] * len(qs)
        targets = [max(1, math.ceil(q * self.count)) for q in qs]
        out: list[int | None] = [None] * len(qs)
        running = 0
        for bucket, n in enumerate(self.counts):
            if not n:
                continue
            running += n
            for i, target in enumerate(targets):
                if out[i] is None and running >= target:
                    out[i] = min(_size_range(bucket)[1], self.largest)
            if all(size is not None for size in out):
                break
        return out

    def buckets(self) -> list[list[int]]:
        """The buckets holding batches, as `[smallest size, largest size, batches]`."""
        return [[*_size_range(bucket), n] for bucket, n in enumerate(self.counts) if n]

    def summary(self) -> dict[str, Any]:
        p50, p90, p99 = self.quantiles((0.5, 0.9, 0.99))
        return {
            "count": self.count,
            "records": self.records,
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "max": self.largest if self.count else None,
            "buckets": self.buckets(),
        }
