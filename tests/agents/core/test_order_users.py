"""Issue 17: the order fold's buyer rows (`OrderFold`) at their buyer's owner partition and
retired past the user horizon (`Ledger.take_order_users`, `receive_order_users`,
`receive_order_users_closed`): a partition no longer keeps a row for every buyer it has seen,
and the order claims' intervals stay the truth reference's when no buyer returns after the
horizon."""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import (
    DAY_MS,
    ORDER_CLAIMS,
    SESSION_HORIZON_MS,
    TOPICS,
    FirstOrder,
    FirstsClosed,
    OrderFold,
    OrderUsers,
    OrderUsersClosed,
    cst_month,
    order_cluster,
)
from agents.core.merge import merge_ledgers
from agents.core.periods import PeriodSettings, attach
from agents.core.persist import dump_state, load_state
from schemas import Rejection
from schemas.events import (
    GroupJoined,
    Interaction,
    OrderItem,
    OrderPaid,
    SessionStarted,
    ViewerJoined,
    ViewerLeft,
)
from streams.tools.simulator.generate import generate
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth_file import compute_truth
from tests.agents.core.test_merge import partition_of, split
from tests.agents.core.test_order_fold import REFUND_HORIZON, WINDOW, _refund_table
from tests.support.exchange import apply, exchanged, routed

PARTITIONS = 3
HORIZON_MS = 45 * DAY_MS
#: A user id stands for a new buyer every this many days (`_renamed`): shorter than the
#: horizon, so that no buyer comes back after it.
EPOCH_MS = 30 * DAY_MS


def _renamed(line: str) -> str:
    """The event with its user id made a new one per `EPOCH_MS` block of its `ts` (a line
    that is no event with both, as the stream's malformed ones, as it is)."""
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if not isinstance(event, dict) or not isinstance(event.get("user_id"), str):
        return line
    if not isinstance(event.get("ts"), int):
        return line
    event["user_id"] = f"{event['user_id']}.{event['ts'] // EPOCH_MS}"
    return json.dumps(event, separators=(",", ":"))


@functools.cache
def _stream() -> tuple[tuple[Any, ...], dict[str, Any]]:
    """150 simulated days of xhs whose buyers never come back after the horizon, routed as the
    replayer routes them, and the truth reference's claims of those very lines."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=150)
    lines = [_renamed(line) for line in generate(scenario, 5, 0.3).lines]
    return routed(lines), compute_truth(lines, scenario="xhs", seed=5)


def _ledger(**kwargs: Any) -> Ledger:
    return Ledger(WINDOW, refund_horizon_ms=REFUND_HORIZON, fold_sessions=True, **kwargs)


def _wired(
    stream: tuple[Any, ...], user_horizon_ms: int | None
) -> tuple[list[list[Any]], Ledger, list[Ledger]]:
    """The stream split over 3 partitions, and a ledger a partition reading the refund table
    over all of them (as a worker's) and, as its membership, one ledger of every group event.
    The parts, the groups ledger and the partitions' ledgers."""
    parts = split(stream, PARTITIONS)
    groups = _ledger()
    apply(groups, [item for item in stream if getattr(item[2], "type", "").startswith("group_")])
    table = _refund_table(parts)
    ledgers = [_ledger(user_horizon_ms=user_horizon_ms) for _ in parts]
    for ledger in ledgers:
        ledger.refunds_from = table
        ledger.membership_from = groups
    return parts, groups, ledgers


def _partitions(stream: tuple[Any, ...], user_horizon_ms: int | None) -> tuple[list[Ledger], int]:
    """The stream over 3 partitions with the refund table over all of them (as a worker's) and
    the exchange: after each chunk each partition's taken rows go to their buyer's owner
    (murmur2 of the user id, as the month-rows topic) and its announcement to every partition,
    each message twice (a redelivery). The ledgers, and how many rows were sent."""
    parts, _groups, ledgers = _wired(stream, user_horizon_ms)
    sent = exchanged(ledgers, parts, lambda ledger, source: ledger.take_order_users(source), 2)
    return ledgers, sent


def _check_claims(got: dict[str, Any], truth: dict[str, Any], everything: dict[str, Any]) -> None:
    """The order claims' observed values and counts are the truth reference's; their
    intervals (which the truth file does not give) the keep-everything ledger's (no window,
    nothing folded: every order held, clustered at report time)."""
    for claim in ORDER_CLAIMS:
        want = truth["claims"][claim]
        assert got[claim]["observed"] == pytest.approx(want["observed"], rel=1e-9), claim
        assert got[claim]["detail"] == {k: v for k, v in want.items() if k != "observed"}
        for key in ("observed", "ci_low", "ci_high", "n"):
            assert got[claim][key] == pytest.approx(everything[claim][key], rel=1e-9), (claim, key)


@pytest.mark.slow
def test_buyers_rows_go_to_their_owner_and_retire_at_the_horizon_with_the_truths_intervals() -> (
    None
):
    """Over 3 partitions with a 45-day user horizon: every buyer row leaves its source once
    its month is final there, no partition holds a row of a buyer another owns, the owners
    retire the buyers idle for the horizon (over 40% of 150 days' buyers), and `size_refund_share`,
    `bundle_share` and `return_rate` equal the truth reference's (their intervals the
    keep-everything ledger's), also
    after a snapshot of each partition; so does one ledger fed everything (`fold_months`, as
    `livepulse analyze`), its own owner."""
    stream, truth = _stream()
    keep = Ledger(None)
    apply(keep, stream)
    everything = build_report(keep)["claims"]
    assert all(everything[claim]["ci_low"] is not None for claim in ORDER_CLAIMS)
    ledgers, sent = _partitions(stream, HORIZON_MS)
    folds = [ledger.order_fold for ledger in ledgers]
    retired = sum(fold.retired_users for fold in folds)
    buyers = {
        event.user_id for _t, _k, event in stream if getattr(event, "type", "") == "order_paid"
    }
    at_owners = sum(len(fold.users) for fold in folds)
    assert sent > 0 and retired > 0.4 * len(buyers), (sent, retired, len(buyers))
    assert at_owners + sum(len(u) for f in folds for u in f.months.values()) < 0.6 * len(buyers)
    for number, fold in enumerate(folds):  # as owner: only its own buyers
        assert all(partition_of(user.encode(), PARTITIONS) == number for user in fold.users)
        assert fold.sent_through is not None  # every partition announced
        assert all(month > fold.sent_through for month in fold.months)  # sent once final
    _check_claims(build_report(merge_ledgers(ledgers))["claims"], truth, everything)
    restored = [load_state(dump_state(ledger, OperatorBoard()))[0] for ledger in ledgers]
    _check_claims(build_report(merge_ledgers(restored))["claims"], truth, everything)

    one = _ledger(fold_months=True, user_horizon_ms=HORIZON_MS)
    apply(one, stream)
    assert one.order_fold.retired_users > 0.4 * len(buyers) and not one.order_fold.rows_in
    _check_claims(build_report(one)["claims"], truth, everything)


def test_a_buyer_is_retired_only_once_every_source_is_past_the_horizon() -> None:
    """A buyer's row of July from source 0 reaches the owner; source 1 has announced nothing:
    nothing retires. Once both have announced through October (the buyer's last day is more
    than 45 days before November), the row retires into the claims' `ClusterSums` (its
    counts squared whole: one cluster), and a redelivered row of July is ignored; a row of
    November (the buyer back after the horizon) starts a new one."""
    fold = OrderFold()
    july = 1_720_000_000_000  # 2024-07-03
    row = (1, 2, 0, 3, 1, 1, july // DAY_MS)
    fold.receive(OrderUsers(0, "2024-07", "u", row))
    fold.receive(OrderUsers(0, "2024-07", "u", row))  # sent again: overwrites
    assert fold.receive_closed(OrderUsersClosed(0, "2024-10"), 2, HORIZON_MS) == 0
    assert fold.users == {"u": list(row)} and not fold.rows_in
    assert fold.receive_closed(OrderUsersClosed(1, "2024-07"), 2, HORIZON_MS) == 0  # Aug open
    assert fold.receive_closed(OrderUsersClosed(1, "2024-10"), 2, HORIZON_MS) == 1
    assert not fold.users and fold.retired == [[1, 1, 2, 4], [1, 0, 0, 9], [1, 1, 1, 1]]
    fold.receive(OrderUsers(0, "2024-07", "u", row))  # redelivered after the announcement
    assert not fold.rows_in and not fold.users
    fold.receive(OrderUsers(1, "2024-11", "u", row))
    assert fold.rows_in == {(1, "2024-11"): {"u": list(row)}}


def test_a_version_13_state_sends_its_buyers_rows_at_its_next_take() -> None:
    """A state written before the routing (six ints a buyer in `OrderFold.users`) loads with
    them as the month "" of its rows as a source, taken at its next fold, with the last
    fold's day."""
    ledger = _ledger()
    ledger.order_fold.users = {"u": [1, 2, 0, 3, 1, 1]}
    ledger.order_fold_ts = 1_720_000_000_000
    state = ledger.__getstate__()
    del state["_order_take_ts"]
    restored = object.__new__(Ledger)
    restored.__setstate__(state)
    fold = restored.order_fold
    assert not fold.users and fold.months == {"": {"u": [1, 2, 0, 3, 1, 1, 19_907]}}
    restored.order_fold_ts += DAY_MS
    taken = restored.take_order_users(2)
    assert taken[0] == OrderUsers(2, "", "u", (1, 2, 0, 3, 1, 1, 19_907)) and not fold.months
    assert isinstance(taken[-1], OrderUsersClosed)


@functools.cache
def _stream_lines() -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """`_stream`'s routed events and their lines (for the truth of a part of them)."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=150)
    lines = tuple(_renamed(line) for line in generate(scenario, 5, 0.3).lines)
    return routed(lines), lines


def _kept(item: tuple[Any, ...], quiet_ts: int, orders: bool) -> bool:
    """Whether partition 2 gets `item`: not stamped from `quiet_ts` on and, unless `orders`,
    not of the orders topic."""
    topic, _key, event = item
    if not orders and topic == "live.orders":
        return False
    return isinstance(event, Rejection) or event.ts < quiet_ts


def _followed(
    stream: tuple[Any, ...], quiet_ts: int, orders: bool = True, follow_orders: bool = True
) -> tuple[list[Ledger], list[bool]]:
    """`_partitions` with partition 2 getting none of its events stamped from `quiet_ts` on
    (none at all if that is the stream's start), the first orders and their announcements
    exchanged too, and partition 2, once a chunk brings it nothing, following the others'
    horizons before its take (`Ledger.follow_idle_horizons`, then `fold_due`: as the keeper
    after `LIVEPULSE_HORIZON_IDLE_S`). Without `orders` it gets every event but its orders
    (it is never idle) and, with `follow_orders`, its orders horizon follows alone
    (`Ledger.follow_idle_orders`, as the keeper once its orders partition is idle). Then
    three rounds of the keeper's ticks. The ledgers, and which of them announced an
    order-user month."""
    parts = split(stream, PARTITIONS)
    parts[2] = [item for item in parts[2] if _kept(item, quiet_ts, orders)]
    groups = _ledger()
    fed = [item for part in parts for item in part]
    apply(groups, [item for item in fed if getattr(item[2], "type", "").startswith("group_")])
    table = _refund_table(parts)
    # The worker's refund table leaves out an orders partition read to its end with no record
    # for `LIVEPULSE_REFUND_IDLE_S` (`WorkerRefundTable`, `ReadTable.idle`): here partition 2
    # once a chunk brings it no order.
    quiet: set[int] = set()
    table.refund_fold_ts = functools.partial(table.refund_fold_ts, quiet)  # type: ignore[method-assign]
    ledgers = [_ledger(user_horizon_ms=HORIZON_MS) for _ in parts]
    for ledger in ledgers:
        ledger.refunds_from = table
        ledger.membership_from = groups
    announced = [False] * PARTITIONS

    def exchange(source: int) -> None:
        ledger = ledgers[source]
        for message in [*ledger.take_order_users(source), *ledger.take_first_orders(source)]:
            if isinstance(message, OrderUsers):
                ledgers[partition_of(message.user.encode(), PARTITIONS)].receive_order_users(
                    message
                )
            elif isinstance(message, OrderUsersClosed):
                announced[source] = True
                for each in ledgers:
                    each.receive_order_users_closed(message, PARTITIONS)
            elif isinstance(message, FirstOrder):
                owner = ledgers[partition_of(message.user.encode(), PARTITIONS)]
                owner.receive_first_order(message)
            else:
                assert isinstance(message, FirstsClosed)
                for each in ledgers:
                    each.receive_firsts_closed(message, PARTITIONS)

    def follow(idle: bool) -> None:
        ledger = ledgers[2]
        if idle and orders and ledger.follow_idle_horizons(2):
            ledger.fold_due()
        elif not orders and follow_orders and ledger.follow_idle_orders(2):
            ledger.fold_due()

    for begin in range(0, max(len(part) for part in parts), 1000):
        for source, (ledger, part) in enumerate(zip(ledgers, parts, strict=True)):
            apply(ledger, part[begin : begin + 1000])
            if source == 2 and (begin >= len(part) or not orders):
                quiet.add(source)  # its orders partition: read to its end, no record
                follow(begin >= len(part))
            exchange(source)
    quiet.add(2)
    for _round in range(3):
        follow(True)
        for source in range(PARTITIONS):
            exchange(source)
    return ledgers, announced


@pytest.mark.slow
@pytest.mark.parametrize(("quiet_day", "orders"), [(0, True), (60, True), (1000, False)])
def test_a_partition_without_orders_that_follows_announces_and_the_owners_retire(
    quiet_day: int, orders: bool
) -> None:
    """Over 3 partitions with a 45-day user horizon, partition 2 empty (no event at all), or
    quiet from day 60 (no order, nor any event, after it), following the others' horizons
    once idle, or getting every event but its orders (a room that sells nothing), its
    orders horizon following alone: it announces its order-user months too, so the owners
    retire buyers (over 40% of the buyers of the records fed) and the order claims equal
    `truth.py`'s figures of the records fed (their intervals the keep-everything ledger's)."""
    stream, lines = _stream_lines()
    start = min(e.ts for _t, _k, e in stream if not isinstance(e, Rejection))
    quiet_ts = start + quiet_day * DAY_MS
    fed_at = [
        partition_of(item[1], PARTITIONS) != 2 or _kept(item, quiet_ts, orders) for item in stream
    ]
    truth = compute_truth(
        [line for line, keep in zip(lines, fed_at, strict=True) if keep], scenario="xhs", seed=5
    )
    ledgers, announced = _followed(stream, quiet_ts, orders)
    fed = [item for item, keep in zip(stream, fed_at, strict=True) if keep]
    keep = Ledger(None)
    apply(keep, fed)
    everything = build_report(keep)["claims"]
    buyers = {e.user_id for _t, _k, e in fed if getattr(e, "type", "") == "order_paid"}
    retired = sum(ledger.order_fold.retired_users for ledger in ledgers)
    assert announced == [True, True, True]
    assert retired > 0.4 * len(buyers), (retired, len(buyers))
    _check_claims(build_report(merge_ledgers(ledgers))["claims"], truth, everything)
    assert ledgers[2].counts.expired == 0  # none of its events was behind a followed horizon


@pytest.mark.slow
def test_a_partition_with_events_but_no_order_holds_every_owner_unless_its_orders_follow() -> None:
    """Partition 2 gets every event of its sessions but no order: it is never idle, so it
    never follows; without its orders horizon following alone (`follow_idle_orders`) that
    horizon never starts, it never announces an order-user month, and no owner retires a
    buyer for as long as the stream runs."""
    stream, _lines = _stream_lines()
    start = min(e.ts for _t, _k, e in stream if not isinstance(e, Rejection))
    ledgers, announced = _followed(stream, start + 1000 * DAY_MS, False, follow_orders=False)
    assert announced == [True, True, False]
    assert sum(ledger.order_fold.retired_users for ledger in ledgers) == 0


def test_an_idle_orders_topic_follows_the_others_never_past_its_own_newest_event() -> None:
    """`Ledger.follow_idle_orders`: nothing before another partition has announced its
    summaries' horizon or before this one has an event of another contract topic; then the
    orders topic's newest `ts` goes to that horizon + the session horizon + the window, but
    no further than the partition's own newest event; it never moves back, and an order
    stamped before the new horizon is expired."""
    ledger = _ledger()
    t = 1_720_000_000_000
    assert not ledger.follow_idle_orders(1)  # nothing read
    ledger.receive_firsts_closed(FirstsClosed(0, t - 30 * DAY_MS), 2)
    ledger.receive_firsts_closed(FirstsClosed(1, t + 900 * DAY_MS), 2)  # itself: left out
    assert not ledger.follow_idle_orders(1)  # no event of its own
    started = {"session_id": "s", "room_id": "r", "merchant_id": "m"}
    assert ledger.apply(SessionStarted(event_id="e1", type="session_started", ts=t, **started))
    assert ledger.follow_idle_orders(1)
    target = t - 30 * DAY_MS + SESSION_HORIZON_MS + WINDOW
    assert ledger.horizon_ts(TOPICS.index("live.orders")) == target - WINDOW
    assert not ledger.follow_idle_orders(1)  # there already
    ledger.receive_firsts_closed(FirstsClosed(0, t), 2)
    assert ledger.follow_idle_orders(1)
    assert ledger.horizon_ts(TOPICS.index("live.orders")) == t - WINDOW  # its own newest
    item = OrderItem(sku_id="k", category="c", unit_price_cents=100, quantity=1)
    paid = {"session_id": "s", "merchant_id": "m", "user_id": "u", "amount_cents": 100}
    late = OrderPaid(
        event_id="o1", type="order_paid", ts=t - WINDOW - 1, order_id="o", items=[item], **paid
    )
    assert not ledger.apply(late) and ledger.counts.expired == 1


class _HeldBack:
    """The groups source as a worker's membership table gives it while a replay outruns its
    idle rule (a groups partition with no event holds the horizon, `LIVEPULSE_GROUPS_IDLE_S`):
    no groups horizon until `released`, so no session is abandoned or summarized before."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.released = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    def horizon_ts(self, topic: int) -> int | None:
        return self.ledger.horizon_ts(topic) if self.released else None


def _unfoldable(ledger: Ledger) -> list[str]:
    """The held orders of `ledger` that its order fold could fold now (`Ledger._fold_orders`'
    rules, read again here): paid more than the refund horizon before its last horizon,
    stamped before the period gate's bound, in a summarized session or none, and no payment
    of the same id held back. Empty once the fold has run after every summary."""
    fold_ts, horizon_ms = ledger.order_fold_ts, ledger.refund_horizon_ms
    assert fold_ts is not None and horizon_ms is not None
    gate = ledger.period_gate
    held_from = gate.orders_held_from(ledger, fold_ts) if gate is not None else None
    due = fold_ts - horizon_ms
    held: dict[str, list[bool]] = {}
    for order in ledger.orders:
        session = ledger.sessions.get(order.session_id) if order.session_id else None
        stamp = order.ts if session is None or session.started_ts is None else session.started_ts
        cluster = order_cluster(order, ledger.sessions, ledger.fold_sessions)
        held.setdefault(order.order_id, []).append(
            order.ts < due
            and (held_from is None or stamp < held_from)
            and (cluster[0] == "order" or (session is not None and session.summary is not None))
        )
    return sorted(order_id for order_id, ready in held.items() if all(ready))


@pytest.mark.slow
def test_orders_of_a_session_summarized_after_the_days_fold_fold_without_a_new_day() -> None:
    """The "September session" stall (issue 17, session 18): 150 days over 3 partitions, with
    the worker's claims by period, fed while the groups horizon is held back (a worker's
    membership table while a replay outruns its idle rule), then released with every topic at
    its end. Until then no period closes, so every order is held. The first order fold that
    can fold runs in the pass that abandons the sessions that never ended. They are
    summarized a pass later, at the same horizon. At a07cee1 (main) the fold ran again only
    at a new day of its horizon or a new bound of the period gate, and the horizon no longer
    moves: their orders (o-36, o-56, o-77 among them) stayed held for good. Their partition
    announced nothing past the month before theirs (June), and no owner retired a buyer. Now
    no order the fold's rules allow stays held, every partition announces the same month, the
    owners retire over 40% of the buyers, and the order claims equal `truth.py`'s."""
    stream, truth = _stream()
    parts, groups, ledgers = _wired(stream, HORIZON_MS)
    held = _HeldBack(groups)
    for ledger in ledgers:
        ledger.membership_from = held  # type: ignore[assignment]
        attach(ledger, PeriodSettings(7, 62, 24))  # the worker's default claims by period
    announced: list[list[str]] = [[] for _ in parts]

    def exchange(source: int) -> None:
        for message in ledgers[source].take_order_users(source):
            if isinstance(message, OrderUsers):
                owner = ledgers[partition_of(message.user.encode(), PARTITIONS)]
                owner.receive_order_users(message)
            else:
                announced[source].append(message.through)
                for each in ledgers:
                    each.receive_order_users_closed(message, PARTITIONS)

    for begin in range(0, max(len(part) for part in parts), 200):
        for source, (ledger, part) in enumerate(zip(ledgers, parts, strict=True)):
            apply(ledger, part[begin : begin + 200])
            exchange(source)
    # Held back: no period closes (no groups horizon), so every order stays held.
    assert all(max(months) <= "2024-06" for months in announced), announced
    held.released = True
    for _round in range(3):  # the keeper's ticks: the folds due, then the take
        for source, ledger in enumerate(ledgers):
            ledger.fold_due()
            exchange(source)
    assert all(ledger.abandoned_sessions > 0 for ledger in ledgers)
    assert [_unfoldable(ledger) for ledger in ledgers] == [[], [], []]
    through = [ledger.order_fold.sent_through for ledger in ledgers]
    assert through[0] is not None and through == [through[0]] * PARTITIONS, through
    for ledger in ledgers:  # each partition's first held order is after what it announced
        assert all(cst_month(order.ts) > through[0] for order in ledger.orders)
    buyers = {e.user_id for _t, _k, e in stream if getattr(e, "type", "") == "order_paid"}
    retired = sum(ledger.order_fold.retired_users for ledger in ledgers)
    assert retired > 0.4 * len(buyers), (retired, len(buyers))
    keep = Ledger(None)
    apply(keep, stream)
    everything = build_report(keep)["claims"]
    _check_claims(build_report(merge_ledgers(ledgers))["claims"], truth, everything)


def test_a_fold_at_the_same_horizon_after_a_summary_announces_the_month() -> None:
    """One ledger, its orders topic stopped at 20 August: the order of a July session that
    never ended is due (the refund horizon has passed it) but its session is not summarized,
    so July is not announced. The other topics then move on: one pass abandons the session,
    the next summarizes it, both at the same orders horizon. Its order folds at that second
    pass, and the next take announces July (at main neither came before the orders horizon
    reached another day)."""
    ledger = _ledger()
    t = 1_720_540_800_000  # 2024-07-10 00:00 CST
    item = OrderItem(sku_id="k", category="c", unit_price_cents=100, quantity=1)
    paid = {"merchant_id": "m", "amount_cents": 100, "items": [item]}
    started = {"room_id": "r", "merchant_id": "m"}
    events: list[Any] = [
        SessionStarted(event_id="e1", type="session_started", ts=t, session_id="s1", **started),
        OrderPaid(
            event_id="e2",
            type="order_paid",
            ts=t + 600_000,
            order_id="o1",
            session_id="s1",
            user_id="u",
            **paid,
        ),
        OrderPaid(
            event_id="e3", type="order_paid", ts=t + 41 * DAY_MS, order_id="o2", user_id="v", **paid
        ),
    ]
    for event in events:
        assert ledger.apply(event)
    assert ledger.order_fold_ts is not None
    assert [m for m in ledger.take_order_users(0) if isinstance(m, OrderUsersClosed)] == [
        OrderUsersClosed(0, "2024-06")
    ]
    fold_ts = ledger.order_fold_ts
    later = t + 42 * DAY_MS
    for event in [
        SessionStarted(event_id="e4", type="session_started", ts=later, session_id="s2", **started),
        ViewerJoined(event_id="e5", type="viewer_joined", ts=later, session_id="s2", user_id="w"),
        Interaction(
            event_id="e6", type="interaction", ts=later, session_id="s2", user_id="w", kind="like"
        ),
        GroupJoined(
            event_id="e7", type="group_joined", ts=later, merchant_id="m", group_id="g", user_id="w"
        ),
    ]:
        assert ledger.apply(event)
    session = ledger.sessions["s1"]
    assert session.abandoned_ts is not None and session.summary is None  # this pass abandoned it
    assert not ledger.take_order_users(0)  # nothing new
    left = ViewerLeft(
        event_id="e8", type="viewer_left", ts=later + 2 * 3_600_000, session_id="s2", user_id="w"
    )
    assert ledger.apply(left)  # the next hour: it is summarized
    assert session.summary is not None
    assert ledger.order_fold_ts == fold_ts  # the orders horizon has not moved
    assert [order.order_id for order in ledger.orders] == ["o2"]  # o1 folded
    taken = ledger.take_order_users(0)
    assert taken == [
        OrderUsers(0, "2024-07", "u", (0, 0, 0, 1, 0, 1, (t + 600_000) // DAY_MS)),
        OrderUsersClosed(0, "2024-07"),
    ]
