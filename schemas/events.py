"""Event models of the wire contract: one pydantic model per `type`, a discriminated union."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter

# Ids are non-empty strings; event ids are also bounded (contract: 1-128 chars).
Id = Annotated[StrictStr, Field(min_length=1)]
EventId = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Millis = Annotated[StrictInt, Field(ge=0)]
Cents = Annotated[StrictInt, Field(ge=0)]

HostKind = Literal["merchant", "buyer", "creator"]
ViewSource = Literal["feed", "search", "follow", "short_video", "group", "note", "other"]
InteractionKind = Literal["comment", "like", "share", "follow", "gift", "question", "reply"]
RefundReason = Literal["size", "quality", "changed_mind", "late_delivery", "other"]


class _Event(BaseModel):
    """Common fields of every event; unknown extra fields are ignored (forward compatibility)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    event_id: EventId
    ts: Millis


class SessionStarted(_Event):
    type: Literal["session_started"]
    session_id: Id
    room_id: Id
    merchant_id: Id
    host_kind: HostKind | None = None


class SessionEnded(_Event):
    type: Literal["session_ended"]
    session_id: Id


class ViewerJoined(_Event):
    type: Literal["viewer_joined"]
    session_id: Id
    user_id: Id
    source: ViewSource | None = None


class ViewerLeft(_Event):
    type: Literal["viewer_left"]
    session_id: Id
    user_id: Id


class Interaction(_Event):
    type: Literal["interaction"]
    session_id: Id
    user_id: Id
    kind: InteractionKind
    reply_to: Id | None = None


class ProductClicked(_Event):
    """A viewer opened a product card (livepulse's extension of the contract, for the funnel).

    Not a viewer interaction: it takes no part in `interaction_uplift` nor in who counts as a
    session's viewer (claims.md names `viewer_joined`, interactions and orders only).
    """

    type: Literal["product_clicked"]
    session_id: Id
    user_id: Id
    sku_id: Id


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    sku_id: Id
    category: StrictStr
    unit_price_cents: Cents
    quantity: Annotated[StrictInt, Field(ge=1)]


class OrderPaid(_Event):
    type: Literal["order_paid"]
    order_id: Id
    session_id: Id | None = None
    merchant_id: Id
    user_id: Id
    items: Annotated[list[OrderItem], Field(min_length=1)]
    amount_cents: Cents


class OrderRefunded(_Event):
    type: Literal["order_refunded"]
    order_id: Id
    amount_cents: Cents
    reason: RefundReason | None = None


class GroupJoined(_Event):
    type: Literal["group_joined"]
    merchant_id: Id
    group_id: Id
    user_id: Id


class GroupLeft(_Event):
    type: Literal["group_left"]
    merchant_id: Id
    group_id: Id
    user_id: Id


Event = Annotated[
    SessionStarted
    | SessionEnded
    | ViewerJoined
    | ViewerLeft
    | Interaction
    | ProductClicked
    | OrderPaid
    | OrderRefunded
    | GroupJoined
    | GroupLeft,
    Field(discriminator="type"),
]

event_adapter: Final[TypeAdapter[Event]] = TypeAdapter(Event)

TOPIC_BY_TYPE: Final[dict[str, str]] = {
    "session_started": "live.sessions",
    "session_ended": "live.sessions",
    "viewer_joined": "live.views",
    "viewer_left": "live.views",
    "interaction": "live.interactions",
    "product_clicked": "live.interactions",
    "order_paid": "live.orders",
    "order_refunded": "live.orders",
    "group_joined": "live.groups",
    "group_left": "live.groups",
}
EVENT_TYPES: Final[tuple[str, ...]] = tuple(TOPIC_BY_TYPE)


def record_key(obj: dict[str, object]) -> str:
    """The contract's record key of a decoded JSON object (empty for an order with no session)."""
    if obj.get("type") in ("group_joined", "group_left"):
        key = obj.get("merchant_id")
    else:
        key = obj.get("session_id")
    return key if isinstance(key, str) else ""
