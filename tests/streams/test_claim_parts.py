"""`livepulse_claim_part`: the report's additive counts, equal to the truth file's, as gauges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.analyze import analyze_file
from streams.claim_parts import CLAIM_PARTS, ClaimPartsCollector, claim_parts

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
