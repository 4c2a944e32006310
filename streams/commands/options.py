"""What the sub-commands share about their input: option types (a value out of range is a usage
error, exit 2), input file checks, and settings errors on one line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeVar

import orjson
from pydantic import ValidationError

_N = TypeVar("_N", int, float)


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    value = _number(text, int, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1-65535)")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be zero or a positive number")
    return value


def _number(text: str, kind: type[_N], what: str) -> _N:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def settings_error(exc: ValidationError) -> str:
    """A settings validation error on one line, naming the option or variable at fault."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        option = "--" + field.replace("_", "-")
        problems.append(f"{option} (LIVEPULSE_{field.upper()}): {error['msg']}")
    return "; ".join(problems)


#: Lines looked at by `jsonl_problem`: one JSON object among them makes a file JSON Lines.
_SNIFF_LINES = 100


def jsonl_problem(path: Path) -> str | None:
    """Why `path` cannot be read as JSON Lines (one line to print), or None if it can.

    A file whose first lines hold no JSON object at all (a CSV, a JSON array, a compressed
    file...) is refused; a JSON Lines file with some bad lines is not: those lines are records
    the pipeline rejects and counts, as on a topic.
    """
    if not path.exists():
        return f"no such file: {path}"
    if path.is_dir():
        return f"{path} is a directory, not a JSON Lines file"
    try:
        with path.open("rb") as handle:
            seen = 0
            for line in handle:
                if not line.strip():
                    continue
                try:
                    if isinstance(orjson.loads(line), dict):
                        return None
                except orjson.JSONDecodeError:
                    pass
                seen += 1
                if seen == _SNIFF_LINES:
                    break
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if seen == 0:
        return None  # empty: no records, an empty report
    return (
        f"{path} is not JSON Lines: none of its first {seen} lines is a JSON object "
        "(one event a line)"
    )


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and its message's first line."""
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not text:
        return name
    return text[0] if text[0].startswith(name) else f"{name}: {text[0]}"
