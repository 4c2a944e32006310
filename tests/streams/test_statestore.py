"""Snapshots in the changelog topic (real broker) and the local RocksDB store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.runtime.settings import Settings
from streams.runtime.statestore import (
    CHUNK_BYTES,
    LOCAL_STORE_WRITE_BUFFER_BYTES,
    Changelog,
    LocalStore,
    Snapshot,
    StateStoreError,
    new_head,
    newest,
)
from streams.runtime.topics import create_changelog, delete_topics


def _blob(n: int, seed: int) -> bytes:
    return (seed.to_bytes(2, "big") + os.urandom(32)) * (n // 34 + 1)


def test_local_store_round_trip_and_lock(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "state")
    assert store.load(3) is None
    blob = _blob(5000, 1)
    head = new_head(3, 7, blob, {"live.views": 12, "live.orders": 4})
    store.save(Snapshot(head, blob, 41))
    loaded = store.load(3)
    assert loaded is not None
    assert loaded.blob == blob and loaded.offset == 41
    assert loaded.head == head and loaded.head.records == 16
    assert store.load(2) is None
    # A second worker on the same data directory is refused with a clear error.
    with pytest.raises(StateStoreError, match="data directory of its own"):
        LocalStore(tmp_path / "state")
    store.close()
    reopened = LocalStore(tmp_path / "state")
    again = reopened.load(3)
    assert again is not None and again.blob == blob
    reopened.close()


def test_the_local_stores_memtables_stay_bounded_by_its_write_buffer(tmp_path: Path) -> None:
    # A RocksDB memtable keeps every version written until it is flushed: with RocksDB's
    # default 64 MiB buffers, 40 snapshots of 1 MB each stayed in the worker's heap.
    store = LocalStore(tmp_path / "state")
    blobs = [_blob(1_000_000, seed) for seed in range(40)]
    for seq, blob in enumerate(blobs):
        store.save(Snapshot(new_head(0, seq, blob, {"live.views": seq}), blob, seq))
    assert store.memtable_bytes() <= 2 * LOCAL_STORE_WRITE_BUFFER_BYTES + 1_100_000
    assert store.memtable_bytes() < 20_000_000  # the 40 MB written, most of it flushed
    loaded = store.load(0)
    assert loaded is not None and loaded.blob == blobs[-1] and loaded.offset == 39
    store.close()
    reopened = LocalStore(tmp_path / "state")  # what a restart reads: the last one
    again = reopened.load(0)
    assert again is not None and again.blob == blobs[-1]
    reopened.close()


def test_newest_prefers_the_snapshot_covering_more_records() -> None:
    blob = b"x"
    older = Snapshot(new_head(0, 5, blob, {"a": 10, "b": 10}), blob, 100)
    # A "zombie" written later (higher offset, same generation) but covering fewer records.
    zombie = Snapshot(new_head(0, 5, blob, {"a": 10, "b": 4}), blob, 200)
    newer = Snapshot(new_head(0, 6, blob, {"a": 12, "b": 10}), blob, 150)
    assert newest([zombie, older]) is older
    assert newest([None, zombie, newer, older]) is newer
    assert newest([None]) is None


@pytest.mark.integration
async def test_changelog_write_and_read_newest(
    kafka_bootstrap: str, unique_group: Callable[..., str]
) -> None:
    settings = Settings(bootstrap=kafka_bootstrap, app_id=unique_group("lp-state"), partitions=2)
    assert await create_changelog(settings)
    changelog = Changelog(settings)
    try:
        assert await changelog.read_newest(1) is None
        # Three chunks, so the chunking and the slot alternation are exercised.
        first = _blob(2 * CHUNK_BYTES + 1234, 1)
        h1 = new_head(1, 1, first, {"t": 5})
        o1 = await changelog.write(h1, first)
        got = await changelog.read_newest(1)
        assert got is not None and got.blob == first and got.head == h1 and got.offset == o1
        # Partition 0 is apart.
        assert await changelog.read_newest(0) is None

        second = _blob(CHUNK_BYTES // 2, 2)
        h2 = new_head(1, 2, second, {"t": 9})
        o2 = await changelog.write(h2, second, previous=h1)
        got = await changelog.read_newest(1)
        assert got is not None and got.blob == second and got.offset == o2 > o1
        # Reading from after the first head only still finds the second.
        tail = await changelog.read_newest(1, o1 + 1)
        assert tail is not None and tail.blob == second
        assert await changelog.read_newest(1, o2 + 1) is None

        # The first snapshot's chunks got tombstones when the second was written.
        got = await changelog.read_newest(1, 0)
        assert got is not None and got.head.nonce == h2.nonce
        restarted = Changelog(settings)
        try:
            # A writer that died half way: chunks of generation 3 land, its head does not.
            third = _blob(2 * CHUNK_BYTES, 3)
            h3 = new_head(1, 3, third, {"t": 20})
            await restarted.start()
            producer = restarted._producer
            assert producer is not None
            await producer.send_and_wait(
                restarted.topic, third[:CHUNK_BYTES], key=f"1/{h3.nonce}/0".encode(), partition=1
            )
            got = await restarted.read_newest(1)
            assert got is not None and got.blob == second  # the last complete snapshot

            # A head whose chunks are gone (tombstoned under it) is passed over for an older one.
            fourth = _blob(1000, 4)
            h4 = new_head(1, 4, fourth, {"t": 30})
            o4 = await restarted.write(h4, fourth)
            await producer.send_and_wait(
                restarted.topic, None, key=f"1/{h4.nonce}/0".encode(), partition=1
            )
            got = await restarted.read_newest(1)
            assert got is not None and got.blob == second
            assert await restarted.read_newest(1, o4) is None

            # A zombie head (the previous owner finishing late) covering fewer records loses.
            stale = _blob(1000, 5)
            await restarted.write(new_head(1, 2, stale, {"t": 7}), stale)
            got = await restarted.read_newest(1)
            assert got is not None and got.blob == second
        finally:
            await restarted.stop()
    finally:
        await changelog.stop()
        await delete_topics(settings, [settings.changelog])
