"""The extended claims through the metric core on hand-computed streams; verdicts and report."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from agents.core import Ledger, build_report, compute_claims, render_table
from agents.core.claims import CLAIMS, CLAIMS_BY_ID, CONTEXT, judge
from agents.core.extended import quantile_interval
from schemas import event_adapter
from tests.support.extended_stream import EXPECTED, T0, extended_events

EXTENDED = ("size_refund_share", "bundle_share", "post_live_tail", "reply_latency", "return_rate")


def ledger_of(events: list[dict[str, Any]]) -> Ledger:
    ledger = Ledger()
    for raw in events:
        ledger.apply(event_adapter.validate_python(raw))
    return ledger


def _figures(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    measured = compute_claims(ledger_of(events))
    return {
        claim_id: {"observed": measured[claim_id].observed, **measured[claim_id].detail}
        for claim_id in EXTENDED
    }


@pytest.mark.parametrize("claim_id", EXTENDED)
def test_extended_claim_matches_the_hand_computed_answer(claim_id: str) -> None:
    got = _figures(extended_events())[claim_id]
    assert got == pytest.approx(EXPECTED[claim_id])
    assert list(got) == list(EXPECTED[claim_id])


def test_arrival_order_and_redeliveries_change_nothing() -> None:
    events = extended_events()
    rng = random.Random(3)
    for _ in range(5):
        shuffled = events + rng.sample(events, 10)  # some redelivered
        rng.shuffle(shuffled)
        baseline = _figures(events)
        for claim_id, figures in _figures(shuffled).items():
            assert figures == pytest.approx(baseline[claim_id])


def test_sample_sizes() -> None:
    measured = compute_claims(ledger_of(extended_events()))
    assert measured["size_refund_share"].n == 8
    assert measured["bundle_share"].n == 10
    assert measured["post_live_tail"].n == 2  # sessions
    assert measured["reply_latency"].n == 4  # answered questions
    assert measured["return_rate"].n == 10


def test_no_data_gives_no_figure() -> None:
    measured = compute_claims(Ledger())
    for claim_id in EXTENDED:
        assert measured[claim_id].observed is None
        assert measured[claim_id].interval is None
    assert measured["reply_latency"].detail["unanswered_share"] is None


def test_tail_without_live_gmv_is_undefined() -> None:
    events = [
        {"event_id": "a", "type": "session_started", "ts": T0, "session_id": "s"}
        | {"room_id": "r", "merchant_id": "m"},
        {"event_id": "b", "type": "session_ended", "ts": T0 + 1, "session_id": "s"},
    ]
    m = compute_claims(ledger_of(events))["post_live_tail"]
    assert m.observed is None and m.n == 1


def _binomial_cdf(n: int, q: float, k: int) -> float:
    return sum(math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(k + 1))


@pytest.mark.parametrize("n", [80, 150, 400])
def test_quantile_interval_has_the_tightest_ranks_with_95_percent_coverage(n: int) -> None:
    values = [float(v) for v in range(1, n + 1)]  # x_(r) = r, so the bounds are the ranks
    interval = quantile_interval(values, 0.95)
    assert interval is not None
    low, high = int(interval[0]), int(interval[1])
    # P(x_(l) <= xi < x_(u)) = P(l <= B <= u - 1), B ~ Bin(n, 0.95), by exact sums.
    assert _binomial_cdf(n, 0.95, low - 1) <= 0.025 < _binomial_cdf(n, 0.95, low)
    assert _binomial_cdf(n, 0.95, high - 1) >= 0.975 > _binomial_cdf(n, 0.95, high - 2)
    assert _binomial_cdf(n, 0.95, high - 1) - _binomial_cdf(n, 0.95, low - 1) >= 0.95


def test_quantile_interval_is_open_above_with_few_values() -> None:
    # 0.95^50 = 0.077 > 0.025: even the largest of 50 values may lie below the p95.
    interval = quantile_interval([float(v) for v in range(50)], 0.95)
    assert interval is not None
    assert interval[1] == math.inf and interval[0] > 30
    # P(min of 2 > p95) = 0.05^2 = 0.0025: the smallest of two bounds it below, nothing above.
    assert quantile_interval([1.0, 2.0], 0.95) == (1.0, math.inf)
    assert quantile_interval([1.0], 0.95) is None  # P(x > p95) = 0.05: no bound either side
    assert quantile_interval([], 0.95) is None


def test_quantile_interval_covers_the_true_p95_about_95_percent_of_the_time() -> None:
    rng = random.Random(11)
    true_p95 = -math.log(0.05)  # exponential(1)
    hits = 0
    trials = 400
    for _ in range(trials):
        sample = sorted(rng.expovariate(1.0) for _ in range(200))
        interval = quantile_interval(sample, 0.95)
        assert interval is not None
        hits += interval[0] <= true_p95 <= interval[1]
    assert 0.92 <= hits / trials <= 0.995


def test_at_most_and_report_verdicts() -> None:
    latency = CLAIMS_BY_ID["reply_latency"]
    assert judge(latency, 2.0, 100, (1.0, 3.0)) == "supported"
    assert judge(latency, 4.0, 100, (3.01, 5.0)) == "contradicted"
    assert judge(latency, 3.0, 100, (2.0, 4.0)) == "inconclusive"
    assert judge(latency, 4.0, 100, (3.5, math.inf)) == "contradicted"
    assert judge(latency, 2.0, 100, (1.0, math.inf)) == "inconclusive"
    assert judge(latency, 4.0, 10, (3.5, 5.0)) == "inconclusive"  # below the minimum sample
    returns = CLAIMS_BY_ID["return_rate"]
    assert judge(returns, 0.1, 1000, (0.09, 0.11)) == "reported"
    assert judge(returns, None, 0, None) == "reported"
    tail = CLAIMS_BY_ID["post_live_tail"]
    assert tail.band() == pytest.approx((0.075, 0.125))
    assert judge(tail, 0.1, 50, (0.08, 0.12)) == "supported"
    assert judge(tail, 0.03, 50, (0.01, 0.05)) == "contradicted"
    assert CLAIMS_BY_ID["size_refund_share"].band() == pytest.approx((0.15, 0.23))
    assert CLAIMS_BY_ID["bundle_share"].band() == pytest.approx((0.16, 0.24))


def test_report_groups_claims_and_lists_context_never_judged() -> None:
    report = build_report(ledger_of(extended_events()))
    groups = {claim_id: entry["group"] for claim_id, entry in report["claims"].items()}
    assert [c for c, g in groups.items() if g == "extended"] == list(EXTENDED)
    assert [c for c, g in groups.items() if g == "core"] == [
        c.id for c in CLAIMS if c.group == "core"
    ]
    core_keys = {"observed", "claimed", "ci_low", "ci_high", "verdict", "n", "unit", "source"}
    for entry in report["claims"].values():
        assert set(entry) == core_keys | {"detail", "group", "clusters"}
    assert report["claims"]["return_rate"]["verdict"] == "reported"
    assert report["claims"]["return_rate"]["claimed"] is None
    # Four answered questions: too few for a verdict, and too few to bound the p95 at all.
    latency = report["claims"]["reply_latency"]
    assert latency["verdict"] == "inconclusive" and latency["ci_high"] is None
    assert report["context"] == [{"source": f.source, "text": f.text} for f in CONTEXT]
    assert len(report["context"]) >= 10
    context_sources = {item["source"] for item in report["context"]}
    assert context_sources <= {
        "xhs-link-2024",
        "xhs-buyers-2023",
        "ks-gravity-2023",
        "ks-gravity-2024",
    }
    assert not set(report["claims"]) & {item["text"] for item in report["context"]}
    table = render_table(report)
    core_at = table.index("orders_after_minute_5")
    extended_at = table.index("extended claims")
    context_at = table.index("context (not checked)")
    assert core_at < extended_at < table.index("size_refund_share") < context_at
    assert "about 27% of apparel shoppers" in table
    assert table.rstrip().splitlines()[-1].startswith("events:")


def test_table_of_a_report_without_groups_or_context() -> None:
    # A report from an older worker: no `group`, no `context`; the table still renders.
    report = build_report(Ledger())
    for entry in report["claims"].values():
        del entry["group"]
    del report["context"]
    table = render_table(report)
    assert "extended claims" in table and "context" not in table
