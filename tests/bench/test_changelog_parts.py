"""bench.changelog_parts: the newest snapshot at or before an event day, by bisection."""

from __future__ import annotations

from bench.changelog_parts import newest_at
from streams.runtime.statestore import new_head


def _snapshots(days: list[float]) -> list[tuple[object, bytes]]:
    return [
        (new_head(0, i, str(day).encode(), {}), str(day).encode()) for i, day in enumerate(days)
    ]


def _restore(blob: bytes) -> tuple[float, str]:
    return float(blob), blob.decode()


def test_newest_at_picks_the_last_snapshot_at_or_before_the_day() -> None:
    snapshots = _snapshots([1.0, 3.5, 7.0, 7.0, 12.25, 40.0])
    for day, expected in [(0.5, None), (1.0, 1.0), (7.0, 7.0), (11.9, 7.0), (100.0, 40.0)]:
        found = newest_at(snapshots, day, _restore)  # type: ignore[arg-type]
        assert (found and found[0]) == expected
    last = newest_at(snapshots, 7.0, _restore)  # type: ignore[arg-type]
    assert last is not None and last[1] == b"7.0"


def test_newest_at_probes_a_logarithmic_number_of_states() -> None:
    snapshots = _snapshots([float(d) for d in range(1000)])
    probes: list[bytes] = []

    def counting(blob: bytes) -> tuple[float, str]:
        probes.append(blob)
        return _restore(blob)

    found = newest_at(snapshots, 612.5, counting)  # type: ignore[arg-type]
    assert found is not None and found[0] == 612.0
    assert len(probes) <= 11
    assert newest_at([], 5.0, _restore) is None
