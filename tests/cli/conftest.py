"""One `livepulse worker` started with every worker option, shared by the CLI tests that need a
running worker: the xhs fixture replayed into it with `livepulse replay`, drained."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.runtime.settings import Settings
from streams.runtime.topics import delete_run_topics
from streams.tools.drain import fetch_json, wait_drained
from streams.tools.worker_process import free_ports, terminate
from tests.support.cli import FIXTURES, REPO, livepulse, livepulse_path, user_env


@dataclass
class CliWorker:
    """A worker started from the command line, and what it was told."""

    bootstrap: str
    app_id: str
    topic_prefix: str
    web_port: int
    data_dir: Path
    logfile: Path
    process: subprocess.Popen[bytes]
    stderr_path: Path
    #: The web port the environment names (nothing may listen there).
    env_port: int
    #: What `livepulse replay` said while feeding the worker.
    replay_stderr: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def settings(self) -> Settings:
        return Settings(
            bootstrap=self.bootstrap, app_id=self.app_id, topic_prefix=self.topic_prefix
        )

    def options(self) -> list[str]:
        return [
            "--bootstrap",
            self.bootstrap,
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(self.web_port),
            "--app-id",
            self.app_id,
            "--topic-prefix",
            self.topic_prefix,
            "--data-dir",
            str(self.data_dir),
        ]


def _wait_ready(worker: CliWorker, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(
                f"`livepulse worker` exited with {worker.process.returncode}:\n"
                + worker.stderr_path.read_text(errors="replace")[-3000:],
                pytrace=False,
            )
        with contextlib.suppress(OSError, ValueError):
            if fetch_json(f"{worker.base_url}/status", timeout_s=2.0).get("ready"):
                return
        time.sleep(0.25)
    pytest.fail(f"`livepulse worker` not ready after {timeout_s:.0f} s", pytrace=False)


@pytest.fixture(scope="session")
def cli_worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CliWorker]:
    """`livepulse worker` with every option given on the command line, all of them different
    from the environment it runs in, fed `fixtures/xhs.jsonl` by `livepulse replay`."""
    run = f"cli-{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("cli-worker")
    web_port, env_port = free_ports(2)
    stderr_path = root / "worker.stderr"
    # The environment says otherwise on every point the options set: the options must win.
    env = user_env(
        LIVEPULSE_APP_ID="env-app-id-not-used",
        LIVEPULSE_TOPIC_PREFIX="env-prefix-not-used.",
        LIVEPULSE_WEB_PORT=str(env_port),
        LIVEPULSE_DATA_DIR=str(root / "env-data-not-used"),
        LIVEPULSE_BOOTSTRAP="127.0.0.1:1",
        # As the demo and the compose stack say it: the topics are filled from this fixture.
        LIVEPULSE_SIMULATED_SOURCE=str(FIXTURES / "xhs.jsonl"),
        # No option sets it: read from the environment (every fixture refund is within it).
        LIVEPULSE_REFUND_HORIZON_DAYS="14",
    )
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [
                livepulse_path(),
                "worker",
                "--bootstrap",
                kafka_bootstrap,
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(web_port),
                "--app-id",
                run,
                "--topic-prefix",
                f"{run}.",
                "--data-dir",
                str(root / "data"),
                "--loglevel",
                "info",
                "--logfile",
                str(root / "worker.log"),
                "--broker-wait",
                "30",
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    worker = CliWorker(
        bootstrap=kafka_bootstrap,
        app_id=run,
        topic_prefix=f"{run}.",
        web_port=web_port,
        data_dir=root / "data",
        logfile=root / "worker.log",
        process=process,
        stderr_path=stderr_path,
        env_port=env_port,
    )
    try:
        _wait_ready(worker)
        replayed = livepulse(
            "replay",
            FIXTURES / "xhs.jsonl",
            "--bootstrap",
            kafka_bootstrap,
            "--topic-prefix",
            worker.topic_prefix,
            "--rate",
            "40000",
        )
        assert replayed.returncode == 0, replayed.stderr
        worker.replay_stderr = replayed.stderr
        asyncio.run(
            wait_drained(
                worker.settings,
                f"{worker.base_url}/status",
                worker.settings.source_topics,
                120.0,
            )
        )
        yield worker
    finally:
        terminate(process, 30.0)
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(worker.settings))
