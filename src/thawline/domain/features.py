"""Per-account features, computed incrementally as events arrive.

One :class:`AccountState` per account holds sliding windows (1 min, 10 min, 1 h, 24 h, 7 d) of
transactions, recent amounts for a robust baseline (median and MAD), an exponentially weighted
daily count, an hour-of-day histogram of the holder's activity, and the devices, IPs and
counterparties seen before. ``observe`` folds one event in and returns the feature values the
rules read for that event. State is rebuilt from stored events after a restart, oldest first.

Late events (an ``occurred_at`` before the newest one seen) are folded in where they arrive: they
count in the windows that still cover their time and are evicted with them.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from statistics import median
from typing import Any

WINDOWS = {"1m": 60.0, "10m": 600.0, "1h": 3600.0, "24h": 86400.0, "7d": 604800.0}
RECENT_AMOUNTS = 64
SENSITIVE_FIELDS = frozenset({"phone", "password", "bank_card"})
KYC_RANK = {"none": 0, "basic": 1, "full": 2}

# Every name a rule may read; ``observe`` fills all of them.
FEATURES = frozenset(
    {
        "event_type",
        "amount",
        "currency",
        "direction",
        "channel",
        "hour",
        "success",
        *(f"txn_count_{w}" for w in WINDOWS),
        *(f"txn_sum_{w}" for w in WINDOWS),
        "small_txn_count_10m",
        "distinct_counterparties_1h",
        "new_counterparty",
        "amount_median",
        "amount_mad",
        "history_txns",
        "daily_count_ewma",
        "today_txn_count",
        "hour_share",
        "history_events",
        "new_device",
        "new_ip",
        "known_devices",
        "ip_changes_1h",
        "login_failures_1h",
        "ip_is_proxy",
        "ip_bad_reputation",
        "profile_changes_24h",
        "sensitive_changes_24h",
        "profile_field",
        "near_threshold_24h",
        "near_threshold_7d",
        "kyc_rank",
        "blacklisted",
        "linked_risk_accounts",
    }
)


@dataclass(frozen=True, slots=True)
class IpRanges:
    """Configurable CIDR lists: proxies, VPN exits and Tor nodes; addresses with a bad reputation."""

    proxy: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    bad_reputation: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, proxy: Iterable[str], bad: Iterable[str]) -> IpRanges:
        """Parse CIDR strings (a bad one raises ValueError naming it)."""
        return cls(
            tuple(ipaddress.ip_network(c, strict=False) for c in proxy),
            tuple(ipaddress.ip_network(c, strict=False) for c in bad),
        )

    def classify(self, ip: str | None) -> tuple[bool, bool]:
        """(is a proxy/VPN/Tor address, has a bad reputation)."""
        if not ip:
            return False, False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False, True  # an unparseable address is itself suspicious
        return any(addr in n for n in self.proxy), any(addr in n for n in self.bad_reputation)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Fixed parameters of the feature definitions."""

    small_amount: Decimal = Decimal(10)
    reporting_threshold: Decimal = Decimal(50_000)
    near_fraction: Decimal = Decimal("0.9")
    ewma_alpha: float = 0.2


@dataclass(slots=True)
class AccountState:
    """Everything the engine remembers about one account."""

    account_id: str
    windows: dict[str, deque[tuple[float, float, str]]] = field(
        default_factory=lambda: {w: deque() for w in WINDOWS}
    )
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(WINDOWS, 0.0))
    recent_amounts: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_AMOUNTS))
    history_txns: int = 0
    day: int = -1
    today_count: int = 0
    daily_ewma: float = 0.0
    days_seen: int = 0
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    history_events: int = 0
    devices: set[str] = field(default_factory=set)
    ips: set[str] = field(default_factory=set)
    counterparties: set[str] = field(default_factory=set)
    recent_ips: deque[tuple[float, str]] = field(default_factory=deque)
    login_failures: deque[float] = field(default_factory=deque)
    profile_changes: deque[tuple[float, bool]] = field(default_factory=deque)
    near_threshold: deque[float] = field(default_factory=deque)
    kyc_level: str = "none"
    newest: float = 0.0

    def observe(  # noqa: PLR0912, PLR0915 — one pass over one event, by design
        self, event: Any, ranges: IpRanges, thresholds: Thresholds
    ) -> dict[str, Any]:
        """Fold ``event`` in and return its feature values (read before the event updates the baselines)."""
        at: datetime = event.occurred_at
        ts = at.timestamp()
        self.newest = max(self.newest, ts)
        now = self.newest
        kind = event.type
        ip = getattr(event, "ip", None)
        device = getattr(event, "device_id", None)
        is_proxy, bad_rep = ranges.classify(ip)
        f: dict[str, Any] = {
            "event_type": kind,
            "amount": 0.0,
            "currency": "",
            "direction": "",
            "channel": "",
            "hour": at.hour,
            "success": getattr(event, "success", True),
            "new_device": bool(device) and device not in self.devices and bool(self.devices),
            "new_ip": bool(ip) and ip not in self.ips and bool(self.ips),
            "known_devices": len(self.devices),
            "ip_is_proxy": is_proxy,
            "ip_bad_reputation": bad_rep,
            "new_counterparty": False,
            "profile_field": getattr(event, "field", ""),
            "kyc_rank": KYC_RANK.get(self.kyc_level, 0),
            "blacklisted": False,
            "linked_risk_accounts": 0,
        }
        total = sum(self.hours)
        f["hour_share"] = self.hours[at.hour] / total if total else 1.0
        f["history_events"] = self.history_events
        self.hours[at.hour] += 1
        self.history_events += 1
        if ip:
            self.recent_ips.append((ts, ip))
        while self.recent_ips and self.recent_ips[0][0] < now - 3600:
            self.recent_ips.popleft()
        f["ip_changes_1h"] = max(len({i for _t, i in self.recent_ips}) - 1, 0)

        if kind == "login" and not event.success:
            self.login_failures.append(ts)
        while self.login_failures and self.login_failures[0] < now - 3600:
            self.login_failures.popleft()
        f["login_failures_1h"] = len(self.login_failures)

        if kind == "profile_change":
            self.profile_changes.append((ts, event.field in SENSITIVE_FIELDS))
        while self.profile_changes and self.profile_changes[0][0] < now - 86400:
            self.profile_changes.popleft()
        f["profile_changes_24h"] = len(self.profile_changes)
        f["sensitive_changes_24h"] = sum(1 for _t, s in self.profile_changes if s)
        if kind == "kyc_update":
            self.kyc_level = event.level
            f["kyc_rank"] = KYC_RANK[event.level]

        amounts = self.recent_amounts
        f["amount_median"] = median(amounts) if amounts else 0.0
        f["amount_mad"] = median(abs(a - f["amount_median"]) for a in amounts) if amounts else 0.0
        f["history_txns"] = self.history_txns
        day = int(ts // 86400)
        if day != self.day:
            if self.day >= 0:
                a = thresholds.ewma_alpha
                self.daily_ewma = (
                    self.today_count
                    if self.days_seen == 0
                    else a * self.today_count + (1 - a) * self.daily_ewma
                )
                self.days_seen += 1
            self.day, self.today_count = day, 0
        f["daily_count_ewma"] = self.daily_ewma

        if kind == "transaction":
            amount = float(event.amount)
            counterparty = event.counterparty or ""
            f.update(
                amount=amount, currency=event.currency, direction=event.direction, channel=event.channel or ""
            )
            f["new_counterparty"] = (
                bool(counterparty) and counterparty not in self.counterparties and bool(self.counterparties)
            )
            for w, span in WINDOWS.items():
                q = self.windows[w]
                q.append((ts, amount, counterparty))
                self.sums[w] += amount
                while q and q[0][0] <= now - span:
                    self.sums[w] -= q.popleft()[1]
            low = float(thresholds.reporting_threshold * thresholds.near_fraction)
            if low <= amount < float(thresholds.reporting_threshold):
                self.near_threshold.append(ts)
            amounts.append(amount)
            self.history_txns += 1
            self.today_count += 1
            if counterparty:
                self.counterparties.add(counterparty)
        else:
            for w, span in WINDOWS.items():
                q = self.windows[w]
                while q and q[0][0] <= now - span:
                    self.sums[w] -= q.popleft()[1]
        for w in WINDOWS:
            f[f"txn_count_{w}"] = len(self.windows[w])
            f[f"txn_sum_{w}"] = round(self.sums[w], 6)
        small = float(thresholds.small_amount)
        f["small_txn_count_10m"] = sum(1 for _t, a, _c in self.windows["10m"] if a < small)
        f["distinct_counterparties_1h"] = len({c for _t, _a, c in self.windows["1h"] if c})
        while self.near_threshold and self.near_threshold[0] < now - 604800:
            self.near_threshold.popleft()
        f["near_threshold_7d"] = len(self.near_threshold)
        f["near_threshold_24h"] = sum(1 for t in self.near_threshold if t >= now - 86400)
        f["today_txn_count"] = self.today_count
        if device and (kind != "login" or event.success):
            self.devices.add(device)
        if ip and (kind != "login" or event.success):
            self.ips.add(ip)
        return f
