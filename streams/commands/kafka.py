"""`livepulse kafka up|down|status`: the project's own local Kafka broker."""

from __future__ import annotations

import argparse
import json
import sys
import time

from streams.commands import options
from streams.tools.kafka import KafkaLocalError, admin, download, process


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "kafka",
        help=f"run a local Apache Kafka {download.KAFKA_VERSION} broker (KRaft, one node)",
        description=f"Fetch (once, with Maven), start, stop or inspect a local Apache Kafka "
        f"{download.KAFKA_VERSION} broker. Jars are cached in $"
        f"{download.ENV_CACHE_DIR} (default ~/.cache/livepulse), data and logs live in $"
        f"{process.ENV_STATE_DIR} (default ~/.local/state/livepulse/kafka).",
    )
    actions = p.add_subparsers(dest="kafka_action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="start the broker (if needed) and create the topics")
    up.add_argument(
        "--port", type=options.port, default=process.DEFAULT_PORT, help="bootstrap port (9092)"
    )
    up.add_argument(
        "--controller-port", type=options.port, help="KRaft controller port (default: --port + 1)"
    )
    up.add_argument(
        "--partitions",
        type=options.positive_int,
        default=process.DEFAULT_PARTITIONS,
        help="partitions of each contract topic (4)",
    )
    up.add_argument(
        "--timeout",
        type=options.positive_float,
        default=process.DEFAULT_START_TIMEOUT_S,
        metavar="SECONDS",
        help="seconds to wait for the broker to answer (120)",
    )
    down = actions.add_parser("down", help="stop the broker")
    down.add_argument("--purge", action="store_true", help="also delete its data and logs")
    down.add_argument(
        "--timeout",
        type=options.positive_float,
        default=process.DEFAULT_STOP_TIMEOUT_S,
        metavar="SECONDS",
        help="seconds to wait after SIGTERM before SIGKILL (30)",
    )
    state = actions.add_parser(
        "status", help="is it running; pid, bootstrap, topics (exit 1 if not)"
    )
    state.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.kafka_action == "up":
            return _up(args)
        if args.kafka_action == "down":
            return _down(args)
        return _status(args)
    except KafkaLocalError as exc:
        print(f"livepulse kafka {args.kafka_action}: {exc}", file=sys.stderr)
        return 1


def _up(args: argparse.Namespace) -> int:
    bootstrap = process.ensure_up(
        args.port,
        args.partitions,
        controller_port=args.controller_port,
        timeout_s=args.timeout,
    )
    print(bootstrap)  # stdout: usable as BOOTSTRAP=$(livepulse kafka up)
    return 0


def _down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    was_running = process.stop(purge=args.purge, timeout_s=args.timeout)
    if was_running:
        print(f"broker stopped in {time.monotonic() - started:.1f} s", file=sys.stderr)
    else:
        print("broker was not running", file=sys.stderr)
    if args.purge:
        print(f"deleted its data under {process.state_dir()}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    state = process.status()
    if args.json:
        print(
            json.dumps(
                {
                    "running": state.running,
                    "pid": state.pid,
                    "bootstrap": state.bootstrap,
                    "cluster_id": state.cluster_id,
                    "state_dir": str(state.state_dir),
                    "log": str(state.log_path),
                    "topics": state.topics,
                },
                indent=2,
            )
        )
    elif state.running:
        print(f"running  pid {state.pid}  bootstrap {state.bootstrap}  cluster {state.cluster_id}")
        print(f"state    {state.state_dir}  (log {state.log_path})")
        missing = [name for name in admin.contract_topics() if name not in state.topics]
        print(
            f"topics   {len(state.topics)}"
            + (f"  (missing: {', '.join(missing)})" if missing else "")
        )
        width = max((len(name) for name in state.topics), default=0)
        for name, partitions in state.topics.items():
            print(f"  {name:<{width}}  {partitions} partition{'s' if partitions != 1 else ''}")
    elif state.pid is not None:
        print(
            f"not answering  pid {state.pid} is alive but nothing answers at {state.bootstrap}; "
            f"see {state.log_path}"
        )
    else:
        print(f"not running  (state {state.state_dir})")
    return 0 if state.running else 1
