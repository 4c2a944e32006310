"""What every claim function reads (`ClaimFacts`, a ledger's shared views) and returns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
        self._member_joins: dict[str, list[tuple[str, int, bool]]] = {}
        self._member_orders: list[bool] | None = None

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

    def member_joins(self, sid: str) -> list[tuple[str, int, bool]]:
        """(user, ts of their first join, member of the session's merchant's group then) for
        each user of `first_joins(sid)`: the one membership lookup a (session, viewer) pair
        gets, read by `group_member_dwell` (member at the first join) and `group_spend_multiple`
        (member at the month's first join, which is some session's first join), and by a
        period freeze for the session's summary later (`periods.PeriodGate.note_members`;
        issue 19)."""
        found = self._member_joins.get(sid)
        if found is None:
            merchant = self.started[sid].merchant_id
            assert merchant is not None
            # `membership` written out, and no `member_at` for a user with no group event
            # (NEVER_MEMBER: False at any `ts`): a day's freeze looks up every first join of
            # its sessions, ~600 a partition here (issue 19, session 19).
            memberships, events_of = self._memberships, self.ledger.group_events.get
            found = self._member_joins[sid] = []
            for user, first in self.first_joins(sid):
                key = (merchant, user)
                membership = memberships.get(key)
                if membership is None:
                    events = events_of(key)
                    membership = Membership(events) if events else NEVER_MEMBER
                    memberships[key] = membership
                found.append(
                    (user, first, membership is not NEVER_MEMBER and membership.member_at(first))
                )
        return found

    def looked_up(self) -> Mapping[str, list[tuple[str, int, bool]]]:
        """The sessions `member_joins` was read for, with what it found."""
        return self._member_joins

    def member_orders(self) -> list[bool]:
        """For each of `session_orders()`, in its order: whether the buyer was a member of
        the order's merchant's group at the order's `ts` (`group_order_share`), looked up once
        (a period freeze keeps them for the sessions' summaries, as `member_joins`)."""
        if self._member_orders is None:
            membership = self.membership
            self._member_orders = [
                membership(order.merchant_id, order.user_id).member_at(order.ts)
                for _sid, _session, order in self._session_orders
            ]
        return self._member_orders

    def looked_up_orders(self) -> list[bool] | None:
        """`member_orders()` if it was read, else None."""
        return self._member_orders

    def membership(self, merchant_id: str, user_id: str) -> Membership:
        key = (merchant_id, user_id)
        found = self._memberships.get(key)
        if found is None:
            events = self.ledger.group_events.get(key)
            found = Membership(events) if events else NEVER_MEMBER
            self._memberships[key] = found
        return found
