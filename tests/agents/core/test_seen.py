"""The dedupe set's compacted part (issue 19, `agents.core.seen`): ids moved out of the
ledger's set are still found exactly, with and without a window, through snapshots and merges;
the truth is counted from the events with a plain set, not by the ledger."""

from __future__ import annotations

import pickle
import random
import zlib
from typing import Any

from agents.core import Ledger, OperatorBoard
from agents.core.ledger import TOPICS
from agents.core.merge import merge_ledgers
from agents.core.persist import MAGIC, dump_state, load_state
from agents.core.seen import KEY_LIMIT, MIN_BATCH, SeenRuns
from schemas import event_adapter

T0 = 1_721_800_800_000
HOUR = 3_600_000
DAY = 24 * HOUR


def join(ts: int, event_id: str, user: str = "u1", sid: str = "s1") -> Any:
    return event_adapter.validate_python(
        {
            "type": "viewer_joined",
            "event_id": event_id,
            "ts": ts,
            "session_id": sid,
            "user_id": user,
        }
    )


def _key(event_id: str) -> int:
    return int.from_bytes(b"\x01" + event_id.encode(), "big")


def test_the_filter_has_no_false_negative_and_few_false_positives() -> None:
    rng = random.Random(5)
    alphabet = "abcdef0123456789-\x00"
    ids = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 15))) for _ in range(30_000)}
    held, others = sorted(ids)[::2], sorted(ids)[1::2]
    runs = SeenRuns()
    kept: list[int | None] = [None] * len(TOPICS)
    for start in range(0, len(held), 5_000):  # in batches: the filter grows and is rebuilt
        runs.absorb([([_key(i) for i in held[start : start + 5_000]], 0)], kept)
    assert len(runs) == len(held)
    assert all(runs.might_hold(_key(i)) and runs.holds(_key(i), kept) for i in held)
    assert not any(runs.holds(_key(i), kept) for i in others)
    assert sum(runs.might_hold(_key(i)) for i in others) < 0.02 * len(others)
    again = pickle.loads(pickle.dumps(runs))  # noqa: S301 (our own bytes)
    assert all(again.might_hold(_key(i)) and again.holds(_key(i), kept) for i in held)


def test_duplicates_are_counted_exactly_past_many_batches() -> None:
    """40,000 events, a third of them sent again up to 20,000 records later (ids short and
    long, the long ones kept in the set): the duplicates and the ids are those a plain set of
    the lines gives, with and without a window."""
    rng = random.Random(11)
    events = []
    for i in range(40_000):
        event_id = f"e-{i}" if i % 7 else f"a-long-event-id-{i:012d}"
        events.append((T0 + i * 1_000, event_id))
    sent = list(events)
    for i, event in enumerate(events):
        if i % 3 == 0:
            sent.insert(min(len(sent), i + rng.randint(1, 20_000)), event)
    truth_seen: set[str] = set()
    truth_duplicates = 0
    for _ts, event_id in sent:
        truth_duplicates += event_id in truth_seen
        truth_seen.add(event_id)
    for window in (None, 30 * DAY):
        ledger = Ledger(dedupe_window_ms=window)
        for ts, event_id in sent:
            ledger.apply(join(ts, event_id, user=f"u{ts % 97}"))
        assert ledger.counts.duplicates == truth_duplicates
        assert ledger.counts.valid == len(truth_seen)
        assert len(ledger._seen_runs) > 2 * MIN_BATCH  # the runs held most of them
        assert ledger.seen_ids() == {_key(i) for i in truth_seen}
        assert all(_key(i) < KEY_LIMIT for i in truth_seen if not i.startswith("a-"))


def test_an_id_out_of_the_window_is_forgotten_in_the_runs_as_in_the_set() -> None:
    """With a 1-day window, an id is remembered while its hour is inside its topic's window
    (a copy is a duplicate) and forgotten after (the same id, stamped later, is new), whether
    it was moved to the runs or not; the runs drop dead keys once they are half of them."""
    ledger = Ledger(dedupe_window_ms=DAY)
    per_hour = 400
    for hour in range(72):
        for i in range(per_hour):
            assert ledger.apply(join(T0 + hour * HOUR + i * 1_000, f"e-{hour}-{i}"))
        # A copy of an id of 12 hours ago: inside the window, a duplicate.
        if hour >= 12:
            assert not ledger.apply(join(T0 + (hour - 12) * HOUR, f"e-{hour - 12}-0"))
            assert ledger.refused_as == "duplicate"
    # Ids of hours out of the window still in the runs' arrays (dead, not dropped yet):
    # forgotten all the same, so the same id under a ts inside the window is new.
    held = {int.from_bytes(bytes(key).ljust(16, b"\x00"), "big") for key in ledger._seen_runs.keys}
    dead = [f"e-{h}-{i}" for h in range(40) for i in range(1, per_hour, 50)]
    dead = [event_id for event_id in dead if _key(event_id) in held]
    assert dead
    for event_id in dead:
        assert ledger.apply(join(T0 + 71 * HOUR, event_id))
    kept = len(ledger.seen_ids())
    assert 24 * per_hour <= kept <= 26 * per_hour + 1
    assert ledger.seen_id_count() == kept
    assert len(ledger._seen_runs) <= 2 * kept


def test_ids_stamped_too_far_ahead_for_a_tag_stay_in_the_set() -> None:
    """An event stamped past the year ~32,000 (valid: `ts` has no upper bound) is applied;
    its id's hour does not fit a tag, so it stays in the set, and its copy is a duplicate
    (the future-stamp cap keeps it from expiring what follows, as a worker's does)."""
    ledger = Ledger(dedupe_window_ms=DAY, future_tolerance_ms=DAY)
    far = 2**62
    assert ledger.apply(join(far, "far-1"))
    for i in range(2 * MIN_BATCH):
        assert ledger.apply(join(T0 + i * 1_000, f"e-{i}"))
    assert len(ledger._seen_runs) >= MIN_BATCH
    assert _key("far-1") in ledger._seen_ids
    assert not ledger.apply(join(far, "far-1"))
    assert not ledger.apply(join(T0 + 5_000, "e-5"))


def test_a_version_9_state_loads_and_its_ids_are_still_known() -> None:
    ledger = Ledger(dedupe_window_ms=DAY)
    for i in range(500):
        ledger.apply(join(T0 + i * 1_000, f"e-{i}"))
    assert not len(ledger._seen_runs)  # fewer than a batch: all in the set, as in version 9
    del ledger._seen_runs, ledger._seen_batch
    blob = MAGIC + bytes([9]) + zlib.compress(pickle.dumps((ledger, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert not restored.apply(join(T0 + 7 * 1_000, "e-7"))
    for i in range(500, 500 + 2 * MIN_BATCH):  # its ids move to the runs as new ones come
        assert restored.apply(join(T0 + i * 1_000, f"e-{i}"))
    assert len(restored._seen_runs) >= MIN_BATCH
    assert not restored.apply(join(T0 + 7 * 1_000, "e-7"))
    again, _board = load_state(dump_state(restored, OperatorBoard()))
    assert again.seen_ids() == restored.seen_ids()
    assert not again.apply(join(T0 + 9 * 1_000, "e-9"))


def test_partitions_runs_merge_into_the_union_of_their_ids() -> None:
    parts = [Ledger(dedupe_window_ms=2 * DAY) for _ in range(3)]
    truth: set[int] = set()
    for i in range(3 * MIN_BATCH + 100):
        event_id = f"e-{i}"
        parts[i % 3].apply(join(T0 + i * 10_000, event_id))
        truth.add(_key(event_id))
    parts[1].apply(join(T0 + 5, "e-0"))  # an id in two partitions
    truth.add(_key("e-0"))
    merged = merge_ledgers(parts)
    assert merged.seen_ids() == truth
    assert not merged.apply(join(T0 + 3 * 10_000, "e-3"))
