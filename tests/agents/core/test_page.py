"""The live screen's incremental build (agents/core/page.py) against the merged build and the
independent references, while a fixture is fed to partitions as the worker holds them."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core import Ledger, OperatorBoard, page
from agents.core.ingest import ingest
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.page import PageBuilder
from agents.core.sketch import RELATIVE_ACCURACY
from schemas.events import record_key
from streams.tools.simulator.operator_truth import operator_truth, screen_truth
from tests.support.events import EventList
from tests.support.live import fixture_operator_truth_folding
from tests.support.truth import _same

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
PARTITIONS = 4


def partition_of(line: bytes) -> int:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return 0
    key = record_key(obj) if isinstance(obj, dict) else ""
    return zlib.crc32(key.encode()) % PARTITIONS


def merged_page(states: list[tuple[Ledger, OperatorBoard]]) -> dict[str, Any]:
    ledger = merge_ledgers([s[0] for s in states])
    board = merge_boards([s[1] for s in states])
    return {
        "events": ledger.counts.as_dict(),
        "operator": board.snapshot(ledger, detail=False),
        "screen": board.screen.snapshot(ledger),
    }


WEEK_MS = 7 * 86_400_000  # the default dedupe window (Settings.dedupe_window_s)


@pytest.mark.parametrize(
    ("name", "window_ms"), [("xhs", None), ("impulse", WEEK_MS), ("xhs", 3_600_000)]
)
def test_incremental_builds_equal_the_merged_build_while_fed(
    name: str, window_ms: int | None
) -> None:
    """Built after every chunk of the stream (most sessions unchanged between builds): each
    build equals the merged partitions' sections; at the end also the references'."""
    lines = (FIXTURES / f"{name}.jsonl").read_bytes().splitlines()
    states = [(Ledger(window_ms), OperatorBoard()) for _ in range(PARTITIONS)]
    builder = PageBuilder()
    chunk = len(lines) // 6
    kept_some = False
    for start in range(0, len(lines), chunk):
        for line in lines[start : start + chunk]:
            ledger, board = states[partition_of(line)]
            ingest(line, ledger, board)
        got = builder.build(states)
        assert got == merged_page(states)
        sessions = sum(len(s[0].sessions) for s in states)
        kept_some |= 0 < builder.recomputed < sessions
    assert kept_some, "every build recomputed every session"
    # A build with nothing new recomputes nothing and gives the same.
    again = builder.build(states)
    assert builder.recomputed == 0 and again == got
    # The references know no dedupe window: with one, nothing of these fixtures expires.
    assert sum(s[0].counts.expired for s in states) == 0
    if window_ms is not None:  # sessions were folded (ledger and screen) while fed
        assert sum(len(s[1].screen.folded) for s in states) > 50
    if any(s[1].screen.after_fold_events for s in states):
        # Events of sessions folded an hour after their end (late orders): in the distinct
        # counts the screen's tables leave them out (agents/core/screen.py), so no reference.
        assert window_ms == 3_600_000
        return
    text = [line.decode() for line in lines]
    problems: list[str] = []
    truth = operator_truth(text)
    for level in ("overall", "rooms", "merchants"):
        _same(level, got["operator"][level], truth[level], problems)
    _same("screen", got["screen"], screen_truth(text), problems)
    assert problems == []


def test_builds_without_the_tables_keep_them_as_of_the_last_build_with() -> None:
    """`build(tables=False)` (the feed refreshes the sources and products tables every few
    builds): everything else equals the merged build now, the tables equal the merged build
    at the last build that computed them (`tables_fresh` says which); the next build with
    them equals the merged build whole, however many builds skipped them."""
    lines = (FIXTURES / "xhs.jsonl").read_bytes().splitlines()
    states = [(Ledger(), OperatorBoard()) for _ in range(PARTITIONS)]
    builder = PageBuilder()
    chunk = len(lines) // 12
    tables_then: dict[str, Any] = {}
    skipped_stale = 0
    for n, start in enumerate(range(0, len(lines), chunk)):
        for line in lines[start : start + chunk]:
            ledger, board = states[partition_of(line)]
            ingest(line, ledger, board)
        with_tables = n % 3 == 0
        got = builder.build(states, tables=with_tables)
        want = merged_page(states)
        assert builder.tables_fresh is with_tables
        tables = ("sources", "products")
        if with_tables:
            assert got == want
            tables_then = {key: want["screen"][key] for key in tables}
        else:
            assert {k: v for k, v in got.items() if k != "screen"} == {
                k: v for k, v in want.items() if k != "screen"
            }
            for key, value in want["screen"].items():
                assert got["screen"][key] == (tables_then[key] if key in tables else value)
            skipped_stale += any(tables_then[key] != want["screen"][key] for key in tables)
    assert skipped_stale >= 3  # the skipped builds' tables were behind
    assert builder.build(states, tables=True) == merged_page(states)


def test_a_session_in_two_partitions_is_built_from_the_merge() -> None:
    """A producer that broke the record keys: the build falls back to the merge, equal."""
    lines = (FIXTURES / "xhs.jsonl").read_bytes().splitlines()[:3000]
    states = [(Ledger(), OperatorBoard()) for _ in range(2)]
    for i, line in enumerate(lines):
        ledger, board = states[i % 2]
        ingest(line, ledger, board)
    assert set(states[0][0].sessions) & set(states[1][0].sessions)
    assert PageBuilder().build(states) == merged_page(states)


def test_a_late_group_join_changes_an_ended_sessions_room() -> None:
    """A group join inside an ended session's broadcast, arriving (on the merchant's
    partition) after the session was built: the session and its level sums are rebuilt."""

    def line(**fields: Any) -> bytes:
        return orjson.dumps(fields)

    start, end = 1_719_837_940_000, 1_719_844_900_000
    session = [
        line(
            event_id="e1",
            type="session_started",
            ts=start,
            session_id="s-1",
            room_id="r-1",
            merchant_id="m-1",
            host_kind="merchant",
        ),
        line(
            event_id="e2",
            type="viewer_joined",
            ts=start + 1000,
            session_id="s-1",
            user_id="u-1",
            source="feed",
        ),
        line(event_id="e3", type="session_ended", ts=end, session_id="s-1"),
    ]
    states = [(Ledger(), OperatorBoard()) for _ in range(2)]
    for record in session:
        ingest(record, *states[0])
    builder = PageBuilder()
    assert builder.build(states)["operator"]["rooms"]["r-1"]["group_joins"] == 0
    joined = line(
        event_id="e4",
        type="group_joined",
        ts=start + 5000,
        merchant_id="m-1",
        group_id="g-1",
        user_id="u-1",
    )
    ingest(joined, *states[1])
    got = builder.build(states)
    assert got["operator"]["rooms"]["r-1"]["group_joins"] == 1
    assert got == merged_page(states)
    # A group join after the session's end changes nothing of it, and is not rebuilt for.
    later = line(
        event_id="e5",
        type="group_joined",
        ts=end + 5000,
        merchant_id="m-1",
        group_id="g-1",
        user_id="u-1",
    )
    ingest(later, *states[1])
    assert builder.build(states) == merged_page(states)
    assert builder.recomputed == 0


def _random_stream(seed: int) -> list[bytes]:
    """Two sessions of one merchant, a few users, every kind of event that changes a viewer's
    part, at times that cross minute boundaries and hit them exactly, arriving in any order."""
    import random

    rng = random.Random(seed)
    base = 1_719_840_000_000  # a whole minute
    events = EventList()
    add = events.add

    for sid, room in (("s-1", "r-1"), ("s-2", "r-2")):
        add("session_started", base, session_id=sid, room_id=room, merchant_id="m-1")
    for sid in ("s-1", "s-2"):
        if rng.random() < 0.5:
            add("session_ended", base + rng.randrange(60_000, 300_000), session_id=sid)
    for _ in range(60):
        sid, user = rng.choice(("s-1", "s-2")), rng.choice(("u-1", "u-2", "u-3", "u-4"))
        ts = base + rng.choice((0, 60_000, 120_000, 180_000)) + rng.choice((0, 1, 30_000, 59_999))
        what = rng.choice(("join", "join", "leave", "leave", "talk", "order", "click", "group"))
        if what == "join":
            add("viewer_joined", ts, session_id=sid, user_id=user, source="feed")
        elif what == "leave":
            add("viewer_left", ts, session_id=sid, user_id=user)
        elif what == "talk":
            add("interaction", ts, session_id=sid, user_id=user, kind="comment")
        elif what == "order":
            events.order(ts, sid, user, 500)
        elif what == "click":
            add("product_clicked", ts, session_id=sid, user_id=user, sku_id="k-1")
        else:
            add("group_joined", ts, merchant_id="m-1", group_id="g-1", user_id=user)
    starts, rest = events[:2], events[2:]
    rng.shuffle(rest)  # the starts first: the sessions are built from then on
    return [orjson.dumps(event) for event in (*starts, *rest)]


@pytest.mark.parametrize("seed", range(6))
def test_built_after_every_event_in_any_order(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each viewer's part kept between builds (agents/core/page.py, `_Viewers`): built after
    every event of a shuffled stream, where joins, leaves, orders and group joins arrive
    late and the open intervals' end (the session's last event) moves, each build equals the
    merged build; with odd seeds an ended session's viewers are forgotten after one build
    without change (`SETTLED_BUILDS`), so that late events read them all again."""
    if seed % 2:
        monkeypatch.setattr(page, "SETTLED_BUILDS", 1)
    states = [(Ledger(), OperatorBoard()) for _ in range(2)]
    builder = PageBuilder()
    read_in_part = 0
    for line in _random_stream(seed):
        obj = orjson.loads(line)
        ingest(line, *states[0 if obj["type"].startswith("group") else 1])
        assert builder.build(states) == merged_page(states)
        read_in_part += builder.recomputed - builder.recomputed_whole
    assert read_in_part > 30  # most builds read only the users an event touched


@pytest.mark.parametrize("seed", range(4))
def test_refunds_matched_between_builds_equal_the_merged_build(seed: int) -> None:
    """The refunds per session are matched with each partition's orders read once
    (`page._RefundMatch`): built after every event of a shuffled stream where refunds come
    before or after their orders (on the refunds' partition), within and past the refund
    horizon, an order id is paid in two sessions at one time, a session starts after its
    orders and refunds, and a partition's orders are replaced between builds (the order fold,
    a restore), each build equals the merged build."""
    import random

    rng = random.Random(seed)
    base, day = 1_719_840_000_000, 86_400_000
    events = EventList()  # one list: its event ids are unique
    events.add("session_started", base + 5_000, session_id="s-2", room_id="r-2", merchant_id="m-1")
    # s-1, the first by id of a twin pair, starts in the second half, after refunds of it.
    events.add("session_started", base, session_id="s-1", room_id="r-1", merchant_id="m-1")
    paid: list[str] = []
    for n in range(14):
        sid, user = rng.choice(("s-1", "s-2")), rng.choice(("u-1", "u-2", "u-3"))
        events.order(base + rng.randrange(0, 600_000), sid, user, 100 * (n + 1))
        paid.append(events[-1]["order_id"])
        if n % 5 == 0:  # the same id paid in the other session at the same time
            other = {"s-1": "s-2"}.get(sid, "s-1")
            events.append({**events[-1], "event_id": f"t{n}", "session_id": other})
    for n, order_id in enumerate([*paid, "o-never"]):
        late = rng.choice((0, 0, 2 * day))  # past a 1-day horizon
        ts = base + 600_000 + late + rng.randrange(0, 60_000)
        events.add("order_refunded", ts, order_id=order_id, amount_cents=50 + n, reason="size")
    rest = events[2:]
    rng.shuffle(rest)
    rest.insert(rng.randrange(len(rest) // 2, len(rest)), events[1])
    events = EventList([events[0], *rest])
    states = [(Ledger(refund_horizon_ms=day), OperatorBoard()) for _ in range(2)]
    builder = PageBuilder()
    refunded = 0
    for i, event in enumerate(events):
        ingest(orjson.dumps(event), *states[0 if event["type"] == "order_refunded" else 1])
        if i == len(events) // 3:  # as the order fold does: a new list, one order less
            held = states[1][0].orders
            ids = [order.order_id for order in held]
            once = next(n for n, order_id in enumerate(ids) if ids.count(order_id) == 1)
            states[1][0].orders = held[:once] + held[once + 1 :]
        got = builder.build(states)
        assert got == merged_page(states)
        refunded = max(refunded, got["operator"]["overall"]["refunds"])
    assert refunded > 0


def test_an_interaction_or_order_reads_a_viewer_only_when_not_yet_counted() -> None:
    """The viewer log says which kind of event touched a (session, user): an interaction or
    an order by a viewer already counted cannot change their part (their presence records
    and group joins), so the build reads no viewer for it; the same by a user not yet
    counted (no join: counted by the interaction or order alone), or a join or leave, reads
    that one. Each build equals the merged build."""
    base = 1_719_840_000_000
    events = EventList()
    events.add("session_started", base, session_id="s-1", room_id="r-1", merchant_id="m-1")
    events.add("viewer_joined", base + 1_000, session_id="s-1", user_id="u-1", source="feed")
    states = [(Ledger(), OperatorBoard())]
    builder = PageBuilder()

    def feed_and_build(*new: dict[str, Any]) -> int:
        for event in new:
            ingest(orjson.dumps(event), *states[0])
        assert builder.build(states) == merged_page(states)
        return builder.viewers_read

    feed_and_build(*events)
    steps = [
        # (what is added, viewers the build reads)
        (("interaction", {"user_id": "u-1", "kind": "comment"}), 0),  # counted: skipped
        (("order", "u-1"), 0),
        (("interaction", {"user_id": "u-2", "kind": "like"}), 1),  # not yet counted
        (("interaction", {"user_id": "u-2", "kind": "comment"}), 0),  # counted since
        (("order", "u-3"), 1),  # a buyer who never joined
        (("viewer_left", {"user_id": "u-1"}), 1),  # a leave changes the watch time
        (("viewer_joined", {"user_id": "u-2", "source": "search"}), 1),
    ]
    for n, (step, reads) in enumerate(steps):
        ts = base + 10_000 * (n + 1)
        if step[0] == "order":
            events.order(ts, "s-1", str(step[1]), 500)
        else:
            fields = dict(step[1])  # type: ignore[arg-type]
            events.add(step[0], ts, session_id="s-1", **fields)
        assert feed_and_build(events[-1]) == reads, step
    got = builder.build(states)
    assert got["operator"]["overall"]["unique_viewers"] == 3
    assert got["operator"]["overall"]["viewers_current"] == 1  # u-2 (u-1 left, u-3 bought)


def test_a_viewer_back_within_a_minute_is_present_in_it_once() -> None:
    """A viewer who left and came back in the same minute, their interval still open: that
    minute counts them once (claims.md's presence), however far the session's last event
    moves the open interval; a join at the session's last event adds no presence yet."""
    start = 1_719_840_000_000  # a whole minute
    stream = [
        ("session_started", 0, {"room_id": "r-1", "merchant_id": "m-1"}),
        ("viewer_joined", 10, {"user_id": "u-1"}),
        ("viewer_left", 30_000, {"user_id": "u-1"}),
        ("viewer_joined", 40_000, {"user_id": "u-1"}),
        ("viewer_joined", 200_000, {"user_id": "u-2"}),
    ]
    states = [(Ledger(), OperatorBoard())]
    builder = PageBuilder()
    got: dict[str, Any] = {}
    for i, (event_type, offset_ms, fields) in enumerate(stream):
        event = {"event_id": f"e{i}", "type": event_type, "ts": start + offset_ms}
        ingest(orjson.dumps({**event, "session_id": "s-1", **fields}), *states[0])
        got = builder.build(states)
        assert got == merged_page(states)
    # u-1 in minutes 0-3 (open to the last event, 200 s in), u-2 joined at that event.
    assert got["operator"]["overall"]["viewers_peak"] == 1
    assert got["operator"]["overall"]["viewers_current"] == 2
    assert got["screen"]["minutes"]["overall"]["viewers"][-4:] == [1, 1, 1, 1]


def test_the_median_selected_from_sorted_lists_is_the_sorted_one() -> None:
    """`_median_of` (sorted lists with offsets, less a removed sub-multiset) against
    `operator._median` of the values themselves, at every size from one value up."""
    import random

    from agents.core.operator import _median
    from agents.core.page import _median_of

    rng = random.Random(7)
    for size in range(1, 120):
        lists: list[tuple[list[int], int]] = []
        for _ in range(rng.randint(1, 4)):
            offset = rng.choice((0, 0, 1_719_840_000_000))
            values = sorted(rng.randint(-5, 3_000) for _ in range(rng.randint(0, size)))
            lists.append(([v - offset for v in values], offset))
        every = sorted(v + offset for values, offset in lists for v in values)
        removed = sorted(rng.sample(every, rng.randint(0, len(every) // 2)))
        left = list(every)
        for value in removed:
            left.remove(value)
        assert _median_of(lists, removed) == _median(left)


def test_a_board_nobody_watches_keeps_no_viewer_log() -> None:
    """The viewer log is the live screen's: a worker whose screen is never opened keeps none
    (in the 150-day worker soak it held ~9 MB per partition); the first build turns it on, and
    the builds after it read only what it names, with the same figures as the merged build."""
    from agents.core.operator import VIEWER_LOG_SIZE

    lines = (FIXTURES / "xhs.jsonl").read_bytes().splitlines()
    half = len(lines) // 2
    ledger, board = Ledger(), OperatorBoard()
    for line in lines[:half]:
        ingest(line, ledger, board)
    assert len(board.viewer_log) == 0
    builder = PageBuilder()
    builder.build([(ledger, board)])
    for line in lines[half:]:
        ingest(line, ledger, board)
    assert 0 < len(board.viewer_log) <= VIEWER_LOG_SIZE
    got = builder.build([(ledger, board)])
    assert 0 < builder.recomputed < len(ledger.sessions)  # the log named what changed
    assert got == merged_page([(ledger, board)])


DAY_MS = 86_400_000


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_builds_equal_the_merged_build_while_sessions_are_summarized(name: str) -> None:
    """With the session fold (`fold_sessions`, a 2-day window, membership from every group
    event as the worker's table gives it): after every chunk the page equals the merged
    partitions' sections, a session's cached parts replaced at its summary and each level
    given its summarized sessions' sketch and buyers; at the end it equals the references
    (the levels' median watch times within the sketch's 1%)."""
    lines = (FIXTURES / f"{name}.jsonl").read_bytes().splitlines()
    groups = Ledger(2 * DAY_MS)  # the membership table: every group event
    states = [(Ledger(2 * DAY_MS, fold_sessions=True), OperatorBoard()) for _ in range(4)]
    for ledger, _board in states:
        ledger.membership_from = groups
    builder = PageBuilder()
    chunk = len(lines) // 8
    summarized_while_built = 0
    for start in range(0, len(lines), chunk):
        for line in lines[start : start + chunk]:
            if b'"group_' in line:
                ingest(line, groups, None)
            ledger, board = states[partition_of(line)]
            ingest(line, ledger, board)
        before = sum(s[0].summarized_sessions for s in states)
        got = builder.build(states)
        assert got == merged_page(states)
        summarized_while_built = max(summarized_while_built, before)
    assert summarized_while_built > 20, "too few sessions summarized to test anything"
    assert builder.build(states) == got and builder.recomputed == 0
    # A rebalance: half the partitions, then all again; each level's paying users count the
    # summarized buyers of the partitions held, and a session's group joins the group events
    # of the partitions held (before, those kept from the build over every partition stayed
    # until the session changed).
    half, whole = builder.build(states[:2]), merged_page(states[:2])
    for kind in ("rooms", "merchants"):
        assert half["operator"][kind].keys() == whole["operator"][kind].keys()
    assert half == whole
    assert half["operator"]["overall"]["group_joins"] < got["operator"]["overall"]["group_joins"]
    assert builder.build(states) == got
    text = [line.decode() for line in lines]
    # The truth under the fold's rule: the sessions that never end are abandoned (issue 17).
    truth = fixture_operator_truth_folding(name, 2 * DAY_MS)
    problems: list[str] = []
    for level in ("overall", "rooms", "merchants"):
        _same(level, got["operator"][level], truth[level], problems)
    sketched = [p for p in problems if ".median_watch_minutes:" in p]
    assert [p for p in problems if p not in sketched] == []
    assert sketched, "no level's median read a sketch"
    for problem in sketched:  # a level with summarized sessions: within the sketch's 1%
        path = problem.split(":")[0].split(".")
        mine = got["operator"][path[0]]
        want = truth[path[0]]
        if path[0] != "overall":
            mine, want = mine[path[1]], want[path[1]]
        assert math.isclose(
            mine["median_watch_minutes"], want["median_watch_minutes"], rel_tol=RELATIVE_ACCURACY
        ), problem
    _same("screen", got["screen"], screen_truth(text), problems := [])
    assert problems == []


def test_a_sketched_median_is_the_boards_reading() -> None:
    """A level with summarized sessions (`page._sketched_median`): the median of their sketch
    with the level's other watch times added, as `OperatorBoard._figures` reads it
    (`sketch.quantile`), whether they are counted (values taken away included) or, beyond
    the bins' span, added."""
    import random

    from agents.core.sketch import QuantileSketch, quantile

    rng = random.Random(5)
    for far in (False, True):
        for _ in range(100):
            folded = QuantileSketch([rng.randrange(1, 10**6) for _ in range(20)])
            lists: list[tuple[list[int], int]] = [
                (
                    sorted(
                        10**20 if far and rng.random() < 0.2 else rng.randrange(0, 10**6)
                        for _ in range(10)
                    ),
                    rng.randrange(0, 1000),
                )
                for _ in range(3)
            ]
            values = sorted(v + offset for held, offset in lists for v in held)
            minus = sorted(rng.sample(values, 4))
            for taken in minus:
                values.remove(taken)
            assert page._sketched_median([folded], lists, minus) == quantile(0.5, folded, values)


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_builds_equal_the_report_while_summaries_are_retired(name: str) -> None:
    """With summaries retired past a 3-day board horizon (`Ledger.retire_summaries`, as the
    worker runs it: membership from every group event, a 13-day refund horizon with the
    refund table over every partition): after every chunk the page equals the merged
    partitions' sections (`/report`'s), the levels given their retired sessions' totals and
    the rooms and merchants whose sessions are all retired still listed; at the end every
    level equals the operator truth (the levels' median watch times within the sketch's 1%)."""
    from agents.core.ingest import ingest_decoded
    from agents.core.refunds import RefundTable
    from schemas import Rejection
    from tests.agents.core.test_merge import partition_of as key_partition
    from tests.agents.core.test_merge import records

    refund_horizon_ms = 13 * DAY_MS
    stream = records(name)
    groups = Ledger(2 * DAY_MS)  # the membership table: every group event
    refunds = RefundTable(2 * DAY_MS, refund_horizon_ms=refund_horizon_ms)
    states = [
        (
            Ledger(
                2 * DAY_MS,
                refund_horizon_ms=refund_horizon_ms,
                fold_sessions=True,
                board_horizon_ms=3 * DAY_MS,
            ),
            OperatorBoard(),
        )
        for _ in range(PARTITIONS)
    ]
    for ledger, _board in states:
        ledger.membership_from = groups
        ledger.refunds_from = refunds
        ledger.retire_summaries = True
    builder = PageBuilder()
    chunk = len(stream) // 8
    for start in range(0, len(stream), chunk):
        for topic, key, decoded in stream[start : start + chunk]:
            number = key_partition(key, PARTITIONS)
            if getattr(decoded, "type", "").startswith("group_"):
                ingest_decoded(decoded, groups, None)
            if topic == "live.orders":
                if isinstance(decoded, Rejection):
                    refunds.reject(number, decoded.reason)
                else:
                    refunds.apply(number, decoded)
            ledger, board = states[number]
            ingest_decoded(decoded, ledger, board)
        got = builder.build(states)
        assert got == merged_page(states)
    assert sum(ledger.retired_sessions for ledger, _board in states) > 20, "too few retired"
    assert builder.build(states) == got and builder.recomputed == 0
    # A worker holding one partition (a rebalance): some room or merchant has only retired
    # sessions there, and is listed with them, as in the merged build.
    retired_only_levels = 0
    for state in states:
        alone = builder.build([state])
        assert alone == merged_page([state])
        held = {
            (kind, level_id)
            for session in state[0].sessions.values()
            if session.started_ts is not None
            for kind, level_id in (
                ("rooms", session.room_id or ""),
                ("merchants", session.merchant_id or ""),
            )
        }
        listed = {(kind, i) for kind in ("rooms", "merchants") for i in alone["operator"][kind]}
        retired_only_levels += len(listed - held)
    assert retired_only_levels > 0, "no room or merchant had only retired sessions"
    assert builder.build(states) == got
    truth = fixture_operator_truth_folding(name, 2 * DAY_MS)
    problems: list[str] = []
    for level in ("overall", "rooms", "merchants"):
        _same(level, got["operator"][level], truth[level], problems)
    for problem in problems:  # a level with summarized sessions: within the sketch's 1%
        assert ".median_watch_minutes:" in problem, problem
        path = problem.split(":")[0].split(".")
        mine, want = got["operator"][path[0]], truth[path[0]]
        if path[0] != "overall":
            mine, want = mine[path[1]], want[path[1]]
        assert math.isclose(
            mine["median_watch_minutes"], want["median_watch_minutes"], rel_tol=RELATIVE_ACCURACY
        ), problem
