"""The `livepulse` command line: one sub-command per module in `streams.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

# Sub-command modules; each defines `register(subparsers)` which adds its parser and sets
# `func` (args -> exit code). Imported lazily so `livepulse schema` does not load Faust.
COMMAND_MODULES = (
    "schema",
    "simulate",
    "kafka",
    "replay",
    "worker",
    "analyze",
    "report",
    "demo",
)


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line: `livepulse worker: --web-port: ...`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def package_version() -> str:
    """The installed livepulse's version."""
    try:
        return version("livepulse")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="livepulse",
        description="Real-time analytics for live-stream commerce, and a check of the "
        "published claims about it.",
    )
    parser.add_argument("--version", action="version", version=f"livepulse {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"streams.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "worker":
        # The Kafka client logs each failed connection attempt; the commands say in one line
        # what failed (the worker keeps its logs: they are its record of what happened).
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`livepulse kafka status | head`): stop quietly, as a Unix
        # tool does, and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except Exception as exc:  # a failure no command foresaw: still one line, no traceback
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        print(f"livepulse {args.command}: unexpected error: {reason}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
