"""Where the worker's resident memory is: the kernel's count, Python's, glibc's (`/status`).

Why: the worker's RSS grows more than its state does (bench/RESULTS.md, "Session 16 (issue
17)" and "Session 18 (issue 17)"): the allocators keep what a peak of memory in flight freed.
`memory_status` splits the RSS by who holds it, cheaply enough to read every few seconds
(no walk of any object: a few reads of /proc and one `mallinfo2` call, well under a
millisecond of CPU here):

- the kernel's (`/proc/self/status`): the RSS, its anonymous part (the heaps) and its
  file-backed part (the interpreter, its libraries, RocksDB's files mapped);
- Python's: `sys.getallocatedblocks()`, the objects' memory blocks allocated now (pymalloc's
  small blocks and the larger ones it passes to malloc, counted alike);
- pymalloc's (CPython's `_PyObject_DebugMallocStats`, the figures `sys._debugmallocstats`
  prints, written to a temporary file and read back: ~0.5 ms at 130 MB of arenas, a walk of
  its pools, not of objects): its 1 MiB arenas (`arenas_mb`, mmapped apart from glibc), the
  bytes of its blocks in use (`in_use_mb`, objects up to 512 bytes) and free inside them
  (`free_mb`: free blocks and unused pools), and its arenas' high-water mark; None where
  pymalloc is not the allocator (`PYTHONMALLOC=malloc`) or the symbol is missing;
- glibc's (`mallinfo2`, summed over its arenas): the bytes its arenas hold from the system
  (`arena_mb`), in use (`in_use_mb`), free inside them (`free_mb`), in mmapped blocks
  (`mmapped_mb`), and the free top of the main heap a trim would give back at once
  (`releasable_mb`). `rest_mb` is the anonymous RSS less glibc's arenas and mmapped blocks
  and pymalloc's arenas: the threads' stacks and other mappings, less whatever part of those
  arenas is not resident (a trim gives back pages in the middle of a free chunk without
  shrinking the arena; pymalloc's free pools may never have been touched), so it can be
  negative;
- the forked children alive at that moment (`streams.runtime.forkdump`: the snapshot and
  report dumps), their count and the pages each has copied (`Private_Dirty` of its
  `smaps_rollup`: what the fork costs beyond the worker's own RSS).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

_MB = 1e6


def libc_function(name: str) -> Any:
    """The C library's function `name` (looked up among the process's own symbols: its C
    library), or None where it has none (musl, macOS, Windows, an older glibc)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError, TypeError):
        return None


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc >= 2.33), every field a `size_t` of bytes or counts."""

    _fields_ = [
        ("arena", ctypes.c_size_t),  # non-mmapped bytes from the system (every arena)
        ("ordblks", ctypes.c_size_t),  # free chunks
        ("smblks", ctypes.c_size_t),  # free fastbin blocks
        ("hblks", ctypes.c_size_t),  # mmapped blocks
        ("hblkhd", ctypes.c_size_t),  # bytes in mmapped blocks
        ("usmblks", ctypes.c_size_t),  # unused (always 0)
        ("fsmblks", ctypes.c_size_t),  # bytes in free fastbin blocks
        ("uordblks", ctypes.c_size_t),  # bytes allocated (in use)
        ("fordblks", ctypes.c_size_t),  # bytes free
        ("keepcost", ctypes.c_size_t),  # the main heap's releasable top
    ]


def _mallinfo2() -> Any:
    """glibc's `mallinfo2`, or None where the C library has none (musl, macOS, glibc < 2.33)."""
    function = libc_function("mallinfo2")
    if function is None:
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function


#: `mallinfo2` if the process has it (looked up once).
MALLINFO2 = _mallinfo2()

#: glibc's `mallopt` parameter for the size from which a block is mapped on its own.
M_MMAP_THRESHOLD = -3
#: The threshold `set_mmap_threshold` set in this process (None: glibc's own, dynamic).
mmap_threshold: int | None = None


def set_mmap_threshold(size: int) -> bool:
    """Map every block of `size` bytes or more on its own, and keep that threshold fixed
    (glibc's `mallopt(M_MMAP_THRESHOLD, size)`); False where there is no `mallopt` or glibc
    refuses the size (above 32 MiB on 64-bit).

    Why: by default glibc starts at 128 KiB but raises the threshold to the size of any
    mapped block freed (up to 32 MiB), so after the first few large buffers (a fetch's
    record sets, a snapshot's bytes, a month's rows encoded) every later one comes from its
    arenas, and what they leave free between the blocks still in use stays in the worker's
    RSS: in the 200-day soaks' last month glibc's free bytes were 18-35 MB, grown by 1-22 MB
    since the horizon, against 4-8 MB and 0.1-2.4 MB with the threshold fixed at 128 KiB
    (bench/RESULTS.md, "Session 18 (issue 17)"). A fixed threshold (which also fixes
    glibc's own trim threshold, `M_TRIM_THRESHOLD`, at its 128 KiB default) gives a large
    block's pages back when it is freed."""
    global mmap_threshold
    mallopt = libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(M_MMAP_THRESHOLD, size):
        return False
    mmap_threshold = size
    return True


def _pymalloc_calls() -> Any:
    """The C library's `tmpfile`, `fflush`, `fileno` and `fclose` and CPython's
    `_PyObject_DebugMallocStats`, typed; None where any is missing."""
    try:
        libc = ctypes.CDLL(None)
        tmpfile, fflush, fileno, fclose = libc.tmpfile, libc.fflush, libc.fileno, libc.fclose
        stats = ctypes.pythonapi._PyObject_DebugMallocStats  # called with the GIL held
    except (AttributeError, OSError, TypeError):
        return None
    tmpfile.restype = ctypes.c_void_p
    tmpfile.argtypes = []
    for function in (fflush, fileno, fclose):
        function.argtypes = [ctypes.c_void_p]
    stats.argtypes = [ctypes.c_void_p]
    stats.restype = ctypes.c_int
    return tmpfile, fflush, fileno, fclose, stats


#: `_pymalloc_calls` (looked up once).
_PYMALLOC_CALLS = _pymalloc_calls()
#: The summary lines of `_PyObject_DebugMallocStats` read, and the names they are kept under.
_PYMALLOC_LINES = {
    "# arenas allocated current": "arenas",
    "# arenas highwater mark": "arenas_highwater",
    "# arenas reclaimed": "arenas_reclaimed",
    "# bytes in allocated blocks": "in_use",
    "# bytes in available blocks": "free_blocks",
}


def pymalloc_heap() -> dict[str, float] | None:
    """pymalloc's arenas now, in MB (and counts); None where pymalloc is not the allocator."""
    if _PYMALLOC_CALLS is None:
        return None
    tmpfile, fflush, fileno, fclose, stats = _PYMALLOC_CALLS
    handle = tmpfile()
    if not handle:
        return None
    try:
        if not stats(handle):  # 0: pymalloc is not the allocator, nothing written
            return None
        fflush(handle)
        fd = fileno(handle)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        fclose(handle)
    return _pymalloc_summary(b"".join(chunks).decode("ascii", "replace"))


def _pymalloc_summary(text: str) -> dict[str, float] | None:
    """`pymalloc_heap`'s figures from the text `_PyObject_DebugMallocStats` wrote."""
    found: dict[str, int] = {}
    unused_pools = 0
    for line in text.splitlines():
        label, sep, value = line.partition("=")
        if not sep:
            continue
        label, digits = label.strip(), value.strip().replace(",", "")
        if not digits.isdigit():  # e.g. "small block threshold = 512 in 32 size classes."
            continue
        number = int(digits)
        if label in _PYMALLOC_LINES:
            found[_PYMALLOC_LINES[label]] = number
        elif label.endswith("bytes") and "unused pools" in label:
            unused_pools = number
        elif label.endswith("bytes/arena"):
            found["arena_bytes"] = number
    if "arena_bytes" not in found or "in_use" not in found:
        return None
    return {
        "arenas_mb": round(found["arena_bytes"] / _MB, 2),
        "in_use_mb": round(found["in_use"] / _MB, 2),
        "free_mb": round((found.get("free_blocks", 0) + unused_pools) / _MB, 2),
        "arenas": found.get("arenas", 0),
        "arenas_highwater": found.get("arenas_highwater", 0),
        "arenas_reclaimed": found.get("arenas_reclaimed", 0),
    }


def glibc_heap() -> dict[str, float] | None:
    """glibc's arenas now (`mallinfo2`), in MB; None without glibc."""
    if MALLINFO2 is None:
        return None
    info = MALLINFO2()
    return {
        "arena_mb": round(info.arena / _MB, 2),
        "in_use_mb": round(info.uordblks / _MB, 2),
        "free_mb": round(info.fordblks / _MB, 2),
        "mmapped_mb": round(info.hblkhd / _MB, 2),
        "mmapped_blocks": info.hblks,
        "releasable_mb": round(info.keepcost / _MB, 2),
    }


def _status_kb(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    """The `key:  N kB` lines of a /proc status-like file, as kB (missing ones left out)."""
    found: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in keys:
            found[key] = int(value.split()[0])
    return found


def _children(pid: int) -> list[int]:
    """The pids of `pid`'s children (every thread's: a fork from any thread), [] if unknown."""
    children: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        children.extend(int(child) for child in text.split())
    return children


def memory_status() -> dict[str, Any]:
    """Where this process's resident memory is now (the module docstring): MB, and counts."""
    pid = os.getpid()
    kernel = _status_kb(Path("/proc/self/status"), ("VmRSS", "RssAnon", "RssFile", "VmHWM"))
    glibc = glibc_heap()
    pymalloc = pymalloc_heap()
    anon_mb = kernel.get("RssAnon", 0) * 1024 / _MB
    rest = None
    if glibc is not None and "RssAnon" in kernel:
        held = glibc["arena_mb"] + glibc["mmapped_mb"]
        rest = round(anon_mb - held - (pymalloc["arenas_mb"] if pymalloc else 0.0), 2)
    children = _children(pid)
    copied_kb = 0
    for child in children:
        copied_kb += _status_kb(Path(f"/proc/{child}/smaps_rollup"), ("Private_Dirty",)).get(
            "Private_Dirty", 0
        )
    return {
        "rss_mb": round(kernel.get("VmRSS", 0) * 1024 / _MB, 2),
        "peak_rss_mb": round(kernel.get("VmHWM", 0) * 1024 / _MB, 2),
        "anon_mb": round(anon_mb, 2),
        "file_mb": round(kernel.get("RssFile", 0) * 1024 / _MB, 2),
        "python_blocks": sys.getallocatedblocks(),
        "pymalloc": pymalloc,
        "glibc": glibc,
        # The fixed threshold set (`LIVEPULSE_MALLOC_MMAP_THRESHOLD_KB`), None: glibc's own.
        "mmap_threshold_kb": None if mmap_threshold is None else mmap_threshold // 1024,
        "rest_mb": rest,
        "forked_children": len(children),
        "forked_copied_mb": round(copied_kb * 1024 / _MB, 2),
    }
