"""scripts/replay_once.py (the compose replayer's entry) against the real broker: the fixture is
sent once, never again on a restart, and a replay that failed part-way is not taken for done."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "replay_once.py"
LIVEPULSE = Path(sys.executable).with_name("livepulse")


@pytest.fixture
def run_settings(kafka_bootstrap: str) -> Iterator[Settings]:
    run = f"once-{uuid.uuid4().hex[:12]}"
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=f"{run}.", partitions=2)
    asyncio.run(create_topics(settings, all_topics(settings)))
    yield settings
    asyncio.run(delete_run_topics(settings))


def replay_once(settings: Settings, marker: Path, *command: str) -> subprocess.Popen[str]:
    # The last run's marker would pass for this one's until the script removes it.
    marker.unlink(missing_ok=True)
    env = os.environ | {
        "LIVEPULSE_BOOTSTRAP": settings.bootstrap,
        "LIVEPULSE_TOPIC_PREFIX": settings.topic_prefix,
    }
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--marker", str(marker), "--", *command],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcome_once_up(process: subprocess.Popen[str], marker: Path) -> str:
    """Wait for the marker (the healthcheck's file), check the process stays up, stop it."""
    deadline = time.monotonic() + 90
    while not marker.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no marker after 90 s"
        time.sleep(0.2)
    time.sleep(0.5)
    assert process.poll() is None, "it must stay up once done (compose `up --wait`)"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    process.stderr.close()
    return marker.read_text(encoding="utf-8").strip()


def test_the_fixture_is_replayed_once_and_a_failed_replay_is_not_taken_for_done(
    run_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "replay.done"
    failed = marker.with_suffix(".failed")
    fixture = ROOT / "fixtures" / "xhs.jsonl"
    replay = [str(LIVEPULSE), "replay", str(fixture), "--bootstrap", run_settings.bootstrap]
    replay += ["--topic-prefix", run_settings.topic_prefix]

    # A replay that fails before sending anything: exit status kept, marked, no done marker.
    process = replay_once(run_settings, marker, "false")
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 1 and "the replay failed" in errors
    assert failed.exists() and not marker.exists()

    # Fresh topics (nothing was sent): replayed now, and the failure mark cleared.
    assert outcome_once_up(replay_once(run_settings, marker, *replay), marker) == "replayed"
    assert not failed.exists()

    # A restart: the topics hold the fixture, so it is not sent again.
    outcome = outcome_once_up(replay_once(run_settings, marker, "false"), marker)
    assert outcome.startswith("not replayed: the contract topics already hold")

    # A replay that failed part-way (records written, then the mark): refused, loudly.
    failed.write_text("exit 1\n", encoding="utf-8")
    process = replay_once(run_settings, marker, *replay)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 1 and "docker compose down -v" in errors
    assert not marker.exists()
