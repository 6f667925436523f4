"""``thawline demo``: a lived-in Thawline built from the simulator, one month of it, through the services.

The clock is a :class:`~thawline.domain.clock.FakeClock` set to the start of the month and moved
forward, never back, to each thing that happens: the integrator's event batches (twice a day,
through the risk engine), the timers (an hourly scheduler scan: SLA warnings and escalations,
lapsed drafts, expiries, re-reviews, probation ends; the outbox dispatcher every three hours) and
every case's steps (``demo_cases``). So each step is recorded in the operation log at its own moment
of the month, and the log verifies. The same plan (seed, sizes and end) builds the same demo.

Sizes (docs/BENCHMARKS.md). Registering a holder (vault, blind indexes, link keys) and matching it
against the block-list at its first event cost a few milliseconds each, so holders set the floor:
10,000 by default. At the simulator's everyday rates (~4.7 events a holder a day) a month would be
1.4 M events; the demo keeps every holder and every abuse scenario whole but scales the everyday
activity (logins, purchases, transfers) down to :data:`EVERYDAY_SHARE` of it.
"""

from __future__ import annotations

import csv
import heapq
import io
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select

from thawline.adapters.db.schema import appeal, freeze
from thawline.domain.appeals import MaterialKind
from thawline.domain.clock import FakeClock
from thawline.domain.staff import Role
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, apikeys, lists, portal, scheduler, staff
from thawline.services import freezes as freeze_service
from thawline.services.appeals import flagged_transactions
from thawline.services.demo_cases import CHINA, Case, CasePlayer, Steps, Team
from thawline.services.dispatcher import Dispatcher
from thawline.services.engine import EVENT_ADAPTER, RiskEngine
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.sim import SimConfig, World
from thawline.sim.story import CasePlanner, FreezeFacts

DEMO_KEY_NAME = "demo-gateway"
EVERYDAY_SHARE = 0.05  # of the simulator's everyday logins and payments (abuse scenarios stay whole)
BATCHES_PER_DAY = 2  # the integrator sends its events twice a day
INNOCENT = frozenset({"benign", "account_takeover", "card_testing", "large_transfer"})
"""Ground-truth labels whose holder did nothing wrong: look-alikes, and victims of someone else."""
STAFF = (
    ("reviewer", Role.REVIEWER),
    ("senior", Role.SENIOR_REVIEWER),
    ("analyst", Role.RISK_ANALYST),
    ("auditor", Role.AUDITOR),
    ("admin", Role.ADMIN),
)
TIMER_TICK = timedelta(hours=1)
DISPATCH_EVERY = 3  # ticks between the dispatcher's rounds (messages go out within three hours)
MAX_ROUNDS = 20  # per dispatch; what is left (a message failing again at once) waits for the next
SETUP_LEAD = timedelta(hours=2)  # holders are registered and staff created this long before the month
SETUP = Actor(ActorKind.SYSTEM, "cli")  # what an operator sets up by hand (holders import, staff, key)


class Progress(Protocol):
    """Where the demo reports how far it is (the CLI draws progress bars)."""

    def phase(self, name: str, total: int) -> None:
        """A new phase with ``total`` units of work."""
        ...

    def advance(self, units: int = 1) -> None:
        """Units of the current phase done."""
        ...


class NoProgress:
    """Reports nothing."""

    def phase(self, name: str, total: int) -> None:
        """Ignore the phase."""

    def advance(self, units: int = 1) -> None:
        """Ignore the progress."""


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """What to build: how many holders, how many days up to ``end``, and the seed."""

    accounts: int = 10_000
    days: int = 30
    seed: int = 1
    end: datetime = field(default_factory=lambda: datetime.now(UTC))
    everyday_share: float = EVERYDAY_SHARE
    abuse_rate: float = 0.02  # the simulator's default share of abusive holders

    @property
    def start_date(self) -> date:
        """The first simulated day (China time); the last one is today, played up to ``end``."""
        return (self.end + CHINA).date() - timedelta(days=self.days - 1)

    @property
    def start(self) -> datetime:
        """Midnight (China time) that starts the simulated window."""
        d = self.start_date
        return datetime(d.year, d.month, d.day, tzinfo=UTC) - CHINA


@dataclass(frozen=True, slots=True)
class StaffLogin:
    """A console sign-in made for the demo (the password is shown once, never stored in clear)."""

    username: str
    role: Role
    password: str


@dataclass
class DemoResult:
    """What the newcomer needs afterwards: an API key, the staff sign-ins, a portal link, the tallies."""

    api_key: str
    staff: list[StaffLogin]
    portal_link: tuple[str, str, datetime] | None  # (account id, one-time token, expiry)
    events: int
    stories: Counter[str]
    outcomes: Counter[str]
    refused_incomplete: int
    interrupted: int
    seconds: dict[str, float]  # wall time per phase


def move_to(clock: FakeClock, at: datetime) -> None:
    """Move the demo clock forward to ``at`` (never back)."""
    if at > clock.now():
        clock.advance(at - clock.now())


class Agenda:
    """Steps due at given times, run in time order with the clock moved to each."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._heap: list[tuple[datetime, int, Steps]] = []
        self._order = itertools.count()
        self.seconds = 0.0  # wall time spent running steps

    def add(self, at: datetime, steps: Steps) -> None:
        """Start ``steps`` at ``at``."""
        heapq.heappush(self._heap, (at, next(self._order), steps))

    def run_until(self, until: datetime) -> None:
        """Run every step due before ``until``; each yields the delay to its next step."""
        began = time.perf_counter()
        try:
            self._run_until(until)
        finally:
            self.seconds += time.perf_counter() - began

    def _run_until(self, until: datetime) -> None:
        while self._heap and self._heap[0][0] < until:
            at, _n, steps = heapq.heappop(self._heap)
            move_to(self.clock, at)
            delay = next(steps, None)
            if delay is not None:
                self.add(self.clock.now() + max(delay, timedelta(seconds=1)), steps)


def timers(runtime: Runtime) -> Steps:
    """The scheduler's scan every simulated hour; the outbox dispatcher's rounds every few hours."""
    dispatcher = Dispatcher(runtime)
    for tick in itertools.count():
        scheduler.run_due(runtime)
        if tick % DISPATCH_EVERY == 0:
            for _round in range(MAX_ROUNDS):  # what is due now: SMS to the local carrier, webhooks
                if not dispatcher.run_once().claimed:
                    break
        yield TIMER_TICK


def build_world(plan: DemoPlan) -> World:
    """The simulated holders, with their everyday activity scaled to the demo's share."""
    config = SimConfig(
        seed=plan.seed,
        accounts=plan.accounts,
        days=plan.days,
        start=plan.start_date,
        abuse_rate=plan.abuse_rate,
    )
    world = World(config)
    for h in world.holders:
        h.tx_rate *= plan.everyday_share
        h.login_rate *= plan.everyday_share
    return world


def register_world(runtime: Runtime, world: World, integrator: Actor, progress: Progress) -> None:
    """Register every holder (as the integrator would) and import the world's blocklist."""
    progress.phase("holders / 账户", len(world.holders))
    with UnitOfWork(runtime) as uow:
        for n, body in enumerate(world.registrations(), 1):
            holder = body["holder"]
            accounts.register(
                uow,
                accounts.RegisterAccount(
                    account_id=body["id"],
                    holder_name=holder["name"],
                    resident_id=holder.get("resident_id"),
                    phone=holder.get("phone"),
                    bank_cards=tuple(holder.get("bank_cards", [])),
                    kyc_level=body.get("kyc_level", "basic"),
                    vip_tier=body.get("vip_tier", 0),
                    language=body.get("language", "zh-CN"),
                    integrator="demo",
                ),
                integrator,
            )
            if n % 500 == 0:
                progress.advance(500)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(("kind", "value", "reason"))
        writer.writerows((e.kind, e.value, e.reason) for e in world.blocklist)
        if world.blocklist:
            lists.import_csv(uow, text.getvalue(), "block", SETUP, "demo-blocklist.csv")  # the risk team
        uow.commit()
    progress.advance(len(world.holders) % 500)


def create_staff(runtime: Runtime) -> list[StaffLogin]:
    """One console sign-in per role, each with a fresh random password."""
    made = []
    with UnitOfWork(runtime) as uow:
        for username, role in STAFF:
            password = secrets.token_urlsafe(12)
            while username in password.lower():  # the policy refuses a password holding the name
                password = secrets.token_urlsafe(12)
            staff.create_user(uow, username, [role.value], password, SETUP)
            made.append(StaffLogin(username, role, password))
        uow.commit()
    return made


class Timeline:
    """The month, in order: event batches through the engine, the timers, and every case's steps."""

    def __init__(self, runtime: Runtime, clock: FakeClock, plan: DemoPlan, world: World, team: Team) -> None:
        self.rt = runtime
        self.clock = clock
        self.plan = plan
        self.world = world
        self.team = team
        self.labels = {h.account_id: h.label for h in world.holders}
        self.vip = {h.account_id for h in world.holders if h.vip_tier > 0}
        self.engine = RiskEngine(runtime)
        self.planner = CasePlanner(plan.seed)
        self.player = CasePlayer(runtime, team, plan.seed)
        self.agenda = Agenda(clock)
        self.events = 0
        self.ingest_seconds = 0.0

    def run(self, progress: Progress) -> None:
        """Play the month up to the plan's end."""
        self.agenda.add(self.clock.now(), timers(self.rt))
        progress.phase("month / 模拟一个月", self.plan.days)
        last = self.clock.now()
        for day in self.world.stream():
            for batch in _batches(day, self.plan.end):
                at = max(
                    last + timedelta(seconds=1), max(e.occurred_at for e in batch) + timedelta(minutes=1)
                )
                self.agenda.run_until(at)
                move_to(self.clock, at)
                began = time.perf_counter()
                self.engine.ingest(batch, self.team.integrator)
                self.ingest_seconds += time.perf_counter() - began
                self.events += len(batch)
                self._plan_new_freezes(at)
                last = at
            progress.advance()
        self.agenda.run_until(self.plan.end)
        move_to(self.clock, self.plan.end)

    def _plan_new_freezes(self, at: datetime) -> None:
        """Give each freeze the engine just made its story, and start it."""
        with UnitOfWork(self.rt, read_only=True) as uow:
            made = [
                freeze_service.get(uow, r.id)
                for r in uow.conn.execute(
                    select(freeze.c.id)
                    .where(freeze.c.created_at >= at)
                    .order_by(freeze.c.account_id, freeze.c.category, freeze.c.id)
                )
            ]
        for f in made:
            req = self.rt.appeal_requirements.for_category(f.category)
            severe = f.category in self.rt.high_severity
            proof = ""  # what shows the money's story: vouchers for flagged payments, or statements
            if req.voucher_per_flagged_transaction and flagged_transactions(f):
                proof = "vouchers"
            elif {MaterialKind.BANK_STATEMENT, MaterialKind.SOURCE_OF_FUNDS} & set(req.materials):
                proof = "statements"
            facts = FreezeFacts(
                account_id=f.account_id,
                category=f.category.value,
                innocent=self.labels.get(f.account_id, "benign") in INNOCENT,
                vip=f.account_id in self.vip,
                high_severity=severe,
                vouchers=bool(proof),
                self_service=req.self_service is not None and not severe,
                hours_left=(self.plan.end - f.created_at).total_seconds() / 3600,
            )
            story = self.planner.plan(facts)
            case = Case(f.id, f.account_id, f.category.value, story, facts.innocent, proof)
            self.agenda.add(at, self.player.play(case))


def _batches(day: list[dict[str, Any]], end: datetime) -> Iterator[list[Any]]:
    """A day's events (in arrival order) as the integrator's few batches; today's stop at ``end``."""
    events = [e for e in (EVENT_ADAPTER.validate_python(e) for e in day) if e.occurred_at < end]
    if not events:
        return
    size = max(1, -(-len(events) // BATCHES_PER_DAY))
    for i in range(0, len(events), size):
        yield events[i : i + size]


def run(runtime: Runtime, clock: FakeClock, plan: DemoPlan, progress: Progress | None = None) -> DemoResult:
    """Build the demo into ``runtime``'s (empty) database; ``clock`` must be the runtime's clock."""
    progress = progress or NoProgress()
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    move_to(clock, plan.start - SETUP_LEAD)
    world = build_world(plan)
    with UnitOfWork(runtime) as uow:
        key_info, api_key = apikeys.create_key(uow, DEMO_KEY_NAME, ["admin"], SETUP)
        uow.commit()
    integrator = Actor(ActorKind.INTEGRATOR, key_info.id)
    register_world(runtime, world, integrator, progress)
    seconds["holders"] = time.perf_counter() - began
    logins = create_staff(runtime)
    with UnitOfWork(runtime, read_only=True) as uow:
        by_name = {u.username: u for u in staff.list_users(uow)}
    team = Team(
        reviewer=by_name["reviewer"].actor,
        senior=by_name["senior"].actor,
        integrator=integrator,
    )
    timeline = Timeline(runtime, clock, plan, world, team)
    began = time.perf_counter()
    timeline.run(progress)
    seconds["month"] = time.perf_counter() - began
    seconds["engine"] = timeline.ingest_seconds
    seconds["cases_and_timers"] = timeline.agenda.seconds
    move_to(clock, max(plan.end, datetime.now(UTC)))  # the portal link must be good from now on
    scheduler.run_due(runtime)
    link = _portal_link(runtime, team.integrator)
    with UnitOfWork(runtime) as uow:
        runtime.log.checkpoint(uow)  # a signed tree head over the whole month, for the auditor
        uow.commit()
    tally = timeline.player.tally
    return DemoResult(
        api_key=api_key,
        staff=logins,
        portal_link=link,
        events=timeline.events,
        stories=tally.stories,
        outcomes=tally.outcomes,
        refused_incomplete=tally.refused_incomplete,
        interrupted=tally.interrupted,
        seconds={k: round(v, 1) for k, v in seconds.items()},
    )


def _portal_link(runtime: Runtime, integrator: Actor) -> tuple[str, str, datetime] | None:
    """A one-time portal link for a holder whose account is frozen and who has an appeal open."""
    with UnitOfWork(runtime) as uow:
        row = uow.conn.execute(
            select(appeal.c.account_id)
            .join(freeze, freeze.c.id == appeal.c.freeze_id)
            .where(freeze.c.status == "active", appeal.c.status.in_(("submitted", "in_review")))
            .order_by(appeal.c.account_id)
            .limit(1)
        ).first()
        if row is None:
            row = uow.conn.execute(
                select(freeze.c.account_id)
                .where(freeze.c.status == "active")
                .order_by(freeze.c.account_id)
                .limit(1)
            ).first()
        if row is None:
            return None
        _link_id, token, expires = portal.issue_link(uow, row.account_id, integrator)
        uow.commit()
    return row.account_id, token, expires
