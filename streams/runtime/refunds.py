"""The worker's refund table: every partition of the orders topic, read by each worker process
apart from its consumer group (like the membership table, streams/runtime/membership.py), so
that its partition ledgers fold their orders with every refund that can count for them
(`Ledger.refunds_from`, docs/design.md "The order fold").

An `order_refunded` has no `session_id`, so its record key is empty and it lands in one
partition (or anywhere, from a producer with a null key), while its order is in its session's
partition: no partition ledger holds both. The table reads every partition in offset order,
each through its own `agents.core.refunds.RefundPartition` under the partition ledgers' dedupe
window and future tolerance, so it expires and deduplicates exactly the records the partition
ledger of that number does, and keeps only the refunds.

Rebuilt at each start by reading the orders topic from its beginning, not snapshotted: see
docs/design.md "The order fold" for the measured restart cost and why. Its horizon
(`refund_fold_ts`) is None until it has read every partition up to the end it had at its start
(a partially read topic would let a fold miss refunds still unread).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agents.core.ingest import Rejected, ingest_decoded
from agents.core.ledger import TOPICS, Ledger, RefundFact
from agents.core.refunds import RefundTable
from schemas import Event, Rejection
from streams.runtime.membership import ReadTable

log = logging.getLogger(__name__)

_ORDERS = TOPICS.index("live.orders")

#: How often (in hours of the table's horizon) the refunds no held order can use are dropped.
_DROP_EVERY_MS = 3_600_000


class WorkerRefundTable(ReadTable):
    """A `RefundTable` fed by `MembershipReader` (records with their offsets), and the
    `RefundSource` every partition ledger of the process folds its orders with.

    `held_ledgers` gives the partition ledgers this process holds (`LiveState`), or None while
    that is changing (an assignment's states are being restored): a refund is dropped once the
    table's horizon and every held ledger's last order fold (`Ledger.order_fold_ts`: a fold is
    lazy, once a day of its horizon) have passed its `ts` + the refund horizon and no held
    ledger still holds a payment of its order id (one whose session is not summarized yet
    folds later, with it), so no order it can count for is still to fold in a held ledger.
    A ledger installed here later (a rebalance: restored from a snapshot, or parked while
    another worker's) was not among them: `take` checks whether it may still read a refund
    dropped meanwhile, and if so the table is emptied and reads the orders topic again from
    its beginning (`rewind`, as at a start: no order folds until it has caught up).
    """

    def __init__(
        self,
        dedupe_window_ms: int | None,
        future_tolerance_ms: int | None,
        refund_horizon_ms: int | None,
        held_ledgers: Callable[[], Iterable[Ledger] | None] = lambda: (),
        on_dropped: Callable[[list[Ledger]], None] = lambda changed: None,
        idle_s: float | None = None,
    ) -> None:
        super().__init__(idle_s)
        self.table = RefundTable(dedupe_window_ms, future_tolerance_ms, refund_horizon_ms)
        self.held_ledgers = held_ledgers
        #: Called with the held ledgers whose copies of refunds the table dropped went too.
        self.on_dropped = on_dropped
        self._dropped_at: int | None = None
        #: The newest horizon given so far, and the refunds applied stamped before it (an
        #: idle partition's late refund: an order it counts for may be folded without it).
        self._given: int | None = None
        self.after_fold = 0
        #: The ledgers held at every drop since the table was filled (`take`, `_drop`): none
        #: of what they may read was dropped.
        self._kept_for: weakref.WeakSet[Ledger] = weakref.WeakSet()

    # -- RefundSource ---------------------------------------------------------------------

    def refunds_of(self, order_id: str) -> Sequence[RefundFact]:
        return self.table.refunds_of(order_id)

    def note_folded(self, order_id: str) -> None:
        self.table.note_folded(order_id)

    def decided(self, order_id: str) -> bool:
        return self.table.decided(order_id)

    def refund_fold_ts(self) -> int | None:
        """The table's horizon once it has caught up (None before: no order folds)."""
        if not self.caught_up.is_set():
            return None
        # A partition read to its high-water mark with no record for `idle_s` while the topic
        # moved (`ReadTable.idle`) no longer holds the horizon back; one with no event yet
        # and not idle does.
        horizon = self.table.refund_fold_ts(self.idle(), self.partition_numbers)
        if horizon is not None and (self._given is None or horizon > self._given):
            self._given = horizon
        return horizon

    # -- partitions coming in -------------------------------------------------------------

    def take(self, ledger: Ledger) -> bool:
        """A partition ledger installed in this process (assigned): if it may read a refund
        this table has dropped while it was not held here (one stamped at or after the oldest
        payment it holds, or the oldest its orders topic may still apply: a refund counts only
        for a payment at or before it), the table is emptied and read again from the orders
        topic's beginning (`rewind`). True if it was."""
        if ledger in self._kept_for:
            return False
        below = self.table.dropped_below
        horizon = ledger.horizon_ts(_ORDERS)
        oldest = min((order.ts for order in ledger.orders), default=horizon)
        reads_from = oldest if horizon is None or oldest is None else min(oldest, horizon)
        if below is None or (reads_from is not None and reads_from >= below):
            self._kept_for.add(ledger)
            return False
        log.info(
            "refund table: a partition taken here may read refunds dropped (stamped before %d); "
            "reading the orders topic again",
            below,
        )
        self.rewind()
        self._kept_for.add(ledger)
        return True

    def rewind(self) -> None:
        super().rewind()
        table = self.table
        self.table = RefundTable(
            table.dedupe_window_ms, table.future_tolerance_ms, table.refund_horizon_ms
        )
        self.table.dropped = table.dropped
        self._dropped_at = None

    # -- fed by MembershipReader ----------------------------------------------------------

    def _apply_values(self, partition: int, values: Sequence[bytes | None]) -> int:
        if not self.plain:
            return super()._apply_values(partition, values)
        table = self.table
        held = table.partition(partition)
        refunds = len(held.refunds)
        rejected, late = self._apply_plain(held, partition, values, self._given, "order_refunded")
        self.after_fold += late
        if len(held.refunds) != refunds:
            table.applied(held, "order_refunded")  # indexed anew
        return rejected

    def _ingest(self, partition: int, decoded: Event | Rejection | Rejected) -> object:
        table = self.table
        held = table.partition(partition)
        outcome = ingest_decoded(decoded, held, None)
        if outcome is not None and not isinstance(outcome, Rejected):
            kind = outcome.type
            if kind != "order_paid":
                table.applied(held, kind)
            if (
                kind == "order_refunded"
                and self._given is not None
                and outcome.ts < self._given
                and self.caught_up.is_set()  # not one read again (`rewind`)
            ):
                self.after_fold += 1
        return outcome

    def advance(self, partition: int, position: int, highwater: int | None = None) -> None:
        super().advance(partition, position, highwater)
        self._drop()

    def _drop(self) -> None:
        """Drop the refunds no held order can count for any more (once an hour of horizon)."""
        horizon = self.refund_fold_ts()
        if horizon is None:
            return
        held = self.held_ledgers()
        if held is None:  # an assignment's states are being restored: not known yet
            return
        ledgers = list(held)
        folded = [ledger.order_fold_ts for ledger in ledgers]
        if not ledgers or any(ts is None for ts in folded):
            return
        oldest = min([horizon, *(ts for ts in folded if ts is not None)])
        if self._dropped_at is not None and oldest < self._dropped_at + _DROP_EVERY_MS:
            return
        self._dropped_at = oldest
        held_ids = {order.order_id for ledger in ledgers for order in ledger.orders}
        dropped = self.table.dropped
        self.table.drop_below(oldest, keep=held_ids)
        # A ledger not held now misses what this drop took (`take`).
        self._kept_for = weakref.WeakSet(ledger for ledger in ledgers if ledger in self._kept_for)
        if self.table.dropped != dropped and len(ledgers) >= len(self._catch_up or {}):
            # The partitions' own copies of them (the empty key's partition holds them) go
            # now, not at their next fold (once a day of horizon): meanwhile a report counted
            # them as unmatched refunds (no payment held; their orders folded). Only in a
            # worker holding every orders partition: with several, another worker may still
            # hold an order of theirs unfolded, whose figure in a merged report reads the copy.
            changed = [ledger for ledger in ledgers if ledger.drop_refunds_the_source_dropped()]
            if changed:
                self.on_dropped(changed)

    def status(self) -> dict[str, Any]:
        return {
            "caught_up": self.caught_up.is_set(),
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "records": self.records,
            "rejected": self.rejected,
            # Counted by partition, not refund by refund (`RefundTable.refunds`): the bench
            # polls /status 10 times a second (issue 19, session 19).
            "refunds": sum(len(held.refunds) for held in self.table.partitions.values()),
            "dropped": self.table.dropped,
            "refund_fold_ts": self.refund_fold_ts(),
            "after_fold": self.after_fold,
            "rewinds": self.rewinds,
        }
