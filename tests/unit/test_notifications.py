"""Routing, retry, quiet-hour and SMS-limit rules, and Standard Webhooks signatures."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from thawline.domain import notifications as n
from thawline.domain import webhooks as sig
from thawline.domain.errors import InvalidInputError
from thawline.services.webhooks import check_url

# The example of the Standard Webhooks specification (also in the README's verification recipe).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specification_example_signs_to_the_documented_signature() -> None:
    assert sig.signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    stamp = datetime.fromtimestamp(SPEC_TS, UTC)
    assert Webhook(SPEC_SECRET).sign(SPEC_ID, stamp, SPEC_BODY.decode()) == SPEC_SIGNATURE


def test_the_off_the_shelf_library_accepts_our_headers_and_rejects_a_changed_body() -> None:
    secret = sig.new_secret()
    body = b'{"type":"account.frozen","data":{"account_id":"acc_1"}}'
    headers = sig.headers([secret], "msg_1", int(datetime.now(UTC).timestamp()), body)
    assert Webhook(secret).verify(body, headers) == {
        "type": "account.frozen",
        "data": {"account_id": "acc_1"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"acc_1", b"acc_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(sig.new_secret()).verify(body, headers)


def test_during_rotation_either_secret_verifies() -> None:
    old, new = sig.new_secret(), sig.new_secret()
    body = b"{}"
    headers = sig.headers([new, old], "msg_2", int(datetime.now(UTC).timestamp()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
        sig.verify(secret, headers, body, datetime.now(UTC))


def test_our_verifier_refuses_stale_timestamps_and_bad_headers() -> None:
    secret = sig.new_secret()
    now = datetime.now(UTC)
    stale = sig.headers([secret], "msg_3", int((now - timedelta(minutes=6)).timestamp()), b"{}")
    with pytest.raises(sig.SignatureError, match="tolerance"):
        sig.verify(secret, stale, b"{}", now)
    with pytest.raises(sig.SignatureError, match="headers"):
        sig.verify(secret, {"webhook-id": "x"}, b"{}", now)


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_backoff_grows_exponentially_with_jitter_and_never_passes_the_cap(attempt: int, seed: int) -> None:
    policy = n.RetryPolicy(max_attempts=8, base=timedelta(seconds=10), cap=timedelta(hours=1))
    delay = policy.delay(attempt, random.Random(seed))
    ceiling = min(3600.0, 10.0 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay.total_seconds() <= ceiling


def test_the_last_attempt_is_exhausted() -> None:
    policy = n.RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)


def test_quiet_hours_wrap_past_midnight_in_the_holders_time_zone() -> None:
    quiet = n.QuietHours(22 * 60, 8 * 60, "Asia/Shanghai")
    late = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    assert quiet.contains(late)
    assert quiet.ends_after(late) == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # 08:00 next morning
    noon = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    assert not quiet.contains(noon)
    assert quiet.ends_after(noon) == noon


def test_quiet_hours_refuse_unknown_zones_and_empty_windows() -> None:
    with pytest.raises(InvalidInputError) as bad_zone:
        n.QuietHours(0, 60, "Mars/Olympus")
    assert bad_zone.value.field == "time_zone"
    with pytest.raises(InvalidInputError):
        n.QuietHours(60, 60, "UTC")
    with pytest.raises(InvalidInputError) as bad_time:
        n.parse_hhmm("25:00", "quiet_hours.start")
    assert bad_time.value.field == "quiet_hours.start"


def test_a_partial_freeze_is_a_restriction_to_holders_and_integrators() -> None:
    assert n.holder_template("account.frozen", "full") == "frozen"
    assert n.holder_template("account.frozen", "debit") == "restricted"
    assert n.webhook_type("account.frozen", "amount_above") == "account.restricted"
    assert n.webhook_type("freeze.expired") == "account.released"
    assert n.webhook_type("events.ingested") is None


def test_subscription_patterns_are_checked_and_matched() -> None:
    assert n.check_patterns(["appeal.*", "account.frozen", "appeal.*"]) == ("appeal.*", "account.frozen")
    with pytest.raises(InvalidInputError) as bad:
        n.check_patterns(["account.frozen", "account.exploded"])
    assert bad.value.field == "event_types[1]"
    assert n.matches(("appeal.*",), "appeal.rejected")
    assert not n.matches(("appeal.*",), "account.frozen")
    assert n.matches(("*",), "verification.completed")


def test_sms_limits_count_hour_and_day() -> None:
    limits = n.SmsLimits(per_hour=2, per_day=3)
    assert limits.allows(1, 1)
    assert not limits.allows(2, 2)
    assert not limits.allows(0, 3)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/",
        "http://[::1]:8080/",
        "http://169.254.169.254/latest",
        "http://localhost/",
    ],
)
def test_internal_webhook_urls_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        check_url(url, allow_private=False)
    assert refused.value.field == "url"
    assert check_url(url, allow_private=True) == url


def test_public_webhook_urls_are_accepted() -> None:
    assert check_url("https://gateway.example.com/hooks", allow_private=False)
    with pytest.raises(InvalidInputError):
        check_url("ftp://gateway.example.com/", allow_private=True)


@pytest.mark.parametrize("text", ["2200", "22:00:59", "22:00+08:00", "24:00", "7:00"])
def test_quiet_hours_times_are_exactly_hh_mm(text: str) -> None:
    with pytest.raises(InvalidInputError):
        n.parse_hhmm(text, "quiet_hours.start")
