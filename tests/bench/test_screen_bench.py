"""`python -m bench.screen`'s memory measure on a fixture (the throughput passes need minutes)."""

from __future__ import annotations

from pathlib import Path

from bench.screen import minute_memory

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "xhs.jsonl"


def test_minute_buckets_memory_is_measured_per_room() -> None:
    measured = minute_memory(FIXTURE)
    assert measured["minutes_kept"] == 60
    assert 0 < measured["session_minutes_held"] <= 60 * 114  # 114 sessions in the fixture
    assert measured["rooms_in_last_hour"] >= 1
    # At least a dict slot and a MinuteCounts per (session, minute) held.
    assert measured["bytes_per_session_minute"] > 64
    assert measured["bytes_per_room"] == measured["bytes"] / measured["rooms_in_last_hour"]
