"""The decoder accepts exactly the contract and names the reason for everything else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import MAX_RECORD_BYTES, OrderPaid, Rejection, SessionStarted, decode, event_adapter

VALID: dict[str, dict[str, Any]] = {
    "session_started": {"session_id": "s-1", "room_id": "r-1", "merchant_id": "m-1"},
    "session_ended": {"session_id": "s-1"},
    "viewer_joined": {"session_id": "s-1", "user_id": "u-1", "source": "group"},
    "viewer_left": {"session_id": "s-1", "user_id": "u-1"},
    "interaction": {"session_id": "s-1", "user_id": "u-1", "kind": "reply", "reply_to": "e-9"},
    "product_clicked": {"session_id": "s-1", "user_id": "u-1", "sku_id": "k-1"},
    "order_paid": {
        "order_id": "o-1",
        "session_id": "s-1",
        "merchant_id": "m-1",
        "user_id": "u-1",
        "items": [{"sku_id": "k", "category": "apparel", "unit_price_cents": 0, "quantity": 1}],
        "amount_cents": 0,
    },
    "order_refunded": {"order_id": "o-1", "amount_cents": 100, "reason": "size"},
    "group_joined": {"merchant_id": "m-1", "group_id": "g-1", "user_id": "u-1"},
    "group_left": {"merchant_id": "m-1", "group_id": "g-1", "user_id": "u-1"},
}


def record(type_: str, **override: Any) -> bytes:
    obj: dict[str, Any] = {"event_id": "e-1", "type": type_, "ts": 1721800800000}
    obj.update(VALID[type_])
    obj.update(override)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


@pytest.mark.parametrize("type_", sorted(VALID))
def test_every_contract_type_decodes(type_: str) -> None:
    event = decode(record(type_))
    assert not isinstance(event, Rejection), event
    assert event.type == type_


def test_contract_example_and_extras_and_optional_nulls() -> None:
    line = (
        b'{"event_id":"e-000004","type":"order_paid","ts":1721801400000,"order_id":"o-9",'
        b'"session_id":"s-1","merchant_id":"m-1","user_id":"u-42","items":[{"sku_id":"k-3",'
        b'"category":"apparel","unit_price_cents":59900,"quantity":1}],"amount_cents":59900,'
        b'"future_field":{"x":1}}'
    )
    event = decode(line)
    assert isinstance(event, OrderPaid) and event.items[0].unit_price_cents == 59900
    no_session = decode(record("order_paid", session_id=None))
    assert isinstance(no_session, OrderPaid) and no_session.session_id is None
    absent = decode(record("order_paid", session_id=...))
    assert isinstance(absent, OrderPaid) and absent.session_id is None
    started = decode(record("session_started", host_kind=None))
    assert isinstance(started, SessionStarted) and started.host_kind is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b"not json", "not_json"),
        (b'{"event_id": "e"', "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (record("session_ended", type="dance"), "unknown_type"),
        (record("session_ended", type=...), "missing_field"),
        (record("session_ended", session_id=...), "missing_field"),
        (record("session_ended", event_id=...), "missing_field"),
        (record("session_ended", ts="1721800800000"), "wrong_type"),
        (record("session_ended", ts=1.5), "wrong_type"),
        (record("session_ended", ts=True), "wrong_type"),
        (record("session_ended", session_id=7), "wrong_type"),
        (record("order_paid", items={"sku_id": "k"}), "wrong_type"),
        (record("session_ended", ts=-1), "invalid_value"),
        (record("session_ended", session_id=""), "invalid_value"),
        (record("session_ended", event_id="x" * 129), "invalid_value"),
        (record("order_paid", amount_cents=-5), "invalid_value"),
        (record("order_paid", items=[]), "invalid_value"),
        (
            record(
                "order_paid",
                items=[{"sku_id": "k", "category": "c", "unit_price_cents": 1, "quantity": 0}],
            ),
            "invalid_value",
        ),
        (record("interaction", kind="dance"), "invalid_value"),
        (b" " * (MAX_RECORD_BYTES + 1), "too_large"),
    ],
)
def test_bad_records_are_rejected_with_their_reason(raw: bytes, reason: str) -> None:
    result = decode(raw)
    assert isinstance(result, Rejection), result
    assert result.reason == reason
    assert result.detail


def test_json_schema_lists_every_type() -> None:
    schema = json.dumps(event_adapter.json_schema())
    for type_ in VALID:
        assert f'"{type_}"' in schema


def test_product_clicked_is_livepulse_extension_routed_with_interactions() -> None:
    from schemas import TOPIC_BY_TYPE, record_key

    assert TOPIC_BY_TYPE["product_clicked"] == "live.interactions"
    assert record_key({"type": "product_clicked", "session_id": "s-7"}) == "s-7"
    missing = decode(record("product_clicked", sku_id=...))
    assert isinstance(missing, Rejection) and missing.reason == "missing_field"
