"""Dump a partition's state from a forked child, so the worker's event loop is not held up.

Why: `dump_state` (pickle, then zlib) of one partition took ~0.36 s on a 2M-record bench run
(a quarter of its sessions: 13 MB of pickle), all of it with the keeper's lock held, so every
record arriving meanwhile waited: the snapshot was most of the p99 latency (bench/NOTES.md,
Round 5). A fork copies only the process's page tables (14-18 ms for the whole 2M-record
state, measured here), and from then on the child sees the state exactly as it was at the
fork, whatever the parent applies next (copy-on-write). So the lock is held for the fork
alone; the child pickles and compresses on another core and streams the bytes back through a
pipe, which a thread of the parent reads.

Safety of forking a process with threads (aiokafka's consumer thread, RocksDB's): the child
only runs `dump_state` (pickle and zlib, which take no lock besides the GIL and malloc's, and
glibc re-initialises malloc's in the child), writes to its pipe and leaves with `os._exit`:
no logging, no atexit handlers, no Kafka or RocksDB call, no event loop. Signals the worker
handles are reset to their defaults in the child, so a signal sent to the child does not reach
the worker's loop through the shared wake-up fd. A child that does not finish within
`timeout_s` is killed and the dump fails (the partition stays dirty and is snapshotted again
later, as for any failed snapshot).

Where `os.fork` does not exist (Windows), or with `LIVEPULSE_SNAPSHOT_FORK=false`, the keeper
dumps in-process as before.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import struct
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from agents.core.ledger import Ledger
from agents.core.operator import OperatorBoard
from agents.core.persist import dump_state

#: Whether this platform can fork at all.
CAN_FORK: Final[bool] = hasattr(os, "fork")
#: A child that has not delivered its dump by then is killed (the 2M-record state of a whole
#: worker, four partitions, took ~2 s in one child here).
DEFAULT_TIMEOUT_S: Final[float] = 300.0
#: The child's niceness (added to the worker's).
CHILD_NICE: Final[int] = 19
_LENGTH = struct.Struct(">Q")
_READ = 1 << 20


class ForkDumpError(RuntimeError):
    """The child did not deliver a complete dump (it failed, was killed or timed out)."""


@dataclass
class ForkedDump:
    """A child dumping a state; `collect()` (blocking, run it in a thread) returns the bytes."""

    pid: int
    fd: int
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: What the child makes, for the errors ("snapshot", "report").
    what: str = "snapshot"
    _reaped: bool = False

    def collect(self) -> bytes:
        """The dump (`dump_state`'s bytes); ForkDumpError with the reason otherwise."""
        deadline = time.monotonic() + self.timeout_s
        chunks: list[bytes] = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    self._reap()  # SIGKILL cannot be caught: this returns at once
                    raise ForkDumpError(
                        f"{self.what} child {self.pid} did not finish within {self.timeout_s:.0f} s"
                    )
                ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
                if not ready:
                    continue
                chunk = os.read(self.fd, _READ)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self.fd)
        status = self._reap()
        data = b"".join(chunks)
        if status is not None and status != 0:
            raise ForkDumpError(f"{self.what} child {self.pid} failed ({_describe(status)})")
        if len(data) < _LENGTH.size:
            raise ForkDumpError(f"{self.what} child {self.pid} wrote no dump")
        (length,) = _LENGTH.unpack_from(data)
        if len(data) - _LENGTH.size != length:
            written = len(data) - _LENGTH.size
            raise ForkDumpError(
                f"{self.what} child {self.pid} wrote {written:,} of {length:,} bytes"
            )
        return data[_LENGTH.size :]

    def kill(self) -> None:
        """Stop the child (the worker is stopping, or the child is stuck)."""
        if not self._reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _reap(self) -> int | None:
        """The child's wait status as an exit code, or None if someone else reaped it."""
        if self._reaped:
            return None
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler): the length decides
            return None
        finally:
            self._reaped = True
        return os.waitstatus_to_exitcode(status)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def fork_dump(
    ledger: Ledger, board: OperatorBoard, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ForkedDump:
    """Fork a child that writes `dump_state(ledger, board)` to a pipe; returns at once.

    The dump is of the state at this call, whatever the caller changes afterwards. Raises
    OSError if the fork fails (out of processes or memory): the caller falls back or retries.
    """
    return fork_bytes(lambda: dump_state(ledger, board), timeout_s)


def fork_bytes(
    produce: Callable[[], bytes],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    nice: int = CHILD_NICE,
    what: str = "snapshot",
) -> ForkedDump:
    """Fork a child that writes `produce()` to a pipe; returns at once (`collect()` the bytes).

    Why (besides the snapshots): the report (`agents.core.build_report`, 1.7 s of CPU at
    200,000 records) is built this way too (`streams.runtime.web.ReportCache`), so it runs on
    the other core instead of holding up the batches on the worker's event loop.

    `produce` runs in the child, on the process's memory as it was at this call (so on a
    consistent state, whatever the caller changes afterwards), under the same rules as the
    snapshot dump (module docstring): no logging, locks, Kafka, RocksDB or event loop. `nice`
    is added to the worker's niceness in the child. Raises OSError if the fork fails.
    """
    read_fd, write_fd = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns about forking a process with threads; see the module
            # docstring for why this child is safe.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child: never returns
        _child(produce, nice, read_fd, write_fd)
    os.close(write_fd)
    return ForkedDump(pid, read_fd, timeout_s, what)


def _child(produce: Callable[[], bytes], nice: int, read_fd: int, write_fd: int) -> None:
    code = 1
    try:
        os.close(read_fd)
        _reset_signals()
        # Background work: on a busy machine the worker (and whatever else serves records)
        # goes first; the child takes what is left (nice 19: ~1.5% of a contended core, all
        # of an idle one).
        with contextlib.suppress(OSError):
            os.nice(nice)
        gc.disable()  # a collection would only copy pages; the child's garbage dies with it
        blob = produce()
        _write_all(write_fd, _LENGTH.pack(len(blob)))
        _write_all(write_fd, blob)
        code = 0
    except BaseException:
        # No logging here (its locks may be held by a thread that did not follow the fork).
        with contextlib.suppress(BaseException):
            os.write(2, f"livepulse forked child:\n{traceback.format_exc()}".encode())
    finally:
        os._exit(code)


def _reset_signals() -> None:
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # not the main thread: no wake-up fd was ours to inherit
        pass
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"):
        number = getattr(signal, name, None)
        if number is not None:
            try:
                signal.signal(number, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
    # The parent may have blocked signals in this thread (the child inherits the mask).
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
