"""Interval estimates and rank statistics used by the claim checks (numpy, no I/O)."""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from fractions import Fraction
from statistics import NormalDist
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

Z95: Final[float] = 1.959963984540054
BOOTSTRAP_REPLICATES: Final[int] = 1000
# Fixed so that the worker and the offline analyzer give the same interval for the same facts.
BOOTSTRAP_SEED: Final[int] = 20240724

FloatArray = npt.NDArray[np.float64]
BootstrapMethod = Literal["bca", "percentile"]
_NORMAL: Final = NormalDist()
#: The log of the largest float: `exp` of anything at or above it overflows.
_LOG_FLOAT_MAX: Final[float] = math.log(sys.float_info.max)


def wilson_interval(successes: float, trials: float, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (None without trials).

    Counts may be fractional: `cluster_wilson_interval` passes an effective sample size.
    """
    if trials <= 0:
        return None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# Below this many (effective) events on one side (1 to 3, as Brown, Cai and DasGupta cut), a
# share's interval end on that side is the exact Poisson one (`modified_wilson_interval`).
FEW_EVENTS: Final[float] = 4.0


def gamma_cdf(shape: float, x: float) -> float:
    """The regularized lower incomplete gamma function P(shape, x), by its power series
    (Abramowitz and Stegun 6.5.29): fast for the small shapes and x of `poisson_lower_bound`."""
    if x <= 0:
        return 0.0
    term = total = 1.0 / shape
    k = 0
    while term > 1e-16 * total and k < 10_000:
        k += 1
        term *= x / (shape + k)
        total += term
    return min(1.0, math.exp(shape * math.log(x) - x - math.lgamma(shape)) * total)


def poisson_lower_bound(events: float, tail: float) -> float:
    """The exact one-sided lower bound of a Poisson mean from `events` seen (Garwood 1936): the
    `tail` quantile of Gamma(events, 1), i.e. the mean at which seeing `events` or more has
    probability `tail`. Fractional `events` (an effective count) interpolate; 0 for none."""
    if events <= 0:
        return 0.0
    low, high = 0.0, events + 10 * math.sqrt(events) + 10
    for _ in range(100):
        mid = (low + high) / 2
        if gamma_cdf(events, mid) < tail:
            low = mid
        else:
            high = mid
    return low


def modified_wilson_interval(
    successes: float, trials: float, z: float = Z95
) -> tuple[float, float] | None:
    """Wilson's interval with the exact Poisson end on a side with fewer than FEW_EVENTS events.

    Near 0 a share's count is a rare-event count whose distribution is skewed to the right;
    Wilson's score is symmetric, so its lower end sits too high: at the worst truth it lies
    above it with probability 16% after 1 hit, 10% after 2, 8% after 3 (then 7% after 4, 5%
    after 10, 3.4% after 50), where a one-sided verdict needs 2.5%. With fewer than
    FEW_EVENTS hits the lower end is instead the exact Poisson bound
    `poisson_lower_bound(hits, tail) / trials` (below the binomial exact one, so never
    liberal), and with fewer than FEW_EVENTS misses the upper end likewise: Brown, Cai and
    DasGupta (2001) modify Wilson this way at 1-3 events. A higher cut would hold the worst
    case at more events but over-covers at the truths streams have (an impulse stream's ~4
    size refunds covered 100% of the time with a cut at 10). Wilson's upper end after few
    hits is already slightly conservative and kept. Counts may be fractional (an effective
    sample size).
    """
    interval = wilson_interval(successes, trials, z)
    if interval is None:
        return None
    low, high = interval
    tail = _NORMAL.cdf(-z)
    if successes < FEW_EVENTS:
        low = min(low, poisson_lower_bound(successes, tail) / trials)
    misses = trials - successes
    if misses < FEW_EVENTS:
        high = max(high, 1.0 - poisson_lower_bound(misses, tail) / trials)
    return max(0.0, low), min(1.0, high)


def design_effect(hits: Sequence[float], trials: Sequence[float]) -> float:
    """Design effect of a share pooled over clusters: cluster-robust variance / binomial one.

    The share p = sum(hits) / sum(trials) is a ratio estimator; its linearised variance over
    G independent clusters is G/(G-1) * sum((h_g - p t_g)^2) / N^2 (the usual cluster-robust
    "sandwich" form). Divided by the binomial p(1-p)/N it gives the design effect; floored at
    1 (never narrower than Wilson on independent cases), 1 with fewer than 2 clusters or when
    p is 0 or 1 (no variance to estimate).
    """
    h = np.asarray(hits, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    g = h.size
    n = float(t.sum())
    if g < 2 or n <= 0:
        return 1.0
    p = float(h.sum()) / n
    binomial = p * (1 - p) / n
    if binomial <= 0:
        return 1.0
    resid = h - p * t
    robust = g / (g - 1) * float(resid @ resid) / (n * n)
    return max(1.0, robust / binomial)


def cluster_wilson_interval(
    hits: Sequence[float], trials: Sequence[float], z: float = Z95
) -> tuple[float, float] | None:
    """Wilson score interval on the effective sample size N / deff (Korn and Graubard 1998).

    `hits[g]` of `trials[g]` cases fall in cluster g (e.g. the orders of one session). Cases
    of one cluster are not independent, so the plain Wilson interval, which counts every case
    as one independent draw, is too narrow; shrinking N by the design effect keeps Wilson's
    behaviour near 0 and 1 and its bounds in [0, 1].
    """
    n = float(sum(trials))
    if n <= 0 or len(trials) < 2:
        # One cluster shows no spread between clusters: Wilson on its cases would speak as if
        # they were independent draws, so there is no interval rather than a falsely narrow one.
        return None
    n_eff = n / design_effect(hits, trials)
    return modified_wilson_interval(float(sum(hits)) / n * n_eff, n_eff, z)


def _cluster_index(keys: Sequence[Hashable]) -> npt.NDArray[np.int64]:
    """Cluster numbers 0..G-1 in order of first appearance (any hashable keys, tuples too)."""
    ids: dict[Hashable, int] = {}
    return np.fromiter((ids.setdefault(k, len(ids)) for k in keys), dtype=np.int64, count=len(keys))


def _clustered_sum_of_squares(resid: FloatArray, keys: Sequence[Hashable]) -> float:
    """G/(G-1) * sum over clusters of (the cluster's summed residual)^2."""
    index = _cluster_index(keys)
    sums = np.bincount(index, weights=resid)
    g = sums.size
    return g / (g - 1) * float(sums @ sums) if g > 1 else math.inf


#: One clustering's sums (`cluster_sums`): clusters G, and over them the sums of h^2, h n and
#: n^2 of each cluster's total h (hits, or a value) and its n cases. Integers when the cases
#: are, so that a sum's parts can be folded apart and added back exactly (docs/design.md,
#: "Intervals from summaries").
ClusterSums = tuple[int, int, int, int]


def cluster_sums(totals: Iterable[Sequence[int]]) -> ClusterSums:
    """`ClusterSums` of clusters given by their (h, n) totals."""
    g = h2 = hn = n2 = 0
    for h, n in totals:
        g += 1
        h2 += h * h
        hn += h * n
        n2 += n * n
    return g, h2, hn, n2


def user_cluster_sums(by_user: Mapping[str, Sequence[int]]) -> ClusterSums:
    """`ClusterSums` of per-user (h, n) rows, with the retired users' clusters that a part
    carries as their `ClusterSums` under the empty user id (`ledger.RETIRED_USERS`)."""
    retired = by_user.get("")
    sums = cluster_sums(row for user, row in by_user.items() if user != "")
    if retired is None:
        return sums
    return add_cluster_sums(sums, (retired[0], retired[1], retired[2], retired[3]))


def add_cluster_sums(a: ClusterSums, b: ClusterSums) -> ClusterSums:
    """The sums of two disjoint sets of clusters."""
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


def _residual_sum_of_squares(sums: ClusterSums, total_h: int, cases: int) -> float:
    """G/(G-1) * sum over clusters of (h_c - p n_c)^2, p = total_h / cases, from the sums:
    N^2 sum (h - p n)^2 = N^2 sum h^2 - 2 H N sum h n + H^2 sum n^2, exact in integers
    (`_clustered_sum_of_squares` of the case residuals, without the cases); inf for G < 2."""
    g, h2, hn, n2 = sums
    if g <= 1:
        return math.inf
    exact = cases * cases * h2 - 2 * total_h * cases * hn + total_h * total_h * n2
    return g / (g - 1) * (exact / (cases * cases))


def cluster_wilson_from_sums(
    hits: int, cases: int, sums: ClusterSums, z: float = Z95
) -> tuple[float, float] | None:
    """`cluster_wilson_interval` of clusters given by their `ClusterSums` (hits as h): the
    same design effect, its residual sum of squares in exact integers."""
    g = sums[0]
    if cases <= 0 or g < 2:
        return None
    p = hits / cases
    binomial = p * (1 - p) / cases
    deff = 1.0
    if binomial > 0:
        robust = _residual_sum_of_squares(sums, hits, cases) / (cases * cases)
        deff = max(1.0, robust / binomial)
    n_eff = cases / deff
    return modified_wilson_interval(hits / cases * n_eff, n_eff, z)


def _two_way_cluster_pairs(
    hits: Sequence[float], first: Sequence[Hashable], second: Sequence[Hashable]
) -> tuple[ClusterSums, ClusterSums, ClusterSums]:
    """The `ClusterSums` of cases (hit counts or integer values) clustered by `first`, by
    `second` and by the pair."""
    out: list[ClusterSums] = []
    for keys in (first, second, list(zip(first, second, strict=True))):
        totals: dict[Hashable, list[int]] = {}
        for hit, key in zip(hits, keys, strict=True):
            row = totals.get(key)
            if row is None:
                totals[key] = [int(hit), 1]
            else:
                row[0] += int(hit)
                row[1] += 1
        out.append(cluster_sums(totals.values()))
    return out[0], out[1], out[2]


def two_way_wilson_interval(
    hits: Sequence[bool], first: Sequence[Hashable], second: Sequence[Hashable], z: float = Z95
) -> tuple[float, float] | None:
    """Wilson on N / deff with a design effect from two crossed clusterings of the cases
    (`two_way_wilson_from_sums`, whose sums are taken here from the cases)."""
    if not hits:
        return None
    one, two, both = _two_way_cluster_pairs(hits, first, second)
    return two_way_wilson_from_sums(sum(bool(h) for h in hits), len(hits), one, two, both, z)


def two_way_wilson_from_sums(
    total_hits: int,
    cases: int,
    first: ClusterSums,
    second: ClusterSums,
    pairs: ClusterSums,
    z: float = Z95,
) -> tuple[float, float] | None:
    """Wilson on N / deff with a design effect from two crossed clusterings of the cases,
    from their hits, their number and each clustering's `ClusterSums` (hits as h).

    Each case (e.g. a session order) belongs to a cluster of `first` (its session) and one
    of `second` (its buyer, who orders in several sessions). The cluster-robust variance of
    the share is V1 + V2 - V12 (Cameron, Gelbach and Miller 2011), each V the sandwich sum
    of squared cluster residual totals over N^2, V12 clustered by the pair; the design effect
    is that over p(1-p)/N, floored at 1, and the interval is Wilson on the effective N.

    None with fewer than two clusters of `first`: one session shows nothing of the spread
    between sessions, and Wilson on its cases would silently pass for the clustered interval.
    With one cluster of `second` (one buyer), the one-way variance by `first` is used.
    """
    n = cases
    if n == 0 or first[0] < 2:
        return None
    p = total_hits / n
    binomial = p * (1 - p) / n
    deff = 1.0
    if binomial > 0:
        one_way = _residual_sum_of_squares(first, total_hits, n)
        by_second = _residual_sum_of_squares(second, total_hits, n)
        if math.isfinite(by_second):
            both = _residual_sum_of_squares(pairs, total_hits, n)
            robust = (one_way + by_second - both) / (n * n)
        else:
            robust = one_way / (n * n)
        if math.isfinite(robust):
            deff = max(1.0, robust / binomial)
    n_eff = n / deff
    return modified_wilson_interval(p * n_eff, n_eff, z)


def jackknife_acceleration(values: FloatArray) -> float:
    """BCa's acceleration from leave-one-cluster-out values: sum(d^3) / (6 sum(d^2)^1.5),
    d = mean - value (Efron and Tibshirani 1993, eq. 14.15); 0 when the values do not vary."""
    finite = values[np.isfinite(values)]
    d = finite.mean() - finite if finite.size else finite
    ss = float(d @ d)
    return float(np.sum(d**3)) / (6 * ss**1.5) if ss > 0 else 0.0


def bca_levels(z0: float, acceleration: float, level: float = 0.95) -> tuple[float, float]:
    """The percentiles of the bootstrap distribution that BCa reads its interval from.

    alpha_i = Phi(z0 + (z0 + z_i) / (1 - a (z0 + z_i))) for z_i = Phi^-1(alpha/2), Phi^-1(1 -
    alpha/2) (Efron and Tibshirani 1993, eq. 14.10); with z0 = a = 0 the percentile interval.
    """
    out: list[float] = []
    for tail in ((1 - level) / 2, (1 + level) / 2):
        zt = _NORMAL.inv_cdf(tail)
        shifted = z0 + zt
        denom = 1 - acceleration * shifted
        # A huge acceleration would bend the level past the end of the distribution.
        out.append(_NORMAL.cdf(z0 + shifted / denom) if denom > 0 else (0.0 if zt < 0 else 1.0))
    return out[0], out[1]


def bootstrap_weights(rng: np.random.Generator, clusters: int, replicates: int) -> FloatArray:
    """How many times each of `clusters` clusters is drawn in each of `replicates` resamples
    of size `clusters` with replacement (rows: replicates). Multinomial counts, built from
    uniform indices with one bincount: `Generator.multinomial` is ten times slower for the
    thousands of users a long stream has."""
    draws = rng.integers(0, clusters, size=(replicates, clusters))
    draws += np.arange(replicates)[:, np.newaxis] * clusters
    counts = np.bincount(draws.ravel(), minlength=replicates * clusters)
    return counts.reshape(replicates, clusters).astype(np.float64)


def cluster_bootstrap_interval(
    clusters: Sequence[Sequence[float]],
    statistic: Callable[[FloatArray], FloatArray],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
    method: BootstrapMethod = "bca",
) -> tuple[float, float] | None:
    """Bootstrap over clusters (e.g. sessions), resampled whole; BCa unless asked otherwise.

    `clusters` holds one row of additive sums per cluster; `statistic` maps an array of
    column totals (one row per replicate) to the figure, NaN where it is undefined.
    Resampling whole clusters keeps the dependence between viewers of one session. BCa
    (bias-corrected and accelerated, Efron 1987) corrects the percentile interval for the
    skew of means of long-tailed amounts and times, which the plain percentile interval
    under-covers on streams of ~100 sessions; its acceleration comes from the jackknife over
    clusters, cheap here because the statistic only needs column totals minus one row.
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
        weights = bootstrap_weights(rng, n, size)
        values.append(statistic(weights @ rows))
        done += size
    estimates = np.concatenate(values)
    estimates = estimates[np.isfinite(estimates)]
    if estimates.size < replicates // 2:
        return None
    levels = ((1 - level) / 2, (1 + level) / 2)
    if method == "bca":
        totals = rows.sum(axis=0)
        theta = float(statistic(totals[np.newaxis, :])[0])
        if not math.isfinite(theta):
            return None
        b = estimates.size
        below = np.count_nonzero(estimates < theta) + 0.5 * np.count_nonzero(estimates == theta)
        # Clipped so that a statistic on the edge of its bootstrap distribution stays finite.
        z0 = _NORMAL.inv_cdf(min(max(below / b, 1 / (b + 1)), b / (b + 1)))
        acceleration = jackknife_acceleration(statistic(totals[np.newaxis, :] - rows))
        levels = bca_levels(z0, acceleration, level)
    low, high = np.quantile(estimates, levels)
    return float(low), float(high)


def ratio_standard_error(y: Sequence[float] | FloatArray, m: Sequence[float] | FloatArray) -> float:
    """Cluster-robust (linearised) standard error of R = sum(y) / sum(m) over G clusters:
    sqrt(G/(G-1) * sum((y_g - R m_g)^2)) / sum(m); NaN with fewer than 2 clusters or no m."""
    yy = np.asarray(y, dtype=np.float64)
    mm = np.asarray(m, dtype=np.float64)
    g, total = yy.size, float(mm.sum())
    if g < 2 or total == 0:
        return math.nan
    resid = yy - float(yy.sum()) / total * mm
    return math.sqrt(g / (g - 1) * float(resid @ resid)) / total


def cluster_ratio_t_interval(
    clusters: Sequence[Sequence[float]],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
    se_floor: float = 0.0,
    whole: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """Studentized (bootstrap-t) interval over clusters for a ratio of totals sum(y) / sum(m).

    Each cluster g gives (y_g, m_g), e.g. a session's GMV and order count. The standard error
    is the cluster-robust linearised one, se = sqrt(G/(G-1) sum(e_g^2)) / sum(m), e_g = y_g -
    R m_g; each bootstrap replicate (clusters resampled whole) computes t* = (R* - R) / se*
    with its own se*, and the interval is [R - t*_hi se, R - t*_lo se] (Davison and Hinkley
    1997, section 5.2). For means of long-tailed amounts and times over some dozens of
    sessions the sample spread is often too small, and percentile or BCa intervals built on
    it under-cover; the t* distribution carries that uncertainty. Every replicate needs only
    totals of (y, m, y^2, y m, m^2), so it costs one matrix product.

    `se_floor`: when the cases are clustered in a second way that these rows cannot show (e.g.
    rows are users, and users' visits also share sessions), the larger two-way standard error
    (`two_way_mean_se`) scales the t* quantiles instead of the one-way se; the t* distribution
    still brings the skew of the one-way resampling.

    `whole`: (R, se) of a larger set of clusters of which `clusters` are the ones still held
    as rows (the user horizon's kept users; the retired ones are in sums only): the interval
    is then centred on that R and scaled by that se (or `se_floor`), the t* quantiles taken
    from the held rows' resampling (docs/design.md, "The user horizon").
    """
    quantiles = cluster_ratio_t_quantiles(clusters, replicates, seed, level)
    if quantiles is None:
        return None
    data = np.asarray(clusters, dtype=np.float64)
    y, m = data[:, 0], data[:, 1]
    center = float(y.sum() / m.sum())
    se = ratio_standard_error(y, m)
    if whole is not None and math.isfinite(whole[1]):
        center, se = whole
    return t_interval(center, se, quantiles, se_floor)


def t_interval(
    center: float, se: float, quantiles: tuple[float, float], se_floor: float = 0.0
) -> tuple[float, float]:
    """[R - t*_hi s, R - t*_lo s] of `cluster_ratio_t_interval`, s the larger of `se` and
    `se_floor`, from the t* quantiles (`cluster_ratio_t_quantiles`)."""
    scale = max(se, se_floor) if math.isfinite(se_floor) else se
    t_low, t_high = quantiles
    return center - t_high * scale, center - t_low * scale


def cluster_ratio_t_quantiles(
    clusters: Sequence[Sequence[float]],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """The t* quantiles (lower, upper) of `cluster_ratio_t_interval`'s resampling of
    `clusters`, None where it has no interval: all the interval keeps of the rows once its
    centre and se are known from sums (a frozen part folded into them, `metrics`)."""
    data = np.asarray(clusters, dtype=np.float64)
    g = data.shape[0]
    if g < 2:
        return None
    y, m = data[:, 0], data[:, 1]
    cols = np.column_stack([y, m, y * y, y * m, m * m])
    factor = g / (g - 1)

    def ratio_and_se(totals: FloatArray) -> tuple[FloatArray, FloatArray]:
        ratio = safe_divide(totals[:, 0], totals[:, 1])
        sq = totals[:, 2] - 2 * ratio * totals[:, 3] + ratio * ratio * totals[:, 4]
        se = safe_divide(np.sqrt(np.maximum(sq, 0.0) * factor), totals[:, 1])
        return ratio, se

    r = float(y.sum() / m.sum()) if m.sum() else math.nan
    se = ratio_standard_error(y, m)
    if not (math.isfinite(r) and math.isfinite(se)) or se <= 0:
        return None
    rng = np.random.default_rng(seed)
    weights = bootstrap_weights(rng, g, replicates)
    boot, boot_se = ratio_and_se(weights @ cols)
    t = safe_divide(boot - r, boot_se)
    t = t[np.isfinite(t)]
    if t.size < replicates // 2:
        return None
    t_low, t_high = np.quantile(t, [(1 - level) / 2, (1 + level) / 2])
    return float(t_low), float(t_high)


def ratio_se_from_sums(sums: ClusterSums, total: int, cases: int) -> float:
    """`ratio_standard_error` of integer cluster totals (h: value, n: cases) from their
    `ClusterSums`, the ratio total / cases; inf with fewer than 2 clusters."""
    if cases == 0:
        return math.nan
    return math.sqrt(_residual_sum_of_squares(sums, total, cases)) / cases


def day_ratio_intervals(
    groups: Sequence[Sequence[Sequence[float]]], level: float = 0.95
) -> list[tuple[float, float] | None]:
    """Intervals for a positive ratio of totals sum(y) / sum(m) in each of several groups of
    clusters (e.g. the AOV of each judged day from its sessions' (GMV, orders)), at any level.

    Each group's R = sum(y) / sum(m) gets a log-scale interval R exp(-/+ t se_rel) with t from
    Student's t on G - 1 degrees of freedom for its G clusters (the usual small-G reference
    for a cluster-robust se). se_rel is the larger of the group's own cluster-robust relative
    se (`ratio_standard_error` / R) and the one the pooled relative spread of every group's
    clusters implies for it, sqrt(G/(G-1) v sum(m_g^2)) / sum(m), v = sum over all clusters
    of ((y_g - R m_g) / R)^2 / sum of m_g^2. Why: with a handful of sessions of right-skewed
    amounts, a day without a big order has a low mean and a low spread together, so its own
    se is too small just when its upper end decides "below the bar" (a true AOV of exactly
    500 was called below 8-12% of the time at a nominal 2.5%; with the floor, under 1%). The
    log scale keeps the interval positive and longer above than below. A bootstrap cannot be
    used here: at a Bonferroni level such as 1 - 0.05/30 from 5-8 sessions it has too few
    distinct resamples to reach the tail (it gave AOV intervals from -1,200 to 40,000 CNY).
    None for a group with fewer than 2 clusters or a ratio that is not positive, and for one
    whose upper end is past the largest float (e.g. 2 sessions at a Bonferroni level over 150
    days: t on 1 degree of freedom is ~18,000): such an interval says as little as none, and
    the verdict reads both alike (neither wholly below nor wholly at or above the bar).
    """
    arrays = [np.asarray(rows, dtype=np.float64).reshape(-1, 2) for rows in groups]
    rel_sq = m_sq = 0.0
    ratios: list[float] = []
    for data in arrays:
        total_m = float(data[:, 1].sum())
        r = float(data[:, 0].sum()) / total_m if total_m > 0 else math.nan
        ratios.append(r)
        if r > 0 and data.shape[0] >= 2:
            resid = (data[:, 0] - r * data[:, 1]) / r
            rel_sq += float(resid @ resid)
            m_sq += float(data[:, 1] @ data[:, 1])
    pooled = rel_sq / m_sq if m_sq > 0 else 0.0
    out: list[tuple[float, float] | None] = []
    for data, r in zip(arrays, ratios, strict=True):
        g = data.shape[0]
        se = ratio_standard_error(data[:, 0], data[:, 1])
        if g < 2 or not (r > 0 and math.isfinite(se)):
            out.append(None)
            continue
        pooled_rel = math.sqrt(g / (g - 1) * pooled * float(data[:, 1] @ data[:, 1]))
        rel = max(se / r, pooled_rel / float(data[:, 1].sum()))
        half = student_t_quantile((1 + level) / 2, g - 1) * rel
        if half + math.log(r) >= _LOG_FLOAT_MAX:
            out.append(None)
            continue
        out.append((r * math.exp(-half), r * math.exp(half)))
    return out


#: A ratio's clusters as integer sums: G, y, m, y^2, y m, m^2 (`day_ratio_intervals_from_sums`).
RatioSums = tuple[int, int, int, int, int, int]


def ratio_sums(clusters: Iterable[Sequence[int]]) -> RatioSums:
    """`RatioSums` of clusters given by their (y, m) totals (e.g. a session's GMV and orders)."""
    g = y = m = y2 = ym = m2 = 0
    for cy, cm in clusters:
        g += 1
        y += cy
        m += cm
        y2 += cy * cy
        ym += cy * cm
        m2 += cm * cm
    return g, y, m, y2, ym, m2


def _ratio_rss(sums: RatioSums) -> float:
    """sum over the clusters of (y_g - R m_g)^2, R = y / m, from their sums: computed in
    exact integers as (m^2 sum y^2 - 2 y m sum y m + y^2 sum m^2) / m^2."""
    _g, y, m, y2, ym, m2 = sums
    return (m * m * y2 - 2 * y * m * ym + y * y * m2) / (m * m)


def day_ratio_intervals_from_sums(
    groups: Sequence[RatioSums], level: float = 0.95
) -> list[tuple[float, float] | None]:
    """`day_ratio_intervals` of groups given by their clusters' `RatioSums` (a day whose
    sessions were retired into sums): the same intervals, each residual sum of squares
    from exact integers."""
    rel_sq = m_sq = 0.0
    ratios: list[float] = []
    for g, y, m, _y2, _ym, m2 in groups:
        r = y / m if m > 0 else math.nan
        ratios.append(r)
        if r > 0 and g >= 2:
            rel_sq += _ratio_rss((g, y, m, _y2, _ym, m2)) / (r * r)
            m_sq += float(m2)
    pooled = rel_sq / m_sq if m_sq > 0 else 0.0
    out: list[tuple[float, float] | None] = []
    for sums, r in zip(groups, ratios, strict=True):
        g, _y, m, _y2, _ym, m2 = sums
        if g < 2 or m == 0 or not r > 0:
            out.append(None)
            continue
        se = math.sqrt(g / (g - 1) * max(_ratio_rss(sums), 0.0)) / m
        pooled_rel = math.sqrt(g / (g - 1) * pooled * m2)
        rel = max(se / r, pooled_rel / m)
        half = student_t_quantile((1 + level) / 2, g - 1) * rel
        if half + math.log(r) >= _LOG_FLOAT_MAX:
            out.append(None)
            continue
        out.append((r * math.exp(-half), r * math.exp(half)))
    return out


def two_way_mean_se(
    values: Sequence[float], first: Sequence[Hashable], second: Sequence[Hashable]
) -> float:
    """Two-way cluster-robust standard error of the mean of case values.

    Each case (e.g. a member's watch time in one session) belongs to a cluster of `first`
    (its session) and one of `second` (its user). Variance V1 + V2 - V12 (Cameron, Gelbach
    and Miller 2011) of the residuals from the mean, each V the sandwich sum of squared
    cluster totals (`_clustered_sum_of_squares`) over N^2, V12 clustered by the pair; NaN
    with fewer than 2 cases or clusters. Negative two-way sums (possible in small samples)
    fall back to the larger one-way variance.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n < 2:
        return math.nan
    resid = v - v.mean()
    one = _clustered_sum_of_squares(resid, first)
    two = _clustered_sum_of_squares(resid, second)
    both = _clustered_sum_of_squares(resid, list(zip(first, second, strict=True)))
    if not (math.isfinite(one) and math.isfinite(two) and math.isfinite(both)):
        return math.nan
    total = one + two - both
    if total <= 0:
        total = max(one, two)
    return math.sqrt(total) / n


def two_way_mean_se_from_sums(
    total: int, cases: int, first: ClusterSums, second: ClusterSums, pairs: ClusterSums
) -> float:
    """`two_way_mean_se` of integer case values from their total, their number and each
    clustering's `ClusterSums` (a cluster's summed values as h): exact sums, so that the
    sums of folded cases can be added to the held ones (docs/design.md)."""
    if cases < 2:
        return math.nan
    one = _residual_sum_of_squares(first, total, cases)
    two = _residual_sum_of_squares(second, total, cases)
    both = _residual_sum_of_squares(pairs, total, cases)
    if not (math.isfinite(one) and math.isfinite(two) and math.isfinite(both)):
        return math.nan
    variance = one + two - both
    if variance <= 0:
        variance = max(one, two)
    return math.sqrt(variance) / cases


def rate_score_interval(
    clusters: Sequence[Sequence[float]], amounts: Sequence[float], z: float = Z95
) -> tuple[float, float] | None:
    """Score interval for a ratio sum(y) / sum(m) whose numerator is a sum of rare amounts.

    y_g is the sum of a few events' amounts in cluster g (e.g. orders paid after a session
    closed), m_g an exposure (e.g. the session's live GMV). With a handful of events, or none,
    interval methods built on the observed spread collapse (no event: no spread, an interval
    [0, 0]). As Wilson's interval for a share does, the score interval uses the variance the
    hypothesised value implies: the numerator is taken as compound Poisson, variance = mean x
    c with c = sum(a^2) / sum(a) over `amounts` (the amounts such events have, e.g. every
    order of the same sessions), and c is multiplied by the design effect of the clusters
    (cluster-robust variance of the ratio over the compound-Poisson one, floored at 1, as in
    `cluster_wilson_interval`). The interval is {x: (Y - x)^2 <= z^2 c x} / M, i.e.
    (Y + z^2 c / 2 +/- z sqrt(c Y + z^2 c^2 / 4)) / M; with no event, [0, z^2 c / M]. With
    c = 1 it is the score interval for a Poisson mean. None without exposure or amounts, or
    with fewer than 2 clusters.
    """
    whole = [round(a) for a in amounts]
    if whole == list(amounts):  # integer amounts (cents): their sums exact
        return rate_score_from_sums(clusters, len(whole), sum(whole), sum(a * a for a in whole), z)
    a = np.asarray(amounts, dtype=np.float64)
    return rate_score_from_sums(clusters, a.size, float(a.sum()), float(a @ a), z)


def rate_score_from_sums(
    clusters: Sequence[Sequence[float]],
    count: int,
    amount_sum: float,
    amount_squares: float,
    z: float = Z95,
) -> tuple[float, float] | None:
    """`rate_score_interval` from the amounts' count, sum and sum of squares (what a folded
    session keeps of its orders' amounts)."""
    data = np.asarray(clusters, dtype=np.float64).reshape(-1, 2)
    total_y, total_m = float(data[:, 0].sum()), float(data[:, 1].sum())
    # One cluster: no design effect can be estimated, and the unclustered interval would
    # silently pass for the clustered one.
    if total_m <= 0 or count == 0 or amount_sum <= 0 or data.shape[0] < 2:
        return None
    robust = ratio_standard_error(data[:, 0], data[:, 1]) ** 2
    return _rate_score(total_y, total_m, robust, amount_sum, amount_squares, z)


def rate_score_from_moments(
    moments: Sequence[int],
    scale: int,
    count: int,
    amount_sum: int,
    amount_squares: int,
    z: float = Z95,
) -> tuple[float, float] | None:
    """`rate_score_from_sums` of the clusters (y_g, scale x_g) whose (y, x) integer rows have
    these `row_moments`: the cluster-robust variance needs only G and the sums of y, x, y^2,
    y x, x^2, and sum((y - R m)^2) = (M^2 Syy - 2 Y M Sym + Y^2 Smm) / M^2 is computed in
    exact integers (so from bounded, mergeable state, to the last bit of the rows')."""
    g, total_y, total_x, syy, syx, sxx = (int(v) for v in moments[:6])
    total_m = scale * total_x
    if total_m <= 0 or count == 0 or amount_sum <= 0 or g < 2:
        return None
    residual_ss = Fraction(
        total_m * total_m * syy
        - 2 * total_y * total_m * scale * syx
        + total_y * total_y * scale * scale * sxx,
        total_m * total_m,
    )
    robust = g / (g - 1) * float(residual_ss) / (float(total_m) * float(total_m))
    return _rate_score(float(total_y), float(total_m), robust, amount_sum, amount_squares, z)


def _rate_score(
    total_y: float,
    total_m: float,
    robust: float,
    amount_sum: float,
    amount_squares: float,
    z: float,
) -> tuple[float, float] | None:
    c = amount_squares / amount_sum
    compound = c * total_y / (total_m * total_m)
    if compound > 0 and math.isfinite(robust):
        c *= max(1.0, robust / compound)
    half = z * math.sqrt(c * total_y + z * z * c * c / 4)
    centre = total_y + z * z * c / 2
    return max(0.0, centre - half) / total_m, (centre + half) / total_m


def student_t_quantile(p: float, df: float) -> float:
    """The p-quantile (p in (0.5, 1)) of Student's t with `df` degrees of freedom (real, >= 1).

    Newton's method on the CDF, 0.5 + the integral of the density from 0 (Simpson's rule on
    2000 panels), from the Cornish-Fisher start; within 1e-8 of scipy's for p <= 0.995 and
    df <= 1e5, 1e-6 out to p = 0.999 at df = 1 and df = 1e7 (tests/agents/core/
    test_stats_vs_scipy.py). numpy only: the worker does not depend on scipy for one quantile.
    """
    z = _NORMAL.inv_cdf(p)
    if not math.isfinite(df) or df > 1e7:
        return z
    df = max(df, 1.0)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(t: FloatArray) -> FloatArray:
        return np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df))

    def cdf(t: float) -> float:
        x = np.linspace(0.0, t, 2001)
        y = density(x)
        simpson = float(y[0] + y[-1]) + 4 * float(y[1:-1:2].sum()) + 2 * float(y[2:-1:2].sum())
        return 0.5 + float(x[1] - x[0]) / 3 * simpson

    t = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    for _ in range(50):
        step = (cdf(t) - p) / float(density(np.array([t]))[0])
        t = max(t - step, z)  # the t quantile is never below the normal one
        if abs(step) < 1e-10:
            break
    return t


def satterthwaite_df(influence: FloatArray) -> float:
    """Degrees of freedom of a cluster-robust variance sum(u_g^2), by matching moments.

    The variance estimate is taken as V chi2_nu / nu, nu = 2 E[sum u^2]^2 / var(sum u^2)
    (Satterthwaite 1946), with var(sum u^2) = G var(u^2) estimated from the sample of squared
    cluster influences. For normal influences nu is about G; when a few clusters carry most of
    the variance (a mean of zero-inflated, long-tailed spend with a handful of spenders) nu is
    small and the interval widens as it should. Capped at G - 1, floored at 1.
    """
    u2 = np.asarray(influence, dtype=np.float64) ** 2
    g = u2.size
    if g < 3:
        return 1.0
    spread = float(np.var(u2, ddof=1)) * g
    if spread <= 0:
        return float(g - 1)
    return float(min(g - 1, max(1.0, 2 * float(u2.sum()) ** 2 / spread)))


def log_ratio_interval(
    rows: Sequence[Sequence[float]],
    exponents: Sequence[int],
    z: float = Z95,
    clusters: Sequence[Hashable] | None = None,
    small_sample: bool = True,
    retired: Sequence[float] | None = None,
) -> tuple[float, float] | None:
    """Delta-method interval for a product of column totals raised to +/-1, e.g. (A/B)/(C/D).

    The statistic is prod(total_j ** exponents[j]). Its log is linearised (influence of row
    i: sum_j e_j * x_ij / total_j); the influences are summed within each cluster (rows of
    one cluster, e.g. one user's rows in several months, are not independent), the variance
    is the number of clusters times the sample variance of the cluster sums, and the interval
    is exp(log R +/- q * se). Without `clusters` every row is its own cluster. O(n), for
    populations too large to bootstrap on every report.

    q is Student's t quantile with the Satterthwaite degrees of freedom of the variance
    (`satterthwaite_df`), or z without `small_sample`. A mean of zero-inflated, long-tailed
    amounts (members' monthly spend, most of it zero) over a few dozen units has its variance
    carried by a handful of spenders: the estimate of se is then itself uncertain, and too
    small exactly when the sample missed the big spenders; z covered 86% there, t(nu) 92%.
    With many spenders nu is large and q is z.

    `retired`: more clusters given by their moments instead of rows (the user horizon's
    retired users, docs/design.md): G, then the sums of x_j, x_j x_k and x_j x_k x_l x_m
    over them (`moment_columns` of the rows' width, in its order). The interval is the one
    those G rows would give (exactly, up to rounding); the exponents must sum to 0 (so the
    mean influence is 0 and the moments need no centring), as a ratio of ratios' do.
    """
    if retired is not None and retired[0]:
        return _log_ratio_interval_with_moments(rows, exponents, retired, z, small_sample)
    data = np.asarray(rows, dtype=np.float64)
    if data.shape[0] < 2:
        return None
    totals = data.sum(axis=0)
    if np.any(totals <= 0):
        return None
    signs = np.asarray(exponents, dtype=np.float64)
    influence = (data / totals) @ signs
    if clusters is not None:
        influence = np.bincount(_cluster_index(clusters), weights=influence)
    n = influence.size
    if n < 2:
        return None
    se = math.sqrt(float(np.var(influence, ddof=1)) * n)
    log_r = float(np.log(totals) @ signs)
    if small_sample:
        z = student_t_quantile(_NORMAL.cdf(z), satterthwaite_df(influence - influence.mean()))
    return math.exp(log_r - z * se), math.exp(log_r + z * se)


def moment_columns(width: int) -> list[tuple[int, ...]]:
    """The column index tuples whose products' sums `log_ratio_interval`'s `retired` holds:
    (), each j, each j <= k, each j <= k <= l <= m."""
    return [
        (),
        *itertools.combinations_with_replacement(range(width), 1),
        *itertools.combinations_with_replacement(range(width), 2),
        *itertools.combinations_with_replacement(range(width), 4),
    ]


def _log_ratio_interval_with_moments(
    rows: Sequence[Sequence[float]],
    exponents: Sequence[int],
    retired: Sequence[float],
    z: float,
    small_sample: bool,
) -> tuple[float, float] | None:
    """`log_ratio_interval` of `rows` (each its own cluster) and the clusters in `retired`."""
    signs = np.asarray(exponents, dtype=np.float64)
    if float(signs.sum()) != 0:
        raise ValueError("moments need exponents that sum to 0")
    width = signs.size
    columns = moment_columns(width)
    if len(retired) != len(columns):
        raise ValueError(f"{len(columns)} moments expected, not {len(retired)}")
    moments = dict(zip(columns, retired, strict=True))
    data = np.asarray(rows, dtype=np.float64).reshape(-1, width)
    totals = data.sum(axis=0) + np.array([moments[(j,)] for j in range(width)])
    if np.any(totals <= 0):
        return None
    a = signs / totals
    influence = data @ a
    g = influence.size + int(retired[0])
    if g < 2:
        return None

    def retired_power_sum(order: int) -> float:
        # The sum over the retired clusters of u^order, u = sum_j a_j x_j: each index
        # multiset's moment times its multinomial count.
        out = 0.0
        for combo in itertools.combinations_with_replacement(range(width), order):
            count = math.factorial(order)
            for j in set(combo):
                count //= math.factorial(combo.count(j))
            coefficient = float(count)
            for j in combo:
                coefficient *= float(a[j])
            out += coefficient * moments[combo]
        return out

    sum_u = float(influence.sum()) + retired_power_sum(1)
    sum_u2 = float(influence @ influence) + retired_power_sum(2)
    variance = (sum_u2 - sum_u * sum_u / g) / (g - 1)
    se = math.sqrt(max(variance, 0.0) * g)
    log_r = float(np.log(totals) @ signs)
    if small_sample:
        # `satterthwaite_df` from the sums of u^2 and u^4 (the mean influence is 0).
        sum_u4 = float((influence**4).sum()) + retired_power_sum(4)
        spread = g / (g - 1) * (sum_u4 - sum_u2 * sum_u2 / g)
        if g < 3:
            df = 1.0
        elif spread <= 0:
            df = float(g - 1)
        else:
            df = float(min(g - 1, max(1.0, 2 * sum_u2**2 / spread)))
        z = student_t_quantile(_NORMAL.cdf(z), df)
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


def spearman_interval(
    rho: float, n: int, z: float = Z95, bound: float = 0.0
) -> tuple[float, float] | None:
    """Fisher-z interval for Spearman's rho, standard error sqrt(1.06 / (n - 3)).

    Fieller, Hartley and Pearson (1957) give var(z) ~ 1.06/(n-3) for rank correlations.
    With `bound` (rho known only within it of the rho of the pairs, e.g. a binned rho,
    `sketch.RankTable.bound`): the union of the intervals around every rho within it, i.e.
    from the lower end around rho - bound to the upper end around rho + bound.
    """
    if n < 4:
        return None
    half = z * math.sqrt(1.06 / (n - 3))
    low = math.atanh(min(max(rho - bound, -0.999999), 0.999999))
    high = math.atanh(min(max(rho + bound, -0.999999), 0.999999))
    return math.tanh(low - half), math.tanh(high + half)


def _ranks(values: FloatArray) -> FloatArray:
    """Average ranks 1..n (ties share the mean of their ranks), vectorised."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], ordered.size]
    ranks = np.empty(values.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _rank_correlation(x: FloatArray, y: FloatArray) -> float:
    rx, ry = _ranks(x), _ranks(y)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denom if denom else math.nan


def cluster_spearman_interval(
    xs: Sequence[float], ys: Sequence[float], clusters: Sequence[Hashable], z: float = Z95
) -> tuple[float, float] | None:
    """Fisher-z interval for Spearman's rho with a standard error that respects clusters.

    The iid standard error of z = atanh(rho) is sqrt(1.06 / (n - 3)) (Fieller, Hartley and
    Pearson 1957). Orders of one session share its audience and line-up, so pairs are not
    independent and that is too small; the delete-one-cluster jackknife of z, sqrt((G-1)/G
    sum (z_-g - mean)^2), measures the spread between sessions. The larger of the two is
    used (never narrower than the iid interval), and the interval is tanh(z +/- 1.96 se).
    """
    n = len(xs)
    if n < 4 or len(ys) != n or len(clusters) != n:
        return None
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    rho = _rank_correlation(x, y)
    if not math.isfinite(rho):
        return None
    se = math.sqrt(1.06 / (n - 3))
    index = _cluster_index(clusters)
    g = int(index.max()) + 1
    if g >= 3:
        leave_out = np.array(
            [_rank_correlation(x[index != k], y[index != k]) for k in range(g)], dtype=np.float64
        )
        zs = np.arctanh(np.clip(leave_out[np.isfinite(leave_out)], -0.999999, 0.999999))
        if zs.size >= 3:
            jack = math.sqrt((zs.size - 1) / zs.size * float(np.sum((zs - zs.mean()) ** 2)))
            se = max(se, jack)
    centre = math.atanh(min(max(rho, -0.999999), 0.999999))
    return math.tanh(centre - z * se), math.tanh(centre + z * se)


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


#: Row moments (`row_moments`): the monomials of a row's columns of degree 1 to
#: `MOMENT_DEGREE`, each index tuple in `combinations_with_replacement` order.
MOMENT_DEGREE: Final[int] = 4


def _monomials(columns: int) -> list[tuple[int, ...]]:
    return [
        combo
        for degree in range(1, MOMENT_DEGREE + 1)
        for combo in itertools.combinations_with_replacement(range(columns), degree)
    ]


def empty_moments(columns: int) -> tuple[int, ...]:
    """The moments of no rows: (clusters, then one sum per monomial of `_monomials`)."""
    return (0,) * (1 + len(_monomials(columns)))


def row_moments(rows: Iterable[Sequence[int]], columns: int) -> tuple[int, ...]:
    """Mergeable moments of integer rows, one row per cluster: their count and, for every
    monomial of the columns up to degree `MOMENT_DEGREE`, its sum over the rows (exact
    integers, so that the moments of disjoint sets of rows add: `add_moments`)."""
    monomials = _monomials(columns)
    out = [0] * (1 + len(monomials))
    for row in rows:
        out[0] += 1
        for k, combo in enumerate(monomials, start=1):
            product = 1
            for column in combo:
                product *= row[column]
            out[k] += product
    return tuple(out)


def add_moments(parts: Iterable[Sequence[int]]) -> tuple[int, ...]:
    """The moments of the union of disjoint sets of rows: their moments added."""
    out: list[int] | None = None
    for part in parts:
        out = list(part) if out is None else [a + b for a, b in zip(out, part, strict=True)]
    if out is None:
        raise ValueError("no moments to add")
    return tuple(out)


def _power_sums(moments: Sequence[int], weights: FloatArray) -> list[float]:
    """sum over rows of (weights . row)^d for d = 1..MOMENT_DEGREE, from the moments."""
    sums = [0.0] * (MOMENT_DEGREE + 1)
    for combo, value in zip(_monomials(weights.size), moments[1:], strict=True):
        if not value:
            continue
        # (w . x)^d expanded: each sorted index tuple once, times its multinomial count.
        count = math.factorial(len(combo))
        for column in set(combo):
            count //= math.factorial(combo.count(column))
        coefficient = float(count)
        for column in combo:
            coefficient *= float(weights[column])
        sums[len(combo)] += coefficient * value
    return sums


def moments_log_ratio_interval(
    moments: Sequence[int], exponents: Sequence[int], z: float = Z95, small_sample: bool = True
) -> tuple[float, float] | None:
    """`log_ratio_interval` of the rows whose `row_moments` these are, each row its own
    cluster, from the moments alone (so from bounded, mergeable state).

    The influence of row g on the log of prod(total_j ** e_j) is u_g = w . x_g with w_j =
    e_j / total_j, linear in the row given the totals, so sum(u^d) is a polynomial in the
    moments of degree d: d = 2 gives the variance, d = 4 Satterthwaite's degrees of freedom
    (with d = 1 and 3 to centre them)."""
    clusters = int(moments[0])
    signs = np.asarray(exponents, dtype=np.float64)
    columns = signs.size
    if clusters < 2:
        return None
    totals = np.asarray(moments[1 : 1 + columns], dtype=np.float64)
    if np.any(totals <= 0):
        return None
    _zero, s1, s2, s3, s4 = _power_sums(moments, signs / totals)
    n = float(clusters)
    mean = s1 / n
    # Centred power sums of the influences (the mean is 0 up to rounding when the exponents
    # add up to 0, as a ratio of ratios' do).
    c2 = max(0.0, s2 - n * mean * mean)
    c4 = s4 - 4 * mean * s3 + 6 * mean**2 * s2 - 4 * mean**3 * s1 + n * mean**4
    se = math.sqrt(c2 * n / (n - 1))
    log_r = float(np.log(totals) @ signs)
    if small_sample:
        if clusters < 3:
            df = 1.0
        else:
            spread = n / (n - 1) * (c4 - c2 * c2 / n)
            df = float(n - 1) if spread <= 0 else min(n - 1, max(1.0, 2 * c2 * c2 / spread))
        z = student_t_quantile(_NORMAL.cdf(z), df)
    return math.exp(log_r - z * se), math.exp(log_r + z * se)
