"""Interval estimates and rank statistics used by the claim checks (numpy, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

Z95: Final[float] = 1.959963984540054
BOOTSTRAP_REPLICATES: Final[int] = 1000
# Fixed so that the worker and the offline analyzer give the same interval for the same facts.
BOOTSTRAP_SEED: Final[int] = 20240724

FloatArray = npt.NDArray[np.float64]


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (None without trials)."""
    if trials <= 0:
        return None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap_interval(
    clusters: Sequence[Sequence[float]],
    statistic: Callable[[FloatArray], FloatArray],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap over clusters (e.g. sessions), resampled whole.

    `clusters` holds one row of additive sums per cluster; `statistic` maps an array of
    column totals (one row per replicate) to the figure, NaN where it is undefined.
    Resampling whole clusters keeps the dependence between viewers of one session.
    """
    rows = np.asarray(clusters, dtype=np.float64)
    n = rows.shape[0]
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values: list[FloatArray] = []
    chunk = max(1, min(replicates, 2_000_000 // n))
    done = 0
    while done < replicates:
        size = min(chunk, replicates - done)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)
        values.append(statistic(weights @ rows))
        done += size
    estimates = np.concatenate(values)
    estimates = estimates[np.isfinite(estimates)]
    if estimates.size < replicates // 2:
        return None
    alpha = (1 - level) / 2
    low, high = np.quantile(estimates, [alpha, 1 - alpha])
    return float(low), float(high)


def log_ratio_interval(
    rows: Sequence[Sequence[float]], exponents: Sequence[int], z: float = Z95
) -> tuple[float, float] | None:
    """Delta-method interval for a product of column totals raised to +/-1, e.g. (A/B)/(C/D).

    Rows are independent units; the statistic is prod(total_j ** exponents[j]). Its log is
    linearised (influence of row i: sum_j e_j * x_ij / total_j), the variance is the sample
    variance of the influences times n, and the interval is exp(log R +/- z * se). O(n), for
    populations too large to bootstrap on every report.
    """
    data = np.asarray(rows, dtype=np.float64)
    n = data.shape[0]
    if n < 2:
        return None
    totals = data.sum(axis=0)
    if np.any(totals <= 0):
        return None
    signs = np.asarray(exponents, dtype=np.float64)
    influence = (data / totals) @ signs
    se = math.sqrt(float(np.var(influence, ddof=1)) * n)
    log_r = float(np.log(totals) @ signs)
    return math.exp(log_r - z * se), math.exp(log_r + z * se)


def safe_divide(num: FloatArray, den: FloatArray) -> FloatArray:
    """Element-wise num/den with NaN where den is 0."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        i = j + 1
    return ranks


def spearman_rho(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of average ranks); None if undefined."""
    if len(xs) != len(ys) or len(xs) < 2:
        return None
    rx = np.asarray(average_ranks(xs))
    ry = np.asarray(average_ranks(ys))
    dx = rx - rx.mean()
    dy = ry - ry.mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denom == 0:
        return None
    return float(dx @ dy) / denom


def spearman_interval(rho: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Fisher-z interval for Spearman's rho, standard error sqrt(1.06 / (n - 3)).

    Fieller, Hartley and Pearson (1957) give var(z) ~ 1.06/(n-3) for rank correlations.
    """
    if n < 4:
        return None
    clipped = min(max(rho, -0.999999), 0.999999)
    centre = math.atanh(clipped)
    half = z * math.sqrt(1.06 / (n - 3))
    return math.tanh(centre - half), math.tanh(centre + half)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """numpy's default (linear) percentile of already sorted values; q in [0, 1]."""
    n = len(sorted_values)
    if n == 0:
        return None
    h = (n - 1) * q
    i = math.floor(h)
    if i + 1 >= n:
        return float(sorted_values[-1])
    return float(sorted_values[i] + (h - i) * (sorted_values[i + 1] - sorted_values[i]))
