"""The project's own local Apache Kafka, by concern: `download` fetches the pinned jars from Maven
Central, `process` starts, stops and inspects the single-node KRaft broker, `admin` asks a broker
about its cluster and creates the contract topics (aiokafka's admin client, topic creation from
streams.runtime.topics), `secure` runs a second, SASL_SSL broker for tests. The broker's
configuration templates (`*.properties`, `pom.xml`) sit beside them as package data; this module
holds what they share."""

from __future__ import annotations

import contextlib
import fcntl
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path


class KafkaLocalError(RuntimeError):
    """The local broker could not be fetched, started, stopped or reached."""


def say(message: str) -> None:
    """One line of progress on standard error."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (serialises concurrent `up`/`down`/fetch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def template(name: str) -> str:
    """A configuration template shipped beside this module (`server.properties`, ...)."""
    return (resources.files(__name__) / name).read_text(encoding="utf-8")
