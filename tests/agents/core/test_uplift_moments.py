"""`interaction_uplift`'s interval from mergeable moments of its per-session rows (issue 17).

The interval is the delta method on the log scale, Student's t with Satterthwaite's degrees of
freedom, clustered by session (docs/metrics.md). Here it is computed again from the raw rows,
written out in the test with scipy's t quantile (not `agents.core.stats`), on random rows and
on the fixtures' sessions counted from their lines by the truth reference's reader; and the
production figure is the same for one ledger, its summarized sessions folded, its periods
frozen, and partitions merged.
"""

from __future__ import annotations

import math
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from agents.core import Ledger, OperatorBoard
from agents.core.facts import ClaimFacts
from agents.core.merge import merge_ledgers
from agents.core.metrics import (
    CLAIM_PARTS,
    compact_uplift_part,
    compute_claims,
    interaction_uplift,
    interaction_uplift_part,
)
from agents.core.persist import dump_state, load_state
from agents.core.stats import (
    add_moments,
    moments_log_ratio_interval,
    rate_score_interval,
    row_moments,
)
from schemas import Interaction, OrderPaid, Rejection, ViewerJoined
from streams.tools.simulator.truth import read_stream
from tests.agents.core.test_merge import records, split

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
DAY = 86_400_000
Row = tuple[int, int, int, int]


def reference_interval(rows: list[Row]) -> tuple[float, float] | None:
    """(IB / IP) / (OB / OP) over the rows, one per session: each session's influence on the
    log is ib/IB - ip/IP - ob/OB + op/OP; se^2 = G/(G-1) sum (u - mean)^2; t quantile with
    nu = 2 (sum u^2)^2 / (G var(u^2)) (Satterthwaite), capped at G - 1, floored at 1."""
    data = np.asarray(rows, dtype=np.float64)
    g = data.shape[0]
    if g < 2:
        return None
    totals = data.sum(axis=0)
    if np.any(totals <= 0):
        return None
    u = data[:, 0] / totals[0] - data[:, 1] / totals[1] - data[:, 2] / totals[2]
    u = u + data[:, 3] / totals[3]
    u = u - u.mean()
    se = math.sqrt(g / (g - 1) * float(np.sum(u * u)))
    squares = u * u
    if g < 3:
        nu = 1.0
    else:
        spread = g * float(np.var(squares, ddof=1))
        nu = g - 1.0 if spread <= 0 else min(g - 1.0, max(1.0, 2 * squares.sum() ** 2 / spread))
    q = float(scipy_stats.t.ppf(0.975, nu))
    log_r = math.log(totals[0] / totals[1] / (totals[2] / totals[3]))
    return math.exp(log_r - q * se), math.exp(log_r + q * se)


def _close(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("sessions", [3, 4, 12, 60, 400])
def test_the_moments_interval_is_the_rows_interval(sessions: int) -> None:
    rng = np.random.default_rng(sessions)
    for _ in range(20):
        viewers = rng.poisson(30, sessions) + 1
        interacting = rng.binomial(viewers, 0.25)
        level = 2 * rng.beta(5, 5, sessions)
        rows: list[Row] = [
            (
                int(rng.binomial(i, min(1.0, 0.02 * m * 17))),
                int(i),
                int(rng.binomial(v - i, 0.02 * m)),
                int(v - i),
            )
            for v, i, m in zip(viewers, interacting, level, strict=True)
        ]
        want = reference_interval(rows)
        assert _close(moments_log_ratio_interval(row_moments(rows, 4), (1, -1, -1, 1)), want)
        # Moments of any split of the rows add up to the whole's.
        cut = int(rng.integers(0, sessions + 1))
        halves = add_moments([row_moments(rows[:cut], 4), row_moments(rows[cut:], 4)])
        assert halves == row_moments(rows, 4)


def _fixture_rows(name: str) -> list[Row]:
    """Per started session with viewers, from the lines (the truth reference's reader and
    its pairing rule, claims.md): interacting buyers, interacting pairs, other buyers, other
    pairs."""
    with (FIXTURES / f"{name}.jsonl").open() as handle:
        stream = read_stream(handle)
    viewers: dict[str, set[str]] = {}
    interacting: dict[str, set[str]] = {}
    buying: dict[str, set[str]] = {}
    for _position, event in stream.events:
        sid = getattr(event, "session_id", None)
        if sid is None or sid not in stream.started:
            continue
        if isinstance(event, Interaction) and event.kind != "reply":
            interacting.setdefault(sid, set()).add(event.user_id)
        elif isinstance(event, OrderPaid):
            buying.setdefault(sid, set()).add(event.user_id)
        elif not isinstance(event, ViewerJoined):
            continue
        viewers.setdefault(sid, set()).add(event.user_id)
    rows: list[Row] = []
    for sid in sorted(viewers):
        users, active, bought = viewers[sid], interacting.get(sid, set()), buying.get(sid, set())
        rows.append(
            (
                len(active & bought),
                len(active),
                len((users - active) & bought),
                len(users - active),
            )
        )
    return rows


def _ledger(
    events: list[object], window_ms: int | None = None, groups: Ledger | None = None
) -> Ledger:
    ledger = Ledger(window_ms, fold_sessions=window_ms is not None)
    ledger.membership_from = groups  # a partition's membership table (every group event)
    for event in events:
        if isinstance(event, Rejection):
            ledger.reject(event.reason)
        else:
            ledger.apply(event)  # type: ignore[arg-type]
    return ledger


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_the_claims_interval_is_the_reference_from_the_lines_however_the_state_is_held(
    name: str,
) -> None:
    """One ledger, the same with its sessions summarized (a 2-day window), after a snapshot,
    and 3 partitions merged: each gives the interval computed here from the lines' rows."""
    want = reference_interval(_fixture_rows(name))
    assert want is not None and want[0] < want[1]
    stream = records(name)
    decoded = [event for _topic, _key, event in stream]
    one = interaction_uplift(ClaimFacts(_ledger(decoded)))
    assert _close(one.interval, want)

    folded = _ledger(decoded, 2 * DAY)
    assert folded.summarized_sessions > 0 and folded.folded_uplift[0] > 0
    rows, moments = interaction_uplift_part(ClaimFacts(folded))
    assert len(rows) + moments[0] == len(_fixture_rows(name))
    measured = interaction_uplift(ClaimFacts(folded))
    assert _close(measured.interval, want)
    assert measured.observed == pytest.approx(one.observed, rel=1e-12)
    restored, _board = load_state(dump_state(folded, OperatorBoard()))
    assert _close(interaction_uplift(ClaimFacts(restored)).interval, want)

    groups = _ledger([e for e in decoded if getattr(e, "type", "").startswith("group_")], 2 * DAY)
    parts = [_ledger([e for _t, _k, e in part], 2 * DAY, groups) for part in split(stream, 3)]
    assert all(part.folded_uplift[0] > 0 for part in parts)
    merged = merge_ledgers(parts)
    assert merged.folded_uplift == add_moments([p.folded_uplift for p in parts])
    assert _close(interaction_uplift(ClaimFacts(merged)).interval, want)
    # The parts as the periods keep them: merged raw, or each compacted to its moments.
    uplift = CLAIM_PARTS["interaction_uplift"]
    raw = [uplift.part(ClaimFacts(p)) for p in parts]
    assert _close(uplift.finish(uplift.merge(raw)).interval, want)
    compact = [compact_uplift_part(part) for part in raw]
    assert all(rows == {} for rows, _m in compact)  # folded sessions' moments: moments
    three = {"x": (1, 9, 0, 30), "y": (0, 4, 1, 25), "z": (2, 7, 0, 41)}
    few = compact_uplift_part((three, raw[0][1]))  # beside folded moments: folded too
    assert few[0] == {} and few[1][0] == 3 + raw[0][1][0]
    assert _close(uplift.finish(uplift.merge(compact)).interval, want)


def test_a_frozen_part_does_not_grow_with_its_sessions() -> None:
    rows = {f"s{k}": (k % 3, 30 + k % 7, k % 2, 90 + k % 11) for k in range(5000)}
    # A part of fewer rows than the moments' numbers keeps them (a day of a few sessions).
    three = {k: rows[k] for k in list(rows)[:3]}
    assert compact_uplift_part((three, row_moments([], 4))) == (three, row_moments([], 4))
    small = compact_uplift_part(({k: rows[k] for k in list(rows)[:50]}, row_moments([], 4)))
    large = compact_uplift_part((rows, row_moments([], 4)))
    size = [len(zlib.compress(pickle.dumps(part, protocol=5), 1)) for part in (small, large)]
    assert size[1] <= size[0] + 64, size


def test_a_version_9_frozen_part_and_summaries_still_read() -> None:
    """A snapshot version 9 kept a frozen period's uplift part as its rows by session, and a
    ledger's summaries without the ledger-level sums (the uplift moments, the shares' and the
    member dwell's cluster sums): both read as this version's."""
    rows = {"a": (1, 10, 0, 40), "b": (0, 5, 2, 60), "c": (3, 12, 1, 33)}
    uplift = CLAIM_PARTS["interaction_uplift"]
    old = uplift.finish(rows)  # type: ignore[arg-type]
    assert _close(old.interval, reference_interval(list(rows.values())))
    assert old.observed == pytest.approx((4 / 27) / (3 / 133))
    later = compact_uplift_part(({"d": (2, 9, 1, 50)}, row_moments([], 4)))
    merged = uplift.finish(uplift.merge([rows, later]))
    assert _close(merged.interval, reference_interval([*rows.values(), (2, 9, 1, 50)]))

    stream = records("xhs")
    folded = _ledger([event for _topic, _key, event in stream], 2 * DAY)
    want = interaction_uplift(ClaimFacts(folded)).interval
    state = folded.__getstate__()
    for name in ("folded_uplift", "folded_shares", "folded_dwell", "folded_tail"):
        del state[name]
    old_ledger = Ledger.__new__(Ledger)
    old_ledger.__setstate__(state)
    assert old_ledger.folded_uplift == folded.folded_uplift
    assert old_ledger.folded_shares == folded.folded_shares
    assert old_ledger.folded_dwell == folded.folded_dwell and folded.folded_dwell[0] > 0
    assert old_ledger.folded_tail == folded.folded_tail and folded.folded_tail[5] > 0
    assert _close(interaction_uplift(ClaimFacts(old_ledger)).interval, want)
    # Every claim of the version 9 state read as this version's is the same.
    assert compute_claims(old_ledger) == compute_claims(folded)


def _tail_rows(ledger: Ledger) -> tuple[list[tuple[int, int]], list[int]]:
    """Per started, ended session (tail cents, live cents), and the orders' amounts, from a
    keep-everything ledger's raw orders (claims.md's rule)."""
    rows, amounts = [], []
    for _sid, session in sorted(ledger.sessions.items()):
        end = session.ended_ts
        if session.started_ts is None or end is None:
            continue
        tail = live = 0
        for order in session.orders:
            if order.ts <= end:
                live += order.amount_cents
            elif order.ts <= end + 3 * DAY:
                tail += order.amount_cents
            else:
                continue
            amounts.append(order.amount_cents)
        rows.append((tail, live))
    return rows, amounts


@pytest.mark.parametrize("name", ["xhs", "impulse"])
def test_post_live_tails_interval_from_moments_is_the_rows_one(name: str) -> None:
    """`post_live_tail`'s summarized sessions fold into the ledger's moments of their (tail,
    live) rows: the interval equals the score interval computed from the raw rows
    (`rate_score_interval`, the rows' own cluster-robust se), held, summarized and merged."""
    stream = records(name)
    decoded = [event for _topic, _key, event in stream]
    rows, amounts = _tail_rows(_ledger(decoded))
    want = rate_score_interval([(tail, 3 * live) for tail, live in rows], amounts)
    assert want is not None
    post_live_tail = CLAIM_PARTS["post_live_tail"]
    folded = _ledger(decoded, 2 * DAY)
    assert folded.folded_tail[5] > 0  # summarized sessions' rows folded
    groups = _ledger([e for e in decoded if getattr(e, "type", "").startswith("group_")], 2 * DAY)
    parts = [_ledger([e for _t, _k, e in part], 2 * DAY, groups) for part in split(stream, 3)]
    for ledger in (_ledger(decoded), folded, merge_ledgers(parts)):
        measured = post_live_tail.finish(post_live_tail.part(ClaimFacts(ledger)))
        assert measured.clusters == len(rows)
        assert _close(measured.interval, want)
    compact = [post_live_tail.compact(post_live_tail.part(ClaimFacts(p))) for p in parts]
    assert _close(post_live_tail.finish(post_live_tail.merge(compact)).interval, want)
    old = ({"a": (0, 50_000), "b": (2_000, 80_000)}, (3, 1, 4, 132_000, 5_000_000_000))
    assert post_live_tail.finish(old).clusters == 2  # a version 9 frozen part still reads
