"""The CLI's help, the README's CLI table and the parsers agree: every option in the table is
an option of its command's parser, every parser option is in the table, and `--help` of every
command runs as a process and says what the code does today."""

from __future__ import annotations

import argparse
import re

import pytest

from streams.cli import build_parser
from streams.runtime.settings import Settings
from tests.support.cli import REPO, livepulse


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parser_options() -> dict[str, set[str]]:
    """`{"worker": {"--bootstrap", ...}, "kafka up": {...}, ...}` from the parsers."""
    found: dict[str, set[str]] = {}

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        children = _subparsers(parser)
        if children:
            for child, sub in children.items():
                walk(f"{name} {child}".strip(), sub)
            return
        found[name] = {
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        }

    for name, sub in _subparsers(build_parser()).items():
        walk(name, sub)
    return found


def readme_options() -> dict[str, set[str]]:
    """The same, from the first cell of each row of the README's CLI table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `livepulse ")]
    assert rows, "no CLI table in README.md"
    found: dict[str, set[str]] = {}
    for row in rows:
        cell = row.split(" | ")[0].lstrip("| ")
        command = ""
        for usage in re.findall(r"`([^`]+)`", cell):
            words = usage.removeprefix("livepulse ").split()
            # `kafka up [...]` / `down [...]`: a bare action continues the previous command.
            if usage.startswith("livepulse "):
                command = words[0]
                name = command if words[0] != "kafka" else f"kafka {words[1]}"
            else:
                name = f"{command} {words[0]}"
            found[name] = set(re.findall(r"--[a-z][a-z-]*", usage))
    return found


def test_the_readme_table_and_the_parsers_name_the_same_options() -> None:
    documented, parsed = readme_options(), parser_options()
    assert sorted(documented) == sorted(parsed)
    for command in parsed:
        missing = parsed[command] - documented[command]
        unknown = documented[command] - parsed[command]
        assert not missing, f"livepulse {command}: {sorted(missing)} not in README's CLI table"
        assert not unknown, f"livepulse {command}: README documents {sorted(unknown)}"


def test_the_readme_documents_version() -> None:
    assert "`livepulse --version`" in (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", sorted(parser_options()))
def test_help_of_every_command_runs_and_lists_its_options(command: str) -> None:
    result = livepulse(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: livepulse {command}")
    for option in parser_options()[command]:
        assert option in result.stdout, option


def _help(command: str) -> str:
    text = livepulse(*command.split(), "--help").stdout
    return " ".join(text.split())  # argparse wraps lines


def test_the_worker_help_describes_the_worker_of_today() -> None:
    text = _help("worker")
    # State: snapshots to the changelog and RocksDB, restored on restart (not rebuilt from
    # the topics, not in memory).
    assert "<app id>-state-changelog" in text and "RocksDB" in text
    assert "restores" in text
    # Scale-out by app id, one data directory per worker.
    assert "Any number of workers started with one app id share the partitions" in text
    assert "data directory of its own" in text
    # The session timeout is the settings' default, not faust's 60 s.
    timeout = Settings.model_fields["session_timeout_s"].default
    assert f"LIVEPULSE_SESSION_TIMEOUT_S, {timeout:g} s by default" in text
    assert "60 s" not in text
    # Options win over the environment.
    assert "Options win over the LIVEPULSE_* environment variables" in text
    for stale in ("ledger is in memory", "rewinds its group", "one worker per app id."):
        assert stale not in text


def test_the_top_level_help_lists_every_command() -> None:
    text = _help("")
    for command in {name.split()[0] for name in parser_options()}:
        assert re.search(rf"\b{command}\b", text), command
    assert "--version" in text


def test_replay_help_names_the_replayers_default_fallback_topic() -> None:
    from streams.commands import replay as command
    from streams.tools.replayer import DEFAULT_FALLBACK_TOPIC

    assert command.DEFAULT_FALLBACK_TOPIC == DEFAULT_FALLBACK_TOPIC
    assert f"default {DEFAULT_FALLBACK_TOPIC}" in _help("replay")


def test_simulate_help_gives_the_default_scales_line_counts() -> None:
    import json

    text = _help("simulate")
    for scenario in ("xhs", "impulse"):
        truth = json.loads((REPO / "fixtures" / f"{scenario}.truth.json").read_text("utf-8"))
        # The fixtures are `simulate --seed 1` at the default scale.
        assert truth["seed"] == 1
        assert f"{round(truth['lines'] / 1000)}k" in text, (scenario, truth["lines"])


def test_demo_help_gives_its_defaults() -> None:
    from streams.commands.demo import DEFAULT_FIXTURE

    text = _help("demo")
    assert f"(default {DEFAULT_FIXTURE})" in text
    assert "(default data/logs)" in text and "(default data/report.html)" in text
    assert "unless --keep-topics" in text and "says so next to the verdicts" in text
