"""Merging per-partition ledgers and boards: the same report as one ledger fed every event."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import Presence
from agents.core.merge import merge_boards, merge_ledgers, merge_windows
from agents.core.metrics import order_key
from agents.core.windows import MINUTE_MS, EventTimeWindows
from schemas import TOPIC_BY_TYPE, Event, Rejection, decode, record_key

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
NAMES = ("xhs", "impulse")
FALLBACK = "fallback"

#: One record: (topic, key, decoded event or rejection), in file order.
Record = tuple[str, bytes, Event | Rejection]


@cache
def records(name: str) -> tuple[Record, ...]:
    """A fixture's lines as the replayer routes them: contract topic and key, and decoded."""
    out: list[Record] = []
    with (FIXTURES / f"{name}.jsonl").open("rb") as handle:
        for raw in handle:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict) and obj.get("type") in TOPIC_BY_TYPE:
                topic, key = TOPIC_BY_TYPE[obj["type"]], record_key(obj).encode()
            else:
                topic, key = FALLBACK, b""  # no contract key: any partition will do
            out.append((topic, key, decode(line)))
    return tuple(out)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a non-null key (aiokafka's `DefaultPartitioner`)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def feed(stream: Sequence[Record]) -> tuple[Ledger, OperatorBoard]:
    ledger, board = Ledger(), OperatorBoard()
    for _topic, _key, decoded in stream:
        if isinstance(decoded, Rejection):
            ledger.reject(decoded.reason)
        elif ledger.apply(decoded):
            board.observe(decoded)
    return ledger, board


def report_json(ledger: Ledger, board: OperatorBoard) -> str:
    return json.dumps(build_report(ledger, board), sort_keys=True)


@cache
def single_report(name: str) -> str:
    return report_json(*feed(records(name)))


def split(stream: Sequence[Record], partitions: int) -> list[list[Record]]:
    parts: list[list[Record]] = [[] for _ in range(partitions)]
    for record in stream:
        parts[partition_of(record[1], partitions)].append(record)
    return parts


def interleave(stream: Sequence[Record], rng: random.Random) -> list[Record]:
    """The records in a random order across (topic, key) sources, each source's order kept."""
    sources: dict[tuple[str, bytes], list[Record]] = {}
    for record in stream:
        sources.setdefault((record[0], record[1]), []).append(record)
    queues = [list(reversed(queue)) for queue in sources.values()]
    tickets = [i for i, queue in enumerate(queues) for _ in queue]
    rng.shuffle(tickets)
    # Each source's records come out in order, at random positions among the others'.
    return [queues[i].pop() for i in tickets]


def merged_report(parts: Sequence[Sequence[Record]]) -> str:
    fed = [feed(part) for part in parts]
    return report_json(
        merge_ledgers([ledger for ledger, _ in fed]), merge_boards([board for _, board in fed])
    )


def test_partitioner_matches_aiokafka() -> None:
    """Our `partition_of` is what aiokafka's producer does for a keyed record."""
    partitioner = DefaultPartitioner()
    for key in (b"", b"s-1", b"m-7", "会话".encode()):
        for n in (2, 3, 4, 7):
            assert partitioner(key, list(range(n)), list(range(n))) == partition_of(key, n)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("partitions", [2, 3, 4, 7])
def test_merged_partitions_report_as_one_ledger(name: str, partitions: int) -> None:
    stream = records(name)
    parts = split(stream, partitions)
    assert sum(1 for part in parts if part) >= 2  # the split really splits
    assert merged_report(parts) == single_report(name)


def with_late_events(stream: Sequence[Record]) -> list[Record]:
    """The stream with every 40th viewer event and non-reply interaction stamped 10 minutes
    early: late for the windows (its source has newer events), counted as such."""
    out: list[Record] = []
    count = 0
    for topic, key, decoded in stream:
        if not isinstance(decoded, Rejection) and decoded.type in ("viewer_joined", "interaction"):
            count += 1
            if count % 40 == 0:
                decoded = decoded.model_copy(update={"ts": decoded.ts - 10 * MINUTE_MS})
        out.append((topic, key, decoded))
    return out


@pytest.mark.parametrize("partitions", [3, 7])
def test_late_events_are_judged_alike_in_partitions(partitions: int) -> None:
    stream = with_late_events(records("xhs"))
    single = build_report(*feed(stream))
    assert single["operator"]["late_events"] > 10
    assert merged_report(split(stream, partitions)) == json.dumps(single, sort_keys=True)


@pytest.mark.parametrize("name", NAMES)
def test_report_is_independent_of_cross_topic_and_partition_order(name: str) -> None:
    stream = records(name)
    rng = random.Random(f"merge-{name}")
    shuffled = interleave(stream, rng)
    assert shuffled != list(stream)
    assert report_json(*feed(shuffled)) == single_report(name)
    parts = split(shuffled, 4)
    rng.shuffle(parts)
    assert merged_report(parts) == single_report(name)


@pytest.mark.parametrize("name", NAMES)
def test_merge_of_one_and_of_empties_is_an_identity(name: str) -> None:
    ledger, board = feed(records(name))
    assert report_json(merge_ledgers([ledger]), merge_boards([board])) == single_report(name)
    empty = [(Ledger(), OperatorBoard()) for _ in range(3)]
    ledgers = [empty[0][0], ledger, empty[1][0], empty[2][0]]
    boards = [empty[0][1], board, empty[1][1], empty[2][1]]
    assert report_json(merge_ledgers(ledgers), merge_boards(boards)) == single_report(name)
    # The inputs are untouched: their own report is still the single one.
    assert report_json(ledger, board) == single_report(name)
    assert report_json(merge_ledgers([]), merge_boards([])) == report_json(
        Ledger(), OperatorBoard()
    )


def test_inputs_are_not_mutated_and_share_no_mutable_state() -> None:
    parts = split(records("xhs"), 3)
    fed = [feed(part) for part in parts]
    before = [report_json(ledger, board) for ledger, board in fed]
    merged = merge_ledgers([ledger for ledger, _ in fed])
    board = merge_boards([b for _, b in fed])
    # Feeding the merged pair more events changes it, never the inputs.
    extra = records("impulse")
    for _topic, _key, decoded in extra:
        if not isinstance(decoded, Rejection) and merged.apply(decoded):
            board.observe(decoded)
    assert [report_json(ledger, b) for ledger, b in fed] == before


def test_merged_ledger_keeps_deduplicating_and_numbering() -> None:
    stream = records("impulse")
    parts = split(stream, 3)
    fed = [feed(part) for part in parts]
    merged = merge_ledgers([ledger for ledger, _ in fed])
    single, _board = feed(stream)
    assert merged.counts == single.counts
    event = next(d for _t, _k, d in stream if not isinstance(d, Rejection))
    assert merged.apply(event) is False
    assert merged.counts.duplicates == single.counts.duplicates + 1


def test_arrival_numbers_break_ties_by_input_then_arrival_when_a_key_spans_inputs() -> None:
    """A (session, user) or (merchant, user) found in two inputs (a producer that keyed
    wrongly): at equal ts, the first input's records come first, each input's in its order."""
    first, second = Ledger(), Ledger()
    first._seq, second._seq = 5, 3
    a, b = Presence(), Presence()
    a.add("u", 100, 5, True)  # join at 100 (the first input's 5th event)
    b.add("u", 100, 1, False)  # leave at 100 (the second input's 1st event)
    b.add("v", 50, 2, True)
    merged = Presence.merged([(a, 0), (b, 5)])
    assert sorted(merged["u"]) == [(100, 5, True), (100, 6, False)]
    assert merged["v"] == [(50, 2, True)]  # met once: untouched
    first.group_events[("m", "u")] = [(10, 4, "g", True)]
    second.group_events[("m", "u")] = [(10, 1, "g", False)]
    events = merge_ledgers([first, second]).group_events[("m", "u")]
    assert sorted(events) == [(10, 4, "g", True), (10, 6, "g", False)]
    assert merge_ledgers([first, second])._seq == 8
    # A question id known in two inputs keeps the earliest (ts, session); replies the earliest.
    first.questions["q"], second.questions["q"] = (20, "s-9"), (30, "s-2")
    first.first_reply_ts["q"], second.first_reply_ts["q"] = 40, 45
    both = merge_ledgers([first, second])
    assert both.questions == {"q": (20, "s-9")} and both.first_reply_ts == {"q": 40}


def test_windows_merge_drops_buckets_behind_the_merged_watermark() -> None:
    old, new = EventTimeWindows(), EventTimeWindows()
    t0 = 1000 * MINUTE_MS
    assert old.admit(t0, ("live.views", "s-1"))
    old.bucket(t0, "s-1").entries += 1
    assert new.admit(t0 + 30 * MINUTE_MS, ("live.views", "s-2"))
    new.bucket(t0 + 30 * MINUTE_MS, "s-2").entries += 1
    assert new.admit(t0 + 30 * MINUTE_MS + 1, ("live.views", "s-1"))  # another source
    new.bucket(t0 + 30 * MINUTE_MS + 1, "s-1").entries += 2
    merged = merge_windows([old, new])
    assert merged.watermark == t0 + 30 * MINUTE_MS + 1
    assert sorted(merged.buckets) == [1030]
    assert merged.buckets[1030]["s-1"].entries == 2
    # The merged cutoff refuses an on-time event of a dropped minute, as a single board does.
    assert not merged.admit(t0 + 1, ("live.views", "s-3"))
    assert old.buckets[1000]["s-1"].entries == 1  # input untouched
    # Lateness after the merge goes by each source's newest ts over every input.
    late_for_new = t0 + 30 * MINUTE_MS + 1 - merged.grace_ms - 1
    backwards = merge_windows([new, old])
    assert not backwards.admit(late_for_new, ("live.views", "s-1"))
    assert backwards.late == 1


def test_windows_of_different_grace_are_refused() -> None:
    with pytest.raises(ValueError, match="grace"):
        merge_windows([EventTimeWindows(1000), EventTimeWindows(2000)])
    with pytest.raises(ValueError, match="gpm_denominator"):
        merge_boards([OperatorBoard(), OperatorBoard(gpm_denominator="unique_viewers")])


def _report_of(parts: Sequence[Sequence[Record]]) -> dict[str, Any]:
    fed = [feed(part) for part in parts]
    return build_report(
        merge_ledgers([ledger for ledger, _ in fed]), merge_boards([b for _, b in fed])
    )


def test_a_session_split_over_inputs_merges_its_facts() -> None:
    """Totality: every event dealt round-robin over 3 inputs, ignoring keys, still merges to
    the single ledger's facts and counts (dedupe aside: repeats across inputs stay apart)."""
    stream = [r for r in records("impulse") if not isinstance(r[2], Rejection)]
    seen: set[str] = set()
    distinct: list[Record] = []
    for record in stream:
        event = record[2]
        assert not isinstance(event, Rejection)
        if event.event_id not in seen:
            seen.add(event.event_id)
            distinct.append(record)
    parts = [distinct[i::3] for i in range(3)]
    merged = _report_of(parts)
    single_ledger, single_board = feed(distinct)
    single = build_report(single_ledger, single_board)
    merged_ledger = merge_ledgers([feed(part)[0] for part in parts])
    assert _facts(merged_ledger) == _facts(single_ledger)
    assert merged["events"] == single["events"]
    # Everything but the windows and lateness (which depend on what each input saw first).
    for section in ("claims", "distributions"):
        assert json.dumps(merged[section], sort_keys=True) == json.dumps(
            single[section], sort_keys=True
        )
    for level in ("overall", "merchants", "rooms"):
        strip = _without_windows
        assert strip(merged["operator"][level]) == strip(single["operator"][level])


def _without_windows(figures: dict[str, Any]) -> str:
    def drop(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if k != "windows"}
        return value

    return json.dumps(drop(figures), sort_keys=True)


def _facts(ledger: Ledger) -> dict[str, Any]:
    """A ledger's facts without arrival numbers or arrival order."""
    return {
        "sessions": {
            sid: (
                session.started_ts,
                session.room_id,
                session.merchant_id,
                session.ended_ts,
                session.last_ts,
                sorted(session.interacting_users),
                {u: sorted((ts, j) for ts, _seq, j in r) for u, r in session.presence.items()},
                sorted(order_key(order) for order in session.orders),
            )
            for sid, session in ledger.sessions.items()
        },
        "orders": sorted(order_key(order) for order in ledger.orders),
        "refunds": sorted(
            (r.ts, r.order_id, r.amount_cents, r.reason or "") for r in ledger.refunds
        ),
        "groups": {
            k: sorted((ts, g, j) for ts, _s, g, j in v) for k, v in ledger.group_events.items()
        },
        "questions": ledger.questions,
        "first_reply_ts": ledger.first_reply_ts,
        "max_ts": ledger.max_ts,
        "first_orders": ledger.first_orders,
        "month_spend": ledger.month_spend,
        "month_first_joins": ledger.month_first_joins,
        "seen": ledger.seen_ids(),
        "seq": ledger._seq,
    }
