"""Block- and allow-lists, the pure part: normalisation, CSV lines and errors, fuzzy names, the index."""

from __future__ import annotations

import pytest

from thawline.domain.errors import InvalidInputError
from thawline.domain.lists import (
    mask_name,
    match_names,
    name_score,
    normalise,
    normalise_name,
    parse_csv,
)
from thawline.services.lists import ListIndex, ListMatch
from thawline.services.vault import blind_index, derive_keys

KEYS = derive_keys(b"k" * 32)


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("phone", "13800138000", "+8613800138000"),
        ("phone", "+86 138-0013-8000", "+8613800138000"),
        ("resident_id", "11010519491231002x", "11010519491231002X"),
        ("resident_id", " 110105 19491231 002X ", "11010519491231002X"),
        ("bank_card", "4111 1111-1111 1111", "4111111111111111"),
        ("ip", " 10.0.0.1 ", "10.0.0.1"),
        ("ip", "2001:0DB8:0000::0001", "2001:db8::1"),
        ("ip", "::ffff:192.0.2.7", "192.0.2.7"),
        ("device", " dev_ABC:1 ", "dev_ABC:1"),
        ("name", "  张 三 ", "张三"),
        ("name", "Smith,  JOHN", "smith john"),
        ("name", "ＺＨＡＮＧ　San", "zhang san"),
        ("name", "买买提 ・ 艾力", "买买提·艾力"),
    ],
)
def test_values_are_normalised_like_the_vault_normalises_accounts(kind: str, raw: str, expected: str) -> None:
    assert normalise(kind, raw) == expected


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("phone", "12345"),
        ("resident_id", "110105194912310021"),  # wrong checksum
        ("bank_card", "4111111111111112"),  # fails Luhn
        ("ip", "300.1.1.1"),
        ("device", "dev with spaces"),
        ("name", " ,; "),
    ],
)
def test_invalid_values_name_the_field_and_never_echo_the_value(kind: str, raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise(kind, raw, field="value")
    assert caught.value.field == "value"
    assert raw.strip() not in str(caught.value)


def test_an_unknown_kind_is_a_kind_error() -> None:
    with pytest.raises(InvalidInputError) as caught:
        normalise("email", "a@example.com")
    assert caught.value.field == "kind"


def test_csv_lines_are_parsed_and_bad_ones_reported_by_line_and_field() -> None:
    text = (
        "\ufeffkind,value,reason\n"  # 1: header (with a byte-order mark)
        "phone,13800138000,fraud ring\n"  # 2
        "\n"  # 3: blank
        "# a comment\n"  # 4
        "bank_card,4111111111111112,bad card\n"  # 5: Luhn
        "email,a@example.com,x\n"  # 6: kind
        "phone,+86 138 0013 8000,same phone again\n"  # 7: duplicate of line 2
        "resident_id,11010519491231002X,\n"  # 8: no reason
        "ip,10.0.0.1\n"  # 9: two columns
        'name,"张\n三",a name over two lines\n'  # 10-11: one quoted record
        "device,dev_1,emulator farm\n"  # 12
    )
    parsed = parse_csv(text)
    assert [(r.line, r.kind, r.value) for r in parsed.rows] == [
        (2, "phone", "+8613800138000"),
        (10, "name", "张三"),
        (12, "device", "dev_1"),
    ]
    assert [(e.line, e.field) for e in parsed.errors] == [
        (5, "value"),
        (6, "kind"),
        (8, "reason"),
        (9, "line"),
    ]
    assert parsed.duplicates == 1
    assert "4111111111111112" not in repr(parsed.errors)


def test_the_header_is_optional_and_broken_quoting_is_a_line_error() -> None:
    parsed = parse_csv('ip,10.0.0.1,"proxy"x\nip,10.0.0.2,proxy\n')
    assert [r.value for r in parsed.rows] == ["10.0.0.2"]
    assert [(e.line, e.field) for e in parsed.errors] == [(1, "line")]
    assert parse_csv("").rows == ()


def test_fuzzy_names_ignore_spacing_case_and_token_order() -> None:
    assert name_score(normalise_name("张 三"), normalise_name("张三")) == 100
    assert name_score(normalise_name("Zhang San"), normalise_name("san  ZHANG")) == 100
    assert name_score(normalise_name("Smith, John"), normalise_name("John Smith")) == 100
    assert name_score(normalise_name("张三"), normalise_name("张三丰")) < 90
    assert name_score(normalise_name("Jonathan Smith"), normalise_name("Jonathon Smith")) >= 90


def test_match_names_applies_the_threshold() -> None:
    candidates = [normalise_name(n) for n in ("张三丰", "张 三", "李四", "Jonathon Smith")]
    assert [i for i, _s in match_names("张三", candidates)] == [1]
    assert [i for i, _s in match_names("张三", candidates, threshold=75)] == [1, 0]
    assert [i for i, _s in match_names(normalise_name("Smith Jonathan"), candidates)] == [3]
    assert match_names("", candidates) == []


def test_names_are_masked_to_their_first_character() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("zhang san") == "z*"
    assert mask_name(None) is None


def _index(*rows: tuple[str, str, str, str]) -> ListIndex:
    """Entries of (id, list type, kind, normalised value)."""
    return ListIndex(
        KEYS,
        [
            (i, lt, kind, blind_index(KEYS, kind, value), value if kind == "name" else None)
            for i, lt, kind, value in rows
        ],
        version=1,
    )


def test_the_index_matches_blind_indexes_devices_ips_and_names() -> None:
    index = _index(
        ("le_p", "block", "phone", "+8613800138000"),
        ("le_d", "block", "device", "dev_1"),
        ("le_i", "block", "ip", "10.0.0.1"),
        ("le_n", "block", "name", "张三"),
    )
    phone = blind_index(KEYS, "phone", "+8613800138000")
    other = blind_index(KEYS, "phone", "+8613900139000")
    found = index.match({"phone": {phone, other}}, name="张 三", device="dev_1", ip="::ffff:10.0.0.1")
    assert found == [
        ListMatch("le_d", "device", "block"),
        ListMatch("le_i", "ip", "block"),
        ListMatch("le_n", "name", "block", 100.0),
        ListMatch("le_p", "phone", "block"),
    ]
    assert index.match({"phone": {other}}, name="李四", device="dev_2", ip="not an ip") == []
    # the same value under another kind is another hash
    assert index.match({"bank_card": {phone}}) == []


def test_allow_beats_block_of_the_same_kind_only() -> None:
    index = _index(
        ("le_bp", "block", "phone", "+8613800138000"),
        ("le_ap", "allow", "phone", "+8613800138000"),
        ("le_bc", "block", "bank_card", "4111111111111111"),
        ("le_bn", "block", "name", "zhang san"),
        ("le_an", "allow", "name", "san zhang"),
    )
    found = index.match(
        {
            "phone": {blind_index(KEYS, "phone", "+8613800138000")},
            "bank_card": {blind_index(KEYS, "bank_card", "4111111111111111")},
        },
        name="Zhang San",
    )
    assert [(m.entry_id, m.list_type) for m in found] == [
        ("le_an", "allow"),
        ("le_ap", "allow"),
        ("le_bc", "block"),
    ]


def test_the_name_threshold_is_configurable() -> None:
    rows = [("le_n", "block", "name", blind_index(KEYS, "name", "张三丰"), "张三丰")]
    assert ListIndex(KEYS, rows).match(name="张三") == []
    loose = ListIndex(KEYS, rows, threshold=75).match(name="张三")
    assert [(m.entry_id, round(m.score)) for m in loose] == [("le_n", 80)]
