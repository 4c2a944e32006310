"""`livepulse worker` as a user starts it: every option on the command line, each one winning
over a LIVEPULSE_* environment that says otherwise (it used to die with "the livepulse app of
this process is already configured" as soon as an option differed from the environment)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.tools.drain import fetch_json
from streams.tools.kafka.admin import fetch_metadata
from streams.tools.worker_process import free_port, port_is_free
from tests.cli.conftest import CliWorker
from tests.support.cli import FIXTURES, livepulse, one_error_line, user_env
from tests.support.live import fixture_lines, operator_truth_for
from tests.support.truth import operator_mismatches, report_mismatches, summarized

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _operator_problems(report: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """The operator section against the truth: with the session fold (when on), under its
    rule for sessions that never end, each partition by its own horizons, the levels' medians
    within the sketch's bound."""
    operator = operator_truth_for(report, fixture_lines("xhs"), truth["operator"])
    return operator_mismatches(report["operator"], operator, sketched_medians=summarized(report))


def test_the_options_win_over_the_environment(cli_worker: CliWorker) -> None:
    status = fetch_json(f"{cli_worker.base_url}/status", timeout_s=10)
    # Its web port is the option's, not the environment's.
    assert port_is_free("127.0.0.1", cli_worker.env_port)
    # It read the topics under --topic-prefix, all of them, and only those (with the session
    # fold, on by default, its month-rows topic too).
    topics = {key.rsplit(":", 1)[0] for key in status["positions"]}
    assert topics == set(cli_worker.settings.state_topics)
    assert all(topic.startswith(cli_worker.topic_prefix) for topic in topics)
    # Its consumer group and changelog are named by --app-id.
    names = fetch_metadata(cli_worker.bootstrap).topics
    assert (
        cli_worker.settings.changelog
        == f"{cli_worker.topic_prefix}{cli_worker.app_id}-state-changelog"
    )
    assert cli_worker.settings.changelog in names
    assert not any(name.startswith("env-") for name in names)
    # Its state store is in --data-dir, and it logs to --logfile.
    assert (cli_worker.data_dir / f"{cli_worker.app_id}-state").is_dir()
    log = cli_worker.logfile.read_text(encoding="utf-8")
    assert f"worker {cli_worker.app_id} reading {cli_worker.topic_prefix}live." in log
    assert "Traceback" not in cli_worker.stderr_path.read_text(errors="replace")


def test_what_it_reports_is_the_truth(cli_worker: CliWorker) -> None:
    truth = json.loads((FIXTURES / "xhs.truth.json").read_text(encoding="utf-8"))
    report = fetch_json(f"{cli_worker.base_url}/report", timeout_s=60)
    problems = report_mismatches(report, truth)
    problems += _operator_problems(report, truth)
    assert problems == []


def test_its_report_says_the_verdicts_are_of_simulated_rooms(cli_worker: CliWorker) -> None:
    """LIVEPULSE_SIMULATED_SOURCE: the worker's own /report (its share and the merged one) and
    `report --from` carry the note that the verdicts describe the fixture's simulated rooms."""
    truth_file = FIXTURES / "xhs.truth.json"
    scenario = json.loads(truth_file.read_text(encoding="utf-8"))["scenario"]
    for scope in ("", "?scope=global"):
        report = fetch_json(f"{cli_worker.base_url}/report{scope}", timeout_s=60)
        assert report.get("simulated", {}).get("scenario") == scenario, scope
        assert report["simulated"]["truth_file"] == str(truth_file)
    table = livepulse("report", "--from", f"{cli_worker.base_url}/report")
    assert table.returncode == 0, table.stderr
    # The note comes first, before the claims table.
    assert table.stdout.startswith("SIMULATED DATA (scenario "), table.stdout[:300]


def test_replay_said_what_it_sent(cli_worker: CliWorker) -> None:
    truth = json.loads((FIXTURES / "xhs.truth.json").read_text(encoding="utf-8"))
    # Not a terminal: no progress bar, only the summary line.
    lines = cli_worker.replay_stderr.strip().splitlines()
    assert len(lines) == 1, cli_worker.replay_stderr
    assert lines[0].startswith(f"replayed {truth['lines']} lines in ")


def test_a_second_worker_on_the_same_data_dir_is_refused(cli_worker: CliWorker) -> None:
    options = cli_worker.options()
    options[options.index("--web-port") + 1] = str(free_port())
    # The first worker's refund horizon too: a longer one would also warn (rightly) that its
    # orders topic keeps records too short a time for the session fold.
    result = livepulse(
        "worker",
        *options,
        "--broker-wait",
        "20",
        env=user_env(LIVEPULSE_REFUND_HORIZON_DAYS="14"),
        timeout=120,
    )
    line = one_error_line(result, "livepulse worker:")
    assert str(cli_worker.data_dir) in line
    assert "data directory of its own" in line
    assert result.returncode == 2


def test_an_unreachable_broker_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = livepulse(
        "worker",
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        "--broker-wait",
        "0",
        "--web-port",
        str(free_port()),
        "--data-dir",
        str(tmp_path),
        env=user_env(),
        timeout=60,
    )
    line = one_error_line(result, "livepulse worker: cannot use broker 127.0.0.1:")
    assert result.returncode == 2, line


def test_a_port_in_use_is_one_line(cli_worker: CliWorker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = livepulse(
        "worker",
        "--bootstrap",
        cli_worker.bootstrap,
        "--web-port",
        str(cli_worker.web_port),  # the shared worker listens there
        "--data-dir",
        str(tmp_path),
        timeout=60,
    )
    line = one_error_line(result, "livepulse worker:")
    assert f"port {cli_worker.web_port}" in line and "in use" in line


# Last in this file, which runs after the other CLI tests: by then the shared worker has long
# been idle and its snapshots cover everything (right after the replay, --wait waits for them).
def test_report_from_the_changelog(cli_worker: CliWorker) -> None:
    result = livepulse(
        "report",
        "--changelog",
        "--wait",
        "60",
        "--bootstrap",
        cli_worker.bootstrap,
        "--app-id",
        cli_worker.app_id,
        "--topic-prefix",
        cli_worker.topic_prefix,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    truth = json.loads((FIXTURES / "xhs.truth.json").read_text(encoding="utf-8"))
    assert report_mismatches(report, truth) == []
    assert _operator_problems(report, truth) == []
