"""Issue 17: the worker's refund table over the whole orders topic (streams/runtime/refunds.py),
so that a worker's partitions fold their orders past the refund horizon with every refund that
can count for them: partition states fed like a worker's, and a worker on the real broker with
`LIVEPULSE_FOLD_SESSIONS`, against the fixtures' truth files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import TOPICS, FirstsClosed, _period_stamp, cst_month_start
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.refunds import WorkerRefundTable
from streams.runtime.state import LiveState
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from tests.agents.core.test_order_fold import REFUND_HORIZON, WINDOW, _folding
from tests.agents.core.test_retention import DAY, T0, _check_summarized
from tests.streams.test_membership import (
    GROUPS,
    PARTITIONS,
    _table,
    fetched,
    routed,
    with_inserted,
)
from tests.support.live import (
    drain,
    fixture_lines,
    fold_settings,
    replay_lines,
    report_of,
    running_worker,
)

ORDERS = "live.orders"
_ORDERS = TOPICS.index(ORDERS)


def _refund_table(records: list[RawRecord], caught_up: bool = True) -> WorkerRefundTable:
    table = WorkerRefundTable(WINDOW, None, REFUND_HORIZON)
    ends: dict[int, int] = {}
    for partition, offsets, values in fetched(records, ORDERS):
        table.apply_fetch(partition, offsets, values)
        ends[partition] = offsets[-1] + 1
    table.catch_up_to(ends if caught_up else {p: 10**9 for p in range(PARTITIONS)})
    return table


def _fed(records: list[RawRecord], refunds: WorkerRefundTable | None) -> LiveState:
    """Partition states fed like a worker's, batches of 500 records of each partition in turn,
    the refund table (read ahead of them) dropping what it may after each batch, as the
    worker's reader does after each fetch."""
    state = LiveState(
        dedupe_window_ms=WINDOW,
        refund_horizon_ms=REFUND_HORIZON,
        fold_sessions=True,
        membership=_table(records, WINDOW),
        refunds=refunds,
    )
    if refunds is not None:
        refunds.held_ledgers = lambda: [p.ledger for p in state.partitions.values()]
    by_partition = [[r for r in records if r.partition == p] for p in range(PARTITIONS)]
    for start in range(0, max(len(part) for part in by_partition), 500):
        for part in by_partition:  # each partition in its offset order
            state.apply_batch(part[start : start + 500])
            if refunds is not None:
                refunds.advance(0, 0)
    return state


def test_partitions_with_the_refund_table_fold_their_orders_exactly() -> None:
    """3 partition states fed like a worker's (`LiveState`, xhs split by contract key, a 2-day
    window, a 13-day refund horizon): with the table of every orders partition (read ahead of
    them, dropping refunds as they fold) their orders fold, every refund being in the
    partition of the empty key, and every claim equals the
    keep-everything ledger's and the truth file's; the table holds the refunds the partition
    ledgers hold (the same duplicates and expiries); without it the refund claims are wrong; not
    caught up, it folds nothing."""
    records = routed("xhs", PARTITIONS)
    table = _refund_table(records)
    assert table.refund_fold_ts() is not None
    keep = _folding([e for _topic, _key, e in _decoded(records)], None)
    assert sorted(refund.ts for refund in table.table.refunds()) == sorted(
        refund.ts for refund in keep.refunds
    )
    state = _fed(records, table)  # the table dropping refunds as the partitions fold
    assert table.table.dropped > 0
    ledgers = [p.ledger for p in state.partitions.values()]
    assert sum(ledger.order_fold.orders for ledger in ledgers) >= 0.6 * len(keep.orders)
    report = build_report(state.ledger)
    _check_summarized(report, build_report(keep), "xhs.jsonl")
    # The refunds no payment counts for, counted from the raw lines (71 refunds, none late or
    # unmatched): the partitions' copies of refunds whose orders another partition folded
    # with the table are not unmatched (they were: 25 of xhs's 71, in a report meanwhile).
    retention = report["retention"]
    assert (retention["late_refunds"], retention["unmatched_refunds"]) == _refund_fates("xhs")
    assert retention["dropped_refunds"] > 0

    alone = build_report(_fed(records, None).ledger)["claims"]  # each ledger its own refunds
    for claim in ("size_refund_share", "return_rate"):
        want = build_report(keep)["claims"][claim]["observed"]
        assert alone[claim]["observed"] < 0.8 * want, claim

    waiting = _fed(records, _refund_table(records, caught_up=False))
    assert sum(p.ledger.order_fold.orders for p in waiting.partitions.values()) == 0


def test_a_report_merged_from_two_workers_snapshots_has_every_held_orders_refunds() -> None:
    """xhs over 3 partitions fed as two workers would (with the claims by period, which hold
    August's orders): one holds the refunds' partition (the empty key's), the other the two
    others, each with its own table over every orders partition, read ahead. The first's
    table drops refunds of orders only the second holds (it knows its own held orders only),
    and the refunds' partition drops its copies with it; so the report merged from the three
    partitions' snapshots (as `livepulse report --changelog` builds it) read no refund for
    some held orders: `size_refund_share` 26 against 27 in one broker run of the rebalance
    test below. A snapshot now carries its table's refunds of the payments it holds (v10),
    and the merged refund claims equal the keep-everything ledger's; the partitions' own
    refunds are not counted twice."""
    from agents.core.merge import merge_ledgers
    from agents.core.periods import PeriodSettings
    from agents.core.persist import dump_state, load_state
    from tests.agents.core.test_merge import partition_of

    records = routed("xhs", PARTITIONS)
    empty = partition_of(b"", PARTITIONS)
    workers = [{empty}, set(range(PARTITIONS)) - {empty}]
    states: list[LiveState] = []
    for held in workers:
        table = _refund_table(records)
        state = LiveState(
            dedupe_window_ms=WINDOW,
            refund_horizon_ms=REFUND_HORIZON,
            fold_sessions=True,
            membership=_table(records, WINDOW),
            refunds=table,
            periods=PeriodSettings(),
        )
        table.held_ledgers = lambda state=state: [p.ledger for p in state.partitions.values()]
        states.append(state)
        mine = [[r for r in records if r.partition == p] for p in sorted(held)]
        for start in range(0, max(len(part) for part in mine), 500):
            for part in mine:
                state.apply_batch(part[start : start + 500])
                table.advance(0, 0)
    ledgers = [p.ledger for state in states for p in state.partitions.values()]
    assert len(ledgers) == PARTITIONS
    # The refunds' partition's next order fold (a day of horizon on, or its idle fold) drops
    # the copies its table dropped since its last: what that pass would do, now.
    assert states[0].partitions[empty].ledger.drop_refunds_the_source_dropped()
    keep = _folding([e for _topic, _key, e in _decoded(records)], None)
    copies = {refund.order_id for refund in keep.refunds}
    held_ids = {o.order_id for ledger in ledgers for o in ledger.orders if o.order_id in copies}
    in_partitions = {refund.order_id for ledger in ledgers for refund in ledger.refunds}
    assert held_ids - in_partitions, "no held order lost its refunds' copy: nothing tested"
    loaded = [load_state(dump_state(ledger, OperatorBoard()))[0] for ledger in ledgers]
    merged = build_report(merge_ledgers(loaded))["claims"]
    want = build_report(keep)["claims"]
    for claim in ("size_refund_share", "return_rate"):
        assert merged[claim]["detail"] == want[claim]["detail"], claim
        for key in ("observed", "ci_low", "ci_high"):
            assert merged[claim][key] == pytest.approx(want[claim][key], rel=1e-9), (claim, key)


def _refund_fates(name: str) -> tuple[int, int]:
    """From the fixture's lines alone: its refunds (each event id once) that are late (a
    payment of their order id more than the refund horizon before, none within it) and
    unmatched (no payment of the id at or before them)."""
    import orjson

    paid: dict[str, list[int]] = {}
    refunds: list[tuple[str, int]] = []
    seen: set[str] = set()
    for line in fixture_lines(name):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("event_id") in seen:
            continue
        if event.get("type") == "order_paid":
            paid.setdefault(event["order_id"], []).append(event["ts"])
        elif event.get("type") == "order_refunded":
            refunds.append((event["order_id"], event["ts"]))
        else:
            continue
        seen.add(event["event_id"])
    late = unmatched = 0
    for order_id, ts in refunds:
        times = paid.get(order_id, [])
        if not any(t <= ts <= t + REFUND_HORIZON for t in times):
            if any(t < ts - REFUND_HORIZON for t in times):
                late += 1
            else:
                unmatched += 1
    assert len(refunds) > 50
    return late, unmatched


def _decoded(records: list[RawRecord]) -> list[tuple[str, bytes, object]]:
    from schemas import decode

    return [(r.topic, r.key or b"", decode(r.value or b"")) for r in records]


def _refund_rows(refunds: Any) -> list[tuple[int, str, int, str]]:
    return sorted((r.ts, r.order_id, r.amount_cents, str(r.reason)) for r in refunds)


@pytest.mark.parametrize("topic", [ORDERS, GROUPS])
def test_a_fetch_decoded_at_once_rejects_its_bad_records_alone(
    topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: a table decodes a fetch at once (`ReadTable.apply_fetch`, `decode_values`).
    The xhs fixture's records of the topic (its own junk among them) fetched 50 at a time,
    with three bad records put in the middle of one fetch (not JSON, a null value, a record
    of the topic's type missing a field): every record the decoder refuses alone
    (`schemas.decode`) is counted rejected, in the table and its partition's ledger there (the
    worker's own partition ledger dead-letters it with its reason), and every valid one is
    applied: the refunds or group
    events held are the keep-everything ledger's of the fixture, and so are those of a table
    fed record by record (`apply`); a fetch read again is left out. Slices of 13
    (`DECODE_SLICE`), so that the bad records straddle two."""
    from schemas import Rejection, decode
    from streams.runtime import membership

    monkeypatch.setattr(membership, "DECODE_SLICE", 13)

    records = routed("xhs", PARTITIONS)
    kind = "order_refunded" if topic == ORDERS else "group_joined"
    bad: list[bytes | None] = [b"{not json", None, b'{"event_id":"x1","type":"%s"}' % kind.encode()]

    def table() -> Any:
        return (
            WorkerRefundTable(WINDOW, None, REFUND_HORIZON)
            if topic == ORDERS
            else _table([], WINDOW)
        )

    def held(fed: Any) -> list[Any]:
        if topic == ORDERS:
            return _refund_rows(fed.table.refunds())
        return sorted(
            (key, sorted(events))
            for ledger in fed.ledgers.values()
            for key, events in ledger.group_events.items()
        )

    at_once, one_by_one = table(), table()
    # The bad records in the middle of the middle fetch, offsets shifted after them.
    for partition, offsets, values in with_inserted(fetched(records, topic, 50), bad):
        at_once.apply_fetch(partition, offsets, values)
        at_once.apply_fetch(partition, offsets[:3], values[:3])  # read again: left out
        for offset, value in zip(offsets, values, strict=True):
            one_by_one.apply(partition, offset, value)
    lines = [r.value for r in records if r.topic == topic]
    refused = sum(value is None or isinstance(decode(value), Rejection) for value in lines + bad)
    assert refused >= len(bad) + 1  # the fixture's own junk too
    ledgers = at_once.table.partitions if topic == ORDERS else at_once.ledgers
    assert at_once.rejected == refused == sum(p.counts.rejected for p in ledgers.values())
    assert at_once.records == len(lines) + len(bad)
    keep = _folding([e for t, _key, e in _decoded(records) if t == topic], None)
    want = (
        _refund_rows(keep.refunds)
        if topic == ORDERS
        else sorted((key, sorted(events)) for key, events in keep.group_events.items())
    )
    assert held(at_once) == held(one_by_one) and len(want) > 0
    if topic == ORDERS:
        assert held(at_once) == want
    else:  # group events hold the ledger's sequence numbers: compare without them
        strip = lambda rows: [(k, [(ts, g, j) for ts, _s, g, j in e]) for k, e in rows]  # noqa: E731
        assert strip(held(at_once)) == strip(want)
    assert at_once.positions == one_by_one.positions
    assert (at_once.records, at_once.rejected) == (one_by_one.records, one_by_one.rejected)


def test_the_table_drops_the_refunds_no_held_order_can_use() -> None:
    """Once every held ledger's last order fold and the table's horizon have passed a refund's
    ts + the refund horizon and no held ledger holds a payment of its order id, the table
    forgets it (its memory follows the horizon, not the stream)."""
    records = routed("xhs", PARTITIONS)
    table = _refund_table(records)
    held = len(list(table.table.refunds()))
    state = _fed(records, table)
    table.advance(0, 0)
    assert 0 < table.table.dropped < held
    held_ids = {o.order_id for p in state.partitions.values() for o in p.ledger.orders}
    folded_at = min(p.ledger.order_fold_ts or 0 for p in state.partitions.values())
    for refund in table.table.refunds():
        assert refund.ts >= folded_at - REFUND_HORIZON or refund.order_id in held_ids


#: The worker tests that stay opt-in: two workers (~30-45 s here), and an orders partition
#: gone quiet (a wall-clock idle rule, ~14-40 s). The one-worker test below is in the default
#: suite (session 11): it failed once in a fresh-clone CI run under load (2026-12-03; the
#: likeliest cause, month rows in flight missing from the report, was fixed in session 10, and
#: the keeper now also takes the rows the idle fold closes); 6 of 6 passed in 8-11 s at load
#: 6-8 and once in 18 s at load 16, its waits all conditions (drain, then the report polled).
REFUND_WORKER_ENV = "LIVEPULSE_REFUND_WORKER"


def _fold_settings(bootstrap: str, prefix: str, partitions: int = PARTITIONS, **more: Any) -> Any:
    """A run's settings with the fold (`fold_settings`: a 2-day window, an idle groups
    partition left out after 2 s) and a 13-day refund horizon, the in-memory tests' window
    and horizon."""
    return fold_settings(
        bootstrap,
        prefix,
        partitions,
        dedupe_window_s=WINDOW / 1000,
        refund_horizon_days=REFUND_HORIZON / 86_400_000,
        **more,
    )


def _until_folded(read: Callable[[], dict[str, Any]], july: int, pause_s: float) -> dict[str, Any]:
    """A report `read()` every `pause_s` (for up to 120 s) until it has folded 95% of `july`
    orders: the last one."""
    deadline = time.monotonic() + 120
    while True:
        report = read()
        if report["retention"]["folded_orders"] >= 0.95 * july or time.monotonic() > deadline:
            return report
        time.sleep(pause_s)


def _run_until_folded(
    settings: Any, lines: list[bytes], july: int, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A worker fed `lines` (its topics created, then deleted), drained, then its /report
    polled (up to 120 s) until it has folded 95% of `july` orders: the last report and its
    /status."""
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "lines.jsonl", lines)
        drain(worker, timeout_s=120)
        report = _until_folded(lambda: report_of(worker), july, pause_s=0.5)
        return report, worker.status()


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_with_the_fold_folds_orders_and_its_claims_equal_the_truth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`LIVEPULSE_FOLD_SESSIONS=true`, 3 partitions, a 2-day window and a 13-day refund
    horizon, the xhs fixture replayed into a running worker: its refund table reads every
    orders partition, its partitions fold the orders of July (their refunds in another
    partition; August's wait for its refund claims by period),
    and its /report claims, `size_refund_share` and `return_rate` included, equal the
    keep-everything ledger's and the truth file."""
    settings = _fold_settings(kafka_bootstrap, "refunds")
    # With the claims by period (default on), an order waits until its period's refund claims
    # are frozen (agents/core/periods.py): July's orders fold (its end + 7 days + the refund
    # horizon is behind the orders horizon), August's are held. The membership table may
    # reach July's close only after the last record: the worker's idle fold
    # (`LiveState.fold_idle`, ~1 s after a partition's last record) folds them then.
    keep = _folding([e for _t, _k, e in _decoded(routed("xhs", PARTITIONS))], None)
    august = cst_month_start("2024-08")
    july = sum(_period_stamp(order, keep.sessions) < august for order in keep.orders)
    report, status = _run_until_folded(settings, fixture_lines("xhs"), july, tmp_path)
    folded = report["retention"]["folded_orders"]
    assert status["refunds"]["caught_up"], status["refunds"]
    assert 0.95 * july <= folded <= july < len(keep.orders), (folded, july)
    _check_summarized(report, build_report(keep), "xhs.jsonl")
    retention = report["retention"]
    assert (retention["late_refunds"], retention["unmatched_refunds"]) == _refund_fates("xhs")


def test_the_table_keeps_a_refund_whose_order_waits_for_its_session() -> None:
    """A 20-day live session with an order in its first hour and a refund a day later, a
    10-day refund horizon, the order's partition apart from the refunds' (as in a worker):
    the order is due long before its session is summarized; while its partition holds it,
    the table keeps the refund (dropping it by the horizons alone, as first written, folded
    the order unrefunded: the worker soak lost 35 of 1,915 refunds) and so does the refunds'
    partition (its copy is what the held order's claims read in a merged report: dropped by
    its horizon alone, 9 more were lost); once the order is folded both drop it."""
    import orjson

    from agents.core.merge import merge_ledgers
    from schemas import decode

    def ledger() -> Ledger:
        return Ledger(DAY, refund_horizon_ms=10 * DAY, fold_sessions=True)

    orders, refunds = ledger(), ledger()  # the session's partition, the empty key's
    table = WorkerRefundTable(DAY, None, 10 * DAY, held_ledgers=lambda: [orders, refunds])
    for held in (orders, refunds):
        held.refunds_from = table
        held.membership_from = orders
    table.catch_up_to({0: 0})
    offset = 0
    item = {"sku_id": "k1", "quantity": 1, "unit_price_cents": 9900, "category": "apparel"}
    events: list[dict[str, object]] = [
        {"type": "session_started", "ts": T0, "session_id": "long", "room_id": "r1",
         "merchant_id": "m1"},
        {"type": "order_paid", "ts": T0 + 1000, "order_id": "o1", "session_id": "long",
         "merchant_id": "m1", "user_id": "u1", "amount_cents": 9900, "items": [item]},
        {"type": "order_refunded", "ts": T0 + DAY, "order_id": "o1", "amount_cents": 9900,
         "reason": "size"},
    ]  # fmt: skip
    for day in range(1, 40):
        ts = T0 + day * DAY
        if day == 20:
            events.append({"type": "session_ended", "ts": ts, "session_id": "long"})
        events += [
            {"type": "session_started", "ts": ts, "session_id": f"s{day}", "room_id": "r2",
             "merchant_id": "m1"},
            {"type": "session_ended", "ts": ts + 1, "session_id": f"s{day}"},
            {"type": "viewer_joined", "ts": ts, "session_id": f"s{day}", "user_id": "w"},
            {"type": "interaction", "ts": ts, "session_id": f"s{day}", "user_id": "w",
             "kind": "like"},
            {"type": "group_joined", "ts": ts, "merchant_id": "m1", "user_id": "w",
             "group_id": "g1"},
            {"type": "order_paid", "ts": ts, "order_id": f"p{day}", "merchant_id": "m1",
             "user_id": "w", "amount_cents": 100, "items": [item]},
            {"type": "order_refunded", "ts": ts, "order_id": "none", "amount_cents": 1},
        ]  # fmt: skip
    kept_while_held = []
    for i, fields in enumerate(events):
        line = orjson.dumps({"event_id": f"e{i}", **fields})
        event = decode(line)
        if fields["type"] == "order_refunded":
            refunds.apply(event)  # type: ignore[arg-type]
        else:
            orders.apply(event)  # type: ignore[arg-type]
        if fields["type"] in ("order_paid", "order_refunded"):
            table.apply(0, offset, line)
            offset += 1
            table.advance(0, offset)
        if i >= 2 and any(o.order_id == "o1" for o in orders.orders):  # refunded, held
            kept_while_held.append(bool(table.refunds_of("o1")))
            if fields["type"] == "group_joined" and fields["ts"] == T0 + 15 * DAY:
                merged = build_report(merge_ledgers([orders, refunds]))["claims"]
                assert merged["size_refund_share"]["detail"]["size_refunded"] == 1
    assert kept_while_held and all(kept_while_held)
    assert orders.order_fold.orders >= 1 and not any(o.order_id == "o1" for o in orders.orders)
    claims = build_report(merge_ledgers([orders, refunds]))["claims"]
    assert claims["size_refund_share"]["detail"]["size_refunded"] == 1
    assert table.table.dropped > 0 and not table.refunds_of("o1")
    assert not any(refund.order_id == "o1" for refund in refunds.refunds)


def test_an_idle_orders_partition_stops_holding_the_horizon_once_quiet_for_idle_s() -> None:
    """The table's horizon is the oldest of its partitions' orders horizons: a partition read
    to its high-water mark with no record for `idle_s` is left out (every one idle: the
    newest); a record brings it back; one still behind its high-water mark, or with the rule
    off, always holds it; a refund applied afterwards stamped before a horizon given is
    counted (`after_fold`)."""
    import orjson

    def line(i: int, kind: str, ts: int) -> bytes:
        fields = (
            {"type": "order_paid", "order_id": f"o{i}", "merchant_id": "m", "user_id": "u",
             "amount_cents": 100, "items": [{"sku_id": "k", "quantity": 1,
             "unit_price_cents": 100, "category": "apparel"}]}
            if kind == "paid"
            else {"type": "order_refunded", "order_id": "o0", "amount_cents": 100}
        )  # fmt: skip
        return orjson.dumps({"event_id": f"e{i}", "ts": ts, **fields})

    def fed(idle_s: float | None) -> WorkerRefundTable:
        table = WorkerRefundTable(DAY, None, 10 * DAY, idle_s=idle_s)
        table.catch_up_to({0: 1, 1: 1})
        table.apply(0, 0, line(0, "paid", T0))  # partition 0: one order, then nothing
        table.advance(0, 1, highwater=1)
        table.apply(1, 0, line(1, "paid", T0 + 30 * DAY))  # partition 1 goes on
        table.advance(1, 1, highwater=2)  # behind its high-water mark: not idle
        return table

    held = fed(None)
    assert held.refund_fold_ts() == T0 - DAY  # partition 0 holds it
    table = fed(0.2)
    assert table.refund_fold_ts() == T0 - DAY  # not quiet long enough yet
    time.sleep(0.25)
    assert table.refund_fold_ts() == T0 + 29 * DAY  # partition 0 left out
    assert held.refund_fold_ts() == T0 - DAY
    table.advance(1, 1, highwater=1)
    time.sleep(0.25)  # both idle: the newest
    assert table.refund_fold_ts() == T0 + 29 * DAY
    table.apply(0, 1, line(2, "refund", T0 + DAY))  # a late refund in the idle partition
    table.advance(0, 2, highwater=2)
    assert table.after_fold == 1 and table.status()["after_fold"] == 1
    assert table.refund_fold_ts() == T0 - DAY + DAY  # partition 0 back in, moved by it


def test_an_orders_partition_not_reached_yet_holds_the_fold_until_idle_while_others_move() -> None:
    """An orders partition with no record yet (the orders topic written partition after
    partition) holds the table's horizon back (None: any refund may still come there), even
    after the topic was quiet for longer than `idle_s` before its first record; it is left
    out once read to its end with no record for `idle_s` since the topic moved; with the
    rule off it always holds the fold."""
    import orjson

    paid = orjson.dumps(
        {"event_id": "e0", "type": "order_paid", "ts": T0, "order_id": "o0", "merchant_id": "m",
         "user_id": "u", "amount_cents": 100, "items": [{"sku_id": "k", "quantity": 1,
         "unit_price_cents": 100, "category": "apparel"}]}
    )  # fmt: skip
    for idle_s in (0.2, None):
        table = WorkerRefundTable(DAY, None, 10 * DAY, idle_s=idle_s)
        table.catch_up_to({0: 0, 1: 0})
        table.advance(1, 0, highwater=0)
        time.sleep(0.25)  # quiet before anything was written
        table.apply(0, 0, paid)
        table.advance(0, 1, highwater=1)
        table.advance(1, 0, highwater=0)
        assert table.refund_fold_ts() is None  # partition 1 not reached yet
        time.sleep(0.25)
        assert table.refund_fold_ts() == (None if idle_s is None else T0 - DAY)


def test_a_partition_applying_records_with_an_idle_orders_partition_follows_for_its_orders() -> (
    None
):
    """`LiveState.follow_idle_horizons`: a partition still applying records (not idle) whose
    orders partition the refund table leaves out as idle, read to its end (`caught_up`),
    moves its orders horizon alone (`Ledger.follow_idle_orders`, up to its own newest
    session event here), is counted and dirty; not while it is not read to its end, nor when
    the table has no idle rule (its orders partition then always holds the fold)."""
    import orjson

    started = orjson.dumps(
        {"event_id": "s0", "type": "session_started", "ts": T0, "session_id": "s",
         "room_id": "r", "merchant_id": "m"}
    )  # fmt: skip
    for idle_s in (0.0, None):
        table = WorkerRefundTable(DAY, None, 10 * DAY, idle_s=idle_s)
        table.catch_up_to({0: 0, 1: 0})
        table.apply(0, 0, orjson.dumps({"event_id": "x", "type": "order_refunded", "ts": T0,
                                        "order_id": "o", "amount_cents": 1}))  # fmt: skip
        table.advance(0, 1, highwater=1)
        table.advance(1, 0, highwater=0)  # partition 1: no order at all
        state = LiveState(
            dedupe_window_ms=DAY, refund_horizon_ms=10 * DAY, fold_sessions=True, refunds=table
        )
        state.apply_batch([RawRecord("live.sessions", 1, 0, b"s", started)])
        ledger = state.partitions[1].ledger
        ledger.receive_firsts_closed(FirstsClosed(0, T0 - 20 * DAY), 2)
        assert ledger.horizon_ts(_ORDERS) is None
        assert state.follow_idle_horizons(300.0, lambda partition: False) == 0
        moved = state.follow_idle_horizons(300.0, lambda partition: True)
        if idle_s is None:
            assert moved == 0 and ledger.horizon_ts(_ORDERS) is None
            continue
        assert moved == 1 and state.partitions[1].horizons_followed == 1
        assert state.partitions[1].dirty
        assert ledger.horizon_ts(_ORDERS) == T0 - 20 * DAY + 7 * DAY  # + session horizon
        assert state.follow_idle_horizons(300.0, lambda partition: True) == 0  # there already


def test_a_partition_applying_records_follows_for_the_topics_quiet_there() -> None:
    """`LiveState.follow_idle_horizons`: a partition read to its end (`caught_up`) that still
    applies session records but has had none of the views and interactions topics for
    `idle_s` (sessions with no viewer or interaction yet) moves those topics' horizons alone
    (`Ledger.follow_idle_topics`, up to its own newest event), is counted and dirty; not
    before `idle_s` has passed since the state was made; its orders topic's horizon stays
    (the refund table's idle rule is that topic's), and so does its sessions topic's."""
    import orjson

    def started(number: int) -> RawRecord:
        value = orjson.dumps(
            {"event_id": f"s{number}", "type": "session_started", "ts": T0 + number,
             "session_id": f"s{number}", "room_id": "r", "merchant_id": "m"}
        )  # fmt: skip
        return RawRecord("live.sessions", 1, number, f"s{number}".encode(), value)

    state = LiveState(dedupe_window_ms=DAY, refund_horizon_ms=10 * DAY, fold_sessions=True)
    state.apply_batch([started(0)])
    ledger = state.partitions[1].ledger
    ledger.receive_firsts_closed(FirstsClosed(0, T0 - 20 * DAY), 2)
    assert state.follow_idle_horizons(0.2, lambda partition: True) == 0  # made just now
    time.sleep(0.25)
    state.apply_batch([started(1)])  # still applying records: not idle as a whole
    assert state.follow_idle_horizons(0.2, lambda partition: False) == 0  # not read to its end
    assert state.follow_idle_horizons(0.2, lambda partition: True) == 1
    assert state.partitions[1].horizons_followed == 1 and state.partitions[1].dirty
    for topic in ("live.views", "live.interactions"):
        assert ledger.horizon_ts(TOPICS.index(topic)) == T0 - 20 * DAY + 7 * DAY  # + session h.
    assert ledger.horizon_ts(_ORDERS) is None
    assert ledger.horizon_ts(TOPICS.index("live.sessions")) == T0 + 1 - DAY
    assert state.follow_idle_horizons(0.2, lambda partition: True) == 0  # there already


def test_a_partition_taken_after_the_table_dropped_what_it_may_read_rewinds_the_table() -> None:
    """xhs over 3 partition states with the table, fed like a worker's: the table drops refunds
    as they fold. A ledger held through every drop is taken back as it is (eager rebalances
    revoke and give back every partition). A state of an earlier position taken in (a
    partition restored from an older snapshot, as after a rebalance to a worker whose table
    went on dropping for its own partitions) holds payments older than what was dropped: the
    table empties itself and asks its reader for the orders topic again (no horizon until it
    has caught up: nothing folds meanwhile), and, read again, holds every refund the lines
    give; a state that may read nothing dropped (a new one before any drop) does not."""
    records = routed("xhs", PARTITIONS)
    table = _refund_table(records)
    early = _fed([r for r in records if r.offset < 40], None).partitions[1].ledger
    assert early.orders  # payments held, older than what the table will drop
    state = _fed(records, table)
    assert table.table.dropped > 0 and table.table.dropped_below is not None
    # A state of an earlier position (as restored from an older snapshot): it holds payments
    # older than what the table dropped, so it may read a dropped refund. (The states fed
    # beside the table need not: their order fold, which runs as sessions are summarized,
    # may have folded every payment older than the drop; what they hold is taken as it is.)
    oldest = min(order.ts for order in early.orders)
    assert table.table.dropped_below is not None and oldest < table.table.dropped_below
    assert table.take(early) is True
    assert table.rewinds == 1 and table.rewind_pending and table.refund_fold_ts() is None
    assert not list(table.table.refunds())
    ends: dict[int, int] = {}
    for record in records:  # the reader, from the beginning again
        if record.topic == ORDERS:
            table.apply(record.partition, record.offset, record.value)
            ends[record.partition] = record.offset + 1
    table.catch_up_to(ends)
    assert table.refund_fold_ts() is not None
    keep = _folding([e for _topic, _key, e in _decoded(records)], None)
    assert sorted(r.ts for r in table.table.refunds()) == sorted(r.ts for r in keep.refunds)

    held = Ledger(WINDOW, refund_horizon_ms=REFUND_HORIZON, fold_sessions=True)
    assert table.take(held) is False  # a new state, nothing dropped since the rewind
    for part in state.partitions.values():
        table.take(part.ledger)
    table.advance(0, 0)  # a drop, with all of them held
    assert table.table.dropped_below is not None
    assert [table.take(p.ledger) for p in state.partitions.values()] == [False] * PARTITIONS
    assert table.take(early) is True and table.rewinds == 2


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get(REFUND_WORKER_ENV), reason=f"~40 s worker run: set {REFUND_WORKER_ENV}=1"
)
def test_a_worker_folds_orders_past_an_orders_partition_gone_quiet(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The xhs fixture with the order payments of one orders partition (2 of 3, not the
    refunds') stopped after 10 July: without the idle rule that partition's horizon (8 July)
    holds every order's fold (with `LIVEPULSE_REFUND_IDLE_S=0` this test folds none); with
    `LIVEPULSE_REFUND_IDLE_S=2` the worker folds the July orders of the two other partitions
    once it has been quiet for 2 s, and its refund and bundle claims equal the
    keep-everything ledger's of the same lines; no refund came after a fold."""
    import orjson

    from schemas import decode
    from schemas.events import record_key
    from tests.agents.core.test_merge import partition_of

    july_11 = 1_720_656_000_000  # 2024-07-11 00:00 UTC: 6 of its 99 payments before
    lines: list[bytes] = []
    quiet: set[str] = set()  # the order ids of the quiet partition: their horizon is stuck
    for line in fixture_lines("xhs"):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict) and event.get("type") == "order_paid":
            if partition_of(record_key(event).encode(), PARTITIONS) == 2:
                if event.get("ts", 0) > july_11:
                    continue
                quiet.add(event.get("order_id"))
        lines.append(line)
    assert len(lines) < len(fixture_lines("xhs")) - 50
    settings = _fold_settings(kafka_bootstrap, "refundidle", refund_idle_s=2)
    keep = _folding([decode(line) for line in lines], None)
    august = cst_month_start("2024-08")
    july = sum(
        _period_stamp(order, keep.sessions) < august and order.order_id not in quiet
        for order in keep.orders
    )
    report, status = _run_until_folded(settings, lines, july, tmp_path)
    folded = report["retention"]["folded_orders"]
    assert status["refunds"]["after_fold"] == 0, status["refunds"]
    assert len(quiet) == 6 and 0.95 * july <= folded and july > 100, (folded, july)
    got, want = report["claims"], build_report(keep)["claims"]
    for claim in ("size_refund_share", "return_rate", "bundle_share"):
        for key in ("observed", "ci_low", "ci_high", "n"):
            assert got[claim][key] == pytest.approx(want[claim][key], rel=1e-9), (claim, key)


def _four_partitions_xhs(
    kafka_bootstrap: str, name: str, tmp_path: Path
) -> tuple[Any, Ledger, int, Any]:
    """The fold's settings over 4 partitions with their topics made, the keep-everything
    ledger of xhs routed to them, how many of its orders are July's (those the fold folds),
    and a fleet of workers to start."""
    from tests.test_scaleout import PARTITIONS as FOUR
    from tests.test_scaleout import Fleet

    settings = _fold_settings(kafka_bootstrap, name, FOUR)
    keep = _folding([e for _t, _k, e in _decoded(routed("xhs", FOUR))], None)
    august = cst_month_start("2024-08")
    july = sum(_period_stamp(order, keep.sessions) < august for order in keep.orders)
    asyncio.run(create_topics(settings, all_topics(settings)))
    return settings, keep, july, Fleet(settings, tmp_path)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get(REFUND_WORKER_ENV), reason=f"~2 min, two workers: set {REFUND_WORKER_ENV}=1"
)
def test_orders_fold_exactly_while_partitions_move_to_a_second_worker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The fold with 4 partitions: one worker reads the first half of xhs, a second joins (two
    of the partitions move to it, restored from their snapshots, and its own refund table reads
    the whole orders topic), then the second half: the report merged over every partition's
    snapshot folds July's orders and its claims equal the keep-everything ledger's and the
    truth file, and no refund came after a fold in either table. It failed 3 of 3 before the
    table stopped dropping while an assignment is restored (the second worker's table dropped
    the refunds of its second partition's orders while only its first was installed:
    `size_refund_share` 0.1121 against 0.1211, 4 refunded orders of the refunds' partition
    folded as not refunded), and 1 of 8 after it until the snapshots carried their held
    orders' refunds (the refunds' partition had dropped copies another worker's held
    August orders needed: 26 size refunds against 27)."""
    from tests.streams.test_month_rows import _fleet_settled
    from tests.test_scaleout import merged_report

    settings, keep, july, fleet = _four_partitions_xhs(kafka_bootstrap, "refundmove", tmp_path)
    lines = fixture_lines("xhs")
    try:
        first = fleet.start("w0")
        first.wait_ready(timeout_s=120)
        replay_lines(settings, tmp_path / "first.jsonl", lines[: len(lines) // 2])
        drain(first, timeout_s=120)
        fleet.start("w1").wait_ready(timeout_s=120)
        held = fleet.wait_balanced()
        assert len(held) == 2 and all(held.values()), held
        replay_lines(settings, tmp_path / "second.jsonl", lines[len(lines) // 2 :])
        _fleet_settled(settings, fleet.workers)
        report = _until_folded(lambda: merged_report(settings), july, pause_s=1)
        folded = report["retention"]["folded_orders"]
        tables = [worker.status()["refunds"] for worker in fleet.workers]
    finally:
        fleet.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
    assert all(t["caught_up"] and t["after_fold"] == 0 for t in tables), tables
    assert 0.95 * july <= folded <= july, (folded, july, report["retention"])
    want = build_report(keep)
    for claim in ("size_refund_share", "return_rate"):
        got = report["claims"][claim]
        assert got["detail"] == want["claims"][claim]["detail"], (
            claim,
            got["detail"],
            report["retention"],
            tables,
        )
    _check_summarized(report, want, "xhs.jsonl")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get(REFUND_WORKER_ENV), reason=f"~2 min, two workers: set {REFUND_WORKER_ENV}=1"
)
def test_partitions_coming_back_to_a_worker_whose_table_dropped_make_it_read_the_orders_again(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The fold with 4 partitions: one worker reads the first third of xhs, a second joins and
    takes two partitions for the second third, then stops: its two partitions come back to
    the first worker from their snapshots, whose July orders (held by the claims by period)
    may read refunds the first worker's table dropped while it held only its two (it knew
    nothing of theirs), so that table reads the orders topic again (`refunds.rewinds`); after
    the last third the report merged over the snapshots folds July's orders and its claims
    equal the keep-everything ledger's and the truth file."""
    from tests.streams.test_month_rows import _fleet_settled
    from tests.test_scaleout import PARTITIONS as FOUR
    from tests.test_scaleout import merged_report

    settings, keep, july, fleet = _four_partitions_xhs(kafka_bootstrap, "refundback", tmp_path)
    lines = fixture_lines("xhs")
    third = len(lines) // 3
    try:
        first = fleet.start("w0")
        first.wait_ready(timeout_s=120)
        replay_lines(settings, tmp_path / "first.jsonl", lines[:third])
        drain(first, timeout_s=120)
        second = fleet.start("w1")
        second.wait_ready(timeout_s=120)
        held = fleet.wait_balanced()
        assert len(held) == 2 and all(held.values()), held
        replay_lines(settings, tmp_path / "second.jsonl", lines[third : 2 * third])
        _fleet_settled(settings, fleet.workers)
        dropped = first.status()["refunds"]["dropped"]
        second.stop()
        assert fleet.wait_balanced() == {0: set(range(FOUR))}
        replay_lines(settings, tmp_path / "third.jsonl", lines[2 * third :])
        _fleet_settled(settings, [first])
        report = _until_folded(lambda: merged_report(settings), july, pause_s=1)
        folded = report["retention"]["folded_orders"]
        table = first.status()["refunds"]
    finally:
        fleet.stop()
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
    assert dropped > 0 and table["rewinds"] >= 1, (dropped, table)
    assert table["caught_up"] and table["after_fold"] == 0, table
    assert 0.95 * july <= folded <= july, (folded, july, report["retention"])
    want = build_report(keep)
    for claim in ("size_refund_share", "return_rate"):
        got = report["claims"][claim]
        assert got["detail"] == want["claims"][claim]["detail"], (claim, got["detail"], table)
    _check_summarized(report, want, "xhs.jsonl")
