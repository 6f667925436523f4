"""The personal-identifier guard: what it must find, what it must leave alone, and what it says."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric

from thawline.oplog import pii
from thawline.oplog.canonical import canonical_json
from thawline.oplog.pii import Finding, PersonalDataInLogError, assert_no_identifiers, find_identifiers


def make_resident_id(region: str = "110105", birth: str = "19900307", seq: int = 1) -> str:
    body = f"{region}{birth}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")  # the last character is ignored by the calculation


def make_card(prefix: str, length: int) -> str:
    body = prefix + "0" * (length - 1 - len(prefix))
    return body + luhn.calc_check_digit(body)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in find_identifiers(text)]


RID = make_resident_id()
RID_X = next(i for i in (make_resident_id(seq=s) for s in range(1, 200)) if i.endswith("X"))


def test_generated_ids_are_valid() -> None:
    assert ric.is_valid(RID)
    assert ric.is_valid(RID_X)
    assert RID_X.endswith("X")


# --- resident ID numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "rid",
    [
        RID,
        RID_X,
        RID_X.lower(),
        make_resident_id("440305", "20011231", 7),
        make_resident_id("360426", "19910101", 7),
    ],
)
@pytest.mark.parametrize("template", ["{}", "id {} end", "身份证号{}。", '{{"id":"{}"}}', "({})"])
def test_resident_ids_found(rid: str, template: str) -> None:
    text = template.format(rid)
    assert kinds(text) == [("resident_id", rid)]


def test_resident_id_with_bad_checksum_or_date_not_flagged() -> None:
    # An 18-digit run that passes Luhn is a possible card number, so pick ones that do not.
    wrong = next(RID[:-1] + d for d in "0123456789" if d != RID[-1] and not luhn.is_valid(RID[:-1] + d))
    assert not ric.is_valid(wrong)
    assert kinds(wrong) == []
    bad_date = next(
        i
        for i in (make_resident_id("110105", "19901332", s) for s in range(1, 50))
        if not luhn.is_valid(i) and not i.endswith("X")
    )
    assert kinds(bad_date) == []
    assert kinds(bad_date[:-1] + "X") == []  # an X is only ever part of a resident ID


def test_resident_id_glued_to_letters_not_flagged() -> None:
    assert kinds(f"ID{RID}") == []
    assert kinds(f"{RID}a") == []
    assert kinds(f"{RID_X}Y") == []
    assert kinds(f"user_{RID}") == []


def test_stdnum_keyerror_does_not_escape() -> None:
    # python-stdnum 2.2 raises KeyError('county') for a province-only region match; that must
    # neither crash the guard nor count as an ID.
    odd = make_resident_id("110300", "19900101", 1)
    with pytest.raises(KeyError):
        ric.is_valid(odd)
    assert kinds(odd) == []


# --- bank cards -------------------------------------------------------------------------------

VISA = "4111111111111111"
UNIONPAY_19 = make_card("6222021234", 19)
VISA_13 = "4222222222222"
AMEX = "378282246310005"


@pytest.mark.parametrize(
    "card",
    [
        VISA,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        UNIONPAY_19,
        " ".join([UNIONPAY_19[i : i + 4] for i in range(0, 19, 4)]),
        VISA_13,
        AMEX,
        "3782 822463 10005",
    ],
)
def test_cards_found(card: str) -> None:
    assert luhn.is_valid(card.replace(" ", "").replace("-", ""))
    assert kinds(card) == [("bank_card", card)]
    assert kinds(f"卡号：{card}，请核对") == [("bank_card", card)]
    assert kinds(f"card {card} exp 12/27") == [("bank_card", card)]


@pytest.mark.parametrize(
    "text", ["4111111111111112", "4111 1111 1111 1112", "1234567812345678", "4111  1111 1111 1111 1111 1111"]
)
def test_non_luhn_or_malformed_runs_not_flagged(text: str) -> None:
    assert kinds(text) == []


def test_grouped_card_followed_by_more_digits() -> None:
    assert kinds("4111 1111 1111 1111 2027") == [("bank_card", "4111 1111 1111 1111")]


# --- phone numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "13812345678",
        "19912345678",
        "+8613812345678",
        "+86 13812345678",
        "+86-13812345678",
        "8613812345678",
        "86 13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+14155552671",
        "+442079460958",
        "+44 20 7946 0958",
        "+33 6 12 34 56 78",
    ],
)
def test_phones_found(phone: str) -> None:
    assert kinds(phone) == [("phone", phone)]
    assert kinds(f"联系电话{phone}。") == [("phone", phone)]
    assert kinds(f'{{"note":"call {phone}"}}') == [("phone", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "12812345678",  # no Chinese mobile starts with 12
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "+999123456789",  # no such country code
        "+1234567",  # too short for E.164 here
        "+1 234",
    ],
)
def test_non_phones_not_flagged(text: str) -> None:
    assert kinds(text) == []


def test_two_phones_in_one_run() -> None:
    assert kinds("13812345678 13912345678") == [("phone", "13812345678"), ("phone", "13912345678")]


def test_full_width_digits() -> None:
    text = "手机：１３８１２３４５６７８，备用＋８６ １３９１２３４５６７８"
    assert kinds(text) == [("phone", "１３８１２３４５６７８"), ("phone", "＋８６ １３９１２３４５６７８")]


def test_canonical_json_text_is_scanned_like_its_strings() -> None:
    # The log encoder scans the whole canonical entry; a JSON escape before the digits must not hide
    # them (the "n" of \n is a letter, the "0" of \u0010 a digit).
    for note in ["line\n13812345678", "tab\t4111111111111111", "ctl\x1013812345678", f'q"{RID}']:
        text = canonical_json({"note": note}).decode()
        assert find_identifiers(text), text
        assert find_identifiers(note), note


# --- things that must never be flagged --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-14T09:26:53.589793Z",
        "2025-03-14T09:26:53+08:00",
        "2025-03-14 09:26:53",
        "20250314T092653Z",
        "2025-03-14T09:26:53.138123456Z",
        "12345678-1234-4234-8234-123456789012",
        "550e8400-e29b-41d4-a716-446655440000",
        "acc_12345678901",
        "acc_13812345678",
        "acc_0001",
        "frz_4111111111111111",
        "12345678.90",
        "13812345678.00",
        "4111111111111111.5",
        "0.13812345678",
        "1,234,567.89",
        "amount 12345678 CNY",
        "v1.13812345678",
        "sha256:" + "4111111111111111" + "ab" * 24,
        "1" * 64,
        "0" * 64,
        "x13812345678",
        "13812345678x",
        "abc_13812345678_def",
    ],
)
def test_not_flagged(text: str) -> None:
    assert kinds(text) == []


@settings(max_examples=500)
@given(st.binary())
def test_sha256_hex_never_flagged(data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    assert find_identifiers(digest) == []
    assert find_identifiers(f'{{"prev_hash":"{digest}","seq":12}}') == []
    assert find_identifiers(digest.upper()) == []


@settings(max_examples=300)
@given(st.uuids())
def test_uuids_never_flagged(value: uuid.UUID) -> None:
    assert find_identifiers(str(value)) == []
    assert find_identifiers(value.hex) == []


def reference_scan(text: str) -> list[Finding]:
    """The exact regex over the whole text, without the byte-level prefilter."""
    if not text.isascii():
        text = text.translate(pii._FULL_WIDTH)
    found: list[Finding] = []
    for match in pii._CANDIDATE.finditer(text):
        pii._classify(match.group(), match.start(), found)
    return found


pieces = st.sampled_from(
    [
        "13812345678",
        VISA,
        "4111 1111 1111 1111",
        RID,
        RID_X,
        "+14155552671",
        "+86 138 1234 5678",
        "\\n",
        "\\u0010",
        "２",
        "中",
        "2025-03-14",
        "acc_",
        ".",
        "X",
    ]
)
noise = st.text(st.sampled_from('0123456789 -+._aX\\"u'), max_size=14)


@settings(max_examples=800)
@given(st.lists(pieces | noise, max_size=8).map("".join))
def test_prefilter_never_changes_the_result(text: str) -> None:
    assert find_identifiers(text) == reference_scan(text)


def test_findings_carry_no_value() -> None:
    assert [f.name for f in dataclasses.fields(Finding)] == ["kind", "start", "end"]
    finding = find_identifiers("call 13812345678")[0]
    assert "13812345678" not in repr(finding)
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.kind = "phone"  # type: ignore[misc]


def test_short_and_empty_text() -> None:
    assert find_identifiers("") == []
    assert find_identifiers("1234567") == []


# --- assert_no_identifiers ----------------------------------------------------------------


def raised(value: object) -> PersonalDataInLogError:
    with pytest.raises(PersonalDataInLogError) as info:
        assert_no_identifiers(value, where="log entry")
    assert isinstance(info.value, ValueError)
    return info.value


def test_clean_value_passes() -> None:
    assert_no_identifiers(
        {
            "v": 1,
            "seq": 12,
            "ts": "2025-03-14T09:26:53.589793Z",
            "subject": {"account_id": "acc_12345678901"},
            "amount": "12345678.90",
            "reasons": ["VELOCITY", None, True, 1.5, 2**60],
            "prev": hashlib.sha256(b"x").hexdigest(),
        },
        where="log entry",
    )


def test_value_path_and_kind_named_value_never_shown() -> None:
    error = raised({"details": {"notes": ["ok", f"客户身份证{RID}"]}})
    assert str(error).startswith("log entry: $.details.notes[1] ")
    assert "resident ID number" in str(error)
    assert RID not in str(error)
    assert (error.path, error.kind, error.where) == ("$.details.notes[1]", "resident_id", "log entry")


def test_card_and_phone_paths() -> None:
    error = raised({"state_after": {"payout": {"card": "4111 1111 1111 1111"}}})
    assert error.path == "$.state_after.payout.card"
    assert error.kind == "bank_card"
    assert "4111" not in str(error)
    error = raised([{"x": "+86 138 1234 5678"}])
    assert error.path == "$[0].x"
    assert error.kind == "phone"
    assert "138" not in str(error)


def test_identifier_in_a_key_names_the_parent_only() -> None:
    error = raised({"contacts": {"13812345678": "primary"}})
    assert "a key of $.contacts" in str(error)
    assert "13812345678" not in str(error)
    assert error.in_key


def test_identifier_in_a_number() -> None:
    # The encoder scans the canonical text, where 13812345678 reads the same as the string would.
    error = raised({"state_after": {"callback": 13812345678}})
    assert error.path == "$.state_after.callback"
    assert "13812345678" not in str(error)


def test_tuple_values_are_walked() -> None:
    assert raised({"t": ("a", (VISA,))}).path == "$.t[1][0]"
