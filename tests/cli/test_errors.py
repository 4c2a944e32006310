"""Bad use of each command: one clear line on standard error and a non-zero exit, never a
traceback. (A worker's port in use, its unreachable broker and a second worker on one data
directory are in test_worker.py, next to the worker they need.)"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from streams.tools.worker_process import free_port
from tests.support.cli import FIXTURES, livepulse, livepulse_path, one_error_line, user_env


def _unreachable() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(params=["analyze", "replay", "demo"])
def file_command(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """A command that reads a JSON Lines file, as (arguments before the file..., option)."""
    if request.param == "demo":
        return ("demo", "--bootstrap", _unreachable(), "--web-port", str(free_port()), "--fixture")
    if request.param == "replay":
        return ("replay", "--bootstrap", _unreachable())
    return ("analyze",)


def _prog(command: tuple[str, ...]) -> str:
    return "[demo]" if command[0] == "demo" else f"livepulse {command[0]}:"


def test_a_missing_file(file_command: tuple[str, ...], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    line = one_error_line(livepulse(*file_command, missing), _prog(file_command))
    assert f"no such file: {missing}" in line


def test_a_directory_instead_of_a_file(file_command: tuple[str, ...], tmp_path: Path) -> None:
    line = one_error_line(livepulse(*file_command, tmp_path), _prog(file_command))
    assert f"{tmp_path} is a directory" in line


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="no setpriv")
def test_an_unreadable_file(file_command: tuple[str, ...]) -> None:
    # A directory anyone may enter (pytest's tmp_path is its owner's only), a file no one reads.
    folder = Path(tempfile.mkdtemp(prefix="livepulse-unreadable-"))
    folder.chmod(0o755)
    secret = folder / "secret.jsonl"
    shutil.copy(FIXTURES / "impulse.jsonl", secret)
    secret.chmod(0)
    if os.geteuid() == 0:
        # root reads any file: run the command as nobody, as an unprivileged user would be.
        args = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        if livepulse("--version", prefix=args).returncode != 0:
            shutil.rmtree(folder)
            pytest.skip("nobody cannot run this checkout's livepulse (a private parent folder)")
        result = livepulse(*file_command, secret, prefix=args)
    else:
        result = livepulse(*file_command, secret)
    shutil.rmtree(folder)
    line = one_error_line(result, _prog(file_command))
    assert f"cannot read {secret}: Permission denied" in line


@pytest.mark.parametrize(
    "content",
    [
        b"event_id,type,ts\ne-1,session_started,1\n",  # CSV
        b'[{"event_id": "e-1", "type": "session_started"}]\n',  # one JSON array
        b'{\n  "event_id": "e-1",\n  "type": "session_started"\n}\n',  # pretty-printed JSON
        gzip.compress((FIXTURES / "impulse.jsonl").read_bytes()[:5000]),  # compressed
    ],
    ids=["csv", "json-array", "pretty-json", "gzip"],
)
def test_a_file_that_is_not_json_lines(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    line = one_error_line(livepulse("analyze", path), "livepulse analyze:")
    assert f"{path} is not JSON Lines" in line


def test_replay_and_demo_refuse_a_file_that_is_not_json_lines(
    file_command: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"event_id,type,ts\ne-1,session_started,1\n")
    line = one_error_line(livepulse(*file_command, path), _prog(file_command))
    assert f"{path} is not JSON Lines: none of its first 2 lines is a JSON object" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("worker", "--web-port", "70000"), "--web-port: 70000 is not a port number"),
        (("worker", "--broker-wait", "-1"), "--broker-wait: -1 must be zero or a positive"),
        (("worker", "--app-id", "no spaces allowed"), "--app-id (LIVEPULSE_APP_ID)"),
        (("worker", "--loglevel", "loud"), "--loglevel: invalid choice: 'loud'"),
        (("replay", "x.jsonl", "--rate", "0"), "--rate: 0 must be a positive number"),
        (("replay", "x.jsonl", "--speedup", "fast"), "--speedup: 'fast' is not a number"),
        (("replay", "x.jsonl", "--rate", "1", "--speedup", "2"), "not allowed with argument"),
        (("simulate", "--scenario", "xhs", "--out", "x.jsonl", "--scale", "-2"), "--scale"),
        (("simulate", "--scenario", "nope", "--out", "x.jsonl"), "--scenario: invalid choice"),
        (("report", "--wait", "-5", "--changelog"), "--wait: -5 must be zero or a positive"),
        (("report", "--input", "a.json", "--from", "b"), "not allowed with argument"),
        (("demo", "--web-port", "0"), "--web-port: 0 is not a port number"),
        (("demo", "--timeout", "0"), "--timeout: 0 must be a positive number"),
        (("kafka", "up", "--partitions", "0"), "--partitions: 0 must be at least 1"),
        (("kafka", "up", "--port", "99999"), "--port: 99999 is not a port number"),
        (("kafka", "down", "--timeout", "-1"), "--timeout: -1 must be a positive number"),
        (("no-such-command",), "invalid choice: 'no-such-command'"),
    ],
)
def test_an_option_out_of_range(args: tuple[str, ...], expected: str) -> None:
    result = livepulse(*args, timeout=60)
    line = one_error_line(result, "livepulse")
    assert expected in line
    assert result.returncode == 2


def test_report_from_a_worker_that_is_not_there() -> None:
    url = f"http://{_unreachable()}/report"
    line = one_error_line(livepulse("report", "--from", url), "livepulse report:")
    assert f"cannot get {url}: " in line and "refused" in line


def test_report_input_that_is_not_a_report(tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    line = one_error_line(livepulse("report", "--input", missing), "livepulse report:")
    assert f"cannot read {missing}: No such file" in line
    not_json = tmp_path / "notes.json"
    not_json.write_text("hello\n")
    line = one_error_line(livepulse("report", "--input", not_json), "livepulse report:")
    assert f"{not_json} is not JSON" in line
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}\n')
    line = one_error_line(livepulse("report", "--input", other), "livepulse report:")
    assert "is not a claims report" in line


@pytest.mark.slow
def test_unreachable_brokers(tmp_path: Path) -> None:
    broker = _unreachable()
    replayed = livepulse("replay", FIXTURES / "impulse.jsonl", "--bootstrap", broker)
    assert f"livepulse replay: failed with broker {broker}: " in one_error_line(
        replayed, "livepulse replay:"
    )
    demo = livepulse(
        "demo", "--bootstrap", broker, "--web-port", str(free_port()), "--logs", tmp_path, "--exit"
    )
    assert f"cannot create this run's topics at {broker}" in one_error_line(demo, "[demo]")
    changelog = livepulse("report", "--changelog", "--bootstrap", broker, "--app-id", "x")
    assert "livepulse report: cannot read changelog" in one_error_line(
        changelog, "livepulse report:"
    )


def test_demo_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = livepulse("demo", "--web-port", str(port), "--bootstrap", _unreachable())
    assert f"port {port} is in use" in one_error_line(result, "[demo]")


def test_html_that_cannot_be_written(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "r.html"
    result = livepulse("analyze", FIXTURES / "impulse.jsonl", "--html", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"livepulse analyze: cannot write {out}: No such file" in result.stderr


def test_an_unforeseen_failure_is_one_line_too(tmp_path: Path) -> None:
    # A report whose claims are not what the table expects: no command checks for this.
    odd = tmp_path / "odd.json"
    odd.write_text('{"claims": {"orders_after_minute_5": "not an entry"}}\n')
    result = livepulse("report", "--input", odd)
    line = one_error_line(result, "livepulse report: unexpected error: ")
    assert result.returncode == 1, line


def test_a_removed_setting_is_named_and_ignored() -> None:
    """The agent ingest path's settings are gone (issue 16): a worker says it ignores them."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = livepulse(
            "worker",
            "--web-port",
            str(port),
            env=user_env(LIVEPULSE_BATCH_INGEST="false", LIVEPULSE_BATCH_WITHIN_S="0.1"),
        )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        f"livepulse worker: {name} is no longer used (each fetch is ingested as one batch, the "
        "only ingest path); ignoring it"
        for name in ("LIVEPULSE_BATCH_INGEST", "LIVEPULSE_BATCH_WITHIN_S")
    ]
    assert f"port {port} on 127.0.0.1 is in use" in lines[2]


def test_a_reader_that_goes_away_is_no_error() -> None:
    """`livepulse schema | head -0`: the pipe closes before the command writes; it stops quietly
    with 141 (128 + SIGPIPE, as a shell reports it) and no BrokenPipeError on standard error."""
    process = subprocess.Popen(  # noqa: S603 (our own console script)
        [livepulse_path(), "schema"],
        env=user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first write
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr
    assert stderr == ""
