"""The project's own Kafka broker (`streams.tools.kafka`, `livepulse kafka`), against a real
one."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.commands import kafka as kafka_command
from streams.tools.kafka import KafkaLocalError, admin, process
from streams.tools.worker_process import free_ports

# The partition count the shared broker's contract topics were created with.
EXPECTED_PARTITIONS = int(os.environ.get("LIVEPULSE_PARTITIONS", "4"))
# Spelled out from docs/design.md rather than derived from schemas, as an independent check.
DESIGN_TOPICS = (
    "live.sessions",
    "live.views",
    "live.interactions",
    "live.orders",
    "live.groups",
    "live.deadletter",
)


def run_cli(*argv: str) -> int:
    """Run `livepulse kafka ...` through the command's own parser (no other commands needed)."""
    parser = argparse.ArgumentParser(prog="livepulse")
    kafka_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def managed_broker_or_skip(bootstrap: str) -> process.BrokerStatus:
    """The status of the broker managed from state_dir(), if that is the one at `bootstrap`."""
    state = process.status()
    if not state.running or state.bootstrap != bootstrap:
        pytest.skip(f"the broker at {bootstrap} is not the one run from {state.state_dir}")
    return state


def test_contract_topics_are_the_design_topics() -> None:
    assert admin.contract_topics() == DESIGN_TOPICS


def test_the_local_broker_ignores_settings_meant_for_another_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shell set up for a hosted cluster: `kafka up` still makes the plain contract topics on
    # the local PLAINTEXT broker (and does not fail on half-given SASL settings).
    monkeypatch.setenv("LIVEPULSE_TOPIC_PREFIX", "hosted.")
    monkeypatch.setenv("LIVEPULSE_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LIVEPULSE_BOOTSTRAP", "kafka.example.com:9093")
    assert admin.contract_topics() == DESIGN_TOPICS
    settings = admin.LocalBrokerSettings(bootstrap="127.0.0.1:1", partitions=2)
    assert settings.kafka_client_kwargs() == {
        "bootstrap_servers": ["127.0.0.1:1"],
        "security_protocol": "PLAINTEXT",
    }


def test_status_without_a_broker_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(process.ENV_STATE_DIR, str(tmp_path / "kafka"))
    assert run_cli("kafka", "status") == 1
    assert "not running" in capsys.readouterr().out
    assert not process.is_running()
    assert process.stop() is False


def test_up_refuses_a_port_taken_by_another_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "kafka"
    monkeypatch.setenv(process.ENV_STATE_DIR, str(state))
    (controller_port,) = free_ports(1)
    with socket.socket() as squatter:
        squatter.bind((process.HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(KafkaLocalError, match=f"{port} is already in use"):
            process.ensure_up(port, controller_port=controller_port)
    assert not (state / "broker.pid").exists()


def test_broker_answers_is_false_when_nothing_listens(caplog: pytest.LogCaptureFixture) -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        assert admin.broker_answers(f"{process.HOST}:{port}", timeout_s=0.5) is False
    assert time.monotonic() - started < 3.0
    # The probe reports the silence itself: aiokafka's "Unable connect to ..." is not repeated
    # on standard error while `kafka up` polls a starting broker.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_probe_leaves_other_aiokafka_clients_their_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a fresh process has it (a worker started in-process by an earlier test configures
    # logging and may leave aiokafka's logger disabled or quieter).
    aiokafka_logger = logging.getLogger("aiokafka")
    monkeypatch.setattr(aiokafka_logger, "disabled", False)
    monkeypatch.setattr(aiokafka_logger, "propagate", True)
    (port,) = free_ports(1)
    with caplog.at_level(logging.WARNING), caplog.at_level(logging.WARNING, logger="aiokafka"):
        assert admin.try_metadata(f"{process.HOST}:{port}", 0.5) is None
        assert not [r for r in caplog.records if r.name.startswith("aiokafka")]
        # The same failure from a client of the process's own (a worker's, say) is logged.
        client = AIOKafkaAdminClient(bootstrap_servers=f"{process.HOST}:{port}")
        with pytest.raises(Exception, match="Unable to bootstrap"):
            await client.start()
        await client.close()
    assert any(r.name.startswith("aiokafka") for r in caplog.records)


@pytest.mark.integration
async def test_contract_topics_exist_with_the_configured_partitions(kafka_bootstrap: str) -> None:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    try:
        described = await client.describe_topics(list(DESIGN_TOPICS))
    finally:
        await client.close()
    partitions = {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
    assert partitions == dict.fromkeys(DESIGN_TOPICS, EXPECTED_PARTITIONS)
    metadata = admin.fetch_metadata(kafka_bootstrap)
    assert {name: metadata.topics.get(name) for name in DESIGN_TOPICS} == partitions
    assert metadata.broker_ids
    assert not [name for name in metadata.topics if name.startswith("__")]  # internal ones


@pytest.mark.integration
def test_metadata_names_the_cluster_formatted_here(kafka_bootstrap: str) -> None:
    state = managed_broker_or_skip(kafka_bootstrap)
    # The id `kafka up` generated and formatted the storage with, as the broker reports it.
    formatted = (state.state_dir / "cluster.id").read_text(encoding="utf-8").strip()
    assert admin.fetch_metadata(kafka_bootstrap).cluster_id == formatted == state.cluster_id


@pytest.mark.integration
async def test_produce_consume_round_trip(
    kafka_bootstrap: str,
    unique_topic_name: Callable[..., str],
    unique_group: Callable[..., str],
) -> None:
    topic = unique_topic_name()
    # The sync wrapper, called from inside a running loop (it then uses a helper thread).
    assert admin.create_topics(kafka_bootstrap, [topic], partitions=3) == {topic: 3}
    sent = [
        (f"session-{i % 5}".encode(), f'{{"n": {i}}}'.encode(), [("n", str(i).encode())])
        for i in range(30)
    ]
    partition_of_key: dict[bytes, set[int]] = {}
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for key, value, headers in sent:
                record = await producer.send_and_wait(topic, value, key=key, headers=headers)
                partition_of_key.setdefault(key, set()).add(record.partition)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=unique_group(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        try:
            deadline = time.monotonic() + 30.0
            while len(received) < len(sent) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.extend((r.key, r.value, list(r.headers)) for r in records)
        finally:
            await consumer.stop()
    finally:
        client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await client.start()
        try:
            await client.delete_topics([topic])
        finally:
            await client.close()

    assert sorted(received) == sorted((k, v, h) for k, v, h in sent)
    # One key, one partition: what per-session ordering in the worker relies on.
    assert all(len(partitions) == 1 for partitions in partition_of_key.values())


@pytest.mark.integration
def test_up_twice_is_harmless(kafka_bootstrap: str) -> None:
    before = managed_broker_or_skip(kafka_bootstrap)
    port = int(kafka_bootstrap.rpartition(":")[2])
    started = time.monotonic()
    assert process.ensure_up(port, EXPECTED_PARTITIONS) == kafka_bootstrap
    assert time.monotonic() - started < 5.0
    after = process.status()
    assert (after.running, after.pid, after.cluster_id) == (True, before.pid, before.cluster_id)
    assert process.is_running()


@pytest.mark.integration
def test_status_reports_the_running_broker(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = managed_broker_or_skip(kafka_bootstrap)
    assert run_cli("kafka", "status") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"running  pid {state.pid}  bootstrap {kafka_bootstrap}")
    for name in DESIGN_TOPICS:
        assert f"  {name} " in out
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if line[:2] == "  "}
    assert {name: lines[name] for name in DESIGN_TOPICS} == dict.fromkeys(
        DESIGN_TOPICS, str(EXPECTED_PARTITIONS)
    )


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_second_broker_starts_restarts_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("java") is None and os.environ.get("CI", "").lower() not in ("1", "true"):
        pytest.skip("no Java here to run a broker")
    state_dir = tmp_path / "kafka"
    monkeypatch.setenv(process.ENV_STATE_DIR, str(state_dir))
    port, controller_port = free_ports(2)
    bootstrap = f"{process.HOST}:{port}"
    try:
        assert process.ensure_up(port, 2, controller_port=controller_port) == bootstrap
        first = process.status()
        assert first.running and first.pid is not None
        assert {name: first.topics.get(name) for name in DESIGN_TOPICS} == dict.fromkeys(
            DESIGN_TOPICS, 2
        )
        # Asking for another port while it runs is refused, not a second broker.
        with pytest.raises(KafkaLocalError, match="already runs at"):
            process.ensure_up(controller_port + 1, 2)

        assert run_cli("kafka", "down") == 0
        assert not Path(f"/proc/{first.pid}").exists()  # gone, and reaped
        assert not admin.broker_answers(bootstrap, timeout_s=0.5)
        assert run_cli("kafka", "status") == 1
        assert (state_dir / "data" / "meta.properties").is_file()  # data kept without --purge

        # A restart keeps the cluster and its topics.
        assert process.ensure_up(port, 2, controller_port=controller_port) == bootstrap
        second = process.status()
        assert second.running and second.pid != first.pid
        assert second.cluster_id == first.cluster_id
        assert second.topics == first.topics

        assert run_cli("kafka", "down", "--purge") == 0
        assert not process.is_running()
        assert not state_dir.exists()
        assert "broker stopped" in capsys.readouterr().err
    finally:
        process.stop(purge=True)  # never leave this broker behind, whatever failed
