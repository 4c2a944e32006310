"""Object sizes inside a running `livepulse worker`, by root, sampled while it runs (a probe
for `bench.soak --worker`, not part of the worker).

Put this folder first on PYTHONPATH with SIZE_HOOK_OUT=FILE (and SIZE_HOOK_EVERY=seconds,
default 30): in a process started as `-m streams.commands.worker`, a thread forks a child
every period which, at nice 19, adds up `sys.getsizeof` over every object reachable from each
root class in ROOTS (an object shared by two roots counted once, in ROOTS' order) and appends
one JSON line (with the worker's RSS at the fork) to FILE; the worker is held only for the
fork. In `bench.soak` itself it raises the /status timeout to 30 s (a loaded machine). Used
for bench/RESULTS.md, "Soak", "The worker's RSS against ca69cd7":

    SIZE_HOOK_OUT=/tmp/sizes.jsonl PYTHONPATH=bench/worker_sizes python -m bench.soak --worker ...
"""

import os
import sys
import threading
import time

# In this order an object reached from several roots counts in the first: the partition
# ledgers reach the process-wide tables (`membership_from`, `refunds_from`) and a table can
# reach the live state, so their split between these roots is not meaningful; the sum is.
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


def _sizes():
    import collections
    import gc

    gc.unfreeze()  # the worker freezes its heap (gcpace): frozen objects are not listed
    objects = gc.get_objects()
    by_name = collections.defaultdict(list)
    for o in objects:
        n = type(o).__name__
        if n in ROOTS:
            by_name[n].append(o)
    seen = set()

    def deep(root):
        total = 0
        stack = [root]
        while stack:
            o = stack.pop()
            if (
                id(o) in seen
                or isinstance(o, type)
                or type(o).__name__
                in ("module", "function", "method", "frame", "code", "builtin_function_or_method")
            ):
                continue
            seen.add(id(o))
            total += sys.getsizeof(o)
            stack.extend(gc.get_referents(o))
        return total

    out = {}
    for n in ROOTS:
        out[n] = [len(by_name[n]), sum(deep(o) for o in by_name[n]) / 1e6]
    rest = 0
    kinds = collections.Counter()
    for o in objects:
        if id(o) not in seen:
            s = sys.getsizeof(o)
            rest += s
            kinds[type(o).__name__] += s
    out["other tracked objects (shallow)"] = rest / 1e6
    out["other, top types"] = {k: round(v / 1e6, 2) for k, v in kinds.most_common(8)}
    return out


def _run():
    time.sleep(1.0)
    if not any(a.endswith("commands/worker.py") for a in sys.argv):
        return
    import json

    out = os.environ["SIZE_HOOK_OUT"]
    began = time.time()
    while True:
        time.sleep(float(os.environ.get("SIZE_HOOK_EVERY", "30")))
        if os.getpid() != pid:
            return
        rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * 4096
        t = time.time() - began
        child = os.fork()
        if child == 0:
            try:
                os.nice(19)
                with open(out, "a") as f:
                    f.write(json.dumps({"t": round(t), "rss_mb": rss / 1e6, **_sizes()}) + "\n")
            finally:
                os._exit(0)
        os.waitpid(child, 0)


def _patch_soak():
    time.sleep(0.5)
    if "bench.soak" not in " ".join(sys.argv) and not any(
        a.endswith("bench/soak.py") for a in sys.argv
    ):
        return
    from typing import Any

    import streams.tools.worker_process as wp
    from streams.tools.drain import fetch_json

    def status(self) -> dict[str, Any]:
        return fetch_json(f"{self.base_url}/status", timeout_s=30.0)

    wp.WorkerProcess.status = status


if os.environ.get("SIZE_HOOK_OUT"):
    pid = os.getpid()
    threading.Thread(target=_run, daemon=True).start()
    threading.Thread(target=_patch_soak, daemon=True).start()
