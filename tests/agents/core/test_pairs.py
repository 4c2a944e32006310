"""Issue 17: `PairDays`, the decided (merchant, user) pairs of `group_repurchase_30d` in
sorted key arrays, behaves as a dict of them (the reference here) under any mix of
operations, through a pickle, and costs 18 bytes a pair in its arrays."""

from __future__ import annotations

import pickle
import random

import pytest

from agents.core.pairs import KEY_BYTES, PairDays


def _users(rng: random.Random) -> list[str]:
    """Short ids (keys), ids of 15 and 16 UTF-8 bytes (the key's limit), non-ASCII ids, ids
    ending in a zero byte, and the empty id."""
    users = [f"u-{n}" for n in range(3000)]
    users += ["x" * 15, "x" * 16, "y" * 40, "用户-" + "9" * 9, "用户-" + "9" * 10, "a\x00", "a", ""]
    users += [f"{rng.getrandbits(128):032x}" for _ in range(50)]
    return users


def test_pair_days_is_a_dict_of_pairs_to_days() -> None:
    rng = random.Random(17)
    users = _users(rng)
    merchants = [f"m-{n}" for n in range(5)]
    held = PairDays()
    want: dict[tuple[str, str], int] = {}
    for step in range(40_000):
        pair = (rng.choice(merchants), rng.choice(users))
        action = rng.random()
        if action < 0.6:
            day = rng.randrange(0, 70_000)  # past the uint16 range: clamped
            held[pair] = day
            want[pair] = min(day, (1 << 16) - 1)
        elif action < 0.7 and pair in want:
            del held[pair]
            del want[pair]
        elif action < 0.7:
            with pytest.raises(KeyError):
                del held[pair]
        elif action < 0.7005:
            cut = rng.randrange(0, 70_000)
            dropped = held.forget_before(cut)
            kept = {p: d for p, d in want.items() if d >= cut}
            assert dropped == len(want) - len(kept)
            want = kept
        else:
            assert held.get(pair) == want.get(pair)
            assert (pair in held) == (pair in want)
        if step % 5000 == 0:
            held = pickle.loads(pickle.dumps(held, protocol=5))
        assert len(held) == len(want)
    assert dict(held.items()) == want
    assert held == want
    # "a" and "a\x00" differ (a key cannot end in a zero byte: that one is kept aside).
    fresh = PairDays({("m", "a"): 1})
    assert ("m", "a\x00") not in fresh and ("m", "") not in fresh


def test_a_pair_costs_its_key_and_a_two_byte_day() -> None:
    """100,000 pairs over 20 merchants: the arrays hold 18 bytes a pair (the pickle ~18 too;
    a dict of (merchant, user) tuples to ints costs ~150-200 bytes a pair in memory)."""
    held = PairDays()
    for n in range(100_000):
        held[(f"m-{n % 20}", f"u-{n}")] = 20_000 + n % 300
    assert held.nbytes() == 100_000 * (KEY_BYTES + 2)
    assert len(pickle.dumps(held, protocol=5)) < 100_000 * (KEY_BYTES + 2) * 1.05
