"""Each `livepulse` sub-command as a separate process, with the options the README documents,
its output and files checked against the fixtures' truth files (computed by an independent
batch reference), never against the pipeline itself."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agents.core.sketch import RELATIVE_ACCURACY
from tests.cli.conftest import CliWorker
from tests.support.cli import FIXTURES, livepulse, one_error_line, table_matches, user_env
from tests.support.live import fixture_lines, fixture_operator_truth_folding, operator_truth_for
from tests.support.truth import operator_mismatches, report_mismatches, summarized


def _truth(name: str) -> dict[str, Any]:
    truth: dict[str, Any] = json.loads((FIXTURES / f"{name}.truth.json").read_text("utf-8"))
    return truth


def _html_ok(path: Path) -> str:
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    return page


# --- analyze, simulate, schema: no broker ----------------------------------------------------


@pytest.mark.slow
def test_analyze_json_and_html_are_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = livepulse("analyze", FIXTURES / "xhs.jsonl", "--json", "--html", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    truth = _truth("xhs")
    assert report_mismatches(report, truth) == []
    # The session fold is on by default: the operator truth under its rule for sessions that
    # never end, the levels' medians within the sketch's bound.
    operator = operator_truth_for(report, fixture_lines("xhs"), truth["operator"])
    sketched = summarized(report)
    assert operator_mismatches(report["operator"], operator, sketched_medians=sketched) == []
    assert report["simulated"]["scenario"] == "xhs"
    page = _html_ok(out)
    assert 'class="simulated"' in page and "simulated rooms" in page
    # Standard error: the summary and where the page went, no progress bar in a pipe.
    # Saved, the report keeps its note: `report --input` shows it above the claims.
    saved = tmp_path / "saved.json"
    saved.write_text(result.stdout, encoding="utf-8")
    shown = livepulse("report", "--input", saved)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("SIMULATED DATA (scenario xhs, seed 1")
    summary, written = result.stderr.splitlines()
    assert summary.startswith(f"analyzed {truth['lines']:,} records in ")
    assert written == f"livepulse analyze: HTML report written to {out.resolve()}"


@pytest.mark.slow
def test_analyze_table(tmp_path: Path) -> None:
    result = livepulse("analyze", FIXTURES / "impulse.jsonl")
    assert result.returncode == 0, result.stderr
    table_matches(result.stdout, _truth("impulse"))
    assert result.stdout.startswith("SIMULATED DATA (scenario impulse, seed 1")


def test_analyze_takes_the_dedupe_window_from_the_environment() -> None:
    """Issue 17: `livepulse analyze` uses LIVEPULSE_DEDUPE_WINDOW_S as the worker does. The
    default (7 days) folds the fixture's closed sessions and gives the truth (the test above);
    a 10-minute window expires the fixture's late events, and a negative one is one line."""
    truth = _truth("xhs")
    result = livepulse(
        "analyze", FIXTURES / "xhs.jsonl", "--json", env=user_env(LIVEPULSE_DEDUPE_WINDOW_S="600")
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    expired = report["retention"]["expired"]
    assert report["retention"]["dedupe_window_s"] == 600
    assert expired > 0
    assert report["events"]["valid"] == truth["events"]["valid"] - expired
    table = livepulse(
        "analyze", FIXTURES / "xhs.jsonl", env=user_env(LIVEPULSE_DEDUPE_WINDOW_S="600")
    )
    assert f"{expired:,} expired" in table.stdout
    bad = livepulse("analyze", FIXTURES / "xhs.jsonl", env=user_env(LIVEPULSE_DEDUPE_WINDOW_S="-1"))
    assert "LIVEPULSE_DEDUPE_WINDOW_S" in one_error_line(bad, "livepulse analyze")


def test_analyze_retires_idle_users_past_the_user_horizon() -> None:
    """Issue 17: `livepulse analyze` honours LIVEPULSE_USER_HORIZON_DAYS with the session fold
    as the worker does. An hour's horizon retires xhs's users between their sessions: every
    user-clustered claim's observed value is still the truth file's (1e-9), and its interval,
    which now counts a returning user as a new cluster, differs from the one with no horizon
    (`0`), which is the run that keeps every user."""
    truth = _truth("xhs")
    base = {"LIVEPULSE_DEDUPE_WINDOW_S": "172800", "LIVEPULSE_FOLD_SESSIONS": "true"}
    reports = {}
    for days in ("0", "0.0417"):
        env = user_env(**base, LIVEPULSE_USER_HORIZON_DAYS=days)
        result = livepulse("analyze", FIXTURES / "xhs.jsonl", "--json", env=env)
        assert result.returncode == 0, result.stderr
        reports[days] = json.loads(result.stdout)["claims"]
    for claim_id in ("orders_after_minute_5", "group_order_share", "group_member_dwell"):
        kept, retired = reports["0"][claim_id], reports["0.0417"][claim_id]
        want = truth["claims"][claim_id]["observed"]
        assert math.isclose(retired["observed"], want, rel_tol=1e-9), claim_id
        assert math.isclose(kept["observed"], want, rel_tol=1e-9), claim_id
        assert (retired["ci_low"], retired["ci_high"]) != (kept["ci_low"], kept["ci_high"])


def test_analyze_summarizes_sessions_with_the_session_fold() -> None:
    """Issue 17: `livepulse analyze` honours LIVEPULSE_FOLD_SESSIONS as the worker does (one
    ledger holds every group event: membership at the summary is exact). With a 2-day window
    most of xhs's sessions are summarized and every claim is the truth file's: exact, but the
    questions' sketched reply p50/p95 and `price_dwell_association` (from its sketches), within
    their bounds; the operator figures too, the levels' median watch times within 1%."""
    truth = _truth("xhs")
    env = user_env(LIVEPULSE_DEDUPE_WINDOW_S="172800", LIVEPULSE_FOLD_SESSIONS="true")
    result = livepulse("analyze", FIXTURES / "xhs.jsonl", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    retention = report["retention"]
    assert retention["dedupe_window_s"] == 172800 and retention["expired"] == 0
    # Fewer than half since the claims by period: the sessions of August (not closed: its
    # end + 7 days is past the stream's end) wait for their month's figures to freeze.
    assert retention["summarized_sessions"] > 0.4 * len(truth["operator"]["sessions"])
    assert report["periods"]["frozen"]["month"] == 1
    sketched = "claims.price_dwell_association."
    problems = report_mismatches(report, truth)
    assert [p for p in problems if not p.startswith(sketched)] == []
    got, want = (
        report["claims"]["price_dwell_association"],
        truth["claims"]["price_dwell_association"],
    )
    assert abs(got["observed"] - want["observed"]) < 0.002  # the binned ranks' rho
    for tier, median in want["median_watch_minutes_by_tier"].items():
        assert (median is None) == (got["detail"]["median_watch_minutes_by_tier"][tier] is None)
        if median is not None:
            assert math.isclose(
                got["detail"]["median_watch_minutes_by_tier"][tier], median, rel_tol=0.02
            ), tier
    # The sessions that never end are abandoned (issue 17): the truth under that rule.
    assert retention["abandoned_sessions"] == 2
    folding = fixture_operator_truth_folding("xhs", 172_800_000)
    operator = operator_mismatches(report["operator"], folding)
    medians = [p for p in operator if ".median_watch_minutes:" in p]
    assert [p for p in operator if p not in medians] == []
    for problem in medians:  # a level with summarized sessions reads their sketch
        assert not problem.startswith("operator.sessions."), problem
        got_s, want_s = (float(x) for x in re.findall(r"(?:report|truth) ([0-9.e+-]+)", problem))
        assert math.isclose(got_s, want_s, rel_tol=RELATIVE_ACCURACY), problem
    # Without it (on by default), the same window summarizes nothing.
    plain = livepulse(
        "analyze",
        FIXTURES / "xhs.jsonl",
        "--json",
        env=user_env(LIVEPULSE_DEDUPE_WINDOW_S="172800", LIVEPULSE_FOLD_SESSIONS="false"),
    )
    assert json.loads(plain.stdout)["retention"]["summarized_sessions"] == 0


def test_analyze_of_a_stream_without_truth_file_has_no_simulated_note(tmp_path: Path) -> None:
    stream = tmp_path / "mine.jsonl"
    stream.write_bytes(b"".join((FIXTURES / "impulse.jsonl").read_bytes().splitlines(True)[:500]))
    result = livepulse("analyze", stream, "--json")
    assert result.returncode == 0, result.stderr
    assert "simulated" not in json.loads(result.stdout)
    table = livepulse("analyze", stream).stdout
    assert "SIMULATED" not in table and "events:" in table


@pytest.mark.slow
def test_simulate_writes_the_stream_and_its_truth(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "sim.jsonl"
    args = ("simulate", "--scenario", "impulse", "--seed", "7", "--scale", "0.3", "--out", out)
    result = livepulse(*args)
    assert result.returncode == 0, result.stderr
    truth_file = tmp_path / "sub" / "sim.truth.json"
    truth = json.loads(truth_file.read_text("utf-8"))
    assert (truth["scenario"], truth["seed"]) == ("impulse", 7)
    assert truth["lines"] == len(out.read_bytes().splitlines())
    assert f"{out}: {truth['lines']} lines" in result.stderr
    assert "events so far" not in result.stderr  # the weekly status is for a terminal only
    # Seeded: the same options give the same bytes; another seed another stream.
    again = tmp_path / "again.jsonl"
    assert livepulse(*args[:-1], again).returncode == 0
    assert again.read_bytes() == out.read_bytes()
    # The truth file is the independent reference analyze must agree with.
    analyzed = livepulse("analyze", out, "--json")
    assert analyzed.returncode == 0, analyzed.stderr
    report = json.loads(analyzed.stdout)
    assert report_mismatches(report, truth) == []
    assert report["simulated"] == {"scenario": "impulse", "seed": 7, "truth_file": str(truth_file)}


def test_schema_to_stdout_and_to_a_file(tmp_path: Path) -> None:
    printed = livepulse("schema")
    assert printed.returncode == 0, printed.stderr
    schema = json.loads(printed.stdout)
    out = tmp_path / "event.schema.json"
    written = livepulse("schema", "--out", out)
    assert written.returncode == 0 and written.stderr.strip() == f"wrote {out}"
    assert json.loads(out.read_text("utf-8")) == schema
    # The schema accepts the fixtures' valid events and refuses a broken one.
    validator = jsonschema.Draft202012Validator(schema)
    event = json.loads((FIXTURES / "xhs.jsonl").read_text("utf-8").splitlines()[0])
    validator.validate(event)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**event, "ts": "yesterday"})


def test_version() -> None:
    from importlib.metadata import version

    result = livepulse("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"livepulse {version('livepulse')}"


# --- report: from the shared worker, a saved report, the changelog --------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_report_from_a_worker(cli_worker: CliWorker, tmp_path: Path) -> None:
    truth = _truth("xhs")
    saved = tmp_path / "saved.json"
    as_json = livepulse("report", "--from", f"{cli_worker.base_url}/report", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report_mismatches(report, truth) == []
    # The worker's partitions hold refunds and their orders apart (a refund's key is empty):
    # the merged report applies the environment's refund horizon to every one of them.
    assert report["retention"]["refund_horizon_days"] == 14
    assert report["retention"]["late_refunds"] == report["retention"]["unmatched_refunds"] == 0
    saved.write_text(as_json.stdout, encoding="utf-8")
    # A base URL without /report, and the table with an HTML page.
    page = tmp_path / "worker.html"
    table = livepulse("report", "--from", f"127.0.0.1:{cli_worker.web_port}", "--html", page)
    assert table.returncode == 0, table.stderr
    table_matches(table.stdout, truth)
    _html_ok(page)
    # A saved report gives the same table and a page of its own.
    page2 = tmp_path / "saved.html"
    again = livepulse("report", "--input", saved, "--html", page2)
    assert again.returncode == 0, again.stderr
    assert again.stdout == table.stdout
    assert f"from {saved}" in _html_ok(page2)


# --- replay's pacing and fallback options, into topics of their own ---------------------------


def _topic_sizes(bootstrap: str, topics: list[str]) -> dict[str, int]:
    import asyncio

    from streams.runtime.settings import Settings
    from streams.runtime.topics import EndOffsets

    async def read() -> dict[str, int]:
        async with EndOffsets(Settings(bootstrap=bootstrap)) as ends:
            sizes: dict[str, int] = dict.fromkeys(topics, 0)
            for tp, end in (await ends(topics)).items():
                sizes[tp.topic] += end
            return sizes

    return asyncio.run(read())


def _routable(line: bytes) -> bool:
    from schemas import TOPIC_BY_TYPE

    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("type") in TOPIC_BY_TYPE


@pytest.mark.integration
@pytest.mark.slow
def test_replay_pacing_and_fallback(kafka_bootstrap: str, tmp_path: Path) -> None:
    import time
    import uuid

    from streams.runtime.settings import Settings
    from streams.runtime.topics import delete_run_topics

    prefix = f"cli-replay-{uuid.uuid4().hex[:8]}."
    lines = (FIXTURES / "impulse.jsonl").read_bytes().splitlines(True)
    junk = [b"not json\n", b"[1, 2]\n", b'{"type": "no_such_type"}\n', b'{"event_id": "x"}\n']
    valid = [line for line in lines if _routable(line)][:40]
    stream = tmp_path / "mix.jsonl"
    stream.write_bytes(b"".join(valid[:20] + junk + valid[20:]))
    settings = Settings(bootstrap=kafka_bootstrap, topic_prefix=prefix)
    try:
        began = time.monotonic()
        paced = livepulse(
            "replay", stream, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
            "--rate", "100", "--fallback-topic", "live.junk",
        )  # fmt: skip
        assert paced.returncode == 0, paced.stderr
        # 45 lines at 100 a second cannot take less than 0.44 s (a lower bound, not a speed).
        assert time.monotonic() - began >= 0.44
        assert f"{len(valid)} to contract topics, {len(junk)} to the fallback topic" in paced.stderr
        sizes = _topic_sizes(kafka_bootstrap, [f"{prefix}live.junk"])
        assert sizes[f"{prefix}live.junk"] == len(junk)

        # Event time sped up so that the last event goes out 1 s after the first.
        stamps = [json.loads(line)["ts"] for line in valid]
        speedup = (max(stamps) - stamps[0]) / 1000.0
        began = time.monotonic()
        skipped = livepulse(
            "replay", stream, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
            "--speedup", str(speedup), "--fallback-topic", "",
        )  # fmt: skip
        assert skipped.returncode == 0, skipped.stderr
        assert time.monotonic() - began >= 0.95
        assert f"0 to the fallback topic, {len(junk)} rejected" in skipped.stderr
        assert _topic_sizes(kafka_bootstrap, [f"{prefix}live.junk"])[f"{prefix}live.junk"] == 4
        contract = sorted(settings.source_topics)
        assert sum(_topic_sizes(kafka_bootstrap, contract).values()) == 2 * len(valid)
    finally:
        import asyncio
        import contextlib

        with contextlib.suppress(Exception):
            asyncio.run(delete_run_topics(settings))
        with contextlib.suppress(Exception):
            from streams.runtime.topics import delete_topics

            asyncio.run(delete_topics(settings, [f"{prefix}live.junk"]))


def test_analyze_settles_the_board_past_its_horizon() -> None:
    """Issue 17: `livepulse analyze` with LIVEPULSE_FOLD_SESSIONS and a 3-day
    LIVEPULSE_BOARD_HORIZON_DAYS on xhs (2-day window): the sessions ended longer ago leave the
    operator's sessions table (`sessions_folded_out`), and every level's peak viewers and the
    listed sessions' figures are the truth's (the fold's rule for sessions that never end)."""
    env = user_env(
        LIVEPULSE_DEDUPE_WINDOW_S="172800",
        LIVEPULSE_FOLD_SESSIONS="true",
        LIVEPULSE_BOARD_HORIZON_DAYS="3",
    )
    result = livepulse("analyze", FIXTURES / "xhs.jsonl", "--json", env=env)
    assert result.returncode == 0, result.stderr
    operator = json.loads(result.stdout)["operator"]
    truth = fixture_operator_truth_folding("xhs", 172_800_000)
    listed = operator["sessions"]
    assert operator["sessions_folded_out"] == len(truth["sessions"]) - len(listed) > 0
    truth["sessions"] = {sid: f for sid, f in truth["sessions"].items() if sid in listed}
    problems = operator_mismatches(operator, truth)
    assert [p for p in problems if ".median_watch_minutes:" not in p] == []
