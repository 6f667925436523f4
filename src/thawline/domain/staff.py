"""Staff of the console: roles and what each permits, the password policy, sign-in lockout and
throttling, and TOTP second factors (RFC 6238).

Roles are granted, permissions are checked: routes ask for a permission, never for a role, and
``PERMISSIONS`` is the one table that says who may do what. Roles do not imply one another (an admin
manages users but does not review cases); a person who needs both is given both roles.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, urlencode

from thawline.domain.appeals import AppealStatus
from thawline.domain.errors import InvalidInputError, PermissionDeniedError


class Role(StrEnum):
    """What a staff member is, as granted by an admin."""

    REVIEWER = "reviewer"
    SENIOR_REVIEWER = "senior_reviewer"  # also gives the second approval of four eyes
    RISK_ANALYST = "risk_analyst"  # rules, lists, suppressions
    AUDITOR = "auditor"  # read-only: the log, proofs, exports
    ADMIN = "admin"  # users, API keys, settings


class Permission(StrEnum):
    """One thing a staff member may do; routes declare the one they need."""

    CASES_READ = "cases:read"  # the review queue and case pages
    CASES_REVIEW = "cases:review"  # claim a case and decide it (the only or the first approval)
    CASES_SECOND_APPROVAL = "cases:second_approval"  # four eyes: the second approval
    RULES_WRITE = "rules:write"
    LISTS_WRITE = "lists:write"
    SUPPRESSIONS_WRITE = "suppressions:write"
    LOG_READ = "log:read"
    PROOFS_READ = "proofs:read"
    LOG_EXPORT = "log:export"
    USERS_ADMIN = "users:admin"
    APIKEYS_ADMIN = "apikeys:admin"
    SETTINGS_ADMIN = "settings:admin"
    REPORTS_READ = "reports:read"  # the dashboard and reports: aggregates, no personal data


P = Permission
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.REVIEWER: frozenset({P.CASES_READ, P.CASES_REVIEW}),
    Role.SENIOR_REVIEWER: frozenset({P.CASES_READ, P.CASES_REVIEW, P.CASES_SECOND_APPROVAL, P.REPORTS_READ}),
    Role.RISK_ANALYST: frozenset({P.RULES_WRITE, P.LISTS_WRITE, P.SUPPRESSIONS_WRITE, P.REPORTS_READ}),
    Role.AUDITOR: frozenset({P.LOG_READ, P.PROOFS_READ, P.LOG_EXPORT, P.REPORTS_READ}),
    # Separation of duties: the auditor checks what admins did, so admins do not read the log here.
    Role.ADMIN: frozenset({P.USERS_ADMIN, P.APIKEYS_ADMIN, P.SETTINGS_ADMIN, P.REPORTS_READ}),
}


def permissions(roles: Iterable[Role]) -> frozenset[Permission]:
    """Everything the roles together permit."""
    return frozenset().union(*(PERMISSIONS[r] for r in roles))


def check_permission(granted: frozenset[Permission], needed: Permission) -> None:
    """PermissionDeniedError unless ``needed`` is granted."""
    if needed not in granted:
        raise PermissionDeniedError(f"your roles do not include the '{needed}' permission")


def case_step_permission(status: AppealStatus) -> Permission:
    """What claiming or deciding a case in ``status`` takes: the four-eyes second approval is a senior's."""
    return P.CASES_SECOND_APPROVAL if status is AppealStatus.SECOND_APPROVAL else P.CASES_REVIEW


def parse_roles(values: Iterable[str]) -> tuple[Role, ...]:
    """Known roles, de-duplicated and sorted; at least one."""
    try:
        roles = tuple(sorted({Role(v.strip()) for v in values}))
    except ValueError as exc:
        known = ", ".join(r.value for r in Role)
        raise InvalidInputError(f"unknown role (known: {known})", field="roles") from exc
    if not roles:
        raise InvalidInputError("a staff member needs at least one role", field="roles")
    return roles


_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def normalise_username(value: str) -> str:
    """Lower-case; 2-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit."""
    name = value.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise InvalidInputError(
            "a username is 2-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
            field="username",
        )
    return name


# Length is what makes a password strong (NIST SP 800-63B); no composition rules. The upper bound
# keeps one sign-in attempt from hashing megabytes.
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


def check_password(password: str, username: str) -> None:
    """The password policy: 12-256 characters, not built around the username."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInputError(
            f"a password is {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters long", field="password"
        )
    if username and username.lower() in password.lower():
        raise InvalidInputError("the password must not contain the username", field="password")
    if len(set(password)) < 4:
        raise InvalidInputError("the password repeats too few characters", field="password")


# Lockout: this many wrong sign-ins in a row lock the account for LOCKOUT_DURATION. A locked
# account answers exactly like a wrong password, so the lock does not confirm a guess.
MAX_FAILURES = 5
LOCKOUT_DURATION = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Lockout:
    """The failure count and lock after one more wrong sign-in."""

    failures: int
    locked_until: datetime | None


def after_failure(failures: int, now: datetime) -> Lockout:
    """Count one more failure; the fifth in a row locks the account (and starts the count again)."""
    count = failures + 1
    if count >= MAX_FAILURES:
        return Lockout(0, now + LOCKOUT_DURATION)
    return Lockout(count, None)


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    """Whether a lock is still in force."""
    return locked_until is not None and now < locked_until


# TOTP (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 6 digits, 30-second steps, one step of clock drift
# either way. A code is good once: the newest step used is stored and older steps are refused.
TOTP_STEP_SECONDS = 30
TOTP_DIGITS = 6
TOTP_DRIFT_STEPS = 1
TOTP_SECRET_BYTES = 20


def totp_step(now: datetime) -> int:
    """The RFC 6238 time step ``now`` falls in."""
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def hotp(secret: bytes, counter: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 4226: the one-time code for ``counter``."""
    mac = hmac.new(secret, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def verify_totp(secret: bytes, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to (within the drift, newer than ``last_step``), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = totp_step(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue  # already used (a replayed code) or older than one that was
        if hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


def otpauth_uri(secret: bytes, account: str, issuer: str = "Thawline") -> str:
    """The ``otpauth://`` URI authenticator apps read (usually as a QR code)."""
    label = quote(f"{issuer}:{account}")
    params = {
        "secret": base64.b32encode(secret).decode().rstrip("="),
        "issuer": issuer,
        "algorithm": "SHA1",
        "digits": str(TOTP_DIGITS),
        "period": str(TOTP_STEP_SECONDS),
    }
    return f"otpauth://totp/{label}?{urlencode(params, quote_via=quote)}"
