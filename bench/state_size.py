"""`python -m bench.state_size FILE...`: events, pickle and dumped sizes and dump / load times
of the partition state after feeding each JSON Lines file (the table in agents/core/persist.py).
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

from agents.core import Ledger, OperatorBoard
from agents.core.persist import dump_state, load_state
from streams.tools.analyze import analyze_records, iter_records


def measure(paths: list[str]) -> None:
    """Print events, pickle and dumped sizes and dump / load times of JSON Lines files."""
    for name in paths:
        ledger, board = Ledger(), OperatorBoard()
        analyze_records(iter_records(Path(name)), ledger, board)
        raw = len(pickle.dumps((ledger, board), protocol=5))  # persist's protocol
        started = time.perf_counter()
        data = dump_state(ledger, board)
        dumped = time.perf_counter()
        load_state(data)
        loaded = time.perf_counter()
        sys.stdout.write(
            f"{name}: {ledger.counts.valid:,} events, pickle {raw / 1e6:.2f} MB, dumped "
            f"{len(data) / 1e6:.2f} MB, dump {dumped - started:.3f} s, "
            f"load {loaded - dumped:.3f} s\n"
        )


if __name__ == "__main__":
    measure(sys.argv[1:])
