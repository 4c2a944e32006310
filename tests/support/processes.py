"""Seeded, independent replicates measured side by side in worker processes (statistical tests)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

#: How many processes: one per CPU this process may use, at most 4, unless this variable says
#: (`LIVEPULSE_TEST_PROCESSES=1`: one after another, in this process).
PROCESSES_ENV = "LIVEPULSE_TEST_PROCESSES"
MAX_PROCESSES = 4

Item = TypeVar("Item")
Result = TypeVar("Result")


def processes() -> int:
    """How many processes `map_in_processes` uses."""
    wanted = os.environ.get(PROCESSES_ENV, "").strip()
    if wanted:
        return max(1, int(wanted))
    return max(1, min(MAX_PROCESSES, len(os.sched_getaffinity(0))))


def map_in_processes(
    fn: Callable[[Item], Result], items: Sequence[Item], chunksize: int = 1
) -> list[Result]:
    """`[fn(item) for item in items]`, the items spread over `processes()` forked processes.

    For work whose result depends on its item only (a seeded stream): the list is the same,
    in the same order, whatever the number of processes. `fn` and the items must pickle."""
    count = min(processes(), len(items))
    if count <= 1:
        return [fn(item) for item in items]
    # Forked: the children start with everything imported; the parent only waits meanwhile.
    pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"))
    try:
        return list(pool.map(fn, items, chunksize=chunksize))
    finally:
        # On a failure or a test's timeout, drop the work not started instead of finishing it.
        pool.shutdown(wait=True, cancel_futures=True)
