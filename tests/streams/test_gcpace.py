"""Paced garbage collection: collects young cycles before freezing, full passes geometrically."""

from __future__ import annotations

import gc
import os
import time
import weakref
from collections.abc import Iterator

import pytest

from streams.runtime.gcpace import DEFER_LIMIT, MALLOC_TRIM, GcClock, GcPacer, young_threshold


class _Node:
    other: object = None


def _cycle() -> weakref.ref[_Node]:
    """A reference cycle nobody holds; a weak reference that dies when it is collected."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def pacer() -> Iterator[GcPacer]:
    before = gc.get_threshold()
    was_enabled = gc.isenabled()
    gc.disable()  # only the pacer collects during a test
    # The first full pass once the frozen population is 1.5 times what the process has now.
    floor = len(gc.get_objects())
    made = GcPacer(1_000, full_growth=1.5, full_floor=floor, thresholds=(5_000, 7, 9)).install()
    try:
        yield made
    finally:
        made.uninstall()
        if was_enabled:
            gc.enable()
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_collects_young_cycles_before_freezing(pacer: GcPacer) -> None:
    assert gc.get_threshold() == (5_000, 7, 9)
    dead = _cycle()
    pacer.after(999)
    assert dead() is not None and pacer.collections == 0  # not due yet
    pacer.after(1)
    assert dead() is None and pacer.collections == 1
    assert gc.get_freeze_count() > 0  # the survivors are out of the collected generations


def test_a_frozen_object_that_becomes_a_cycle_is_freed_by_a_full_pass(pacer: GcPacer) -> None:
    holder = [_Node(), _Node()]
    holder[0].other, holder[1].other = holder[1], holder[0]
    dead = weakref.ref(holder[0])
    pacer.after(1_000)  # frozen while alive
    del holder
    pacer.after(1_000)  # a paced collection does not walk frozen objects
    assert dead() is not None and pacer.full_passes == 0
    # The frozen population grows past full_growth times the floor: a full pass.
    keep = [[object()] for _ in range(pacer.full_floor)]
    pacer.after(1_000)
    assert pacer.full_passes == 1 and dead() is None
    del keep


def test_the_frozen_count_is_tracked_without_walking_the_frozen_list(pacer: GcPacer) -> None:
    # status() must not call gc.get_freeze_count() (it walks every frozen object), yet agree
    # with it: the pacer counts what each freeze moves.
    keep = []
    for round_ in range(4):
        keep.append([[object()] for _ in range(2_000 * (round_ + 1))])
        pacer.after(1_000)
        assert pacer.status()["frozen_objects"] == gc.get_freeze_count()
    assert pacer.collections == 4
    del keep


def test_a_deferred_pacer_collects_between_batches_with_the_batch_freed(pacer: GcPacer) -> None:
    """`deferred`: the collection due after a batch waits for `between`, when the batch's
    records are gone, so it neither walks them nor counts them as frozen. Collected inside
    the batch (as before), the 5,000 records alive then were frozen and counted, and went on
    counting after they were freed."""
    pacer.after(1_000)  # the test process's heap frozen first, as start-up's in a worker
    pacer.deferred = True
    dead = _cycle()
    frozen_before = gc.get_freeze_count()
    batch = [[i] for i in range(5_000)]  # a fetch's records, alive while it is applied
    pacer.after(1_000)
    assert pacer.due and pacer.collections == 1 and dead() is not None
    del batch
    assert pacer.between() and pacer.collections == 2 and pacer.between_collections == 1
    assert dead() is None and not pacer.due
    assert gc.get_freeze_count() - frozen_before < 5_000  # the batch was not frozen
    assert abs(pacer.frozen - gc.get_freeze_count()) < 100  # its count not inflated by it
    assert not pacer.between()  # nothing due: no collection
    assert pacer.collections == 2


def test_an_undeferred_pacer_freezes_and_counts_the_batch_alive_in_it(pacer: GcPacer) -> None:
    """What `deferred` changes: collected inside the batch, its records are frozen with the
    state, and still counted once freed (the count the full passes are set off by)."""
    pacer.after(1_000)
    frozen_before = gc.get_freeze_count()
    batch = [[i] for i in range(5_000)]
    pacer.after(1_000)
    assert gc.get_freeze_count() - frozen_before >= 5_000
    del batch
    assert pacer.frozen >= gc.get_freeze_count() + 5_000


def test_a_deferred_pacer_with_no_between_still_collects(pacer: GcPacer) -> None:
    pacer.deferred = True
    dead = _cycle()
    for _ in range(DEFER_LIMIT - 1):
        pacer.after(1_000)
    assert pacer.collections == 0 and dead() is not None
    pacer.after(1_000)  # DEFER_LIMIT intervals with no `between`: collected here
    assert pacer.collections == 1 and pacer.between_collections == 0 and dead() is None


def test_settle_collects_and_freezes_what_start_up_built(pacer: GcPacer) -> None:
    """`settle` (the worker's, once its tables have caught up): what exists then is collected
    and frozen, so the next paced collection walks only what comes after; its cyclic garbage
    is collected, not frozen."""
    pacer.after(1_000)  # start-up's heap frozen first, as `start` does in a worker
    dead = _cycle()
    table = [[i] for i in range(5_000)]  # a table's catch-up, kept
    frozen_before = gc.get_freeze_count()
    pacer.settle()
    assert dead() is None  # collected, not frozen
    assert gc.get_freeze_count() - frozen_before >= 5_000  # the table frozen
    assert abs(pacer.frozen - gc.get_freeze_count()) < 100
    assert pacer.settles == 1 and pacer.settle_cpu_s >= 0
    assert pacer.collections == 1  # `after`'s alone: not a paced collection of the stream
    assert len(gc.get_objects(generation=0)) < 1_000  # nothing of it left to walk
    del table


def test_the_gc_clock_leaves_out_unclocked_collections() -> None:
    clock = GcClock().install()
    try:
        with clock.unclocked():
            gc.collect()
        assert clock.collections == [0, 0, 0] and clock.unclocked_collections == 1
        assert clock.longest_s == 0.0
        gc.collect()
        assert clock.collections[2] == 1 and clock.unclocked_collections == 1
        assert clock.status()["unclocked_collections"] == 1
    finally:
        clock.uninstall()


def test_the_young_threshold_follows_the_fetch_size() -> None:
    assert young_threshold(10_000) == 50_000  # the worker's default fetch
    assert young_threshold(100) == 10_000  # never below the pacer's former threshold
    assert young_threshold(10_000, configured=7_000) == 7_000


def test_the_gc_clock_counts_cpu_time_which_cannot_exceed_the_process_cpu() -> None:
    """A collection that waits (here: another gc callback that sleeps inside it, as a
    collection preempted on a loaded machine waits) counts its waiting in `wall_seconds`, not
    in `seconds`: the GC share of CPU read from `seconds` cannot pass the process's CPU time.
    Timed by the wall clock (before), `seconds` came to the 0.3 s slept against ~0 of CPU."""
    clock = GcClock().install()

    def waits(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            time.sleep(0.015)

    gc.callbacks.append(waits)  # after the clock's: inside its start-stop window
    try:
        cpu_before = time.process_time()
        for _ in range(20):
            gc.collect(0)
        cpu = time.process_time() - cpu_before
    finally:
        gc.callbacks.remove(waits)
        clock.uninstall()
    status = clock.status()
    assert clock.collections[0] == 20
    assert sum(clock.wall_seconds) >= 20 * 0.015  # the pauses as the event loop saw them
    assert status["longest_ms"] >= 15
    assert sum(clock.seconds) <= cpu
    assert status["total_s"] <= round(cpu, 4) + 1e-4
    # The pauses' CPU time (the collector's own cost) is told apart from their wall clock:
    # the 15 ms waited in each are not in it, and each p99 is read over those 20 collections.
    assert status["p99_ms"] >= 15
    assert status["longest_cpu_ms"] <= cpu * 1000 + 0.01
    assert status["longest_cpu_ms"] < 15
    assert status["p99_cpu_ms"] <= status["longest_cpu_ms"]


def test_a_restored_state_is_frozen_as_built_without_a_collection(pacer: GcPacer) -> None:
    """`restoring`: no collection runs while a snapshot's state is built (each would walk the
    growing heap), and what was built is frozen after it, so no paced collection walks it."""
    gc.enable()  # as in a worker (the fixture turns it off; 80,000 containers would collect)
    clock = GcClock().install()
    try:
        frozen_before = pacer.frozen
        with pacer.restoring():
            assert not gc.isenabled()
            state = {f"s-{i}": [[i, i + 1] for _ in range(3)] for i in range(20_000)}
        assert gc.isenabled()
        assert clock.collections == [0, 0, 0]  # 80,000 containers built, no collection
    finally:
        clock.uninstall()
    young = {id(o) for o in gc.get_objects()}
    assert id(state) not in young and id(state["s-7"][0]) not in young  # frozen
    assert pacer.restores == 1 and pacer.restored_objects >= 80_000
    assert pacer.frozen >= frozen_before + 80_000


def test_a_failed_restore_freezes_nothing(pacer: GcPacer) -> None:
    gc.enable()
    with pytest.raises(ValueError), pacer.restoring():
        half = [[i] for i in range(1_000)]
        raise ValueError("truncated snapshot")
    assert gc.isenabled() and pacer.restores == 0
    assert id(half) in {id(o) for o in gc.get_objects()}  # still young: collectable


def test_the_gc_clock_status_reads_while_another_thread_collects() -> None:
    """The clock's callback runs in whichever thread collects (faust's consumer thread too):
    `status()` must not iterate the recent pauses while it appends. A fold-off bench pass got a
    500 from /status with "deque mutated during iteration"; with the old loops over the deque
    this failed ~1 call in 6 here."""
    import sys
    import threading

    clock = GcClock()
    for i in range(2000):
        clock.recent.append((0.001 * i, 0.0005 * i))
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            clock.recent.append((0.002, 0.001))

    writer = threading.Thread(target=collect)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    writer.start()
    errors: list[RuntimeError] = []
    try:
        for _ in range(2000):
            try:
                clock.status()
            except RuntimeError as exc:
                errors.append(exc)
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)
    assert errors == []


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(
    MALLOC_TRIM is None or not os.path.exists("/proc/self/statm"), reason="glibc on Linux only"
)
def test_a_paced_collection_gives_glibcs_free_memory_back(pacer: GcPacer) -> None:
    # 80 MB in blocks over pymalloc's 512 bytes (glibc's), then one more that stays: freed,
    # the 80 MB are a hole below it, which glibc keeps (it only trims the top of its heap).
    blocks = [bytes(4_000) for _ in range(20_000)]
    pin = bytes(4_000)
    del blocks
    held = _rss_bytes()
    pacer.after(1_000)  # trim_every_s = 0: a collection, no trim
    assert pacer.trims == 0
    assert _rss_bytes() > held - 20e6
    pacer.trim_every_s = 3_600.0
    pacer.after(1_000)
    assert pacer.trims == 1
    assert _rss_bytes() < held - 60e6
    pacer.after(1_000)  # within the hour: no second trim
    assert pacer.trims == 1
    assert pacer.status()["malloc_trims"] == 1
    del pin
