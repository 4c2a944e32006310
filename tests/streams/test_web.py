"""The operator families of /metrics: agreed names, bounded labels, folded figures that add up."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.core import Ledger
from streams.runtime.web import OperatorCollector, ReportCache
from streams.tools.analyze import analyze_file

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"

#: The names of the metrics contract (shared with the dashboards), as exposed.
AGREED = (
    "livepulse_entries_total livepulse_unique_viewers livepulse_viewers_current "
    "livepulse_viewers_peak livepulse_watch_time_seconds_sum livepulse_buyers "
    "livepulse_interacting_viewers livepulse_orders_total livepulse_gmv_cny_total "
    "livepulse_refunds_total livepulse_refunded_cny_total livepulse_follows_total "
    "livepulse_group_joins_total livepulse_product_clicks_total livepulse_product_clickers "
    "livepulse_conversion_ratio livepulse_interaction_ratio livepulse_aov_cny livepulse_gpm_cny "
    "livepulse_uv_value_cny livepulse_avg_watch_time_seconds "
    "livepulse_window_entries livepulse_window_orders livepulse_window_gmv_cny "
    "livepulse_window_product_clicks livepulse_window_interactions "
    "livepulse_window_unique_viewers livepulse_window_buyers "
    "livepulse_order_time_since_start_seconds_bucket "
    "livepulse_watch_time_seconds_bucket livepulse_reply_latency_seconds_bucket "
    "livepulse_late_events_total "
    "livepulse_event_time_watermark_seconds"
).split()
# click_through / click_to_order are exported too, but have no sample where nobody clicked.


def scrape(report: dict[str, Any], top_n: int) -> dict[str, list[Any]]:
    cache = ReportCache(lambda: (Ledger(), None), lambda: 0, lambda _ledger, _board: report)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(OperatorCollector(cache, 0.0, top_n))
    samples: dict[str, list[Any]] = defaultdict(list)
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[sample.name].append(sample)
    return samples


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return analyze_file(FIXTURES / "xhs.jsonl")


def test_agreed_names_with_bounded_labels_that_add_up(report: dict[str, Any]) -> None:
    truth = json.loads((FIXTURES / "xhs.truth.json").read_text(encoding="utf-8"))["operator"]
    samples = scrape(report, top_n=2)
    assert [name for name in AGREED if not samples[name]] == []
    rooms = {s.labels["id"]: s.value for s in samples["livepulse_entries_total"]
             if s.labels["level"] == "room"}  # fmt: skip
    top = sorted(truth["rooms"], key=lambda r: (-truth["rooms"][r]["entries"], r))[:2]
    assert set(rooms) == {*top, "other"}
    # Folding loses nothing: the rooms' counters add up to the overall one, from the truth.
    assert sum(rooms.values()) == truth["overall"]["entries"]
    overall = {s.name: s.value for s in sum(samples.values(), []) if s.labels.get("id") == "all"}
    assert overall["livepulse_gmv_cny_total"] == truth["overall"]["gmv_cny"]
    assert overall["livepulse_watch_time_seconds_count"] == truth["overall"]["unique_viewers"]
    assert overall["livepulse_watch_time_seconds_sum"] == pytest.approx(
        truth["overall"]["watch_time_seconds_sum"], rel=1e-12
    )
    # Orders within 5 minutes of the start: the claims truth's count, another way round.
    claim = json.loads((FIXTURES / "xhs.truth.json").read_text(encoding="utf-8"))["claims"][
        "orders_after_minute_5"
    ]
    within_5 = [
        s.value
        for s in samples["livepulse_order_time_since_start_seconds_bucket"]
        if s.labels["id"] == "all" and s.labels["le"] == "300.0"
    ]
    # le=300 would also hold an order at exactly 5:00 (the claim's "after"); the fixture has none.
    assert within_5 == [claim["session_orders"] - claim["after_5min"]]
    # First-reply latency: the claims truth's answered questions and median, another way round.
    replies = json.loads((FIXTURES / "xhs.truth.json").read_text(encoding="utf-8"))["claims"][
        "reply_latency"
    ]
    latency = {
        s.labels["le"]: s.value
        for s in samples["livepulse_reply_latency_seconds_bucket"]
        if s.labels["id"] == "all"
    }
    assert latency["+Inf"] == replies["answered"]
    below_median = [
        n for le, n in latency.items() if le != "+Inf" and float(le) < replies["p50_seconds"]
    ]
    above_median = [
        n for le, n in latency.items() if le != "+Inf" and float(le) >= replies["p50_seconds"]
    ]
    assert max(below_median, default=0) <= replies["answered"] / 2 <= min(above_median)
    other_uv = [s.value for s in samples["livepulse_unique_viewers"] if s.labels["id"] == "other"]
    other_conv = [
        s.value for s in samples["livepulse_conversion_ratio"]
        if s.labels["id"] == "other" and s.labels["level"] == "room"
    ]  # fmt: skip
    rest = [r for r in truth["rooms"] if r not in top]
    buyers = sum(truth["rooms"][r]["buyers"] for r in rest)
    viewers = sum(truth["rooms"][r]["unique_viewers"] for r in rest)
    assert other_conv == [pytest.approx(buyers / viewers)]
    assert viewers in other_uv
    assert [s.value for s in samples["livepulse_late_events_total"]] == [truth["late_events"]]


def test_labels_never_carry_an_unbounded_id(report: dict[str, Any]) -> None:
    samples = scrape(report, top_n=0)
    ids = {s.labels.get("id") for series in samples.values() for s in series}
    assert ids <= {"all", "other", None}
    assert {k for series in samples.values() for s in series for k in s.labels} <= {
        "level", "id", "window", "le"
    }  # fmt: skip


def test_a_peaks_ceiling_is_exported_only_where_the_report_gives_one(
    report: dict[str, Any],
) -> None:
    """`livepulse_viewers_peak_ceiling` beside `livepulse_viewers_peak`, same labels: a sample
    for each labelled level whose report figures carry `viewers_peak_ceiling` (a merged peak
    that is a lower bound), none where the peak is exact (xhs in one ledger: every one), and
    none for `other` (its peak is the largest of its levels')."""
    assert "livepulse_viewers_peak_ceiling" not in scrape(report, top_n=2)
    rooms = sorted(
        report["operator"]["rooms"], key=lambda r: (-report["operator"]["rooms"][r]["entries"], r)
    )
    bounded = json.loads(json.dumps(report))  # a copy, two levels given ceilings
    operator = bounded["operator"]
    operator["overall"]["viewers_peak_ceiling"] = operator["overall"]["viewers_peak"] + 7
    operator["rooms"][rooms[0]]["viewers_peak_ceiling"] = (
        operator["rooms"][rooms[0]]["viewers_peak"] + 3
    )
    operator["rooms"][rooms[-1]]["viewers_peak_ceiling"] = 10**6  # folded into `other`
    samples = scrape(bounded, top_n=2)
    got = {
        (s.labels["level"], s.labels["id"]): s.value
        for s in samples["livepulse_viewers_peak_ceiling"]
    }
    assert got == {
        ("overall", "all"): operator["overall"]["viewers_peak"] + 7,
        ("room", rooms[0]): operator["rooms"][rooms[0]]["viewers_peak"] + 3,
    }
