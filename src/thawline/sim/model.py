"""The simulation's vocabulary: configuration, holders and their habits, scenario plans, reference tables.

Labels (one per account) are ``benign`` or one of :data:`ABUSE_LABELS`; benign look-alikes carry one
of :data:`LOOKALIKE_TAGS`. Times are Unix milliseconds; days start at midnight UTC+08:00.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

ZONE_OFFSET_MS = 8 * 3_600_000
"""Events are stamped in China Standard Time (UTC+08:00, no daylight saving)."""
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

BENIGN = "benign"
ACCOUNT_TAKEOVER = "account_takeover"
CARD_TESTING = "card_testing"
MULE = "mule"
STRUCTURING = "structuring"
LARGE_TRANSFER = "large_transfer"
BLACKLISTED = "blacklisted"
ABUSE_LABELS = (ACCOUNT_TAKEOVER, CARD_TESTING, MULE, STRUCTURING, LARGE_TRANSFER, BLACKLISTED)
LABELS = (BENIGN, *ABUSE_LABELS)

TRAVEL = "travel"
SALARY_DAY = "salary_day"
SHOPPING_FESTIVAL = "shopping_festival"
NEW_PHONE = "new_phone"
LOOKALIKE_TAGS = (TRAVEL, SALARY_DAY, SHOPPING_FESTIVAL, NEW_PHONE)


@dataclass(frozen=True, slots=True)
class City:
    """A home city: its province code (first two digits of local resident IDs) and ISP address blocks."""

    name: str
    province: str
    ip_blocks: tuple[str, ...]


CITIES = (
    City("Beijing", "11", ("114.242", "123.112", "221.218", "61.48")),
    City("Shanghai", "31", ("101.80", "116.228", "180.166", "58.246")),
    City("Guangzhou", "44", ("113.108", "183.6", "59.41", "219.137")),
    City("Shenzhen", "44", ("119.123", "183.14", "58.60", "113.87")),
    City("Hangzhou", "33", ("115.236", "122.224", "60.191", "183.128")),
    City("Chengdu", "51", ("125.69", "171.221", "182.139", "118.112")),
    City("Wuhan", "42", ("111.172", "221.234", "59.172", "27.17")),
    City("Nanjing", "32", ("180.110", "221.226", "61.155", "114.222")),
    City("Xi'an", "61", ("113.140", "117.36", "124.115", "1.85")),
    City("Tianjin", "12", ("111.160", "60.28", "117.8", "221.238")),
    City("Xiamen", "35", ("110.80", "117.28", "27.154", "218.85")),
    City("Qingdao", "37", ("119.167", "27.223", "60.209", "123.235")),
    City("Shenyang", "21", ("59.46", "124.93", "175.170", "218.25")),
    City("Zhengzhou", "41", ("115.60", "182.118", "123.52", "61.158")),
    City("Changsha", "43", ("175.8", "218.76", "113.246", "222.240")),
    City("Chongqing", "50", ("113.204", "106.91", "222.178", "183.230")),
)
CARRIER_NAT_BLOCKS = ("223.104", "117.136", "112.97", "39.144")
"""Mobile-carrier NAT blocks: many holders share these addresses (a benign confounder for IP links)."""


@dataclass(frozen=True, slots=True)
class Place:
    """A foreign place: ISO country, a city and an address block seen from there."""

    country: str
    city: str
    ip_block: str


TRAVEL_PLACES = (
    Place("JP", "Tokyo", "126.77"),
    Place("JP", "Osaka", "60.33"),
    Place("TH", "Bangkok", "171.96"),
    Place("SG", "Singapore", "118.189"),
    Place("KR", "Seoul", "121.134"),
    Place("FR", "Paris", "90.84"),
    Place("GB", "London", "81.2"),
    Place("AU", "Sydney", "101.160"),
    Place("US", "Los Angeles", "104.28"),
    Place("MY", "Kuala Lumpur", "175.139"),
)
ATTACK_PLACES = (
    Place("KH", "Phnom Penh", "103.216"),
    Place("MM", "Myawaddy", "103.25"),
    Place("PH", "Manila", "112.198"),
    Place("VN", "Ho Chi Minh City", "113.161"),
    Place("NG", "Lagos", "105.112"),
    Place("RU", "Moscow", "95.165"),
    Place("NL", "Amsterdam", "185.220"),
    Place("US", "Ashburn", "45.83"),
)
USER_AGENTS = (
    "ThawPay/6.3.1 (iPhone15,3; iOS 18.1)",
    "ThawPay/6.3.1 (iPhone13,2; iOS 17.6)",
    "ThawPay/6.2.8 (HUAWEI Mate 60; HarmonyOS 4.2)",
    "ThawPay/6.2.8 (Xiaomi 14; Android 14)",
    "ThawPay/6.3.0 (OPPO Find X7; Android 14)",
    "ThawPay/6.3.0 (vivo X100; Android 14)",
    "ThawPay/6.1.5 (HONOR Magic6; Android 14)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/129.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.0 Safari/605.1.15",
)
ATTACKER_USER_AGENTS = (
    "ThawPay/6.0.2 (SM-A515F; Android 11)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/118.0 Safari/537.36",
    "ThawPay/5.9.0 (Redmi Note 8; Android 10)",
)
BLOCKLIST_REASONS = (
    "telecom_fraud_watchlist",
    "law_enforcement_notice",
    "confirmed_fraud_case",
    "sanctions_screening_hit",
    "court_enforcement_list",
)


class SimConfigError(ValueError):
    """A simulation parameter is out of range."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that determines a synthetic world; equal configurations give byte-identical output."""

    seed: int = 7
    accounts: int = 1000
    days: int = 30
    start: date = date(2026, 11, 1)
    abuse_rate: float = 0.02
    lookalike_rate: float = 0.04
    late_fraction: float = 0.005
    max_late_seconds: int = 3600
    reporting_threshold: int = 50_000
    currency: str = "CNY"

    def __post_init__(self) -> None:
        problems = []
        if self.accounts < 1:
            problems.append("accounts must be at least 1")
        if not 1 <= self.days <= 3660:
            problems.append("days must be between 1 and 3660")
        if not 0.0 <= self.abuse_rate <= 1.0:
            problems.append("abuse_rate must be between 0 and 1")
        if not 0.0 <= self.lookalike_rate <= 1.0 or self.abuse_rate + self.lookalike_rate > 1.0:
            problems.append("lookalike_rate must be between 0 and 1 - abuse_rate")
        if not 0.0 <= self.late_fraction <= 0.5:
            problems.append("late_fraction must be between 0 and 0.5")
        if not 30 <= self.max_late_seconds <= 86_400:
            problems.append("max_late_seconds must be between 30 and 86400")
        if self.reporting_threshold < 2000:
            problems.append("reporting_threshold must be at least 2000")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            problems.append("currency must be three capital letters")
        if problems:
            raise SimConfigError("; ".join(problems))

    @property
    def start_ms(self) -> int:
        """Midnight (UTC+08:00) of the first day, in Unix milliseconds."""
        midnight = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return int(midnight.timestamp() * 1000) - ZONE_OFFSET_MS


@dataclass(frozen=True, slots=True)
class Device:
    """A device token and the user agent it reports."""

    id: str
    user_agent: str


# -- Scenario plans: what happens on a given day, decided when the world is built. ----------------------


@dataclass(frozen=True, slots=True)
class TakeoverPlan:
    """Account takeover: odd-hour login from a new device abroad, security changes, large debits."""

    hour: int
    place: Place
    ip: str
    device: Device
    new_phone: str
    failed_logins: int
    debits: int
    bind_device: bool


@dataclass(frozen=True, slots=True)
class CardTestingPlan:
    """Card testing: a burst of tiny debits with many different cards, maybe a cash-out after."""

    hour: int
    attempts: int
    merchants: tuple[str, ...]
    device: Device
    ip: str
    cash_out: bool


@dataclass(slots=True)
class Ring:
    """A mule ring: accounts sharing devices and an address, all paying out to one sink."""

    id: str
    devices: tuple[Device, ...]
    ip: str
    sink: str
    members: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MulePlan:
    """One active day of a ring member: logins from the ring's devices, money in then quickly out."""

    ring: Ring
    cycles: int


@dataclass(frozen=True, slots=True)
class StructuringPlan:
    """Transfers just under the reporting threshold on one day."""

    amounts_cents: tuple[int, ...]
    counterparties: tuple[str, ...]
    direction: str


@dataclass(frozen=True, slots=True)
class LargeTransferPlan:
    """A transfer far above the holder's norm, to a counterparty never paid before."""

    amounts_cents: tuple[int, ...]
    counterparty: str


@dataclass(frozen=True, slots=True)
class SalaryPlan:
    """Benign: a large salary (with bonus) in, then a day of many ordinary purchases."""

    amount_cents: int
    purchases: int


@dataclass(frozen=True, slots=True)
class FestivalPlan:
    """Benign: the 11-11 shopping festival, many normal-sized online purchases around midnight."""

    purchases: int


@dataclass(frozen=True, slots=True)
class NewPhonePlan:
    """Benign: a new phone is bound; later logins come from it, from the usual places and hours."""

    device: Device
    unbind_old: bool


Plan = (
    TakeoverPlan
    | CardTestingPlan
    | MulePlan
    | StructuringPlan
    | LargeTransferPlan
    | SalaryPlan
    | FestivalPlan
    | NewPhonePlan
)


@dataclass(frozen=True, slots=True)
class Trip:
    """Benign: days spent abroad, logging in with the usual device."""

    first_day: int
    last_day: int
    place: Place
    ip: str


@dataclass(slots=True)
class Holder:
    """One account holder: identity (registration only), habits, and ground truth."""

    index: int
    account_id: str
    name: str
    resident_id: str
    phone: str
    cards: tuple[str, ...]
    card_refs: tuple[str, ...]
    kyc_level: str
    vip_tier: int
    language: str
    city: City
    home_ip: str
    devices: list[Device]
    hour_cum: tuple[float, ...]
    amount_mu: float
    amount_sigma: float
    tx_rate: float
    login_rate: float
    mobile_share: float
    salary_day: int | None
    salary_cents: int
    employer: str
    merchants: tuple[str, ...]
    contacts: tuple[str, ...]
    label: str = BENIGN
    tags: list[str] = field(default_factory=list)
    plans: dict[int, list[Plan]] = field(default_factory=dict)
    trip: Trip | None = None
    new_device: Device | None = None
    switch_ms: int = 0
    keeps_old_device: bool = True
    kyc_upgrade_day: int | None = None
    abuse_ids: list[str] = field(default_factory=list)
    seq: int = 0

    @property
    def typical_cents(self) -> int:
        """The median amount of the holder's everyday payments, in cents (exp of the lognormal mu)."""
        return max(100, int(math.exp(self.amount_mu) * 100))

    def registration(self) -> dict[str, Any]:
        """The ``POST /v1/accounts`` body for this holder."""
        return {
            "id": self.account_id,
            "holder": {
                "name": self.name,
                "resident_id": self.resident_id,
                "phone": self.phone,
                "bank_cards": list(self.cards),
            },
            "kyc_level": self.kyc_level,
            "vip_tier": self.vip_tier,
            "language": self.language,
        }

    def add_plan(self, day: int, plan: Plan) -> None:
        """Schedule ``plan`` on ``day`` (0-based within the window)."""
        self.plans.setdefault(day, []).append(plan)


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """One line of the blocklist CSV."""

    kind: str
    value: str
    reason: str


def hex_token(rng: random.Random, prefix: str, nibbles: int = 12) -> str:
    """An opaque token such as ``dev_3f9a…``."""
    return f"{prefix}_{rng.getrandbits(4 * nibbles):0{nibbles}x}"


def avoid_band(cents: int, threshold: int) -> int:
    """Move an amount out of [90 %, 100 %) of the reporting threshold (only structuring lives there)."""
    low, high = threshold * 90, threshold * 100
    return low - 100 * (cents % 50 + 1) if low <= cents < high else cents
