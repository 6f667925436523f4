"""Holder identifiers: validated and normalised before they go into the vault (never into the log)."""

from __future__ import annotations

import re

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric

from thawline.domain.errors import InvalidInputError


def resident_id(value: str, *, field: str = "holder.resident_id") -> str:
    """A Chinese resident ID number, checksum verified, upper-case X."""
    compact = ric.compact(value)
    try:
        valid = ric.is_valid(compact)
    except KeyError:  # python-stdnum raises for some unknown region codes instead of answering False
        valid = False
    if not valid:
        raise InvalidInputError("not a valid resident ID number (18 characters, checksum)", field=field)
    return str(compact).upper()


def phone(value: str, *, region: str = "CN", field: str = "holder.phone") -> str:
    """A phone number in E.164 form (numbers without a country code are taken as ``region``)."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInputError(f"not a phone number: {exc}", field=field) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInputError("not a valid phone number", field=field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def bank_card(value: str, *, field: str = "holder.bank_cards") -> str:
    """A bank-card number: 12 to 19 digits passing the Luhn check, separators removed."""
    digits = value.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn.is_valid(digits):
        raise InvalidInputError("not a valid bank-card number (12-19 digits, Luhn check)", field=field)
    return digits


_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")


def email(value: str, *, field: str = "holder.email") -> str:
    """An email address (``local@domain.tld``, no display name), domain lower-cased."""
    value = value.strip()
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidInputError("not a valid email address (local@domain.tld)", field=field)
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"
