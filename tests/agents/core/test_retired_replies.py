"""Issue 17: `reply_latency`'s per-session rows of retired sessions (`Ledger.folded_questions`,
`folded_replies`) folded into sums at the retirement (`Ledger.retired_replies`): the share,
its session-clustered interval and the counts stay those of the ledger that keeps every row
and the truth file's, while the rows held follow the sessions not retired."""

from __future__ import annotations

import pytest

from agents.core import build_report
from agents.core.persist import dump_state, load_state
from tests.agents.core.test_merge import records
from tests.agents.core.test_retire import _merged_retiring, _retiring
from tests.support.live import fixture_truth

CLAIM = "reply_latency"


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_retired_sessions_reply_rows_fold_into_exact_sums(name: str) -> None:
    stream = records(name)
    decoded = [event for _topic, _key, event in stream]
    unretired, _ = _retiring(decoded, False)
    ledger, board = _retiring(decoded, True)
    retired_sessions = ledger.retired_replies[0]
    assert retired_sessions > 0
    assert len(ledger.folded_questions) + retired_sessions == len(unretired.folded_questions)
    assert len(ledger.folded_replies) < len(unretired.folded_replies)

    want = build_report(unretired)["claims"][CLAIM]
    got = build_report(ledger, board)["claims"][CLAIM]
    assert got["detail"]["questions"] == fixture_truth(name)["claims"][CLAIM]["questions"]
    assert got["observed"] == pytest.approx(fixture_truth(name)["claims"][CLAIM]["observed"])
    for key in ("observed", "ci_low", "ci_high", "n", "clusters"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    for key in ("questions", "answered", "answered_within_3s", "answered_within_3min"):
        assert got["detail"][key] == want["detail"][key], key
    retention = build_report(ledger, board)["retention"]["folded_questions"]
    assert retention == build_report(unretired)["retention"]["folded_questions"]

    restored, _board = load_state(dump_state(ledger, board))
    assert build_report(restored)["claims"][CLAIM] == build_report(ledger)["claims"][CLAIM]
    merged = build_report(_merged_retiring(stream))["claims"][CLAIM]
    for key in ("observed", "ci_low", "ci_high", "n", "clusters"):
        assert merged[key] == pytest.approx(want[key], rel=1e-9), key
