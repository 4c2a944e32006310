"""Issue 17: `group_repurchase_30d`'s (merchant, user) pairs across a worker's partitions,
decided at their user's owner partition (`Ledger.take_first_orders`, `receive_first_order`,
`receive_firsts_closed`): the figure, its counts and its interval equal the truth reference's
and today's merged report, and a partition no longer keeps every pair it has seen."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import DAY_MS, FirstOrder, FirstsClosed
from agents.core.merge import merge_ledgers
from agents.core.persist import dump_state, load_state
from schemas import Rejection
from streams.tools.simulator.generate import generate
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth_file import compute_truth
from tests.agents.core.test_merge import split
from tests.support.exchange import exchanged, routed

CLAIM = "group_repurchase_30d"
PARTITIONS = 3
WINDOW_MS = 2 * DAY_MS


@functools.cache
def _simulated(days: int, scale: float, seed: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The xhs scenario stretched to `days`, routed as the replayer routes it (contract topic,
    key, decoded), and its truth (the independent reference, simulator/truth.py)."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    lines = generate(scenario, seed, scale).lines
    return routed(lines), compute_truth(lines, scenario="xhs", seed=seed)


def _groups(stream: tuple[Any, ...]) -> Ledger:
    """Every group event in one ledger: the membership the worker's table gives each partition."""
    groups = Ledger(WINDOW_MS, fold_sessions=True)
    for _topic, _key, event in stream:
        if not isinstance(event, Rejection) and getattr(event, "type", "").startswith("group_"):
            groups.apply(event)
    return groups


def _feed(
    stream: tuple[Any, ...],
    exchange: bool,
    twice: bool = False,
    user_horizon_ms: int | None = None,
    pair_horizon_ms: int | None = None,
) -> tuple[list[Ledger], int]:
    """The stream split over the partitions by contract key, fed in chunks; with `exchange`,
    after each chunk each partition's taken pairs go to their user's owner (murmur2 of the user
    id, as the month-rows topic keyed by user) and its announcement to every partition (each
    message twice with `twice`: a redelivery). The ledgers, and how many pairs were sent."""
    groups = _groups(stream)
    parts = split(stream, PARTITIONS)
    ledgers = [
        Ledger(
            WINDOW_MS,
            fold_sessions=True,
            user_horizon_ms=user_horizon_ms,
            pair_horizon_ms=pair_horizon_ms,
        )
        for _ in parts
    ]
    for ledger in ledgers:
        ledger.membership_from = groups
    take = (lambda ledger, source: ledger.take_first_orders(source)) if exchange else None
    sent = exchanged(ledgers, parts, take, 2 if twice else 1)
    return ledgers, sent


@pytest.mark.slow
def test_pairs_decided_at_their_owner_give_the_truths_figure_and_interval() -> None:
    """150 simulated days of xhs over 3 partitions (a 2-day window, the session fold): with the
    exchange (every message delivered twice) the pairs whose first order is 60 days behind
    every partition's horizon are decided at their owner and leave the partitions, and
    `group_repurchase_30d`'s observed value, counts and Wilson interval of the merged report
    (through a snapshot of each partition) equal the truth reference's and those of the same
    partitions without the exchange (today's merged report: every pair kept)."""
    stream, truth = _simulated(150, 0.3, 5)
    kept, _ = _feed(stream, exchange=False)
    ledgers, sent = _feed(stream, exchange=True, twice=True)
    decided = sum(ledger.repurchase_folded[0] for ledger in ledgers)
    assert sent > 0 and decided > 0 and all(ledger.pairs_decided for ledger in ledgers)
    # Each partition held every pair it saw; now only the undecided ones, here or at an owner.
    held_before = sum(len(ledger.first_orders) for ledger in kept)
    held_after = sum(len(ledger.first_orders) + len(ledger.first_orders_in) for ledger in ledgers)
    assert held_after < 0.6 * held_before, (held_after, held_before)

    want = truth["claims"][CLAIM]
    today = build_report(merge_ledgers(kept))["claims"][CLAIM]
    restored = [load_state(dump_state(ledger, OperatorBoard()))[0] for ledger in ledgers]
    for ledger in restored:
        ledger.membership_from = ledgers[0].membership_from
    got = build_report(merge_ledgers(restored))["claims"][CLAIM]
    assert got["detail"]["eligible"] == want["eligible"] == today["detail"]["eligible"]
    assert got["detail"]["repurchased"] == want["repurchased"] == today["detail"]["repurchased"]
    assert got["observed"] == pytest.approx(want["observed"], rel=1e-9)
    for key in ("observed", "ci_low", "ci_high", "n"):
        assert got[key] == pytest.approx(today[key], rel=1e-9), key
    # One partition read alone (a one-partition view) still counts its decided pairs once.
    alone = build_report(ledgers[0])["claims"][CLAIM]["detail"]
    assert alone["eligible"] >= ledgers[0].repurchase_folded[0]


@pytest.mark.slow
def test_with_a_short_user_horizon_the_owners_keep_every_decided_pair_exactly() -> None:
    """A 20-day user horizon (`LIVEPULSE_USER_HORIZON_DAYS`, 180 by default in the worker)
    over 150 days, no pair horizon (the default): the owners forget no decided pair, so a
    user who comes back to a merchant long after their first order is not a first order
    again, and `group_repurchase_30d`'s counts equal the truth reference's exactly."""
    stream, truth = _simulated(150, 0.3, 5)
    ledgers, _sent = _feed(stream, exchange=True, user_horizon_ms=20 * DAY_MS)
    merged = merge_ledgers(ledgers)
    assert merged.forgotten_pairs == 0 and sum(len(x.pairs_decided) for x in ledgers) > 0
    got = build_report(merged)["claims"][CLAIM]
    want = truth["claims"][CLAIM]
    assert got["detail"] == {"eligible": want["eligible"], "repurchased": want["repurchased"]}
    assert got["observed"] == pytest.approx(want["observed"], rel=1e-9)


@pytest.mark.slow
def test_with_a_pair_horizon_a_forgotten_pair_counts_again_at_most_once_a_forgetting() -> None:
    """The opt-in 20-day pair horizon (`LIVEPULSE_FIRST_ORDER_HORIZON_DAYS`) over 150 days:
    the owners forget decided pairs idle that long, so a user who comes back to a merchant
    after it counts as a new first order, as in one ledger (docs/design.md, "First orders"):
    the eligible pairs are at least the truth's and exceed it by at most the pairs
    forgotten."""
    stream, truth = _simulated(150, 0.3, 5)
    ledgers, _sent = _feed(stream, exchange=True, pair_horizon_ms=20 * DAY_MS)
    merged = merge_ledgers(ledgers)
    forgotten = merged.forgotten_pairs
    got = build_report(merged)["claims"][CLAIM]["detail"]
    want = truth["claims"][CLAIM]
    assert forgotten > 0
    assert want["eligible"] <= got["eligible"] <= want["eligible"] + forgotten


def test_an_owner_decides_a_pair_only_when_no_source_can_still_change_it() -> None:
    """A pair's first order at day 0 in partition 0, its repurchase at day 20 in partition 1,
    which sends it only once its own first + 30 days (day 50) is behind its cutoff: the owner
    must not decide at a cutoff of day 31 (partition 1 has announced nothing for the pair
    yet); it decides once every source is past day 60, repurchased; a part sent again after
    is ignored, and a source's later order of a decided pair is left out of the report."""
    owner = Ledger(WINDOW_MS, fold_sessions=True)
    member_since: dict[tuple[str, str], int] = {("m", "u"): 0}

    def lookup() -> Any:
        return lambda merchant, user, ts: member_since.get((merchant, user), ts + 1) <= ts

    owner._member_lookup = lookup  # type: ignore[method-assign]
    day = DAY_MS
    owner.receive_first_order(FirstOrder(0, "m", "u", 0, None))
    for source in (0, 1):
        owner.receive_firsts_closed(FirstsClosed(source, 31 * day), 2)
    assert owner.repurchase_folded == [0, 0] and ("m", "u") in owner.first_orders_in
    for source in (0, 1):
        owner.receive_firsts_closed(FirstsClosed(source, 55 * day), 2)
    assert owner.repurchase_folded == [0, 0]  # partition 1's day-20 order not sent yet
    owner.receive_first_order(FirstOrder(1, "m", "u", 20 * day, 25 * day))
    owner.receive_firsts_closed(FirstsClosed(0, 61 * day), 2)
    assert owner.repurchase_folded == [0, 0]  # partition 1 still at day 55
    owner.receive_firsts_closed(FirstsClosed(1, 61 * day), 2)
    assert owner.repurchase_folded == [1, 1]  # a member at day 0, bought again at day 20
    assert ("m", "u") in owner.pairs_decided and not owner.first_orders_in
    owner.receive_first_order(FirstOrder(1, "m", "u", 20 * day, 25 * day))  # sent again
    assert not owner.first_orders_in and owner.pairs_decided[("m", "u")] == 25
    owner.first_orders[("m", "u")] = (70 * day, None)  # a later order held at a source
    assert ("m", "u") not in owner.first_order_pairs()


def test_a_version_10_state_loads_with_no_pair_sent_and_sends_them_after() -> None:
    """A partition state written before the exchange (version 10: no `first_orders_in`,
    `pairs_decided`) loads with its pairs held as a source and nothing at an owner; its next
    take sends every pair old enough, which its owner decides as usual."""
    import pickle
    import zlib

    from agents.core.persist import MAGIC

    stream, _truth = _simulated(150, 0.3, 5)
    ledgers, _sent = _feed(stream, exchange=False)
    old = ledgers[0]
    held = dict(old.first_orders)
    for name in (
        "first_orders_in",
        "pairs_decided",
        "_firsts_closed_by",
        "_first_sources",
        "_first_take_day",
        "_first_decide_day",
    ):
        del old.__dict__[name]
    blob = MAGIC + bytes([10]) + zlib.compress(pickle.dumps((old, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    restored.membership_from = old.membership_from  # the worker's table, not pickled
    assert restored.first_orders == held and restored.first_orders_in == {}
    assert restored.pairs_decided == {} and restored._first_take_day == -1
    taken = restored.take_first_orders(0)
    assert isinstance(taken[-1], FirstsClosed) and len(taken) > 1
    assert all(isinstance(message, FirstOrder) for message in taken[:-1])
    assert len(restored.first_orders) == len(held) - (len(taken) - 1)


class _Groups:
    """A membership source (`MembershipSource`) of hand-made group events and groups horizon."""

    def __init__(self, events: dict[tuple[str, str], list[tuple[int, int, str, bool]]]) -> None:
        self.group_events = events
        self.horizon: int | None = None

    def horizon_ts(self, topic: int) -> int | None:
        del topic
        return self.horizon


def test_an_owner_records_membership_at_a_first_order_once_the_groups_horizon_passed_it() -> None:
    """An owner records membership at a pair's first order once the groups horizon is past it
    (at the part's arrival, or at the next announcement read), and from then on the pair
    holds no group floor and its decision reads the recorded bit, not the group events (here
    removed, as a compaction past it would). A part with an earlier first order sets it aside
    and it is recorded at that one; a source still holding an earlier part of the pair keeps
    the report off the bit (`first_order_members`)."""
    day = DAY_MS
    groups = _Groups(
        {
            ("m", "u"): [(5 * day, 0, "g", True)],  # a member from day 5 on
            ("m", "v"): [(7 * day, 0, "g", True), (9 * day, 1, "g", False)],  # days 7-9
        }
    )
    owner = Ledger(WINDOW_MS, fold_sessions=True)
    owner.membership_from = groups
    owner.receive_first_order(FirstOrder(0, "m", "u", 10 * day, 20 * day))
    assert owner.first_orders_in[("m", "u")] == (10 * day, 20 * day, None)  # no horizon yet
    assert owner.held_group_floor() == 10 * day
    groups.horizon = 3 * day
    owner.note_first_members()
    assert owner.first_orders_in[("m", "u")][2] is None  # day 10 is after the horizon
    groups.horizon = 12 * day
    owner.receive_firsts_closed(FirstsClosed(0, 12 * day), 2)  # reads the horizon again
    assert owner.first_orders_in[("m", "u")] == (10 * day, 20 * day, True)
    assert owner.held_group_floor() is None and owner.first_order_members() == {("m", "u"): True}

    owner.receive_first_order(FirstOrder(1, "m", "v", 10 * day, None))  # recorded at arrival
    assert owner.first_orders_in[("m", "v")] == (10 * day, None, False)
    owner.receive_first_order(FirstOrder(0, "m", "v", 8 * day, None))  # an earlier first order
    assert owner.first_orders_in[("m", "v")] == (8 * day, 10 * day, True)
    owner.receive_first_order(FirstOrder(0, "m", "v", 8 * day, None))  # sent again: the same
    assert owner.first_orders_in[("m", "v")] == (8 * day, 10 * day, True)
    owner.first_orders[("m", "v")] = (6 * day, None)  # held at a source: the first order here
    assert owner.first_order_members() == {("m", "u"): True}
    assert owner.first_order_pairs()[("m", "v")] == (6 * day, 8 * day)
    assert owner.held_group_floor() == 6 * day
    del owner.first_orders[("m", "v")]

    groups.group_events.clear()  # compacted away: the decisions read what was recorded
    for source in (0, 1):
        owner.receive_firsts_closed(FirstsClosed(source, 71 * day), 2)
    assert owner.repurchase_folded == [2, 2] and not owner.first_orders_in


def test_a_version_15_state_loads_with_its_owner_pairs_not_recorded_and_records_them() -> None:
    """An owner's pairs in a state written before membership was recorded (version 15: two
    times a pair) load with it not recorded, and the owner's next pass records it."""
    import pickle
    import zlib

    from agents.core.persist import MAGIC

    day = DAY_MS
    old = Ledger(WINDOW_MS, fold_sessions=True)
    old.__dict__["first_orders_in"] = {("m", "u"): (10 * day, None)}
    del old.__dict__["_first_member_day"]
    blob = MAGIC + bytes([15]) + zlib.compress(pickle.dumps((old, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert restored.first_orders_in == {("m", "u"): (10 * day, None, None)}
    assert restored.held_group_floor() == 10 * day
    groups = _Groups({("m", "u"): [(5 * day, 0, "g", True)]})
    groups.horizon = 11 * day
    restored.membership_from = groups
    restored.note_first_members()
    assert restored.first_orders_in == {("m", "u"): (10 * day, None, True)}
    assert restored.held_group_floor() is None


def test_a_source_records_membership_at_its_held_pairs_first_order_and_sends_it() -> None:
    """A source partition records membership at the first order of a pair it holds once the
    groups horizon has passed it (at its next pass, once a day of that horizon): from then on
    the pair holds no group floor there and a report reads the bit, alone or merged, unless
    the pair's first order is elsewhere or earlier (an earlier order applied later leaves the
    bit stale: the floor is held at that order until the next pass records it there). The
    pair's `FirstOrder` carries the bit, and the owner decides from it with no group event
    to read (here none at all, as after a compaction); a part sent without one, as a worker
    from before session 20 sends it, is looked up there as before."""
    day = DAY_MS
    groups = _Groups(
        {
            ("m", "u"): [(5 * day, 0, "g", True)],  # a member from day 5 on
            ("m", "v"): [(7 * day, 0, "g", True), (9 * day, 1, "g", False)],  # days 7-9
        }
    )
    source = Ledger(WINDOW_MS, fold_sessions=True)
    source.membership_from = groups
    source.first_orders[("m", "u")] = (10 * day, 20 * day)
    source.first_orders[("m", "v")] = (10 * day, None)
    groups.horizon = 3 * day
    source.note_first_members()
    assert source.held_group_floor() == 10 * day and source.first_order_members() == {}
    groups.horizon = 12 * day
    source.note_first_members()
    assert source.held_group_floor() is None
    assert source.first_order_members() == {("m", "u"): True, ("m", "v"): False}

    source.first_orders[("m", "v")] = (8 * day, 10 * day)  # an earlier order, applied later
    assert source.held_group_floor() == 8 * day
    assert source.first_order_members() == {("m", "u"): True}
    source.note_first_members()  # the same day of the groups horizon: no pass
    assert source.held_group_floor() == 8 * day
    groups.horizon = 13 * day
    source.note_first_members()
    assert source.held_group_floor() is None
    assert source.first_order_members() == {("m", "u"): True, ("m", "v"): True}
    restored = load_state(dump_state(source, OperatorBoard()))[0]
    assert restored.first_members == source.first_members
    assert merge_ledgers([restored]).first_order_members() == source.first_order_members()
    # Another partition holding an earlier part of (m, u), not recorded: the merged pair's
    # first order is that one, so the bit recorded at day 10 is not read.
    other = Ledger(WINDOW_MS, fold_sessions=True)
    other.first_orders[("m", "u")] = (6 * day, None)
    merged = merge_ledgers([source, other])
    assert merged.first_order_pairs()[("m", "u")] == (6 * day, 10 * day)
    assert merged.first_order_members() == {("m", "v"): True}
    assert merged.held_group_floor() == 6 * day

    source._month_cutoff = lambda: 45 * day  # type: ignore[method-assign]
    taken = source.take_first_orders(0)
    assert taken == [
        FirstOrder(0, "m", "u", 10 * day, 20 * day, True),
        FirstOrder(0, "m", "v", 8 * day, 10 * day, True),
        FirstsClosed(0, 45 * day),
    ]
    assert not source.first_orders and not source.first_members

    owner = Ledger(WINDOW_MS, fold_sessions=True)
    owner.membership_from = _Groups({})  # no group event: a lookup says "not a member"
    for message in taken[:-1]:
        owner.receive_first_order(message)  # (no groups horizon at the owner yet)
    assert owner.first_orders_in == {
        ("m", "u"): (10 * day, 20 * day, True),
        ("m", "v"): (8 * day, 10 * day, True),
    }
    owner.receive_first_order(FirstOrder(1, "m", "w", 9 * day, 12 * day))  # no bit sent
    assert owner.first_orders_in[("m", "w")] == (9 * day, 12 * day, None)
    assert owner.held_group_floor() == 9 * day
    for number in (0, 1):
        owner.receive_firsts_closed(FirstsClosed(number, 71 * day), 2)
    # (m, w) looked up (not a member), the other two read from their bits: both repurchased.
    assert owner.repurchase_folded == [2, 2] and not owner.first_orders_in


def test_a_version_18_state_loads_with_no_source_membership_recorded_and_records_it() -> None:
    """A source's held pairs in a state written before a source recorded membership (version
    18: no `first_members`) load with none recorded, holding the floor at their first orders,
    and the next pass records it."""
    import pickle
    import zlib

    from agents.core.persist import MAGIC

    day = DAY_MS
    old = Ledger(WINDOW_MS, fold_sessions=True)
    old.first_orders[("m", "u")] = (10 * day, None)
    del old.__dict__["first_members"]
    blob = MAGIC + bytes([18]) + zlib.compress(pickle.dumps((old, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert restored.first_members == {} and restored.held_group_floor() == 10 * day
    groups = _Groups({("m", "u"): [(5 * day, 0, "g", True)]})
    groups.horizon = 11 * day
    restored.membership_from = groups
    restored.note_first_members()
    assert restored.first_order_members() == {("m", "u"): True}
    assert restored.held_group_floor() is None


def test_a_source_behind_its_groups_horizon_records_its_new_pairs_as_its_events_move() -> None:
    """A worker's membership table may read a replay's groups topic to its end long before
    the partitions catch up, and its horizon then never moves again: a source still records
    membership at the pairs its later orders bring, at a pass once a day of its own events."""
    day = DAY_MS
    groups = _Groups({("m", "u"): [(5 * day, 0, "g", True)]})
    groups.horizon = 100 * day  # ahead of the partition, and stays there
    source = Ledger(WINDOW_MS, fold_sessions=True)
    source.membership_from = groups
    source.max_ts = 10 * day
    source.note_first_members()
    source.first_orders[("m", "u")] = (11 * day, None)  # an order of day 11 applied after
    source.note_first_members()
    assert source.held_group_floor() == 11 * day  # the same day of its own events: no pass
    source.max_ts = 11 * day
    source.note_first_members()
    assert source.first_order_members() == {("m", "u"): True}
    assert source.held_group_floor() is None
