"""The benchmark's scale-out run (bench/fleet.py) with its workers and broker faked: what it
waits for before it stops the fleet and merges the report from the changelog."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

import bench.fleet as fleet
from streams.runtime.settings import Settings


class _Broker:
    """End offsets: each contract topic's partitions full from the start, the month-rows
    topic's growing by one record a poll up to `rows` (the partitions' closed months and
    announcements, produced after the contract records they follow)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.written = 0

    def end(self, topic: str, month_rows: str | None) -> int:
        if topic == month_rows:
            self.written = min(self.rows, self.written + 1)
            return self.written
        return 10


class _Worker:
    """A worker that has read every contract record from its first status on, and reads
    the month-rows records only a poll after they are written; `stopped_behind` keeps the
    month-rows records it had not read when it was stopped (its last snapshot would not
    cover them)."""

    broker: _Broker
    stopped_behind: list[int]

    def __init__(
        self,
        settings: Settings,
        log: Path,
        loglevel: str = "warning",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        # `cwd` and `env`: `fleet.run` passes a baseline tree's (`--baseline`); none here.
        assert cwd is None and env is None
        self.settings = settings
        self.process = None
        self.read_rows = 0
        self.partitions = [0, 1] if log.name.endswith("w0.log") else [2, 3]

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        topic = self.settings.month_rows_topic
        assert topic is not None
        positions: dict[str, int] = {t: 10 for t in self.settings.source_topics}
        positions[topic] = self.read_rows
        self.read_rows = self.broker.written  # read at the next poll
        return {
            "ready": True,
            "records": 10,
            "first_applied_at": 1.0,
            "last_applied_at": 2.0,
            "partitions": {str(p): {"positions": dict(positions)} for p in self.partitions},
        }

    def stop(self) -> int:
        self.stopped_behind.append(self.broker.rows - self.read_rows)
        return 0


def test_the_fleet_is_stopped_only_once_it_has_read_the_month_rows_topic(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the session fold the partitions go on exchanging month-rows records for moments
    after the contract topics are read: stopped then, the workers' last snapshots leave them
    uncovered and the merged report counts them (`global_uncovered` [12] in a fresh-clone CI
    run and [6] here, 3 announcements of one partition to each of the other worker's
    partitions). The fleet is stopped once every partition has read the topic to its end."""
    broker = _Broker(rows=3)
    stopped_behind: list[int] = []
    _Worker.broker, _Worker.stopped_behind = broker, stopped_behind
    settings = Settings(bootstrap="127.0.0.1:1", fold_sessions=True)

    async def end_offsets(s: Settings, topics: Iterable[str]) -> dict[TopicPartition, int]:
        return {
            TopicPartition(t, p): broker.end(t, s.month_rows_topic)
            for t in topics
            for p in range(4)
        }

    async def global_report(s: Settings, *, wait_s: float = 0.0) -> dict[str, Any]:
        return {"events": {"valid": 40}, "state": {"uncovered_records": 0}}

    monkeypatch.setattr(fleet, "WorkerProcess", _Worker)
    monkeypatch.setattr(fleet, "end_offsets", end_offsets)
    monkeypatch.setattr(fleet, "global_report", global_report)
    monkeypatch.setattr(fleet, "free_ports", lambda n: list(range(n)))
    monkeypatch.setattr(fleet, "broker_pid", lambda: None)
    monkeypatch.setattr(fleet, "delete_app_topics", lambda s, app_id: None)
    monkeypatch.setattr(fleet, "POLL_S", 0.01)
    monkeypatch.setattr(fleet, "EXCHANGE_QUIET_S", 0.05)
    result = fleet.run_fleet(settings, 40, 2, tmp_path, "2-0")
    assert result["global_uncovered"] == 0
    assert stopped_behind == [0, 0]
