"""The dedupe's wide keys (issue 19, `agents.core.seen.wide_key`): ids too long for the runs'
16 bytes, shaped as UUIDs or ULIDs (behind a short prefix), are 24-byte keys, read back exactly;
near-misses stay in the set. The truth is a plain set of the id strings built here."""

from __future__ import annotations

import pickle
import random
import uuid
import zlib

from agents.core import Ledger, OperatorBoard
from agents.core.merge import merge_ledgers
from agents.core.persist import MAGIC, dump_state, load_state
from agents.core.seen import MIN_BATCH, wide_id, wide_key
from tests.agents.core.test_seen import _key, join

T0 = 1_721_800_800_000
DAY = 86_400_000
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _ulid(rng: random.Random) -> str:
    return rng.choice("01234567") + "".join(rng.choice(CROCKFORD) for _ in range(25))


def _ids(rng: random.Random, n: int) -> list[str]:
    """`n` distinct ids of every shape, with the same UUIDs and ULIDs in both cases, and
    near-misses (one wrong character, mixed case, a prefix too long, a ULID above 128 bits)."""
    out: list[str] = []
    while len(out) < n:
        u, v = _uuid(rng), _ulid(rng)
        kind = len(out) % 12
        out.extend(
            [
                [u, u.upper()],
                ["ord-" + u, "ORD-" + u],
                [v, v.lower()],
                ["evt_" + v, "é" + v],
                [u[:5] + "g" + u[6:], u[:7] + "-" + u[8:]],  # a wrong character
                [u[:3] + u[3:].upper() if u[3:].lower() != u[3:].upper() else u + "x", "x" + u],
                ["a-long-prefix-" + u, "payment-" + v],  # prefixes of 14 and 8 bytes
                ["8" + v[1:], v[:4] + "U" + v[5:]],  # above 128 bits, not Crockford
                [f"e-{len(out)}", f"an-id-of-16-b{len(out) % 1000:03d}"],
                [u.replace("-", ""), v + "-"],  # other shapes
                [str(uuid.UUID(int=len(out))), "0" * 26],  # no letter: read as lower / upper
                [f"s-{len(out)}-" + u[:10], "ULID" * 7],
            ][kind]
        )
    return list(dict.fromkeys(out))[:n]


def test_wide_keys_are_exact_and_reversible() -> None:
    rng = random.Random(3)
    ids = _ids(rng, 24_000)
    keys = {event_id: wide_key(event_id) for event_id in ids}
    read = {event_id: key for event_id, key in keys.items() if key >= 0}
    assert len(set(read.values())) == len(read)  # one-to-one
    assert all(wide_id(key) == event_id for event_id, key in read.items())
    assert all(0 <= key < 1 << 192 for key in read.values())
    u = "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"
    assert wide_key(u) != wide_key(u.upper()) and min(wide_key(u), wide_key(u.upper())) >= 0
    ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    assert (
        wide_key(ulid) != wide_key(ulid.lower())
        and min(wide_key(ulid), wide_key(ulid.lower())) >= 0
    )
    for near in (
        "3F2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e",  # mixed case
        "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4g",  # a wrong character
        "3f2b1c9e-4d5a-4b6c-8d7e_9f0a1b2c3d4e",
        "3f2b1c9e4d5a4b6c8d7e9f0a1b2c3d4e",  # no dashes
        "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e ",  # something after it
        "prefix-of-12-3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e",  # a prefix too long
        "81ARZ3NDEKTSV4RRFFQ69G5FAV",  # above 128 bits
        "01ARZ3NDEKTSV4RRFFQ69G5FAI",  # not Crockford's
        "01ARZ3NDEKTSV4RRFFQ69G5FAv",  # mixed case
    ):
        assert wide_key(near) == -1, near
    for taken in (" " + u, "1234567" + u, "ord-" + ulid, "\x00" + u, "é" + ulid.lower()):
        assert wide_key(taken) >= 0 and wide_id(wide_key(taken)) == taken
    shapes = [event_id for event_id in ids if read.get(event_id, -1) >= 0]
    assert len(shapes) > len(ids) // 3


def _sent(rng: random.Random, ids: list[str]) -> list[tuple[int, str]]:
    events = [(T0 + i * 1_000, event_id) for i, event_id in enumerate(ids)]
    sent = list(events)
    for i, event in enumerate(events):
        if i % 3 == 0:
            sent.insert(min(len(sent), i + rng.randint(1, 20_000)), event)
    return sent


def test_every_shape_is_deduplicated_exactly_through_snapshots_and_merges() -> None:
    """40,000 ids of every shape (and their near-misses), a third sent again up to 20,000
    records later: duplicates and ids as a plain set of the strings gives, with and without a
    window, in the ledger, after a snapshot, and merged from three partitions."""
    rng = random.Random(19)
    ids = _ids(rng, 40_000)
    sent = _sent(rng, ids)
    truth_seen: set[str] = set()
    truth_duplicates = 0
    for _ts, event_id in sent:
        truth_duplicates += event_id in truth_seen
        truth_seen.add(event_id)
    wide = {event_id for event_id in truth_seen if wide_key(event_id) >= 0}
    long_others = {
        event_id for event_id in truth_seen if event_id not in wide and len(event_id.encode()) >= 16
    }
    assert len(wide) > 10_000 and len(long_others) > 5_000
    probes = sorted(truth_seen)[::97]
    early = set(ids[:20_000])  # moved out of the set by the end
    for window in (None, 30 * DAY):
        ledger = Ledger(dedupe_window_ms=window)
        parts = [Ledger(dedupe_window_ms=window) for _ in range(3)]
        for n, (ts, event_id) in enumerate(sent):
            ledger.apply(join(ts, event_id, user=f"u{ts % 97}"))
            parts[n % 3].apply(join(ts, event_id, user=f"u{ts % 97}"))
        assert ledger.counts.duplicates == truth_duplicates
        assert ledger.counts.valid == len(truth_seen)
        assert len(ledger._seen_wide) > len(wide) - 2 * MIN_BATCH  # moved in batches
        kept = ledger._kept_from_hour
        assert all(ledger._seen_wide.holds(wide_key(event_id), kept) for event_id in early & wide)
        assert len(ledger._seen_ids) < len(long_others) + ledger._seen_batch // 2
        assert {_key(event_id) for event_id in long_others} <= ledger._seen_ids
        assert ledger.seen_ids() == {_key(event_id) for event_id in truth_seen}
        assert ledger.seen_id_count() == len(truth_seen)
        restored, _board = load_state(dump_state(ledger, OperatorBoard()))
        merged = merge_ledgers(parts)
        for copy in (restored, merged):
            assert copy.seen_ids() == {_key(event_id) for event_id in truth_seen}
            for event_id in probes:  # each id's copy is a duplicate
                assert not copy.apply(join(T0 + 39_000_000, event_id))
                assert copy.refused_as == "duplicate"
            fresh = _ids(random.Random(7), 600)
            fresh = [event_id for event_id in fresh if event_id not in truth_seen]
            for event_id in fresh:  # and a new id is new, its copy a duplicate
                assert copy.apply(join(T0 + 39_000_000, event_id))
                assert not copy.apply(join(T0 + 39_000_000, event_id))


def test_an_early_version_10_state_without_wide_keys_loads() -> None:
    rng = random.Random(5)
    ids = [_uuid(rng) for _ in range(2 * MIN_BATCH)]
    ledger = Ledger(dedupe_window_ms=DAY)
    for i, event_id in enumerate(ids[:500]):
        ledger.apply(join(T0 + i * 1_000, event_id))
    # As this session's version 10 before the wide keys: no wide run, the set's keys `_id_key`s.
    del ledger._seen_wide
    as_before = {(1 << 255) + wide_key(event_id): _key(event_id) for event_id in ids[:500]}
    assert set(as_before) == ledger._seen_ids  # the set's keys now
    ledger._seen_ids = set(as_before.values())
    for hours in ledger._id_hours:
        for hour, keys in hours.items():
            hours[hour] = [as_before[key] for key in keys]
    blob = MAGIC + bytes([10]) + zlib.compress(pickle.dumps((ledger, OperatorBoard()), protocol=5))
    restored, _board = load_state(blob)
    assert not restored.apply(join(T0 + 7_000, ids[7]))
    for i, event_id in enumerate(ids[500:], start=500):
        assert restored.apply(join(T0 + i * 1_000, event_id))
    assert len(restored._seen_wide) >= MIN_BATCH
    assert not restored.apply(join(T0 + 7_000, ids[7]))
    assert restored.seen_ids() == {_key(event_id) for event_id in ids}
