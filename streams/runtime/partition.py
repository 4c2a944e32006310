"""The state one partition number's records made: its ledger, operator board and positions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agents.core import Ledger, OperatorBoard


@dataclass
class PartitionState:
    """The state one partition number's records made, over every contract topic.

    The contract topics are co-partitioned (same partition count, keyed by session or merchant),
    and faust's assignor gives partition p of every one of them to the same worker, so this is
    the unit that moves between workers, is snapshotted (`streams.runtime.statestore`) and is
    merged with the others for a report (`agents.core.merge`).
    """

    ledger: Ledger
    board: OperatorBoard
    #: Source topic -> the next offset of this partition to apply (records before it are in).
    positions: dict[str, int] = field(default_factory=dict)
    #: Snapshots written of this state so far (the restored one's generation, then +1 each).
    generation: int = 0
    #: Records applied since the last snapshot (nothing to write when False).
    dirty: bool = False
    #: Where the state came from: "new" (the start of the topics), "local" (RocksDB), "changelog".
    restored_from: str = "new"
    restored_s: float = 0.0
    #: The changelog offset of the last snapshot's head (a restore reads only what follows),
    #: and that head (`streams.runtime.statestore.SnapshotHead`: its chunks are dropped by the
    #: next).
    head_offset: int | None = None
    head: Any = None
    #: monotonic() of the last record applied and of the last snapshot; its duration and size.
    applied_at: float = field(default_factory=time.monotonic)
    #: monotonic() of the last record of a contract topic applied (since the state was made or
    #: restored): the month-rows topic's records move `applied_at`, not this; a partition
    #: quiet here for `Settings.group_floor_idle_s` announces an idle group floor.
    events_at: float = field(default_factory=time.monotonic)
    snapshot_at: float = field(default_factory=time.monotonic)
    snapshot_s: float = 0.0
    #: How long the latest snapshot held up batches (settle + dump, or + fork only).
    snapshot_pause_s: float = 0.0
    snapshot_bytes: int = 0
    snapshots: int = 0
    #: The ledger's `GroupFloor` as of the last snapshot written (with the month-rows
    #: exchange), and the last one sent on (`MonthRowExchange.take`): a floor is announced
    #: only once a state that asks nothing older is on the changelog.
    group_floor_saved: Any = None
    group_floor_sent: Any = None
    #: Whether the floor last dumped was taken as idle (`Keeper`): a partition that goes idle
    #: is snapshotted once more, so that its idle floor is announced even if nothing else
    #: comes to it.
    group_floor_idle: bool = False
    #: How often its horizons followed the other partitions' while it was idle and read to
    #: its end (`LiveState.follow_idle_horizons`, `Settings.horizon_idle_s`), since made or
    #: restored.
    horizons_followed: int = 0
    #: monotonic() of when the state was made or restored, and of the last record of each
    #: contract topic applied since (by index into `TOPICS`): a topic quiet here for
    #: `Settings.horizon_idle_s` while the others bring records follows the other partitions'
    #: horizons alone (`LiveState.follow_idle_horizons`).
    made_at: float = field(default_factory=time.monotonic)
    topics_at: dict[int, float] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        return {
            "positions": dict(sorted(self.positions.items())),
            "generation": self.generation,
            "dirty": self.dirty,
            "restored_from": self.restored_from,
            "restored_s": round(self.restored_s, 4),
            "snapshots": self.snapshots,
            "last_snapshot_s": round(self.snapshot_s, 4),
            "last_snapshot_pause_s": round(self.snapshot_pause_s, 4),
            "last_snapshot_bytes": self.snapshot_bytes,
            "events": self.ledger.counts.as_dict(),
        }
