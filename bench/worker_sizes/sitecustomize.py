"""Object sizes inside a running `livepulse worker`, by root, sampled while it runs (a probe
for `bench.soak --worker`, not part of the worker).

Put this folder first on PYTHONPATH with SIZE_HOOK_OUT=FILE (and SIZE_HOOK_EVERY=seconds,
default 30): in a process started as `-m streams.commands.worker`, a thread forks a child
every period which, at nice 19, adds up `sys.getsizeof` over every object reachable from each
root class in ROOTS (bench/worker_probe.py, shared with bench/worker_memory; an object shared
by two roots counted once, in ROOTS' order) and appends
one JSON line (with the worker's RSS at the fork) to FILE; the worker is held only for the
fork. In `bench.soak` itself it raises the /status timeout to 30 s (a loaded machine). Used
for bench/RESULTS.md, "Soak", "The worker's RSS against ca69cd7":

    SIZE_HOOK_OUT=/tmp/sizes.jsonl PYTHONPATH=bench/worker_sizes python -m bench.soak --worker ...
"""

import importlib.util
import os
import sys

# The probes' shared parts (ROOTS, the loop, the fork, the walk, the soak's patch), by path.
_spec = importlib.util.spec_from_file_location(
    "worker_probe",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "worker_probe.py"),
)
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def _sizes():
    import collections

    objects = probe.listed()
    by_name = probe.by_root(objects)
    seen = set()
    out = {}
    for n in probe.ROOTS:
        walked = probe.reachable(by_name[n], seen, probe.SKIP)
        out[n] = [len(by_name[n]), sum(sys.getsizeof(o) for o in walked) / 1e6]
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
    if not probe.in_worker():
        return
    import json

    out = os.environ["SIZE_HOOK_OUT"]

    def take(pid, t):
        rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * 4096

        def write():
            with open(out, "a") as f:
                f.write(json.dumps({"t": round(t), "rss_mb": rss / 1e6, **_sizes()}) + "\n")

        os.waitpid(probe.forked(write), 0)

    probe.sample("SIZE_HOOK_EVERY", take)


probe.start("SIZE_HOOK_OUT", _run, stamp=False)
