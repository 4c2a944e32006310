"""`livepulse replay FILE.jsonl`: publish a fixture's lines to the contract topics."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from streams.commands import options
from streams.commands.options import one_line

#: streams.tools.replayer's default, named here so that parsing the command line does not load
#: Kafka.
DEFAULT_FALLBACK_TOPIC = "live.interactions"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="publish a JSON Lines file to the contract topics",
        description="Publish each line, unchanged, to the contract topic of its type with its "
        "contract key, in file order per key: as fast as possible, at a fixed rate, or at a "
        "speed-up of event time. Lines that are not JSON objects with a known type go to the "
        f"fallback topic (default {DEFAULT_FALLBACK_TOPIC}), where the worker dead-letters them; "
        'with --fallback-topic "" they are counted as rejected and not sent.',
    )
    p.add_argument("file", type=Path, help="JSON Lines file (one event a line)")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port]")
    p.add_argument("--topic-prefix", help="prefix of every topic name (default: none)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate", type=options.positive_float, metavar="EVENTS_PER_S", help="fixed send rate"
    )
    pace.add_argument(
        "--speedup",
        type=options.positive_float,
        metavar="X",
        help="follow event time (ts), X times faster",
    )
    p.add_argument(
        "--fallback-topic",
        default=DEFAULT_FALLBACK_TOPIC,
        metavar="TOPIC",
        help=f'topic for lines with no routable type (default {DEFAULT_FALLBACK_TOPIC}; "": skip)',
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from streams.runtime.kafka_access import access_denied
    from streams.runtime.settings import Settings
    from streams.tools.progress import count_lines, on_terminal
    from streams.tools.replayer import Progress, replay

    problem = options.jsonl_problem(args.file)
    if problem is not None:
        print(f"livepulse replay: {problem}", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {"bootstrap": args.bootstrap, "topic_prefix": args.topic_prefix}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        print(f"livepulse replay: {options.settings_error(exc)}", file=sys.stderr)
        return 2
    denied = asyncio.run(access_denied(settings))
    if denied is not None:
        print(f"livepulse replay: {denied}", file=sys.stderr)
        return 2
    total = count_lines(args.file) if on_terminal(sys.stderr) else None
    try:
        asyncio.run(
            replay(
                args.file,
                settings,
                rate=args.rate,
                speedup=args.speedup,
                fallback_topic=args.fallback_topic or None,
                progress=Progress(sys.stderr, total),
            )
        )
    except ValueError as exc:
        print(f"livepulse replay: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # broker unreachable or refusing records
        print(
            f"livepulse replay: failed with broker {settings.bootstrap}: {one_line(exc)}",
            file=sys.stderr,
        )
        return 1
    return 0
