"""What the in-process A/Bs of the worker's ingest share (`bench.slices`, `bench.handoff`): the
records they feed, a dead-letter publish doing nothing, and the ABBA rounds timed in CPU per
record."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import zlib
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

from bench.data import dataset
from streams.runtime.deadletters import DeadLetter
from streams.tools.replayer import read_lines

#: Records a fetch hands the ingest at the most (`max_poll_records` of the worker's fetches).
FETCH = 10_000
#: The partitions the records are spread over.
PARTITIONS = 4

#: One side of an A/B: a name and a pass over every record on a fresh state.
Contender = tuple[str, Callable[[], Coroutine[Any, Any, None]]]


def xhs_records(records: int) -> Iterator[tuple[int, int, bytes]]:
    """The first `records` of the cached xhs stream (`bench.data`, 200,000 records, seed 1) as
    (partition, offset, line): over `PARTITIONS` by a hash of the line's start (its key), each
    partition's offsets counted from 0."""
    offsets = [0] * PARTITIONS
    for line in list(read_lines(dataset("xhs", 1, 200_000)))[:records]:
        partition = zlib.crc32(line[:40]) % PARTITIONS
        yield partition, offsets[partition], line
        offsets[partition] += 1


async def no_publish(letters: Sequence[DeadLetter]) -> None:
    """The dead letters' publish: nothing (only the ingest's own work is timed)."""
    return None


def abba(
    prog: str, a: Contender, b: Contender, records: int, rounds: int
) -> dict[str, list[float]]:
    """`rounds` rounds of a, b, b, a (ABBA, so a drift in the machine's load hits both alike),
    each pass after a full collection and timed with `time.process_time`; each printed, and
    all returned, as us of CPU per record (of `records`) by name."""

    def timed(run: Callable[[], Coroutine[Any, Any, None]]) -> float:
        gc.collect()
        began = time.process_time()
        asyncio.run(run())
        return (time.process_time() - began) / records * 1e6

    us: dict[str, list[float]] = {a[0]: [], b[0]: []}
    for _ in range(rounds):
        for name, run in (a, b, b, a):
            us[name].append(timed(run))
            print(f"{prog}: {name} {us[name][-1]:.2f} us CPU per record", flush=True)
    return us


def medians_line(prog: str, us: dict[str, list[float]]) -> tuple[str, dict[str, float]]:
    """The medians of `abba`'s passes, and a line saying them and their ratio (the second
    contender's over the first's)."""
    (a, a_us), (b, b_us) = us.items()
    medians = {a: statistics.median(a_us), b: statistics.median(b_us)}
    line = (
        f"{prog}: medians {a} {medians[a]:.2f}, {b} {medians[b]:.2f} us per record "
        f"(n={len(a_us)} each): {b} / {a} {medians[b] / medians[a]:.3f}"
    )
    return line, medians
