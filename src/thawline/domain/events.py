"""Events integrators send: logins, transactions, profile changes, KYC updates, device bindings.

These are the login and transaction logs of the source document. Each event carries the
integrator's own id (``id``), unique per integrator: a replayed event changes nothing. Identifiers
that are personal data (a new phone number, a bank card) are never stored as sent: ingestion
replaces them with keyed hashes before anything is written.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_BATCH = 10_000
Token = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/+-]+$")]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("occurred_at needs a time zone (e.g. 2026-11-25T09:30:00+08:00)")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class EventType(StrEnum):
    """The kinds of event."""

    LOGIN = "login"
    TRANSACTION = "transaction"
    PROFILE_CHANGE = "profile_change"
    KYC_UPDATE = "kyc_update"
    DEVICE_BINDING = "device_binding"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Token = Field(description="The integrator's event id; a replay with the same id changes nothing.")
    account_id: Token
    occurred_at: AwareDatetime = Field(description="When it happened (RFC 3339 with a zone).")


class Geo(BaseModel):
    """Where a login came from, if the integrator knows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    country: str = Field(min_length=2, max_length=2, pattern="^[A-Z]{2}$")
    city: str | None = Field(default=None, max_length=64)


class Login(_Event):
    """A login attempt."""

    type: Literal["login"] = "login"
    ip: str = Field(min_length=2, max_length=45, description="IPv4 or IPv6 address.")
    device_id: Token
    user_agent: str | None = Field(default=None, max_length=512)
    success: bool = True
    geo: Geo | None = None


class Transaction(_Event):
    """A payment in or out of the account."""

    type: Literal["transaction"] = "transaction"
    transaction_id: Token
    amount: Decimal = Field(gt=0, max_digits=18, decimal_places=6)
    currency: str = Field(pattern="^[A-Z]{3}$")
    direction: Literal["debit", "credit"]
    counterparty: Token | None = None
    channel: Token | None = None
    order_ref: Token | None = None
    card_ref: Token | None = Field(default=None, description="A token for the card, never the card number.")
    ip: str | None = Field(default=None, max_length=45)
    device_id: Token | None = None


class ProfileChange(_Event):
    """A change of a profile field; ``value`` (phone, bank card) is hashed at ingestion, never stored."""

    type: Literal["profile_change"] = "profile_change"
    field: Literal["phone", "email", "password", "bank_card", "device", "address"]
    value: str | None = Field(default=None, max_length=256)


class KycUpdate(_Event):
    """The account's KYC level changed at the integrator."""

    type: Literal["kyc_update"] = "kyc_update"
    level: Literal["none", "basic", "full"]


class DeviceBinding(_Event):
    """A device was bound to or unbound from the account."""

    type: Literal["device_binding"] = "device_binding"
    device_id: Token
    action: Literal["bind", "unbind"] = "bind"


Event = Annotated[
    Login | Transaction | ProfileChange | KycUpdate | DeviceBinding, Field(discriminator="type")
]
