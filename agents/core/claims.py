"""The registry of the published claims livepulse checks, and the verdict rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Comparator = Literal["approx", "at_least", "positive"]
Verdict = Literal["supported", "contradicted", "inconclusive"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One published claim: where it comes from, what it says, and how it is judged.

    `approx` claims hold a band around `claimed` (`tolerance`, absolute for shares, relative
    for multiples and amounts); `at_least` claims a floor; `positive` claims a positive
    association. `min_n` is the smallest sample on which a verdict other than
    `inconclusive` is given; `min_clusters` the smallest number of independent units
    (sessions, or users) when the cases are clustered: an interval from the spread between
    a handful of sessions is not to be trusted, however many orders they hold.
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
        "session GMV / session orders; stable = every day with >= 30 orders above 500 CNY",
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
)

CLAIMS_BY_ID: Final[dict[str, Claim]] = {claim.id: claim for claim in CLAIMS}


def judge(
    claim: Claim,
    observed: float | None,
    n: int,
    interval: tuple[float, float] | None,
    *,
    contradicted_anyway: bool = False,
    supported_only_if: bool = True,
    clusters: int | None = None,
) -> Verdict:
    """The verdict rule (docs/metrics.md): the 95% interval against the claim.

    - `inconclusive` when there is no figure, no interval, fewer than `min_n` cases, or (for
      clustered cases) fewer than `min_clusters` clusters.
    - `approx`: supported when the whole interval lies in the claim's band, contradicted when
      it lies wholly outside it, inconclusive when it straddles an edge.
    - `at_least`: supported when the interval's low end clears the floor, contradicted when
      its high end is below it.
    - `positive`: supported when the interval's low end is above zero, contradicted when its
      high end is at or below zero.
    `contradicted_anyway` and `supported_only_if` carry claim-specific conditions (e.g. a day
    below the bar contradicts "stable").
    """
    if observed is None or interval is None or n < claim.min_n:
        return "inconclusive"
    if clusters is not None and clusters < claim.min_clusters:
        return "inconclusive"
    low, high = interval
    if contradicted_anyway:
        return "contradicted"
    if claim.comparator == "approx":
        band = claim.band()
        assert band is not None
        if band[0] <= low and high <= band[1]:
            return "supported" if supported_only_if else "inconclusive"
        if high < band[0] or low > band[1]:
            return "contradicted"
        return "inconclusive"
    if claim.comparator == "at_least":
        assert claim.claimed is not None
        if low >= claim.claimed:
            return "supported" if supported_only_if else "inconclusive"
        if high < claim.claimed:
            return "contradicted"
        return "inconclusive"
    if low > 0:
        return "supported" if supported_only_if else "inconclusive"
    if high <= 0:
        return "contradicted"
    return "inconclusive"
