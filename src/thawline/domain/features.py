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

import hashlib
import importlib
import ipaddress
import os
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
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
_SPANS = tuple(WINDOWS.values())
_INDEX = {w: i for i, w in enumerate(WINDOWS)}
_W10M, _W1H = _INDEX["10m"], _INDEX["1h"]
_INF = float("inf")
_TRIM = 1024  # drop transactions that left every window once this many have piled up


class Features(dict[str, Any]):
    """An event's feature values; most are computed only when a rule reads them.

    ``observe`` stores the values the shipped rules read on most events of the type; the others
    come from the account's live state on first read, so read them before its next event is
    observed (each is then kept, so a second read gives the same value).
    """

    __slots__ = ("_event", "_now", "_small", "_state")

    _event: Any
    _now: float
    _small: float
    _state: AccountState

    def __missing__(self, key: str) -> Any:
        compute = _LAZY.get(key)
        if compute is None:
            raise KeyError(key)
        value = compute(self)
        self[key] = value
        return value

    @property
    def _was_txn(self) -> bool:
        return bool(self._event.type == "transaction")

    def baseline(self) -> list[float]:
        """Recent amounts before this event."""
        values = self._state.recent_amounts[-RECENT_AMOUNTS:]
        return values[:-1] if self._was_txn else values

    def window(self, name: str) -> list[tuple[float, float, str, bool]]:
        """A transaction window's items (this event included): (time, amount, counterparty, is credit)."""
        st = self._state
        w = _INDEX[name]
        st.slide(w, self._now)
        i = st.starts[w]
        return list(zip(st.times[i:], st.amounts[i:], st.parties[i:], st.credits[i:], strict=True))

    def complete(self) -> dict[str, Any]:
        """Every feature, computed (for tests and the diagnosis of all values)."""
        return {k: self[k] for k in sorted(FEATURES)}


_EPOCH_DAY = 719163  # date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)
_IP_TRIM = 64  # drop IP sightings that left the hour once this many (or all) have


class AccountState:
    """Everything the engine remembers about one account.

    The transaction windows share one time-ordered list (``times``, ``amounts``, ``parties``,
    ``credits``); each window is the tail from its ``starts`` index, with a running sum. A window
    slides (drops what fell out of it) lazily — when a rule reads it, or before the next transaction
    is added — with exactly the additions and subtractions, in the same order, that sliding it at
    every event would make, so the sums are the same floats. The devices, IPs and counterparties an
    event brings are learnt when the next event arrives (``learning``), so that until then the sets
    still say what was known before it.

    A plain class with slots rather than a dataclass, so that the compiled build (``features.pxd``)
    can make it an extension type with C-typed fields.
    """

    __slots__ = (
        "account_id",
        "amounts",
        "counterparties",
        "credits",
        "daily_ewma",
        "day",
        "days_seen",
        "devices",
        "heads",
        "history_events",
        "history_txns",
        "hours",
        "ip_counts",
        "ip_head",
        "ip_seen",
        "ip_times",
        "ips",
        "kyc_level",
        "last_time",
        "learn_device",
        "learn_ip",
        "learn_party",
        "learn_unbind",
        "learning",
        "learnt_device",
        "learnt_ip",
        "learnt_party",
        "login_failures",
        "near_threshold",
        "newest",
        "parties",
        "parties_1h",
        "profile_changes",
        "recent_amounts",
        "small",
        "small_10m",
        "starts",
        "sums",
        "times",
        "today_count",
    )  # fmt: skip

    account_id: str
    times: list[float]
    amounts: list[float]
    parties: list[str]
    credits: list[bool]
    starts: list[int]
    sums: list[float]
    heads: list[float]  # each window's first time (``times[starts[w]]``), infinite when it is empty
    last_time: float  # the newest transaction time in the windows (``times[-1]``)
    small_10m: int  # transactions in the 10 min window below ``small``
    small: float  # the small-amount threshold ``small_10m`` counts with (set on first use)
    parties_1h: dict[str, int]  # counterparty -> its transactions, 1 h
    recent_amounts: list[float]  # the last RECENT_AMOUNTS (up to twice as many kept between trims)
    history_txns: int
    day: int
    today_count: int
    daily_ewma: float
    days_seen: int
    hours: list[int]
    history_events: int
    devices: set[str]
    ips: set[str]
    counterparties: set[str]
    learning: bool  # whether the previous event left something to learn (``learn_*``)
    learn_device: str | None
    learn_unbind: bool
    learn_ip: str | None
    learn_party: str
    learnt_device: str | None  # the last values added to the sets
    learnt_ip: str | None
    learnt_party: str | None
    ip_times: list[float]  # the IP sightings of the last hour, in arrival order, from ``ip_head``
    ip_seen: list[str]
    ip_head: int
    ip_counts: dict[str, int]  # address -> sightings in ``ip_seen[ip_head:]``
    login_failures: deque[float]
    profile_changes: deque[tuple[float, bool]]
    near_threshold: deque[float]
    kyc_level: str
    newest: float

    def __init__(self, account_id: str, kyc_level: str = "none") -> None:
        self.account_id = account_id
        self.times, self.amounts, self.parties, self.credits = [], [], [], []
        # one entry per window; the literal 5 (len(WINDOWS)) lets the compiled build fill C arrays
        self.starts = [0] * 5
        self.sums = [0.0] * 5
        self.heads = [_INF] * 5
        self.last_time = 0.0
        self.small_10m = 0
        self.small = -1.0
        self.parties_1h = {}
        self.recent_amounts = []
        self.history_txns = 0
        self.day = -1
        self.today_count = 0
        self.daily_ewma = 0.0
        self.days_seen = 0
        self.hours = [0] * 24
        self.history_events = 0
        self.devices, self.ips, self.counterparties = set(), set(), set()
        self.learning = False
        self.learn_device, self.learn_unbind, self.learn_ip, self.learn_party = None, False, None, ""
        self.learnt_device = self.learnt_ip = self.learnt_party = None
        self.ip_times, self.ip_seen, self.ip_head = [], [], 0
        self.ip_counts = {}
        self.login_failures = deque()
        self.profile_changes = deque()
        self.near_threshold = deque()
        self.kyc_level = kyc_level
        self.newest = 0.0

    def __repr__(self) -> str:
        return (
            f"AccountState({self.account_id!r}, events={self.history_events}, kyc_level={self.kyc_level!r})"
        )

    def observe(  # noqa: PLR0912, PLR0915 — one pass over one event, by design
        self, event: Any, ranges: IpRanges, thresholds: Thresholds
    ) -> Features:
        """Fold ``event`` in and return its feature values (read before the event updates the baselines).

        Read the result before observing the account's next event: most values are computed on
        first read from the state as it is now.
        """
        data: dict[str, Any] = event.__dict__  # the model's fields: one lookup each, no attribute protocol
        at: datetime = data["occurred_at"]
        delta = at.utcoffset()
        if delta is None:
            raise ValueError("occurred_at needs a time zone")
        hour = at.hour
        # at.timestamp(), exactly (the same integer microseconds over 10**6), at a fraction of the cost
        ts = (
            (at.toordinal() - _EPOCH_DAY) * 86_400_000_000
            + ((hour * 60 + at.minute) * 60 + at.second) * 1_000_000
            + at.microsecond
            - delta // _MICROSECOND
        ) / 1_000_000
        before = self.newest
        now = self.newest = ts if ts > before else before
        if self.learning:
            self._learn()
        kind = data["type"]
        self.hours[hour] += 1
        self.history_events += 1
        ip_times, ip_seen, counts = self.ip_times, self.ip_seen, self.ip_counts
        if kind in {"transaction", "login"}:
            ip = data["ip"]
            if ip:
                cached = ranges.cache.get(ip)
                is_proxy, bad_rep = cached if cached is not None else ranges.classify(ip)
                ip_times.append(ts)
                ip_seen.append(ip)
                counts[ip] = counts.get(ip, 0) + 1
            else:
                is_proxy = bad_rep = False
        else:
            ip, is_proxy, bad_rep = None, False, False
        edge = now - 3600
        head = self.ip_head
        n = len(ip_times)
        if head < n and ip_times[head] <= edge:
            while head < n and ip_times[head] <= edge:
                gone = ip_seen[head]
                left = counts[gone] - 1
                if left:
                    counts[gone] = left
                else:
                    del counts[gone]
                head += 1
            if head >= _IP_TRIM or head == n:  # a quiet account keeps nothing
                del ip_times[:head], ip_seen[:head]
                head = 0
            self.ip_head = head
        n_ips = len(counts)
        changes = self.profile_changes
        if kind == "profile_change":
            changes.append((ts, data["field"] in SENSITIVE_FIELDS))
        while changes and changes[0][0] <= now - 86400:
            changes.popleft()
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
        f = Features()
        f["event_type"] = kind
        if kind == "transaction":
            amount = float(data["amount"])
            party = data["counterparty"] or ""
            direction = data["direction"]
            near = self.near_threshold
            if thresholds.near_low <= amount < thresholds.reporting:
                near.append(ts)
            while near and near[0] <= now - 604800:
                near.popleft()
            recent = self.recent_amounts
            recent.append(amount)
            if len(recent) >= 2 * RECENT_AMOUNTS:
                del recent[:RECENT_AMOUNTS]
            self.history_txns += 1
            if day == self.day:
                self.today_count += 1
            small = thresholds.small
            if self.small < 0:
                self.small = small
            self._add(ts, amount, party, direction == "credit", before)
            self.learning = True
            self.learn_device, self.learn_unbind, self.learn_ip, self.learn_party = (
                data["device_id"],
                False,
                ip,
                party,
            )
            f["amount"] = amount
            f["direction"] = direction
            f["txn_count_10m"] = len(self.times) - self.starts[_W10M]
            f["small_txn_count_10m"] = self.small_10m if small == self.small else self._smalls(small)
            f["distinct_counterparties_1h"] = len(self.parties_1h)
            f["near_threshold_7d"] = len(near)
            f["kyc_rank"] = KYC_RANK.get(self.kyc_level, 0)
        elif kind == "login":
            success = data["success"]
            failures = self.login_failures
            if not success:
                failures.append(ts)
            while failures and failures[0] <= edge:
                failures.popleft()
            device = data["device_id"]
            devices = self.devices
            if success:
                self.learning = True
                self.learn_device, self.learn_unbind, self.learn_ip, self.learn_party = device, False, ip, ""
            f["success"] = success
            f["new_device"] = bool(device) and bool(devices) and device not in devices
            f["login_failures_1h"] = len(failures)
        elif kind == "kyc_update":
            self.kyc_level = data["level"]
        elif kind == "device_binding":
            self.learning = True
            self.learn_device, self.learn_unbind, self.learn_ip, self.learn_party = (
                data["device_id"],
                data["action"] == "unbind",
                None,
                "",
            )
        f["ip_is_proxy"] = is_proxy
        f["ip_bad_reputation"] = bad_rep
        f["ip_changes_1h"] = n_ips - 1 if n_ips > 1 else 0
        f["profile_changes_24h"] = len(changes)
        f["blacklisted"] = False
        f["linked_risk_accounts"] = 0
        f._state, f._event, f._now, f._small = self, event, now, thresholds.small
        return f

    def _learn(self) -> None:
        """Remember the device, IP and counterparty of the previous event (see ``learning``).

        A value equal to the one learnt last is in its set already: the set is not touched.
        """
        self.learning = False
        device = self.learn_device
        if device:
            if self.learn_unbind:
                self.devices.discard(device)
                self.learnt_device = None
            elif device != self.learnt_device:
                self.devices.add(device)
                self.learnt_device = device
        ip = self.learn_ip
        if ip and ip != self.learnt_ip:
            self.ips.add(ip)
            self.learnt_ip = ip
        party = self.learn_party
        if party and party != self.learnt_party:
            self.counterparties.add(party)
            self.learnt_party = party

    def _smalls(self, small: float) -> int:
        """Transactions in the 10 min window below ``small`` (a threshold other than the counted one)."""
        return sum(1 for a in self.amounts[self.starts[_W10M] :] if a < small)

    def _add(self, ts: float, amount: float, party: str, credit: bool, before: float) -> None:  # noqa: PLR0912, PLR0915
        """Put a transaction into the windows and slide them all to ``self.newest``.

        The float operations on each running sum are those of sliding at every event: first what
        fell out before this event (up to ``before``, the newest time until now), then the addition,
        then what falls out now. A window's first time (``heads``) answers "does anything fall
        out?" without reading the list, which is what most transactions ask of the long windows.
        """
        times, amounts = self.times, self.amounts
        now = self.newest
        n = len(times)
        if n and ts < self.last_time:  # late: it lands where its time says
            for w in range(len(_SPANS)):
                self.slide(w, before)
            self._insert(ts, amount, party, credit)
            for w in range(len(_SPANS)):
                self.slide(w, now)
            return
        times.append(ts)
        amounts.append(amount)
        self.parties.append(party)
        self.credits.append(credit)
        self.last_time = ts
        was_10m, was_1h = self.starts[_W10M], self.starts[_W1H]
        for w in range(len(_SPANS)):
            span = _SPANS[w]
            i = self.starts[w]
            total = self.sums[w]
            edge = before - span
            if i < n and self.heads[w] <= edge:
                while i < n and times[i] <= edge:
                    total -= amounts[i]
                    i += 1
                head = times[i]  # index n is this transaction
            else:
                head = self.heads[w] if i < n else ts
            total += amount
            edge = now - span
            while head <= edge:  # through index n, this transaction
                total -= amounts[i]
                i += 1
                head = times[i] if i <= n else _INF
            self.sums[w] = total
            self.starts[w] = i
            self.heads[w] = head
        small = self.small
        below = self.small_10m + (amount < small)
        for j in range(was_10m, self.starts[_W10M]):
            if amounts[j] < small:
                below -= 1
        self.small_10m = below
        counts = self.parties_1h
        if party:
            counts[party] = counts.get(party, 0) + 1
        parties = self.parties
        for j in range(was_1h, self.starts[_W1H]):
            gone = parties[j]
            if gone:
                left = counts[gone] - 1
                if left:
                    counts[gone] = left
                else:
                    del counts[gone]
        if self.starts[len(_SPANS) - 1] >= _TRIM:
            first = min(self.starts)
            del times[:first], amounts[:first], self.parties[:first], self.credits[:first]
            for w in range(len(_SPANS)):
                self.starts[w] -= first

    def _insert(self, ts: float, amount: float, party: str, credit: bool) -> None:
        """A late transaction: into the list where its time says; a window it is too old for counts
        it and drops it at once (what sliding a time-ordered queue does)."""
        times = self.times
        i = len(times)
        while i and times[i - 1] > ts:
            i -= 1
        times.insert(i, ts)
        self.amounts.insert(i, amount)
        self.parties.insert(i, party)
        self.credits.insert(i, credit)
        n = len(times)
        for w in range(len(_SPANS)):
            total = self.sums[w] + amount
            if i < self.starts[w]:
                self.starts[w] += 1
                total -= amount
            elif w == _W10M:
                if amount < self.small:
                    self.small_10m += 1
            elif w == _W1H and party:
                self.parties_1h[party] = self.parties_1h.get(party, 0) + 1
            self.sums[w] = total
            start = self.starts[w]
            self.heads[w] = times[start] if start < n else _INF

    def slide(self, w: int, now: float) -> None:
        """Drop from window ``w`` (an index into WINDOWS) the transactions at or before ``now`` - span."""
        edge = now - _SPANS[w]
        if self.heads[w] > edge:  # nothing falls out (an empty window's head is infinite)
            return
        times = self.times
        end = self.starts[w]
        n = len(times)
        amounts = self.amounts
        total = self.sums[w]
        if w == _W10M:
            small, below = self.small, self.small_10m
            while end < n and times[end] <= edge:
                a = amounts[end]
                total -= a
                if a < small:
                    below -= 1
                end += 1
            self.small_10m = below
        elif w == _W1H:
            counts, parties = self.parties_1h, self.parties
            while end < n and times[end] <= edge:
                total -= amounts[end]
                party = parties[end]
                if party:
                    left = counts[party] - 1
                    if left:
                        counts[party] = left
                    else:
                        del counts[party]
                end += 1
        else:
            while end < n and times[end] <= edge:
                total -= amounts[end]
                end += 1
        self.sums[w] = total
        self.starts[w] = end
        self.heads[w] = times[end] if end < n else _INF


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


def _count(w: int) -> Any:
    def compute(f: Features) -> int:
        st = f._state
        st.slide(w, f._now)
        return len(st.times) - st.starts[w]

    return compute


def _sum(w: int) -> Any:
    def compute(f: Features) -> float:
        st = f._state
        st.slide(w, f._now)
        return st.sums[w]

    return compute


def _small_10m(f: Features) -> int:
    st = f._state
    st.slide(_W10M, f._now)
    return st.small_10m if f._small == st.small else st._smalls(f._small)


def _distinct_1h(f: Features) -> int:
    st = f._state
    st.slide(_W1H, f._now)
    return len(st.parties_1h)


def _device(e: Any) -> str | None:
    return e.device_id if e.type in ("login", "transaction", "device_binding") else None


def _ip(e: Any) -> str | None:
    return e.ip if e.type in ("login", "transaction") else None


def _new_device(f: Features) -> bool:
    device, known = _device(f._event), f._state.devices  # learnt only when the next event arrives
    return bool(device) and bool(known) and device not in known


def _new_ip(f: Features) -> bool:
    ip, known = _ip(f._event), f._state.ips
    return bool(ip) and bool(known) and ip not in known


def _new_counterparty(f: Features) -> bool:
    e = f._event
    if e.type != "transaction":
        return False
    party, seen = e.counterparty or "", f._state.counterparties
    return bool(party) and bool(seen) and party not in seen


def _hour_share(f: Features) -> float:
    st = f._state
    total = st.history_events - 1  # before this event
    return (st.hours[f._event.occurred_at.hour] - 1) / total if total else 1.0


def _login_failures_1h(f: Features) -> int:
    failures, edge = f._state.login_failures, f._now - 3600
    while failures and failures[0] <= edge:
        failures.popleft()
    return len(failures)


def _near_threshold_7d(f: Features) -> int:
    near, edge = f._state.near_threshold, f._now - 604800
    while near and near[0] <= edge:
        near.popleft()
    return len(near)


def _txn_field(name: str, default: Any) -> Any:
    def compute(f: Features) -> Any:
        e = f._event
        return (getattr(e, name) or default) if e.type == "transaction" else default

    return compute


_LAZY: dict[str, Any] = {
    **{COUNT_KEYS[w]: _count(i) for w, i in _INDEX.items()},
    **{SUM_KEYS[w]: _sum(i) for w, i in _INDEX.items()},
    "amount": lambda f: float(f._event.amount) if f._was_txn else 0.0,
    "currency": _txn_field("currency", ""),
    "direction": _txn_field("direction", ""),
    "channel": _txn_field("channel", ""),
    "hour": lambda f: f._event.occurred_at.hour,
    "success": lambda f: f._event.success if f._event.type == "login" else True,
    "amount_median": _median,
    "amount_mad": _mad,
    "amount_max": _max,
    "small_txn_count_10m": _small_10m,
    "distinct_counterparties_1h": _distinct_1h,
    "credit_sum_1h": _credit_sum_1h,
    "new_counterparty": _new_counterparty,
    "history_txns": lambda f: f._state.history_txns - f._was_txn,
    "daily_count_ewma": lambda f: f._state.daily_ewma,
    "today_txn_count": lambda f: f._state.today_count,
    "hour_share": _hour_share,
    "history_events": lambda f: f._state.history_events - 1,
    "new_device": _new_device,
    "new_ip": _new_ip,
    "known_devices": lambda f: len(f._state.devices),
    "login_failures_1h": _login_failures_1h,
    "sensitive_changes_24h": lambda f: sum(1 for _t, sens in f._state.profile_changes if sens),
    "profile_field": lambda f: f._event.field if f._event.type == "profile_change" else "",
    "near_threshold_24h": lambda f: sum(1 for t in f._state.near_threshold if t > f._now - 86400),
    "near_threshold_7d": _near_threshold_7d,
    "kyc_rank": lambda f: KYC_RANK.get(f._state.kyc_level, 0),
}


def _compiled() -> Any:
    """The compiled build of this module (``tools/build_accel.py``) if present and built from this
    very text; None otherwise (or when ``THAWLINE_PURE_PYTHON`` is set)."""
    if __name__ != "thawline.domain.features" or os.environ.get("THAWLINE_PURE_PYTHON"):
        return None  # the compiled module itself, or a test loading the plain one
    try:
        compiled = importlib.import_module("thawline.domain._features_c")
    except ImportError:
        return None
    if getattr(compiled, "SOURCE_SHA256", None) != hashlib.sha256(Path(__file__).read_bytes()).hexdigest():
        warnings.warn(
            "thawline.domain._features_c was built from another version of features.py; using the "
            "plain module (run `make install` or `python tools/build_accel.py` to rebuild it)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return compiled


_FAST = _compiled()
ACCELERATED = _FAST is not None  # whether the compiled build is in use
if _FAST is not None:
    # The compiled classes replace the plain ones; everything else here is the same code.
    globals().update(
        {name: getattr(_FAST, name) for name in ("IpRanges", "Thresholds", "Features", "AccountState")}
    )
