"""The month-rows exchange between a worker's partition ledgers, in process (no broker): a
stream routed as the replayer routes it, and partitions fed in chunks with their taken
messages sent after each chunk to their user's owner (`monthrows.owner_of`) or to every
partition, each read as the worker reads it (`monthrows.deliver`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agents.core import Ledger
from agents.core.ledger import BoardRuns
from schemas import Rejection, decode
from streams.runtime.monthrows import Message, Row, board_owner, deliver, owner_of
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
