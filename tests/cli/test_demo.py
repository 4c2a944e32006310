"""`livepulse demo` as README documents it, every option given: the claims table on standard
output against the fixture's truth file, the HTML page, the worker's log, the kept topics."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from streams.runtime.settings import Settings
from streams.runtime.topics import delete_run_topics
from streams.tools.kafka.admin import fetch_metadata
from streams.tools.worker_process import free_port, port_is_free
from tests.support.cli import FIXTURES, on_terminal, table_matches

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_with_every_option(kafka_bootstrap: str, tmp_path: Path) -> None:
    html, logs, port = tmp_path / "out" / "demo.html", tmp_path / "logs", free_port()
    # Standard error on a terminal, as a user runs it: the waits show progress there.
    stdout = tmp_path / "stdout.txt"
    code, stderr = on_terminal(
        "demo", "--fixture", FIXTURES / "impulse.jsonl", "--exit", "--html", html,
        "--web-port", port, "--bootstrap", kafka_bootstrap, "--keep-topics",
        "--timeout", "150", "--logs", logs, "--speedup", "1000000", timeout=300, stdout=stdout,
    )  # fmt: skip
    found = re.search(r"topics of this run: (demo-(\S+)\.)live\.\*", stderr)
    assert found, stderr
    prefix, run_id = found.group(1), found.group(2)
    settings = Settings(
        bootstrap=kafka_bootstrap, topic_prefix=prefix, app_id=f"livepulse-demo-{run_id}"
    )
    try:
        assert code == 0, stderr
        # The live screen's address, before the replay (to watch it) and again at the end.
        assert stderr.count(f"[demo] live screen (直播大屏): http://127.0.0.1:{port}/screen") == 2
        # The waits for the worker, and the replay, drew their bars.
        assert re.search(r"\[demo\] waiting for the worker: \d\d:\d\d", stderr), stderr
        assert re.search(r"\[demo\] worker consuming: +\d+%\|", stderr), stderr
        assert re.search(r"replay: +\d+%\|.*/10\.6k \[", stderr), stderr
        truth = json.loads((FIXTURES / "impulse.truth.json").read_text("utf-8"))
        table = stdout.read_text("utf-8")
        assert table.startswith("SIMULATED DATA (scenario impulse, seed 1")
        table_matches(table, truth)
        events = truth["events"]
        page = html.read_text("utf-8")
        assert 'class="simulated"' in page and f"127.0.0.1:{port}/report" in page
        log = logs / f"worker-{run_id}.log"
        assert f"worker {settings.app_id} reading {prefix}live." in log.read_text("utf-8")
        # --exit: the worker is gone; --keep-topics: its topics are not.
        assert port_is_free("127.0.0.1", port)
        assert "deleted this run's topics" not in stderr
        topics = fetch_metadata(kafka_bootstrap).topics
        assert all(topic in topics for topic in settings.source_topics)
        assert (
            f"[demo] dead letters: topic {settings.deadletter} ({events['rejected']} records)"
            in stderr
        )
    finally:
        asyncio.run(delete_run_topics(settings))
