"""What a Kafka broker says about its cluster, and the local broker's topics: aiokafka's admin
client for the questions, streams.runtime.topics for the topic names and their creation.

aiokafka is imported inside the functions: the CLI imports this module for every command, and
aiokafka's admin client alone takes about 0.1 s to import.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from streams.runtime.settings import Settings
from streams.tools.kafka import KafkaLocalError

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

CLIENT_ID: Final = "livepulse-kafka-local"
#: aiokafka's loggers that report a broker that does not answer (yet), at ERROR and WARNING
#: (aiokafka/client.py logs as "aiokafka"; a filter applies to its own logger only).
_PROBE_LOGGERS: Final = ("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.admin.client")

T = TypeVar("T")


@dataclass(frozen=True)
class ClusterMetadata:
    """What a broker says about its cluster in a metadata response."""

    cluster_id: str | None
    broker_ids: tuple[int, ...]
    topics: dict[str, int]  # non-internal topic name -> partition count


class LocalBrokerSettings(Settings):
    """livepulse settings for the local broker: PLAINTEXT at `bootstrap`, from the arguments and
    the defaults only, so that `LIVEPULSE_*` variables meant for another cluster (a topic prefix,
    SASL credentials) never change what `livepulse kafka up` creates or where it connects."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def contract_topics() -> tuple[str, ...]:
    """The topics `livepulse kafka up` creates: the contract topics and the dead-letter topic,
    under their default names (streams.runtime.topics.all_topics)."""
    from streams.runtime.topics import all_topics

    return all_topics(LocalBrokerSettings())


# ---------------------------------------------------------------------------------------------
# Asking a broker


_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("livepulse_quiet", default=False)


class _DropWhileQuiet(logging.Filter):
    """Drops the records logged from a context where `_quiet` is set (a probe's own tasks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _quiet.get()


_DROP_WHILE_QUIET: Final = _DropWhileQuiet()


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """Silence aiokafka's "Unable connect to ..." for this task and the tasks it starts.

    A probe expects a broker that does not answer yet (`kafka up` polls one that is starting)
    and reports that itself; other aiokafka clients of the process (other tasks, other threads)
    keep their logs, since asyncio tasks each carry their own context.
    """
    for name in _PROBE_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP_WHILE_QUIET not in logger.filters:
            logger.addFilter(_DROP_WHILE_QUIET)
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


async def fetch_metadata_async(bootstrap: str, timeout_s: float = 5.0) -> ClusterMetadata:
    """Ask the cluster at `bootstrap` (PLAINTEXT) for its id, brokers and topics; OSError
    (ConnectionError, TimeoutError) if no broker answers within `timeout_s`."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    with _quiet_aiokafka():
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=CLIENT_ID,
            request_timeout_ms=max(1, int(timeout_s * 1000)),
        )
        try:
            async with asyncio.timeout(timeout_s):
                await admin.start()
                cluster = await admin.describe_cluster()
                described = await admin.describe_topics()  # None: every topic
        except KafkaError as exc:
            raise ConnectionError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc
        finally:
            await admin.close()
    topics = {
        str(topic["topic"]): len(topic["partitions"])
        for topic in described
        if topic["error_code"] == 0 and not topic["is_internal"]
    }
    return ClusterMetadata(
        cluster_id=cluster["cluster_id"],
        broker_ids=tuple(sorted(int(broker["node_id"]) for broker in cluster["brokers"])),
        topics=dict(sorted(topics.items())),
    )


def fetch_metadata(bootstrap: str, timeout_s: float = 5.0) -> ClusterMetadata:
    """Sync `fetch_metadata_async`."""
    return run_sync(lambda: fetch_metadata_async(bootstrap, timeout_s))


def try_metadata(bootstrap: str, timeout_s: float) -> ClusterMetadata | None:
    """The cluster's metadata, or None unless a broker answers with itself among the brokers."""
    try:
        metadata = fetch_metadata(bootstrap, timeout_s)
    except OSError:
        return None
    return metadata if metadata.broker_ids else None


def broker_answers(bootstrap: str, timeout_s: float) -> bool:
    """Whether a Kafka broker at `bootstrap` answers a metadata request within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if try_metadata(bootstrap, max(0.1, min(2.0, remaining))) is not None:
            return True
        if time.monotonic() + 0.2 >= deadline:
            return False
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Topics


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int, timeout_s: float = 30.0
) -> dict[str, int]:
    """Create the missing topics among `names` (`partitions` each) on the broker at `bootstrap`
    with streams.runtime.topics.create_topics; return each one's partition count (an existing
    topic keeps its own)."""
    from aiokafka.errors import KafkaError

    from streams.runtime.topics import create_topics as create

    wanted = list(dict.fromkeys(names))
    settings = LocalBrokerSettings(bootstrap=bootstrap, partitions=partitions)

    async def create_and_count() -> dict[str, int]:
        await create(settings, wanted, timeout_s=timeout_s)
        return (await fetch_metadata_async(bootstrap, timeout_s)).topics

    try:
        counts = run_sync(create_and_count)
    except (KafkaError, OSError) as exc:
        raise KafkaLocalError(f"could not create topics at {bootstrap}: {exc}") from exc
    return {name: counts.get(name, 0) for name in wanted}


def run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    # Inside a running loop (an async test, say) asyncio.run is refused: use a private loop on
    # a helper thread, and block this one until it is done.
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(make_coroutine()))
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    helper = threading.Thread(target=target, name="livepulse-kafka-admin", daemon=True)
    helper.start()
    helper.join()
    if failure:
        raise failure[0]
    return outcome[0]
