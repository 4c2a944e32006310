"""When the state keeper snapshots a partition: idle ones at once, busy ones within the budget."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streams.runtime.keeper import StateKeeper
from streams.runtime.partition import PartitionState
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState
from streams.runtime.statestore import Changelog

# Four partitions held, the default share 0.1, idle after 1 s, busy every 10 s.
SETTINGS = Settings(snapshot_idle_s=1.0, snapshot_interval_s=10.0, snapshot_max_share=0.1)


def keeper_holding(count: int) -> tuple[StateKeeper, dict[int, PartitionState]]:
    live = LiveState()
    for partition in range(count):
        live.partitions[partition] = live.new_partition()
    return StateKeeper(live, SETTINGS, Changelog(SETTINGS), None), live.partitions


def after_a_slow_snapshot(
    state: PartitionState, now: float, *, snapshot_ago_s: float, applied_ago_s: float
) -> None:
    state.dirty = True
    state.snapshot_s = 1.6  # the slow snapshot of the issue
    state.snapshot_at = now - snapshot_ago_s
    state.applied_at = now - applied_ago_s


@pytest.mark.parametrize("snapshot_ago_s", [1.2, 3.0, 30.0])
def test_an_idle_partition_is_due_whatever_the_last_snapshot_cost(snapshot_ago_s: float) -> None:
    """The budget (1.6 s x 4 partitions > 0.1 x the time since) held this one off for ~64 s."""
    keeper, partitions = keeper_holding(4)
    now = time.monotonic()
    state = partitions[0]
    after_a_slow_snapshot(state, now, snapshot_ago_s=snapshot_ago_s, applied_ago_s=1.1)
    assert keeper.due(state, now)


def test_a_busy_partition_stays_within_the_budget() -> None:
    keeper, partitions = keeper_holding(4)
    now = time.monotonic()
    state = partitions[0]
    # Busy (a record 0.2 s ago): not before the interval, and not while over the budget.
    after_a_slow_snapshot(state, now, snapshot_ago_s=5.0, applied_ago_s=0.2)
    assert not keeper.due(state, now)
    after_a_slow_snapshot(state, now, snapshot_ago_s=30.0, applied_ago_s=0.2)
    assert not keeper.due(state, now), "1.6 s x 4 partitions is over 10% of 30 s"
    after_a_slow_snapshot(state, now, snapshot_ago_s=65.0, applied_ago_s=0.2)
    assert keeper.due(state, now)
    # A cheap snapshot: due at the interval.
    state.snapshot_s = 0.05
    state.snapshot_at = now - 10.5
    assert keeper.due(state, now)
    state.snapshot_at = now - 9.0
    assert not keeper.due(state, now)


def test_a_clean_partition_is_never_due() -> None:
    keeper, partitions = keeper_holding(1)
    now = time.monotonic()
    state = partitions[0]
    after_a_slow_snapshot(state, now, snapshot_ago_s=100.0, applied_ago_s=100.0)
    state.dirty = False
    assert not keeper.due(state, now)


async def test_tick_snapshots_the_idle_partition_after_a_slow_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One tick after the partition went idle, its snapshot is taken (not ~66 s later)."""
    keeper, partitions = keeper_holding(4)
    now = time.monotonic()
    after_a_slow_snapshot(partitions[2], now, snapshot_ago_s=2.0, applied_ago_s=1.5)
    taken: list[int] = []

    async def snapshot(partition: int, state: PartitionState, **kwargs: Any) -> None:
        taken.append(partition)
        state.dirty = False

    monkeypatch.setattr(keeper, "_snapshot", snapshot)
    await keeper.tick()
    assert taken == [2]
    await keeper.tick()
    assert taken == [2], "a clean partition is not snapshotted again"
