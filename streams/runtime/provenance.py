"""Where a report's events came from: a stream written by `livepulse simulate` has its truth file
beside it (`FILE.jsonl` -> `FILE.truth.json`), and a report of it says so next to its verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def truth_path(stream: Path) -> Path:
    """Where the truth file of a stream file is: `FILE.jsonl` -> `FILE.truth.json`."""
    name = stream.name.removesuffix(".jsonl")
    return stream.with_name(f"{name}.truth.json")


def simulated_origin(stream: Path) -> dict[str, Any] | None:
    """The scenario and seed of a simulated stream file (from its truth file), or None if there
    is no readable truth file beside it."""
    truth_file = truth_path(stream)
    try:
        truth = json.loads(truth_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(truth, dict) or "scenario" not in truth:
        return None
    return {"scenario": truth["scenario"], "seed": truth.get("seed"), "truth_file": str(truth_file)}


def mark_if_simulated(report: dict[str, Any], stream: Path) -> dict[str, Any]:
    """`report`, with a `"simulated"` entry if its events came from a simulated stream file."""
    origin = simulated_origin(stream)
    if origin is not None:
        report["simulated"] = origin
    return report
