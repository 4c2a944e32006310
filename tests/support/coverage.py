"""Interval coverage on simulated streams: many seeded replicates against a pooled truth."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.core.claims import CLAIMS_BY_ID
from agents.core.extended import EXTENDED_CLAIM_FUNCTIONS
from agents.core.metrics import CLAIM_FUNCTIONS, Measurement, _Facts, compute_claims
from streams.tools.analyze import analyze_records
from streams.tools.simulator import Scenario, generate, get_scenario
from streams.tools.simulator import truth as reference
from streams.tools.simulator.truth import Stream
from tests.support.processes import map_in_processes

FloatArray = npt.NDArray[np.float64]
# What a replicate contributes to the truth: totals to add up, or raw pairs to pool.
Stat = FloatArray
# A replicate's share of the truth comes from the independent batch reference
# (`streams.tools.simulator.truth`, which never imports `agents`): its figures for the claim, and
# the stream it read (for pairs the figures do not carry). Never from the code under test.
Extract = Callable[[dict[str, Any], Stream], Stat]
Pool = Callable[[Sequence[Stat]], float | None]


@dataclass(frozen=True, slots=True)
class TruthRule:
    """How one claim's true value is found: each replicate's share of the union stream
    (`extract`, from the reference's figures), and the claim's value on the union of several
    replicates (`pool`)."""

    extract: Extract
    pool: Pool


def _totals(*keys: str) -> Extract:
    def extract(figures: dict[str, Any], _stream: Stream) -> Stat:
        return np.array([float(figures[key]) for key in keys])

    return extract


def _summed(fn: Callable[[FloatArray], float | None]) -> Pool:
    def pool(stats: Sequence[Stat]) -> float | None:
        return fn(np.sum(np.stack(stats), axis=0))

    return pool


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _share(hits: str, total: str) -> TruthRule:
    """A proportion: pooled hits / pooled total."""
    return TruthRule(_totals(hits, total), _summed(lambda t: _div(t[0], t[1])))


def _uplift(t: FloatArray) -> float | None:
    cr_i, cr_n = _div(t[0], t[1]), _div(t[2], t[3])
    return None if cr_i is None or not cr_n else cr_i / cr_n


def _multiple(t: FloatArray) -> float | None:
    member_mean, population_mean = _div(t[0], t[1]), _div(t[2], t[3])
    return None if member_mean is None or not population_mean else member_mean / population_mean


def _dwell_totals(figures: dict[str, Any], _stream: Stream) -> Stat:
    pairs = float(figures["pairs"])
    return np.array([(figures["observed"] or 0.0) * pairs, pairs])


def _price_watch_pairs(_figures: dict[str, Any], stream: Stream) -> Stat:
    """(highest unit price, watch time before paying) of every session order, by the
    reference's own reading of the stream."""
    rows = [
        (float(top), float(watched)) for _o, top, watched in reference.order_price_watch(stream)
    ]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def _average_ranks(values: FloatArray) -> FloatArray:
    """Ranks 1..n with ties averaged (vectorised, for pools of tens of thousands)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def pooled_spearman(stats: Sequence[Stat]) -> float | None:
    """Spearman's rho over the union of every replicate's (x, y) pairs."""
    pairs = np.concatenate(stats)
    if pairs.shape[0] < 3:
        return None
    rx, ry = _average_ranks(pairs[:, 0]), _average_ranks(pairs[:, 1])
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denom if denom else None


def _tail_per_day(t: FloatArray) -> float | None:
    return _div(t[0], 3 * t[1])


# claim id -> how its true value is found. Adding a claim with an interval is one entry here.
TRUTH_RULES: dict[str, TruthRule] = {
    "orders_after_minute_5": _share("after_5min", "session_orders"),
    "price_dwell_association": TruthRule(_price_watch_pairs, pooled_spearman),
    "interaction_uplift": TruthRule(
        _totals("interacting_buyers", "interacting_pairs", "other_buyers", "other_pairs"),
        _summed(_uplift),
    ),
    "live_aov": TruthRule(
        _totals("gmv_cny", "session_orders"), _summed(lambda t: _div(t[0], t[1]))
    ),
    "group_order_share": _share("member_orders", "session_orders"),
    "group_repurchase_30d": _share("repurchased", "eligible"),
    "group_member_dwell": TruthRule(_dwell_totals, _summed(lambda t: _div(t[0], t[1]))),
    "group_spend_multiple": TruthRule(
        _totals("member_spend_cny", "members", "population_spend_cny", "population"),
        _summed(_multiple),
    ),
    # Extended claims.
    "size_refund_share": _share("size_refunded", "apparel_orders"),
    "bundle_share": _share("bundle_orders", "paid_orders"),
    "post_live_tail": TruthRule(_totals("tail_gmv_cny", "live_gmv_cny"), _summed(_tail_per_day)),
    "reply_latency": _share("answered_within_3s", "questions"),
    "return_rate": _share("refunded_orders", "paid_orders"),
}


@dataclass(slots=True)
class ClaimCoverage:
    """One claim's intervals over the replicates, each against the truth without it."""

    claim_id: str
    estimates: list[float] = field(default_factory=list)
    intervals: list[tuple[float, float]] = field(default_factory=list)
    truths: list[float] = field(default_factory=list)
    worlds: list[int] = field(default_factory=list)
    pool_sizes: list[int] = field(default_factory=list)  # runs in each truth's union
    decisive: list[bool] = field(default_factory=list)  # enough cases and clusters for a verdict
    missing: int = 0  # replicates with no figure or no interval

    @property
    def judged(self) -> int:
        return len(self.intervals)

    def hits(self) -> list[bool]:
        return [lo <= t <= hi for (lo, hi), t in zip(self.intervals, self.truths, strict=True)]

    @property
    def covered(self) -> int:
        return sum(self.hits())

    @property
    def coverage(self) -> float:
        return self.covered / self.judged if self.judged else float("nan")

    def decisive_coverage(self) -> tuple[int, float]:
        """How many intervals could decide a verdict (n and clusters above the minimum), and
        the share of those that cover the truth."""
        hits = [h for h, d in zip(self.hits(), self.decisive, strict=True) if d]
        return len(hits), (sum(hits) / len(hits) if hits else float("nan"))

    def truth_error_ratio(self) -> float:
        """The pooled truth's standard error over the median half-width of one interval.

        A truth pooled over k runs of one world is off by about sd / sqrt(k), sd the spread of
        single-run estimates within a world: small against one interval, and accounted for in
        `acceptance_band`.
        """
        if self.judged < 3:
            return float("inf")
        by_world: dict[int, list[float]] = {}
        for world, estimate in zip(self.worlds, self.estimates, strict=True):
            by_world.setdefault(world, []).append(estimate)
        spreads = [float(np.var(v, ddof=1)) for v in by_world.values() if len(v) > 1]
        if not spreads:
            return float("inf")
        sd = math.sqrt(float(np.mean(spreads)))
        half = float(np.median([(hi - lo) / 2 for lo, hi in self.intervals]))
        pool = float(np.median(self.pool_sizes))
        return sd / math.sqrt(pool) / half if half > 0 else float("inf")

    def decisive_misses(self) -> tuple[int, int]:
        """`misses` among the intervals that could decide a verdict."""
        below = above = 0
        for (lo, hi), t, d in zip(self.intervals, self.truths, self.decisive, strict=True):
            below += d and hi < t
            above += d and lo > t
        return below, above

    def misses(self) -> tuple[int, int]:
        """Intervals wholly below the truth, and wholly above it."""
        below = sum(hi < t for (_lo, hi), t in zip(self.intervals, self.truths, strict=True))
        above = sum(lo > t for (lo, _hi), t in zip(self.intervals, self.truths, strict=True))
        return below, above


@dataclass(frozen=True, slots=True)
class Run:
    """One simulated stream: its world's seed and, if any, the seed of its days.

    Runs with the same `world` and a `days` seed share users, catalogs and fans and differ
    in everything that happens; a run with `days=None` is a world of its own.
    """

    world: int
    days: int | None = None


@dataclass(slots=True)
class Replicates:
    """Measured runs of one scenario and, per claim, each run's share of the truth."""

    runs: list[Run]
    measured: list[dict[str, Measurement]]
    stats: dict[str, list[Stat]]
    report_seconds: float


@dataclass(frozen=True, slots=True)
class _Measure:
    """What measuring one run needs (picklable, for the worker processes)."""

    spec: Scenario
    scale: float
    wanted: tuple[str, ...]
    all_claims: bool

    def __call__(self, run: Run) -> tuple[dict[str, Measurement], dict[str, Stat], float]:
        lines = generate(self.spec, seed=run.world, scale=self.scale, run_seed=run.days).lines
        ledger = analyze_records(line.encode() for line in lines)
        started = time.perf_counter()
        if self.all_claims:
            claims = compute_claims(ledger)
        else:
            facts = _Facts(ledger)
            core = {**CLAIM_FUNCTIONS, **EXTENDED_CLAIM_FUNCTIONS}
            claims = {claim_id: core[claim_id](facts) for claim_id in self.wanted}
        report_seconds = time.perf_counter() - started
        stream = reference.read_stream(lines)
        figures = reference.compute_claims(stream)
        stats = {
            claim_id: TRUTH_RULES[claim_id].extract(figures[claim_id], stream)
            for claim_id in self.wanted
        }
        return claims, stats, report_seconds


def measure_runs(
    scenario: str,
    runs: Sequence[Run],
    scale: float,
    days: int | None = None,
    claim_ids: Sequence[str] | None = None,
) -> Replicates:
    """Generate, decode and measure each run (the same path as `livepulse analyze`).

    `days` lengthens (or shortens) the scenario's streams; `claim_ids` measures only those
    claims (the others are absent from `measured` and `stats`). The runs are measured side by
    side in worker processes (`tests.support.processes`), in the order of `runs`."""
    spec = get_scenario(scenario)
    if days is not None:
        spec = dataclasses.replace(spec, days=days)
    wanted = list(TRUTH_RULES) if claim_ids is None else list(claim_ids)
    out = Replicates(list(runs), [], {claim_id: [] for claim_id in wanted}, 0.0)
    measure = _Measure(spec, scale, tuple(wanted), claim_ids is None)
    for claims, stats, report_seconds in map_in_processes(measure, runs, chunksize=4):
        out.measured.append(claims)
        out.report_seconds += report_seconds
        for claim_id in wanted:
            out.stats[claim_id].append(stats[claim_id])
    return out


def coverage_of(claim_id: str, reps: Replicates, same_world: bool = True) -> ClaimCoverage:
    """Coverage of one claim's interval, each run against the union of the other runs.

    With `same_world`, the union is of the runs that share its world (the truth the interval
    speaks of: these rooms, catalogs and audience, watched for longer); otherwise of every
    other run (a truth averaged over worlds as well).
    """
    rule = TRUTH_RULES[claim_id]
    stats = reps.stats[claim_id]
    result = ClaimCoverage(claim_id)
    for i, (run, claims) in enumerate(zip(reps.runs, reps.measured, strict=True)):
        m = claims[claim_id]
        others = [
            s
            for j, s in enumerate(stats)
            if j != i and (not same_world or reps.runs[j].world == run.world)
        ]
        truth = rule.pool(others) if others else None
        if m.observed is None or m.interval is None or truth is None:
            result.missing += 1
            continue
        result.estimates.append(m.observed)
        result.intervals.append(m.interval)
        result.truths.append(truth)
        result.worlds.append(run.world if same_world else 0)
        result.pool_sizes.append(len(others))
        claim = CLAIMS_BY_ID[claim_id]
        result.decisive.append(
            m.n >= claim.min_n and (m.clusters is None or m.clusters >= claim.min_clusters)
        )
    return result


def _binom_pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def acceptance_band(
    replicates: int, nominal: float = 0.95, truth_error_ratio: float = 0.0, alpha: float = 0.01
) -> tuple[float, float]:
    """Coverage shares accepted for `replicates` intervals of a method that is right.

    The count of covering intervals is Binomial(R, p). p is the nominal level, lowered for the
    truth's own error: an interval of half-width z*se around an unbiased estimate, scored
    against a truth that is off by r*se (r = `truth_error_ratio` * z), covers with probability
    2*Phi(z / sqrt(1 + r^2)) - 1. The band keeps the central 1 - alpha of that binomial
    (alpha/2 in each tail, exact binomial sums).
    """
    z = 1.959963984540054
    r = truth_error_ratio * z
    p = math.erf(z / math.sqrt(1 + r * r) / math.sqrt(2)) if nominal == 0.95 else nominal
    lower = 0
    tail = 0.0
    while tail + _binom_pmf(lower, replicates, p) <= alpha / 2:
        tail += _binom_pmf(lower, replicates, p)
        lower += 1
    upper = replicates
    tail = 0.0
    while tail + _binom_pmf(upper, replicates, p) <= alpha / 2:
        tail += _binom_pmf(upper, replicates, p)
        upper -= 1
    return lower / replicates, upper / replicates


def tail_limit(replicates: int, truth_error_ratio: float = 0.0, alpha: float = 0.01) -> int:
    """The most intervals a right method leaves wholly on one side of the truth, of
    `replicates`: the upper 1 - alpha/2 quantile of Binomial(R, q), q = half the miss rate
    `acceptance_band` allows for (the truth's own error included). Verdicts are one-sided (an
    interval wholly below a band's edge contradicts; its upper end alone decides), so each
    tail must hold its 2.5%, not only the two together."""
    z = 1.959963984540054
    r = truth_error_ratio * z
    q = (1 - math.erf(z / math.sqrt(1 + r * r) / math.sqrt(2))) / 2
    total = 0.0
    for k in range(replicates + 1):
        total += _binom_pmf(k, replicates, q)
        if total >= 1 - alpha / 2:
            return k
    return replicates


def summary_row(r: ClaimCoverage) -> dict[str, Any]:
    """A claim's coverage result as a plain mapping (for the docs and failure messages)."""
    band = acceptance_band(r.judged, truth_error_ratio=r.truth_error_ratio())
    decisive, decisive_cov = r.decisive_coverage()
    return {
        "claim": r.claim_id,
        "judged": r.judged,
        "missing": r.missing,
        "coverage": round(r.coverage, 3),
        "band": (round(band[0], 3), round(band[1], 3)),
        "truth_err_over_half_width": round(r.truth_error_ratio(), 3),
        "misses_below_above": r.misses(),
        "decisive_misses_below_above": r.decisive_misses(),
        "tail_limit": tail_limit(r.judged, r.truth_error_ratio()),
        "decisive": decisive,
        "decisive_coverage": round(decisive_cov, 3),
    }
