"""The live screen's state (agents/core/screen.py) against the independent batch reference."""

from __future__ import annotations

import json
import pickle
import random
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard
from agents.core.ledger import Presence
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.persist import dump_state, load_state
from agents.core.screen import (
    _SOURCE_BITS,
    _SOURCE_BY_RANK,
    SKU_LIMIT,
    SOURCES,
    FirstEntries,
    ScreenState,
    _entry_source,
    _pack_entry,
)
from agents.core.sketch import RELATIVE_ACCURACY
from schemas import Rejection, decode_text
from streams.tools.simulator.operator_truth import screen_truth
from tests.support.events import EventList
from tests.support.truth import _same

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
T0 = 1_721_800_800_000


@cache
def lines(name: str) -> tuple[str, ...]:
    return tuple((FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines())


def feed(stream: Any) -> tuple[Ledger, OperatorBoard]:
    ledger, board = Ledger(), OperatorBoard()
    for line in stream:
        event = decode_text(line)
        if isinstance(event, Rejection):
            ledger.reject(event.reason)
            continue
        if ledger.apply(event):
            board.observe(event, ledger)  # as `ingest`: first entries by the presence's slots
    return ledger, board


def mismatches(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    _same("screen", got, want, problems)
    return problems


@pytest.mark.parametrize("name", ["xhs", "impulse"])
@pytest.mark.parametrize("share", [0.3, 1.0])
def test_screen_matches_the_batch_reference(name: str, share: float) -> None:
    """The whole fixture, and its first 30% (mid-broadcast, as the screen sees it live)."""
    stream = lines(name)[: int(len(lines(name)) * share)]
    ledger, board = feed(stream)
    got = board.screen.snapshot(ledger)
    want = screen_truth(stream)
    assert mismatches(got, want) == []
    # Something to compare: the last hour has viewers, the sources and products are filled
    # (at its very end impulse's last hour holds only late refunds).
    if share < 1 or name == "xhs":
        assert sum(got["minutes"]["overall"]["viewers"]) > 0
        assert sum(got["minutes"]["overall"]["entries"]) > 0
    assert sum(s["entries"] for s in got["sources"]["overall"].values()) > 0
    assert got["products"]["overall"]["top"][0]["gmv_cny"] > 0


def test_screen_is_the_same_in_shuffled_arrival_and_after_a_merge() -> None:
    stream = list(lines("xhs"))
    want = screen_truth(stream)
    rng = random.Random(18)
    shuffled = stream[:]
    rng.shuffle(shuffled)
    ledger, board = feed(shuffled)
    assert mismatches(board.screen.snapshot(ledger), want) == []
    # Three "partitions" by session (as the record keys split them), merged.
    parts: list[list[str]] = [[], [], []]
    for line in stream:
        parts[hash(line.split('"session_id":"')[-1][:12]) % 3].append(line)
    fed = [feed(part) for part in parts]
    merged_ledger = merge_ledgers([ledger for ledger, _ in fed])
    merged_board = merge_boards([board for _, board in fed])
    # Counts of invalid lines differ by how they were split; the screen has none of them.
    assert mismatches(merged_board.screen.snapshot(merged_ledger), want) == []


def test_screen_survives_a_state_round_trip_and_an_old_state_loads() -> None:
    ledger, board = feed(lines("impulse"))
    before = board.screen.snapshot(ledger)
    loaded_ledger, loaded_board = load_state(dump_state(ledger, board))
    assert loaded_board.screen.snapshot(loaded_ledger) == before
    # A state saved before the screen existed: the board loads with an empty screen.
    del board.__dict__["screen"]
    old_ledger, old_board = load_state(dump_state(ledger, board))
    assert isinstance(old_board.screen, ScreenState)
    assert old_board.screen.watermark is None


@pytest.mark.parametrize("form", ["packed", "tuples"])
def test_a_state_saved_before_first_entries_were_by_slot_loads_the_same(form: str) -> None:
    """Issue 19 packs each (ts, source) first entry into one int, then holds a session's by slot
    (`FirstEntries`, state version 11); a snapshot written with a dict of packed ints (version
    10) or of the tuples (before) still loads, into the same screen."""
    ledger, board = feed(lines("impulse"))
    before = board.screen.snapshot(ledger)
    firsts = board.screen.first_entry
    assert firsts and all(type(e) is int for users in firsts.values() for e in users.values())
    for sid, users in firsts.items():
        firsts[sid] = {  # type: ignore[assignment]
            user: entry if form == "packed" else (entry >> _SOURCE_BITS, _entry_source(entry))
            for user, entry in users.items()
        }
    loaded_ledger, loaded_board = load_state(dump_state(ledger, board))
    assert loaded_board.screen.snapshot(loaded_ledger) == before
    loaded = loaded_board.screen.first_entry
    assert all(type(users) is FirstEntries for users in loaded.values())
    assert {sid: dict(users) for sid, users in loaded.items()} == {
        sid: {
            user: entry if form == "packed" else _pack_entry(*entry)
            for user, entry in users.items()  # type: ignore[attr-defined]
        }
        for sid, users in firsts.items()
    }


def test_first_entries_keep_each_users_smallest_in_and_past_int64() -> None:
    rng = random.Random(3)
    firsts, plain = FirstEntries(), {}
    for _ in range(3_000):
        user = f"u-{rng.randrange(200)}"
        entry = rng.choice([0, -(2**63), 2**63 - 1, 2**64, -(2**66), 1 << 45]) + rng.randrange(
            -3, 3
        )
        firsts.offer(user, entry)
        plain[user] = min(plain.get(user, entry), entry)
    assert list(firsts) == list(plain) and dict(firsts) == plain
    assert firsts.sources() == Counter(entry & 7 for entry in plain.values())
    copy = pickle.loads(pickle.dumps(firsts))
    assert list(copy) == list(plain) and dict(copy) == plain


def test_first_entries_near_and_far_from_the_first_read_back_and_pickle_the_same() -> None:
    """Entries are int32s less the table's first entry's base (issue 19): ones at the edges of
    int32 from it, past them (into the overflow) and of the marker's value read back as each
    user's smallest, their sources from the array's low bits, and survive a pickle."""
    rng = random.Random(23)
    edges = [0, 1, 2**31 - 1, 2**31, -(2**31), -(2**31) + 1, -(2**31) - 1, 2**33, -(2**40)]
    for spread in ([0, 7, 5_000 << _SOURCE_BITS], edges):
        firsts, plain = FirstEntries(), {}
        base = (T0 << _SOURCE_BITS) + 5  # the first entry: source rank 5
        firsts.offer("u-first", base)
        plain["u-first"] = base
        for _ in range(2_000):
            user = f"u-{rng.randrange(150)}"
            entry = (base & ~7) + rng.choice(spread) + rng.randrange(-8, 8)
            firsts.offer(user, entry)
            plain[user] = min(plain.get(user, entry), entry)
        assert list(firsts) == list(plain) and dict(firsts) == plain
        assert bool(firsts._wide) is (spread is edges)
        assert firsts.sources() == Counter(entry & 7 for entry in plain.values())
        copy = pickle.loads(pickle.dumps(firsts))
        assert list(copy) == list(plain) and dict(copy) == plain
        assert copy.sources() == firsts.sources()


def test_first_entries_sharing_a_presences_slots_are_each_users_smallest() -> None:
    """Issue 19: a session's first entries read its raw presence's user -> slot table, which
    also holds users with no entry (a leave only) and grows between offers; a user the table
    lacks (a join after the presence folded) gives the entries a table of their own, which the
    presence's later users do not enter. Against a plain dict of each user's smallest."""
    rng = random.Random(19)
    for detach_at in (None, 900, 0):
        presence = Presence()
        firsts, plain = FirstEntries(presence.slot_table()), {}
        for step in range(3_000):
            if rng.random() < 0.3:  # a leave: the presence's, not an entry (u-300 on: only)
                presence.add(f"u-{rng.randrange(400)}", T0 + step, step, False)
                continue
            user = f"u-{rng.randrange(300)}"
            if detach_at is None or step < detach_at:
                presence.add(user, T0 + step, step, True)  # the ledger takes the join first
            else:  # the presence folded: joins of its users and of new ones (v-)
                user = f"{rng.choice('uv')}-{rng.randrange(300)}"
            entry = rng.choice([0, -(2**63), 2**63 - 1, 2**64, T0 << _SOURCE_BITS])
            entry += rng.randrange(-3, 3)
            firsts.offer(user, entry)
            plain[user] = min(plain.get(user, entry), entry)
        assert firsts._shared is (detach_at is None)
        assert dict(firsts) == plain and len(firsts) == len(plain)
        assert set(firsts) == set(plain) and all(user in firsts for user in plain)
        leave_only = set(presence) - set(plain)
        assert leave_only and not any(user in firsts for user in leave_only)
        assert firsts.get(next(iter(leave_only))) is None
        assert firsts.sources() == Counter(entry & 7 for entry in plain.values())
        copy = pickle.loads(pickle.dumps(firsts))
        assert dict(copy) == plain and len(copy) == len(plain)
        assert copy.sources() == firsts.sources()
        # Loaded, it reads the presence's table again when that has all its users.
        assert copy.share(presence.slot_table()) is (detach_at is None)
        assert dict(copy) == plain and copy.sources() == firsts.sources()
        copy.offer("w-1", 5)
        assert copy["w-1"] == 5 and "w-1" not in presence and len(copy) == len(plain) + 1


def test_a_loaded_screen_reads_the_presences_slot_tables_again() -> None:
    """Each session's first entries are saved with their own users; loaded, those of a
    session with a raw presence read its table again, the same entries, the same screen."""
    ledger, board = feed(lines("xhs")[:4000])
    firsts = board.screen.first_entry
    assert any(users._shared for users in firsts.values())
    loaded_ledger, loaded_board = load_state(dump_state(ledger, board))
    loaded = loaded_board.screen.first_entry
    assert {sid: dict(users) for sid, users in loaded.items()} == {
        sid: dict(users) for sid, users in firsts.items()
    }
    for sid, users in loaded.items():
        assert users._shared is (loaded_ledger.presence_slots(sid) is not None)
        if users._shared:
            assert users._slots is loaded_ledger.presence_slots(sid)
    assert loaded_board.screen.snapshot(loaded_ledger) == board.screen.snapshot(ledger)


def test_a_first_entry_at_equal_ts_is_the_smaller_source_name_in_any_order() -> None:
    base = {"type": "viewer_joined", "ts": T0, "session_id": "s-1", "user_id": "u-1"}
    joins = [
        json.dumps({**base, "event_id": f"e-{source}", "source": source})
        for source in ("short_video", "search", "feed", "follow")
    ]
    for order in (joins, joins[::-1]):
        _ledger, board = feed(order)
        assert _entry_source(board.screen.first_entry["s-1"]["u-1"]) == "feed"
        assert board.screen.first_entry["s-1"]["u-1"] >> _SOURCE_BITS == T0
    assert _SOURCE_BY_RANK == tuple(sorted(SOURCES))


def test_minute_buckets_are_bounded_by_event_time() -> None:
    ledger, board = feed(lines("xhs"))
    screen = board.screen
    assert screen.watermark is not None
    assert len(screen.minutes) <= screen.retained_minutes
    assert min(screen.minutes) >= screen.watermark // 60_000 - screen.retained_minutes + 1


def test_products_beyond_the_limit_are_counted_as_other() -> None:
    screen = ScreenState()
    for i in range(SKU_LIMIT + 5):
        event = decode_text(
            f'{{"event_id":"c{i}","type":"product_clicked","ts":{1000 + i},'
            f'"session_id":"s","user_id":"u{i}","sku_id":"k{i}"}}'
        )
        assert not isinstance(event, Rejection)
        screen.observe(event)
    assert len(screen.skus["s"]) == SKU_LIMIT + 1
    assert screen.skus["s"][""].clicks == 5


def test_html_report_shows_the_sources_and_products_of_the_reference() -> None:
    from agents.core.html import render_html
    from agents.core.report import build_report

    ledger, board = feed(lines("xhs"))
    page = render_html(build_report(ledger, board))
    want = screen_truth(lines("xhs"))
    feed_row = want["sources"]["overall"]["feed"]
    assert f"<tr><td>Feed</td><td>{feed_row['entries']:,}</td><td>{feed_row['viewers']:,}</td>" in (
        page
    )
    best = want["products"]["overall"]["top"][0]
    assert f'<td class="id">{best["sku_id"]}</td><td>{best["clicks"]:,}</td>' in page
    # Each room's own products table.
    for room_id, products in want["products"]["rooms"].items():
        top = products["top"][0]
        start = page.index(f'id="table-products-{room_id}"')
        table = page[start : page.index("</figure>", start)]
        assert f'<td class="id">{top["sku_id"]}</td><td>{top["clicks"]:,}</td>' in table


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_a_folded_sessions_viewers_per_minute_are_those_of_its_records(name: str) -> None:
    """Bounded state folds a closed session's presence records into a summary
    (`FoldedPresence`); the screen's viewers-online curve reads the summary as it read the
    records, minute for minute, over each session's whole span."""
    from agents.core.ledger import FoldedPresence
    from agents.core.screen import MINUTE_MS, _present_by_minute

    ledger, _board = feed(lines(name))
    checked = 0
    for session in ledger.sessions.values():
        if session.started_ts is None or session.ended_ts is None or not session.presence:
            continue
        first = session.started_ts // MINUTE_MS - 2
        n = (session.ended_ts // MINUTE_MS) - first + 4
        from_records = _present_by_minute(session, first, n)
        session.presence = FoldedPresence.fold(
            session.presence, session.ended_ts, session.ended_ts, []
        )
        assert _present_by_minute(session, first, n) == from_records
        # A window that starts inside the session, as the last hour of a long one does.
        middle = first + n // 2
        assert _present_by_minute(session, middle, 7) == from_records[n // 2 : n // 2 + 7]
        checked += sum(from_records) > 0
    assert checked >= 20


def test_the_pages_operator_figures_are_the_references_without_the_detail() -> None:
    """What the live screen asks for (`snapshot(detail=False)`: no per-session figures, no
    histograms) gives every level's figures of the independent reference, mid-broadcast."""
    from streams.tools.simulator.operator_truth import operator_truth

    stream = lines("xhs")[: int(len(lines("xhs")) * 0.3)]
    ledger, board = feed(stream)
    page = board.snapshot(ledger, detail=False)
    assert "sessions" not in page and "histograms" not in page
    truth = operator_truth(stream)
    problems: list[str] = []
    for level in ("overall", "rooms", "merchants", "watermark_ts", "late_events"):
        _same(level, page[level], truth[level], problems)
    assert problems == []
    assert page["overall"]["orders"] > 0 and len(page["rooms"]) > 1


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_folded_sessions_leave_the_screen_and_its_tables_stay_exact(name: str) -> None:
    """With the default dedupe window the ledger folds closed sessions as the stream goes
    (it spans weeks): the screen folds their products and sources into room and merchant
    totals at the same moment, so the sessions it keeps stop growing with the stream, and
    every figure is still the reference's."""
    from agents.core.ingest import ingest

    week_ms = 7 * 86_400_000
    stream = lines(name)
    ledger, board = Ledger(week_ms), OperatorBoard()
    kept_over_time: list[int] = []
    for i, line in enumerate(stream):
        ingest(line.encode(), ledger, board)
        if i % 500 == 0:
            screen = board.screen
            kept_over_time.append(len(set(screen.skus) | set(screen.first_entry)))
            assert len(screen.minutes) <= screen.retained_minutes
    screen = board.screen
    started = [s for s in ledger.sessions.values() if s.started_ts is not None]
    assert ledger.folded_sessions > 0.8 * len(started)
    assert len(screen.folded) == ledger.folded_sessions
    assert screen.after_fold_events == 0  # the references' figures need none (see screen.py)
    # Per-session state only for the sessions not folded; it stopped growing with the stream.
    kept = set(screen.skus) | set(screen.first_entry) | set(screen.source_entries)
    assert kept.isdisjoint(screen.folded)
    assert len(kept) <= len(ledger.sessions) - ledger.folded_sessions
    assert max(kept_over_time) < 0.5 * len(started), kept_over_time
    assert mismatches(board.screen.snapshot(ledger), screen_truth(stream)) == []


def test_late_events_between_the_presence_fold_and_the_summary_are_in_the_distinct_counts() -> None:
    """With sessions summarized (`fold_sessions`, a 1-hour dedupe window): a session's presence
    is folded an hour after its end, its summary only 7 days (the session horizon) after it.
    A view, clicks and an order of the session stamped after its end and arriving after the
    presence fold are applied (their topics' horizons are before them); the screen's distinct
    figures (the products' clickers and buyers, the sources' viewers and buyers) count them,
    equal to the reference, before and after the summary (before, the screen folded at the
    presence fold and counted them in the additive figures only: `after_fold_events`)."""
    import orjson

    from agents.core.ingest import ingest
    from agents.core.page import PageBuilder
    from streams.tools.simulator.operator_truth import operator_truth

    hour, day = 3_600_000, 86_400_000
    start = 1_719_792_000_000  # a whole hour
    end = start + hour
    events = EventList()
    add, order = events.add, events.order

    def other_session(sid: str, at: int) -> None:
        """Another room's session at `at`: moves every topic's horizon to `at` - 1 hour."""
        add("session_started", at, session_id=sid, room_id="r-2", merchant_id="m-1")
        add("viewer_joined", at, session_id=sid, user_id="u-9", source="feed")
        add("product_clicked", at, session_id=sid, user_id="u-9", sku_id="k-2")
        order(at, sid, "u-9", 700)
        add("group_joined", at, merchant_id="m-1", group_id="g-1", user_id="u-9")
        add("session_ended", at + 60_000, session_id=sid)

    add("session_started", start, session_id="s-1", room_id="r-1", merchant_id="m-1")
    add("viewer_joined", start + 1000, session_id="s-1", user_id="u-1", source="feed")
    add("viewer_joined", start + 2000, session_id="s-1", user_id="u-2", source="follow")
    add("product_clicked", start + 3000, session_id="s-1", user_id="u-1", sku_id="k-1")
    order(start + 4000, "s-1", "u-1", 500)
    add("group_joined", start, merchant_id="m-1", group_id="g-1", user_id="u-1")
    add("session_ended", end, session_id="s-1")
    other_session("s-2", end + 2 * hour)  # s-1's presence is folded
    # Late, after s-1's end, within its session horizon: a new viewer, a new clicker and an
    # old one, a new buyer (u-2, a viewer) and an old one.
    add("viewer_joined", end + 90 * 60_000, session_id="s-1", user_id="u-3", source="search")
    add("product_clicked", end + 80 * 60_000, session_id="s-1", user_id="u-2", sku_id="k-1")
    add("product_clicked", end + 80 * 60_000, session_id="s-1", user_id="u-1", sku_id="k-1")
    order(end + 100 * 60_000, "s-1", "u-2", 300)
    order(end + 100 * 60_000, "s-1", "u-1", 200)
    stream = [orjson.dumps(event) for event in events]
    text = [line.decode() for line in stream]

    def fed(lines: list[bytes]) -> tuple[Ledger, OperatorBoard]:
        ledger, board = Ledger(hour, fold_sessions=True), OperatorBoard()
        for line in lines:
            ingest(line, ledger, board)
        return ledger, board

    ledger, board = fed(stream)
    assert ledger.folded_sessions == 1 and ledger.summarized_sessions == 0
    assert ledger.counts.expired == 0
    assert "s-1" in board.screen.held_paid and board.screen.after_fold_events == 0
    assert mismatches(board.screen.snapshot(ledger), screen_truth(text)) == []
    assert PageBuilder().build([(ledger, board)])["screen"] == board.screen.snapshot(ledger)
    products = board.screen.snapshot(ledger)["products"]["rooms"]["r-1"]["top"][0]
    assert (products["clickers"], products["buyers"]) == (2, 2)

    # Past s-1's session horizon on every topic: summarized, its screen state folded.
    other_session("s-3", end + 7 * day + 3 * hour)
    stream = [orjson.dumps(event) for event in events]
    text = [line.decode() for line in stream]
    ledger, board = fed(stream)
    assert ledger.summarized_sessions >= 1 and ledger.sessions["s-1"].summary is not None
    screen = board.screen
    assert "s-1" in screen.folded and "s-1" not in screen.held_paid
    assert not {"s-1"} & (set(screen.skus) | set(screen.first_entry) | set(screen.source_entries))
    assert mismatches(screen.snapshot(ledger), screen_truth(text)) == []
    truth = operator_truth(text)
    page = PageBuilder().build([(ledger, board)])
    assert page["screen"] == screen.snapshot(ledger)
    problems: list[str] = []
    for level in ("overall", "rooms", "merchants"):
        _same(level, page["operator"][level], truth[level], problems)
    # A level with a summarized session reads its median watch time from a sketch (1%).
    sketched = [p for p in problems if ".median_watch_minutes:" in p]
    assert problems == sketched
    for problem in sketched:
        got, want = (float(v) for v in problem.split("report ")[1].split(" != truth "))
        assert got == pytest.approx(want, rel=RELATIVE_ACCURACY), problem
