"""Summarise a `py-spy record --format raw` file: the share of samples per function, self and total.

py-spy record -p <worker pid> -d 20 -r 50 -f raw -o stacks.txt --nonblocking
python -m bench.profile stacks.txt > bench/profiles/NAME.txt
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path


def _name(frame: str) -> str:
    if " (" not in frame:
        return frame
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].split('/')[-1]})"


def summarise(path: Path, top: int = 40) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = [_name(f) for f in stack.split(";")]
        for name in set(frames):
            total[name] += count
        own[frames[-1]] += count
    out = [f"samples: {samples}", "", f"self time, top {top}:"]
    out += [f"{100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(top)]
    out += ["", f"total time (function and its callees), top {top}:"]
    out += [f"{100 * n / samples:5.1f}%  {name}" for name, n in total.most_common(top)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summarise(Path(sys.argv[1])))
