"""Interval coverage: about 95% of the 95% intervals over many simulated streams hold the truth.

Simulated streams (`streams.tools.simulator.generate`, the same path as `livepulse analyze`): for
each scenario, WORLDS worlds (users, catalogs, fans drawn from a seed) and RUNS_PER_WORLD
streams per world (the days drawn from a seed of their own). The truth a stream's interval
is scored against is the claim's value on the union of the other streams of its world (the
process behind the stream, watched for longer), computed from totals or pooled pairs
(`tests/support/coverage.py`). Parametric checks with closed-form truths and session random
effects show that the clustered methods are needed.

Reproduce the numbers in docs/metrics.md ("Interval coverage") with
`LIVEPULSE_COVERAGE_FULL=1 .venv/bin/python -m pytest tests/agents/core/test_coverage.py -s`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from agents.core.extended import EXTENDED_CLAIM_FUNCTIONS
from agents.core.metrics import CLAIM_FUNCTIONS
from agents.core.stats import (
    cluster_bootstrap_interval,
    cluster_ratio_t_interval,
    cluster_spearman_interval,
    cluster_wilson_interval,
    design_effect,
    safe_divide,
    spearman_interval,
    spearman_rho,
    two_way_wilson_interval,
    wilson_interval,
)
from tests.support.coverage import (
    TRUTH_RULES,
    ClaimCoverage,
    Replicates,
    Run,
    acceptance_band,
    coverage_of,
    measure_runs,
    summary_row,
    tail_limit,
)
from tests.support.parametric import (
    BetaBinomialSessions,
    LognormalSessions,
    NormalPairSessions,
)

SCENARIOS = ("xhs", "impulse")
# CI size: 200 streams per scenario at a quarter of the default audience, ~10-15 s each.
SCALE = 0.25
WORLDS = 4
RUNS_PER_WORLD = 50
# The slow size: full audience (enough eligible pairs for `group_repurchase_30d` to pass its
# minimum sample), 400 streams per scenario.
SLOW_SCALE = 1.0
SLOW_WORLDS = 8
PARAMETRIC_REPLICATES = 400
# CI runs every claim on one scenario's streams (xhs: more intervals of verdict size than
# impulse's); impulse's CI-size streams (about 25 s more in CI) and the full-size version
# (about 5 minutes) run on request.
FULL_ENV = "LIVEPULSE_COVERAGE_FULL"
CI_SCENARIO = "xhs"

# Intervals allowed to cover more often than the band's top (reported in docs/metrics.md; under-
# coverage fails as for every claim): the size-refund share's design effect, floored at 1 and
# estimated from ~35 apparel orders, is more often above its true value (about 1) than below;
# impulse answers about 0.5% of questions within 3 s, so a stream has 0-2 such hits, and an
# interval whose lower end holds its 2.5% at every truth must then cover (0.985-0.99 expected).
CONSERVATIVE_CAP: dict[str, float] = {"size_refund_share": 0.995, "reply_latency": 1.0}

# Full size: claims measured on longer streams of a scenario than its own, to reach a verdict's
# sample: (claim, scenario) -> (days, worlds of RUNS_PER_WORLD streams). Impulse's 61 days give
# under 30 eligible member first orders per stream (30 days must follow each): with 122 days,
# about 50; 4 worlds (200 streams) to keep the run to minutes.
LONGER_STREAMS: dict[tuple[str, str], tuple[int, int]] = {
    ("group_repurchase_30d", "impulse"): (122, 4)
}

_cache: dict[tuple[str, float, int, int, int | None, str | None], Replicates] = {}


def _runs(worlds: int, per_world: int) -> list[Run]:
    return [Run(1000 + w, 50_000 + 100 * w + k) for w in range(worlds) for k in range(per_world)]


def _replicates(
    scenario: str,
    scale: float,
    worlds: int,
    per_world: int,
    days: int | None = None,
    claim_id: str | None = None,
) -> Replicates:
    """The measured runs (cached); with `days` and `claim_id`, longer streams measured for
    that claim only."""
    key = (scenario, scale, worlds, per_world, days, claim_id)
    if key not in _cache:
        _cache[key] = measure_runs(
            scenario,
            _runs(worlds, per_world),
            scale,
            days=days,
            claim_ids=None if claim_id is None else (claim_id,),
        )
    return _cache[key]


def _check(result: ClaimCoverage, runs: int, conservative_cap: float | None = None) -> None:
    """The coverage lies in the binomial band; with `conservative_cap`, an interval that
    covers more often than the band's top is let through up to that cap (reported, not
    hidden: see docs/metrics.md)."""
    row = summary_row(result)
    print(row)
    # Nearly every stream has the figure (a share with no eligible case has none).
    assert result.missing <= 0.05 * runs, row
    # The truth pools RUNS_PER_WORLD - 1 streams; its own error must be small next to one
    # interval (it is then accounted for in the band).
    assert result.truth_error_ratio() < 0.15, row
    low, high = acceptance_band(result.judged, truth_error_ratio=result.truth_error_ratio())
    if conservative_cap is not None:
        high = max(high, conservative_cap)
    assert low <= result.coverage <= high, row
    # Each tail on its own, where a verdict can be given (enough cases and clusters): a
    # verdict reads one end of the interval (below a band's edge contradicts by the upper end,
    # supported needs the lower one), so misses piled on one side make one verdict wrong too
    # often even when the total coverage looks right.
    decisive, _coverage = result.decisive_coverage()
    below, above = result.decisive_misses()
    limit = tail_limit(decisive, result.truth_error_ratio())
    assert below <= limit and above <= limit, row


def test_every_claim_with_an_interval_has_a_truth_rule() -> None:
    assert set(TRUTH_RULES) == set(CLAIM_FUNCTIONS) | set(EXTENDED_CLAIM_FUNCTIONS)


@pytest.mark.parametrize(
    "scenario",
    [
        CI_SCENARIO,
        *(
            pytest.param(
                s,
                marks=pytest.mark.skipif(
                    not os.environ.get(FULL_ENV), reason=f"~25 s more: set {FULL_ENV}=1"
                ),
            )
            for s in SCENARIOS
            if s != CI_SCENARIO
        ),
    ],
)
@pytest.mark.parametrize("claim_id", sorted(TRUTH_RULES))
def test_interval_coverage_on_simulated_streams(scenario: str, claim_id: str) -> None:
    reps = _replicates(scenario, SCALE, WORLDS, RUNS_PER_WORLD)
    _check(coverage_of(claim_id, reps), WORLDS * RUNS_PER_WORLD, CONSERVATIVE_CAP.get(claim_id))


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get(FULL_ENV), reason=f"minutes long: set {FULL_ENV}=1 to run it"
)
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("claim_id", sorted(TRUTH_RULES))
def test_interval_coverage_on_full_size_streams(scenario: str, claim_id: str) -> None:
    longer = LONGER_STREAMS.get((claim_id, scenario))
    worlds = SLOW_WORLDS
    if longer is None:
        reps = _replicates(scenario, SLOW_SCALE, SLOW_WORLDS, RUNS_PER_WORLD)
    else:
        days, worlds = longer
        reps = _replicates(scenario, SLOW_SCALE, worlds, RUNS_PER_WORLD, days, claim_id)
    # Some intervals are conservative on full-size streams (0.98 of 400: two-way Wilson for
    # `group_order_share` on xhs now, bootstrap-t for `live_aov` on the earlier simulator): wider
    # than needed, the price of holding 95% on small streams. Under-coverage fails as in CI.
    cap = max(0.99, CONSERVATIVE_CAP.get(claim_id, 0.0))
    result = coverage_of(claim_id, reps)
    _check(result, worlds * RUNS_PER_WORLD, conservative_cap=cap)
    # At full size the intervals are the ones verdicts are given on (enough cases and
    # clusters), `group_repurchase_30d`'s included; and those hold their coverage too.
    decisive, decisive_coverage = result.decisive_coverage()
    assert decisive >= 0.5 * result.judged, summary_row(result)
    low, _high = acceptance_band(decisive, truth_error_ratio=result.truth_error_ratio())
    assert decisive_coverage >= low, summary_row(result)


def test_acceptance_band_is_the_central_binomial_range() -> None:
    # Binomial(200, 0.95): P(X <= 180) = 0.0027 <= 0.005 < P(X <= 181) = 0.0058, and
    # P(X >= 198) = 0.0023 <= 0.005 < P(X >= 197) = 0.0090: counts 181..197 are accepted.
    assert acceptance_band(200) == (0.905, 0.985)
    # A truth off by 0.1 interval half-widths lowers the coverage a right method reaches.
    assert acceptance_band(200, truth_error_ratio=0.1)[0] <= 0.91


def _coverage(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


def _band() -> tuple[float, float]:
    return acceptance_band(PARAMETRIC_REPLICATES)


def test_orders_clustered_in_sessions_need_the_design_effect() -> None:
    # 60 sessions of 1 + Poisson(5) orders, each session with its own share ~ Beta(7.5, 2.5):
    # mean 0.75, intra-session correlation 1/11, design effect about 1.45. The clustered
    # interval is the one production gives shares of orders (`two_way_wilson_interval`: by
    # session, and by buyer, here one order each) and shares of questions
    # (`cluster_wilson_interval`).
    model = BetaBinomialSessions(sessions=60, extra_orders=5, a=7.5, b=2.5)
    rng = np.random.default_rng(1)
    methods = ("wilson", "two_way_wilson", "cluster_wilson")
    misses: dict[str, list[int]] = {name: [0, 0] for name in methods}
    hits_by: dict[str, list[bool]] = {name: [] for name in methods}
    for _ in range(PARAMETRIC_REPLICATES):
        hits, trials = model.draw(rng)
        cases: list[bool] = []
        sessions: list[int] = []
        for g, (h, t) in enumerate(zip(hits.tolist(), trials.tolist(), strict=True)):
            cases += [True] * int(h) + [False] * int(t - h)
            sessions += [g] * int(t)
        got = {
            "wilson": wilson_interval(int(hits.sum()), int(trials.sum())),
            "two_way_wilson": two_way_wilson_interval(cases, sessions, list(range(len(cases)))),
            "cluster_wilson": cluster_wilson_interval(hits.tolist(), trials.tolist()),
        }
        for name, interval in got.items():
            assert interval is not None
            hits_by[name].append(interval[0] <= model.truth <= interval[1])
            misses[name][0] += interval[1] < model.truth
            misses[name][1] += interval[0] > model.truth
    low, high = _band()
    limit = tail_limit(PARAMETRIC_REPLICATES)
    print({name: (_coverage(h), misses[name]) for name, h in hits_by.items()} | {"band": _band()})
    assert _coverage(hits_by["wilson"]) < low  # counting orders as independent under-covers
    for name in ("two_way_wilson", "cluster_wilson"):
        assert low <= _coverage(hits_by[name]) <= high, name
        assert max(misses[name]) <= limit, (name, misses[name])
    # One session shows no spread between sessions: no interval, never plain Wilson.
    assert two_way_wilson_interval([True, False, True], ["s", "s", "s"], ["a", "b", "c"]) is None
    assert cluster_wilson_interval([2], [3]) is None


@pytest.mark.parametrize(
    ("sessions", "extra", "a", "b"),
    [
        # About 100 questions in 60 sessions, 0.5% answered in 3 s (impulse's world at full
        # size): a stream has 0-2 hits, mostly none.
        (60, 0.7, 0.05, 9.95),
        # 360 cases, 2% hits clustered by session (about 7 hits a stream).
        (60, 5.0, 0.2, 9.8),
    ],
)
def test_a_rare_clustered_share_holds_both_tails(
    sessions: int, extra: float, a: float, b: float
) -> None:
    # Wilson's lower end after a few hits sits above a rare truth too often (16% at the worst
    # truth after 1 hit, 8% after 3): intervals wholly above the truth, which is what the
    # full-size impulse run showed for `reply_latency` (0 / 48 misses). The interval
    # production gives clustered shares takes the exact Poisson end there
    # (`modified_wilson_interval`).
    model = BetaBinomialSessions(sessions=sessions, extra_orders=extra, a=a, b=b)
    rng = np.random.default_rng(11)
    misses = {"wilson_on_n_eff": [0, 0], "cluster_wilson": [0, 0]}
    for _ in range(PARAMETRIC_REPLICATES):
        hits, trials = model.draw(rng)
        n = float(trials.sum())
        n_eff = n / design_effect(hits.tolist(), trials.tolist())
        got = {
            "wilson_on_n_eff": wilson_interval(float(hits.sum()) / n * n_eff, n_eff),
            "cluster_wilson": cluster_wilson_interval(hits.tolist(), trials.tolist()),
        }
        for name, interval in got.items():
            assert interval is not None
            misses[name][0] += interval[1] < model.truth
            misses[name][1] += interval[0] > model.truth
    limit = tail_limit(PARAMETRIC_REPLICATES)
    print(misses | {"limit": limit})
    assert max(misses["cluster_wilson"]) <= limit
    if model.truth < 0.01:
        assert misses["wilson_on_n_eff"][1] > limit  # the check can fail


def test_studentized_bootstrap_covers_a_mean_with_session_effects() -> None:
    # 120 sessions (as many as a simulated stream has) of 1 + Poisson(3) lognormal amounts with
    # a session effect: tau = 0.5, sigma = 0.9.
    model = LognormalSessions(sessions=120, extra_orders=3, mu=5.5, tau=0.5, sigma=0.9)
    rng = np.random.default_rng(2)

    def mean(totals: np.ndarray) -> np.ndarray:
        return safe_divide(totals[:, 0], totals[:, 1])

    methods: dict[str, Callable[[np.ndarray], tuple[float, float] | None]] = {
        "bootstrap_t": lambda rows: cluster_ratio_t_interval(rows.tolist()),
        "percentile": lambda rows: cluster_bootstrap_interval(
            rows.tolist(), mean, method="percentile"
        ),
    }
    hits: dict[str, list[bool]] = {name: [] for name in methods}
    for _ in range(PARAMETRIC_REPLICATES):
        rows = model.draw(rng)
        for name, method in methods.items():
            got = method(rows)
            assert got is not None
            hits[name].append(got[0] <= model.truth <= got[1])
    low, high = _band()
    print({name: _coverage(h) for name, h in hits.items()} | {"band": _band()})
    assert low <= _coverage(hits["bootstrap_t"]) <= high


def test_spearman_interval_must_respect_sessions() -> None:
    # Pairs with session effects (correlation 0.5 between sessions, 0.2 within): Spearman's
    # rho is (6/pi) asin(0.35/2) = 0.33596.
    model = NormalPairSessions(sessions=60, extra_orders=3, between=0.5, within=0.2)
    assert model.truth == pytest.approx(0.33596, abs=1e-5)
    rng = np.random.default_rng(3)
    iid: list[bool] = []
    clustered: list[bool] = []
    for _ in range(PARAMETRIC_REPLICATES):
        x, y, sessions = model.draw(rng)
        rho = spearman_rho(x.tolist(), y.tolist())
        assert rho is not None
        a = spearman_interval(rho, x.size)
        b = cluster_spearman_interval(x.tolist(), y.tolist(), sessions.tolist())
        assert a is not None and b is not None
        iid.append(a[0] <= model.truth <= a[1])
        clustered.append(b[0] <= model.truth <= b[1])
    low, high = _band()
    print({"fisher_iid": _coverage(iid), "cluster_jackknife": _coverage(clustered)})
    assert _coverage(iid) < low
    assert low <= _coverage(clustered) <= high
