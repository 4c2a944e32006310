"""A worker partition's frozen period parts' per-user rows, folded at the user's owner partition.

In a worker each partition is its own ledger and a user's rows of a frozen day or month are
split over partitions, so a partition cannot fold them into sums (`periods._fold_settled`
folds them only in a ledger holding every partition). Here a partition takes, once a month
of its own is frozen, the per-user rows of that month's and its days' parts of the claims in
`ROUTED` (`take_period_rows`), finishing first its own figures not read yet (they are its
report's when it is the only partition); the worker sends each user's rows to the user's
owner partition over the month-rows topic, then announces to every partition that its months
through one are sent (`PeriodsClosed`, as `MonthClosed` does for `group_spend_multiple`'s
closed months). The owner holds the rows it receives (`Ledger.period_rows_in`, a row sent
again overwrites) and, once every source partition has announced a period's month, folds
them (`ClaimParts.fold`: the same sums and moments `_fold_settled` keeps) into
`Ledger.period_users`. The merged report (`periods.merge_frozen`) adds, for each period, the
partitions' stripped parts, the owners' folded parts and the rows still held by an owner:
each user's rows are in exactly one of those places, and the parts add exactly (integer
cluster sums and moments over disjoint users).

`group_member_dwell` (`WHOLE_PERIOD`) is routed whole instead: its bootstrap-t resamples
every user of the period, so a period's rows from every source go to one partition, the
period's owner (Kafka's partitioner over `period_owner_key`), which folds them with that
bootstrap once (`fold_dwell_part`: user cluster sums and the t* quantiles; the sources keep
the pairs', watch times' and sessions' sums, which add). A source restored from a snapshot
of version 12 routed no dwell rows of the months it had sent (`Ledger.period_dwell_after`,
announced with its `PeriodsClosed`): an owner folds a period's dwell rows only once every
source says it routed that month's, else it holds them as rows, which merge exactly with the
rows that source kept.

The refund claims (`REFUND_CLAIMS`) are frozen in a second stage, once every refund that can
count for the period's orders has come (months after the first); their rows are taken once
that stage has frozen a month here (`Ledger.period_refunds_frozen_to`) and announced apart
(`PeriodsClosed.refunds_through`): an owner folds a period's refund rows once every source
has announced that month's, whatever its first stage did. A source keeps its own refund
figures (finished before the cut, as one partition's are): its report alone showed them
before, and the first stage's check "frozen in the second stage" reads them.

Not routed: the per-session rows and sketches (bounded by the period's sessions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from agents.core.ledger import RETIRED_USERS, Ledger, cst_month, cst_month_start
from agents.core.metrics import (
    CLAIM_PARTS,
    DwellPart,
    SharePart,
    SpendPart,
    fold_dwell_part,
    fold_share_part,
    fold_spend_part,
    merge_dwell_parts,
    merge_share_parts,
    merge_spend_parts,
)

#: The share claims whose per-user rows are routed (first stage: frozen with the period).
SHARES: Final[tuple[str, ...]] = ("orders_after_minute_5", "group_order_share", "bundle_share")
SPEND: Final[str] = "group_spend_multiple"
DWELL: Final[str] = "group_member_dwell"
#: The claims whose frozen parts' per-user rows go, whole, to the period's owner partition
#: (`period_owner_key`): their interval resamples every user of the period.
WHOLE_PERIOD: Final[tuple[str, ...]] = (DWELL,)
#: The claims whose frozen parts' per-user rows are taken: to the user's owner partition,
#: but `WHOLE_PERIOD`'s to the period's.
ROUTED: Final[tuple[str, ...]] = (*SHARES, SPEND, *WHOLE_PERIOD)
#: The claims reading refunds: a refund counts up to the refund horizon after its order, long
#: after the period closed, so they are frozen in a second stage (`periods.freeze_closed`)
#: and their per-user (hits, cases) rows taken then, to the user's owner partition.
REFUND_CLAIMS: Final[tuple[str, ...]] = ("size_refund_share", "return_rate")
#: A source's `period_dwell_after` in an announcement of a state that routes none (an
#: announcement of snapshot version 12's code): after every month.
NO_DWELL_ROUTED: Final[str] = "~"

#: A user's rows of one claim's part: a share's (hits, cases); the spend's (merchant, month,
#: first join ts or None, member then or None, cents) per key of theirs; the dwell's
#: (watch ms, pairs).
UserRows = dict[str, Any]


def period_owner_key(kind: str, key: str) -> str:
    """The message key whose partition (Kafka's default partitioner) owns a period's
    `WHOLE_PERIOD` rows: the days of a month spread over the partitions."""
    return f"{kind}/{key}"


class PeriodRows(NamedTuple):
    """A source partition's per-user rows of one frozen period's claim part, for the users
    one owner partition owns."""

    source: int
    kind: str
    key: str
    claim: str
    rows: UserRows


class PeriodsClosed(NamedTuple):
    """A source partition's announcement that the rows of every frozen period of a month up
    to `through` (YYYY-MM) have been sent; each supersedes the source's earlier ones.
    `dwell_after`: its `WHOLE_PERIOD` rows were sent only for the months after it.
    `refunds_through`: the `REFUND_CLAIMS`' rows (their second stage) sent up to that month
    ("" none: also an announcement of a state that routes none)."""

    source: int
    through: str
    dwell_after: str = ""
    refunds_through: str = ""


def split_part(claim: str, part: Any) -> tuple[Any, UserRows]:
    """The part without its per-user rows, and those rows by user (a retired users' row, in
    a part restored from a ledger that folded it, stays in the part)."""
    if claim == SPEND:
        folded, joins, spend = part
        rows: dict[str, list[list[Any]]] = {}
        for (merchant, month, user), (joined_ts, member) in joins.items():
            rows.setdefault(user, []).append(
                [merchant, month, joined_ts, member, spend.get((merchant, month, user), 0)]
            )
        for (merchant, month, user), cents in spend.items():
            if (merchant, month, user) not in joins:
                rows.setdefault(user, []).append([merchant, month, None, None, cents])
        return (folded, {}, {}), rows
    if claim == DWELL:
        pairs, total_ms, squares_ms, sessions, by_user = part[:5]
        kept = {u: row for u, row in by_user.items() if u == RETIRED_USERS}
        users = {u: list(row) for u, row in by_user.items() if u != RETIRED_USERS}
        return (pairs, total_ms, squares_ms, sessions, kept), users
    hits, total, sessions, pairs, by_user = part
    kept = {u: row for u, row in by_user.items() if u == RETIRED_USERS}
    users = {u: list(row) for u, row in by_user.items() if u != RETIRED_USERS}
    return (hits, total, sessions, pairs, kept), users


def rows_part(claim: str, rows: Iterable[UserRows]) -> Any:
    """A part holding only the given users' rows (several sources' rows of the same users
    merged as their parts merge)."""
    if claim == SPEND:
        spend_parts: list[SpendPart] = []
        for by_user in rows:
            joins: dict[tuple[str, str, str], tuple[int, bool]] = {}
            spend: dict[tuple[str, str, str], int] = {}
            for user, keyed in by_user.items():
                for merchant, month, joined_ts, member, cents in keyed:
                    key = (merchant, month, user)
                    if joined_ts is not None:
                        joins[key] = (int(joined_ts), bool(member))
                    if cents:
                        spend[key] = int(cents)
            spend_parts.append(({}, joins, spend))
        return merge_spend_parts(spend_parts)
    if claim == DWELL:
        dwell_parts: list[DwellPart] = [
            (0, 0, 0, (0, 0, 0, 0), {u: [int(v) for v in row] for u, row in r.items()})
            for r in rows
        ]
        return merge_dwell_parts(dwell_parts)
    share_parts: list[SharePart] = [
        (0, 0, (0, 0, 0, 0), (0, 0, 0, 0), {u: [int(v) for v in row] for u, row in r.items()})
        for r in rows
    ]
    return merge_share_parts(share_parts)


def fold_rows(claim: str, rows: Iterable[UserRows]) -> Any:
    """The owner's folded part of its users' rows of a period (every source's)."""
    part = rows_part(claim, rows)
    if claim == DWELL:
        return fold_dwell_part(part)  # the period's bootstrap, once (every user's rows here)
    return fold_spend_part(part) if claim == SPEND else fold_share_part(part)


def _month_before(ts_ms: int) -> str:
    """The last CST month that ends at or before `ts_ms`."""
    return cst_month(cst_month_start(cst_month(ts_ms)) - 1)


def take_period_rows(
    ledger: Ledger, source: int, partitions: int = 1
) -> list[PeriodRows | PeriodsClosed]:
    """As partition `source` of `partitions` of a worker: the per-user rows of the `ROUTED`
    claims' frozen parts of every month frozen here since the last take (the month's and its
    days'), and of the `REFUND_CLAIMS`' parts of every month their second stage has frozen
    here since then, dropped from the parts, then the announcement; nothing until a further
    month is frozen in either stage. With one partition its own figures are its report's:
    each not read yet is finished first from the whole part. With several, a partition's own
    figure of a `ROUTED` claim is no figure of the stream (its users' rows are in other
    partitions too) and only its own report of it alone reads it: it is dropped (that report
    shows the period `folded`), since finishing it would cost the take most of its time (the
    spend's interval over every user row) for nothing the merged report reads. A refund
    claim's figure is finished and kept whatever the partitions (a Wilson interval from the
    part's sums, once): its presence is what marks the period's second stage as done
    (`periods.freeze_closed`, `claim_periods`)."""
    frozen_to = ledger.periods_frozen_to
    if frozen_to is None:
        return []
    sent, refunds_sent = ledger.period_rows_sent_through, ledger.period_refunds_sent_through
    through = max(_month_before(frozen_to), sent)
    refunds_to = ledger.period_refunds_frozen_to
    # (Never past the first stage's month: a period's second stage comes after its first.)
    refunds_through = refunds_sent
    if refunds_to is not None:
        refunds_through = max(min(_month_before(refunds_to), through), refunds_sent)
    if through <= sent and refunds_through <= refunds_sent:
        return []
    out: list[PeriodRows | PeriodsClosed] = []
    dwell_after = ledger.period_dwell_after
    for (kind, key), parts in sorted(ledger.frozen_parts.items()):
        month = key[:7]
        claims: tuple[str, ...] = ()
        if sent < month <= through:
            claims = ROUTED
        if refunds_sent < month <= refunds_through:
            claims = (*claims, *REFUND_CLAIMS)
        if not claims:
            continue
        figures = ledger.frozen_periods.get((kind, key))
        for claim in claims:
            part = parts.get(claim)
            if part is None or (claim in WHOLE_PERIOD and month <= dwell_after):
                continue
            kept, rows = split_part(claim, part)
            if not rows:
                continue
            if figures is not None and claim in figures:
                if partitions == 1 or claim in REFUND_CLAIMS:
                    figures[claim]  # finished from the rows (FrozenFigures keeps it)
                else:
                    del figures[claim]
            parts[claim] = kept
            out.append(PeriodRows(source, kind, key, claim, rows))
    ledger.period_rows_sent_through = through
    ledger.period_refunds_sent_through = refunds_through
    out.append(PeriodsClosed(source, through, dwell_after, refunds_through))
    return out


def folded_through(ledger: Ledger, sources: int, claim: str = "") -> str:
    """The month through which every source partition has sent its rows of `claim` ("" none
    yet): the owner's periods of those months are folded. The `REFUND_CLAIMS`' months are
    announced apart (their second stage)."""
    if claim in REFUND_CLAIMS:
        held = ledger.period_refund_sources_through
    else:
        held = ledger.period_sources_through
    return min((held.get(source, "") for source in range(sources)), default="")


def receive_period_rows(ledger: Ledger, message: PeriodRows, sources: int) -> None:
    """As the owner: hold a source's rows of a period (sent again: overwritten per user);
    rows of a period every source has announced are folded already (ignored)."""
    if message.key[:7] <= folded_through(ledger, sources, message.claim):
        return
    period = (message.kind, message.key)
    held = ledger.period_rows_in.setdefault(period, {}).setdefault(message.source, {})
    held.setdefault(message.claim, {}).update(message.rows)


def receive_periods_closed(ledger: Ledger, message: PeriodsClosed, sources: int) -> None:
    """As the owner: note a source's announcement, and fold each period held whose month
    every source has announced (`fold_rows`, added to any folded before): for the
    `REFUND_CLAIMS`, announced in their second stage."""
    held = ledger.period_sources_through
    refunds_held = ledger.period_refund_sources_through
    newer = message.through > held.get(message.source, "")
    newer_refunds = message.refunds_through > refunds_held.get(message.source, "")
    if not newer and not newer_refunds:
        return
    if newer:
        held[message.source] = message.through
        ledger.period_dwell_after_by[message.source] = message.dwell_after
    if newer_refunds:
        refunds_held[message.source] = message.refunds_through
    through = folded_through(ledger, sources)
    refunds_through = folded_through(ledger, sources, REFUND_CLAIMS[0])
    # The last month some source did not route `WHOLE_PERIOD`'s rows of (a state restored
    # from snapshot version 12): the rows of its periods and before are held, not folded.
    dwell_after = max(
        (ledger.period_dwell_after_by.get(s, NO_DWELL_ROUTED) for s in range(sources)),
        default="",
    )
    last = max(through, refunds_through)
    for period in sorted(p for p in ledger.period_rows_in if p[1][:7] <= last):
        by_source = ledger.period_rows_in[period]
        month = period[1][:7]
        for claim in (*ROUTED, *REFUND_CLAIMS):
            if month > (refunds_through if claim in REFUND_CLAIMS else through):
                continue
            if claim in WHOLE_PERIOD and month <= dwell_after:
                continue
            rows = [claims.pop(claim) for claims in by_source.values() if claim in claims]
            if not rows:
                continue
            part = fold_rows(claim, rows)
            folded = ledger.period_users.setdefault(period, {})
            if claim in folded:
                if claim in WHOLE_PERIOD:
                    # Folded before (a worker rescaled: the announcements start anew): a
                    # folded dwell part does not merge, the first fold is kept.
                    continue
                merge = CLAIM_PARTS[claim].merge
                part = CLAIM_PARTS[claim].fold(merge([folded[claim], part]))
            folded[claim] = part
        for source in [s for s, claims in by_source.items() if not claims]:
            del by_source[source]
        if not by_source:
            del ledger.period_rows_in[period]
    # Only the latest kept days and months (`PeriodSettings`, from the ledger's gate): the
    # sources keep no older ones, and an owner with no frozen period of its own never prunes
    # them at its freeze (`periods._prune`).
    settings = getattr(ledger.period_gate, "settings", None)
    if settings is not None:
        for kind, kept in (("day", settings.days_kept), ("month", settings.months_kept)):
            keys = sorted(key for k, key in ledger.period_users if k == kind)
            if len(keys) > kept:
                prune_owned(ledger, kind, keys[-kept])


def owner_parts(ledger: Ledger, period: tuple[str, str]) -> dict[str, list[Any]]:
    """What an owner adds to a period's merged parts, by claim: its folded part and the
    rows it still holds (each source's as a part)."""
    out: dict[str, list[Any]] = {}
    for claim, part in ledger.period_users.get(period, {}).items():
        out.setdefault(claim, []).append(part)
    for claims in ledger.period_rows_in.get(period, {}).values():
        for claim, rows in claims.items():
            out.setdefault(claim, []).append(rows_part(claim, [rows]))
    return out


def routes_rows(ledgers: Sequence[Ledger]) -> bool:
    """Whether any of `ledgers` took or received period rows (their parts need the owners')."""
    return any(
        ledger.period_rows_sent_through
        or ledger.period_refunds_sent_through
        or ledger.period_rows_in
        or ledger.period_users
        for ledger in ledgers
    )


def prune_owned(ledger: Ledger, kind: str, kept_from: str) -> None:
    """Drop the owner's folded parts and held rows of `kind`'s periods before `kept_from`."""
    for held in (ledger.period_users, ledger.period_rows_in):
        for period in [p for p in held if p[0] == kind and p[1] < kept_from]:
            del held[period]


def period_entries(ledger: Ledger) -> Mapping[str, int]:
    """Counts for a worker's status: rows held as an owner (the `REFUND_CLAIMS`' apart too:
    held until every source announces their month's second stage), periods folded as one."""
    held = [
        (claim, len(rows))
        for by_source in ledger.period_rows_in.values()
        for claims in by_source.values()
        for claim, rows in claims.items()
    ]
    return {
        "rows_held": sum(n for _claim, n in held),
        "refund_rows_held": sum(n for claim, n in held if claim in REFUND_CLAIMS),
        "periods_folded": len(ledger.period_users),
    }
