"""Group events compacted before the oldest lookup (issue 17): in a ledger that holds every
partition, each (merchant, user)'s history older than what can still be asked is replaced by
its state there, and every membership that can still be asked is the whole history's."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agents.core import Ledger, build_report
from agents.core.ingest import ingest
from agents.core.timeline import NEVER_MEMBER, Membership
from streams.tools.simulator.generate import generate
from streams.tools.simulator.scenarios import get_scenario
from tests.agents.core.test_merge import records

DAY = 86_400_000


def _fed(lines: list[bytes], fold_months: bool) -> Ledger:
    ledger = Ledger(7 * DAY, fold_sessions=True, fold_months=fold_months)
    for line in lines:
        ingest(line, ledger, None)
    return ledger


def _membership(events: Any) -> Membership:
    return Membership(events) if events else NEVER_MEMBER


@pytest.mark.parametrize(("days", "scale"), [(120, 0.5)])
def test_compacted_group_events_answer_every_lookup_still_asked(days: int, scale: float) -> None:
    """A simulated stream through a ledger that compacts (`fold_months`) and one that keeps
    every group event (computed without the compaction): at every group event's `ts` from the
    compaction's cutoff on, and at each undecided pair's first order whatever its age, membership is
    the same; pairs in no group at the cutoff are gone; the group events are fewer; and
    every claim is the same."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    lines = [line.encode() for line in generate(scenario, 7, scale).lines]
    compacting, keeping = _fed(lines, True), _fed(lines, False)
    cutoff = compacting.groups_compacted_to
    assert cutoff is not None and cutoff > 30 * DAY + min(
        ts for events in keeping.group_events.values() for ts, *_ in events
    )
    held = sum(map(len, compacting.group_events.values()))
    every = sum(map(len, keeping.group_events.values()))
    assert held < 0.85 * every, (held, every)  # measured 169 of 215
    assert len(compacting.group_events) < len(keeping.group_events)  # left every group: gone
    asked = 0
    for pair, events in keeping.group_events.items():
        whole = _membership(events)
        compacted = _membership(compacting.group_events.get(pair))
        times = {ts for ts, *_ in events if ts >= cutoff - 1} | {cutoff - 1, cutoff}
        # A pair's first order is asked while its repurchase is undecided: once decided the
        # ledger folds it into counts (`Ledger._fold_first_orders`) and asks no more.
        first = compacting.first_orders.get(pair)
        if first is not None:
            times.add(first[0])
        for ts in times:
            assert compacted.member_at(ts) == whole.member_at(ts), (pair, ts)
            asked += 1
    assert asked > 200
    got, want = build_report(compacting)["claims"], build_report(keeping)["claims"]
    for claim in ("group_order_share", "group_repurchase_30d", "group_member_dwell"):
        assert got[claim] == want[claim], claim


def test_the_fixtures_compact_and_keep_their_group_claims() -> None:
    """xhs (60 days) with a 2-day window: compacted, and its group claims those of the ledger
    that keeps every group event (the truth comparison of every claim is
    test_retention's `test_closed_sessions_summarize_and_every_claim_stays_exact`, which
    compacts too)."""
    decoded = [event for _topic, _key, event in records("xhs")]
    compacting = Ledger(2 * DAY, fold_sessions=True, fold_months=True)
    keeping = Ledger(2 * DAY, fold_sessions=True)
    for event in decoded:
        for ledger in (compacting, keeping):
            if not hasattr(event, "reason"):
                ledger.apply(event)
    assert compacting.groups_compacted_to is not None
    assert sum(map(len, compacting.group_events.values())) < sum(
        map(len, keeping.group_events.values())
    )
    got, want = build_report(compacting)["claims"], build_report(keeping)["claims"]
    for claim in ("group_order_share", "group_repurchase_30d", "group_member_dwell"):
        assert got[claim] == want[claim], claim
