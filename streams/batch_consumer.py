"""Batch ingestion: a faust consumer that hands each fetched batch to one handler (issue 6).

faust's own drain loop passes every message through `wait_first(callback(message), ...)`, the
conductor's per-topic queues and the stream iterator: two tasks, a queue hop and a future per
record, ~75 us of the worker's ~85 us per record on this machine (bench/NOTES.md). This
consumer keeps faust's group membership, rebalancing, offsets bookkeeping and commits, and
replaces only the drain: each `getmany` result (up to `broker_max_poll_records` records) is
awaited once through `BatchHandler`, and its offsets are acked after the handler returns (the
handler has applied the records and published their dead letters), so the commit that follows
covers only processed records: at least once, as before.

Chosen with `Settings.batch_ingest` (on by default; the app's `broker_consumer` URL scheme `lpbatch://`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaFaustConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP

log = logging.getLogger(__name__)

#: The URL scheme of the batch transport (registered in faust's transport registry below).
SCHEME: Final[str] = "lpbatch"

#: One fetched batch: (topic, partition, offset, key, value, timestamp in ms or None) per record.
RawRecord = tuple[str, int, int, bytes | None, bytes | None, int | None]
BatchHandler = Callable[[Sequence[RawRecord]], Awaitable[None]]

_handler: BatchHandler | None = None


def set_batch_handler(handler: BatchHandler | None) -> None:
    """Choose the coroutine every fetched batch is awaited through (agents.live sets it)."""
    global _handler
    _handler = handler


class BatchConsumer(AIOKafkaFaustConsumer):
    """faust's aiokafka consumer with a batch drain loop instead of the per-message one."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (a thread loop)
        stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                if records is None or self.should_stop:
                    await asyncio.sleep(0)
                    continue
                if not self.flow_active:
                    # Rebalancing: what was fetched is dropped; faust seeks back to the
                    # committed offsets before the flow resumes.
                    await self.perform_seek()
                    continue
                await self._process(records, active)
                # Yield between batches so the web views and the commit timer get their turn.
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _process(self, records: Any, active: set[TP] | None) -> None:
        handler = _handler
        if handler is None:
            raise RuntimeError("batch ingestion is on but no batch handler was set")
        batch: list[RawRecord] = []
        taken: list[tuple[TP, list[int]]] = []
        read_offset = self._read_offset
        buffered = self._buffered_partitions
        for tp, tp_records in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            last_read = read_offset.get(tp)
            topic, partition = tp.topic, tp.partition
            offsets: list[int] = []
            for record in tp_records:
                offset = record.offset
                if last_read is not None and offset < last_read:
                    continue  # already delivered before a seek back
                offsets.append(offset)
                batch.append((topic, partition, offset, record.key, record.value, record.timestamp))
            if offsets:
                taken.append((tp, offsets))
        if not batch:
            return
        await handler(batch)
        # A partition revoked while the handler ran has had its ack bookkeeping dropped by
        # faust; its records are applied (and will be redelivered to the new owner: at least
        # once), but acking them here would commit for a partition this worker no longer has.
        assigned = self.assignment()
        for tp, offsets in taken:
            if tp in assigned:
                await self._ack_offsets(tp, offsets)
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    async def _ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        """Mark processed offsets acked (faust's `ack` per message, once per partition batch)."""
        last_read = self._read_offset.get(tp)
        first = offsets[0]
        # A hole in the offsets (a compacted topic, transaction markers) would hold the commit
        # back for ever: faust records it as a gap that counts as acked, and so does this.
        if last_read is not None and first - last_read > 1:
            await self._add_gap(tp, last_read + 1, first - 1)
        if offsets[-1] - first + 1 != len(offsets):
            previous = first
            for offset in offsets[1:]:
                if offset - previous > 1:
                    await self._add_gap(tp, previous + 1, offset - 1)
                previous = offset
        committed = self._committed_offset[tp]
        fresh = [o for o in offsets if committed is None or o >= committed]
        if fresh:
            index = self._acked_index[tp]
            fresh = [o for o in fresh if o not in index]
            index.update(fresh)
            self._acked[tp].extend(fresh)
            self._n_acked += len(fresh)
        self._read_offset[tp] = offsets[-1]


class BatchTransport(AIOKafkaTransport):
    """faust's aiokafka transport with `BatchConsumer` as its consumer."""

    Consumer = BatchConsumer


TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:BatchTransport")
