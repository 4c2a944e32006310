"""Run `livepulse` the way a user does: the installed console script, a separate process, an
environment without the caller's LIVEPULSE_* variables unless a test sets them on purpose."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO / "fixtures"


def livepulse_path() -> str:
    """The `livepulse` console script of the interpreter running the tests (the venv's)."""
    beside = Path(sys.executable).with_name("livepulse")
    if beside.is_file():
        return str(beside)
    found = shutil.which("livepulse")
    assert found is not None, "the livepulse console script is not installed"
    return found


def user_env(**variables: str) -> dict[str, str]:
    """The test process's environment less every LIVEPULSE_* variable, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
    env.update(variables)
    return env


def livepulse(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
    cwd: Path | None = None,
    prefix: tuple[str, ...] = (),
    **popen: Any,
) -> subprocess.CompletedProcess[str]:
    """Run `livepulse ARGS...` to its end (after `prefix`, e.g. a command that changes the
    user); standard output and error captured as text."""
    return subprocess.run(  # noqa: S603 (our own console script)
        [*prefix, livepulse_path(), *map(str, args)],
        env=env if env is not None else user_env(),
        cwd=cwd if cwd is not None else REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **popen,
    )


def table_matches(table: str, truth: dict[str, Any]) -> None:
    """A claims table (`analyze`, `report`, the demo's standard output) has the truth file's
    event counts and a row for each of its claims."""
    events = truth["events"]
    assert (
        f"events: {events['valid']:,} valid, {events['rejected']:,} rejected, "
        f"{events['duplicates']:,} duplicates"
    ) in table
    for claim_id in truth["claims"]:
        assert re.search(rf"^{re.escape(claim_id)}\s", table, re.MULTILINE), claim_id


def one_error_line(result: subprocess.CompletedProcess[str], prog: str) -> str:
    """The single line a failed command printed on standard error (asserting there is only
    that line, no traceback and a non-zero exit)."""
    assert result.returncode != 0, f"exit 0; stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith(prog), lines[0]
    return lines[0]


def on_terminal(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    stdout: Path | None = None,
) -> tuple[int, str]:
    """Run `livepulse ARGS` with standard error on a pseudo-terminal of 120 columns (standard
    output to `stdout` if given); its exit code and everything it wrote on the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    with contextlib.ExitStack() as files:
        out = files.enter_context(stdout.open("wb")) if stdout is not None else None
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [livepulse_path(), *map(str, args)],
            cwd=REPO,
            env=env if env is not None else user_env(),
            stdin=subprocess.DEVNULL,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=slave,
        )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    code = process.wait(timeout)
    return code, b"".join(chunks).decode("utf-8", errors="replace")
