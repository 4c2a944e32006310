"""The child-process helper the worker and the local Prometheus share: log, tail, stop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from streams.tools.worker_process import LoggedChild

# Prints five lines, then sleeps until SIGTERM ends it.
SCRIPT = "import time\nfor k in range(5): print(f'line {k}', flush=True)\ntime.sleep(60)\n"


class _Child(LoggedChild):
    def __init__(self, log_path: Path) -> None:
        super().__init__()
        self.log_path = log_path

    def start(self) -> None:
        log = self.open_log(self.log_path)
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter)
            [sys.executable, "-c", SCRIPT], stdout=log, stderr=subprocess.STDOUT
        )


def _wait_for(child: _Child, line: str) -> None:
    deadline = time.monotonic() + 30
    while line not in child.tail():
        assert time.monotonic() < deadline, child.tail()
        time.sleep(0.05)


def test_tail_stop_and_context_manager(tmp_path: Path) -> None:
    child = _Child(tmp_path / "child.log")
    assert child.tail() == "(no log)"
    assert child.stop() is None  # never started: nothing to stop
    with child as entered:
        assert entered is child
        _wait_for(child, "line 4")
        assert child.tail(2) == "line 3\nline 4"
        assert child.process is not None and child.process.poll() is None
    # Leaving the block SIGTERMed the child and closed the log; the log stays readable.
    assert child.process.returncode == -15
    assert child._log is None
    assert child.tail(1) == "line 4"
    # Started again, the log is appended to.
    child.start()
    _wait_for(child, "line 4\nline 0")
    assert child.stop(timeout_s=5) == -15
