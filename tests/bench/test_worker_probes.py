"""The worker probes (`bench/worker_sizes`, `bench/worker_memory`: a sitecustomize.py each, put
first on PYTHONPATH as bench/README.md says) in a fresh interpreter whose script stands in for
the worker or for `bench.soak`: each samples the worker into its file, counts a root class's
objects, and patches the soak's /status timeout (the memory probe also stamps its lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = 200_000

#: Stands in for the worker (its path ends in commands/worker.py): holds a `Ledger` reaching
#: PAYLOAD distinct ints, and stays until the probe has written a whole line with its roots,
#: which it copies to PROBE_FOUND (the probe's children may still be appending to its file).
WORKER = f"""
import json, os, time

class Ledger:
    def __init__(self):
        self.held = [n * 7919 for n in range({PAYLOAD})]

ledger = Ledger()
out = os.environ["PROBE_OUT"]
for _ in range(1200):
    time.sleep(0.1)
    if os.path.exists(out):
        lines = []
        with open(out) as f:
            for line in f:
                try:
                    lines.append(json.loads(line))
                except ValueError:  # a line still being written
                    pass
        found = [line for line in lines if "Ledger" in line or "roots" in line]
        if found:
            with open(os.environ["PROBE_FOUND"], "w") as f:
                json.dump(found[0], f)
            break
"""

#: Stands in for `bench.soak` (its path ends in bench/soak.py): waits for the probe's patch of
#: `WorkerProcess.status`, then prints a soak sample line.
SOAK = """
import time
import streams.tools.worker_process as wp

plain = wp.WorkerProcess.status
for _ in range(600):
    time.sleep(0.1)
    if wp.WorkerProcess.status is not plain:
        break
print("patched" if wp.WorkerProcess.status is not plain else "plain", flush=True)
print("bench: soak worker day=1", flush=True)
"""


def _run(script: Path, path: list[Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`script` run with `path` as PYTHONPATH (the probe's folder first)."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, str(script)],
        cwd=script.parent,
        env={**base, "PYTHONPATH": os.pathsep.join(map(str, path)), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _script(tmp_path: Path, relative: str, text: str) -> Path:
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


@pytest.mark.slow
def test_the_sizes_probe_samples_the_worker_by_root(tmp_path: Path) -> None:
    """A line a period: the worker's RSS and each root class's objects (one `Ledger`, holding
    at least its list and its ints), then the rest."""
    out = tmp_path / "sizes.jsonl"
    worker = _script(tmp_path, "streams/commands/worker.py", WORKER)
    found = tmp_path / "found.json"
    env = {"SIZE_HOOK_OUT": str(out), "SIZE_HOOK_EVERY": "0.2", "PROBE_OUT": str(out)}
    env["PROBE_FOUND"] = str(found)
    done = _run(worker, [ROOT / "bench" / "worker_sizes"], env)  # as bench/README.md's
    assert done.returncode == 0, done.stderr
    line = json.loads(found.read_text())
    assert line["rss_mb"] > 0 and line["t"] >= 0
    assert line["Ledger"][0] == 1
    # The list (8 bytes a slot) and its ints (28 bytes each, but a few small cached ones).
    assert line["Ledger"][1] >= PAYLOAD * (8 + 28) / 1e6 * 0.99
    assert line["OperatorBoard"] == [0, 0.0]
    assert "other tracked objects (shallow)" in line and "other, top types" in line


@pytest.mark.slow
def test_the_memory_probe_samples_the_worker_and_walks_its_objects(tmp_path: Path) -> None:
    """A line a period: the worker's RSS, smaps and mallinfo, a trim in the child; with a walk
    (every time by default) the objects by root (one `Ledger`, holding at least its list and
    its ints) and by type."""
    out = tmp_path / "mem.jsonl"
    worker = _script(tmp_path, "streams/commands/worker.py", WORKER)
    found = tmp_path / "found.json"
    env = {"MEM_HOOK_OUT": str(out), "MEM_HOOK_EVERY": "0.2", "PROBE_OUT": str(out)}
    env["PROBE_FOUND"] = str(found)
    done = _run(worker, [ROOT / "bench" / "worker_memory"], env)
    assert done.returncode == 0, done.stderr
    walked = json.loads(found.read_text())
    assert walked["rss_mb"] > 0 and walked["threads"] >= 2 and walked["at"] > 0
    assert set(walked["smaps_mb"]) == {"heap", "anon", "file", "stack", "other"}
    assert walked["mallinfo"]["in_use_mb"] > 0 and "trimmed_mb" in walked
    assert walked["roots"]["Ledger"][0] == 1
    assert walked["roots"]["Ledger"][1] >= PAYLOAD * (8 + 28) / 1e6 * 0.99
    assert walked["by_type"]["int"][0] >= PAYLOAD
    assert walked["objects"] > PAYLOAD


@pytest.mark.parametrize(
    ("probe", "out_var", "stamped"),
    [("worker_sizes", "SIZE_HOOK_OUT", False), ("worker_memory", "MEM_HOOK_OUT", True)],
)
def test_each_probe_patches_the_soaks_status_timeout(
    tmp_path: Path, probe: str, out_var: str, stamped: bool
) -> None:
    """In the soak itself the probe replaces `WorkerProcess.status` (a 30 s timeout); the
    memory probe also stamps the soak's sample lines with the Unix time, the sizes probe
    does not; neither samples the soak."""
    out = tmp_path / "probe.jsonl"
    soak = _script(tmp_path, "bench/soak.py", SOAK)
    done = _run(soak, [ROOT / "bench" / probe, ROOT], {out_var: str(out)})
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert printed[0] == "patched"
    assert (" at=" in printed[1]) is stamped, printed[1]
    assert not out.exists()
