"""Soak of the metric core over a long simulated stream: state size against event time.

Generates a scenario stretched to `--days` of event time (`streams.tools.simulator`), computes
its truth with the independent batch reference (`truth.py`), then feeds the lines in order
through decode -> `Ledger.apply` -> `OperatorBoard.observe` (the worker's core, no broker),
and every `--sample-days` days of event time samples the process RSS, the snapshot bytes
(`persist.dump_state`, what the worker writes to its changelog), the ids the dedupe set holds
and the throughput of the days since the last sample (dump time excluded). At the end the
report's claims and cumulative operator figures are compared with the truth (1e-9; the
sketched figures, `reply_latency`'s p50/p95 once questions fold, within the sketch's 1%).

    python -m bench.soak --days 150 --scale 4 --window-days 7 --out bench/soak-7d.json

`--window-days 0` keeps every id for ever (the ledger before issue 17), for comparison.
`--worker` sends the same stream through a `livepulse worker` on the real broker instead
(`worker_soak`). Either way the run prints a table (one row per `--sample-days` of event time)
and the growth after the longest retention horizon (`horizon_days`: RSS, snapshot and
throughput, in %, the issue's targets), writes them with every sample to `--out` (JSON) and
draws RSS, snapshot bytes and throughput against event time to `--plot` (SVG, by default
beside `--out`; `bench.svgplot`). `--replot RUN.json [--compare OTHER.json]` redraws a saved
run, with another (e.g. a "before") on the same axes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import gc
import io
import itertools
import json
import math
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Final

from agents.core import Ledger, OperatorBoard, build_report
from agents.core.extended import TAIL_DAYS
from agents.core.ingest import Rejected, ingest
from agents.core.ledger import SESSION_HORIZON_MS, FoldedPresence
from agents.core.metrics import THIRTY_DAYS_MS
from agents.core.periods import (
    DEFAULT_DAYS_KEPT,
    DEFAULT_MONTHS_KEPT,
    PeriodSettings,
    attach,
    with_periods,
)
from agents.core.persist import dump_state
from agents.core.sketch import DISTINCT_PRECISION, RELATIVE_ACCURACY
from bench.proc import cpu_seconds, machine, rss_bytes
from bench.soak_profile import packed_kb
from bench.svgplot import Panel, Series, render
from streams.runtime.settings import Settings
from streams.runtime.topics import all_topics, create_topics, delete_run_topics
from streams.tools.drain import fetch_json, wait_drained
from streams.tools.replayer import Progress, ReplaySummary, replay
from streams.tools.simulator.generate import generate, write_lines
from streams.tools.simulator.scenarios import get_scenario
from streams.tools.simulator.scenarios import steady as steady_scenario
from streams.tools.simulator.truth_file import compute_truth
from streams.tools.worker_process import WorkerProcess, free_port

DAY_MS = 86_400_000
REL_TOL = 1e-9
#: The issue's targets for the growth after the longest horizon, in %: RSS < 10%; the snapshot
#: and throughput "flat", read here as within 10% either way (throughput: no drop beyond 10%).
TARGET_PCT = 10.0
#: Figures read from a sketch once anything is folded into it (agents/core/sketch.py): within
#: its relative accuracy of the truth, not 1e-9. (The sketch's bound is on the order
#: statistics around the quantile; on a long stream they are within a fraction of a percent of
#: each other, so the figure is within it too.)
SKETCHED: dict[str, float] = {
    "reply_latency.detail.p50_seconds": RELATIVE_ACCURACY,
    "reply_latency.detail.p95_seconds": RELATIVE_ACCURACY,
}
#: With `--fold-sessions`, `price_dwell_association` is read from the sketches once sessions are
#: summarized: its medians by tier within the sketch's 1%, its rho from the binned rank table
#: (within 1% relative, or the report's own `detail.rho_bound` where that is wider:
#: `truth_mismatches`);
#: the operator's overall median watch time from its level's sketch (`Ledger.folded_watch`).
SKETCHED_ONCE_SESSIONS_SUMMARIZE: dict[str, float] = {
    **SKETCHED,
    "operator.overall.median_watch_minutes": RELATIVE_ACCURACY,
    "price_dwell_association.observed": 0.01,
    **{
        f"price_dwell_association.detail.median_watch_minutes_by_tier.{tier}": RELATIVE_ACCURACY
        for tier in ("<200", "200-500", "500-1000", ">=1000")
    },
}


#: A level's paying users once its summarized buyers are sketched (`--distinct-exact-limit`
#: below the stream's payers): within 4 relative standard errors of the HyperLogLog (1.04 /
#: sqrt(2^14) = 0.81%), as tests/agents/core/test_distinct.py checks; so is the per-customer AOV
#: divided by them.
DISTINCT_BOUND: Final[float] = 4 * 1.04 / math.sqrt(1 << DISTINCT_PRECISION)


def sketched_paths(summarized: bool, distinct_exact_limit: int | None = None) -> dict[str, float]:
    """The figures read from a sketch and their relative bounds: `SKETCHED`, or once sessions
    are summarized `SKETCHED_ONCE_SESSIONS_SUMMARIZE`; with a `distinct_exact_limit` given
    (the worker's `LIVEPULSE_DISTINCT_EXACT_LIMIT`) the overall paying users and per-customer
    AOV too (`DISTINCT_BOUND`: a level past the limit is sketched)."""
    out = dict(SKETCHED_ONCE_SESSIONS_SUMMARIZE if summarized else SKETCHED)
    if summarized and distinct_exact_limit is not None:
        for figure in ("paying_users", "aov_per_customer_cny"):
            out[f"operator.overall.{figure}"] = DISTINCT_BOUND
    return out


def mismatches(
    path: str, got: Any, want: Any, out: list[str], sketched: dict[str, float] = SKETCHED
) -> None:
    """Where `got` differs from `want` (numbers to 1e-9, a sketched one to its bound), every
    key of `want` checked."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            out.append(f"{path}: {got!r} is not a mapping")
            return
        for key, value in want.items():
            mismatches(f"{path}.{key}", got.get(key), value, out, sketched)
    elif (isinstance(want, float) or (isinstance(want, int) and path in sketched)) and (
        isinstance(got, int | float) and not isinstance(got, bool | None)
    ):
        # A sketched count (an int, as the paying users) is within its bound too.
        if not math.isclose(got, want, rel_tol=sketched.get(path, REL_TOL), abs_tol=1e-12):
            out.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        out.append(f"{path}: {got!r} != {want!r}")


def truth_mismatches(
    report: dict[str, Any], truth: dict[str, Any], sketched: dict[str, float] = SKETCHED
) -> list[str]:
    """The report's events, claims (observed and detail) and cumulative operator figures
    against the truth file's content. A level's merged peak that the report gives a
    `viewers_peak_ceiling` (over partitions, a minute some partition dropped from its
    `LIVEPULSE_BOARD_RUNS_KEPT` settled runs could sum above the peak found; counted in
    `retention.board_peaks_bounded`; docs/design.md, "The board's concurrency by minute") is
    a lower bound: the truth is then checked to lie between the peak and that ceiling; a peak
    with none is exact."""
    out: list[str] = []
    mismatches("events", report["events"], truth["events"], out)
    for claim_id, expected in truth["claims"].items():
        entry = report["claims"][claim_id]
        bound = (entry.get("detail") or {}).get("rho_bound")
        got, want = entry["observed"], expected["observed"]
        if isinstance(bound, int | float) and isinstance(got, float) and isinstance(want, float):
            # rho from the rank table: within the bound the report states for it
            # (`sketch.RankTable.bound`, docs/metrics.md "Sketched figures"), which a table
            # coarsened past its `LIVEPULSE_RANK_CELL_LIMIT` widens beyond the 1% above.
            if abs(got - want) > max(bound, sketched.get(f"{claim_id}.observed", 0.0) * abs(want)):
                out.append(f"{claim_id}.observed: {got!r} != {want!r} (rho_bound {bound!r})")
        else:
            mismatches(f"{claim_id}.observed", got, want, out, sketched)
        detail = {k: v for k, v in expected.items() if k != "observed"}
        mismatches(f"{claim_id}.detail", entry["detail"], detail, out, sketched)
    operator = truth.get("operator", {})
    for level in ("overall",):
        figures = {k: v for k, v in operator.get(level, {}).items() if k != "windows"}
        got_figures = dict(report["operator"][level])
        ceiling = got_figures.pop("viewers_peak_ceiling", None)
        if ceiling is not None and "viewers_peak" in figures:
            want = figures.pop("viewers_peak")
            got = got_figures.pop("viewers_peak", None)
            if not (isinstance(got, int) and isinstance(ceiling, int) and got <= want <= ceiling):
                out.append(f"operator.{level}.viewers_peak: {want!r} not in [{got!r}, {ceiling!r}]")
        mismatches(f"operator.{level}", got_figures, figures, out, sketched)
    return out


def bounded_peaks(report: dict[str, Any]) -> dict[str, list[int]]:
    """Each operator level whose merged peak is a lower bound, as `[viewers_peak,
    viewers_peak_ceiling]` ("overall", "rooms:ID", "merchants:ID"; {} when every peak is
    exact or the report has no operator section): kept in a worker soak's result."""
    operator = report.get("operator") or {}
    levels = [("overall", operator.get("overall") or {})]
    for kind in ("rooms", "merchants"):
        levels += [(f"{kind}:{i}", f) for i, f in sorted((operator.get(kind) or {}).items())]
    return {
        name: [figures["viewers_peak"], figures["viewers_peak_ceiling"]]
        for name, figures in levels
        if "viewers_peak_ceiling" in figures
    }


#: The refund horizon the soak's ledgers and workers run with (the default,
#: `LIVEPULSE_REFUND_HORIZON_DAYS`), in days.
REFUND_HORIZON_DAYS = 90
#: The longest calendar month, in days: with the claims by period, an order stays raw until
#: its whole month's refund claims are frozen (`PeriodGate.orders_held_from`).
MONTH_DAYS = 31


#: The session horizon (`ledger.SESSION_HORIZON_MS`), in days: a period closes this long
#: (and the dedupe window) after its end.
SESSION_HORIZON_DAYS = 7
#: The order fold's passes run once a day of its horizon, and an owner compares a buyer's
#: last whole day (`OrderFold._retire`): up to 2 days more before a buyer retires.
ORDER_OWNER_SLACK_DAYS = 2


def horizon_days(
    window_days: float,
    fold_sessions: bool = False,
    claim_periods: bool = False,
    days_kept: int = DEFAULT_DAYS_KEPT,
    months_kept: int = DEFAULT_MONTHS_KEPT,
    user_horizon_days: float | None = None,
    board_horizon_days: float | None = None,
    first_order_horizon_days: float | None = None,
    refund_horizon_days: float = REFUND_HORIZON_DAYS,
) -> float:
    """The longest retention horizon, in days of event time, after which state that follows
    what is live should stop growing. Without the session fold: an order can still change a
    figure for its user's 30-day repurchase window and its session's 3-day post-live tail (a
    calendar month's spend closes within 31 days, inside that sum), and becomes final only
    once the dedupe window (the horizon every fold waits for, docs/design.md) has passed too:
    40 days at the default 7-day window (orders are then kept whole for ever). With it, paid
    orders are held for the refund horizon (`refund_horizon_days`, 90 by default:
    `LIVEPULSE_REFUND_HORIZON_DAYS`) before they fold ("The order fold"): 97 days; and with the
    claims by period too (a worker's default, the core soak's unless `--no-claim-periods`), an
    order waits until its month's refund claims freeze, up to a month more: 128 days. The
    frozen periods are a horizon too: their records (and parts) grow until `days_kept` days
    and `months_kept` months are frozen, the last of them closed a session horizon (and the
    window) after its end, the first month possibly a partial one:
    `max(days_kept + 1, (months_kept + 1) * 31) + 7` days (+ the window); 789 days at the
    defaults (62 days, 24 months: `LIVEPULSE_CLAIM_DAYS_KEPT`, `..._MONTHS_KEPT`), so a soak
    of 300 days passes it only with fewer kept (`--months-kept`).

    With the fold, three more horizons bound state (None: not in the run):
    - the user horizon (`LIVEPULSE_USER_HORIZON_DAYS`, 180 days in a worker by default; the
      core soak's ledger has none unless given): a user's folded rows retire once their last
      day is that long before the summaries' horizon (the newest event less the session
      horizon and the window), so the rows held fill for `user_horizon_days + 7` (+ the
      window) and then follow the users active within it;
    - the board horizon (`LIVEPULSE_BOARD_HORIZON_DAYS`, 90 by default): the levels' minutes
      and the held session summaries are kept that long before the newest event (a summary
      also until its month freezes, within the frozen periods' horizon above). The settled
      runs the curves keep for the merge are bounded by count (`LIVEPULSE_BOARD_RUNS_KEPT`,
      4,096 a curve), not by time (a peak over the whole stream merged over partitions needs
      its minutes aligned, whenever they were: docs/design.md): they fill toward that bound
      at the stream's pace, which no horizon counts (`--board-runs-kept` lowers it so that a
      run reaches it), as the levels' summarized buyers fill toward
      `LIVEPULSE_DISTINCT_EXACT_LIMIT` ids (`--distinct-exact-limit`);
    - the first-order pair horizon (`LIVEPULSE_FIRST_ORDER_HORIZON_DAYS`, off by default:
      decided pairs kept for ever, growing with distinct (merchant, buyer) pairs): a pair
      decides 30 days after its first order and is forgotten once its latest order is that
      long before the summaries' horizon: `max(30, days) + 7` (+ the window).

    The user horizon bounds the order fold's buyers later than the other user rows: a buyer's
    row reaches its owner only with its CST month's announcement (`OrderFold.take`), and a
    source announces a month once it ends by the earliest order it still holds and by the
    fold's due time (`Ledger.take_order_users`). With the claims by period the gate holds the
    orders of every month from the one the refund claims are still open in
    (`PeriodGate.orders_held_from`: the fold's horizon, the newest event less the window,
    less the refund horizon and the session horizon), so the month announced ends at that
    month's start, up to 31 days earlier (without the gate: at the start of the due time's
    month). The owner retires a buyer whose last day is before that end less the user
    horizon (`OrderFold.receive_closed`), the fold runs once a day of its horizon, and a
    buyer's last day is a whole day: the first buyers retire, and the owners' rows stop
    filling, at `refund_horizon_days + 7 + 31 + user_horizon_days + 2` (+ the window; no 7
    without the gate): 175 days with a 45-day user horizon at the default refund horizon
    (182 with a 7-day window), past the other horizons of a 300-day soak's settings.
    (A fold that keeps anything longer moves it: change it here.)"""
    base = THIRTY_DAYS_MS / DAY_MS + TAIL_DAYS
    if fold_sessions:
        base = max(base, refund_horizon_days + (MONTH_DAYS if claim_periods else 0))
        if claim_periods:
            kept = max(days_kept + 1, (months_kept + 1) * MONTH_DAYS) + SESSION_HORIZON_DAYS
            base = max(base, kept)
        if user_horizon_days:
            base = max(base, user_horizon_days + SESSION_HORIZON_DAYS)
            if refund_horizon_days:  # the order fold's buyers at their owners
                gate = SESSION_HORIZON_DAYS if claim_periods else 0
                lag = refund_horizon_days + gate + MONTH_DAYS + ORDER_OWNER_SLACK_DAYS
                base = max(base, lag + user_horizon_days)
        if board_horizon_days:
            base = max(base, board_horizon_days)
        if first_order_horizon_days:
            base = max(base, max(30, first_order_horizon_days) + SESSION_HORIZON_DAYS)
    return base + window_days


#: A worker's defaults for the horizons `horizon_days` counts beyond the orders' and the
#: frozen periods' (`Settings`): a saved worker run that did not record them ran with these.
WORKER_HORIZONS: dict[str, float] = {
    "user_horizon_days": Settings.model_fields["user_horizon_days"].default,
    "board_horizon_days": Settings.model_fields["board_horizon_days"].default,
    "first_order_horizon_days": Settings.model_fields["first_order_horizon_days"].default,
}


def _horizon_of(result: dict[str, Any]) -> float:
    """`horizon_days` of a saved run (a worker runs with the claims by period; a run saved
    before the flags were recorded: without the fold; a worker run saved before its user,
    board and pair horizons were recorded: with the worker's defaults; a run saved before its
    refund horizon was: the default 90 days)."""
    fold = bool(result.get("fold_sessions"))
    worker = result.get("mode") == "worker"
    periods = result.get("claim_periods", worker)
    defaults = WORKER_HORIZONS if worker else {}
    return horizon_days(
        result["window_days"],
        fold,
        bool(periods),
        result.get("days_kept", DEFAULT_DAYS_KEPT),
        result.get("months_kept", DEFAULT_MONTHS_KEPT),
        **{key: result.get(key, defaults.get(key)) for key in WORKER_HORIZONS},
        refund_horizon_days=result.get("refund_horizon_days", REFUND_HORIZON_DAYS),
    )


def month_state_kb(ledger: Ledger) -> dict[str, float]:
    """Pickled kB of `group_spend_multiple`'s state: the folded sessions' first joins per
    (merchant, month), the spend rows per (merchant, month, user) and the closed months'
    per-user totals (`Ledger.month_folded_users`, absent before issue 17's month fold)."""
    parts = {
        "month_first_joins_kb": ledger.month_first_joins,
        "month_spend_kb": ledger.month_spend,
        "month_folded_kb": getattr(ledger, "month_folded_users", {}),
    }
    return {
        key: len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)) / 1e3 for key, value in parts.items()
    }


def _snapshot_day(sample: dict[str, Any]) -> float | None:
    """The event day of the sample's snapshot bytes: the sample's own (the core dumps at the
    sample) or, for a worker, of the oldest of its partitions' latest snapshots."""
    day: float | None = sample.get("snapshot_day", sample["day"])
    return day


def _pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return (after - before) / before * 100


def _month_start_ms(ts: int) -> int:
    """The epoch ms at which `ts`'s calendar month (UTC) begins."""
    when = datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC)
    return round(
        datetime.datetime(when.year, when.month, 1, tzinfo=datetime.UTC).timestamp() * 1000
    )


def _next_month_ms(month_start_ms: int) -> int:
    """The epoch ms at which the calendar month after the one beginning at `month_start_ms`
    begins."""
    return _month_start_ms(month_start_ms + 32 * DAY_MS)


def whole_months(
    samples: list[dict[str, Any]], horizon_day: float, first_ts: int
) -> list[dict[str, Any]]:
    """The means of RSS and snapshot MB by calendar month (UTC) of the snapshot's event day
    (`snapshot_day`), for each month that begins at or after `horizon_day` and that the
    samples reach past the end of (the stream's day 0 at `first_ts`), with at least two
    samples in it. The snapshot moves with where each partition is in its month (the day
    and month periods it holds until they are frozen, the sessions held until the month's
    fold), by +-10% from one reading to the next; a whole month's mean takes every phase once,
    so months compare with months where single readings do not."""
    if not samples:
        return []
    horizon_ms = first_ts + horizon_day * DAY_MS
    reached_ms = first_ts + samples[-1]["day"] * DAY_MS
    by_month: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        day = _snapshot_day(sample)
        if day is None:
            continue
        by_month.setdefault(_month_start_ms(first_ts + round(day * DAY_MS)), []).append(sample)
    months = []
    for start, taken in sorted(by_month.items()):
        if start < horizon_ms or _next_month_ms(start) > reached_ms or len(taken) < 2:
            continue
        months.append(
            {
                "month": datetime.datetime.fromtimestamp(start / 1000, datetime.UTC).strftime(
                    "%Y-%m"
                ),
                "samples": len(taken),
                "rss_mb": statistics.fmean(s["rss_mb"] for s in taken),
                "snapshot_mb": statistics.fmean(s["snapshot_mb"] for s in taken),
            }
        )
    return months


def growth_after(
    samples: list[dict[str, Any]], horizon_day: float, first_ts: int | None = None
) -> dict[str, Any]:
    """The issue's targets, from the samples at or after `horizon_day`: RSS and snapshot bytes
    from the first such sample to the last, in %; throughput as the median records/s of the
    later half of those samples against the earlier half, in % (samples in which nothing
    was consumed, e.g. a worker waiting for its replay, left out). The snapshot from the first
    sample whose snapshot was taken at or after the horizon (`snapshot_day`: a worker's
    latest snapshots can be older than the sample). None where there are not two samples to
    compare (a stream shorter than the horizon).

    With the stream's first event time `first_ts` (epoch ms), also the aligned reading
    (`whole_months`): RSS and snapshot as the mean of the last whole calendar month after the
    horizon against the first's, in % (`rss_months_pct`, `snapshot_months_pct`; None with
    fewer than two whole months). The snapshot is "flat" by it when within `TARGET_PCT`
    either way: the first-to-last figure compares two single readings, each anywhere in the
    month's +-10% swing."""
    after = [s for s in samples if s["day"] >= horizon_day]
    snapshots = [s for s in samples if (_snapshot_day(s) or -1.0) >= horizon_day]
    rates = [s["records_per_s"] for s in after if s.get("records_per_s")]
    half = len(rates) // 2
    growth: dict[str, Any] = {
        "horizon_day": horizon_day,
        "from_day": after[0]["day"] if len(after) >= 2 else None,
        "to_day": after[-1]["day"] if len(after) >= 2 else None,
        "rss_pct": None,
        "snapshot_pct": None,
        "snapshot_from_day": None,
        "records_per_s_pct": None,
    }
    if len(after) >= 2:
        first, last = after[0], after[-1]
        growth["rss_pct"] = _pct(first["rss_mb"], last["rss_mb"])
    if len(snapshots) >= 2:
        growth["snapshot_from_day"] = _snapshot_day(snapshots[0])
        growth["snapshot_pct"] = _pct(snapshots[0]["snapshot_mb"], snapshots[-1]["snapshot_mb"])
    if half:
        growth["records_per_s_pct"] = _pct(
            statistics.median(rates[:half]), statistics.median(rates[half:])
        )
    rss, snapshot, rate = growth["rss_pct"], growth["snapshot_pct"], growth["records_per_s_pct"]
    growth["targets_met"] = {
        "rss": None if rss is None else rss < TARGET_PCT,
        "snapshot": None if snapshot is None else abs(snapshot) < TARGET_PCT,
        "records_per_s": None if rate is None else rate > -TARGET_PCT,
    }
    if first_ts is not None:
        months = whole_months(after, horizon_day, first_ts)
        growth["months"] = months
        growth["rss_months_pct"] = growth["snapshot_months_pct"] = None
        if len(months) >= 2:
            growth["rss_months_pct"] = _pct(months[0]["rss_mb"], months[-1]["rss_mb"])
            growth["snapshot_months_pct"] = _pct(
                months[0]["snapshot_mb"], months[-1]["snapshot_mb"]
            )
        by_months = growth["snapshot_months_pct"]
        growth["targets_met"]["snapshot_months"] = (
            None if by_months is None else abs(by_months) < TARGET_PCT
        )
    return growth


def table(result: dict[str, Any]) -> str:
    """The run as Markdown: a row per sample, then the growth after the horizon."""
    worker = result.get("mode") == "worker"
    head = ["event day", "records", "RSS MB", "snapshot MB", "records/s"]
    if worker:
        head += ["snapshot of day", "replay ahead (records)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sample in result["samples"]:
        rate = sample.get("records_per_s")
        row = [
            f"{sample['day']:g}",
            f"{sample['records']:,}",
            f"{sample['rss_mb']:.1f}",
            f"{sample['snapshot_mb']:.3f}",
            "-" if rate is None else f"{rate:,.0f}",
        ]
        if worker:
            taken = sample.get("snapshot_day")
            row += ["-" if taken is None else f"{taken:g}", f"{sample.get('behind', 0):,}"]
        lines.append("| " + " | ".join(row) + " |")
    growth = result["growth"]

    def pct(key: str) -> str:
        value = growth[key]
        return "-" if value is None else f"{value:+.1f}%"

    span = (
        f"samples of day {growth['from_day']:g} to {growth['to_day']:g}"
        if growth["from_day"] is not None
        else "the stream ends before it"
    )
    lines += [
        "",
        f"After the longest horizon (day {growth['horizon_day']:g}; {span}): RSS "
        f"{pct('rss_pct')} (target < {TARGET_PCT:g}%), snapshot {pct('snapshot_pct')} (target: "
        f"flat; from the snapshot of day {growth.get('snapshot_from_day', '-')}), throughput "
        f"{pct('records_per_s_pct')} (target: flat; later half of the samples' median records/s "
        "against the earlier half's).",
    ]
    months = growth.get("months") or []
    if len(months) >= 2:
        lines.append(
            f"Whole calendar months ({months[0]['month']} against {months[-1]['month']}, the "
            f"means of {months[0]['samples']} and {months[-1]['samples']} samples): RSS "
            f"{pct('rss_months_pct')}, snapshot {pct('snapshot_months_pct')} (target: flat, within "
            f"{TARGET_PCT:g}% either way)."
        )
    met = growth.get("targets_met") or {}
    if met:
        lines.append(
            "Targets: "
            + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in met.items())
            + "."
        )
    lines += [
        f"Truth: {len(result['truth_mismatches'])} mismatches.",
    ]
    return "\n".join(lines)


def label(result: dict[str, Any]) -> str:
    """A run's name in a plot's legend: where, the commit, and the user and board horizons
    and months kept where the run recorded them (runs of one commit differ by those)."""
    where = "worker" if result.get("mode") == "worker" else "core"
    commit = (result.get("machine") or {}).get("commit")
    name = f"{where} {commit}" if commit else where
    settings = [
        f"{tag}{result[key]:g}"
        for key, tag in (("user_horizon_days", "U"), ("board_horizon_days", "B"))
        if result.get(key)
    ]
    if settings and result.get("fold_sessions"):
        name += f" ({' '.join(settings)} m{result.get('months_kept', DEFAULT_MONTHS_KEPT)})"
    # Runs side by side that differ by a worker setting or its environment (session 18 on).
    extra = {**(result.get("worker_settings") or {}), **(result.get("worker_env") or {})}
    if extra:
        name += " " + " ".join(f"{key}={value}" for key, value in sorted(extra.items()))
    return name


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """RSS, snapshot bytes and throughput against event time (days) of one run or more (the
    first one's horizon marked), as SVG at `path`."""
    first = results[0]
    horizon = first.get("growth", {}).get("horizon_day") or _horizon_of(first)

    def series(key: str) -> list[Series]:
        def x(sample: dict[str, Any]) -> float | None:
            return _snapshot_day(sample) if key == "snapshot_mb" else sample["day"]

        return [
            Series(label(r), [(day, s.get(key)) for s in r["samples"] if (day := x(s)) is not None])
            for r in results
        ]

    title = (
        f"soak: xhs, {first['days']} days x{first['scale']:g}, window "
        f"{first['window_days']:g} d"
        + (f", {first['rate']:g} records/s" if first.get("rate") else "")
    )
    svg = render(
        [
            Panel("RSS (MB)", series("rss_mb")),
            Panel("snapshot (MB)", series("snapshot_mb")),
            Panel("throughput (records/s)", series("records_per_s")),
        ],
        title=title,
        x_label="event time (days since the first event)",
        marker=(horizon, f"longest horizon: day {horizon:g}"),
    )
    path.write_text(svg, encoding="utf-8")


def prepare(
    days: int, scale: float, seed: int, out: Path, steady: bool = False
) -> dict[str, float]:
    """Write the stretched scenario's stream to `out` and its truth beside it (run in a child
    process by `soak`, so that the soak's RSS is the core's, not the generator's). `steady`:
    the scenario with a stationary population (`scenarios.steady`: past buyers lapse, members
    leave), so that what is live stops growing after a warm-up."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    if steady:
        scenario = steady_scenario(scenario)
    began = time.perf_counter()
    lines = generate(scenario, seed, scale).lines
    generate_s = time.perf_counter() - began
    write_lines(out, lines)
    began = time.perf_counter()
    truth = compute_truth(lines, scenario="xhs", seed=seed)
    truth_s = time.perf_counter() - began
    out.with_suffix(".truth.json").write_text(json.dumps(truth), encoding="utf-8")
    return {"generate_s": generate_s, "truth_s": truth_s, "lines": len(lines)}


def truth_of(
    stream: Path, window_ms: int | None, fold_sessions: bool, partitions: int | None = None
) -> dict[str, Any]:
    """The stream's truth; with the session fold, under its rule for sessions that never end
    (`truth.abandon_sessions`, computed once in a child process and kept beside the stream):
    by the whole stream's horizons (one ledger, the core soak), or with `partitions` by each
    of a worker's partitions' own (`truth.partition_cut`: near the stream's end a partition
    whose newest record on some topic is older than the stream's has not yet abandoned a
    session the whole stream's horizons would, so its `viewers_current` and `group_joins`
    still count it; README, `LIVEPULSE_FOLD_SESSIONS`)."""
    if not fold_sessions or window_ms is None:
        truth: dict[str, Any] = json.loads(stream.with_suffix(".truth.json").read_text("utf-8"))
        return truth
    tag = f"-p{partitions}" if partitions else ""
    path = stream.with_suffix(f".abandon-{window_ms}{tag}.truth.json")
    if not path.exists():
        code = "import sys; from bench.soak import write_rule_truth as w; w(*sys.argv[1:])"
        subprocess.run(  # noqa: S603
            [sys.executable, "-c", code, str(stream), str(window_ms), str(partitions or 0)],
            check=True,
        )
    ruled: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return ruled


def write_rule_truth(stream: str, window_ms: str, partitions: str = "0") -> None:
    """`truth_of`'s child: the truth under the rule, written beside the stream (`partitions`
    0: by the whole stream's horizons)."""
    path = Path(stream)
    lines = path.read_text("utf-8").splitlines()
    plain = json.loads(path.with_suffix(".truth.json").read_text("utf-8"))
    truth = compute_truth(
        lines,
        scenario=plain["scenario"],
        seed=plain["seed"],
        abandon=(SESSION_HORIZON_MS, int(window_ms)),
        partitions=int(partitions) or None,
    )
    tag = f"-p{partitions}" if int(partitions) else ""
    path.with_suffix(f".abandon-{window_ms}{tag}.truth.json").write_text(json.dumps(truth), "utf-8")


def prepare_in_child(
    days: int, scale: float, seed: int, stream: Path, steady: bool = False
) -> None:
    subprocess.run(  # noqa: S603 - this interpreter, this module
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--prepare",
            f"--days={days}",
            f"--scale={scale}",
            f"--seed={seed}",
            f"--stream={stream}",
            *(["--steady"] if steady else []),
        ],
        check=True,
    )


def soak(
    days: int,
    scale: float,
    window_days: float,
    sample_days: int,
    seed: int,
    stream: Path,
    fold_sessions: bool = False,
    claim_periods: bool = True,
    days_kept: int = DEFAULT_DAYS_KEPT,
    months_kept: int = DEFAULT_MONTHS_KEPT,
    user_horizon_days: float | None = None,
    refund_horizon_days: float = REFUND_HORIZON_DAYS,
    steady: bool = False,
) -> dict[str, Any]:
    run_began = time.perf_counter()
    if not stream.exists():
        prepare_in_child(days, scale, seed, stream, steady)
    truth = truth_of(stream, round(window_days * DAY_MS) or None, fold_sessions)
    gc.collect()

    window_ms = round(window_days * DAY_MS) or None
    ledger = Ledger(  # one ledger: closed months fold too, and it owns its buyers' rows
        window_ms,
        refund_horizon_ms=round(refund_horizon_days * DAY_MS) or None,
        fold_sessions=fold_sessions,
        fold_months=fold_sessions,
        # None (the core soak's default): every user's folded rows kept, as before.
        user_horizon_ms=round(user_horizon_days * DAY_MS) if user_horizon_days else None,
    )
    periods = (
        PeriodSettings(days_kept=days_kept, months_kept=months_kept) if claim_periods else None
    )
    if periods is not None:  # as a worker's partitions: closed periods frozen, then summarized
        attach(ledger, periods)
    board = OperatorBoard()
    samples: list[dict[str, Any]] = []
    first_ts: int | None = None
    next_sample_ts: int | None = None
    chunk_s = 0.0
    chunk_records = 0
    rss_start = rss_bytes()

    def sample(day: float) -> None:
        nonlocal chunk_s, chunk_records
        gc.collect()
        dump_began = time.perf_counter()
        blob = dump_state(ledger, board)
        dump_s = time.perf_counter() - dump_began
        folded = sum(isinstance(s.presence, FoldedPresence) for s in ledger.sessions.values())
        samples.append(
            {
                "day": round(day, 2),
                "records": (
                    ledger.counts.valid
                    + ledger.counts.duplicates
                    + ledger.counts.rejected
                    + ledger.counts.expired
                ),
                "rss_mb": rss_bytes() / 1e6,
                "rss_growth_mb": (rss_bytes() - rss_start) / 1e6,
                "snapshot_mb": len(blob) / 1e6,
                "dump_s": dump_s,
                "ids_kept": ledger.seen_id_count(),
                "sessions": len(ledger.sessions),
                "folded_sessions": folded,
                "summarized_sessions": ledger.summarized_sessions,
                "orders": len(ledger.orders),
                "refunds": len(ledger.refunds),
                # The order fold's parts (issue 17), pickled as a snapshot writes them.
                "orders_kb": packed_kb(ledger.orders),
                "refunds_kb": packed_kb(ledger.refunds),
                "order_fold_kb": packed_kb(getattr(ledger, "order_fold", None)),
                **month_state_kb(ledger),
                "records_per_s": chunk_records / chunk_s if chunk_s else None,
            }
        )
        print(f"bench: soak {samples[-1]}", flush=True)
        chunk_s, chunk_records = 0.0, 0

    step = 500
    handle = stream.open("rb")
    lines_read = 0
    while batch := [line.rstrip(b"\n") for line in itertools.islice(handle, step)]:
        lines_read += len(batch)
        began = time.perf_counter()
        for record in batch:
            counted = ingest(record, ledger, board)
            if first_ts is None and counted is not None and not isinstance(counted, Rejected):
                first_ts = counted.ts
                next_sample_ts = first_ts + sample_days * DAY_MS
        chunk_s += time.perf_counter() - began
        chunk_records += len(batch)
        if ledger.max_ts is None or first_ts is None or next_sample_ts is None:
            continue
        if ledger.max_ts >= next_sample_ts:
            sample((ledger.max_ts - first_ts) / DAY_MS)
            next_sample_ts += sample_days * DAY_MS
    handle.close()
    assert first_ts is not None and ledger.max_ts is not None
    if not samples or samples[-1]["records"] != lines_read:  # the last batch, if not sampled
        sample((ledger.max_ts - first_ts) / DAY_MS)
    began = time.perf_counter()
    report = with_periods(build_report(ledger, board), ledger, periods)
    report_s = time.perf_counter() - began
    sketched = SKETCHED_ONCE_SESSIONS_SUMMARIZE if ledger.summarized_sessions else SKETCHED
    problems = truth_mismatches(report, truth, sketched)
    horizon = horizon_days(
        window_days,
        fold_sessions,
        claim_periods,
        days_kept,
        months_kept,
        user_horizon_days if fold_sessions else None,
        refund_horizon_days=refund_horizon_days,
    )
    return {
        "mode": "core",
        "scenario": "xhs",
        "days": days,
        "scale": scale,
        "seed": seed,
        "steady": steady,
        "window_days": window_days,
        "fold_sessions": fold_sessions,
        "claim_periods": claim_periods,
        "days_kept": days_kept,
        "months_kept": months_kept,
        "user_horizon_days": user_horizon_days or None,
        "refund_horizon_days": refund_horizon_days,
        "board_horizon_days": None,
        "first_order_horizon_days": None,
        "frozen_periods": len(ledger.frozen_periods),
        "lines": lines_read,
        "machine": machine(),
        "wall_s": time.perf_counter() - run_began,
        "report_s": report_s,
        "retention": report["retention"],
        "truth_mismatches": problems,
        "first_ts": first_ts,
        "growth": growth_after(samples, horizon, first_ts),
        "samples": samples,
    }


#: How long the soak waits for its worker's /status. `WorkerProcess.status` gives up after 2 s,
#: which a worker busy at 5,000 records/s on this shared machine at load 25 passed (a 150-day
#: run failed on it at day 88); the soak is measuring, not probing readiness.
STATUS_TIMEOUT_S = 30.0


def worker_status(worker: WorkerProcess) -> dict[str, Any]:
    """The worker's /status, waiting up to `STATUS_TIMEOUT_S` for it."""
    status: dict[str, Any] = fetch_json(f"{worker.base_url}/status", timeout_s=STATUS_TIMEOUT_S)
    return status


class _Stopped(Exception):
    """The soak ended before its replay (it failed): the replay stops at its next line."""


class _Published(Progress):
    """The replay's count of lines handed to the producer so far (no progress bar); setting
    `stop` ends the replay (so that it does not re-create the topics the soak deletes)."""

    def __init__(self) -> None:
        super().__init__(stream=io.StringIO())
        self.lines = 0
        self.summary: ReplaySummary | None = None
        self.stop = False

    def update(self, summary: ReplaySummary, started: float, force: bool = False) -> None:
        self.lines = summary.lines
        if self.stop:
            raise _Stopped

    def finish(self, summary: ReplaySummary) -> None:
        self.lines, self.summary = summary.lines, summary


def worker_soak(
    days: int,
    scale: float,
    window_days: float,
    sample_days: float,
    seed: int,
    stream: Path,
    *,
    bootstrap: str,
    rate: float | None,
    poll_s: float,
    snapshot_interval_s: float | None = 2.0,
    stall_s: float = 600.0,
    fold_sessions: bool = False,
    web_port: int = 0,
    days_kept: int = DEFAULT_DAYS_KEPT,
    months_kept: int = DEFAULT_MONTHS_KEPT,
    user_horizon_days: float | None = None,
    board_horizon_days: float | None = None,
    first_order_horizon_days: float | None = None,
    keep_topics: bool = False,
    groups_idle_s: float | None = None,
    board_runs_kept: int | None = None,
    distinct_exact_limit: int | None = None,
    refund_horizon_days: float | None = None,
    worker_settings: dict[str, Any] | None = None,
    steady: bool = False,
    worker_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The same stream replayed (`livepulse replay`'s code, `rate` records/s; None: as fast as
    the broker takes them) into a `livepulse worker` on the real broker, its own app id and
    topics. Every `poll_s` its /status is read; each time the event time of the lines it has
    consumed passes another `sample_days` (the replay is in file order, and the records it has
    consumed are taken to be the file's first ones), a sample: the worker process's RSS, the
    sum of its partitions' latest snapshot bytes, its records/s since the last sample and how
    far the replay is ahead of it. A last sample once it has consumed everything and
    snapshotted every partition (no records/s: its period includes that wait). Then its
    /report is compared with the truth (with the fold, its sessions that never end abandoned
    by each partition's horizons: `truth_of`). `user_horizon_days`, `board_horizon_days` and
    `first_order_horizon_days` are the worker's `LIVEPULSE_USER_HORIZON_DAYS`,
    `..._BOARD_HORIZON_DAYS` and `..._FIRST_ORDER_HORIZON_DAYS` (None: its defaults, 180, 90
    and 0); the growth is measured after every horizon they and the rest bound
    (`horizon_days`). `keep_topics`: the run's topics are left on the broker (its changelog
    for `bench.changelog_parts --run <the result's "run">`; delete them after).
    `groups_idle_s`: the worker's `LIVEPULSE_GROUPS_IDLE_S` (None: its default, 60 s). It is
    wall time: with fewer merchants than partitions a groups partition stays empty and holds
    every summary back that long, which at 5,000 records/s of the 300-day stream is ~80 days
    of event time (session 15: the worker's RSS steps up ~90 MB when they are released).
    `board_runs_kept` and `distinct_exact_limit`: the worker's `LIVEPULSE_BOARD_RUNS_KEPT` and
    `LIVEPULSE_DISTINCT_EXACT_LIMIT` (None: 4,096 and 10,000), the bounds of the two parts of
    its state that no horizon counts (the levels' settled runs and summarized buyers): lower
    ones reach them within the run (the paying users are then compared within
    `DISTINCT_BOUND`). `refund_horizon_days`: the worker's `LIVEPULSE_REFUND_HORIZON_DAYS`
    (None: its default, 90); the simulated refunds come within 12 days of their order, so a
    horizon above that changes no figure and brings the order fold's owners' lag
    (`horizon_days`) inside a shorter run.
    `worker_settings`: any other `Settings` fields of the worker (as `--worker-setting`, e.g.
    its fetch bounds), on top of the rest. `steady`: the stream, if it has to be written, is
    the one with a stationary population (`prepare`).
    `worker_env`: environment variables of the worker
    process only (as `--worker-env`, e.g. glibc's `MALLOC_ARENA_MAX=2`). Each sample keeps
    the worker's /status `memory` (streams/runtime/memory.py: where its RSS is) and its
    `malloc_trim` count."""
    run_began = time.perf_counter()
    if not stream.exists():
        prepare_in_child(days, scale, seed, stream, steady)
    newest_ts: list[int] = []  # the newest event time among the first i + 1 lines
    newest = 0
    with stream.open("rb") as handle:
        for raw in handle:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                newest = max(newest, int(json.loads(raw)["ts"]))
            newest_ts.append(newest)
    first_ts = next(ts for ts in newest_ts if ts)
    run = f"soak-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        bootstrap=bootstrap,
        app_id=run,
        topic_prefix=f"{run}.",
        web_port=web_port or free_port(),
        data_dir=Path(tempfile.mkdtemp(prefix=f"livepulse-{run}-")),
        dedupe_window_s=window_days * 86_400,
        # `LIVEPULSE_FOLD_SESSIONS`: the partitions summarize closed sessions (with the
        # membership table over the whole groups topic).
        fold_sessions=fold_sessions,
        # `LIVEPULSE_CLAIM_DAYS_KEPT`, `..._MONTHS_KEPT`: the frozen periods' horizon.
        claim_days_kept=days_kept,
        claim_months_kept=months_kept,
        # `LIVEPULSE_USER_HORIZON_DAYS`, `..._BOARD_HORIZON_DAYS`,
        # `..._FIRST_ORDER_HORIZON_DAYS`: the other horizons the state is bounded by.
        **{
            key: value
            for key, value in (
                ("user_horizon_days", user_horizon_days),
                ("board_horizon_days", board_horizon_days),
                ("first_order_horizon_days", first_order_horizon_days),
                ("refund_horizon_days", refund_horizon_days),
                ("board_runs_kept", board_runs_kept),
                ("distinct_exact_limit", distinct_exact_limit),
            )
            if value is not None
        },
        **({"groups_idle_s": groups_idle_s} if groups_idle_s is not None else {}),
        # A busy partition's snapshot every `snapshot_interval_s` whatever it costs, so that
        # the snapshot bytes follow event time (by default a worker takes one at most every
        # 10 s and only while snapshots take under 10% of the time: at 5,000 records/s of
        # this stream that is one every few weeks of event time). None: the defaults.
        **(
            {"snapshot_interval_s": snapshot_interval_s, "snapshot_max_share": 1.0}
            if snapshot_interval_s
            else {}
        ),
        **(worker_settings or {}),
    )
    # Its sessions abandoned as its partitions abandon them, each by its own horizons.
    truth = truth_of(
        stream, round(window_days * DAY_MS) or None, fold_sessions, settings.partitions
    )
    asyncio.run(create_topics(settings, all_topics(settings)))
    worker = WorkerProcess(settings, Path(tempfile.gettempdir()) / f"{run}.log", env=worker_env)
    samples: list[dict[str, Any]] = []
    report_error = ""
    published = _Published()
    failure: list[BaseException] = []

    def replay_all() -> None:
        try:
            asyncio.run(
                replay(stream, settings, rate=rate, create_topics=False, progress=published)
            )
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the sampling loop
            failure.append(exc)

    replayer = threading.Thread(target=replay_all, name="soak-replay")
    try:
        worker.start()
        worker.wait_ready(timeout_s=120)
        assert worker.process is not None
        pid = worker.process.pid
        replay_began = time.monotonic()
        replayer.start()
        last_records, last_t = 0, time.monotonic()
        next_day = sample_days
        stalled_since: float | None = None
        seen = 0
        # Per partition: its snapshot count and the event day when it last changed (the day
        # its latest snapshot was taken, to within a poll).
        snapshot_taken: dict[str, tuple[int, float]] = {}

        def sample(status: dict[str, Any], day: float, final: bool = False) -> None:
            nonlocal last_records, last_t
            now = time.monotonic()
            records = int(status["records"])
            # The last sample's period includes the wait for the drain and the snapshots.
            rate = (records - last_records) / (now - last_t) if records > last_records else None
            samples.append(
                {
                    "day": round(day, 2),
                    "wall_s": round(now - replay_began, 1),
                    "records": records,
                    "rss_mb": rss_bytes(pid) / 1e6,
                    "snapshot_mb": sum(
                        p["last_snapshot_bytes"] for p in status["partitions"].values()
                    )
                    / 1e6,
                    "snapshot_day": (
                        round(min(d for _, d in snapshot_taken.values()), 2)
                        if len(snapshot_taken) == len(status["partitions"])
                        else None
                    ),
                    "snapshot_days": {p: round(d, 2) for p, (_, d) in snapshot_taken.items()},
                    "records_per_s": None if final else rate,
                    "behind": max(published.lines - records, 0),
                    # Where the RSS is, as the worker reports it (None before session 18).
                    "memory": status.get("memory"),
                    # The worker's CPU seconds so far, its reaped forked children's included.
                    "cpu_s": cpu_seconds(pid, children=True),
                    "malloc_trims": ((status.get("gc") or {}).get("paced") or {}).get(
                        "malloc_trims"
                    ),
                }
            )
            print(f"bench: soak worker {samples[-1]}", flush=True)
            last_records, last_t = records, now

        while True:
            time.sleep(poll_s)
            done = not replayer.is_alive()
            if failure:
                raise RuntimeError(f"the replay failed: {failure[0]!r}") from failure[0]
            if not worker.alive():
                raise RuntimeError(
                    f"the worker exited (log {worker.log_path}); its log ends:\n{worker.tail()}"
                )
            status = worker_status(worker)
            records = int(status["records"])
            summary = published.summary if done else None
            sent = summary.sent + summary.fallback if summary is not None else None
            if sent is not None and records >= sent:
                break
            consumed = min(records, len(newest_ts)) - 1
            day = (newest_ts[max(consumed, 0)] - first_ts) / DAY_MS
            for partition, held in status["partitions"].items():
                count = held["snapshots"]
                if count and snapshot_taken.get(partition, (0, 0.0))[0] != count:
                    snapshot_taken[partition] = (count, day)
            if day >= next_day:
                sample(status, day)
                while next_day <= day:
                    next_day += sample_days
            if done:  # the worker still catching up: give up if it stops moving
                moved, seen = records > seen, records
                stalled_since = None if moved else (stalled_since or time.monotonic())
                if stalled_since is not None and time.monotonic() - stalled_since > stall_s:
                    raise RuntimeError(f"the worker stopped at {records:,} records of {sent}")
        replayer.join()
        asyncio.run(
            wait_drained(settings, f"{worker.base_url}/status", settings.source_topics, 600)
        )
        # The last sample once every partition's snapshot covers what it consumed.
        deadline = time.monotonic() + 120
        status = worker_status(worker)
        while time.monotonic() < deadline and any(
            p["dirty"] for p in status["partitions"].values()
        ):
            time.sleep(1.0)
            status = worker_status(worker)
        last_day = (newest_ts[-1] - first_ts) / DAY_MS
        snapshot_taken = {p: (h["snapshots"], last_day) for p, h in status["partitions"].items()}
        sample(status, last_day, final=True)
        report_began = time.perf_counter()
        try:
            report: dict[str, Any] | None = fetch_json(f"{worker.base_url}/report", timeout_s=1800)
        except OSError as exc:  # an HTTP error too: the samples are still worth keeping
            report, report_error = None, f"{exc!r}; the worker's log: {worker.log_path}"
        report_s = time.perf_counter() - report_began
    finally:
        published.stop = True
        if replayer.ident is not None:
            replayer.join(timeout=60)
        worker.stop()
        if not keep_topics:
            with contextlib.suppress(Exception):
                asyncio.run(delete_run_topics(settings))
    return {
        "mode": "worker",
        "run": run,
        "data_dir": str(settings.data_dir),
        "scenario": "xhs",
        "days": days,
        "scale": scale,
        "seed": seed,
        "steady": steady,
        "window_days": window_days,
        "rate": rate,
        "lines": len(newest_ts),
        "machine": machine(),
        "wall_s": time.perf_counter() - run_began,
        "report_s": report_s,
        "retention": report.get("retention") if report is not None else None,
        "bounded_peaks": bounded_peaks(report) if report is not None else None,
        "fold_sessions": fold_sessions,
        "claim_periods": settings.claim_periods,
        "days_kept": days_kept,
        "months_kept": months_kept,
        "user_horizon_days": settings.user_horizon_days,
        "board_horizon_days": settings.board_horizon_days,
        "first_order_horizon_days": settings.first_order_horizon_days,
        "refund_horizon_days": settings.refund_horizon_days,
        "groups_idle_s": settings.groups_idle_s,
        "board_runs_kept": settings.board_runs_kept,
        "distinct_exact_limit": settings.distinct_exact_limit,
        "worker_settings": {key: getattr(settings, key) for key in worker_settings or {}},
        "worker_env": dict(worker_env or {}),
        "truth_mismatches": (
            truth_mismatches(
                report,
                truth,
                sketched_paths(
                    bool((report.get("retention") or {}).get("summarized_sessions")),
                    distinct_exact_limit,
                ),
            )
            if report is not None
            else [f"/report failed: {report_error}"]
        ),
        "growth": growth_after(
            samples,
            horizon_days(
                window_days,
                fold_sessions,
                settings.claim_periods,
                days_kept,
                months_kept,
                settings.user_horizon_days,
                settings.board_horizon_days,
                settings.first_order_horizon_days,
                settings.refund_horizon_days,
            ),
            first_ts,
        ),
        "first_ts": first_ts,
        "samples": samples,
    }


def worker_setting(text: str) -> tuple[str, Any]:
    """`FIELD=VALUE` -> (FIELD, the value validated by `Settings`)."""
    field, sep, value = text.partition("=")
    if not sep or field not in Settings.model_fields:
        raise argparse.ArgumentTypeError(f"expected a Settings FIELD=VALUE, got {text!r}")
    try:
        return field, getattr(Settings.model_validate({field: value}), field)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc


def worker_env(text: str) -> tuple[str, str]:
    """`NAME=VALUE` -> (NAME, VALUE): an environment variable of the worker process."""
    name, sep, value = text.partition("=")
    if not sep or not name or name.startswith("LIVEPULSE_"):
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE (not LIVEPULSE_*: --worker-setting), got {text!r}"
        )
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--window-days", type=float, default=7.0, help="0: no dedupe window")
    parser.add_argument(
        "--sample-days", type=float, default=5, help="days of event time between samples"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="the run as JSON (samples, growth, truth)")
    parser.add_argument(
        "--plot", type=Path, help="the SVG plot (default: --out's name with .svg, or the stream's)"
    )
    parser.add_argument(
        "--stream", type=Path, help="the stream file (written with its truth if missing)"
    )
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--steady",
        action="store_true",
        help="a stream with a stationary population (past buyers lapse after 60 days without "
        "an order, group members stay 50 days on average; `scenarios.steady`), so that what "
        "is live is flat after a warm-up; its default --stream ends in -steady.jsonl",
    )
    parser.add_argument(
        "--fold-sessions",
        action="store_true",
        help=(
            "summarize closed sessions past their session horizon (`Ledger(fold_sessions=True)`;"
            " with --worker, `LIVEPULSE_FOLD_SESSIONS=true`)"
        ),
    )
    parser.add_argument(
        "--no-claim-periods",
        action="store_true",
        help="core: no claims by period (no freezing, summaries not held back; the report "
        "without `periods`), to compare",
    )
    parser.add_argument(
        "--days-kept",
        type=int,
        default=DEFAULT_DAYS_KEPT,
        help="CST days of claims by period kept frozen (LIVEPULSE_CLAIM_DAYS_KEPT)",
    )
    parser.add_argument(
        "--months-kept",
        type=int,
        default=DEFAULT_MONTHS_KEPT,
        help="CST months kept frozen (LIVEPULSE_CLAIM_MONTHS_KEPT; the horizon counts them: "
        "`horizon_days`)",
    )
    parser.add_argument(
        "--user-horizon-days",
        type=float,
        help="retire a user's folded rows after this many idle days (with --fold-sessions; "
        "--worker: LIVEPULSE_USER_HORIZON_DAYS, default 180; core: none unless given)",
    )
    parser.add_argument(
        "--board-horizon-days",
        type=float,
        help="--worker: LIVEPULSE_BOARD_HORIZON_DAYS (default 90)",
    )
    parser.add_argument(
        "--first-order-horizon-days",
        type=float,
        help="--worker: LIVEPULSE_FIRST_ORDER_HORIZON_DAYS (default 0: pairs kept for ever; "
        "set, the repurchase figures may exceed the truth's)",
    )
    parser.add_argument(
        "--refund-horizon-days",
        type=float,
        help="the refund horizon (core: 90 unless given; --worker: "
        "LIVEPULSE_REFUND_HORIZON_DAYS, default 90): the order fold's owners retire buyers "
        "only after it, a month and the user horizon (`horizon_days`). The simulated refunds "
        "come within 12 days of their order",
    )
    parser.add_argument(
        "--groups-idle-s",
        type=float,
        help="--worker: LIVEPULSE_GROUPS_IDLE_S (default 60 s of wall time: ~80 days of the "
        "300-day stream at 5,000 records/s while an empty groups partition holds summaries)",
    )
    parser.add_argument(
        "--board-runs-kept",
        type=int,
        help="--worker: LIVEPULSE_BOARD_RUNS_KEPT (default 4,096 settled runs a level's curve)",
    )
    parser.add_argument(
        "--distinct-exact-limit",
        type=int,
        help="--worker: LIVEPULSE_DISTINCT_EXACT_LIMIT (default 10,000 buyer ids a level, then "
        "a 16 KiB sketch; lower, the paying users are compared within DISTINCT_BOUND)",
    )
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="--worker: leave the run's topics on the broker (for bench.changelog_parts)",
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="through a `livepulse worker` on the real broker (--bootstrap) instead of the core",
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--web-port", type=int, default=0, help="--worker: its web port (0: a free one)"
    )
    parser.add_argument(
        "--rate", type=float, default=5_000.0, help="replay records/s (--worker; 0: unpaced)"
    )
    parser.add_argument(
        "--poll-s", type=float, default=1.0, help="seconds between reads of the worker's /status"
    )
    parser.add_argument(
        "--snapshot-interval-s",
        type=float,
        default=2.0,
        help="--worker: snapshot a busy partition this often, whatever it costs (0: the "
        "worker's own settings, LIVEPULSE_SNAPSHOT_*)",
    )
    parser.add_argument(
        "--worker-setting",
        type=worker_setting,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="--worker: also this `Settings` field of the worker (repeatable; e.g. "
        "batch_fetch_max_bytes=4194304, LIVEPULSE_BATCH_FETCH_MAX_BYTES)",
    )
    parser.add_argument(
        "--worker-env",
        type=worker_env,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="--worker: an environment variable of the worker process only (repeatable; e.g. "
        "MALLOC_ARENA_MAX=2, PYTHONMALLOC=malloc)",
    )
    parser.add_argument(
        "--replot", type=Path, metavar="RUN.json", help="redraw a saved run (no new run)"
    )
    parser.add_argument(
        "--first-ts",
        type=int,
        help="with --replot of a run saved before its stream's first event time was: that "
        "time (epoch ms), for the whole-month reading",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="OTHER.json",
        help="also draw this saved run on the plot's axes (repeatable)",
    )
    args = parser.parse_args()
    if args.rate < 0 or args.snapshot_interval_s < 0:
        parser.error("--rate and --snapshot-interval-s must be >= 0")
    if args.sample_days <= 0 or args.poll_s <= 0:
        parser.error("--sample-days and --poll-s must be > 0")
    for saved in [*([args.replot] if args.replot else []), *args.compare]:
        if not saved.is_file():
            parser.error(f"{saved}: no such file (a JSON written by --out)")
    stream = args.stream or Path(
        f"/tmp/livepulse-soak-{args.days}d-x{args.scale}-s{args.seed}"  # noqa: S108
        f"{'-steady' if args.steady else ''}.jsonl"
    )
    if args.prepare:
        prepared = prepare(args.days, args.scale, args.seed, stream, args.steady)
        print(json.dumps(prepared), flush=True)
        return
    if args.replot is not None:
        result = json.loads(args.replot.read_text("utf-8"))
        first_ts = result.get("first_ts", args.first_ts)
        if "growth" not in result or first_ts is not None:
            result["growth"] = growth_after(result["samples"], _horizon_of(result), first_ts)
        plot_path = args.plot or args.replot.with_suffix(".svg")
    else:
        if args.worker:
            result = worker_soak(
                args.days,
                args.scale,
                args.window_days,
                args.sample_days,
                args.seed,
                stream,
                bootstrap=args.bootstrap,
                rate=args.rate or None,
                poll_s=args.poll_s,
                snapshot_interval_s=args.snapshot_interval_s or None,
                web_port=args.web_port,
                fold_sessions=args.fold_sessions,
                days_kept=args.days_kept,
                months_kept=args.months_kept,
                user_horizon_days=args.user_horizon_days,
                board_horizon_days=args.board_horizon_days,
                first_order_horizon_days=args.first_order_horizon_days,
                keep_topics=args.keep_topics,
                groups_idle_s=args.groups_idle_s,
                board_runs_kept=args.board_runs_kept,
                distinct_exact_limit=args.distinct_exact_limit,
                refund_horizon_days=args.refund_horizon_days,
                worker_settings=dict(args.worker_setting),
                steady=args.steady,
                worker_env=dict(args.worker_env),
            )
        else:
            result = soak(
                args.days,
                args.scale,
                args.window_days,
                args.sample_days,
                args.seed,
                stream,
                args.fold_sessions,
                claim_periods=not args.no_claim_periods,
                days_kept=args.days_kept,
                months_kept=args.months_kept,
                user_horizon_days=args.user_horizon_days,
                refund_horizon_days=(
                    REFUND_HORIZON_DAYS
                    if args.refund_horizon_days is None
                    else args.refund_horizon_days
                ),
                steady=args.steady,
            )
        plot_path = args.plot or (args.out or stream).with_suffix(".svg")
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    others = [json.loads(path.read_text("utf-8")) for path in args.compare]
    plot([result, *others], plot_path)
    print(table(result), flush=True)
    print(
        f"bench: soak {result['days']} days x{result['scale']:g}: {result['lines']:,} lines, "
        f"{len(result['truth_mismatches'])} mismatches with the truth; plot: {plot_path}",
        flush=True,
    )


if __name__ == "__main__":
    main()
