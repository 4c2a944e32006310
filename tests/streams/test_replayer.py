"""The replayer: routing by type, bytes unchanged, per-key order, fallback, pacing."""

from __future__ import annotations

import io
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from schemas import TOPIC_BY_TYPE, record_key
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, delete_topics, end_offsets
from streams.tools.replayer import Progress, ReplaySummary, read_lines, replay, route

T0 = 1_721_800_800_000
JUNK = [b"<html>502</html>", b"[1, 2]", b'{"event_id": "x", "type": "teleported", "ts": 1}', b""]


def make_lines(n: int, seed: int = 7) -> list[bytes]:
    """Events of every type over a few sessions and merchants, with junk mixed in."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    for i in range(n):
        sid, mid, uid = f"s-{rng.randint(1, 12)}", f"m-{rng.randint(1, 3)}", f"u-{i % 50}"
        kind = rng.choice(sorted(TOPIC_BY_TYPE))
        body: dict[str, Any] = {"event_id": f"e-{i}", "type": kind, "ts": T0 + i * 1000}
        if kind in ("group_joined", "group_left"):
            body |= {"merchant_id": mid, "group_id": f"g-{mid}", "user_id": uid}
        elif kind in ("order_paid", "order_refunded"):
            body |= {"order_id": f"o-{i}", "amount_cents": 100, "merchant_id": mid, "user_id": uid}
            if rng.random() < 0.8:
                body["session_id"] = sid  # otherwise an order with no session: empty key
        else:
            body |= {"session_id": sid, "user_id": uid, "room_id": "r", "merchant_id": mid}
        # Field order and spacing vary, so "unchanged bytes" means something.
        text = orjson.dumps(body)
        lines.append(text if i % 3 else text.replace(b",", b", "))
        if i % 97 == 0:
            lines.append(JUNK[(i // 97) % len(JUNK)])
    return lines


def write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "stream.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
async def prefixed(
    kafka_bootstrap: str, unique_topic_name: Callable[..., str]
) -> AsyncIterator[Settings]:
    """Settings with a topic prefix no other test uses; its topics are deleted afterwards."""
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=unique_topic_name("replay") + ".")
    yield settings
    await delete_topics(settings, all_topics(settings))


async def consume_all(settings: Settings, topics: list[str]) -> dict[str, list[Any]]:
    """Every record of `topics`, per topic, in partition order (offset order within one)."""
    ends = await end_offsets(settings, topics)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka_client_kwargs())
    await consumer.start()
    try:
        wanted = [tp for tp, end in ends.items() if end > 0]
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        got: dict[TopicPartition, list[Any]] = defaultdict(list)
        deadline = time.monotonic() + 30
        while any(len(got[tp]) < ends[tp] for tp in wanted):
            assert time.monotonic() < deadline, "records missing on the broker"
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                got[tp].extend(messages)
    finally:
        await consumer.stop()
    per_topic: dict[str, list[Any]] = defaultdict(list)
    for tp in sorted(got):
        per_topic[tp.topic].extend(got[tp])
    return per_topic


def test_lines_route_to_their_contract_topic_and_key() -> None:
    settings = Settings(topic_prefix="p.")
    order = orjson.dumps({"type": "order_paid", "session_id": "s-9", "ts": 5})
    assert route(order, settings, "live.interactions").topic == "p.live.orders"
    assert route(order, settings, "live.interactions").key == b"s-9"
    assert route(order, settings, None).ts == 5
    no_session = orjson.dumps({"type": "order_refunded"})
    assert route(no_session, settings, None).key == b""  # the contract's empty key
    group = orjson.dumps({"type": "group_joined", "merchant_id": "m-1", "session_id": "s"})
    assert route(group, settings, None).key == b"m-1"
    for junk in JUNK:
        fallback = route(junk, settings, "live.interactions")
        assert (fallback.topic, fallback.key, fallback.fallback) == (
            "p.live.interactions",
            None,
            True,
        )
        assert route(junk, settings, None).topic is None


def test_read_lines_keeps_bytes_and_splits_like_the_truth(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a":1}\r\n\n  \n{"b":2}')
    assert list(read_lines(path)) == [b'{"a":1}\r', b"", b"  ", b'{"b":2}']


@pytest.mark.integration
async def test_every_line_lands_on_its_topic_with_its_key_in_order(
    prefixed: Settings, tmp_path: Path
) -> None:
    lines = make_lines(3000)
    progress_out = io.StringIO()
    summary = await replay(write(tmp_path, lines), prefixed, progress=Progress(progress_out))

    junk = [line for line in lines if route(line, prefixed, None).topic is None]
    assert summary.sent == len(lines) - len(junk)
    assert summary.fallback == len(junk) > 0
    assert summary.rejected == 0
    assert summary.events_per_s > 0
    assert "replayed" in progress_out.getvalue()

    # What each topic should hold, per key, in file order.
    expected: dict[str, dict[bytes | None, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        where = route(line, prefixed, "live.interactions")
        expected[where.topic or ""][where.key].append(line)
    topics = sorted({prefixed.topic(t) for t in TOPIC_BY_TYPE.values()})
    consumed = await consume_all(prefixed, topics)
    for topic in topics:
        got: dict[bytes | None, list[bytes]] = defaultdict(list)
        for record in consumed[topic]:
            got[record.key].append(record.value)
        want = expected[topic]
        fallback_lines = want.pop(None, [])
        fallback_got = got.pop(None, [])
        assert got == want, f"{topic}: records differ from the file per key, or out of order"
        assert sorted(fallback_got) == sorted(fallback_lines)
    # Keys are the contract's: session for most types, merchant for groups.
    for record in consumed[prefixed.topic("live.groups")]:
        assert record.key == record_key(orjson.loads(record.value)).encode()


@pytest.mark.integration
async def test_without_a_fallback_topic_unroutable_lines_are_rejected_not_sent(
    prefixed: Settings, tmp_path: Path
) -> None:
    lines = make_lines(300)
    summary = await replay(write(tmp_path, lines), prefixed, fallback_topic=None)
    junk = sum(1 for line in lines if route(line, prefixed, None).topic is None)
    assert (summary.sent, summary.fallback, summary.rejected) == (len(lines) - junk, 0, junk)
    ends = await end_offsets(prefixed, [prefixed.topic(t) for t in set(TOPIC_BY_TYPE.values())])
    assert sum(ends.values()) == len(lines) - junk


@pytest.mark.integration
async def test_rate_and_speedup_pace_the_sends(prefixed: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, [line for line in make_lines(200) if line not in JUNK])
    paced = await replay(path, prefixed, rate=500.0)
    assert paced.seconds >= 199 / 500.0
    # Event time: lines are 1 s apart; 200 s of event time at 1000x is 0.2 s.
    sped = await replay(path, prefixed, speedup=1000.0)
    assert sped.seconds >= 0.18
    with pytest.raises(ValueError, match="not both"):
        await replay(path, prefixed, rate=1.0, speedup=1.0)


def test_summary_describes_itself() -> None:
    summary = ReplaySummary(sent=90, fallback=10, rejected=1, seconds=2.0)
    assert summary.lines == 101
    assert summary.events_per_s == 50.0
    assert "101 lines" in summary.describe() and "1 rejected" in summary.describe()
