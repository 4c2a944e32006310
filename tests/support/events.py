"""Hand-built contract events for tests: a list that numbers their ids as they are added."""

from __future__ import annotations

from typing import Any


class EventList(list[dict[str, Any]]):
    """Events as dicts, `event_id` "e<n>" in the order added."""

    def add(self, event_type: str, ts: int, **fields: Any) -> None:
        self.append({"event_id": f"e{len(self)}", "type": event_type, "ts": ts, **fields})

    def order(self, ts: int, sid: str, user: str, cents: int, *, merchant_id: str = "m-1") -> None:
        """An order of one unit of sku k-1 (food) at `cents`, order id "o<n>"."""
        item = {"sku_id": "k-1", "category": "food", "unit_price_cents": cents, "quantity": 1}
        ids = {"order_id": f"o{len(self)}", "session_id": sid, "merchant_id": merchant_id}
        self.add("order_paid", ts, **ids, user_id=user, items=[item], amount_cents=cents)
