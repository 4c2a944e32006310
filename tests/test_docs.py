"""The docs name what the code has: every setting and every livepulse metric."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    # A row names one setting or several ("`A`, `B`") in its first cell.
    first_cells = re.findall(r"^\| (`LIVEPULSE_[^|]+)\|", readme, flags=re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`(LIVEPULSE_\w+)`", cell)}
    expected = {f"LIVEPULSE_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from README's table"
    assert documented - expected == set(), "README's table names settings that do not exist"


def test_the_keepers_metrics_are_in_docs_metrics() -> None:
    from streams.runtime.keeper import StateKeeper
    from streams.runtime.state import LiveState
    from streams.runtime.statestore import Changelog

    live = LiveState()
    StateKeeper(live, Settings(), Changelog(Settings()), None)
    registry: CollectorRegistry = live.metrics.registry
    names = {
        sample.name
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith("livepulse_state_") and not sample.name.endswith("_created")
    }
    assert "livepulse_state_snapshot_pause_seconds_total" in names
    text = (ROOT / "docs" / "metrics.md").read_text()
    assert sorted(n for n in names if n not in text) == []
