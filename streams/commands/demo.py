"""`livepulse demo`: the main job in one command (broker, worker, replay, drain, report).

Each run gets topics of its own, `demo-<run id>.live.*`, and a consumer group of its own, so
a second run on the same broker never sees the first run's records: its counts (valid,
rejected, duplicates) are the fixture's, not twice the fixture's, and it reads from offset 0
instead of starting mid-stream. The contract topics `live.*` are left alone (a producer may be
writing to them); a run's own topics are deleted when it ends unless --keep-topics is given.
Deleting and recreating `live.*` instead would destroy data and race Kafka's asynchronous
topic deletion.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from streams.commands import options
from streams.commands.options import one_line

if TYPE_CHECKING:  # imported lazily at run time: `livepulse --help` should not load Kafka
    from streams.runtime.settings import Settings
    from streams.tools.worker_process import WorkerProcess

DEFAULT_FIXTURE = Path("fixtures/xhs.jsonl")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: broker, worker, replay a fixture, print the claims report",
        description="Start the local broker if needed (unless --bootstrap names one), start a "
        "worker, replay a fixture into topics of this run's own (demo-<run id>.live.*), wait "
        "until the worker has consumed them to their end, print the claims report (the "
        "fixtures are simulated: the report says so next to the verdicts), write it as an "
        "HTML page, and keep the worker serving /metrics and /report until Ctrl-C (or stop at "
        "once with --exit); then delete the run's topics (unless --keep-topics).",
    )
    p.add_argument(
        "--fixture",
        type=Path,
        default=DEFAULT_FIXTURE,
        metavar="FILE.jsonl",
        help=f"JSON Lines to replay (default {DEFAULT_FIXTURE})",
    )
    p.add_argument("--exit", action="store_true", help="stop the worker after the report")
    p.add_argument(
        "--speedup",
        type=options.positive_float,
        metavar="X",
        help="replay at X times the speed of event time, to watch the live screen fill up "
        "(e.g. 200000 plays xhs's two months in ~26 s; default: as fast as possible)",
    )
    p.add_argument(
        "--web-port", type=options.port, default=6066, help="the worker's HTTP port (6066)"
    )
    p.add_argument(
        "--bootstrap",
        help="use this Kafka instead of starting the local broker (host:port[,host:port])",
    )
    p.add_argument("--keep-topics", action="store_true", help="keep this run's topics when it ends")
    p.add_argument(
        "--timeout",
        type=options.positive_float,
        default=600.0,
        metavar="SECONDS",
        help="give up if the worker has not consumed everything after this long (600)",
    )
    p.add_argument(
        "--logs",
        type=Path,
        default=Path("data/logs"),
        metavar="DIR",
        help="directory of the worker's log, worker-<run id>.log (default data/logs)",
    )
    p.add_argument(
        "--html",
        type=Path,
        default=Path("data/report.html"),
        metavar="OUT.html",
        help="where to write the HTML report of the run (default data/report.html)",
    )
    p.set_defaults(func=run)


class NoTopics(RuntimeError):
    """The run's topics could not be created (the broker is unreachable or refuses them)."""


def _say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from streams.runtime.settings import Settings
    from streams.tools.drain import NotDrained
    from streams.tools.worker_process import WorkerFailed, WorkerProcess, port_is_free

    problem = options.jsonl_problem(args.fixture)
    if problem is not None:
        _say(problem)
        return 2
    if not port_is_free("127.0.0.1", args.web_port):
        _say(f"port {args.web_port} is in use (a worker still running?); try --web-port")
        return 2

    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    from streams.tools.kafka import KafkaLocalError, process

    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        try:
            bootstrap = process.ensure_up()
        except KafkaLocalError as exc:
            _say(f"cannot start the local broker: {exc}")
            return 1
    settings = Settings(
        bootstrap=bootstrap,
        app_id=f"livepulse-demo-{run_id}",
        topic_prefix=f"demo-{run_id}.",
        web_port=args.web_port,
        # The fixture is simulated: the worker's own /report says so next to its verdicts.
        simulated_source=args.fixture.resolve(),
    )
    worker = WorkerProcess(settings, args.logs / f"worker-{run_id}.log")
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    code = 0
    topics_made = True
    try:
        code = _main_job(args, settings, worker)
    except NoTopics as exc:
        _say(str(exc))
        code, topics_made = 2, False
    except KeyboardInterrupt:
        _say("interrupted")
        code = 130
    except (WorkerFailed, NotDrained) as exc:
        _say(str(exc))
        code = 1
    finally:
        if worker.alive():
            _say("stopping the worker")
        worker.stop()
        if topics_made and not args.keep_topics:
            _delete_topics(settings)
    return code


def _main_job(args: argparse.Namespace, settings: Settings, worker: WorkerProcess) -> int:
    from agents.core import render_table
    from streams.commands.report import write_html
    from streams.runtime.provenance import mark_if_simulated
    from streams.runtime.topics import all_topics, create_topics
    from streams.tools.drain import fetch_json, wait_drained
    from streams.tools.progress import bar, count_lines, on_terminal
    from streams.tools.replayer import Progress, replay

    try:
        asyncio.run(create_topics(settings, all_topics(settings)))
    except Exception as exc:  # no broker there, or one that refuses us
        raise NoTopics(
            f"cannot create this run's topics at {settings.bootstrap}: {one_line(exc)}"
        ) from exc
    _say(f"topics of this run: {settings.topic_prefix}live.* (run id {settings.app_id})")
    worker.start()
    _say(f"worker starting, log {worker.log_path}")
    with bar(desc="[demo] waiting for the worker", bar_format="{desc}: {elapsed}") as waiting:
        worker.wait_ready(tick=waiting.refresh)
    _say(f"worker ready at {worker.base_url}; replaying {args.fixture}")
    _say(f"live screen (直播大屏): {worker.base_url}/screen")
    total = count_lines(args.fixture) if on_terminal(sys.stderr) else None
    summary = asyncio.run(
        replay(args.fixture, settings, speedup=args.speedup, progress=Progress(sys.stderr, total))
    )
    with bar(desc="[demo] worker consuming") as consuming:

        def consumed(done: int, records: int) -> None:
            consuming.total = records
            consuming.n = done
            consuming.refresh()  # every poll (0.2 s): the total may have changed too

        drained = asyncio.run(
            wait_drained(
                settings,
                f"{worker.base_url}/status",
                settings.source_topics,
                args.timeout,
                progress=consumed,
            )
        )
    _say(
        f"worker consumed all {drained.records} records in {drained.seconds:.1f} s after the "
        f"replay ({summary.lines} lines)"
    )
    report = mark_if_simulated(
        fetch_json(f"{worker.base_url}/report", timeout_s=60.0), args.fixture
    )
    print(render_table(report), flush=True)
    args.html.parent.mkdir(parents=True, exist_ok=True)
    if write_html(report, args.html, f"{worker.base_url}/report", "livepulse demo") != 0:
        return 1
    _say(f"metrics: {worker.base_url}/metrics   report: {worker.base_url}/report")
    _say(f"live screen (直播大屏): {worker.base_url}/screen")
    _say(f"dead letters: topic {settings.deadletter} ({report['events']['rejected']} records)")
    if args.exit:
        return 0
    _say("the worker keeps serving; Ctrl-C to stop")
    try:
        while worker.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0  # the way this run is meant to end
    _say(f"the worker exited unexpectedly; the end of its log:\n{worker.tail()}")
    return 1


def _delete_topics(settings: Settings) -> None:
    from streams.runtime.topics import delete_run_topics

    try:
        deleted = asyncio.run(delete_run_topics(settings))
    except Exception as exc:  # the broker may be gone; the topics are then its problem
        _say(f"could not delete this run's topics: {exc!r}")
    else:
        if deleted:
            _say(f"deleted this run's topics ({settings.topic_prefix}live.*)")
    # The run's state store describes the topics just deleted.
    import shutil

    shutil.rmtree(settings.state_dir, ignore_errors=True)
