"""`python -m bench.soak_profile` as documented, on a short stream: both days timed and
profiled, the state's parts sized, and a day past the stream's end refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import prepare

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("soak") / "s.jsonl"
    prepare(days=12, scale=1.0, seed=5, out=path)
    return path


def _profile(stream: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, this module
        [sys.executable, "-m", "bench.soak_profile", "--stream", str(stream), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_two_days_are_timed_side_by_side(stream: Path, tmp_path: Path) -> None:
    """Each day's records are timed once a round from its own restored state, the profiles
    list the core's per-record calls, and every part of the state is sized at both days."""
    out = tmp_path / "profile.json"
    done = _profile(
        stream, "--at", "3", "--at", "9", "--span", "1", "--rounds", "2",
        "--profile-rounds", "1", "--window-days", "1", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| CPU us per record (median of rounds) |" in done.stdout
    result = json.loads(out.read_text())
    assert set(result["points"]) == {"3.0", "9.0"}
    for point in result["points"].values():
        assert point["records"] > 0 and point["snapshot_mb"] > 0
        assert len(point["cpu_us_per_record"]) == 2
        assert all(cpu > 0 for cpu in point["cpu_us_per_record"])
        assert {
            "ledger._seen_ids",
            "ledger.orders",
            "ledger.sessions (summarized)",
            "ledger.sessions (held, ended)",
            "ledger.sessions (held, no end)",
            "board.screen.first_entry",
        } <= set(point["part_kb"])
    # The orders are kept whole (not folded): six more days of them pickle larger.
    early, late = result["points"]["3.0"]["part_kb"], result["points"]["9.0"]["part_kb"]
    assert late["ledger.orders"] > 1.5 * early["ledger.orders"]
    # The state is `bench.soak --fold-sessions`' own: claims by period attached, so closed
    # days are frozen by day 9 (a 1-day window; none without the periods, as before).
    assert late["ledger.frozen_periods"] > 2 * early["ledger.frozen_periods"]
    # Sizes in memory too, of the same parts: the held orders grow there as well, and the
    # parts add up to the total.
    early_mem = result["points"]["3.0"]["part_memory_kb"]
    late_mem = result["points"]["9.0"]["part_memory_kb"]
    assert late_mem["ledger.orders"] > 1.5 * early_mem["ledger.orders"] > 0
    parts = sum(v for k, v in late_mem.items() if k != "total")
    assert late_mem["total"] == pytest.approx(parts) and late_mem["total"] > 100
    # Every event the core applies goes through `Ledger.apply` once: its calls per record are
    # those of the records applied (a few duplicates and rejects are not).
    apply = next(v for k, v in result["profile"].items() if k.endswith(" apply"))
    for calls_per_record, cumulative_us in (apply["a"], apply["b"]):
        assert 0.9 <= calls_per_record <= 1.0 and cumulative_us > 0


def test_without_claim_periods_nothing_is_frozen(stream: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    done = _profile(
        stream, "--at", "3", "--at", "9", "--span", "1", "--rounds", "1",
        "--profile-rounds", "0", "--window-days", "1", "--no-claim-periods", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    late = json.loads(out.read_text())["points"]["9.0"]["part_kb"]
    assert late["ledger.frozen_periods"] < 0.05


def test_a_day_past_the_stream_is_refused(stream: Path) -> None:
    done = _profile(stream, "--at", "3", "--at", "50", "--span", "1", "--rounds", "1")
    assert done.returncode == 2
    assert "the stream ends before day(s) [50.0] + --span" in done.stderr
