"""Issue 17: group events compacted in a worker's partitions (`Ledger.group_floor_announcement`,
`receive_group_floor`): each partition announces the oldest "member at ts" lookup it may still
ask, over the month-rows exchange, and compacts its own group events before the oldest of every
partition's. The merged report with messages in flight, and at the end through a snapshot,
equals that of the same partitions keeping every group event, and the truth reference's group
claims and `group_joins`."""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import (
    DAY_MS,
    TOPICS,
    FirstOrder,
    FirstsClosed,
    GroupFloor,
    MonthClosed,
    MonthRow,
)
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.persist import dump_state, load_state
from schemas import Rejection, decode
from streams.runtime.membership import MembershipTable
from streams.tools.simulator.generate import generate
from streams.tools.simulator.operator_truth import operator_truth
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth_file import compute_truth
from tests.agents.core.test_merge import partition_of, split
from tests.streams.test_membership import topic_and_key
from tests.support.live import operator_truth_for

PARTITIONS = 3
WINDOW_MS = 2 * DAY_MS
CHUNK = 100
GROUP_CLAIMS = (
    "group_order_share",
    "group_repurchase_30d",
    "group_member_dwell",
    "group_spend_multiple",
)

TOPIC_GROUPS = TOPICS.index("live.groups")

Message = MonthRow | MonthClosed | FirstOrder | FirstsClosed | GroupFloor


@functools.cache
def _simulated(days: int, scale: float, seed: int) -> tuple[tuple[Any, ...], list[str]]:
    """The xhs scenario stretched to `days`, routed as the replayer routes it (contract topic,
    key, decoded), and its lines (for the truth reference)."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    lines = generate(scenario, seed, scale).lines
    out = []
    for line in lines:
        raw = line.encode()
        topic, key = topic_and_key(raw)
        out.append((topic, key, decode(raw)))
    return tuple(out), lines


@dataclasses.dataclass
class _Partitions:
    """A worker's partition ledgers and boards; `compacts`: whether they read the floors."""

    compacts: bool
    ledgers: list[Ledger]
    boards: list[OperatorBoard]

    def deliver(self, partition: int, message: Message) -> None:
        """One message of the month-rows topic, read by `partition` (`MonthRowExchange`)."""
        ledger = self.ledgers[partition]
        if isinstance(message, MonthRow):
            ledger.receive_month_row(message)
        elif isinstance(message, FirstOrder):
            ledger.receive_first_order(message)
        elif isinstance(message, FirstsClosed):
            ledger.receive_firsts_closed(message, PARTITIONS)
        elif isinstance(message, MonthClosed):
            ledger.receive_month_closed(message, PARTITIONS)
        elif self.compacts:
            ledger.receive_group_floor(message, PARTITIONS)

    def report(self, groups: MembershipTable, in_flight: list[list[Message]]) -> dict[str, Any]:
        """The report merged over a snapshot of each partition once every message in flight
        is read (what a later report gives; nothing of this run is changed)."""
        pairs = zip(self.ledgers, self.boards, strict=True)
        restored = [load_state(dump_state(ledger, board)) for ledger, board in pairs]
        later = _Partitions(self.compacts, [r[0] for r in restored], [r[1] for r in restored])
        for partition, queue in enumerate(in_flight):
            for message in queue:
                later.deliver(partition, message)
        for ledger in later.ledgers:
            ledger.membership_from = groups
        return build_report(merge_ledgers(later.ledgers), merge_boards(later.boards))


def _exchanged(
    stream: tuple[Any, ...], seed: int, checks: int
) -> tuple[_Partitions, _Partitions, MembershipTable, int]:
    """The stream split over the partitions by contract key and fed in chunks, twice: to
    partitions that compact by the floors and to partitions that keep every group event, with
    the same month-rows messages (asserted the same, and so are the partitions' own floors:
    nothing taken reads a group event). After
    each chunk a partition takes its rows and first orders (to their user's owner) and their
    announcements, then announces its floor (to every partition); each partition then reads
    a random part of what is queued for it, the rest staying in flight. At `checks` points
    the two merged reports, every message in flight read, are equal. The membership table (a
    ledger per groups partition, `streams.runtime.membership`) reads each chunk's group events
    first, as the worker's reads ahead of its partitions."""
    parts = split(stream, PARTITIONS)
    groups = MembershipTable(WINDOW_MS, None)
    # A groups partition's ledger is made at its first event: one with none yet is left out
    # of the table's horizon, as the worker's table leaves out one gone idle.
    groups.caught_up.set()

    def partitions(compacts: bool) -> _Partitions:
        ledgers = [Ledger(WINDOW_MS, fold_sessions=True) for _ in parts]
        for ledger in ledgers:
            ledger.membership_from = groups
        return _Partitions(compacts, ledgers, [OperatorBoard() for _ in parts])

    compacting, keeping = partitions(True), partitions(False)
    queues: list[list[Message]] = [[] for _ in parts]
    rng = random.Random(seed)
    steps = range(0, max(len(part) for part in parts), CHUNK)
    check_at = {steps[len(steps) * (k + 1) // (checks + 1)] for k in range(checks)}
    compared = 0
    for begin in steps:
        for partition, part in enumerate(parts):
            for _topic, _key, event in part[begin : begin + CHUNK]:
                if not isinstance(event, Rejection) and event.type.startswith("group_"):
                    groups.ledgers.setdefault(partition, Ledger(WINDOW_MS)).apply(event)
        for source, part in enumerate(parts):
            taken = []
            for run in (compacting, keeping):
                ledger, board = run.ledgers[source], run.boards[source]
                for _topic, _key, event in part[begin : begin + CHUNK]:
                    if isinstance(event, Rejection):
                        ledger.reject(event.reason)
                    elif ledger.apply(event):
                        board.observe(event)
                taken.append(
                    [*ledger.take_closed_month_rows(source), *ledger.take_first_orders(source)]
                )
            floors = [
                run.ledgers[source].group_floor_announcement(source)
                for run in (compacting, keeping)
            ]
            assert taken[0] == taken[1] and floors[0].own_ts == floors[1].own_ts
            _route([*taken[0], floors[0]], queues)
        for partition, queue in enumerate(queues):
            read = rng.randint(0, len(queue))
            for message in queue[:read]:
                compacting.deliver(partition, message)
                keeping.deliver(partition, message)
            del queue[:read]
        if begin in check_at:
            got, want = compacting.report(groups, queues), keeping.report(groups, queues)
            assert got["claims"] == want["claims"] and got["operator"] == want["operator"]
            compared += 1
    for _round in range(3):  # then, as the keeper's ticks do: take, announce, read it all
        for source in range(len(parts)):
            ledger = compacting.ledgers[source]
            messages = [*ledger.take_closed_month_rows(source), *ledger.take_first_orders(source)]
            assert messages == [
                *keeping.ledgers[source].take_closed_month_rows(source),
                *keeping.ledgers[source].take_first_orders(source),
            ]
            _route([*messages, ledger.group_floor_announcement(source)], queues)
        for partition, queue in enumerate(queues):
            for message in queue:
                compacting.deliver(partition, message)
                keeping.deliver(partition, message)
            queue.clear()
    return compacting, keeping, groups, compared


def _route(messages: list[Message], queues: list[list[Message]]) -> None:
    """Rows and first orders to their user's owner, announcements to every partition."""
    for message in messages:
        if isinstance(message, MonthRow | FirstOrder):
            queues[partition_of(message.user.encode(), PARTITIONS)].append(message)
        else:
            for queue in queues:
                queue.append(message)


@pytest.mark.slow
def test_partitions_compact_their_group_events_by_every_partitions_floor_exactly() -> None:
    """150 simulated days of xhs over 3 partitions (a 2-day window, the session fold), the
    month-rows messages read with random lags: every partition holding group events compacts
    them (its cutoff over 45 days into the stream) and holds fewer than partitions that keep
    them all; the merged reports, with messages in flight (read before the report) and at the end
    through a snapshot, equal theirs in every claim and operator figure, and the group claims
    and `group_joins` equal the truth reference's."""
    stream, lines = _simulated(150, 0.3, 5)
    compacting, keeping, groups, compared = _exchanged(stream, seed=3, checks=3)
    assert compared == 3
    first_ts = min(ts for events in groups.group_events.values() for ts, *_ in events)
    holding = [ledger for ledger in compacting.ledgers if ledger.horizon_ts(TOPIC_GROUPS)]
    assert len(holding) >= 2  # the others hold no group event (keyed by merchant)
    for ledger in holding:
        cutoff = ledger.groups_compacted_to
        assert cutoff is not None and cutoff > first_ts + 45 * DAY_MS, cutoff
    held = sum(len(e) for ledger in compacting.ledgers for e in ledger.group_events.values())
    every = sum(len(e) for ledger in keeping.ledgers for e in ledger.group_events.values())
    assert held < 0.85 * every, (held, every)  # measured 111 of 143

    got = compacting.report(groups, [[] for _ in range(PARTITIONS)])
    want = keeping.report(groups, [[] for _ in range(PARTITIONS)])
    assert got["claims"] == want["claims"] and got["operator"] == want["operator"]
    truth = compute_truth(lines, scenario="xhs", seed=5)["claims"]
    for claim in GROUP_CLAIMS:
        assert got["claims"][claim]["observed"] == pytest.approx(
            truth[claim]["observed"], rel=1e-9
        ), claim
    raw = [line.encode() for line in lines]
    reference = operator_truth_for(got, raw, operator_truth(lines), partitions=PARTITIONS)
    assert got["operator"]["overall"]["group_joins"] == reference["overall"]["group_joins"]


def test_no_partition_compacts_before_every_partition_announced_both_floors() -> None:
    """A floor missing (a partition not announced yet, or one whose lookups are not known:
    None) holds the compaction back; once every partition's two are in, the group events are
    compacted before the oldest of them and the partition's own groups horizon."""
    stream, _lines = _simulated(30, 0.3, 5)
    ledger = Ledger(WINDOW_MS, fold_sessions=True)
    for _topic, _key, event in stream:
        if not isinstance(event, Rejection) and event.type.startswith("group_"):
            ledger.apply(event)
    groups = ledger.horizon_ts(TOPIC_GROUPS)
    assert groups is not None
    late = groups - 5 * DAY_MS
    ledger.receive_group_floor(GroupFloor(0, late, late), 3)
    ledger.receive_group_floor(GroupFloor(1, late, None), 3)
    ledger.receive_group_floor(GroupFloor(2, late, late), 3)
    assert ledger.groups_compacted_to is None
    ledger.receive_group_floor(GroupFloor(1, late, late - DAY_MS), 3)
    assert ledger.groups_compacted_to == late - DAY_MS
    ledger.receive_group_floor(GroupFloor(1, groups + 9 * DAY_MS, groups + 9 * DAY_MS), 3)
    assert ledger.groups_compacted_to == late  # the oldest of the others'
    for source in range(3):
        ledger.receive_group_floor(GroupFloor(source, groups + DAY_MS, groups + DAY_MS), 3)
    assert ledger.groups_compacted_to == groups  # never past its own groups horizon


def test_a_partitions_in_flight_floor_is_the_oldest_own_floor_it_has_read_of_every_source() -> None:
    """What may still come to a partition (rows and first orders sent before a source's floor
    that it has not read yet) is no older than the oldest own floor it has read of each
    source (read in order from its own topic partition, after their rows): its `inflight_ts`,
    None until every source is read; its `own_ts` none of that."""
    stream, _lines = _simulated(30, 0.3, 5)
    ledger = Ledger(WINDOW_MS, fold_sessions=True)
    for _topic, _key, event in stream:
        if not isinstance(event, Rejection):
            ledger.apply(event)
    own = ledger.worker_group_floor()
    assert own is not None and own % DAY_MS == 0
    assert ledger.group_floor_announcement(1) == GroupFloor(1, own, None)
    ledger.receive_group_floor(GroupFloor(0, own + DAY_MS, None), 2)
    assert ledger.group_floor_announcement(1).inflight_ts is None
    ledger.receive_group_floor(GroupFloor(1, own - 3 * DAY_MS, own - 9 * DAY_MS), 2)
    assert ledger.group_floor_announcement(1) == GroupFloor(1, own, own - 3 * DAY_MS)
    ledger.receive_group_floor(GroupFloor(0, None, None), 2)  # a source not known again
    assert ledger.group_floor_announcement(1).inflight_ts is None


def test_a_state_written_before_the_floors_loads_with_none_read() -> None:
    """A version 11 state (no `group_floors_by`) loads with no floor read, announces none in
    flight, and compacts once every partition has announced again."""
    stream, _lines = _simulated(30, 0.3, 5)
    ledger = Ledger(WINDOW_MS, fold_sessions=True)
    for _topic, _key, event in stream:
        if not isinstance(event, Rejection):
            ledger.apply(event)
    del ledger.__dict__["group_floors_by"], ledger.__dict__["_group_floor_sources"]
    restored, _board = load_state(dump_state(ledger, OperatorBoard()))
    assert restored.group_floors_by == {}
    own = restored.worker_group_floor()
    assert restored.group_floor_announcement(0) == GroupFloor(0, own, None)
    restored.receive_group_floor(GroupFloor(0, own, own), 1)
    assert restored.groups_compacted_to == own
