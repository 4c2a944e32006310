"""Every livepulse client against a broker that requires SASL_SSL, as hosted Kafka does: the
project's own broker started here with a SASL_SSL listener (streams/tools/kafka/secure.py: a CA
and a broker certificate made now with openssl, a PLAIN and a SCRAM-SHA-512 user), on ports and
a state dir of its own. The worker, `livepulse replay`, `livepulse report --changelog` and the
benchmark's ceiling consumer reach it with the README's settings and give the truth's figures;
a wrong password, an unknown user or an untrusted certificate is one error line and exit 2;
no secret reaches any log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka
import pytest

from streams.runtime.settings import Settings
from streams.tools.kafka.secure import (
    PLAIN_USER,
    SCRAM_USER,
    SecureBroker,
    start_secure_broker,
    stop_secure_broker,
)
from streams.tools.replayer import DEFAULT_FALLBACK_TOPIC, route
from streams.tools.worker_process import free_port, free_ports
from tests.support.live import (
    FIXTURES,
    drain,
    fixture_lines,
    fixture_truth,
    report_of,
    running_worker,
    truth_mismatches,
)
from tests.support.truth import report_mismatches

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A SASL_SSL broker for this module (about 20 s to start), stopped afterwards."""
    port, controller = free_ports(2)
    broker = start_secure_broker(tmp_path_factory.mktemp("secure-kafka"), port, controller)
    try:
        yield broker
    finally:
        stop_secure_broker(broker)


@pytest.fixture
def worker_settings(secure_broker: SecureBroker, tmp_path: Path) -> Settings:
    """A worker of its own (app id, topic prefix, web port, data dir) logged in as the SCRAM
    user; the app id is the run's name."""
    run = f"secure-{uuid.uuid4().hex[:10]}"
    return secure_broker.settings(
        SCRAM_USER,
        app_id=run,
        topic_prefix=f"{run}.",
        web_port=free_port(),
        data_dir=tmp_path / "data",
    )


def client_env(settings: Settings) -> dict[str, str]:
    """A child's environment with `settings` as the README's LIVEPULSE_* variables only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPULSE_")}
    env.update(settings.to_env())
    return env


def livepulse(
    env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )


def run_naive(settings: Settings, run: str, expect: int, tmp_path: Path) -> dict[str, int]:
    """The benchmark's naive faust agent over `settings` until it has read `expect` records."""
    out = tmp_path / "naive.json"
    command = [
        sys.executable, "-m", "bench.naive", "--prefix", settings.topic_prefix,
        "--app-id", f"{run}-naive", "--expect", str(expect), "--out", str(out),
        "--bootstrap", settings.bootstrap,
    ]  # fmt: skip
    with (tmp_path / "naive.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            command, env=client_env(settings), stdout=log, stderr=log, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            text = out.read_text() if out.exists() else ""
            if text.strip().endswith("}"):
                result: dict[str, int] = json.loads(text)
                return result
            assert process.poll() is None, (tmp_path / "naive.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the naive agent did not finish"
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=30)


def secrets_of(broker: SecureBroker) -> list[str]:
    return [password for _, password in broker.users.values()]


def test_every_client_over_sasl_ssl_matches_the_truth(
    secure_broker: SecureBroker, worker_settings: Settings, tmp_path: Path
) -> None:
    run = worker_settings.app_id
    producer_settings = secure_broker.settings(PLAIN_USER, topic_prefix=f"{run}.")
    lines, truth = fixture_lines("impulse"), fixture_truth("impulse")
    with running_worker(worker_settings, tmp_path / "worker.log", loglevel="debug") as worker:
        replayed = livepulse(
            client_env(producer_settings), "replay", str(FIXTURES / "impulse.jsonl")
        )
        assert replayed.returncode == 0, replayed.stderr
        drain(worker, timeout_s=120)
        report = report_of(worker)
        merged = livepulse(
            client_env(worker_settings), "report", "--changelog", "--wait", "30", "--json"
        )
        assert merged.returncode == 0, merged.stderr
        ceiling = subprocess.run(
            [
                sys.executable, "-m", "bench.ceiling", "--prefix", f"{run}.",
                "--group", f"{run}-ceiling", "--expect", str(len(lines)),
                "--bootstrap", secure_broker.bootstrap, "--timeout", "120",
            ],
            env=client_env(producer_settings), capture_output=True, text=True, timeout=180,
            cwd=ROOT,
        )  # fmt: skip
        assert ceiling.returncode == 0, ceiling.stderr
        naive = run_naive(producer_settings, run, len(lines), tmp_path)
    assert truth_mismatches(report, truth, lines) == []
    assert report_mismatches(json.loads(merged.stdout), truth) == []
    assert json.loads(ceiling.stdout.strip().splitlines()[-1])["records"] == len(lines)
    assert naive["records"] == len(lines) and naive["valid"] == truth["events"]["valid"]
    logs = [
        (tmp_path / "worker.log").read_text(errors="replace"),
        replayed.stderr,
        merged.stderr,
        ceiling.stderr,
        (tmp_path / "naive.log").read_text(errors="replace"),
        (secure_broker.state_dir / "broker.log").read_text(errors="replace"),
    ]
    assert "DEBUG" in logs[0]  # every level was on
    for secret in secrets_of(secure_broker):
        assert not any(secret in text for text in logs)


@pytest.mark.parametrize("problem", ["wrong password", "unknown user", "untrusted certificate"])
@pytest.mark.parametrize("command", ["worker", "replay", "report"])
def test_refused_access_is_one_clear_line_and_exit_2(
    secure_broker: SecureBroker, tmp_path: Path, problem: str, command: str
) -> None:
    settings = secure_broker.settings(SCRAM_USER, topic_prefix="refused.", web_port=free_port())
    if problem == "wrong password":
        settings = settings.model_copy(update={"sasl_password": "not-the-password"})
    elif problem == "unknown user":
        settings = settings.model_copy(update={"sasl_username": "nobody"})
    else:
        settings = settings.model_copy(update={"ssl_cafile": None})  # the system's trust store
    args = {
        "worker": ["worker", "--broker-wait", "60", "--loglevel", "debug"],
        "replay": ["replay", str(FIXTURES / "impulse.jsonl")],
        "report": ["report", "--changelog", "--json"],
    }[command]
    started = time.monotonic()
    done = livepulse(client_env(settings), *args)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    wanted = "not trusted" if problem == "untrusted certificate" else "unknown user or wrong"
    assert wanted in lines[0]
    assert elapsed < 30  # no retrying for --broker-wait
    for secret in [*secrets_of(secure_broker), "not-the-password"]:
        assert secret not in done.stderr + done.stdout


def test_an_idempotent_producers_retries_change_no_figure(
    secure_broker: SecureBroker, worker_settings: Settings, tmp_path: Path
) -> None:
    """librdkafka's idempotent producer over SASL_SSL, the broker frozen (SIGSTOP) for 5 s in
    the middle: requests time out and are retried (librdkafka's own count), the broker keeps
    one copy of each, and the worker, which rode out the pause, reports the truth."""
    settings = worker_settings
    lines, truth = fixture_lines("impulse"), fixture_truth("impulse")
    _, password = secure_broker.users[PLAIN_USER]
    timeouts: dict[str, int] = {}

    def stats(text: str) -> None:
        for broker in json.loads(text)["brokers"].values():
            for name in ("txretries", "req_timeouts"):
                timeouts[name] = max(timeouts.get(name, 0), broker.get(name, 0))

    with running_worker(settings, tmp_path / "worker.log") as worker:
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": secure_broker.bootstrap,
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": PLAIN_USER,
                "sasl.password": password,
                "ssl.ca.location": str(secure_broker.cafile),
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
                # The client-side timeout of a request in flight (request.timeout.ms is the
                # broker-side ack timeout in librdkafka).
                "socket.timeout.ms": 1500,
                "linger.ms": 20,
                "statistics.interval.ms": 500,
                "stats_cb": stats,
            }
        )
        routes = [route(line, settings, DEFAULT_FALLBACK_TOPIC) for line in lines]
        paused = False
        for index, (line, where) in enumerate(zip(lines, routes, strict=True)):
            producer.produce(where.topic, value=line, key=where.key)
            if index % 200 == 0:
                producer.poll(0.05)
            if not paused and index == len(lines) // 2:
                os.kill(secure_broker.pid, signal.SIGSTOP)
                paused = True
                try:
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        producer.poll(0.2)
                finally:
                    os.kill(secure_broker.pid, signal.SIGCONT)
        assert producer.flush(120) == 0
        producer.poll(1.0)
        drain(worker, timeout_s=120)
        report = report_of(worker)
        assert worker.alive(), worker.tail()
    # Requests in flight timed out during the pause (and were sent again after it).
    assert timeouts.get("req_timeouts", 0) > 0, timeouts
    assert truth_mismatches(report, truth, lines) == []
