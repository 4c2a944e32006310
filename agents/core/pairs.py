"""`group_repurchase_30d`'s decided (merchant, user) pairs, kept compactly: user ids as
16-byte keys in one sorted array per merchant, each with its latest order's day.

Why (issue 17): by default every decided pair is kept for ever (claims.md asks for each pair's
*first* order, at any age), so the set grows with distinct buyers. In a dict of tuples a pair
cost ~150-200 bytes (its tuple, its dict slot, the day's int); here it costs 18 (the key and a
2-byte day). A user id of up to 15 UTF-8 bytes is its own key (`_key`: one-to-one, never a
hash), so a lookup is exact; a longer id is kept in a dict beside the array. New pairs wait in
a small dict and are merged into the arrays in batches (an insert into a sorted array copies it).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: A key's width: `b"\x01"` and the id's UTF-8 bytes, big-endian, zero-padded on the left.
KEY_BYTES: Final[int] = 16
#: Days are kept as uint16 (`ts // DAY_MS`: every day from 1970 to 2149), clamped into it.
_DAY_MAX: Final[int] = (1 << 16) - 1
#: The pending dict is merged into the arrays once it holds this many pairs, or an eighth of
#: the merchant's array.
_MIN_BATCH: Final[int] = 256

_Keys = npt.NDArray[np.bytes_]
_Days = npt.NDArray[np.uint16]


def _key(user: str) -> bytes | None:
    """`user` as a 16-byte key (None when its UTF-8 is 16 bytes or longer, or ends in a zero
    byte): one-to-one, and numpy orders two keys as their big-endian integers."""
    raw = user.encode()
    if len(raw) >= KEY_BYTES or raw.endswith(b"\x00"):  # numpy drops trailing zero bytes
        return None
    return (b"\x01" + raw).rjust(KEY_BYTES, b"\x00")


def _user(key: bytes) -> str:
    """The user id whose `_key` is `key` (numpy drops a key's trailing zero bytes: put back)."""
    padded = key.ljust(KEY_BYTES, b"\x00")
    return padded.lstrip(b"\x00")[1:].decode()


def _day(day: int) -> int:
    return min(max(day, 0), _DAY_MAX)


class MerchantPairs:
    """One merchant's users: a sorted key array with their days, new ones pending in a dict,
    ids too long for a key in another."""

    __slots__ = ("days", "keys", "long", "pending")

    def __init__(self) -> None:
        self.keys: _Keys = np.empty(0, dtype=f"S{KEY_BYTES}")
        self.days: _Days = np.empty(0, dtype=np.uint16)
        self.pending: dict[bytes, int] = {}
        self.long: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys) + len(self.pending) + len(self.long)

    def _find(self, key: bytes) -> int:
        """The key's index in the array, or -1."""
        keys = self.keys
        index = int(np.searchsorted(keys, key))
        return index if index < len(keys) and keys[index] == key else -1

    def get(self, user: str) -> int | None:
        key = _key(user)
        if key is None:
            return self.long.get(user)
        day = self.pending.get(key)
        if day is not None:
            return day
        index = self._find(key)
        return int(self.days[index]) if index >= 0 else None

    def set(self, user: str, day: int) -> bool:
        """Set the user's day; whether the user is new here."""
        key = _key(user)
        if key is None:
            new = user not in self.long
            self.long[user] = _day(day)
            return new
        index = self._find(key) if len(self.keys) else -1
        if index >= 0:
            self.days[index] = _day(day)
            return False
        new = key not in self.pending
        self.pending[key] = _day(day)
        if len(self.pending) >= max(_MIN_BATCH, len(self.keys) >> 3):
            self._absorb()
        return new

    def _absorb(self) -> None:
        """Merge the pending keys into the sorted arrays (none of them is in the array)."""
        if not self.pending:
            return
        keys = np.fromiter(self.pending, dtype=f"S{KEY_BYTES}", count=len(self.pending))
        days = np.fromiter(self.pending.values(), dtype=np.uint16, count=len(self.pending))
        all_keys = np.concatenate([self.keys, keys])
        all_days = np.concatenate([self.days, days])
        order = np.argsort(all_keys, kind="stable")
        self.keys, self.days = all_keys[order], all_days[order]
        self.pending = {}

    def delete(self, user: str) -> None:
        key = _key(user)
        if key is None:
            del self.long[user]
        elif key in self.pending:
            del self.pending[key]
        else:
            index = self._find(key)
            if index < 0:
                raise KeyError(user)
            self.keys = np.delete(self.keys, index)
            self.days = np.delete(self.days, index)

    def forget_before(self, day: int) -> int:
        """Drop every user whose day is before `day`; how many."""
        self._absorb()
        before = len(self)
        kept = self.days >= day
        if not kept.all():
            self.keys, self.days = self.keys[kept], self.days[kept]
        self.long = {user: held for user, held in self.long.items() if held >= day}
        return before - len(self)

    def items(self) -> Iterator[tuple[str, int]]:
        for key, day in zip(self.keys.tolist(), self.days.tolist(), strict=True):
            yield _user(key), day
        for key, day in self.pending.items():
            yield _user(key), day
        yield from self.long.items()

    def nbytes(self) -> int:
        """The arrays' bytes, the pending pairs merged in (long ids not counted)."""
        self._absorb()
        return int(self.keys.nbytes + self.days.nbytes)

    def __getstate__(self) -> tuple[Any, ...]:
        self._absorb()
        return (self.keys.tobytes(), self.days.tobytes(), self.long)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        keys, days, self.long = state
        self.keys = np.frombuffer(keys, dtype=f"S{KEY_BYTES}").copy()
        self.days = np.frombuffer(days, dtype=np.uint16).copy()
        self.pending = {}


class PairDays(MutableMapping[tuple[str, str], int]):
    """(merchant, user) -> a day (`ts // DAY_MS`, clamped to 0-65535), compact: for
    `Ledger.bought_before` and `Ledger.pairs_decided` (module docstring)."""

    def __init__(self, pairs: Any = ()) -> None:
        self._merchants: dict[str, MerchantPairs] = {}
        self._size = 0
        for pair, day in dict(pairs).items():
            self[pair] = day

    def __getitem__(self, pair: tuple[str, str]) -> int:
        held = self._merchants.get(pair[0])
        day = held.get(pair[1]) if held is not None else None
        if day is None:
            raise KeyError(pair)
        return day

    def get(self, pair: tuple[str, str], default: Any = None) -> Any:  # one lookup, not two
        held = self._merchants.get(pair[0])
        day = held.get(pair[1]) if held is not None else None
        return default if day is None else day

    def __contains__(self, pair: object) -> bool:
        return isinstance(pair, tuple) and self.get(pair) is not None

    def __setitem__(self, pair: tuple[str, str], day: int) -> None:
        merchant, user = pair
        held = self._merchants.get(merchant)
        if held is None:
            held = self._merchants[merchant] = MerchantPairs()
        self._size += held.set(user, day)

    def __delitem__(self, pair: tuple[str, str]) -> None:
        held = self._merchants.get(pair[0])
        if held is None:
            raise KeyError(pair)
        held.delete(pair[1])
        self._size -= 1
        if not len(held):
            del self._merchants[pair[0]]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for pair, _day in self.items_sorted():
            yield pair

    def __len__(self) -> int:
        return self._size

    def items_sorted(self) -> Iterator[tuple[tuple[str, str], int]]:
        """Every pair and its day, merchant by merchant."""
        for merchant, held in self._merchants.items():
            for user, day in held.items():
                yield (merchant, user), day

    def forget_before(self, day: int) -> int:
        """Drop every pair whose day is before `day` (the opt-in first-order horizon); how
        many."""
        dropped = 0
        for merchant in list(self._merchants):
            held = self._merchants[merchant]
            dropped += held.forget_before(day)
            if not len(held):
                del self._merchants[merchant]
        self._size -= dropped
        return dropped

    def nbytes(self) -> int:
        """The key and day arrays' bytes (what a pair costs, less the per-merchant overhead)."""
        return sum(held.nbytes() for held in self._merchants.values())

    def __getstate__(self) -> dict[str, Any]:
        return {"merchants": self._merchants, "size": self._size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._merchants = state["merchants"]
        self._size = state["size"]

    def __repr__(self) -> str:
        return f"PairDays({len(self)} pairs)"
