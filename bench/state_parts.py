"""`python -m bench.state_parts DATA_DIR [--app-id ID]`: a stopped worker's snapshots (its
RocksDB store under DATA_DIR), each partition's ledger's parts pickled on their own: the
sizes by part of what a worker keeps (issue 17), e.g. after `bench.soak --worker`. Parts a
version does not have are left out; the JSON goes to stdout."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from agents.core.persist import load_state
from streams.runtime.statestore import LocalStore

#: The ledger's parts sized one by one (the first orders, their exchange and the group
#: events, the parts this branch changes), then the snapshot as a whole.
PARTS = (
    "first_orders",
    "first_orders_in",
    "pairs_decided",
    "bought_before",
    "group_events",
    "month_rows_in",
    "month_folded_users",
)


def parts_of(data_dir: Path, app_id: str | None) -> dict[str, Any]:
    """Per partition: the snapshot's bytes, its records, and each part's pickled bytes and
    entries; and the sums over partitions."""
    stores = sorted(p for p in data_dir.iterdir() if p.name.endswith("-state") and p.is_dir())
    if app_id is not None:
        stores = [p for p in stores if p.name == f"{app_id}-state"]
    if len(stores) != 1:
        raise SystemExit(f"{data_dir}: expected one <app id>-state store, found {stores}")
    store = LocalStore(stores[0])
    out: dict[str, Any] = {"store": str(stores[0]), "partitions": {}, "total": {}}
    try:
        partition = 0
        while (snapshot := store.load(partition)) is not None:
            ledger, _board = load_state(snapshot.blob)
            row: dict[str, Any] = {"snapshot_bytes": len(snapshot.blob)}
            for name in PARTS:
                value = ledger.__dict__.get(name)
                if value is None:
                    continue
                row[name] = {
                    "bytes": len(pickle.dumps(value, protocol=5)),
                    "entries": len(value),
                }
                if name == "group_events":  # entries are (merchant, user) pairs
                    row[name]["events"] = sum(len(events) for events in value.values())
            out["partitions"][partition] = row
            partition += 1
    finally:
        store.close()
    total: dict[str, Any] = out["total"]
    for row in out["partitions"].values():
        for name, value in row.items():
            if isinstance(value, dict):
                into = total.setdefault(name, {"bytes": 0, "entries": 0})
                for key, count in value.items():
                    into[key] = into.get(key, 0) + count
            else:
                total[name] = total.get(name, 0) + value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--app-id")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(parts_of(args.data_dir, args.app_id), indent=1) + "\n")


if __name__ == "__main__":
    main()
