"""The record compression codecs Kafka producers use, and whether this process can read them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aiokafka import codec

#: Kafka's codecs (besides none) and aiokafka's check that it can decompress each.
CODECS: Final[dict[str, Callable[[], bool]]] = {
    "gzip": codec.has_gzip,
    "snappy": codec.has_snappy,
    "lz4": codec.has_lz4,
    "zstd": codec.has_zstd,
}


def missing_codecs() -> list[str]:
    """The codecs this process could not decompress (aiokafka would fail at the first batch)."""
    return [name for name, available in CODECS.items() if not available()]


def check_codecs() -> None:
    """Raise `RuntimeError` naming every codec missing and how to get it."""
    missing = missing_codecs()
    if missing:
        raise RuntimeError(
            f"cannot decompress {', '.join(missing)} record batches: the codec library "
            "(cramjam) is missing; reinstall livepulse (`pip install livepulse`, which pulls "
            "aiokafka[snappy,lz4,zstd])"
        )
