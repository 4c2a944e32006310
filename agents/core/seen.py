"""The dedupe set's compacted part: event ids as 16-byte keys in one sorted array, with a filter.

Why (issue 19): a remembered event id in a Python set costs ~72-80 bytes (its int key and the
set's slot); here it costs 16 bytes (the key), 4 (its topic and hour of `ts`, for the window)
and ~2-4 (the filter's bits). The ledger keeps its newest ids in its set (`Ledger._seen_ids`)
and moves them here in batches (`SeenRuns.absorb`); a lookup first reads the filter (a Bloom
filter of two bits a key, no false negatives), and only when both bits are set searches the
array, so an id is found exactly: the keys are the ids themselves (`Ledger`'s `_id_key`, which
is one-to-one), never a hash. Ids whose key does not fit 16 bytes (16 UTF-8 bytes or more)
go to a second run of 24-byte keys (`WIDE_BYTES`) when they have one of the long shapes real
producers send, read by `wide_key` (exact and reversible: `wide_id`): a canonical UUID (36
characters, all lower- or all upper-case hex) or a ULID (26 Crockford base-32 characters, all
upper or all lower), behind a prefix of at most 7 UTF-8 bytes (`ord-`, `evt_`...). Other ids
stay in the set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: Keys below this fit the array's 16 bytes.
KEY_LIMIT: Final[int] = 1 << 128
#: The wide runs' key width (`wide_key`'s keys are below `1 << 187`).
WIDE_BYTES: Final[int] = 24
#: A key's tag: `hour * TOPIC_SLOTS + topic` (hour of its event's `ts`, `ts // 3_600_000`),
#: below `TAG_LIMIT` (an int32: `ts` before the year ~32,000; an id stamped later stays in the
#: ledger's set).
TOPIC_SLOTS: Final[int] = 8
TAG_LIMIT: Final[int] = 1 << 31
#: Filter bits per key at least (two bits set a key: ~1.4% false positives when full).
_BITS_PER_KEY: Final[int] = 16
_MIN_FILTER_BITS: Final[int] = 1 << 16
_MAX_FILTER_LOG2: Final[int] = 30
#: Two odd multipliers (multiplicative hashing): each bit's position is the top bits of the
#: key's halves xored, times one of them (the top bits of a product depend on every bit).
_SPREAD: Final[int] = 0x9E3779B97F4A7C15
_SPREAD2: Final[int] = 0xC2B2AE3D27D4EB4F
_MASK64: Final[int] = (1 << 64) - 1
#: The ledger moves its set's ids here once it holds this many, or a quarter of the array's.
MIN_BATCH: Final[int] = 4096

_Keys = npt.NDArray[np.bytes_]
_Tags = npt.NDArray[np.int32]

#: `wide_key`'s shapes: the body (the id's last 36 or 26 characters), all lower-case (a body
#: with no letter is read as this one) or all upper-case; the flags of each.
_UUID_LOWER: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID_UPPER: Final = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
_ULID_UPPER: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_ULID_LOWER: Final = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}")
_UUID_LOWER_FLAG, _UUID_UPPER_FLAG, _ULID_LOWER_FLAG, _ULID_UPPER_FLAG = 0, 1, 2, 3
_CROCKFORD: Final[str] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGITS32: Final[str] = "0123456789abcdefghijklmnopqrstuv"  # int(..., 32)'s digits
_FROM_CROCKFORD: Final = str.maketrans(_CROCKFORD + _CROCKFORD.lower(), _DIGITS32 * 2)
#: A prefix's UTF-8 bytes behind a 1 byte (one-to-one, as `Ledger`'s `_id_key`): 7 at most.
_PREFIX_BITS: Final[int] = 57
_MAX_PREFIX: Final[int] = 7
_BODY_MASK: Final[int] = (1 << 128) - 1


def wide_key(event_id: str) -> int:
    """`event_id` as a wide key (below `1 << 187`), or -1 if it has none of the shapes: its
    flags (shape and case), its prefix and its body's 128 bits, so one-to-one (`wide_id`
    gives the id back; two ids differing in case differ in flags or are not read)."""
    size = len(event_id)
    flags = -1
    if size >= 36:
        body = event_id[-36:]
        if _UUID_LOWER.fullmatch(body):
            flags = _UUID_LOWER_FLAG
        elif _UUID_UPPER.fullmatch(body):
            flags = _UUID_UPPER_FLAG
        if flags >= 0:
            value = int(body.replace("-", ""), 16)
            prefix = event_id[:-36]
    if flags < 0 and size >= 26:
        body = event_id[-26:]
        if _ULID_UPPER.fullmatch(body):
            flags = _ULID_UPPER_FLAG
        elif _ULID_LOWER.fullmatch(body):
            flags = _ULID_LOWER_FLAG
        if flags >= 0:
            value = int(body.translate(_FROM_CROCKFORD), 32)
            prefix = event_id[:-26]
    if flags < 0:
        return -1
    if not prefix:
        return (((flags << _PREFIX_BITS) | 1) << 128) | value
    raw = prefix.encode()
    if len(raw) > _MAX_PREFIX:
        return -1
    return (((flags << _PREFIX_BITS) | int.from_bytes(b"\x01" + raw, "big")) << 128) | value


def wide_id(key: int) -> str:
    """The event id whose `wide_key` is `key`."""
    value = key & _BODY_MASK
    head = key >> 128
    flags = head >> _PREFIX_BITS
    prefix = (head & ((1 << _PREFIX_BITS) - 1)).to_bytes(8, "big").lstrip(b"\x00")[1:].decode()
    if flags in (_UUID_LOWER_FLAG, _UUID_UPPER_FLAG):
        hexed = f"{value:032x}"
        if flags == _UUID_UPPER_FLAG:
            hexed = hexed.upper()
        body = f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"
    else:
        digits = []
        for _ in range(26):
            digits.append(_CROCKFORD[value & 31])
            value >>= 5
        body = "".join(reversed(digits))
        if flags == _ULID_LOWER_FLAG:
            body = body.lower()
    return prefix + body


def _columns(keys: _Keys) -> npt.NDArray[np.uint64]:
    """Keys as their 8-byte words, most significant first (one row a key)."""
    return keys.view(">u8").reshape(-1, keys.dtype.itemsize // 8).astype(np.uint64)


def _positions(keys: _Keys, bits: int) -> tuple[npt.NDArray[np.uint64], ...]:
    """Each key's two filter bits, as `SeenRuns.might_hold` computes them for one."""
    words = _columns(keys)
    mixed = words[:, -1].copy()
    for column in range(words.shape[1] - 1):
        mixed ^= words[:, column]
    shift = np.uint64(64 - bits)
    with np.errstate(over="ignore"):
        return (mixed * np.uint64(_SPREAD)) >> shift, (mixed * np.uint64(_SPREAD2)) >> shift


def _key_order(keys: _Keys, *then: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """The order that sorts keys (then by `then`), sorted as integer columns of 8 bytes (numpy
    sorts fixed-width bytes ~20x slower than integers)."""
    words = _columns(keys)
    return np.lexsort((*then, *(words[:, column] for column in reversed(range(words.shape[1])))))


class SeenRuns:
    """Event ids moved out of the ledger's set: sorted keys of `width` bytes (16, or
    `WIDE_BYTES` for `wide_key`'s), their tags, a filter."""

    __slots__ = (
        "_bits",
        "_dead",
        "_filter",
        "_scanned_to",
        "hour_counts",
        "keys",
        "max_key",
        "tags",
        "width",
    )

    def __init__(self, width: int = 16) -> None:
        if width not in (16, WIDE_BYTES):
            raise ValueError(f"seen ids: keys of {width} bytes")
        self.width = width
        self.keys: _Keys = np.empty(0, dtype=f"S{width}")
        #: The largest key held (-1: none): a key above it is not here, whatever the filter
        #: says (one comparison: ids that grow, as the simulator's or time-ordered ones, skip
        #: the filter).
        self.max_key = -1
        self.tags: _Tags = np.empty(0, dtype=np.int32)
        #: Per topic, hour -> how many keys it has (to know, as hours expire, how many are
        #: dead), and how many are dead as of `_scanned_to` (per topic the first hour kept then).
        self.hour_counts: list[dict[int, int]] = [{} for _ in range(TOPIC_SLOTS)]
        self._dead = 0
        self._scanned_to: list[int | None] = [None] * TOPIC_SLOTS
        self._bits = 0
        self._filter = bytearray()

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> tuple[bytes, bytes] | tuple[bytes, bytes, int]:
        # Plain bytes: the state's unpickler resolves no numpy global (agents.core.persist).
        if self.width == 16:
            return self.keys.tobytes(), self.tags.tobytes()
        return self.keys.tobytes(), self.tags.tobytes(), self.width

    def __setstate__(self, state: tuple[bytes, bytes] | tuple[bytes, bytes, int]) -> None:
        keys, tags = state[0], state[1]
        width = state[2] if len(state) > 2 else 16
        self.__init__(width)  # type: ignore[misc]
        self.keys = np.frombuffer(keys, dtype=f"S{width}").copy()
        self.tags = np.frombuffer(tags, dtype=np.int32).copy()
        self._note_max()
        if len(self.keys) != len(self.tags):
            raise ValueError("seen ids: keys and tags differ in length")
        self._count_tags([None] * TOPIC_SLOTS)  # counted dead when their hours expire next
        self._build_filter()

    def might_hold(self, key: int) -> bool:
        """False: `key` is not here (for certain); True: search (`holds`)."""
        bits = self._bits
        if not bits:
            return False
        mixed = (key ^ (key >> 64) ^ (key >> 128)) & _MASK64  # 16-byte keys: the last is 0
        shift = 64 - bits
        first = (mixed * _SPREAD & _MASK64) >> shift
        second = (mixed * _SPREAD2 & _MASK64) >> shift
        table = self._filter
        return bool(table[first >> 3] >> (first & 7) & 1 and table[second >> 3] >> (second & 7) & 1)

    def holds(self, key: int, kept_from: Sequence[int | None]) -> bool:
        """Whether `key` is here with a tag still inside its topic's window (`kept_from`: per
        topic the first hour kept, None: every hour)."""
        width = self.width
        if key >= 1 << (8 * width):
            return False
        wanted = key.to_bytes(width, "big")
        at = int(np.searchsorted(self.keys, wanted))
        if at == len(self.keys) or bytes(self.keys[at]).ljust(width, b"\x00") != wanted:
            return False
        tag = int(self.tags[at])
        first = kept_from[tag % TOPIC_SLOTS]
        return first is None or tag // TOPIC_SLOTS >= first

    def absorb(
        self, filed: Iterable[tuple[Sequence[int], int]], kept_from: Sequence[int | None]
    ) -> None:
        """Take keys (each below `1 << 8 * width`) filed under a tag, `(keys, tag)`s; a key
        already here keeps the newer tag."""
        width = self.width
        blobs: list[bytes] = []
        lengths: list[int] = []
        tag_list: list[int] = []
        for keys, tag in filed:
            blobs.append(b"".join([key.to_bytes(width, "big") for key in keys]))
            lengths.append(len(keys))
            tag_list.append(tag)
        new_keys: _Keys = np.frombuffer(b"".join(blobs), dtype=self.keys.dtype)
        new_tags: _Tags = np.repeat(np.array(tag_list, dtype=np.int32), lengths)
        if not len(new_keys):
            return
        if not len(self.keys):
            self._merge(new_keys, new_tags, kept_from)
            return
        # Inserted into the sorted array (a copy, no sort of what is held): a batch is small
        # beside the array, so this is ~10x cheaper than sorting both.
        order = _key_order(new_keys)
        new_keys, new_tags = new_keys[order], new_tags[order]
        last = np.ones(len(new_keys), dtype=bool)
        last[:-1] = new_keys[1:] != new_keys[:-1]
        new_keys, new_tags = new_keys[last], new_tags[last]
        at = np.searchsorted(self.keys, new_keys)
        if (self.keys[np.minimum(at, len(self.keys) - 1)] == new_keys).any():
            # A dead key met again (rare): merged whole, which recounts the tags.
            self._merge(new_keys, new_tags, kept_from)
            return
        self.keys = np.insert(self.keys, at, new_keys)
        self.tags = np.insert(self.tags, at, new_tags)
        self._note_max()
        self._count(new_tags)
        if self._fits(len(self.keys)):
            self._set_bits(new_keys)
        else:
            self._build_filter()

    def _note_max(self) -> None:
        keys = self.keys
        self.max_key = (
            int.from_bytes(bytes(keys[-1]).ljust(self.width, b"\x00"), "big") if len(keys) else -1
        )

    def _count(self, tags: _Tags) -> None:
        values, counts = np.unique(tags, return_counts=True)
        for tag, count in zip(values.tolist(), counts.tolist(), strict=True):
            hours = self.hour_counts[tag % TOPIC_SLOTS]
            hour = tag // TOPIC_SLOTS
            hours[hour] = hours.get(hour, 0) + count

    def expire(self, topic: int, kept_from: Sequence[int | None]) -> None:
        """`topic`'s first hour kept moved to `kept_from[topic]`: drop the keys out of their
        topic's window once they are at least half of those held (until then a dead key only
        costs its bytes and is never found: `holds`)."""
        first = kept_from[topic]
        scanned = self._scanned_to[topic]
        if first is None or (scanned is not None and first <= scanned):
            return
        hours = self.hour_counts[topic]
        if scanned is not None and first - scanned <= len(hours):
            self._dead += sum(hours.get(hour, 0) for hour in range(scanned, first))
        else:
            self._dead += sum(
                n
                for hour, n in hours.items()
                if hour < first and (scanned is None or hour >= scanned)
            )
        self._scanned_to[topic] = first
        if self._dead and 2 * self._dead >= len(self.keys):
            self._merge(np.empty(0, dtype=self.keys.dtype), np.empty(0, dtype=np.int32), kept_from)

    def live_count(self) -> int:
        """How many keys are held inside their window (the dead ones counted as the window
        moved; after a restore, until each topic's window next moves, none is counted dead)."""
        return len(self.keys) - self._dead

    def live_keys(self, kept_from: Sequence[int | None]) -> list[tuple[int, int]]:
        """Every `(key, tag)` held inside its window (merges, tests)."""
        live = self._live_mask(self.tags, kept_from)
        return [
            (int.from_bytes(bytes(key).ljust(self.width, b"\x00"), "big"), int(tag))
            for key, tag in zip(self.keys[live], self.tags[live], strict=True)
        ]

    @classmethod
    def combined(
        cls,
        parts: Sequence[tuple[SeenRuns, Sequence[int | None]]],
        kept_from: Sequence[int | None],
        width: int = 16,
    ) -> SeenRuns:
        """The keys of several parts (each with its own window's `kept_from`) in one, a key
        in several with its newest tag (the largest), kept inside `kept_from`'s window (merged
        ledgers)."""
        out = cls(width)
        if any(part.width != width for part, _kept in parts):
            raise ValueError("seen ids: runs of different widths")
        if not parts:
            return out
        if len(parts) == 1 and list(parts[0][1]) == list(kept_from):
            only = parts[0][0]
            out.keys, out.tags = only.keys.copy(), only.tags.copy()
            out.max_key = only.max_key
            out.hour_counts = [dict(hours) for hours in only.hour_counts]
            out._dead, out._scanned_to = only._dead, list(only._scanned_to)
            out._bits, out._filter = only._bits, bytearray(only._filter)
            return out
        live = [cls._live_mask(part.tags, part_kept) for part, part_kept in parts]
        keys = np.concatenate(
            [part.keys[mask] for (part, _kept), mask in zip(parts, live, strict=True)]
        )
        tags = np.concatenate(
            [part.tags[mask] for (part, _kept), mask in zip(parts, live, strict=True)]
        )
        out._merge(keys, tags, kept_from)
        return out

    @staticmethod
    def _live_mask(tags: _Tags, kept_from: Sequence[int | None]) -> npt.NDArray[np.bool_]:
        live = np.ones(len(tags), dtype=bool)
        for topic, first in enumerate(kept_from):
            if first is not None:
                live &= ~((tags % TOPIC_SLOTS == topic) & (tags // TOPIC_SLOTS < first))
        return live

    def _merge(self, new_keys: _Keys, new_tags: _Tags, kept_from: Sequence[int | None]) -> None:
        keys = np.concatenate([self.keys, new_keys])
        tags = np.concatenate([self.tags, new_tags])
        live = self._live_mask(tags, kept_from)
        keys, tags = keys[live], tags[live]
        order = _key_order(keys, tags)  # by key, then tag: of equal keys the newest last
        keys, tags = keys[order], tags[order]
        if len(keys) > 1:
            last = np.ones(len(keys), dtype=bool)
            last[:-1] = keys[1:] != keys[:-1]
            keys, tags = keys[last], tags[last]
        # The filter only gains bits: rebuilt when keys were dropped (their bits would stay)
        # or when it is too small for the keys, else the new keys' bits are added.
        rebuild = len(keys) < len(self.keys) + len(new_keys) or not self._fits(len(keys))
        self.keys, self.tags = keys, tags
        self._note_max()
        self._count_tags(kept_from)
        if rebuild:
            self._build_filter()
        else:
            self._set_bits(new_keys)

    def _count_tags(self, kept_from: Sequence[int | None]) -> None:
        """Count the tags afresh, with no key dead (those held are all inside `kept_from`)."""
        self.hour_counts = [{} for _ in range(TOPIC_SLOTS)]
        self._count(self.tags)
        self._dead = 0
        self._scanned_to = [*kept_from, *[None] * (TOPIC_SLOTS - len(kept_from))]

    def _fits(self, n: int) -> bool:
        return bool(self._bits) and (
            n * _BITS_PER_KEY <= (1 << self._bits) or self._bits == _MAX_FILTER_LOG2
        )

    def _build_filter(self) -> None:
        n = len(self.keys)
        if not n:
            self._bits, self._filter = 0, bytearray()
            return
        wanted = max(_MIN_FILTER_BITS, n * _BITS_PER_KEY * 2)  # room to grow before a rebuild
        self._bits = min(_MAX_FILTER_LOG2, (wanted - 1).bit_length())
        self._filter = bytearray(1 << (self._bits - 3))
        self._set_bits(self.keys)

    def _set_bits(self, keys: _Keys) -> None:
        if not len(keys):
            return
        table = np.frombuffer(self._filter, dtype=np.uint8)  # a view: set in place
        for positions in _positions(keys, self._bits):
            np.bitwise_or.at(
                table,
                (positions >> np.uint64(3)).astype(np.intp),
                np.left_shift(np.uint8(1), (positions & np.uint64(7)).astype(np.uint8)),
            )
