"""The ledger's dedupe window (issue 17): ids are remembered only while their event time is
inside their topic's window, an event older than it is expired, and within the window every
figure is what a ledger that keeps every id gives."""

from __future__ import annotations

import copy
import functools
import itertools
import math
import pickle
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import SESSION_HORIZON_MS, TOPICS, FoldedPresence, SessionSummary
from agents.core.merge import merge_ledgers
from agents.core.persist import MAGIC, dump_state, load_state
from agents.core.report import render_table
from agents.core.sketch import RELATIVE_ACCURACY, QuantileSketch
from agents.core.stats import percentile
from schemas import Rejection, decode, event_adapter
from tests.agents.core.test_sketch import _reference, _within_bound
from tests.support.board import observe
from tests.support.events import apparel_order, jittered
from tests.support.live import fixture_operator_truth_folding, fixture_truth
from tests.support.truth import report_mismatches

REPO = Path(__file__).resolve().parents[3]
T0 = 1_721_800_800_000
HOUR = 3_600_000
DAY = 24 * HOUR
_ids = itertools.count()


def ev(type_: str, ts: int, event_id: str | None = None, **fields: Any) -> Any:
    return event_adapter.validate_python(
        {"event_id": event_id or f"e{next(_ids)}", "type": type_, "ts": ts, **fields}
    )


def join(ts: int, user: str, sid: str = "s1", event_id: str | None = None) -> Any:
    return ev("viewer_joined", ts, event_id, session_id=sid, user_id=user)


def started(ts: int, sid: str = "s1") -> Any:
    return ev("session_started", ts, session_id=sid, room_id="r1", merchant_id="m1")


def test_a_repeat_inside_the_window_is_a_duplicate_and_one_older_is_expired() -> None:
    ledger = Ledger(dedupe_window_ms=DAY)
    assert ledger.apply(join(T0, "u1", event_id="a"))
    assert not ledger.apply(join(T0, "u1", event_id="a"))
    assert ledger.apply(join(T0 + DAY, "u2"))  # exactly the window: still applied
    assert ledger.apply(join(T0 + DAY + 1, "u3"))  # the horizon is now T0 + 1
    assert not ledger.apply(join(T0, "u1", event_id="a"))  # the repeat, now past the window
    assert not ledger.apply(join(T0, "u9"))  # a new event just as old: expired too
    assert ledger.counts.as_dict() == {"valid": 3, "rejected": 0, "duplicates": 1}
    assert ledger.counts.expired == 2
    assert set(ledger.sessions["s1"].presence) == {"u1", "u2", "u3"}


def test_the_horizon_is_per_topic_so_topics_out_of_step_expire_nothing() -> None:
    ledger = Ledger(dedupe_window_ms=DAY)
    assert ledger.apply(join(T0 + 30 * DAY, "u1"))  # views far ahead of sessions
    assert ledger.apply(started(T0))  # the sessions topic has its own horizon
    assert ledger.counts.expired == 0
    assert ledger.horizon_ts(TOPICS.index("live.sessions")) == T0 - DAY
    assert ledger.horizon_ts(TOPICS.index("live.views")) == T0 + 29 * DAY
    assert ledger.horizon_ts(TOPICS.index("live.groups")) is None  # no group event: no horizon


def test_the_ids_kept_follow_the_window_not_the_stream() -> None:
    """60 days of 500 events a day with a 2-day window: the ledger remembers ~2 days of ids
    (the window and the partial hour at its edge), a ledger without one every id."""
    windowed, unbounded = Ledger(dedupe_window_ms=2 * DAY), Ledger()
    per_day = 500
    for day in range(60):
        for i in range(per_day):
            event = join(T0 + day * DAY + i * (DAY // per_day), f"u{i}", sid=f"s{day}")
            assert windowed.apply(event) and unbounded.apply(event)
    assert len(unbounded.seen_ids()) == 60 * per_day
    kept = len(windowed.seen_ids())
    assert 2 * per_day <= kept <= 2 * per_day + per_day // 24 + 1
    views = windowed._id_hours[TOPICS.index("live.views")]
    # Held: the set's ids, filed by hour, and those moved to the runs (issue 19), whose dead
    # keys are dropped once they are half of them.
    assert sum(len(ids) for ids in views.values()) + len(windowed._seen_runs) <= 2 * kept


def _fixture_records(name: str) -> list[bytes]:
    return (REPO / "fixtures" / name).read_bytes().splitlines()


def _report(records: list[bytes], window_ms: int | None) -> dict[str, Any]:
    ledger, board = Ledger(window_ms), OperatorBoard()
    for record in records:
        decoded = decode(record)
        if isinstance(decoded, Rejection):
            ledger.reject(decoded.reason)
        elif ledger.apply(decoded):
            board.observe(decoded)
    return build_report(ledger, board)


@pytest.mark.parametrize("name", ["xhs.jsonl", "impulse.jsonl"])
def test_a_window_longer_than_the_lateness_changes_no_figure(name: str) -> None:
    """The fixtures' events are at most ~28 hours late within their topic: with the default
    7-day window every figure is the keep-everything ledger's, and with a 10-minute window
    the late events are expired (the window is what decides)."""
    records = _fixture_records(name)
    everything = _report(records, None)
    week = _report(records, 7 * DAY)
    assert week["retention"]["dedupe_window_s"] == 7 * 86_400
    assert week["retention"]["expired"] == 0 and week["retention"]["folded_sessions"] > 0
    assert everything["retention"] == {
        "dedupe_window_s": None,
        "expired": 0,
        "folded_sessions": 0,
        "future_tolerance_s": None,
        "future": 0,
        "folded_questions": 0,
        "unmatched_replies": 0,
        "summarized_sessions": 0,
        "abandoned_sessions": 0,
        "board_peaks_bounded": 0,
        "after_session_horizon": 0,
        "folded_months": 0,
        "refund_horizon_days": None,
        "late_refunds": 0,
        "unmatched_refunds": 0,
        "folded_orders": 0,
        "dropped_refunds": 0,
    }
    del week["retention"], everything["retention"]
    # The answered latencies of folded questions are in the sketch: p50/p95 within its bound
    # of the truth reference's latencies (exact with nothing folded); every other figure exact.
    reply = everything["claims"]["reply_latency"]["detail"]
    assert reply["p50_seconds"] == percentile(_truth_latencies(name), 0.5)
    assert _exact_part(week, name) == _exact_part(everything, name)
    hour = _report(records, 10 * 60_000)
    assert hour["retention"]["expired"] > 0
    assert hour["events"]["valid"] == everything["events"]["valid"] - hour["retention"]["expired"]


def test_the_state_round_trips_with_its_window_and_a_version_1_state_still_loads() -> None:
    ledger = Ledger(dedupe_window_ms=DAY)
    for hour in range(50):
        ledger.apply(join(T0 + hour * HOUR, f"u{hour}"))
    got, _board = load_state(dump_state(ledger, OperatorBoard()))
    assert got.dedupe_window_ms == DAY and got.seen_ids() == ledger.seen_ids()
    assert got._id_hours == ledger._id_hours and got.newest_ts == ledger.newest_ts
    assert not got.apply(join(T0, "late"))  # expired after the restore as before it
    assert got.counts.expired == 1

    # A version 1 state: a ledger pickled before it had a window.
    old = Ledger()
    old.apply(join(T0, "u1", event_id="x"))
    for name in ("dedupe_window_ms", "_id_hours", "newest_ts", "_kept_from_hour"):
        delattr(old, name)
    blob = MAGIC + bytes([1]) + zlib.compress(pickle.dumps((old, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert restored.dedupe_window_ms is None and restored.counts.expired == 0
    assert not restored.apply(join(T0, "u1", event_id="x"))  # its ids are still known
    assert restored.apply(join(T0 - 400 * DAY, "u2"))  # no window: nothing expires


def test_partitions_with_a_window_merge_into_the_single_ledger() -> None:
    single = Ledger(dedupe_window_ms=DAY)
    parts = [Ledger(dedupe_window_ms=DAY) for _ in range(3)]
    for hour in range(100):
        event = join(T0 + hour * HOUR, f"u{hour % 7}", sid=f"s{hour % 3}")
        single.apply(event)
        parts[hour % 3].apply(event)
    merged = merge_ledgers(parts)
    assert merged.dedupe_window_ms == DAY
    assert merged.newest_ts == single.newest_ts
    assert merged.seen_ids() == set().union(*(p.seen_ids() for p in parts))
    assert build_report(merged) == build_report(single)


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ledger(dedupe_window_ms=0)


def _feed(records: list[Any], window_ms: int | None) -> tuple[Ledger, OperatorBoard]:
    ledger, board = Ledger(window_ms), OperatorBoard()
    for decoded in records:
        if isinstance(decoded, Rejection):
            ledger.reject(decoded.reason)
        elif ledger.apply(decoded):
            board.observe(decoded)
    return ledger, board


def _without_retention(report: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in report.items() if key != "retention"}


@functools.cache
def _truth_latencies(name: str) -> list[float]:
    """The fixture's answered latencies in seconds, sorted, from the truth reference."""
    lines = (REPO / "fixtures" / name).read_text(encoding="utf-8").splitlines()
    latencies: list[float] = _reference(lines)["latencies"]
    return latencies


def _exact_part(report: dict[str, Any], name: str) -> dict[str, Any]:
    """The report without its retention and reply p50/p95, those checked first: once
    questions fold they are read from the sketch, within its bound of the truth reference
    (agents/core/sketch.py); every other figure is exact."""
    out = copy.deepcopy(_without_retention(report))
    reply = out["claims"]["reply_latency"]["detail"]
    for key, q in (("p50_seconds", 0.5), ("p95_seconds", 0.95)):
        assert _within_bound(reply.pop(key), _truth_latencies(name), q), key
    return out


@pytest.mark.parametrize("name", ["xhs.jsonl", "impulse.jsonl"])
def test_closed_sessions_fold_and_every_figure_stays_exact(name: str) -> None:
    """A 2-day window over the 60-day fixture (no event is that late within its topic): the
    presence of almost every session is folded into its summary, and the whole report
    (claims, intervals, distributions, operator figures) is the keep-everything ledger's,
    byte for byte; so after a snapshot round trip; and so for the fixture split over
    partitions by its contract keys and merged (tests/agents/core/test_merge.py)."""
    from tests.agents.core.test_merge import records, split

    stream = records(name.removesuffix(".jsonl"))
    decoded = [event for _topic, _key, event in stream]
    everything = build_report(*_feed(decoded, None))
    ledger, board = _feed(decoded, 2 * DAY)
    started = sum(s.started_ts is not None for s in ledger.sessions.values())
    assert ledger.counts.expired == 0
    assert ledger.folded_sessions >= 0.9 * started
    # The questions past the answer horizon (the window) are folded too, none left unmatched.
    asked = everything["claims"]["reply_latency"]["detail"]["questions"]
    assert sum(ledger.folded_questions.values()) >= 0.9 * asked > 0
    assert len(ledger.questions) + sum(ledger.folded_questions.values()) == asked
    assert ledger.unmatched_replies == 0
    folded = build_report(ledger, board)
    assert folded["retention"]["folded_sessions"] == ledger.folded_sessions
    assert _exact_part(folded, name) == _exact_part(everything, name)

    restored = build_report(*load_state(dump_state(ledger, board)))
    assert restored == folded

    from agents.core.merge import merge_boards

    parts = [_feed([e for _t, _k, e in part], 2 * DAY) for part in split(stream, 3)]
    merged = build_report(merge_ledgers([p[0] for p in parts]), merge_boards([p[1] for p in parts]))
    assert sum(p[0].folded_sessions for p in parts) > 0
    assert _exact_part(merged, name) == _exact_part(everything, name)


@pytest.mark.parametrize("name", ["xhs.jsonl", "impulse.jsonl"])
def test_a_shuffled_stream_folds_to_the_same_figures(name: str) -> None:
    """The fixture's events moved up to 12 hours from their place (seeded; with the
    fixture's own lateness still inside the 2-day window): the folds happen at other
    moments, yet the claims, the event counts and the distributions are the keep-everything
    ledger's of the file as it is (the operator's windows depend on arrival by design)."""
    from tests.agents.core.test_merge import records

    decoded = [event for _topic, _key, event in records(name.removesuffix(".jsonl"))]
    everything = build_report(*_feed(decoded, None))
    ledger, board = _feed(jittered(decoded, 12 * HOUR), 2 * DAY)
    assert ledger.counts.expired == 0 and ledger.folded_sessions > 0
    assert sum(ledger.folded_questions.values()) > 0
    shuffled = _exact_part(build_report(ledger, board), name)
    exact = _exact_part(everything, name)
    for key in ("events", "claims", "distributions"):
        assert shuffled[key] == exact[key], key


def test_a_view_after_the_fold_counts_as_an_entry_and_adds_no_watch_time() -> None:
    """After the fold only events later than the horizon (so after the end) are applied to
    the session: a join then is an entry and may be a first join, never watch time."""
    ledger = Ledger(dedupe_window_ms=DAY)
    ledger.apply(started(T0))
    ledger.apply(join(T0 + 1000, "u1"))
    ledger.apply(ev("viewer_left", T0 + 61_000, session_id="s1", user_id="u1"))
    ledger.apply(ev("session_ended", T0 + 120_000, session_id="s1"))
    for topic_event in (
        started(T0 + 3 * DAY, sid="s2"),
        join(T0 + 3 * DAY, "u9", sid="s2"),
        ev(
            "order_paid",
            T0 + 3 * DAY,
            order_id="o1",
            session_id="s2",
            merchant_id="m1",
            user_id="u9",
            amount_cents=100,
            items=[{"sku_id": "k", "category": "c", "unit_price_cents": 100, "quantity": 1}],
        ),
    ):
        assert ledger.apply(topic_event)
    session = ledger.sessions["s1"]
    assert ledger.folded_sessions == 1 and isinstance(session.presence, FoldedPresence)
    assert session.watch_ms("u1") == 60_000
    assert not ledger.apply(join(T0 + 2000, "u2"))  # older than the horizon: expired
    assert ledger.apply(join(T0 + 3 * DAY, "u2"))  # a join long after the end
    assert ledger.apply(join(T0 + 3 * DAY, "u1"))
    assert session.first_joins() == [("u1", T0 + 1000), ("u2", T0 + 3 * DAY)]
    assert session.watch_ms("u1") == 60_000 and session.watch_ms("u2") == 0
    assert session.presence.entries == 3  # type: ignore[union-attr]


def test_the_table_says_how_many_events_expired() -> None:
    from agents.core import render_table

    ledger = Ledger(dedupe_window_ms=HOUR)
    assert ledger.apply(join(T0 + 2 * HOUR, "u1"))
    assert not ledger.apply(join(T0, "u2"))
    table = render_table(build_report(ledger))
    assert "1 expired (older than the dedupe window of their topic" in table
    assert "expired" not in render_table(build_report(Ledger(dedupe_window_ms=HOUR)))


def question(ts: int, event_id: str, sid: str = "s1") -> Any:
    return ev("interaction", ts, event_id, session_id=sid, user_id="u1", kind="question")


def reply(ts: int, to: str, sid: str = "s1") -> Any:
    return ev("interaction", ts, session_id=sid, user_id="host", kind="reply", reply_to=to)


def _reply_detail(ledger: Ledger) -> dict[str, Any]:
    return dict(build_report(ledger)["claims"]["reply_latency"]["detail"])


def test_questions_fold_past_the_answer_horizon_and_a_later_reply_is_counted() -> None:
    """The answer horizon is the window: a question is held until the interactions topic's
    horizon passes its ts + the window, then folded into its session's counts and latencies.
    A reply later than that answers nothing (the question stays a miss) and is counted in
    `unmatched_replies`, as is a reply whose question never comes within the horizon."""
    ledger = Ledger(dedupe_window_ms=DAY)
    assert ledger.apply(question(T0, "q1"))
    assert ledger.apply(reply(T0 + 2_000, "q1"))  # within 3 s
    assert ledger.apply(question(T0 + 1_000, "q2", sid="s2"))
    assert ledger.apply(reply(T0 + 100_000, "q2", sid="s2"))  # within 3 min
    assert ledger.apply(question(T0 + 2_000, "q3"))  # never answered in time
    assert ledger.apply(reply(T0 + 5_000, "q-never-asked"))
    held = _reply_detail(ledger)
    assert held["questions"] == 3 and held["answered"] == 2
    assert held["answered_within_3s"] == 1 and held["answered_within_3min"] == 2

    # Interactions two days later: the horizon (T0 + 1 day) passes T0 + 1 day + 1 hour's
    # hour boundary only later, so nothing is folded yet at T0 + 2 days - 1 ms ...
    assert ledger.apply(question(T0 + 2 * DAY - 1, "q4", sid="s3"))
    assert ledger.folded_questions == {}
    # ... and at T0 + 2 days + 1 hour the first hour's questions and replies are past it.
    assert ledger.apply(question(T0 + 2 * DAY + HOUR, "q5", sid="s3"))
    assert ledger.folded_questions == {"s1": 2, "s2": 1}
    # [answered, within 3 s, sum ms, per reply bucket (1, 3, 10, 30, 60, 120 s, ...)]
    assert ledger.folded_replies == {
        "s1": [1, 1, 2_000, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        "s2": [1, 0, 99_000, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
    }
    assert ledger.folded_within_3min == 2
    assert ledger.folded_figures.reply_latency_s.count == 2
    assert set(ledger.questions) == {"q4", "q5"} and set(ledger.first_reply_ts) == set()
    assert ledger.unmatched_replies == 1  # the reply to a question never asked

    assert ledger.apply(reply(T0 + 2 * DAY + HOUR, "q3"))  # q3 is folded: too late
    assert ledger.apply(reply(T0 + 2 * DAY + HOUR + 1_000, "q5", sid="s3"))
    for hour in range(3, 30):  # a day later still: the late reply is dropped and counted
        assert ledger.apply(question(T0 + (2 + 1) * DAY + hour * HOUR, f"q-{hour}", sid="s4"))
    assert ledger.unmatched_replies == 2
    detail = _reply_detail(ledger)
    assert detail["questions"] == 5 + 27 and detail["answered"] == 3
    assert detail["answered_within_3s"] == 2 and detail["answered_within_3min"] == 3
    report = build_report(ledger)
    assert report["retention"]["folded_questions"] == sum(ledger.folded_questions.values())
    assert report["retention"]["unmatched_replies"] == 2
    from agents.core import render_table

    assert "2 replies answered no question within the answer horizon" in render_table(report)


def test_a_held_reply_beyond_the_answer_horizon_answers_nothing() -> None:
    """Whether a reply answers does not depend on when the fold ran: a reply more than the
    window after its question answers nothing whether the question is still held or not."""
    ledger = Ledger(dedupe_window_ms=DAY)
    assert ledger.apply(question(T0, "q1"))
    assert ledger.apply(reply(T0 + DAY + 1, "q1"))  # held: the horizon is at T0 + 1 ms
    assert "q1" in ledger.questions
    assert _reply_detail(ledger)["answered"] == 0
    unbounded = Ledger()
    unbounded.apply(question(T0, "q1"))
    unbounded.apply(reply(T0 + DAY + 1, "q1"))
    assert _reply_detail(unbounded)["answered"] == 1  # no window: any reply answers


def test_a_version_2_state_loads_and_its_held_questions_fold_in_time() -> None:
    ledger = Ledger(dedupe_window_ms=DAY)
    ledger.apply(question(T0, "q1"))
    ledger.apply(reply(T0 + 1_000, "q1"))
    ledger.apply(reply(T0 + 1_000, "q-orphan"))
    for name in (
        "folded_questions",
        "folded_replies",
        "folded_within_3min",
        "unmatched_replies",
        "_question_hours",
        "_reply_hours",
    ):
        delattr(ledger, name)
    blob = MAGIC + bytes([2]) + zlib.compress(pickle.dumps((ledger, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert restored.folded_questions == {} and restored.unmatched_replies == 0
    assert restored.apply(question(T0 + 3 * DAY, "q2"))
    assert restored.folded_questions == {"s1": 1}
    assert restored.folded_replies == {"s1": [1, 1, 1_000, 1, *[0] * 9]}
    assert restored.unmatched_replies == 1
    again, _board = load_state(dump_state(restored, OperatorBoard()))
    assert again.folded_replies == {"s1": [1, 1, 1_000, 1, *[0] * 9]}
    assert again.unmatched_replies == 1


def _answered_questions(ledger: Ledger, count: int, start_ts: int) -> list[int]:
    """`count` questions over 4 sessions, each answered (37 distinct latencies from 200 ms to
    ~6 min, so the sketch's bins are the same for any count); returns the latencies in ms."""
    latencies = []
    for i in range(count):
        asked_ts = start_ts + i * 10_000
        latency_ms = 200 + (i % 37) * 9_700
        sid = f"s{i % 4}"
        if i < 4:
            assert ledger.apply(started(start_ts - 1_000, sid))
        assert ledger.apply(question(asked_ts, f"q{start_ts}-{i}", sid=sid))
        assert ledger.apply(reply(asked_ts + latency_ms, f"q{start_ts}-{i}", sid=sid))
        latencies.append(latency_ms)
    return latencies


def _folded(count: int) -> tuple[Ledger, list[int]]:
    """A ledger with a day's window that has folded `count` answered questions."""
    ledger = Ledger(dedupe_window_ms=DAY)
    latencies = _answered_questions(ledger, count, T0)
    assert ledger.apply(question(T0 + 10 * DAY, "q-last", sid="s9"))  # folds the rest
    assert sum(ledger.folded_questions.values()) == count and len(ledger.questions) == 1
    return ledger, latencies


def _question_fold_bytes(ledger: Ledger) -> int:
    return len(
        pickle.dumps(
            (
                ledger.folded_questions,
                getattr(ledger, "folded_replies", None),
                getattr(ledger, "folded_latencies_ms", None),
                ledger.folded_figures.reply_latency_s,
            )
        )
    )


def test_the_question_fold_does_not_grow_with_the_answered_questions() -> None:
    """Ten times the answered questions folded, the same few sessions: the state kept for
    them is per session counts and a sketch whose bins follow the latencies' range, not one
    value per question; the counts are exact and p50/p95 within the sketch's bound."""
    small, _latencies = _folded(400)
    large, latencies = _folded(4_000)
    assert _question_fold_bytes(large) <= _question_fold_bytes(small) * 1.1
    detail = _reply_detail(large)
    assert detail["questions"] == 4_001 and detail["answered"] == 4_000
    assert detail["answered_within_3s"] == sum(ms <= 3_000 for ms in latencies)
    assert detail["answered_within_3min"] == sum(ms <= 180_000 for ms in latencies)
    ordered = sorted(ms / 1000 for ms in latencies)
    assert _within_bound(detail["p50_seconds"], ordered, 0.5)
    assert _within_bound(detail["p95_seconds"], ordered, 0.95)
    # The operator's reply histogram (started sessions'): the folded buckets and sum, exact.
    histogram = OperatorBoard().snapshot(large)["histograms"]["reply_latency_seconds"]
    bounds = histogram["bounds"]
    assert histogram["overall"] == {
        "counts": [sum(ms / 1000 <= bound for ms in latencies) for bound in bounds]
        + [len(latencies)],
        "sum": sum(latencies) / 1000,
    }


def test_a_version_3_state_loads_its_folded_latencies_as_counts_and_sketch() -> None:
    """A version 3 state kept every folded latency per session; loaded, they become the
    counts, the 3 min count and the sketch, and the figures are the ones it gave."""
    ledger, latencies = _folded(300)
    expected = _reply_detail(ledger)
    by_session: dict[str, list[int]] = {}
    for i, latency_ms in enumerate(latencies):
        by_session.setdefault(f"s{i % 4}", []).append(latency_ms)
    ledger.folded_latencies_ms = by_session  # type: ignore[attr-defined]
    del ledger.folded_replies, ledger.folded_within_3min
    ledger.folded_figures.reply_latency_s = QuantileSketch()
    blob = MAGIC + bytes([3]) + zlib.compress(pickle.dumps((ledger, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert not hasattr(restored, "folded_latencies_ms")
    assert _reply_detail(restored) == expected
    assert restored.folded_figures.reply_latency_s.count == 300


# Issue 17, the session fold: a closed session summarized past its session horizon.


def _summarizing(
    records: list[Any],
    window_ms: int | None,
    groups: Ledger | None = None,
    fold_months: bool = False,
) -> Ledger:
    ledger = Ledger(window_ms, fold_sessions=window_ms is not None, fold_months=fold_months)
    ledger.membership_from = groups
    for decoded in records:
        if isinstance(decoded, Rejection):
            ledger.reject(decoded.reason)
        else:
            ledger.apply(decoded)
    return ledger


#: What the session fold makes sketched (agents/core/sketch.py): `price_dwell_association`'s
#: rho from the binned rank table and its medians by tier from the quantile sketches (within
#: 1% of the truth's); its interval is then Fisher z over the sessions (the pairs the cluster
#: jackknife resamples are gone), never narrower than the exact one's.
_SKETCHED_CLAIM = "price_dwell_association"


def _claims_close(got: dict[str, Any], want: dict[str, Any], path: str = "") -> list[str]:
    """Where two reports' claims differ (numbers to 1e-9), the sketched ones left out."""
    out: list[str] = []
    if isinstance(want, dict):
        for key in want.keys() | got.keys():
            out += _claims_close(got.get(key), want.get(key), f"{path}.{key}")
    elif isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            out += _claims_close(a, b, f"{path}[{i}]")
    elif isinstance(want, float) and isinstance(got, int | float):
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            out.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        out.append(f"{path}: {got!r} != {want!r}")
    return out


def _check_summarized(report: dict[str, Any], everything: dict[str, Any], name: str) -> None:
    """Every claim of `report` (summarized sessions) equals the keep-everything report's,
    observed, counts and intervals to 1e-9, and the truth reference's; the sketched claim
    within its bounds."""
    got, want = copy.deepcopy(report["claims"]), copy.deepcopy(everything["claims"])
    for key, q in (("p50_seconds", 0.5), ("p95_seconds", 0.95)):  # the questions' fold
        assert _within_bound(got["reply_latency"]["detail"].pop(key), _truth_latencies(name), q)
        del want["reply_latency"]["detail"][key]
    exact = [claim for claim in want if claim != _SKETCHED_CLAIM]
    assert _claims_close({c: got[c] for c in exact}, {c: want[c] for c in exact}) == []
    truth = fixture_truth(name.removesuffix(".jsonl"))
    problems = [
        problem
        for problem in report_mismatches(report, truth)
        if not problem.startswith(f"claims.{_SKETCHED_CLAIM}.")
    ]
    assert problems == [], problems[:10]
    rho, exact_rho = got[_SKETCHED_CLAIM]["observed"], truth["claims"][_SKETCHED_CLAIM]["observed"]
    assert abs(rho - exact_rho) < 0.002, (rho, exact_rho)  # measured: 0.0004 and 0.0005
    medians = got[_SKETCHED_CLAIM]["detail"]["median_watch_minutes_by_tier"]
    for tier, value in truth["claims"][_SKETCHED_CLAIM]["median_watch_minutes_by_tier"].items():
        assert (value is None) == (medians[tier] is None)
        if value is not None:
            assert math.isclose(medians[tier], value, rel_tol=0.02), tier
    low, high = got[_SKETCHED_CLAIM]["ci_low"], got[_SKETCHED_CLAIM]["ci_high"]
    assert low <= want[_SKETCHED_CLAIM]["ci_low"] and high >= want[_SKETCHED_CLAIM]["ci_high"]


@pytest.mark.parametrize("name", ["xhs.jsonl", "impulse.jsonl"])
def test_closed_sessions_summarize_and_every_claim_stays_exact(name: str) -> None:
    """A 2-day window over the 60-day fixtures with the session fold: nearly every session is
    summarized (its viewers, orders and interacting users dropped), and every claim's
    observed value, counts and interval are the keep-everything ledger's (1e-9) and the
    truth reference's, `price_dwell_association` within its sketch's bounds; so after a
    snapshot round trip, for the stream shuffled, and for it split over 3 partitions by its
    contract keys (membership from every group event, `Ledger.membership_from`) and merged.
    The one ledger (not the partitions) folds `group_spend_multiple`'s closed months too
    (`fold_months`: July 2024, past every horizon + the session horizon by late August)."""
    from agents.core.merge import merge_ledgers
    from tests.agents.core.test_merge import records, split

    stream = records(name.removesuffix(".jsonl"))
    decoded = [event for _topic, _key, event in stream]
    everything = build_report(_summarizing(decoded, None))
    ledger = _summarizing(decoded, 2 * DAY, fold_months=True)
    assert ledger.folded_months >= 1 and ledger.month_folded_users
    started = sum(s.started_ts is not None for s in ledger.sessions.values())
    assert ledger.summarized_sessions >= 0.75 * started
    assert sum(ledger.after_session_horizon) == 0  # the fixtures have no event that late
    summarized = build_report(ledger)
    assert summarized["retention"]["summarized_sessions"] == ledger.summarized_sessions
    assert summarized["retention"]["folded_months"] == ledger.folded_months
    _check_summarized(summarized, everything, name)

    restored, _board = load_state(dump_state(ledger, OperatorBoard()))
    assert build_report(restored)["claims"] == summarized["claims"]

    shuffled = _summarizing(jittered(decoded, 12 * HOUR), 2 * DAY, fold_months=True)
    assert shuffled.counts.expired == 0 and shuffled.summarized_sessions > 0
    assert shuffled.folded_months == ledger.folded_months
    _check_summarized(build_report(shuffled), everything, name)

    groups = _summarizing(
        [e for e in decoded if getattr(e, "type", "").startswith("group_")], 2 * DAY
    )
    parts = [_summarizing([e for _t, _k, e in part], 2 * DAY, groups) for part in split(stream, 3)]
    assert sum(part.summarized_sessions for part in parts) >= 0.75 * started
    merged = merge_ledgers([load_state(dump_state(part, OperatorBoard()))[0] for part in parts])
    _check_summarized(build_report(merged), everything, name)


def test_without_every_group_event_a_partition_summarizes_with_the_membership_it_holds() -> None:
    """Why a worker does not summarize yet (`Ledger.fold_sessions`): a partition's sessions'
    merchants have their group events keyed to other partitions, so membership fixed at its
    fold is wrong; given them (`membership_from`), it is exact (the test above)."""
    from agents.core.merge import merge_ledgers
    from tests.agents.core.test_merge import records, split

    stream = records("xhs")
    truth = fixture_truth("xhs")["claims"]["group_order_share"]
    parts = [_summarizing([e for _t, _k, e in part], 2 * DAY) for part in split(stream, 3)]
    merged = build_report(merge_ledgers(parts))["claims"]["group_order_share"]
    assert merged["observed"] != pytest.approx(truth["observed"], rel=1e-9)


def _one_session(viewers: int, orders: int, fold_sessions: bool = True) -> Ledger:
    """One summarized session with `viewers` viewers (every tenth interacting) and `orders`
    orders, then 10 days of a second room's events to move every horizon past it."""
    ledger = Ledger(dedupe_window_ms=DAY, fold_sessions=fold_sessions)
    ledger.apply(started(T0, "big"))
    ledger.apply(ev("group_joined", T0, merchant_id="m1", user_id="u0", group_id="g1"))
    for i in range(viewers):
        ledger.apply(join(T0 + 1000 + i, f"u{i}", sid="big"))
        if i % 10 == 0:
            ledger.apply(
                ev("interaction", T0 + 2000 + i, session_id="big", user_id=f"u{i}", kind="like")
            )
    for i in range(orders):
        ledger.apply(_order(T0 + 400_000 + i, f"o{i}", f"u{i % viewers}", "big"))
    ledger.apply(ev("session_ended", T0 + HOUR, session_id="big"))
    for day in range(1, 11):  # later events of another session on every topic
        ts = T0 + day * DAY
        ledger.apply(started(ts, f"s{day}"))
        ledger.apply(join(ts, "w", sid=f"s{day}"))
        ledger.apply(_order(ts, f"p{day}", "w", f"s{day}"))
        ledger.apply(ev("interaction", ts, session_id=f"s{day}", user_id="w", kind="like"))
        ledger.apply(ev("group_joined", ts, merchant_id="m1", user_id="w", group_id="g1"))
    assert isinstance(ledger.sessions["big"].presence, SessionSummary) == fold_sessions
    return ledger


def _order(ts: int, order_id: str, user: str, sid: str) -> Any:
    return ev("order_paid", ts, **apparel_order(order_id, sid, user))


def test_a_summarized_session_does_not_grow_with_its_viewers_or_orders() -> None:
    """The state of one summarized session (its facts and summary) is the same size whether
    it had 100 viewers and 50 orders or ten times as many (the per-user totals are the
    ledger's, which grow with distinct users only)."""

    def session_bytes(viewers: int, orders: int, fold_sessions: bool = True) -> int:
        ledger = _one_session(viewers, orders, fold_sessions)
        return len(pickle.dumps(ledger.sessions["big"], protocol=5))

    # Only its sums' ints are longer (a sum of squares of 10x the terms: a byte or two each).
    assert abs(session_bytes(1000, 500) - session_bytes(100, 50)) <= 32
    # Without the session fold (presence folded only, as before) it grows with them.
    assert session_bytes(1000, 500, False) - session_bytes(100, 50, False) > 10_000
    large = _one_session(1000, 500)
    assert large.sessions["big"].orders == [] and not large.sessions["big"].interacting_users


def test_events_after_the_session_horizon_are_counted_and_not_the_sessions() -> None:
    """A view, an interaction and an order naming a session more than 7 days after its end:
    counted, no viewer, buyer or session order; the order is still an order. (Only with the
    session fold: without it every event naming a session is the session's, as before.)"""
    ledger = Ledger(dedupe_window_ms=DAY, fold_sessions=True)
    ledger.apply(started(T0))
    ledger.apply(ev("session_ended", T0 + HOUR, session_id="s1"))
    late = T0 + HOUR + SESSION_HORIZON_MS + 1
    ledger.apply(join(late, "u1"))
    ledger.apply(ev("interaction", late, session_id="s1", user_id="u1", kind="like"))
    ledger.apply(_order(late, "o1", "u1", "s1"))
    ledger.apply(join(late - 1, "u2"))  # within the horizon: the session's
    assert sum(ledger.after_session_horizon) == 3
    session = ledger.sessions["s1"]
    assert session.viewers == {"u2"} and session.orders == []
    assert [order.order_id for order in ledger.orders] == ["o1"]
    report = build_report(ledger)
    assert report["retention"]["after_session_horizon"] == 3
    assert report["claims"]["orders_after_minute_5"]["n"] == 0
    assert "3 named a session more than 7 days after its end" in render_table(report)


def test_a_version_4_state_loads_without_the_session_fold() -> None:
    ledger = Ledger(dedupe_window_ms=DAY)
    ledger.apply(join(T0, "u1"))
    for name in (
        "fold_sessions",
        "after_session_horizon",
        "_awaiting_summary",
        "summarized_sessions",
        "folded_buyers",
        "folded_dwellers",
        "month_first_joins",
    ):
        delattr(ledger, name)
    blob = MAGIC + bytes([4]) + zlib.compress(pickle.dumps((ledger, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert not restored.fold_sessions and restored.summarized_sessions == 0
    assert restored.month_first_joins == {} and restored.after_session_horizon == [0] * 5
    assert build_report(restored)["retention"]["after_session_horizon"] == 0


def test_the_session_horizon_does_not_depend_on_arrival_order() -> None:
    """A view and an order stamped after the session horizon, arriving before the session's
    end is known or after it: once the session is summarized the claims and counts are the
    same (the rule is on event time)."""

    def summarized(late_first: bool) -> dict[str, Any]:
        ledger = Ledger(dedupe_window_ms=DAY, fold_sessions=True)
        late = T0 + HOUR + SESSION_HORIZON_MS + 1
        late_events = [join(late, "u9", event_id="lj"), _order(late, "lo", "u1", "s1")]
        ledger.apply(started(T0))
        ledger.apply(ev("group_joined", T0, merchant_id="m1", user_id="u1", group_id="g1"))
        ledger.apply(join(T0 + 1000, "u1", event_id="j1"))
        ledger.apply(_order(T0 + 400_000, "o1", "u1", "s1"))
        ledger.apply(join(T0 + 2000, "u2", event_id="j2"))
        if late_first:
            for event in late_events:
                ledger.apply(event)
        ledger.apply(ev("session_ended", T0 + HOUR, event_id="end", session_id="s1"))
        if not late_first:
            for event in late_events:
                ledger.apply(event)
        for day in range(1, 10):  # every topic's horizon past the session horizon
            ts = T0 + day * DAY
            ledger.apply(started(ts, f"s{day}"))
            ledger.apply(join(ts, "w", sid=f"s{day}"))
            ledger.apply(_order(ts, f"p{day}", "w", f"s{day}"))
            ledger.apply(ev("interaction", ts, session_id=f"s{day}", user_id="w", kind="like"))
            ledger.apply(ev("group_joined", ts, merchant_id="m1", user_id="w", group_id="g1"))
        assert isinstance(ledger.sessions["s1"].presence, SessionSummary)
        report = build_report(ledger)
        return {"claims": report["claims"], "retention": report["retention"]}

    before, after = summarized(True), summarized(False)
    assert before["claims"] == after["claims"]
    # Counted at the apply when the end was known, else at the summary.
    assert before["retention"] == after["retention"]
    assert after["retention"]["after_session_horizon"] == 2


def test_an_order_between_the_tail_window_and_the_session_horizon_is_a_session_order() -> None:
    """An order 5 days after its session's end: past `post_live_tail`'s 3-day window, within
    the 7-day session horizon. It stays a session order (`orders_after_minute_5`, `live_aov`)
    and is no tail order, summarized or not (the summary counted it as a tail order when the
    horizon was the tail window)."""
    from agents.core.ledger import POST_LIVE_TAIL_MS

    def feed(fold_sessions: bool) -> dict[str, Any]:
        ledger = Ledger(dedupe_window_ms=DAY, fold_sessions=fold_sessions)
        ledger.apply(started(T0))
        ledger.apply(join(T0 + 1000, "u1"))
        ledger.apply(_order(T0 + 400_000, "o1", "u1", "s1"))
        ledger.apply(ev("session_ended", T0 + HOUR, session_id="s1"))
        late = T0 + HOUR + POST_LIVE_TAIL_MS + 2 * DAY
        assert late < T0 + HOUR + SESSION_HORIZON_MS
        ledger.apply(_order(late, "o2", "u1", "s1"))
        for day in range(6, 16):  # after o2 (older would expire); every horizon past the session's
            ts = T0 + day * DAY
            ledger.apply(started(ts, f"s{day + 1}"))
            ledger.apply(join(ts, "w", sid=f"s{day + 1}"))
            ledger.apply(_order(ts, f"p{day}", "w", f"s{day + 1}"))
            ledger.apply(ev("interaction", ts, session_id=f"s{day + 1}", user_id="w", kind="like"))
            ledger.apply(ev("group_joined", ts, merchant_id="m1", user_id="w", group_id="g1"))
        assert isinstance(ledger.sessions["s1"].presence, SessionSummary) == fold_sessions
        return build_report(ledger)["claims"]

    summarized, held = feed(True), feed(False)
    assert held["orders_after_minute_5"]["n"] == 12  # o1, o2 and the ten later sessions' orders
    assert held["post_live_tail"]["detail"]["tail_orders"] == 0
    for claim in ("orders_after_minute_5", "live_aov", "post_live_tail"):
        assert summarized[claim]["observed"] == pytest.approx(held[claim]["observed"], rel=1e-12)
        assert summarized[claim]["detail"] == held[claim]["detail"]


# The operator board and the HTML report's distributions read the summaries (issue 17).

#: What the session fold makes sketched on the board: a level's median watch time once it has
#: summarized sessions (`Ledger.folded_watch`: within the sketch's 1%); a summarized session's
#: own median is exact (computed at its summary), and so is every other figure.
_SKETCHED_OPERATOR = "median_watch_minutes"
#: ... and in the distributions: the watch minutes' percentiles (the folded pairs' sketches).
_SKETCHED_PERCENTILES = ("p10", "p25", "p50", "p75", "p90")


def _summarizing_board(
    records: list[Any], window_ms: int | None, groups: Ledger | None = None
) -> tuple[Ledger, OperatorBoard]:
    ledger = Ledger(window_ms, fold_sessions=window_ms is not None)
    ledger.membership_from = groups
    board = OperatorBoard()
    for decoded in records:
        observe(ledger, board, decoded, retired=False)
    return ledger, board


def _operator_against_truth(operator: dict[str, Any], truth: dict[str, Any]) -> int:
    """Every operator figure equals the truth reference's (windows left out: they depend on
    arrival order), the levels' medians within the sketch's bound; how many were sketched."""
    from tests.support.truth import operator_mismatches

    problems = operator_mismatches(operator, truth, cumulative_only=True)
    sketched = [p for p in problems if f".{_SKETCHED_OPERATOR}:" in p]
    assert [p for p in problems if p not in sketched] == [], problems[:10]
    for problem in sketched:
        assert not problem.startswith("operator.sessions."), problem  # a session's: exact
        path = problem.split(":")[0].removeprefix("operator.").split(".")
        got = operator[path[0]] if path[0] == "overall" else operator[path[0]][path[1]]
        want = truth[path[0]] if path[0] == "overall" else truth[path[0]][path[1]]
        assert math.isclose(
            got[_SKETCHED_OPERATOR], want[_SKETCHED_OPERATOR], rel_tol=RELATIVE_ACCURACY
        ), problem
    return len(sketched)


def _distributions_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    """The distributions of a summarizing ledger against the keep-everything one's: every
    figure to 1e-9, the watch minutes' percentiles within the sketch's bound."""
    got, want = copy.deepcopy(got), copy.deepcopy(want)
    for section, groups in (
        ("watch_minutes_by_membership", "groups"),
        ("watch_minutes_to_order_by_price_tier", "tiers"),
    ):
        for name, summary in want[section][groups].items():
            mine = got[section][groups][name]
            for key in _SKETCHED_PERCENTILES:
                a, b = mine.pop(key), summary.pop(key)
                assert (a is None) == (b is None), (section, name, key)
                if b is not None:
                    assert math.isclose(a, b, rel_tol=RELATIVE_ACCURACY), (section, name, key)
    assert _claims_close(got, want) == []


@pytest.mark.parametrize("name", ["xhs.jsonl", "impulse.jsonl"])
def test_the_operator_board_and_distributions_read_summarized_sessions(name: str) -> None:
    """With the session fold (2-day window), the operator figures of every session, room,
    merchant and overall equal the truth reference's (`operator_truth.py`), the levels'
    median watch times within the sketch's 1%; the distributions equal the keep-everything
    ledger's (their watch percentiles within 1%) and the HTML report renders the same page
    once those are set to the exact ones; so after a snapshot round trip, for the stream
    shuffled, and for it split over 3 partitions (membership from every group event) and
    merged."""
    from agents.core.html import render_html
    from agents.core.merge import merge_boards
    from tests.agents.core.test_merge import records, split

    stream = records(name.removesuffix(".jsonl"))
    decoded = [event for _topic, _key, event in stream]
    # The truth under the fold's rule: the sessions that never end are abandoned (issue 17).
    truth = fixture_operator_truth_folding(name.removesuffix(".jsonl"), 2 * DAY)
    everything = build_report(*_summarizing_board(decoded, None))
    ledger, board = _summarizing_board(decoded, 2 * DAY)
    started = sum(s.started_ts is not None for s in ledger.sessions.values())
    assert ledger.summarized_sessions >= 0.75 * started
    summarized = build_report(ledger, board)
    # In file order the windows are the truth's too.
    from tests.support.truth import operator_mismatches

    full = operator_mismatches(summarized["operator"], truth)
    assert [p for p in full if f".{_SKETCHED_OPERATOR}:" not in p] == []
    assert _operator_against_truth(summarized["operator"], truth) > 0  # some sketched
    _distributions_close(summarized["distributions"], everything["distributions"])

    # The HTML page: with the sketched figures (and what says what was folded) set to the
    # keep-everything report's, the page is the same, so every exact figure renders the same.
    page = copy.deepcopy(summarized)
    for key in ("retention", "distributions"):
        page[key] = everything[key]
    page["claims"][_SKETCHED_CLAIM] = everything["claims"][_SKETCHED_CLAIM]
    page["claims"]["reply_latency"] = everything["claims"]["reply_latency"]
    # ... and what the rule for sessions that never end changes (checked against the truth
    # with the rule above): their viewers in the room now and group joins after their newest
    # event, set to the keep-everything report's.
    for kind in ("rooms", "merchants", "sessions"):
        for level_id, figures in page["operator"][kind].items():
            for name in ("viewers_current", "group_joins"):
                figures[name] = everything["operator"][kind][level_id][name]
    for name in ("viewers_current", "group_joins"):
        page["operator"]["overall"][name] = everything["operator"]["overall"][name]
    for level in ("overall", *(f"{k}.{i}" for k in ("rooms", "merchants") for i in truth[k])):
        kind, _, level_id = level.partition(".")
        mine = page["operator"][kind] if kind == "overall" else page["operator"][kind][level_id]
        exact = everything["operator"][kind]
        exact = exact if kind == "overall" else exact[level_id]
        mine[_SKETCHED_OPERATOR] = exact[_SKETCHED_OPERATOR]
    assert _claims_close(page, everything) == []
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert render_html(page, generated_at=when) == render_html(everything, generated_at=when)

    restored = build_report(*load_state(dump_state(ledger, board)))
    assert restored["operator"] == summarized["operator"]
    assert restored["distributions"] == summarized["distributions"]

    shuffled = build_report(*_summarizing_board(jittered(decoded, 12 * HOUR), 2 * DAY))
    assert shuffled["retention"]["summarized_sessions"] > 0
    _operator_against_truth(shuffled["operator"], truth)
    _distributions_close(shuffled["distributions"], everything["distributions"])

    groups = _summarizing(
        [e for e in decoded if getattr(e, "type", "").startswith("group_")], 2 * DAY
    )
    parts = [
        _summarizing_board([e for _t, _k, e in part], 2 * DAY, groups) for part in split(stream, 3)
    ]
    assert sum(part[0].summarized_sessions for part in parts) >= 0.75 * started
    restored_parts = [load_state(dump_state(*part)) for part in parts]
    merged = build_report(
        merge_ledgers([p[0] for p in restored_parts]), merge_boards([p[1] for p in restored_parts])
    )
    assert _operator_against_truth(merged["operator"], truth) > 0
    _distributions_close(merged["distributions"], everything["distributions"])


def test_a_version_6_state_loads_its_summaries_without_the_board_parts() -> None:
    """A state written before the board read summaries (version 6: no `folded_watch`, no
    board parts in a `SessionSummary`, no distributions' part in `folded_figures`) loads,
    and its report is built, those parts empty."""
    ledger = _one_session(100, 50)
    summary = ledger.sessions["big"].presence
    assert isinstance(summary, SessionSummary) and summary.watch[0] > 0
    for name in ("folded_watch", "folded_payers"):
        delattr(ledger, name)
    # The pickled forms of before: a summary's slots without the new ones, and the sketch
    # holder's slots as the default `(None, slots)` pair.
    new_slots = ("watch", "watch_median_ms", "order_minutes", "order_offsets", "group_joins")
    old_summary = {n: getattr(summary, n) for n in SessionSummary.__slots__ if n not in new_slots}
    restored_summary = SessionSummary.__new__(SessionSummary)
    restored_summary.__setstate__(old_summary)
    assert restored_summary.watch[0] == 0 and restored_summary.orders == summary.orders
    figures = ledger.folded_figures
    old_figures = {
        n: getattr(figures, n)
        for n in ("price_watch", "price_watch_sessions", "reply_latency_s", "watch_minutes_by_tier")
    }
    restored_figures = type(figures).__new__(type(figures))
    restored_figures.__setstate__((None, old_figures))
    assert restored_figures.order_minutes == {} and restored_figures.price_watch_sessions == 1
    ledger.sessions["big"].presence = restored_summary
    ledger.folded_figures = restored_figures
    blob = MAGIC + bytes([6]) + zlib.compress(pickle.dumps((ledger, OperatorBoard()), protocol=5))
    restored, board = load_state(blob)
    assert restored.folded_watch == {} and restored.folded_payers == {}
    assert build_report(restored, board)["operator"]["overall"]["orders"] == 50 + 10


def test_a_summarized_sessions_clickers_are_kept_as_their_count() -> None:
    """The board's distinct product clickers of a summarized session become their count at the
    summary (`OperatorBoard.take_folded`): its state does not grow with them (it held a set per
    session for ever: 142 -> 250 KB of the 150-day soak's state from day 80 to the end), the
    figures stay, and a click naming it later (past its session horizon) is not its own."""

    def board_after(clickers: int) -> tuple[Ledger, OperatorBoard]:
        ledger, board = Ledger(dedupe_window_ms=DAY, fold_sessions=True), OperatorBoard()

        def feed(event: Any) -> None:
            if ledger.apply(event):
                board.observe(event)
                if ledger.folded_ids:
                    board.take_folded(ledger)

        feed(started(T0, "big"))
        for i in range(clickers):
            feed(join(T0 + 1000 + i, f"u{i}", sid="big"))
            click = ev(
                "product_clicked", T0 + 2000 + i, session_id="big", user_id=f"u{i}", sku_id="k1"
            )
            feed(click)
            feed(
                ev("product_clicked", T0 + 3000 + i, session_id="big", user_id=f"u{i}", sku_id="k2")
            )
        feed(ev("session_ended", T0 + HOUR, session_id="big"))
        for day in range(1, 11):  # every horizon past the session's
            ts = T0 + day * DAY
            feed(started(ts, f"s{day}"))
            feed(join(ts, "w", sid=f"s{day}"))
            feed(_order(ts, f"p{day}", "w", f"s{day}"))
            feed(ev("interaction", ts, session_id=f"s{day}", user_id="w", kind="like"))
            feed(ev("group_joined", ts, merchant_id="m1", user_id="w", group_id="g1"))
        assert isinstance(ledger.sessions["big"].presence, SessionSummary)
        return ledger, board

    small, large = board_after(100), board_after(1000)
    assert large[1].product_clickers["big"] == 1000
    # Only the count's int is longer (a byte); as sets, 900 more user ids.
    assert (
        len(pickle.dumps(large[1].product_clickers)) - len(pickle.dumps(small[1].product_clickers))
        <= 4
    )
    figures = build_report(*large)["operator"]["sessions"]["big"]
    assert (figures["product_clicks"], figures["product_clickers"]) == (2000, 1000)
    ledger, board = large
    late = ev("product_clicked", T0 + 11 * DAY, session_id="big", user_id="new", sku_id="k1")
    assert ledger.apply(late)
    board.observe(late)
    figures = build_report(ledger, board)["operator"]["sessions"]["big"]
    assert (figures["product_clicks"], figures["product_clickers"]) == (2000, 1000)
