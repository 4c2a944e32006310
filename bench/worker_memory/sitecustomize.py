"""Where a running `livepulse worker`'s RSS goes, sampled while it runs (a probe for
`bench.soak --worker`, not part of the worker; bench/RESULTS.md, "Session 16 (issue 17)").

Put this folder first on PYTHONPATH with MEM_HOOK_OUT=FILE (and MEM_HOOK_EVERY=seconds,
default 30; MEM_HOOK_WALK_EVERY=seconds between the object walks below, default 0: each
time): in a process started as `-m streams.commands.worker`, a thread appends one JSON
line to FILE every period (a child still walking the objects, below, is not waited for: the
samples go on without a walk until it is done). In the worker itself (cheap reads, the loop
not held): its RSS and `/proc/PID/smaps` summed by kind of mapping (the brk heap, anonymous
mappings, files, stacks), glibc's `mallinfo2` (over every arena) and the thread count. Then it
forks a child which, at nice 19, on its copy of the heap (the worker is held only for the fork):
- `malloc_trim(0)` and the child's RSS before and after it: what glibc holds free that a trim
  would give back (`trimmed_mb`), and `malloc_info`'s arenas (MB from the system, MB free);
- `sys._debugmallocstats()`: pymalloc's arenas, the bytes in its allocated and free blocks;
- `sys.getsizeof` over every object reachable from the collector's lists (unfrozen first),
  each counted once: first those reachable from each root class in ROOTS (the state's, the
  Kafka clients'; bench/worker_probe.py, shared with bench/worker_sizes), then the rest; in
  total, by root and by type (the top types), and split at pymalloc's 512-byte limit;
- with MEM_HOOK_TRACE=1 (tracemalloc started in the worker a second after it starts; in a
  run of its own: it slows the worker), the traced MB and the 60 source lines whose live
  blocks hold the most (`traced_top`: line, MB, blocks).

    MEM_HOOK_OUT=/tmp/mem.jsonl PYTHONPATH=bench/worker_memory:. python -m bench.soak --worker ...

The child's figures are its copy's; they are the worker's as of the fork. In `bench.soak`
itself it raises the /status timeout to 30 s and stamps each sample it prints with the Unix
time (`at`), to match the probe's lines (`at` too) to event days.
"""

import importlib.util
import os
import sys
import time

# The probes' shared parts (ROOTS, the loop, the fork, the walk, the soak's patch), by path.
_spec = importlib.util.spec_from_file_location(
    "worker_probe",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "worker_probe.py"),
)
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

SMALL = 512  # pymalloc serves requests up to this many bytes; larger ones go to malloc
PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _smaps(pid):
    """Rss (MB) by kind of mapping: [heap], [stack], other [..], anonymous, file-backed."""
    out = {"heap": 0, "anon": 0, "file": 0, "stack": 0, "other": 0}
    kind = "other"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if not head[0].endswith(":") or "-" in head[0]:
                name = head[5].strip() if len(head) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif name.startswith("[stack"):
                    kind = "stack"
                elif name.startswith("["):
                    kind = "other"
                elif name:
                    kind = "file"
                else:
                    kind = "anon"
            elif head[0] == "Rss:":
                out[kind] += int(head[1]) * 1024
    return {k: round(v / 1e6, 2) for k, v in out.items()}


_LIBC = []


def _libc():
    import ctypes

    if not _LIBC:
        _LIBC.append(ctypes.CDLL("libc.so.6"))
    return _LIBC[0]


def _mallinfo():
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = _libc()
    libc.mallinfo2.restype = Mallinfo2
    m = libc.mallinfo2()
    return {
        "sbrk_and_arenas_mb": m.arena / 1e6,  # bytes glibc got from brk and its thread arenas
        "mmapped_mb": m.hblkhd / 1e6,  # large chunks mmapped on their own
        "in_use_mb": m.uordblks / 1e6,
        "free_mb": m.fordblks / 1e6,
        "free_chunks": m.ordblks,
        "top_releasable_mb": m.keepcost / 1e6,
    }


def _pymalloc():
    """`sys._debugmallocstats()`'s summary lines (`key = value`), from a file on fd 2."""
    import tempfile

    with tempfile.TemporaryFile("w+") as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    out = {}
    for line in text.splitlines():
        if "=" not in line or line.startswith("class"):
            continue
        key, _, value = line.rpartition("=")
        try:
            out[" ".join(key.split())] = int(value.strip().replace(",", ""))
        except ValueError:
            pass
    return out


def _arenas():
    """glibc's arenas from `malloc_info`'s XML: per arena, the MB it has from the system and
    the MB free in it (its free chunks, fast and other)."""
    import ctypes
    import tempfile

    libc = _libc()
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = tempfile.mktemp()
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    with open(path) as f:
        text = f.read()
    os.unlink(path)
    import re

    arenas = []
    for heap in re.findall(r'<heap nr="\d+">(.*?)</heap>', text, re.S):
        free = sum(
            int(n)
            for n in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', heap)
        )
        system = re.search(r'<system type="current" size="(\d+)"', heap)
        arenas.append(
            [round(int(system.group(1)) / 1e6, 2) if system else None, round(free / 1e6, 2)]
        )
    return arenas


def _objects():
    import collections

    listed = probe.listed()
    seen = set()
    by_type = collections.Counter()
    count = collections.Counter()
    sizes = {"small": 0, "large": 0}

    def walk(starts, skip=()):
        total = 0
        for o in probe.reachable(starts, seen, skip):
            s = sys.getsizeof(o)
            n = type(o).__name__
            by_type[n] += s
            count[n] += 1
            sizes["small" if s <= SMALL else "large"] += s
            total += s
        return total

    roots = {}
    for name, found in probe.by_root(listed).items():
        roots[name] = [len(found), round(walk(found, probe.SKIP) / 1e6, 3)]
    roots["rest"] = [0, round(walk(listed) / 1e6, 3)]
    return {
        "objects": len(seen),
        "objects_mb": (sizes["small"] + sizes["large"]) / 1e6,
        "objects_small_mb": sizes["small"] / 1e6,
        "objects_large_mb": sizes["large"] / 1e6,
        "roots": roots,
        "by_type": {k: [count[k], round(v / 1e6, 3)] for k, v in by_type.most_common(30)},
    }


def _child(out, t, parent, walk):
    import json

    before = _rss(os.getpid())  # first: nothing allocated in the child yet
    _libc().malloc_trim(0)
    after = _rss(os.getpid())
    rec = {"at": round(time.time(), 1), "t": round(t), **parent}
    rec["child_rss_mb"] = before / 1e6
    rec["child_rss_trimmed_mb"] = after / 1e6
    rec["trimmed_mb"] = (before - after) / 1e6
    rec["arenas_glibc"] = _arenas()
    rec["pymalloc"] = _pymalloc()
    import tracemalloc

    if tracemalloc.is_tracing():
        traced, _peak = tracemalloc.get_traced_memory()
        rec["traced_mb"] = traced / 1e6
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()  # what follows is not to be traced
        rec["traced_top"] = [
            [str(stat.traceback[0]), round(stat.size / 1e6, 3), stat.count]
            for stat in snapshot.statistics("lineno")[:60]
        ]
    if walk:
        rec.update(_objects())
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _run():
    if not probe.in_worker():
        return
    import collections  # noqa: F401 - imported before the forks, not in each child
    import ctypes  # noqa: F401
    import gc  # noqa: F401
    import json  # noqa: F401
    import tempfile  # noqa: F401
    import tracemalloc  # noqa: F401

    _libc()
    if os.environ.get("MEM_HOOK_TRACE"):
        tracemalloc.start()  # the worker only (PYTHONTRACEMALLOC would trace the soak too)
    out = os.environ["MEM_HOOK_OUT"]
    walked = -1e9
    walker = 0  # a walking child still running: the next samples do not walk, nor wait for it

    def take(pid, t):
        nonlocal walked, walker
        parent = {
            "rss_mb": _rss(pid) / 1e6,
            "smaps_mb": _smaps(pid),
            "mallinfo": _mallinfo(),
            "threads": len(os.listdir(f"/proc/{pid}/task")),
            "allocated_blocks": sys.getallocatedblocks(),
        }
        if walker and os.waitpid(walker, os.WNOHANG)[0]:
            walker = 0
        walk = not walker and t - walked >= float(os.environ.get("MEM_HOOK_WALK_EVERY", "0"))
        walked = t if walk else walked
        child = probe.forked(lambda: _child(out, t, parent, walk))
        if walk:
            walker = child
        else:
            os.waitpid(child, 0)

    probe.sample("MEM_HOOK_EVERY", take)


probe.start("MEM_HOOK_OUT", _run, stamp=True)
