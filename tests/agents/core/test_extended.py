"""The extended claims through the metric core on hand-computed streams; verdicts and report."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agents.core import Ledger, build_report, compute_claims, render_table
from agents.core.claims import CLAIMS, CLAIMS_BY_ID, CONTEXT, judge
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
    assert measured["reply_latency"].n == 5  # questions, answered or not
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


def test_at_least_and_report_verdicts() -> None:
    latency = CLAIMS_BY_ID["reply_latency"]
    assert (latency.comparator, latency.claimed) == ("at_least", 0.95)
    assert judge(latency, 0.97, 100, (0.95, 0.99)) == "supported"  # the bar itself is in
    assert judge(latency, 0.90, 100, (0.85, 0.949)) == "contradicted"
    assert judge(latency, 0.95, 100, (0.92, 0.97)) == "inconclusive"
    assert judge(latency, 0.97, 10, (0.96, 0.99)) == "inconclusive"  # below the minimum sample
    assert judge(latency, 0.97, 100, (0.96, 0.99), clusters=19) == "inconclusive"


def test_unanswered_questions_count_as_misses() -> None:
    # 40% of questions never answered, the rest in 1 s: the old p95 of the answered read
    # "supported" ([1, 1] s); the share within 3 s is 0.6 of the questions.
    events: list[dict[str, Any]] = []
    for session in range(25):
        sid = f"s{session}"
        for k in range(10):
            qid = f"q{session}-{k}"
            ts = T0 + session * 3_600_000 + k * 60_000
            events.append(
                {"event_id": qid, "type": "interaction", "ts": ts, "session_id": sid}
                | {"user_id": f"v{k}", "kind": "question"}
            )
            if k < 6:
                events.append(
                    {"event_id": f"r{qid}", "type": "interaction", "ts": ts + 1_000}
                    | {"session_id": sid, "user_id": "host", "kind": "reply", "reply_to": qid}
                )
    report = build_report(ledger_of(events))["claims"]["reply_latency"]
    assert report["observed"] == pytest.approx(0.6)
    assert report["detail"]["unanswered_share"] == pytest.approx(0.4)
    assert report["detail"]["p95_seconds"] == pytest.approx(1.0)
    assert report["ci_high"] < 0.95
    assert report["verdict"] == "contradicted"

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
    # Five questions in two sessions: an interval, but too few questions for a verdict.
    latency = report["claims"]["reply_latency"]
    assert latency["verdict"] == "inconclusive"
    assert latency["ci_low"] <= 0.4 <= latency["ci_high"]
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
    # The events line last, then the refund of an order never paid (counted nowhere).
    *_, events_line, refunds_line = table.rstrip().splitlines()
    assert events_line.startswith("events:")
    assert refunds_line.strip().startswith("0 refunds later than the refund horizon after")
    assert "1 with no payment of their order at or before them" in refunds_line


def test_table_of_a_report_without_groups_or_context() -> None:
    # A report from an older worker: no `group`, no `context`; the table still renders.
    report = build_report(Ledger())
    for entry in report["claims"].values():
        del entry["group"]
    del report["context"]
    table = render_table(report)
    assert "extended claims" in table and "context" not in table
