"""Session 18 (issue 19): the worker's refund and membership tables read their topics through
the plain decode (`ReadTable.plain`: `schemas.plain.decode_plain`, the contract's own schema
into dicts, and `agents.core.plain.apply_plain`, decided by the ledger as a `Stamp`). A record
the contract decoder refuses must not be kept, the valid ones around it must be, and every
decision (copies, expiry, the horizon) must be the partition ledger's: checked against the
truth reference (`streams.tools.simulator.truth.read_stream`) and against the event path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.core.plain import Stamp, apply_plain
from schemas import Rejection, decode
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.membership import MembershipTable, ReadTable
from streams.runtime.refunds import WorkerRefundTable
from streams.tools.simulator.truth import read_stream
from tests.agents.core.test_order_fold import REFUND_HORIZON, WINDOW
from tests.streams.test_membership import GROUPS, PARTITIONS, fetched, routed, with_inserted

ORDERS = "live.orders"

_ITEM = {"sku_id": "k-1", "category": "apparel", "unit_price_cents": 100, "quantity": 1}


def _bad_and_odd(topic: str) -> list[bytes | None]:
    """Records put into a fetch: refused ones (not JSON, a null value, a field missing, a bad
    item, an event id too long, a negative ts, a string ts) and valid odd ones (another
    topic's event sent here, a copy of it, extra fields, an absent optional field)."""
    if topic == ORDERS:
        base: dict[str, Any] = {
            "event_id": "x-paid",
            "type": "order_paid",
            "ts": 1_719_800_000_000,
            "order_id": "o-x",
            "merchant_id": "m-1",
            "user_id": "u-1",
            "items": [_ITEM],
            "amount_cents": 100,
        }
        odd = {"event_id": "x-ref", "type": "order_refunded", "ts": 1_719_800_000_001}
        odd |= {"order_id": "o-x", "amount_cents": 100, "future": [1, {"a": None}]}
    else:
        base = {"event_id": "x-join", "type": "group_joined", "ts": 1_719_800_000_000}
        base |= {"merchant_id": "m-1", "group_id": "g-1", "user_id": "u-1"}
        odd = dict(base, event_id="x-left", type="group_left", ts=base["ts"] + 1, extra="ignored")
    stray = {"event_id": "x-view", "type": "viewer_joined", "ts": 1_719_800_000_002}
    stray |= {"session_id": "s-x", "user_id": "u-1"}
    refused: list[dict[str, Any]] = [
        {key: value for key, value in base.items() if key != "user_id"},
        dict(base, event_id="e" * 129),
        dict(base, ts=-1),
        dict(base, ts=str(base["ts"])),
    ]
    if topic == ORDERS:
        refused += [dict(base, items=[dict(_ITEM, quantity=0)]), dict(base, items=[])]
    out: list[bytes | None] = [b"{not json", None, b"[]"]
    out += [json.dumps(obj).encode() for obj in refused]
    out += [json.dumps(obj).encode() for obj in (base, odd, stray, stray)]
    return out


def _records(name: str, topic: str) -> list[tuple[int, list[int], list[bytes | None]]]:
    """The fixture's fetches of `topic` (50 records), with `_bad_and_odd` in the middle of
    one, offsets shifted after it."""
    records: list[RawRecord] = routed(name, PARTITIONS)
    return with_inserted(fetched(records, topic, 50), _bad_and_odd(topic))


def _table(topic: str, window: int | None, plain: bool) -> Any:
    table = (
        WorkerRefundTable(window, None, REFUND_HORIZON)
        if topic == ORDERS
        else MembershipTable(window, None)
    )
    table.plain = plain
    return table


def _fed(topic: str, fetches: Any, window: int | None, plain: bool, size: int) -> Any:
    table = _table(topic, window, plain)
    ends: dict[int, int] = {}
    for partition, offsets, values in fetches:
        for start in range(0, len(values), size):
            table.apply_fetch(
                partition, offsets[start : start + size], values[start : start + size]
            )
        table.apply_fetch(partition, offsets[:2], values[:2])  # read again: left out
        ends[partition] = offsets[-1] + 1
        table.advance(partition, ends[partition], None)
    table.catch_up_to(ends)
    return table


def _ledgers(table: Any) -> dict[int, Any]:
    return dict(table.table.partitions if isinstance(table, WorkerRefundTable) else table.ledgers)


def _held(table: Any) -> list[Any]:
    """What the table keeps: its refunds, or its group events without sequence numbers."""
    if isinstance(table, WorkerRefundTable):
        return sorted(
            (r.ts, r.order_id, r.amount_cents, str(r.reason)) for r in table.table.refunds()
        )
    return sorted(
        (key, sorted((ts, group, joined) for ts, _seq, group, joined in events))
        for ledger in table.ledgers.values()
        for key, events in ledger.group_events.items()
    )


def _decisions(table: Any) -> dict[str, Any]:
    """Every decision the table made, partition by partition."""
    out: dict[str, Any] = {
        "records": table.records,
        "rejected": table.rejected,
        "positions": dict(table.positions),
        "held": _held(table),
    }
    for number, ledger in sorted(_ledgers(table).items()):
        counts = ledger.counts
        out[f"partition {number}"] = (
            (counts.valid, counts.rejected, counts.duplicates, counts.expired, counts.future),
            list(ledger.newest_ts),
            ledger.max_ts,
            ledger._seq,
            sorted(ledger._seen_ids),
            [sorted((hour, sorted(keys)) for hour, keys in h.items()) for h in ledger._id_hours],
        )
    if isinstance(table, WorkerRefundTable):
        out["horizon"] = table.refund_fold_ts()
        out["after"] = table.after_fold
        out["index"] = [len(table.refunds_of(r[1])) for r in out["held"]]
    else:
        out["horizon"] = table.horizon_ts(0)
        out["after"] = table.after_horizon
    return out


@pytest.mark.parametrize("name", ["xhs", "impulse"])
@pytest.mark.parametrize("topic", [ORDERS, GROUPS])
def test_the_plain_path_keeps_what_the_truth_keeps(name: str, topic: str) -> None:
    """With no window (nothing expires), the plain table counts the valid, refused and copied
    records of the topic as the truth reference reads the same lines, and keeps exactly its
    refunds or group events: the fixture's own junk and the records put in are refused, the
    valid ones around them kept (another topic's event counted, not kept)."""
    fetches = _records(name, topic)
    table = _fed(topic, fetches, None, True, 50)
    values = [value for _p, _o, held in fetches for value in held]
    lines = [value.decode("utf-8", "surrogateescape") for value in values if value is not None]
    stream = read_stream(lines)
    counts = [ledger.counts for ledger in _ledgers(table).values()]
    assert sum(c.valid for c in counts) == stream.counts.valid
    assert sum(c.duplicates for c in counts) == stream.counts.duplicates > 0
    refused = stream.counts.rejected + (None in values)
    assert sum(c.rejected for c in counts) == table.rejected == refused >= 8
    assert table.records == len(values)
    if topic == ORDERS:
        want = sorted(
            (e.ts, e.order_id, e.amount_cents, str(e.reason))
            for _pos, e in stream.events
            if e.type == "order_refunded"
        )
    else:
        want = sorted(
            (key, sorted((ts, group, joined) for ts, _pos, group, joined in events))
            for key, events in stream.group_events.items()
        )
    assert _held(table) == want and len(want) > 1
    for ledger in _ledgers(table).values():  # no fact of another topic's event is kept
        assert not ledger.sessions and not ledger.orders


@pytest.mark.parametrize("name", ["xhs", "impulse"])
@pytest.mark.parametrize("topic", [ORDERS, GROUPS])
@pytest.mark.parametrize("size", [1, 7, 50])
def test_the_plain_path_decides_as_the_event_path(name: str, topic: str, size: int) -> None:
    """Under the fixtures' window (out-of-order records expire), fetches of 1, 7 and 50: the
    plain table's every decision (counts, horizons, ids remembered and filed by hour, what is
    kept, the late records) is the event path's (`plain` False: each record decoded into an
    event and applied by `Ledger.apply`, as before session 18)."""
    fetches = _records(name, topic)
    plain = _decisions(_fed(topic, fetches, WINDOW, True, size))
    events = _decisions(_fed(topic, fetches, WINDOW, False, size))
    assert plain == events
    ledgers = [value for key, value in plain.items() if key.startswith("partition ")]
    counts = [sum(value[0][i] for value in ledgers) for i in range(4)]
    assert counts[1] >= 8 and counts[2] > 0  # refused, copies
    assert counts[3] > 0 or (name, topic) == ("xhs", GROUPS)  # some expired


def test_a_stamp_is_decided_and_makes_no_fact() -> None:
    """`apply_plain` keeps a refund and a group event as `Ledger.apply` keeps the events, and
    a `Stamp` of any other type is only decided: applied once, a copy refused."""
    from agents.core import Ledger

    plain = Ledger(WINDOW, None)
    events = Ledger(WINDOW, None)
    for value in _bad_and_odd(ORDERS) + _bad_and_odd(GROUPS):
        decoded = None if value is None else decode(value)
        if decoded is None or isinstance(decoded, Rejection):
            continue
        assert apply_plain(plain, decoded.model_dump()) == events.apply(decoded)
    assert plain.refunds == events.refunds and plain.refunds
    assert plain.group_events == events.group_events and plain.group_events
    assert plain.counts == events.counts and plain.counts.duplicates == 3  # the stray, 4 times
    assert not plain.sessions and events.sessions  # the viewer's session: only the event's
    assert plain.apply(Stamp("viewer_joined", "x-new", 1_719_800_000_003))  # type: ignore[arg-type]
    assert not plain.apply(Stamp("viewer_joined", "x-new", 1_719_800_000_003))  # type: ignore[arg-type]
    assert not plain.sessions


def test_the_tables_default_to_the_plain_path() -> None:
    assert ReadTable.plain is True
    assert WorkerRefundTable(WINDOW, None, REFUND_HORIZON).plain
    assert MembershipTable(WINDOW, None).plain
