"""Seeded live-room stream generator: a behavioural model of rooms, viewers and buyers, plus noise.

The model, walked one CST day at a time so that state (group membership, past buyers) evolves
in time order:

- Merchants own rooms and a catalog (SKUs with a category and a lognormal unit price). A room
  streams on an evening with some probability (more on weekends, always on sale days), starting
  around the merchant's usual time (19:00-21:30 CST), for a lognormal number of minutes. A few
  sessions never send `session_ended` (the producer crashed).
- Products are introduced one after another during a session (the host explains them); once
  introduced they stay in the cart list, except flash deals, which sell only for a short window.
- A user population recurs across days: each merchant has fans; some are in the merchant's
  group chats (several groups per merchant, sometimes more than one per user); past buyers come
  back. A session's audience is members, fans and past buyers who turn up (each with its own
  probability) plus casual viewers drawn from the whole population (feed, search, notes).
- A visit arrives front-loaded (exponential after the start), around a burst (a hot product, a
  traffic push) or anywhere in the broadcast. Its total watch time is lognormal (long tail),
  longer for fans and members, and split into several intervals: viewers leave and come back.
- An engaged visit interacts (likes, comments, questions, shares, follows, gifts) at a steady
  rate; questions get a `reply` from the host or staff after a lognormal latency, sometimes two,
  sometimes none.
- Each product a visitor sees may be bought: the probability grows with the visitor's
  propensity, engagement and membership, falls with price; the order is paid once the visitor has
  watched for a decision time that grows with the price. So buying grows with watch time, and
  dearer items are bought later in a visit. A visitor who runs out of time may pay after the room
  closed (same session id, the session's products). Orders may hold several distinct items.
- Visitors open the cards of products on show (`product_clicked`); most never buy what they
  click. A buyer usually opens the card a few seconds before paying, but may pay without (the
  pinned buy button). A visitor who opened a card and did not buy it in the room sometimes pays
  for it after the room closed (same session id).
- Outside sessions, members order through group-chat links and past buyers reorder (orders
  without a session id). Buyers are invited into a group after an order; fans join groups and
  members leave them now and then. Refunds follow orders by hours to days, `size` most often
  for apparel and shoes.
- Opt-in, for soaks of a steady live volume (`scenarios.steady`): past buyers lapse after
  `buyer_lapse_days` without an order, and with `even_schedule` each room streams on its share
  of evenings evenly rather than by a draw each evening. Unset (every named scenario), neither
  draws anything, so the streams are the same bytes as without them.

Contract noise is always on (`NoiseSpec`): redeliveries, junk lines of every rejected kind,
topics drifting a few seconds apart with per-record jitter and a few late records (a session's
events stay in order within their topic), leaves without a join, second joins, lost joins,
orders with no join, unknown extra fields, optional fields left out.

All randomness comes from one `random.Random(seed)`; nothing iterates a set or depends on the
clock, so the same scenario, seed and scale give byte-identical output.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import orjson

from schemas import TOPIC_BY_TYPE, Rejection, decode_text
from streams.tools.simulator.scenarios import MerchantSpec, NoiseSpec, Scenario

SECOND_MS: Final[int] = 1_000
MINUTE_MS: Final[int] = 60_000
HOUR_MS: Final[int] = 3_600_000
DAY_MS: Final[int] = 86_400_000
CST_OFFSET_MS: Final[int] = 8 * HOUR_MS

JUNK_KINDS: Final[tuple[str, ...]] = (
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "unknown_type",
    "negative_amount",
    "empty_id",
    "empty_items",
)

# Fields a record cannot lose, by type (the optional ones are never removed by the junk maker).
_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "session_started": ("event_id", "type", "ts", "session_id", "room_id", "merchant_id"),
    "session_ended": ("event_id", "type", "ts", "session_id"),
    "viewer_joined": ("event_id", "type", "ts", "session_id", "user_id"),
    "viewer_left": ("event_id", "type", "ts", "session_id", "user_id"),
    "interaction": ("event_id", "type", "ts", "session_id", "user_id", "kind"),
    "product_clicked": ("event_id", "type", "ts", "session_id", "user_id", "sku_id"),
    "order_paid": ("event_id", "type", "ts", "order_id", "merchant_id", "user_id", "items"),
    "order_refunded": ("event_id", "type", "ts", "order_id", "amount_cents"),
    "group_joined": ("event_id", "type", "ts", "merchant_id", "group_id", "user_id"),
    "group_left": ("event_id", "type", "ts", "merchant_id", "group_id", "user_id"),
}
_SOURCES: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "member": (("group", 0.6), ("follow", 0.25), ("feed", 0.1), ("other", 0.05)),
    "fan": (("follow", 0.5), ("feed", 0.2), ("short_video", 0.15), ("note", 0.15)),
    "past_buyer": (("follow", 0.4), ("feed", 0.3), ("search", 0.2), ("other", 0.1)),
    "casual": (
        ("feed", 0.45),
        ("search", 0.15),
        ("short_video", 0.2),
        ("note", 0.15),
        ("other", 0.05),
    ),
}
_EXTRA_FIELDS: Final[tuple[tuple[str, object], ...]] = (
    ("client", {"os": "ios", "app_version": "8.41.2"}),
    ("client", {"os": "android", "app_version": "8.40.0"}),
    ("region", "cn-east-2"),
    ("schema_version", 2),
)
_UNKNOWN_TYPES: Final[tuple[str, ...]] = ("product_click", "viewer_heartbeat", "coupon_claimed")

Body = dict[str, object]


# --------------------------------------------------------------------------- random helpers


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth for small means, a rounded normal for large ones)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    total = sum(weight for _name, weight in options)
    pick = rng.random() * total
    for name, weight in options:
        pick -= weight
        if pick < 0:
            return name
    return options[-1][0]


def cst_midnight_ms(day: date) -> int:
    """Epoch milliseconds of 00:00 China Standard Time on `day`."""
    return (day - date(1970, 1, 1)).days * DAY_MS - CST_OFFSET_MS


# --------------------------------------------------------------------------- model state


@dataclass(frozen=True, slots=True)
class _User:
    buy: float  # purchase propensity, mean 1
    engage: float  # interaction propensity, mean 1
    dwell: float  # watch-time multiplier, median 1


@dataclass(frozen=True, slots=True)
class _Product:
    sku_id: str
    category: str
    price_cents: int
    appeal: float


@dataclass(frozen=True, slots=True)
class _OnShow:
    """A product in a session's line-up, with offsets from the session start."""

    product: _Product
    intro_ms: int
    until_ms: int | None  # flash deals sell only until then
    appeal: float


@dataclass(slots=True)
class _Merchant:
    spec: MerchantSpec
    catalog: list[_Product]
    fans: list[int]
    fan_set: set[int]  # membership tests only, never iterated
    # user -> the groups they are in now, with when they joined each.
    joined: dict[int, dict[str, int]] = field(default_factory=dict)
    # user -> the ts of their latest order (insertion-ordered: by first order, or by the
    # first order since they last lapsed, `Scenario.buyer_lapse_days`).
    past_buyers: dict[int, int] = field(default_factory=dict)

    def is_member(self, user: int) -> bool:
        return bool(self.joined.get(user))


@dataclass(frozen=True, slots=True)
class _Session:
    session_id: str
    merchant: _Merchant
    start_ts: int
    duration_ms: int
    ended: bool
    lineup: tuple[_OnShow, ...]
    bursts_ms: tuple[int, ...]
    promo: bool

    @property
    def end_ts(self) -> int:
        return self.start_ts + self.duration_ms


@dataclass(slots=True)
class _Record:
    ts: int
    seq: int
    topic: str
    key: str
    body: Body


@dataclass(frozen=True, slots=True)
class Generated:
    """A generated stream's lines (production order) and what went into them."""

    lines: list[str]
    events: int
    sessions: int
    orders: int
    redeliveries: int
    junk: dict[str, int]


# --------------------------------------------------------------------------- the world


class _World:
    def __init__(self, scenario: Scenario, rng: random.Random, scale: float) -> None:
        self.s = scenario
        self.rng = rng
        self.scale = scale
        self.noise: NoiseSpec = scenario.noise
        self.records: list[_Record] = []
        self.counters: dict[str, int] = {"s": 0, "o": 0, "e": 0}
        self.horizon_start = cst_midnight_ms(scenario.start_date)
        self.horizon_end = self.horizon_start + scenario.days * DAY_MS
        self.sessions = 0
        self.orders = 0
        n_users = max(10, round(scenario.population * scale))
        self.users = [
            _User(
                buy=rng.lognormvariate(-0.32, 0.8),
                engage=rng.lognormvariate(-0.18, 0.6),
                dwell=rng.lognormvariate(0.0, 0.5),
            )
            for _ in range(n_users)
        ]
        self.merchants = [self._merchant(spec) for spec in scenario.merchants]
        # room -> its credit of evenings (`Scenario.even_schedule`), from a random start.
        self.schedule_credit: dict[str, float] = {}

    # ------------------------------------------------------------------ ids and records

    def _next(self, prefix: str) -> str:
        self.counters[prefix] += 1
        return f"{prefix}-{self.counters[prefix]}"

    def _emit(self, event_type: str, ts: int, key: str, fields: Body) -> Body:
        body: Body = {"event_id": self._next("e"), "type": event_type, "ts": ts}
        body.update(fields)
        self.records.append(_Record(ts, len(self.records), TOPIC_BY_TYPE[event_type], key, body))
        return body

    @staticmethod
    def _uid(user: int) -> str:
        return f"u-{user + 1}"

    def _merchant(self, spec: MerchantSpec) -> _Merchant:
        rng = self.rng
        catalog: list[_Product] = []
        for k in range(spec.catalog_size):
            price_cny = _lognormal(rng, spec.price_median_cny, spec.price_sigma)
            # Shelf prices end in 9 or 0 the way shops price them.
            price_cents = max(990, round(price_cny) * 100 - rng.choice((0, 100, 1_100)))
            catalog.append(
                _Product(
                    sku_id=f"k-{spec.merchant_id[2:]}-{k + 1}",
                    category=_weighted(rng, spec.categories),
                    price_cents=price_cents,
                    appeal=rng.lognormvariate(-0.125, 0.5),
                )
            )
        n_fans = min(len(self.users), max(1, round(spec.fans * self.scale)))
        fans = rng.sample(range(len(self.users)), n_fans)
        return _Merchant(spec, catalog, fans, set(fans))

    # ------------------------------------------------------------------ groups

    def _join_group(self, merchant: _Merchant, user: int, ts: int) -> None:
        spec = merchant.spec
        current = merchant.joined.setdefault(user, {})
        free = [f"g-{spec.merchant_id[2:]}-{g + 1}" for g in range(spec.groups)]
        free = [group for group in free if group not in current]
        if not free or ts >= self.horizon_end:
            return
        wanted = [self.rng.choice(free)]
        if len(free) > 1 and self.rng.random() < self.s.second_group_prob:
            wanted.append(self.rng.choice([group for group in free if group != wanted[0]]))
        for i, group in enumerate(wanted):
            at = ts + i * self.rng.randint(MINUTE_MS, 3 * DAY_MS)
            if at >= self.horizon_end:
                break
            current[group] = at
            self._emit(
                "group_joined",
                at,
                spec.merchant_id,
                {"merchant_id": spec.merchant_id, "group_id": group, "user_id": self._uid(user)},
            )

    def _group_churn(self, day_start: int, first_day: bool) -> None:
        rng = self.rng
        for merchant in self.merchants:
            spec = merchant.spec
            if first_day:
                n_initial = min(len(merchant.fans), round(spec.initial_members * self.scale))
                for user in rng.sample(merchant.fans, n_initial):
                    self._join_group(
                        merchant, user, day_start + rng.randint(8 * HOUR_MS, 18 * HOUR_MS)
                    )
            for user in merchant.fans:
                if not merchant.is_member(user) and rng.random() < self.s.fan_group_join_daily:
                    self._join_group(
                        merchant, user, day_start + rng.randint(8 * HOUR_MS, 18 * HOUR_MS)
                    )
            for user in sorted(merchant.joined):
                groups = merchant.joined[user]
                for group in sorted(groups):
                    if rng.random() >= self.s.group_leave_daily:
                        continue
                    # Never before the join (a join may be later today, or days ahead).
                    at = max(day_start + rng.randint(8 * HOUR_MS, 18 * HOUR_MS), groups[group])
                    at += rng.randint(MINUTE_MS, HOUR_MS)
                    if at < self.horizon_end:
                        del groups[group]
                        self._emit(
                            "group_left",
                            at,
                            spec.merchant_id,
                            {
                                "merchant_id": spec.merchant_id,
                                "group_id": group,
                                "user_id": self._uid(user),
                            },
                        )

    # ------------------------------------------------------------------ orders

    def _price_factor(self, merchant: _Merchant, product: _Product) -> float:
        relative = product.price_cents / 100 / merchant.spec.price_median_cny
        return float(relative ** (-self.s.price_elasticity))

    def _order(
        self,
        merchant: _Merchant,
        user: int,
        ts: int,
        session_id: str | None,
        main: _Product,
        extras_from: Sequence[_Product],
    ) -> None:
        rng = self.rng
        if ts >= self.horizon_end:
            return
        products = [main]
        if rng.random() < self.s.bundle_prob:
            others = [p for p in extras_from if p.sku_id != main.sku_id]
            extra = 1 if rng.random() < 0.7 else 2
            products += rng.sample(others, min(extra, len(others)))
        items: list[Body] = []
        amount = 0
        for product in products:
            quantity = 2 if rng.random() < self.s.quantity_two_prob else 1
            amount += product.price_cents * quantity
            items.append(
                {
                    "sku_id": product.sku_id,
                    "category": product.category,
                    "unit_price_cents": product.price_cents,
                    "quantity": quantity,
                }
            )
        order_id = self._next("o")
        fields: Body = {"order_id": order_id}
        if session_id is not None:
            fields["session_id"] = session_id
        elif rng.random() < 0.5:
            fields["session_id"] = None  # the contract allows absent or null
        fields.update(
            {
                "merchant_id": merchant.spec.merchant_id,
                "user_id": self._uid(user),
                "items": items,
                "amount_cents": amount,
            }
        )
        self._emit("order_paid", ts, session_id or "", fields)
        self.orders += 1
        merchant.past_buyers[user] = max(ts, merchant.past_buyers.get(user, ts))
        self._maybe_refund(order_id, ts, products, items, amount)
        if (
            session_id is not None
            and not merchant.is_member(user)
            and rng.random() < self.s.buyer_invite_prob
        ):
            self._join_group(merchant, user, ts + round(rng.expovariate(1 / (20 * MINUTE_MS))))

    def _maybe_refund(
        self, order_id: str, ts: int, products: list[_Product], items: list[Body], amount: int
    ) -> None:
        rng = self.rng
        sized = any(p.category in ("apparel", "shoes") for p in products)
        if rng.random() >= (self.s.apparel_refund_prob if sized else self.s.refund_prob):
            return
        refund_ts = ts + rng.randint(6 * HOUR_MS, 12 * DAY_MS)
        if refund_ts >= self.horizon_end:
            return
        if sized and rng.random() < self.s.apparel_size_share:
            reason = "size"
        else:
            reason = _weighted(rng, self.s.refund_reasons)
        refund_cents = amount
        if len(items) > 1 and rng.random() < 0.4:
            line = rng.choice(items)
            unit, quantity = line["unit_price_cents"], line["quantity"]
            assert isinstance(unit, int) and isinstance(quantity, int)
            refund_cents = unit * quantity
        fields: Body = {"order_id": order_id, "amount_cents": refund_cents}
        if rng.random() >= self.noise.reason_absent_prob:
            fields["reason"] = reason
        self._emit("order_refunded", refund_ts, "", fields)

    def _pick_product(self, merchant: _Merchant) -> _Product:
        weights = [p.appeal * self._price_factor(merchant, p) for p in merchant.catalog]
        return self.rng.choices(merchant.catalog, weights=weights)[0]

    def _lapse_buyers(self, day_start: int) -> None:
        """Past buyers with no order in the last `buyer_lapse_days` stop coming back (no
        randomness drawn: the scenario without a lapse gives the same stream as before)."""
        if self.s.buyer_lapse_days is None:
            return
        cutoff = day_start - round(self.s.buyer_lapse_days * DAY_MS)
        for merchant in self.merchants:
            lapsed = [user for user, last in merchant.past_buyers.items() if last < cutoff]
            for user in lapsed:
                del merchant.past_buyers[user]

    def _offsession_orders(self, day_start: int) -> None:
        rng = self.rng
        for merchant in self.merchants:
            if self.s.group_effect:
                for user in sorted(merchant.joined):
                    if merchant.is_member(user) and rng.random() < self.s.offsession_member_daily:
                        ts = day_start + rng.randint(9 * HOUR_MS, 23 * HOUR_MS)
                        product = self._pick_product(merchant)
                        self._order(merchant, user, ts, None, product, merchant.catalog)
            for user in list(merchant.past_buyers):
                if self.s.group_effect and merchant.is_member(user):
                    continue
                if rng.random() < self.s.offsession_buyer_daily:
                    ts = day_start + rng.randint(9 * HOUR_MS, 23 * HOUR_MS)
                    product = self._pick_product(merchant)
                    self._order(merchant, user, ts, None, product, merchant.catalog)

    # ------------------------------------------------------------------ sessions

    def _lineup(self, merchant: _Merchant, duration_ms: int) -> tuple[_OnShow, ...]:
        rng, s = self.rng, self.s
        count = rng.randint(*s.products_per_session)
        products = rng.sample(merchant.catalog, min(count, len(merchant.catalog)))
        flash = min(len(products), rng.randint(*s.flash_items))
        shows: list[_OnShow] = []
        for listed in products[:flash]:
            # An opening deal: the same SKU below its list price, for a few minutes only.
            deal_cents = max(
                100, round(listed.price_cents * s.flash_price_factor / 100) * 100 - 100
            )
            product = replace(listed, price_cents=deal_cents)
            intro = rng.randint(0, 2 * MINUTE_MS)
            window = round(rng.uniform(*s.flash_window_minutes) * MINUTE_MS)
            shows.append(
                _OnShow(product, intro, intro + window, product.appeal * s.flash_appeal_factor)
            )
        at = round(rng.uniform(*s.first_intro_minutes) * MINUTE_MS)
        for product in products[flash:]:
            if at >= duration_ms:
                break
            shows.append(_OnShow(product, at, None, product.appeal))
            at += round(rng.uniform(*s.intro_gap_minutes) * MINUTE_MS)
        shows.sort(key=lambda show: show.intro_ms)
        return tuple(shows)

    def _schedule(self, day: date, day_start: int) -> list[tuple[int, _Merchant, str, str]]:
        rng, s = self.rng, self.s
        weekend = day.weekday() >= 5
        promo = day in s.promo_days
        slots: list[tuple[int, _Merchant, str, str]] = []
        for merchant in self.merchants:
            for index, (room_id, host_kind) in enumerate(merchant.spec.rooms):
                chance = 1.0 if promo else (s.weekend_stream_prob if weekend else s.stream_prob)
                if s.even_schedule:
                    if room_id not in self.schedule_credit:
                        self.schedule_credit[room_id] = rng.random()
                    self.schedule_credit[room_id] += chance
                    if self.schedule_credit[room_id] < 1.0:
                        continue
                    self.schedule_credit[room_id] -= 1.0
                elif rng.random() >= chance:
                    continue
                hour = merchant.spec.evening_start_hour + 1.5 * index + rng.gauss(0, 0.25)
                start = day_start + round(hour * HOUR_MS) + rng.randint(0, 59_999)
                slots.append((start, merchant, room_id, host_kind))
        slots.sort(key=lambda slot: (slot[0], slot[2]))
        return slots

    def _run_session(
        self,
        start_ts: int,
        merchant: _Merchant,
        room_id: str,
        host_kind: str,
        traffic: float,
        promo: bool,
    ) -> None:
        rng, s = self.rng, self.s
        low, high = s.session_minutes_range
        minutes = min(
            high, max(low, _lognormal(rng, s.session_minutes_median, s.session_minutes_sigma))
        )
        duration_ms = round(minutes * MINUTE_MS)
        bursts = tuple(
            rng.randint(5 * MINUTE_MS, max(5 * MINUTE_MS, duration_ms - 10 * MINUTE_MS))
            for _ in range(rng.randint(*s.bursts_per_session))
        )
        session = _Session(
            session_id=self._next("s"),
            merchant=merchant,
            start_ts=start_ts,
            duration_ms=duration_ms,
            ended=rng.random() >= self.noise.never_ended_prob,
            lineup=self._lineup(merchant, duration_ms),
            bursts_ms=bursts,
            promo=promo,
        )
        self.sessions += 1
        sid = session.session_id
        started: Body = {
            "session_id": sid,
            "room_id": room_id,
            "merchant_id": merchant.spec.merchant_id,
        }
        if rng.random() >= self.noise.host_kind_absent_prob:
            started["host_kind"] = host_kind
        self._emit("session_started", start_ts, sid, started)

        for user, role in self._audience(merchant, traffic):
            self._visit(session, user, role)
        # Orders from a product card with no join, and leaves with no join (noise).
        for _ in range(_poisson(rng, self.noise.no_join_orders_per_session * self.scale * traffic)):
            user = rng.randrange(len(self.users))
            if session.lineup:
                show = rng.choice(session.lineup)
                closes = duration_ms if show.until_ms is None else show.until_ms
                at = rng.randint(show.intro_ms, closes)
                at = min(at, duration_ms - 1)
                extras = [shown.product for shown in session.lineup]
                self._order(merchant, user, start_ts + at, sid, show.product, extras)
        for _ in range(_poisson(rng, self.noise.orphan_leaves_per_session * traffic)):
            user = rng.randrange(len(self.users))
            at = start_ts + rng.randint(0, duration_ms)
            self._emit("viewer_left", at, sid, {"session_id": sid, "user_id": self._uid(user)})
        if session.ended:
            self._emit("session_ended", session.end_ts, sid, {"session_id": sid})

    def _audience(self, merchant: _Merchant, traffic: float) -> list[tuple[int, str]]:
        rng, s = self.rng, self.s
        boost = min(2.0, traffic)
        audience: list[tuple[int, str]] = []
        present: set[int] = set()
        if s.group_effect:
            for user in sorted(merchant.joined):
                if merchant.is_member(user) and rng.random() < s.attend_member * boost:
                    audience.append((user, "member"))
                    present.add(user)
        for user in merchant.fans:
            if user not in present and rng.random() < s.attend_fan * boost:
                audience.append((user, "fan"))
                present.add(user)
        for user in list(merchant.past_buyers):
            if user in present or user in merchant.fan_set:
                continue
            if rng.random() < s.attend_past_buyer * boost:
                audience.append((user, "past_buyer"))
                present.add(user)
        for _ in range(_poisson(rng, s.casual_viewers_mean * self.scale * traffic)):
            user = rng.randrange(len(self.users))
            if user not in present:
                audience.append((user, "casual"))
                present.add(user)
        return audience

    def _arrival_ms(self, session: _Session, role: str) -> int:
        rng, s = self.rng, self.s
        front = s.loyal_front_share if role in ("member", "fan") else s.arrival_front_share
        pick = rng.random()
        if pick < front:
            offset = rng.expovariate(1 / (s.arrival_front_mean_minutes * MINUTE_MS))
        elif pick < front + s.arrival_burst_share:
            offset = rng.choice(session.bursts_ms) + abs(
                rng.gauss(0, s.burst_sd_minutes * MINUTE_MS)
            )
        else:
            offset = rng.uniform(0, session.duration_ms)
        if offset >= session.duration_ms:
            offset = rng.uniform(0, session.duration_ms)
        return max(SECOND_MS, round(offset))

    def _intervals(
        self, session: _Session, arrival_ms: int, dwell_ms: float
    ) -> list[tuple[int, int, bool]]:
        """Presence intervals (offsets), the last flagged if the room closed on the viewer."""
        rng, s = self.rng, self.s
        pieces = 1 + min(4, _poisson(rng, s.rejoins_per_hour * dwell_ms / HOUR_MS))
        cuts = sorted(rng.random() for _ in range(pieces - 1))
        bounds = [0.0, *cuts, 1.0]
        intervals: list[tuple[int, int, bool]] = []
        at = arrival_ms
        for i in range(pieces):
            length = max(5 * SECOND_MS, round((bounds[i + 1] - bounds[i]) * dwell_ms))
            if at >= session.duration_ms - SECOND_MS:
                break
            end = at + length
            if end >= session.duration_ms:
                intervals.append((at, session.duration_ms, True))
                break
            intervals.append((at, end, False))
            at = end + round(_lognormal(rng, s.away_median_minutes, 0.8) * MINUTE_MS)
        return intervals

    @staticmethod
    def _at_watch(intervals: Sequence[tuple[int, int, bool]], watched_ms: float) -> int | None:
        """The offset at which cumulative watch time reaches `watched_ms` (None if never)."""
        remaining = watched_ms
        for start, end, _closed in intervals:
            if remaining <= end - start:
                return start + round(remaining)
            remaining -= end - start
        return None

    def _visit(self, session: _Session, user: int, role: str) -> None:
        rng, s = self.rng, self.s
        traits = self.users[user]
        merchant = session.merchant
        member = role == "member"
        sid, uid = session.session_id, self._uid(user)
        dwell_factor = traits.dwell
        if member:
            dwell_factor *= s.member_dwell_factor
        elif role == "fan":
            dwell_factor *= s.fan_dwell_factor
        dwell_ms = _lognormal(rng, s.dwell_median_minutes * dwell_factor, s.dwell_sigma) * MINUTE_MS
        intervals = self._intervals(session, self._arrival_ms(session, role), dwell_ms)
        if not intervals:
            return
        self._presence_events(session, user, role, intervals)
        if not merchant.is_member(user) and rng.random() < s.visit_group_join_prob:
            at = self._at_watch(intervals, rng.uniform(0, intervals[-1][1] - intervals[0][0]))
            if at is not None:
                self._join_group(merchant, user, session.start_ts + at)

        watched = sum(end - start for start, end, _closed in intervals)
        engage = s.engage_prob * traits.engage * (s.member_engage_factor if member else 1.0)
        engage *= 1 - math.exp(-watched / (5 * MINUTE_MS))
        engaged = rng.random() < min(0.95, engage)
        if engaged:
            count = 1 + min(40, _poisson(rng, s.interactions_per_minute * watched / MINUTE_MS))
            moments = sorted(rng.uniform(0, watched) for _ in range(count))
            for moment in moments:
                at = self._at_watch(intervals, moment)
                if at is None:
                    continue
                kind = _weighted(rng, s.interaction_kinds)
                body = self._emit(
                    "interaction",
                    session.start_ts + at,
                    sid,
                    {"session_id": sid, "user_id": uid, "kind": kind},
                )
                if kind == "question":
                    self._replies(session, body)

        buy = s.buy_appeal * traits.buy
        buy *= s.engaged_buy_factor if engaged else 1.0
        buy *= s.member_buy_factor if member else 1.0
        buy *= s.promo_buy_factor if session.promo else 1.0
        first_start = intervals[0][0]
        last_end = intervals[-1][1]
        orders = 0
        paid_in_room: dict[int, int] = {}  # lineup index -> offset of the order
        paid_later: set[int] = set()
        for index, show in enumerate(session.lineup):
            closes = show.until_ms if show.until_ms is not None else session.duration_ms
            if show.intro_ms >= last_end or closes <= first_start:
                continue  # never on show while this visitor was there
            chance = buy * show.appeal * self._price_factor(merchant, show.product)
            if orders:
                chance *= s.repeat_order_factor
            if rng.random() >= min(0.9, chance):
                continue
            price_cny = show.product.price_cents / 100
            decision_median = (
                s.decision_median_minutes * (price_cny / 200) ** s.decision_price_exponent
            )
            if show.until_ms is not None:
                decision_median *= s.flash_decision_factor
            decision_ms = _lognormal(rng, decision_median, s.decision_sigma) * MINUTE_MS
            at = self._order_offset(intervals, decision_ms, show.intro_ms, closes)
            others = [
                shown.product
                for shown in session.lineup
                if shown.intro_ms <= (last_end if at is None else at)
            ]
            if at is not None:
                self._order(merchant, user, session.start_ts + at, sid, show.product, others)
                paid_in_room[index] = at
            elif show.until_ms is None and session.ended and rng.random() < s.post_session_prob:
                self._order_later(session, user, show.product, others)
                paid_later.add(index)
            else:
                continue
            orders += 1
        self._card_clicks(session, user, intervals, paid_in_room, paid_later)

    def _order_later(
        self, session: _Session, user: int, product: _Product, others: Sequence[_Product]
    ) -> None:
        """An order of a session's product paid after the room closed, in the same session."""
        delay = self.rng.expovariate(1 / (self.s.post_session_mean_hours * HOUR_MS))
        ts = session.end_ts + SECOND_MS + round(delay)
        self._order(session.merchant, user, ts, session.session_id, product, others)

    def _card_clicks(
        self,
        session: _Session,
        user: int,
        intervals: Sequence[tuple[int, int, bool]],
        paid_in_room: dict[int, int],
        paid_later: set[int],
    ) -> None:
        """`product_clicked` events of one visit: before most in-room orders, and browsing."""
        rng, s = self.rng, self.s
        uid = self._uid(user)
        first_start, last_end = intervals[0][0], intervals[-1][1]
        for index, show in enumerate(session.lineup):
            closes = show.until_ms if show.until_ms is not None else session.duration_ms
            if show.intro_ms >= last_end or closes <= first_start:
                continue
            ordered_at = paid_in_room.get(index)
            if ordered_at is not None:
                if rng.random() < s.buyer_click_prob:
                    before = rng.randint(2 * SECOND_MS, 90 * SECOND_MS)
                    at = max(show.intro_ms, first_start, ordered_at - before)
                    self._click(session, uid, show.product, at)
                continue
            if rng.random() >= s.card_click_prob:
                continue
            clicked = self._moment_within(intervals, show.intro_ms, closes)
            if clicked is None:
                continue
            self._click(session, uid, show.product, clicked)
            if (
                index not in paid_later
                and show.until_ms is None
                and session.ended
                and rng.random() < s.click_later_prob
            ):
                shown = [other.product for other in session.lineup if other.intro_ms <= clicked]
                self._order_later(session, user, show.product, shown)

    def _click(self, session: _Session, uid: str, product: _Product, offset_ms: int) -> None:
        sid = session.session_id
        self._emit(
            "product_clicked",
            session.start_ts + offset_ms,
            sid,
            {"session_id": sid, "user_id": uid, "sku_id": product.sku_id},
        )

    def _moment_within(
        self, intervals: Sequence[tuple[int, int, bool]], low_ms: int, high_ms: int
    ) -> int | None:
        """A uniform moment of the visitor's presence within [low_ms, high_ms) (None: none)."""
        spans = [
            (max(start, low_ms), min(end, high_ms))
            for start, end, _closed in intervals
            if min(end, high_ms) > max(start, low_ms)
        ]
        if not spans:
            return None
        pick = self.rng.uniform(0, sum(end - start for start, end in spans))
        for start, end in spans:
            if pick <= end - start:
                return min(end - 1, start + int(pick))
            pick -= end - start
        return spans[-1][1] - 1

    def _order_offset(
        self,
        intervals: Sequence[tuple[int, int, bool]],
        decision_ms: float,
        intro_ms: int,
        closes_ms: int,
    ) -> int | None:
        """When a visitor who needs `decision_ms` of watching pays for a product (None: never)."""
        decided = self._at_watch(intervals, decision_ms)
        if decided is None:
            return None
        at = max(decided, intro_ms)
        for start, end, _closed in intervals:
            if end <= at:
                continue
            at = max(at, start)
            at = min(end - 1, at + self.rng.randint(SECOND_MS, 20 * SECOND_MS))
            return at if at < closes_ms else None
        return None

    def _presence_events(
        self, session: _Session, user: int, role: str, intervals: Sequence[tuple[int, int, bool]]
    ) -> None:
        rng, noise = self.rng, self.noise
        sid, uid = session.session_id, self._uid(user)
        for index, (start, end, closed_on) in enumerate(intervals):
            lost = index == 0 and rng.random() < noise.lost_join_prob
            if not lost:
                joined: Body = {"session_id": sid, "user_id": uid}
                if rng.random() >= noise.source_absent_prob:
                    joined["source"] = _weighted(rng, _SOURCES[role]) if index == 0 else "other"
                self._emit("viewer_joined", session.start_ts + start, sid, joined)
                if rng.random() < noise.double_join_prob and end - start > 2 * SECOND_MS:
                    again = start + rng.randint(SECOND_MS, (end - start) // 2)
                    self._emit(
                        "viewer_joined",
                        session.start_ts + again,
                        sid,
                        {"session_id": sid, "user_id": uid},
                    )
            if closed_on:
                # The room closed with the viewer in it: the platform usually records a leave
                # just after the close; a crashed session records nothing.
                if session.ended and rng.random() < self.s.leave_at_close_prob:
                    at = session.start_ts + end + rng.randint(0, 60 * SECOND_MS)
                    self._emit("viewer_left", at, sid, {"session_id": sid, "user_id": uid})
            else:
                self._emit(
                    "viewer_left",
                    session.start_ts + end,
                    sid,
                    {"session_id": sid, "user_id": uid},
                )

    def _replies(self, session: _Session, question: Body) -> None:
        rng, s = self.rng, self.s
        if rng.random() >= s.answer_prob:
            return
        spec = session.merchant.spec
        staff = [f"h-{spec.merchant_id[2:]}"] + [
            f"st-{spec.merchant_id[2:]}-{k + 1}" for k in range(spec.staff)
        ]
        asked = question["ts"]
        assert isinstance(asked, int)
        at = asked
        for _ in range(2 if rng.random() < s.second_reply_prob else 1):
            at += max(
                300, round(_lognormal(rng, s.reply_median_seconds, s.reply_sigma) * SECOND_MS)
            )
            if at >= session.end_ts:
                return
            self._emit(
                "interaction",
                at,
                session.session_id,
                {
                    "session_id": session.session_id,
                    "user_id": rng.choice(staff),
                    "kind": "reply",
                    "reply_to": question["event_id"],
                },
            )

    # ------------------------------------------------------------------ the days

    def run(self, progress: Callable[[str], None] | None = None) -> None:
        s = self.s
        for day_index in range(s.days):
            if progress is not None and day_index % 7 == 0:
                progress(f"day {day_index + 1}/{s.days}: {len(self.records)} events so far")
            day = s.start_date + timedelta(days=day_index)
            day_start = cst_midnight_ms(day)
            self._lapse_buyers(day_start)
            self._group_churn(day_start, first_day=day_index == 0)
            promo = day in s.promo_days
            traffic = s.promo_traffic if promo else 1.0
            for start, merchant, room_id, host_kind in self._schedule(day, day_start):
                self._run_session(start, merchant, room_id, host_kind, traffic, promo)
            self._offsession_orders(day_start)


# --------------------------------------------------------------------------- delivery and noise


def _dumps(body: object) -> str:
    # Compact JSON, keys in insertion order, non-ASCII as UTF-8 (orjson's only output form).
    return orjson.dumps(body).decode("utf-8")


def _junk_line(
    kind: str,
    base: Body,
    last_order: Body | None,
    rng: random.Random,
    number: int,
    noise: NoiseSpec,
) -> str:
    """One line the contract rejects, made from a real record (or the latest order)."""
    if kind in ("negative_amount", "empty_items") and last_order is not None:
        base = last_order
    body: Body = dict(base)
    if rng.random() >= noise.junk_reuses_id_prob:
        body["event_id"] = f"x-{number}"
    event_type = str(body["type"])
    if kind == "not_json":
        text = _dumps(body)
        if rng.random() < 0.5:
            return text[: rng.randint(1, len(text) - 2)]  # a truncated write
        return rng.choice(("<html><body>502 Bad Gateway</body></html>", "{'event_id': 'e', }"))
    if kind == "not_object":
        return rng.choice((_dumps([body]), '"viewer_joined"', "42", "null"))
    if kind == "missing_field":
        del body[rng.choice(_REQUIRED[event_type])]
    elif kind == "wrong_type":
        # Mostly the classic producer bug (ts sent as a string), sometimes an id sent as a number.
        if rng.random() < 0.7:
            body["ts"] = str(body["ts"])
        else:
            body[rng.choice([name for name in _REQUIRED[event_type] if name.endswith("_id")])] = 42
    elif kind == "unknown_type":
        body["type"] = rng.choice(_UNKNOWN_TYPES)
    elif kind == "negative_amount":
        if event_type not in ("order_paid", "order_refunded"):
            body = {"event_id": body["event_id"], "type": "order_refunded", "ts": body["ts"]}
            body["order_id"] = "o-1"
            body["amount_cents"] = 100
        amount = body["amount_cents"]
        assert isinstance(amount, int)
        body["amount_cents"] = -max(1, amount)
    elif kind == "empty_id":
        id_fields = [name for name in _REQUIRED[event_type] if name.endswith("_id")]
        body[rng.choice(id_fields)] = ""
    elif kind == "empty_items":
        if event_type != "order_paid":
            body = {
                "event_id": body["event_id"],
                "type": "order_paid",
                "ts": body["ts"],
                "order_id": "o-1",
                "merchant_id": "m-1",
                "user_id": "u-1",
                "amount_cents": 0,
            }
        body["items"] = []
    else:
        raise ValueError(f"unknown junk kind {kind!r}")
    return _dumps(body)


def _deliver(
    records: list[_Record], noise: NoiseSpec, rng: random.Random
) -> tuple[list[str], int, dict[str, int]]:
    """Production order: topics drift apart, records jitter, a few are late, some come twice,
    and junk is mixed in; records of one (topic, key) keep their order."""
    records.sort(key=lambda record: (record.ts, record.seq))
    topic_lag: dict[tuple[str, int], int] = {}
    last_arrival: dict[tuple[str, str], int] = {}
    out: list[tuple[int, int, str]] = []
    junk = dict.fromkeys(JUNK_KINDS, 0)
    redeliveries = 0
    junk_made = 0
    junk_cycle: list[str] = []
    last_order: Body | None = None
    for record in records:
        bucket = (record.topic, record.ts // HOUR_MS)
        if bucket not in topic_lag:
            topic_lag[bucket] = rng.randint(0, noise.topic_lag_max_ms)
        arrival = record.ts + topic_lag[bucket] + rng.randint(0, noise.jitter_ms)
        if rng.random() < noise.late_prob:
            arrival += rng.randint(30 * SECOND_MS, noise.late_max_ms)
        stream = (record.topic, record.key)
        arrival = max(arrival, last_arrival.get(stream, arrival))
        last_arrival[stream] = arrival

        body = record.body
        if rng.random() < noise.extra_field_prob:
            name, value = rng.choice(_EXTRA_FIELDS)
            body = {**body, name: value}
        line = _dumps(body)
        out.append((arrival, len(out), line))
        if rng.random() < noise.redelivery_prob:
            out.append((arrival + rng.randint(200, 120 * SECOND_MS), len(out), line))
            redeliveries += 1
        if body["type"] == "order_paid":
            last_order = body
        if rng.random() < noise.junk_prob:
            if not junk_cycle:
                junk_cycle = list(JUNK_KINDS)
                rng.shuffle(junk_cycle)
            kind = junk_cycle.pop()
            junk_made += 1
            bad = _junk_line(kind, body, last_order, rng, junk_made, noise)
            if not isinstance(decode_text(bad), Rejection):
                raise RuntimeError(f"junk line of kind {kind} decodes as valid: {bad}")
            out.append((arrival + rng.randint(-5 * SECOND_MS, 5 * SECOND_MS), len(out), bad))
            junk[kind] += 1
    out.sort()
    return [line for _arrival, _order, line in out], redeliveries, junk


def generate(
    scenario: Scenario,
    seed: int,
    scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
    *,
    run_seed: int | None = None,
) -> Generated:
    """Generate a scenario's stream: JSON Lines in production order, deterministic in its inputs.

    `progress`, if given, receives a short status line every simulated week. `seed` draws the
    world (users' traits, merchants' catalogs and fans) and, unless `run_seed` is given, the
    days that follow too; with `run_seed`, the days (sessions, visits, orders, noise) come from
    it instead, so that several streams can share one world (the interval coverage tests).
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not cryptography
    world = _World(scenario, rng, scale)
    if run_seed is not None:
        rng = world.rng = random.Random(run_seed)  # noqa: S311 - as above
    world.run(progress)
    events = len(world.records)
    lines, redeliveries, junk = _deliver(world.records, scenario.noise, rng)
    return Generated(
        lines=lines,
        events=events,
        sessions=world.sessions,
        orders=world.orders,
        redeliveries=redeliveries,
        junk=junk,
    )


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write JSON Lines, one per line, with a final newline (UTF-8, `\\n` endings)."""
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line)
            handle.write("\n")
