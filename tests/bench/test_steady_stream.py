"""`python -m bench.soak --prepare --steady`: a soak stream whose live quantities are flat after
its warm-up (`scenarios.steady`), counted from the stream file by `bench.stream_live`, where the
default stream's rise; its truth file is written beside it as the default's is."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stream_live import live_quantities, read_stream
from streams.tools.simulator.scenarios import (
    STEADY_BUYER_LAPSE_DAYS,
    STEADY_GROUP_LEAVE_DAILY,
    get_scenario,
    steady,
)

DAYS = 240
SCALE = 2.0
#: After the warm-up: the steady stream's past buyers have lapsed and come back for 60+ days.
WARM_DAYS = 120
#: What state follows (bench.stream_live's live quantities at a 45-day user horizon).
LIVE = ("users_active", "buyers_active", "orders_in_refund_horizon", "group_members")


def test_steady_changes_only_the_population_and_the_rate() -> None:
    xhs = get_scenario("xhs")
    flat = steady(xhs)
    changed = {
        f.name for f in dataclasses.fields(xhs) if getattr(xhs, f.name) != getattr(flat, f.name)
    }
    assert changed == {
        "name",
        "summary",
        "promo_days",
        "buyer_lapse_days",
        "group_leave_daily",
        "even_schedule",
    }
    assert flat.noise == xhs.noise  # the same contract noise
    assert xhs.buyer_lapse_days is None and not xhs.even_schedule  # the default is as before
    assert flat.buyer_lapse_days == STEADY_BUYER_LAPSE_DAYS
    assert flat.group_leave_daily == STEADY_GROUP_LEAVE_DAILY
    assert flat.promo_days == ()


def _prepare(tmp_path: Path, *flags: str) -> Path:
    stream = tmp_path / f"soak{''.join(flags)}.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--prepare",
            f"--days={DAYS}",
            f"--scale={SCALE}",
            "--seed=1",
            f"--stream={stream}",
            *flags,
        ],
        check=True,
        capture_output=True,
    )
    return stream


def _change(stream: Path) -> dict[str, float]:
    """Each live quantity's change, in %, between the means of a reading every 2 days over
    the 30 days after the warm-up and over the stream's last 30 days."""
    with stream.open("rb") as handle:
        first_ts = int(json.loads(handle.readline())["ts"])
    early = list(range(WARM_DAYS, WARM_DAYS + 31, 2))
    late = list(range(DAYS - 30, DAYS + 1, 2))
    found = live_quantities(read_stream(stream), [*early, *late], first_ts=first_ts)

    def mean(days: list[int], key: str) -> float:
        return statistics.fmean(found[day][key] for day in days)

    return {key: (mean(late, key) / mean(early, key) - 1) * 100 for key in LIVE}


@pytest.mark.slow
def test_a_steady_stream_keeps_what_is_live_flat_where_the_default_rises(
    tmp_path: Path,
) -> None:
    flat = _prepare(tmp_path, "--steady")
    rising = _prepare(tmp_path)
    for stream in (flat, rising):
        truth = json.loads(stream.with_suffix(".truth.json").read_text("utf-8"))
        assert truth["lines"] == stream.read_bytes().count(b"\n")
        assert truth["events"]["valid"] > 0 and truth["events"]["rejected"] > 0
        assert "group_repurchase_30d" in truth["claims"]
    assert flat.read_bytes() != rising.read_bytes()
    steady_change = _change(flat)
    default_change = _change(rising)
    # Measured at this scale and seed (the streams are the same bytes every run): the steady
    # stream's -2.7 to +9.4% (its orders: a few hundred a month at scale 2, each buyer's
    # propensity heavy-tailed), the default's +6.5 to +20%, its buyers and members +17-20%.
    # At scale 12 the steady stream's are within 2% (bench/README.md).
    assert all(abs(pct) < 12.0 for pct in steady_change.values()), steady_change
    for key in ("buyers_active", "group_members"):
        assert default_change[key] > 15.0, default_change
