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

The claims whose facts are viewers' watch times, interactions and group histories get a stream
of their own, with only the events they read (`OWN_STREAMS`; same days and sessions):

- `price_dwell_association`: per order, latent normals (x, y) with correlation r, half from a
  session effect shared by its orders and half from the order; price = 300 CNY exp(0.8 x), watch
  time before paying = 110 min Phi(y). Spearman's rho is (6 / pi) asin(r / 2) (Pearson 1907),
  whatever the monotone maps: r is set from the world's rho.
- `interaction_uplift`: 1 + Poisson(30) viewers a session, each interacting with the session's
  probability (Beta around 0.25); a viewer buys with probability 0.02 m_g (others) or
  0.02 m_g U (interacting), m_g = 2 Beta(5, 5) the session's level: the uplift is U.
- `group_repurchase_30d`: `days` days of sessions with 1 + Poisson(1.3) members' first orders
  each, then 31 days more; each buys again within 30 days with the session's probability
  (Beta around p), else half of them after the 30 days.
- `group_member_dwell`: a pool of 20 + 6 days members with a watch habit each (sd 0.5 on the
  log scale); each 12-hour session draws 1 + Poisson(7) of them, with a session effect (sd 0.3)
  and a visit's own noise (sd 0.7); watch times log-normal, capped at 715 min, the log-scale
  mean set so that the capped mean is the world's value.
- `group_spend_multiple`: one month; a pool of 600 + 50 days viewers, 4% of them members, each
  with a spending habit (sd 0.5 on the log scale); each session draws 1 + Poisson(100) of
  them; a visit buys with probability 0.3 (member) or 0.05, amounts log-normal (sd 0.8), the
  members' level set so that the multiple is the world's value (with s the member share and
  E the expected spend of a visit, E_m / (s E_m + (1 - s) E_n) = M).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

from agents.core.claims import CLAIMS_BY_ID, Claim
from agents.core.extended import EXTENDED_CLAIM_FUNCTIONS
from agents.core.metrics import CLAIM_FUNCTIONS, _Facts
from agents.core.report import claim_verdict
from streams.tools.analyze import analyze_records
from tests.support.processes import map_in_processes

T0 = 1_719_835_200_000  # 2024-07-01 20:00 CST
MINUTE = 60_000
DAY = 86_400_000
SESSIONS_PER_DAY = 7
EXTRA_ORDERS = 4.7  # orders per session: 1 + Poisson(4.7), about 40 a day
CONCENTRATION = 10.0
SIGMA = 0.85
TAU = 0.4
QUESTIONS = 8

#: The claims with a stream of their own (`OWN_STREAMS`): only their events are written.
OWN_STREAM_CLAIMS: tuple[str, ...] = (
    "price_dwell_association",
    "interaction_uplift",
    "group_repurchase_30d",
    "group_member_dwell",
    "group_spend_multiple",
)

#: The claims calibrated here: every claim with a verdict.
CALIBRATED: tuple[str, ...] = (
    "orders_after_minute_5",
    "live_aov",
    "group_order_share",
    "size_refund_share",
    "bundle_share",
    "post_live_tail",
    "reply_latency",
    *OWN_STREAM_CLAIMS,
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
    "price_dwell_association": 0.3,
    "interaction_uplift": 17.0,
    "group_repurchase_30d": 0.40,
    "group_member_dwell": 47.0,
    "group_spend_multiple": 14.0,
}

#: `group_repurchase_30d` needs 30 days after a first order: its streams have `days` days of
#: first orders and REPURCHASE_EXTRA_DAYS more.
REPURCHASE_EXTRA_DAYS = 31


def worlds(claim: Claim) -> dict[str, tuple[float, bool]]:
    """name -> (true value, whether the claim holds there): at the claimed value, on each edge
    of the band, and beyond each edge by half the band's half-width (false). An `at_least`
    claim: above the floor, at it (the edge), and 10% (shares: 5 points) below it (false). A
    `positive` claim (Spearman's rho): clearly positive (0.3, about the xhs fixture's), barely
    (0.05), zero (the edge, where "positive" is false) and negative (-0.1)."""
    if claim.comparator == "positive":
        return {
            "positive": (0.3, True),
            "weak": (0.05, True),
            "zero": (0.0, False),
            "negative": (-0.1, False),
        }
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
    """The stream's records (JSON bytes), session by session. A claim of OWN_STREAM_CLAIMS
    under test gets its own stream; otherwise the order, AOV, refund, tail and reply facts."""
    if spec.claim_id in OWN_STREAMS:
        yield from OWN_STREAMS[spec.claim_id](spec)
        return
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


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _sessions(days: int, ids: _Ids, minutes: int = 120) -> Iterator[tuple[int, str, int, int]]:
    """(slot, session id, start, end) of SESSIONS_PER_DAY sessions a day, in rooms r0..r6."""
    for day in range(days):
        for slot in range(SESSIONS_PER_DAY):
            start = T0 + day * DAY + slot * 10 * MINUTE
            yield slot, ids.next("s"), start, start + minutes * MINUTE


def _started(ids: _Ids, sid: str, slot: int, start: int) -> bytes:
    return _dump(
        {"event_id": ids.next("e"), "type": "session_started", "ts": start}
        | {"session_id": sid, "room_id": f"r{slot}", "merchant_id": "m1"}
    )


def _ended(ids: _Ids, sid: str, end: int) -> bytes:
    return _dump({"event_id": ids.next("e"), "type": "session_ended", "ts": end, "session_id": sid})


def _joined(ids: _Ids, sid: str, user: str, ts: int) -> bytes:
    return _dump(
        {"event_id": ids.next("e"), "type": "viewer_joined", "ts": ts}
        | {"session_id": sid, "user_id": user}
    )


def _member(ids: _Ids, user: str, ts: int) -> bytes:
    return _dump(
        {"event_id": ids.next("e"), "type": "group_joined", "ts": ts}
        | {"merchant_id": "m1", "group_id": "g1", "user_id": user}
    )


def _order(
    ids: _Ids, user: str, ts: int, amount_cents: int, sid: str | None, unit_price: int = 0
) -> bytes:
    oid = ids.next("o")
    item = {"sku_id": "k1", "category": "beauty", "quantity": 1}
    item["unit_price_cents"] = max(1, unit_price or amount_cents)
    return _dump(
        {"event_id": ids.next("e"), "type": "order_paid", "ts": ts, "order_id": oid}
        | {"session_id": sid, "merchant_id": "m1", "user_id": user}
        | {"items": [item], "amount_cents": max(1, amount_cents)}
    )


def _price_dwell_records(spec: StreamSpec) -> Iterator[bytes]:
    rng = np.random.default_rng(spec.seed)
    ids = _Ids()
    rho = spec.params["price_dwell_association"]
    r = 2 * math.sin(math.pi * rho / 6)  # Pearson's r of the normals whose Spearman is rho
    rest = math.sqrt(1 - r * r)
    for slot, sid, start, end in _sessions(spec.days, ids):
        yield _started(ids, sid, slot, start)
        a, a2 = rng.standard_normal(2)
        b = r * a + rest * a2  # (a, b): the session's effects, correlation r
        for _ in range(1 + int(rng.poisson(EXTRA_ORDERS))):
            e, e2 = rng.standard_normal(2)
            f = r * e + rest * e2
            x, y = (a + e) / math.sqrt(2), (b + f) / math.sqrt(2)
            price = round(30_000 * math.exp(0.8 * x))
            watched = 1_000 + int(110 * MINUTE * _normal_cdf(y))
            user = ids.next("u")
            joined = start + MINUTE
            yield _joined(ids, sid, user, joined)
            yield _order(ids, user, joined + watched, price, sid)
        yield _ended(ids, sid, end)


UPLIFT_VIEWERS = 30
UPLIFT_INTERACTING = 0.25
UPLIFT_BASE_CONVERSION = 0.02


def _uplift_records(spec: StreamSpec) -> Iterator[bytes]:
    rng = np.random.default_rng(spec.seed)
    ids = _Ids()
    uplift = spec.params["interaction_uplift"]
    for slot, sid, start, end in _sessions(spec.days, ids):
        yield _started(ids, sid, slot, start)
        interacting_share = _beta(rng, UPLIFT_INTERACTING)
        level = 2 * float(rng.beta(5, 5))
        for _ in range(1 + int(rng.poisson(UPLIFT_VIEWERS))):
            user = ids.next("v")
            joined = start + int(rng.uniform(0, 100 * MINUTE))
            yield _joined(ids, sid, user, joined)
            interacts = rng.random() < interacting_share
            if interacts:
                yield _dump(
                    {"event_id": ids.next("e"), "type": "interaction", "ts": joined + MINUTE}
                    | {"session_id": sid, "user_id": user, "kind": "comment"}
                )
            conversion = UPLIFT_BASE_CONVERSION * level * (uplift if interacts else 1.0)
            if rng.random() < conversion:
                yield _order(ids, user, joined + 2 * MINUTE, 20_000, sid)
        yield _ended(ids, sid, end)


REPURCHASE_MEMBERS = 1.3


def _repurchase_records(spec: StreamSpec) -> Iterator[bytes]:
    rng = np.random.default_rng(spec.seed)
    ids = _Ids()
    rate = spec.params["group_repurchase_30d"]
    window = 30 * DAY
    for slot, sid, start, end in _sessions(spec.days, ids):
        yield _started(ids, sid, slot, start)
        share = _beta(rng, rate)
        for _ in range(1 + int(rng.poisson(REPURCHASE_MEMBERS))):
            user = ids.next("u")
            yield _member(ids, user, start - DAY)
            first = start + int(rng.uniform(MINUTE, 110 * MINUTE))
            yield _order(ids, user, first, 30_000, sid)
            if rng.random() < share:
                yield _order(ids, user, first + 1 + int(rng.uniform(0, window - 1)), 30_000, None)
            elif rng.random() < 0.5:
                later = first + window + 1 + int(rng.uniform(0, 5 * DAY))
                yield _order(ids, user, later, 30_000, None)
        yield _ended(ids, sid, end)
    # A last session after every first order's 30 days, so that "the end" lies past them all.
    last = T0 + (spec.days + REPURCHASE_EXTRA_DAYS) * DAY
    yield _started(ids, "s-last", 0, last)
    yield _ended(ids, "s-last", last + MINUTE)


DWELL_SESSION_MINUTES = 720
DWELL_CAP_MINUTES = 715.0
DWELL_USER_SD = 0.5
DWELL_SESSION_SD = 0.3
DWELL_VISIT_SD = 0.7


def capped_lognormal_mean(mu: float, sigma: float, cap: float) -> float:
    """E[min(W, cap)] for log W ~ N(mu, sigma^2)."""
    log_cap = math.log(cap)
    below = math.exp(mu + sigma**2 / 2) * _normal_cdf((log_cap - mu - sigma**2) / sigma)
    return below + cap * (1 - _normal_cdf((log_cap - mu) / sigma))


def _dwell_mu(mean_minutes: float) -> float:
    """The log-scale mean whose capped log-normal watch time has mean `mean_minutes`."""
    sigma = math.sqrt(DWELL_USER_SD**2 + DWELL_SESSION_SD**2 + DWELL_VISIT_SD**2)
    low, high = -10.0, math.log(DWELL_CAP_MINUTES)
    for _ in range(100):
        mid = (low + high) / 2
        if capped_lognormal_mean(mid, sigma, DWELL_CAP_MINUTES) < mean_minutes:
            low = mid
        else:
            high = mid
    return low


def _dwell_records(spec: StreamSpec) -> Iterator[bytes]:
    rng = np.random.default_rng(spec.seed)
    ids = _Ids()
    mu = _dwell_mu(spec.params["group_member_dwell"])
    pool = 20 + 6 * spec.days
    habits = rng.normal(0.0, DWELL_USER_SD, pool)
    for user in range(pool):
        yield _member(ids, f"m{user}", T0 - DAY)
    for slot, sid, start, end in _sessions(spec.days, ids, DWELL_SESSION_MINUTES):
        yield _started(ids, sid, slot, start)
        effect = rng.normal(0.0, DWELL_SESSION_SD)
        count = min(pool, 1 + int(rng.poisson(7)))
        for user in rng.choice(pool, size=count, replace=False).tolist():
            noise = rng.normal(0.0, DWELL_VISIT_SD)
            minutes = min(DWELL_CAP_MINUTES, math.exp(mu + habits[user] + effect + noise))
            joined = start + int(rng.uniform(0, (DWELL_SESSION_MINUTES - minutes) * MINUTE))
            yield _joined(ids, sid, f"m{user}", joined)
            yield _dump(
                {"event_id": ids.next("e"), "type": "viewer_left"}
                | {"ts": joined + round(minutes * MINUTE), "session_id": sid, "user_id": f"m{user}"}
            )
        yield _ended(ids, sid, end)


SPEND_MEMBER_SHARE = 0.04
SPEND_BUYS = {True: 0.3, False: 0.05}  # a visit's chance to buy: member, other viewer
SPEND_USER_SD = 0.5
SPEND_ORDER_SD = 0.8
SPEND_VIEWERS = 100


def _spend_records(spec: StreamSpec) -> Iterator[bytes]:
    rng = np.random.default_rng(spec.seed)
    ids = _Ids()
    multiple = spec.params["group_spend_multiple"]
    s = SPEND_MEMBER_SHARE
    # Expected spend of a visit (CNY): 100 for others, the members' set by the multiple.
    expected = {False: 100.0, True: multiple * (1 - s) * 100.0 / (1 - s * multiple)}
    mu = {
        member: math.log(expected[member] / SPEND_BUYS[member] * 100)
        - SPEND_USER_SD**2 / 2
        - SPEND_ORDER_SD**2 / 2
        for member in (True, False)
    }
    pool = 600 + 50 * spec.days
    members = rng.random(pool) < s
    habits = rng.normal(0.0, SPEND_USER_SD, pool)
    for user in np.flatnonzero(members).tolist():
        yield _member(ids, f"p{user}", T0 - DAY)
    for slot, sid, start, end in _sessions(spec.days, ids):
        yield _started(ids, sid, slot, start)
        count = min(pool, 1 + int(rng.poisson(SPEND_VIEWERS)))
        visitors = rng.choice(pool, size=count, replace=False)
        joins = start + rng.integers(0, 100 * MINUTE, count)
        buys = rng.random(count)
        noise = rng.normal(0.0, SPEND_ORDER_SD, count)
        for k, user in enumerate(visitors.tolist()):
            member = bool(members[user])
            joined = int(joins[k])
            yield _joined(ids, sid, f"p{user}", joined)
            if buys[k] < SPEND_BUYS[member]:
                amount = math.exp(mu[member] + habits[user] + noise[k])
                yield _order(ids, f"p{user}", joined + MINUTE, round(amount), sid)
        yield _ended(ids, sid, end)


#: claim id -> the generator of its own stream.
OWN_STREAMS: dict[str, Callable[[StreamSpec], Iterator[bytes]]] = {
    "price_dwell_association": _price_dwell_records,
    "interaction_uplift": _uplift_records,
    "group_repurchase_30d": _repurchase_records,
    "group_member_dwell": _dwell_records,
    "group_spend_multiple": _spend_records,
}

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


def observed_of(spec: StreamSpec) -> float | None:
    """The observed figure of the claim `spec` is written for (`spec.claim_id`)."""
    assert spec.claim_id is not None
    return _FUNCTIONS[spec.claim_id](_Facts(analyze_records(records(spec)))).observed


def _verdict_of_spec(spec: StreamSpec) -> str:
    assert spec.claim_id is not None
    return verdict_of(spec.claim_id, spec)


def run_cell(claim_id: str, world: str, days: int, runs: int, seed: int = 0) -> Cell:
    """`runs` streams of `days` days with the claim's parameter set to the world's value
    (measured side by side in worker processes, `tests.support.processes`)."""
    truth, holds = worlds(CLAIMS_BY_ID[claim_id])[world]
    cell = Cell(claim_id, world, truth, holds, days)
    specs = [
        StreamSpec(days, seed * 1_000_003 + k * 7919 + days, DEFAULTS | {claim_id: truth}, claim_id)
        for k in range(runs)
    ]
    for verdict in map_in_processes(_verdict_of_spec, specs):
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
