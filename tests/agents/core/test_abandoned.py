"""Issue 17: with the session fold, a session that never ends is abandoned once its newest
event + the session horizon is behind every topic's horizon (docs/design.md, "The session
horizon"): summarized like an ended session, events naming it later are not the session's."""

from __future__ import annotations

import json
import pickle
from typing import Any

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import SESSION_HORIZON_MS, FoldedPresence, Presence, SessionSummary
from agents.core.report import render_table
from schemas import Rejection, decode_text
from streams.tools.simulator.operator_truth import compute_operator
from streams.tools.simulator.truth import abandon_sessions, compute_claims, read_stream
from tests.support.events import apparel_order
from tests.support.truth import report_mismatches

T0 = 1_721_800_800_000
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WINDOW = DAY
#: Sketched once sessions are summarized (docs/metrics.md, "Sketched figures").
_SKETCHED = "price_dwell_association"


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, type_: str, ts: int, **fields: Any) -> None:
        event_id = f"e{len(self.lines)}"
        self.lines.append(json.dumps({"event_id": event_id, "type": type_, "ts": ts, **fields}))

    def order(self, ts: int, order_id: str, user: str, sid: str | None) -> None:
        self.add("order_paid", ts, **apparel_order(order_id, sid, user))

    def day_of_others(self, day: int) -> None:
        """An ended session of the same merchant on `day`: every topic's horizon moves."""
        ts, sid = T0 + day * DAY, f"o{day}"
        self.add("session_started", ts, session_id=sid, room_id="r2", merchant_id="m1")
        self.add("viewer_joined", ts + 1, session_id=sid, user_id="w")
        self.order(ts + 6 * MINUTE, f"p{day}", "w", sid)
        self.add("interaction", ts + 2, session_id=sid, user_id="w", kind="like")
        self.add("group_joined", ts + 3, merchant_id="m1", user_id="w", group_id=f"g{day}")
        self.add("session_ended", ts + HOUR, session_id=sid)


def _stream(viewers: int = 3) -> list[str]:
    """s1 starts at T0 and never ends; its newest event is a join at T0 + 1 h. Ten days later
    a view, an interaction, an order and a `session_ended` name it (past its horizon, and
    after it is abandoned); a group join of one of its viewers at T0 + 2 h (after its newest
    event) is not one of its `group_joins`. s0 has views only (no start): left as it is."""
    out = _Lines()
    out.add("session_started", T0, session_id="s1", room_id="r1", merchant_id="m1")
    out.add("viewer_joined", T0 + 1_000, session_id="s1", user_id="u1")
    for n in range(viewers):
        out.add("viewer_joined", T0 + 2_000 + n, session_id="s1", user_id=f"v{n}")
        out.add("viewer_left", T0 + 9 * MINUTE + n, session_id="s1", user_id=f"v{n}")
    out.add("interaction", T0 + 5 * MINUTE, session_id="s1", user_id="u3", kind="like")
    out.add("group_joined", T0 + 10 * MINUTE, merchant_id="m1", user_id="u1", group_id="g")
    out.order(T0 + 20 * MINUTE, "o1", "u1", "s1")
    out.order(T0 + 3 * MINUTE, "o2", "v0", "s1")
    out.add("viewer_joined", T0 + HOUR, session_id="s1", user_id="u4")
    out.add("group_joined", T0 + 2 * HOUR, merchant_id="m1", user_id="u4", group_id="g")
    out.add("viewer_joined", T0 + 5, session_id="s0", user_id="x")
    for day in range(1, 10):
        out.day_of_others(day)
    late = T0 + 10 * DAY
    assert late > T0 + HOUR + SESSION_HORIZON_MS + WINDOW  # abandoned before these come
    out.add("viewer_joined", late, session_id="s1", user_id="u5")
    out.add("interaction", late + 1, session_id="s1", user_id="u5", kind="like")
    out.order(late + 2, "o9", "u5", "s1")
    out.add("session_ended", late + 3, session_id="s1")
    for day in range(10, 21):
        out.day_of_others(day)
    return out.lines


def _feed(lines: list[str], fold: bool = True) -> tuple[Ledger, OperatorBoard]:
    ledger, board = Ledger(WINDOW, fold_sessions=fold), OperatorBoard()
    for line in lines:
        decoded = decode_text(line)
        assert not isinstance(decoded, Rejection)
        if ledger.apply(decoded):
            board.observe(decoded)
    board.take_folded(ledger)
    return ledger, board


def _claim_mismatches(report: dict[str, Any], claims: dict[str, Any]) -> list[str]:
    truth = {"events": report["events"], "claims": claims}
    return [p for p in report_mismatches(report, truth) if _SKETCHED not in p]


def test_a_session_that_never_ends_is_abandoned_and_equals_the_truth_with_the_rule() -> None:
    lines = _stream()
    ledger, board = _feed(lines)
    session = ledger.sessions["s1"]
    assert isinstance(session.presence, SessionSummary)
    assert session.ended_ts is None and session.abandoned_ts == T0 + HOUR == session.last_ts
    assert session.orders == [] and session.interacting_users == set()
    report = build_report(ledger, board)
    # The view, the interaction, the order and the end ten days later: not the session's.
    assert report["retention"]["abandoned_sessions"] == 1
    assert report["retention"]["after_session_horizon"] == 4
    assert "1 sessions that never ended abandoned" in render_table(report)
    # s1 and the others of days 1-11 (their end + 7 days behind day 20 - the window).
    assert report["retention"]["summarized_sessions"] == 1 + 11
    assert isinstance(ledger.sessions["s0"].presence, Presence)  # no start: left as it is
    # The screen keeps no first entry of it any more, only its room's and merchant's totals.
    assert "s1" in board.screen.folded and "s1" not in board.screen.first_entry

    stream = read_stream(lines)
    plain = compute_claims(stream)
    abandon_sessions(stream, SESSION_HORIZON_MS, WINDOW)
    assert stream.abandoned_ts == {"s1": T0 + HOUR}
    assert _claim_mismatches(report, compute_claims(stream)) == []
    assert _claim_mismatches(report, plain) != []  # o9 as a session order, u5 a viewer

    truth = compute_operator(stream)["sessions"]["s1"]
    figures = report["operator"]["sessions"]["s1"]
    for name in ("group_joins", "unique_viewers", "orders", "buyers", "viewers_current"):
        assert figures[name] == truth[name], name
    assert figures["group_joins"] == 1  # u1's; u4's came after its newest event
    assert figures["viewers_current"] == 0  # not live any more (u4 never left)


def test_the_rule_holds_only_with_the_fold() -> None:
    ledger, _board = _feed(_stream(), fold=False)
    session = ledger.sessions["s1"]
    assert session.abandoned_ts is None and session.ended_ts == T0 + 10 * DAY + 3
    assert ledger.abandoned_sessions == 0 and sum(ledger.after_session_horizon) == 0


def test_an_abandoned_sessions_state_does_not_grow_with_its_viewers() -> None:
    sizes = []
    for viewers in (20, 200):
        ledger, _board = _feed(_stream(viewers))
        session = ledger.sessions["s1"]
        assert isinstance(session.presence, SessionSummary)
        sizes.append(len(pickle.dumps(session, protocol=5)))
    assert abs(sizes[0] - sizes[1]) <= 32, sizes


def test_a_session_pickled_before_the_field_loads_not_abandoned() -> None:
    ledger, _board = _feed(_stream()[:3])
    session = ledger.sessions["s1"]
    reduced = session.__reduce_ex__(5)
    state = reduced[2]
    del state[1]["abandoned_ts"]
    old = reduced[0](*reduced[1])
    old.__setstate__(state)
    assert old.abandoned_ts is None and old.started_ts == T0
    assert isinstance(old.presence, Presence | FoldedPresence)
