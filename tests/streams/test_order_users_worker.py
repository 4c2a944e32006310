"""Issue 17: the order fold's buyer rows routed to their buyer's owner partition through the
month-rows topic (`Ledger.take_order_users`, streams/runtime/monthrows.py), on the real
broker: a buyer with orders in both partitions ends with one row, at the owner, equal to the
counts read from the stream itself."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.ledger import (
    BUNDLES,
    DAY_MS,
    ORDER_CLAIMS,
    ORDER_LAST_DAY,
    RETURNS,
    SIZE_REFUNDS,
    cst_month,
)
from agents.core.persist import load_state
from schemas import Rejection, decode
from streams.runtime.global_report import newest_snapshots
from streams.runtime.monthrows import owner_of
from streams.tools.simulator.truth_file import compute_truth
from tests.agents.core.test_merge import partition_of
from tests.streams.test_membership import topic_and_key
from tests.streams.test_month_rows import _fold_settings, _settled
from tests.support.exchange import fed_through_held_exchange
from tests.support.live import fixture_lines, replay_lines, report_of, running_worker

PARTITIONS = 2


def _buyers(lines: list[bytes]) -> dict[str, dict[str, Any]]:
    """Per buyer, from the lines themselves: the orders partitions their payments are in, the
    months of those, and the row the order fold should give them (every refund of the fixture
    counts: each comes within 12 days, inside the 13-day refund horizon)."""
    paid: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    size_refunded: set[str] = set()
    refunded: set[str] = set()
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("event_id") in seen:
            continue
        if isinstance(decode(line), Rejection):  # not a contract event: no fact of it
            continue
        seen.add(event.get("event_id"))
        if event.get("type") == "order_refunded":
            refunded.add(event["order_id"])
            if event.get("reason") == "size":
                size_refunded.add(event["order_id"])
        elif event.get("type") == "order_paid":
            _topic, key = topic_and_key(line)
            payment = {**event, "partition": partition_of(key, PARTITIONS)}
            paid.setdefault(event["order_id"], []).append(payment)
    buyers: dict[str, dict[str, Any]] = {}
    for order_id, payments in paid.items():
        for order in payments:  # each payment a case of the two shares
            buyer = buyers.setdefault(
                order["user_id"], {"partitions": set(), "months": set(), "row": [0] * 6, "last": 0}
            )
            buyer["partitions"].add(order["partition"])
            buyer["months"].add(cst_month(order["ts"]))
            buyer["last"] = max(buyer["last"], order["ts"] // DAY_MS)
            row = buyer["row"]
            if any(item["category"] == "apparel" for item in order["items"]):
                row[2 * SIZE_REFUNDS] += order_id in size_refunded
                row[2 * SIZE_REFUNDS + 1] += 1
            row[2 * BUNDLES] += len({item["sku_id"] for item in order["items"]}) >= 2
            row[2 * BUNDLES + 1] += 1
        first = min(payments, key=lambda order: order["ts"])  # `return_rate`: the id once
        row = buyers[first["user_id"]]["row"]
        row[2 * RETURNS] += order_id in refunded
        row[2 * RETURNS + 1] += 1
    return buyers


@pytest.mark.integration
@pytest.mark.slow
def test_a_buyer_with_orders_in_both_partitions_has_one_row_at_the_owner(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The xhs fixture through a worker with the fold, 2 partitions, a 13-day refund horizon:
    July is final on both partitions' side before the stream ends, so every buyer of July only
    whose payments are in both partitions has, in the partitions' snapshots after the worker
    stops, one row at its owner (`owner_of`, murmur2 of the user id) equal to the counts read
    from the lines (each claim's hits and cases, the last order's day), and none in the other
    partition, neither as a source nor as an owner."""
    lines = fixture_lines("xhs")
    buyers = _buyers(lines)
    both = sorted(
        user
        for user, buyer in buyers.items()
        if buyer["partitions"] == {0, 1} and buyer["months"] == {"2024-07"}
    )
    assert len(both) >= 3, len(both)
    settings = _fold_settings(
        kafka_bootstrap,
        prefix="orderusers",
        partitions=PARTITIONS,
        refund_horizon_days=13,
        refund_idle_s=2,
    )
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "xhs.jsonl", lines)
        _settled(settings, worker)
        # July is final at a partition once the refund table's idle rule (2 s) moves its
        # orders horizon, which may come after the topics went quiet: wait until both owners
        # hold every source's July announcement (`owner_through`), then drain what followed.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = worker.status()["month_rows"]["order_users"]
            if all(m is not None and m >= "2024-07" for m in status["owner_through"].values()):
                break
            time.sleep(0.5)
        _settled(settings, worker)
        status = worker.status()["month_rows"]["order_users"]
        assert worker.stop() == 0, worker.tail()
        snapshots = asyncio.run(newest_snapshots(settings))
        folds = {p: load_state(snapshot.blob)[0].order_fold for p, snapshot in snapshots.items()}
    assert status["sent"] > 0 and status["retired"] == 0, status
    assert sorted(folds) == [0, 1] and all(
        f.through_by == {0: "2024-07", 1: "2024-07"} for f in folds.values()
    ), {p: (f.through_by, f.sent_through) for p, f in folds.items()}
    for user in both:
        owner = owner_of(user, PARTITIONS)
        want = [*buyers[user]["row"], buyers[user]["last"]]
        assert folds[owner].users.get(user) == want, (user, folds[owner].users.get(user), want)
        assert ORDER_LAST_DAY == len(want) - 1
        other = folds[1 - owner]
        assert user not in other.users
        assert all(user not in rows for rows in other.months.values())
        assert all(user not in rows for rows in other.rows_in.values())


@pytest.mark.slow
def test_buyer_rows_in_flight_are_in_the_view_until_their_owner_holds_them() -> None:
    """3 partition states fed like a worker's (xhs split by contract key, a 2-day window, a
    13-day refund horizon, the refund table over every partition), each batch followed by the
    exchange's take, the sender holding every take: the buyer rows taken are in no ledger, yet
    the view's `size_refund_share`, `bundle_share` and `return_rate` equal the truth file's
    (their intervals the keep-everything ledger's); once delivered to their owners (and the
    announcements to all), nothing is in flight and the figures are the same."""
    from agents.core import Ledger, build_report
    from agents.core.ledger import ORDER_CLAIMS, OrderUsers, OrderUsersClosed
    from agents.core.refunds import RefundTable
    from streams.runtime.state import LiveState
    from tests.agents.core.test_order_fold import REFUND_HORIZON, WINDOW
    from tests.streams.test_membership import _table, routed
    from tests.support.live import fixture_truth

    records = routed("xhs", 3)
    table = RefundTable(WINDOW, refund_horizon_ms=REFUND_HORIZON)
    keep = Ledger(None)
    for record in records:
        event = decode(record.value)
        if not isinstance(event, Rejection):
            keep.apply(event)
            if record.topic == "live.orders":
                table.apply(record.partition, event)
    state = LiveState(
        dedupe_window_ms=WINDOW,
        fold_sessions=True,
        membership=_table(records, WINDOW),
        refund_horizon_ms=REFUND_HORIZON,
        refunds=table,
    )
    exchange, sender = fed_through_held_exchange(state, records, 3)
    rows = [m for m in sender.taken if isinstance(m, OrderUsers)]
    held = [state.partitions[p].ledger for p in range(3)]
    assert len(rows) > 50 and not any(ledger.order_fold.rows_in for ledger in held)
    truth = fixture_truth("xhs")["claims"]
    everything = build_report(keep)["claims"]

    def check() -> None:
        claims = build_report(state.ledger)["claims"]
        for claim in ORDER_CLAIMS:
            assert claims[claim]["observed"] == pytest.approx(truth[claim]["observed"], rel=1e-9)
            for key in ("observed", "ci_low", "ci_high", "n"):
                assert claims[claim][key] == pytest.approx(everything[claim][key], rel=1e-9)

    assert sum(isinstance(row, OrderUsers) for row in exchange.in_flight()) == len(rows)
    check()
    for message in sender.taken:  # delivered: rows to their owner, announcements to all
        if isinstance(message, OrderUsers):
            held[owner_of(message.user, 3)].receive_order_users(message)
        elif isinstance(message, OrderUsersClosed):
            for ledger in held:
                ledger.receive_order_users_closed(message, 3)
    state.version += 1
    assert not any(isinstance(row, OrderUsers) for row in exchange.in_flight())
    assert sum(len(ledger.order_fold.users) for ledger in held) > 0
    check()


def test_a_partition_that_gets_no_order_announces_its_buyers_months(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """100 simulated days of xhs with partition 2's orders topic records left out (rooms that
    sell nothing) into a 3-partition worker with a 13-day refund horizon, whole idle
    partitions never following within the run (`LIVEPULSE_HORIZON_IDLE_S=600`) and the
    refund table's idle rule at 2 s: partition 2 keeps applying records, so only its orders
    horizon can follow (`Ledger.follow_idle_orders`, counted in `horizons_followed`), and
    then it announces its buyers' months (`OrderUsersClosed`) to every owner as the others
    do: without it, it never announced, and no owner could ever retire a buyer (the
    retirement itself: tests/agents/core/test_order_users.py). The order claims equal the
    truth reference's of the records replayed.

    The replay outruns the tables' idle rules, so partition 0 (no group event) has no groups
    horizon until it ends: its first order fold then runs in the pass that abandons its July
    sessions that never ended (s-40, s-57), summarized a pass later at the same horizon. Every
    partition announces the same month (August: September's refund claims are still open),
    every owner has it from every source, and the owners retire buyers (session 18: at
    a07cee1 partition 0 stayed at June, holding o-36 and o-56, and none retired)."""
    from tests.streams.test_month_rows import _simulated

    partitions = 3
    lines, _truth = _simulated(100, 0.3, 5)
    kept = [
        line
        for line in lines
        if topic_and_key(line)[0] != "live.orders"
        or partition_of(topic_and_key(line)[1], partitions) != 2
    ]
    assert 0 < len(kept) < len(lines)
    truth = compute_truth([line.decode() for line in kept], scenario="xhs", seed=5)
    settings = _fold_settings(
        kafka_bootstrap,
        "noorders",
        partitions,
        horizon_idle_s=600.0,
        refund_idle_s=2.0,
        refund_horizon_days=13,
        user_horizon_days=10,
    )
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "kept.jsonl", kept)
        _settled(settings, worker)
        deadline = time.monotonic() + 60
        while True:  # partition 2's orders partition idle for 2 s, then its take
            followed = worker.status()["month_rows"]["group_floors"]["2"]["horizons_followed"]
            if followed or time.monotonic() > deadline:
                break
            time.sleep(1)
        _settled(settings, worker)
        report = report_of(worker)
        status = worker.status()["month_rows"]
        assert worker.stop() == 0, worker.tail()
        snapshots = asyncio.run(newest_snapshots(settings))
        folds = {p: load_state(snapshot.blob)[0].order_fold for p, snapshot in snapshots.items()}
    assert status["group_floors"]["2"]["horizons_followed"] >= 1, status["group_floors"]
    through = {p: fold.sent_through for p, fold in folds.items()}
    assert through == {0: "2024-08", 1: "2024-08", 2: "2024-08"}, through
    owners = status["order_users"]["owner_through"]
    assert owners == {"0": "2024-08", "1": "2024-08", "2": "2024-08"}, owners
    assert status["order_users"]["retired"] > 0, status["order_users"]
    assert sorted(folds) == [0, 1, 2]
    assert folds[2].sent_through is not None and not folds[2].months  # it has no buyer
    # As far as the others (its bound is its fold's due time alone: it holds no order).
    assert folds[2].sent_through >= max(folds[0].sent_through or "", folds[1].sent_through or "")
    for fold in folds.values():  # every owner has its announcement
        assert fold.through_by.get(2) == folds[2].sent_through, fold.through_by
    for claim in ORDER_CLAIMS:
        want = truth["claims"][claim]
        got = report["claims"][claim]
        assert got["observed"] == pytest.approx(want["observed"], rel=1e-9), claim
        assert got["detail"] == {k: v for k, v in want.items() if k != "observed"}, claim
