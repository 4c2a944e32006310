"""The batch ingest and the state keeper without a broker (tests/support/memory.py): the
fixture through the real ingest, keeper and dead-letter pipeline, compared with the
simulator's truth, across a crash and a rebalance. The same paths on a real broker:
tests/test_end_to_end.py, tests/test_faults.py, tests/test_scaleout.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from streams.runtime.deadletters import (
    H_REASON,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    DeadLetter,
)
from streams.runtime.settings import Settings
from streams.runtime.statestore import LocalStore
from tests.support.memory import MemoryChangelog, MemoryTopics, MemoryWorker, report_of
from tests.support.truth import operator_mismatches, report_mismatches

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "xhs.jsonl"
TRUTH: dict[str, Any] = json.loads((ROOT / "fixtures" / "xhs.truth.json").read_text())
SETTINGS = Settings(app_id="memory-harness")


def fixture_topics() -> MemoryTopics:
    topics = MemoryTopics(SETTINGS, partitions=4)
    assert topics.replay(FIXTURE) == TRUTH["lines"]
    return topics


def assert_matches_truth(*workers: MemoryWorker, crashed: tuple[MemoryWorker, ...] = ()) -> None:
    """The workers' state is the truth's; every rejected record has a dead letter (a crashed
    worker's too: at least once, so a record re-read after a crash may have two)."""
    report = report_of(*workers)
    assert report["events"] == TRUTH["events"]
    assert report_mismatches(report, TRUTH) == []
    # Windows and late events depend on arrival order across topics (as on Kafka).
    operator = report["operator"]
    assert isinstance(operator, dict)
    assert operator_mismatches(operator, TRUTH["operator"], cumulative_only=True) == []
    letters = [letter for worker in (*workers, *crashed) for letter in worker.published]
    assert all(dict(letter.headers)[H_REASON] for letter in letters)
    origins = {
        tuple(
            dict(letter.headers)[h] for h in (H_SOURCE_TOPIC, H_SOURCE_PARTITION, H_SOURCE_OFFSET)
        )
        for letter in letters
    }
    assert len(origins) == TRUTH["events"]["rejected"]
    if not crashed:
        assert len(letters) == len(origins)


async def test_the_fixture_through_the_batch_ingest_matches_the_truth() -> None:
    worker = MemoryWorker(SETTINGS, fixture_topics(), MemoryChangelog())
    await worker.assign(range(4))
    await worker.drain()
    await worker.dead_letters.settle()
    assert_matches_truth(worker)
    assert worker.state.records == TRUTH["lines"]


async def test_a_crash_after_a_snapshot_restores_and_counts_every_record_once(
    tmp_path: Path,
) -> None:
    topics, changelog = fixture_topics(), MemoryChangelog()
    first = MemoryWorker(SETTINGS, topics, changelog, LocalStore(tmp_path / "a"))
    await first.assign(range(4))
    for _ in range(8):
        await first.poll(max_records=300)
    await first.keeper.flush()  # the snapshot a crash falls back to
    assert changelog.writes == 4
    covered = dict(first.state.positions)
    assert first.committed == covered  # offsets committed after the snapshot, not before
    for _ in range(4):
        await first.poll(max_records=300)  # applied, never snapshotted: lost in the crash
    assert first.state.positions != covered
    assert first.keeper.local is not None
    first.keeper.local.close()  # the crash (no flush); the process's disk is gone too

    second = MemoryWorker(SETTINGS, topics, changelog, LocalStore(tmp_path / "b"))
    await second.assign(range(4))
    assert {p.restored_from for p in second.state.partitions.values()} == {"changelog"}
    # It reads on from what the snapshot covers (partitions with no record yet: from 0).
    assert {tp: o for tp, o in second.fetch_positions.items() if o} == covered
    await second.drain(max_records=300)
    await second.dead_letters.settle()
    # The records after the snapshot were applied twice in all, and counted once.
    assert_matches_truth(second, crashed=(first,))
    assert second.keeper.local is not None
    second.keeper.local.close()


async def test_a_rebalance_moves_partitions_with_their_state() -> None:
    topics, changelog = fixture_topics(), MemoryChangelog()
    first = MemoryWorker(SETTINGS, topics, changelog)
    await first.assign(range(4))
    for _ in range(5):
        await first.poll(max_records=400)
    await first.revoke([2, 3])  # snapshotted on revocation, then parked
    # Kept in memory until the next assignment (which may give them back).
    assert sorted(first.state.partitions) == [0, 1] and sorted(first.keeper.parked) == [2, 3]

    second = MemoryWorker(SETTINGS, topics, changelog)
    await second.assign([2, 3])
    assert {p.restored_from for p in second.state.partitions.values()} == {"changelog"}
    await first.drain()
    await second.drain()
    await first.dead_letters.settle()
    await second.dead_letters.settle()
    assert_matches_truth(first, second)


async def test_a_snapshot_waits_for_the_dead_letters_of_the_records_it_covers() -> None:
    topics = fixture_topics()
    worker = MemoryWorker(SETTINGS, topics, MemoryChangelog())
    release = asyncio.Event()
    acked: list[DeadLetter] = []

    async def slow_publish(letters: Any) -> None:
        await release.wait()
        acked.extend(letters)

    worker.dead_letters.publish = slow_publish
    await worker.assign(range(4))
    await worker.drain()
    flushing = asyncio.ensure_future(worker.keeper.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done(), "a snapshot covered records whose dead letters are not out"
    assert worker.keeper.changelog.writes == 0  # type: ignore[attr-defined]
    release.set()
    await asyncio.wait_for(flushing, timeout=10.0)
    assert len(acked) == TRUTH["events"]["rejected"]
    assert worker.keeper.changelog.writes == 4  # type: ignore[attr-defined]


IMPULSE = ROOT / "fixtures" / "impulse.jsonl"
IMPULSE_TRUTH: dict[str, Any] = json.loads((ROOT / "fixtures" / "impulse.truth.json").read_text())


def recreate_with_impulse(topics: MemoryTopics) -> None:
    """The contract topics deleted and re-created, then the impulse fixture sent to them (its
    views and interactions partitions end before xhs's: the snapshots of xhs are ahead)."""
    fresh = MemoryTopics(SETTINGS, partitions=topics.partitions)
    assert fresh.replay(IMPULSE) == IMPULSE_TRUTH["lines"]
    topics.logs = fresh.logs


async def assert_reads_impulse_unstopped(worker: MemoryWorker) -> None:
    """A worker started over the re-created topics (`recreate_with_impulse`) is not stopped as
    if they had been re-created under it, and reads impulse's truth."""
    assert worker.recreated == [] and not worker.keeper.halted
    await worker.drain()
    await worker.dead_letters.settle()
    report = report_of(worker)
    assert report["events"] == IMPULSE_TRUTH["events"]
    assert report_mismatches(report, IMPULSE_TRUTH) == []


async def test_a_rebalance_over_re_created_topics_stops_the_worker_that_read_the_old_ones() -> None:
    """A worker that read xhs, its topics then re-created with impulse, gets partition 0 back
    from the changelog in a rebalance (not from memory): the snapshot is ahead of the topics.
    Starting it afresh there would build it beside the deleted topics' states and tables (with
    the fold, its membership table skips the new groups records below its old positions, its
    other partitions send it month rows of the deleted topics), and its snapshot, not ahead of
    the new topics, would be restored as sound: the CI's restart missed 174 of group_spend_
    multiple's population so. The keeper tells the worker (which stops) and snapshots nothing
    more; the restarted worker starts every partition afresh and gets impulse's truth."""
    topics, changelog = fixture_topics(), MemoryChangelog()
    first = MemoryWorker(SETTINGS, topics, changelog)
    await first.assign(range(4))
    await first.drain()
    await first.keeper.flush()
    assert changelog.writes == 4
    recreate_with_impulse(topics)
    await first.revoke([0])
    await first.assign([1, 2, 3])  # partition 0 is no longer parked here
    await first.assign(range(4))
    [(topic, partition, end, position)] = first.recreated
    assert partition == 0 and topic in SETTINGS.source_topics
    assert end == len(topics.logs[(topic, 0)]) < position
    assert first.keeper.halted
    await first.drain()  # the stop is under way: what it applies meanwhile is never kept
    await first.keeper.flush()
    assert changelog.writes == 4

    second = MemoryWorker(SETTINGS, topics, changelog)
    await second.assign(range(4))
    assert {p.restored_from for p in second.state.partitions.values()} == {"new"}
    await assert_reads_impulse_unstopped(second)


async def test_a_partition_started_afresh_over_a_stale_snapshot_replaces_it_at_once() -> None:
    """The restarted worker's fresh partitions are snapshotted at their first chance (they are
    idle and dirty), so a rebalance that gives one back from the changelog before it applied a
    record finds that snapshot, not the stale one: the worker is not stopped as if the topics
    had been re-created under it."""
    topics, changelog = fixture_topics(), MemoryChangelog()
    first = MemoryWorker(SETTINGS, topics, changelog)
    await first.assign(range(4))
    await first.drain()
    await first.keeper.flush()
    recreate_with_impulse(topics)

    second = MemoryWorker(SETTINGS, topics, changelog)
    await second.assign(range(4))
    assert all(p.dirty for p in second.state.partitions.values())
    await second.revoke([0])  # before it applied anything: snapshotted, as it is dirty
    await second.assign([1, 2, 3])
    await second.assign(range(4))
    assert second.state.partitions[0].restored_from == "changelog"
    await second.revoke([1])
    await second.assign(range(4))  # given back by the same rebalance
    assert second.state.partitions[1].restored_from == "memory"
    await assert_reads_impulse_unstopped(second)
