"""A `livepulse worker` in a child process: start it, wait until it serves, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

from streams.runtime.settings import Settings
from streams.tools.drain import fetch_json


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM a child process, SIGKILL it after `timeout_s`; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class WorkerFailed(RuntimeError):
    """The worker process exited or did not become ready."""


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port (so a worker can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    (port,) = free_ports(1, host)
    return port


def isolated_settings(bootstrap: str, prefix: str, **update: Any) -> Settings:
    """Settings of a run nobody else uses: its own app id and topic prefix (`prefix` and a
    random suffix), a free web port and a state store in a temporary directory of its own
    (apart from the repository's data/), with `update` on top."""
    run = f"{prefix}-{uuid.uuid4().hex[:12]}"
    fields: dict[str, Any] = {
        "bootstrap": bootstrap,
        "app_id": run,
        "topic_prefix": f"{run}.",
        "web_port": free_port(),
        "data_dir": Path(tempfile.mkdtemp(prefix=f"livepulse-{run}-")),
        **update,
    }
    return Settings(**fields)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports nothing listens on right now (all held open while picked, so
    the kernel cannot hand out one twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LoggedChild:
    """A child process whose output goes to a log file: `tail()` reads the end of that log,
    `stop()` terminates the process and closes the log, and the object is a context manager
    (`start()` on entering, `stop()` on leaving). Subclasses start the process in `start()`."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_file: Path | None = None

    def start(self) -> None:
        raise NotImplementedError

    def open_log(self, path: Path, mode: Literal["ab", "wb"] = "ab") -> IO[bytes]:
        """Open `path` as the log the child writes to (`stop()` closes it, `tail()` reads it)."""
        self._log_file = path
        self._log = path.open(mode)
        return self._log

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; return the exit code (None if never started)."""
        code = terminate(self.process, timeout_s) if self.process is not None else None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the log, or "(no log)"."""
        if self._log_file is None:
            return "(no log)"
        try:
            text = self._log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class WorkerProcess(LoggedChild):
    """`python -m streams.commands.worker` with `settings`, its output in `log_path`.

    Use as a context manager, or call `start()` and `stop()`; `stop()` is always safe to call.
    """

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        loglevel: str = "info",
        extra_args: tuple[str, ...] = (),
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        #: Other environment variables of the child (e.g. glibc's `MALLOC_ARENA_MAX`,
        #: `PYTHONMALLOC`), on top of this process's.
        self.env = dict(env or {})
        #: Working directory of the child; `python -m` puts it first on sys.path, so a
        #: different source tree must be run from its own directory (PYTHONPATH comes after).
        self.cwd = cwd
        self.extra_args = extra_args
        self.log_path = log_path
        self.loglevel = loglevel

    @property
    def base_url(self) -> str:
        host = self.settings.web_host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a wildcard bind is reached locally)
            host = "127.0.0.1"
        return f"http://{host}:{self.settings.web_port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streams.commands.worker",
            "--loglevel",
            self.loglevel,
            *self.extra_args,
        ]

    def start(self) -> None:
        """Start the process; all its settings reach it as LIVEPULSE_* variables."""
        if not port_is_free(self.settings.web_host, self.settings.web_port):
            raise WorkerFailed(
                f"port {self.settings.web_port} is in use (another worker?); pick another one"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
        env.update(self.settings.to_env())
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.open_log(self.log_path)
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            self.command(),
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the parent only
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> dict[str, Any]:
        """The worker's /status."""
        status: dict[str, Any] = fetch_json(f"{self.base_url}/status", timeout_s=2.0)
        return status

    def wait_ready(
        self, timeout_s: float = 90.0, tick: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Wait until /status answers with `ready` (partitions assigned); return it. `tick` is
        called at every poll (a progress display)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if tick is not None:
                tick()
            if not self.alive():
                raise WorkerFailed(f"the worker exited; the end of {self.log_path}:\n{self.tail()}")
            with contextlib.suppress(OSError, ValueError):
                status = self.status()
                if status.get("ready"):
                    return status
            if time.monotonic() > deadline:
                raise WorkerFailed(
                    f"the worker was not ready after {timeout_s:.0f} s; the end of "
                    f"{self.log_path}:\n{self.tail()}"
                )
            time.sleep(0.25)
