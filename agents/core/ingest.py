"""One record into the state: decode -> apply -> observe -> reject, written once for the worker,
the offline analyzer and the benchmark (no transport: the caller dead-letters a rejection)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from agents.core.ledger import Ledger
from agents.core.operator import OperatorBoard
from schemas import Event, Rejection, decode, decode_many

log = logging.getLogger(__name__)

#: The reason given to a record whose event made the core raise (a bug, not bad input).
PROCESSING_ERROR: Final[str] = "processing_error"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record counted as rejected: `reason` is a bounded code (the decoder's, `not_json` for a
    null value, or `PROCESSING_ERROR`), `detail` is for humans."""

    reason: str
    detail: str


_NULL_VALUE: Final[Rejected] = Rejected("not_json", "record has a null value")


def ingest(
    value: bytes | None, ledger: Ledger, board: OperatorBoard | None
) -> Event | Rejected | None:
    """Take one record's value into `ledger` and, if the ledger counts it, into `board`.

    Returns the event when it was counted, None when the ledger refused it (`ledger.refused_as`
    says why: its `event_id` was seen before, a duplicate, or it is older than its topic's
    dedupe window, expired), or `Rejected` when it is not a contract event or the
    core raised on it (counted as rejected; the caller dead-letters it). Never raises for a
    record: it runs once per record on the worker's hot path.
    """
    return ingest_decoded(_NULL_VALUE if value is None else decode(value), ledger, board)


def decode_values(values: Sequence[bytes | None]) -> list[Event | Rejection | Rejected]:
    """Decode a fetch's record values at once (`schemas.decode_many`: one validator call for
    the valid ones), for `ingest_decoded` one by one: the same as `ingest` on each value."""
    if None not in values:
        return decode_many(values)  # type: ignore[arg-type, return-value]  # no None in it
    present = [value for value in values if value is not None]
    decoded = iter(decode_many(present))
    return [_NULL_VALUE if value is None else next(decoded) for value in values]


def ingest_decoded(
    decoded: Event | Rejection | Rejected, ledger: Ledger, board: OperatorBoard | None
) -> Event | Rejected | None:
    """`ingest` of a value already decoded (by `decode_values`, `schemas.decode`)."""
    # By the class's identity (neither `Rejected` nor `Rejection` is subclassed: both are
    # frozen dataclasses of this package): every event took two `isinstance` misses.
    if type(decoded) is Rejected:
        rejected = decoded
    elif type(decoded) is Rejection:
        rejected = Rejected(decoded.reason, decoded.detail)
    else:
        event: Event = decoded  # type: ignore[assignment]  # neither class: an event
        try:
            if ledger.apply(event):
                if board is not None:
                    board.observe(event, ledger)
                    # Sessions folded, summarized or retired: the board's share of them.
                    if ledger.folded_ids or ledger.retired_ids:
                        board.take_folded(ledger)
                return event
            return None
        except Exception as exc:  # a bug in the core must not stop the stream
            log.exception("the core failed on a %s event", event.type)
            rejected = Rejected(PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
    ledger.reject(rejected.reason)
    return rejected
