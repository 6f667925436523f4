"""The live engine's features, computed column-wise over a whole history at once (Polars).

:mod:`thawline.domain.features` folds one event at a time into an account's state; a backtest
replays millions of events, so here every feature named in :data:`~thawline.domain.features.FEATURES`
is computed for many events together, with the same definitions:

- events are taken per account in time order (ties in arrival order) — the order in which the
  engine evaluates a batch, which it sorts by ``occurred_at``;
- a sliding window of span ``s`` at an event at time ``t`` holds the account's earlier events (and
  the event itself) with a time after ``t - s``, exactly the engine's eviction rule.

Like the engine, which computes its costlier features only when a rule reads them, a feature is
computed only *at the rows that need it* (:meth:`FeatureFrame.at`): :mod:`thawline.domain.backtest`
narrows each rule's rows with its cheap conjuncts first, so the costly features are computed on
few rows. How each kind is computed, for ``r`` rows out of ``n``:

- per-event values (type, amount, hour, KYC level, account start, history counts) are columns of
  the sorted frame, built once in a few passes over ``n``;
- window counts and sums are differences of prefix sums: the window's first row is a binary search
  for ``key - span`` over a key that orders rows by (account, time) — ``r`` searches. A test
  ``count >= k`` (:meth:`FeatureFrame.at_least`) needs no search at all: the k-th latest member of
  the window must lie after ``t - span``, one gather on the members' keys;
- medians, maxima and the MAD of the last 64 amounts, distinct counterparties and addresses, the
  hour-of-day share expand the windows of the ``r`` rows only; devices, addresses and
  counterparties seen before are replayed on the accounts of the ``r`` rows only.

Rows are sorted once, through a packed integer (account code and arrival position in one 64-bit
value) whose plain sort is much cheaper than an arg-sort or a multi-column sort; only the narrow
columns a ruleset reads are gathered into that order, several flags packed in one integer, and
text and identifiers are gathered from the input for the rows that need them.

Not reproduced, by design: ``blacklisted`` and ``linked_risk_accounts`` come from the list index
and the link graph at the time of the event, which a replay cannot rebuild; they are inputs
(a set of blocklisted accounts; linked risk defaults to 0).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import polars as pl

from thawline.domain.features import (
    FEATURES,
    KYC_RANK,
    RECENT_AMOUNTS,
    SENSITIVE_FIELDS,
    WINDOWS,
    IpRanges,
    Thresholds,
)

MICROS = 1_000_000
SPANS_US = {w: int(s * MICROS) for w, s in WINDOWS.items()}
DAY_US = 86_400 * MICROS

# The columns a replay needs, as the engine reads them from an event.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "account_id": pl.String(),
    "type": pl.String(),
    "ts_us": pl.Int64(),  # occurred_at, Unix microseconds
    "hour": pl.Int8(),  # the hour of occurred_at in the zone the event was sent with
    "ip": pl.String(),
    "device_id": pl.String(),
    "success": pl.Boolean(),
    "amount": pl.Float64(),
    "currency": pl.String(),
    "direction": pl.String(),
    "counterparty": pl.String(),
    "channel": pl.String(),
    "field": pl.String(),
    "level": pl.String(),
    "action": pl.String(),
}

TYPES = ("login", "transaction", "profile_change", "kyc_update", "device_binding")
_OTHER_TYPE = 7

# Bits of the packed per-event flags (``_bits``).
_TYPE_MASK = 0b111
_OK, _CREDIT, _SENSITIVE, _UNBIND, _HAS_IP, _HAS_DEV, _HAS_CP, _PROXY, _BAD, _IN = (
    1 << i for i in range(3, 13)
)
_HOUR_SHIFT, _KYC_SHIFT = 13, 18
_FLAGS = {"_ok": _OK, "ip_is_proxy": _PROXY, "ip_bad_reputation": _BAD, "_in": _IN}
_NO_KYC = 7

# Window counts: (members, span). A test ``count >= k`` is exact from the members' keys alone.
COUNTS: dict[str, tuple[str, str]] = {
    **{f"txn_count_{w}": ("txn", w) for w in WINDOWS},
    "small_txn_count_10m": ("small", "10m"),
    "login_failures_1h": ("failed_login", "1h"),
    "profile_changes_24h": ("profile", "24h"),
    "sensitive_changes_24h": ("sensitive", "24h"),
    "near_threshold_24h": ("near", "24h"),
    "near_threshold_7d": ("near", "7d"),
}
# Distinct counts with a cheap upper bound: ``distinct >= k`` needs ``members >= k + offset``.
BOUNDED: dict[str, tuple[str, str, int]] = {
    "distinct_counterparties_1h": ("cp_txn", "1h", 0),
    "ip_changes_1h": ("with_ip", "1h", 1),
}
SUMS: dict[str, tuple[str, str]] = {
    **{f"txn_sum_{w}": ("txn", w) for w in WINDOWS},
    "credit_sum_1h": ("credit", "1h"),
}

# What computing a feature at r rows costs, roughly; rules test their cheap conjuncts first.
COST: dict[str, int] = dict.fromkeys(FEATURES, 0)
COST.update(dict.fromkeys((*COUNTS, *SUMS), 3))
COST.update(dict.fromkeys(("currency", "direction", "channel", "profile_field"), 2))
COST.update(dict.fromkeys(("today_txn_count", "daily_count_ewma"), 4))
COST.update(dict.fromkeys(("amount_median", "amount_max", "amount_mad", *BOUNDED), 5))
COST.update(dict.fromkeys(("new_device", "known_devices", "new_ip", "new_counterparty", "hour_share"), 5))

_MIX = 0x9E3779B97F4A7C15  # an odd 64-bit constant (the golden ratio's) to spread account ranks
_EXPAND_LIMIT = 40_000_000  # window members expanded at once; beyond that, whole-history methods


class FeatureFrameError(ValueError):
    """The events cannot be replayed (a missing column, a bad value)."""


@dataclass(slots=True)
class FeatureFrame:
    """Events sorted per account in time order; features computed on demand at chosen rows.

    ``df`` holds the sorted base columns: ``_key`` orders rows by (account, time) — the account's
    rank in the high bits, the time offset in ``unit`` microseconds in the low ones, so
    ``_key - span`` finds a window's start; ``_acct`` the account's rank, ``_arrival`` each row's
    position in ``events``, ``_bits`` the packed flags, ``_amt`` the amount (0 for non-payments).
    """

    df: pl.DataFrame
    events: pl.DataFrame
    thresholds: Thresholds
    ip_ranges: IpRanges
    unit: int
    kyc: Mapping[str, str]
    default_kyc: str
    blacklisted: frozenset[str]
    _cols: dict[str, pl.Series] = field(default_factory=dict)
    _gathered: dict[tuple[str, int], tuple[pl.Series, pl.Series]] = field(default_factory=dict)

    @property
    def height(self) -> int:
        """The number of events."""
        return self.df.height

    # -- base columns (whole history, cached) ------------------------------------------------------

    def col(self, name: str) -> pl.Series:  # noqa: PLR0912 — one branch per column
        """A whole-history helper column in sorted order (computed once)."""
        got = self._cols.get(name)
        if got is not None:
            return got
        df, bits = self.df, self.df["_bits"]
        if name in ("_key", "_acct", "_arrival", "_bits", "_amt", "ts_us"):
            return df[name]
        if name in _FLAGS:
            out = (bits & _FLAGS[name]) != 0
        elif name == "_row":
            out = pl.int_range(self.height, dtype=pl.Int64, eager=True)
        elif name == "_type":
            out = bits & _TYPE_MASK
        elif name == "txn":
            out = self.col("_type") == 1
        elif name == "hour":
            out = ((bits // (1 << _HOUR_SHIFT)) & 0b11111).cast(pl.Int8)
        elif name == "_start":  # each row's account's first row
            first = df["_acct"] != df["_acct"].shift(1, fill_value=-1)
            out = pl.select(pl.when(first).then(self.col("_row")).forward_fill()).to_series()
        elif name == "_txns_before":  # payments before this row, whole history
            txn = self.col("txn").cast(pl.Int64)
            out = txn.cum_sum() - txn
        elif name == "history_txns":
            before = self.col("_txns_before")
            out = before - before.gather(self.col("_start"))
        elif name == "history_events":
            out = self.col("_row") - self.col("_start")
        elif name in _MEMBERS:
            out = _MEMBERS[name](self)
        elif name.startswith("_cum:"):  # members at or before each row
            out = self.col(name[5:]).cast(pl.Int64).cum_sum()
        elif name.startswith("_mkeys:"):  # the members' keys, in order
            out = df["_key"].filter(self.col(name[7:]))
        elif name.startswith("_prefix:"):  # sums of a value before each row: _prefix[i] = sum(v[:i])
            values = self.col(name[8:])
            out = pl.concat([pl.Series([0], dtype=values.dtype), values.cum_sum()])
        elif name == "kyc_rank":
            out = self._kyc_rank()
        elif name == "_same_hour":  # the account's earlier events at this hour of day
            out = self._same_hour()
        elif name in ("today_txn_count", "daily_count_ewma"):
            self._daily()
            return self._cols[name]
        elif name == "_first":  # the first row of each account
            out = df["_acct"] != df["_acct"].shift(1, fill_value=-1)
        else:
            raise KeyError(name)
        self._cols[name] = out
        return out

    def pick(self, name: str, rows: pl.Series | None) -> pl.Series:
        """Helper column ``name`` at ``rows`` (all when None); the gather is kept for a large ``rows``,
        which several rules narrow from (every payment, every login)."""
        column = self.col(name)
        if rows is None:
            return column
        if rows.len() * 8 < self.height:
            return column.gather(rows)
        got = self._gathered.get((name, id(rows)))
        if got is None or got[0] is not rows:
            got = self._gathered[(name, id(rows))] = (rows, column.gather(rows))
        return got[1]

    def account_ids(self, rows: pl.Series) -> pl.Series:
        """The account id (text) of each row in ``rows``."""
        return self.events["account_id"].gather(self.df["_arrival"].gather(rows))

    def _per_account(self, values: Callable[[pl.Series], pl.Series]) -> pl.Series:
        """A per-account value (computed from the account ids, in account order) for every row."""
        firsts = self.col("_row").filter(self.col("_first"))
        return values(self.account_ids(firsts)).gather(self.df["_acct"])

    def _kyc_rank(self) -> pl.Series:
        """The account's KYC level before its first event, then the level of its latest KYC update
        (that update's own row included); only accounts with updates are looked at row by row."""
        initial = self._per_account(
            lambda ids: ids.replace_strict(
                {a: KYC_RANK.get(v, 0) for a, v in self.kyc.items()},
                default=KYC_RANK.get(self.default_kyc, 0),
                return_dtype=pl.Int64,
            )
        )
        level = (self.df["_bits"] // (1 << _KYC_SHIFT)) & 0b111
        updated = self.df["_acct"].filter(level != _NO_KYC).unique()
        if updated.is_empty():
            return initial
        mark = pl.repeat(False, int(self.df["_acct"][-1]) + 1, eager=True).scatter(updated, True)
        rows = self.col("_row").filter(mark.gather(self.df["_acct"]))
        sub = pl.DataFrame(
            {"a": self.df["_acct"].gather(rows), "own": level.gather(rows), "first": initial.gather(rows)}
        ).select(
            pl.when(pl.col("own") != _NO_KYC)
            .then(pl.col("own").cast(pl.Int64))
            .forward_fill()
            .over("a")
            .fill_null(pl.col("first"))
        )
        return initial.scatter(rows, sub.to_series())

    def _same_hour(self) -> pl.Series:
        """For every row, the account's earlier events at the same hour of day (one packed sort)."""
        n = self.height
        bits = max(1, (n - 1).bit_length())
        group = self.df["_acct"] * 24 + self.col("hour").cast(pl.Int64)
        packed = (group * (1 << bits) + self.col("_row")).sort()
        rows, groups = packed % (1 << bits), packed // (1 << bits)
        position = pl.int_range(n, dtype=pl.Int64, eager=True)
        first = pl.select(
            pl.when(groups != groups.shift(1, fill_value=-1)).then(position).forward_fill()
        ).to_series()
        return pl.repeat(0, n, dtype=pl.Int64, eager=True).scatter(rows, position - first)

    def _daily(self) -> None:
        """Payments so far today (UTC day) and the EWMA of the account's earlier daily counts."""
        got = _daily(self.df["_acct"], self.df["ts_us"], self.col("txn"), self.thresholds.ewma_alpha)
        self._cols["today_txn_count"], self._cols["daily_count_ewma"] = got

    def _accounts_of(self, rows: pl.Series) -> tuple[pl.Series, pl.Series] | None:
        """When the accounts of ``rows`` hold less than half of all events: the positions of all their
        events, and where each of ``rows`` is among them; else None."""
        if not self.height:
            return None
        accounts = self.df["_acct"].gather(rows).unique()
        n_accounts = int(self.df["_acct"][-1]) + 1
        if accounts.len() * 4 > n_accounts:
            return None
        mark = pl.repeat(False, n_accounts, eager=True).scatter(accounts, True)
        keep = mark.gather(self.df["_acct"])
        if int(keep.sum()) * 2 > self.height:
            return None
        return self.col("_row").filter(keep), (keep.cast(pl.Int64).cum_sum() - 1).gather(rows)

    # -- windows ------------------------------------------------------------------------------------

    def _lo_key(self, rows: pl.Series | None, span: str) -> pl.Series:
        return self.pick("_key", rows) - SPANS_US[span] // self.unit

    def window_start(self, rows: pl.Series | None, span: str) -> pl.Series:
        """For each row, the position of the first row of its account inside a window of ``span``."""
        return self.df["_key"].search_sorted(self._lo_key(rows, span), side="right").cast(pl.Int64)

    def window_count(self, members: str, span: str, rows: pl.Series | None) -> pl.Series:
        """Members (a flag column) in each row's window, the row included."""
        keys = self.col(f"_mkeys:{members}")
        upto = self.pick(f"_cum:{members}", rows)
        return upto - keys.search_sorted(self._lo_key(rows, span), side="right").cast(pl.Int64)

    def at_least(self, members: str, span: str, k: int, rows: pl.Series | None) -> pl.Series:
        """Whether each row's window holds at least ``k`` members: the k-th latest one is inside."""
        if k <= 0:
            return pl.repeat(True, self.height if rows is None else rows.len(), eager=True)
        keys = self.col(f"_mkeys:{members}")
        upto = self.pick(f"_cum:{members}", rows)
        enough = upto >= k
        kth = keys.gather((upto - k).clip(lower_bound=0)) if keys.len() else upto.cast(pl.Int64)
        return enough & (kth > self._lo_key(rows, span))

    def window_sum(self, values: str, span: str, rows: pl.Series | None) -> pl.Series:
        """Sum of a value column over each row's window (the row included)."""
        prefix = self.col(f"_prefix:{values}")
        start = self.window_start(rows, span)
        end = self.col("_row") + 1 if rows is None else rows + 1
        return prefix.gather(end) - prefix.gather(start)

    # -- features at rows --------------------------------------------------------------------------

    def at(self, name: str, rows: pl.Series | None) -> pl.Series:  # noqa: PLR0911, PLR0912
        """Feature ``name`` at the sorted positions ``rows`` (every row when None)."""

        def pick(s: pl.Series) -> pl.Series:
            return s if rows is None else s.gather(rows)

        if name in COUNTS:
            members, span = COUNTS[name]
            return self.window_count(members, span, rows)
        if name in SUMS:
            values, span = SUMS[name]
            out = self.window_sum(f"_amt_{values}", span, rows)
            if name == "credit_sum_1h":  # money in before this event
                out = out - pick(self.col("_amt_credit"))
            return out
        if name in ("today_txn_count", "daily_count_ewma") and rows is not None and name not in self._cols:
            subset = self._accounts_of(rows)
            if subset is not None:
                sub, where = subset
                got = _daily(
                    self.df["_acct"].gather(sub),
                    self.df["ts_us"].gather(sub),
                    self.col("txn").gather(sub),
                    self.thresholds.ewma_alpha,
                )
                return got[0 if name == "today_txn_count" else 1].gather(where)
        if name == "history_txns":  # payments before the row less those before its account's first
            before = self.pick("_txns_before", rows)
            return before - self.col("_txns_before").gather(self.pick("_start", rows))
        if name == "history_events":
            return (self.col("_row") if rows is None else rows) - self.pick("_start", rows)
        if name in _COLUMNS:
            return pick(self.col(name))
        if name == "amount":
            return pick(self.df["_amt"])
        if name == "success":
            return pick(self.col("_ok"))
        if name == "event_type":
            return self._event_type(rows)
        if name in _TEXT:
            source, kind = _TEXT[name]
            positions = self.col("_row") if rows is None else rows
            text = self.events[source].gather(self.df["_arrival"].gather(positions)).cast(pl.String)
            applies = pick(self.col("_type")) == TYPES.index(kind)
            return pl.select(pl.when(applies).then(text.fill_null("")).otherwise(pl.lit(""))).to_series()
        if name == "blacklisted":
            if not self.blacklisted:
                return pl.repeat(False, self.height if rows is None else rows.len(), eager=True)
            listed = sorted(self.blacklisted)
            return pick(self._per_account(lambda ids: ids.is_in(listed)))
        if name == "linked_risk_accounts":
            return pl.repeat(0, self.height if rows is None else rows.len(), dtype=pl.Int64, eager=True)
        positions = self.col("_row") if rows is None else rows
        if name in ("amount_median", "amount_max", "amount_mad"):
            return self._baseline(name, positions)
        if name in BOUNDED:
            return self._distinct(name, positions)
        if name == "hour_share":
            return self._hour_share(positions)
        if name in ("new_device", "known_devices", "new_ip", "new_counterparty"):
            return self._seen(name, positions)
        raise KeyError(name)

    def type_is(self, kind: str, rows: pl.Series | None) -> pl.Series:
        """Whether each row's event type is ``kind``, one of :data:`TYPES` (compared as codes)."""
        code = self.col("_type") if rows is None else self.col("_type").gather(rows)
        return code == TYPES.index(kind)

    def _event_type(self, rows: pl.Series | None) -> pl.Series:
        code = self.col("_type") if rows is None else self.col("_type").gather(rows)
        out = code.replace_strict(dict(enumerate(TYPES)), default=None, return_dtype=pl.String)
        if out.null_count():  # a type the engine does not know: the text as sent
            positions = self.col("_row") if rows is None else rows
            sent = self.events["type"].gather(self.df["_arrival"].gather(positions))
            out = pl.select(pl.when(out.is_null()).then(sent).otherwise(out)).to_series()
        return out

    def _members(self, lo: pl.Series, hi: pl.Series) -> pl.DataFrame:
        """(``_q`` the query's index, ``_k`` each position in ``[lo, hi)``) for every query."""
        return (
            pl.DataFrame({"_lo": lo, "_hi": hi})
            .with_row_index("_q")
            .select("_q", pl.int_ranges("_lo", "_hi", dtype=pl.Int64).alias("_k"))
            .explode("_k")
        )

    def _baseline(self, name: str, rows: pl.Series) -> pl.Series:
        """Median, maximum or MAD of the account's recent payment amounts before each row: the engine
        keeps the last 64 amounts, a payment's own among them, so a payment sees the 63 before it."""
        hi = self.col("_txns_before").gather(rows)
        width = RECENT_AMOUNTS - self.col("txn").gather(rows).cast(pl.Int64)
        lo = hi - pl.select(pl.min_horizontal(self.col("history_txns").gather(rows), width)).to_series()
        if name != "amount_mad" and rows.len() * RECENT_AMOUNTS > _EXPAND_LIMIT:
            return self._rolling(name).gather(rows)
        amounts = self.df["_amt"].filter(self.col("txn"))
        if amounts.is_empty():
            return pl.repeat(0.0, rows.len(), eager=True)
        members = self._members(lo, hi)
        k = members["_k"]
        members = members.with_columns(_a=pl.when(k.is_not_null()).then(amounts.gather(k.fill_null(0))))
        a = pl.col("_a")
        stat = {
            "amount_median": a.median(),
            "amount_max": a.max(),
            "amount_mad": (a - a.median()).abs().median(),
        }[name]
        got = members.group_by("_q").agg(pl.when(a.count() > 0).then(stat).otherwise(0.0).alias("v"))
        return _by_query(got, rows.len(), pl.Float64).fill_null(0.0)  # no earlier payment: 0

    def _rolling(self, name: str) -> pl.Series:
        """Median or maximum of the recent amounts (see :meth:`_baseline`), for every row: rolling
        statistics over the account's payments (whole-history method)."""
        cached = self._cols.get(name)
        if cached is not None:
            return cached
        amt = pl.col("_amt")
        txns = self.df.filter(self.col("txn")).select(
            **{
                f"{stat}{n}": getattr(amt, f"rolling_{stat}")(n, min_samples=1).over("_acct")
                for stat in ("median", "max")
                for n in (RECENT_AMOUNTS, RECENT_AMOUNTS - 1)
            }
        )
        last = (self.col("_txns_before") - 1).clip(lower_bound=0)
        has = self.col("history_txns") > 0
        txn = self.col("txn")
        for stat in ("median", "max"):
            if not txns.height:
                self._cols[f"amount_{stat}"] = pl.repeat(0.0, self.height, eager=True)
                continue
            wide, narrow = (txns[f"{stat}{n}"].gather(last) for n in (RECENT_AMOUNTS, RECENT_AMOUNTS - 1))
            self._cols[f"amount_{stat}"] = pl.select(
                pl.when(~has).then(0.0).when(txn).then(narrow).otherwise(wide)
            ).to_series()
        return self._cols[name]

    def _hashes(self, source: str, positions: pl.Series) -> pl.Series:
        """The 64-bit hash of a text column of the events, at sorted positions."""
        if positions.len() * 4 < self.height:
            return self.events[source].gather(self.df["_arrival"].gather(positions)).hash()
        name = f"_hash:{source}"
        if name not in self._cols:  # hashing the text in place, then one gather of the hashes
            self._cols[name] = self.events[source].hash().gather(self.df["_arrival"])
        whole = self._cols[name]
        return whole if positions.len() == self.height else whole.gather(positions)

    def _distinct(self, name: str, rows: pl.Series) -> pl.Series:
        """Distinct counterparties of payments, or addresses (less one), in the hour up to each row."""
        members_flag, span, _offset = BOUNDED[name]
        start = self.window_start(rows, span)
        members = self._members(start, rows + 1)
        member_rows = members["_k"]
        flag = self.col(members_flag).gather(member_rows)
        source = "counterparty" if name == "distinct_counterparties_1h" else "ip"
        values = self._hashes(source, member_rows.filter(flag))
        members = members.filter(flag).with_columns(_v=values)
        got = members.group_by("_q").agg(pl.col("_v").n_unique().cast(pl.Int64).alias("v"))
        out = _by_query(got, rows.len(), pl.Int64).fill_null(0)
        return (out - 1).clip(lower_bound=0) if name == "ip_changes_1h" else out

    def _hour_share(self, rows: pl.Series) -> pl.Series:
        """Share of the account's earlier events at this hour of day (1.0 before its first event)."""
        total = self.col("history_events").gather(rows)
        hour = self.col("hour")
        if int(total.sum() or 0) > _EXPAND_LIMIT:
            same = self.col("_same_hour").gather(rows)
        else:
            members = self._members(self.col("_start").gather(rows), rows)
            mine = hour.gather(rows)
            same_hour = hour.gather(members["_k"].fill_null(0)) == mine.gather(members["_q"])
            got = (
                members.with_columns(_s=same_hour & members["_k"].is_not_null())
                .group_by("_q")
                .agg(pl.col("_s").sum().cast(pl.Int64).alias("v"))
            )
            same = _by_query(got, rows.len(), pl.Int64).fill_null(0)
        return pl.select(
            pl.when(total > 0).then(same.cast(pl.Float64) / total.cast(pl.Float64)).otherwise(1.0)
        ).to_series()

    def _seen(self, name: str, rows: pl.Series) -> pl.Series:
        """Devices, addresses or counterparties seen before each row, replayed on the rows' accounts."""
        subset = self._accounts_of(rows)
        sub_rows, where = (self.col("_row"), rows) if subset is None else subset
        every = subset is None
        acct, ok, bits = (
            self.col(c) if every else self.col(c).gather(sub_rows) for c in ("_acct", "_ok", "_bits")
        )
        if name in ("new_device", "known_devices"):
            has = (bits & _HAS_DEV) != 0
            values = pl.select(pl.when(has).then(self._hashes("device_id", sub_rows))).to_series()
            unbind = (bits & _UNBIND) != 0
            new, known = _first_seen(acct, values, ok & ~unbind)
            out = new if name == "new_device" else known
            removing = acct.filter(has & ok & unbind).unique()
            if removing.len():  # accounts that unbound a device: replayed with removals
                mine = acct.is_in(removing.implode())
                exact = _devices(acct.filter(mine), values.filter(mine), ok.filter(mine), unbind.filter(mine))
                out = out.scatter(pl.int_range(acct.len(), eager=True).filter(mine), exact[name])
        elif name == "new_ip":
            has = (bits & _HAS_IP) != 0
            values = pl.select(pl.when(has).then(self._hashes("ip", sub_rows))).to_series()
            out = _first_seen(acct, values, values.is_not_null() & ok)[0]
        else:
            has = (bits & _HAS_CP) != 0
            values = pl.select(pl.when(has).then(self._hashes("counterparty", sub_rows))).to_series()
            out = _first_seen(acct, values, values.is_not_null())[0]
        return out.gather(where)


def _daily(acct: pl.Series, ts: pl.Series, txn: pl.Series, alpha: float) -> tuple[pl.Series, pl.Series]:
    """Payments so far today (UTC day) and the EWMA of the earlier days' counts, for rows sorted by
    (account, time): an account's events of one day are one run of rows."""
    day = ts // DAY_US
    new = ((acct != acct.shift(1)) | (day != day.shift(1))).fill_null(True)
    row = pl.int_range(acct.len(), dtype=pl.Int64, eager=True)
    start = pl.select(pl.when(new).then(row).forward_fill()).to_series()
    counts = txn.cast(pl.Int64)
    cum = counts.cum_sum()
    today = cum - (cum.gather(start) - counts.gather(start))
    is_end = new.shift(-1, fill_value=True)
    run = new.cast(pl.Int64).cum_sum() - 1
    daily = pl.DataFrame({"_acct": acct.filter(is_end), "_n": today.filter(is_end)}).select(
        pl.col("_n")
        .cast(pl.Float64)
        .ewm_mean(alpha=alpha, adjust=False)
        .shift(1)
        .over("_acct")
        .fill_null(0.0)
    )
    return today, daily.to_series().gather(run)


def _by_query(got: pl.DataFrame, count: int, dtype: pl.DataType | type[pl.DataType]) -> pl.Series:
    """Per-query values (``_q``, ``v``) as a series of ``count`` values in query order (null if absent)."""
    return (
        pl.DataFrame({"_q": pl.int_range(count, dtype=pl.UInt32, eager=True)})
        .join(got.with_columns(pl.col("_q").cast(pl.UInt32)), on="_q", how="left", maintain_order="left")["v"]
        .cast(dtype)
    )


def _first_seen(acct: pl.Series, values: pl.Series, adds: pl.Series) -> tuple[pl.Series, pl.Series]:
    """For rows sorted by (account, time), where ``adds`` rows add their value to the account's set
    (never removed): whether each row's value is new while the set is not empty, and the set's
    size before the row. The first time a pair (account, value) is added is its first appearance
    among the adding rows, so no grouping is needed."""
    n = acct.len()
    row = pl.int_range(n, dtype=pl.Int64, eager=True)
    has = values.is_not_null()
    adding = row.filter(adds & has)
    # One 64-bit value per (account, value): the value's hash mixed with the account's rank (a
    # collision is as unlikely as one of the hashes themselves).
    pair = values.cast(pl.UInt64) ^ (acct.cast(pl.UInt64) * _MIX)
    first = pair.gather(adding).is_first_distinct()
    firsts = adding.filter(first)
    flag = pl.repeat(0, n, dtype=pl.Int64, eager=True).scatter(firsts, 1)
    before = flag.cum_sum() - flag  # first additions before each row
    start = pl.select(pl.when(acct != acct.shift(1, fill_value=-1)).then(row).forward_fill()).to_series()
    known = before - before.gather(start)
    seen = pl.repeat(False, n, eager=True).scatter(adding.filter(~first), True)
    others = row.filter(has & ~adds)  # rows with a value that do not add it: seen if added earlier
    if others.len():
        added = pl.DataFrame({"p": pair.gather(firsts), "at": firsts})
        asked = pl.DataFrame({"p": pair.gather(others)})
        at = asked.join(added, on="p", how="left", maintain_order="left")["at"]
        seen = seen.scatter(others, (at < others).fill_null(False))
    return has & (known > 0) & ~seen, known


def _devices(acct: pl.Series, dev: pl.Series, ok: pl.Series, unbind: pl.Series) -> pl.DataFrame:
    """Known devices before each event, and whether its device is new: binds add, unbinds remove."""
    df = pl.DataFrame({"_acct": acct, "_dev": dev, "_ok": ok, "_unbind": unbind})
    d = pl.col("_dev")
    acts = d.is_not_null() & pl.col("_ok")
    after = pl.when(acts & pl.col("_unbind")).then(0).when(acts).then(1)  # present after this event
    df = df.with_columns(_after=after.cast(pl.Int64))
    df = df.with_columns(
        _present=pl.col("_after").shift(1).forward_fill().over(["_acct", "_dev"]).fill_null(0)
    )
    df = df.with_columns(
        _delta=pl.when(pl.col("_after").is_null() | d.is_null())
        .then(0)
        .otherwise(pl.col("_after") - pl.col("_present"))
    )
    known = pl.col("_delta").cum_sum().over("_acct") - pl.col("_delta")
    return df.select(
        known_devices=known,
        new_device=d.is_not_null() & (known > 0) & (pl.col("_present") == 0),
    )


def _member(flag: int) -> Callable[[FeatureFrame], pl.Series]:
    return lambda f: (f.df["_bits"] & flag) != 0


def _amount_of(members: str) -> Callable[[FeatureFrame], pl.Series]:
    return lambda f: pl.select(pl.when(f.col(members)).then(f.df["_amt"]).otherwise(0.0)).to_series()


# Member flags and value columns of the windows, by name.
_MEMBERS: dict[str, Callable[[FeatureFrame], pl.Series]] = {
    "small": lambda f: f.col("txn") & (f.df["_amt"] < f.thresholds.small),
    "near": lambda f: (
        f.col("txn") & (f.df["_amt"] >= f.thresholds.near_low) & (f.df["_amt"] < f.thresholds.reporting)
    ),
    "failed_login": lambda f: (f.col("_type") == 0) & ~f.col("_ok"),
    "profile": lambda f: f.col("_type") == 2,
    "sensitive": lambda f: (f.col("_type") == 2) & ((f.df["_bits"] & _SENSITIVE) != 0),
    "credit": lambda f: f.col("txn") & ((f.df["_bits"] & _CREDIT) != 0),
    "with_ip": _member(_HAS_IP),
    "cp_txn": _member(_HAS_CP),
    "_amt_txn": lambda f: f.df["_amt"],
    "_amt_credit": _amount_of("credit"),
}
_COLUMNS = frozenset(
    {"history_txns", "history_events", "hour", "kyc_rank", "today_txn_count", "daily_count_ewma", *_FLAGS}
)
_TEXT = {
    "currency": ("currency", "transaction"),
    "direction": ("direction", "transaction"),
    "channel": ("channel", "transaction"),
    "profile_field": ("field", "profile_change"),
}


def _flags(events: pl.DataFrame, want: set[str], ranges: IpRanges) -> pl.Expr:
    """Every per-event flag the features need, packed in one integer (one gather for all)."""
    kind = pl.col("type")
    is_txn, is_login = kind == "transaction", kind == "login"
    has_ip = (is_login | is_txn) & _text(pl.col("ip"))
    code: pl.Expr = pl.lit(_OTHER_TYPE, dtype=pl.Int32)  # equality tests: cheaper than a lookup
    for i, t in reversed(list(enumerate(TYPES))):
        code = pl.when(kind == t).then(pl.lit(i, dtype=pl.Int32)).otherwise(code)
    ok = pl.when(is_login).then(pl.col("success").fill_null(True)).otherwise(True)
    kyc: pl.Expr = pl.lit(_NO_KYC, dtype=pl.Int32)
    for level, rank in KYC_RANK.items():
        kyc = pl.when(pl.col("level") == level).then(pl.lit(rank, dtype=pl.Int32)).otherwise(kyc)
    kyc = pl.when(kind == "kyc_update").then(kyc)
    parts = [
        code,
        _bit(ok, _OK),
        _bit(is_txn & (pl.col("direction") == "credit"), _CREDIT),
        _bit((kind == "profile_change") & pl.col("field").is_in(sorted(SENSITIVE_FIELDS)), _SENSITIVE),
        _bit((kind == "device_binding") & (pl.col("action") == "unbind"), _UNBIND),
        _bit(has_ip, _HAS_IP),
        _bit(
            kind.is_in(["login", "transaction", "device_binding"]) & _text(pl.col("device_id")),
            _HAS_DEV,
        ),
        _bit(is_txn & _text(pl.col("counterparty")), _HAS_CP),
        pl.col("hour").cast(pl.Int32).clip(0, 23) * (1 << _HOUR_SHIFT),
        kyc.fill_null(_NO_KYC) * (1 << _KYC_SHIFT),
    ]
    if "in_period" in events.columns:
        parts.append(_bit(pl.col("in_period"), _IN))
    else:
        parts.append(pl.lit(_IN, dtype=pl.Int32))
    if {"ip_is_proxy", "ip_bad_reputation"} & want:
        proxy, bad = classify(events["ip"].drop_nulls().unique(), ranges)
        if proxy:
            parts.append(_bit(has_ip & pl.col("ip").is_in(proxy), _PROXY))
        if bad:
            parts.append(_bit(has_ip & pl.col("ip").is_in(bad), _BAD))
    return pl.sum_horizontal(parts).cast(pl.Int32).alias("_bits")


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"  # the only form ipaddress accepts


def classify(ips: pl.Series, ranges: IpRanges) -> tuple[list[str], list[str]]:
    """The addresses among ``ips`` (distinct text) that are proxies, and those with a bad reputation,
    as :meth:`IpRanges.classify` decides: IPv4 addresses are tested against the IPv4 networks column-wise
    (as 32-bit numbers), anything else (IPv6, unparseable text) one by one."""
    frame = pl.DataFrame({"ip": ips.cast(pl.String)}).filter(pl.col("ip").str.len_bytes() > 0)
    octets = pl.col("ip").str.extract_groups(_IPV4)
    value = sum(
        (octets.struct.field(str(i + 1)).cast(pl.Int64) * (1 << (24 - 8 * i)) for i in range(4)), pl.lit(0)
    )
    frame = frame.with_columns(_v=value)
    v4, others = frame.filter(pl.col("_v").is_not_null()), frame.filter(pl.col("_v").is_null())

    def inside(networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> list[str]:
        tests = [
            pl.col("_v") // (1 << (32 - n.prefixlen)) == int(n.network_address) >> (32 - n.prefixlen)
            for n in networks
            if isinstance(n, ipaddress.IPv4Network)
        ]
        return v4.filter(pl.any_horizontal(tests))["ip"].to_list() if tests else []

    table = {ip: ranges.classify(ip) for ip in others["ip"].to_list()}
    proxy = inside(ranges.proxy) + [ip for ip, (p, _b) in table.items() if p]
    bad = inside(ranges.bad_reputation) + [ip for ip, (_p, b) in table.items() if b]
    return proxy, bad


def _text(column: pl.Expr) -> pl.Expr:
    """Present and not empty."""
    return (column.str.len_bytes() > 0).fill_null(False)


def _bit(test: pl.Expr, flag: int) -> pl.Expr:
    return (
        pl.when(test.fill_null(False)).then(pl.lit(flag, dtype=pl.Int32)).otherwise(pl.lit(0, dtype=pl.Int32))
    )


def _order(events: pl.DataFrame, columns: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The sort of the events by (account, time, arrival): ``_key``, ``_acct`` (the account's rank),
    ``_arrival`` (the row in ``events``), ``ts_us`` and ``columns`` in that order; and the key's
    time unit.

    One plain sort of ``account code << b | arrival`` groups the rows by account in arrival order;
    when some account's events arrived out of time order, a second sort by the (nearly sorted)
    (account, time) key fixes those.
    """
    n = events.height
    code = events["account_id"].cast(pl.Categorical).to_physical().cast(pl.Int64)
    index_bits = max(1, (n - 1).bit_length())
    if int(code.max() or 0).bit_length() + index_bits <= 62:  # type: ignore[arg-type]
        packed = (code * (1 << index_bits) + pl.int_range(n, dtype=pl.Int64, eager=True)).sort()
        order = packed % (1 << index_bits)
        codes = packed // (1 << index_bits)
    else:  # pragma: no cover — more distinct strings than the packed key holds
        order = (
            pl.DataFrame({"c": code}).with_row_index("i").sort("c", maintain_order=True)["i"].cast(pl.Int64)
        )
        codes = code.gather(order)
    acct = (codes != codes.shift(1, fill_value=-1)).cast(pl.Int64).cum_sum() - 1
    gathered = columns.with_columns(events["ts_us"].cast(pl.Int64))[order]  # one gather, in parallel
    ts = gathered["ts_us"]
    accounts = int(acct[-1]) + 1 if n else 1
    low, high = (int(ts.min() or 0), int(ts.max() or 0)) if n else (0, 0)  # type: ignore[arg-type]
    spread = high - low + 2 * max(SPANS_US.values())
    time_bits = 62 - accounts.bit_length()
    unit = 1
    while spread // unit >= 1 << time_bits:
        unit *= 1000  # microseconds, then milliseconds, then seconds
    key = acct * (1 << time_bits) + (ts - low) // unit
    out = pl.DataFrame({"_key": key, "_acct": acct, "_arrival": order}).hstack(gathered)
    late = acct.filter(key.diff() < 0)
    if late.len():  # some events arrived out of time order: sort those accounts' rows again
        mark = pl.repeat(False, accounts, eager=True).scatter(late.unique(), True)
        where = pl.int_range(n, dtype=pl.Int64, eager=True).filter(mark.gather(acct))
        part = out[where].sort(["_key"] if unit == 1 else ["_acct", "ts_us"], maintain_order=True)
        out = pl.DataFrame([out[c].scatter(where, part[c]) for c in out.columns])
    return out, unit


def prepare(
    events: pl.DataFrame,
    needed: Collection[str],
    *,
    ip_ranges: IpRanges,
    thresholds: Thresholds | None = None,
    kyc: Mapping[str, str] | None = None,
    default_kyc: str = "full",
    blacklisted: Collection[str] = (),
    progress: Callable[[str], None] | None = None,
) -> FeatureFrame:
    """Sort the events; features are computed later, at the rows that need them (:meth:`FeatureFrame.at`).

    ``events`` has the columns of :data:`EVENT_SCHEMA` (and optionally a boolean ``in_period``);
    ``kyc`` is each account's level before its first event (``default_kyc`` otherwise);
    ``blacklisted`` the accounts whose identifiers are on a blocklist; ``needed`` the features the
    rules read.
    """
    missing = sorted(set(EVENT_SCHEMA) - {"id"} - set(events.columns))
    if missing:
        raise FeatureFrameError(f"the events lack the column(s): {', '.join(missing)}")
    step = progress or (lambda _s: None)
    step("sort")
    th = thresholds or Thresholds()
    want = set(needed)
    base = events.select(
        _flags(events, want, ip_ranges),
        _amt=pl.when(pl.col("type") == "transaction").then(pl.col("amount").cast(pl.Float64)).otherwise(0.0),
    )
    df, unit = _order(events, base)
    return FeatureFrame(df, events, th, ip_ranges, unit, kyc or {}, default_kyc, frozenset(blacklisted))
