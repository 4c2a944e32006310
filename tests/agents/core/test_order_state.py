"""The ledger-wide order state (issue 17): what `group_repurchase_30d` and
`group_spend_multiple` read is kept per (merchant, user) and per (merchant, month, user), not
per order, and gives the same figures as every order did; refunds count within the refund
horizon (docs/design.md, "Worker state: what is kept"), the others are counted, not applied."""

from __future__ import annotations

import itertools
import json
import pickle
import random
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.ledger import DAY_MS, cst_month
from agents.core.merge import merge_boards, merge_ledgers
from agents.core.metrics import THIRTY_DAYS_MS
from agents.core.persist import MAGIC, dump_state, load_state
from schemas import Rejection, event_adapter
from tests.support.cli import FIXTURES, livepulse, one_error_line, user_env
from tests.support.truth import operator_mismatches, report_mismatches

REPO = Path(__file__).resolve().parents[3]
T0 = 1_721_800_800_000
_ids = itertools.count()


def ev(type_: str, ts: int, **fields: Any) -> Any:
    return event_adapter.validate_python(
        {"event_id": f"o{next(_ids)}", "type": type_, "ts": ts, **fields}
    )


def paid(
    ts: int,
    order_id: str,
    user: str = "u1",
    merchant: str = "m1",
    cents: int = 100,
    session: str | None = None,
) -> Any:
    item = {"sku_id": "k", "quantity": 1, "unit_price_cents": cents, "category": "apparel"}
    fields: dict[str, Any] = {} if session is None else {"session_id": session}
    return ev(
        "order_paid",
        ts,
        order_id=order_id,
        merchant_id=merchant,
        user_id=user,
        amount_cents=cents,
        items=[item],
        **fields,
    )


def refunded(ts: int, order_id: str, reason: str = "size") -> Any:
    return ev("order_refunded", ts, order_id=order_id, amount_cents=100, reason=reason)


def _feed(events: list[Any], ledger: Ledger) -> tuple[Ledger, OperatorBoard]:
    board = OperatorBoard()
    for event in events:
        if isinstance(event, Rejection):
            ledger.reject(event.reason)
        elif ledger.apply(event):
            board.observe(event)
    return ledger, board


def _repurchase_by_hand(orders: list[tuple[str, str, int]], end_ts: int) -> tuple[int, int]:
    """(repurchased, eligible) of claims.md's definition over every order, no member check
    (everyone is a member here): written from the definition, not from the ledger."""
    times: dict[tuple[str, str], list[int]] = defaultdict(list)
    for merchant, user, ts in orders:
        times[(merchant, user)].append(ts)
    eligible = repurchased = 0
    for pair_times in times.values():
        first = min(pair_times)
        if first + THIRTY_DAYS_MS > end_ts:
            continue
        eligible += 1
        repurchased += any(first < t <= first + THIRTY_DAYS_MS for t in pair_times)
    return repurchased, eligible


def test_repurchase_and_spend_from_per_key_state_in_any_order_and_split() -> None:
    """Random orders of 40 (merchant, user)s over 5 months, everyone a member: the ledger's
    repurchase counts and the monthly spend equal the definition's over every order, whatever
    the arrival order and however the orders are split over ledgers and merged."""
    rng = random.Random(5)
    events: list[Any] = []
    orders: list[tuple[str, str, int]] = []
    for i in range(400):
        merchant, user = f"m{rng.randrange(2)}", f"u{rng.randrange(20)}"
        # Some equal ts (a repeat at the first's ts is not a repurchase), some 30 days apart.
        ts = T0 + rng.choice([0, THIRTY_DAYS_MS, THIRTY_DAYS_MS + 1]) + rng.randrange(150) * DAY_MS
        orders.append((merchant, user, ts))
        events.append(paid(ts, f"o-{i}", user, merchant, 100 + i))
    for merchant, user in {(m, u) for m, u, _ts in orders}:
        events.append(
            ev("group_joined", T0 - DAY_MS, group_id="g", merchant_id=merchant, user_id=user)
        )
    end_ts = max(ts for _m, _u, ts in orders)
    want = _repurchase_by_hand(orders, end_ts)
    spend: dict[tuple[str, str, str], int] = defaultdict(int)
    for (merchant, user, ts), event in zip(orders, events, strict=False):
        spend[(merchant, cst_month(ts), user)] += event.amount_cents
    for seed in range(3):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        single, _board = _feed(shuffled, Ledger())
        parts = [_feed(shuffled[k::3], Ledger())[0] for k in range(3)]
        for ledger in (single, merge_ledgers(parts)):
            report = build_report(ledger)
            got = report["claims"]["group_repurchase_30d"]["detail"]
            assert (got["repurchased"], got["eligible"]) == want
            assert ledger.month_spend == spend
    assert want[1] > 10 and 0 < want[0] < want[1]


def test_the_repurchase_and_spend_state_does_not_grow_with_the_orders() -> None:
    """One (merchant, user) ordering 50 or 1,000 times over 40 days: what repurchase and
    spend keep of them pickles to the same size (two ints for the pair, one sum a month)."""

    def state_bytes(n: int) -> int:
        ledger = Ledger(dedupe_window_ms=7 * DAY_MS)
        step = 40 * DAY_MS // n
        for i in range(n):
            assert ledger.apply(paid(T0 + i * step, f"o-{i}"))
        assert len(ledger.first_orders) == 1 and len(ledger.month_spend) == 3  # Jul-Sep
        return len(pickle.dumps((ledger.first_orders, ledger.month_spend)))

    few, many = state_bytes(50), state_bytes(1_000)
    assert many <= few + 8  # the sums' ints may take a byte or two more


def test_a_refund_counts_only_within_the_horizon_after_its_order() -> None:
    """A 10-day refund horizon: a refund 9 days after its order counts; one 11 days after
    (late) and one before its order (unmatched: no payment at or before it) count nowhere, in
    the claims and in the operator's refunds, and are counted in `retention`. Without a
    horizon every one of them counts, as before issue 17."""
    session = [
        ev("session_started", T0, session_id="s1", room_id="r1", merchant_id="m1"),
        ev("session_ended", T0 + 3_600_000, session_id="s1"),
    ]
    events = session + [paid(T0 + 60_000, f"o-{i}", f"u{i}", session="s1") for i in range(3)]
    events += [
        refunded(T0 + 9 * DAY_MS, "o-0"),  # within the horizon
        refunded(T0 + 11 * DAY_MS, "o-1"),  # later than it
        refunded(T0, "o-2"),  # before its order was paid
        refunded(T0 + DAY_MS, "o-never"),  # an order never paid
    ]
    horizon, _board = _feed(events, Ledger(refund_horizon_ms=10 * DAY_MS))
    report = build_report(horizon, _board)
    claims = report["claims"]
    assert claims["return_rate"]["detail"] == {"refunded_orders": 1, "paid_orders": 3}
    assert claims["size_refund_share"]["detail"] == {"size_refunded": 1, "apparel_orders": 3}
    assert report["retention"]["refund_horizon_days"] == 10
    assert (report["retention"]["late_refunds"], report["retention"]["unmatched_refunds"]) == (1, 2)
    assert report["operator"]["overall"]["refunds"] == 1
    everything, board = _feed(events, Ledger())
    report = build_report(everything, board)
    assert report["claims"]["return_rate"]["detail"]["refunded_orders"] == 3
    assert report["operator"]["overall"]["refunds"] == 3
    assert (report["retention"]["late_refunds"], report["retention"]["unmatched_refunds"]) == (0, 1)


def _fixture_events(name: str) -> list[Any]:
    from tests.agents.core.test_merge import records

    return [event for _topic, _key, event in records(name)]


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_fixtures_with_a_short_window_and_refund_horizon_give_the_truth(name: str) -> None:
    """A 2-day window and a 14-day refund horizon (every refund of the fixtures is within 12
    days after its order): the report is the truth reference's, shuffled by up to 12 hours,
    saved and loaded, and split over 3 partitions by the contract's keys and merged; and the
    intervals are the keep-everything ledger's."""
    from tests.agents.core.test_merge import records, split

    truth = json.loads((FIXTURES / f"{name}.truth.json").read_text("utf-8"))
    decoded = _fixture_events(name)
    everything = build_report(*_feed(decoded, Ledger()))
    rng = random.Random(17)
    jittered = sorted(
        decoded,
        key=lambda e: (e.ts if not isinstance(e, Rejection) else 0) + rng.randrange(12 * 3_600_000),
    )

    def ledger() -> Ledger:
        return Ledger(2 * DAY_MS, refund_horizon_ms=14 * DAY_MS)

    fed = _feed(jittered, ledger())
    restored = load_state(dump_state(*fed))
    parts = [_feed([e for _t, _k, e in part], ledger()) for part in split(records(name), 3)]
    merged = (merge_ledgers([p[0] for p in parts]), merge_boards([p[1] for p in parts]))
    for state in (fed, restored, merged):
        report = build_report(*state)
        assert report_mismatches(report, truth) == []
        assert report["retention"]["late_refunds"] == report["retention"]["unmatched_refunds"] == 0
        for claim in (
            "group_repurchase_30d",
            "group_spend_multiple",
            "size_refund_share",
            "return_rate",
            "bundle_share",
        ):
            got, want = report["claims"][claim], everything["claims"][claim]
            for key in ("ci_low", "ci_high", "observed"):
                assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), (claim, key)
    assert operator_mismatches(build_report(*merged)["operator"], truth["operator"]) == []


def test_an_older_snapshot_loads_with_its_orders_filed() -> None:
    """A version 4 state (no per-key order state, no refund horizon) loads: its orders are
    filed per (merchant, user) and month, and every refund counts, as when it was written."""
    events = [paid(T0, "o-1"), paid(T0 + DAY_MS, "o-2"), refunded(T0 + 200 * DAY_MS, "o-1")]
    ledger, board = _feed(events, Ledger(refund_horizon_ms=90 * DAY_MS))
    want = build_report(ledger, board)
    assert want["retention"]["late_refunds"] == 1
    old = Ledger.__new__(Ledger)
    old.__dict__.update(ledger.__dict__)
    for name in ("first_orders", "month_spend", "month_first_joins", "refund_horizon_ms"):
        del old.__dict__[name]
    data = MAGIC + bytes([4]) + zlib.compress(pickle.dumps((old, board), protocol=5))
    got_ledger, got_board = load_state(data)
    assert got_ledger.first_orders == ledger.first_orders
    assert got_ledger.month_spend == ledger.month_spend
    assert got_ledger.month_first_joins == {} and got_ledger.refund_horizon_ms is None
    got = build_report(got_ledger, got_board)
    assert got["retention"]["late_refunds"] == 0
    assert got["claims"]["return_rate"]["detail"]["refunded_orders"] == 1
    assert load_state(dump_state(ledger, board))[0].refund_horizon_ms == 90 * DAY_MS


def test_analyze_takes_the_refund_horizon_from_the_environment() -> None:
    """`livepulse analyze` as a user runs it: LIVEPULSE_REFUND_HORIZON_DAYS=2 leaves the
    fixture's refunds paid more than 2 days after their order counted as late (as many as
    the file has, counted here from its lines), and a bad value is one clear error line."""
    lines = (FIXTURES / "xhs.jsonl").read_text("utf-8").splitlines()
    paid_ts: dict[str, list[int]] = defaultdict(list)
    refunds: list[tuple[str, int]] = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("ts"), int):
            continue
        if obj.get("type") == "order_paid":
            paid_ts[obj["order_id"]].append(obj["ts"])
        elif obj.get("type") == "order_refunded":
            refunds.append((obj["order_id"], obj["ts"]))
    late = {
        (order_id, ts)
        for order_id, ts in refunds
        if order_id in paid_ts and not any(t <= ts <= t + 2 * DAY_MS for t in paid_ts[order_id])
    }
    result = livepulse(
        "analyze", FIXTURES / "xhs.jsonl", "--json", env=user_env(LIVEPULSE_REFUND_HORIZON_DAYS="2")
    )
    assert result.returncode == 0, result.stderr
    retention = json.loads(result.stdout)["retention"]
    assert retention["refund_horizon_days"] == 2
    assert retention["late_refunds"] == len(late) > 0
    bad = livepulse(
        "analyze", FIXTURES / "xhs.jsonl", env=user_env(LIVEPULSE_REFUND_HORIZON_DAYS="-3")
    )
    assert "LIVEPULSE_REFUND_HORIZON_DAYS" in one_error_line(bad, "livepulse analyze")


def test_orders_are_filed_by_their_china_standard_time_month() -> None:
    """The month of an order is its CST (UTC+8) calendar month, to the millisecond."""
    august_cst = 1_722_441_600_000  # 2024-07-31T16:00:00Z = 2024-08-01 00:00 CST
    assert cst_month(august_cst - 1) == "2024-07"
    assert cst_month(august_cst) == "2024-08"
    assert cst_month(-8 * 3_600_000 - 1) == "1969-12" and cst_month(-8 * 3_600_000) == "1970-01"


def test_per_user_column_sums_give_group_spend_multiples_interval() -> None:
    """What the planned month fold rests on (docs/design.md): `log_ratio_interval` with rows
    clustered by user equals it fed one row per user, the user's four column sums, unclustered
    (the influence is summed per cluster, and the Satterthwaite df reads the cluster sums)."""
    from agents.core.stats import log_ratio_interval

    rng = random.Random(3)
    rows: list[tuple[float, float, float, float]] = []
    users: list[str] = []
    for _ in range(300):
        user = f"u{rng.randrange(60)}"
        member = float(rng.random() < 0.3)
        amount = rng.choice([0.0, 0.0, rng.lognormvariate(4, 1)])
        rows.append((member * amount, member, amount, 1.0))
        users.append(user)
    sums: dict[str, list[float]] = {}
    for user, row in zip(users, rows, strict=True):
        into = sums.setdefault(user, [0.0] * 4)
        for j in range(4):
            into[j] += row[j]
    by_rows = log_ratio_interval(rows, (1, -1, -1, 1), clusters=users)
    by_users = log_ratio_interval(list(sums.values()), (1, -1, -1, 1))
    assert by_rows is not None and by_users is not None
    assert by_users == pytest.approx(by_rows, rel=1e-12)
