"""Issue 5's security checks on real worker processes: no secret in the logs, the HTTP views bound
to loopback by default, no personal id in a log line at info level or in a metric label."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.settings import Settings
from streams.tools.worker_process import WorkerProcess
from tests.support.live import (
    drain,
    fixture_lines,
    replay_lines,
    run_settings,
    running_worker,
)

PASSWORD = "pw-Zq7tK2m9-never-logged"  # noqa: S105 (a test secret)


def test_the_secret_is_in_no_repr_str_or_dump_only_in_the_child_environment() -> None:
    settings = Settings(
        security_protocol="SASL_PLAINTEXT", sasl_username="lp", sasl_password=PASSWORD
    )
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(vars(settings))):
        assert PASSWORD not in text
    # to_env hands the secret to a child worker process (its environment, never a log).
    assert settings.to_env()["LIVEPULSE_SASL_PASSWORD"] == PASSWORD


def test_the_http_views_bind_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEPULSE_WEB_HOST", raising=False)
    assert Settings().web_host == "127.0.0.1"
    assert Settings(web_host="0.0.0.0").web_host == "0.0.0.0"  # noqa: S104 (an explicit choice)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of TCP sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.integration
def test_a_worker_started_with_a_sasl_password_never_logs_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """SASL against the shared PLAINTEXT broker: the login fails at once, in one line saying
    why, and is logged (at debug, the most verbose level) without the password."""
    settings = run_settings(kafka_bootstrap, "sasl").model_copy(
        update={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "livepulse",
            "sasl_password": PASSWORD,
        }
    )
    worker = WorkerProcess(
        settings, tmp_path / "sasl.log", loglevel="debug", extra_args=("--broker-wait", "6")
    )
    worker.start()
    try:
        assert worker.process is not None
        code = worker.process.wait(timeout=90)
    finally:
        worker.stop()
    log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert code == 2, log[-2000:]
    assert "takes no SASL login on that port" in log
    assert PASSWORD not in log


def personal_ids(lines: list[bytes]) -> set[str]:
    """Every user id and order id in a fixture's valid-looking lines."""
    ids: set[str] = set()
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            for name in ("user_id", "order_id"):
                if isinstance(obj.get(name), str):
                    ids.add(obj[name])
    return ids


@pytest.mark.integration
@pytest.mark.slow
def test_no_personal_id_in_info_logs_or_metric_labels_and_http_on_loopback(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    lines = fixture_lines("impulse")
    ids = personal_ids(lines)
    assert len(ids) > 1000
    settings = run_settings(kafka_bootstrap, "privacy")
    with running_worker(settings, tmp_path / "worker.log", loglevel="info") as worker:
        assert listening_addresses(settings.web_port) == {"0100007F"}  # 127.0.0.1 only
        replay_lines(settings, tmp_path / "fixture.jsonl", lines)
        drain(worker)
        with urllib.request.urlopen(f"{worker.base_url}/metrics", timeout=30) as response:
            metrics = response.read().decode()
        log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "first not_json record" in log  # the dead-letter path did log at info
    tokens = set(re.findall(r"[A-Za-z0-9_.:-]+", log))
    assert not tokens & ids, sorted(tokens & ids)[:10]
    labels = {
        value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert labels and not labels & ids, sorted(labels & ids)[:10]
