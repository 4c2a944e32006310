"""Partition state snapshots: a compacted changelog topic, and a local RocksDB store (rocksdict).

A worker's state is kept per partition number (the contract topics are co-partitioned, so
partition p of every topic is one worker's). A snapshot of partition p is the state's bytes
(`agents.core.persist`) and the source positions it covers (the next offset of each topic's
partition p). It is written to changelog partition p as chunks and then a head record that
names them, and to the worker's RocksDB store in its data directory. A worker assigned p
restores from the newest snapshot (its own RocksDB copy, or a newer one from the changelog,
read from the offset its copy was taken at) and seeks the source partitions to the positions:
nothing before them is read again, nothing after them is missing.

Layout of changelog partition p (compacted: only the newest record of each key is kept):
- `p/<nonce>/<i>`: chunk i of the snapshot with that nonce (a random id per snapshot), so no
  snapshot's chunks ever overwrite another's;
- `p/head`: JSON `SnapshotHead`, written once all its chunks are acknowledged, so a crash while
  writing leaves the previous head in force; then the previous snapshot's chunks get
  tombstones, and compaction removes them.
Among the heads read, the newest is the one covering the most records (its positions' sum), not
the latest written: a worker that lost a partition and still finishes writing its older
snapshot (a "zombie") does not win over the new owner's. Once compaction has kept only the
zombie's head, a restore takes that older snapshot and re-reads the sources from its
positions: slower, never wrong, because a state and its positions are always written together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.runtime.settings import ISOLATION_LEVEL, Settings

log = logging.getLogger(__name__)

#: Bytes of state per changelog record: under the broker's default 1 MiB record limit.
CHUNK_BYTES: Final[int] = 900_000
_NONCE_BYTES: Final[int] = 16
_HEAD_VERSION: Final[int] = 1
#: Topic settings of the changelog (compacted; segments roll so that compaction can run).
CHANGELOG_CONFIGS: Final[dict[str, str]] = {
    "cleanup.policy": "compact",
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "max.message.bytes": str(1024 * 1024 + 1024),
}


class StateStoreError(RuntimeError):
    """The state store cannot be used (its RocksDB directory is locked by another worker...)."""


@dataclass(frozen=True, slots=True)
class SnapshotHead:
    """What a snapshot of one partition's state is, and where its chunks are."""

    partition: int
    generation: int
    nonce: str
    chunks: int
    size: int
    sha256: str
    #: Source topic -> the next offset of its partition `partition` the state covers.
    positions: dict[str, int]
    written_at: float
    writer: str

    @property
    def records(self) -> int:
        """How far the state reaches: the sum of its positions (grows with every snapshot)."""
        return sum(self.positions.values())

    def to_json(self) -> bytes:
        return json.dumps({"v": _HEAD_VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SnapshotHead:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.pop("v", None) != _HEAD_VERSION:
            raise ValueError("not a livepulse snapshot head of version 1")
        positions = raw.get("positions")
        if not isinstance(positions, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in positions.items()
        ):
            raise ValueError("snapshot head with malformed positions")
        return cls(
            partition=int(raw["partition"]),
            generation=int(raw["generation"]),
            nonce=str(raw["nonce"]),
            chunks=int(raw["chunks"]),
            size=int(raw["size"]),
            sha256=str(raw["sha256"]),
            positions={str(k): int(v) for k, v in positions.items()},
            written_at=float(raw["written_at"]),
            writer=str(raw["writer"]),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A head and the state's bytes; `offset` is the head's offset in the changelog, if written."""

    head: SnapshotHead
    blob: bytes
    offset: int | None


def new_head(
    partition: int, generation: int, blob: bytes, positions: Mapping[str, int]
) -> SnapshotHead:
    """The head of a new snapshot of `blob` (generation `generation`)."""
    return SnapshotHead(
        partition=partition,
        generation=generation,
        nonce=secrets.token_hex(_NONCE_BYTES),
        chunks=max(1, -(-len(blob) // CHUNK_BYTES)),
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        positions=dict(positions),
        written_at=time.time(),
        writer=f"{os.uname().nodename}:{os.getpid()}",
    )


def _head_key(partition: int) -> bytes:
    return f"{partition}/head".encode()


def _chunk_key(head: SnapshotHead, index: int) -> bytes:
    return f"{head.partition}/{head.nonce}/{index}".encode()


def _rank(head: SnapshotHead) -> tuple[int, int]:
    """Which of two heads is newer: the one covering more records, then the later generation."""
    return (head.records, head.generation)


def _better(candidate: SnapshotHead, current: SnapshotHead | None) -> bool:
    return current is None or _rank(candidate) > _rank(current)


#: The local store's RocksDB memtable size (`write_buffer_size`; RocksDB's default is 64 MiB,
#: two of them). A memtable keeps every version written to it until it is flushed, so with
#: the default the worker's heap held every snapshot saved since the last flush: 35 MB of 124
#: snapshots at the end of the 300-day soak, up to 128 MB (bench/RESULTS.md, "Session 16
#: (issue 17)"), invisible to Python's own accounting. The store only keeps each partition's
#: last snapshot and is read on a restore, so small memtables cost a flush every few
#: snapshots and bound that memory to ~2x this.
LOCAL_STORE_WRITE_BUFFER_BYTES = 4 * 1024 * 1024


class LocalStore:
    """The worker's RocksDB store (rocksdict, raw bytes only): the last snapshot of each partition.

    Kept after a partition is revoked: if it comes back, the restore reads only the changelog
    written since. A second worker on the same data directory is refused (RocksDB's lock).
    """

    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict

        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.set_write_buffer_size(LOCAL_STORE_WRITE_BUFFER_BYTES)
        try:
            self._db = Rdict(str(path), options)
        except Exception as exc:
            raise StateStoreError(
                f"cannot open the state store {path}: {exc} (each worker needs a data "
                "directory of its own: --data-dir or LIVEPULSE_DATA_DIR)"
            ) from exc
        self.path = path

    def load(self, partition: int) -> Snapshot | None:
        """The stored snapshot of `partition`, or None (none, or one that fails its checksum)."""
        raw_head = self._db.get(_head_key(partition))
        blob = self._db.get(f"{partition}/blob".encode())
        if raw_head is None or blob is None:
            return None
        try:
            meta = json.loads(raw_head)
            head = SnapshotHead.from_json(json.dumps(meta["head"]).encode())
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("local snapshot of partition %d unreadable (%s); ignored", partition, exc)
            return None
        if hashlib.sha256(blob).hexdigest() != head.sha256:
            log.warning("local snapshot of partition %d fails its checksum; ignored", partition)
            return None
        offset = meta.get("offset")
        return Snapshot(head, bytes(blob), offset if isinstance(offset, int) else None)

    def save(self, snapshot: Snapshot) -> None:
        """Store `snapshot` as the partition's (head and bytes in one atomic write)."""
        from rocksdict import WriteBatch

        partition = snapshot.head.partition
        meta = {"head": json.loads(snapshot.head.to_json()), "offset": snapshot.offset}
        batch = WriteBatch(raw_mode=True)
        batch.put(f"{partition}/blob".encode(), snapshot.blob)
        batch.put(_head_key(partition), json.dumps(meta).encode())
        self._db.write(batch)

    def memtable_bytes(self) -> int:
        """The bytes RocksDB's memtables hold now (`rocksdb.cur-size-all-mem-tables`)."""
        return int(self._db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0)

    def close(self) -> None:
        self._db.close()


class Changelog:
    """Writes snapshots to the changelog topic and reads the newest one back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.changelog
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                client_id="livepulse-changelog",
                acks="all",
                linger_ms=0,
                max_request_size=CHUNK_BYTES + 64 * 1024,
                **self.settings.kafka_client_kwargs(),
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def write(
        self, head: SnapshotHead, blob: bytes, previous: SnapshotHead | None = None
    ) -> int:
        """Write the chunks, then the head, then tombstones for `previous`'s chunks; return the
        head's offset once the broker has the chunks and the head."""
        await self.start()
        producer = self._producer
        assert producer is not None
        partition = head.partition
        sends = []
        for index in range(head.chunks):
            chunk = blob[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
            sends.append(
                await producer.send(
                    self.topic, chunk, key=_chunk_key(head, index), partition=partition
                )
            )
        await asyncio.gather(*sends)
        sent = await producer.send_and_wait(
            self.topic, head.to_json(), key=_head_key(partition), partition=partition
        )
        if previous is not None and previous.nonce != head.nonce:
            tombstones = [
                await producer.send(
                    self.topic, None, key=_chunk_key(previous, index), partition=partition
                )
                for index in range(previous.chunks)
            ]
            await asyncio.gather(*tombstones)
        return int(sent.offset)

    async def read_newest(self, partition: int, start_offset: int = 0) -> Snapshot | None:
        """The newest complete snapshot of `partition` among records at `start_offset` or later.

        A head whose chunks are missing or fail the checksum (a writer that died half way,
        chunks compacted under a newer snapshot) is skipped for the next best one.
        """
        tp = TopicPartition(self.topic, partition)
        consumer = AIOKafkaConsumer(
            client_id="livepulse-restore",
            enable_auto_commit=False,
            isolation_level=ISOLATION_LEVEL,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * CHUNK_BYTES,
            fetch_max_bytes=16 * CHUNK_BYTES,
            **self.settings.kafka_client_kwargs(),
        )
        await consumer.start()
        heads: list[tuple[SnapshotHead, int]] = []
        chunks: dict[bytes, bytes] = {}
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            beginning = (await consumer.beginning_offsets([tp]))[tp]
            if end <= max(start_offset, beginning):
                return None
            consumer.seek(tp, max(start_offset, beginning))
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for record in batches.get(tp, []):
                    if record.key is None:
                        continue
                    if record.value is None:  # a tombstone: that chunk is gone
                        chunks.pop(record.key, None)
                    elif record.key == _head_key(partition):
                        try:
                            heads.append((SnapshotHead.from_json(record.value), record.offset))
                        except (ValueError, KeyError, TypeError) as exc:
                            log.warning("changelog head at %d unreadable: %s", record.offset, exc)
                    else:
                        chunks[record.key] = record.value
        finally:
            await consumer.stop()
        for head, offset in sorted(heads, key=lambda h: (*_rank(h[0]), h[1]), reverse=True):
            blob = _assemble(head, chunks)
            if blob is not None:
                return Snapshot(head, blob, offset)
            log.warning(
                "changelog snapshot of partition %d (generation %d) is incomplete; trying older",
                partition,
                head.generation,
            )
        return None


def _assemble(head: SnapshotHead, chunks: Mapping[bytes, bytes]) -> bytes | None:
    parts: list[bytes] = []
    for index in range(head.chunks):
        value = chunks.get(_chunk_key(head, index))
        if value is None:
            return None
        parts.append(value)
    blob = b"".join(parts)
    if len(blob) != head.size or hashlib.sha256(blob).hexdigest() != head.sha256:
        return None
    return blob


def newest(snapshots: Iterable[Snapshot | None]) -> Snapshot | None:
    """The snapshot covering the most records among `snapshots` (None if there is none)."""
    best: Snapshot | None = None
    for snapshot in snapshots:
        if snapshot is not None and _better(snapshot.head, best.head if best else None):
            best = snapshot
    return best
