"""A bounded, mergeable sample of clusters by id: the ones whose id hashes smallest.

Why (issue 17): `live_aov`'s overall interval is a bootstrap-t over sessions
(`stats.cluster_ratio_t_interval`). Its centre and standard error come exactly from five
sums over the sessions, but its t* quantiles come from resampling the sessions' rows, which
a stream that never ends cannot keep. So the rows kept are a uniform sample of the sessions
of a bounded size: the `AOV_SAMPLE_SIZE` whose `id_rank` is smallest (a "bottom-k" sample).
It merges exactly: the bottom k of a union is the bottom k of the parts' bottom k's, so a
ledger, merged partitions and a ledger that trimmed its rows at any time all give the same
sample of the same sessions, and the same interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final, TypeVar

#: How many sessions' rows `live_aov`'s overall t* quantiles are read from once there are
#: more (docs/design.md, "Retired summaries"; the error this costs: bench/RESULTS.md,
#: "Session 13 (issue 17)", `live_aov`'s overall interval).
AOV_SAMPLE_SIZE: Final[int] = 4096

_Row = TypeVar("_Row")


def id_rank(cluster_id: str) -> int:
    """A fixed pseudo-random rank of an id (the first 8 bytes of its BLAKE2b digest): the same
    in every process and run."""
    digest = hashlib.blake2b(cluster_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def bottom_k(rows: Mapping[str, _Row], k: int) -> dict[str, _Row]:
    """The `k` rows whose ids rank smallest (`id_rank`, ties by id), in that order; all of
    them when there are at most `k`."""
    if len(rows) <= k:
        return dict(rows)
    ranked = sorted(rows, key=lambda cluster_id: (id_rank(cluster_id), cluster_id))
    return {cluster_id: rows[cluster_id] for cluster_id in ranked[:k]}
