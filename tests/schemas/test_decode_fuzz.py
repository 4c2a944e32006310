"""Property-based fuzz of the decoder: thousands of mutations of the fixtures' valid events.

The decoder must never raise, and must agree with an independent reading of the contract
written here from shared/event-contract.md (not from schemas/): a record is accepted exactly
when that reading says it is valid, an accepted event re-validates and obeys the value
rules, and a rejection names one of the bounded reasons (the expected one where a mutation
determines it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import MAX_RECORD_BYTES, Rejection, decode, decode_many, event_adapter
from schemas.decode import REJECT_REASONS
from schemas.plain import decode_plain

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# --- the contract, read independently --------------------------------------------------------

HOST_KINDS = {"merchant", "buyer", "creator"}
SOURCES = {"feed", "search", "follow", "short_video", "group", "note", "other"}
KINDS = {"comment", "like", "share", "follow", "gift", "question", "reply"}
REASONS = {"size", "quality", "changed_mind", "late_delivery", "other"}

# type -> {field: rule}; rules: "id", "id?" (absent/null or an id), "cents", "items",
# or a set of allowed strings (with "?" in the set: optional).
FIELDS: dict[str, dict[str, Any]] = {
    "session_started": {
        "session_id": "id",
        "room_id": "id",
        "merchant_id": "id",
        "host_kind": HOST_KINDS | {"?"},
    },
    "session_ended": {"session_id": "id"},
    "viewer_joined": {"session_id": "id", "user_id": "id", "source": SOURCES | {"?"}},
    "viewer_left": {"session_id": "id", "user_id": "id"},
    "interaction": {"session_id": "id", "user_id": "id", "kind": KINDS, "reply_to": "id?"},
    # livepulse's own extension (schemas/events.py says so): routed with interactions.
    "product_clicked": {"session_id": "id", "user_id": "id", "sku_id": "id"},
    "order_paid": {
        "order_id": "id",
        "session_id": "id?",
        "merchant_id": "id",
        "user_id": "id",
        "items": "items",
        "amount_cents": "cents",
    },
    "order_refunded": {"order_id": "id", "amount_cents": "cents", "reason": REASONS | {"?"}},
    "group_joined": {"merchant_id": "id", "group_id": "id", "user_id": "id"},
    "group_left": {"merchant_id": "id", "group_id": "id", "user_id": "id"},
}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 1


def item_ok(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and is_id(item.get("sku_id"))
        and isinstance(item.get("category"), str)
        and is_int(item.get("unit_price_cents"))
        and item["unit_price_cents"] >= 0
        and is_int(item.get("quantity"))
        and item["quantity"] >= 1
    )


def field_ok(obj: dict[str, Any], name: str, rule: Any) -> bool:
    value = obj.get(name)
    if rule == "id":
        return is_id(value)
    if rule == "id?":
        return value is None or is_id(value)
    if rule == "cents":
        return is_int(value) and value >= 0
    if rule == "items":
        return isinstance(value, list) and len(value) >= 1 and all(map(item_ok, value))
    assert isinstance(rule, set)
    if value is None:
        return "?" in rule
    return isinstance(value, str) and value in rule - {"?"}


def contract_valid(raw: bytes) -> bool:
    """The contract's verdict on one record value, from shared/event-contract.md alone."""
    if len(raw) > MAX_RECORD_BYTES:  # livepulse's documented record limit
        return False
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        return False
    if not isinstance(obj, dict):
        return False
    event_id, type_, ts = obj.get("event_id"), obj.get("type"), obj.get("ts")
    if not (isinstance(event_id, str) and 1 <= len(event_id) <= 128):
        return False
    if not (isinstance(type_, str) and type_ in FIELDS) or not (is_int(ts) and ts >= 0):
        return False
    return all(field_ok(obj, name, rule) for name, rule in FIELDS[type_].items())


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- mutations of valid events ---------------------------------------------------------------


def _valid_objects() -> list[dict[str, Any]]:
    """Up to 25 valid events of each type from the fixtures (every type the fixtures have)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for name in ("xhs", "impulse"):
        for line in (FIXTURES / f"{name}.jsonl").read_bytes().splitlines():
            if isinstance(decode(line), Rejection):
                continue
            obj = json.loads(line)
            bucket = by_type.setdefault(obj["type"], [])
            if len(bucket) < 25:
                bucket.append(obj)
    return [obj for bucket in by_type.values() for obj in bucket]


VALID = _valid_objects()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "x" * 129, "x" * 100_000, "é" * 128, "\u0000", "\ud7ff"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON value (dict keys and list indexes)."""
    out: list[tuple[Any, ...]] = []
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> Any:
    copy = json.loads(json.dumps(obj))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


@st.composite
def mutated_objects(draw: st.DrawFn) -> Any:
    """A valid event with one to three structural mutations."""
    obj: Any = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(obj)
        kind = draw(
            st.sampled_from(
                ["drop", "null", "retype", "negate", "huge", "nest", "wrap", "type", "extra"]
            )
        )
        if kind == "wrap":
            obj = draw(st.sampled_from([[obj], {"event": obj}, json.dumps(obj)]))
            continue
        if not paths or not isinstance(obj, dict):
            continue
        path = draw(st.sampled_from(paths))
        if kind == "drop":
            obj = _set(obj, path, None, delete=True)
        elif kind == "null":
            obj = _set(obj, path, None)
        elif kind == "retype":
            obj = _set(obj, path, draw(values))
        elif kind == "negate":
            number = draw(st.integers(min_value=-(2**63), max_value=-1))
            obj = _set(obj, path, number)
        elif kind == "huge":
            obj = _set(obj, path, draw(st.sampled_from([2**64, 10**30, "z" * 200_000])))
        elif kind == "nest":
            inner = _get(obj, path)
            obj = _set(obj, path, draw(st.sampled_from([[inner], {"v": inner}])))
        elif kind == "type":
            obj = _set(obj, ("type",), draw(st.sampled_from([*FIELDS, "dance", "", "Order_Paid"])))
        elif kind == "extra":
            obj = _set(obj, (draw(st.text(min_size=1, max_size=8)),), draw(values))
    return obj


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A valid or mutated event's bytes, with byte-level damage on top."""
    obj = draw(st.one_of(st.sampled_from(VALID), mutated_objects()))
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    kind = draw(
        st.sampled_from(
            ["none", "flip", "truncate", "utf16", "latin1", "insert", "pad", "oversize"]
        )
    )
    raw = text.encode("utf-8")
    if kind == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    elif kind == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif kind == "utf16":
        raw = text.encode("utf-16")
    elif kind == "latin1":
        raw = text.encode("latin-1", errors="replace")
    elif kind == "insert":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    elif kind == "pad":
        raw = raw + b" " * draw(st.integers(0, 64))
    elif kind == "oversize":
        raw = raw + b" " * (MAX_RECORD_BYTES + 1 - len(raw))
    return raw


# --- the properties --------------------------------------------------------------------------

FUZZ = settings(
    max_examples=1200,
    derandomize=True,  # the same examples on every run: CI is reproducible
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def check(raw: bytes) -> Rejection | Any:
    result = decode(raw)  # must not raise, whatever the bytes
    verdict = contract_valid(raw)
    if isinstance(result, Rejection):
        assert result.reason in REJECT_REASONS
        assert result.detail
        assert not verdict, f"the contract accepts what the decoder rejected ({result}): {raw!r}"
        return result
    assert verdict, f"the decoder accepted what the contract rejects: {raw[:300]!r}"
    # Re-validates: the event's own dump goes through the contract models unchanged.
    again = event_adapter.validate_python(result.model_dump(), strict=True)
    assert again == result
    dumped = result.model_dump()
    assert dumped["type"] in FIELDS and dumped["ts"] >= 0 and 1 <= len(dumped["event_id"]) <= 128
    return result


def test_the_fixtures_events_are_valid_by_both_readings() -> None:
    assert {obj["type"] for obj in VALID} >= set(FIELDS) - {"product_clicked"}
    for obj in VALID:
        assert not isinstance(check(json.dumps(obj).encode()), Rejection)


@FUZZ
@given(mutated_objects())
def test_structural_mutations_are_decoded_or_rejected_as_the_contract_says(obj: Any) -> None:
    check(json.dumps(obj).encode())


@FUZZ
@given(mutated_bytes())
@example(b"")
@example(b"\xff")
@example(b"{}")
@example(b"null")
def test_byte_mutations_never_break_the_decoder(raw: bytes) -> None:
    check(raw)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(st.sampled_from(VALID), st.data())
def test_each_mutation_gets_its_own_reason(obj: dict[str, Any], data: st.DataObject) -> None:
    """Mutations whose reason the contract fixes: a required field dropped, a negative amount
    or time, an unknown type, a strict prefix of the bytes, not an object, too large."""
    required = [name for name, rule in FIELDS[obj["type"]].items() if _required(rule)]
    name = data.draw(st.sampled_from([*required, "event_id", "ts", "type"]))
    assert reason(_set(obj, (name,), None, delete=True)) == "missing_field"
    negative = data.draw(st.integers(max_value=-1))
    assert reason(_set(obj, ("ts",), negative)) == "invalid_value"
    if "amount_cents" in obj:
        assert reason(_set(obj, ("amount_cents",), negative)) == "invalid_value"
    assert reason(_set(obj, ("type",), "dance")) == "unknown_type"
    raw = json.dumps(obj).encode()
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert decode_reason(raw[:cut]) == "not_json"
    assert reason([obj]) == "not_object"
    assert decode_reason(raw + b" " * MAX_RECORD_BYTES) == "too_large"
    assert decode_reason(json.dumps(obj).encode("utf-16")) == "not_utf8"


def _required(rule: Any) -> bool:
    return rule in ("id", "cents", "items") or (isinstance(rule, set) and "?" not in rule)


def decode_reason(raw: bytes) -> str:
    result = check(raw)
    assert isinstance(result, Rejection), raw[:200]
    return result.reason


def reason(obj: Any) -> str:
    return decode_reason(json.dumps(obj).encode())


@pytest.mark.parametrize("length", [1, 128, 4096, 500_000])
def test_a_long_id_within_the_record_limit_is_valid(length: int) -> None:
    """Ids other than event_id have no length limit in the contract; the record limit bounds
    them (docs/threat-model.md): a long user id is accepted, an event id over 128 is not."""
    obj = dict(VALID[0], user_id="u" * length, session_id="s" * length)
    assert not isinstance(check(json.dumps(obj).encode()), Rejection)
    assert (length <= 128) == (
        not isinstance(decode(json.dumps(dict(obj, event_id="e" * length)).encode()), Rejection)
    )


# --- a fetch decoded at once (issue 19) --------------------------------------------------------


def _same(batched: list[Any], one_by_one: list[Any]) -> None:
    assert len(batched) == len(one_by_one)
    for got, want in zip(batched, one_by_one, strict=True):
        assert type(got) is type(want)
        assert got == want  # a Rejection: the same reason and detail
        if not isinstance(want, Rejection):
            assert got.model_fields_set == want.model_fields_set


@settings(FUZZ, max_examples=150)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(VALID).map(lambda obj: json.dumps(obj).encode()),
            mutated_bytes(),
        ),
        max_size=12,
    )
)
@example([json.dumps(VALID[0]).encode(), b"not json", json.dumps(VALID[1]).encode()])
def test_a_fetch_decodes_as_its_records_one_by_one(values: list[bytes]) -> None:
    """`decode_many` gives, in order, exactly what `decode` gives each value: the same events,
    and for every bad one the same reason and detail, whatever its neighbours."""
    _same(decode_many(values), [decode(raw) for raw in values])


def test_a_fetch_never_lets_neighbours_make_a_record() -> None:
    """Values that are not JSON on their own stay rejected even where, joined with commas into
    one array, they would read as two good events (so a fetch is never validated as a join)."""
    first, second = (json.dumps(obj, separators=(",", ":")) for obj in VALID[:2])
    halves = [
        f"{first},{second[:-1]}".encode(),  # one whole event and the second but its last brace
        b'"pad":0}',  # the rest of the second, after the comma a join puts between them
    ]
    joined = json.loads(b"[" + b",".join(halves) + b"]")
    assert len(joined) == 2 and [contract_valid(json.dumps(o).encode()) for o in joined] == [
        True,
        True,
    ]
    decoded = decode_many(halves)
    assert [d.reason for d in decoded if isinstance(d, Rejection)] == ["not_json", "not_json"]
    too_large = json.dumps(VALID[0]).encode() + b" " * MAX_RECORD_BYTES
    _same(
        decode_many([json.dumps(VALID[0]).encode(), too_large, *halves]),
        [decode(raw) for raw in (json.dumps(VALID[0]).encode(), too_large, *halves)],
    )
    assert decode_many([]) == []


# --- the tables' plain decode (session 18, issue 19) --------------------------------------------


def check_plain(raw: bytes) -> None:
    """`decode_plain` refuses exactly what `decode` refuses, and its dict is the event's
    fields (`model_dump`: defaults filled in, extra fields left out, items as dicts)."""
    plain = decode_plain(raw)
    event = decode(raw)
    if isinstance(event, Rejection):
        assert plain is None, f"plain accepted what the decoder rejected ({event}): {raw[:300]!r}"
    else:
        assert plain == event.model_dump(), raw[:300]


def test_the_plain_decode_reads_the_fixtures_as_the_decoder() -> None:
    """Every line of both fixtures (their junk among them), and the too-large record."""
    lines = [
        line
        for name in ("xhs", "impulse")
        for line in (FIXTURES / f"{name}.jsonl").read_bytes().splitlines()
    ]
    refused = sum(decode_plain(line) is None for line in lines)
    assert refused > 10
    for line in lines:
        check_plain(line)
    check_plain(json.dumps(VALID[0]).encode() + b" " * MAX_RECORD_BYTES)


@FUZZ
@given(mutated_objects())
@example([VALID[0]])
@example({"type": "order_paid"})
def test_structural_mutations_are_decoded_plain_as_the_decoder_decodes_them(obj: Any) -> None:
    check_plain(json.dumps(obj).encode())


@settings(FUZZ, max_examples=600)
@given(mutated_bytes())
@example(b"")
@example(b"\xff")
@example(b"null")
def test_byte_mutations_are_decoded_plain_as_the_decoder_decodes_them(raw: bytes) -> None:
    check_plain(raw)
