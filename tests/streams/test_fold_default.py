"""Issue 17: `LIVEPULSE_FOLD_SESSIONS` (on by default since session 12). What a deployment
that turns it on over an old state does: a worker that ran with the fold off (its state keeps
every closed session's raw facts), stopped and started again with the fold on on the same
state, summarizes from then on (`Ledger.fold_sessions_from_now`), and its claims equal the
truth file."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from agents.core import build_report
from streams.runtime.settings import Settings
from streams.runtime.state import LiveState, SourceRecord
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.worker_process import WorkerProcess
from tests.agents.core.test_retention import _check_summarized
from tests.streams.test_membership import PARTITIONS, _claims_of, _keep_everything
from tests.support.live import fixture_lines, fold_settings, replay_lines, run_settings

FOLD_RESTORE_ENV = "LIVEPULSE_FOLD_RESTORE"


def test_the_fold_is_on_by_default_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """On unless `LIVEPULSE_FOLD_SESSIONS=false` says otherwise (with it, the month-rows
    topic too)."""
    monkeypatch.delenv("LIVEPULSE_FOLD_SESSIONS", raising=False)
    assert Settings().fold_sessions and Settings().month_rows_topic is not None
    monkeypatch.setenv("LIVEPULSE_FOLD_SESSIONS", "false")
    assert not Settings().fold_sessions and Settings().month_rows_topic is None


def test_the_worker_and_analyze_retire_summaries_wherever_the_fold_is_on() -> None:
    """A worker's partitions retire summaries past the board horizon with the fold on (new
    ones, and restored ones written before retiring, as a version 10 state loads), never
    with it off; `livepulse analyze` likewise: on xhs with a 3-day board horizon it retires
    sessions and its claims equal the keep-everything report's and the truth's, its levels
    the operator truth (the sketched medians within 1%)."""
    from agents.core import OperatorBoard
    from agents.core.sketch import RELATIVE_ACCURACY
    from streams.tools.analyze import analyze_file
    from tests.agents.core.test_page import FIXTURES
    from tests.support.live import fixture_operator_truth_folding
    from tests.support.truth import _same

    day = 86_400_000
    on = LiveState(fold_sessions=True, board_horizon_ms=3 * day)
    assert on.new_partition().ledger.retire_summaries
    restored = LiveState(fold_sessions=True).new_partition()
    restored.ledger.retire_summaries = False  # as a state of version 10 or older loads
    on.install(0, restored)
    assert restored.ledger.retire_summaries
    assert not LiveState(fold_sessions=False).new_partition().ledger.retire_summaries

    options = {
        "dedupe_window_ms": 2 * day,
        "refund_horizon_ms": 13 * day,
        "fold_sessions": True,
    }
    board = OperatorBoard()
    report = analyze_file(FIXTURES / "xhs.jsonl", board=board, board_horizon_ms=3 * day, **options)
    assert board.retired_levels  # the ledger retired sessions (the board took their share)
    everything = analyze_file(FIXTURES / "xhs.jsonl", dedupe_window_ms=None)
    _check_summarized(report, everything, "xhs.jsonl")
    truth = fixture_operator_truth_folding("xhs", 2 * day)
    problems: list[str] = []
    for level in ("overall", "rooms", "merchants"):
        _same(level, report["operator"][level], truth[level], problems)
    for problem in problems:
        assert ".median_watch_minutes:" in problem, problem
        path = problem.split(":")[0].split(".")
        mine, want = report["operator"][path[0]], truth[path[0]]
        if path[0] != "overall":
            mine, want = mine[path[1]], want[path[1]]
        assert abs(mine["median_watch_minutes"] / want["median_watch_minutes"] - 1) <= (
            RELATIVE_ACCURACY
        ), problem


def test_the_levels_runs_kept_and_distinct_limit_are_settings_given_to_every_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`LIVEPULSE_BOARD_RUNS_KEPT` and `LIVEPULSE_DISTINCT_EXACT_LIMIT` (defaults 4,096 and
    10,000: the code's) reach every partition's ledger, new or restored (they are not in the
    snapshot: a restored one gets this worker's), a restored level over the limit sketched;
    `livepulse analyze` applies them too: on xhs with a limit of 5 ids and a 3-day board
    horizon with 8 runs kept, its levels' buyers are sketched, its paying users within the
    sketch's bound of the truth's and the overall peak (one ledger: exact whatever runs are
    kept) the truth's."""
    from agents.core import OperatorBoard
    from agents.core.concurrency import SETTLED_RUNS_KEPT
    from agents.core.persist import dump_state, load_state
    from agents.core.sketch import DISTINCT_EXACT_LIMIT, DistinctUsers
    from streams.tools.analyze import analyze_file
    from tests.agents.core.test_distinct import _paying_users_within_bound
    from tests.agents.core.test_page import FIXTURES
    from tests.support.live import fixture_operator_truth_folding

    for name in ("LIVEPULSE_BOARD_RUNS_KEPT", "LIVEPULSE_DISTINCT_EXACT_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().board_runs_kept == SETTLED_RUNS_KEPT
    assert Settings().distinct_exact_limit == DISTINCT_EXACT_LIMIT
    monkeypatch.setenv("LIVEPULSE_BOARD_RUNS_KEPT", "8")
    monkeypatch.setenv("LIVEPULSE_DISTINCT_EXACT_LIMIT", "5")
    settings = Settings()
    assert (settings.board_runs_kept, settings.distinct_exact_limit) == (8, 5)

    state = LiveState(fold_sessions=True, board_runs_kept=8, distinct_limit=5)
    ledger = state.new_partition().ledger
    assert (ledger.board_runs_kept, ledger.distinct_limit) == (8, 5)
    written = LiveState(fold_sessions=True).new_partition()
    payers = written.ledger.folded_payers[("overall", "")] = DistinctUsers()
    payers.update(["u-1", "u-2", "u-3", "u-4", "u-5", "u-6"])
    restored = type(written)(*load_state(dump_state(written.ledger, written.board)))
    assert restored.ledger.board_runs_kept is None and restored.ledger.distinct_limit is None
    state.install(0, restored)
    assert (restored.ledger.board_runs_kept, restored.ledger.distinct_limit) == (8, 5)
    assert restored.ledger.folded_payers[("overall", "")].sketched

    day = 86_400_000
    board = OperatorBoard()
    report = analyze_file(
        FIXTURES / "xhs.jsonl",
        board=board,
        dedupe_window_ms=2 * day,
        fold_sessions=True,
        board_horizon_ms=3 * day,
        board_runs_kept=8,
        distinct_limit=5,
    )
    truth = fixture_operator_truth_folding("xhs", 2 * day)
    assert _paying_users_within_bound(report["operator"], truth) > 0
    assert report["operator"]["overall"]["viewers_peak"] == truth["overall"]["viewers_peak"]


def test_the_rank_cell_limit_is_a_setting_given_to_every_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`LIVEPULSE_RANK_CELL_LIMIT` (default 8,192: the code's) reaches every partition's
    folded rank table, new or restored (a restored table over it coarsened at install);
    `livepulse analyze` applies it too: on xhs folded with a 2-day window and a limit of 64
    cells, `price_dwell_association`'s rho is read from a coarsened table, within its stated
    `rho_bound` of the truth file's exact rho, the interval widened by it."""
    from agents.core.persist import dump_state, load_state
    from agents.core.sketch import RANK_CELL_LIMIT
    from streams.tools.analyze import analyze_file
    from tests.agents.core.test_page import FIXTURES
    from tests.support.live import fixture_truth

    monkeypatch.delenv("LIVEPULSE_RANK_CELL_LIMIT", raising=False)
    assert Settings().rank_cell_limit == RANK_CELL_LIMIT
    monkeypatch.setenv("LIVEPULSE_RANK_CELL_LIMIT", "64")
    assert Settings().rank_cell_limit == 64

    state = LiveState(fold_sessions=True, rank_cell_limit=64)
    assert state.new_partition().ledger.folded_figures.price_watch.limit == 64
    written = LiveState(fold_sessions=True).new_partition()
    table = written.ledger.folded_figures.price_watch
    for i in range(200):
        table.add(10_000 + 100 * i, 1.0 + i)
    restored = type(written)(*load_state(dump_state(written.ledger, written.board)))
    restored_table = restored.ledger.folded_figures.price_watch
    assert (restored_table.limit, restored_table.level) == (RANK_CELL_LIMIT, 0)
    state.install(0, restored)
    assert restored_table.limit == 64 and restored_table.level > 0
    assert len(restored_table.cells) <= 64 and restored_table.count == 200

    day = 86_400_000
    exact = fixture_truth("xhs")["claims"]["price_dwell_association"]["observed"]
    for limit in (None, 64):
        report = analyze_file(
            FIXTURES / "xhs.jsonl",
            dedupe_window_ms=2 * day,
            fold_sessions=True,
            rank_cell_limit=limit,
        )
        price = report["claims"]["price_dwell_association"]
        bound = price["detail"]["rho_bound"]
        assert abs(price["observed"] - exact) <= bound
        if limit is None:
            unbounded = price
        else:
            assert price["observed"] != unbounded["observed"]
            assert bound > unbounded["detail"]["rho_bound"]
            assert price["ci_low"] < unbounded["ci_low"] and price["ci_high"] > unbounded["ci_high"]


def test_month_rows_move_positions_but_are_not_counted_as_records() -> None:
    """With the fold a worker also reads its month-rows topic: /status' `records`
    stays the contract records (as its valid, rejected and duplicate counts add up to; the
    scale-out test sums it over workers against the fixture's lines), the rows being counted in
    `month_rows`; their positions move all the same."""
    from tests.streams.test_live import ORDER, START, records

    state = LiveState()
    state.apply_batch(records("live.orders", START, ORDER))
    state.advance([SourceRecord("app-month-rows", 0, 0, b"u-1", b"{}")])
    counts = state.status()["events"]
    assert state.status()["records"] == 2 == sum(counts.values())
    assert state.positions[("app-month-rows", 0)] == 1


@pytest.mark.integration
def test_a_month_row_no_snapshot_covers_holds_the_merged_report_back(kafka_bootstrap: str) -> None:
    """`livepulse report --changelog` waits until no record read into a partition's state is
    uncovered by its snapshot: with the fold, the month-rows topic's too. Its rows leave their
    sender's snapshot once acknowledged; a merged report read before a receiver's snapshot
    covers them lacked them while saying it covered everything (`test_scaleout`'s SIGKILL
    test: `group_spend_multiple`'s population spend 27,773 against the truth's 31,888).
    A record of group floors only is not waited for: it changes no figure, and every snapshot
    announces one to every partition, so a stopped worker's partitions end with floors no
    snapshot covers (the bench harness's two-worker scale-out waited for them in vain)."""
    from aiokafka import AIOKafkaProducer

    from agents.core.ledger import GroupFloor
    from streams.runtime.global_report import uncovered
    from streams.runtime.monthrows import encode
    from streams.runtime.topics import create_month_rows_topic

    settings = run_settings(kafka_bootstrap, prefix="uncovered", partitions=1, fold_sessions=True)
    assert settings.month_rows_topic is not None

    async def run() -> list[int]:
        await create_topics(settings, all_topics(settings))
        await create_month_rows_topic(settings, 1)
        producer = AIOKafkaProducer(**settings.kafka_client_kwargs())
        await producer.start()
        counts = []
        try:
            floor = encode(GroupFloor(0, 1_700_000_000_000, None))
            await producer.send_and_wait(settings.month_rows_topic, floor, partition=0)
            counts.append(await uncovered(settings, {}))
            await producer.send_and_wait(settings.month_rows_topic, b"{}", key=b"u-1")
            counts.append(await uncovered(settings, {}))
            await producer.send_and_wait(settings.month_rows_topic, floor, partition=0)
            counts.append(await uncovered(settings, {}))
        finally:
            await producer.stop()
        return counts

    try:
        assert asyncio.run(run()) == [0, 1, 1]
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get(FOLD_RESTORE_ENV), reason=f"two worker runs: set {FOLD_RESTORE_ENV}=1"
)
def test_a_state_written_with_the_fold_off_summarizes_once_restarted_with_it_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """3 partitions, a 2-day dedupe window: the first half of the xhs fixture through a
    worker with `LIVEPULSE_FOLD_SESSIONS=false` (nothing summarized, no month-rows topic),
    stopped with SIGTERM; the second half replayed and the worker started again on its state
    directory with the fold on: its partitions are restored, not rebuilt, it
    summarizes the sessions closed before and after the restart, and its /report claims
    equal the keep-everything ledger's and the truth file. Groups partition 0 gets no event of
    the fixture: since a6d5cec it holds the membership horizon back until idle
    (`LIVEPULSE_GROUPS_IDLE_S`, 2 s here) after the drain, so the restarted worker's report is
    the first with sessions summarized (as `test_membership`'s restart test reads it)."""
    name = "xhs"
    lines = fixture_lines(name)
    half = len(lines) // 2
    # `fold_settings`: the fold, the 2-day window and a 2 s `LIVEPULSE_GROUPS_IDLE_S` (at the
    # default 60 s the first summary came just inside `_claims_of`'s 60 s wait).
    on = fold_settings(kafka_bootstrap, "foldon", PARTITIONS)
    off = on.model_copy(update={"fold_sessions": False})
    asyncio.run(create_topics(on, all_topics(on)))
    reports, statuses = [], []
    try:
        for settings, part in ((off, lines[:half]), (on, lines[half:])):
            run = "on" if settings.fold_sessions else "off"
            replay_lines(settings, tmp_path / f"{run}.jsonl", part)
            worker = WorkerProcess(settings, tmp_path / f"{run}.log")
            try:
                worker.start()
                worker.wait_ready(timeout_s=120)
                # With the fold, summaries come once groups partition 0 is idle, after the
                # drain (read at once, the report had none: 0 summarized until a6d5cec's wait).
                reports.append(_claims_of(worker, summarized=0 if settings.fold_sessions else None))
                statuses.append(worker.status())
            finally:
                worker.stop()  # SIGTERM: snapshots flushed
        assert reports[0]["retention"]["summarized_sessions"] == 0
        assert reports[0]["retention"].get("folded_months", 0) == 0
        froms = {p["restored_from"] for p in statuses[1]["partitions"].values()}
        assert froms <= {"local", "changelog"}, froms
        membership = statuses[1]["membership"]
        assert membership["caught_up"] and membership["groups_horizon_ts"] is not None, membership
        assert 0 in membership["idle_partitions"], membership
        assert reports[1]["retention"]["summarized_sessions"] > 0
        _check_summarized(reports[1], build_report(_keep_everything(name)), f"{name}.jsonl")
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(on))
