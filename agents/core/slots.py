"""Slot numbers for per-viewer facts kept in arrays indexed by slot (issue 19).

A per-session table maps a user to a slot, its position in the session's arrays. The slot is
a dict value; an int above 256 is an object of its own (28 B), as much as the fact it points
to. So every table takes its slot numbers from one shared list: slot `n` is the same int
object in every session, and a viewer costs their table's dict entry and their arrays' bytes.
The list is as long as the largest session held so far (not the viewers seen): what is live.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator
from typing import Final

#: Slot `n` is `SLOTS[n]`; grown by doubling, never shrunk, only by `slot_int` (a table may
#: read `SLOTS[n]` itself when `n < len(SLOTS)`: a call saved per new viewer).
SLOTS: list[int] = list(range(1024))

#: An `array("q")`'s bounds: a value outside is kept in a table's overflow instead.
INT64_MIN: Final[int] = -(1 << 63)
INT64_MAX: Final[int] = (1 << 63) - 1


def slot_int(n: int) -> int:
    """The slot number `n` as the one int object every table shares."""
    shared = SLOTS
    if n >= len(shared):
        shared.extend(range(len(shared), 2 * n + 1))
    return shared[n]


def int64s_to_bytes(values: array[int]) -> bytes:
    """An `array("q")` as little-endian bytes (a snapshot reads the same on any machine)."""
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array("q", values)
    swapped.byteswap()
    return swapped.tobytes()


def int64s_from_bytes(raw: bytes) -> array[int]:
    """`int64s_to_bytes`' inverse."""
    values = array("q")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values


class SlotKeys:
    """What a table kept by slot (`_slots`: user -> slot, in slot order) answers of its users
    for `Mapping` (`ledger.Presence`; `screen.FirstEntries` reads a presence's table and
    answers these itself): iteration in slot order, size and membership, none of them reading
    the arrays."""

    __slots__ = ()
    _slots: dict[str, int]

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, user: object) -> bool:
        return user in self._slots
