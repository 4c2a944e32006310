"""Snapshots dumped by a forked child (streams/runtime/forkdump.py), alone and through the
keeper."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import agents.core.persist as persist
import streams.runtime.forkdump as forkdump
from agents.core import Ledger
from agents.core.operator import OperatorBoard
from agents.core.persist import dump_state, load_state
from agents.core.report import build_report
from streams.runtime.forkdump import ForkDumpError, fork_dump
from streams.runtime.keeper import StateKeeper
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState, SourceRecord
from streams.runtime.statestore import Changelog, LocalStore
from streams.runtime.topics import create_changelog, delete_topics
from streams.tools.analyze import analyze_records, iter_records

pytestmark = pytest.mark.skipif(not forkdump.CAN_FORK, reason="no os.fork on this platform")

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "impulse.jsonl"


def _state(limit: int | None = None) -> tuple[Ledger, OperatorBoard]:
    lines = list(iter_records(FIXTURE))[:limit]
    ledger, board = Ledger(), OperatorBoard()
    analyze_records(iter(lines), ledger, board)
    return ledger, board


def test_the_child_dumps_exactly_what_an_in_process_dump_gives() -> None:
    ledger, board = _state()
    blob = fork_dump(ledger, board).collect()
    assert blob == dump_state(ledger, board)
    loaded, loaded_board = load_state(blob)
    assert loaded.counts.as_dict() == ledger.counts.as_dict()
    assert build_report(loaded, loaded_board) == build_report(ledger, board)


def test_the_dump_is_of_the_state_at_the_fork_not_after() -> None:
    lines = list(iter_records(FIXTURE))
    ledger, board = Ledger(), OperatorBoard()
    analyze_records(iter(lines[:4000]), ledger, board)
    at_fork = ledger.counts.as_dict()
    expected = dump_state(ledger, board)
    forked = fork_dump(ledger, board)
    # The parent goes on applying while the child dumps.
    analyze_records(iter(lines[4000:]), ledger, board)
    assert ledger.counts.as_dict() != at_fork
    blob = forked.collect()
    assert blob == expected
    assert load_state(blob)[0].counts.as_dict() == at_fork


def test_a_child_that_fails_is_reported_with_its_exit_status() -> None:
    ledger, board = _state(200)
    ledger.unpicklable = lambda: None  # type: ignore[attr-defined]
    with pytest.raises(ForkDumpError, match=r"failed \(exit status 1\)"):
        fork_dump(ledger, board).collect()


def test_a_stuck_child_is_killed_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(ledger: Ledger, board: OperatorBoard) -> bytes:
        time.sleep(60)
        return b""

    # The child runs forkdump's own reference to dump_state.
    monkeypatch.setattr(forkdump, "dump_state", hang)
    forked = fork_dump(*_state(100), timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ForkDumpError, match="did not finish within"):
        forked.collect()
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(forked.pid, os.WNOHANG)


def test_a_killed_child_is_reported_by_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkdump, "dump_state", lambda ledger, board: time.sleep(60) or b"")
    forked = fork_dump(*_state(100))
    os.kill(forked.pid, signal.SIGKILL)
    with pytest.raises(ForkDumpError, match="killed by SIGKILL"):
        forked.collect()


def test_a_truncated_dump_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A child that claims more bytes than it writes (as if cut off) must not pass as a dump.
    def short_writes(fd: int, data: bytes) -> None:
        os.write(fd, data[: max(8, len(data) // 2)])

    monkeypatch.setattr(forkdump, "_write_all", short_writes)
    with pytest.raises(ForkDumpError, match="wrote"):
        fork_dump(*_state(300)).collect()
    assert persist.MAGIC  # the in-process path is untouched by the patch


@pytest.mark.integration
async def test_the_keeper_snapshots_through_a_fork_while_batches_go_on(
    kafka_bootstrap: str, unique_group: Callable[..., str], tmp_path: Path
) -> None:
    settings = Settings(
        bootstrap=kafka_bootstrap,
        app_id=unique_group("lp-fork"),
        partitions=1,
        data_dir=tmp_path,
        snapshot_fork=True,
    )
    topic = settings.source_topics[0]
    lines = list(iter_records(FIXTURE))
    batch = [SourceRecord(topic, 0, offset, b"k", value) for offset, value in enumerate(lines)]
    assert await create_changelog(settings)
    live = LiveState(assigned_only=True)
    changelog = Changelog(settings)
    local = LocalStore(settings.state_dir)
    keeper = StateKeeper(live, settings, changelog, local)
    assert keeper.fork
    try:
        assert await keeper.assign([(topic, 0)]) == {(topic, 0): 0}
        live.apply_batch(batch[:5000])
        state = live.partitions[0]
        at_fork = state.ledger.counts.as_dict()
        expected = dump_state(state.ledger, state.board)
        async with keeper.lock:
            await keeper._snapshot(0, state, background=True)
        # The lock is free while the child dumps: the next batch is applied meanwhile.
        assert keeper._writing is not None and not keeper._writing.done()
        live.apply_batch(batch[5000:])
        assert state.dirty
        await keeper.wait_for_write()

        assert state.snapshots == 1 and state.generation == 1
        assert state.snapshot_pause_s < state.snapshot_s
        assert live.metrics.registry.get_sample_value(
            "livepulse_state_snapshot_pause_seconds_total"
        ) == pytest.approx(state.snapshot_pause_s)
        stored = await changelog.read_newest(0)
        assert stored is not None
        assert stored.blob == expected
        assert stored.head.positions == {topic: 5000}
        assert load_state(stored.blob)[0].counts.as_dict() == at_fork
        saved = local.load(0)
        assert saved is not None and saved.blob == expected
        # Still dirty: the records applied during the dump are not in that snapshot.
        assert state.dirty and state.ledger.counts.as_dict() != at_fork
    finally:
        await changelog.stop()
        local.close()
        await delete_topics(settings, [settings.changelog])
