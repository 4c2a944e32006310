"""Live-room stream simulator (seeded scenarios, contract noise) and its batch truth reference."""

from streams.simulator.generate import JUNK_KINDS, Generated, generate, truth_path, write_lines
from streams.simulator.scenarios import SCENARIOS, Scenario, get_scenario
from streams.simulator.truth import split_lines
from streams.simulator.truth_file import compute_truth

__all__ = [
    "JUNK_KINDS",
    "SCENARIOS",
    "Generated",
    "Scenario",
    "compute_truth",
    "generate",
    "get_scenario",
    "split_lines",
    "truth_path",
    "write_lines",
]
