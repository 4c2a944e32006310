"""Shared pytest fixtures: the project's real Kafka broker, unique names, and leak checks."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from streams.tools.kafka.admin import broker_answers

DEFAULT_TEST_BOOTSTRAP = "127.0.0.1:9092"
# Grace given to what a test stopped but that is still winding down (aiokafka cancels its
# connection readers on close without awaiting them; executor threads finish their job).
LEAK_GRACE_S = 3.0


def in_ci() -> bool:
    """Whether the tests run under CI, where an unreachable broker is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session", autouse=True)
def _state_in_a_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Workers started by tests keep their RocksDB state under a temp dir, not in data/."""
    before = os.environ.get("LIVEPULSE_DATA_DIR")
    os.environ["LIVEPULSE_DATA_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        os.environ.pop("LIVEPULSE_DATA_DIR", None)
    else:
        os.environ["LIVEPULSE_DATA_DIR"] = before


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real broker's bootstrap (`LIVEPULSE_TEST_BOOTSTRAP`); skip if down, fail under CI."""
    bootstrap = os.environ.get("LIVEPULSE_TEST_BOOTSTRAP", DEFAULT_TEST_BOOTSTRAP)
    if broker_answers(bootstrap, timeout_s=15.0 if in_ci() else 2.0):
        return bootstrap
    message = (
        f"no Kafka broker answers at {bootstrap}: start the project's own with "
        "`livepulse kafka up` (or point LIVEPULSE_TEST_BOOTSTRAP at one)"
    )
    if in_ci():
        pytest.fail(f"{message}; under CI an unreachable broker fails the run", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def unique_topic_name() -> Callable[..., str]:
    """Factory of topic names no other test (or run) uses: `unique_topic_name("orders")`."""

    def make(prefix: str = "livepulse-test") -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    return make


@pytest.fixture
def unique_group() -> Callable[..., str]:
    """Factory of consumer group ids no other test (or run) uses."""

    def make(prefix: str = "livepulse-test-group") -> str:
        return f"{prefix}-{uuid.uuid4().hex}"

    return make


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before
        and thread.is_alive()
        and not thread.daemon
        # The event loop's default executor: pytest-asyncio shuts it down with the loop.
        and not thread.name.startswith("asyncio_")
    ]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves non-daemon threads running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    for thread in _new_threads(before):
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked = _new_threads(before)
    if leaked:
        names = ", ".join(thread.name for thread in leaked)
        pytest.fail(f"test left non-daemon threads running: {names}", pytrace=False)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks pending on its (function-scoped) event loop."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        pending = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if pending:
        names = ", ".join(sorted(repr(task.get_coro()) for task in pending))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        pytest.fail(f"test left asyncio tasks pending: {names}", pytrace=False)
