"""`python -m bench.frozen_parts DATA_DIR`: a stopped worker's snapshots (its RocksDB store
under DATA_DIR, e.g. after `bench.soak --worker`), summed over partitions: the snapshot bytes,
the largest parts (`bench.soak_profile.part_sizes`, pickled one by one, zlib level 1) and the
frozen period parts by claim, with an owner's routed period rows (`Ledger.period_users`,
`period_rows_in`, snapshot version 12), its folded parts by claim (`owner_by_claim_kb`) and
the user rows it holds unfolded by claim (`owner_rows_held_by_claim`);
the JSON goes to stdout (issue 17)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.core.persist import load_state
from bench.soak_profile import packed_kb, part_sizes
from streams.runtime.statestore import LocalStore


def frozen_parts(data_dir: Path) -> dict[str, Any]:
    """The sizes by part of every partition's newest snapshot, summed."""
    stores = [p for p in data_dir.iterdir() if p.name.endswith("-state") and p.is_dir()]
    if len(stores) != 1:
        raise SystemExit(f"{data_dir}: expected one <app id>-state store, found {stores}")
    store = LocalStore(stores[0])
    parts: dict[str, float] = {}
    claims: dict[str, float] = {}
    owners: dict[str, float] = {}
    held: dict[str, int] = {}
    snapshot_bytes = partitions = 0
    try:
        while (snapshot := store.load(partitions)) is not None:
            snapshot_bytes += len(snapshot.blob)
            ledger, board = load_state(snapshot.blob)
            for name, kb in part_sizes(ledger, board).items():
                parts[name] = parts.get(name, 0.0) + kb
            for claim_parts in ledger.frozen_parts.values():
                for claim_id, part in claim_parts.items():
                    claims[claim_id] = claims.get(claim_id, 0.0) + packed_kb(part)
            for name in ("period_users", "period_rows_in"):
                if name in ledger.__dict__:
                    key = f"(owner) {name}"
                    claims[key] = claims.get(key, 0.0) + packed_kb(ledger.__dict__[name])
            # The rows the owners hold unfolded, by claim (session 20: a source that never
            # announces a period's stage holds every source's rows of it there).
            for by_source in ledger.__dict__.get("period_rows_in", {}).values():
                for by_claim in by_source.values():
                    for claim_id, rows in by_claim.items():
                        held[claim_id] = held.get(claim_id, 0) + len(rows)
            # The owners' folded parts by claim (session 19: the refund claims' apart).
            for owned in ledger.__dict__.get("period_users", {}).values():
                for claim_id, part in owned.items():
                    key = f"(owner) period_users {claim_id}"
                    owners[key] = owners.get(key, 0.0) + packed_kb(part)
            partitions += 1
    finally:
        store.close()
    largest = sorted(parts.items(), key=lambda item: -item[1])[:10]
    return {
        "dir": str(data_dir),
        "partitions": partitions,
        "snapshot_kb": snapshot_bytes / 1000,
        "top_parts_kb": {name: round(kb, 1) for name, kb in largest},
        "frozen_by_claim_kb": {
            name: round(kb, 1) for name, kb in sorted(claims.items(), key=lambda item: -item[1])
        },
        "owner_by_claim_kb": {
            name: round(kb, 1) for name, kb in sorted(owners.items(), key=lambda item: -item[1])
        },
        "owner_rows_held_by_claim": dict(sorted(held.items())),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    json.dump(frozen_parts(args.data_dir), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
