"""Per-account features, computed incrementally as events arrive.

One :class:`AccountState` per account holds sliding windows (1 min, 10 min, 1 h, 24 h, 7 d) of
transactions, recent amounts for a robust baseline (median and MAD), an exponentially weighted
daily count, an hour-of-day histogram of the holder's activity, and the devices, IPs and
counterparties seen before. ``observe`` folds one event in and returns the feature values the
rules read for that event. State is rebuilt from stored events after a restart, oldest first.

Late events (an ``occurred_at`` before the newest one seen) are inserted into the windows in time
order — they count in the windows that still cover their time — and never start a new day.
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
        "credit_sum_1h",
        "new_counterparty",
        "amount_median",
        "amount_mad",
        "amount_max",
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
    cache: dict[str, tuple[bool, bool]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, proxy: Iterable[str], bad: Iterable[str]) -> IpRanges:
        """Parse CIDR strings (a bad one raises ValueError naming it)."""
        return cls(
            tuple(ipaddress.ip_network(c, strict=False) for c in proxy),
            tuple(ipaddress.ip_network(c, strict=False) for c in bad),
        )

    def classify(self, ip: str | None) -> tuple[bool, bool]:
        """(is a proxy/VPN/Tor address, has a bad reputation); answers are cached per address."""
        if not ip:
            return False, False
        cached = self.cache.get(ip)
        if cached is not None:
            return cached
        answer = self._classify(ip)
        if len(self.cache) > 100_000:
            self.cache.clear()
        self.cache[ip] = answer
        return answer

    def _classify(self, ip: str) -> tuple[bool, bool]:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False, True  # an unparseable address is itself suspicious
        return any(addr in n for n in self.proxy), any(addr in n for n in self.bad_reputation)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Fixed parameters of the feature definitions (floats precomputed for the hot path)."""

    small_amount: Decimal = Decimal(10)
    reporting_threshold: Decimal = Decimal(50_000)
    near_fraction: Decimal = Decimal("0.9")
    ewma_alpha: float = 0.2
    small: float = field(init=False, repr=False)
    near_low: float = field(init=False, repr=False)
    reporting: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "small", float(self.small_amount))
        object.__setattr__(self, "reporting", float(self.reporting_threshold))
        object.__setattr__(self, "near_low", float(self.reporting_threshold * self.near_fraction))


COUNT_KEYS = {w: f"txn_count_{w}" for w in WINDOWS}
SUM_KEYS = {w: f"txn_sum_{w}" for w in WINDOWS}
_WINDOW_KEYS = tuple((w, span, COUNT_KEYS[w], SUM_KEYS[w]) for w, span in WINDOWS.items())


class Features(dict[str, Any]):
    """An event's feature values; the costlier ones are computed only when a rule reads them.

    The lazy values read the account's live state, so read them before its next event is observed.
    """

    __slots__ = ("_now", "_small", "_state", "_was_txn")

    def __init__(
        self, values: dict[str, Any], state: AccountState, was_txn: bool, now: float, small: float
    ) -> None:
        super().__init__(values)
        self._state, self._was_txn, self._now, self._small = state, was_txn, now, small

    def __missing__(self, key: str) -> Any:
        compute = _LAZY.get(key)
        if compute is None:
            raise KeyError(key)
        value = compute(self)
        self[key] = value
        return value

    def baseline(self) -> list[float]:
        """Recent amounts before this event."""
        values = list(self._state.recent_amounts)
        return values[:-1] if self._was_txn else values

    def window(self, name: str) -> list[tuple[float, float, str, bool]]:
        """A transaction window's items (this event included)."""
        return list(self._state.windows[name])

    def complete(self) -> dict[str, Any]:
        """Every feature, computed (for tests and the diagnosis of all values)."""
        return {k: self[k] for k in sorted(FEATURES)}


@dataclass(slots=True)
class AccountState:
    """Everything the engine remembers about one account."""

    account_id: str
    windows: dict[str, deque[tuple[float, float, str, bool]]] = field(
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
    ) -> Features:
        """Fold ``event`` in and return its feature values (read before the event updates the baselines).

        Read the result before observing the account's next event: the costlier values are computed
        on first read from the state as it is now.
        """
        at: datetime = event.occurred_at
        ts = at.timestamp()
        self.newest = max(self.newest, ts)
        now = self.newest
        kind = event.type
        is_txn = kind == "transaction"
        is_login = kind == "login"
        ip = event.ip if is_login or is_txn else None
        device = event.device_id if kind in ("login", "transaction", "device_binding") else None
        success = event.success if is_login else True
        is_proxy, bad_rep = ranges.classify(ip) if ip else (False, False)
        hour = at.hour
        hours = self.hours
        total = self.history_events
        f: dict[str, Any] = {
            "event_type": kind,
            "amount": 0.0,
            "currency": "",
            "direction": "",
            "channel": "",
            "hour": hour,
            "success": success,
            "new_device": bool(device) and bool(self.devices) and device not in self.devices,
            "new_ip": bool(ip) and bool(self.ips) and ip not in self.ips,
            "known_devices": len(self.devices),
            "ip_is_proxy": is_proxy,
            "ip_bad_reputation": bad_rep,
            "new_counterparty": False,
            "profile_field": event.field if kind == "profile_change" else "",
            "kyc_rank": KYC_RANK.get(self.kyc_level, 0),
            "blacklisted": False,
            "linked_risk_accounts": 0,
            "hour_share": hours[hour] / total if total else 1.0,
            "history_events": total,
            "history_txns": self.history_txns,
        }
        hours[hour] += 1
        self.history_events += 1
        recent_ips = self.recent_ips
        if ip:
            recent_ips.append((ts, ip))
        while recent_ips and recent_ips[0][0] <= now - 3600:
            recent_ips.popleft()
        failures = self.login_failures
        if is_login and not success:
            failures.append(ts)
        while failures and failures[0] <= now - 3600:
            failures.popleft()
        f["login_failures_1h"] = len(failures)
        changes = self.profile_changes
        if kind == "profile_change":
            changes.append((ts, event.field in SENSITIVE_FIELDS))
        while changes and changes[0][0] <= now - 86400:
            changes.popleft()
        f["profile_changes_24h"] = len(changes)
        if kind == "kyc_update":
            self.kyc_level = event.level
            f["kyc_rank"] = KYC_RANK[event.level]
        day = int(ts // 86400)
        if day > self.day:  # only forward: a late event from an earlier day does not start a new one
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
        windows, sums = self.windows, self.sums
        if is_txn:
            amount = float(event.amount)
            counterparty = event.counterparty or ""
            f["amount"] = amount
            f["currency"] = event.currency
            f["direction"] = event.direction
            f["channel"] = event.channel or ""
            seen = self.counterparties
            f["new_counterparty"] = bool(counterparty) and bool(seen) and counterparty not in seen
            item = (ts, amount, counterparty, event.direction == "credit")
            if thresholds.near_low <= amount < thresholds.reporting:
                self.near_threshold.append(ts)
            self.recent_amounts.append(amount)
            self.history_txns += 1
            if day == self.day:
                self.today_count += 1
            if counterparty:
                seen.add(counterparty)
        else:
            item, amount = None, 0.0
        for w, span, count_key, sum_key in _WINDOW_KEYS:
            q = windows[w]
            running = sums[w]
            if item is not None:
                if q and ts < q[-1][0]:  # a late event: insert it in time order, the oldest stays left
                    i = len(q)
                    while i and q[i - 1][0] > ts:
                        i -= 1
                    q.insert(i, item)
                else:
                    q.append(item)
                running += amount
            edge = now - span
            while q and q[0][0] <= edge:
                running -= q.popleft()[1]
            sums[w] = running
            f[count_key] = len(q)
            f[sum_key] = running
        near = self.near_threshold
        while near and near[0] <= now - 604800:
            near.popleft()
        f["near_threshold_7d"] = len(near)
        f["today_txn_count"] = self.today_count
        if device and success:
            if kind == "device_binding" and event.action == "unbind":
                self.devices.discard(device)
            else:
                self.devices.add(device)
        if ip and success:
            self.ips.add(ip)
        return Features(f, self, is_txn, now, thresholds.small)


def _median(f: Features) -> float:
    values = f.baseline()
    return median(values) if values else 0.0


def _mad(f: Features) -> float:
    values = f.baseline()
    if not values:
        return 0.0
    m = median(values)
    return median(abs(a - m) for a in values)


def _max(f: Features) -> float:
    values = f.baseline()
    return max(values) if values else 0.0


def _credit_sum_1h(f: Features) -> float:
    # Money that came in during the last hour (before this event): mules pass it straight on.
    items = f.window("1h")
    if f._was_txn:
        items = items[:-1]
    return sum(a for _t, a, _c, is_in in items if is_in)


_LAZY: dict[str, Any] = {
    "amount_median": _median,
    "amount_mad": _mad,
    "amount_max": _max,
    "small_txn_count_10m": lambda f: sum(1 for _t, a, _c, _in in f.window("10m") if a < f._small),
    "distinct_counterparties_1h": lambda f: len({c for _t, _a, c, _in in f.window("1h") if c}),
    "credit_sum_1h": _credit_sum_1h,
    "ip_changes_1h": lambda f: max(len({i for _t, i in f._state.recent_ips}) - 1, 0),
    "sensitive_changes_24h": lambda f: sum(1 for _t, sens in f._state.profile_changes if sens),
    "near_threshold_24h": lambda f: sum(1 for t in f._state.near_threshold if t > f._now - 86400),
}
