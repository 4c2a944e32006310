"""Paid orders and refunds folded past the refund horizon (issue 17): `Ledger._fold_orders`,
`Ledger.refunds_from` and the refund table (`agents.core.refunds`)."""

from __future__ import annotations

import pickle
import zlib
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import OrderFold
from agents.core.merge import merge_ledgers
from agents.core.persist import MAGIC, dump_state, load_state
from agents.core.refunds import RefundTable
from schemas import Rejection
from tests.agents.core.test_merge import records, split
from tests.agents.core.test_retention import (
    DAY,
    HOUR,
    T0,
    _check_summarized,
    _operator_against_truth,
    _order,
    ev,
    started,
)
from tests.support.events import apparel_order, jittered
from tests.support.live import fixture_operator_truth_folding, fixture_truth

#: Longer than the fixtures' longest refund delay (11.9 days), so every refund counts as it
#: does with no horizon (the truth files'), and short enough for most of the 60 days to fold.
REFUND_HORIZON = 13 * DAY
WINDOW = 2 * DAY


def _folding(
    events: list[Any],
    window_ms: int | None,
    refunds: Any = None,
    groups: Ledger | None = None,
    board: OperatorBoard | None = None,
) -> Ledger:
    ledger = Ledger(
        window_ms,
        refund_horizon_ms=REFUND_HORIZON if window_ms is not None else None,
        fold_sessions=window_ms is not None,
    )
    ledger.refunds_from = refunds
    ledger.membership_from = groups
    for decoded in events:
        if isinstance(decoded, Rejection):
            ledger.reject(decoded.reason)
        elif ledger.apply(decoded) and board is not None:
            board.observe(decoded)
            if ledger.folded_ids:
                board.take_folded(ledger)
    return ledger


def _refund_table(parts: list[list[Any]]) -> RefundTable:
    """The worker's refund table over every partition of the orders topic."""
    table = RefundTable(WINDOW, refund_horizon_ms=REFUND_HORIZON)
    for number, part in enumerate(parts):
        for topic, _key, decoded in part:
            if topic != "live.orders":
                continue
            if isinstance(decoded, Rejection):
                table.reject(number, decoded.reason)
            else:
                table.apply(number, decoded)
    return table


@pytest.mark.parametrize("name", ["xhs.jsonl", "impulse.jsonl"])
def test_orders_fold_past_the_refund_horizon_and_every_claim_stays_exact(name: str) -> None:
    """A 2-day window and a 13-day refund horizon over the 60-day fixtures with the session
    fold: most paid orders and refunds fold (`Ledger.order_fold`), and every claim's observed
    value, counts and interval are the keep-everything ledger's (1e-9) and the truth's,
    `size_refund_share`, `return_rate` and `bundle_share` included, and so are the refund
    counters and the operator's refunds; so after a snapshot round trip, for the stream
    shuffled, and split over 3 partitions (refunds in another partition than their orders)
    with the refund table built from all of them, merged."""
    stream = records(name.removesuffix(".jsonl"))
    decoded = [event for _topic, _key, event in stream]
    keep = _folding(decoded, None)
    everything = build_report(keep)
    board = OperatorBoard()
    ledger = _folding(decoded, WINDOW, board=board)
    assert ledger.order_fold.orders >= 0.6 * len(keep.orders)
    assert len(ledger.orders) <= 0.4 * len(keep.orders)
    assert len(ledger.refunds) <= 0.4 * len(keep.refunds)
    folded = build_report(ledger, board)
    _check_summarized(folded, everything, name)
    for key in ("late_refunds", "unmatched_refunds"):
        assert folded["retention"][key] == everything["retention"][key]
    assert folded["retention"]["folded_orders"] == ledger.order_fold.orders
    # The truth under the rule for sessions that never end (abandoned, issue 17).
    truth = fixture_operator_truth_folding(name.removesuffix(".jsonl"), WINDOW)
    _operator_against_truth(folded["operator"], truth)  # refunds by session included
    assert folded["operator"]["overall"]["refunds"] == truth["overall"]["refunds"] > 0

    restored, _board = load_state(dump_state(ledger, OperatorBoard()))
    assert build_report(restored)["claims"] == folded["claims"]

    shuffled = _folding(jittered(decoded, 12 * HOUR), WINDOW)
    assert shuffled.counts.expired == 0 and shuffled.order_fold.orders > 0
    _check_summarized(build_report(shuffled), everything, name)

    groups = _folding([e for e in decoded if getattr(e, "type", "").startswith("group_")], WINDOW)
    parts = split(stream, 3)
    table = _refund_table(parts)
    ledgers = [_folding([e for _t, _k, e in part], WINDOW, table, groups) for part in parts]
    refunds_at = [
        i for i, part in enumerate(ledgers) if part.refunds or part.order_fold.dropped_refunds
    ]
    orders_at = [i for i, part in enumerate(ledgers) if part.order_fold.orders]
    assert len(refunds_at) == 1 and len(orders_at) == 3  # refunds apart from most orders
    assert sum(part.order_fold.orders for part in ledgers) >= 0.6 * len(keep.orders)
    merged = merge_ledgers([load_state(dump_state(part, OperatorBoard()))[0] for part in ledgers])
    _check_summarized(build_report(merged), everything, name)


def test_without_the_refund_table_a_partition_folds_its_orders_unrefunded() -> None:
    """Why the worker needs the table: a partition folding with only its own refunds (those
    of the empty key's partition) folds its sessions' orders as never refunded."""
    stream = records("xhs")
    decoded = [event for _topic, _key, event in stream]
    groups = _folding([e for e in decoded if getattr(e, "type", "").startswith("group_")], WINDOW)
    parts = split(stream, 3)
    ledgers = [_folding([e for _t, _k, e in part], WINDOW, None, groups) for part in parts]
    claims = build_report(merge_ledgers(ledgers))["claims"]
    truth = fixture_truth("xhs")["claims"]
    for claim in ("size_refund_share", "return_rate"):
        assert claims[claim]["observed"] < 0.8 * truth[claim]["observed"], claim


def test_a_refund_partition_takes_an_order_paid_as_its_id_and_ts_only() -> None:
    """Issue 19: a refund-table partition keeps no fact of an `order_paid` (no order, buyer,
    month spend or session) but decides every record as the partition ledger of its number
    does: a copy of a payment is a duplicate (even as a refund with its event id), one older
    than the window is expired, one stamped far ahead moves no horizon, and the orders horizon
    is the newest payment's; an event of another topic sent there leaves only its id. Counts
    by construction: 4 payments, 1 refund and 1 stray viewer event valid, 3 duplicates, 1
    expired, 1 ahead of the clock."""
    ahead = 4_000_000_000_000  # year 2096: far past the wall clock
    stream = [
        _order(T0, "o1", "u1", "s1"),
        ev("order_paid", T0 + HOUR, "p2", **apparel_order("o2", None, "u2")),
        ev("order_paid", T0 + HOUR, "p2", **apparel_order("o2", None, "u2")),  # a copy
        ev("order_refunded", T0 + 2 * HOUR, "p2", order_id="o2", amount_cents=1),  # its id
        ev("order_refunded", T0 + 3 * HOUR, "r1", order_id="o1", amount_cents=9900),
        ev("order_paid", ahead, "p3", **apparel_order("o3", "s1", "u3")),
        ev("viewer_joined", T0 + 3 * HOUR, "v1", session_id="s9", user_id="u9"),  # stray
        ev("viewer_joined", T0 + 3 * HOUR, "v1", session_id="s9", user_id="u9"),  # its copy
        ev("order_paid", T0 + 3 * DAY, "p4", **apparel_order("o4", "s2", "u4")),
        ev("order_paid", T0, "p5", **apparel_order("o5", "s1", "u5")),  # older than the window
    ]
    ledger = Ledger(dedupe_window_ms=DAY, future_tolerance_ms=DAY, refund_horizon_ms=10 * DAY)
    table = RefundTable(DAY, DAY, 10 * DAY)
    for event in stream:
        assert table.apply(0, event) == ledger.apply(event), event
    part = table.partition(0)
    assert (part.counts.valid, part.counts.duplicates, part.counts.expired) == (6, 3, 1)
    assert part.counts.future == 1
    assert part.counts == ledger.counts
    assert part.refund_fold_ts() == ledger.refund_fold_ts() == T0 + 3 * DAY - DAY
    assert table.refund_fold_ts() == T0 + 2 * DAY
    assert [refund.order_id for refund in table.refunds_of("o1")] == ["o1"]
    assert table.refunds_of("o2") == ()
    # The partition ledger keeps the payments; the table's partition nothing of them.
    assert len(ledger.orders) == 4 and ledger.first_orders and ledger.sessions
    assert (part.orders, part.first_orders, part.month_spend, part.sessions) == ([], {}, {}, {})


def _one_session_orders(orders: int) -> Ledger:
    """One session with `orders` orders (every third refunded for size), then 30 days of
    another room's events on every topic to move every horizon past it."""
    ledger = Ledger(dedupe_window_ms=DAY, refund_horizon_ms=10 * DAY, fold_sessions=True)
    ledger.apply(started(T0, "big"))
    for i in range(orders):
        ledger.apply(_order(T0 + 1000 + i, f"o{i}", f"u{i % 7}", "big"))
        if i % 3 == 0:
            refund = {"order_id": f"o{i}", "amount_cents": 9900, "reason": "size"}
            ledger.apply(ev("order_refunded", T0 + DAY + i, **refund))
    ledger.apply(ev("session_ended", T0 + HOUR, session_id="big"))
    for day in range(1, 31):
        _another_rooms_day(ledger, day)
    return ledger


def _another_rooms_day(ledger: Ledger, day: int) -> None:
    """A short session of another room `day` days after T0, with an event on every topic (a
    refund of no order moves the orders' horizon)."""
    ts = T0 + day * DAY
    ledger.apply(started(ts, f"s{day}"))
    ledger.apply(ev("session_ended", ts + 1, session_id=f"s{day}"))
    ledger.apply(ev("viewer_joined", ts, session_id=f"s{day}", user_id="w"))
    ledger.apply(ev("interaction", ts, session_id=f"s{day}", user_id="w", kind="like"))
    ledger.apply(ev("group_joined", ts, merchant_id="m1", user_id="w", group_id="g1"))
    ledger.apply(ev("order_refunded", ts, order_id="none", amount_cents=1))


def test_a_folded_orders_state_does_not_grow_with_orders() -> None:
    """50 or 500 orders of a session, a third refunded: once folded, no order and no refund is
    held and the fold's state is the same size (a few longer ints), exact counts kept."""

    def state(orders: int) -> tuple[Ledger, int]:
        ledger = _one_session_orders(orders)
        kept = (ledger.orders, ledger.refunds, ledger.order_fold)
        return ledger, len(pickle.dumps(kept, protocol=5))

    small, small_bytes = state(50)
    large, large_bytes = state(500)
    assert large.orders == [] and large.order_fold.orders == 500
    assert abs(large_bytes - small_bytes) <= 32
    claims = build_report(large)["claims"]
    assert claims["size_refund_share"]["detail"] == {"size_refunded": 167, "apparel_orders": 500}
    assert claims["return_rate"]["detail"] == {"refunded_orders": 167, "paid_orders": 500}


def test_an_order_id_paid_again_after_its_fold_is_a_new_order() -> None:
    """The rule for an order id paid again (a distinct `order_paid`) after its payments were
    folded: necessarily more than the refund horizon after them (an older one is expired), so
    no refund counts for both; it is a new order for `return_rate` (a second distinct id),
    and its own refunds count for it alone. Without the fold the id is one case."""

    def feed(ledger: Ledger) -> Ledger:
        ledger.apply(started(T0, "a"))
        ledger.apply(_order(T0 + 1000, "o1", "u1", "a"))
        ledger.apply(ev("order_refunded", T0 + DAY, order_id="o1", amount_cents=9900))
        ledger.apply(ev("session_ended", T0 + HOUR, session_id="a"))
        for day in range(1, 40):
            _another_rooms_day(ledger, day)
            if day == 20:
                assert ledger.order_fold.orders in (0, 1)
                ledger.apply(_order(T0 + day * DAY, "o1", "u1", f"s{day}"))  # paid again
        return ledger

    folded = feed(Ledger(dedupe_window_ms=DAY, refund_horizon_ms=10 * DAY, fold_sessions=True))
    assert folded.order_fold.orders == 2
    assert build_report(folded)["claims"]["return_rate"]["detail"] == {
        "refunded_orders": 1,
        "paid_orders": 2,
    }
    keep = feed(Ledger(dedupe_window_ms=DAY, refund_horizon_ms=10 * DAY))
    assert build_report(keep)["claims"]["return_rate"]["detail"] == {
        "refunded_orders": 1,
        "paid_orders": 1,
    }


def test_a_version_7_state_loads_with_nothing_folded_and_folds_on() -> None:
    """A state written before the order fold (version 7: no `order_fold`) loads with its
    orders held and nothing folded, and its report is the same."""
    ledger = _one_session_orders(30)
    assert ledger.order_fold.orders == 30
    unfolded = Ledger(dedupe_window_ms=DAY, refund_horizon_ms=10 * DAY, fold_sessions=True)
    unfolded.apply(started(T0, "big"))
    unfolded.apply(_order(T0 + 1000, "o1", "u1", "big"))
    state = unfolded.__getstate__()
    for name in ("order_fold", "_order_fold_day"):
        state.pop(name)
    old = Ledger.__new__(Ledger)
    old.__dict__.update(state)
    blob = MAGIC + bytes([7]) + zlib.compress(pickle.dumps((old, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert isinstance(restored.order_fold, OrderFold) and restored.order_fold.orders == 0
    assert len(restored.orders) == 1
    assert build_report(restored)["claims"]["bundle_share"]["n"] == 1
