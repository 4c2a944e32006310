"""The month-rows exchange between a worker's partition ledgers, in process (no broker): a
stream routed as the replayer routes it, and partitions fed in chunks with their taken
messages sent after each chunk to their user's owner (`monthrows.owner_of`) or to every
partition, each read as the worker reads it (`monthrows.deliver`); and a sender that holds
what the worker's exchange takes (`HeldSender`), with a worker's state fed through it
(`fed_through_held_exchange`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agents.core import Ledger
from agents.core.ledger import BoardRuns
from schemas import Rejection, decode
from streams.runtime.monthrows import (
    Message,
    MonthRowExchange,
    Row,
    board_owner,
    deliver,
    owner_of,
)
from tests.streams.test_membership import topic_and_key


def routed(lines: Iterable[str]) -> tuple[tuple[Any, ...], ...]:
    """The lines as the replayer routes them: (contract topic, key, decoded)."""
    out = []
    for line in lines:
        raw = line.encode()
        topic, key = topic_and_key(raw)
        out.append((topic, key, decode(raw)))
    return tuple(out)


def apply(ledger: Ledger, events: Iterable[tuple[Any, ...]]) -> None:
    """Routed events into `ledger` (a rejection counted as one)."""
    for _topic, _key, event in events:
        if isinstance(event, Rejection):
            ledger.reject(event.reason)
        else:
            ledger.apply(event)


def exchanged(
    ledgers: Sequence[Ledger],
    parts: Sequence[Sequence[tuple[Any, ...]]],
    take: Callable[[Ledger, int], Sequence[Message]] | None,
    copies: int = 1,
    chunk: int = 1000,
) -> int:
    """Each partition's routed events fed to its ledger in chunks of `chunk`; with `take`, after
    each chunk what `take(ledger, partition)` gives goes at once to its user's owner (a row,
    a first order) or to every partition (an announcement), each message `copies` times (2: a
    redelivery). How many messages went to an owner."""
    sent = 0
    for begin in range(0, max(len(part) for part in parts), chunk):
        for source, (ledger, part) in enumerate(zip(ledgers, parts, strict=True)):
            apply(ledger, part[begin : begin + chunk])
            if take is None:
                continue
            for message in list(take(ledger, source)) * copies:
                if isinstance(message, Row):
                    sent += 1
                    owner = (
                        board_owner(message, len(ledgers))
                        if isinstance(message, BoardRuns)
                        else owner_of(message.user, len(ledgers))
                    )
                    deliver(ledgers[owner], message, len(ledgers))
                else:
                    for each in ledgers:
                        deliver(each, message, len(ledgers))
    return sent


class HeldSender:
    """The month-rows exchange's sender (`MonthRowExchange(sender=...)`, as it reads a
    `monthrows.MonthRowSender`) over `partitions` partitions that sends nothing: every message
    taken is held in `taken`, so nothing reaches an owner until the test delivers it."""

    sent_rows = sent_first_orders = sent_announcements = 0
    sent_period_rows = sent_order_users = sent_board_runs = 0

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.taken: list[Any] = []

    def submit(self, messages: list[Any]) -> None:
        self.taken += messages


def fed_through_held_exchange(
    state: Any, records: Sequence[Any], partitions: int
) -> tuple[MonthRowExchange, HeldSender]:
    """`state` (a `LiveState` of `partitions` partitions) given a month-rows exchange whose
    sender holds every take, then fed `records` (routed `RawRecord`s) as a worker's batches:
    500 of each partition's at a time, in turn, each batch followed by the exchange's take.
    The exchange and its sender."""
    sender = HeldSender(partitions)
    exchange = MonthRowExchange(state, "rows", sender)  # type: ignore[arg-type]
    state.month_rows = exchange
    by_partition = [[r for r in records if r.partition == p] for p in range(partitions)]
    for start in range(0, max(len(part) for part in by_partition), 500):
        for part in by_partition:
            state.apply_batch(part[start : start + 500])
            exchange.take()
    return exchange, sender
