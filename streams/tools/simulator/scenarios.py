"""Scenario parameters for the live-room simulator: who streams, who watches, who buys.

A scenario is a set of plausible behavioural parameters, not a target: nothing here is set so
that a claim's figure lands on its published value. `xhs` describes small Xiaohongshu-style
rooms with a loyal audience (orders come after the host has explained a product, engaged
viewers buy much more, group-chat members come back and buy again); `impulse` describes
flash-sale rooms (deals at the start, quick decisions, groups that make no difference).
See `generate.py` for how each parameter is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Final, Literal

HostKind = Literal["merchant", "buyer", "creator"]


@dataclass(frozen=True, slots=True)
class MerchantSpec:
    """One merchant: its rooms, catalog and audience at scale 1."""

    merchant_id: str
    rooms: tuple[tuple[str, HostKind], ...]
    # Catalog: category weights; unit prices are lognormal around the median.
    categories: tuple[tuple[str, float], ...]
    price_median_cny: float
    price_sigma: float
    catalog_size: int
    # Group chats of this merchant (ids `g-<merchant>-<k>`).
    groups: int
    # Users who follow the merchant and come back to its rooms, and how many of them are in
    # a group chat when the stream starts (at scale 1).
    fans: int
    initial_members: int
    # Usual start of the evening session, CST hours (e.g. 19.5 = 19:30).
    evening_start_hour: float
    staff: int = 2


@dataclass(frozen=True, slots=True)
class NoiseSpec:
    """Contract noise: always on, so the real pipeline has to cope with all of it."""

    redelivery_prob: float = 0.01  # an identical line again, later
    junk_prob: float = 0.005  # an invalid line (kinds cycle, see generate.JUNK_KINDS)
    junk_reuses_id_prob: float = 0.5  # the junk line carries a real event's id
    topic_lag_max_ms: int = 4_000  # topics drift up to this far apart
    jitter_ms: int = 1_500  # per-record delivery jitter
    late_prob: float = 0.002  # a record held back (and its stream behind it)
    late_max_ms: int = 15 * 60_000
    orphan_leaves_per_session: float = 1.0  # viewer_left with no join
    double_join_prob: float = 0.03  # a reconnect sends a second join while in the room
    lost_join_prob: float = 0.01  # a viewer's first join never reaches the stream
    no_join_orders_per_session: float = 0.1  # paid from a product card, no join at all
    extra_field_prob: float = 0.03  # unknown extra fields (forward compatibility)
    source_absent_prob: float = 0.1
    host_kind_absent_prob: float = 0.2
    reason_absent_prob: float = 0.05
    never_ended_prob: float = 0.03  # the session_ended never arrives


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything that decides a generated stream, apart from the seed and the scale."""

    name: str
    summary: str
    merchants: tuple[MerchantSpec, ...]
    start_date: date  # first CST day
    days: int
    # Big sale days (CST dates): more rooms stream and more people watch.
    promo_days: tuple[date, ...]
    promo_traffic: float  # casual viewers on a sale day (loyal viewers: up to 2x)
    promo_buy_factor: float  # sale-day prices make every purchase likelier
    population: int  # distinct users at scale 1 (casual viewers come from here)

    # --- schedule: each room streams on an evening with this probability.
    stream_prob: float
    weekend_stream_prob: float
    session_minutes_median: float
    session_minutes_sigma: float
    session_minutes_range: tuple[float, float]

    # --- audience: attendance probability per session for each relation to the merchant,
    # plus casual viewers (feed / search / short video) drawn from the whole population.
    attend_member: float
    attend_fan: float
    attend_past_buyer: float
    casual_viewers_mean: float
    # Arrivals: front-loaded (exponential after the start), bursts (a hot product, a traffic
    # push), or uniform over the broadcast.
    arrival_front_share: float
    loyal_front_share: float  # members and fans are notified when the room opens
    arrival_front_mean_minutes: float
    arrival_burst_share: float
    bursts_per_session: tuple[int, int]
    burst_sd_minutes: float

    # --- dwell: total watch time per visit is lognormal (long tail); members and fans watch
    # longer; the visit is split into several intervals (leaving and coming back).
    dwell_median_minutes: float
    dwell_sigma: float
    member_dwell_factor: float
    fan_dwell_factor: float
    rejoins_per_hour: float
    away_median_minutes: float
    leave_at_close_prob: float  # the platform records a leave when the room closes

    # --- interaction: an engaged visit interacts at least once, then at a steady rate.
    engage_prob: float
    member_engage_factor: float
    interactions_per_minute: float
    interaction_kinds: tuple[tuple[str, float], ...]
    answer_prob: float  # a question gets a reply from the host or staff
    reply_median_seconds: float
    reply_sigma: float
    second_reply_prob: float

    # --- products on show: introduced one after another; flash deals only for a window.
    products_per_session: tuple[int, int]
    first_intro_minutes: tuple[float, float]
    intro_gap_minutes: tuple[float, float]
    flash_items: tuple[int, int]
    flash_window_minutes: tuple[float, float]
    flash_appeal_factor: float
    flash_price_factor: float  # a deal sells below the list price
    flash_decision_factor: float  # and is decided on faster

    # --- buying: each product a visitor sees is bought with probability `buy_appeal` times
    # the user's propensity, the product's appeal, a price factor and the boosts below, once
    # the visitor has watched for the decision time (longer for dearer products).
    buy_appeal: float
    price_elasticity: float  # appeal falls with price relative to the merchant's median
    engaged_buy_factor: float
    member_buy_factor: float
    repeat_order_factor: float  # a further order in the same visit
    decision_median_minutes: float
    decision_price_exponent: float  # decision time grows as (price / 200 CNY) ** exponent
    decision_sigma: float
    bundle_prob: float  # an order with two or more distinct items
    quantity_two_prob: float
    post_session_prob: float  # a visitor who ran out of time pays after the room closed
    post_session_mean_hours: float
    # --- product cards: a visitor opens the card of a product on show (most never buy it);
    # a buyer usually opens the card before paying (else pays from the pinned buy button); a
    # visitor who opened a card and did not buy in the room sometimes pays for it after the
    # room closed (same session id, delay as `post_session_mean_hours`).
    card_click_prob: float  # per product on show while the visitor watches
    buyer_click_prob: float
    click_later_prob: float

    # --- group chats. With `group_effect` off, membership changes nothing a member does (they
    # behave as the fan, past buyer or casual viewer they are); only who joins differs.
    group_effect: bool
    visit_group_join_prob: float  # a viewer joins a group when the host shows the QR code

    # --- life outside the room.
    offsession_member_daily: float  # a member orders through a group-chat link that day
    offsession_buyer_daily: float  # a past buyer reorders without a session that day
    fan_group_join_daily: float
    buyer_invite_prob: float  # a buyer who is not a member joins a group after the order
    second_group_prob: float  # a joiner also joins another group of the same merchant
    group_leave_daily: float  # per joined group
    refund_prob: float
    apparel_refund_prob: float
    apparel_size_share: float  # of apparel refunds, the share with reason `size`
    refund_reasons: tuple[tuple[str, float], ...]  # for the rest

    noise: NoiseSpec = field(default_factory=NoiseSpec)
    # A past buyer stops coming back (drops out of the merchant's past buyers: no more
    # past-buyer visits or reorders) after this many days without an order; None: never (a
    # merchant's past buyers only accumulate). `steady` sets it.
    buyer_lapse_days: float | None = None
    # Each room streams on its share of evenings evenly (a credit of `stream_prob` or
    # `weekend_stream_prob` an evening, a session whenever it reaches 1) instead of by a draw
    # each evening, so that the sessions in any few weeks are as many as their mean (the
    # draws' count of a month varies by ~15%). `steady` sets it.
    even_schedule: bool = False


# What the merchants `m-1`, `m-2`, `m-3` have in common in both scenarios (one per merchant):
# catalog size, group chats, fans, usual evening start (CST hours).
_CATALOG_SIZES: Final = (60, 40, 50)
_GROUPS: Final = (3, 2, 2)
_FANS: Final = (160, 140, 140)
_EVENING_START_HOURS: Final = (19.5, 20.0, 20.5)


def _merchants(
    *,
    rooms: tuple[tuple[tuple[str, HostKind], ...], ...],
    categories: tuple[tuple[tuple[str, float], ...], ...],
    price_median_cny: tuple[float, ...],
    price_sigma: tuple[float, ...],
    initial_members: tuple[int, ...],
) -> tuple[MerchantSpec, ...]:
    """Merchants `m-1`, `m-2`, `m-3` with what a scenario sets for each (one value per merchant
    in each argument), on the layout both scenarios share."""
    columns = zip(
        rooms,
        categories,
        price_median_cny,
        price_sigma,
        initial_members,
        _CATALOG_SIZES,
        _GROUPS,
        _FANS,
        _EVENING_START_HOURS,
        strict=True,
    )
    return tuple(
        MerchantSpec(
            merchant_id=f"m-{k}",
            rooms=room,
            categories=category,
            price_median_cny=median,
            price_sigma=sigma,
            catalog_size=catalog_size,
            groups=groups,
            fans=fans,
            initial_members=members,
            evening_start_hour=evening_start,
        )
        for k, (
            room,
            category,
            median,
            sigma,
            members,
            catalog_size,
            groups,
            fans,
            evening_start,
        ) in enumerate(columns, start=1)
    )


_XHS_MERCHANTS: Final = _merchants(
    rooms=(
        (("r-1", "buyer"), ("r-2", "merchant")),
        (("r-3", "creator"),),
        (("r-4", "merchant"), ("r-5", "buyer")),
    ),
    categories=(
        (("apparel", 0.7), ("shoes", 0.15), ("accessories", 0.15)),
        (("beauty", 0.65), ("apparel", 0.2), ("home", 0.15)),
        (("home", 0.5), ("jewelry", 0.3), ("apparel", 0.2)),
    ),
    price_median_cny=(420.0, 260.0, 650.0),
    price_sigma=(0.65, 0.6, 0.75),
    initial_members=(45, 28, 28),
)

_IMPULSE_MERCHANTS: Final = _merchants(
    rooms=(
        (("r-1", "merchant"), ("r-2", "merchant")),
        (("r-3", "creator"),),
        (("r-4", "merchant"), ("r-5", "creator")),
    ),
    categories=(
        (("apparel", 0.6), ("shoes", 0.2), ("accessories", 0.2)),
        (("food", 0.6), ("beauty", 0.25), ("apparel", 0.15)),
        (("home", 0.6), ("electronics", 0.25), ("apparel", 0.15)),
    ),
    price_median_cny=(89.0, 49.0, 119.0),
    price_sigma=(0.6, 0.55, 0.7),
    initial_members=(40, 25, 25),
)

_KINDS: Final[tuple[tuple[str, float], ...]] = (
    ("like", 0.38),
    ("comment", 0.3),
    ("question", 0.12),
    ("share", 0.07),
    ("follow", 0.08),
    ("gift", 0.05),
)

_REASONS: Final[tuple[tuple[str, float], ...]] = (
    ("quality", 0.35),
    ("changed_mind", 0.4),
    ("late_delivery", 0.1),
    ("other", 0.15),
)

XHS: Final[Scenario] = Scenario(
    name="xhs",
    summary="Xiaohongshu-style rooms: considered purchases, engaged viewers, loyal groups",
    merchants=_XHS_MERCHANTS,
    start_date=date(2024, 7, 1),
    days=61,
    promo_days=(date(2024, 7, 18), date(2024, 7, 24), date(2024, 8, 8), date(2024, 8, 10)),
    promo_traffic=3.0,
    promo_buy_factor=1.5,
    population=5000,
    stream_prob=0.3,
    weekend_stream_prob=0.45,
    session_minutes_median=140.0,
    session_minutes_sigma=0.3,
    session_minutes_range=(60.0, 300.0),
    attend_member=0.09,
    attend_fan=0.06,
    attend_past_buyer=0.08,
    casual_viewers_mean=14.0,
    arrival_front_share=0.3,
    loyal_front_share=0.6,
    arrival_front_mean_minutes=6.0,
    arrival_burst_share=0.25,
    bursts_per_session=(1, 3),
    burst_sd_minutes=3.0,
    dwell_median_minutes=4.0,
    dwell_sigma=1.2,
    member_dwell_factor=8.0,
    fan_dwell_factor=2.0,
    rejoins_per_hour=1.2,
    away_median_minutes=3.0,
    leave_at_close_prob=0.7,
    engage_prob=0.3,
    member_engage_factor=1.5,
    interactions_per_minute=0.08,
    interaction_kinds=_KINDS,
    answer_prob=0.85,
    reply_median_seconds=8.0,
    reply_sigma=1.0,
    second_reply_prob=0.1,
    products_per_session=(8, 14),
    first_intro_minutes=(3.0, 9.0),
    intro_gap_minutes=(6.0, 14.0),
    flash_items=(1, 2),
    flash_window_minutes=(5.0, 10.0),
    flash_appeal_factor=3.0,
    flash_price_factor=0.7,
    flash_decision_factor=0.3,
    buy_appeal=0.006,
    price_elasticity=0.35,
    engaged_buy_factor=6.0,
    member_buy_factor=1.3,
    repeat_order_factor=0.3,
    decision_median_minutes=4.0,
    decision_price_exponent=0.6,
    decision_sigma=0.6,
    bundle_prob=0.2,
    quantity_two_prob=0.08,
    post_session_prob=0.12,
    post_session_mean_hours=12.0,
    card_click_prob=0.15,  # considered purchases: viewers read the details
    buyer_click_prob=0.9,
    click_later_prob=0.02,  # the list price stays, so a card read tonight can be paid tomorrow
    group_effect=True,
    visit_group_join_prob=0.01,
    offsession_member_daily=0.006,
    offsession_buyer_daily=0.002,
    fan_group_join_daily=0.002,
    buyer_invite_prob=0.15,
    second_group_prob=0.15,
    group_leave_daily=0.004,
    refund_prob=0.08,
    apparel_refund_prob=0.22,
    apparel_size_share=0.6,
    refund_reasons=_REASONS,
)

# Where impulse differs from xhs; the calendar, the population and the rest are xhs's.
IMPULSE: Final[Scenario] = replace(
    XHS,
    name="impulse",
    summary="Flash-sale rooms: deals at the start, snap decisions, groups make no difference",
    merchants=_IMPULSE_MERCHANTS,
    session_minutes_median=75.0,
    session_minutes_range=(30.0, 180.0),
    attend_member=0.04,
    attend_fan=0.04,
    attend_past_buyer=0.03,
    casual_viewers_mean=11.0,
    arrival_front_share=0.7,
    loyal_front_share=0.7,
    arrival_front_mean_minutes=2.0,
    arrival_burst_share=0.1,
    bursts_per_session=(1, 2),
    burst_sd_minutes=1.0,
    dwell_median_minutes=3.0,
    dwell_sigma=1.1,
    member_dwell_factor=1.0,
    fan_dwell_factor=1.0,
    rejoins_per_hour=1.0,
    away_median_minutes=2.0,
    member_engage_factor=1.0,
    interactions_per_minute=0.1,
    answer_prob=0.5,
    reply_median_seconds=45.0,
    second_reply_prob=0.05,
    products_per_session=(6, 10),
    first_intro_minutes=(0.0, 1.0),
    intro_gap_minutes=(5.0, 12.0),
    flash_items=(3, 5),
    flash_window_minutes=(2.0, 5.0),
    flash_appeal_factor=6.0,
    flash_price_factor=0.6,
    flash_decision_factor=1.0,
    price_elasticity=0.6,
    engaged_buy_factor=1.3,
    member_buy_factor=1.0,
    repeat_order_factor=0.4,
    decision_median_minutes=0.5,
    decision_price_exponent=0.0,
    bundle_prob=0.1,
    quantity_two_prob=0.15,
    post_session_prob=0.03,
    card_click_prob=0.2,  # deal cards are pushed on screen
    buyer_click_prob=0.8,  # a flash deal is often grabbed from the pinned button
    click_later_prob=0.005,  # the deal price ends with the room
    group_effect=False,
    visit_group_join_prob=0.06,
    offsession_member_daily=0.001,
    offsession_buyer_daily=0.001,
    fan_group_join_daily=0.003,
    buyer_invite_prob=0.0,
    refund_prob=0.15,
    apparel_refund_prob=0.2,
    apparel_size_share=0.35,
)


#: `steady`'s population: past buyers lapse after this many days without an order, and a
#: member leaves each group with this probability a day (a mean stay of 67 days, where
#: `group_leave_daily`'s 0.004 is 250 days). At 0.015 the members who leave a day about
#: equal those who join, from the first day's members on (measured: xhs at scale 4, members
#: 450-500 over 300 days).
STEADY_BUYER_LAPSE_DAYS: Final[float] = 60.0
STEADY_GROUP_LEAVE_DAILY: Final[float] = 0.015


def steady(scenario: Scenario) -> Scenario:
    """`scenario` with a stationary population, for soaks of a steady live volume (issue 17).

    By default a merchant's past buyers only accumulate (each comes back and reorders for
    ever, and each order makes more of them) and group members leave so seldom (a mean stay
    of 250 days) that membership is still rising after 300 days, so what is live (buyers
    active, orders, members) grows with the stream's length. Here past buyers lapse after
    `STEADY_BUYER_LAPSE_DAYS` without an order and members leave at
    `STEADY_GROUP_LEAVE_DAILY`, so after a warm-up as many lapse and leave as arrive and
    join. The rate is steady too: no sale days (their traffic, three times a day's, fills
    the pools and would take months to drain) and an even schedule (`even_schedule`).
    Everything else (the rooms and their share of evenings, what a visitor does, the contract
    noise) is the scenario's own; the casual viewers already come from a fixed population.
    """
    return replace(
        scenario,
        name=f"{scenario.name}-steady",
        summary=f"{scenario.summary}; a steady rate and a stationary population",
        promo_days=(),
        buyer_lapse_days=STEADY_BUYER_LAPSE_DAYS,
        group_leave_daily=STEADY_GROUP_LEAVE_DAILY,
        even_schedule=True,
    )


SCENARIOS: Final[dict[str, Scenario]] = {s.name: s for s in (XHS, IMPULSE)}


def get_scenario(name: str) -> Scenario:
    """The scenario called `name`; raises KeyError naming the known ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise KeyError(f"unknown scenario {name!r} (known: {known})") from None
