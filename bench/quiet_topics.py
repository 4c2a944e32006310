"""`python -m bench.quiet_topics`: what a worker partition that never gets one contract topic's
records holds back at the owners (issue 17, session 20), in process, no broker.

A simulated xhs stream (`--days`, `--scale`, `--seed`) is routed as the replayer routes it
(Kafka's partitioner over each record's contract key) over `--partitions` partition ledgers
wired as a worker's (the refund table over every orders partition, a ledger of every group
event as the membership table, the claims by period, a 2-day window, `--refund-horizon-days`),
and partition `--quiet` gets none of the `--drop` topic's records (rooms that sell nothing:
`live.orders`; sessions with no interaction: `live.interactions`). The partitions are fed
`--chunk` records at a time in turn, each followed by the month-rows exchange in process
(the first orders and the period rows with their announcements, delivered at once); with
`--follow` the quiet partition's horizons of the dropped topics follow the others' after each
turn (`Ledger.follow_idle_topics`, as the worker's keeper once the topic is idle there), then
three more rounds after the stream as the keeper's ticks. The JSON on stdout: per run, the
months each source announced in each stage, the rows the owners hold unfolded (all claims,
the refund claims apart) and their pickled size, the periods folded at the owners, the quiet
partition's own state (pickled, its held orders and sessions), and the feed's CPU seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from agents.core import Ledger
from agents.core.ledger import DAY_MS, TOPICS, FirstOrder
from agents.core.period_rows import (
    REFUND_CLAIMS,
    WHOLE_PERIOD,
    PeriodRows,
    PeriodsClosed,
    period_owner_key,
    receive_period_rows,
    receive_periods_closed,
    take_period_rows,
)
from agents.core.periods import PeriodSettings, attach
from agents.core.refunds import RefundTable
from bench.soak_profile import packed_kb
from schemas import TOPIC_BY_TYPE, Rejection, decode, record_key
from streams.runtime.monthrows import deliver, owner_of
from streams.tools.simulator.generate import generate
from streams.tools.simulator.scenarios import get_scenario

WINDOW_MS = 2 * DAY_MS


def _routed(days: int, scale: float, seed: int, partitions: int) -> list[tuple[str, int, Any]]:
    """The stream's records as (contract topic, partition, decoded)."""
    scenario = dataclasses.replace(get_scenario("xhs"), days=days)
    out = []
    for line in generate(scenario, seed, scale).lines:
        decoded = decode(line.encode())
        if isinstance(decoded, Rejection):
            out.append(("", 0, decoded))
            continue
        obj = json.loads(line)
        out.append((TOPIC_BY_TYPE[obj["type"]], owner_of(record_key(obj), partitions), decoded))
    return out


def _deliver(ledgers: list[Ledger], message: Any) -> None:
    """A message of the month-rows topic to the partition(s) that read it."""
    n = len(ledgers)
    if isinstance(message, PeriodsClosed):
        for ledger in ledgers:
            receive_periods_closed(ledger, message, n)
    elif isinstance(message, PeriodRows):
        if message.claim in WHOLE_PERIOD:
            owner = owner_of(period_owner_key(message.kind, message.key), n)
            receive_period_rows(ledgers[owner], message, n)
            return
        by_owner: dict[int, dict[str, Any]] = {}
        for user, row in message.rows.items():
            by_owner.setdefault(owner_of(user, n), {})[user] = row
        for owner, rows in by_owner.items():
            receive_period_rows(ledgers[owner], message._replace(rows=rows), n)
    elif isinstance(message, FirstOrder):
        deliver(ledgers[owner_of(message.user, n)], message, n)
    else:
        for ledger in ledgers:
            deliver(ledger, message, n)


def run(args: argparse.Namespace, follow: bool) -> dict[str, Any]:
    """One run over the routed stream: the quiet partition following or not."""
    n = args.partitions
    routed = _routed(args.days, args.scale, args.seed, n)
    quiet_topics = [TOPICS.index(topic) for topic in args.drop]
    parts: list[list[Any]] = [[] for _ in range(n)]
    for topic, partition, decoded in routed:
        if partition == args.quiet and topic in args.drop:
            continue
        parts[partition].append(decoded)
    horizon_ms = round(args.refund_horizon_days * DAY_MS)
    groups = Ledger(WINDOW_MS, refund_horizon_ms=horizon_ms, fold_sessions=True)
    table = RefundTable(WINDOW_MS, refund_horizon_ms=horizon_ms)
    for topic, partition, decoded in routed:
        if isinstance(decoded, Rejection) or (partition == args.quiet and topic in args.drop):
            continue
        if topic == "live.groups":
            groups.apply(decoded)
        elif topic == "live.orders":
            table.apply(partition, decoded)
    ledgers = []
    for _ in range(n):
        ledger = Ledger(WINDOW_MS, refund_horizon_ms=horizon_ms, fold_sessions=True)
        attach(ledger, PeriodSettings())
        ledger.membership_from = groups
        ledger.refunds_from = table
        ledgers.append(ledger)

    def exchange(first: bool = True) -> None:
        for source, ledger in enumerate(ledgers):
            for message in ledger.take_first_orders(source) if first else ():
                _deliver(ledgers, message)
        quiet = ledgers[args.quiet]
        if follow and quiet.follow_idle_topics(args.quiet, quiet_topics):
            quiet.fold_due()
        for source, ledger in enumerate(ledgers):
            for message in take_period_rows(ledger, source, n):
                _deliver(ledgers, message)

    began = time.process_time()
    for begin in range(0, max(len(part) for part in parts), args.chunk):
        for ledger, part in zip(ledgers, parts, strict=True):
            for event in part[begin : begin + args.chunk]:
                if isinstance(event, Rejection):
                    ledger.reject(event.reason)
                else:
                    ledger.apply(event)
        exchange()
    for _tick in range(3):
        exchange()
    cpu_s = time.process_time() - began
    held = [
        (claim, rows)
        for ledger in ledgers
        for by_source in ledger.period_rows_in.values()
        for claims in by_source.values()
        for claim, rows in claims.items()
    ]
    refund = [rows for claim, rows in held if claim in REFUND_CLAIMS]
    return {
        "follow": follow,
        "announced_first": [ledger.period_rows_sent_through for ledger in ledgers],
        "announced_refunds": [ledger.period_refunds_sent_through for ledger in ledgers],
        "owner_rows_held": sum(len(rows) for _claim, rows in held),
        "owner_rows_held_kb": round(sum(packed_kb(ledger.period_rows_in) for ledger in ledgers), 1),
        "owner_refund_rows_held": sum(len(rows) for rows in refund),
        "owner_refund_rows_held_kb": round(sum(packed_kb(rows) for rows in refund), 1),
        "owner_periods_folded": sum(len(ledger.period_users) for ledger in ledgers),
        "owner_period_users_kb": round(
            sum(packed_kb(ledger.period_users) for ledger in ledgers), 1
        ),
        "quiet_partition_state_kb": round(packed_kb(ledgers[args.quiet]), 1),
        "quiet_partition_orders_held": len(ledgers[args.quiet].orders),
        "quiet_partition_sessions_held": len(ledgers[args.quiet].sessions),
        "expired_at_quiet": ledgers[args.quiet].counts.expired,
        "cpu_s": round(cpu_s, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=150)
    parser.add_argument("--scale", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--quiet", type=int, default=2, help="the partition missing --drop")
    parser.add_argument(
        "--drop", action="append", default=[], metavar="TOPIC", help="default: live.orders"
    )
    parser.add_argument("--refund-horizon-days", type=float, default=13.0)
    parser.add_argument("--chunk", type=int, default=1000)
    args = parser.parse_args(argv)
    args.drop = args.drop or ["live.orders"]
    if not 0 <= args.quiet < args.partitions or not set(args.drop) <= set(TOPICS):
        parser.error("--quiet must be a partition and --drop contract topics")
    runs = [run(args, follow) for follow in (False, True)]
    json.dump({"args": vars(args), "runs": runs}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
