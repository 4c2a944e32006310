"""What a day's freeze found, not done again (issue 19): a held session's membership lookups,
kept by the period gate for the session's summary (`periods.PeriodGate.note_members`,
`ledger.FoundMembers`), and the days' raw `price_dwell_association` rows, kept for their
month's part (`PeriodGate.month_price`) instead of a month's sub-ledger of its facts."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import agents.core.ledger as ledger_module
from agents.core import Ledger, build_report
from agents.core.ledger import DAY_MS, FoundMembers
from agents.core.periods import (
    MONTH,
    PeriodGate,
    PeriodSettings,
    attach,
    claim_periods,
    period_key,
)
from agents.core.sketch import FoldedFigures
from agents.core.timeline import Membership
from streams.tools.analyze import analyze_records, iter_records
from streams.tools.simulator.period_truth import PeriodCut
from streams.tools.simulator.truth import Stream, is_member, read_stream, split_lines

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
WEEK_MS = 7 * DAY_MS
#: The claims that read membership at a first join or an order.
MEMBER_CLAIMS = ("group_member_dwell", "group_spend_multiple", "group_order_share")


@cache
def stream(name: str) -> Stream:
    return read_stream(split_lines((FIXTURES / f"{name}.jsonl").read_text()))


def folded(name: str, found: list[tuple[str, FoundMembers | None]] | None = None) -> Ledger:
    """The fixture through a fold-on ledger with claims by period; with `found`, every
    summary's `members_found` answer is appended to it."""
    ledger = attach(Ledger(WEEK_MS, fold_sessions=True), PeriodSettings())
    gate = ledger.period_gate
    assert isinstance(gate, PeriodGate)
    if found is not None:
        original = gate.members_found

        def recorded(sid: str) -> FoundMembers | None:
            answer = original(sid)
            found.append((sid, answer))
            return answer

        gate.members_found = recorded  # type: ignore[method-assign]
    return analyze_records(iter_records(FIXTURES / f"{name}.jsonl"), ledger)


def claims(ledger: Ledger) -> dict[str, Any]:
    return {c: build_report(ledger)["claims"][c] for c in MEMBER_CLAIMS}


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_what_the_freeze_found_is_each_pair_s_membership_by_the_truth(name: str) -> None:
    """Every summary gets what its day's freeze found, and each (viewer, first join) and
    (buyer, order) before the found horizons is a member there exactly when `truth.py`'s
    membership over the whole fixture says so."""
    found: list[tuple[str, FoundMembers | None]] = []
    ledger = folded(name, found)
    truth = stream(name)
    assert len(found) == ledger.summarized_sessions > 40
    assert all(answer is not None for _sid, answer in found)
    joins = orders = members = 0
    for sid, answer in found:
        assert answer is not None
        merchant = truth.started[sid].merchant_id
        first_joins = {
            user: min(ts for ts, _position, is_join in views if is_join)
            for (session, user), views in truth.views.items()
            if session == sid and any(is_join for _ts, _position, is_join in views)
        }
        before = {user: ts for user, ts in first_joins.items() if ts < answer.joins_to}
        assert answer.joined <= set(before)
        for user, ts in before.items():
            assert (user in answer.joined) == is_member(truth, merchant, user, ts), (sid, user)
            joins += 1
        session_orders = [
            order
            for _position, order in truth.orders
            if order.session_id == sid and order.ts < answer.orders_to
        ]
        paid = {(order.user_id, order.ts) for order in session_orders}
        assert answer.ordered <= paid
        for order in session_orders:
            member = is_member(truth, merchant, order.user_id, order.ts)
            assert ((order.user_id, order.ts) in answer.ordered) == member, (sid, order)
            orders += 1
        members += len(answer.joined) + len(answer.ordered)
    assert joins > 300 and orders > 100 and members > 50


class CountedMembership(Membership):
    """`Membership`, counting how many are built (one a (merchant, user) a summary looks up)."""

    built = 0

    def __init__(self, group_events: Any) -> None:
        CountedMembership.built += 1
        super().__init__(group_events)


def summary_lookups(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any]]:
    """The memberships built by the summaries of the fixture's fold-on pass, and its claims."""
    monkeypatch.setattr(ledger_module, "Membership", CountedMembership)
    summarize = Ledger._summarize
    built = [0]

    def counted(self: Ledger, *args: Any) -> None:
        before = CountedMembership.built
        summarize(self, *args)
        built[0] += CountedMembership.built - before

    monkeypatch.setattr(Ledger, "_summarize", counted)
    ledger = folded(name)
    monkeypatch.undo()
    return built[0], claims(ledger)


def same_claims(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def close(x: Any, y: Any) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-12)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, list | tuple) and isinstance(y, list | tuple):
            return len(x) == len(y) and all(close(p, q) for p, q in zip(x, y, strict=True))
        return bool(x == y)

    return close(a, b)


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_summaries_look_up_only_what_the_freeze_did_not_find(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With what the freezes found, the summaries build almost no membership (the others:
    pairs after a found horizon); without it (the gate answering nothing, as after a
    restore), they look every pair up again. The three membership claims are the same
    either way."""
    with_found, figures = summary_lookups(name, monkeypatch)
    monkeypatch.setattr(PeriodGate, "members_found", lambda self, sid: None)
    without, plain = summary_lookups(name, monkeypatch)
    assert without > 100 and with_found <= without // 10
    assert same_claims(figures, plain)


def test_a_late_group_event_count_moved_since_the_freeze_drops_what_it_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A membership source that applied a group event stamped before a horizon it gave
    (a worker's table: an idle partition's late event) after the freeze: the summary looks
    every pair up again rather than read what the freeze found before it."""
    with_found, figures = summary_lookups("xhs", monkeypatch)
    # The summaries' count (the freezes' is 0: a ledger applies no late event).
    monkeypatch.setattr(ledger_module, "late_group_events", lambda source: 1)
    moved, moved_figures = summary_lookups("xhs", monkeypatch)
    monkeypatch.setattr(PeriodGate, "members_found", lambda self, sid: None)
    without, _plain = summary_lookups("xhs", monkeypatch)
    assert moved == without > with_found
    assert same_claims(figures, moved_figures)


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_a_month_s_price_dwell_from_its_days_rows_equals_the_truth(
    name: str, fold: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each month frozen takes `price_dwell_association` from its days' kept rows (none from
    its facts), and its rho and median minutes per tier equal `truth.py` on the fixture cut
    to the month; its interval (resampled by session) equals the one from the month's facts,
    which the rows are in the order of."""
    from_days: list[str] = []
    original = PeriodGate.month_price

    def recorded(self: PeriodGate, month: str, days: Any) -> Any:
        price = original(self, month, days)
        if price is not None:
            from_days.append(month)
        return price

    monkeypatch.setattr(PeriodGate, "month_price", recorded)
    ledger = attach(Ledger(WEEK_MS, fold_sessions=fold), PeriodSettings())
    analyze_records(iter_records(FIXTURES / f"{name}.jsonl"), ledger)
    claim_periods(ledger, PeriodSettings())  # without the fold, the freeze is the report's
    months = sorted(key for kind, key in ledger.frozen_periods if kind == MONTH)
    assert months and from_days == months
    monkeypatch.undo()
    cut = PeriodCut(split_lines((FIXTURES / f"{name}.jsonl").read_text()))
    plain = attach(Ledger(WEEK_MS, fold_sessions=fold), PeriodSettings())
    monkeypatch.setattr(PeriodGate, "month_price", lambda self, month, days: None)
    analyze_records(iter_records(FIXTURES / f"{name}.jsonl"), plain)
    claim_periods(plain, PeriodSettings())
    for month in months:
        truth = cut.claims(lambda ts, month=month: period_key(MONTH, ts) == month)
        mine = ledger.frozen_periods[(MONTH, month)]["price_dwell_association"]
        facts = plain.frozen_periods[(MONTH, month)]["price_dwell_association"]
        observed = truth["price_dwell_association"]["observed"]
        assert math.isclose(mine[0], observed, rel_tol=1e-9), (month, mine, observed)
        assert mine == facts, month


def test_the_kept_day_rows_are_let_go_with_their_month_or_past_two_months_of_days() -> None:
    """A month's freeze takes and lets go every kept day of it, and returns None (its part
    from its facts) when a day with facts was not kept; days of months never frozen here are
    let go beyond 62, the oldest first."""
    gate = PeriodGate(PeriodSettings())
    empty = FoldedFigures()
    days = [f"2024-{month:02d}-{day:02d}" for month in (1, 2, 3) for day in range(1, 29)]
    for number, day in enumerate(days):
        gate.note_day_price(day, ([number], [float(number)], [f"s{number:03d}"], empty))
    assert sorted(gate._day_prices) == days[-62:]  # 84 noted: January's first 22 let go
    assert gate.month_price("2024-01", days[:28]) is None  # some not kept: from facts
    assert not any(day.startswith("2024-01") for day in gate._day_prices)
    prices, minutes, sessions, folded = gate.month_price("2024-02", days[28:56]) or (
        (),
        (),
        (),
        None,
    )
    assert list(prices) == list(range(28, 56)) and sessions == [f"s{n:03d}" for n in range(28, 56)]
    assert folded is not None and not folded.price_watch.count
    assert sorted(gate._day_prices) == days[56:]
