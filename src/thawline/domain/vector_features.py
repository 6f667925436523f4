"""The live engine's features, computed column-wise over a whole history at once (Polars).

:mod:`thawline.domain.features` folds one event at a time into an account's state; a backtest
replays millions of events, so here every feature named in :data:`~thawline.domain.features.FEATURES`
is computed for all events together, with the same definitions:

- events are taken per account in time order (ties in arrival order) — the order in which the
  engine evaluates a batch, which it sorts by ``occurred_at``;
- a sliding window of span ``s`` at an event at time ``t`` holds the account's earlier events (and
  the event itself) with a time after ``t - s``, exactly the engine's eviction rule. Counts and sums
  come from prefix sums: the window's first row is found by a binary search over a key that orders
  rows by (account, time), so a window costs two gathers whatever its length;
- distinct values in a window (counterparties, IP addresses) and the median absolute deviation of
  the last 64 amounts need the window's members; they are computed by expanding the windows of
  only the rows a rule can still fire on (``mask``), see :mod:`thawline.domain.vector_rules`;
- median and maximum of the last 64 amounts use rolling statistics over the account's
  transactions; the daily-count EWMA is Polars' ``ewm_mean`` over the account's active days.

Not reproduced, by design: ``blacklisted`` and ``linked_risk_accounts`` come from the list index
and the link graph at the time of the event, which a replay cannot rebuild; they are inputs
(a set of blocklisted accounts; linked risk defaults to 0).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import polars as pl

from thawline.domain.features import (
    KYC_RANK,
    RECENT_AMOUNTS,
    SENSITIVE_FIELDS,
    WINDOWS,
    IpRanges,
    Thresholds,
)

MICROS = 1_000_000
SPANS_US = {w: int(s * MICROS) for w, s in WINDOWS.items()}

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

# Features whose values need each window's members; computed only where a rule still needs them.
EXPANDED = frozenset({"amount_mad", "distinct_counterparties_1h", "ip_changes_1h"})

# An upper bound, from a cheap feature, of each expanded count (used to skip rows early).
UPPER_BOUNDS = {
    "distinct_counterparties_1h": "_cp_txns_1h",
    "ip_changes_1h": "_ip_changes_bound_1h",
}


class FeatureFrameError(ValueError):
    """The events cannot be replayed (a missing column, a bad value)."""


@dataclass(slots=True)
class FeatureFrame:
    """Events sorted per account in time order, with feature columns added on demand.

    ``_key`` orders rows by (account, time): the account's rank in the high bits, the time offset
    in ``unit`` microseconds in the low ones, so ``_key - span`` finds a window's start.
    """

    df: pl.DataFrame
    thresholds: Thresholds
    unit: int = 1
    _starts: dict[int, pl.Series] = field(default_factory=dict)

    @property
    def height(self) -> int:
        """The number of events."""
        return self.df.height

    def window_start(self, span_us: int) -> pl.Series:
        """For each row, the position of the first row of its account inside a window of ``span_us``."""
        got = self._starts.get(span_us)
        if got is None:
            key = self.df["_key"]
            got = key.search_sorted(key - span_us // self.unit, side="right").cast(pl.Int64)
            self._starts[span_us] = got
        return got

    def window_sum(self, values: pl.Series, span_us: int) -> pl.Series:
        """Sum of ``values`` over each row's window (the row included)."""
        prefix = pl.concat([pl.Series([0], dtype=values.dtype), values.cum_sum()])
        start = self.window_start(span_us)
        return prefix.gather(self.df["_row"] + 1) - prefix.gather(start)

    def expand(self, name: str, mask: pl.Series | None) -> None:
        """Add the expanded feature ``name`` for the rows of ``mask`` (all rows when None; else null)."""
        rows = self.df["_row"] if mask is None else self.df["_row"].filter(mask.fill_null(False))
        if name == "amount_mad":
            values = _mad(self.df, rows)
        elif name == "distinct_counterparties_1h":
            values = self._distinct(rows, "_cp_txn", SPANS_US["1h"], minus_one=False)
        elif name == "ip_changes_1h":
            values = self._distinct(rows, "_ip", SPANS_US["1h"], minus_one=True)
        else:
            raise KeyError(name)
        self.df = self.df.join(values, on="_row", how="left", maintain_order="left")

    def _distinct(self, rows: pl.Series, column: str, span_us: int, *, minus_one: bool) -> pl.DataFrame:
        start = self.window_start(span_us)
        members = (
            pl.DataFrame({"_row": rows, "_from": start.gather(rows)})
            .select("_row", pl.int_ranges("_from", pl.col("_row") + 1).alias("_k"))
            .explode("_k")
        )
        members = members.with_columns(self.df[column].to_physical().gather(members["_k"]).alias("_v"))
        name = "ip_changes_1h" if minus_one else "distinct_counterparties_1h"
        counted = members.group_by("_row").agg(
            pl.col("_v").drop_nulls().n_unique().cast(pl.Int64).alias(name)
        )
        if minus_one:
            counted = counted.with_columns((pl.col(name) - 1).clip(lower_bound=0))
        return counted.with_columns(pl.col("_row").cast(pl.Int64))


TEXT = ("currency", "direction", "channel", "field")


# Text columns with a closed set of values travel as enums (cheap to sort); others as categoricals.
_ENUMS: dict[str, pl.DataType] = {
    "type": pl.Enum(["login", "transaction", "profile_change", "kyc_update", "device_binding"]),
    "direction": pl.Enum(["debit", "credit"]),
    "field": pl.Enum(["phone", "email", "password", "bank_card", "device", "address"]),
}


def _compact(events: pl.DataFrame, want: set[str], ranges: IpRanges) -> pl.DataFrame:
    """One narrow row per event: identifiers as 64-bit hashes (equality is all the features need), the
    text columns the rules read, and the derived flags."""
    kind = pl.col("type")
    is_txn, is_login = kind == "transaction", kind == "login"
    has_ip = (is_login | is_txn) & (pl.col("ip").fill_null("") != "")
    text = {
        "currency": {"currency"},
        "direction": {"direction", "credit_sum_1h"},
        "channel": {"channel"},
        "field": {"profile_field", "sensitive_changes_24h"},
    }
    flags: dict[str, pl.Expr] = {}
    if {"ip_is_proxy", "ip_bad_reputation"} & want:
        ips = events["ip"].drop_nulls().unique().to_list()
        table = {ip: ranges.classify(ip) for ip in ips if ip}
        proxy = [ip for ip, (p, _b) in table.items() if p]
        bad = [ip for ip, (_p, b) in table.items() if b]
        flags["ip_is_proxy"] = (
            (has_ip & pl.col("ip").is_in(proxy)).fill_null(False) if proxy else pl.lit(False)
        )
        flags["ip_bad_reputation"] = (
            (has_ip & pl.col("ip").is_in(bad)).fill_null(False) if bad else pl.lit(False)
        )
    return events.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_arrival"),
        pl.col("account_id").cast(pl.Categorical),
        pl.col("ts_us").cast(pl.Int64),
        pl.col("hour").cast(pl.Int8),
        pl.col("type").cast(_ENUMS["type"], strict=False),
        *(
            pl.col(c).cast(_ENUMS.get(c, pl.Categorical()), strict=False)
            for c, uses in text.items()
            if uses & want
        ),
        _txn=is_txn,
        _ok=pl.when(is_login).then(pl.col("success").fill_null(True)).otherwise(True),
        _ip=pl.when(has_ip).then(pl.col("ip").hash()),
        _dev=pl.when(
            kind.is_in(["login", "transaction", "device_binding"]) & pl.col("device_id").is_not_null()
        ).then(pl.col("device_id").hash()),
        _cp_txn=pl.when(is_txn & (pl.col("counterparty").fill_null("") != "")).then(
            pl.col("counterparty").hash()
        ),
        _amt=pl.when(is_txn).then(pl.col("amount").cast(pl.Float64)).otherwise(0.0),
        _unbind=(kind == "device_binding") & (pl.col("action") == "unbind").fill_null(False),
        _kyc=pl.when(kind == "kyc_update").then(
            pl.col("level").replace_strict(KYC_RANK, default=None, return_dtype=pl.Int64)
        ),
        **flags,
    )


def _sort(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Sort by (account, time, arrival) through one integer key; returns the frame and the time unit."""
    ranked = df.select(
        pl.col("account_id").to_physical().rank("dense").cast(pl.Int64).alias("_acct"),
        (pl.col("ts_us") - pl.col("ts_us").min()).alias("_off"),
    )
    accounts = int(ranked["_acct"].cast(pl.Int64).max() or 0) + 1  # type: ignore[arg-type]
    spread = int(ranked["_off"].max() or 0) + 2 * max(SPANS_US.values())  # type: ignore[arg-type]
    time_bits = 62 - accounts.bit_length()
    unit = 1
    while spread // unit >= 1 << time_bits:
        unit *= 1000  # microseconds, then milliseconds, then seconds
    key = ranked["_acct"] * (1 << time_bits) + ranked["_off"] // unit
    order = pl.DataFrame({"_key": key, "_i": pl.int_range(df.height, eager=True)}).sort(
        "_key", maintain_order=True
    )
    out = df[order["_i"]].with_columns(
        order["_key"],
        ranked["_acct"].gather(order["_i"]),
        pl.int_range(df.height, dtype=pl.Int64).alias("_row"),
    )
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
    """Sort the events and compute every non-expanded feature in ``needed``.

    ``events`` has the columns of :data:`EVENT_SCHEMA` (and optionally a boolean ``in_period``,
    kept); ``kyc`` is each account's level before its first event (``default_kyc`` otherwise);
    ``blacklisted`` the accounts whose identifiers are on a blocklist. The result keeps
    ``_arrival``, each row's position in ``events``.
    """
    missing = sorted(set(EVENT_SCHEMA) - {"id"} - set(events.columns))
    if missing:
        raise FeatureFrameError(f"the events lack the column(s): {', '.join(missing)}")
    th = thresholds or Thresholds()
    step = progress or (lambda _s: None)
    compact = _compact(events, set(needed), ip_ranges)
    if "in_period" in events.columns:
        compact = compact.with_columns(events["in_period"])
    df, unit = _sort(compact)
    frame = FeatureFrame(df, th, unit)
    step("windows")
    cols: dict[str, pl.Series] = {}
    want = set(needed)
    _windows(frame, want, cols)
    step("baselines")
    _history(frame, want, cols, th)
    frame.df = frame.df.with_columns(**cols)
    step("identities")
    frame.df = _identities(frame.df, want, kyc or {}, default_kyc, set(blacklisted))
    return frame


def _windows(frame: FeatureFrame, want: set[str], cols: dict[str, pl.Series]) -> None:
    df, th = frame.df, frame.thresholds
    txn = df["_txn"].cast(pl.Int64)
    for w, span in SPANS_US.items():
        if f"txn_count_{w}" in want:
            cols[f"txn_count_{w}"] = frame.window_sum(txn, span)
        if f"txn_sum_{w}" in want:
            cols[f"txn_sum_{w}"] = frame.window_sum(df["_amt"], span)
    if "small_txn_count_10m" in want:
        small = (df["_txn"] & (df["_amt"] < th.small)).cast(pl.Int64)
        cols["small_txn_count_10m"] = frame.window_sum(small, SPANS_US["10m"])
    if "credit_sum_1h" in want:
        credit = (df["_txn"] & (df["direction"] == "credit")).fill_null(False)
        credit_amt = df["_amt"] * credit.cast(pl.Float64)
        cols["credit_sum_1h"] = frame.window_sum(credit_amt, SPANS_US["1h"]) - credit_amt
    if "login_failures_1h" in want:
        failed = ((df["type"] == "login") & ~df["_ok"]).cast(pl.Int64)
        cols["login_failures_1h"] = frame.window_sum(failed, SPANS_US["1h"])
    profile = (df["type"] == "profile_change").cast(pl.Int64)
    if "profile_changes_24h" in want:
        cols["profile_changes_24h"] = frame.window_sum(profile, SPANS_US["24h"])
    if "sensitive_changes_24h" in want:
        sensitive = (
            profile.cast(pl.Boolean) & df["field"].cast(pl.String).is_in(list(SENSITIVE_FIELDS))
        ).fill_null(False)
        cols["sensitive_changes_24h"] = frame.window_sum(sensitive.cast(pl.Int64), SPANS_US["24h"])
    near = (df["_txn"] & (df["_amt"] >= th.near_low) & (df["_amt"] < th.reporting)).cast(pl.Int64)
    if "near_threshold_7d" in want:
        cols["near_threshold_7d"] = frame.window_sum(near, SPANS_US["7d"])
    if "near_threshold_24h" in want:
        cols["near_threshold_24h"] = frame.window_sum(near, SPANS_US["24h"])
    if "distinct_counterparties_1h" in want:
        cols["_cp_txns_1h"] = frame.window_sum(df["_cp_txn"].is_not_null().cast(pl.Int64), SPANS_US["1h"])
    if "ip_changes_1h" in want:
        with_ip = frame.window_sum(df["_ip"].is_not_null().cast(pl.Int64), SPANS_US["1h"])
        cols["_ip_changes_bound_1h"] = (with_ip - 1).clip(lower_bound=0)


def _history(frame: FeatureFrame, want: set[str], cols: dict[str, pl.Series], th: Thresholds) -> None:
    df = frame.df
    before = df.select(
        txns_before=(pl.col("_txn").cast(pl.Int64).cum_sum() - pl.col("_txn").cast(pl.Int64)),
        events_before=pl.int_range(pl.len()).over("_acct").cast(pl.Int64),
        first_row=pl.col("_row").first().over("_acct"),
    )
    global_txns_before = before["txns_before"]
    account_txns_before = global_txns_before.gather(before["first_row"])
    history_txns = global_txns_before - account_txns_before
    cols["history_txns"] = history_txns
    cols["history_events"] = before["events_before"]
    cols["_txns_before_global"] = global_txns_before
    if {"amount_median", "amount_max", "amount_mad"} & want:
        txns = df.filter(pl.col("_txn")).select(
            "_acct",
            "_amt",
            med=pl.col("_amt").rolling_median(RECENT_AMOUNTS, min_samples=1).over("_acct"),
            top=pl.col("_amt").rolling_max(RECENT_AMOUNTS, min_samples=1).over("_acct"),
        )
        last = (global_txns_before - 1).clip(lower_bound=0)
        has = history_txns > 0
        if txns.height:
            cols["amount_median"] = pl.select(
                pl.when(has).then(txns["med"].gather(last)).otherwise(0.0)
            ).to_series()
            cols["amount_max"] = pl.select(
                pl.when(has).then(txns["top"].gather(last)).otherwise(0.0)
            ).to_series()
        else:
            cols["amount_median"] = cols["amount_max"] = pl.repeat(0.0, df.height, eager=True)
        frame.df = df.with_columns(_history_txns=history_txns)
        df = frame.df
    if "hour_share" in want:
        same_hour = df.select(pl.int_range(pl.len()).over(["_acct", "hour"]).cast(pl.Float64)).to_series()
        total = cols["history_events"]
        cols["hour_share"] = pl.select(
            pl.when(total > 0).then(same_hour / total.cast(pl.Float64)).otherwise(1.0)
        ).to_series()
    if {"daily_count_ewma", "today_txn_count"} & want:
        # An account's events of one UTC day are one contiguous run of the sorted rows.
        runs = df.select(
            "_acct",
            _txn=pl.col("_txn").cast(pl.Int64),
            _new=(
                (pl.col("_acct") != pl.col("_acct").shift(1))
                | (pl.col("ts_us") // (86_400 * MICROS) != (pl.col("ts_us") // (86_400 * MICROS)).shift(1))
            ).fill_null(True),
        ).with_columns(
            _run=pl.col("_new").cum_sum() - 1,
            _start=pl.when(pl.col("_new")).then(pl.int_range(pl.len(), dtype=pl.Int64)).forward_fill(),
            _c=pl.col("_txn").cum_sum(),
        )
        start = runs["_start"]
        today = runs["_c"] - (runs["_c"].gather(start) - runs["_txn"].gather(start))
        cols["today_txn_count"] = today
        is_end = runs["_new"].shift(-1).fill_null(True)
        daily = pl.DataFrame({"_acct": runs["_acct"].filter(is_end), "_n": today.filter(is_end)}).select(
            pl.col("_n")
            .cast(pl.Float64)
            .ewm_mean(alpha=th.ewma_alpha, adjust=False)
            .shift(1)
            .over("_acct")
            .fill_null(0.0)
        )
        cols["daily_count_ewma"] = daily.to_series().gather(runs["_run"])


def _identities(
    df: pl.DataFrame,
    want: set[str],
    kyc: Mapping[str, str],
    default_kyc: str,
    blacklisted: set[str],
) -> pl.DataFrame:
    is_txn = pl.col("_txn")

    def text(column: str, when: pl.Expr) -> pl.Expr:
        return pl.when(when).then(pl.col(column).cast(pl.String).fill_null("")).otherwise(pl.lit(""))

    exprs: dict[str, pl.Expr] = {
        "event_type": pl.col("type").cast(pl.String),
        "amount": pl.col("_amt"),
        "currency": text("currency", is_txn),
        "direction": text("direction", is_txn),
        "channel": text("channel", is_txn),
        "profile_field": text("field", pl.col("type") == "profile_change"),
        "success": pl.col("_ok"),
        "linked_risk_accounts": pl.lit(0, dtype=pl.Int64),
        "blacklisted": pl.col("account_id").cast(pl.String).is_in(sorted(blacklisted))
        if blacklisted
        else pl.lit(False),
    }
    df = df.with_columns(**{k: v for k, v in exprs.items() if k in want or k == "event_type"})
    if "kyc_rank" in want:
        start = pl.DataFrame(
            {"account_id": list(kyc), "_kyc0": [KYC_RANK.get(v, 0) for v in kyc.values()]},
            schema={"account_id": pl.String, "_kyc0": pl.Int64},
        ).with_columns(pl.col("account_id").cast(pl.Categorical))
        df = (
            df.join(start, on="account_id", how="left", maintain_order="left")
            .with_columns(
                kyc_rank=pl.col("_kyc")
                .forward_fill()
                .over("_acct")
                .fill_null(pl.col("_kyc0"))
                .fill_null(KYC_RANK.get(default_kyc, 0))
            )
            .drop("_kyc0")
        )
    if {"new_device", "known_devices"} & want:
        df = _devices(df)
    if "new_ip" in want:
        ok_ip = (pl.col("_ip").is_not_null() & pl.col("_ok")).cast(pl.Int64)
        seen_any = ok_ip.cum_sum().over("_acct") - ok_ip
        seen_this = ok_ip.cum_sum().over(["_acct", "_ip"]) - ok_ip
        df = df.with_columns(new_ip=pl.col("_ip").is_not_null() & (seen_any > 0) & (seen_this == 0))
    if "new_counterparty" in want:
        has = pl.col("_cp_txn").is_not_null().cast(pl.Int64)
        seen_any = has.cum_sum().over("_acct") - has
        seen_this = has.cum_sum().over(["_acct", "_cp_txn"]) - has
        df = df.with_columns(
            new_counterparty=pl.col("_cp_txn").is_not_null() & (seen_any > 0) & (seen_this == 0)
        )
    return df


def _devices(df: pl.DataFrame) -> pl.DataFrame:
    """Known devices before each event, and whether its device is new: binds add, unbinds remove."""
    dev = pl.col("_dev")
    acts = dev.is_not_null() & pl.col("_ok")
    unbind = pl.col("_unbind")
    after = pl.when(acts & unbind).then(0).when(acts).then(1)  # device present after this event
    df = df.with_columns(_after=after.cast(pl.Int64))
    df = df.with_columns(
        _present=pl.col("_after").shift(1).forward_fill().over(["_acct", "_dev"]).fill_null(0)
    )
    df = df.with_columns(
        _delta=pl.when(pl.col("_after").is_null() | dev.is_null())
        .then(0)
        .otherwise(pl.col("_after") - pl.col("_present"))
    )
    known = pl.col("_delta").cum_sum().over("_acct") - pl.col("_delta")
    return df.with_columns(known_devices=known).with_columns(
        new_device=dev.is_not_null() & (pl.col("known_devices") > 0) & (pl.col("_present") == 0)
    )


def _mad(df: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """Median absolute deviation of the account's last 64 amounts before each row in ``rows``."""
    txn_amounts = df.filter(pl.col("_txn"))["_amt"]
    sub = df.select("_row", "_txns_before_global", "_history_txns").filter(
        pl.col("_row").is_in(rows.implode())
    )
    hi = pl.col("_txns_before_global")
    lo = hi - pl.min_horizontal(pl.col("_history_txns"), pl.lit(RECENT_AMOUNTS))
    members = sub.select("_row", pl.int_ranges(lo, hi).alias("_k")).explode("_k")
    members = members.with_columns(
        _a=pl.when(pl.col("_k").is_not_null()).then(txn_amounts.gather(members["_k"].fill_null(0)))
    )
    return members.group_by("_row").agg(
        pl.when(pl.col("_a").count() > 0)
        .then((pl.col("_a") - pl.col("_a").median()).abs().median())
        .otherwise(0.0)
        .alias("amount_mad")
    )
