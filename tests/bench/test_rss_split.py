"""`bench.rss_split`: the means of a worker soak's samples in the first and last days after
its horizon, and its records per CPU second, from hand-made samples whose answer is known."""

from __future__ import annotations

from typing import Any

from bench.rss_split import markdown, split
from bench.soak import _horizon_of


def _sample(
    day: float, rss: float, glibc_free: float, records: int, cpu_s: float
) -> dict[str, Any]:
    return {
        "day": day,
        "rss_mb": rss,
        "snapshot_mb": 1.0,
        "behind": 0,
        "records": records,
        "cpu_s": cpu_s,
        "malloc_trims": 3,
        "memory": {
            "file_mb": 40.0,
            "pymalloc": {"arenas_mb": 60.0, "in_use_mb": 50.0, "free_mb": 10.0},
            "glibc": {
                "arena_mb": 30.0 + glibc_free,
                "mmapped_mb": 1.0,
                "in_use_mb": 30.0,
                "free_mb": glibc_free,
            },
            "rest_mb": 2.0,
        },
    }


def test_the_split_compares_the_first_and_last_days_after_the_horizon() -> None:
    result: dict[str, Any] = {"mode": "worker", "window_days": 1.0, "fold_sessions": False}
    horizon = _horizon_of(result)  # 30 + 3 + 1 = 34 days
    days = [horizon - 10 + 2 * i for i in range(40)]  # 24 .. 102
    samples = [
        # glibc's free memory 10 MB before and early after the horizon, 20 MB late.
        _sample(d, 150.0 + (10 if d >= 70 else 0), 20.0 if d >= 70 else 10.0, 1000 * i, i / 2)
        for i, d in enumerate(days)
    ]
    samples.append(_sample(days[-1] + 1, 500.0, 99.0, 1000 * 40, 100.0))  # the final, left out
    result["samples"] = samples
    row = split(result, span_days=20.0)
    assert row["horizon_day"] == horizon
    early, late = row["means"]["rss"]
    assert (early, late) == (150.0, 160.0)
    assert row["means"]["glibc free"] == (10.0, 20.0)
    assert row["means"]["glibc held"] == (41.0, 51.0)
    assert row["means"]["pymalloc free"] == (10.0, 10.0)
    assert row["final_rss_mb"] == 500.0 and row["max_rss_mb"] == 500.0
    # 1,000 records every half CPU second, the final sample's 100 s left out.
    assert row["records_per_cpu_s_after"] == 2000.0
    assert row["records_per_cpu_s"] == 2000.0
    table = markdown([("run", row)])
    assert "| glibc free | 10.0 -> 20.0 (+10.0) |" in table
    assert "| records per CPU s after the horizon | 2,000 |" in table


def test_samples_without_the_memory_block_leave_its_figures_out() -> None:
    result: dict[str, Any] = {"mode": "worker", "window_days": 1.0}
    result["samples"] = [
        {"day": d, "rss_mb": 100.0, "snapshot_mb": 1.0, "behind": 0, "records": d}
        for d in range(30, 80)
    ]
    row = split(result, span_days=10.0)
    assert row["means"]["rss"] == (100.0, 100.0)
    assert row["means"]["glibc free"] == (None, None)
    assert row["records_per_cpu_s"] is None
