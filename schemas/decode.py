"""Bytes -> event, or a rejection with a bounded reason code and a precise message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal, get_args

from pydantic import Field, Json, TypeAdapter, ValidationError

from schemas.events import Event, event_adapter

# A live-room event is a few hundred bytes; anything this large is a broken producer.
MAX_RECORD_BYTES: Final[int] = 1 << 20

RejectReason = Literal[
    "not_utf8",
    "not_json",
    "not_object",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "too_large",
]
REJECT_REASONS: Final[tuple[RejectReason, ...]] = get_args(RejectReason)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record is not a contract event: `reason` is a bounded code, `detail` is for humans."""

    reason: RejectReason
    detail: str


_VALUE_ERRORS: Final[frozenset[str]] = frozenset(
    {
        "greater_than_equal",
        "greater_than",
        "less_than_equal",
        "string_too_short",
        "string_too_long",
        "too_short",
        "too_long",
        "literal_error",
        "enum",
    }
)


def _classify(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    kind = first["type"]
    loc = ".".join(str(p) for p in first["loc"]) or "<record>"
    msg = f"{loc}: {first['msg']}"
    if kind == "json_invalid":
        if "UTF-8" in first["msg"] or "utf-8" in first["msg"]:
            return Rejection("not_utf8", msg)
        return Rejection("not_json", msg)
    if kind in ("model_attributes_type", "model_type", "dict_type") and not first["loc"]:
        return Rejection("not_object", "record is not a JSON object")
    if kind == "union_tag_invalid":
        return Rejection("unknown_type", msg)
    if kind in ("union_tag_not_found", "missing"):
        return Rejection("missing_field", msg)
    # A literal (enum) error on a field is a value outside the contract's set; on the tag it
    # was caught above. Constraint errors are value-rule violations; the rest are type errors.
    if kind in _VALUE_ERRORS:
        return Rejection("invalid_value", msg)
    return Rejection("wrong_type", msg)


#: The adapter's pydantic-core validator, called directly: `TypeAdapter.validate_json` is a
#: Python wrapper (argument checks, a property lookup) around it, paid once per record.
_validate_json = event_adapter.validator.validate_json


def decode(raw: bytes) -> Event | Rejection:
    """Decode one Kafka record value into a contract event, or say precisely why not."""
    if len(raw) > MAX_RECORD_BYTES:
        return Rejection("too_large", f"record is {len(raw)} bytes, limit {MAX_RECORD_BYTES}")
    try:
        return _validate_json(raw)  # type: ignore[no-any-return]
    except ValidationError as exc:
        rejection = _classify(exc)
        if rejection.reason == "not_json":
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as uexc:
                return Rejection("not_utf8", f"not UTF-8 at byte {uexc.start}")
        return rejection


def decode_text(line: str) -> Event | Rejection:
    """Decode one fixture line (JSON Lines) the same way as a record value."""
    return decode(line.encode("utf-8", errors="surrogateescape"))


#: A fetch's values in one validator call (issue 19): each value is parsed on its own as the
#: JSON of one event, or, if it is not one, comes back as its bytes (the union's second
#: choice, tried only when the first fails). Each value is parsed on its own because joining
#: them into one JSON array would let where a record ends depend on its neighbours (`{..},{..`
#: and `}` join into two good events).
_FetchValue = Annotated[Json[Event] | bytes, Field(union_mode="left_to_right")]
_validate_fetch = TypeAdapter(list[_FetchValue]).validator.validate_python


#: Values per validator call. On the shared test machine no clear gain over a call per value
#: was measured (0.72x - 1.02x of its CPU in slices of 100, about 1x in one call of 500:
#: bench/RESULTS.md, Session 9); smaller slices keep a call's list small.
_SLICE: Final[int] = 100


def decode_many(values: Sequence[bytes]) -> list[Event | Rejection]:
    """Decode a fetch's record values: the same events and rejections, in order, as `decode`
    on each value (a value that is not an event is decoded again on its own, for its reason)."""
    if not values:
        return []
    if max(map(len, values)) > MAX_RECORD_BYTES:
        return [decode(raw) for raw in values]
    if len(values) <= _SLICE:
        decoded: list[Event | Rejection | bytes] = _validate_fetch(values)
    else:
        decoded = []
        for start in range(0, len(values), _SLICE):
            decoded += _validate_fetch(values[start : start + _SLICE])
    for i, item in enumerate(decoded):
        if type(item) is bytes:
            decoded[i] = decode(values[i])
    return decoded  # type: ignore[return-value]  # no bytes left
