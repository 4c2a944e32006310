"""Interval methods against known values and against each other."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from agents.core.stats import (
    FEW_EVENTS,
    bca_levels,
    cluster_bootstrap_interval,
    cluster_ratio_t_interval,
    cluster_sums,
    cluster_wilson_from_sums,
    cluster_wilson_interval,
    day_ratio_intervals,
    day_ratio_intervals_from_sums,
    design_effect,
    gamma_cdf,
    jackknife_acceleration,
    log_ratio_interval,
    modified_wilson_interval,
    percentile,
    poisson_lower_bound,
    rate_score_interval,
    ratio_standard_error,
    ratio_sums,
    safe_divide,
    satterthwaite_df,
    spearman_interval,
    spearman_rho,
    student_t_quantile,
    two_way_mean_se,
    two_way_wilson_interval,
    wilson_interval,
)


def test_wilson_known_values() -> None:
    # 81 of 263: the worked example of Newcombe (1998), 0.2553 to 0.3662 with z = 1.96.
    low, high = wilson_interval(81, 263)  # type: ignore[misc]
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10)  # type: ignore[misc]
    assert low == 0.0 and 0.25 < high < 0.32


def test_poisson_lower_bounds_match_garwoods_table() -> None:
    # Exact 97.5% lower bounds of a Poisson mean after 1, 2, 3, 10 events (Garwood 1936; chi2
    # quantiles / 2): -ln(0.975) = 0.02532, 0.2422, 0.6187, 4.7954.
    for events, expected in ((1, 0.025318), (2, 0.242209), (3, 0.618672), (10, 4.795389)):
        assert poisson_lower_bound(events, 0.025) == pytest.approx(expected, abs=1e-5)
    assert poisson_lower_bound(0, 0.025) == 0.0
    assert gamma_cdf(1.0, 2.0) == pytest.approx(1 - math.exp(-2.0))


def test_modified_wilson_takes_the_exact_end_with_few_events() -> None:
    # 2 of 100: Wilson's lower end 0.0055 lies above a truth of 0.005 that gives 2 or more hits
    # 9% of the time; the exact Poisson end 0.2422 / 100 does not.
    wilson_low, wilson_high = wilson_interval(2, 100)  # type: ignore[misc]
    low, high = modified_wilson_interval(2, 100)  # type: ignore[misc]
    assert wilson_low > 0.005 > low == pytest.approx(0.0024221, abs=1e-6)
    assert high == wilson_high  # Wilson's end after few hits is kept
    # Few misses: the upper end is the mirror image.
    low, high = modified_wilson_interval(98, 100)  # type: ignore[misc]
    assert high == pytest.approx(1 - 0.0024221, abs=1e-6) and low == wilson_interval(98, 100)[0]  # type: ignore[index]
    # With FEW_EVENTS or more on both sides it is Wilson.
    assert modified_wilson_interval(FEW_EVENTS, 100) == wilson_interval(FEW_EVENTS, 100)
    assert modified_wilson_interval(81, 263) == wilson_interval(81, 263)
    assert modified_wilson_interval(0, 0) is None


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


def test_design_effect_and_cluster_wilson_by_hand() -> None:
    # Clusters (hits, trials): (1,2) (2,2) (0,2) (1,2). p = 4/8; residuals h - p t = 0, 1, -1, 0;
    # robust var = 4/3 * 2 / 8^2 = 1/24; binomial var = 0.25 / 8 = 1/32; deff = 32/24 = 4/3.
    hits, trials = [1, 2, 0, 1], [2, 2, 2, 2]
    assert design_effect(hits, trials) == pytest.approx(4 / 3)
    # N_eff = 8 / (4/3) = 6: 3 hits and 3 misses of 6, both under FEW_EVENTS, so both ends are
    # the exact Poisson ones, 0.6187 / 6 = 0.1031 and 1 - 0.1031 (Wilson: 0.1876 to 0.8124).
    low, high = cluster_wilson_interval(hits, trials)  # type: ignore[misc]
    assert low == pytest.approx(0.10311, abs=1e-4) and high == pytest.approx(0.89689, abs=1e-4)
    assert cluster_wilson_interval(hits, trials) == pytest.approx(modified_wilson_interval(3, 6))
    # Clusters that vary less than binomial ones never make the interval narrower.
    assert design_effect([1, 1, 1, 1], [2, 2, 2, 2]) == 1.0
    assert cluster_wilson_interval([1, 1, 1, 1], [2, 2, 2, 2]) == pytest.approx(
        modified_wilson_interval(4, 8)
    )
    # With 10 or more hits and misses the interval is Wilson's on N_eff.
    many = [12, 8, 10, 10]
    n_eff = 80 / design_effect(many, [20] * 4)
    assert cluster_wilson_interval(many, [20] * 4) == pytest.approx(
        wilson_interval(0.5 * n_eff, n_eff)
    )
    assert design_effect([0, 0], [3, 4]) == 1.0  # p = 0: nothing to estimate
    assert cluster_wilson_interval([], []) is None


def test_bca_pieces_by_hand() -> None:
    # Jackknife values 1, 2, 3, 6: mean 3, d = 2, 1, 0, -3; sum d^3 = -18, sum d^2 = 14;
    # a = -18 / (6 * 14^1.5) = -0.057271.
    assert jackknife_acceleration(np.array([1.0, 2.0, 3.0, 6.0])) == pytest.approx(
        -0.0572712, abs=1e-6
    )
    assert jackknife_acceleration(np.array([2.0, 2.0])) == 0.0
    # z0 = a = 0 is the percentile interval.
    assert bca_levels(0.0, 0.0) == pytest.approx((0.025, 0.975))
    # z0 = 0.1, a = 0.05: lower, s = 0.1 - 1.95996 = -1.85996, 0.1 + s / (1 + 0.05 * 1.85996)
    # = -1.60175, Phi = 0.054610; upper, s = 2.05996, 0.1 + s / (1 - 0.102998) = 2.39651,
    # Phi = 0.991724.
    low, high = bca_levels(0.1, 0.05)
    assert low == pytest.approx(0.054610, abs=1e-5) and high == pytest.approx(0.991724, abs=1e-5)


def test_bca_corrects_the_percentile_interval_towards_the_long_tail() -> None:
    # The mean of lognormal amounts: the sampling distribution is skewed right, and BCa moves
    # both ends up relative to the percentile interval (Efron and Tibshirani 1993, ch. 14).
    rng = np.random.default_rng(11)
    rows = np.column_stack([rng.lognormal(0, 1.2, 60), np.ones(60)]).tolist()

    def mean(totals: np.ndarray) -> np.ndarray:
        return safe_divide(totals[:, 0], totals[:, 1])

    bca = cluster_bootstrap_interval(rows, mean)
    pct = cluster_bootstrap_interval(rows, mean, method="percentile")
    assert bca is not None and pct is not None
    assert bca[0] > pct[0] and bca[1] > pct[1]


def test_ratio_standard_error_by_hand() -> None:
    # (y, m) = (3, 1), (5, 2), (4, 1): R = 12 / 4 = 3; residuals 0, -1, 1; sum of squares 2;
    # se = sqrt(3/2 * 2) / 4 = sqrt(3) / 4.
    assert ratio_standard_error([3, 5, 4], [1, 2, 1]) == pytest.approx(math.sqrt(3) / 4)
    assert math.isnan(ratio_standard_error([3], [1]))


def test_studentized_interval_matches_the_normal_one_on_symmetric_data() -> None:
    # Normal values, one per cluster, 400 clusters: bootstrap-t is close to mean +/- 1.96 se.
    rng = np.random.default_rng(2)
    y = rng.normal(10, 2, 400)
    rows = np.column_stack([y, np.ones(400)]).tolist()
    got = cluster_ratio_t_interval(rows)
    assert got is not None
    se = ratio_standard_error(y.tolist(), [1.0] * 400)
    assert got[0] == pytest.approx(y.mean() - 1.96 * se, abs=0.15 * se)
    assert got[1] == pytest.approx(y.mean() + 1.96 * se, abs=0.15 * se)
    assert cluster_ratio_t_interval(rows) == got  # fixed seed: the same interval every time
    assert cluster_ratio_t_interval(rows[:1]) is None


def test_clustered_delta_method_by_hand() -> None:
    # Ratio a/b of rows (2,1) (4,1) (3,2) (1,1): totals 10, 5, R = 2. Influences a/10 - b/5:
    # 0, 0.2, -0.1, -0.1; rows 1 and 2 are one cluster: sums 0.2, -0.1, -0.1, sample variance
    # 0.03, se = sqrt(0.03 * 3) = 0.3, interval 2 exp(-/+ 1.96 * 0.3) = 1.11089 to 3.60073.
    rows = [[2.0, 1.0], [4.0, 1.0], [3.0, 2.0], [1.0, 1.0]]
    xyz = ["x", "x", "y", "z"]
    low, high = log_ratio_interval(rows, (1, -1), clusters=xyz, small_sample=False)  # type: ignore[misc]
    assert low == pytest.approx(1.110886, abs=1e-5) and high == pytest.approx(3.600729, abs=1e-5)
    # With the small-sample quantile: squared influences 0.04, 0.01, 0.01 (sum 0.06, sample
    # variance 0.0003), nu = 2 * 0.06^2 / (3 * 0.0003) = 8, capped at G - 1 = 2: t = 4.302653.
    low, high = log_ratio_interval(rows, (1, -1), clusters=xyz)  # type: ignore[misc]
    assert low == pytest.approx(2 * math.exp(-4.302653 * 0.3), abs=1e-5)
    assert high == pytest.approx(2 * math.exp(4.302653 * 0.3), abs=1e-5)
    # Each row its own cluster is the unclustered method (variance 0.02, se = sqrt(0.08)).
    assert log_ratio_interval(rows, (1, -1), clusters=["a", "b", "c", "d"]) == pytest.approx(
        log_ratio_interval(rows, (1, -1))
    )
    assert log_ratio_interval(rows, (1, -1), clusters=["x"] * 4) is None


def test_two_way_wilson_by_hand() -> None:
    # Cases (hit, session, buyer): (1,a,u) (0,a,v) (1,b,u) (1,b,w). p = 0.75, residuals 0.25,
    # -0.75, 0.25, 0.25. By session: sums -0.5, 0.5 -> 2/1 * 0.5 = 1. By buyer: 0.5, -0.75,
    # 0.25 -> 3/2 * 0.875 = 1.3125. By (session, buyer), all distinct: 4/3 * 0.75 = 1.
    # V = (1 + 1.3125 - 1) / 16; binomial 0.1875 / 4; deff = 1.75; N_eff = 4 / 1.75 = 16/7.
    got = two_way_wilson_interval([True, False, True, True], "aabb", "uvuw")
    assert got == pytest.approx(modified_wilson_interval(0.75 * 16 / 7, 16 / 7))
    assert got is not None and got[0] < modified_wilson_interval(3, 4)[0]  # type: ignore[index]
    # Every case its own session and buyer: each V is n/(n-1) sum(e^2) / n^2, so deff is the
    # small-sample factor n/(n-1) = 1.5 alone, N_eff = 2.
    assert two_way_wilson_interval([True, False, True], "abc", "xyz") == pytest.approx(
        modified_wilson_interval(2 / 3 * 2, 2)
    )
    assert two_way_wilson_interval([], [], []) is None


def test_student_t_quantiles_match_the_tables() -> None:
    # 0.975 quantiles of t(1), t(2), t(5), t(30) from the standard tables; fractional df too.
    for df, expected in ((1, 12.706205), (2, 4.302653), (5, 2.570582), (30, 2.042272)):
        assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)
    assert 2.570582 < student_t_quantile(0.975, 4.5) < 2.776445
    assert student_t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)


def test_satterthwaite_df_is_about_g_for_normal_influences_and_small_for_a_few_big_ones() -> None:
    rng = np.random.default_rng(8)
    normal = satterthwaite_df(rng.normal(0, 1, 400))
    assert 300 < normal <= 399
    # 40 clusters, 4 of which carry nearly all the variance (spenders among zero-spend members).
    few = np.r_[np.full(36, -0.01), [0.9, 0.5, 0.4, 0.3]]
    assert satterthwaite_df(few) < 5


def test_two_way_mean_se_by_hand() -> None:
    # Cases (value, session, user): (1,a,u) (3,a,v) (5,b,u) (7,b,w); mean 4, residuals -3, -1,
    # 1, 3. By session: sums -4, 4 -> 2/1 * 32 = 64. By user: -2, -1, 3 -> 3/2 * 14 = 21. By
    # pair (all distinct): 4/3 * 20. se = sqrt(64 + 21 - 80/3) / 4.
    got = two_way_mean_se([1, 3, 5, 7], ["a", "a", "b", "b"], ["u", "v", "u", "w"])
    assert got == pytest.approx(math.sqrt(64 + 21 - 80 / 3) / 4)
    assert math.isnan(two_way_mean_se([1.0], ["a"], ["u"]))


def test_studentized_interval_scales_with_a_larger_standard_error() -> None:
    rng = np.random.default_rng(4)
    y = rng.lognormal(0, 1, 200)
    rows = np.column_stack([y, np.ones(200)]).tolist()
    base = cluster_ratio_t_interval(rows)
    wider = cluster_ratio_t_interval(rows, se_floor=2 * ratio_standard_error(y, np.ones(200)))
    assert base is not None and wider is not None
    mean = float(y.mean())
    assert mean - wider[0] == pytest.approx(2 * (mean - base[0]))
    assert wider[1] - mean == pytest.approx(2 * (base[1] - mean))
    assert cluster_ratio_t_interval(rows, se_floor=1e-9) == base  # never narrower


def test_one_cluster_gives_no_clustered_interval() -> None:
    # One session shows no spread between sessions: no interval, never Wilson in disguise.
    assert two_way_wilson_interval([True, False, False], ["s"] * 3, ["a", "b", "c"]) is None
    assert cluster_wilson_interval([1], [3]) is None
    assert rate_score_interval([(10.0, 100.0)], [5.0, 5.0]) is None
    assert cluster_ratio_t_interval([(300.0, 2.0)]) is None
    # Two sessions do give one; one buyer (the second clustering) falls back to one-way.
    assert two_way_wilson_interval([True, False, False, True], list("sstt"), list("aaaa"))


def test_day_ratio_intervals_by_hand() -> None:
    # Day A: two sessions of 100 CNY each (no spread of its own); day B: 50 and 150.
    # Pooled relative spread v = (0 + 0.5^2 + 0.5^2) / 4 = 0.125. A's relative se is the
    # pooled one, sqrt(2 * 0.125 * 2) / 2; B's own, 50 / 100 = 0.5, is the larger.
    a, b, single = day_ratio_intervals(
        [[(100.0, 1.0), (100.0, 1.0)], [(50.0, 1.0), (150.0, 1.0)], [(80.0, 2.0)]], level=0.95
    )
    t = student_t_quantile(0.975, 1)
    assert a == pytest.approx(
        (100 * math.exp(-t * math.sqrt(0.5) / 2), 100 * math.exp(t * math.sqrt(0.5) / 2))
    )
    assert b == pytest.approx((100 * math.exp(-t * 0.5), 100 * math.exp(t * 0.5)))
    assert single is None  # one session: no interval
    # A Bonferroni level widens it: t on 1 df at 1 - 0.05/(2 * 4).
    wide = day_ratio_intervals([[(50.0, 1.0), (150.0, 1.0)]], level=1 - 0.05 / 4)[0]
    assert wide is not None and b is not None and wide[0] < b[0] and wide[1] > b[1]


def test_a_day_interval_past_the_largest_float_is_none_not_an_error() -> None:
    # Two sessions of very different AOV at the Bonferroni level of 150 judged days: t on 1
    # degree of freedom is ~18,000, and exp(t * se_rel) overflowed (the worker's /report
    # answered 500 in a 150-day soak). The other day keeps its interval.
    level = 1 - 0.05 / 150
    found = day_ratio_intervals(
        [[(100_000.0, 1.0), (1.0, 1.0)], [(50.0, 1.0), (150.0, 1.0), (100.0, 1.0)]], level=level
    )
    assert found[0] is None
    assert found[1] is not None and math.isfinite(found[1][1])


def test_the_two_way_se_from_integer_sums_is_the_one_from_the_cases() -> None:
    """Issue 17: a summarized session keeps integer cluster sums, not its cases; the two-way
    se computed from them (exact in ints) equals the one computed from the residuals."""
    import random

    from agents.core.stats import cluster_sums, two_way_mean_se_from_sums

    rng = random.Random(7)
    values = [rng.randrange(0, 7_200_000) for _ in range(300)]
    sessions = [f"s{rng.randrange(25)}" for _ in values]
    users = [f"u{rng.randrange(60)}" for _ in values]
    pairs = list(zip(sessions, users, strict=True))
    by: list[dict[object, list[int]]] = [{}, {}, {}]
    for value, keys in zip(values, zip(sessions, users, pairs, strict=True), strict=True):
        for totals, key in zip(by, keys, strict=True):
            row = totals.setdefault(key, [0, 0])
            row[0] += value
            row[1] += 1
    got = two_way_mean_se_from_sums(
        sum(values), len(values), *(cluster_sums(totals.values()) for totals in by)
    )
    assert got == pytest.approx(two_way_mean_se(values, sessions, users), rel=1e-12)


def test_the_day_intervals_and_the_clustered_wilson_from_sums_are_those_from_rows() -> None:
    """Retired summaries give `live_aov`'s days and the conversion bars as integer sums: the
    intervals from them equal those from the rows (1e-12), on random skewed days, one of one
    session (no interval) and a Bonferroni level."""
    rng = random.Random(7)
    days = [
        [(rng.randint(1, 9) * rng.randint(100, 90_000), rng.randint(1, 9)) for _ in range(g)]
        for g in (1, 2, 5, 8, 13, 40)
    ]
    sums = [
        (len(d), *(sum(v) for v in zip(*[(y, m, y * y, y * m, m * m) for y, m in d], strict=True)))
        for d in days
    ]
    assert [ratio_sums(d) for d in days] == sums
    for level in (0.95, 1 - 0.05 / 6):
        want = day_ratio_intervals(days, level=level)
        got = day_ratio_intervals_from_sums(sums, level)  # type: ignore[arg-type]
        assert want[0] is None and got[0] is None
        for a, b in zip(got[1:], want[1:], strict=True):
            assert a is not None and b is not None
            assert a == pytest.approx(b, rel=1e-12)
    for rows in ([(3, 40), (0, 12), (9, 51), (1, 7)], [(0, 5), (2, 9)], [(4, 4)]):
        hits, trials = [h for h, _n in rows], [n for _h, n in rows]
        want_wilson = cluster_wilson_interval(hits, trials)
        got_wilson = cluster_wilson_from_sums(sum(hits), sum(trials), cluster_sums(rows))
        if want_wilson is None:
            assert got_wilson is None
        else:
            assert got_wilson == pytest.approx(want_wilson, rel=1e-12)
