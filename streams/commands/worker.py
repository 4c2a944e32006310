"""`livepulse worker`: run the faust worker (agents, /metrics, /report, /status) in-process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from streams.settings import Settings

log = logging.getLogger("livepulse.worker")

LOGLEVELS = ("debug", "info", "warning", "error")
#: Set when the worker stops itself for a reason its exit code tells (streams.topology).
_exit_code: int | None = None
# faust, mode and aiokafka log every rebalance step and table at INFO; at --loglevel info
# livepulse's own loggers say what matters and these stay at WARNING.
_CHATTY_LOGGERS = ("faust", "mode", "aiokafka")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="run the stream processor (faust worker) with its web views",
        description="Consume the contract topics (created if missing), dead-letter invalid "
        "records, and serve /metrics, /report and /status. Settings not given here come from "
        "LIVEPULSE_* environment variables. The ledger is in memory: on start the worker points "
        "its consumer group (the app id) back at the start of the topics and rebuilds its "
        "state from them, so a restart gives the same figures; one worker per app id.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port]")
    p.add_argument("--web-port", type=int, help="HTTP port of /metrics, /report, /status")
    p.add_argument("--web-host", help="interface the HTTP server binds to")
    p.add_argument("--app-id", help="faust app id, also the Kafka consumer group")
    p.add_argument("--topic-prefix", help="prefix of every topic name (default: none)")
    p.add_argument("--loglevel", choices=LOGLEVELS, default="info")
    p.add_argument("--logfile", help="write logs here instead of standard error")
    p.add_argument(
        "--broker-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for the broker to answer before giving up (default 60)",
    )
    p.add_argument(
        "--group-wait",
        type=float,
        default=75.0,
        metavar="SECONDS",
        help="wait this long for another member of the app id's consumer group to leave "
        "before giving up (default 75: a killed worker's session expires after 60 s)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the options given on the command line winning."""
    overrides: dict[str, Any] = {
        "bootstrap": args.bootstrap,
        "web_port": args.web_port,
        "web_host": args.web_host,
        "app_id": args.app_id,
        "topic_prefix": args.topic_prefix,
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


async def _prepare_topics(settings: Settings, wait_s: float, group_wait_s: float) -> None:
    """Wait for the broker and make sure the worker's topics exist and are co-partitioned.

    With batch ingestion (the default) each partition's state comes back from its snapshots
    (`streams.keeper`), so any number of workers may share the group. faust's agent path keeps
    its state in memory only: it rewinds the group and runs alone.
    """
    from streams.kafka_access import BrokerAccessDenied, check_access
    from streams.topics import (
        GroupInUse,
        TopicLayoutError,
        all_topics,
        check_copartitioned,
        create_changelog,
        create_topics,
        rewind_group,
    )

    started = time.monotonic()
    deadline = started + wait_s
    told_group = False
    rewound = 0
    while True:
        try:
            await check_access(settings)
            await create_topics(settings, all_topics(settings))
            if settings.batch_ingest:
                await create_changelog(settings)
                counts = await check_copartitioned(settings)
                from streams import keeper

                keeper.SOURCE_PARTITIONS = counts[settings.source_topics[0]]
                break
            # The agent path's ledger is in memory: a restarted worker reads its topics again
            # from the start. (A broker that has just started may have no group coordinator.)
            rewound = await rewind_group(settings)
            break
        except (TopicLayoutError, BrokerAccessDenied):
            raise
        except GroupInUse as exc:
            # A worker killed without leaving stays a member until its session times out
            # (faust: 60 s); one still running never leaves, and this one gives up.
            if time.monotonic() - started >= group_wait_s:
                raise
            if not told_group:
                told_group = True
                print(
                    f"livepulse worker: {exc}; waiting up to {group_wait_s:.0f} s for it to "
                    "leave (a crashed worker's membership expires after its session timeout)",
                    file=sys.stderr,
                )
            await asyncio.sleep(2.0)
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("broker %s not ready (%s); retrying", settings.bootstrap, exc)
            await asyncio.sleep(2.0)
    if rewound:
        print(
            f"livepulse worker: app id {settings.app_id} ran before; rebuilding its state from "
            f"the start of {rewound} partitions",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from streams.compression import check_codecs
    from streams.kafka_access import BrokerAccessDenied
    from streams.topics import GroupInUse, TopicLayoutError

    try:
        check_codecs()  # at start, not when the first compressed batch arrives
    except RuntimeError as exc:
        print(f"livepulse worker: {exc}", file=sys.stderr)
        return 2

    try:
        asyncio.run(_prepare_topics(settings, args.broker_wait, args.group_wait))
    except (GroupInUse, TopicLayoutError, BrokerAccessDenied) as exc:
        print(f"livepulse worker: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"livepulse worker: cannot use broker {settings.bootstrap}: {exc}", file=sys.stderr)
        return 2
    return run_worker(settings, loglevel=args.loglevel, logfile=args.logfile)


def run_worker(settings: Settings, *, loglevel: str = "info", logfile: str | None = None) -> int:
    """Run the worker until SIGINT/SIGTERM; return its exit code."""
    import faust

    from streams.app import configure

    app = configure(settings)
    # What `faust -A ... worker` does before starting a worker (faust.cli.base.prepare_app):
    # autodiscovery imports agents.live and streams.web, which attach to this app.
    app.finalize()
    app.worker_init()
    app.discover()
    app.worker_init_post_autodiscover()
    from streams.gcpace import CLOCK

    CLOCK.install()  # time in the collector, for /status (a callback a collection)
    if settings.batch_ingest:
        from streams import keeper
        from streams.statestore import StateStoreError

        try:
            state_keeper = keeper.install(app, settings)
        except StateStoreError as exc:
            print(f"livepulse worker: {exc}", file=sys.stderr)
            return 2
        _watch_topology(app, settings, state_keeper)
    if settings.gc_pace_records:
        from agents.live import live
        from streams.gcpace import GcPacer

        # Start-up's objects (modules, faust's app) are frozen now, the ledger's as it grows.
        live.gc = GcPacer(every_records=settings.gc_pace_records).install()
        live.gc.start()
    if loglevel != "debug":
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    # mode's Worker owns the event loop; on Python >= 3.10 there is no implicit one to take.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        logfile=logfile,
        loop=loop,
        # Keep print() from ending up in the log as WARNING lines.
        redirect_stdouts=False,
    )

    @app.task  # type: ignore[untyped-decorator]  # runs once the worker has started
    async def announce() -> None:
        log.info(
            "worker %s reading %s; http://%s:%d/metrics, /report, /status",
            settings.app_id,
            ", ".join(settings.source_topics),
            settings.web_host,
            settings.web_port,
        )

    try:
        worker.execute_from_commandline()  # installs SIGINT/SIGTERM handlers, stops cleanly
    except SystemExit as exc:
        if _exit_code is not None:
            return _exit_code
        return exc.code if isinstance(exc.code, int) else 1
    return _exit_code or 0


def _watch_topology(app: Any, settings: Settings, state_keeper: Any) -> None:
    """Watch the contract topics while the worker runs (`streams.topology`): partitions added
    since the start go on /metrics and into the lag, deleted records into the lost count."""
    import os
    import signal

    from agents.live import live
    from streams import keeper, web
    from streams.topology import (
        RECREATED_EXIT,
        WATCH_EVERY_S,
        TopologyWatch,
        UnreadPartitionsCollector,
    )

    watch = TopologyWatch(settings, lambda: keeper.SOURCE_PARTITIONS)
    state_keeper.log_starts = watch.log_starts
    web.consumer_lag.unread = watch.unread_lag
    live.metrics.registry.register(
        UnreadPartitionsCollector(watch.unread, list(settings.source_topics))
    )

    @app.timer(WATCH_EVERY_S, name="livepulse.topology")  # type: ignore[untyped-decorator]
    async def look() -> None:
        global _exit_code
        try:
            await watch.look()
        except Exception as exc:  # the broker away: the next look will tell
            log.warning("could not read the contract topics' partitions: %s", exc)
            return
        recreated = watch.recreated(live.positions)
        if recreated and _exit_code is None:
            topic, partition, end, position = recreated[0]
            log.error(
                "%s partition %d ends at offset %d, before this worker's position %d (%d "
                "partitions alike): the topic was deleted and re-created; stopping (exit code "
                "%d) so that a restart reads the re-created topics from the beginning",
                topic,
                partition,
                end,
                position,
                len(recreated),
                RECREATED_EXIT,
            )
            _exit_code = RECREATED_EXIT
            os.kill(os.getpid(), signal.SIGTERM)  # a clean stop: snapshots flushed

    async def close(sender: Any = None, **kwargs: Any) -> None:
        await watch.close()

    app.on_before_shutdown.connect(close)


def main(argv: list[str] | None = None) -> int:
    """`python -m streams.commands.worker ...`: the worker alone, without the other commands."""
    parser = argparse.ArgumentParser(prog="livepulse worker")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
