"""What a recorded change tells whom, and the delivery rules (backoff, quiet hours, SMS limits).

Every notification is caused by one operation-log entry: ``holder_template`` says which holder
message an action produces, ``webhook_type`` which integrator event, ``staff_template`` which
reviewer notice. Nothing here sends anything; the outbox and the dispatcher do.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from thawline.domain.errors import InvalidInputError


class Channel(StrEnum):
    """Where a message goes. In-site messages are written in the change's own transaction."""

    INBOX = "inbox"
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"


class Status(StrEnum):
    """Where an outbox message is."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # gave up after the last attempt; a person may replay it
    SUPPRESSED = "suppressed"  # deliberately not sent (opted out, over the SMS limit, no address)


# Holder messages a change produces; which of them the holder may not opt out of.
HOLDER_TEMPLATE = {
    "account.frozen": "frozen",  # or "restricted" for a partial scope: see holder_template
    "appeal.opened": "materials_missing",
    "appeal.submitted": "appeal_received",
    "appeal.resubmitted": "appeal_received",
    "appeal.claimed": "in_review",
    "appeal.assigned": "in_review",
    "appeal.needs_more_info": "needs_more_info",
    "appeal.approved": "approved",
    "appeal.rejected": "rejected",
    "appeal.sla_breached": "sla_reminder",
    "verification.started": "verification_requested",
    "verification.code_sent": "verification_code",
    "freeze.released": "released",
    "freeze.expired": "released",
    "probation.ended": "probation_ended",
}
MANDATORY = frozenset(
    {
        "frozen",
        "restricted",
        "needs_more_info",
        "approved",
        "rejected",
        "verification_requested",
        "verification_code",
        "released",
    }
)
# SMS is for what needs the holder now; everything else goes to the inbox and email only.
SMS_TEMPLATES = frozenset(
    {
        "frozen",
        "restricted",
        "needs_more_info",
        "approved",
        "rejected",
        "verification_requested",
        "verification_code",
        "released",
    }
)
# The one-time code goes by SMS only: an inbox or email copy would be a second place to steal it.
SMS_ONLY = frozenset({"verification_code"})
# Sent at any hour: the holder has just asked for it.
QUIET_HOURS_EXEMPT = frozenset({"verification_code"})

WEBHOOK_TYPES = frozenset(
    {
        "account.frozen",
        "account.restricted",
        "account.released",
        "account.probation_started",
        "account.probation_ended",
        *(
            f"appeal.{a}"
            for a in (
                "opened",
                "submitted",
                "resubmitted",
                "claimed",
                "assigned",
                "unclaimed",
                "first_approval",
                "needs_more_info",
                "approved",
                "rejected",
                "withdrawn",
                "expired",
                "closed",
                "sla_breached",
            )
        ),
        *(
            f"verification.{a}"
            for a in (
                "started",
                "code_sent",
                "sms_passed",
                "face_started",
                "face_passed",
                "face_failed",
                "face_reset",
                "completed",
                "cancelled",
            )
        ),
        "webhook.ping",
    }
)
_RENAMED = {
    "freeze.released": "account.released",
    "freeze.expired": "account.released",
    "probation.started": "account.probation_started",
    "probation.ended": "account.probation_ended",
}

STAFF_TEMPLATE = {
    "appeal.assigned": "staff_assigned",
    "appeal.sla_warning": "staff_sla_warning",
    "appeal.sla_breached": "staff_sla_breached",
    "appeal.first_approval": "staff_four_eyes_waiting",
}
REVIEWERS = "role:reviewers"
LEADS = "role:leads"


def is_partial(scope: str) -> bool:
    """A freeze that blocks only some transactions is a restriction, not a freeze, to the holder."""
    return scope != "full"


def holder_template(action: str, scope: str | None = None) -> str | None:
    """The holder message ``action`` produces, if any."""
    name = HOLDER_TEMPLATE.get(action)
    if name == "frozen" and scope is not None and is_partial(scope):
        return "restricted"
    return name


def webhook_type(action: str, scope: str | None = None) -> str | None:
    """The integrator event type ``action`` produces, if any."""
    if action == "account.frozen":
        return "account.restricted" if scope is not None and is_partial(scope) else "account.frozen"
    name = _RENAMED.get(action, action)
    return name if name in WEBHOOK_TYPES else None


def check_patterns(patterns: list[str]) -> tuple[str, ...]:
    """Validate subscription event types: exact names, ``prefix.*`` or ``*``."""
    if not patterns:
        raise InvalidInputError("subscribe to at least one event type", field="event_types")
    prefixes = {t.split(".")[0] for t in WEBHOOK_TYPES}
    for i, p in enumerate(patterns):
        ok = p == "*" or p in WEBHOOK_TYPES or (p.endswith(".*") and p[:-2] in prefixes)
        if not ok:
            raise InvalidInputError(
                f"unknown event type {p!r}; e.g. account.frozen, appeal.*, verification.*, *",
                field=f"event_types[{i}]",
            )
    return tuple(dict.fromkeys(patterns))


def matches(patterns: tuple[str, ...], event_type: str) -> bool:
    """True when a subscription's patterns cover ``event_type``."""
    return any(
        p in ("*", event_type) or (p.endswith(".*") and event_type.startswith(p[:-1])) for p in patterns
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, then dead-letter."""

    max_attempts: int = 8
    base: timedelta = timedelta(seconds=10)
    cap: timedelta = timedelta(hours=1)

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """How long to wait after failed attempt number ``attempt`` (1-based): uniform in [b/2, b]."""
        ceiling = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** (attempt - 1))
        draw = (rng or random).uniform(0.5, 1.0)
        return timedelta(seconds=ceiling * draw)

    def exhausted(self, attempts: int) -> bool:
        """True when no attempt is left."""
        return attempts >= self.max_attempts


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window (local time) in which non-urgent SMS wait; may wrap past midnight."""

    start: int  # minutes after local midnight
    end: int
    zone: str

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if not 0 <= value < 24 * 60:
                raise InvalidInputError("quiet hours are HH:MM between 00:00 and 23:59", field=name)
        if self.start == self.end:
            raise InvalidInputError("quiet hours must not start and end at the same time", field="end")
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInputError(f"unknown time zone {self.zone!r}", field="time_zone") from exc

    def _minute(self, at: datetime) -> int:
        local = at.astimezone(ZoneInfo(self.zone))
        return local.hour * 60 + local.minute

    def contains(self, at: datetime) -> bool:
        """True when ``at`` falls inside the window."""
        m = self._minute(at)
        return self.start <= m < self.end if self.start < self.end else m >= self.start or m < self.end

    def ends_after(self, at: datetime) -> datetime:
        """The first moment after ``at`` outside the window (``at`` itself when outside)."""
        if not self.contains(at):
            return at
        local = at.astimezone(ZoneInfo(self.zone))
        end = local.replace(hour=self.end // 60, minute=self.end % 60, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(at.tzinfo)


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str, field: str) -> int:
    """'22:30' → 1350 minutes; exactly HH:MM, 00:00-23:59."""
    match = _HHMM.match(text)
    if match is None:
        raise InvalidInputError("use HH:MM between 00:00 and 23:59, e.g. 22:00", field=field)
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True, slots=True)
class SmsLimits:
    """Per-holder SMS limits; the one-time code has its own throttle and is not counted here."""

    per_hour: int = 5
    per_day: int = 20

    def allows(self, sent_last_hour: int, sent_last_day: int) -> bool:
        """True when one more message fits."""
        return sent_last_hour < self.per_hour and sent_last_day < self.per_day
