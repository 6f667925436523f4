"""Turning a :class:`~thawline.sim.world.World` into events, day by day, in arrival order.

Each simulated day draws from its own random stream (seeded from the world's seed and the day
number) and visits the holders in account order: everyday activity from each holder's habits, then
the scenario plans scheduled for that day. A day's events, with any still waiting from earlier days,
are sorted by arrival time and every event that arrived before the next midnight is handed out.
Only one day of events (plus late stragglers) is ever held in memory.

Late arrivals: a configurable fraction of events arrives between 30 seconds and
``max_late_seconds`` after it happened; those are the only events out of ``occurred_at`` order. An
event that has not arrived by the end of its day waits for the next chunk, so the guarantee "every
event whose arrival is before midnight is out" keeps the merge exact.

Events are plain dicts shaped exactly like :data:`thawline.domain.events.Event` in JSON form
(amounts as decimal strings, ``occurred_at`` in RFC 3339 with ``+08:00``); fields that are absent
are left out rather than set to null.
"""

from __future__ import annotations

import math
import random
from bisect import bisect, bisect_left
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from thawline.sim.model import (
    BLACKLISTED,
    DAY_MS,
    HOUR_MS,
    ZONE_OFFSET_MS,
    CardTestingPlan,
    Device,
    FestivalPlan,
    Holder,
    LargeTransferPlan,
    MulePlan,
    NewPhonePlan,
    SalaryPlan,
    StructuringPlan,
    TakeoverPlan,
    avoid_band,
    hex_token,
)

if TYPE_CHECKING:
    from thawline.sim.world import World

MINUTE_MS = 60_000
EPOCH = date(1970, 1, 1)
KYC_NEXT = {"none": "basic", "basic": "full"}
Event = dict[str, Any]
_CLOCK = tuple(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400))


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth's method; fine for the small rates used here)."""
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def cents_str(cents: int) -> str:
    """``12345`` → ``"123.45"``."""
    return f"{cents // 100}.{cents % 100:02d}"


class DayGenerator:
    """Generates one day at a time; holds the day's buffer, the late-arrival draw and the counters."""

    def __init__(self, world: World) -> None:
        """Prepare a generator over ``world`` (nothing is generated until :meth:`run_day`)."""
        self.world = world
        cfg = world.config
        self.currency = cfg.currency
        self.threshold = cfg.reporting_threshold
        self.late_fraction = cfg.late_fraction
        self.max_late_ms = cfg.max_late_seconds * 1000
        self.rng = random.Random(0)  # noqa: S311 — a simulation, not secrets
        self.day = 0
        self.day_start = cfg.start_ms
        self.day_of_month = cfg.start.day
        self.buffer: list[tuple[int, int, Event]] = []
        self.counter = 0
        self.type_counts: Counter[str] = world.event_counts
        self._dates: dict[int, str] = {}
        self._geo: dict[str, dict[str, str]] = {}

    # -- primitives -------------------------------------------------------------------------------

    def stamp(self, ms: int) -> str:
        """RFC 3339 text for Unix milliseconds, in UTC+08:00."""
        days, rem = divmod(ms + ZONE_OFFSET_MS, DAY_MS)
        day_text = self._dates.get(days)
        if day_text is None:
            day_text = self._dates[days] = (EPOCH + timedelta(days=days)).isoformat() + "T"
        second, milli = divmod(rem, 1000)
        return f"{day_text}{_CLOCK[second]}.{milli:03d}+08:00"

    def _push(self, ms: int, event: Event) -> None:
        rng = self.rng
        arrival = ms
        if self.late_fraction and rng.random() < self.late_fraction:
            arrival += rng.randrange(30_000, self.max_late_ms + 1)
            self.world.late_events += 1
        self.counter += 1
        self.buffer.append((arrival, self.counter, event))
        self.type_counts[event["type"]] += 1

    @staticmethod
    def _event(h: Holder) -> str:
        h.seq += 1
        return f"ev_{h.index:07d}_{h.seq:05d}"

    def login(
        self, h: Holder, ms: int, ip: str, device: Device, geo: dict[str, str], *, success: bool = True
    ) -> str:
        """Emit a login; returns its event id."""
        eid = self._event(h)
        self._push(
            ms,
            {
                "id": eid,
                "type": "login",
                "account_id": h.account_id,
                "occurred_at": self.stamp(ms),
                "ip": ip,
                "device_id": device.id,
                "user_agent": device.user_agent,
                "success": success,
                "geo": geo,
            },
        )
        return eid

    def transaction(
        self,
        h: Holder,
        ms: int,
        cents: int,
        direction: str,
        counterparty: str,
        *,
        channel: str,
        ip: str | None = None,
        device: Device | None = None,
        card_ref: str | None = None,
        order: bool = False,
    ) -> str:
        """Emit a transaction; returns its event id (blacklisted holders' transactions are abuse)."""
        eid = self._event(h)
        event: Event = {
            "id": eid,
            "type": "transaction",
            "account_id": h.account_id,
            "occurred_at": self.stamp(ms),
            "transaction_id": "tx" + eid[2:],
            "amount": cents_str(cents),
            "currency": self.currency,
            "direction": direction,
            "counterparty": counterparty,
            "channel": channel,
        }
        if order:
            event["order_ref"] = f"ord_{self.rng.getrandbits(48):012x}"
        if card_ref is not None:
            event["card_ref"] = card_ref
        if ip is not None:
            event["ip"] = ip
        if device is not None:
            event["device_id"] = device.id
        self._push(ms, event)
        if h.label == BLACKLISTED:
            h.abuse_ids.append(eid)
        return eid

    def profile_change(self, h: Holder, ms: int, field: str, value: str | None) -> str:
        """Emit a profile change; returns its event id."""
        eid = self._event(h)
        event: Event = {
            "id": eid,
            "type": "profile_change",
            "account_id": h.account_id,
            "occurred_at": self.stamp(ms),
            "field": field,
        }
        if value is not None:
            event["value"] = value
        self._push(ms, event)
        return eid

    def device_binding(self, h: Holder, ms: int, device: Device, action: str) -> str:
        """Emit a device binding or unbinding; returns its event id."""
        eid = self._event(h)
        self._push(
            ms,
            {
                "id": eid,
                "type": "device_binding",
                "account_id": h.account_id,
                "occurred_at": self.stamp(ms),
                "device_id": device.id,
                "action": action,
            },
        )
        return eid

    def kyc_update(self, h: Holder, ms: int, level: str) -> str:
        """Emit a KYC level change; returns its event id."""
        eid = self._event(h)
        self._push(
            ms,
            {
                "id": eid,
                "type": "kyc_update",
                "account_id": h.account_id,
                "occurred_at": self.stamp(ms),
                "level": level,
            },
        )
        return eid

    # -- habits -----------------------------------------------------------------------------------

    def time_of_day(self, h: Holder) -> int:
        """Milliseconds after midnight, drawn from the holder's hour-of-day habit."""
        rng = self.rng
        cum = h.hour_cum
        hour = min(bisect(cum, rng.random() * cum[-1]), 23)
        return hour * HOUR_MS + int(rng.random() * HOUR_MS)

    def everyday_cents(self, h: Holder) -> int:
        """An everyday payment amount from the holder's lognormal, 1 to 20,000 CNY."""
        cents = int(self.rng.lognormvariate(h.amount_mu, h.amount_sigma) * 100)
        return 100 if cents < 100 else min(cents, 2_000_000)

    def home_geo(self, h: Holder) -> dict[str, str]:
        """``{"country": "CN", "city": …}`` for the holder's home city (shared, never mutated)."""
        geo = self._geo.get(h.city.name)
        if geo is None:
            geo = self._geo[h.city.name] = {"country": "CN", "city": h.city.name}
        return geo

    def device_at(self, h: Holder, ms: int) -> Device:
        """The device the holder uses at ``ms``: the new phone once bound, otherwise mostly the first."""
        if h.new_device is not None and ms >= h.switch_ms:
            if h.keeps_old_device and self.rng.random() < 0.1:
                return h.devices[0]
            return h.new_device
        if len(h.devices) > 1 and self.rng.random() < 0.25:
            return h.devices[1]
        return h.devices[0]

    def where(self, h: Holder, abroad: bool) -> tuple[str, dict[str, str]]:
        """(IP, geo) for the holder right now: abroad on a trip, else home broadband or a carrier NAT."""
        trip = h.trip
        if abroad and trip is not None:
            geo = self._geo.get(trip.place.city)
            if geo is None:
                geo = self._geo[trip.place.city] = {"country": trip.place.country, "city": trip.place.city}
            return trip.ip, geo
        if self.rng.random() < h.mobile_share:
            return self.rng.choice(self.world.carrier_ips), self.home_geo(h)
        return h.home_ip, self.home_geo(h)

    def purchase(self, h: Holder, ms: int, cents: int, *, abroad: bool = False, online: bool = False) -> str:
        """An everyday purchase at one of the holder's merchants (card at a till, or in the app)."""
        rng = self.rng
        if abroad:
            merchant = rng.choice(self.world.foreign_merchants)
        else:
            merchants = h.merchants
            merchant = merchants[int(len(merchants) * rng.random() ** 2)]
        if not online and rng.random() < 0.4:
            return self.transaction(
                h,
                ms,
                cents,
                "debit",
                merchant,
                channel="pos",
                card_ref=h.card_refs[rng.randrange(len(h.card_refs))],
            )
        ip, _geo = self.where(h, abroad)
        return self.transaction(
            h, ms, cents, "debit", merchant, channel="app", ip=ip, device=self.device_at(h, ms), order=True
        )

    def everyday(self, h: Holder, plans: list[Any] | None) -> None:
        """The holder's ordinary day: logins, purchases, transfers, salary, rare profile changes."""
        rng = self.rng
        base = self.day_start
        trip = h.trip
        abroad = trip is not None and trip.first_day <= self.day <= trip.last_day
        for _ in range(poisson(rng, h.login_rate)):
            ms = base + self.time_of_day(h)
            ip, geo = self.where(h, abroad)
            device = self.device_at(h, ms)
            if rng.random() < 0.015:  # a mistyped password, then a successful retry
                self.login(h, ms, ip, device, geo, success=False)
                ms += rng.randrange(10_000, 90_000)
            self.login(h, ms, ip, device, geo)
        for _ in range(poisson(rng, h.tx_rate)):
            ms = base + self.time_of_day(h)
            kind = rng.random()
            if kind < 0.8 or abroad:
                self.purchase(h, ms, self.everyday_cents(h), abroad=abroad)
            elif kind < 0.93:
                ip, _geo = self.where(h, abroad)
                cents = self.everyday_cents(h) * rng.randint(1, 4)
                self.transaction(
                    h,
                    ms,
                    min(cents, 2_000_000),
                    "debit",
                    rng.choice(h.contacts),
                    channel="transfer",
                    ip=ip,
                    device=self.device_at(h, ms),
                )
            else:
                cents = min(self.everyday_cents(h) * rng.randint(1, 4), 2_000_000)
                self.transaction(h, ms, cents, "credit", rng.choice(h.contacts), channel="transfer")
        if h.salary_day == self.day_of_month and not any(isinstance(p, SalaryPlan) for p in plans or ()):
            ms = base + 9 * HOUR_MS + rng.randrange(2 * HOUR_MS)
            self.transaction(h, ms, h.salary_cents, "credit", h.employer, channel="payroll")
        if h.kyc_upgrade_day == self.day:
            self.kyc_update(h, base + self.time_of_day(h), KYC_NEXT[h.kyc_level])
        if rng.random() < 0.002:
            self.profile_change(h, base + self.time_of_day(h), rng.choice(("email", "address")), None)

    # -- scenarios --------------------------------------------------------------------------------

    def takeover(self, h: Holder, plan: TakeoverPlan) -> None:
        """Odd-hour login abroad from a new device, phone and password changed, then large debits."""
        rng, ids = self.rng, h.abuse_ids
        t = self.day_start + plan.hour * HOUR_MS + rng.randrange(50 * MINUTE_MS)
        geo = {"country": plan.place.country, "city": plan.place.city}
        for _ in range(plan.failed_logins):
            ids.append(self.login(h, t, plan.ip, plan.device, geo, success=False))
            t += rng.randrange(15_000, 90_000)
        ids.append(self.login(h, t, plan.ip, plan.device, geo))
        t += rng.randrange(2 * MINUTE_MS, 10 * MINUTE_MS)
        ids.append(self.profile_change(h, t, "phone", plan.new_phone))
        t += rng.randrange(MINUTE_MS, 5 * MINUTE_MS)
        ids.append(self.profile_change(h, t, "password", None))
        if plan.bind_device:
            t += rng.randrange(30_000, 120_000)
            ids.append(self.device_binding(h, t, plan.device, "bind"))
        for _ in range(plan.debits):
            t += rng.randrange(MINUTE_MS, 15 * MINUTE_MS)
            norm = h.typical_cents * rng.uniform(30, 80)
            cents = min(max(norm, rng.uniform(5_000, 15_000) * 100), 4_000_000)
            cents = avoid_band(int(cents) // 10_000 * 10_000, self.threshold)
            ids.append(
                self.transaction(
                    h,
                    t,
                    cents,
                    "debit",
                    hex_token(rng, "psn", 10),
                    channel="transfer",
                    ip=plan.ip,
                    device=plan.device,
                )
            )

    def card_testing(self, h: Holder, plan: CardTestingPlan) -> None:
        """A burst of tiny online debits, each with a different card; sometimes a cash-out after."""
        rng, ids = self.rng, h.abuse_ids
        t = self.day_start + plan.hour * HOUR_MS + rng.randrange(45 * MINUTE_MS)
        cards = []
        for _ in range(plan.attempts):
            t += rng.randrange(2_000, 20_000)
            cents = rng.choice((1, 1, 10, 50, 99, 100, 100, 100, 199, 500, rng.randrange(1, 1000)))
            card = hex_token(rng, "card")
            cards.append(card)
            ids.append(
                self.transaction(
                    h,
                    t,
                    cents,
                    "debit",
                    rng.choice(plan.merchants),
                    channel="online",
                    ip=plan.ip,
                    device=plan.device,
                    card_ref=card,
                    order=True,
                )
            )
        if plan.cash_out:
            t += rng.randrange(5 * MINUTE_MS, 60 * MINUTE_MS)
            ids.append(
                self.transaction(
                    h,
                    t,
                    rng.randrange(500, 5000) * 100,
                    "debit",
                    rng.choice(self.world.merchants),
                    channel="online",
                    ip=plan.ip,
                    device=plan.device,
                    card_ref=rng.choice(cards),
                    order=True,
                )
            )

    def mule(self, h: Holder, plan: MulePlan) -> None:
        """Money in from strangers, then out to the ring's sink within minutes, from shared devices."""
        rng, ids, ring = self.rng, h.abuse_ids, plan.ring
        geo = self.home_geo(h)
        for _ in range(plan.cycles):
            t = self.day_start + rng.randrange(8 * HOUR_MS, 23 * HOUR_MS)
            device = ring.devices[rng.randrange(len(ring.devices))]
            cents = avoid_band(rng.randrange(2_000, 30_000) * 100 + rng.randrange(100), self.threshold)
            ids.append(self.transaction(h, t, cents, "credit", hex_token(rng, "psn", 10), channel="transfer"))
            t += rng.randrange(MINUTE_MS, 20 * MINUTE_MS)
            ids.append(self.login(h, t, ring.ip, device, geo))
            t += rng.randrange(MINUTE_MS, 10 * MINUTE_MS)
            out = int(cents * rng.uniform(0.9, 1.0)) // 100 * 100
            ids.append(
                self.transaction(h, t, out, "debit", ring.sink, channel="transfer", ip=ring.ip, device=device)
            )

    def structuring(self, h: Holder, plan: StructuringPlan) -> None:
        """Transfers just under the reporting threshold, at the holder's usual hours."""
        rng = self.rng
        for cents in plan.amounts_cents:
            t = self.day_start + self.time_of_day(h)
            counterparty = rng.choice(plan.counterparties)
            if plan.direction == "debit":
                ip, _geo = self.where(h, False)
                eid = self.transaction(
                    h, t, cents, "debit", counterparty, channel="transfer", ip=ip, device=self.device_at(h, t)
                )
            else:
                eid = self.transaction(h, t, cents, "credit", counterparty, channel="transfer")
            h.abuse_ids.append(eid)

    def large_transfer(self, h: Holder, plan: LargeTransferPlan) -> None:
        """Transfers far above the holder's norm to a new counterparty, from the usual device and place."""
        rng = self.rng
        t = self.day_start + self.time_of_day(h)
        for cents in plan.amounts_cents:
            ip, _geo = self.where(h, False)
            device = self.device_at(h, t)
            h.abuse_ids.append(
                self.transaction(
                    h, t, cents, "debit", plan.counterparty, channel="transfer", ip=ip, device=device
                )
            )
            t += rng.randrange(10 * MINUTE_MS, 120 * MINUTE_MS)

    def salary(self, h: Holder, plan: SalaryPlan) -> None:
        """Benign: a big salary with bonus, then many ordinary purchases the same day."""
        rng = self.rng
        t = self.day_start + 9 * HOUR_MS + rng.randrange(2 * HOUR_MS)
        self.transaction(h, t, plan.amount_cents, "credit", h.employer, channel="payroll")
        for _ in range(plan.purchases):
            self.purchase(h, t + rng.randrange(10 * MINUTE_MS, 12 * HOUR_MS), self.everyday_cents(h))

    def festival(self, h: Holder, plan: FestivalPlan) -> None:
        """Benign: many ordinary-sized online purchases around midnight and in the evening of 11-11."""
        rng = self.rng
        for _ in range(plan.purchases):
            if rng.random() < 0.6:
                t = self.day_start + rng.randrange(90 * MINUTE_MS)
            else:
                t = self.day_start + rng.randrange(19 * HOUR_MS, DAY_MS)
            self.purchase(h, t, self.everyday_cents(h), online=True)

    def new_phone(self, h: Holder, plan: NewPhonePlan) -> None:
        """Benign: bind the new phone, log in from it at home; maybe unbind the old one."""
        rng = self.rng
        t = h.switch_ms
        self.device_binding(h, t, plan.device, "bind")
        t += rng.randrange(MINUTE_MS, 3 * MINUTE_MS)
        self.login(h, t, h.home_ip, plan.device, self.home_geo(h))
        if plan.unbind_old:
            t += rng.randrange(2 * MINUTE_MS, 10 * MINUTE_MS)
            self.device_binding(h, t, h.devices[0], "unbind")

    # -- the day ----------------------------------------------------------------------------------

    def run_day(self, day: int) -> None:
        """Generate every holder's events of ``day`` into :attr:`buffer`."""
        cfg = self.world.config
        self.rng = random.Random(f"thawline-sim/{cfg.seed}/day/{day}")  # noqa: S311 — not secrets
        self.day = day
        self.day_start = cfg.start_ms + day * DAY_MS
        self.day_of_month = (cfg.start + timedelta(days=day)).day
        for h in self.world.holders:
            plans = h.plans.get(day)
            self.everyday(h, plans)
            if plans:
                for plan in plans:
                    self._run_plan(h, plan)

    def _run_plan(self, h: Holder, plan: Any) -> None:
        match plan:
            case TakeoverPlan():
                self.takeover(h, plan)
            case CardTestingPlan():
                self.card_testing(h, plan)
            case MulePlan():
                self.mule(h, plan)
            case StructuringPlan():
                self.structuring(h, plan)
            case LargeTransferPlan():
                self.large_transfer(h, plan)
            case SalaryPlan():
                self.salary(h, plan)
            case FestivalPlan():
                self.festival(h, plan)
            case NewPhonePlan():
                self.new_phone(h, plan)
            case _:
                raise TypeError(f"unknown plan {plan!r}")


def stream_events(world: World) -> Iterator[list[Event]]:
    """One list of events per simulated day, in arrival order; late stragglers close the last list."""
    gen = DayGenerator(world)
    pending: list[tuple[int, int, Event]] = []
    days = world.config.days
    for day in range(days):
        gen.run_day(day)
        pending.extend(gen.buffer)
        gen.buffer = []
        pending.sort()
        cut = len(pending) if day == days - 1 else bisect_left(pending, (gen.day_start + DAY_MS,))
        ready = [event for _arrival, _n, event in pending[:cut]]
        del pending[:cut]
        yield ready
