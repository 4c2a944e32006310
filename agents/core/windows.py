"""Event-time windows of our own: per-minute buckets, a watermark, a grace period, late events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MINUTE_MS: Final[int] = 60_000
#: Minutes every window needs, back from the watermark's minute (10m and the 10 before it).
RETAINED_MINUTES: Final[int] = 20
DEFAULT_GRACE_MS: Final[int] = 120_000


@dataclass(slots=True)
class MinuteBucket:
    """What one session did in one event-time minute (only events on time for the windows)."""

    entries: int = 0
    interactions: int = 0
    product_clicks: int = 0
    orders: int = 0
    gmv_cents: int = 0
    #: Users who became viewers in this minute (join, non-reply interaction, session order).
    viewers: set[str] = field(default_factory=set)
    buyers: set[str] = field(default_factory=set)


class EventTimeWindows:
    """Per-minute buckets keyed by event-time minute, then by session id.

    The watermark is the largest `ts` seen so far; the windows end with its minute. Lateness is
    judged per source, the contract's unit of order (a topic and a record key: one session's
    events of one topic, or one merchant's group events): an event more than the grace older
    than the newest event of its own source is late, counted, and kept out of every bucket.
    Topics drifting apart (a replay reading one topic far ahead of another, a lagging
    producer) therefore make nothing late, and the result does not depend on how the
    topics' partitions are spread over workers. Buckets older than the windows need are
    dropped as the watermark moves, so memory stays bounded; an on-time event older than
    that belongs to no window and is left out without being late. faust's own windowed
    tables expire by wall clock and have no grace, hence this class.
    """

    __slots__ = (
        "_cutoff",
        "_source_newest",
        "buckets",
        "grace_ms",
        "late",
        "retained_minutes",
        "watermark",
    )

    def __init__(
        self, grace_ms: int = DEFAULT_GRACE_MS, retained_minutes: int = RETAINED_MINUTES
    ) -> None:
        if grace_ms < 0:
            raise ValueError("grace_ms must be >= 0")
        self.grace_ms = grace_ms
        self.retained_minutes = retained_minutes
        self.watermark: int | None = None
        self.late = 0
        self.buckets: dict[int, dict[str, MinuteBucket]] = {}
        self._cutoff: int | None = None
        #: (topic, record key) -> the newest `ts` of that source so far.
        self._source_newest: dict[tuple[str, str], int] = {}

    def admit(self, ts: int, source: tuple[str, str]) -> bool:
        """Whether an event of `source` goes into the buckets; a late one is counted.

        False when it is late (older than its source's newest event minus the grace) or older
        than every retained bucket (it belongs to no window; not late).
        """
        newest = self._source_newest.get(source)
        if newest is None or ts > newest:
            self._source_newest[source] = ts
        elif ts < newest - self.grace_ms:
            self.late += 1
            return False
        watermark = self.watermark
        if watermark is None or ts > watermark:
            self.watermark = ts
            # `_expire`'s own first test, here: the watermark moves on most events, its minute
            # once a minute (issue 19: a call per event saved).
            if ts // MINUTE_MS - self.retained_minutes + 1 != self._cutoff:
                self._expire(ts)
            return True
        return self._cutoff is None or ts // MINUTE_MS >= self._cutoff

    def bucket(self, ts: int, session_id: str) -> MinuteBucket:
        """The bucket of `ts`'s minute for a session (call only after `admit(ts)` said True)."""
        minute = self.buckets.get(ts // MINUTE_MS)
        if minute is None:
            minute = self.buckets[ts // MINUTE_MS] = {}
        bucket = minute.get(session_id)
        if bucket is None:
            bucket = minute[session_id] = MinuteBucket()
        return bucket

    def _expire(self, watermark: int) -> None:
        cutoff = watermark // MINUTE_MS - self.retained_minutes + 1
        if cutoff == self._cutoff:
            return
        self._cutoff = cutoff
        for minute in [m for m in self.buckets if m < cutoff]:
            del self.buckets[minute]

    def minutes(self, first: int, last: int) -> list[tuple[int, dict[str, MinuteBucket]]]:
        """The buckets of minutes `first..last` (inclusive) that exist, by minute."""
        return [(m, self.buckets[m]) for m in range(first, last + 1) if m in self.buckets]
