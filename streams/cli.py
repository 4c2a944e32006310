"""The `livepulse` command line: one sub-command per module in `streams.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livepulse",
        description="Real-time analytics for live-stream commerce, and a check of the "
        "published claims about it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"streams.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
