"""Issue 5's faults against the real broker: redelivery, adversarial order across (and within)
topics, and a broker stopped and started under a running worker. Each ends with the worker's
/report equal to the fixture's independent truth file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from streams.replayer import route
from streams.settings import Settings
from tests.support.live import (
    drain,
    fixture_lines,
    fixture_truth,
    replay_lines,
    report_of,
    run_settings,
    running_worker,
    truth_mismatches,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURE = "impulse"  # the smaller fixture: 10,624 lines


def test_every_record_twice_and_the_whole_topic_again_moves_no_figure(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Each line sent twice in a row, then the whole fixture again (far apart), then once
    more: four copies of every record. The figures equal the truth file's; only the counts of
    repeats differ, by exactly the extra copies."""
    lines, truth = fixture_lines(FIXTURE), fixture_truth(FIXTURE)
    settings = run_settings(kafka_bootstrap, "redelivery")
    with running_worker(settings, tmp_path / "worker.log") as worker:
        doubled = [copy for line in lines for copy in (line, line)] + lines
        replay_lines(settings, tmp_path / "tripled.jsonl", doubled)
        replay_lines(settings, tmp_path / "again.jsonl", lines)
        drained = drain(worker)
        assert drained.records == 4 * len(lines)
        report = report_of(worker)

    counts = truth["events"]
    # Every copy of a line that decodes is a repeat except the first of each event id: the
    # file's own valid + duplicates records, four times, less the distinct events. Every
    # copy of an invalid line is rejected (and dead-lettered) again: rejections count records.
    expected = {
        "valid": counts["valid"],
        "rejected": 4 * counts["rejected"],
        "duplicates": 4 * (counts["valid"] + counts["duplicates"]) - counts["valid"],
    }
    assert report["events"] == expected
    assert truth_mismatches(report, truth, lines, events=expected) == []


def by_topic(lines: list[bytes], settings: Settings) -> dict[str, list[bytes]]:
    """The fixture's lines grouped by the topic the replayer sends them to (file order kept)."""
    groups: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        where = route(line, settings, "live.interactions")
        assert where.topic is not None
        groups[where.topic.removeprefix(settings.topic_prefix)].append(line)
    return groups


# Each topic is replayed, and processed, before the next starts: every order before any view,
# session or group; every session_started last of all.
ADVERSARIAL_ORDER = (
    "live.orders",
    "live.views",
    "live.interactions",
    "live.groups",
    "live.sessions",
)


@pytest.mark.parametrize("within", ["file order", "reversed"])
def test_topics_in_adversarial_order_give_the_truth(
    kafka_bootstrap: str, tmp_path: Path, within: str
) -> None:
    """Orders before their session exists, views before their session, groups after the
    orders they qualify, sessions last; `reversed` also reverses each topic's lines (beyond
    the contract, which keeps a session's order within a topic: every `viewer_left` before its
    `viewer_joined`, every refund before its order, `session_ended` before `session_started`)."""
    lines, truth = fixture_lines(FIXTURE), fixture_truth(FIXTURE)
    settings = run_settings(kafka_bootstrap, "order")
    groups = by_topic(lines, settings)
    assert sorted(groups) == sorted(ADVERSARIAL_ORDER)
    with running_worker(settings, tmp_path / "worker.log") as worker:
        for topic in ADVERSARIAL_ORDER:
            batch = groups[topic][::-1] if within == "reversed" else groups[topic]
            replay_lines(settings, tmp_path / f"{topic}.jsonl", batch)
            drain(worker)  # processed before the next topic is written
        report = report_of(worker)
    assert report["events"] == truth["events"]
    assert truth_mismatches(report, truth, lines) == []
