"""Process figures from /proc: CPU seconds and resident memory of a pid; the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int, children: bool = False) -> float | None:
    """User + system CPU seconds of `pid` so far (its threads included), None if gone; with
    `children`, plus those of its children it has waited for (the forked snapshot and report
    children: their CPU is the worker's work done elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are counted from ')'.
    fields = stat.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def peak_rss_bytes(pid: int) -> int | None:
    """The highest resident set size `pid` has had so far (`VmHWM`), None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of `pid` (this process by default)."""
    statm = Path(f"/proc/{pid or os.getpid()}/statm").read_text().split()
    return int(statm[1]) * _PAGE


def broker_pid() -> int | None:
    """The pid of the project's local broker (streams.tools.kafka.process's state), if it runs."""
    from streams.tools.kafka import process

    try:
        pid = int((process.state_dir() / "broker.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if cpu_seconds(pid) is not None else None


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 (git from PATH)
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gb": f"{mem_kb / 1024 / 1024:.1f}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "commit": commit or "?",
    }


Affinities = dict[int, set[int]]


def pin(pid: int, cpus: set[int]) -> Affinities:
    """Pin every thread of `pid` to `cpus` (threads started later inherit it from theirs);
    returns each thread's previous CPU set, for `unpin`. Threads that end meanwhile are skipped."""
    saved: Affinities = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return saved
    for tid in tids:
        try:
            saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
        except OSError:
            saved.pop(tid, None)
    return saved


def unpin(saved: Affinities) -> None:
    """Give the threads `pin` moved their CPU sets back (those still running)."""
    for tid, cpus in saved.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass
