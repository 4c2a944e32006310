"""Issue 17: `live_aov`'s overall interval from bounded state. Retired sessions past a sample
of `AOV_SAMPLE_SIZE` rows are kept as exact sums (`Ledger.trim_aov_rows`): the figure, the
interval's centre and se stay exact, its t* quantiles come from the sample (the sessions
whose id ranks smallest, `sample.bottom_k`), the same in one ledger, merged partitions and
through a snapshot; with at most `AOV_SAMPLE_SIZE` sessions nothing changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import agents.core.ledger as ledger_module
import agents.core.metrics as metrics_module
from agents.core import build_report
from agents.core.metrics import RETIRED_AOV, _aov_interval
from agents.core.persist import dump_state, load_state
from agents.core.sample import bottom_k, id_rank
from agents.core.stats import cluster_ratio_t_interval, ratio_se_from_sums, ratio_sums
from schemas import Rejection
from tests.agents.core.test_merge import records
from tests.agents.core.test_retire import _merged_retiring, _retiring
from tests.support.live import fixture_truth

SMALL_SAMPLE = 32


def _session_rows(decoded: list[Any]) -> dict[str, list[int]]:
    """Per session with a start, its orders' [GMV cents, count], from the raw stream (repeated
    event ids dropped): claims.md's clusters, without the ledger."""
    seen: set[str] = set()
    events = []
    for event in decoded:
        if isinstance(event, Rejection) or event.event_id in seen:
            continue
        seen.add(event.event_id)
        events.append(event)
    started = {e.session_id for e in events if e.type == "session_started"}
    rows: dict[str, list[int]] = {}
    for event in events:
        if event.type == "order_paid" and event.session_id in started:
            row = rows.setdefault(event.session_id, [0, 0])
            row[0] += event.amount_cents
            row[1] += 1
    return rows


def test_the_sample_is_the_ids_ranked_smallest_and_merges() -> None:
    rows = {f"s-{n}": n for n in range(100)}
    kept = bottom_k(rows, 10)
    assert len(kept) == 10 and max(map(id_rank, kept)) < min(
        id_rank(sid) for sid in rows if sid not in kept
    )
    halves = [{s: v for s, v in rows.items() if v % 2 == p} for p in (0, 1)]
    assert bottom_k({**bottom_k(halves[0], 10), **bottom_k(halves[1], 10)}, 10) == kept
    assert bottom_k(rows, 100) == rows


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_retired_sessions_past_the_sample_keep_the_figure_and_the_intervals_centre_exact(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 60-day fixtures with a sample of 32 (the default is 4,096): the retired rows are
    trimmed to the sample, the others summed; `live_aov`'s observed value and per-day figures
    equal the truth file's, its clusters count every session, and its interval equals the
    bootstrap-t centred on the exact ratio and scaled by the exact se of all the sessions
    (from the raw stream), with the t* quantiles of the sample's rows; the same after a
    snapshot and over 3 partitions merged. Unsampled, the interval is today's (every row)."""
    stream = records(name)
    decoded = [event for _topic, _key, event in stream]
    rows = _session_rows(decoded)
    assert len(rows) > 3 * SMALL_SAMPLE
    kept, _ = _retiring(decoded, True)  # the default sample: every row
    today = cluster_ratio_t_interval([rows[sid] for sid in sorted(rows)])
    assert today is not None
    got = build_report(kept)["claims"]["live_aov"]
    assert [got["ci_low"], got["ci_high"]] == pytest.approx([v / 100 for v in today], rel=1e-12)

    monkeypatch.setattr(ledger_module, "AOV_SAMPLE_SIZE", SMALL_SAMPLE)
    monkeypatch.setattr(metrics_module, "AOV_SAMPLE_SIZE", SMALL_SAMPLE)
    ledger, board = _retiring(decoded, True)
    assert ledger.retired_aov_sums[0] > 0
    assert len(ledger.retired_aov_rows) <= 2 * SMALL_SAMPLE
    report = build_report(ledger, board)["claims"]["live_aov"]
    truth = fixture_truth(name)["claims"]["live_aov"]
    assert report["observed"] == pytest.approx(truth["observed"], rel=1e-9)
    assert report["detail"]["per_day"] == pytest.approx(truth["per_day"], rel=1e-9)
    assert report["n"] == truth["session_orders"] and report["clusters"] == len(rows)

    g, y, m, y2, ym, m2 = ratio_sums(rows.values())
    sample = bottom_k(rows, SMALL_SAMPLE)
    want = cluster_ratio_t_interval(
        [sample[sid] for sid in sorted(sample)],
        whole=(y / m, ratio_se_from_sums((g, y2, ym, m2), y, m)),
    )
    assert want is not None
    assert [report["ci_low"], report["ci_high"]] == pytest.approx([v / 100 for v in want], rel=1e-9)

    restored, _board = load_state(dump_state(ledger, board))
    assert (
        build_report(restored)["claims"]["live_aov"] == build_report(ledger)["claims"]["live_aov"]
    )
    merged = build_report(_merged_retiring(stream))["claims"]["live_aov"]
    for key in ("observed", "ci_low", "ci_high", "n", "clusters"):
        assert merged[key] == pytest.approx(report[key], rel=1e-9), key


def test_a_sampled_interval_is_within_its_stated_error_of_every_rows() -> None:
    """The stated error (docs/design.md, "Retired summaries"): with 20,000 sessions of
    log-normal amounts (sigma 0.8 and 1.5, 3 seeds each), the interval from the 4,096-row
    sample and the exact sums has each end within 0.35 of the half-width of the interval over
    every row (measured at most 0.10 here, and 0.29 at 8,000 sessions; the bootstrap's own
    seed-to-seed spread over the same rows is up to 0.16)."""
    for sigma in (0.8, 1.5):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            counts = rng.poisson(8, 20_000) + 1
            rows: dict[str, list[int]] = {}
            for index, n in enumerate(counts):
                amounts = np.round(rng.lognormal(10.5, sigma, n)).astype(np.int64)
                rows[f"s-{seed}-{index}"] = [int(amounts.sum()), int(n)]
            every = cluster_ratio_t_interval([rows[sid] for sid in sorted(rows)])
            assert every is not None
            sample = bottom_k(rows, 4096)
            part: dict[str, list[int]] = dict(sample)
            part[RETIRED_AOV] = list(ratio_sums(r for s, r in rows.items() if s not in sample))
            got = _aov_interval(dict(sorted(part.items())), ratio_sums(rows.values()))
            assert got is not None
            half = (every[1] - every[0]) / 2
            assert abs(got[0] - every[0]) <= 0.35 * half, (sigma, seed)
            assert abs(got[1] - every[1]) <= 0.35 * half, (sigma, seed)
