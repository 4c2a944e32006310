"""The month-rows exchange between a worker's partition ledgers, in process (no broker): a
stream routed as the replayer routes it, each message read as `MonthRowExchange` reads it, and
partitions fed in chunks with their taken messages sent to their owner or to every partition
after each chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agents.core import Ledger
from agents.core.ledger import (
    FirstOrder,
    FirstsClosed,
    GroupFloor,
    MonthClosed,
    MonthRow,
    OrderUsers,
    OrderUsersClosed,
)
from schemas import Rejection, decode
from tests.agents.core.test_merge import partition_of
from tests.streams.test_membership import topic_and_key

#: A message of the month-rows topic that these tests exchange.
Message = (
    MonthRow | MonthClosed | FirstOrder | FirstsClosed | OrderUsers | OrderUsersClosed | GroupFloor
)
#: The messages read by their user's owner partition alone (the others go to every partition).
OWNED = (MonthRow, FirstOrder, OrderUsers)


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


def owner_of(message: MonthRow | FirstOrder | OrderUsers, partitions: int) -> int:
    """The partition that reads a message of one user: murmur2 of the user id (the month-rows
    topic keyed by user)."""
    return partition_of(message.user.encode(), partitions)


def deliver(ledger: Ledger, message: Message, partitions: int) -> None:
    """One message of the month-rows topic, read by `ledger`'s partition (`MonthRowExchange`)."""
    if isinstance(message, MonthRow):
        ledger.receive_month_row(message)
    elif isinstance(message, MonthClosed):
        ledger.receive_month_closed(message, partitions)
    elif isinstance(message, FirstOrder):
        ledger.receive_first_order(message)
    elif isinstance(message, FirstsClosed):
        ledger.receive_firsts_closed(message, partitions)
    elif isinstance(message, OrderUsers):
        ledger.receive_order_users(message)
    elif isinstance(message, OrderUsersClosed):
        ledger.receive_order_users_closed(message, partitions)
    else:
        assert isinstance(message, GroupFloor), message
        ledger.receive_group_floor(message, partitions)


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
                if isinstance(message, OWNED):
                    sent += 1
                    deliver(ledgers[owner_of(message, len(ledgers))], message, len(ledgers))
                else:
                    for each in ledgers:
                        deliver(each, message, len(ledgers))
    return sent
