"""The simulator's truth file: the batch references' claims and operator figures together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.tools.simulator.operator_truth import compute_operator
from streams.tools.simulator.truth import (
    abandon_sessions,
    compute_claims,
    partition_cut,
    read_stream,
)


def compute_truth(
    lines: Sequence[str],
    *,
    scenario: str,
    seed: int,
    abandon: tuple[int, int] | None = None,
    partitions: int | None = None,
) -> dict[str, Any]:
    """The truth file's content (docs/design.md, "Truth file") for a stream's lines; with
    `abandon` (session horizon ms, dedupe window ms), under the session fold's rule for
    sessions that never end (`truth.abandon_sessions`): by the whole stream's horizons (one
    ledger), or with `partitions` by each of a worker's partitions' own
    (`truth.partition_cut`)."""
    stream = read_stream(lines)
    if abandon is not None:
        cut = partition_cut(lines, partitions, *abandon) if partitions else None
        abandon_sessions(stream, *abandon, cut)
    counts = stream.counts
    return {
        "scenario": scenario,
        "seed": seed,
        "lines": len(lines),
        "events": {
            "valid": counts.valid,
            "rejected": counts.rejected,
            "duplicates": counts.duplicates,
        },
        "claims": compute_claims(stream),
        "operator": compute_operator(stream),
    }
