"""Paced garbage collection: keep the cyclic collector off the ledger's long-lived facts."""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from streams.runtime.memory import libc_function

#: Generation thresholds while pacing. gen0 at 10,000 allocations instead of 700: every fact
#: the ledger keeps survives its young collections, so fewer, larger ones cost less per object
#: (bench/NOTES.md, "Garbage collection"); gen1/gen2 stay at CPython's defaults.
THRESHOLDS: tuple[int, int, int] = (10_000, 10, 10)
#: Young-generation threshold a fetched record (`young_threshold`): a fetch of N records holds
#: ~N-2N young objects at once (aiokafka's record each; until issue 19 the worker's `RawRecord`
#: too), and this keeps CPython's young collections from walking them.
GC_YOUNG_PER_RECORD = 5


def young_threshold(batch_records: int, configured: int = 0) -> int:
    """The young generation's threshold for a worker fetching `batch_records` records at a
    time: `configured` if set, else `GC_YOUNG_PER_RECORD` per record (never below
    `THRESHOLDS`' 10,000)."""
    if configured:
        return configured
    return max(THRESHOLDS[0], GC_YOUNG_PER_RECORD * batch_records)


#: A deferred pacer (`GcPacer.deferred`) collects in `after` anyway once this many intervals
#: have gone by with no `between`.
DEFER_LIMIT = 4


#: glibc's `malloc_trim` if the process has it (looked up once; None on musl, macOS, Windows).
MALLOC_TRIM = libc_function("malloc_trim")


def release_free_memory() -> bool:
    """Give the memory glibc's arenas hold free back to the system (`malloc_trim(0)`: the top
    of every arena's heap and the whole pages inside its free chunks); False where there is no
    `malloc_trim`. Python objects' memory is not touched: pymalloc's own arenas (objects up to
    512 bytes) are returned only when empty, whatever glibc does."""
    if MALLOC_TRIM is None:
        return False
    MALLOC_TRIM(0)
    return True


@dataclass
class GcPacer:
    """Every `every_records` records: a collection of what is not frozen, then `gc.freeze()`.

    Why: CPython's full collections walk every tracked object, and the ledger's facts are
    millions of long-lived ones, so the cost per event grew with the state. Frozen objects
    (the permanent generation) are never walked, so each paced collection only walks what was
    allocated since the previous one: a constant cost per record whatever the state's size.

    Safety: the paced collection runs BEFORE each freeze, so cyclic garbage alive at that
    moment is reclaimed, not frozen. An object frozen while alive that later becomes part of
    unreachable cycle (not the ledger's: `tests/agents/core/test_no_cycles.py`; perhaps the
    Kafka client's) would stay until the next full pass: whenever the frozen population has
    grown `full_growth` times since the last full pass, everything is unfrozen, collected and
    frozen again. That is geometric, so the full passes' total work stays within
    full_growth / (full_growth - 1) of the final state size (CPython's own rule, 25% growth,
    walks ~5 times it).

    Deferred (`deferred`, the worker's): `after` only counts, and the collection that is due
    runs at the next `between`, which the batch consumer calls once a fetch is applied and
    released. Why: collected inside the batch (`after`, from `LiveState.apply_batch`), a paced
    collection walked the fetch still held, ~10,000 aiokafka `ConsumerRecord`s and ~10,000
    `RawRecord`s of ~21,000 young objects (4-21 ms of CPU each in a worker behind, where every
    paced collection falls inside a 10,000-record fetch), and froze them: freed by their
    reference counts right after, they still counted in `frozen`, which then grew ~20,000 a
    paced collection whatever the state kept, and set off a full pass over the whole heap
    every ~20 of them (74-95 ms of CPU each; bench/RESULTS.md, "Session 18 (issue 19)"). A
    caller that never calls `between` still gets its collections: `after` runs the one due
    once `DEFER_LIMIT` intervals have gone by without one.

    Memory: after a paced collection, at most every `trim_every_s` seconds, the memory glibc
    holds free is given back to the system (`release_free_memory`). Why: the worker's RSS
    follows the high-water mark of what it holds for a moment (the fetched record sets not
    consumed yet, a fetch's records decoded at once, a month's rows in flight), not what it
    keeps, and glibc keeps what such a peak freed: 44-59 MB free in its arenas at the end of
    the 300-day soak, 14-41 MB of it whole pages a trim gives back (the main heap's top, which
    glibc's own trim leaves once large blocks have raised its threshold; a thread arena mostly
    free). With the trim the RSS falls after a peak, which it never did without; the peaks
    still set it (bench/RESULTS.md, "Session 16 (issue 17)"). 0: never.
    """

    every_records: int = 50_000
    full_growth: float = 4.0
    #: The frozen population a first full pass waits for (start-up alone freezes ~100k).
    full_floor: int = 100_000
    thresholds: tuple[int, int, int] = THRESHOLDS
    _since: int = 0
    _frozen_at_full: int = 0
    #: Objects frozen by this pacer so far (as of its last freeze; the count `start` froze
    #: included).
    frozen: int = 0
    _saved_thresholds: tuple[int, int, int] | None = field(default=None, repr=False)
    #: Paced collections and full passes done, for /status.
    collections: int = 0
    full_passes: int = 0
    #: CPU seconds of `start`'s collection (start-up's heap, before any record: the worker
    #: starts it before its `GcClock`, so that it is not counted as a pause of the stream).
    start_cpu_s: float = 0.0
    #: CPU seconds of `settle`'s collections (after the tables' catch-up, before any record),
    #: and how many there were.
    settle_cpu_s: float = 0.0
    settles: int = 0
    #: Objects frozen unwalked after a state was restored (`restoring`), and how many times.
    restored_objects: int = 0
    restores: int = 0
    #: Seconds between two trims of glibc's free memory after paced collections (0: none).
    trim_every_s: float = 0.0
    #: Trims done, and their CPU time (the thread's: the event loop waits for it).
    trims: int = 0
    trim_cpu_s: float = 0.0
    longest_trim_cpu_s: float = 0.0
    _trimmed_at: float = field(default=float("-inf"), repr=False)
    #: Whether `after` leaves the collection due to `between` (see above).
    deferred: bool = False
    #: Paced collections run by `between`, with no fetched batch alive (of `collections`).
    between_collections: int = 0

    def install(self) -> GcPacer:
        """Set the thresholds (once; `uninstall` restores the previous ones)."""
        if self._saved_thresholds is None:
            self._saved_thresholds = gc.get_threshold()
            gc.set_threshold(*self.thresholds)
        return self

    def start(self) -> None:
        """Collect and freeze what exists now (after start-up's imports), once."""
        began = time.thread_time()
        gc.collect()
        gc.freeze()
        self.start_cpu_s = time.thread_time() - began
        self.frozen = gc.get_freeze_count()

    def settle(self) -> None:
        """Collect and freeze what start-up built after `start` (the worker's tables read at
        their catch-up, faust's and aiokafka's clients), before the stream's first record:
        the paced collections then walk only what the stream allocates."""
        began = time.thread_time()
        gc.collect()
        self.frozen += len(gc.get_objects(generation=2))
        gc.freeze()
        self.settle_cpu_s += time.thread_time() - began
        self.settles += 1

    @contextmanager
    def restoring(self) -> Iterator[None]:
        """Around building state from a snapshot: no collection while it is built, then what
        was built is frozen without being walked.

        Why: a restore allocates the whole state at once, so CPython's thresholds fire gen-2
        collections over the growing heap inside it, and the next paced collection walks all
        of it (one pause proportional to the state). Objects just unpickled hold no garbage
        cycle (a pickle builds only what the state references, `tests/agents/core/
        test_no_cycles.py` says the core keeps none), so none is frozen by skipping the walk;
        an object of the rest of the process that was young at that moment is frozen with
        them and reclaimed, if it ever becomes cyclic garbage, by the next full pass.
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
            # Built whole (a failed restore freezes nothing: its leftovers are collected).
            built = len(gc.get_objects())  # the young generations only: not the frozen list
            gc.freeze()
            self.frozen += built
            self.restored_objects += built
            self.restores += 1
        finally:
            if was_enabled:
                gc.enable()

    def uninstall(self) -> None:
        """Restore the thresholds and unfreeze everything this process froze."""
        if self._saved_thresholds is not None:
            gc.set_threshold(*self._saved_thresholds)
            self._saved_thresholds = None
        gc.unfreeze()

    def after(self, records: int) -> None:
        """Call after applying `records` records (a batch); collects when one is due, or, if
        `deferred`, leaves it to `between` (unless `DEFER_LIMIT` intervals went by)."""
        self._since += records
        if self._since < self.every_records:
            return
        if self.deferred and self._since < DEFER_LIMIT * self.every_records:
            return
        self._collect()

    @property
    def due(self) -> bool:
        """Whether a paced collection is due (`every_records` applied since the last)."""
        return self._since >= self.every_records

    def between(self) -> bool:
        """Call between batches, with no fetched record held: runs the paced collection if one
        is due. Returns whether it did."""
        if self._since < self.every_records:
            return False
        self.between_collections += 1
        self._collect()
        return True

    def _collect(self) -> None:
        """The paced collection: collect, freeze the survivors (and a full pass when due)."""
        self._since = 0
        self.collections += 1
        gc.collect()
        # The survivors of that collection are all in the oldest generation, and are what the
        # freeze moves. Counted this way, not with gc.get_freeze_count(), which walks the whole
        # frozen list (CPython 3.11's gc_list_size): millions of objects per call, 5% of the
        # worker's time in a profile when it ran after every paced collection and /status.
        self.frozen += len(gc.get_objects(generation=2))
        gc.freeze()
        if self.frozen > self.full_growth * max(self._frozen_at_full, self.full_floor):
            self.full_passes += 1
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.frozen = self._frozen_at_full = gc.get_freeze_count()
        if self.trim_every_s and time.monotonic() - self._trimmed_at >= self.trim_every_s:
            self.trim()

    def trim(self) -> None:
        """Give glibc's free memory back now (`release_free_memory`), timed for /status."""
        began = time.thread_time()
        if not release_free_memory():
            self.trim_every_s = 0.0  # nothing to call: stop asking
            return
        took = time.thread_time() - began
        self._trimmed_at = time.monotonic()
        self.trims += 1
        self.trim_cpu_s += took
        self.longest_trim_cpu_s = max(self.longest_trim_cpu_s, took)

    def status(self) -> dict[str, float]:
        return {
            "paced_collections": self.collections,
            "between_batches": self.between_collections,
            "full_passes": self.full_passes,
            "frozen_objects": self.frozen,
            "start_cpu_ms": round(self.start_cpu_s * 1000, 1),
            "settles": self.settles,
            "settle_cpu_ms": round(self.settle_cpu_s * 1000, 1),
            "restores": self.restores,
            "restored_objects": self.restored_objects,
            "malloc_trims": self.trims,
            "malloc_trim_cpu_ms": round(self.trim_cpu_s * 1000, 1),
            "longest_malloc_trim_cpu_ms": round(self.longest_trim_cpu_s * 1000, 2),
        }


#: Collections `GcClock`'s p99s are read over (the newest: a bounded window, not every one).
GC_RECENT = 4096


@dataclass
class GcClock:
    """Collections and the time spent in them, per generation (a `gc.callbacks` hook).

    `seconds` are CPU seconds of the collecting thread (`time.thread_time`), so the GC share of
    the worker's CPU is read against its CPU time: before, they were wall-clock seconds, and on
    a loaded machine a collection preempted by other processes counted its waiting too (36.8%
    "of CPU" in bench/RESULTS.md's Session 7). A collection's pause as the event loop sees it is
    wall-clock time: `wall_seconds`, and `longest_s` (the longest pause, wall clock).

    On a shared machine a pause's wall clock is mostly the waits for a core of a thread that
    was preempted inside it (bench/RESULTS.md, Session 10: 35-67 ms wall for collections of
    1.5-4 ms of CPU at a load average of 16), which would stall the loop just as long outside a
    collection. What the collector itself costs a pause is its CPU time: `longest_cpu_s`, and
    the p99 of both over the last `GC_RECENT` collections.
    """

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    wall_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest_s: float = 0.0
    longest_cpu_s: float = 0.0
    #: (wall, CPU) seconds of the newest `GC_RECENT` collections.
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=GC_RECENT))
    _began: float = 0.0
    _began_cpu: float = 0.0
    installed: bool = False
    #: While set (`unclocked`), collections are not counted.
    _unclocked: bool = False
    #: Collections left uncounted by `unclocked`.
    unclocked_collections: int = 0

    def install(self) -> GcClock:
        if not self.installed:
            gc.callbacks.append(self._on_gc)
            self.installed = True
        return self

    def uninstall(self) -> None:
        if self.installed:
            gc.callbacks.remove(self._on_gc)
            self.installed = False

    @contextmanager
    def unclocked(self) -> Iterator[None]:
        """Collections run inside are not counted (a start-up one, `GcPacer.settle`, which is
        no pause of the stream: no record is applied before it ends)."""
        self._unclocked = True
        try:
            yield
        finally:
            self._unclocked = False

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if self._unclocked:
            if phase != "start":
                self.unclocked_collections += 1
            return
        if phase == "start":
            self._began = time.perf_counter()
            self._began_cpu = time.thread_time()
            return
        cpu = time.thread_time() - self._began_cpu
        took = time.perf_counter() - self._began
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += cpu
        self.wall_seconds[generation] += took
        self.longest_s = max(self.longest_s, took)
        self.longest_cpu_s = max(self.longest_cpu_s, cpu)
        self.recent.append((took, cpu))

    def status(self) -> dict[str, object]:
        # One copy in C under the GIL: the callback runs in whichever thread collects (faust's
        # consumer thread too), and a Python loop over the deque let it append mid-iteration
        # ("deque mutated during iteration": a 500 from /status under load).
        recent = list(self.recent)
        walls = sorted(took for took, _cpu in recent)
        cpus = sorted(cpu for _took, cpu in recent)
        return {
            "collections": list(self.collections),
            "seconds": [round(s, 4) for s in self.seconds],
            "total_s": round(sum(self.seconds), 4),
            "wall_seconds": [round(s, 4) for s in self.wall_seconds],
            "total_wall_s": round(sum(self.wall_seconds), 4),
            "longest_ms": round(self.longest_s * 1000, 1),
            "longest_cpu_ms": round(self.longest_cpu_s * 1000, 2),
            "p99_ms": round(_p99(walls) * 1000, 1),
            "p99_cpu_ms": round(_p99(cpus) * 1000, 2),
            "unclocked_collections": self.unclocked_collections,
        }


def _p99(ordered: list[float]) -> float:
    """The 99th percentile (nearest rank) of sorted values; 0 for none."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, (99 * len(ordered) + 99) // 100 - 1)]
