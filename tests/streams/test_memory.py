"""Issue 17: where the worker's RSS is (`streams.runtime.memory.memory_status`, /status's
`memory`).

Each figure is checked against what moves it for sure: glibc's bytes in use against blocks
allocated through malloc here, Python's blocks against objects made here, the forked
children against a child that writes pages of its own, the RSS against the kernel's count
read apart. What the split shows over a soak is measured by bench/soak.py (bench/RESULTS.md,
"Session 18 (issue 17)"), not here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from streams.runtime.memory import MALLINFO2, _children, memory_status
from streams.runtime.settings import Settings
from tests.support.live import (
    drain,
    fixture_lines,
    replay_lines,
    run_settings,
    run_topics,
    started_worker,
)

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux /proc")


def _kernel_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@linux_only
def test_the_rss_is_the_kernels() -> None:
    status = memory_status()
    kernel = _kernel_rss_mb(os.getpid())
    assert abs(status["rss_mb"] - kernel) < 0.1 * kernel
    assert status["anon_mb"] + status["file_mb"] <= status["rss_mb"] + 1.0
    assert status["peak_rss_mb"] >= status["rss_mb"] - 0.01


def test_pythons_blocks_and_pymallocs_bytes_follow_the_objects_made() -> None:
    before = memory_status()
    made = [str(i) * 3 for i in range(200_000)]  # a block each (and the list's own)
    during = memory_status()
    del made[::2]  # every other one freed: their arenas still hold the rest
    after = memory_status()
    assert during["python_blocks"] - before["python_blocks"] >= 190_000
    assert during["python_blocks"] - after["python_blocks"] >= 95_000
    if before["pymalloc"] is None:  # PYTHONMALLOC=malloc, or a build without pymalloc
        return
    # 200,000 strings of 55-66 bytes each (a 64-byte block or more): 12.8 MB at least.
    assert during["pymalloc"]["in_use_mb"] - before["pymalloc"]["in_use_mb"] >= 12.5
    assert during["pymalloc"]["in_use_mb"] - after["pymalloc"]["in_use_mb"] >= 6.2
    # Half of them freed among the other half: pymalloc keeps the freed blocks in its arenas
    # (an arena goes back to the system only when every block in it is free).
    assert after["pymalloc"]["free_mb"] - during["pymalloc"]["free_mb"] >= 6.2
    assert after["pymalloc"]["arenas_mb"] >= during["pymalloc"]["arenas_mb"] - 1.1
    assert during["pymalloc"]["arenas_mb"] >= (
        during["pymalloc"]["in_use_mb"] + during["pymalloc"]["free_mb"]
    )
    del made


@pytest.mark.skipif(MALLINFO2 is None, reason="glibc >= 2.33 only")
def test_glibcs_bytes_in_use_follow_what_malloc_gave() -> None:
    before = memory_status()["glibc"]
    # 40 MB in blocks over pymalloc's 512 bytes: each a malloc of glibc's.
    blocks = [bytes(4_000) for _ in range(10_000)]
    during = memory_status()["glibc"]
    del blocks
    after = memory_status()["glibc"]
    assert during["in_use_mb"] - before["in_use_mb"] >= 38
    assert during["in_use_mb"] - after["in_use_mb"] >= 38
    # Freed, the bytes stay in glibc's arenas (free) until trimmed: not given back by the free.
    assert after["arena_mb"] + after["mmapped_mb"] >= after["in_use_mb"] + after["free_mb"] - 0.1


@linux_only
def test_a_forked_child_and_the_pages_it_copies_are_counted() -> None:
    # In a whole test run an earlier test's child process may still be there (CI's run had
    # one) and may end meanwhile: the child made here is told apart by its pid.
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: 30 MB of pages of its own, then wait to be killed
        try:
            held = b"x" * 30_000_000
            os.write(ready_w, b"1")
            signal.pause()
            del held
        finally:
            os._exit(0)
    try:
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"1"
        status = memory_status()
        assert pid in _children(os.getpid())
        assert status["forked_children"] >= 1
        assert status["forked_copied_mb"] >= 29  # its 30 MB at least, whatever else is there
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
    assert pid not in _children(os.getpid())


#: In a fresh interpreter: a 1 MiB block mapped and freed, then how many more blocks glibc maps
#: for the next 1 MiB one (with "fixed": after `set_mmap_threshold(128 KiB)`).
_NEXT_BLOCK_MAPPED = """
import sys
from streams.runtime import memory
if sys.argv[1] == "fixed":
    assert memory.set_mmap_threshold(128 * 1024)
first = bytes(1_048_576)
del first
before = memory.glibc_heap()["mmapped_blocks"]
second = bytes(1_048_576)
print(memory.glibc_heap()["mmapped_blocks"] - before, memory.memory_status()["mmap_threshold_kb"])
"""


@pytest.mark.skipif(MALLINFO2 is None, reason="glibc >= 2.33 only")
@pytest.mark.parametrize(
    ("mode", "mapped", "reported"), [("dynamic", "0", "None"), ("fixed", "1", "128")]
)
def test_a_fixed_mmap_threshold_maps_every_large_block(
    mode: str, mapped: str, reported: str
) -> None:
    # glibc's own threshold rises to a freed mapped block's size: the next one comes from its
    # arenas (and what it leaves free there stays). Fixed, the next one is mapped again.
    done = subprocess.run(  # noqa: S603 - this interpreter, a script of this file's
        [sys.executable, "-c", _NEXT_BLOCK_MAPPED, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.stdout.split() == [mapped, reported]


@pytest.mark.integration
@linux_only
def test_a_workers_status_reports_its_memory_as_the_state_grows(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = run_settings(kafka_bootstrap, prefix="memory", malloc_mmap_threshold_kb=256)
    with (
        run_topics(settings),
        started_worker(settings, tmp_path / "worker.log") as worker,
    ):
        assert worker.process is not None
        empty = worker.status()["memory"]
        replay_lines(settings, tmp_path / "xhs.jsonl", fixture_lines("xhs"))
        drain(worker, timeout_s=180)
        held = worker.status()["memory"]
        kernel = _kernel_rss_mb(worker.process.pid)
    # The worker's own reading is its process's (not the caller's): within what moved between
    # the two reads.
    assert abs(held["rss_mb"] - kernel) < 0.15 * kernel
    # The fixed mmap threshold reached the worker (its own setting: not the default's).
    assert Settings().malloc_mmap_threshold_kb != 256
    assert held["mmap_threshold_kb"] == (256 if MALLINFO2 is not None else None)
    # 18,414 records' state held: at least a block of Python's for each.
    assert held["python_blocks"] - empty["python_blocks"] >= 18_414
    assert held["rss_mb"] > empty["rss_mb"]
    if MALLINFO2 is not None:
        assert held["glibc"]["in_use_mb"] > 0
        assert held["rest_mb"] is not None
    if held["pymalloc"] is not None:  # the state's objects are mostly pymalloc's blocks
        assert held["pymalloc"]["in_use_mb"] > empty["pymalloc"]["in_use_mb"]
