"""`bench.group_floor`: the partitions' group events sampled over event time, on a simulated
stream long enough to compact: the samples follow event time, the events held never exceed
those applied (counted from the stream's lines, not by the code under test), and some are
compacted by the end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.group_floor import run
from streams.tools.simulator.generate import generate
from streams.tools.simulator.scenarios import get_scenario


def test_the_group_events_held_are_sampled_and_compacted(tmp_path: Path) -> None:
    scenario = dataclasses.replace(get_scenario("xhs"), days=150)
    lines = generate(scenario, 5, 0.3).lines
    stream = tmp_path / "stream.jsonl"
    stream.write_text("\n".join(lines) + "\n")
    samples = run(stream, partitions=3, window_days=2, every_days=30)
    days = [row["day"] for row in samples]
    assert days == sorted(days) and days[-1] > 140
    in_stream = sum('"type":"group_' in line for line in lines)
    last = samples[-1]
    assert last["group_events_applied"] <= in_stream
    assert all(row["group_events_held"] <= row["group_events_applied"] for row in samples)
    assert last["cutoff_day"] is not None and last["group_events_held"] < in_stream
    # Pairs held at their sources with membership recorded there (session 20), not more.
    assert 0 < last["source_pairs_recorded"] <= last["source_pairs"]
