"""The worker's tables catching up on a broker (issue 19, session 18): a `MembershipReader` reads
the orders topic into a `WorkerRefundTable`, or the groups topic into a `MembershipTable`, from
its beginning as a worker does at its start, and the process CPU (`time.process_time`, the
fetches included) until the table has caught up is printed a table record, as JSON lines
(after one pass of each table not printed: the first connection and imports).

    python -m bench.table_catchup --bootstrap HOST:PORT --prefix PREFIX [--rounds 3]
        [--paths plain,events]

PREFIX: the topics' prefix (`Settings.topic_prefix`), e.g. those `python -m bench ...
--keep-topics` preloaded. `--paths`: each table read through the plain decode and through
event objects (`ReadTable.plain`), alternating, the order swapped every other round; a tree
without `ReadTable.plain` has one path. The tables and the paths' turns are
`bench.table_ingest`'s (`tables`, `read_paths`, `turn`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any

from bench.table_ingest import TOPICS, made, read_paths, tables, turn
from streams.runtime.membership import MembershipReader
from streams.runtime.settings import Settings


async def _catch_up(settings: Settings, name: str, path: str) -> dict[str, Any]:
    table: Any = made(tables(settings)[name], path)
    topic = settings.topic(TOPICS[name])
    reader = MembershipReader(settings, topic, table, name=name)
    gc.collect()
    began_cpu, began = time.process_time(), time.perf_counter()
    reader.start()
    waiter = asyncio.ensure_future(table.caught_up.wait())
    done = asyncio.ensure_future(reader.done.wait())
    await asyncio.wait([waiter, done], timeout=300, return_when=asyncio.FIRST_COMPLETED)
    cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
    await reader.stop()
    if not table.caught_up.is_set():
        raise RuntimeError(f"the {name} table did not catch up on {topic}")
    return {
        "table": name,
        "path": path,
        "records": table.records,
        "rejected": table.rejected,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "us_a_record": round(cpu / max(table.records, 1) * 1e6, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", default="")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    settings = Settings(bootstrap=args.bootstrap, topic_prefix=args.prefix)
    paths = read_paths(args.paths)
    for name in TOPICS:  # a first connection and its imports: not counted
        asyncio.run(_catch_up(settings, name, paths[0] if paths else ""))
    for round_no in range(args.rounds):
        for name in TOPICS:
            for path in turn(paths, round_no):
                row = asyncio.run(_catch_up(settings, name, path))
                row = {"label": args.label, "round": round_no, **row}
                print(json.dumps(row), flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
