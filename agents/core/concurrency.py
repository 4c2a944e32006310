"""Operator levels' concurrency by minute over summarized sessions, settled into peaks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping


def peak_of(diff: Mapping[int, int]) -> tuple[int, int | None]:
    """The largest running sum of a difference array by minute, and its first minute (None:
    no minute above 0)."""
    present = peak = 0
    at: int | None = None
    for minute in sorted(diff):
        present += diff[minute]
        if present > peak:
            peak, at = present, minute
    return peak, at


class LevelCurve:
    """One operator level's concurrency by minute from its summarized sessions (docs/design.md,
    "The board's concurrency by minute").

    `diff` is a difference array (`timeline.presence_minutes`: minute -> change in the pairs
    present) for the minutes from `settled_to` on. The minutes before it were final when they
    were settled (no session that could still add to them was unsummarized): they are folded
    into `present` (the pairs present at minute `settled_to - 1`) and `peak`, the largest count
    over them, at `peak_minute`. The level's peak is then the larger of `peak` and the running
    maximum of `present` + `diff` + the unsummarized sessions' minutes, exactly the peak of
    every minute's count: a settled minute's count can no longer change.
    """

    __slots__ = ("bounded", "diff", "peak", "peak_minute", "present", "settled_to")

    def __init__(self) -> None:
        self.diff: dict[int, int] = {}
        self.settled_to: int | None = None
        self.present = 0
        self.peak = 0
        self.peak_minute: int | None = None
        #: Merged from several inputs of which one had settled minutes: its peak is a lower
        #: bound (`merged`).
        self.bounded = False

    def __getstate__(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]
        for name in self.__slots__:
            if name in state:
                setattr(self, name, state[name])

    def add(self, minutes: Mapping[int, int]) -> int:
        """Add a summarized session's minutes; how many fell before `settled_to` (0 unless the
        settling rule was broken: those are added to `present`, the peak may miss them)."""
        settled_to = self.settled_to
        early = 0
        diff = self.diff
        for minute, change in minutes.items():
            if settled_to is not None and minute < settled_to:
                self.present += change
                early += 1
                continue
            held = diff.get(minute, 0) + change
            if held:
                diff[minute] = held
            else:
                diff.pop(minute, None)
        return early

    def settle(self, before: int) -> int:
        """Fold every minute before `before` into `present` and the peak; how many were folded.
        The kept minutes are copied into a new dict (a dict never shrinks as keys are popped:
        the settled minutes' slots would stay allocated)."""
        if self.settled_to is not None and before <= self.settled_to:
            return 0
        done = sorted((minute, n) for minute, n in self.diff.items() if minute < before)
        present = self.present
        for minute, change in done:
            present += change
            if present > self.peak:
                self.peak, self.peak_minute = present, minute
        self.present = present
        self.settled_to = before
        if done:
            self.diff = {minute: n for minute, n in self.diff.items() if minute >= before}
        return len(done)

    def as_diff(self) -> Counter[int]:
        """The kept minutes as a difference array, the settled count entering them included
        (at `settled_to - 1`, a minute already in `peak`)."""
        out = Counter(self.diff)
        if self.present and self.settled_to is not None:
            out[self.settled_to - 1] += self.present
        return out

    def level_peak(self, live: Mapping[int, int] | None = None) -> tuple[int, int | None]:
        """The level's peak and its minute with `live` (the unsummarized sessions' minutes)."""
        diff = self.as_diff()
        if live:
            diff.update(live)
        peak, at = peak_of(diff)
        if self.peak >= peak and self.peak > 0:
            return self.peak, self.peak_minute
        return peak, at

    @classmethod
    def merged(cls, curves: Iterable[LevelCurve]) -> LevelCurve:
        """Several ledgers' curves of one level (partitions): the kept minutes add, settled
        counts entering them too, and the peak is the largest settled one. Exact for every
        minute from the latest `settled_to` on; a level settled in more than one input has
        its earlier minutes' sum no longer (docs/design.md: the merged peak is then at least
        each input's, a lower bound)."""
        out = cls()
        diff: Counter[int] = Counter()
        curves = list(curves)
        out.bounded = len(curves) > 1 and any(
            curve.settled_to is not None or curve.bounded for curve in curves
        )
        for curve in curves:
            diff.update(curve.as_diff())
            if curve.peak > out.peak:
                out.peak, out.peak_minute = curve.peak, curve.peak_minute
        out.diff = {minute: n for minute, n in diff.items() if n}
        return out
