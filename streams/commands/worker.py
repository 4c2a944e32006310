"""`livepulse worker`: run the faust worker (agents, /metrics, /report, /status) in-process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Final

from streams.commands import options
from streams.commands.options import one_line
from streams.runtime.settings import Settings

log = logging.getLogger("livepulse.worker")

LOGLEVELS = ("debug", "info", "warning", "error")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="run the stream processor (faust worker) with its web views",
        description="Consume the contract topics (created if missing), dead-letter invalid "
        "records, and serve /metrics, /report and /status. Options win over the LIVEPULSE_* "
        "environment variables, which win over the defaults. Each partition's state is "
        "snapshotted to the changelog topic <app id>-state-changelog and to a RocksDB store in "
        "the data directory, with the source positions it covers: a restarted worker, or "
        "whichever worker gets the partition, restores it and reads on from there, so every "
        "record counts once. Any number of workers started with one app id share the "
        "partitions (scale-out); each needs a data directory of its own. A worker that stops "
        "heartbeating leaves the group after the session timeout (LIVEPULSE_SESSION_TIMEOUT_S, "
        f"{Settings.model_fields['session_timeout_s'].default:g} s by default) and its "
        "partitions move on.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port]")
    p.add_argument(
        "--web-port", type=options.port, help="HTTP port of /metrics, /report, /status (6066)"
    )
    p.add_argument("--web-host", help="interface the HTTP server binds to (127.0.0.1)")
    p.add_argument(
        "--app-id",
        help="faust app id: the Kafka consumer group the workers share and the changelog "
        "topic's name (<app id>-state-changelog); default livepulse",
    )
    p.add_argument("--topic-prefix", help="prefix of every topic name (default: none)")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="the worker's own directory for its RocksDB state store (default data)",
    )
    p.add_argument(
        "--loglevel",
        choices=LOGLEVELS,
        default="info",
        help="info: livepulse's own steps, faust's and aiokafka's warnings; debug: everything",
    )
    p.add_argument("--logfile", help="write logs here instead of standard error")
    p.add_argument(
        "--broker-wait",
        type=options.non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for the broker to answer before giving up (default 60)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the options given on the command line winning."""
    overrides: dict[str, Any] = {
        "bootstrap": args.bootstrap,
        "web_port": args.web_port,
        "web_host": args.web_host,
        "app_id": args.app_id,
        "topic_prefix": args.topic_prefix,
        "data_dir": args.data_dir,
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


async def _prepare_topics(settings: Settings, wait_s: float) -> int:
    """Wait for the broker and make sure the worker's topics exist and are co-partitioned;
    return the partition count of each contract topic (the state's layout).

    Each partition's state comes back from its snapshots (`streams.runtime.keeper`), so any
    number of workers may share the group.
    """
    from streams.runtime.kafka_access import BrokerAccessDenied, check_access
    from streams.runtime.topics import (
        TopicLayoutError,
        all_topics,
        check_copartitioned,
        check_orders_retention,
        create_changelog,
        create_month_rows_topic,
        create_topics,
        orders_retention_needed_ms,
    )

    deadline = time.monotonic() + wait_s
    told_broker = False
    while True:
        try:
            await check_access(settings)
            await create_topics(settings, all_topics(settings))
            await create_changelog(settings)
            counts = await check_copartitioned(settings)
            await create_month_rows_topic(settings, counts[settings.source_topics[0]])
            try:
                warning = await check_orders_retention(settings)
            except Exception as exc:  # a broker that refuses DescribeConfigs: say so, go on
                warning = f"could not read the orders topic's retention.ms ({one_line(exc)})"
                if orders_retention_needed_ms(settings) is None:
                    warning = None
            if warning:
                log.warning("%s", warning)
                print(f"livepulse worker: warning: {warning}", file=sys.stderr)
            return counts[settings.source_topics[0]]
        except (TopicLayoutError, BrokerAccessDenied):
            raise
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise
            if not told_broker:
                told_broker = True
                print(
                    f"livepulse worker: broker {settings.bootstrap} does not answer yet "
                    f"({one_line(exc)}); retrying for up to {wait_s:.0f} s",
                    file=sys.stderr,
                )
            log.debug("broker %s not ready (%s); retrying", settings.bootstrap, exc)
            await asyncio.sleep(2.0)


#: Settings of the agent ingest path, removed in issue 16: a worker that finds one says it
#: ignores it (pydantic-settings would skip an unknown variable without a word).
REMOVED_SETTINGS: Final[tuple[str, ...]] = (
    "LIVEPULSE_BATCH_INGEST",
    "LIVEPULSE_BATCH_SIZE",
    "LIVEPULSE_BATCH_WITHIN_S",
)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from streams.runtime.compression import check_codecs
    from streams.runtime.kafka_access import BrokerAccessDenied
    from streams.runtime.topics import TopicLayoutError
    from streams.tools.worker_process import port_is_free

    for name in REMOVED_SETTINGS:
        if name in os.environ:
            print(
                f"livepulse worker: {name} is no longer used (each fetch is ingested as one "
                "batch, the only ingest path); ignoring it",
                file=sys.stderr,
            )
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"livepulse worker: {options.settings_error(exc)}", file=sys.stderr)
        return 2
    if not port_is_free(settings.web_host, settings.web_port):
        print(
            f"livepulse worker: port {settings.web_port} on {settings.web_host} is in use "
            "(another worker?); choose another with --web-port",
            file=sys.stderr,
        )
        return 2
    try:
        check_codecs()  # at start, not when the first compressed batch arrives
    except RuntimeError as exc:
        print(f"livepulse worker: {exc}", file=sys.stderr)
        return 2

    # aiokafka logs every failed connection while the broker is awaited; the wait says it once.
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        source_partitions = asyncio.run(_prepare_topics(settings, args.broker_wait))
    except (TopicLayoutError, BrokerAccessDenied) as exc:
        print(f"livepulse worker: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(
            f"livepulse worker: cannot use broker {settings.bootstrap}: {one_line(exc)}",
            file=sys.stderr,
        )
        return 2
    finally:
        aiokafka_log.setLevel(aiokafka_level)
    return run_worker(settings, source_partitions, loglevel=args.loglevel, logfile=args.logfile)


def run_worker(
    settings: Settings,
    source_partitions: int | None,
    *,
    loglevel: str = "info",
    logfile: str | None = None,
) -> int:
    """Build the worker from `settings` (`streams.runtime.worker.Worker`: every part and how a
    record flows through them) and run it until SIGINT/SIGTERM; return its exit code."""
    from streams.runtime.statestore import StateStoreError
    from streams.runtime.worker import Worker

    try:
        worker = Worker(settings, source_partitions=source_partitions)
    except StateStoreError as exc:
        print(f"livepulse worker: {exc}", file=sys.stderr)
        return 2
    return worker.run(loglevel=loglevel, logfile=logfile)


def main(argv: list[str] | None = None) -> int:
    """`python -m streams.commands.worker ...`: the worker alone, without the other commands."""
    parser = argparse.ArgumentParser(prog="livepulse worker")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
