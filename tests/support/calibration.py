"""Verdict calibration: streams whose true parameters the generator sets, and the verdict rates.

Each stream is a contract event stream of `days` days, about 40 session orders a day in about 7
sessions, built here from parameters the test chooses (the truth: never computed by the code
under test). Sessions differ: each draws its own share (Beta around the true share, so the
orders of one session are correlated) and its own amount level (a log-normal effect), as the
fixtures' do, so a verdict that treats orders as independent is caught. The records go through
the production path: `schemas.decode` -> `Ledger` -> the claim's function -> `claim_verdict`.

Claims and their parameters (the value the stream's process has):

- `orders_after_minute_5`, `group_order_share`, `bundle_share`, `size_refund_share`: shares of
  orders (of apparel orders for the size refunds), per session ~ Beta(k p, k (1 - p)), k = 10.
- `live_aov`: amounts log-normal, sigma 0.85 within a session, a session effect of sd 0.4 (the
  fixture xhs has 0.88 and about 0.6 with noise), scaled so that the mean is the AOV.
- `post_live_tail`: per session, Poisson(3 t E[orders]) orders in the 3 days after the end,
  amounts as live ones (the same session effect): tail GMV / 3 / live GMV -> t.
- `reply_latency`: per session Poisson(8) questions, each answered within 3 s with the
  session's probability ~ Beta around q; a miss is answered in 3-300 s or never (half each).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

from agents.core.claims import CLAIMS_BY_ID, Claim
from agents.core.extended import EXTENDED_CLAIM_FUNCTIONS
from agents.core.metrics import CLAIM_FUNCTIONS, _Facts
from agents.core.report import claim_verdict
from streams.tools.analyze import analyze_records

T0 = 1_719_835_200_000  # 2024-07-01 20:00 CST
MINUTE = 60_000
DAY = 86_400_000
SESSIONS_PER_DAY = 7
EXTRA_ORDERS = 4.7  # orders per session: 1 + Poisson(4.7), about 40 a day
CONCENTRATION = 10.0
SIGMA = 0.85
TAU = 0.4
QUESTIONS = 8

#: The claims calibrated here (every claim with a verdict whose facts this generator makes).
CALIBRATED: tuple[str, ...] = (
    "orders_after_minute_5",
    "live_aov",
    "group_order_share",
    "size_refund_share",
    "bundle_share",
    "post_live_tail",
    "reply_latency",
)

#: Parameters of a stream where no claim is under test (each near its claimed value).
DEFAULTS: dict[str, float] = {
    "orders_after_minute_5": 0.75,
    "live_aov": 600.0,
    "group_order_share": 0.19,
    "size_refund_share": 0.19,
    "bundle_share": 0.20,
    "post_live_tail": 0.10,
    "reply_latency": 0.97,
}


def worlds(claim: Claim) -> dict[str, tuple[float, bool]]:
    """name -> (true value, whether the claim holds there): at the claimed value, on each edge
    of the band, and beyond each edge by half the band's half-width (false). An `at_least`
    claim: above the floor, at it (the edge), and 10% (shares: 5 points) below it (false)."""
    assert claim.claimed is not None
    if claim.comparator == "at_least":
        below = claim.claimed * 0.8 if claim.unit == "CNY" else claim.claimed - 0.05
        above = claim.claimed * 1.2 if claim.unit == "CNY" else min(1.0, claim.claimed + 0.02)
        return {"above": (above, True), "edge": (claim.claimed, True), "false": (below, False)}
    band = claim.band()
    assert band is not None
    half = (band[1] - band[0]) / 2
    return {
        "claimed": (claim.claimed, True),
        "edge_low": (band[0], True),
        "edge_high": (band[1], True),
        "false_low": (band[0] - half / 2, False),
        "false_high": (band[1] + half / 2, False),
    }


def _beta(rng: np.random.Generator, p: float) -> float:
    if p <= 0 or p >= 1:
        return min(1.0, max(0.0, p))
    return float(rng.beta(CONCENTRATION * p, CONCENTRATION * (1 - p)))


def _dump(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)


@dataclass(slots=True)
class _Ids:
    count: int = 0

    def next(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"


@dataclass(slots=True)
class StreamSpec:
    """One simulated stream: its length, seed and the true parameter of each claim."""

    days: int
    seed: int
    params: dict[str, float] = field(default_factory=lambda: dict(DEFAULTS))
    #: The claim under test: only the events it reads are written (faster; the others' draws
    #: are made all the same), and the post-live tail only for `post_live_tail` (tail orders
    #: are session orders, and would shift the other order claims' truths). None: everything.
    claim_id: str | None = None

    def writes(self, claim_id: str) -> bool:
        return self.claim_id is None or self.claim_id == claim_id


def records(spec: StreamSpec) -> Iterator[bytes]:
    """The stream's records (JSON bytes), session by session."""
    rng = np.random.default_rng(spec.seed)
    p = spec.params
    ids = _Ids()
    mu = math.log(p["live_aov"] * 100) - SIGMA**2 / 2 - TAU**2 / 2
    for day in range(spec.days):
        for slot in range(SESSIONS_PER_DAY):
            sid = ids.next("s")
            start = T0 + day * DAY + slot * 10 * MINUTE
            end = start + 120 * MINUTE
            yield _dump(
                {"event_id": ids.next("e"), "type": "session_started", "ts": start}
                | {"session_id": sid, "room_id": f"r{slot}", "merchant_id": "m1"}
            )
            after5 = _beta(rng, p["orders_after_minute_5"])
            member = _beta(rng, p["group_order_share"])
            bundle = _beta(rng, p["bundle_share"])
            size = _beta(rng, p["size_refund_share"])
            effect = rng.normal(0.0, TAU)
            orders = 1 + int(rng.poisson(EXTRA_ORDERS))
            times = [
                start + int(rng.uniform(5 * MINUTE, 119 * MINUTE))
                if rng.random() < after5
                else start + int(rng.uniform(0, 5 * MINUTE - 1))
                for _ in range(orders)
            ]
            if spec.claim_id == "post_live_tail":
                tail = int(rng.poisson(3 * p["post_live_tail"] * (1 + EXTRA_ORDERS)))
                times += [end + 1 + int(rng.uniform(0, 3 * DAY - 2)) for _ in range(tail)]
            for ts in times:
                oid = ids.next("o")
                user = f"u-{oid}"
                amount = max(1, round(math.exp(mu + effect + rng.normal(0.0, SIGMA))))
                apparel = rng.random() < 0.5
                skus = 2 if rng.random() < bundle else 1
                items = [
                    {
                        "sku_id": f"k{k}",
                        "category": "apparel" if apparel else "beauty",
                        "unit_price_cents": max(1, amount // skus),
                        "quantity": 1,
                    }
                    for k in range(skus)
                ]
                if rng.random() < member and spec.writes("group_order_share"):
                    yield _dump(
                        {"event_id": ids.next("e"), "type": "group_joined", "ts": ts - MINUTE}
                        | {"merchant_id": "m1", "group_id": "g1", "user_id": user}
                    )
                yield _dump(
                    {"event_id": ids.next("e"), "type": "order_paid", "ts": ts}
                    | {"order_id": oid, "session_id": sid, "merchant_id": "m1", "user_id": user}
                    | {"items": items, "amount_cents": amount}
                )
                if apparel and rng.random() < size and spec.writes("size_refund_share"):
                    yield _dump(
                        {"event_id": ids.next("e"), "type": "order_refunded", "ts": ts + DAY}
                        | {"order_id": oid, "amount_cents": amount, "reason": "size"}
                    )
            answered_fast = _beta(rng, p["reply_latency"])
            for _ in range(int(rng.poisson(QUESTIONS)) if spec.writes("reply_latency") else 0):
                qid = ids.next("q")
                asked = start + int(rng.uniform(0, 110 * MINUTE))
                yield _dump(
                    {"event_id": qid, "type": "interaction", "ts": asked, "session_id": sid}
                    | {"user_id": ids.next("v"), "kind": "question"}
                )
                if rng.random() < answered_fast:
                    latency = int(rng.uniform(0, 3_000))
                elif rng.random() < 0.5:
                    latency = int(rng.uniform(3_001, 300_000))
                else:
                    continue
                yield _dump(
                    {"event_id": ids.next("e"), "type": "interaction", "ts": asked + latency}
                    | {"session_id": sid, "user_id": "host", "kind": "reply", "reply_to": qid}
                )
            yield _dump(
                {"event_id": ids.next("e"), "type": "session_ended", "ts": end, "session_id": sid}
            )


_FUNCTIONS = {**CLAIM_FUNCTIONS, **EXTENDED_CLAIM_FUNCTIONS}


def verdict_of(claim_id: str, spec: StreamSpec) -> str:
    """The production verdict of one claim on the stream `spec` describes."""
    facts = _Facts(analyze_records(records(spec)))
    return claim_verdict(CLAIMS_BY_ID[claim_id], _FUNCTIONS[claim_id](facts))


@dataclass(slots=True)
class Cell:
    """Verdicts of one claim in one world at one stream length."""

    claim_id: str
    world: str
    truth: float
    holds: bool
    days: int
    verdicts: dict[str, int] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return sum(self.verdicts.values())

    @property
    def wrong(self) -> int:
        """Verdicts that say the opposite of the truth."""
        return self.verdicts.get("contradicted" if self.holds else "supported", 0)

    def rate(self, verdict: str) -> float:
        return self.verdicts.get(verdict, 0) / self.runs if self.runs else math.nan


def run_cell(claim_id: str, world: str, days: int, runs: int, seed: int = 0) -> Cell:
    """`runs` streams of `days` days with the claim's parameter set to the world's value."""
    truth, holds = worlds(CLAIMS_BY_ID[claim_id])[world]
    cell = Cell(claim_id, world, truth, holds, days)
    for k in range(runs):
        params = dict(DEFAULTS) | {claim_id: truth}
        spec = StreamSpec(days, seed * 1_000_003 + k * 7919 + days, params, claim_id)
        verdict = verdict_of(claim_id, spec)
        cell.verdicts[verdict] = cell.verdicts.get(verdict, 0) + 1
    return cell


def wrong_limit(runs: int, rate: float = 0.05, tail: float = 0.001) -> int:
    """The most wrong verdicts in `runs` that a true error rate of `rate` gives with
    probability >= 1 - `tail` (a binomial upper quantile): more fails the test."""
    total = 0.0
    for k in range(runs + 1):
        total += math.comb(runs, k) * rate**k * (1 - rate) ** (runs - k)
        if total >= 1 - tail:
            return k
    return runs


def table_row(cell: Cell) -> str:
    """A markdown table row: claim, world, truth, days, runs, verdict rates, wrong rate."""
    return (
        f"| `{cell.claim_id}` | {cell.world} | {cell.truth:.4g} | {cell.days} | {cell.runs} | "
        f"{cell.rate('supported'):.3f} | {cell.rate('inconclusive'):.3f} | "
        f"{cell.rate('contradicted'):.3f} | {cell.wrong / cell.runs:.3f} |"
    )
