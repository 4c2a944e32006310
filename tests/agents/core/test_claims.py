"""The minimum sample: below it (cases or clusters) every claim's verdict is `inconclusive`."""

from __future__ import annotations

import pytest

from agents.core import build_report
from agents.core.claims import CLAIMS, Claim, judge
from tests.agents.core.test_metrics import MIN, T0, ledger_of, order, start


def _decisive_interval(claim: Claim) -> tuple[float, float]:
    """An interval that, with enough cases, gives a verdict other than `inconclusive`."""
    if claim.comparator == "approx":
        band = claim.band()
        assert band is not None
        return band[1] + 1.0, band[1] + 2.0  # wholly above the band: contradicted
    if claim.comparator == "at_least":
        assert claim.claimed is not None
        return claim.claimed + 1.0, claim.claimed + 2.0  # supported
    if claim.comparator == "at_most":
        assert claim.claimed is not None
        return claim.claimed + 1.0, claim.claimed + 2.0  # contradicted
    return 0.2, 0.4  # positive: supported


JUDGED = [claim for claim in CLAIMS if claim.comparator != "report"]


def test_a_reported_figure_is_never_judged() -> None:
    reported = [claim for claim in CLAIMS if claim.comparator == "report"]
    assert [claim.id for claim in reported] == ["return_rate"]
    for n in (0, 10_000):
        assert judge(reported[0], 0.1, n, (0.05, 0.15)) == "reported"


@pytest.mark.parametrize("claim", JUDGED, ids=lambda c: c.id)
def test_below_the_minimum_sample_the_verdict_is_inconclusive(claim: Claim) -> None:
    interval = _decisive_interval(claim)
    observed = (interval[0] + interval[1]) / 2
    assert judge(claim, observed, claim.min_n, interval) != "inconclusive"
    assert judge(claim, observed, claim.min_n - 1, interval) == "inconclusive"
    # Clustered cases: enough cases but too few sessions (or users) decide nothing either.
    assert judge(claim, observed, 10_000, interval, clusters=claim.min_clusters) != "inconclusive"
    assert judge(claim, observed, 10_000, interval, clusters=claim.min_clusters - 1) == (
        "inconclusive"
    )


def _orders_after_minute_5(sessions: int, per_session: int) -> dict[str, object]:
    events = []
    for s in range(sessions):
        sid = f"s{s}"
        events.append(start(sid, T0 + s * 1000 * MIN))
        for k in range(per_session):
            events.append(order(T0 + s * 1000 * MIN + (10 + k) * MIN, f"u{s}-{k}", sid=sid))
    return build_report(ledger_of(events))["claims"]["orders_after_minute_5"]


def test_forty_orders_in_one_session_decide_nothing() -> None:
    # Every order after minute 5: share 1.0, far from the claimed 0.75 +/- 0.05.
    spread = _orders_after_minute_5(sessions=20, per_session=2)
    assert (spread["n"], spread["clusters"], spread["verdict"]) == (40, 20, "contradicted")
    one = _orders_after_minute_5(sessions=1, per_session=40)
    assert (one["n"], one["clusters"], one["verdict"]) == (40, 1, "inconclusive")
    few = _orders_after_minute_5(sessions=19, per_session=3)
    assert (few["clusters"], few["verdict"]) == (19, "inconclusive")
