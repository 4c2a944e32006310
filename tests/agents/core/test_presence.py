"""The ledger's compact state: packed presence reads back exactly, event id keys are 1-to-1."""

from __future__ import annotations

import random

import pytest

from agents.core.ledger import FoldedPresence, Presence, _id_key


def test_reads_back_every_record_in_arrival_order() -> None:
    rng = random.Random(7)
    presence, plain = Presence(), {}
    for seq in range(1, 5_000):
        user = f"u-{rng.randrange(300)}"
        # Event times of any sign and size the contract allows, ties included.
        ts = rng.choice([0, -1, -(10**13), 1_719_792_020_971, 2**45]) + rng.randrange(3)
        joined = rng.random() < 0.5
        presence.add(user, ts, seq, joined)
        plain.setdefault(user, []).append((ts, seq, joined))
    assert len(presence) == len(plain) and set(presence) == set(plain)
    assert dict(presence.items()) == plain
    # Some users went past the tuple size into a list, some have a single record.
    assert max(map(len, plain.values())) > 16 and "u-nobody" not in presence
    assert presence.get("u-nobody", ()) == ()
    assert set(presence.joined_users()) == {
        user for user, records in plain.items() if any(joined for _, _, joined in records)
    }


def test_the_earliest_record_and_first_join_equal_a_scan_of_every_record() -> None:
    """`Presence.earliest_ts` and `FoldedPresence.earliest_join_ts` (the group compaction's
    lookup floor reads them instead of every record, issue 17) give what a scan of the
    decoded records gives: ts of any sign, leaves before joins, users with leaves only."""
    rng = random.Random(11)
    assert Presence().earliest_ts() is None
    for _round in range(30):
        presence, plain = Presence(), {}
        # One session's times: any sign, within a watch time the packing holds.
        base = rng.choice([0, -(10**13), 1_719_792_020_971, 2**40])
        for seq in range(1, rng.randrange(2, 400)):
            user = f"u-{rng.randrange(40)}"
            ts = base + rng.randrange(-5_000, 5_000)
            joined = rng.random() < 0.4
            presence.add(user, ts, seq, joined)
            plain.setdefault(user, []).append((ts, seq, joined))
        assert presence.earliest_ts() == min(ts for rows in plain.values() for ts, _, _ in rows)
        folded = FoldedPresence.fold(presence, base + 10_000, None, [])
        joins = [ts for rows in plain.values() for ts, _, joined in rows if joined]
        assert folded.earliest_join_ts() == (min(joins) if joins else None)


def test_first_joins_equal_the_earliest_join_added() -> None:
    """`Presence.first_joins` (read off the packed records, issue 19: a day's freeze reads
    every viewer of its sessions) gives, by user, the least `ts` of the joins added: one
    record or many (overflow int, tuple, list), leaves before and between joins, users with
    leaves only (none), ties, and a `ts` outside int64 (its first record in the overflow)."""
    rng = random.Random(19)
    for _round in range(40):
        presence, added = Presence(), {}
        base = rng.choice([0, -(10**13), 1_719_792_020_971, 2**40, 2**70, -(2**70)])
        for seq in range(1, rng.randrange(2, 600)):
            user = f"u-{rng.randrange(rng.choice([3, 40, 200]))}"
            ts = base + rng.randrange(-5_000, 5_000)
            joined = rng.random() < 0.4
            presence.add(user, ts, seq, joined)
            added.setdefault(user, []).append((ts, joined))
        expected = sorted(
            (user, min(ts for ts, joined in rows if joined))
            for user, rows in added.items()
            if any(joined for _ts, joined in rows)
        )
        assert presence.first_joins() == expected
    assert Presence().first_joins() == []


def test_single_leave_is_not_a_join() -> None:
    presence = Presence()
    presence.add("u-1", 10, 1, False)
    presence.add("u-2", 10, 2, True)
    assert presence["u-1"] == [(10, 1, False)]
    assert list(presence.joined_users()) == ["u-2"]


def test_arrival_numbers_beyond_the_packing_are_refused() -> None:
    with pytest.raises(OverflowError):
        Presence().add("u-1", 0, 1 << 48, True)


def test_event_id_keys_are_one_to_one() -> None:
    """The dedupe key of an event id is reversible, so distinct ids never count as repeats."""
    ids = ["a", "\x00a", "\x00\x00a", "e-1", "e-01", "é", "e" * 128, "\U0001f600", " "]
    keys = [_id_key(event_id) for event_id in ids]
    assert len(set(keys)) == len(ids)
    for event_id, key in zip(ids, keys, strict=True):
        raw = key.to_bytes((key.bit_length() + 7) // 8, "big")
        assert raw[0] == 1 and raw[1:].decode() == event_id


def test_a_presence_pickled_before_slots_loads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A version 10 state holds a presence as `(None, {"_packed": user -> int | tuple | list})`
    (the default pickle of the old slotted class): it loads into slots, the same records."""
    import pickle
    import zlib

    from agents.core import Ledger, OperatorBoard
    from agents.core.ledger import _held, _pack
    from agents.core.persist import MAGIC, load_state

    rng = random.Random(11)
    ledger = Ledger()
    session = ledger._session("s-1", 7)
    presence = session.presence
    assert isinstance(presence, Presence)
    for seq in range(1, 2_000):
        user = f"u-{rng.randrange(150)}"
        # One first record with a ts past int64 (kept in the overflow).
        ts = rng.choice([0, -(10**13), 1_719_792_020_971, 2**70]) + rng.randrange(3)
        presence.add(user, ts, seq, rng.random() < 0.5)
    plain = dict(presence.items())
    assert any(records[0][0] >= 2**63 for records in plain.values())
    old = {user: _held([_pack(*r) for r in records]) for user, records in plain.items()}
    with monkeypatch.context() as patched:
        patched.setattr(Presence, "__getstate__", lambda self: (None, {"_packed": old}))
        pickled = pickle.dumps((ledger, OperatorBoard()), protocol=5)
    restored, _board = load_state(MAGIC + bytes([10]) + zlib.compress(pickled))
    got = restored.sessions["s-1"].presence
    assert isinstance(got, Presence)
    assert list(got) == list(plain) and dict(got.items()) == plain
    assert got.joined_users() == presence.joined_users()
    got.add("u-new", 5, 5_000, True)
    assert got["u-new"] == [(5, 5_000, True)]


def test_first_records_far_from_the_sessions_first_read_back_and_pickle_the_same() -> None:
    """The first records are int32s less the session's first record's `ts` and arrival
    (issue 19): one too far from them either way (weeks apart, 2**30 arrivals on, an arrival
    before the first slot's) reads back exactly from the overflow, and survives a pickle."""
    import pickle

    rng = random.Random(19)
    for _round in range(20):
        presence, plain = Presence(), {}
        base = rng.choice([0, -(10**13), 1_719_792_020_971, 2**62])
        for seq in range(1, rng.randrange(2, 300)):
            user = f"u-{rng.randrange(120)}"
            ts = base + rng.choice([0, 1, -(2**31) - 5, 2**31 + 5, 40 * 86_400_000, -(10**12)])
            ts += rng.randrange(-3_000, 3_000)
            arrival = rng.choice([seq, seq + 2**30, seq + 2**40])
            joined = rng.random() < 0.5
            presence.add(user, ts, arrival, joined)
            plain.setdefault(user, []).append((ts, arrival, joined))
        assert list(presence) == list(plain) and dict(presence.items()) == plain
        assert presence.earliest_ts() == min(t for rows in plain.values() for t, _, _ in rows)
        got = pickle.loads(pickle.dumps(presence))
        assert list(got) == list(plain) and dict(got.items()) == plain
        assert got.joined_users() == presence.joined_users()


def test_a_presence_saved_with_int64_first_records_loads_the_same() -> None:
    """A state saved before the int32 arrays (the same pickled format: int64 first records)
    loads the same, first records beyond int32 of each other included (user by user)."""
    from agents.core.ledger import _pack

    for spread in (5_000, 2**40):
        users = [f"u-{n}" for n in range(50)]
        firsts = [(1_719_792_020_971 + n * spread, 3 * n + 1, n % 2 == 0) for n in range(50)]
        # What the int64 arrays held: ts, and `seq << 1 | joined`; u-7's first record in
        # the overflow (-1), and u-3 with a leave after its join.
        sj = [seq << 1 | joined for _ts, seq, joined in firsts]
        sj[7] = -1
        state = {
            "users": users,
            "ts": b"".join(t.to_bytes(8, "little", signed=True) for t, _, _ in firsts),
            "sj": b"".join(v.to_bytes(8, "little", signed=True) for v in sj),
            "more": {7: _pack(*firsts[7]), 3: _pack(firsts[3][0] + 9, 500, False)},
            "flags": b"",
            "interacting_only": set(),
        }
        got = Presence.__new__(Presence)
        got.__setstate__(state)
        want = {user: [first] for user, first in zip(users, firsts, strict=True)}
        want["u-3"].append((firsts[3][0] + 9, 500, False))
        assert list(got) == users and dict(got.items()) == want
        got.add("u-new", 5, 5_000, True)
        assert got["u-new"] == [(5, 5_000, True)]


def test_interacting_users_are_a_set_whoever_came_first() -> None:
    """The interacting flag by slot answers as the set it replaces: users who interacted
    before, after or without a join, any number of times; through a snapshot; and once the
    session's presence is folded, as a set of their own."""
    import pickle

    from agents.core.ledger import InteractingUsers, SessionFacts

    rng = random.Random(5)
    session, plain = SessionFacts(), set()
    assert isinstance(session.interacting_users, InteractingUsers)
    for seq in range(1, 3_000):
        user = f"u-{rng.randrange(400)}"
        if rng.random() < 0.3:
            session.interacting_users.add(user)
            plain.add(user)
        else:
            session.presence.add(user, seq * 10, seq, rng.random() < 0.7)  # type: ignore[call-arg]
    view = session.interacting_users
    assert set(view) == plain and len(view) == len(plain) and sorted(view) == sorted(plain)
    assert all(user in view for user in plain) and "u-nobody" not in view
    assert (view | {"x"}) == plain | {"x"} and view & {"u-1", "u-2"} == plain & {"u-1", "u-2"}
    copy = pickle.loads(pickle.dumps(session))
    assert isinstance(copy.interacting_users, InteractingUsers)
    assert (
        copy.interacting_users._presence is copy.presence and set(copy.interacting_users) == plain
    )
    session.settle_interacting()
    assert type(session.interacting_users) is set and session.interacting_users == plain
