"""Operator levels' concurrency by minute over summarized sessions, settled into peaks."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final


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


#: How many settled runs (a run: consecutive minutes at one count) each level keeps by default,
#: the largest counts first, for a merge over partitions (`LevelCurve.merged`); a ledger's
#: `board_runs_kept` (`LIVEPULSE_BOARD_RUNS_KEPT`) overrides it.
SETTLED_RUNS_KEPT: Final[int] = 4096
#: A minute before every event's (where a settled curve's slack starts).
_EARLIEST: Final[int] = -(2**62)


def _keep_largest(
    runs: list[tuple[int, int, int]], gaps: list[int], kept: int
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The `kept` runs of the largest counts, in time order, and the gaps around them (`gaps[i]`:
    the largest count between run i - 1 and run i, the last one after the last run), a dropped
    run's count and its gaps joined into the gap it leaves."""
    keep = set(sorted(range(len(runs)), key=lambda i: runs[i][0], reverse=True)[:kept])
    return keep_runs(runs, gaps, keep)


def keep_runs(
    runs: list[tuple[int, int, int]], gaps: list[int], keep: set[int]
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The runs whose indices are in `keep`, in time order, and the gaps around them (as
    `_keep_largest`'s), each other run's count and its gaps joined into the gap it leaves."""
    out_runs: list[tuple[int, int, int]] = []
    out_gaps: list[int] = []
    gap = gaps[0]
    for i, run in enumerate(runs):
        if i in keep:
            out_gaps.append(gap)
            out_runs.append(run)
            gap = gaps[i + 1]
        else:
            gap = max(gap, run[0], gaps[i + 1])
    out_gaps.append(gap)
    return out_runs, out_gaps


def _shuffled(values: array[int]) -> bytes:
    """`values`' bytes with the i-th byte of every value together, for each i in turn (so that
    the high bytes, zero for a small value, make long runs for zlib)."""
    data = values.tobytes()
    width = values.itemsize
    return b"".join(data[i::width] for i in range(width))


def _unshuffled(data: bytes) -> array[int]:
    """The 64-bit values `_shuffled` wrote."""
    out = array("q")
    width = out.itemsize
    count = len(data) // width
    interleaved = bytearray(len(data))
    for i in range(width):
        interleaved[i::width] = data[i * count : (i + 1) * count]
    out.frombytes(bytes(interleaved))
    return out


def pack_runs(runs: array[int], gaps: array[int]) -> bytes:
    """A curve's settled runs ((count, first minute, minute after the last), flattened) and
    gaps (one more than the runs; none with none) as the snapshot keeps them: by column,
    each run's first minute as its distance from the previous run's end (from 0 for the
    first) and its end as its length, every column's bytes shuffled (`_shuffled`). The same
    numbers, in bytes that zlib packs ~3.4x smaller than the plain arrays' (measured on a
    300-day soak's partition: 28,642 runs over 9 levels, 40 kB against 136 kB)."""
    counts, firsts, ends = runs[0::3], runs[1::3], runs[2::3]
    previous = (array("q", [0]) + ends)[:-1]  # each run's previous end, 0 for the first
    starts = array("q", [first - end for first, end in zip(firsts, previous, strict=True)])
    lengths = array("q", [end - first for first, end in zip(firsts, ends, strict=True)])
    return b"".join(_shuffled(column) for column in (counts, starts, lengths, gaps))


def unpack_runs(data: bytes) -> tuple[array[int], array[int]]:
    """The runs and gaps `pack_runs` packed."""
    if not data:  # no runs, no gaps (a curve never settled, or a merged one)
        return array("q"), array("q")
    values = _unshuffled_columns(data)
    count = (len(values) - 1) // 4
    counts = values[:count]
    starts = values[count : 2 * count]
    lengths = values[2 * count : 3 * count]
    gaps = array("q", values[3 * count :])
    runs = array("q", bytes(24 * count))
    end = 0
    for i in range(count):
        first = end + starts[i]
        end = first + lengths[i]
        runs[3 * i], runs[3 * i + 1], runs[3 * i + 2] = counts[i], first, end
    return runs, gaps


def _unshuffled_columns(data: bytes) -> array[int]:
    """Every 64-bit value of `pack_runs`' four columns, in order: 4 n + 1 values for n runs."""
    width = array("q").itemsize
    values = len(data) // width
    if len(data) % width or (values - 1) % 4:
        raise ValueError(f"packed runs of {len(data)} bytes: not 4 n + 1 values")
    count = (values - 1) // 4
    out = array("q")
    offset = 0
    for size in (count, count, count, count + 1):
        out.extend(_unshuffled(data[offset : offset + size * width]))
        offset += size * width
    return out


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

    For a merge over partitions (whose minutes add, then the maximum is taken) the settled
    minutes keep `runs`: the `SETTLED_RUNS_KEPT` runs of the largest counts, as (count, first
    minute, minute after the last) flattened into 64-bit integers, in time order, and `gaps`:
    for each stretch of settled minutes between kept runs (before the first, after the last up
    to `settled_to`) the largest count of a run dropped there (every minute in it counts at
    most that); `dropped` is the largest of them.
    `slack` is only a merged curve's: a difference array of the largest amount its minutes may
    lack (`merged`); `folded_ceiling` too (an owner partition's, `owned_curve`): the largest
    count its folded minutes may have had where a source had dropped runs (0: none).

    In a worker the settled runs leave for the level's owner partition (`take_runs`,
    `Ledger.take_board_runs`), which folds them once every source partition has announced
    them (`Ledger.receive_board_settled`): the runs a curve keeps are those not taken yet.
    """

    __slots__ = (
        "bounded",
        "diff",
        "dropped",
        "folded_ceiling",
        "gaps",
        "peak",
        "peak_minute",
        "present",
        "runs",
        "settled_to",
        "slack",
    )

    def __init__(self) -> None:
        self.diff: dict[int, int] = {}
        self.settled_to: int | None = None
        self.present = 0
        self.peak = 0
        self.peak_minute: int | None = None
        self.runs: array[int] = array("q")
        self.dropped = 0
        self.gaps: array[int] = array("q")
        self.slack: dict[int, int] = {}
        self.folded_ceiling = 0
        #: Merged from several inputs and its peak not certain: a minute's upper bound (its
        #: kept counts + `slack`) beats the largest kept sum (`merged`).
        self.bounded = False

    def __getstate__(self) -> dict[str, object]:
        state = {name: getattr(self, name) for name in self.__slots__}
        del state["runs"], state["gaps"]
        # An array's own pickle names a global; packed, the runs and gaps take ~3.4x fewer
        # bytes after the snapshot's zlib than their plain bytes (version 15 and older).
        state["runs_packed"] = pack_runs(self.runs, self.gaps)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]
        for name in self.__slots__:
            if name in state:
                setattr(self, name, state[name])
        packed = state.get("runs_packed")
        if isinstance(packed, bytes):
            self.runs, self.gaps = unpack_runs(packed)
            return
        for name in ("runs", "gaps"):
            if name in state:
                setattr(self, name, array("q"))
                getattr(self, name).frombytes(state[name])
        if "runs" not in state and self.settled_to is not None:
            self.dropped = self.peak  # settled before runs were kept: each minute at most it
        if "gaps" not in state and self.settled_to is not None:
            self.gaps = array("q", [self.dropped] * (len(self.runs) // 3 + 1))

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

    def settle(self, before: int, kept: int | None = None) -> int:
        """Fold every minute before `before` into `present` and the peak, keeping the `kept`
        runs of the largest counts (`runs`; None: `SETTLED_RUNS_KEPT`); how many were folded.
        The kept minutes are copied into a new dict (a dict never shrinks as keys are popped:
        the settled minutes' slots would stay allocated)."""
        if self.settled_to is not None and before <= self.settled_to:
            return 0
        done = sorted((minute, n) for minute, n in self.diff.items() if minute < before)
        present = self.present
        runs = self._run_list()  # in time order
        gaps = list(self.gaps) or [0] * (len(runs) + 1)
        # The run entering the settled minutes continues from the last settling; the tail
        # gap (after the last kept run) comes before the first new run, none between new ones.
        run_start = self.settled_to
        for minute, change in done:
            if run_start is not None and present > 0 and minute > run_start:
                runs.append((present, run_start, minute))
                gaps.append(0)
            present += change
            run_start = minute
            if present > self.peak:
                self.peak, self.peak_minute = present, minute
        if run_start is not None and present > 0 and before > run_start:
            runs.append((present, run_start, before))
            gaps.append(0)
        kept = SETTLED_RUNS_KEPT if kept is None else kept
        if len(runs) > kept:
            runs, gaps = _keep_largest(runs, gaps, kept)
            self.dropped = max(gaps)
        self.runs = array("q", [value for run in runs for value in run])
        self.gaps = array("q", gaps)
        self.present = present
        self.settled_to = before
        if done:
            self.diff = {minute: n for minute, n in self.diff.items() if minute >= before}
        return len(done)

    def take_runs(self) -> tuple[list[int], list[int]]:
        """The kept settled runs, flattened (count, first minute, minute after the last), and
        the stretches where runs were dropped, flattened (largest dropped count, first minute,
        minute after the last; the first one from the previous take), dropped here: sent to
        the level's owner partition (`Ledger.take_board_runs`). The next settling starts new
        runs and gaps."""
        runs = self._run_list()
        slack: list[int] = []
        if any(self.gaps) and self.settled_to is not None:
            previous_end = _EARLIEST
            for gap, (_count, first, end) in zip(
                self.gaps, [*runs, (0, self.settled_to, self.settled_to)], strict=True
            ):
                if gap and first > previous_end:
                    slack += (gap, previous_end, first)
                previous_end = end
        out = list(self.runs)
        self.runs = array("q")
        self.gaps = array("q")
        self.dropped = 0
        return out, slack

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

    def _run_list(self) -> list[tuple[int, int, int]]:
        """The kept settled runs as (count, first minute, minute after the last)."""
        runs = self.runs
        return [(runs[i], runs[i + 1], runs[i + 2]) for i in range(0, len(runs), 3)]

    def _known_and_slack(self) -> tuple[Counter[int], Counter[int]]:
        """Difference arrays of every minute's known count (the kept minutes from
        `settled_to` on, the kept runs before it, 0 elsewhere) and of how much more it may
        be (its gap's largest dropped count on a settled minute outside the runs; a merged
        curve's `slack`)."""
        known: Counter[int] = Counter(self.diff)
        slack: Counter[int] = Counter(self.slack)
        settled_to = self.settled_to
        if settled_to is None:
            return known, slack
        known[settled_to] += self.present
        runs = self._run_list()
        for count, first, end in runs:
            known[first] += count
            known[end] -= count
        if any(self.gaps):
            # Each gap between kept runs (from before any minute, to `settled_to`) at most
            # its largest dropped count.
            previous_end = _EARLIEST
            for gap, (_count, first, end) in zip(
                self.gaps, [*runs, (0, settled_to, settled_to)], strict=True
            ):
                if gap:
                    slack[previous_end] += gap
                    slack[first] -= gap
                previous_end = end
        return known, slack

    @classmethod
    def merged(cls, curves: Iterable[LevelCurve]) -> LevelCurve:
        """Several ledgers' curves of one level (partitions): each minute's known counts add
        (kept minutes, kept settled runs), and so do the amounts they may lack (`slack`). The
        peak of the known sums is at most the truth and the peak with the slack at least it:
        when they are equal the peak is exact, else `bounded` (docs/design.md)."""
        out = cls()
        known: Counter[int] = Counter()
        slack: Counter[int] = Counter()
        for curve in curves:
            more_known, more_slack = curve._known_and_slack()
            known.update(more_known)
            slack.update(more_slack)
            if curve.peak > out.peak:
                out.peak, out.peak_minute = curve.peak, curve.peak_minute
            out.folded_ceiling = max(out.folded_ceiling, curve.folded_ceiling)
        out.diff = {minute: n for minute, n in known.items() if n}
        out.slack = {minute: n for minute, n in slack.items() if n}
        out.bounded = out.uncertain() and out.ceiling() > out.level_peak()[0]
        return out

    def ceiling(self, live: Mapping[int, int] | None = None) -> int:
        """The largest count a minute may have: the peak with each minute's `slack` added (a
        merged curve's; the peak itself where there is none), with `live` (the unsummarized
        sessions' minutes, as `level_peak`): the true peak is between `level_peak(live)` and
        this."""
        if not self.uncertain():
            return self.level_peak(live)[0]
        upper = self.as_diff()
        upper.update(self.slack)
        if live:
            upper.update(live)
        return max(peak_of(upper)[0], self.peak, self.folded_ceiling)

    def uncertain(self) -> bool:
        """Whether some minute may lack a count a partition dropped (`slack`, or an owner's
        `folded_ceiling` above the peak): only then can `ceiling` exceed the peak."""
        return bool(self.slack) or self.folded_ceiling > self.peak
