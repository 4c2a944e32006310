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
from collections.abc import Callable
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import (
    DAY_MS,
    SESSION_HORIZON_MS,
    TOPICS,
    FirstOrder,
    FirstsClosed,
    GroupFloor,
    MonthClosed,
    MonthRow,
    cst_month,
)
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.periods import SKETCHED
from agents.core.persist import dump_state, load_state
from schemas import TOPIC_BY_TYPE, Rejection
from streams.runtime.global_report import floors_behind
from streams.runtime.membership import MembershipTable
from streams.runtime.monthrows import Row, deliver, owner_of
from streams.tools.simulator.generate import generate
from streams.tools.simulator.operator_truth import operator_truth
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.truth import is_member, read_stream
from streams.tools.simulator.truth_file import compute_truth
from tests.agents.core.test_merge import partition_of, split
from tests.support.exchange import routed
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
#: The topics whose events may add a "member at ts" lookup (a session start, a view, an order).
PRESENCE = {TOPICS.index(topic) for topic in ("live.sessions", "live.views", "live.orders")}

Message = MonthRow | MonthClosed | FirstOrder | FirstsClosed | GroupFloor


@functools.cache
def _simulated(days: int, scale: float, seed: int) -> tuple[tuple[Any, ...], list[str]]:
    """The xhs scenario stretched to `days`, routed as the replayer routes it (contract topic,
    key, decoded), and its lines (for the truth reference)."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    lines = generate(scenario, seed, scale).lines
    return routed(lines), lines


def _fed_30_days() -> Ledger:
    """One ledger with the session fold fed 30 simulated days (every event, in stream order)."""
    stream, _lines = _simulated(30, 0.3, 5)
    ledger = Ledger(WINDOW_MS, fold_sessions=True)
    for _topic, _key, event in stream:
        if not isinstance(event, Rejection):
            ledger.apply(event)
    return ledger


@dataclasses.dataclass
class _Partitions:
    """A worker's partition ledgers and boards; `compacts`: whether they read the floors."""

    compacts: bool
    ledgers: list[Ledger]
    boards: list[OperatorBoard]

    def deliver(self, partition: int, message: Message) -> None:
        """One message of the month-rows topic, read by `partition` (`MonthRowExchange`); a
        floor only by partitions that compact."""
        if self.compacts or not isinstance(message, GroupFloor):
            deliver(self.ledgers[partition], message, PARTITIONS)

    def report(self, groups: MembershipTable, in_flight: list[list[Message]]) -> dict[str, Any]:
        """The report merged over a snapshot of each partition once every message in flight
        is read (what a later report gives; nothing of this run is changed)."""
        pairs = zip(self.ledgers, self.boards, strict=True)
        restored = [load_state(dump_state(ledger, board)) for ledger, board in pairs]
        later = _Partitions(self.compacts, [r[0] for r in restored], [r[1] for r in restored])
        for partition, queue in enumerate(in_flight):
            for message in queue:
                later.deliver(partition, message)
        if self.compacts:  # no state looks up membership older than a compaction
            assert floors_behind(dict(enumerate(later.ledgers))) == []
        for ledger in later.ledgers:
            ledger.membership_from = groups
        return build_report(merge_ledgers(later.ledgers), merge_boards(later.boards))


def _exchanged(
    stream: tuple[Any, ...],
    seed: int,
    checks: int,
    quiet: tuple[int, int] | None = None,
    at_check: Callable[[_Partitions, _Partitions], None] | None = None,
    follow: bool = False,
    on_report: Callable[[dict[str, Any], int], None] | None = None,
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
    first, as the worker's reads ahead of its partitions. With `quiet` (partition, ts), that
    partition gets none of its contract events stamped from ts on (it goes idle) and announces
    idle floors once a chunk brought it nothing (`idle=True`, as the keeper after
    `group_floor_idle_s`), and with `follow` its horizons follow the others' first (then its
    folds run: `LiveState.follow_idle_horizons` and `fold_idle`, as the keeper after
    `horizon_idle_s`). `at_check` is called with both runs at each check, then `on_report`
    with the compacting run's merged report and the chunk's first index (each partition has
    been fed its part up to that + `CHUNK`)."""
    parts = split(stream, PARTITIONS)
    if quiet is not None:
        number, quiet_ts = quiet
        parts[number] = [
            (topic, key, event)
            for topic, key, event in parts[number]
            if isinstance(event, Rejection) or event.ts < quiet_ts
        ]
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
            # Idle: the quiet partition, once a chunk brought it nothing.
            idle = quiet is not None and source == quiet[0] and begin >= len(part)
            for run in (compacting, keeping):
                ledger, board = run.ledgers[source], run.boards[source]
                for _topic, _key, event in part[begin : begin + CHUNK]:
                    if isinstance(event, Rejection):
                        ledger.reject(event.reason)
                    elif ledger.apply(event):
                        board.observe(event)
                if idle and follow:
                    _groups_partition_idle(groups, source)
                    if ledger.follow_idle_horizons(source):
                        ledger.fold_due()
                taken.append(
                    [*ledger.take_closed_month_rows(source), *ledger.take_first_orders(source)]
                )
            floors = [
                run.ledgers[source].group_floor_announcement(source, idle=idle)
                for run in (compacting, keeping)
            ]
            # (An idle floor follows the floors read, which the keeping partitions ignore.)
            assert taken[0] == taken[1] and (idle or floors[0].own_ts == floors[1].own_ts)
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
            if at_check is not None:
                at_check(compacting, keeping)
            if on_report is not None:
                on_report(got, begin)
    for _round in range(3):  # then, as the keeper's ticks do: take, announce, read it all
        for source in range(len(parts)):
            idle = quiet is not None and source == quiet[0]
            if idle and follow:
                for run in (compacting, keeping):
                    if run.ledgers[source].follow_idle_horizons(source):
                        run.ledgers[source].fold_due()
            ledger = compacting.ledgers[source]
            messages = [*ledger.take_closed_month_rows(source), *ledger.take_first_orders(source)]
            assert messages == [
                *keeping.ledgers[source].take_closed_month_rows(source),
                *keeping.ledgers[source].take_first_orders(source),
            ]
            _route([*messages, ledger.group_floor_announcement(source, idle=idle)], queues)
            keeping.ledgers[source].group_floor_announcement(source, idle=idle)
        for partition, queue in enumerate(queues):
            for message in queue:
                compacting.deliver(partition, message)
                keeping.deliver(partition, message)
            queue.clear()
    return compacting, keeping, groups, compared


def _groups_partition_idle(groups: MembershipTable, partition: int) -> None:
    """The membership table leaves the groups topic's `partition` out of its horizon, as the
    worker's once the partition has been read to its end with no record for
    `groups_idle_s` (`ReadTable.idle`; here at once)."""
    if groups.idle_s is None:
        groups.idle_s = 0.0
        groups._resumed_at = 0.0  # the topic moved (the other partitions' records)
    groups.advance(partition, 0, 0)
    assert partition in groups.idle()


def _route(messages: list[Message], queues: list[list[Message]]) -> None:
    """Rows and first orders to their user's owner, announcements to every partition."""
    for message in messages:
        if isinstance(message, Row):
            queues[owner_of(message.user, PARTITIONS)].append(message)
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
    assert held < 0.85 * every, (held, every)  # measured 99 of 143 (111 with no bit recorded)
    # The owners record membership at their undecided pairs' first orders (the groups
    # horizon is past them), as the truth reference reads it of the stream, and so those
    # pairs hold no floor: the compaction has passed some of them.
    read = read_stream(lines)
    recorded = {
        pair: (first, member)
        for ledger in compacting.ledgers
        for pair, (first, _later, member) in ledger.first_orders_in.items()
    }
    assert recorded and all(member is not None for _first, member in recorded.values())
    for (merchant, user), (first, member) in recorded.items():
        assert member == is_member(read, merchant, user, first), (merchant, user)
    oldest = min(first for first, _member in recorded.values())
    assert any(ledger.groups_compacted_to > oldest for ledger in holding)  # type: ignore[operator]

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


@pytest.mark.slow
def test_the_compaction_passes_the_pairs_a_source_holds_with_membership_recorded() -> None:
    """150 simulated days over 3 partitions (another seed, whose months close early enough),
    the messages read with random lags: each source records membership at the first orders
    of the `group_repurchase_30d` pairs it holds once the groups horizon has passed them
    (`Ledger.first_members`), as the truth reference reads it of the stream, and those pairs
    hold no floor, so at a check every partition holding group events has compacted them
    past the first orders of pairs still held at their sources; the merged report there
    (messages in flight read) gives the truth reference's `group_repurchase_30d` of the
    records fed so far, and at the end every figure equals the keep-everything partitions'
    and the group claims the truth's. The report reads those bits: a wrong one (each
    recorded member turned into a non-member in the snapshots) takes exactly its pair out of
    the eligible ones."""
    stream, lines = _simulated(150, 0.3, 2)
    read = read_stream(lines)
    parts = split(stream, PARTITIONS)
    position = {id(item): number for number, item in enumerate(stream)}
    passed: list[int] = []
    claim = "group_repurchase_30d"

    def sources_passed(compacting: _Partitions, _keeping: _Partitions) -> None:
        """How many pairs held at a source, recorded there, every partition holding group
        events has compacted past (each bit the truth's)."""
        recorded = {
            pair: known
            for ledger in compacting.ledgers
            for pair, known in ledger.source_members().items()
        }
        for (merchant, user), (first, member) in recorded.items():
            assert member == is_member(read, merchant, user, first), (merchant, user)
        cuts = [
            ledger.groups_compacted_to
            for ledger in compacting.ledgers
            if ledger.horizon_ts(TOPIC_GROUPS) is not None
        ]
        cut = None if None in cuts or not cuts else min(c for c in cuts if c is not None)
        passed.append(0 if cut is None else sum(f < cut for f, _m in recorded.values()))

    def against_the_truth(report: dict[str, Any], begin: int) -> None:
        """Where the compaction has passed such pairs: the report's figure is the truth's of
        the records fed so far (each partition's part up to `begin` + `CHUNK`)."""
        if not passed[-1]:
            return
        fed = sorted(position[id(item)] for part in parts for item in part[: begin + CHUNK])
        want = compute_truth([lines[n] for n in fed], scenario="xhs", seed=2)["claims"][claim]
        got = report["claims"][claim]
        assert got["detail"] == {"eligible": want["eligible"], "repurchased": want["repurchased"]}
        assert got["observed"] == pytest.approx(want["observed"], rel=1e-9)

    compacting, keeping, groups, compared = _exchanged(
        stream, seed=11, checks=6, at_check=sources_passed, on_report=against_the_truth
    )
    assert compared == 6
    assert any(passed), passed  # measured [0, 0, 0, 0, 14, 0]: months hold it otherwise
    empty: list[list[Message]] = [[] for _ in range(PARTITIONS)]
    got, want = compacting.report(groups, empty), keeping.report(groups, empty)
    assert got["claims"] == want["claims"] and got["operator"] == want["operator"]
    truth = compute_truth(lines, scenario="xhs", seed=2)["claims"]
    for group_claim in GROUP_CLAIMS:
        assert got["claims"][group_claim]["observed"] == pytest.approx(
            truth[group_claim]["observed"], rel=1e-9
        ), group_claim
    eligible = got["claims"][claim]["detail"]["eligible"]
    assert eligible == truth[claim]["eligible"]

    pairs = zip(compacting.ledgers, compacting.boards, strict=True)
    restored = [load_state(dump_state(ledger, board)) for ledger, board in pairs]
    for ledger, _board in restored:
        ledger.membership_from = groups
    read_before = merge_ledgers([ledger for ledger, _ in restored]).first_order_members()
    for ledger, _board in restored:
        for pair, (first, member) in ledger.source_members().items():
            if member:
                ledger.first_members[pair] = (first, False)
    merged = merge_ledgers([ledger for ledger, _ in restored])
    end_ts = merged.max_ts
    assert end_ts is not None
    firsts = merged.first_order_pairs()
    read_after = merged.first_order_members()
    turned = [
        pair
        for pair, member in read_before.items()
        if member and not read_after[pair] and firsts[pair][0] + 30 * DAY_MS <= end_ts
    ]
    wrong = build_report(merged, merge_boards([board for _, board in restored]))
    assert turned, read_before
    assert wrong["claims"][claim]["detail"]["eligible"] == eligible - len(turned)


@pytest.mark.slow
def test_an_empty_partition_announcing_idle_floors_no_longer_stops_every_compaction() -> None:
    """The 150 days over 3 partitions, partition 2 getting no event at all (an empty
    partition: no horizon, so no floor of its own). Without the idle rule no partition ever
    compacts; announcing idle floors it follows the others', and they compact, though only
    up to the first month it never announced closed (their months' rows held at their owners:
    docs/design.md, "Group events compacted", Limits); the merged reports equal the
    keep-everything partitions' and no event is counted behind a floor."""
    stream, _lines = _simulated(150, 0.3, 5)
    stuck, _keeping, _groups, _compared = _exchanged_without_idle(stream)
    assert all(ledger.groups_compacted_to is None for ledger in stuck.ledgers)

    compacting, keeping, groups, compared = _exchanged(stream, 3, 2, quiet=(2, 0))
    assert compared == 2
    idle = compacting.ledgers[2]
    given = idle.group_floor_given
    holding = [ledger for ledger in compacting.ledgers[:2] if ledger.horizon_ts(TOPIC_GROUPS)]
    assert holding
    # The others compact now, but only up to their own floors, which the months the empty
    # partition never announces closed hold at the stream's first month (their rows stay at
    # their owners, `month_rows_in`, until every source has closed it): the remaining gap.
    first_month = min(month for ledger in compacting.ledgers for _m, month in ledger.month_rows_in)
    for ledger in holding:
        cutoff = ledger.groups_compacted_to
        assert cutoff is not None and cutoff <= given, cutoff
        floors = [ts for pair in ledger.group_floors_by.values() for ts in pair if ts]
        assert cutoff == min(floors)
        assert cst_month(cutoff + DAY_MS) == first_month
    assert all(ledger.after_group_floor == 0 for ledger in compacting.ledgers)
    got = compacting.report(groups, [[] for _ in range(PARTITIONS)])
    want = keeping.report(groups, [[] for _ in range(PARTITIONS)])
    assert got["claims"] == want["claims"] and got["operator"] == want["operator"]


@pytest.mark.slow
@pytest.mark.parametrize("quiet_day", [0, 60])
def test_an_idle_partition_whose_horizons_follow_the_others_closes_its_months_and_pairs(
    quiet_day: int,
) -> None:
    """The 150 days over 3 partitions, partition 2 getting no event at all (`quiet_day` 0) or
    none after day 60, and once idle its horizons following the others'
    (`Ledger.follow_idle_horizons`, the worker's `LIVEPULSE_HORIZON_IDLE_S`): it announces its
    months closed and its first orders' cutoff as the others do, so the owners combine every
    month but the last ones and decide the pairs as for active partitions, and the group
    events compact past day 60 (without it they stop at the first month: the test above). The
    merged reports equal the keep-everything partitions', and the claims and the group
    joins equal the truth reference's of the records fed."""
    stream, lines = _simulated(150, 0.3, 5)
    start = min(event.ts for *_, event in stream if not isinstance(event, Rejection))
    quiet_ts = start + quiet_day * DAY_MS
    compacting, keeping, groups, compared = _exchanged(
        stream, 3, 2, quiet=(2, quiet_ts), follow=True
    )
    assert compared == 2
    last_month = cst_month(max(e.ts for *_, e in stream if not isinstance(e, Rejection)))
    held = {month for ledger in compacting.ledgers for _m, month in ledger.month_rows_in}
    assert len(held) <= 1 and max(held, default=last_month) == last_month, held  # the last
    follower = compacting.ledgers[2]
    others = max(follower._firsts_closed_by[s] for s in (0, 1))
    assert follower._firsts_closed_by[2] == others  # its cutoff is the newest of the others'
    holding = [ledger for ledger in compacting.ledgers if ledger.horizon_ts(TOPIC_GROUPS)]
    assert holding
    for ledger in holding:
        cutoff = ledger.groups_compacted_to
        assert cutoff is not None, ledger
        # The quiet one's own groups horizon stays (the membership table reads its groups
        # partition: a late group event is applied there and here alike); it gets none more.
        own = ledger.horizon_ts(TOPIC_GROUPS)
        assert cutoff > start + 60 * DAY_MS or cutoff == own, (cutoff - start) / DAY_MS
    assert all(ledger.after_group_floor == 0 for ledger in compacting.ledgers)
    got = compacting.report(groups, [[] for _ in range(PARTITIONS)])
    want = keeping.report(groups, [[] for _ in range(PARTITIONS)])
    assert got["claims"] == want["claims"] and got["operator"] == want["operator"]
    kept = [
        line
        for line, (_topic, key, event) in zip(lines, stream, strict=True)
        if isinstance(event, Rejection) or partition_of(key, PARTITIONS) != 2 or event.ts < quiet_ts
    ]
    assert len(kept) < len(lines)
    truth = compute_truth(kept, scenario="xhs", seed=5)["claims"]
    for claim, figure in truth.items():
        observed = got["claims"][claim]["observed"]
        if figure["observed"] is None or observed is None:
            assert observed == figure["observed"], claim
        elif claim == SKETCHED:  # from its summarized sessions' sketches (docs/design.md)
            assert abs(observed - figure["observed"]) < 0.005, (observed, figure)
        else:
            assert observed == pytest.approx(figure["observed"], rel=1e-9, abs=1e-12), claim
    raw = [line.encode() for line in kept]
    reference = operator_truth_for(
        got, raw, operator_truth(kept), partitions=PARTITIONS, followers=(2,)
    )
    assert got["operator"]["overall"]["group_joins"] == reference["overall"]["group_joins"]


def test_a_partition_that_followed_expires_events_behind_its_new_horizons() -> None:
    """Following moves each topic's horizon (the groups topic's too when the ledger reads no
    membership table) up to the newest others' cutoff + the session horizon; never down, and
    not at all before another partition announced one (its own announcement does not
    count). An event applied later stamped before its topic's new horizon is expired and
    counted (`counts.expired`), as any late event."""
    ledger = _fed_30_days()
    horizon = ledger._summary_horizon()
    assert horizon is not None
    assert not ledger.follow_idle_horizons(1)  # nothing read
    ledger.receive_firsts_closed(FirstsClosed(1, horizon + 50 * DAY_MS), 3)  # itself
    assert not ledger.follow_idle_horizons(1)
    ledger.receive_firsts_closed(FirstsClosed(0, horizon - DAY_MS), 3)
    assert not ledger.follow_idle_horizons(1)  # behind it: nothing moves
    ledger.receive_firsts_closed(FirstsClosed(2, horizon + 10 * DAY_MS), 3)
    assert ledger.follow_idle_horizons(1)
    assert ledger._summary_horizon() == horizon + 10 * DAY_MS
    assert all(ledger.horizon_ts(t) == horizon + 10 * DAY_MS + SESSION_HORIZON_MS for t in (0, 1))
    assert not ledger.follow_idle_horizons(1)  # there already
    stream, _lines = _simulated(30, 0.3, 5)
    late = next(e for *_, e in reversed(stream) if not isinstance(e, Rejection))
    expired = ledger.counts.expired
    assert late.ts < horizon + 10 * DAY_MS and not ledger.apply(
        late.model_copy(update={"event_id": "late-1"})
    )
    assert ledger.counts.expired == expired + 1


def _exchanged_without_idle(
    stream: tuple[Any, ...],
) -> tuple[_Partitions, _Partitions, MembershipTable, int]:
    """`_exchanged` with partition 2 getting no event but never announcing idle (as with
    `group_floor_idle_s` 0)."""
    original = Ledger.group_floor_announcement

    def never_idle(self: Ledger, source: int, *, idle: bool = False) -> GroupFloor:
        return original(self, source)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Ledger, "group_floor_announcement", never_idle)
        return _exchanged(stream, 3, 0, quiet=(2, 0))


def test_an_idle_floor_follows_the_newest_floor_read_never_past_the_held_lookups() -> None:
    """An idle partition's own floor: the newest own floor it has read of the others (its own
    horizons left out, its own announcement read back not among them), but never past the
    oldest lookup of the state it holds (here its first month's first joins, its floor when
    active too) nor below that floor; a partition holding nothing follows the others'. The
    newest floor announced is kept (`group_floor_given`), in its snapshot too."""
    ledger = _fed_30_days()
    own = ledger.worker_group_floor()
    assert own is not None
    first_join = min(min(joins.values()) for joins in ledger.month_first_joins.values() if joins)
    assert own == first_join // DAY_MS * DAY_MS  # what it holds bounds it, not its horizons
    assert ledger.idle_group_floor(1) == own  # nothing read: its own
    ledger.receive_group_floor(GroupFloor(1, own + 400 * DAY_MS, None), 3)  # itself
    ledger.receive_group_floor(GroupFloor(0, own - 5 * DAY_MS, None), 3)
    assert ledger.idle_group_floor(1) == own  # never below its own
    ledger.receive_group_floor(GroupFloor(2, own + 300 * DAY_MS, None), 3)
    assert ledger.idle_group_floor(1) == own  # never past what it holds

    empty = Ledger(WINDOW_MS, fold_sessions=True)
    assert empty.idle_group_floor(1) is None  # nothing known
    empty.receive_group_floor(GroupFloor(1, own + 400 * DAY_MS, None), 3)  # itself
    assert empty.idle_group_floor(1) is None
    empty.receive_group_floor(GroupFloor(0, own - 5 * DAY_MS, None), 3)
    empty.receive_group_floor(GroupFloor(2, own + 3 * DAY_MS + 7, None), 3)
    assert empty.idle_group_floor(1) == own + 3 * DAY_MS  # the newest others', to a day
    assert empty.group_floor_announcement(1).own_ts is None
    assert empty.group_floor_given == -1
    assert empty.group_floor_announcement(1, idle=True).own_ts == own + 3 * DAY_MS
    assert empty.group_floor_given == own + 3 * DAY_MS
    empty.receive_group_floor(GroupFloor(2, own, None), 3)  # an older one now: not given
    assert empty.group_floor_announcement(1, idle=True).own_ts == own
    assert empty.group_floor_given == own + 3 * DAY_MS
    restored, _board = load_state(dump_state(empty, OperatorBoard()))
    assert restored.group_floor_given == own + 3 * DAY_MS and restored.after_group_floor == 0
    del empty.__dict__["group_floor_given"], empty.__dict__["after_group_floor"]
    older, _board = load_state(dump_state(empty, OperatorBoard()))  # a session 13 state
    assert older.group_floor_given == -1 and older.after_group_floor == 0


def test_an_event_applied_behind_an_idle_floor_is_counted() -> None:
    """A partition that announced an idle floor (holding nothing: its floor is the others'
    newest) then gets its events late: each is applied as before (no figure of its own
    changes), and those of the presence topics (sessions, views, orders: they add a "member at
    ts" lookup) stamped before the newest floor it announced are counted in
    `after_group_floor`, since a partition may have compacted the group events they look up;
    the rest, and every event of a partition that never announced idle, are not."""
    stream, _lines = _simulated(30, 0.3, 5)
    events = [event for *_, event in stream if not isinstance(event, Rejection)]
    floor = min(event.ts for event in events) + 12 * DAY_MS
    floor -= floor % DAY_MS
    idle, active = Ledger(WINDOW_MS, fold_sessions=True), Ledger(WINDOW_MS, fold_sessions=True)
    for ledger in (idle, active):
        ledger.receive_group_floor(GroupFloor(0, floor, None), 2)
    assert idle.group_floor_announcement(1, idle=True).own_ts == floor
    assert active.group_floor_announcement(1).own_ts is None  # no horizon yet
    counted = 0
    for event in events:
        applied = idle.apply(event)
        assert active.apply(event) == applied
        if applied and event.ts < floor and TOPICS.index(TOPIC_BY_TYPE[event.type]) in PRESENCE:
            counted += 1
    assert 0 < counted < len(events)
    assert idle.after_group_floor == counted and active.after_group_floor == 0
    assert build_report(idle, OperatorBoard()) == build_report(active, OperatorBoard())


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
    ledger = _fed_30_days()
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
    ledger = _fed_30_days()
    del ledger.__dict__["group_floors_by"], ledger.__dict__["_group_floor_sources"]
    restored, _board = load_state(dump_state(ledger, OperatorBoard()))
    assert restored.group_floors_by == {}
    own = restored.worker_group_floor()
    assert restored.group_floor_announcement(0) == GroupFloor(0, own, None)
    restored.receive_group_floor(GroupFloor(0, own, own), 1)
    assert restored.groups_compacted_to == own
