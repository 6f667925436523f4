"""Staff rules: the role table, the password policy, lockout, sign-in throttling and TOTP (RFC 6238)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from thawline.domain.appeals import AppealStatus
from thawline.domain.errors import InvalidInputError, PermissionDeniedError
from thawline.domain.limits import AttemptLimiter
from thawline.domain.staff import (
    LOCKOUT_DURATION,
    MAX_FAILURES,
    PERMISSIONS,
    Permission,
    Role,
    after_failure,
    case_step_permission,
    check_password,
    check_permission,
    hotp,
    is_locked,
    normalise_username,
    otpauth_uri,
    parse_roles,
    permissions,
    totp_step,
    verify_totp,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
RFC_SECRET = b"12345678901234567890"  # the SHA-1 seed of RFC 4226 and RFC 6238


def test_every_role_has_a_row_in_the_permission_table() -> None:
    assert set(PERMISSIONS) == set(Role)


def test_only_a_senior_reviewer_gives_the_second_approval() -> None:
    holders = {r for r, granted in PERMISSIONS.items() if Permission.CASES_SECOND_APPROVAL in granted}
    assert holders == {Role.SENIOR_REVIEWER}


def test_the_auditor_only_reads() -> None:
    assert PERMISSIONS[Role.AUDITOR] == {
        Permission.LOG_READ,
        Permission.PROOFS_READ,
        Permission.LOG_EXPORT,
        Permission.REPORTS_READ,
    }


def test_an_admin_manages_but_does_not_review_cases() -> None:
    assert not {p for p in PERMISSIONS[Role.ADMIN] if p.value.startswith("cases:")}
    assert Permission.USERS_ADMIN in PERMISSIONS[Role.ADMIN]


def test_roles_add_up_and_a_missing_permission_is_refused() -> None:
    both = permissions([Role.REVIEWER, Role.AUDITOR])
    assert Permission.CASES_REVIEW in both
    assert Permission.LOG_EXPORT in both
    check_permission(both, Permission.CASES_READ)
    with pytest.raises(PermissionDeniedError):
        check_permission(both, Permission.CASES_SECOND_APPROVAL)


def test_a_case_waiting_for_its_second_approval_needs_the_senior_permission() -> None:
    assert case_step_permission(AppealStatus.SECOND_APPROVAL) is Permission.CASES_SECOND_APPROVAL
    for status in (AppealStatus.SUBMITTED, AppealStatus.RESUBMITTED, AppealStatus.IN_REVIEW):
        assert case_step_permission(status) is Permission.CASES_REVIEW


def test_roles_are_parsed_deduplicated_and_checked() -> None:
    assert parse_roles(["senior_reviewer", "reviewer", "reviewer"]) == (Role.REVIEWER, Role.SENIOR_REVIEWER)
    with pytest.raises(InvalidInputError):
        parse_roles(["superuser"])
    with pytest.raises(InvalidInputError):
        parse_roles([])


@pytest.mark.parametrize("name", ["Alice", " alice ", "ALICE"])
def test_usernames_are_lower_cased(name: str) -> None:
    assert normalise_username(name) == "alice"


@pytest.mark.parametrize("name", ["a", "-alice", "alice smith", "alice@example.com", "x" * 65, "韩梅梅"])
def test_malformed_usernames_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise_username(name)
    assert caught.value.field == "username"


@pytest.mark.parametrize(
    "password",
    ["short", "x" * 257, "aaaaaaaaaaaaaaaa", "my name is alice, ok?"],
    ids=["too-short", "too-long", "one-character", "contains-username"],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_password(password, "alice")
    assert caught.value.field == "password"


def test_a_long_passphrase_is_accepted() -> None:
    check_password("correct horse battery staple", "alice")


def test_the_fifth_failure_in_a_row_locks_the_account_for_fifteen_minutes() -> None:
    failures = 0
    for _ in range(MAX_FAILURES - 1):
        after = after_failure(failures, NOW)
        assert after.locked_until is None
        failures = after.failures
    locked = after_failure(failures, NOW)
    assert locked.locked_until == NOW + LOCKOUT_DURATION == NOW + timedelta(minutes=15)
    assert locked.failures == 0  # counting starts again once the lock ends
    assert is_locked(locked.locked_until, NOW + timedelta(minutes=14, seconds=59))
    assert not is_locked(locked.locked_until, NOW + timedelta(minutes=15))
    assert not is_locked(None, NOW)


def test_the_limiter_allows_ten_attempts_a_minute_per_key() -> None:
    limiter = AttemptLimiter(10)
    for i in range(10):
        assert limiter.attempt("alice", NOW + timedelta(seconds=i)) is None
    wait = limiter.attempt("alice", NOW + timedelta(seconds=30))
    assert wait == timedelta(seconds=30)
    assert limiter.attempt("bob", NOW + timedelta(seconds=30)) is None  # keys are separate
    assert limiter.attempt("alice", NOW + timedelta(seconds=60)) is None  # the first attempt aged out


@pytest.mark.parametrize(
    ("counter", "code"),
    [(0, "755224"), (1, "287082"), (2, "359152"), (3, "969429"), (9, "520489")],
)
def test_hotp_matches_rfc_4226(counter: int, code: str) -> None:
    assert hotp(RFC_SECRET, counter) == code


@pytest.mark.parametrize(
    ("unix", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_totp_matches_rfc_6238_sha1_vectors(unix: int, code: str) -> None:
    at = datetime.fromtimestamp(unix, UTC)
    assert hotp(RFC_SECRET, totp_step(at), digits=8) == code


def test_a_totp_code_is_good_within_one_step_of_drift_and_only_once() -> None:
    step = totp_step(NOW)
    code = hotp(RFC_SECRET, step)
    assert verify_totp(RFC_SECRET, code, NOW, None) == step
    assert verify_totp(RFC_SECRET, code[:3] + " " + code[3:], NOW, None) == step
    assert verify_totp(RFC_SECRET, code, NOW + timedelta(seconds=30), None) == step
    assert verify_totp(RFC_SECRET, code, NOW + timedelta(seconds=90), None) is None
    assert verify_totp(RFC_SECRET, code, NOW, last_step=step) is None  # replayed
    assert verify_totp(RFC_SECRET, hotp(RFC_SECRET, step - 1), NOW, last_step=step) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "１２３４５６"])
def test_malformed_totp_codes_are_refused(code: str) -> None:
    assert verify_totp(RFC_SECRET, code, NOW, None) is None


def test_the_otpauth_uri_carries_the_secret_in_base32() -> None:
    uri = urlparse(otpauth_uri(RFC_SECRET, "alice"))
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Thawline%3Aalice")
    query = parse_qs(uri.query)
    padded = query["secret"][0] + "=" * (-len(query["secret"][0]) % 8)
    assert base64.b32decode(padded) == RFC_SECRET
    assert query["digits"] == ["6"]
    assert query["period"] == ["30"]
    assert query["issuer"] == ["Thawline"]
