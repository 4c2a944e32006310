"""Progress bars (tqdm) for long work, drawn on a terminal only: pipes and logs stay quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_CHUNK_BYTES = 1 << 20


def on_terminal(stream: IO[str] | None) -> bool:
    """Whether `stream` is a terminal (a bar drawn anywhere else would litter a pipe or log)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def bar(
    *,
    desc: str,
    total: float | None = None,
    unit: str = "records",
    stream: IO[str] | None = None,
    bytes_scale: bool = False,
    bar_format: str | None = None,
) -> tqdm[Any]:
    """A progress bar on `stream` (standard error by default), disabled unless it is a terminal.

    With a total it shows done/total, the rate and the time left; without one, the count,
    the rate and the time spent.
    """
    out = stream if stream is not None else sys.stderr
    return tqdm(
        total=total,
        desc=desc,
        unit="B" if bytes_scale else f" {unit}",
        unit_scale=True,
        unit_divisor=1024 if bytes_scale else 1000,
        file=out,
        disable=not on_terminal(out),
        leave=False,  # the command prints its own summary line when done
        mininterval=0.2,
        dynamic_ncols=True,
        bar_format=bar_format,
    )


def track(
    items: Iterable[T], *, desc: str, total: int | None, stream: IO[str] | None = None
) -> Iterator[T]:
    """`items`, counted on a bar (see `bar`) as they are consumed."""
    with bar(desc=desc, total=total, stream=stream) as progress:
        if progress.disable:
            yield from items
            return
        pending = 0
        for item in items:
            yield item
            pending += 1
            if pending == 1000:  # tqdm.update per item would cost more than the work here
                progress.update(pending)
                pending = 0
        progress.update(pending)


def count_lines(path: Path) -> int:
    """The number of lines of a file (a last line without `\\n` counts), read in chunks."""
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")
