"""Issue 17: a worker partition's frozen period parts' per-user rows, sent to their user's
owner partition and folded there (`agents.core.period_rows`): the merged report's period
figures and intervals equal those of today's merge (every partition keeping its rows) and
the truth of the period's sub-stream, with every message delivered twice, and the partitions
no longer keep those rows."""

from __future__ import annotations

import math
import random
from functools import cache
from typing import Any

import pytest

from agents.core import Ledger, build_report
from agents.core.ledger import RETIRED_USERS, TOPICS, FirstOrder
from agents.core.merge import merge_ledgers
from agents.core.operator import OperatorBoard
from agents.core.period_rows import (
    DWELL,
    NO_DWELL_ROUTED,
    REFUND_CLAIMS,
    ROUTED,
    SPEND,
    WHOLE_PERIOD,
    PeriodRows,
    PeriodsClosed,
    period_owner_key,
    receive_period_rows,
    receive_periods_closed,
    take_period_rows,
)
from agents.core.periods import DAY, MONTH, PeriodSettings, attach, claim_periods, period_key
from agents.core.persist import MAGIC, dump_state, load_state
from schemas import Rejection
from streams.runtime.monthrows import deliver, owner_of
from streams.tools.simulator.period_truth import PeriodCut
from tests.agents.core.test_merge import partition_of, records, split
from tests.agents.core.test_periods import FIXTURES, assert_observed_as_cut, cut

PARTITIONS = 3
FIGURE_KEYS = ("observed", "ci_low", "ci_high", "n", "clusters", "verdict")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _deliver(ledgers: list[Ledger], message: PeriodRows | PeriodsClosed) -> None:
    """As the worker's sender and exchange: a row to its user's owner (murmur2 of the user
    id, as the month-rows topic keyed by user), `group_member_dwell`'s rows of a period whole
    to the period's owner (murmur2 of `period_owner_key`), an announcement to every
    partition."""
    if isinstance(message, PeriodsClosed):
        for ledger in ledgers:
            receive_periods_closed(ledger, message, PARTITIONS)
        return
    if message.claim in WHOLE_PERIOD:
        owner = partition_of(period_owner_key(message.kind, message.key).encode(), PARTITIONS)
        receive_period_rows(ledgers[owner], message, PARTITIONS)
        return
    by_owner: dict[int, dict[str, Any]] = {}
    for user, row in message.rows.items():
        by_owner.setdefault(partition_of(user.encode(), PARTITIONS), {})[user] = row
    for owner, rows in by_owner.items():
        receive_period_rows(ledgers[owner], message._replace(rows=rows), PARTITIONS)


def _as_version_12(ledger: Ledger) -> Ledger:
    """`ledger` through a snapshot of version 12 (no dwell rows routed: no
    `period_dwell_after`), restored as a worker restores a partition."""
    del ledger.period_dwell_after, ledger.period_dwell_after_by
    data = dump_state(ledger, OperatorBoard())
    restored = load_state(data[: len(MAGIC)] + bytes([12]) + data[len(MAGIC) + 1 :])[0]
    attach(restored, PeriodSettings())
    restored.membership_from = ledger.membership_from
    restored.refunds_from = ledger.refunds_from
    return restored


@cache
def _fed(
    exchange: bool,
    take_as: int = PARTITIONS,
    upgraded: bool = False,
    dropped: tuple[str, ...] = (),
    follow: bool = True,
) -> tuple[Ledger, ...]:
    """xhs over 3 partitions by record key, each jittered by up to 12 h and folding with the
    claims by period (2-day window, 13-day refund horizon), fed 500 records at a time in
    turn; with `exchange`, after each turn each partition's taken rows and announcement are
    delivered, every message twice (a redelivery), the second time after the next turn
    (`take_as`: the partitions the take is told the worker has). `upgraded`: the partitions
    route no dwell rows (as snapshot version 12's code) until the first turn whose take
    sent rows, then are restored from version 12 snapshots (`_as_version_12`) and go on.
    `dropped`: partition `QUIET` gets none of these topics' records (`_without`), the first
    orders and their announcements are exchanged (the others' summaries horizons its follow
    reads), and after each turn, and in three more rounds after the stream as the keeper's
    ticks, those topics' horizons follow unless not `follow` (`Ledger.follow_idle_topics`,
    then `fold_due`: as the keeper once they are idle there), before the take."""
    from tests.agents.core.test_order_fold import REFUND_HORIZON, WINDOW, _folding, _refund_table

    stream = _without(records("xhs"), dropped)
    decoded = [event for _topic, _key, event in stream]
    groups = _folding([e for e in decoded if getattr(e, "type", "").startswith("group_")], WINDOW)
    parts = split(stream, PARTITIONS)
    table = _refund_table(parts)
    ledgers: list[Ledger] = []
    feeds: list[list[Any]] = []
    for seed, part in enumerate(parts):
        ledger = Ledger(WINDOW, refund_horizon_ms=REFUND_HORIZON, fold_sessions=True)
        attach(ledger, PeriodSettings())
        if upgraded:
            ledger.period_dwell_after = NO_DWELL_ROUTED
        ledger.membership_from = groups
        ledger.refunds_from = table
        rng = random.Random(seed)
        feeds.append(
            sorted(
                (event for _topic, _key, event in part),
                key=lambda e, rng=rng: (
                    (0 if isinstance(e, Rejection) else e.ts) + rng.randrange(12 * 3_600_000)
                ),
            )
        )
        ledgers.append(ledger)
    again: list[PeriodRows | PeriodsClosed] = []
    for begin in range(0, max(len(f) for f in feeds), 500):
        for ledger, events in zip(ledgers, feeds, strict=True):
            for event in events[begin : begin + 500]:
                if isinstance(event, Rejection):
                    ledger.reject(event.reason)
                else:
                    ledger.apply(event)
        if dropped:
            _follow(ledgers, dropped, follow)
        if not exchange:
            continue
        for message in again:
            _deliver(ledgers, message)
        again = [
            message
            for source, ledger in enumerate(ledgers)
            for message in take_period_rows(ledger, source, take_as)
        ]
        for message in again:
            _deliver(ledgers, message)
        if upgraded and any(isinstance(m, PeriodRows) for m in again):
            ledgers = [_as_version_12(ledger) for ledger in ledgers]
            upgraded = False
    for message in again:
        _deliver(ledgers, message)
    for _tick in range(3 if dropped else 0):
        _follow(ledgers, dropped, follow)
        for source, ledger in enumerate(ledgers):
            for message in take_period_rows(ledger, source, take_as) if exchange else ():
                _deliver(ledgers, message)
    return tuple(ledgers)


#: The partition that gets none of some topics' records in `_fed(dropped=...)`.
QUIET = 2
ORDERS = ("live.orders",)


def _without(stream: tuple[Any, ...], dropped: tuple[str, ...]) -> tuple[Any, ...]:
    """The routed records but partition `QUIET`'s of the `dropped` topics: rooms that sell
    nothing (the orders topic), sessions with no interaction, or a partition holding only
    orders whose sessions are elsewhere (every other event kept)."""
    if not dropped:
        return stream
    return tuple(
        record
        for record in stream
        if record[0] not in dropped or partition_of(record[1], PARTITIONS) != QUIET
    )


def _follow(ledgers: list[Ledger], dropped: tuple[str, ...], follow: bool) -> None:
    """The first orders and their announcements exchanged (an owner reads the others'
    summaries horizons from them: `FirstsClosed`), then partition `QUIET`'s horizons of the
    `dropped` topics follow them, unless not `follow`, and its folds run."""
    for source, ledger in enumerate(ledgers):
        for message in ledger.take_first_orders(source):
            if isinstance(message, FirstOrder):
                deliver(ledgers[owner_of(message.user, PARTITIONS)], message, PARTITIONS)
            else:
                for each in ledgers:
                    deliver(each, message, PARTITIONS)
    quiet = ledgers[QUIET]
    if follow and quiet.follow_idle_topics(QUIET, [TOPICS.index(t) for t in dropped]):
        quiet.fold_due()


def _merged_periods(ledgers: tuple[Ledger, ...]) -> dict[str, Any]:
    restored = [load_state(dump_state(ledger, OperatorBoard()))[0] for ledger in ledgers]
    for ledger, original in zip(restored, ledgers, strict=True):
        ledger.membership_from = original.membership_from
        ledger.refunds_from = original.refunds_from
    return claim_periods(merge_ledgers(restored), PeriodSettings())["claims"]


def _user_rows(ledger: Ledger) -> int:
    """Per-user rows of the routed claims in a partition's frozen parts."""
    count = 0
    for parts in ledger.frozen_parts.values():
        for claim in ROUTED:
            part = parts.get(claim)
            if part is None:
                continue
            if claim == SPEND:
                count += len(part[1]) + len(part[2])
            elif claim == DWELL:
                count += sum(1 for user in part[4] if user != RETIRED_USERS)
            else:
                count += sum(1 for user in part[4] if user != RETIRED_USERS)
    return count


def _same_periods(got: dict[str, Any], want: dict[str, Any]) -> int:
    """Assert every reported day and month of every claim has the same observed value,
    interval, n, clusters and verdict in both (to 1e-9); the frozen ones compared."""
    compared = 0
    for claim_id, figures in want.items():
        for kind in (DAY, MONTH):
            assert [e["period"] for e in got[claim_id][kind]] == [
                e["period"] for e in figures[kind]
            ]
            for mine, today in zip(got[claim_id][kind], figures[kind], strict=True):
                assert not mine.get("folded"), (claim_id, mine)
                for key in FIGURE_KEYS:
                    assert _close(mine[key], today[key]), (claim_id, mine["period"], key)
                compared += mine["frozen"]
    return compared


def _dwell_rows(ledgers: tuple[Ledger, ...]) -> int:
    """`group_member_dwell`'s per-user rows in the partitions' frozen parts of the months
    taken (July: August's days are frozen, its month is not)."""
    return sum(
        sum(1 for user in parts[DWELL][4] if user != RETIRED_USERS)
        for ledger in ledgers
        for (_kind, key), parts in ledger.frozen_parts.items()
        if DWELL in parts and key[:7] <= "2024-07"
    )


def test_routed_rows_give_todays_merged_figures_and_the_truth() -> None:
    """Every reported day and month of every claim: the same observed value, interval, n,
    clusters and verdict as the same partitions merged without the exchange (to 1e-9), each
    month and every 10th day's observed value equal to the truth of its sub-stream (truth.py
    on the fixture's lines cut to the period; the sketched `price_dwell_association` within
    0.1, as test_periods holds it); and the rows left the partitions."""
    routed = _fed(True)
    kept = _fed(False)
    assert all(ledger.period_rows_sent_through for ledger in routed)
    assert sum(len(ledger.period_users) for ledger in routed) > 0
    assert not any(ledger.period_rows_in for ledger in routed)  # every month announced: folded
    before = sum(_user_rows(ledger) for ledger in kept)
    after = sum(_user_rows(ledger) for ledger in routed)
    assert before > 0 and after < 0.5 * before, (after, before)

    # A partition alone has no figure of a routed claim for a taken period (its users' rows
    # are elsewhere too): shown `folded`, never a figure without their clusters.
    alone = claim_periods(routed[0], PeriodSettings())["claims"]["bundle_share"][MONTH]
    assert next(e for e in alone if e["period"] == "2024-07")["folded"]

    assert _dwell_rows(routed) == 0 and _dwell_rows(kept) > 0  # every month taken
    # Each period's dwell rows folded whole at one owner (its bootstrap once, there).
    dwell_owners = {
        period: owner
        for owner, ledger in enumerate(routed)
        for period, claims in ledger.period_users.items()
        if DWELL in claims
    }
    assert len(dwell_owners) > 20 and len(set(dwell_owners.values())) == PARTITIONS

    got = _merged_periods(routed)
    assert _same_periods(got, _merged_periods(kept)) > 100
    for kind in (DAY, MONTH):
        keys = [entry["period"] for entry in got["live_aov"][kind]]
        assert_observed_as_cut(got, kind, keys[:: 1 if kind == MONTH else 10], ROUTED)


def test_an_owner_folds_a_period_only_once_every_source_announced_it() -> None:
    """Rows of a day from two sources: held until both announced its month (a row sent again
    overwrites, never adds); folded then, and rows sent after are ignored."""
    owner = Ledger()
    rows = PeriodRows(0, DAY, "2024-07-03", "bundle_share", {"u": [1, 2]})
    receive_period_rows(owner, rows, 2)
    receive_period_rows(owner, rows, 2)  # redelivered
    receive_period_rows(owner, PeriodRows(1, DAY, "2024-07-03", "bundle_share", {"u": [0, 1]}), 2)
    receive_periods_closed(owner, PeriodsClosed(0, "2024-07"), 2)
    assert (DAY, "2024-07-03") in owner.period_rows_in and not owner.period_users
    receive_periods_closed(owner, PeriodsClosed(1, "2024-06"), 2)
    assert not owner.period_users
    receive_periods_closed(owner, PeriodsClosed(1, "2024-07"), 2)
    assert not owner.period_rows_in
    folded = owner.period_users[(DAY, "2024-07-03")]["bundle_share"]
    # One user with (1 + 0) hits of (2 + 1) cases: G = 1, h^2 = 1, h n = 3, n^2 = 9.
    assert folded[4] == {RETIRED_USERS: [1, 1, 3, 9]}
    receive_period_rows(owner, rows, 2)  # sent again after the fold
    assert not owner.period_rows_in and owner.period_users[(DAY, "2024-07-03")]["bundle_share"] == (
        folded
    )


def test_a_partition_that_is_its_workers_only_one_keeps_its_own_figures() -> None:
    """Told it is the only partition (its report reads its own frozen figures), a take
    finishes them from the whole parts before cutting the rows: the same figures as the same
    partition without the exchange."""
    alone = claim_periods(_fed(True, 1)[0], PeriodSettings())["claims"]
    kept = claim_periods(_fed(False)[0], PeriodSettings())["claims"]
    for claim_id in ROUTED:
        mine = next(e for e in alone[claim_id][MONTH] if e["period"] == "2024-07")
        want = next(e for e in kept[claim_id][MONTH] if e["period"] == "2024-07")
        assert mine["frozen"] and not mine.get("folded")
        for key in FIGURE_KEYS:
            assert _close(mine[key], want[key]), (claim_id, key)


def test_an_owner_keeps_only_the_kept_periods_folded() -> None:
    """An owner (with the claims by period: its gate's settings) folding 5 days of rows with
    3 days kept holds the latest 3, even with no frozen period of its own."""
    owner = attach(Ledger(), PeriodSettings(days_kept=3))
    for day in range(1, 6):
        key = f"2024-07-{day:02d}"
        receive_period_rows(owner, PeriodRows(0, DAY, key, "bundle_share", {"u": [1, 1]}), 1)
    receive_periods_closed(owner, PeriodsClosed(0, "2024-07"), 1)
    assert sorted(owner.period_users) == [(DAY, f"2024-07-{day:02d}") for day in (3, 4, 5)]


def test_a_version_12_state_keeps_the_dwell_rows_of_the_months_it_sent() -> None:
    """Partitions restored from version 12 snapshots after the first take (one partition
    had sent its July rows then, without the dwell's; the others had not): the months sent
    keep their dwell rows at that partition, the others' rows of those months are held as
    rows at the period's owner, never folded without them, and the merged report is still
    today's."""
    upgraded = _fed(True, upgraded=True)
    kept = _fed(False)
    assert 0 < _dwell_rows(upgraded) < _dwell_rows(kept)
    folded = [claims for ledger in upgraded for claims in ledger.period_users.values()]
    assert folded and not any(DWELL in claims for claims in folded)
    held = [
        claims
        for ledger in upgraded
        for by_source in ledger.period_rows_in.values()
        for claims in by_source.values()
    ]
    assert held and all(list(claims) == [DWELL] for claims in held)
    assert _same_periods(_merged_periods(upgraded), _merged_periods(kept)) > 100


def _refund_rows(ledgers: tuple[Ledger, ...], through: str = "2024-07") -> int:
    """The refund claims' per-user rows in the partitions' frozen parts of the months up to
    `through` (July: its second stage has frozen it, August's has not)."""
    return sum(
        sum(1 for user in parts[claim][4] if user != RETIRED_USERS)
        for ledger in ledgers
        for (_kind, key), parts in ledger.frozen_parts.items()
        for claim in REFUND_CLAIMS
        if claim in parts and key[:7] <= through
    )


def test_refund_claims_rows_go_to_their_owners_in_their_second_stage() -> None:
    """The refund claims (frozen months after the period, 13-day refund horizon here): July's
    per-user rows left every partition once July's second stage was frozen there, are folded
    at their users' owners, and every reported day and month of both claims is frozen with the
    same figure, interval and verdict as without the exchange and the observed value of the
    truth of its sub-stream; the whole stream's figures are today's."""
    routed = _fed(True)
    kept = _fed(False)
    assert all(ledger.period_refunds_sent_through == "2024-07" for ledger in routed)
    assert _refund_rows(routed) == 0 and _refund_rows(kept) > 300
    owners = [
        owner
        for owner, ledger in enumerate(routed)
        for claims in ledger.period_users.values()
        if set(REFUND_CLAIMS) <= set(claims)
    ]
    assert len(owners) > 30 and set(owners) == set(range(PARTITIONS))
    # A partition alone keeps its own refund figures (finished before the cut), as before.
    alone = claim_periods(routed[0], PeriodSettings())["claims"]["return_rate"][MONTH]
    mine = next(e for e in alone if e["period"] == "2024-07")
    want = next(
        e
        for e in claim_periods(kept[0], PeriodSettings())["claims"]["return_rate"][MONTH]
        if e["period"] == "2024-07"
    )
    assert mine["frozen"] and all(_close(mine[key], want[key]) for key in FIGURE_KEYS)

    got, today = _merged_periods(routed), _merged_periods(kept)
    compared = 0
    for kind in (DAY, MONTH):
        for claim_id in REFUND_CLAIMS:
            for entry, before in zip(got[claim_id][kind], today[claim_id][kind], strict=True):
                key = entry["period"]
                assert key == before["period"] and not entry.get("folded")
                for field in FIGURE_KEYS:
                    assert _close(entry[field], before[field]), (claim_id, key, field)
                truth = cut("xhs").claims(
                    lambda ts, key=key, kind=kind: period_key(kind, ts) == key
                )
                expected = truth[claim_id]["observed"]
                if expected is None or entry["observed"] is None:
                    assert entry["observed"] is expected, (claim_id, key)
                else:
                    assert math.isclose(entry["observed"], expected, rel_tol=1e-9), (claim_id, key)
                compared += key[:7] <= "2024-07" and entry["frozen"]
    assert compared > 60  # July's 31 days and its month, both claims
    whole = [build_report(merge_ledgers(list(ls)))["claims"] for ls in (routed, kept)]
    for claim_id in REFUND_CLAIMS:
        assert whole[0][claim_id] == whole[1][claim_id]


def test_an_owner_folds_refund_rows_once_every_source_announced_their_second_stage() -> None:
    """A day's refund rows from two sources are held while the sources announce only its first
    stage (its other claims' rows fold then), and folded once both announce its second."""
    owner = Ledger()
    day = (DAY, "2024-07-03")
    for source, row in ((0, [1, 2]), (1, [0, 1])):
        receive_period_rows(owner, PeriodRows(source, *day, "return_rate", {"u": row}), 2)
        receive_period_rows(owner, PeriodRows(source, *day, "bundle_share", {"u": row}), 2)
    for source in (0, 1):
        receive_periods_closed(owner, PeriodsClosed(source, "2024-08", ""), 2)
    assert list(owner.period_users[day]) == ["bundle_share"]
    assert list(owner.period_rows_in[day][0]) == ["return_rate"]
    receive_periods_closed(owner, PeriodsClosed(0, "2024-08", "", "2024-07"), 2)
    receive_periods_closed(owner, PeriodsClosed(1, "2024-08", "", "2024-06"), 2)
    assert "return_rate" not in owner.period_users[day]
    receive_periods_closed(owner, PeriodsClosed(1, "2024-08", "", "2024-07"), 2)
    assert not owner.period_rows_in
    # One user with (1 + 0) hits of (2 + 1) cases: G = 1, h^2 = 1, h n = 3, n^2 = 9.
    assert owner.period_users[day]["return_rate"][4] == {RETIRED_USERS: [1, 1, 3, 9]}
    receive_period_rows(owner, PeriodRows(0, *day, "return_rate", {"u": [1, 2]}), 2)  # again
    assert not owner.period_rows_in


def test_a_version_15_state_routes_its_refund_rows_after_its_next_freeze() -> None:
    """A partition restored from a snapshot of version 15 (no refund rows taken, none
    announced) keeps its refund rows until a second-stage freeze of its own, then sends
    every kept month's."""
    state = load_state(dump_state(_fed(False)[0], OperatorBoard()))[0]
    frozen_to = state.period_refunds_frozen_to
    assert frozen_to is not None and _refund_rows((state,)) > 0
    del state.period_refunds_frozen_to, state.period_refunds_sent_through
    del state.period_refund_sources_through
    data = dump_state(state, OperatorBoard())
    restored = load_state(data[: len(MAGIC)] + bytes([15]) + data[len(MAGIC) + 1 :])[0]
    assert restored.period_refunds_frozen_to is None and not restored.period_refunds_sent_through
    assert restored.period_refund_sources_through == {}
    taken = take_period_rows(restored, 0, PARTITIONS)
    assert not {m.claim for m in taken if isinstance(m, PeriodRows)} & set(REFUND_CLAIMS)
    restored.period_refunds_frozen_to = frozen_to  # (as its next second-stage freeze sets it)
    taken = take_period_rows(restored, 0, PARTITIONS)
    assert {m.claim for m in taken if isinstance(m, PeriodRows)} == set(REFUND_CLAIMS)
    assert _refund_rows((restored,)) == 0
    assert taken[-1] == PeriodsClosed(0, restored.period_rows_sent_through, "", "2024-07")


def _fed_lines(dropped: tuple[str, ...]) -> list[str]:
    """The fixture's lines `_fed(dropped=dropped)` feeds (for the truth of what it got)."""
    with (FIXTURES / "xhs.jsonl").open("rb") as handle:
        lines = [raw[:-1] if raw.endswith(b"\n") else raw for raw in handle]
    return [
        line.decode()
        for line, record in zip(lines, records("xhs"), strict=True)
        if _without((record,), dropped)
    ]


def _held_refund_rows(ledgers: tuple[Ledger, ...]) -> int:
    """The refund claims' per-user rows the owners hold unfolded (a source has not
    announced their month's second stage)."""
    return sum(
        len(claims[claim])
        for ledger in ledgers
        for by_source in ledger.period_rows_in.values()
        for claims in by_source.values()
        for claim in REFUND_CLAIMS
        if claim in claims
    )


@pytest.mark.parametrize(
    "dropped",
    [ORDERS, ("live.interactions",), ("live.sessions", "live.views", "live.interactions")],
    ids=["no-order", "no-interaction", "orders-only"],
)
def test_a_partition_without_a_topic_announces_both_stages_and_the_owners_fold(
    dropped: tuple[str, ...],
) -> None:
    """Partition 2 gets every event of its sessions but their orders (rooms that sell
    nothing), or but their interactions, or only their orders: those topics' horizons follow
    the others' summaries horizon once idle there (`Ledger.follow_idle_topics`; the orders
    topic's alone is `follow_idle_orders`, as the keeper once the refund table leaves its
    orders partition out), so its closing horizon and order fold's come, its periods freeze in
    both stages as any partition's, and it announces July's (`PeriodsClosed.through`,
    `refunds_through`) with the others: every owner folds July's rows, the refund claims' too
    (none held), and each of July's days and the month has the refund claims' figures,
    intervals and verdicts of the same partitions merged without the exchange, and the
    observed value of the truth of the records fed cut to the period, to 1e-9. Without the
    follow (the orders case) it never announces either stage, and the owners hold every
    source's rows, the refund claims' of every period, for as long as the stream runs."""
    routed = _fed(True, dropped=dropped)
    assert [ledger.period_refunds_sent_through for ledger in routed] == ["2024-07"] * PARTITIONS
    announced = dict.fromkeys(range(PARTITIONS), "2024-07")
    assert all(ledger.period_refund_sources_through == announced for ledger in routed)
    assert all(ledger.period_sources_through == announced for ledger in routed)
    assert routed[QUIET].counts.expired == 0  # no record behind a followed horizon
    assert not any(ledger.period_rows_in for ledger in routed)
    folded = [
        period
        for ledger in routed
        for period, claims in ledger.period_users.items()
        if set(REFUND_CLAIMS) <= set(claims)
    ]
    assert len(folded) > 30  # July's days at their users' owners, and the month

    got, today = _merged_periods(routed), _merged_periods(_fed(False, dropped=dropped))
    whole = PeriodCut(_fed_lines(dropped))
    compared = 0
    for kind in (DAY, MONTH):
        for claim_id in REFUND_CLAIMS:
            for entry in got[claim_id][kind]:
                key = entry["period"]
                if key[:7] > "2024-07":
                    continue
                assert entry["frozen"] and not entry.get("folded"), (claim_id, entry)
                before = next(e for e in today[claim_id][kind] if e["period"] == key)
                for field in FIGURE_KEYS:
                    assert _close(entry[field], before[field]), (claim_id, key, field)
                truth = whole.claims(lambda ts, key=key, kind=kind: period_key(kind, ts) == key)
                expected = truth[claim_id]["observed"]
                if expected is None or entry["observed"] is None:
                    assert entry["observed"] is expected, (claim_id, key)
                else:
                    assert math.isclose(entry["observed"], expected, rel_tol=1e-9), (claim_id, key)
                compared += 1
    assert compared > 60  # July's 31 days and its month, both claims

    if dropped != ORDERS:
        return
    never = _fed(True, dropped=dropped, follow=False)
    assert never[QUIET].period_refunds_sent_through == ""
    assert never[QUIET].period_rows_sent_through == ""
    assert _held_refund_rows(never) > 300
