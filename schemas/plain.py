"""The contract's events as plain dicts: the same validation as `decode`, no model objects.

For the worker's tables (`streams.runtime.membership.ReadTable`), which read every record of
a topic for an id, a `ts` and a few fields, and spent more of a record building its
`OrderPaid` and `OrderItem` objects than deciding it (issue 19). The validator is derived
from the contract's own (`schemas.events.event_adapter`'s core schema), each model turned
into a typed dict of the same fields, each field's schema, constraints and strictness kept
as they are, its default filled in when absent (a model's field with a default is not
required), extra fields ignored as the models ignore them: so a value is valid here exactly
when `decode` makes an event of it, and the dict holds that event's fields (a test compares
both on the fixtures' junk, the contract's noise and the decoder's fuzz). A refused value has
no reason here: the tables only count it (`Ledger.reject` keeps no reason; the partition
ledger that reads the same record dead-letters it with `decode`'s), so it is not decoded again.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import SchemaValidator

from schemas.decode import MAX_RECORD_BYTES
from schemas.events import event_adapter


def _plain(schema: Any) -> Any:
    """`schema` with every model schema in it made a typed dict of the same fields."""
    if isinstance(schema, list):
        return [_plain(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "model":
        inner = schema["schema"]
        if inner.get("type") != "model-fields" or inner.get("computed_fields"):
            raise TypeError(f"no plain form for {schema.get('cls')!r}")
        fields = {
            name: {
                "type": "typed-dict-field",
                "schema": _plain(field["schema"]),
                "required": field["schema"]["type"] != "default",
            }
            for name, field in inner["fields"].items()
        }
        return {"type": "typed-dict", "fields": fields, "config": schema.get("config", {})}
    return {key: _plain(value) for key, value in schema.items() if key != "ref"}


#: The contract's union of events, each a typed dict: `validate_json` gives a dict or raises.
_validate_plain = SchemaValidator(_plain(event_adapter.core_schema)).validate_json


def decode_plain(raw: bytes) -> dict[str, Any] | None:
    """One record value as the dict of its event's fields, or None where `decode` refuses it
    (ask `decode` for the reason)."""
    if len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        return _validate_plain(raw)  # type: ignore[no-any-return]
    except ValidationError:
        return None


__all__: Final = ["decode_plain"]
