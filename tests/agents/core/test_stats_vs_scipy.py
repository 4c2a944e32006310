"""The hand-written distribution functions and rank statistics of agents/core/stats.py against
scipy's, over grids (docs/metrics.md, "Statistics: hand-written or scipy"). scipy is a test
dependency only: the worker does not import it."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import special
from scipy import stats as sp

from agents.core import stats

P_GRID = (0.55, 0.6, 0.75, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999)
# Integer and fractional degrees of freedom (Satterthwaite's are real), from the floor of 1 up
# to where the normal quantile takes over.
DF_GRID = (1.0, 1.3, 1.5, 2.0, 2.7, 3.0, 4.0, 5.0, 7.3, 10.0, 17.5, 30.0, 100.0, 1e3, 1e5, 1e7)


def test_z95_is_the_normal_quantile() -> None:
    assert stats.Z95 == pytest.approx(sp.norm.ppf(0.975), abs=1e-15)


@pytest.mark.parametrize("df", DF_GRID)
def test_student_t_quantile_matches_scipy(df: float) -> None:
    # Measured: 1e-13 or better below p = 0.995 up to df = 1e5. Two corners are looser, still
    # far below the four figures an interval is shown with: p = 0.999 at df = 1 (Simpson's
    # rule over [0, 318] of the Cauchy density, 9e-7) and df >= 1e6 (the difference of two
    # log-gamma values near 8e6 keeps about eight digits, 1.5e-8).
    for p in P_GRID:
        tolerance = 1e-8 if p <= 0.995 and df <= 1e5 else 1e-6
        expected = sp.t.ppf(p, df)
        assert stats.student_t_quantile(p, df) == pytest.approx(expected, rel=tolerance), p


def test_student_t_quantile_beyond_1e7_df_is_the_normal_one() -> None:
    for p in P_GRID:
        assert stats.student_t_quantile(p, 1e9) == pytest.approx(sp.t.ppf(p, 1e9), rel=1e-8)
        assert stats.student_t_quantile(p, math.inf) == pytest.approx(sp.norm.ppf(p), rel=1e-12)


def test_the_standard_normal_matches_scipy() -> None:
    # statistics.NormalDist is the standard library's, used for Phi and its inverse in BCa.
    normal = NormalDist()
    for p in (1e-9, 1e-4, 0.001, 0.025, 0.1, 0.3, 0.5, 0.7, 0.9, 0.975, 0.999, 1 - 1e-9):
        assert normal.inv_cdf(p) == pytest.approx(sp.norm.ppf(p), rel=1e-12, abs=1e-12)
    for x in np.linspace(-8, 8, 161):
        # Absolute: 0.5 (1 + erf(x / sqrt 2)) cancels deep in the lower tail (2% of 6e-16 at
        # x = -8), which no BCa level read off 1000 replicates can notice.
        assert normal.cdf(float(x)) == pytest.approx(sp.norm.cdf(x), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("trials", (1, 2, 3, 5, 10, 37, 100, 1000, 100_000))
def test_wilson_interval_matches_scipy(trials: int) -> None:
    for successes in sorted({0, 1, trials // 3, trials // 2, trials - 1, trials}):
        ci = sp.binomtest(successes, trials).proportion_ci(0.95, method="wilson")
        ours = stats.wilson_interval(successes, trials)
        assert ours is not None
        assert ours == pytest.approx((ci.low, ci.high), abs=1e-12), successes


@pytest.mark.parametrize(
    ("z0", "acceleration"),
    [(0.0, 0.0), (0.1, 0.0), (-0.3, 0.05), (0.25, -0.08), (0.6, 0.12), (-1.2, 0.2), (0.05, 0.3)],
)
def test_bca_levels_match_efron_with_scipy_normal(z0: float, acceleration: float) -> None:
    # Efron and Tibshirani (1993) eq. 14.10, evaluated with scipy's Phi and Phi^-1 (ndtr,
    # ndtri), as scipy.stats.bootstrap(method="BCa") does.
    expected = []
    for tail in (0.025, 0.975):
        shifted = z0 + special.ndtri(tail)
        expected.append(special.ndtr(z0 + shifted / (1 - acceleration * shifted)))
    assert stats.bca_levels(z0, acceleration) == pytest.approx(tuple(expected), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_jackknife_acceleration_of_a_mean_is_its_skewness(seed: int) -> None:
    # For the mean, a = g1 / (6 sqrt(n)) exactly, g1 the (biased) sample skewness.
    x = np.random.default_rng(seed).lognormal(0.0, 1.0, size=50 + 40 * seed)
    leave_one_out = (x.sum() - x) / (x.size - 1)
    expected = sp.skew(x, bias=True) / (6 * math.sqrt(x.size))
    assert stats.jackknife_acceleration(leave_one_out) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_cluster_bca_interval_agrees_with_scipy_bootstrap(seed: int) -> None:
    # One observation per cluster and the mean: the same BCa interval as scipy's, up to the
    # Monte Carlo error of two independent sets of 20 000 resamples.
    x = np.random.default_rng(100 + seed).lognormal(0.0, 1.0, size=60)
    ours = stats.cluster_bootstrap_interval(
        [[value, 1.0] for value in x], lambda totals: totals[:, 0] / totals[:, 1], 20_000
    )
    theirs = sp.bootstrap(
        (x,), np.mean, n_resamples=20_000, method="BCa", random_state=np.random.default_rng(seed)
    ).confidence_interval
    assert ours is not None
    width = theirs.high - theirs.low
    assert abs(ours[0] - theirs.low) < 0.05 * width
    assert abs(ours[1] - theirs.high) < 0.05 * width


def test_bootstrap_weights_are_multinomial_draws() -> None:
    clusters, replicates = 40, 5000
    weights = stats.bootstrap_weights(np.random.default_rng(7), clusters, replicates)
    assert weights.shape == (replicates, clusters)
    assert np.all(weights.sum(axis=1) == clusters)
    # Each cluster's count in a resample is Binomial(n, 1/n).
    counts = weights.ravel().astype(int)
    top = 6
    observed = np.bincount(np.minimum(counts, top), minlength=top + 1)
    pmf = sp.binom.pmf(np.arange(top), clusters, 1 / clusters)
    expected = np.append(pmf, 1 - pmf.sum()) * counts.size
    assert sp.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("seed", range(6))
def test_ranks_and_spearman_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    # Rounded so that ties are common, as with prices and whole minutes.
    x = np.round(rng.lognormal(0, 1, n), 1 if seed % 2 else 0)
    y = np.round(x * rng.uniform(0.5, 1.5, n) + rng.normal(0, 1, n), 0)
    expected_ranks = sp.rankdata(x, method="average")
    assert stats.average_ranks(list(x)) == pytest.approx(list(expected_ranks), abs=1e-12)
    assert stats._ranks(x) == pytest.approx(expected_ranks, abs=1e-12)
    rho = sp.spearmanr(x, y).statistic
    assert stats.spearman_rho(list(x), list(y)) == pytest.approx(rho, abs=1e-12)
    assert stats._rank_correlation(x, y) == pytest.approx(rho, abs=1e-12)


@pytest.mark.parametrize("n", (1, 2, 3, 10, 101))
def test_percentile_is_numpys_linear_one(n: int) -> None:
    values = sorted(np.random.default_rng(n).lognormal(0, 1, n))
    for q in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0):
        assert stats.percentile(values, q) == pytest.approx(np.percentile(values, 100 * q))
