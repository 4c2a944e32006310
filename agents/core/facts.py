"""What every claim function reads (`ClaimFacts`, a ledger's shared views) and returns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agents.core.ledger import (
    Ledger,
    OrderFact,
    RefundFact,
    SessionFacts,
    SessionSummary,
    counted_refunds,
    order_cluster,
)
from agents.core.ledger import (
    order_key as order_key,
)
from agents.core.timeline import NEVER_MEMBER, Membership


@dataclass(slots=True)
class Measurement:
    """One claim's figure: the value, its sample size, the 95% interval and supporting counts.

    `clusters` is the number of independent units the interval resamples or sums over
    (sessions, or users) when the n cases are not independent; None when they are.
    """

    observed: float | None
    n: int
    interval: tuple[float, float] | None
    detail: dict[str, Any] = field(default_factory=dict)
    clusters: int | None = None


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


class ClaimFacts:
    """Views of a ledger that several claims share, built once per report."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.end_ts = ledger.max_ts
        self.started: dict[str, SessionFacts] = {
            sid: s for sid, s in sorted(ledger.sessions.items()) if s.started_ts is not None
        }
        #: Every paid order, in `order_key` order.
        self.orders: list[OrderFact] = sorted(ledger.orders, key=order_key)
        #: The refunds that count under the ledger's refund horizon (`counted_refunds`).
        self.refunds: list[RefundFact] = counted_refunds(
            ledger.orders, ledger.refunds, ledger.refund_horizon_ms
        )[0]
        self._session_orders: list[tuple[str, SessionFacts, OrderFact]] = [
            (sid, session, order)
            for sid, session in self.started.items()
            for order in sorted(
                session.horizon_orders() if ledger.fold_sessions else session.orders,
                key=order_key,
            )
        ]
        #: Started sessions summarized for good (`Ledger._summarize`), by session id: their
        #: orders are not among `session_orders`, their sums are in the summary.
        self._summaries: list[tuple[str, SessionSummary]] = [
            (sid, session.presence)
            for sid, session in self.started.items()
            if isinstance(session.presence, SessionSummary)
        ]
        self._memberships: dict[tuple[str, str], Membership] = {}
        self._first_joins: dict[str, list[tuple[str, int]]] = {}

    def session_orders(self) -> Iterator[tuple[str, SessionFacts, OrderFact]]:
        """Orders whose session id names a session that has a `session_started` (held, not
        summarized, and not after its session horizon), by session id, then in `order_key`
        order."""
        return iter(self._session_orders)

    def order_cluster(self, order: OrderFact) -> tuple[str, str]:
        """The order's first clustering for the order shares (`ledger.order_cluster`)."""
        return order_cluster(order, self.ledger.sessions, self.ledger.fold_sessions)

    def summaries(self) -> Iterator[tuple[str, SessionSummary]]:
        """The summarized started sessions, by session id."""
        return iter(self._summaries)

    def first_joins(self, sid: str) -> list[tuple[str, int]]:
        """`SessionFacts.first_joins` of a started session, computed once for every claim
        (`group_member_dwell`, `group_spend_multiple`: it sorts each viewer's presence)."""
        found = self._first_joins.get(sid)
        if found is None:
            found = self._first_joins[sid] = self.started[sid].first_joins()
        return found

    def membership(self, merchant_id: str, user_id: str) -> Membership:
        key = (merchant_id, user_id)
        found = self._memberships.get(key)
        if found is None:
            events = self.ledger.group_events.get(key)
            found = Membership(events) if events else NEVER_MEMBER
            self._memberships[key] = found
        return found
