"""The registry of the published claims livepulse checks, and the verdict rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

Comparator = Literal["approx", "at_least", "at_most", "positive", "report"]
Verdict = Literal["supported", "contradicted", "inconclusive", "reported"]
Group = Literal["core", "extended"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One published claim: where it comes from, what it says, and how it is judged.

    `approx` claims hold a band around `claimed` (`tolerance`, absolute for shares, relative
    for multiples and amounts); `at_least` claims a floor; `at_most` a ceiling; `positive`
    claims a positive association; `report` claims no number (the figure is only reported).
    `min_n` is the smallest sample on which a verdict other than `inconclusive` is given;
    `min_clusters` the smallest number of independent units (sessions, or users) when the
    cases are clustered: an interval from the spread between a handful of sessions is not to
    be trusted, however many orders they hold. `group` says whether claims.md lists it among
    the core or the extended claims.
    """

    id: str
    source: str
    wording: str
    metric: str
    unit: str
    comparator: Comparator
    claimed: float | None
    tolerance: float = 0.0
    relative: bool = False
    min_n: int = 30
    group: Group = "core"
    min_clusters: int = 20

    def band(self) -> tuple[float, float] | None:
        """The interval of values that count as agreeing with an `approx` claim."""
        if self.comparator != "approx" or self.claimed is None:
            return None
        half = self.claimed * self.tolerance if self.relative else self.tolerance
        return self.claimed - half, self.claimed + half

    def claimed_display(self) -> str | float | None:
        """The claimed value as the report shows it (a number, or 'positive')."""
        return "positive" if self.comparator == "positive" else self.claimed


@dataclass(frozen=True, slots=True)
class ContextFigure:
    """A published figure that a live-room stream cannot check: shown as context, never judged."""

    source: str
    text: str


CLAIMS: Final[tuple[Claim, ...]] = (
    Claim(
        "orders_after_minute_5",
        "xhs-link-2024",
        "75%的直播间订单,都是在开播5分钟之后才收到的",
        "share of session orders paid >= 5 min after the session started",
        "ratio",
        "approx",
        0.75,
        tolerance=0.05,
    ),
    Claim(
        "price_dwell_association",
        "xhs-link-2024",
        "客单价更高的商品,用户观看直播的时间会更长",
        "Spearman's rho of an order's highest unit price and the buyer's watch time before paying",
        "rho",
        "positive",
        None,
    ),
    Claim(
        "interaction_uplift",
        "xhs-link-2024",
        "有互动用户的购买转化率是没有被唤醒用户的17倍",
        "conversion of interacting (session, viewer) pairs / conversion of the others, pooled",
        "x",
        "approx",
        17.0,
        tolerance=0.25,
        relative=True,
    ),
    Claim(
        "live_aov",
        "xhs-link-2024",
        "直播客单价稳定在500元以上",
        "session GMV / session orders; stable = every day with >= 30 orders at or above "
        "500 CNY, judged by per-day intervals (Bonferroni over the days)",
        "CNY",
        "at_least",
        500.0,
    ),
    Claim(
        "group_order_share",
        "xhs-link-2024",
        "群用户贡献的订单占比达到了19%",
        "share of session orders whose buyer is in the merchant's group at the order",
        "ratio",
        "approx",
        0.19,
        tolerance=0.04,
    ),
    Claim(
        "group_repurchase_30d",
        "xhs-link-2024",
        "群用户30天的同店复购率达到了40%",
        "group members buying again from the same merchant within 30 days of their first order",
        "ratio",
        "approx",
        0.40,
        tolerance=0.07,
    ),
    Claim(
        "group_member_dwell",
        "xhs-link-2024",
        "社群用户的平均停留时间长达47分钟",
        "mean watch time per session of group members in their merchant's live rooms",
        "min",
        "approx",
        47.0,
        tolerance=0.15,
        relative=True,
    ),
    Claim(
        "group_spend_multiple",
        "xhs-link-2024",
        "这些用户月均下单金额是整体平均值的14倍",
        "members' mean monthly spend with the merchant / the mean over all its live viewers "
        "that month (baseline: every viewer who joined a session of the merchant that month)",
        "x",
        "approx",
        14.0,
        tolerance=0.25,
        relative=True,
    ),
    Claim(
        "size_refund_share",
        "ks-gravity-2024",
        "購後訂單中也有接近19%是因為尺碼不合適而退款",
        "paid orders with an apparel item refunded with reason `size` / paid orders with one",
        "ratio",
        "approx",
        0.19,
        tolerance=0.04,
        group="extended",
    ),
    Claim(
        "bundle_share",
        "ks-gravity-2023",
        '近20%選擇訂購多款商品組合的"全套購"',
        "share of paid orders with two or more distinct SKUs",
        "ratio",
        "approx",
        0.20,
        tolerance=0.04,
        group="extended",
    ),
    Claim(
        "post_live_tail",
        "ks-gravity-2023",
        "下播後…此後的幾天每晚依然能形成百萬級別的GMV增量",
        "GMV of session orders paid within 3 days after the session ended / 3 / the sessions' "
        "GMV up to their end",
        "per day",
        "approx",
        0.10,
        tolerance=0.25,
        relative=True,
        group="extended",
    ),
    Claim(
        "reply_latency",
        "ks-gravity-2023",
        "要求客服在3秒鐘而不是3分鐘內就對顧客響應",
        "share of questions answered within 3 s (unanswered ones count as misses); p50/p95 of "
        "the answered, the unanswered share and the share within 3 min in detail",
        "ratio",
        "at_least",
        0.95,
        group="extended",
    ),
    Claim(
        "return_rate",
        "xhs-link-2024",
        "直播退貨率也維持在健康水準",
        "distinct paid orders refunded / distinct paid orders (no number claimed)",
        "ratio",
        "report",
        None,
        group="extended",
    ),
)

# claims.md "Context figures": not checkable from a live-room stream, so never judged.
CONTEXT: Final[tuple[ContextFigure, ...]] = (
    ContextFigure("xhs-link-2024", "merchants with monthly sales >= 5M CNY grew 3.5x in a year"),
    ContextFigure("xhs-link-2024", "buying users grew 4.3x; live-room buying users grew 6.3x"),
    ContextFigure("xhs-link-2024", "25% of searches carry purchase intent"),
    ContextFigure("xhs-link-2024", "active merchant groups grew 4x"),
    ContextFigure(
        "xhs-link-2024", "30-day cold-start support for merchants who have not streamed in 30 days"
    ),
    ContextFigure("xhs-buyers-2023", "260M monthly active users, 26M monthly active creators"),
    ContextFigure("xhs-buyers-2023", "buyers and merchants grew 27x and 10x in a year and a half"),
    ContextFigure("ks-gravity-2023", "GMV past the trillion scale"),
    ContextFigure("ks-gravity-2023", "Dreame's average order value above 2,300 CNY"),
    ContextFigure("ks-gravity-2023", "AUX bundle orders averaged 6-7k CNY"),
    ContextFigure("ks-gravity-2024", "monthly active buyers +22.9%, orders +27.7%, merchants +55%"),
    ContextFigure("ks-gravity-2024", "cold-start traffic covers > 95% of new merchants"),
    ContextFigure(
        "ks-gravity-2024", "about 27% of apparel shoppers abandon a purchase for an unclear size"
    ),
)

#: What every interval of the report speaks for (claims.md, "What a verdict must hold to").
INTERVAL_SCOPE: Final[str] = (
    "Each 95% interval speaks for the rooms, viewers and days in this stream: sessions and "
    "users are the sampling units, so it says what more streams of the same rooms, audience "
    "and days would show, not what other merchants, platforms or seasons would. A verdict "
    "rests on the interval, never on the point figure; live_aov's also on each judged day's "
    "interval (Bonferroni over the days)."
)

CLAIMS_BY_ID: Final[dict[str, Claim]] = {claim.id: claim for claim in CLAIMS}


def judge(
    claim: Claim,
    observed: float | None,
    n: int,
    interval: tuple[float, float] | None,
    *,
    clusters: int | None = None,
) -> Verdict:
    """The verdict rule (docs/metrics.md): the 95% interval against the claim.

    - `inconclusive` when there is no figure, no interval, fewer than `min_n` cases, or (for
      clustered cases) fewer than `min_clusters` clusters.
    - `approx`: supported when the whole interval lies in the claim's band, contradicted when
      it lies wholly outside it, inconclusive when it straddles an edge.
    - `at_least`: supported when the interval's low end is at or above the floor, contradicted
      when its high end is below it.
    - `positive`: supported when the interval's low end is above zero, contradicted when its
      high end is at or below zero.
    - `at_most`: supported when the interval's high end is at or below the ceiling,
      contradicted when its low end is above it.
    - `report`: always `reported` (nothing is claimed, so nothing is judged).
    """
    if claim.comparator == "report":
        return "reported"
    if observed is None or interval is None or n < claim.min_n:
        return "inconclusive"
    if clusters is not None and clusters < claim.min_clusters:
        return "inconclusive"
    low, high = interval
    if claim.comparator == "approx":
        band = claim.band()
        assert band is not None
        if band[0] <= low and high <= band[1]:
            return "supported"
        if high < band[0] or low > band[1]:
            return "contradicted"
        return "inconclusive"
    if claim.comparator == "at_least":
        assert claim.claimed is not None
        if low >= claim.claimed:
            return "supported"
        if high < claim.claimed:
            return "contradicted"
        return "inconclusive"
    if claim.comparator == "at_most":
        assert claim.claimed is not None
        if high <= claim.claimed:
            return "supported"
        if low > claim.claimed:
            return "contradicted"
        return "inconclusive"
    if low > 0:
        return "supported"
    if high <= 0:
        return "contradicted"
    return "inconclusive"


def judge_stable(
    claim: Claim,
    observed: float | None,
    n: int,
    interval: tuple[float, float] | None,
    day_intervals: Sequence[tuple[float, float] | None],
    *,
    clusters: int | None = None,
) -> Verdict:
    """The verdict of an `at_least` claim said to hold "stably", every day (`live_aov`).

    `day_intervals` are the judged days' intervals, each at 1 - 0.05/k for k days (None for a
    day with no interval). After `judge`'s minimum sample: contradicted when some day's
    interval, or the overall `interval`, lies wholly below the floor; supported when every
    judged day's interval lies wholly at or above it; inconclusive otherwise. With no judged
    day, the overall interval alone decides (`judge`). Never a point estimate: a rule on daily
    point estimates rejects a true claim with a probability that grows to 1 with the days.
    """
    if not day_intervals:
        return judge(claim, observed, n, interval, clusters=clusters)
    if observed is None or interval is None or n < claim.min_n:
        return "inconclusive"
    if clusters is not None and clusters < claim.min_clusters:
        return "inconclusive"
    assert claim.claimed is not None
    floor = claim.claimed
    if interval[1] < floor or any(iv is not None and iv[1] < floor for iv in day_intervals):
        return "contradicted"
    if all(iv is not None and iv[0] >= floor for iv in day_intervals):
        return "supported"
    return "inconclusive"
