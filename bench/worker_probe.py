"""What the two worker probes share (`bench/worker_sizes/sitecustomize.py`,
`bench/worker_memory/sitecustomize.py`; bench/README.md): their start from the environment,
the sampling loop in the worker, the forked child at nice 19, the walk over the objects
reachable from the root classes, and the patch of `bench.soak` itself.

Each probe loads this file by its path, not as `bench.worker_probe`: `site` imports a
sitecustomize before the script's folder or the working directory is on `sys.path`, and
`bench/worker_sizes` is documented with its own folder alone on PYTHONPATH (putting `bench/`
itself on the path would shadow the standard library's `profile` with `bench/profile.py`).
Standard library only, for the same reason (`streams` only in `bench.soak`'s patch).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Root classes whose reachable objects are counted first, in this order: an object reached
#: from several roots counts in the first. The partition ledgers reach the process-wide tables
#: (`membership_from`, `refunds_from`) and a table can reach the live state, so their split
#: between these roots is not meaningful; the sum is. The state's, then the Kafka clients'.
ROOTS = [
    "Ledger",
    "OperatorBoard",
    "MembershipTable",
    "WorkerRefundTable",
    "MonthRowExchange",
    "PageBuilder",
    "Fetcher",
    "AIOKafkaProducer",
    "MessageAccumulator",
]
#: Objects a root's walk does not count nor go through (nor classes): code and modules.
SKIP = ("module", "function", "method", "frame", "code", "builtin_function_or_method")


def listed() -> list[Any]:
    """Every object the collector lists, the worker's frozen heap (gcpace) unfrozen first."""
    gc.unfreeze()
    return gc.get_objects()


def by_root(objects: Iterable[Any]) -> dict[str, list[Any]]:
    """The objects of each root class in ROOTS (by type name), in the order listed."""
    out: dict[str, list[Any]] = {name: [] for name in ROOTS}
    for o in objects:
        found = out.get(type(o).__name__)
        if found is not None:
            found.append(o)
    return out


def reachable(starts: Iterable[Any], seen: set[int], skip: tuple[str, ...] = ()) -> Iterator[Any]:
    """Each object reachable from `starts` through `gc.get_referents` whose id is not in `seen`
    yet (it is added), once; with `skip`, neither a class nor an object whose type is named in
    it is counted or gone through."""
    stack = list(starts)
    while stack:
        o = stack.pop()
        if id(o) in seen or (skip and (isinstance(o, type) or type(o).__name__ in skip)):
            continue
        seen.add(id(o))
        yield o
        stack.extend(gc.get_referents(o))


def forked(work: Callable[[], None]) -> int:
    """`work()` in a forked child at nice 19, on its copy of the heap (the worker is held only
    for the fork); the child's pid, for the caller to wait for or not."""
    child = os.fork()
    if child == 0:
        try:
            os.nice(19)
            work()
        finally:
            os._exit(0)
    return child


def in_worker() -> bool:
    """Whether this process is a worker (`-m streams.commands.worker`), a second after its
    start (`sys.argv` is set by then)."""
    time.sleep(1.0)
    return any(a.endswith("commands/worker.py") for a in sys.argv)


def sample(every_var: str, take: Callable[[int, float], None]) -> None:
    """`take(pid, t)` every `every_var` seconds (environment, default 30), t seconds since the
    first, for as long as this is the process that started it."""
    pid = os.getpid()
    began = time.time()
    while True:
        time.sleep(float(os.environ.get(every_var, "30")))
        if os.getpid() != pid:
            return
        take(pid, time.time() - began)


def patch_soak(stamp: bool) -> None:
    """In `bench.soak` itself: the /status timeout raised to 30 s (a loaded machine); with
    `stamp`, the soak's sample lines (`bench: soak worker ...`) stamped with the Unix time
    (`at=`), to match a probe's lines to event days."""
    time.sleep(0.5)
    if "bench.soak" not in " ".join(sys.argv) and not any(
        a.endswith("bench/soak.py") for a in sys.argv
    ):
        return
    import builtins

    import streams.tools.worker_process as wp
    from streams.tools.drain import fetch_json

    def status(self: wp.WorkerProcess) -> dict[str, Any]:
        return fetch_json(f"{self.base_url}/status", timeout_s=30.0)

    wp.WorkerProcess.status = status  # type: ignore[method-assign]
    if not stamp:
        return
    plain = builtins.print

    def stamped(*args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], str) and args[0].startswith("bench: soak worker"):
            args = (f"{args[0]} at={time.time():.1f}", *args[1:])
        plain(*args, **kwargs)

    builtins.print = stamped


def start(out_var: str, run: Callable[[], None], stamp: bool) -> None:
    """With `out_var` set in the environment: `run` (the probe's loop, which returns at once
    outside a worker) and `patch_soak(stamp)`, each on a daemon thread."""
    if os.environ.get(out_var):
        threading.Thread(target=run, daemon=True).start()
        threading.Thread(target=patch_soak, args=(stamp,), daemon=True).start()
