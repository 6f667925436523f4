"""Integrator API keys: what a key may do (scopes), and the key format."""

from __future__ import annotations

import re
from enum import StrEnum

from thawline.domain.errors import InvalidInputError


class Scope(StrEnum):
    """Least privilege: each route asks for one scope; ``admin`` implies all."""

    LOG_READ = "log:read"
    LOG_EXPORT = "log:export"
    LOG_ADMIN = "log:admin"
    EVENTS_WRITE = "events:write"
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_WRITE = "accounts:write"
    FREEZES_WRITE = "freezes:write"
    APPEALS_WRITE = "appeals:write"
    REVIEWS_WRITE = "reviews:write"  # a reviewer: claim, decide, re-review freezes
    REVIEWS_LEAD = "reviews:lead"  # a review lead: assign cases, declare conflicts of interest
    LISTS_WRITE = "lists:write"  # manage block- and allow-lists
    RULES_WRITE = "rules:write"  # load ruleset versions, suppress rules per account
    AUTHZ_CHECK = "authz:check"
    NOTIFICATIONS_WRITE = "notifications:write"  # the holder's side: read receipts, notification preferences
    WEBHOOKS_WRITE = "webhooks:write"  # an integrator: its webhook subscriptions and their deliveries
    OUTBOX_ADMIN = "outbox:admin"  # operators: every outbox message, dead letters, replays
    REPORTS_READ = "reports:read"  # the freeze report and its charts: aggregates, no personal data
    METRICS_READ = "metrics:read"  # a Prometheus scraper: GET /metrics, counts and timings only
    ADMIN = "admin"


KEY_PREFIX = "tlk"
_PRESENTED = re.compile(r"^tlk_(ak_[0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")


def parse_scopes(values: list[str]) -> frozenset[Scope]:
    """Validate scope names; at least one is required."""
    if not values:
        raise InvalidInputError("at least one scope is required", field="scopes")
    try:
        return frozenset(Scope(v) for v in values)
    except ValueError as exc:
        known = ", ".join(s.value for s in Scope)
        raise InvalidInputError(f"unknown scope ({exc}); known: {known}", field="scopes") from exc


def allows(granted: frozenset[Scope], needed: Scope) -> bool:
    """True when ``granted`` covers ``needed``."""
    return Scope.ADMIN in granted or needed in granted


def split_presented_key(presented: str) -> tuple[str, str] | None:
    """Split ``tlk_<id>.<secret>`` into (id, secret), or None if malformed."""
    match = _PRESENTED.match(presented)
    return None if match is None else (match.group(1), match.group(2))
