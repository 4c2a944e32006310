"""Closed months of `group_spend_multiple` folded into per-user totals (issue 17,
`Ledger(fold_months=True)`): the figure, its counts and its interval stay exact, and a folded
month's state does not grow with its rows."""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
import zlib
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import SessionSummary, cst_month, cst_month_end
from agents.core.persist import MAGIC, dump_state, load_state
from schemas import Rejection, decode
from streams.tools.simulator.generate import generate
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth_file import compute_truth
from tests.agents.core.test_retention import (
    DAY,
    HOUR,
    _check_summarized,
    _claims_close,
    _summarizing,
    ev,
    join,
)
from tests.support.events import apparel_order

CLAIM = "group_spend_multiple"


def _folding(records: list[Any], window_ms: int, fold_months: bool = True) -> Ledger:
    return _summarizing(records, window_ms, fold_months=fold_months)


def _open_months(ledger: Ledger) -> set[tuple[str, str]]:
    """The (merchant, month)s with a session started in them not summarized yet: the months
    a fold must leave raw (a join may still come)."""
    return {
        (session.merchant_id, cst_month(session.started_ts))
        for session in ledger.sessions.values()
        if session.started_ts is not None and not isinstance(session.presence, SessionSummary)
    }


def _assert_closed_months_dropped(ledger: Ledger) -> None:
    """No row is left of a month the fold closed: past every horizon by the session horizon
    and with every session of its merchant in it summarized."""
    open_months = _open_months(ledger)
    cutoff = min(h for h in (ledger.horizon_ts(t) for t in range(5)) if h is not None)
    cutoff -= 7 * DAY + DAY  # the session horizon, and the fold's once-a-day cadence
    held = set(ledger.month_first_joins) | {(m, month) for m, month, _u in ledger.month_spend}
    for merchant, month in held:
        assert cst_month_end(month) > cutoff or (merchant, month) in open_months


@functools.cache
def _simulated(days: int, scale: float, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """A simulated xhs stream stretched to `days` (several CST months) and its truth."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    lines = generate(scenario, seed, scale).lines
    truth = compute_truth(lines, scenario="xhs", seed=seed)
    return [decode(line.encode()) for line in lines], truth


def test_months_fold_over_a_multi_month_stream_as_the_truth_reference_counts() -> None:
    """100 days of the simulated xhs scenario (July to early October, CST), 2-day window:
    several (merchant, month)s fold, of at least two months, while a month with a
    session that never ended (the simulator's crashed producers) stays raw; the figure, its
    counts and spends equal the truth reference's (`truth.py`) and, with its interval, the
    ledger's that folds no month (1e-9)."""
    decoded, truth = _simulated(100, 0.3, 5)
    want = truth["claims"][CLAIM]
    folded = _folding(decoded, 2 * DAY)
    kept = _folding(decoded, 2 * DAY, fold_months=False)
    assert kept.folded_months == 0 and not kept.month_folded_users
    assert folded.folded_months >= 2
    gone = set(kept.month_first_joins) - set(folded.month_first_joins)
    assert len(gone) == folded.folded_months and len({month for _m, month in gone}) >= 2
    assert folded.month_spend.keys() < kept.month_spend.keys()
    assert _open_months(folded) & set(folded.month_first_joins)  # an unended session's month
    _assert_closed_months_dropped(folded)
    got = build_report(folded)["claims"][CLAIM]
    for key in ("members", "population", "member_spend_cny", "population_spend_cny"):
        assert got["detail"][key] == pytest.approx(want[key], rel=1e-12), key
    assert got["observed"] == pytest.approx(want["observed"], rel=1e-9)
    assert got["n"] == want["members"]
    held = build_report(kept)["claims"][CLAIM]
    for key in ("observed", "ci_low", "ci_high"):
        assert math.isclose(got[key], held[key], rel_tol=1e-9), key
    assert got["clusters"] == held["clusters"] and got["verdict"] == held["verdict"]


def _months_of_one_room(months: int, viewers: int, fold_months: bool = True) -> Ledger:
    """`months` CST months (from July 2024) of one merchant's room: a session a month joined
    by the same `viewers` users, each ordering, a third of them group members; then 20 days
    of events on every topic to move the horizons past the last month + the session horizon."""
    ledger = Ledger(dedupe_window_ms=DAY, fold_sessions=True, fold_months=fold_months)
    for i in range(viewers // 3):
        ledger.apply(ev("group_joined", _JULY, merchant_id="m1", user_id=f"u{i}", group_id="g"))
    start = _JULY
    for month in range(months):
        sid = f"s{month}"
        ledger.apply(
            ev("session_started", start + HOUR, session_id=sid, room_id="r1", merchant_id="m1")
        )
        for i in range(viewers):
            ledger.apply(join(start + HOUR + 1000 + i, f"u{i}", sid=sid))
            ledger.apply(_paid(start + 2 * HOUR + i, f"o{month}-{i}", f"u{i}", sid, 100 * (i + 1)))
        ledger.apply(ev("session_ended", start + 3 * HOUR, session_id=sid))
        # A heartbeat on every topic each day of the month (another room, no group claims).
        end = cst_month_end(cst_month(start))
        for day in range(1, (end - start) // DAY + 1):
            _heartbeat(ledger, start + day * DAY, f"{month}-{day}")
        start = end
    for day in range(1, 21):
        _heartbeat(ledger, start + day * DAY, f"tail-{day}")
    return ledger


_JULY = 1_719_763_200_000  # 2024-07-01 00:00 CST


def _paid(ts: int, order_id: str, user: str, sid: str, cents: int) -> Any:
    return ev("order_paid", ts, **apparel_order(order_id, sid, user, cents))


def _heartbeat(ledger: Ledger, ts: int, tag: str) -> None:
    sid = f"h{tag}"
    ledger.apply(ev("session_started", ts, session_id=sid, room_id="r2", merchant_id="m2"))
    ledger.apply(join(ts, "w", sid=sid))
    ledger.apply(_paid_m2(ts, tag, sid))
    ledger.apply(ev("interaction", ts, session_id=sid, user_id="w", kind="like"))
    ledger.apply(ev("group_joined", ts, merchant_id="m2", user_id="w", group_id="g2"))
    ledger.apply(ev("session_ended", ts + 1, session_id=sid))


def _paid_m2(ts: int, tag: str, sid: str) -> Any:
    item = {"sku_id": "k2", "quantity": 1, "unit_price_cents": 100, "category": "apparel"}
    return ev(
        "order_paid",
        ts,
        order_id=f"p{tag}",
        session_id=sid,
        merchant_id="m2",
        user_id="w",
        amount_cents=100,
        items=[item],
    )


def _month_state_bytes(ledger: Ledger) -> int:
    return len(
        pickle.dumps(
            (ledger.month_first_joins, ledger.month_spend, ledger.month_folded_users),
            protocol=5,
        )
    )


def test_a_folded_months_state_does_not_grow_with_its_rows() -> None:
    """The same 150 users in 2 or in 5 closed months: the folded state (per-user totals) is
    the same size within a few bytes a user (the sums' ints grow), while without the month
    fold it holds a row per (merchant, month, user) and grows with the months; the figure is
    the same either way."""
    two, five = _months_of_one_room(2, 150), _months_of_one_room(5, 150)
    assert two.folded_months >= 2 and five.folded_months >= 5
    assert not any(m == "m1" for m, _month in five.month_first_joins)
    assert not any(m == "m1" for m, _month, _u in five.month_spend)
    assert len(five.month_folded_users) == 150 + 1  # the room's users and the heartbeat's
    assert _month_state_bytes(five) <= _month_state_bytes(two) + 4 * 150
    raw = _months_of_one_room(5, 150, fold_months=False)
    assert _month_state_bytes(raw) > 4 * _month_state_bytes(five)
    folded, held = build_report(five)["claims"][CLAIM], build_report(raw)["claims"][CLAIM]
    assert folded["detail"] == held["detail"] and folded["detail"]["population"] >= 5 * 150
    for key in ("observed", "ci_low", "ci_high"):
        assert math.isclose(folded[key], held[key], rel_tol=1e-9), key


def test_fold_months_needs_the_session_fold() -> None:
    with pytest.raises(ValueError, match="fold_sessions"):
        Ledger(DAY, fold_months=True)


def test_a_version_7_state_loads_with_no_month_folded() -> None:
    """A snapshot written before the month fold (version 7) loads with the fold off and no
    per-user totals; its months' rows read as before."""
    ledger = _months_of_one_room(3, 30, fold_months=False)
    want = build_report(ledger)["claims"][CLAIM]
    for name in ("fold_months", "month_folded_users", "folded_months", "_month_fold_day"):
        del ledger.__dict__[name]
    blob = MAGIC + bytes([7]) + zlib.compress(pickle.dumps((ledger, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert not restored.fold_months and restored.month_folded_users == {}
    assert restored.folded_months == 0
    assert build_report(restored)["claims"][CLAIM] == want


@pytest.mark.parametrize("name", ["xhs"])  # impulse: the same, 5 s more
def test_closed_months_fold_across_partitions_through_their_users_owners(name: str) -> None:
    """The fixture split over 3 partitions by its contract keys (membership from every group
    event, as the worker's table gives it), fed in chunks: after each chunk a partition sends
    the rows of the months closed on its side to their user's owner (murmur2 of the user id,
    as an internal topic keyed by user would) and its announcement to every partition, each
    message delivered twice (a redelivery); the (merchant, month)s one ledger fed everything
    folds (July 2024's, but a merchant's with a session that never ended) are combined into
    per-user totals, no partition holds a row of them, and every claim of the merged
    partitions equals the keep-everything ledger's and the truth reference's (1e-9)."""
    from agents.core.ledger import MonthRow
    from agents.core.merge import merge_ledgers
    from tests.agents.core.test_merge import partition_of, records, split

    stream = records(name)
    decoded = [event for _topic, _key, event in stream]
    everything = build_report(_summarizing(decoded, None))
    groups = _summarizing(
        [e for e in decoded if getattr(e, "type", "").startswith("group_")], 2 * DAY
    )
    parts = split(stream, 3)
    ledgers = [Ledger(2 * DAY, fold_sessions=True) for _ in parts]
    for ledger in ledgers:
        ledger.membership_from = groups
    sent = 0
    pending_checked = False
    for begin in range(0, max(len(part) for part in parts), 2000):
        for source, (ledger, part) in enumerate(zip(ledgers, parts, strict=True)):
            for _topic, _key, event in part[begin : begin + 2000]:
                if isinstance(event, Rejection):
                    ledger.reject(event.reason)
                else:
                    ledger.apply(event)
            for message in ledger.take_closed_month_rows(source) * 2:
                sent += 1
                if isinstance(message, MonthRow):
                    ledgers[partition_of(message.user.encode(), 3)].receive_month_row(message)
                else:
                    for owner in ledgers:
                        owner.receive_month_closed(message, len(ledgers))
        if not pending_checked and any(ledger.month_rows_in for ledger in ledgers):
            # Rows handed over, not combined yet (a source has not closed their month): the
            # merged report reads them as the partitions' own rows.
            pending_checked = True
            fed = [event for part in parts for _t, _k, event in part[: begin + 2000]]
            want = build_report(_summarizing(fed, None))["claims"][CLAIM]
            got = build_report(merge_ledgers(ledgers))["claims"][CLAIM]
            assert _claims_close({CLAIM: got}, {CLAIM: want}) == []
    assert sent > 0 and pending_checked
    assert any(ledger.month_folded_users for ledger in ledgers)
    one = _summarizing(decoded, 2 * DAY, fold_months=True)  # one ledger fed everything
    folded = set(_summarizing(decoded, 2 * DAY).month_first_joins) - set(one.month_first_joins)
    combined = set().union(*(ledger._months_combined for ledger in ledgers))
    assert combined == folded and any(month == "2024-07" for _m, month in folded)
    for ledger in ledgers:
        assert not combined & {*ledger.month_first_joins, *ledger.month_rows_in}
        assert not any((m, month) in combined for m, month, _u in ledger.month_spend)
    merged = merge_ledgers(
        [load_state(dump_state(ledger, OperatorBoard()))[0] for ledger in ledgers]
    )
    _check_summarized(build_report(merged), everything, f"{name}.jsonl")
