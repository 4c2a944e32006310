"""Records written by producers livepulse did not write, on the real broker: Kafka's own Java
console producer and librdkafka (confluent-kafka), with every codec, transactions committed and
aborted, headers, null keys and values, LogAppendTime and a record over the contract's 1 MiB.
After each run the worker's report equals the fixture's truth file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics
from streams.tools.kafka.download import ensure_jars
from streams.tools.kafka.process import java
from streams.tools.replayer import DEFAULT_FALLBACK_TOPIC, route
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    report_of,
    run_settings,
    running_worker,
    truth_mismatches,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
NULL_MARKER = "<livepulse-null>"
PRODUCER_HEADER = "producer"


def confluent_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka's settings for `settings`' broker; the contract's keys partitioned the way
    Java clients and the replayer do (murmur2), not librdkafka's default (CRC32)."""
    return {
        "bootstrap.servers": settings.bootstrap,
        "partitioner": "murmur2_random",
        "linger.ms": 50,
        **extra,
    }


def java_console_produce(settings: Settings, topic: str, codec: str, path: Path) -> Any:
    """Start Kafka's own console producer sending `path` ("key<TAB>value" lines) to `topic`."""
    command = [
        java(),
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        f"{ensure_jars()}/*",
        "kafka.tools.ConsoleProducer",
        "--bootstrap-server",
        settings.bootstrap,
        "--topic",
        topic,
        "--compression-codec",
        codec,
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=\t",
        "--property",
        f"null.marker={NULL_MARKER}",
        "--producer-property",
        "acks=all",
        "--producer-property",
        "linger.ms=50",
    ]
    with path.open("rb") as lines:
        return subprocess.Popen(  # noqa: S603 (our own command line)
            command, stdin=lines, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )


def java_safe(line: bytes) -> bool:
    """Whether the console producer sends `line` byte for byte (it reads text lines)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and "\r" not in text and "\n" not in text and NULL_MARKER not in text


def set_log_append_time(settings: Settings, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "message.timestamp.type",
                "LogAppendTime",
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def poison(lines: list[bytes]) -> list[bytes]:
    """Valid events no one may count (new event ids, so a reader of aborted records would)."""
    out = []
    for line in lines:
        event = json.loads(line)
        event["event_id"] = f"aborted-{uuid.uuid4().hex}"
        out.append(json.dumps(event).encode())
    return out


def read_dead_letters(settings: Settings) -> list[Any]:
    """Every record of the run's dead-letter topic (confluent-kafka, read_committed)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            "group.id": f"dl-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([settings.deadletter])
    letters: list[Any] = []
    idle = 0
    try:
        while idle < 10:
            batch = consumer.consume(num_messages=1000, timeout=1.0)
            real = [m for m in batch if m.error() is None]
            idle = 0 if real else idle + 1
            letters += real
    finally:
        consumer.close()
    return letters


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return run_settings(kafka_bootstrap, "clients")


def test_java_and_librdkafka_with_every_codec_and_transactions_match_the_truth(
    settings: Settings, tmp_path: Path
) -> None:
    """The first half of the fixture from Kafka's console producer (one codec per topic), the
    second from librdkafka (one transactional producer per codec, each slice committed, then a
    transaction of poison aborted); the orders topic stamps LogAppendTime. The worker's report
    equals the truth, every dead letter is a fixture line's, aborted records count nowhere."""
    lines = fixture_lines("xhs")
    truth = fixture_truth("xhs")
    asyncio.run(create_topics(settings, all_topics(settings)))
    set_log_append_time(settings, settings.topic("live.orders"))
    routes = [route(line, settings, DEFAULT_FALLBACK_TOPIC) for line in lines]
    assert all(r.topic is not None for r in routes)
    half = len(lines) // 2

    with running_worker(settings, tmp_path / "worker.log") as worker:
        # Kafka's console producer: the first half, topic i compressed with codec i.
        codec_of = dict(zip(settings.source_topics, CODECS, strict=True))
        files = {topic: (tmp_path / f"java-{topic}.txt").open("wb") for topic in codec_of}
        java_later: list[int] = []
        for index in range(half):
            line, where = lines[index], routes[index]
            if not java_safe(line):
                java_later.append(index)  # sent by librdkafka instead (not text lines)
                continue
            key = NULL_MARKER.encode() if where.key is None else where.key
            assert where.topic is not None
            files[where.topic].write(key + b"\t" + line + b"\n")
        for handle in files.values():
            handle.close()
        producers = [
            java_console_produce(settings, topic, codec, tmp_path / f"java-{topic}.txt")
            for topic, codec in codec_of.items()
        ]
        for producer in producers:
            _, stderr = producer.communicate(timeout=180)
            assert producer.returncode == 0, stderr.decode(errors="replace")[-2000:]

        # librdkafka: the rest in 5 slices, one transactional producer per codec.
        rest = java_later + list(range(half, len(lines)))
        size = -(-len(rest) // len(CODECS))
        slices = [rest[k * size : (k + 1) * size] for k in range(len(CODECS))]
        sample_valid = [line for line, r in zip(lines, routes, strict=True) if not r.fallback][:50]
        for codec, indices in zip(CODECS, slices, strict=True):
            producer = confluent_kafka.Producer(
                confluent_config(
                    settings,
                    **{
                        "compression.type": codec,
                        "transactional.id": f"livepulse-test-{uuid.uuid4().hex}",
                        "batch.num.messages": 10_000,
                    },
                )
            )
            producer.init_transactions(30)
            producer.begin_transaction()
            for index in indices:
                where = routes[index]
                producer.produce(
                    where.topic,
                    value=lines[index],
                    key=where.key,
                    headers=[(PRODUCER_HEADER, f"librdkafka-{codec}".encode())],
                )
            producer.commit_transaction(60)
            # Aborted: valid events under new ids and invalid records, none may count.
            producer.begin_transaction()
            for line in poison(sample_valid):
                where = route(line, settings, DEFAULT_FALLBACK_TOPIC)
                producer.produce(where.topic, value=line, key=where.key)
            for topic in settings.source_topics:
                producer.produce(topic, value=b"{aborted, not json", key=b"k")
                producer.produce(topic, value=None, key=b"k")  # an aborted tombstone
            producer.flush(30)
            producer.abort_transaction(60)

        drain(worker, timeout_s=180)
        report = report_of(worker)
        letters = read_dead_letters(settings)
        assert worker.alive(), worker.tail()

    assert report["events"] == truth["events"]
    assert truth_mismatches(report, truth, lines) == []
    assert len(letters) == truth["events"]["rejected"]
    fixture_set = set(lines)
    kept = 0
    for letter in letters:
        assert letter.value() in fixture_set
        headers = letter.headers() or []
        names = [name for name, _ in headers]
        assert "livepulse-reason" in names
        if PRODUCER_HEADER in names:  # a librdkafka record: its header kept, first
            assert names[0] == PRODUCER_HEADER
            kept += 1
    assert kept > 0, "no dead letter of a librdkafka record"


def test_worker_without_a_codec_library_says_so_at_start(tmp_path: Path) -> None:
    """cramjam hidden: the worker refuses to start, in one line naming the codecs."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "cramjam.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker", "--bootstrap", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "snappy, lz4, zstd" in lines[0] and "cramjam" in lines[0]
    assert "Traceback" not in done.stderr


def test_records_as_librdkafka_writes_them(settings: Settings, tmp_path: Path) -> None:
    """An idempotent librdkafka producer (lz4) sends the fixture in one `produce_batch` call per
    topic (the contract's keys; the lines with no contract type with a null key), then a
    tombstone and a record over 1 MiB (zstd: the compressed batch is under the broker's limit),
    both with headers. Figures equal the truth; the null-keyed records are dead-lettered with
    their null key; both extra records are dead-lettered, headers kept, the big one cut to what
    a producer may send.

    (Valid events with a null key land on any partition: a resent one can then be counted on
    two partitions, so the contract's keys are what producers must use.)"""
    lines = fixture_lines("impulse")
    truth = fixture_truth("impulse")
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        where = route(line, settings, DEFAULT_FALLBACK_TOPIC)
        assert where.topic is not None
        by_topic.setdefault(where.topic, []).append({"value": line, "key": where.key})
    huge = b'{"type": "order_created", "note": "' + b"x" * (3 << 20) + b'"}'
    headers = [(PRODUCER_HEADER, b"librdkafka"), ("trace-id", b"\x00\x01binary")]

    with running_worker(settings, tmp_path / "worker.log") as worker:
        producer = confluent_kafka.Producer(
            confluent_config(
                settings,
                **{
                    "compression.type": "lz4",
                    "enable.idempotence": True,
                    "batch.num.messages": 10_000,
                },
            )
        )
        for topic, messages in by_topic.items():
            assert producer.produce_batch(topic, messages) == len(messages)
        assert producer.flush(60) == 0
        big = confluent_kafka.Producer(
            confluent_config(settings, **{"compression.type": "zstd", "message.max.bytes": 8 << 20})
        )
        orders = settings.topic("live.orders")
        big.produce(orders, value=None, key=b"room-1", headers=headers)
        big.produce(orders, value=huge, key=b"room-1", headers=headers)
        assert big.flush(60) == 0
        drain(worker, timeout_s=180)
        report = report_of(worker)
        letters = read_dead_letters(settings)
        assert worker.alive(), worker.tail()

    events = {**truth["events"], "rejected": truth["events"]["rejected"] + 2}
    assert report["events"] == events
    assert truth_mismatches(report, truth, lines, events=events) == []
    assert len(letters) == events["rejected"]
    assert any(m.key() is None and m.value() in set(lines) for m in letters)  # null keys
    extra = [m for m in letters if m.key() == b"room-1"]
    assert len(extra) == 2
    by_value = {m.value(): m for m in extra}
    tombstone, cut = by_value[None], next(m for v, m in by_value.items() if v is not None)
    for letter, reason in ((tombstone, "not_json"), (cut, "too_large")):
        got = letter.headers()
        assert got[: len(headers)] == headers  # the producer's headers, first and unchanged
        assert dict(got)["livepulse-reason"] == reason.encode()
    assert cut.value() == huge[: len(cut.value())] and len(cut.value()) < 1_000_000
    assert dict(cut.headers())["livepulse-truncated-from"] == str(len(huge)).encode()
