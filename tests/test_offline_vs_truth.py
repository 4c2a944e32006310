"""The offline analyzer (the metric core) against the simulator's independent batch truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.tools.analyze import analyze_file
from streams.tools.simulator import compute_truth, generate, get_scenario, write_lines
from streams.tools.simulator.operator_truth import operator_truth
from tests.support.truth import operator_mismatches, report_mismatches

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_committed_fixture_matches_its_truth_file(name: str) -> None:
    truth = json.loads((FIXTURES / f"{name}.truth.json").read_text(encoding="utf-8"))
    report = analyze_file(FIXTURES / f"{name}.jsonl")
    assert report_mismatches(report, truth) == []
    assert operator_mismatches(report["operator"], truth["operator"]) == []
    # Not a vacuous agreement: the fixture has figures for every claim and all kinds of noise.
    assert all(entry["observed"] is not None for entry in report["claims"].values())
    assert truth["events"]["rejected"] > 0 and truth["events"]["duplicates"] > 0


@pytest.mark.parametrize(
    ("scenario", "seed", "scale"),
    [("xhs", 2, 0.6), ("xhs", 17, 0.4), ("impulse", 3, 0.8), ("impulse", 29, 0.5)],
)
def test_fresh_stream_matches_truth(scenario: str, seed: int, scale: float, tmp_path: Path) -> None:
    generated = generate(get_scenario(scenario), seed, scale)
    path = tmp_path / "stream.jsonl"
    write_lines(path, generated.lines)
    truth = compute_truth(generated.lines, scenario=scenario, seed=seed)
    report = analyze_file(path)
    assert report_mismatches(report, truth) == []
    assert operator_mismatches(report["operator"], truth["operator"]) == []
    assert report["events"]["valid"] > 1000


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_operator_windows_mid_stream_match_the_truth(name: str, tmp_path: Path) -> None:
    """Fixture prefixes put the watermark inside live sessions, where the windows are busy."""
    lines = (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    busy = late = 0
    for share in (0.25, 0.5, 0.75):
        prefix = lines[: int(len(lines) * share)]
        # Hold back every 40th view event to the end of the prefix: later than the rest of
        # its own session's views, so the lateness rule (per topic and key) is exercised.
        held = [line for i, line in enumerate(prefix) if i % 40 == 0 and '"viewer_' in line]
        prefix = [line for line in prefix if line not in held] + held
        path = tmp_path / f"{share}.jsonl"
        path.write_text("\n".join(prefix) + "\n", encoding="utf-8")
        operator = analyze_file(path)["operator"]
        truth = operator_truth(prefix)
        assert operator_mismatches(operator, truth) == []
        busy += truth["overall"]["windows"]["10m"]["entries"]
        late += truth["late_events"]
    # The prefixes must exercise both the windows and the lateness rule.
    assert busy > 0 and late > 0


def test_analyzer_reads_lines_as_the_replayer_sends_them(tmp_path: Path) -> None:
    from streams.tools.replayer import read_lines

    text = (
        b'{"event_id":"e1","type":"session_ended","ts":1,"session_id":"s"}\r\n'
        b"\n"
        b"   \n"
        b'{"event_id":"e2","type":"session_ended","ts":2,"session_id":"s"}'
    )
    path = tmp_path / "odd.jsonl"
    path.write_bytes(text)
    report = analyze_file(path)
    assert report["events"] == {"valid": 2, "rejected": 2, "duplicates": 0}
    assert len(list(read_lines(path))) == 4
    truth = compute_truth(text.decode().split("\n"), scenario="-", seed=0)
    assert truth["events"] == report["events"]
