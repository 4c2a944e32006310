"""Topic names and topic administration (create, delete, end offsets) over aiokafka.

The one place the worker, the demo, the replayer and the local broker (streams/tools/kafka/)
take topic names and topic creation from: `all_topics(settings)` is every broker-side name, from
`Settings` (its defaults `CONTRACT_TOPICS` and `DEADLETTER_TOPIC` are defined with it in
settings.py, which this module imports: the reverse would be an import circle).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.structs import TopicPartition

from streams.runtime.settings import ISOLATION_LEVEL, Settings

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3


def all_topics(settings: Settings) -> tuple[str, ...]:
    """The broker-side names of every topic livepulse uses: the contract topics and dead letter."""
    return (*settings.source_topics, settings.deadletter)


#: The contract topic the refund table is rebuilt from at each start (streams/runtime/refunds.py).
ORDERS_TOPIC: Final[str] = "live.orders"


def orders_retention_needed_ms(settings: Settings) -> int | None:
    """How long the orders topic must keep its records, or None when nothing depends on it:
    with the session fold and a refund horizon each worker rebuilds its refund table from the
    whole orders topic at each start, and a refund counts up to the refund horizon after its
    order, which may itself be up to the dedupe window late (README, "State")."""
    horizon = settings.refund_horizon_ms
    if not settings.fold_sessions or horizon is None:
        return None
    return horizon + (settings.dedupe_window_ms or 0)


def _topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """The configuration a topic livepulse creates gets beyond the broker's defaults."""
    needed = orders_retention_needed_ms(settings)
    if needed is not None and name == settings.topic(ORDERS_TOPIC):
        return {"retention.ms": str(needed)}
    return {}


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(client_id="livepulse-admin", **settings.kafka_client_kwargs())
    await admin.start()
    return admin


async def create_topics(
    settings: Settings, topics: Iterable[str], *, timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet (`settings.partitions` each); return those created.

    Waits until every topic has a leader for each partition, so that a producer or a consumer
    started right after sees all of them.
    """
    wanted = list(dict.fromkeys(topics))
    admin = await _admin(settings)
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        replication = min(3, max(1, len(brokers)))
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        created: list[str] = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        settings.partitions,
                        replication,
                        topic_configs=_topic_configs(settings, name),
                    )
                    for name in missing
                ],
                timeout_ms=int(timeout_s * 1000),
            )
            for topic, code, *_ in response.topic_errors:
                if code == 0:
                    created.append(topic)
                elif code != _TOPIC_ALREADY_EXISTS:
                    raise for_code(code)(f"creating topic {topic}")
        await _wait_for_leaders(admin, wanted, timeout_s)
        if created:
            log.info("created topics %s (%d partitions)", ", ".join(created), settings.partitions)
        return created
    finally:
        await admin.close()


async def orders_retention_ms(settings: Settings) -> int | None:
    """The orders topic's `retention.ms` on the broker (-1: kept for ever), or None when it
    cannot be read (no such topic, or the broker refuses to describe it)."""
    name = settings.topic(ORDERS_TOPIC)
    admin = await _admin(settings)
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": None})]
        )
    finally:
        await admin.close()
    for response in responses:
        for code, _message, _kind, resource, entries in (r[:5] for r in response.resources):
            if code != 0 or resource != name:
                continue
            for entry in entries:
                if entry[0] == "retention.ms" and entry[1] is not None:
                    return int(entry[1])
    return None


async def check_orders_retention(settings: Settings) -> str | None:
    """A warning when the orders topic keeps its records for less than the refund table needs
    (`orders_retention_needed_ms`), else None: a worker restarted later would rebuild its
    table without the refunds the broker deleted, and fold orders without them."""
    needed = orders_retention_needed_ms(settings)
    if needed is None:
        return None
    kept = await orders_retention_ms(settings)
    if kept is None or kept < 0 or kept >= needed:
        return None
    return (
        f"the orders topic {settings.topic(ORDERS_TOPIC)} keeps records {kept / 86_400_000:g} "
        f"days (retention.ms={kept}), less than the refund horizon + the dedupe window "
        f"({needed / 86_400_000:g} days) the session fold's refund table is rebuilt from at "
        f"each start: a restarted worker would miss older refunds. Raise it, e.g. "
        f"kafka-configs.sh --alter --entity-type topics --entity-name "
        f"{settings.topic(ORDERS_TOPIC)} --add-config retention.ms={needed}"
    )


class TopicLayoutError(RuntimeError):
    """The topics are not laid out as the worker needs (not co-partitioned)."""


async def create_changelog(settings: Settings, *, timeout_s: float = 30.0) -> bool:
    """Create the state changelog topic (compacted, `settings.partitions`) if it is missing."""
    from streams.runtime.statestore import CHANGELOG_CONFIGS

    admin = await _admin(settings)
    try:
        if settings.changelog in set(await admin.list_topics()):
            return False
        brokers = (await admin.describe_cluster())["brokers"]
        replication = min(3, max(1, len(brokers)))
        topic = NewTopic(
            settings.changelog,
            settings.partitions,
            replication,
            topic_configs=dict(CHANGELOG_CONFIGS),
        )
        response = await admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
        for name, code, *_ in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise for_code(code)(f"creating topic {name}")
        await _wait_for_leaders(admin, [settings.changelog], timeout_s)
        return True
    finally:
        await admin.close()


#: The month-rows topic's configuration: not compacted (a user's key carries a row of each of
#: their (merchant, month)s, which compaction would reduce to the last), kept 7 days: a row is
#: read within seconds, and a partition restored from a snapshot re-reads the rows after the
#: snapshot's position, which a snapshot a few minutes old finds on the broker.
MONTH_ROWS_CONFIGS: Final[dict[str, str]] = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 86_400_000),
}


async def create_month_rows_topic(
    settings: Settings, partitions: int, *, timeout_s: float = 30.0
) -> bool:
    """Create the month-rows topic (`Settings.month_rows_topic`, with the session fold) with
    `partitions` (the contract topics' count: partition p's rows are read into partition p's
    state) if it is missing; refuse one laid out with another count."""
    name = settings.month_rows_topic
    if name is None:
        return False
    admin = await _admin(settings)
    try:
        if name not in set(await admin.list_topics()):
            brokers = (await admin.describe_cluster())["brokers"]
            replication = min(3, max(1, len(brokers)))
            topic = NewTopic(name, partitions, replication, topic_configs=MONTH_ROWS_CONFIGS)
            response = await admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
            for topic_name, code, *_ in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise for_code(code)(f"creating topic {topic_name}")
            await _wait_for_leaders(admin, [name], timeout_s)
    finally:
        await admin.close()
    counts = await partition_counts(settings, [name])
    if counts.get(name) != partitions:
        raise TopicLayoutError(
            f"the month-rows topic {name} has {counts.get(name)} partitions, not the contract "
            f"topics' {partitions} (partition p's rows are read into partition p's state): "
            "use another app id (and new state), or re-create it with the contract topics' "
            "count once every row on it has been read"
        )
    return True


async def _start(consumer: AIOKafkaConsumer) -> None:
    """Start a consumer; one that fails to (no broker) is closed, not left to the collector."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise


async def partition_counts(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """The number of partitions of each existing topic among `topics`."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs())
    await _start(consumer)
    try:
        counts: dict[str, int] = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                # The door to aiokafka's private API imports faust: only on this rare path.
                from streams.runtime.batch_consumer import force_metadata_update

                await force_metadata_update(consumer)
                partitions = consumer.partitions_for_topic(topic)
            if partitions:
                counts[topic] = len(partitions)
        return counts
    finally:
        await consumer.stop()


async def check_copartitioned(settings: Settings) -> dict[str, int]:
    """Raise `TopicLayoutError` unless every contract topic has the same number of partitions
    and the changelog at least that many.

    State is kept per partition number: partition p of every contract topic must go to the same
    worker (faust's assignor does that for topics with equal partition counts), and its
    snapshots to changelog partition p.
    """
    counts = await partition_counts(settings, (*settings.source_topics, settings.changelog))
    sources = {t: counts.get(t) for t in settings.source_topics}
    if len(set(sources.values())) != 1 or None in sources.values():
        shown = ", ".join(f"{t}={n}" for t, n in sources.items())
        raise TopicLayoutError(
            f"the contract topics must have equal partition counts (co-partitioned): {shown}"
        )
    n = next(iter(sources.values()))
    assert n is not None
    changelog = counts.get(settings.changelog, 0)
    if changelog < n:
        raise TopicLayoutError(
            f"the changelog topic {settings.changelog} has {changelog} partitions, fewer than "
            f"the contract topics' {n}; delete it or give this worker another app id"
        )
    return counts


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described = await admin.describe_topics(topics)
        pending = [
            t["topic"]
            for t in described
            if t["error_code"] != 0
            or not t["partitions"]
            or any(p["leader"] < 0 for p in t["partitions"])
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout_s:.0f}s: {pending}")
        await asyncio.sleep(0.2)


async def delete_topics(settings: Settings, topics: Iterable[str]) -> list[str]:
    """Delete the topics that exist; return those deleted."""
    names = list(dict.fromkeys(topics))
    if not names:
        return []
    admin = await _admin(settings)
    try:
        response = await admin.delete_topics(names)
        deleted = []
        for topic, code, *_ in response.topic_error_codes:
            if code == 0:
                deleted.append(topic)
            elif code != _UNKNOWN_TOPIC:
                raise for_code(code)(f"deleting topic {topic}")
        return deleted
    finally:
        await admin.close()


async def delete_run_topics(settings: Settings) -> list[str]:
    """Delete a run's topics: `all_topics(settings)` and the app's own internal topics.

    faust creates `<app id>-__assignor-__leader` (and would create `<app id>-...-changelog`
    for tables) for each app id; for a run with an app id of its own, every topic whose name
    starts with `<app id>-` is that run's.
    """
    admin = await _admin(settings)
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    own = {name for name in existing if name.startswith(f"{settings.app_id}-")}
    internal = {settings.changelog}
    if settings.month_rows_topic is not None:
        internal.add(settings.month_rows_topic)
    mine = (set(all_topics(settings)) | internal) & existing
    return await delete_topics(settings, sorted(mine | own))


class EndOffsets:
    """Reads log end offsets repeatedly over one connection: `async with EndOffsets(s) as read`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer = AIOKafkaConsumer(
            client_id="livepulse-offsets",
            enable_auto_commit=False,
            # The end a read_committed consumer can reach: the last stable offset (records of
            # a transaction still open are not readable yet).
            isolation_level=ISOLATION_LEVEL,
            **settings.kafka_client_kwargs(),
        )
        self._partitions: dict[tuple[str, ...], list[TopicPartition]] = {}

    async def __aenter__(self) -> EndOffsets:
        await _start(self._consumer)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._consumer.stop()

    async def _list_partitions(self, topics: tuple[str, ...]) -> list[TopicPartition]:
        # The consumer only keeps metadata of topics it is subscribed to; ask an admin client.
        # Only about topics that exist: a broker with auto.create.topics.enable would create
        # the others on being asked about them.
        admin = await _admin(self._settings)
        try:
            existing = set(await admin.list_topics())
            wanted = [name for name in topics if name in existing]
            described = await admin.describe_topics(wanted) if wanted else []
        finally:
            await admin.close()
        return sorted(
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if t["error_code"] == 0
            for p in t["partitions"]
        )

    async def __call__(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        """The end offset (the next offset to be written) of every partition of `topics`.

        Topics that do not exist are left out.
        """
        names = tuple(topics)
        partitions = self._partitions.get(names)
        if not partitions:
            partitions = await self._list_partitions(names)
            if not partitions:
                return {}
            self._partitions[names] = partitions
        offsets: dict[TopicPartition, int] = await self._consumer.end_offsets(partitions)
        return offsets


async def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The end offset (the next offset to be written) of every partition of `topics`."""
    async with EndOffsets(settings) as read:
        return await read(topics)


def raw_topic(app: Any, name: str) -> Any:
    """A faust topic whose keys and values stay the record's bytes, exactly as produced.

    Decoding happens in the agent, not in a faust codec: a codec that raises makes faust log
    and skip the record (`on_value_decode_error`), which would bypass the dead-letter path.
    `allow_empty` lets a null value (a tombstone) reach the agent too, to be dead-lettered.
    """
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )
