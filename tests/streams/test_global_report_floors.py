"""Issue 17: the report merged over every partition's snapshot (`global_report`) reads the
snapshots one after another; with group events compacted by the partitions' group floors, a
source's older snapshot read before a group partition's newer one (compacted by the source's
newer floor, announced only once that newer snapshot was written) merges lookups older than
the group events held. `global_report` reads such a source again (docs/design.md, "Group
events compacted", in a worker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.core import build_report
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.periods import with_periods
from agents.core.persist import dump_state, load_state
from streams.runtime import global_report as module
from streams.runtime.settings import Settings
from streams.runtime.statestore import Snapshot, new_head
from tests.agents.core.test_group_floor import PARTITIONS, _exchanged, _Partitions, _simulated


def _snapshots(run: _Partitions) -> dict[int, Snapshot]:
    return {
        p: Snapshot(new_head(p, 1, blob, {}), blob, None)
        for p, blob in enumerate(
            dump_state(ledger, board) for ledger, board in zip(run.ledgers, run.boards, strict=True)
        )
    }


def _merged(snapshots: dict[int, Snapshot], settings: Settings) -> dict[str, Any]:
    states = [load_state(snapshots[p].blob) for p in sorted(snapshots)]
    ledger = merge_ledgers([s[0] for s in states])
    report = build_report(ledger, merge_boards([s[1] for s in states]))
    return with_periods(report, ledger, settings.period_settings)


@pytest.mark.slow
def test_a_source_snapshot_older_than_a_compaction_it_allowed_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Snapshots of the 150-day, 3-partition exchange taken at its first check and at its end:
    a report merging partition 0's first snapshot with the others' last (their group events
    compacted past what partition 0's first state still looks up: the race) differs from
    what the same snapshots of partitions keeping every group event give. `global_report`
    fed that mix first and the newest snapshots on a second read gives the report of the
    newest snapshots."""
    stream, _lines = _simulated(150, 0.3, 5)
    early: dict[str, dict[int, Snapshot]] = {}

    def at_check(compacting: _Partitions, keeping: _Partitions) -> None:
        if not early:
            early["compacting"], early["keeping"] = _snapshots(compacting), _snapshots(keeping)

    compacting, keeping, _groups, _compared = _exchanged(stream, 3, 2, at_check=at_check)
    settings = Settings()
    late = {"compacting": _snapshots(compacting), "keeping": _snapshots(keeping)}
    mixed = {run: {**late[run], 0: early[run][0]} for run in ("compacting", "keeping")}
    # Membership is read from the merged partitions' own group events (no table here).
    got, want = _merged(mixed["compacting"], settings), _merged(mixed["keeping"], settings)
    assert got["claims"] != want["claims"]  # the race is real: the mix is not exact
    newest = _merged(late["compacting"], settings)
    assert newest["claims"] == _merged(late["keeping"], settings)["claims"]

    reads = [mixed["compacting"], late["compacting"]]

    async def newest_snapshots(_settings: Settings) -> dict[int, Snapshot]:
        return reads.pop(0) if len(reads) > 1 else reads[0]

    async def uncovered(_settings: Settings, _snapshots: dict[int, Snapshot]) -> int:
        return 0

    monkeypatch.setattr(module, "newest_snapshots", newest_snapshots)
    monkeypatch.setattr(module, "uncovered", uncovered)
    report = asyncio.run(module.global_report(settings))
    assert report["claims"] == newest["claims"]
    assert report["state"]["group_floors_behind"] == [] and report["state"]["floor_rereads"] == 1
    assert len(report["state"]["partitions"]) == PARTITIONS
    assert module.floors_behind({p: load_state(s.blob)[0] for p, s in mixed["compacting"].items()})
    assert not module.floors_behind(
        {p: load_state(s.blob)[0] for p, s in late["compacting"].items()}
    )

    # The same built in a forked child, as a worker's /report?scope=global builds it.
    reads[:] = [mixed["compacting"], late["compacting"]]
    report = asyncio.run(module.global_report(settings, build_in_thread=True, poll_s=0.0))
    assert report["claims"] == newest["claims"] and report["state"]["floor_rereads"] == 1

    # A mix read again unchanged (nothing newer on the changelog): built then, and named.
    reads[:] = [mixed["compacting"]]
    report = asyncio.run(module.global_report(settings, poll_s=0.0))
    assert report["claims"] == got["claims"]
    assert report["state"]["group_floors_behind"] == [0] and report["state"]["floor_rereads"] == 1
