"""`livepulse_claim_part`: the report's additive counts, equal to the truth file's, as gauges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.claim_parts import (
    CLAIM_PARTS,
    ClaimPartsCollector,
    GlobalClaimCollector,
    claim_parts,
)
from streams.tools.analyze import analyze_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def exported(report: dict[str, Any]) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(ClaimPartsCollector(lambda: report))
    text = generate_latest(registry).decode()
    return {
        (s.labels["claim"], s.labels["part"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "livepulse_claim_part"
    }


@pytest.mark.parametrize("fixture", ["xhs", "impulse"])
def test_parts_equal_the_truth_files_counts(fixture: str) -> None:
    truth = json.loads((FIXTURES / f"{fixture}.truth.json").read_text(encoding="utf-8"))
    parts = exported(analyze_file(FIXTURES / f"{fixture}.jsonl"))
    expected = {
        (claim, part): float(truth["claims"][claim][part])
        for claim, names in CLAIM_PARTS.items()
        for part in names
    }
    assert parts == expected
    # The ratios rebuilt from the parts are the truth's observed figures.
    claims = truth["claims"]
    share = (
        parts[("orders_after_minute_5", "after_5min")]
        / parts[("orders_after_minute_5", "session_orders")]
    )
    assert share == pytest.approx(claims["orders_after_minute_5"]["observed"], rel=1e-12)
    aov = parts[("live_aov", "gmv_cny")] / parts[("live_aov", "session_orders")]
    assert aov == pytest.approx(claims["live_aov"]["observed"], rel=1e-12)


def test_missing_or_non_numeric_parts_have_no_sample() -> None:
    report = {
        "claims": {
            "orders_after_minute_5": {"detail": {"after_5min": 3, "session_orders": None}},
            "live_aov": {"detail": {"gmv_cny": True, "session_orders": 0}},
            "not_a_claim": {"detail": {"after_5min": 1}},
        }
    }
    assert list(claim_parts(report)) == [
        ("orders_after_minute_5", "after_5min", 3.0),
        ("live_aov", "session_orders", 0.0),
    ]
    assert exported({}) == {}


def test_label_values_are_a_fixed_small_set() -> None:
    pairs = [(claim, part) for claim, names in CLAIM_PARTS.items() for part in names]
    assert len(pairs) == len(set(pairs)) <= 20
    assert all("ratio" not in part and not part.startswith("cr_") for _, part in pairs)


def _global_samples(
    report: dict[str, Any] | None,
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    registry = CollectorRegistry()
    registry.register(GlobalClaimCollector(lambda: report))
    text = generate_latest(registry).decode()
    figures: dict[tuple[str, str], float] = {}
    verdicts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "livepulse_claim_global":
                figures[(s.labels["claim"], s.labels["bound"])] = s.value
            elif s.name == "livepulse_claim_global_verdict":
                verdicts[(s.labels["claim"], s.labels["verdict"])] = s.value
    return figures, verdicts


def test_global_gauges_are_one_reports_interval_and_verdict() -> None:
    report = analyze_file(FIXTURES / "xhs.jsonl")
    figures, verdicts = _global_samples(report)
    for claim_id, entry in report["claims"].items():
        # Both ends of each interval come from the same report: one interval per claim.
        assert figures[(claim_id, "low")] == entry["ci_low"]
        assert figures[(claim_id, "high")] == entry["ci_high"]
        assert figures[(claim_id, "observed")] == entry["observed"]
        on = [v for (c, v), value in verdicts.items() if c == claim_id and value == 1.0]
        assert on == [entry["verdict"]]
    # "positive" is not a number: no claimed sample for the association.
    assert ("price_dwell_association", "claimed") not in figures
    assert {bound for _c, bound in figures} == {"observed", "low", "high", "claimed"}


def test_a_worker_that_is_not_the_source_exports_no_global_gauge() -> None:
    assert _global_samples(None) == ({}, {})
