"""The refund table: every partition's refunds of the orders topic, for the order fold."""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence

from agents.core.ledger import Ledger, RefundFact
from schemas import TOPIC_BY_TYPE
from schemas.events import Event


class RefundPartition(Ledger):
    """One orders partition read as the partition ledger of that number reads it (the same
    dedupe window, expiry and duplicates, since `Ledger.apply` decides them), keeping only its
    refunds: an `order_paid` is taken as what the table needs of it, its id (remembered within
    the window, so a copy of it is a duplicate here as there) and its `ts` (the orders horizon,
    `refund_fold_ts`); no order fact is made (`Ledger.keeps_orders`: the table must not grow
    with orders, and it spent most of its time making and clearing them, issue 19)."""

    keeps_orders = False

    def drop_facts(self) -> None:
        """Drop what an event of another topic sent to the orders topic made here (a session,
        its presence): its id is kept, as the partition ledger keeps it, its facts are not
        the table's (`RefundTable.apply`)."""
        self.orders.clear()
        self.first_orders.clear()
        self.month_spend.clear()
        self.sessions.clear()
        self._ended_unfolded.clear()


#: The event types of the orders topic: any other applied there is dropped (`drop_facts`).
_ORDERS_TYPES = frozenset(kind for kind, topic in TOPIC_BY_TYPE.items() if topic == "live.orders")


class RefundTable:
    """The refunds of every partition of the orders topic (`Ledger.refunds_from`: a
    `RefundSource`), like the membership table's group events: a refund is keyed by no
    session (`order_refunded` has no `session_id`), so it is in another partition than the
    orders it refunds, and a partition's order fold reads it here.

    Its horizon (`refund_fold_ts`) is the oldest of its partitions' orders horizons (a
    partition that has brought no event yet is left out; one that falls idle holds the fold
    back at its last horizon): no refund stamped before it can still be applied anywhere.
    `drop_below` forgets the refunds that no order still held can count for.
    """

    def __init__(
        self,
        dedupe_window_ms: int | None,
        future_tolerance_ms: int | None = None,
        refund_horizon_ms: int | None = None,
    ) -> None:
        self.dedupe_window_ms = dedupe_window_ms
        self.future_tolerance_ms = future_tolerance_ms
        self.refund_horizon_ms = refund_horizon_ms
        self.partitions: dict[int, RefundPartition] = {}
        #: Refunds dropped (`drop_below`), and the `ts` below which they were.
        self.dropped = 0
        self.dropped_below: int | None = None
        self._index: dict[str, list[RefundFact]] | None = None
        #: Order ids a ledger reading this table folded, while a refund of theirs is held:
        #: a partition's copy of such a refund is decided, not unmatched (`decided`).
        self.folded_ids: set[str] = set()

    def partition(self, number: int) -> RefundPartition:
        found = self.partitions.get(number)
        if found is None:
            found = self.partitions[number] = RefundPartition(
                self.dedupe_window_ms, self.future_tolerance_ms, self.refund_horizon_ms
            )
        return found

    def apply(self, number: int, event: Event) -> bool:
        """One decoded record of orders partition `number`, in that partition's offset order."""
        held = self.partition(number)
        accepted = held.apply(event)
        if accepted:
            self.applied(held, event.type)
        return accepted

    def applied(self, held: RefundPartition, kind: str) -> None:
        """An event of type `kind` was applied to partition `held` (here or directly, with
        `partition(n).apply`): a refund is indexed anew, another topic's event's facts go."""
        if kind == "order_refunded":
            self._index = None
        elif kind not in _ORDERS_TYPES:
            held.drop_facts()

    def reject(self, number: int, reason: str) -> None:
        self.partition(number).reject(reason)

    def refunds_of(self, order_id: str) -> Sequence[RefundFact]:
        index = self._index
        if index is None:
            index = self._index = {}
            for held in self.partitions.values():
                for refund in held.refunds:
                    index.setdefault(refund.order_id, []).append(refund)
        return index.get(order_id, ())

    def note_folded(self, order_id: str) -> None:
        self.folded_ids.add(order_id)

    def decided(self, order_id: str) -> bool:
        """Whether an order of `order_id` was folded with this table's refunds of it."""
        return order_id in self.folded_ids

    def refund_fold_ts(
        self, quiet: Container[int] = (), partitions: Iterable[int] = ()
    ) -> int | None:
        """The oldest of the partitions' orders horizons, leaving out the partitions in
        `quiet` (read to their end with no record for a while: `WorkerRefundTable`) unless
        every partition is: then the newest (an idle partition does not hold the fold back).
        A partition of `partitions` (every one of the topic, read or not) with no event yet
        and not quiet holds it back (None): any refund may still come there."""
        horizons = {
            number: ts
            for number, ts in ((n, held.refund_fold_ts()) for n, held in self.partitions.items())
            if ts is not None
        }
        if any(number not in horizons and number not in quiet for number in partitions):
            return None
        if not horizons:
            return None
        active = [ts for number, ts in horizons.items() if number not in quiet]
        return min(active) if active else max(horizons.values())

    def drop_below(self, ts: int, keep: Container[str] = ()) -> None:
        """Forget the refunds stamped before `ts - refund horizon` but those of the order ids
        in `keep` (call with the oldest horizon an order fold reading this table has folded
        to, and the order ids still held unfolded: then no order a dropped refund can count
        for is still to fold, `Ledger._fold_orders`)."""
        horizon_ms = self.refund_horizon_ms
        if horizon_ms is None:
            return
        below = ts - horizon_ms
        for held in self.partitions.values():
            kept = [
                refund for refund in held.refunds if refund.ts >= below or refund.order_id in keep
            ]
            if len(kept) != len(held.refunds):
                self.dropped += len(held.refunds) - len(kept)
                held.refunds = kept
                self._index = None
        self.dropped_below = below if self.dropped_below is None else max(below, self.dropped_below)
        if self.folded_ids:
            self.folded_ids &= {refund.order_id for refund in self.refunds()}

    def refunds(self) -> Iterable[RefundFact]:
        for held in self.partitions.values():
            yield from held.refunds
