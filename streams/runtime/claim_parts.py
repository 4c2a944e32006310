"""`livepulse_claim_part{claim, part}`: the additive counts behind each claim, for recording rules.

A ratio exported by each worker cannot be averaged into a global one; its numerator and
denominator can be summed over workers (`sum by (claim, part)`) and divided in PromQL
(deploy/prometheus/rules/livepulse-recording.yml). The counts are the report's `detail`
entries; only the ones listed here are exported, so the label values stay a fixed, small set.

With several workers, a session's events are on one worker, so the session claims' parts add
up; the group claims (and `reply_latency`, whose replies may come from another session) join a
session's orders and viewers with its merchant's group events (a
topic keyed by merchant) and orders of other sessions, which may be on other workers. Their
parts (`CROSS_PARTITION_CLAIMS`) come from one worker only: the worker holding every
partition (its own report), or else the group's leader, from the report merged over every
partition's snapshot (`streams.runtime.global_report`); the other workers leave them out. So
`sum by (claim, part)` over the workers is right for every claim.

`livepulse_claim_global{claim, bound}` and `livepulse_claim_global_verdict{claim, verdict}`
(`GlobalClaimCollector`) carry each claim's global figure, interval and verdict from that
same one source: the worker holding every partition, or the leader's merged report. Intervals
and verdicts are not sums, so they cannot be rebuilt in PromQL from per-worker gauges (the
larger `ci_low` of one worker and the larger `ci_high` of another are no interval at all);
exactly one worker exports them, and a dashboard reads them as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from streams.runtime.families import (
    CLAIM_GLOBAL_METRIC,
    CLAIM_GLOBAL_VERDICT_METRIC,
    CLAIM_PART_METRIC,
    claim_part_family,
    global_claim_families,
)

METRIC: Final[str] = CLAIM_PART_METRIC

#: claim id -> the `detail` keys that are sums (counts or CNY), never ratios or medians.
CLAIM_PARTS: Final[Mapping[str, tuple[str, ...]]] = {
    "orders_after_minute_5": ("after_5min", "session_orders"),
    "interaction_uplift": (
        "interacting_buyers",
        "interacting_pairs",
        "other_buyers",
        "other_pairs",
    ),
    "live_aov": ("gmv_cny", "session_orders"),
    "group_order_share": ("member_orders", "session_orders"),
    "group_repurchase_30d": ("repurchased", "eligible"),
    "group_spend_multiple": ("member_spend_cny", "members", "population_spend_cny", "population"),
    "reply_latency": ("answered_within_3s", "questions"),
}


#: Claims whose facts span partitions (docstring): exported by one worker only.
CROSS_PARTITION_CLAIMS: Final[frozenset[str]] = frozenset(
    # A reply counts for its question from whichever session (and partition) it comes.
    {"group_order_share", "group_repurchase_30d", "group_spend_multiple", "reply_latency"}
)


def claim_parts(
    report: Mapping[str, Any], claims_wanted: Callable[[str], bool] = lambda _c: True
) -> Iterator[tuple[str, str, float]]:
    """(claim, part, value) for every listed part the report has a number for."""
    claims = report.get("claims", {})
    for claim_id, parts in CLAIM_PARTS.items():
        if not claims_wanted(claim_id):
            continue
        detail = claims.get(claim_id, {}).get("detail") or {}
        for part in parts:
            value = detail.get(part)
            # A part missing or not a number (a claim not measured yet) has no sample.
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield claim_id, part, float(value)


class ClaimPartsCollector:
    """A Prometheus collector of `livepulse_claim_part` from the worker's latest report.

    `cross` gives the report to take the cross-partition claims from (None: leave them out);
    without it they come from `report` like the others (one worker holding everything).
    """

    def __init__(
        self,
        report: Callable[[], Mapping[str, Any]],
        cross: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self._report = report
        self._cross = cross

    def describe(self) -> Iterator[Metric]:
        yield claim_part_family()

    def collect(self) -> Iterator[Metric]:
        family = claim_part_family()
        if self._cross is None:
            samples = list(claim_parts(self._report()))
        else:
            samples = list(claim_parts(self._report(), lambda c: c not in CROSS_PARTITION_CLAIMS))
            cross = self._cross()
            if cross is not None:
                samples += claim_parts(cross, lambda c: c in CROSS_PARTITION_CLAIMS)
        for claim_id, part, value in samples:
            family.add_metric([claim_id, part], value)
        yield family


GLOBAL_METRIC: Final[str] = CLAIM_GLOBAL_METRIC
GLOBAL_VERDICT_METRIC: Final[str] = CLAIM_GLOBAL_VERDICT_METRIC
#: `bound` label values: the report key each one reads.
GLOBAL_BOUNDS: Final[Mapping[str, str]] = {
    "observed": "observed",
    "low": "ci_low",
    "high": "ci_high",
    "claimed": "claimed",
}
VERDICTS: Final[tuple[str, ...]] = ("supported", "contradicted", "inconclusive", "reported")


class GlobalClaimCollector:
    """Every claim's global figure, 95% interval, claimed value and verdict, from one report.

    `report` gives the report over every partition (the only worker's own, or the leader's
    merged one), or None on a worker that is not the source: then it exports nothing, so
    every series has exactly one source whatever the number of workers. Labels are bounded:
    `claim` (the registry's ids), `bound` (`GLOBAL_BOUNDS`), `verdict` (`VERDICTS`).
    """

    def __init__(self, report: Callable[[], Mapping[str, Any] | None]) -> None:
        self._report = report

    def describe(self) -> Iterator[Metric]:
        yield from global_claim_families()

    def collect(self) -> Iterator[Metric]:
        figures, verdicts = global_claim_families()
        report = self._report()
        for claim_id, entry in (report or {}).get("claims", {}).items():
            for bound, key in GLOBAL_BOUNDS.items():
                value = entry.get(key)
                # None (undefined) and "positive" have no sample.
                if isinstance(value, int | float) and not isinstance(value, bool):
                    figures.add_metric([claim_id, bound], float(value))
            for verdict in VERDICTS:
                verdicts.add_metric(
                    [claim_id, verdict], 1.0 if entry.get("verdict") == verdict else 0.0
                )
        yield figures
        yield verdicts
