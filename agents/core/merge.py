"""Merging per-partition ledgers and operator boards into one that reports as if fed it all.

A worker keeps one `Ledger` and one `OperatorBoard` per Kafka partition; a report (one
worker's, or the global one) is built from `merge_ledgers` and `merge_boards` of those. For
events split by the contract's record keys over any number of partitions, each partition fed
in its own order, `build_report(merge_ledgers(ls), merge_boards(bs))` equals the report of one
ledger and one board fed every event (tests/agents/core/test_merge.py), because:

* The ledger's facts are sets, sums, minima and maxima per key (counts, event ids, sessions'
  starts and ends, interacting users, questions, first replies), lists whose order no figure
  depends on (orders, refunds: the claims iterate them in a canonical order, see
  `metrics.order_key`), and the arrival-ordered lists of presence per (session, user) and of
  group events per (merchant, user).
* Arrival numbers (`seq`) are only ever compared inside one of those two kinds of list (they
  break ties at equal `ts`: a join and a leave of one user in the same millisecond). Such a
  list's events share a record key (the session id on `live.views`, the merchant id on
  `live.groups`), hence a partition, so a partition's ledger numbers them in the same
  relative order as the single ledger does. The arrival numbers of different partitions may
  be equal, which is harmless since they are never compared; `OrderFact.seq` is compared
  nowhere. The merged ledger's next arrival number is the sum of the inputs' (the single
  ledger's: one per valid event), above every number it holds.

Totality (a producer that keyed some events wrongly, so one session id, or one (merchant,
user), has events in several inputs): the facts are combined as the single ledger would have
combined them, except where it would have used the arrival order across those inputs.
Presence records, interacting users, orders and group events are pooled; a session's start is
the earliest (its room and merchant with it; at equal `ts` the earlier input's), its end the
earliest, its last event the latest; a question id known twice keeps the earliest (ts,
session); a first reply is the earliest; folded questions' counts and latencies per session
are added. In a list met in several inputs, arrival numbers are
renumbered with per-input offsets (the sum of the earlier inputs' counts) so that equal-`ts`
ties go by input order, then by each input's own order, and never collide. Event ids are
unioned and counts summed: an event id repeated ACROSS inputs cannot be deduplicated after the
fact (both copies were counted as valid and applied); the contract's keys make that impossible
for a conforming producer (a repeat carries the same key, so lands in the same partition).

Inputs are not mutated and the result shares no mutable container with them; it does share
immutable values (`OrderFact`, `RefundFact`, presence records, group-event tuples, strings).

Boards: `EventTimeWindows` lateness is judged per source, a (topic, record key), so every
event of a source is in one partition, met in the same order as by a single board: each
partition board makes exactly the single board's late / on-time decision for each event, and
the late counts add up. Whether an on-time event lands in a bucket depends on the watermark
when it arrived (buckets older than the retained minutes are dropped, and events for them
refused); a partition's watermark is never above the global one, so a partition keeps at
least every bucket the single board keeps; the merge takes the largest watermark, recomputes
the cutoff from it and drops older buckets. A bucket minute m at or above the final cutoff
was at or above every earlier cutoff of any board (cutoffs only grow with the watermark), so
in both every on-time event of minute m was counted in it: the buckets agree. Below the final
cutoff, neither keeps anything. Buckets of one (minute, session) in several inputs are summed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from agents.core.concurrency import LevelCurve
from agents.core.ledger import (
    BUYER_LAST_DAY,
    DWELL_LAST_DAY,
    MONTH_LAST_DAY,
    EventCounts,
    FoldedPresence,
    Ledger,
    OrderFact,
    Presence,
    RefundFact,
    SessionFacts,
    SessionSummary,
    add_owner_part,
    board_sent_by,
    widest_refund_horizon,
)
from agents.core.metrics import add_user_rows
from agents.core.operator import OperatorBoard, clicker_count
from agents.core.periods import merge_frozen
from agents.core.screen import merge_screens
from agents.core.seen import WIDE_BYTES, SeenRuns
from agents.core.sketch import DistinctUsers, QuantileSketch
from agents.core.stats import add_moments
from agents.core.windows import MINUTE_MS, EventTimeWindows, MinuteBucket


def merge_ledgers(ledgers: Sequence[Ledger]) -> Ledger:
    """One ledger holding every input's facts (see the module docstring); inputs untouched."""
    windows = {ledger.dedupe_window_ms for ledger in ledgers}
    # Partitions of one worker share the window; states of workers set differently merge with
    # none (the merged ledger is read, never fed).
    merged = Ledger(
        windows.pop() if len(windows) == 1 else None,
        fold_sessions=bool(ledgers) and all(ledger.fold_sessions for ledger in ledgers),
    )
    merged.refund_horizon_ms = widest_refund_horizon(ledgers)
    tolerances = {ledger.future_tolerance_ms for ledger in ledgers}
    merged.set_future_tolerance(tolerances.pop() if len(tolerances) == 1 else None)
    # Arrival-number offset of each input: the valid events of the inputs before it.
    offsets: list[int] = []
    total = 0
    for ledger in ledgers:
        offsets.append(total)
        total += ledger._seq
    merged._seq = total
    merged.counts = EventCounts(
        valid=sum(ledger.counts.valid for ledger in ledgers),
        rejected=sum(ledger.counts.rejected for ledger in ledgers),
        duplicates=sum(ledger.counts.duplicates for ledger in ledgers),
        expired=sum(ledger.counts.expired for ledger in ledgers),
        future=sum(ledger.counts.future for ledger in ledgers),
    )
    if len(ledgers) == 1:
        merged._seen_ids = set(ledgers[0]._seen_ids)
    else:
        merged._seen_ids = set().union(*(ledger._seen_ids for ledger in ledgers))
    for topic in range(len(merged.newest_ts)):
        newest = [ts for ts in (ledger.newest_ts[topic] for ledger in ledgers) if ts is not None]
        merged.newest_ts[topic] = max(newest) if newest else None
        hours = merged._id_hours[topic]
        for ledger in ledgers:
            for hour, keys in ledger._id_hours[topic].items():
                hours.setdefault(hour, []).extend(keys)
        kept = [k for k in (ledger._kept_from_hour[topic] for ledger in ledgers) if k is not None]
        merged._kept_from_hour[topic] = min(kept) if kept else None
    merged._seen_runs = SeenRuns.combined(
        [(ledger._seen_runs, ledger._kept_from_hour) for ledger in ledgers],
        merged._kept_from_hour,
    )
    merged._seen_wide = SeenRuns.combined(
        [(ledger._seen_wide, ledger._kept_from_hour) for ledger in ledgers],
        merged._kept_from_hour,
        WIDE_BYTES,
    )
    merged.folded_sessions = sum(ledger.folded_sessions for ledger in ledgers)
    # Closed periods: the inputs' frozen parts added, the figures finished from them.
    merged.frozen_periods, merged.frozen_parts = merge_frozen(ledgers)
    _merge_session_fold(merged, ledgers)
    for ledger in ledgers:
        for sid, ended_ts in ledger._ended_unfolded.items():
            merged._ended_unfolded[sid] = min(ended_ts, merged._ended_unfolded.get(sid, ended_ts))
    max_ts = [ledger.max_ts for ledger in ledgers if ledger.max_ts is not None]
    merged.max_ts = max(max_ts) if max_ts else None
    merged.sessions = _merge_sessions(ledgers, offsets)
    merged.orders = [order for ledger in ledgers for order in ledger.orders]
    merged.refunds = [refund for ledger in ledgers for refund in ledger.refunds]
    merged.refunds += _borrowed_missing(ledgers, merged.refunds)
    for ledger in ledgers:  # the folded orders' sums: each cluster folded in one input
        merged.order_fold.add(ledger.order_fold)
    for ledger in ledgers:
        # A (merchant, user)'s first and earliest later order: the two smallest distinct ts
        # of the inputs' pairs; spend and first joins summed and taken at their minimum.
        for pair, (first, later) in ledger.first_orders.items():
            held = merged.first_orders.get(pair)
            times = {first} if later is None else {first, later}
            if held is not None:
                times.update(t for t in held if t is not None)
            smallest = sorted(times)[:2]
            merged.first_orders[pair] = (smallest[0], smallest[1] if len(smallest) > 1 else None)
        for key, cents in ledger.month_spend.items():
            merged.month_spend[key] = merged.month_spend.get(key, 0) + cents
    for ledger in ledgers:
        # Membership at a source's first order, recorded there: kept where that is still the
        # merged pair's first order (every input's pairs merged above).
        for pair, recorded in ledger.source_members().items():
            if merged.first_orders[pair][0] == recorded[0]:
                merged.first_members[pair] = recorded
    merged.group_events = _merge_group_events(ledgers, offsets)
    for ledger in ledgers:
        for question_id, asked in ledger.questions.items():
            known = merged.questions.get(question_id)
            if known is None or asked < known:
                merged.questions[question_id] = asked
        for question_id, ts in ledger.first_reply_ts.items():
            earliest = merged.first_reply_ts.get(question_id)
            if earliest is None or ts < earliest:
                merged.first_reply_ts[question_id] = ts
        merged.folded_figures.merge(ledger.folded_figures)
        # Folded questions: counts and latencies per session added (a session's questions
        # and their replies share its record key, so one input folds each).
        for sid, asked_count in ledger.folded_questions.items():
            merged.folded_questions[sid] = merged.folded_questions.get(sid, 0) + asked_count
        for sid, summary in ledger.folded_replies.items():
            mine = merged.folded_replies.get(sid)
            merged.folded_replies[sid] = (
                list(summary)
                if mine is None
                else [a + b for a, b in zip(mine, summary, strict=True)]
            )
        merged.folded_within_3min += ledger.folded_within_3min
        merged.unmatched_replies += ledger.unmatched_replies
        for filed, into in (
            (ledger._question_hours, merged._question_hours),
            (ledger._reply_hours, merged._reply_hours),
        ):
            for hour, question_ids in filed.items():
                into.setdefault(hour, []).extend(question_ids)
    return merged


def _merge_session_fold(merged: Ledger, ledgers: Sequence[Ledger]) -> None:
    """The session fold's ledger-wide state: per-user totals added, earliest first joins per
    (merchant, month), counts summed (a session's summary is in one input, see
    `_merge_session`; its buyers' and members' totals add across inputs exactly)."""
    merged.summarized_sessions = sum(ledger.summarized_sessions for ledger in ledgers)
    merged.abandoned_sessions = sum(ledger.abandoned_sessions for ledger in ledgers)
    for ledger in ledgers:
        for topic, count in enumerate(ledger.after_session_horizon):
            merged.after_session_horizon[topic] += count
        for sid, ended_ts in ledger._awaiting_summary.items():
            merged._awaiting_summary[sid] = min(
                ended_ts, merged._awaiting_summary.get(sid, ended_ts)
            )
        # `interaction_uplift`'s summarized rows: each session is summarized in one input.
        merged.folded_uplift = add_moments([merged.folded_uplift, ledger.folded_uplift])
        # The shares' and the member dwell's cluster sums of the summarized sessions, likewise.
        for attribute, row in ledger.folded_shares.items():
            held = merged.folded_shares.get(attribute)
            merged.folded_shares[attribute] = (
                row if held is None else tuple(a + b for a, b in zip(held, row, strict=True))
            )
        merged.folded_dwell = tuple(
            a + b for a, b in zip(merged.folded_dwell, ledger.folded_dwell, strict=True)
        )
        merged.folded_tail = tuple(
            a + b for a, b in zip(merged.folded_tail, ledger.folded_tail, strict=True)
        )
        for into, totals, last_day in (
            (merged.folded_buyers, ledger.folded_buyers, BUYER_LAST_DAY),
            (merged.folded_dwellers, ledger.folded_dwellers, DWELL_LAST_DAY),
            # Closed months' per-user totals (a month folds only in a ledger that holds all
            # of it, so no month is in two inputs' totals).
            (merged.month_folded_users, ledger.month_folded_users, MONTH_LAST_DAY),
        ):
            # With a user horizon each row ends with the user's last day there: the latest
            # of the partitions', not their sum.
            add_user_rows(into, totals, last_day)
        # The user horizon's retired clusters (each partition retires its own rows: a user
        # retired in one and kept in another is two clusters, docs/design.md).
        merged.retired_users += ledger.retired_users
        for retired_into, retired in (
            (merged.retired_buyers, ledger.retired_buyers),
            (merged.retired_dwellers, ledger.retired_dwellers),
            (merged.retired_spend, ledger.retired_spend),
        ):
            for i, value in enumerate(retired):
                retired_into[i] += value
        merged.repurchase_folded[0] += ledger.repurchase_folded[0]
        merged.repurchase_folded[1] += ledger.repurchase_folded[1]
        merged.forgotten_pairs += ledger.forgotten_pairs
        for pair, ts in ledger.bought_before.items():
            if ts > merged.bought_before.get(pair, ts - 1):
                merged.bought_before[pair] = ts
        # A worker's pairs at their owner partitions: the parts' two earliest times with
        # membership at the first as recorded there, and the pairs decided there (a source's
        # part of one still held is a later order).
        for pair, (first, later, member) in ledger.first_orders_in.items():
            merged.first_orders_in[pair] = add_owner_part(
                merged.first_orders_in.get(pair), first, later, member
            )
        for pair, day in ledger.pairs_decided.items():
            if day > merged.pairs_decided.get(pair, day - 1):
                merged.pairs_decided[pair] = day
        # The operator's levels: watch-time sketches merged (bin counts add), buyers united.
        for level, sketch in ledger.folded_watch.items():
            held_sketch = merged.folded_watch.get(level)
            if held_sketch is None:
                held_sketch = merged.folded_watch[level] = QuantileSketch()
            held_sketch.merge(sketch)
        for level, payers in ledger.folded_payers.items():
            held_payers = merged.folded_payers.get(level)
            if held_payers is None:
                held_payers = merged.folded_payers[level] = DistinctUsers()
            held_payers.merge(payers)
        merged.board_minutes_late += ledger.board_minutes_late
        for month, joins in ledger.month_first_joins.items():
            earliest = merged.month_first_joins.setdefault(month, {})
            for user, ts in joins.items():
                known = earliest.get(user)
                if known is None or ts < known:
                    earliest[user] = ts
        merged.folded_months += ledger.folded_months
        # Months combined across a worker's partitions: each owner combines its users' rows
        # of one, so the report counts the union (`folded_months` + its size).
        merged._months_combined |= ledger._months_combined
        # Month rows held for combining, by (merchant, month), user and source partition.
        for month_key, users in ledger.month_rows_in.items():
            into_users = merged.month_rows_in.setdefault(month_key, {})
            for user, parts in users.items():
                into_users.setdefault(user, {}).update(parts)
    # The levels' concurrency curves: known counts by minute added (kept minutes, settled
    # runs kept, the runs an owner partition holds), the owners' folded peaks, with what a
    # minute may lack (`LevelCurve.merged`: exact unless `bounded`).
    levels = {level for ledger in ledgers for level in ledger.board_levels()}
    sent_to = board_sent_by(ledgers)
    for level in levels:
        merged.board_curves[level] = LevelCurve.merged(
            [found for ledger in ledgers for found in ledger.curves_of(level, sent_to)]
        )
    horizons = {ledger.board_horizon_ms for ledger in ledgers}
    merged.board_horizon_ms = horizons.pop() if len(horizons) == 1 else None
    _merge_retired(merged, ledgers)


def _merge_retired(merged: Ledger, ledgers: Sequence[Ledger]) -> None:
    """The retired summaries' totals added (`Ledger._retire_summaries`: a session is retired
    in the one input that summarized it). Retiring stays off in the merged ledger (a report,
    not a state that goes on)."""
    for ledger in ledgers:
        merged.retired_sessions += ledger.retired_sessions
        for level, row in ledger.retired_levels.items():
            held = merged.retired_levels.get(level)
            merged.retired_levels[level] = (
                list(row) if held is None else [a + b for a, b in zip(held, row, strict=True)]
            )
        for level, minutes in ledger.retired_order_minutes.items():
            into = merged.retired_order_minutes.setdefault(level, {})
            for minute, n in minutes.items():
                into[minute] = into.get(minute, 0) + n
        merged.retired_aov_rows.update(ledger.retired_aov_rows)
        for i, value in enumerate(ledger.retired_aov_sums):
            merged.retired_aov_sums[i] += value
        for i, value in enumerate(ledger.retired_replies):
            merged.retired_replies[i] += value
        for day_start, sums in ledger.retired_aov_days.items():
            into_sums = merged.retired_aov_days.setdefault(day_start, [0] * len(sums))
            for i, value in enumerate(sums):
                into_sums[i] += value
        for i, value in enumerate(ledger.retired_conversion):
            merged.retired_conversion[i] += value


def _merge_sessions(ledgers: Sequence[Ledger], offsets: Sequence[int]) -> dict[str, SessionFacts]:
    found: dict[str, list[tuple[SessionFacts, int]]] = {}
    for ledger, offset in zip(ledgers, offsets, strict=True):
        for sid, session in ledger.sessions.items():
            found.setdefault(sid, []).append((session, offset))
    return {sid: _merge_session(parts) for sid, parts in found.items()}


def _merge_session(parts: Sequence[tuple[SessionFacts, int]]) -> SessionFacts:
    out = SessionFacts()
    orders: list[OrderFact] = []
    for session, _offset in parts:
        # Strictly earlier only: at equal ts the earlier input's start stays, as an earlier
        # arrival's does in `Ledger.apply`.
        if session.started_ts is not None and (
            out.started_ts is None or session.started_ts < out.started_ts
        ):
            out.started_ts = session.started_ts
            out.room_id = session.room_id
            out.merchant_id = session.merchant_id
        if session.ended_ts is not None and (
            out.ended_ts is None or session.ended_ts < out.ended_ts
        ):
            out.ended_ts = session.ended_ts
        if session.abandoned_ts is not None:  # its newest event where it was abandoned
            out.abandoned_ts = max(out.abandoned_ts or session.abandoned_ts, session.abandoned_ts)
        out.last_ts = max(out.last_ts, session.last_ts)
        out.interacting_users.update(session.interacting_users)
        orders.extend(session.orders)
    out.orders = orders
    summaries = [s.presence for s, _offset in parts if isinstance(s.presence, SessionSummary)]
    if summaries:
        # Summarized for good (a session id met in several inputs only when a producer keyed
        # its events apart): the summaries added; another input's facts of it came after its
        # session horizon there, and are not the session's.
        out.presence = SessionSummary.combined(summaries) if len(summaries) > 1 else summaries[0]
        out.orders = []
        out.interacting_users = set()
        return out
    raw = [(s.presence, offset) for s, offset in parts if isinstance(s.presence, Presence)]
    folded = [s.presence for s, _offset in parts if isinstance(s.presence, FoldedPresence)]
    if not folded:
        out.presence = Presence.merged(raw)
    else:
        # A closed session's summary (a session id met in several inputs only when a producer
        # keyed its views apart: the raw parts folded at the merged end, then combined).
        close_ts = out.ended_ts if out.ended_ts is not None else out.last_ts
        points = [(order.user_id, order.ts) for order in orders]
        folded += [
            FoldedPresence.fold(Presence.merged([part]), close_ts, out.ended_ts, points)
            for part in raw
        ]
        out.presence = FoldedPresence.combined(folded)
    return out


def _merge_group_events(
    ledgers: Sequence[Ledger], offsets: Sequence[int]
) -> dict[tuple[str, str], list[tuple[int, int, str, bool]]]:
    found: dict[tuple[str, str], list[tuple[list[tuple[int, int, str, bool]], int]]] = {}
    for ledger, offset in zip(ledgers, offsets, strict=True):
        for member, events in ledger.group_events.items():
            found.setdefault(member, []).append((events, offset))
    out: dict[tuple[str, str], list[tuple[int, int, str, bool]]] = {}
    for member, parts in found.items():
        if len(parts) == 1:
            out[member] = list(parts[0][0])
        else:
            # Met in several inputs: renumbered so ties at equal ts go by input, then arrival.
            out[member] = [
                (ts, seq + offset, group_id, joined)
                for events, offset in parts
                for ts, seq, group_id, joined in events
            ]
    return out


def merge_boards(boards: Sequence[OperatorBoard]) -> OperatorBoard:
    """One board holding every input's counts and windows (see the module docstring).

    The inputs must share their grace and GPM denominator (ValueError otherwise); with no
    input, a board with the defaults.
    """
    if not boards:
        return OperatorBoard()
    first = boards[0]
    for board in boards[1:]:
        if board.gpm_denominator != first.gpm_denominator:
            raise ValueError("boards with different gpm_denominator cannot be merged")
    merged = OperatorBoard(first.windows.grace_ms, first.gpm_denominator)
    merged.windows = merge_windows([board.windows for board in boards])
    merged.screen = merge_screens([board.screen for board in boards])
    for board in boards:
        for sid, count in board.follows.items():
            merged.follows[sid] = merged.follows.get(sid, 0) + count
        for sid, count in board.product_clicks.items():
            merged.product_clicks[sid] = merged.product_clicks.get(sid, 0) + count
        for sid, clickers in board.product_clickers.items():
            known = merged.product_clickers.get(sid)
            if isinstance(clickers, int) or isinstance(known, int):
                # Summarized (a count): added, exact when one partition held its clicks, as
                # a producer keying clicks by session does.
                merged.product_clickers[sid] = clicker_count(known) + clicker_count(clickers)
            elif known is None:
                merged.product_clickers[sid] = set(clickers)
            else:
                known.update(clickers)
        # Retired sessions' counts per level (`OperatorBoard.take_retired`) added.
        for level, row in board.retired_levels.items():
            held = merged.retired_levels.get(level)
            merged.retired_levels[level] = (
                list(row) if held is None else [a + b for a, b in zip(held, row, strict=True)]
            )
    return merged


def merge_windows(windows: Sequence[EventTimeWindows]) -> EventTimeWindows:
    """One `EventTimeWindows` from several with the same grace and retention (ValueError
    otherwise): newest ts per source and watermark the largest, late counts summed, buckets
    of one (minute, session) summed, then buckets older than the merged cutoff dropped."""
    if not windows:
        return EventTimeWindows()
    first = windows[0]
    for other in windows[1:]:
        if (other.grace_ms, other.retained_minutes) != (first.grace_ms, first.retained_minutes):
            raise ValueError("windows with different grace or retention cannot be merged")
    merged = EventTimeWindows(first.grace_ms, first.retained_minutes)
    merged.late = sum(w.late for w in windows)
    marks = [w.watermark for w in windows if w.watermark is not None]
    merged.watermark = max(marks) if marks else None
    cutoff = (
        None
        if merged.watermark is None
        else merged.watermark // MINUTE_MS - first.retained_minutes + 1
    )
    merged._cutoff = cutoff
    newest = merged._source_newest
    for w in windows:
        for source, ts in w._source_newest.items():
            known = newest.get(source)
            if known is None or ts > known:
                newest[source] = ts
        for minute, by_session in w.buckets.items():
            if cutoff is not None and minute < cutoff:
                continue
            target = merged.buckets.setdefault(minute, {})
            for sid, bucket in by_session.items():
                held = target.get(sid)
                if held is None:
                    target[sid] = _copy_bucket(bucket)
                else:
                    _add_bucket(held, bucket)
    return merged


def _copy_bucket(bucket: MinuteBucket) -> MinuteBucket:
    return MinuteBucket(
        entries=bucket.entries,
        interactions=bucket.interactions,
        product_clicks=bucket.product_clicks,
        orders=bucket.orders,
        gmv_cents=bucket.gmv_cents,
        viewers=set(bucket.viewers),
        buyers=set(bucket.buyers),
    )


def _add_bucket(into: MinuteBucket, other: MinuteBucket) -> None:
    into.entries += other.entries
    into.interactions += other.interactions
    into.product_clicks += other.product_clicks
    into.orders += other.orders
    into.gmv_cents += other.gmv_cents
    into.viewers |= other.viewers
    into.buyers |= other.buyers


def _borrowed_missing(ledgers: Sequence[Ledger], held: Sequence[RefundFact]) -> list[RefundFact]:
    """The refunds a snapshot's held payments borrowed from its worker's refund table
    (`Ledger.borrowed_refunds`, snapshot v10) that no input holds as its own: the refunds'
    partition drops its copy once its own worker's table does, and that table knows only its
    own worker's held orders. Of each order id held, as many of each refund as the input
    that borrowed most of it (two inputs may hold payments of one id) less those held."""
    wanted: dict[str, Counter[RefundFact]] = {}
    for ledger in ledgers:
        borrowed: dict[str, list[RefundFact]] = getattr(ledger, "borrowed_refunds", {})
        if not borrowed:
            continue
        for order_id in {order.order_id for order in ledger.orders}:
            refunds = borrowed.get(order_id)
            if refunds:
                wanted[order_id] = wanted.get(order_id, Counter()) | Counter(refunds)
    if not wanted:
        return []
    have = Counter(refund for refund in held if refund.order_id in wanted)
    missing = Counter[RefundFact]()
    for counts in wanted.values():
        missing += counts - have
    return sorted(missing.elements(), key=lambda r: (r.ts, r.order_id, r.amount_cents))
