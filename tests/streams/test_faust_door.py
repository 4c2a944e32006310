"""The door to faust's and aiokafka's private API (`streams.runtime.batch_consumer`): every private
method and attribute it relies on exists, with the signature it uses, in the installed
versions, which are the ones it was checked against. An upgrade fails here, not in production."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import tomllib
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka
import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.consumer.subscription_state import Assignment, SubscriptionState, TopicPartitionState
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaFaustConsumer

from streams.runtime import batch_consumer
from streams.runtime.app import create_app
from streams.runtime.batch_consumer import (
    CHECKED_VERSIONS,
    SCHEME,
    BatchConsumer,
    BatchConsumerThread,
)
from streams.runtime.settings import ISOLATION_LEVEL, Settings

REPO = Path(__file__).resolve().parents[2]
#: Where the project's own code lives; only the door may use the libraries' private names.
PACKAGES = ("schemas", "agents", "streams")
#: The aiokafka consumer's attributes the door sets on it before it starts, which its `start`
#: reads (the transport's settings, faust's assignor).
STARTED_WITH = (
    "_isolation_level",
    "_fetch_min_bytes",
    "_fetch_max_wait_ms",
    "_fetch_max_bytes",
    "_max_partition_fetch_bytes",
    "_partition_assignment_strategy",
)


def test_installed_versions_are_the_checked_and_pinned_ones() -> None:
    installed = {name: version(name) for name in CHECKED_VERSIONS}
    assert installed == CHECKED_VERSIONS
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    pins = {}
    for requirement in pyproject["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_-]+)(\[[^\]]*\])?==(\S+)", requirement)
        if match:
            pins[match[1]] = match[3]
    assert {name: pins.get(name) for name in CHECKED_VERSIONS} == CHECKED_VERSIONS


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_faust_consumer_methods_the_door_overrides_or_calls_have_its_signatures() -> None:
    assert params(FaustConsumer._drain_messages) == ["self", "fetcher"]
    assert params(FaustConsumer._wait_next_records) == ["self", "timeout"]
    assert params(FaustConsumer._commit) == ["self", "offsets"]
    assert params(FaustConsumer.perform_seek) == ["self"]
    assert params(FaustConsumer.on_partitions_revoked) == ["self", "revoked"]
    assert params(FaustConsumer.seek) == ["self", "partition", "offset"]
    assert params(FaustConsumer._seek) == ["self", "partition", "offset"]
    assert "self._seek(" in inspect.getsource(FaustConsumer.seek)
    assert "_seek" in vars(batch_consumer.CommittedConsumer)
    for method in ("_drain_messages", "_wait_next_records", "_commit", "perform_seek"):
        assert inspect.iscoroutinefunction(getattr(FaustConsumer, method)), method
    assert params(AIOKafkaConsumerThread._create_worker_consumer) == ["self", "transport"]
    # The overrides really replace faust's (a rename upstream would leave ours uncalled).
    for method in ("_drain_messages", "perform_seek", "on_partitions_revoked"):
        assert method in vars(BatchConsumer), method
    assert params(AIOKafkaFaustConsumer._new_consumer_thread) == ["self"]
    assert "_new_consumer_thread" in vars(AIOKafkaFaustConsumer)
    # The door does what faust's own drain does, a layer lower: faust's `getmany` takes its
    # records from `_wait_next_records`, and its drain skips refetched ones with `_read_offset`.
    assert "self._wait_next_records(" in inspect.getsource(FaustConsumer.getmany)
    assert "self._read_offset" in inspect.getsource(FaustConsumer._drain_messages)


def test_aiokafka_reads_the_attributes_the_door_sets_when_it_starts() -> None:
    start = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    for attribute in STARTED_WITH:
        assert f"self.{attribute}" in start, attribute
    # The fetcher builds every request from its own copies of the byte bounds.
    requests = inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_bytes" in requests and "self._max_partition_fetch_bytes" in requests
    # The fetched records it holds by partition (`BatchConsumer.partition_flow`).
    assert "self._records = collections.OrderedDict()" in inspect.getsource(Fetcher.__init__)
    assert callable(AIOKafkaClient.force_metadata_update)
    assert params(AIOKafkaClient.force_metadata_update) == ["self"]
    assert isinstance(vars(SubscriptionState)["subscription"], property)
    assert isinstance(vars(Assignment)["tps"], property)
    assert params(Assignment.state_value) == ["self", "tp"]
    assert isinstance(vars(TopicPartitionState)["has_valid_position"], property)
    assert isinstance(vars(TopicPartitionState)["position"], property)


@pytest.fixture
def faust_consumer() -> Iterator[Any]:
    """The worker app's faust consumer (built, never started; no broker needed)."""
    run = f"door-{uuid.uuid4().hex[:12]}"
    app = create_app(Settings(app_id=run, topic_prefix=f"{run}."))
    consumer = app.consumer
    try:
        yield consumer
    finally:
        consumer._thread.thread_loop.close()


async def test_the_worker_consumer_has_the_private_state_the_door_reads(
    faust_consumer: Any,
) -> None:
    consumer = faust_consumer
    assert isinstance(consumer, BatchConsumer)
    assert TRANSPORTS.aliases[SCHEME] == "streams.runtime.batch_consumer:BatchTransport"
    assert consumer._read_offset[("no-topic", 0)] is None  # a defaultdict of None
    assert consumer._buffered_partitions == set()
    # Read (guarded) for `/status` (`BatchConsumer.partition_flow`).
    assert consumer._active_partitions == set() and consumer._paused_partitions == set()
    assert not consumer._stopped.is_set()
    thread = consumer._thread
    assert isinstance(thread, BatchConsumerThread)
    assert thread._consumer is None  # built when the thread starts

    # What the thread builds: faust's options, with the door's on top.
    kafka_consumer = thread._create_worker_consumer(consumer.transport)
    try:
        assert isinstance(kafka_consumer, aiokafka.AIOKafkaConsumer)
        assert kafka_consumer._isolation_level == ISOLATION_LEVEL
        assert kafka_consumer._fetch_min_bytes == batch_consumer.FETCH_MIN_BYTES
        assert kafka_consumer._fetch_max_wait_ms == batch_consumer.FETCH_MAX_WAIT_MS
        defaults = Settings()
        assert kafka_consumer._fetch_max_bytes == defaults.batch_fetch_max_bytes
        assert kafka_consumer._max_partition_fetch_bytes == defaults.batch_fetch_bytes
        assert consumer.fetch_bounds == {"max_bytes": None, "partition_max_bytes": None}
        assert kafka_consumer._partition_assignment_strategy == (consumer.app.assignor,)
        assert thread._assignor is consumer.app.assignor
        assert kafka_consumer._subscription.subscription is None  # nothing subscribed yet
        assert isinstance(kafka_consumer._client, AIOKafkaClient)
    finally:
        await kafka_consumer.stop()


async def test_a_seek_runs_in_the_consumer_thread(faust_consumer: Any) -> None:
    """aiokafka's seek empties the fetcher's buffer for the partition (`Fetcher.seek_to`); the
    fetch runs in the consumer's thread, so a seek from the worker's loop raced it and crashed
    the worker with a KeyError in `fetched_records`. The seek goes through `call_thread`."""
    consumer = faust_consumer
    thread = consumer._thread
    seeks: list[tuple[Any, int, bool]] = []
    in_thread = False

    class KafkaConsumer:
        def seek(self, tp: Any, offset: int) -> None:
            seeks.append((tp, offset, in_thread))

    async def call_thread(method: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal in_thread
        in_thread = True
        try:
            return method(*args, **kwargs)
        finally:
            in_thread = False

    thread._consumer = KafkaConsumer()
    thread.call_thread = call_thread
    tp = batch_consumer.TP("live.views", 1)
    await consumer.seek(tp, 42)
    assert seeks == [(tp, 42, True)]
    assert consumer._read_offset[tp] == 42  # faust's own bookkeeping is kept


async def test_an_idle_consumer_fetches_with_the_idle_settings_until_records_come(
    faust_consumer: Any,
) -> None:
    """After a `getmany` that waited its second with nothing, the fetcher's next requests ask
    for 1 byte and wait `fetch_idle_wait_ms` (the broker answers when a record is there: no
    fetch every 10 ms coming back empty); the first batch sets the busy settings back. With
    `fetch_idle_wait_ms` 0 they never change. aiokafka builds each request from the two."""
    source = inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms" in source and "self._fetch_min_bytes" in source
    consumer = faust_consumer
    app = consumer.app
    assert app.fetch_idle_wait_ms == batch_consumer.FETCH_IDLE_WAIT_MS > app.fetch_wait_ms
    fetcher = SimpleNamespace(_fetch_min_bytes=app.fetch_min_bytes, _fetch_max_wait_ms=10)
    consumer._thread._consumer = SimpleNamespace(_fetcher=fetcher)
    consumer._fetch_mode(busy=True)
    assert consumer.fetch_modes == 0  # busy already
    consumer._fetch_mode(busy=False)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, app.fetch_idle_wait_ms)
    consumer._fetch_mode(busy=False)
    consumer._fetch_mode(busy=True)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (
        app.fetch_min_bytes,
        app.fetch_wait_ms,
    )
    assert consumer.fetch_modes == 2
    app.fetch_idle_wait_ms = 0
    consumer._fetch_mode(busy=False)
    assert fetcher._fetch_max_wait_ms == app.fetch_wait_ms and consumer.fetch_modes == 2


async def test_a_consumer_behind_fetches_with_the_behind_wait_until_a_batch_is_not_whole(
    faust_consumer: Any,
) -> None:
    """After a `getmany` that handed on a whole batch (`broker_max_poll_records`: more records
    are fetched and waiting), the fetcher's next requests wait `fetch_behind_wait_ms` with the
    busy minimum: they are of the partitions holding no fetched records (aiokafka fetches a
    partition again only once its records are handed on, one request a broker in flight), and
    came back empty every `fetch_wait_ms`. The first batch that is not whole sets the busy wait
    back; nothing at all, the idle settings; `fetch_behind_wait_ms` 0, never."""
    actions = inspect.getsource(Fetcher._get_actions_per_node)
    assert "if tp in self._records:" in actions and "elif node_id in self._in_flight:" in actions
    assert "max_records -= len(drained[tp])" in inspect.getsource(Fetcher.fetched_records)
    consumer = faust_consumer
    app = consumer.app
    assert app.fetch_behind_wait_ms == batch_consumer.FETCH_BEHIND_WAIT_MS > app.fetch_wait_ms
    assert app.fetch_behind_wait_ms == Settings().batch_fetch_behind_wait_ms
    assert consumer._batch_records() == app.conf.broker_max_poll_records == 10_000
    fetcher = SimpleNamespace(_fetch_min_bytes=app.fetch_min_bytes, _fetch_max_wait_ms=10)
    consumer._thread._consumer = SimpleNamespace(_fetcher=fetcher)
    consumer._fetch_mode(busy=True, behind=True)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (
        app.fetch_min_bytes,
        app.fetch_behind_wait_ms,
    )
    assert consumer.fetch_behind and not consumer.fetch_idle and consumer.fetch_modes == 1
    consumer._fetch_mode(busy=True, behind=True)
    assert consumer.fetch_modes == 1  # behind already
    consumer._fetch_mode(busy=True)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (
        app.fetch_min_bytes,
        app.fetch_wait_ms,
    )
    assert not consumer.fetch_behind and consumer.fetch_modes == 2
    consumer._fetch_mode(busy=True, behind=True)
    consumer._fetch_mode(busy=False)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, app.fetch_idle_wait_ms)
    assert consumer.fetch_idle and consumer.fetch_modes == 4
    assert consumer.fetch_entered == {"busy": 1, "behind": 2, "idle": 1}
    app.fetch_behind_wait_ms = 0
    consumer._fetch_mode(busy=True, behind=True)
    assert fetcher._fetch_max_wait_ms == app.fetch_wait_ms and not consumer.fetch_behind


def fetched(topic: str, partition: int, offset: int, value: bytes) -> ConsumerRecord[Any, Any]:
    """A record as aiokafka's fetch unpacks it (`PartitionRecords._consumer_record`)."""
    return ConsumerRecord(topic, partition, offset, 1_000 + offset, 0, b"k", value, None, 1, 1, ())


async def test_a_fetch_s_records_reach_the_handler_as_aiokafka_unpacked_them(
    faust_consumer: Any,
) -> None:
    """`_process` hands on aiokafka's `ConsumerRecord`s themselves (no record rebuilt), every
    attribute the handler reads (`FetchedRecord`) is one of theirs, records refetched after a
    seek back are left out by faust's `_read_offset`, and that moves to the last one handed
    on; an inactive partition's records are dropped."""
    fields = {field.name for field in dataclasses.fields(ConsumerRecord)}
    read = {name for name in vars(batch_consumer.FetchedRecord) if not name.startswith("_")}
    assert read == {"topic", "partition", "offset", "key", "value", "timestamp", "headers"}
    assert read <= fields
    # aiokafka hands each partition's records on as one list, in offset order.
    assert "ret_list.append(msg)" in inspect.getsource(FetchResult.getall)
    consumer = faust_consumer
    views, orders, idle = (
        batch_consumer.TP("live.views", 0),
        batch_consumer.TP("live.orders", 1),
        batch_consumer.TP("live.orders", 2),
    )
    records = {
        views: [fetched("live.views", 0, o, b"v%d" % o) for o in range(5, 9)],
        orders: [fetched("live.orders", 1, o, b"o%d" % o) for o in range(3)],
        idle: [fetched("live.orders", 2, 0, b"x")],
    }
    consumer._read_offset[views] = 7  # sought back to 7: 5 and 6 were handed on before
    handed: list[tuple[list[Any], float]] = []

    async def handler(batch: Any, received_at: float) -> None:
        handed.append((list(batch), received_at))

    consumer.app.route_batches(handler, None)
    await consumer._process(records, {views, orders})
    [(batch, _at)] = handed
    assert [(r.topic, r.partition, r.offset, r.value) for r in batch] == [
        ("live.views", 0, 7, b"v7"),
        ("live.views", 0, 8, b"v8"),
        ("live.orders", 1, 0, b"o0"),
        ("live.orders", 1, 1, b"o1"),
        ("live.orders", 1, 2, b"o2"),
    ]
    assert batch[0] is records[views][2] and batch[2] is records[orders][0]
    assert (batch[0].timestamp, batch[0].headers, batch[0].key) == (1_007, (), b"k")
    assert (consumer._read_offset[views], consumer._read_offset[orders]) == (8, 2)
    assert consumer._read_offset[idle] is None
    # A fetch of only records handed on before reaches no handler.
    await consumer._process({views: records[views][:2]}, {views})
    assert len(handed) == 1


def private_names(tree: ast.AST) -> set[str]:
    """`x._name` attribute uses in a module, other than on `self`/`cls` (the module's own)."""
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
        ):
            names.add(node.attr)
    return names


def test_no_other_module_reaches_into_the_door_s_private_names() -> None:
    """The private names the door relies on appear in no other module of the project."""
    door = REPO / "streams" / "runtime" / "batch_consumer.py"
    relied_on = {
        "_drain_messages",
        "_wait_next_records",
        "_read_offset",
        "_buffered_partitions",
        "_active_partitions",
        "_paused_partitions",
        "_new_consumer_thread",
        "_create_worker_consumer",
        *STARTED_WITH,
        "_assignor",
        "_subscription",
        "_client",
        "_thread",
        "_commit",
    }
    door_text = door.read_text(encoding="utf-8")
    for name in relied_on:
        assert name in door_text, name  # the list matches what the door uses
    elsewhere = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == door:
                continue
            used = private_names(ast.parse(path.read_text(encoding="utf-8"))) & relied_on
            if used:
                elsewhere[str(path.relative_to(REPO))] = sorted(used)
    assert elsewhere == {}


def test_the_fetch_settings_reach_the_batch_consumer() -> None:
    # The settings' defaults are the door's constants (settings.py cannot import them).
    defaults = Settings()
    assert defaults.batch_fetch_min_bytes == batch_consumer.FETCH_MIN_BYTES
    assert defaults.batch_fetch_wait_ms == batch_consumer.FETCH_MAX_WAIT_MS
    app = create_app(
        Settings(batch_fetch_min_bytes=4096, batch_fetch_wait_ms=250, batch_fetch_max_bytes=1 << 20)
    )
    assert (app.fetch_min_bytes, app.fetch_wait_ms, app.fetch_max_bytes) == (4096, 250, 1 << 20)
    assert app.conf.consumer_max_fetch_size == Settings().batch_fetch_bytes
