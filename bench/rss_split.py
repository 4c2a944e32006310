"""Worker soaks side by side: the RSS after the horizon split by who holds it, and the CPU.

`python -m bench.rss_split RUN.json [RUN.json ...]` reads runs `python -m bench.soak
--worker --out` wrote (session 18 on: each sample keeps the worker's /status `memory`,
streams/runtime/memory.py, and its CPU seconds) and prints, per run, the means of the
samples in the first `--span-days` days after the run's horizon and in the last
`--span-days` days before its final sample (the final one is left out: it is taken after the
drain and every partition's last snapshot), and their change:

- the RSS and its file-backed part (the interpreter, its libraries, RocksDB's files);
- pymalloc's arenas, and in them its blocks in use and free (objects up to 512 bytes);
- glibc's arenas and mmapped blocks, and in them its bytes in use and free;
- the rest of the anonymous RSS (threads' stacks, other mappings, less what of those arenas
  is not resident);
- the snapshot MB, the records the worker was behind;
- the records per CPU second of the worker (its reaped forked children's CPU included) from
  the first sample after the horizon to the last before the final one, and over the whole
  run.

With `--markdown`, one table of every run (bench/RESULTS.md's "Session 18 (issue 17)").
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.soak import _horizon_of

#: The figures compared, and how each is read from a sample (None: not in that sample).
FIGURES: dict[str, Any] = {
    "rss": lambda s: s["rss_mb"],
    "file": lambda s: _memory(s, "file_mb"),
    "pymalloc arenas": lambda s: _memory(s, "pymalloc", "arenas_mb"),
    "pymalloc in use": lambda s: _memory(s, "pymalloc", "in_use_mb"),
    "pymalloc free": lambda s: _memory(s, "pymalloc", "free_mb"),
    "glibc held": lambda s: _glibc_held(s),
    "glibc in use": lambda s: _memory(s, "glibc", "in_use_mb"),
    "glibc free": lambda s: _memory(s, "glibc", "free_mb"),
    "rest": lambda s: _memory(s, "rest_mb"),
    "snapshot": lambda s: s["snapshot_mb"],
    "behind (k records)": lambda s: s["behind"] / 1e3,
}


def _memory(sample: dict[str, Any], *keys: str) -> float | None:
    value: Any = sample.get("memory")
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return None if value is None else float(value)


def _glibc_held(sample: dict[str, Any]) -> float | None:
    arena, mmapped = _memory(sample, "glibc", "arena_mb"), _memory(sample, "glibc", "mmapped_mb")
    return None if arena is None or mmapped is None else arena + mmapped


def _mean(samples: list[dict[str, Any]], read: Any) -> float | None:
    values = [v for v in (read(s) for s in samples) if v is not None]
    return statistics.fmean(values) if values else None


def _per_cpu_s(first: dict[str, Any], last: dict[str, Any]) -> float | None:
    if first.get("cpu_s") is None or last.get("cpu_s") is None:
        return None
    cpu = last["cpu_s"] - first["cpu_s"]
    return (last["records"] - first["records"]) / cpu if cpu > 0 else None


def split(result: dict[str, Any], span_days: float) -> dict[str, Any]:
    """The run's means in its first and last `span_days` after the horizon (module docstring)."""
    horizon = _horizon_of(result)
    samples = result["samples"]
    final, running = samples[-1], samples[:-1]
    after = [s for s in running if s["day"] >= horizon]
    early = [s for s in after if s["day"] < horizon + span_days]
    late = [s for s in after if s["day"] >= running[-1]["day"] - span_days]
    means = {name: (_mean(early, read), _mean(late, read)) for name, read in FIGURES.items()}
    return {
        "run": result.get("run"),
        "settings": result.get("worker_settings") or {},
        "env": result.get("worker_env") or {},
        "horizon_day": horizon,
        "early_days": [early[0]["day"], early[-1]["day"]] if early else None,
        "late_days": [late[0]["day"], late[-1]["day"]] if late else None,
        "means": means,
        "final_rss_mb": final["rss_mb"],
        "max_rss_mb": max(s["rss_mb"] for s in samples),
        "records_per_cpu_s_after": _per_cpu_s(after[0], running[-1]) if after else None,
        "records_per_cpu_s": _per_cpu_s(samples[0], running[-1]),
        "malloc_trims": running[-1].get("malloc_trims"),
        "truth_mismatches": len(result.get("truth_mismatches") or []),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One table: a column per run, a row per figure (early -> late, the change)."""
    lines = [
        "| MB (mean early -> late, change) | " + " | ".join(name for name, _ in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for figure in FIGURES:
        cells = []
        for _, row in rows:
            early, late = row["means"][figure]
            change = None if early is None or late is None else late - early
            sign = "" if change is None or change < 0 else "+"
            cells.append(f"{_fmt(early)} -> {_fmt(late)} ({sign}{_fmt(change)})")
        lines.append(f"| {figure} | " + " | ".join(cells) + " |")
    extra = {
        "RSS at the end / max": lambda r: f"{_fmt(r['final_rss_mb'])} / {_fmt(r['max_rss_mb'])}",
        "records per CPU s after the horizon": lambda r: _fmt(r["records_per_cpu_s_after"], 0),
        "records per CPU s, whole run": lambda r: _fmt(r["records_per_cpu_s"], 0),
        "malloc_trims": lambda r: str(r["malloc_trims"]),
        "truth mismatches": lambda r: str(r["truth_mismatches"]),
    }
    for name, cell in extra.items():
        lines.append(f"| {name} | " + " | ".join(cell(row) for _, row in rows) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN.json")
    parser.add_argument("--span-days", type=float, default=30.0)
    parser.add_argument("--markdown", action="store_true", help="one Markdown table")
    parser.add_argument("--out", type=Path, help="the splits as JSON")
    args = parser.parse_args()
    rows = [
        (path.stem, split(json.loads(path.read_text("utf-8")), args.span_days))
        for path in args.runs
    ]
    if args.out is not None:
        args.out.write_text(json.dumps(dict(rows), indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        print(markdown(rows))
    else:
        for name, row in rows:
            print(name, json.dumps(row))


if __name__ == "__main__":
    main()
