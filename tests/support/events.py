"""Hand-built contract events for tests: a list that numbers their ids as they are added, the
fields of an order, a stream jittered out of order."""

from __future__ import annotations

import random
from typing import Any

from schemas import Rejection


class EventList(list[dict[str, Any]]):
    """Events as dicts, `event_id` "e<n>" in the order added."""

    def add(self, event_type: str, ts: int, **fields: Any) -> None:
        self.append({"event_id": f"e{len(self)}", "type": event_type, "ts": ts, **fields})

    def order(self, ts: int, sid: str, user: str, cents: int, *, merchant_id: str = "m-1") -> None:
        """An order of one unit of sku k-1 (food) at `cents`, order id "o<n>"."""
        item = {"sku_id": "k-1", "category": "food", "unit_price_cents": cents, "quantity": 1}
        ids = {"order_id": f"o{len(self)}", "session_id": sid, "merchant_id": merchant_id}
        self.add("order_paid", ts, **ids, user_id=user, items=[item], amount_cents=cents)


def apparel_order(
    order_id: str, session_id: str | None, user: str, cents: int = 9900
) -> dict[str, Any]:
    """The fields of an `order_paid` of one unit of sku k1 (apparel) at `cents`, merchant m1."""
    item = {"sku_id": "k1", "quantity": 1, "unit_price_cents": cents, "category": "apparel"}
    return {
        "order_id": order_id,
        "session_id": session_id,
        "merchant_id": "m1",
        "user_id": user,
        "amount_cents": cents,
        "items": [item],
    }


def jittered(events: list[Any], spread_ms: int, seed: int = 17) -> list[Any]:
    """`events` in the order of their time plus a seeded delay under `spread_ms` (a rejection
    counts as time 0): a stream that arrives out of order by up to `spread_ms`."""
    rng = random.Random(seed)
    return sorted(
        events,
        key=lambda e: (e.ts if not isinstance(e, Rejection) else 0) + rng.randrange(spread_ms),
    )
