"""Live-room stream simulator (seeded scenarios, contract noise) and its batch truth reference."""

from streams.runtime.provenance import truth_path
from streams.tools.simulator.generate import JUNK_KINDS, Generated, generate, write_lines
from streams.tools.simulator.scenarios import SCENARIOS, Scenario, get_scenario
from streams.tools.simulator.truth import split_lines
from streams.tools.simulator.truth_file import compute_truth

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
