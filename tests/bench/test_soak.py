"""`python -m bench.soak` on a short stream longer than its window: the folded state's report
equals the independent truth reference (the soak's own check), end to end."""

from __future__ import annotations

from pathlib import Path

from bench.soak import soak


def test_a_stream_longer_than_the_window_reports_the_truth(tmp_path: Path) -> None:
    """Ten simulated days through the core with a one-day window: sessions and questions are
    folded on the way, nothing expires, and every claim's observed value and detail, the
    event counts and the cumulative operator figures equal `truth.py`'s (1e-9)."""
    result = soak(
        days=10, scale=2.0, window_days=1.0, sample_days=3, seed=5, stream=tmp_path / "s.jsonl"
    )
    retention = result["retention"]
    assert retention["expired"] == 0 and retention["unmatched_replies"] == 0
    assert retention["folded_sessions"] >= 5 and retention["folded_questions"] >= 10
    assert result["truth_mismatches"] == []
