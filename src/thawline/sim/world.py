"""The synthetic world: holders with habits, their devices and addresses, and who is abusive.

:class:`World` is built from a :class:`~thawline.sim.model.SimConfig` alone: the same configuration
(seed included) always gives the same holders, the same scenario plans and, through
:meth:`World.stream`, the same events in the same order. Holders' personal identifiers (name,
resident ID, phone, cards) appear only in the registration payloads (:meth:`World.registrations`)
and, for blacklisted holders, in the blocklist; events carry opaque tokens (account, device, card
and counterparty references).

Ground truth: each account has one label — ``benign`` or one abuse scenario — with tags (benign
look-alikes such as ``travel``) and, after streaming, the ids of the events that make up the abuse.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

from thawline.sim.activity import stream_events
from thawline.sim.identity import IdentityFactory
from thawline.sim.model import (
    ABUSE_LABELS,
    ACCOUNT_TAKEOVER,
    ATTACK_PLACES,
    ATTACKER_USER_AGENTS,
    BLACKLISTED,
    BLOCKLIST_REASONS,
    CARD_TESTING,
    CARRIER_NAT_BLOCKS,
    CITIES,
    DAY_MS,
    HOUR_MS,
    LABELS,
    LARGE_TRANSFER,
    LOOKALIKE_TAGS,
    MULE,
    NEW_PHONE,
    SALARY_DAY,
    SHOPPING_FESTIVAL,
    STRUCTURING,
    TRAVEL,
    TRAVEL_PLACES,
    USER_AGENTS,
    BlockEntry,
    CardTestingPlan,
    Device,
    FestivalPlan,
    Holder,
    LargeTransferPlan,
    MulePlan,
    NewPhonePlan,
    Ring,
    SalaryPlan,
    SimConfig,
    StructuringPlan,
    TakeoverPlan,
    Trip,
    avoid_band,
    hex_token,
)


class World:
    """Holders, merchants, rings and plans for one configuration; see :meth:`stream` for the events."""

    def __init__(self, config: SimConfig) -> None:
        """Build every holder and scenario plan from ``config`` (deterministic in ``config.seed``)."""
        self.config = config
        rng = random.Random(f"thawline-sim/{config.seed}/world")  # noqa: S311 — a simulation, not secrets
        self._rng = rng
        seeded = random.Random(f"thawline-sim/{config.seed}/identity")  # noqa: S311 — not secrets
        self.identities = IdentityFactory(seeded)
        n_merchants = max(200, config.accounts // 10)
        self.merchants = tuple(f"mch_{i:06d}" for i in range(n_merchants))
        self.foreign_merchants = tuple(
            f"mch_{n_merchants + i:06d}" for i in range(max(50, n_merchants // 10))
        )
        self.carrier_ips = tuple(
            f"{rng.choice(CARRIER_NAT_BLOCKS)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            for _ in range(max(64, config.accounts // 50))
        )
        self.festival_day = self._festival_day()
        self.holders = [self._holder(i) for i in range(config.accounts)]
        self.rings: list[Ring] = []
        self.blocklist: list[BlockEntry] = []
        self._assign_scenarios()
        self.streamed = False
        self.event_counts: Counter[str] = Counter()
        self.late_events = 0

    # -- building ---------------------------------------------------------------------------------

    def _festival_day(self) -> int:
        """The day index of the next 11-11 inside the window, else the window's middle day."""
        start = self.config.start
        for year in (start.year, start.year + 1):
            offset = (date(year, 11, 11) - start).days
            if 0 <= offset < self.config.days:
                return offset
        return self.config.days // 2

    def _holder(self, index: int) -> Holder:
        rng = self._rng
        ids = self.identities
        city = rng.choice(CITIES)
        cards = tuple(ids.bank_card() for _ in range(1 if rng.random() < 0.6 else rng.randint(2, 3)))
        devices = [Device(hex_token(rng, "dev", 16), rng.choice(USER_AGENTS))]
        if rng.random() < 0.35:
            devices.append(Device(hex_token(rng, "dev", 16), rng.choice(USER_AGENTS)))
        wake = rng.randint(6, 10)
        sleep = rng.randint(21, 25)  # 24/25 mean midnight or 1 am
        weights = []
        for hour in range(24):
            h = hour if hour >= 5 else hour + 24
            if wake <= h < sleep:
                w = 1.0 + (1.2 if h in (12, 13) else 0.0) + (1.5 if 19 <= h <= 22 else 0.0)
            elif 1 <= hour <= 4:
                w = 0.004
            else:
                w = 0.06
            weights.append(w * rng.uniform(0.7, 1.3))
        cum, acc = [], 0.0
        for w in weights:
            acc += w
            cum.append(acc)
        salaried = rng.random() < 0.7
        mu = rng.gauss(4.3, 0.6)  # median ~ 74 CNY
        salary = int(rng.lognormvariate(9.3, 0.45)) * 100  # median ~ 11,000 CNY
        kyc = rng.choices(("none", "basic", "full"), weights=(5, 25, 70))[0]
        holder = Holder(
            index=index,
            account_id=f"acc_{index:07d}",
            name=ids.name(),
            resident_id=ids.resident_id(city.province),
            phone=ids.phone(),
            cards=cards,
            card_refs=tuple(hex_token(rng, "card") for _ in cards),
            kyc_level=kyc,
            vip_tier=rng.choices(range(4), weights=(85, 9, 4, 2))[0],
            language="zh-CN" if rng.random() < 0.93 else "en",
            city=city,
            home_ip=f"{rng.choice(city.ip_blocks)}.{rng.randrange(256)}.{rng.randrange(2, 255)}",
            devices=devices,
            hour_cum=tuple(cum),
            amount_mu=mu,
            amount_sigma=rng.uniform(0.6, 1.1),
            tx_rate=min(12.0, rng.lognormvariate(0.9, 0.6)),
            login_rate=min(8.0, rng.lognormvariate(0.4, 0.5)),
            mobile_share=rng.uniform(0.05, 0.5),
            salary_day=rng.choice((1, 5, 10, 15, 20, 25, 28)) if salaried else None,
            salary_cents=avoid_band(salary, self.config.reporting_threshold),
            employer=hex_token(rng, "org", 8),
            merchants=tuple(rng.sample(self.merchants, rng.randint(5, 15))),
            contacts=tuple(hex_token(rng, "psn", 10) for _ in range(rng.randint(2, 8))),
        )
        if kyc != "full" and rng.random() < 0.08:
            holder.kyc_upgrade_day = rng.randrange(self.config.days)
        return holder

    def _counts(self, total: int, kinds: tuple[str, ...]) -> dict[str, int]:
        """Split ``total`` as evenly as possible over ``kinds``; the remainder goes to random kinds."""
        base, extra = divmod(total, len(kinds))
        lucky = set(self._rng.sample(kinds, extra))
        return {k: base + (k in lucky) for k in kinds}

    def _assign_scenarios(self) -> None:
        cfg, rng = self.config, self._rng
        order = list(range(cfg.accounts))
        rng.shuffle(order)
        n_abuse = round(cfg.accounts * cfg.abuse_rate)
        n_lookalike = min(round(cfg.accounts * cfg.lookalike_rate), cfg.accounts - n_abuse)
        planners: dict[str, Callable[[Holder], None]] = {
            ACCOUNT_TAKEOVER: self._plan_account_takeover,
            CARD_TESTING: self._plan_card_testing,
            STRUCTURING: self._plan_structuring,
            LARGE_TRANSFER: self._plan_large_transfer,
            BLACKLISTED: self._plan_blacklisted,
            TRAVEL: self._plan_travel,
            SALARY_DAY: self._plan_salary_day,
            SHOPPING_FESTIVAL: self._plan_shopping_festival,
            NEW_PHONE: self._plan_new_phone,
        }
        pos = 0
        for label, count in self._counts(n_abuse, ABUSE_LABELS).items():
            chosen = [self.holders[i] for i in order[pos : pos + count]]
            pos += count
            if label == MULE:
                self._mule_rings(chosen)
                continue
            for h in chosen:
                h.label = label
                planners[label](h)
        for tag, count in self._counts(n_lookalike, LOOKALIKE_TAGS).items():
            for i in order[pos : pos + count]:
                h = self.holders[i]
                h.tags.append(tag)
                planners[tag](h)
            pos += count
        self._decoy_blocklist()

    def _day(self, span: int = 1) -> int:
        """A random first day for an episode lasting ``span`` days."""
        return self._rng.randrange(max(1, self.config.days - span + 1))

    def _plan_account_takeover(self, h: Holder) -> None:
        rng = self._rng
        place = rng.choice(ATTACK_PLACES)
        plan = TakeoverPlan(
            hour=rng.randint(1, 4),
            place=place,
            ip=f"{place.ip_block}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            device=Device(hex_token(rng, "dev", 16), rng.choice(ATTACKER_USER_AGENTS)),
            new_phone=self.identities.phone(attacker=True),
            failed_logins=rng.choice((0, 0, 1, 2, 3)),
            debits=rng.randint(1, 4),
            bind_device=rng.random() < 0.5,
        )
        h.tags.append(f"geo:{place.country}")
        h.add_plan(self._day(), plan)

    def _plan_card_testing(self, h: Holder) -> None:
        rng = self._rng
        plan = CardTestingPlan(
            hour=rng.choice((0, 1, 2, 3, 4, 10, 14, 20, 22, 23)),
            attempts=rng.randint(15, 60),
            merchants=tuple(rng.sample(self.merchants, rng.randint(1, 3))),
            device=Device(hex_token(rng, "dev", 16), rng.choice(ATTACKER_USER_AGENTS)),
            ip=f"{rng.choice(ATTACK_PLACES).ip_block}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            cash_out=rng.random() < 0.4,
        )
        if plan.cash_out:
            h.tags.append("cash_out")
        h.add_plan(self._day(), plan)

    def _mule_rings(self, members: list[Holder]) -> None:
        rng = self._rng
        pos = 0
        while pos < len(members):
            size = rng.randint(3, 5)
            if len(members) - pos - size < 3:  # too few left for another ring: this one takes them
                size = len(members) - pos
            city = rng.choice(CITIES)
            ring = Ring(
                id=f"ring_{len(self.rings):04d}",
                devices=tuple(
                    Device(hex_token(rng, "dev", 16), rng.choice(USER_AGENTS))
                    for _ in range(rng.randint(1, 2))
                ),
                ip=f"{rng.choice(city.ip_blocks)}.{rng.randrange(256)}.{rng.randrange(2, 255)}",
                sink=hex_token(rng, "psn", 10),
            )
            self.rings.append(ring)
            first = self._day(3)
            active = sorted({min(first + rng.randrange(3), self.config.days - 1) for _ in range(3)})
            for h in members[pos : pos + size]:
                h.label = MULE
                h.tags.append(f"ring:{ring.id}")
                ring.members.append(h.index)
                for day in active:
                    h.add_plan(day, MulePlan(ring, rng.randint(1, 4)))
            pos += size

    def _plan_structuring(self, h: Holder) -> None:
        rng, threshold = self._rng, self.config.reporting_threshold
        counterparties = tuple(hex_token(rng, "psn", 10) for _ in range(rng.randint(1, 2)))
        direction = "debit" if rng.random() < 0.7 else "credit"
        first = self._day(6)
        total = rng.randint(4, 8)
        per_day: dict[int, int] = {}
        for _ in range(total):
            day = min(first + rng.randrange(6), self.config.days - 1)
            per_day[day] = per_day.get(day, 0) + 1
        for day, count in sorted(per_day.items()):
            amounts = tuple(threshold * 100 - 1000 * rng.randint(1, 100) for _ in range(count))
            h.add_plan(day, StructuringPlan(amounts, counterparties, direction))
        h.tags.append(f"direction:{direction}")

    def _plan_large_transfer(self, h: Holder) -> None:
        rng, threshold = self._rng, self.config.reporting_threshold
        amounts = []
        for _ in range(1 if rng.random() < 0.7 else 2):
            norm = h.typical_cents * rng.uniform(60, 200)
            cents = min(max(norm, rng.uniform(20_000, 150_000) * 100), 80_000_000)
            amounts.append(avoid_band(int(cents) // 10_000 * 10_000, threshold))
        h.add_plan(self._day(), LargeTransferPlan(tuple(amounts), hex_token(rng, "psn", 10)))

    def _plan_blacklisted(self, h: Holder) -> None:
        rng = self._rng
        kind = rng.choice(("resident_id", "phone", "bank_card"))
        value = {"resident_id": h.resident_id, "phone": h.phone, "bank_card": rng.choice(h.cards)}[kind]
        self.blocklist.append(BlockEntry(kind, value, rng.choice(BLOCKLIST_REASONS)))
        h.tags.append(f"blocklist:{kind}")

    def _decoy_blocklist(self) -> None:
        """Entries for identities outside the world, so a blocklist hit is not every entry."""
        rng, ids = self._rng, self.identities
        for _ in range(max(10, 3 * len(self.blocklist))):
            kind = rng.choice(("resident_id", "phone", "bank_card"))
            if kind == "resident_id":
                value = ids.resident_id()
            elif kind == "phone":
                value = ids.phone()
            else:
                value = ids.bank_card()
            self.blocklist.append(BlockEntry(kind, value, rng.choice(BLOCKLIST_REASONS)))
        rng.shuffle(self.blocklist)

    def _plan_travel(self, h: Holder) -> None:
        rng = self._rng
        length = min(rng.randint(3, 9), self.config.days)
        first = self._day(length)
        place = rng.choice(TRAVEL_PLACES)
        ip = f"{place.ip_block}.{rng.randrange(256)}.{rng.randrange(2, 255)}"
        h.trip = Trip(first, first + length - 1, place, ip)

    def _plan_salary_day(self, h: Holder) -> None:
        rng = self._rng
        day = self._day()
        h.salary_day = (self.config.start + timedelta(days=day)).day
        cents = max(h.typical_cents * rng.uniform(40, 120), 2_500_000)
        amount = avoid_band(int(cents) // 100 * 100, self.config.reporting_threshold)
        h.add_plan(day, SalaryPlan(amount, rng.randint(8, 20)))

    def _plan_shopping_festival(self, h: Holder) -> None:
        h.add_plan(self.festival_day, FestivalPlan(self._rng.randint(15, 45)))

    def _plan_new_phone(self, h: Holder) -> None:
        rng = self._rng
        day = self._day()
        plan = NewPhonePlan(Device(hex_token(rng, "dev", 16), rng.choice(USER_AGENTS)), rng.random() < 0.5)
        h.new_device = plan.device
        h.keeps_old_device = not plan.unbind_old
        h.switch_ms = self.config.start_ms + day * DAY_MS + rng.randrange(10 * HOUR_MS, 20 * HOUR_MS)
        h.add_plan(day, plan)

    @property
    def festival_date(self) -> date:
        """The calendar date of the shopping-festival day."""
        return self.config.start + timedelta(days=self.festival_day)

    # -- outputs ----------------------------------------------------------------------------------

    def registrations(self) -> Iterator[dict[str, Any]]:
        """Every account's registration payload, in account order."""
        for h in self.holders:
            yield h.registration()

    def stream(self) -> Iterator[list[dict[str, Any]]]:
        """The events, one list per simulated day (the last may hold late arrivals), in arrival order.

        Streaming fills in each holder's ``abuse_ids``; :meth:`labels` is complete only afterwards.
        """
        if self.streamed:
            raise RuntimeError("a world streams its events once; build a new World to stream again")
        self.streamed = True
        yield from stream_events(self)

    def labels(self) -> Iterator[dict[str, Any]]:
        """Ground truth, one record per account: label, tags and the ids of the abusive events."""
        if not self.streamed:
            raise RuntimeError("stream the events first: abuse event ids are assigned while streaming")
        for h in self.holders:
            yield {
                "account_id": h.account_id,
                "label": h.label,
                "tags": list(h.tags),
                "abuse_event_ids": list(h.abuse_ids),
            }

    def label_counts(self) -> dict[str, int]:
        """How many accounts carry each label (every label listed, zeros included)."""
        counts = Counter(h.label for h in self.holders)
        return {label: counts.get(label, 0) for label in LABELS}

    def tag_counts(self) -> dict[str, int]:
        """How many accounts carry each benign look-alike tag."""
        counts = Counter(t for h in self.holders for t in h.tags)
        return {tag: counts.get(tag, 0) for tag in LOOKALIKE_TAGS}
