"""The dedupe set's compacted part (issue 19, `agents.core.seen`): ids moved out of the
ledger's set are still found exactly, with and without a window, through snapshots and merges;
the truth is counted from the events with a plain set, not by the ledger."""

from __future__ import annotations

import pickle
import random
import zlib
from typing import Any

import numpy as np

from agents.core import Ledger, OperatorBoard
from agents.core.ledger import TOPICS
from agents.core.merge import merge_ledgers
from agents.core.persist import MAGIC, dump_state, load_state
from agents.core.seen import (
    KEY_LIMIT,
    MIN_BATCH,
    SeenRuns,
    _narrow_as_keys,
    narrow_id_key,
    narrow_key,
)
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


def _narrow_truth(event_id: str) -> int:
    """`narrow_key` from the string: the prefix (at most 2 UTF-8 bytes) and the trailing
    digits (1 to 12, no leading zero), or -1."""
    digits = len(event_id) - len(event_id.rstrip("0123456789"))
    prefix, tail = event_id[: len(event_id) - digits], event_id[len(event_id) - digits :]
    if not 1 <= digits <= 12 or len(prefix.encode()) > 2 or (digits > 1 and tail[0] == "0"):
        return -1
    return (_key(prefix) << 40) | int(tail)


def _narrow_ids(rng: random.Random, n: int) -> list[str]:
    """Ids shaped `prefix` + digits and near-misses: leading zeros, 13 digits, 3-byte and
    non-ASCII prefixes, digits only, none."""
    out: list[str] = []
    for i in range(n):
        number = rng.randrange(10 ** rng.randrange(1, 14))
        prefix = rng.choice(["e-", "e-", "e-", "", "x", "é", "ab-", "e-0", "ü-", "-"])
        out.append(prefix + (str(number) if i % 9 else f"0{number}"))
    return list(dict.fromkeys(out))


def test_narrow_keys_are_the_strings_shape_and_reversible() -> None:
    rng = random.Random(13)
    edges = ["0", "7", "e-0", "e-00", "e-999999999999", "e-"]
    ids = list(dict.fromkeys(_narrow_ids(rng, 30_000) + edges))
    keys = [_key(event_id) for event_id in ids]
    truth = [_narrow_truth(event_id) for event_id in ids]
    assert sum(t >= 0 for t in truth) > len(ids) // 3 and sum(t < 0 for t in truth) > 1000
    assert [narrow_key(key) for key in keys] == truth
    assert all(narrow_id_key(t) == key for t, key in zip(truth, keys, strict=True) if t >= 0)
    assert len({t for t in truth if t >= 0}) == sum(t >= 0 for t in truth)  # one-to-one
    assert all(t < 1 << 64 for t in truth)
    # The runs' whole-batch reading (numpy) is the same.
    runs = SeenRuns()
    fit = [key for key in keys if key < KEY_LIMIT]
    runs.absorb([(fit, 5)], [None] * 8)
    assert sorted(runs.narrow.tolist()) == sorted(t for t in truth if t >= 0)
    assert len(runs.keys) == len(fit) - sum(t >= 0 for t in truth)
    assert runs.max_key == max(fit)
    assert sorted(key for key, _tag in runs.live_keys([None] * 8)) == sorted(fit)


def test_narrow_and_other_ids_are_deduplicated_exactly_past_windows_and_snapshots() -> None:
    """Ids of both kinds, a third sent again later, under a 1-day window over 4 days: the
    duplicates and the ids remembered are a plain set's of the strings, after a snapshot, one
    written before narrow keys (its 16-byte keys narrowed at load), and a merge."""
    rng = random.Random(31)
    ids = _narrow_ids(rng, 16_000)
    sent = [(T0 + i * 20_000, event_id) for i, event_id in enumerate(ids)]
    sent += [(ts + rng.randint(1, 300) * 20_000, event_id) for ts, event_id in sent[::3]]
    sent.sort(key=lambda pair: pair[0])  # copies within 100 minutes, ids over ~4 days
    ledger, parts = Ledger(dedupe_window_ms=DAY), [Ledger(dedupe_window_ms=DAY) for _ in range(2)]
    first: dict[str, int] = {}
    for n, (ts, event_id) in enumerate(sent):
        assert ledger.apply(join(ts, event_id)) is (event_id not in first)
        first.setdefault(event_id, ts)
        parts[n % 2].apply(join(ts, event_id))
    assert ledger.counts.duplicates == len(sent) - len(ids)
    assert len(ledger._seen_runs.narrow) > 1000 and len(ledger._seen_runs.keys) > 1000
    last = sent[-1][0]

    # Ids are remembered by the hour of their ts, from the first hour the ledger keeps (the
    # horizon's own or the one before; not what is tested here).
    def remembered(ledger: Ledger) -> set[int]:
        (kept_from,) = [hour for hour in ledger._kept_from_hour if hour is not None]
        assert (last - DAY) // HOUR - 1 <= kept_from <= (last - DAY) // HOUR
        return {_key(i) for i, ts in first.items() if ts // HOUR >= kept_from}

    assert ledger.seen_ids() == remembered(ledger)
    truth = first
    restored, _board = load_state(dump_state(ledger, OperatorBoard()))
    runs = ledger._seen_runs
    before = SeenRuns()  # as pickled before narrow keys: every key in 16 bytes
    before.__setstate__(
        (
            np.sort(np.concatenate([runs.keys, _narrow_as_keys(runs.narrow)])).tobytes(),
            np.concatenate([runs.tags, runs.narrow_tags])[
                np.argsort(np.concatenate([runs.keys, _narrow_as_keys(runs.narrow)]))
            ].tobytes(),
        )
    )
    assert sorted(before.live_keys([None] * 8)) == sorted(runs.live_keys([None] * 8))
    assert len(before.narrow) == len(runs.narrow)
    merged = merge_ledgers(parts)
    assert restored.seen_ids() == remembered(restored)
    # A merge keeps the parts' sets whole (ids of the hour before its horizon too, as before
    # narrow keys): every id it must remember, and only ids sent.
    assert remembered(merged) <= merged.seen_ids() <= {_key(i) for i in first}
    for copy in (restored, merged):
        for event_id in list(truth)[-3000::7]:  # inside the window: a duplicate
            assert not copy.apply(join(last, event_id))
    for event_id in ["e-0", "e-1", "e-07", "é1", "e-1234567890123"]:
        if event_id not in truth:
            assert restored.apply(join(last, event_id))
            assert not restored.apply(join(last, event_id))
