"""An event stamped far ahead of the wall clock (a broken producer clock) must not move its
topic's dedupe horizon: before the cap, every event of its topic after it was expired."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agents.core import Ledger
from agents.core.ledger import TOPICS
from agents.core.merge import merge_ledgers
from agents.core.operator import OperatorBoard
from agents.core.persist import dump_state, load_state
from streams.tools.analyze import analyze_file
from streams.tools.simulator import compute_truth
from tests.agents.core.test_retention import join
from tests.support.truth import operator_mismatches, report_mismatches

REPO = Path(__file__).resolve().parents[3]
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


def _with_future_view(lines: list[str]) -> tuple[list[str], int]:
    """The fixture's lines with one valid `viewer_joined` of a session of the stream stamped a
    year ahead of now inserted at the middle; and the index of that line."""
    middle = len(lines) // 2
    session = next(
        json.loads(line)["session_id"] for line in lines[middle:] if '"viewer_joined"' in line
    )
    future = {
        "event_id": "e-future-stamped",
        "type": "viewer_joined",
        "ts": int(time.time() * 1000) + 365 * DAY_MS,
        "session_id": session,
        "user_id": "u-from-a-broken-clock",
        "source": "feed",
    }
    return [*lines[:middle], json.dumps(future), *lines[middle:]], middle


def test_a_future_stamped_event_expires_nothing_and_the_figures_equal_the_truth(
    tmp_path: Path,
) -> None:
    # The fixture's first 40% (about 24 days of event time, beyond the week's window): cheap.
    lines = (REPO / "fixtures" / "xhs.jsonl").read_text(encoding="utf-8").splitlines()
    lines = lines[: len(lines) * 2 // 5]
    stamped, middle = _with_future_view(lines)
    views_after = sum('"viewer_' in line for line in stamped[middle + 1 :])
    assert views_after > 1000  # the events at stake (a few of them duplicates or invalid)
    path = tmp_path / "stamped.jsonl"
    path.write_text("\n".join(stamped) + "\n", encoding="utf-8")
    truth = compute_truth(stamped, scenario="xhs", seed=0)

    # Without the cap (the behaviour before it) the event moves the views' horizon a year
    # ahead and every view after it is expired: the figures are wrong.
    uncapped = analyze_file(path, dedupe_window_ms=WEEK_MS, future_tolerance_ms=None)
    assert uncapped["retention"]["expired"] >= 0.95 * views_after
    assert report_mismatches(uncapped, truth) != []

    # With it (the default 1 day) the event is applied, counted, and moves nothing.
    report = analyze_file(path, dedupe_window_ms=WEEK_MS, future_tolerance_ms=DAY_MS)
    assert report["retention"]["expired"] == 0
    assert report["retention"]["future"] == 1
    assert report["retention"]["future_tolerance_s"] == 86_400
    assert report["events"] == truth["events"]
    assert report_mismatches(report, truth) == []
    assert operator_mismatches(report["operator"], truth["operator"]) == []


def test_the_horizon_moves_with_events_inside_the_tolerance_only() -> None:
    now = int(time.time() * 1000)
    views = TOPICS.index("live.views")
    ledger = Ledger(dedupe_window_ms=DAY_MS, future_tolerance_ms=3_600_000)
    assert ledger.apply(join(now - 3 * DAY_MS, "u1"))
    assert ledger.apply(join(now + 30 * 60_000, "u2"))  # 30 min ahead: inside the tolerance
    assert ledger.horizon_ts(views) == now + 30 * 60_000 - DAY_MS
    assert ledger.apply(join(now + 2 * 3_600_000, "u3"))  # 2 h ahead: applied, horizon stays
    assert ledger.horizon_ts(views) == now + 30 * 60_000 - DAY_MS
    assert ledger.apply(join(now - 12 * 3_600_000, "u4"))  # half a day old: still applied
    assert (ledger.counts.valid, ledger.counts.expired, ledger.counts.future) == (4, 0, 1)
    assert not ledger.apply(join(now - 2 * DAY_MS, "u5"))  # older than the window: expired
    assert ledger.counts.expired == 1


@pytest.mark.parametrize("tolerance_ms", [None, DAY_MS])
def test_the_cap_survives_a_snapshot_and_a_merge(tolerance_ms: int | None) -> None:
    ledger = Ledger(dedupe_window_ms=DAY_MS, future_tolerance_ms=tolerance_ms)
    ledger.apply(join(int(time.time() * 1000) + 30 * DAY_MS, "u1"))
    restored, _board = load_state(dump_state(ledger, OperatorBoard()))
    assert restored.future_tolerance_ms == tolerance_ms
    assert restored.counts.future == (1 if tolerance_ms else 0)
    merged = merge_ledgers([ledger, restored])
    assert merged.future_tolerance_ms == tolerance_ms
    assert merged.counts.future == 2 * ledger.counts.future
