"""A table's record into a ledger from its plain decode (`schemas.plain.decode_plain`): decided
as the ledger decides an event, keeping only the facts the worker's tables read (issue 19).

The worker's refund and membership tables read every record of the orders and groups topics
through a ledger a partition, for its dedupe, expiry and horizon decisions (the partition
ledger of that number makes the same ones) and for its refunds or group events; nothing else
of the ledger is read. `apply_plain` gives `Ledger.apply` a `Stamp` of the record (its type,
event id and `ts`: all `apply` reads before its facts, and none of the event models, so no
fact is made of it) and then makes the refund or group event fact `apply` makes of those
events, from the same fields: no event object is built, and an `order_paid`'s items are
validated but not made into objects.
"""

from __future__ import annotations

from typing import Any

from agents.core.ledger import Ledger, RefundFact


class Stamp:
    """What `Ledger.apply` reads of an event to decide it: its `type`, `event_id` and `ts`.
    Of no event model's type, so `apply` decides it (expired, duplicate, or applied and
    counted, the topic's horizon moved) and makes no fact."""

    __slots__ = ("type", "event_id", "ts")

    def __init__(self, kind: str, event_id: str, ts: int) -> None:
        self.type = kind
        self.event_id = event_id
        self.ts = ts


def apply_plain(ledger: Ledger, plain: dict[str, Any]) -> bool:
    """Apply one valid record's plain decode to `ledger` as `ledger.apply` applies its event,
    but of the facts only a refund (`ledger.refunds`) and a group event (`ledger.group_events`,
    with the sequence number `apply` gives it): True if applied, False if refused (duplicate
    or expired, `ledger.refused_as` says which)."""
    kind = plain["type"]
    ts = plain["ts"]
    if not ledger.apply(Stamp(kind, plain["event_id"], ts)):  # type: ignore[arg-type]
        return False
    if kind == "order_refunded":
        ledger.refunds.append(
            RefundFact(ts, plain["order_id"], plain["amount_cents"], plain["reason"])
        )
        ledger._refund_index = None
    elif kind == "group_joined" or kind == "group_left":
        ledger.group_events.setdefault((plain["merchant_id"], plain["user_id"]), []).append(
            (ts, ledger._seq, plain["group_id"], kind == "group_joined")
        )
    return True
