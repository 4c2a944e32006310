"""A worker process on a run of its own (app id, topics, port) for broker tests, and helpers to
replay chosen lines and compare the result with a truth file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.drain import DrainResult, fetch_json, wait_drained
from streams.tools.replayer import ReplaySummary, read_lines, replay
from streams.tools.simulator.operator_truth import operator_truth
from streams.tools.worker_process import WorkerProcess, isolated_settings
from tests.support.truth import operator_mismatches, report_mismatches, summarized

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
# Longer than any fixture's span of event time: no event is late in any arrival order, so the
# operator's event-time windows are defined independently of arrival order (for runs that
# break the contract's per-key order on purpose).
NO_LATENESS_GRACE_S = 10 * 365 * 86_400


def run_settings(bootstrap: str, prefix: str = "faults", **update: Any) -> Settings:
    """Settings of a run nobody else uses: its own app id, topic prefix and web port
    (`isolated_settings`)."""
    return isolated_settings(bootstrap, prefix, **update)


def fold_settings(bootstrap: str, prefix: str, partitions: int, **more: Any) -> Settings:
    """`run_settings` of a run with the session fold over `partitions` partitions: a 2-day
    dedupe window (the fixtures' closed sessions are summarized), and a groups partition with
    no event (xhs has none in one of 3) left out of the summaries' horizon after 2 s
    (`LIVEPULSE_GROUPS_IDLE_S`, 60 s by default). `more` sets other settings or overrides
    these."""
    fields: dict[str, Any] = {
        "partitions": partitions,
        "fold_sessions": True,
        "dedupe_window_s": 2 * 86_400,
        "groups_idle_s": 2,
        **more,
    }
    return run_settings(bootstrap, prefix=prefix, **fields)


@contextlib.contextmanager
def started_worker(
    settings: Settings,
    log_path: Path,
    *,
    loglevel: str = "info",
    check_exit: bool = False,
) -> Iterator[WorkerProcess]:
    """A ready worker process for `settings` on topics made already; stopped (SIGTERM: its
    snapshots flushed) afterwards, with `check_exit` asserting that it exited with 0 (when the
    block raised, that is what the test reports: the worker is stopped all the same)."""
    process = WorkerProcess(settings, log_path, loglevel=loglevel)
    try:
        process.start()
        process.wait_ready(timeout_s=90)
        yield process
    except BaseException:
        process.stop()
        raise
    code = process.stop()
    if check_exit:
        assert code == 0, process.tail()


@contextlib.contextmanager
def run_topics(settings: Settings) -> Iterator[Settings]:
    """The run's topics (`all_topics`) made for the block and deleted after it (a deletion
    that fails is let be: no other run uses the names of this one's)."""
    asyncio.run(create_topics(settings, all_topics(settings)))
    try:
        yield settings
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))


@contextlib.contextmanager
def running_worker(
    settings: Settings,
    log_path: Path,
    *,
    loglevel: str = "info",
    delete_topics: bool = True,
    check_exit: bool = False,
) -> Iterator[WorkerProcess]:
    """A ready worker process for `settings`, its topics made; stopped (`started_worker`) and
    its topics deleted (`run_topics`) afterwards."""
    with contextlib.ExitStack() as stack:
        if delete_topics:
            stack.enter_context(run_topics(settings))
        else:
            asyncio.run(create_topics(settings, all_topics(settings)))
        yield stack.enter_context(
            started_worker(settings, log_path, loglevel=loglevel, check_exit=check_exit)
        )


def fixture_lines(name: str) -> list[bytes]:
    return list(read_lines(FIXTURES / f"{name}.jsonl"))


def fixture_truth(name: str) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads((FIXTURES / f"{name}.truth.json").read_text("utf-8"))
    return truth


def fixture_operator_truth_folding(name: str, window_ms: int) -> dict[str, Any]:
    """The fixture's operator truth under the session fold's rule for sessions that never end
    (`truth.abandon_sessions` with `window_ms`: the truth file holds the rule-free one)."""
    from agents.core.ledger import SESSION_HORIZON_MS
    from streams.tools.simulator.operator_truth import compute_operator
    from streams.tools.simulator.truth import abandon_sessions, read_stream

    text = (FIXTURES / f"{name}.jsonl").read_text("utf-8")
    stream = read_stream(text.splitlines())
    abandon_sessions(stream, SESSION_HORIZON_MS, window_ms)
    return compute_operator(stream)


def write_lines(path: Path, lines: Iterable[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def replay_lines(settings: Settings, path: Path, lines: Iterable[bytes]) -> ReplaySummary:
    """Publish `lines` (in this order) the way `livepulse replay` does."""
    summary = asyncio.run(replay(write_lines(path, lines), settings))
    assert summary.rejected == 0
    return summary


def drain(worker: WorkerProcess, timeout_s: float = 90.0) -> DrainResult:
    settings = worker.settings
    return asyncio.run(
        wait_drained(settings, f"{worker.base_url}/status", settings.source_topics, timeout_s)
    )


def report_of(worker: WorkerProcess, settle_s: float = 60) -> dict[str, Any]:
    """The worker's `/report` once its state has settled (`as_of.current`: nothing changed
    since it was built), read again every half second for at most `settle_s`: with the
    session fold (the default) its partitions' internal month-rows and first-order exchange
    and the membership table's catch-up run on after the contract topics drain."""
    deadline = time.monotonic() + settle_s
    while True:
        report: dict[str, Any] = fetch_json(f"{worker.base_url}/report", timeout_s=60)
        if (report.get("as_of") or {}).get("current") or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def truth_mismatches(
    report: dict[str, Any],
    truth: dict[str, Any],
    lines: list[bytes],
    *,
    events: dict[str, int] | None = None,
    no_lateness: bool = False,
    partitions: int | None = None,
) -> list[str]:
    """Where `report` differs from the truth: claims, the event counts (`events` if the run's
    counts differ from the file's by design) and the operator figures, windows and late count
    included (lateness is per topic and key, so any interleaving of topics that keeps each
    key's order gives the file's). With `no_lateness` (a worker whose grace is
    NO_LATENESS_GRACE_S, for runs that reorder events within a key), the windows are compared
    with a truth computed with that grace instead.
    """
    expected = {**truth, "events": events if events is not None else truth["events"]}
    problems = report_mismatches(report, expected)
    grace_ms = NO_LATENESS_GRACE_S * 1000 if no_lateness else None
    operator = operator_truth_for(
        report, lines, truth["operator"], grace_ms=grace_ms, partitions=partitions
    )
    problems += operator_mismatches(
        report["operator"], operator, sketched_medians=summarized(report)
    )
    return problems


def operator_truth_for(
    report: dict[str, Any],
    lines: list[bytes],
    truth: dict[str, Any],
    *,
    grace_ms: int | None = None,
    partitions: int | None = None,
    followers: Collection[int] = (),
) -> dict[str, Any]:
    """The operator truth `report` is to equal: `truth` (a truth file's, rule-free), or, where
    the report abandoned sessions that never ended (`LIVEPULSE_FOLD_SESSIONS`, on by default),
    the reference under that rule with the report's dedupe window (docs/design.md, "The
    session horizon"); with `grace_ms`, computed with that grace. With `partitions` (a
    worker's), each partition's sessions are abandoned by that partition's horizons (its
    contract records, and the whole groups topic: the membership table's), as its ledger does;
    without, those the report's `state` names (a worker's /report, the merged report), or the
    whole stream's where it names none (one ledger: `livepulse analyze`). The partitions in
    `followers` went idle and their horizons followed the others' (`LIVEPULSE_HORIZON_IDLE_S`,
    `Ledger.follow_idle_horizons`): their sessions are abandoned by the whole stream's
    horizons (the newest partition's), which the others' announcements carry."""
    from agents.core.ledger import SESSION_HORIZON_MS
    from streams.tools.simulator.operator_truth import compute_operator
    from streams.tools.simulator.truth import abandon_sessions, read_stream

    retention = report.get("retention") or {}
    if not retention.get("abandoned_sessions"):
        if grace_ms is None:
            return truth
        return operator_truth([line.decode() for line in lines], grace_ms=grace_ms)
    window_ms = round(retention["dedupe_window_s"] * 1000)
    cut: dict[str, int] | None = None
    if partitions is None:
        held = (report.get("state") or {}).get("partitions")
        partitions = len(held) if held else None
    if partitions is not None:
        cut = {}
        for number, part in enumerate(_by_partition(lines, partitions)):
            sub = read_stream([line.decode() for line in part])
            if number in followers:
                own = set(sub.started)
                sub = read_stream([line.decode() for line in lines])
                abandon_sessions(sub, SESSION_HORIZON_MS, window_ms)
                cut.update((sid, ts) for sid, ts in sub.abandoned_ts.items() if sid in own)
                continue
            abandon_sessions(sub, SESSION_HORIZON_MS, window_ms)
            cut.update(sub.abandoned_ts)
    stream = read_stream([line.decode() for line in lines])
    abandon_sessions(stream, SESSION_HORIZON_MS, window_ms, cut)
    if grace_ms is None:
        return compute_operator(stream)
    return compute_operator(stream, grace_ms=grace_ms)


def _by_partition(lines: list[bytes], partitions: int) -> list[list[bytes]]:
    """Per partition, the lines a worker's partition applies: those its contract key routes to
    it (Kafka's default partitioner), and every `group_joined`/`group_left` line (its groups
    horizon is the membership table's, over the whole groups topic)."""
    import orjson

    from schemas import TOPIC_BY_TYPE, record_key
    from tests.agents.core.test_merge import partition_of

    parts: list[list[bytes]] = [[] for _ in range(partitions)]
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or obj.get("type") not in TOPIC_BY_TYPE:
            continue
        if TOPIC_BY_TYPE[obj["type"]] == "live.groups":
            for part in parts:
                part.append(line)
            continue
        try:
            key = record_key(obj).encode()
        except (KeyError, TypeError, ValueError):
            continue
        parts[partition_of(key, partitions)].append(line)
    return parts


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


class BackgroundReplay(threading.Thread):
    """Replays a JSON Lines file at `rate` records/s in a thread; keeps the error it ended with
    (a test reports it, or treats it as a producer's give-up)."""

    def __init__(self, settings: Settings, path: Path, rate: float) -> None:
        super().__init__(name=f"replay-{path.stem}", daemon=True)
        self.settings, self.path, self.rate = settings, path, rate
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(replay(self.path, self.settings, rate=self.rate))
        except BaseException as exc:  # reported by the test
            self.error = exc


def kill9(worker: WorkerProcess) -> None:
    """SIGKILL a worker and reap it (its exit code -9 is then what its fixture expects)."""
    assert worker.process is not None
    worker.expected_exit = -9  # type: ignore[attr-defined]
    worker.process.kill()
    worker.process.wait()
