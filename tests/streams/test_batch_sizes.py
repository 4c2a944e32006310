"""Issue 19 (session 20): the records per batch a worker applied, on `/status` (`batches`,
`streams.runtime.lag.BatchSizes`), so that the in-worker lag can be read beside the batch sizes
it follows.

The ground truth is the records this test produced (the replayer's count, the fixture's event
truth) and the sizes themselves sorted: a quantile of the histogram is its bucket's largest
size, exact below 32 records and within 1/16 above."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from streams.runtime.lag import BatchSizes
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    replay_lines,
    run_settings,
    running_worker,
)

#: A bound on the records a fetch hands on, small and not round: the fixture's 18,414 records
#: come in hundreds of batches, full ones and the partial ones of a live replay.
MAX_RECORDS = 97


def _sorted_quantile(sizes: list[int], q: float) -> int:
    """The size with at least a share `q` of the sizes at or below it (the sorted sizes)."""
    ordered = sorted(sizes)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_batch_size_quantiles_follow_the_sorted_sizes() -> None:
    rng = random.Random(20)
    sizes = [rng.choice((1, 2, 31, 32, 33, 500)) for _ in range(50)]
    sizes += [rng.randint(1, 12_000) for _ in range(400)] + [1_000_000]
    histogram = BatchSizes()
    for size in sizes:
        histogram.observe(size)
    summary = histogram.summary()
    assert (summary["count"], summary["records"], summary["max"]) == (
        len(sizes),
        sum(sizes),
        1_000_000,
    )
    for q, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        truth = _sorted_quantile(sizes, q)
        got = summary[key]
        assert got == histogram.quantiles((q,))[0]
        if truth < 32:
            assert got == truth, (q, got, truth)
        else:
            assert truth <= got <= truth + truth // 16, (q, got, truth)
    for q in (0.001, 0.25, 0.75, 1.0):
        truth = _sorted_quantile(sizes, q)
        (got,) = histogram.quantiles((q,))
        assert got is not None and truth <= got <= max(truth + truth // 16, truth)
    # Every batch in one bucket, each size inside its bucket's range.
    buckets = summary["buckets"]
    assert sum(n for _, _, n in buckets) == len(sizes)
    for size in set(sizes):
        (row,) = [b for b in buckets if b[0] <= size <= b[1]]
        assert row[2] >= sizes.count(size)
    assert [b[0] for b in buckets] == sorted(b[0] for b in buckets)
    assert BatchSizes().summary() == {
        "count": 0,
        "records": 0,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
        "buckets": [],
    }


@pytest.mark.integration
def test_a_worker_counts_every_record_it_applied_in_its_batches(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = run_settings(kafka_bootstrap, "batches", batch_max_records=MAX_RECORDS)
    with running_worker(settings, tmp_path / "worker.log") as worker:
        sent = replay_lines(settings, tmp_path / "xhs.jsonl", fixture_lines("xhs"))
        drain(worker)
        status = worker.status()
    assert status["events"] == fixture_truth("xhs")["events"]
    produced = sent.sent + sent.fallback
    batches = status["batches"]
    # Every record the replayer produced was applied once, in one of the counted batches.
    assert status["records"] + status["skipped"] == produced
    assert batches["records"] == produced
    assert sum(n for _, _, n in batches["buckets"]) == batches["count"]
    low = sum(smallest * n for smallest, _, n in batches["buckets"])
    high = sum(largest * n for _, largest, n in batches["buckets"])
    assert low <= produced <= high, batches
    # No batch over the bound a fetch hands on, so at least this many of them.
    assert batches["max"] <= MAX_RECORDS
    assert batches["count"] >= math.ceil(produced / MAX_RECORDS)
    assert 1 <= batches["p50"] <= batches["p90"] <= batches["p99"] <= batches["max"], batches
