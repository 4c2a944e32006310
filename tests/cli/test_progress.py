"""Progress bars on a terminal, silence in a pipe: each command run under a pseudo-terminal
(standard error is a tty with a size, as in a user's terminal) and with a pipe."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from streams.tools.worker_process import free_ports
from tests.support.cli import FIXTURES, livepulse, on_terminal, user_env

# A bar with a total: "analyze:  81%|████▌ | 15.0k/18.4k [00:00<00:00, 73.8k records/s]"
BAR = r"{desc}: +\d+%\|.*\| *[\d.]+k?/{total} \[\d\d:\d\d<\d\d:\d\d, +[\d.]+k? {unit}/s\]"


def test_analyze_shows_records_rate_and_time_left_on_a_terminal_only(tmp_path: Path) -> None:
    # Eight copies of the fixture (~147k lines, a few seconds): the fixture alone can be read
    # inside tqdm's first refresh interval, and then no bar with a rate is ever drawn.
    stream = tmp_path / "eight.jsonl"
    stream.write_bytes((FIXTURES / "xhs.jsonl").read_bytes() * 8)
    code, screen = on_terminal("analyze", stream)
    assert code == 0
    assert re.search(BAR.format(desc="analyze", total="147k", unit="records"), screen), screen
    assert "analyzed 147,312 records in " in screen
    piped = livepulse("analyze", stream)
    assert piped.returncode == 0
    assert piped.stderr.startswith("analyzed 147,312 records in ")
    assert len(piped.stderr.splitlines()) == 1 and "\r" not in piped.stderr


@pytest.mark.integration
def test_replay_shows_lines_rate_and_time_left_on_a_terminal_only(kafka_bootstrap: str) -> None:
    import asyncio

    from streams.runtime.settings import Settings
    from streams.runtime.topics import delete_run_topics

    prefix = f"cli-progress-{uuid.uuid4().hex[:8]}."
    try:
        code, screen = on_terminal(
            "replay", FIXTURES / "impulse.jsonl", "--bootstrap", kafka_bootstrap,
            "--topic-prefix", prefix, "--rate", "4000",
        )  # fmt: skip
        assert code == 0, screen
        assert re.search(BAR.format(desc="replay", total="10.6k", unit="lines"), screen), screen
        assert "replayed 10624 lines in " in screen
        piped = livepulse(
            "replay", FIXTURES / "impulse.jsonl", "--bootstrap", kafka_bootstrap,
            "--topic-prefix", prefix, "--rate", "4000",
        )  # fmt: skip
        assert piped.returncode == 0
        assert piped.stderr.startswith("replayed 10624 lines in ")
        assert len(piped.stderr.splitlines()) == 1 and "\r" not in piped.stderr
    finally:
        asyncio.run(delete_run_topics(Settings(bootstrap=kafka_bootstrap, topic_prefix=prefix)))


FAKE_MAVEN = """#!/bin/sh
# Stands in for Maven: "downloads" 3 MB into -Dmaven.repo.local over ~1.5 s, then fails.
for arg in "$@"; do
  case "$arg" in -Dmaven.repo.local=*) repo="${arg#-Dmaven.repo.local=}";; esac
done
mkdir -p "$repo/org/apache/kafka"
for i in 1 2 3; do
  head -c 1048576 /dev/zero > "$repo/org/apache/kafka/part$i.jar"
  sleep 0.5
done
echo "[ERROR] stand-in Maven: no network today"
exit 1
"""


def test_kafka_up_shows_its_first_download_on_a_terminal_only(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "mvn").write_text(FAKE_MAVEN)
    (tools / "mvn").chmod(0o755)
    port, controller = free_ports(2)

    def run_up(on_tty: bool) -> tuple[int, str]:
        run = tmp_path / uuid.uuid4().hex[:6]
        env = user_env(
            PATH=f"{tools}:{os.environ['PATH']}",
            LIVEPULSE_CACHE_DIR=str(run / "cache"),
            LIVEPULSE_KAFKA_STATE_DIR=str(run / "state"),
        )
        args = ("kafka", "up", "--port", str(port), "--controller-port", str(controller))
        if on_tty:
            return on_terminal(*args, env=env)
        piped = livepulse(*args, env=env)
        return piped.returncode, piped.stderr

    code, screen = run_up(on_tty=True)
    assert code == 1
    # The bar counted the bytes as they came, up to the 3 MB written.
    sizes = re.findall(r"downloading: ([\d.]+)MB", screen)
    assert sizes and float(sizes[-1]) >= 2.0, screen
    assert "stand-in Maven: no network today" in screen
    code, log = run_up(on_tty=False)
    assert code == 1
    assert "downloading" not in log and "\r" not in log
    assert log.startswith("fetching Kafka ")
    assert "livepulse kafka up: Maven could not fetch the Kafka" in log


def test_simulate_shows_its_weeks_on_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl"
    code, screen = on_terminal("simulate", "--scenario", "impulse", "--scale", "0.2", "--out", out)
    assert code == 0, screen
    assert re.search(r"simulate impulse: \d\d:\d\d, day 8/\d+: \d+ events so far", screen), screen
