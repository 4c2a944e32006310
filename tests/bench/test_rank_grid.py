"""bench.rank_grid: the truth's pairs and the table's figures against the truth file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.rank_grid import measure, truth_pairs

REPO = Path(__file__).resolve().parents[2]


def test_the_pairs_are_the_truths_and_a_limit_coarsens_within_the_bound() -> None:
    lines = (REPO / "fixtures" / "xhs.jsonl").read_text(encoding="utf-8").splitlines()
    truth = json.loads((REPO / "fixtures" / "xhs.truth.json").read_text(encoding="utf-8"))
    want = truth["claims"]["price_dwell_association"]
    _start, pairs = truth_pairs(lines)
    assert [ts for ts, _price, _minutes in pairs] == sorted(ts for ts, _p, _m in pairs)
    whole = [(price, minutes) for _ts, price, minutes in pairs]
    unlimited, limited = measure(whole, 0), measure(whole, 128)
    assert unlimited["n"] == want["n"] == len(whole)
    assert unlimited["exact_rho"] == pytest.approx(want["observed"], abs=1e-12)
    assert unlimited["level"] == 0 and unlimited["cells"] > 128
    assert limited["level"] > 0 and limited["cells"] <= 128
    assert limited["bytes"] < unlimited["bytes"]
    for row in (unlimited, limited):
        assert row["error"] == pytest.approx(abs(row["rho"] - want["observed"]), abs=1e-12)
        assert row["error"] <= row["bound"]
