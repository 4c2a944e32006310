"""`livepulse kafka up / status / down` on a broker of the test's own: other ports, its own state
directory (LIVEPULSE_KAFKA_STATE_DIR), the shared jar cache. The shared broker on 9092 is never
touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streams.tools.kafka import download, process
from streams.tools.kafka.admin import broker_answers, contract_topics, fetch_metadata
from streams.tools.worker_process import free_ports, port_is_free
from tests.conftest import in_ci
from tests.support.cli import livepulse, one_error_line, user_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_broker_env(tmp_path: Path) -> dict[str, str]:
    cache = download.cache_dir()  # the shared one: the jars are fetched once
    if not (download.libs_dir().parent / "fetched.txt").is_file():
        message = f"the Kafka jars are not in {cache} yet (`livepulse kafka up` fetches them)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return user_env(
        **{
            download.ENV_CACHE_DIR: str(cache),
            process.ENV_STATE_DIR: str(tmp_path / "kafka-state"),
            "LIVEPULSE_KAFKA_HEAP": "256m",
        }
    )


def test_up_status_down(own_broker_env: dict[str, str], tmp_path: Path) -> None:
    env = own_broker_env
    state = Path(env[process.ENV_STATE_DIR])
    port, controller = free_ports(2)
    bootstrap = f"127.0.0.1:{port}"
    try:
        stopped = livepulse("kafka", "status", env=env)
        assert stopped.returncode == 1 and stopped.stdout.startswith("not running")

        up = livepulse(
            "kafka", "up", "--port", port, "--controller-port", controller,
            "--partitions", "2", "--timeout", "150", env=env, timeout=200,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == bootstrap  # usable as BOOTSTRAP=$(livepulse kafka up)
        assert broker_answers(bootstrap, timeout_s=10)
        topics = fetch_metadata(bootstrap).topics
        assert all(topics[name] == 2 for name in contract_topics())
        assert not port_is_free("127.0.0.1", controller)

        again = livepulse("kafka", "up", "--port", port, env=env, timeout=120)
        assert again.returncode == 0 and f"already running at {bootstrap}" in again.stderr
        moved = livepulse("kafka", "up", "--port", str(free_ports(1)[0]), env=env)
        assert f"already runs at {bootstrap}" in one_error_line(moved, "livepulse kafka up:")

        status = livepulse("kafka", "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        described = json.loads(status.stdout)
        assert described["running"] is True and described["bootstrap"] == bootstrap
        assert described["state_dir"] == str(state)
        assert all(described["topics"][name] == 2 for name in contract_topics())
        table = livepulse("kafka", "status", env=env)
        assert table.returncode == 0
        assert table.stdout.startswith(f"running  pid {described['pid']}  bootstrap {bootstrap}")

        down = livepulse("kafka", "down", "--timeout", "30", env=env, timeout=90)
        assert down.returncode == 0 and "broker stopped in " in down.stderr
        assert not broker_answers(bootstrap, timeout_s=1)
        assert livepulse("kafka", "status", env=env).returncode == 1
        assert (state / "data").is_dir()  # kept without --purge

        purged = livepulse("kafka", "down", "--purge", env=env, timeout=90)
        assert purged.returncode == 0
        assert "broker was not running" in purged.stderr
        assert f"deleted its data under {state}" in purged.stderr
        assert not (state / "data").exists()
    finally:
        livepulse("kafka", "down", "--purge", "--timeout", "10", env=env, timeout=90)
    # The shared broker was not touched.
    assert broker_answers(os.environ.get("LIVEPULSE_TEST_BOOTSTRAP", "127.0.0.1:9092"), 5)
