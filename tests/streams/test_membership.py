"""Issue 17: the worker's membership table over the whole groups topic
(streams/runtime/membership.py), so that a worker's partitions summarize closed sessions with
membership exact: partition states fed like a worker's, and a worker on the real broker with
`LIVEPULSE_FOLD_SESSIONS`, against the fixtures' truth files."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import TOPICS
from agents.core.periods import PeriodSettings
from schemas import TOPIC_BY_TYPE, Rejection, decode, record_key
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.membership import MembershipTable
from streams.runtime.partition import PartitionState
from streams.runtime.state import LiveState
from streams.tools.worker_process import WorkerProcess
from tests.agents.core.test_merge import FALLBACK, partition_of
from tests.agents.core.test_retention import DAY, _check_summarized, _summarizing
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    fold_settings,
    replay_lines,
    report_of,
    run_topics,
    running_worker,
    started_worker,
)
from tests.support.truth import report_mismatches
from tests.test_scaleout import PARTITIONS as SCALEOUT_PARTITIONS
from tests.test_scaleout import Fleet, merged_report

PARTITIONS = 3
GROUPS = "live.groups"
_GROUPS = TOPICS.index(GROUPS)


def topic_and_key(line: str | bytes) -> tuple[str, bytes]:
    """A line's contract topic and record key, as `livepulse replay` routes it (a line with
    no contract type: the fallback topic, no key)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and obj.get("type") in TOPIC_BY_TYPE:
        return TOPIC_BY_TYPE[obj["type"]], record_key(obj).encode()
    return FALLBACK, b""


def routed(name: str, partitions: int) -> list[RawRecord]:
    """A fixture's lines as a worker's consumer hands them on: contract topic, the partition of
    their contract key, an offset per (topic, partition), in file order."""
    out: list[RawRecord] = []
    offsets: dict[tuple[str, int], int] = {}
    for line in fixture_lines(name):
        topic, key = topic_and_key(line)
        partition = partition_of(key, partitions)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        out.append(RawRecord(topic, partition, offset, key, line))
    return out


def fetched(
    records: list[RawRecord], topic: str, size: int = 100
) -> list[tuple[int, list[int], list[bytes | None]]]:
    """The topic's records as `MembershipReader` hands a table its fetches: (partition,
    offsets, values) of up to `size` records of one partition, the partitions in turn."""
    parts: dict[int, list[RawRecord]] = {}
    for record in records:
        if record.topic == topic:
            parts.setdefault(record.partition, []).append(record)
    out: list[tuple[int, list[int], list[bytes | None]]] = []
    for start in range(0, max(map(len, parts.values()), default=0), size):
        for partition, held in sorted(parts.items()):
            chunk = held[start : start + size]
            if chunk:
                out.append((partition, [r.offset for r in chunk], [r.value for r in chunk]))
    return out


def with_inserted(
    fetches: list[tuple[int, list[int], list[bytes | None]]], extra: list[bytes | None]
) -> list[tuple[int, list[int], list[bytes | None]]]:
    """`fetches` with the values `extra` put in the middle of the middle fetch (as the broker
    would hand them on had they been produced there): that fetch's offsets run on through
    them, and its partition's later fetches' offsets are shifted by as many."""
    middle = len(fetches) // 2
    out = []
    for i, (partition, offsets, values) in enumerate(fetches):
        if i == middle:
            cut = len(values) // 2
            values = values[:cut] + extra + values[cut:]
            offsets = list(range(offsets[0], offsets[0] + len(values)))
        elif fetches[middle][0] == partition and i > middle:
            offsets = [offset + len(extra) for offset in offsets]
        out.append((partition, offsets, values))
    return out


def _table(records: list[RawRecord], window_ms: int) -> MembershipTable:
    table = MembershipTable(window_ms, None)
    ends: dict[int, int] = {}
    for partition, offsets, values in fetched(records, GROUPS):
        table.apply_fetch(partition, offsets, values)
        ends[partition] = offsets[-1] + 1
    table.catch_up_to(ends)
    return table


def _fed(records: list[RawRecord], table: MembershipTable | None, window_ms: int) -> LiveState:
    state = LiveState(dedupe_window_ms=window_ms, fold_sessions=True, membership=table)
    for partition in range(PARTITIONS):  # one batch per partition: each in its offset order
        state.apply_batch([r for r in records if r.partition == partition])
    return state


@pytest.mark.slow
@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_partitions_with_the_table_summarize_exactly_and_wait_for_its_catch_up(name: str) -> None:
    """3 partition states fed like a worker's (`LiveState`, the fixture split by contract key, a
    2-day window): reading membership from the table of every groups partition they
    summarize closed sessions and every claim equals the truth file's; without it (their own
    group events), `group_order_share` does not; with a table that has not caught up, no
    session is summarized."""
    window_ms = 2 * DAY
    records = routed(name, PARTITIONS)
    table = _table(records, window_ms)
    assert table.horizon_ts(_GROUPS) is not None
    assert table.records == sum(1 for r in records if r.topic == GROUPS)

    state = _fed(records, table, window_ms)
    # The table holds the group events the partition ledgers hold, member by member (the same
    # duplicates and expiries decided per partition).
    held = {k: v for p in state.partitions.values() for k, v in p.ledger.group_events.items()}
    assert held.keys() == set(table.group_events)
    assert all([e[::2] for e in held[k]] == [e[::2] for e in table.group_events[k]] for k in held)
    summarized = sum(p.ledger.summarized_sessions for p in state.partitions.values())
    assert summarized > 0
    report = build_report(state.ledger)
    assert report["retention"]["summarized_sessions"] == summarized
    _check_summarized(report, build_report(_keep_everything(name)), f"{name}.jsonl")

    alone = build_report(_fed(records, None, window_ms).ledger)["claims"]
    assert alone["group_order_share"]["observed"] != pytest.approx(
        report["claims"]["group_order_share"]["observed"], rel=1e-9
    )

    waiting = MembershipTable(window_ms, None)
    for record in records:
        if record.topic == GROUPS:
            waiting.apply(record.partition, record.offset, record.value)
    waiting.catch_up_to({p: 10**9 for p in range(PARTITIONS)})  # never reached
    assert waiting.horizon_ts(_GROUPS) is None
    early = _fed(records, waiting, window_ms)
    assert sum(p.ledger.summarized_sessions for p in early.partitions.values()) == 0
    assert report_mismatches(build_report(early.ledger), fixture_truth(name)) == []


def test_the_tables_group_events_are_each_members_events_of_the_groups_topic() -> None:
    """What a summary and a period freeze look up (`MembershipTable.group_events`, issue 19:
    its `get` and `in` without `Mapping.get`'s `KeyError`) is, member by member, the valid
    group events of the fixture's groups topic (the first copy of each event id: no window),
    whichever partition holds them; a member with none has no entry by any of the three."""
    records = routed("xhs", PARTITIONS)
    expected: dict[tuple[str, str], list[tuple[int, str, bool]]] = {}
    seen: set[str] = set()
    for record in records:
        event = decode(record.value) if record.topic == GROUPS else None
        if event is None or isinstance(event, Rejection) or event.event_id in seen:
            continue
        seen.add(event.event_id)
        member = (event.merchant_id, event.user_id)  # type: ignore[union-attr]
        joined = event.type == "group_joined"
        expected.setdefault(member, []).append((event.ts, event.group_id, joined))  # type: ignore[union-attr]
    assert len(expected) > 50
    pooled = MembershipTable(None, None)
    for partition, offsets, values in fetched(records, GROUPS):
        pooled.apply_fetch(partition, offsets, values)
    events = pooled.group_events
    assert set(events) == expected.keys()
    for member, want in expected.items():
        assert member in events
        got = events.get(member)
        assert got is events[member]
        assert sorted((ts, group, joined) for ts, _seq, group, joined in got) == sorted(want)
    for absent in (("no-such-merchant", "u-1"), (next(iter(expected))[0], "no-such-user")):
        assert absent not in events
        assert events.get(absent) is None
        assert events.get(absent, ()) == ()
        with pytest.raises(KeyError):
            events[absent]


@pytest.mark.slow
def test_idle_partitions_summarize_once_a_lagging_table_catches_up() -> None:
    """The end of a fast replay: the partitions applied every record while the table had read
    no group event (no groups horizon, nothing summarized, with the claims by period on);
    the table then catches up, and no record follows. The idle fold (`LiveState.fold_idle`,
    the keeper's tick) summarizes them, freezes the closed periods first, marks the
    partitions dirty, and every claim equals the truth file's."""
    window_ms = 2 * DAY
    records = routed("xhs", PARTITIONS)
    table = MembershipTable(window_ms, None)
    groups = [r for r in records if r.topic == GROUPS]
    ends = {r.partition: r.offset + 1 for r in groups}
    table.catch_up_to(ends)
    state = LiveState(
        dedupe_window_ms=window_ms, fold_sessions=True, membership=table, periods=PeriodSettings()
    )
    for partition in range(PARTITIONS):
        state.apply_batch([r for r in records if r.partition == partition])
    parts = state.partitions.values()
    assert sum(p.ledger.summarized_sessions for p in parts) == 0
    assert state.fold_idle(0.0) == 0  # the table has not caught up: nothing to do yet
    for record in groups:
        table.apply(record.partition, record.offset, record.value)
    for partition, end in ends.items():
        table.advance(partition, end)
    for part in parts:
        part.dirty = False
    assert state.fold_idle(3600.0) == 0  # not idle for an hour: left alone
    assert state.fold_idle(0.0) > 0
    assert all(p.ledger.summarized_sessions > 0 and p.dirty for p in parts)
    assert all(p.ledger.frozen_periods for p in parts)
    assert state.fold_idle(0.0) == 0  # nothing moved since: not tried again
    report = build_report(state.ledger)
    assert report["retention"]["summarized_sessions"] == sum(
        p.ledger.summarized_sessions for p in parts
    )
    _check_summarized(report, build_report(_keep_everything("xhs")), "xhs.jsonl")


def _group_line(i: int, ts: int) -> bytes:
    return orjson.dumps(
        {"event_id": f"g{i}", "type": "group_joined", "ts": ts, "merchant_id": "m",
         "user_id": f"u{i}", "group_id": "g"}
    )  # fmt: skip


def test_a_groups_partition_not_reached_yet_holds_the_horizon_until_idle_while_others_move() -> (
    None
):
    """The groups topic written partition after partition (librdkafka sends each topic's batch
    whole; a backfill): the table caught up on an empty topic long ago, partition 0 brings
    events, partitions 1 and 2 have none yet. They hold the horizon back (None: any group
    event may still come there) however long the topic was quiet before; only once they
    have been read to their end with no record for `idle_s` while the topic moved are they
    left out; a partition's first event, stamped before the horizon given, is counted
    (`after_horizon`) and brings it back; with the rule off an empty partition always holds
    it."""
    T0 = 1_751_328_000_000
    for idle_s in (0.2, None):
        table = MembershipTable(DAY, None, idle_s=idle_s)
        table.catch_up_to({0: 0, 1: 0, 2: 0})  # an empty topic: caught up at once
        for partition in range(3):
            table.advance(partition, 0, highwater=0)
        assert table.caught_up.is_set() and table.horizon_ts(_GROUPS) is None
        time.sleep(0.25)  # quiet for longer than idle_s, with nothing written anywhere
        for i in range(3):
            table.apply(0, i, _group_line(i, T0 + i * DAY))
        table.advance(0, 3, highwater=3)
        for partition in (1, 2):
            table.advance(partition, 0, highwater=0)
        assert table.idle() == set()
        assert table.horizon_ts(_GROUPS) is None  # partitions 1 and 2 not reached yet
        time.sleep(0.25)
        if idle_s is None:
            assert table.horizon_ts(_GROUPS) is None
            continue
        assert table.idle() == {0, 1, 2}
        assert table.horizon_ts(_GROUPS) == T0 + 2 * DAY - DAY  # every one idle: the newest
        table.apply(1, 0, _group_line(9, T0))  # its first event, late
        table.advance(1, 1, highwater=1)
        assert table.after_horizon == 1 and table.status()["after_horizon"] == 1
        # The topic moved again after a quiet spell: partition 2 (empty) holds it once more.
        assert table.idle() == set() and table.horizon_ts(_GROUPS) is None
        time.sleep(0.25)
        assert table.horizon_ts(_GROUPS) == T0 + 2 * DAY - DAY


def test_a_restored_state_reads_the_table_and_is_refused_without_the_fold() -> None:
    """A state restored under the fold reads membership from the worker's table (a restored
    ledger has no `membership_from`: it is not state), one written without it summarizes from
    now on; a state that summarizes is refused by a worker with the fold off (it would go on
    summarizing with its partition's own group events)."""
    table = MembershipTable(DAY, None)
    folding = LiveState(dedupe_window_ms=DAY, fold_sessions=True, membership=table)
    for fold in (False, True):
        restored = PartitionState(Ledger(DAY, fold_sessions=fold), OperatorBoard())
        folding.install(int(fold), restored)
        assert restored.ledger.fold_sessions and restored.ledger.membership_from is table
    plain = LiveState(dedupe_window_ms=DAY)
    plain.install(0, PartitionState(Ledger(DAY), OperatorBoard()))
    with pytest.raises(RuntimeError, match="LIVEPULSE_FOLD_SESSIONS"):
        plain.install(1, PartitionState(Ledger(DAY, fold_sessions=True), OperatorBoard()))


@functools.cache
def _keep_everything(name: str) -> Ledger:
    """The fixture in one ledger keeping every fact (what the summarized reports must equal,
    besides the truth file)."""
    return _summarizing([decode(line) for line in fixture_lines(name)], None)


# -- a worker on the real broker ----------------------------------------------------------------


def start_balanced(fleet: Fleet, workers: int) -> None:
    """Start `workers` workers of `fleet` and wait until each holds some of the partitions."""
    for i in range(workers):
        fleet.start(f"w{i}")
    for worker in fleet.workers:
        worker.wait_ready(timeout_s=120)
    held = fleet.wait_balanced()
    assert len(held) == workers and all(held.values()), held


def _claims_of(worker: WorkerProcess, summarized: int | None = None) -> dict[str, Any]:
    """The worker's settled /report once drained; with `summarized`, the first with more
    sessions summarized than that (read again for at most 60 s: a summary may wait for an
    idle groups partition, `LIVEPULSE_GROUPS_IDLE_S`, after the drain)."""
    drain(worker, timeout_s=120)
    deadline = time.monotonic() + 60
    while True:
        report = report_of(worker)
        done = report["retention"]["summarized_sessions"] > (summarized or 0)
        if summarized is None or done or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_with_the_fold_summarizes_and_its_claims_equal_the_truth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`LIVEPULSE_FOLD_SESSIONS=true`, 3 partitions, a 2-day dedupe window: the first half of
    the xhs fixture replayed, the worker summarizes closed sessions; stopped with SIGTERM, the
    second half replayed and the worker started again on its state directory (its membership
    table read again from the groups topic), it summarizes more, and its /report claims equal
    the truth file (the operator section is not compared: it does not read summaries yet,
    /work/wt17b)."""
    name = "xhs"
    lines = fixture_lines(name)
    half = len(lines) // 2
    # Groups partition 0 gets no event of the fixture: it holds summaries back until idle.
    settings = fold_settings(
        kafka_bootstrap,
        "membership",
        PARTITIONS,
        # Without the claims by period, whose summaries wait for a closed month: the fixture's
        # first half closes none, so nothing would be summarized before the restart.
        claim_periods=False,
    )
    with run_topics(settings):
        summarized: list[int] = []
        for run, part in (("first", lines[:half]), ("restarted", lines[half:])):
            replay_lines(settings, tmp_path / f"{run}.jsonl", part)
            with started_worker(settings, tmp_path / f"{run}.log") as worker:
                # Summaries come once groups partition 0 is idle, after the drain.
                report = _claims_of(worker, summarized=summarized[-1] if summarized else 0)
                summarized.append(report["retention"]["summarized_sessions"])
                status = worker.status()
        assert status["membership"]["caught_up"], status["membership"]
        assert status["membership"]["groups_horizon_ts"] is not None
        # What the tables' catch-up built was collected and frozen before the stream, outside
        # the GC clock (`GcPacer.settle`).
        assert status["gc"]["paced"]["settles"] == 1, status["gc"]
        assert status["gc"]["unclocked_collections"] >= 1, status["gc"]
        froms = {p["restored_from"] for p in status["partitions"].values()}
        assert froms <= {"local", "changelog"}, froms
        assert 0 < summarized[0] < summarized[1], summarized
        _check_summarized(report, build_report(_keep_everything(name)), f"{name}.jsonl")


@pytest.mark.integration
@pytest.mark.slow
def test_two_workers_fed_live_summarize_and_the_merged_claims_equal_the_truth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two workers with the fold share 4 partitions, each with its own table of the whole
    groups topic, started before the replay (the tables read the groups topic as it is
    written): both summarize, and the report merged over every partition's snapshot (the
    group leader's) has every claim equal to the truth file."""
    name = "xhs"
    # With the claims by period (the default): July's sessions are summarized in one burst
    # once July has closed, which the membership table may show only after a partition's
    # last record at the end of a fast replay: the idle fold (`LiveState.fold_idle`) does it.
    # Groups partitions 2 and 3 get no event of the fixture: they hold summaries back until
    # idle.
    settings = fold_settings(kafka_bootstrap, "membership2", SCALEOUT_PARTITIONS)
    with run_topics(settings):
        fleet = Fleet(settings, tmp_path)
        try:
            start_balanced(fleet, 2)
            replay_lines(settings, tmp_path / f"{name}.jsonl", fixture_lines(name))
            report = merged_report(settings)
            per_worker = [report_of(w)["retention"]["summarized_sessions"] for w in fleet.workers]
            assert all(n > 0 for n in per_worker), per_worker
            assert report["retention"]["summarized_sessions"] == sum(per_worker), per_worker
            _check_summarized(report, build_report(_keep_everything(name)), f"{name}.jsonl")
        finally:
            fleet.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_a_groups_topic_written_last_partition_by_partition_summarizes_with_every_group_event(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The topics out of step as librdkafka writes them (each topic's batch whole, in turn) to
    a worker with the fold started long before: every other topic first, the groups topic
    quiet for longer than `LIVEPULSE_GROUPS_IDLE_S`; then the groups events of one partition
    and, later, of another (the third gets none). While a groups partition holds no event and
    has not been idle for that long since the groups topic moved, no session is summarized
    (with only the first partition's events, sessions whose members' events are in the other
    would be summarized without them); once every partition has events or is idle, sessions
    are summarized and every claim equals the truth file's."""
    name, idle_s = "xhs", 8
    lines = fixture_lines(name)
    by_partition: dict[int, list[bytes]] = {}
    rest: list[bytes] = []
    for line in lines:
        topic, key = topic_and_key(line)
        if topic == GROUPS:
            by_partition.setdefault(partition_of(key, PARTITIONS), []).append(line)
        else:
            rest.append(line)
    assert len(by_partition) == 2, sorted(by_partition)  # one partition gets none
    first, second = sorted(by_partition, key=lambda p: -len(by_partition[p]))
    settings = fold_settings(
        kafka_bootstrap,
        "groupslast",
        PARTITIONS,
        claim_periods=False,  # summaries then wait for nothing but the horizons
        groups_idle_s=idle_s,
    )
    with running_worker(settings, tmp_path / "worker.log") as worker:
        replay_lines(settings, tmp_path / "rest.jsonl", rest)
        drain(worker, timeout_s=120)
        time.sleep(idle_s + 1)  # the groups topic quiet for longer than the idle time
        replay_lines(settings, tmp_path / "first.jsonl", by_partition[first])
        drain(worker, timeout_s=120)
        time.sleep(2)  # the keeper's idle fold runs meanwhile (every second)
        early = report_of(worker)
        status = worker.status()["membership"]
        assert status["positions"][str(first)] == len(by_partition[first]), status
        assert status["groups_horizon_ts"] is None, status
        assert early["retention"]["summarized_sessions"] == 0
        replay_lines(settings, tmp_path / "second.jsonl", by_partition[second])
        report = _claims_of(worker, summarized=0)
        assert report["retention"]["summarized_sessions"] > 0
        assert worker.status()["membership"]["after_horizon"] == 0
        assert report_mismatches(report, fixture_truth(name)) == []
        _check_summarized(report, build_report(_keep_everything(name)), f"{name}.jsonl")
