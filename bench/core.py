"""Offline measurements of the metric core: state per concurrent viewer, cost per event by size.

Both feed synthetic contract records (bytes, as on a topic) through the worker's core:
`schemas.decode`, `Ledger.apply`, `OperatorBoard.observe`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pydantic_core

from agents.core import Ledger, OperatorBoard
from agents.core.ingest import ingest
from bench.proc import rss_bytes
from streams.runtime.gcpace import GcPacer

DAY_MS = 86_400_000
T0 = 1_735_660_800_000  # 2025-01-01 00:00 +08:00


def session_records(
    day: int, room: int, viewers: int, counter: Iterator[int], *, leave: bool = True
) -> list[bytes]:
    """One two-hour session of a room on a day: start, viewers joining (30% interact, 3% order,
    all leave unless `leave` is False), end. Ids look like the simulator's."""
    sid = f"s-{day}-{room}"
    start = T0 + day * DAY_MS + room * 1000
    out = [
        {
            "type": "session_started",
            "event_id": f"e-{next(counter)}",
            "ts": start,
            "session_id": sid,
            "room_id": f"r-{room}",
            "merchant_id": f"m-{room % 50}",
        },
    ]
    for v in range(viewers):
        uid = f"u-{(room * 7919 + v * 104_729 + day) % 10_000_000}"
        joined = start + 1000 + (v * 6_000_000) // max(1, viewers)
        out.append(
            {
                "type": "viewer_joined",
                "event_id": f"e-{next(counter)}",
                "ts": joined,
                "session_id": sid,
                "user_id": uid,
                "source": "feed",
            }
        )
        if v % 10 < 3:
            out.append(
                {
                    "type": "interaction",
                    "event_id": f"e-{next(counter)}",
                    "ts": joined + 30_000,
                    "session_id": sid,
                    "user_id": uid,
                    "kind": "like",
                }
            )
        if v % 100 < 3:
            out.append(
                {
                    "type": "order_paid",
                    "event_id": f"e-{next(counter)}",
                    "ts": joined + 60_000,
                    "order_id": f"o-{next(counter)}",
                    "session_id": sid,
                    "merchant_id": f"m-{room % 50}",
                    "user_id": uid,
                    "amount_cents": 9900,
                    "items": [
                        {
                            "sku_id": "k-1",
                            "category": "beauty",
                            "unit_price_cents": 9900,
                            "quantity": 1,
                        }
                    ],
                }
            )
        if leave:
            out.append(
                {
                    "type": "viewer_left",
                    "event_id": f"e-{next(counter)}",
                    "ts": joined + 600_000,
                    "session_id": sid,
                    "user_id": uid,
                }
            )
    if leave:
        out.append(
            {
                "type": "session_ended",
                "event_id": f"e-{next(counter)}",
                "ts": start + 7_200_000,
                "session_id": sid,
            }
        )
    out.sort(key=lambda body: int(body["ts"]))  # type: ignore[call-overload]
    return [orjson.dumps(body) for body in out]


#: `stream`'s id shapes: the simulator's (`e-N`, growing) or UUIDs as a random version 4's
#: (36 characters, lower case, in no order), the same for the same record in any run.
ID_SHAPES: tuple[str, ...] = ("short", "uuid")
_SHORT_ID = re.compile(rb'"event_id":"e-([0-9]+)"')


def _uuid_id(match: re.Match[bytes]) -> bytes:
    digest = bytearray(hashlib.blake2b(match[1], digest_size=16).digest())
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC's variant
    hexed = digest.hex().encode()
    return b'"event_id":"%s-%s-%s-%s-%s"' % (
        hexed[:8],
        hexed[8:12],
        hexed[12:16],
        hexed[16:20],
        hexed[20:],
    )


def stream(
    rooms: int, viewers: int, days: int, *, leave: bool = True, ids: str = "short"
) -> list[bytes]:
    counter = iter(range(1, 1 << 62))
    records: list[bytes] = []
    for day in range(days):
        for room in range(rooms):
            records.extend(session_records(day, room, viewers, counter, leave=leave))
    if ids == "uuid":
        records = [_SHORT_ID.sub(_uuid_id, line) for line in records]
    elif ids != "short":
        raise ValueError(f"ids: one of {ID_SHAPES}")
    return records


def apply(
    records: list[bytes], ledger: Ledger, board: OperatorBoard, pacer: GcPacer | None = None
) -> None:
    """The worker's per-record core; `pacer` is told every 1,000 records (a worker's batch)."""
    for count, raw in enumerate(records, 1):
        ingest(raw, ledger, board)
        if pacer is not None and count % 1000 == 0:
            pacer.after(1000)


def warm_up() -> tuple[Ledger, OperatorBoard]:
    """Decode and apply 20,000 viewers of other rooms and users into a ledger the caller keeps
    alive (so its memory is not freed and reused by the measured one, which would hide RSS
    growth). What the measurement then counts is the state the viewers add, not memory a
    running worker has filled long before: pydantic-core's JSON string cache (`cache_strings`,
    a fixed 16,384 entries that keep up to 64-character strings alive, process-wide, ~0.9 MB
    once full), and first-use allocations of the decoder and the core."""
    records = [line.replace(b'"u-', b'"w-').replace(b'"s-', b'"x-') for line in stream(20, 1000, 1)]
    ledger, board = Ledger(), OperatorBoard()
    apply(records, ledger, board)
    return ledger, board


#: Distinct strings `_flush_string_cache` parses: 12 times pydantic-core's 16,384 cache entries
#: (by hash), so that of the strings the cache held before, a share of e**-12 is left in it.
_CACHE_FLUSH_STRINGS = 12 * 16_384


def _flush_string_cache() -> None:
    """Push every string out of pydantic-core's process-wide JSON string cache by parsing as
    many others (held by the cache from then on, allocated on this function's line)."""
    pydantic_core.from_json(orjson.dumps([f"f{n}" for n in range(_CACHE_FLUSH_STRINGS)]))


def state_once(
    viewers: int, traced: bool, warm: bool = True, by_line: int = 0, ids: str = "short"
) -> dict[str, object]:
    """Memory of the core with `viewers` concurrent viewers (rooms of 1,000, nobody left);
    `warm`: after `warm_up` (a running worker's steady state), else from a fresh process;
    `by_line` (traced): also the lines that allocated the most of what is kept, bytes per
    viewer, that many; `ids`: the event ids' shape (`ID_SHAPES`).

    Traced, `traced_bytes` counts the strings of the measured records that pydantic-core's
    string cache still holds (a bounded ~0.9 MB a process, full before as after: the warm-up's
    strings it dropped for them were allocated before tracing, so their bytes are not taken
    off): ~40-60 B a viewer at 10,000 viewers, 5-8 at 100,000. `traced_state_bytes` is what is
    left once the cache holds none of them (`_flush_string_cache`; its own strings not
    counted): what the ledger and the board keep."""
    rooms = max(1, viewers // 1000)
    records = stream(rooms, viewers // rooms, 1, leave=False, ids=ids)
    warmed = warm_up() if warm else None
    # The line whose strings the cache flush leaves (read before tracing: `linecache`'s copy
    # of this file is not the state's).
    source, first = inspect.getsourcelines(_flush_string_cache)
    flush_line = first + next(n for n, line in enumerate(source) if "from_json(" in line)
    gc.collect()
    rss0 = rss_bytes()
    if traced:
        tracemalloc.start()
    ledger, board = Ledger(), OperatorBoard()
    apply(records, ledger, board)
    gc.collect()
    out: dict[str, object] = {"records": len(records), "viewers": viewers, "ids": ids}
    if traced:
        out["traced_bytes"] = tracemalloc.get_traced_memory()[0]
        _flush_string_cache()
        gc.collect()
        kept = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, __file__, flush_line)]
        )
        out["traced_state_bytes"] = sum(stat.size for stat in kept.statistics("filename"))
        if by_line:
            stats = kept.statistics("lineno")[:by_line]
            out["by_line"] = [
                [f"{s.traceback[0].filename}:{s.traceback[0].lineno}", round(s.size / viewers, 1)]
                for s in stats
            ]
        tracemalloc.stop()
    else:
        out["rss_bytes"] = rss_bytes() - rss0
    del ledger, board, warmed
    return out


#: measure_state's modes: (result key, `bench.core state` mode argument).
STATE_MODES: tuple[tuple[str, str], ...] = (
    ("rss_bytes_per_viewer", "rss"),
    ("traced_bytes_per_viewer", "traced"),
    ("traced_cold_bytes_per_viewer", "traced-cold"),
)


def measure_state(sizes: list[int], repeat: int) -> dict[str, object]:
    """Per size: RSS growth and tracemalloc'ed bytes per concurrent viewer after a warm-up,
    and traced bytes from a cold process (fresh processes each)."""
    out: dict[str, object] = {}
    for viewers in sizes:
        per_mode: dict[str, list[float]] = {key: [] for key, _ in STATE_MODES}
        records = 0
        for _ in range(repeat):
            for key, mode in STATE_MODES:
                text = subprocess.run(  # noqa: S603 (our interpreter and module)
                    [sys.executable, "-m", "bench.core", "state", str(viewers), mode],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                ).stdout
                result = json.loads(text)
                records = int(result["records"])
                measured = result["rss_bytes"] if mode == "rss" else result["traced_bytes"]
                per_mode[key].append(measured / viewers)
        out[str(viewers)] = {key: _summary(values) for key, values in per_mode.items()}
        out[str(viewers)]["records"] = records  # type: ignore[index]
        print(f"bench: state at {viewers:,} viewers: {out[str(viewers)]}", flush=True)
    return out


SCALING_SIZES: list[tuple[str, int, int, int]] = [
    ("base", 20, 200, 1),
    ("rooms x10", 200, 200, 1),
    ("viewers/room x10", 20, 2000, 1),
    ("days x10", 20, 200, 10),
    ("days x30", 20, 200, 30),
]
PROBE = 5_000


def scaling_once(rooms: int, viewers: int, days: int, paced: bool = False) -> dict[str, float]:
    """Cost per event (us) of the last `PROBE` records, after the rest of the stream is applied;
    with CPython's default collector, or `paced` as the worker's (streams/runtime/gcpace.py)."""
    records = stream(rooms, viewers, days)
    body, probe = records[:-PROBE], records[-PROBE:]
    ledger, board = Ledger(), OperatorBoard()
    gc.collect()
    pacer = GcPacer().install() if paced else None
    if pacer is not None:
        pacer.start()
    try:
        began = time.perf_counter()
        apply(body, ledger, board, pacer)
        all_s = time.perf_counter() - began
        gc.collect()
        began = time.perf_counter()
        apply(probe, ledger, board, pacer)
        probe_s = time.perf_counter() - began
    finally:
        if pacer is not None:
            pacer.uninstall()
    return {
        "records": len(records),
        "us_per_event_probe": probe_s / len(probe) * 1e6,
        "us_per_event_all": (all_s + probe_s) / len(records) * 1e6,
    }


def measure_scaling(repeat: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, rooms, viewers, days in SCALING_SIZES:
        # Interleaved, so both collectors see the same background load.
        runs, paced = [], []
        for _ in range(repeat):
            runs.append(scaling_once(rooms, viewers, days))
            paced.append(scaling_once(rooms, viewers, days, paced=True))
        out[name] = {
            "rooms": rooms,
            "viewers_per_room": viewers,
            "days": days,
            "records": runs[0]["records"],
            "us_per_event_probe": _summary([r["us_per_event_probe"] for r in runs]),
            "us_per_event_all": _summary([r["us_per_event_all"] for r in runs]),
            "us_per_event_probe_paced": _summary([r["us_per_event_probe"] for r in paced]),
            "us_per_event_all_paced": _summary([r["us_per_event_all"] for r in paced]),
        }
        print(f"bench: scaling {name}: {out[name]}", flush=True)
    return out


def gc_pauses(pace_records: int, rooms: int, days: int) -> dict[str, object]:
    """The core's garbage collections under the worker's pacer (`pace_records`; 0: CPython's
    default collector) over `stream(rooms, 1000, days)` in batches of 1,000: count, longest and
    p99 of each collection's wall-clock and CPU (thread) time in ms, and their CPU total."""
    records = stream(rooms, 1000, days)
    timed: list[tuple[float, float]] = []
    began = [0.0, 0.0]

    def clock(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[:] = [time.perf_counter(), time.thread_time()]
        else:
            timed.append((time.perf_counter() - began[0], time.thread_time() - began[1]))

    ledger, board = Ledger(), OperatorBoard()
    pacer = GcPacer(every_records=pace_records).install() if pace_records else None
    if pacer is not None:
        pacer.start()
    gc.callbacks.append(clock)
    try:
        for start in range(0, len(records), 1000):
            apply(records[start : start + 1000], ledger, board, None)
            if pacer is not None:
                pacer.after(1000)
    finally:
        gc.callbacks.remove(clock)
        if pacer is not None:
            pacer.uninstall()

    def longest_p99(values: list[float]) -> list[float]:
        values = sorted(values) or [0.0]
        return [round(values[-1] * 1000, 2), round(values[(99 * len(values)) // 100] * 1000, 2)]

    return {
        "records": len(records),
        "pace_records": pace_records,
        "collections": len(timed),
        "wall_longest_p99_ms": longest_p99([wall for wall, _ in timed]),
        "cpu_longest_p99_ms": longest_p99([cpu for _, cpu in timed]),
        "cpu_total_ms": round(sum(cpu for _, cpu in timed) * 1000, 1),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    state = sub.add_parser("state")
    state.add_argument("viewers", type=int)
    state.add_argument("mode", choices=[mode for _, mode in STATE_MODES])
    state.add_argument(
        "--by-line", type=int, default=0, metavar="N", help="traced: the N lines keeping most"
    )
    state.add_argument("--ids", choices=ID_SHAPES, default="short", help="the event ids' shape")
    lines = sub.add_parser("lines", help="write stream(ROOMS, VIEWERS, DAYS) as JSON lines")
    lines.add_argument("file", type=Path)
    lines.add_argument("--rooms", type=int, default=100)
    lines.add_argument("--viewers", type=int, default=1000)
    lines.add_argument("--days", type=int, default=2)
    lines.add_argument("--ids", choices=ID_SHAPES, default="short")
    pauses = sub.add_parser("gc", help="the core's collections under the worker's pacer")
    pauses.add_argument("--pace", type=int, default=50_000, help="records; 0: CPython's own")
    pauses.add_argument("--rooms", type=int, default=100)
    pauses.add_argument("--days", type=int, default=2)
    args = parser.parse_args()
    if args.what == "gc":
        print(json.dumps(gc_pauses(args.pace, args.rooms, args.days)))
        return
    if args.what == "lines":
        records = stream(args.rooms, args.viewers, args.days, ids=args.ids)
        args.file.write_bytes(b"".join(line + b"\n" for line in records))
        print(json.dumps({"records": len(records), "file": str(args.file)}))
        return
    traced = args.mode.startswith("traced")
    warm = args.mode != "traced-cold"
    state = state_once(args.viewers, traced, warm=warm, by_line=args.by_line, ids=args.ids)
    print(json.dumps(state))


if __name__ == "__main__":
    main()
