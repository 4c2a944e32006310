"""Interval methods against known values and against each other."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agents.core.stats import (
    cluster_bootstrap_interval,
    log_ratio_interval,
    percentile,
    safe_divide,
    spearman_interval,
    spearman_rho,
    wilson_interval,
)


def test_wilson_known_values() -> None:
    # 81 of 263: the worked example of Newcombe (1998), 0.2553 to 0.3662 with z = 1.96.
    low, high = wilson_interval(81, 263)  # type: ignore[misc]
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10)  # type: ignore[misc]
    assert low == 0.0 and 0.25 < high < 0.32


def test_percentile_matches_numpy_linear() -> None:
    rng = random.Random(3)
    values = sorted(rng.random() for _ in range(17))
    for q in (0, 0.1, 0.5, 0.95, 1):
        assert percentile(values, q) == pytest.approx(float(np.quantile(values, q)))
    assert percentile([], 0.5) is None


def test_spearman_monotone_and_undefined() -> None:
    assert spearman_rho([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
    assert spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_rho([1, 1, 1], [1, 2, 3]) is None
    low, high = spearman_interval(0.3, 400)  # type: ignore[misc]
    assert low < 0.3 < high and high - low < 0.2


def test_delta_method_agrees_with_bootstrap_on_independent_rows() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    member = (rng.random(n) < 0.2).astype(float)
    spend = rng.lognormal(3, 1, n) * (1 + 2 * member)
    rows = np.column_stack([member * spend, member, spend, np.ones(n)])

    def multiple(totals: np.ndarray) -> np.ndarray:
        return safe_divide(
            safe_divide(totals[:, 0], totals[:, 1]), safe_divide(totals[:, 2], totals[:, 3])
        )

    delta = log_ratio_interval(rows.tolist(), (1, -1, -1, 1))
    boot = cluster_bootstrap_interval(rows.tolist(), multiple, replicates=400)
    assert delta is not None and boot is not None
    assert delta[0] == pytest.approx(boot[0], rel=0.05)
    assert delta[1] == pytest.approx(boot[1], rel=0.05)


def test_bootstrap_is_deterministic_and_needs_two_clusters() -> None:
    rows = [[float(i % 7), 1.0] for i in range(50)]

    def mean(totals: np.ndarray) -> np.ndarray:
        return safe_divide(totals[:, 0], totals[:, 1])

    assert cluster_bootstrap_interval(rows, mean) == cluster_bootstrap_interval(rows, mean)
    assert cluster_bootstrap_interval(rows[:1], mean) is None
