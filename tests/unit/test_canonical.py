"""RFC 8785 canonical JSON: the examples of the RFC, rejections, and fast path == pure path."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import struct
import uuid
from collections import namedtuple
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thawline.oplog.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    _canonical_pure,
    canonical_json,
    format_json_path,
    parse_canonical,
)

ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def both(value: object) -> bytes:
    """Canonicalise through the public function and the pure path and insist they agree."""
    out = canonical_json(value)
    assert _canonical_pure(value) == out
    return out


def from_bits(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 Appendix B (IEEE-754 bit patterns and their JCS text), checked against node's String().
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC_NUMBERS)
def test_rfc8785_number_table(bits: str, expected: str) -> None:
    value = from_bits(bits)
    assert both(value) == expected.encode()
    assert both([value]) == f"[{expected}]".encode()
    assert both({"n": value}) == f'{{"n":{expected}}}'.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (999999999999999900000.0, "999999999999999900000"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (0.000001234, "0.000001234"),
        (123456789012345680000.0, "123456789012345680000"),
        (333333333.3333333, "333333333.3333333"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740991.0, "9007199254740991"),
        (1e16, "10000000000000000"),
        (1e30, "1e+30"),
        (4.5, "4.5"),
        (0.002, "0.002"),
        (1e-27, "1e-27"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (100.0, "100"),
        (-100.0, "-100"),
    ],
)
def test_es6_number_formatting(value: float, expected: str) -> None:
    assert both(value) == expected.encode()


@pytest.mark.parametrize("value", [0, 1, -1, 9007199254740991, -9007199254740991, 2**31, -(2**40)])
def test_integers_within_ijson_range(value: int) -> None:
    assert both(value) == str(value).encode()
    assert both({"n": value}) == f'{{"n":{value}}}'.encode()


def test_rfc8785_sorting_example() -> None:
    # §3.2.3: UTF-16 code unit order puts the emoji (D83D DE00) before U+FB33, though its code
    # point is larger. Python's own str ordering would put it last.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert both(value) == expected
    assert sorted(value)[-1] == "\U0001f600"  # Python's code point order differs from JCS here


def test_rfc8785_full_example() -> None:
    # §3.2.4 example, parsed from its JSON text as the RFC does.
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert both(json.loads(source)) == expected


def expected_escape(ch: str) -> str:
    short = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
    if ch in short:
        return short[ch]
    if ord(ch) < 0x20:
        return f"\\u{ord(ch):04x}"
    return ch


@pytest.mark.parametrize("code", [*range(0x20), 0x22, 0x2F, 0x5C, 0x7F, 0x80, 0x2028, 0x2029, 0xFEFF, 0xFFFF])
def test_string_escaping(code: int) -> None:
    ch = chr(code)
    expected = f'"a{expected_escape(ch)}b"'.encode()
    assert both(f"a{ch}b") == expected
    # The fast path's claim, checked directly: orjson escapes exactly as JCS does.
    assert orjson.dumps(f"a{ch}b", option=ORJSON_OPTIONS) == expected
    assert both({f"k{ch}": 1}) == f'{{"k{expected_escape(ch)}":1}}'.encode()


def test_all_control_characters_in_one_string() -> None:
    text = "".join(chr(i) for i in range(0x20)) + '"\\/\x7f\u2028'
    expected = '"' + "".join(expected_escape(c) for c in text) + '"'
    assert both(text) == expected.encode()
    assert "\\u001f" in expected  # lowercase hex
    assert both("\U0001f600") == '"\U0001f600"'.encode()  # raw UTF-8, never a surrogate pair escape


def test_literals_and_containers() -> None:
    assert both(None) == b"null"
    assert both(True) == b"true"
    assert both(False) == b"false"
    assert both([True, False, None, 0, 1]) == b"[true,false,null,0,1]"  # bool is not the int 1
    assert both({}) == b"{}"
    assert both([]) == b"[]"
    assert both(()) == b"[]"
    assert both((1, (2, "x"))) == b'[1,[2,"x"]]'
    assert both({"b": [], "a": {}}) == b'{"a":{},"b":[]}'
    assert both("") == b'""'


# --- rejection, with the path of the offending value -------------------------------------


def reject(value: object, path: str, fragment: str, **kwargs: Any) -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonical_json(value, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message
    assert info.value.path == path
    with pytest.raises(CanonicalizationError):
        _canonical_pure(value, **kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_rejected(bad: float) -> None:
    reject({"state_after": {"amount": bad}}, "$.state_after.amount", "NaN and Infinity")
    reject(bad, "$", "NaN and Infinity")


def test_floats_can_be_forbidden() -> None:
    reject(
        {"state_after": {"amount": 12.5}},
        "$.state_after.amount",
        "floats are not allowed",
        allow_floats=False,
    )
    assert canonical_json({"amount": 1250}, allow_floats=False) == b'{"amount":1250}'


@pytest.mark.parametrize("bad", [2**53, -(2**53), 2**64, -(2**64), 10**30])
def test_integers_outside_ijson_range_rejected(bad: int) -> None:
    reject({"a": [1, bad]}, "$.a[1]", "integer outside the I-JSON safe range")
    reject(bad, "$", "I-JSON")
    assert MAX_SAFE_INTEGER == 2**53 - 1


def test_non_string_keys_rejected_at_the_dict_path() -> None:
    reject({"x": {1: "a"}}, "$.x", "dict key of type int is not a string")
    reject({"x": {None: "a"}}, "$.x", "NoneType")
    reject({(1, 2): "a"}, "$", "tuple")
    reject({"x": [{True: 1}]}, "$.x[0]", "bool")


def test_lone_surrogates_rejected() -> None:
    reject({"note": "abc\ud800"}, "$.note", "lone surrogate")
    reject(["ok", "\udfff"], "$[1]", "lone surrogate")
    reject({"x": {"k\udc00": 1}}, "$.x", "lone surrogate")
    reject("\ud83d", "$", "lone surrogate")  # half of a pair is still a lone surrogate


class Colour(enum.Enum):
    RED = "red"


@dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "bad",
    [
        b"bytes",
        bytearray(b"x"),
        {1, 2},
        frozenset(),
        Decimal("1.5"),
        Colour.RED,
        dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        dt.date(2025, 1, 1),
        uuid.UUID(int=1),
        Point(1),
        orjson.Fragment(b'{"raw":true}'),
        object(),
        1 + 2j,
    ],
)
def test_unsupported_types_rejected(bad: object) -> None:
    # orjson would happily write several of these (enums, datetimes, UUIDs, dataclasses, fragments);
    # JCS has no form for them, and a hashed log must not depend on such conventions.
    reject({"a": {"b": bad}}, "$.a.b", "no canonical JSON form")


def test_paths_with_awkward_keys() -> None:
    reject({"a b": {"c-d": [None, math.nan]}}, '$["a b"]["c-d"][1]', "NaN")
    reject({"_ok1": {"": math.nan}}, '$._ok1[""]', "NaN")
    assert format_json_path(["a", 0, "b c", "é"]) == '$.a[0]["b c"]["é"]'


def test_cycles_and_deep_nesting_rejected() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    reject(cyclic, "$" + ".self" * MAX_DEPTH, "nested deeper than 64")
    looped: list[object] = []
    looped.append(looped)
    reject(looped, "$" + "[0]" * MAX_DEPTH, "cycle")

    ok: object = 1
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert both(ok) == b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
    too_deep = [ok]
    reject(too_deep, "$" + "[0]" * MAX_DEPTH, "nested deeper")
    deep_dict: object = {"v": 1.5}
    for _ in range(MAX_DEPTH):
        deep_dict = {"d": deep_dict}
    reject(deep_dict, "$" + ".d" * MAX_DEPTH, "nested deeper")


# --- how orjson differs from JCS, and that each difference is routed correctly -----------


def test_orjson_float_format_differs_from_jcs() -> None:
    # Why floats never go to orjson as floats: same shortest digits, different layout rules.
    assert orjson.dumps([1.0, -0.0, 1e20, 1e16, 1e-6]) == b"[1.0,-0.0,1e+20,1e+16,1e-6]"
    assert (
        canonical_json([1.0, -0.0, 1e20, 1e16, 1e-6])
        == b"[1,0,100000000000000000000,10000000000000000,0.000001]"
    )
    # Where the layouts agree, the fragment path and orjson give the same text.
    assert orjson.dumps([1e21, 1e-7, 0.1, 5e-324]) == canonical_json([1e21, 1e-7, 0.1, 5e-324])


def test_orjson_key_order_differs_from_jcs_outside_the_bmp() -> None:
    value = {"\ue000": 1, "\U0001f600": 2}
    # orjson sorts by code point (U+E000 first); JCS by UTF-16 unit (D83D < E000, emoji first).
    assert orjson.dumps(value, option=ORJSON_OPTIONS) == '{"\ue000":1,"\U0001f600":2}'.encode()
    assert both(value) == '{"\U0001f600":2,"\ue000":1}'.encode()
    # Non-BMP characters in values only do not affect the order.
    assert both({"b": "\U0001f600", "a": "\ue000"}) == '{"a":"\ue000","b":"\U0001f600"}'.encode()


def test_orjson_integer_limit_is_the_ijson_limit() -> None:
    assert orjson.dumps(2**53 - 1, option=ORJSON_OPTIONS) == b"9007199254740991"
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(2**53, option=ORJSON_OPTIONS)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(-(2**53), option=ORJSON_OPTIONS)


class Kind(enum.StrEnum):
    SYSTEM = "system"


class Level(enum.IntEnum):
    HIGH = 3


class Sneaky(str):
    __slots__ = ()

    def __str__(self) -> str:
        return "not me"

    def __lt__(self, other: object) -> bool:
        return False


class Big(int):
    def __repr__(self) -> str:
        return "not me"

    __str__ = __repr__


Pair = namedtuple("Pair", "left right")


def test_subclasses_are_written_by_their_base_value() -> None:
    assert both({"kind": Kind.SYSTEM, "level": Level.HIGH}) == b'{"kind":"system","level":3}'
    assert both([Sneaky("me"), Big(7)]) == b'["me",7]'
    assert both({Sneaky("b"): 1, "a": Sneaky("x\n")}) == b'{"a":"x\\n","b":1}'
    assert both({"p": Pair(1, "two")}) == b'{"p":[1,"two"]}'  # orjson itself refuses namedtuples
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(Pair(1, 2))
    reject({"x": Big(2**60)}, "$.x", "I-JSON")
    reject({"x": Sneaky("\ud800")}, "$.x", "lone surrogate")


class MyDict(dict[str, object]):
    def items(self) -> Any:
        return [("forged", True)]


class MyList(list[object]):
    def __iter__(self) -> Any:
        return iter(["forged"])


def test_container_subclass_overrides_are_ignored() -> None:
    assert both(MyDict(b=1, a=2)) == b'{"a":2,"b":1}'
    assert both({"l": MyList([1, 2])}) == b'{"l":[1,2]}'


def test_float_subclass() -> None:
    class Money(float):
        def __repr__(self) -> str:
            return "1e999"

    assert both([Money(1.5), Money(2.0)]) == b"[1.5,2]"
    reject([Money(math.nan)], "$[0]", "NaN")


# --- property tests ---------------------------------------------------------------------

valid_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
bmp_text = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), max_size=12)
safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


def json_values(keys: st.SearchStrategy[str], *, floats: bool) -> st.SearchStrategy[object]:
    scalars: st.SearchStrategy[object] = st.none() | st.booleans() | safe_ints | valid_text
    if floats:
        scalars = scalars | finite_floats
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5)
            | st.lists(children, max_size=3).map(tuple)
            | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=25,
    )


@settings(max_examples=400)
@given(json_values(bmp_text, floats=False))
def test_orjson_equals_pure_path_without_floats(value: object) -> None:
    # The claim the fast path rests on, tested on orjson directly rather than through the router.
    assert orjson.dumps(value, option=ORJSON_OPTIONS) == _canonical_pure(value)
    assert canonical_json(value) == _canonical_pure(value)


@settings(max_examples=300)
@given(json_values(valid_text, floats=False))
def test_fast_path_equals_pure_path_any_keys(value: object) -> None:
    assert canonical_json(value) == _canonical_pure(value)


def parse_numbers_as_doubles(data: bytes) -> object:
    return json.loads(data, parse_int=float)


@settings(max_examples=400)
@given(json_values(valid_text, floats=True))
def test_with_floats_round_trips_and_is_idempotent(value: object) -> None:
    out = canonical_json(value)
    assert out == _canonical_pure(value)
    again = parse_numbers_as_doubles(out)
    assert again == json.loads(json.dumps(value))  # tuples become lists; numbers compare exactly
    assert canonical_json(again) == out
    assert canonical_json(parse_canonical(out)) == out


@settings(max_examples=2000)
@given(finite_floats)
def test_every_float_round_trips_exactly(value: float) -> None:
    text = canonical_json(value).decode()
    assert float(text) == value
    assert "e" not in text or "e+" in text or "e-" in text
    assert not text.endswith(".0")
    assert len(text.lstrip("-").split("e")[0].replace(".", "").strip("0")) <= 17


# --- parse_canonical ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"b":[true,null,"x"]}',
        b"1e+21",
        b"100000000000000000000",
        b"123456789012345680000",
        b"9007199254740991",
        b"-5e-324",
        '{"\\r":1,"\U0001f600":2,"\ufb33":3}'.encode(),
        b'"\\u001f\\n\xe2\x80\xa8"',
    ],
)
def test_parse_canonical_accepts_canonical_bytes(data: bytes) -> None:
    value = parse_canonical(data)
    assert canonical_json(value) == data


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',
        b' {"a":1}',
        b'{"a":1}\n',
        b'{"b":1,"a":2}',
        b'{"a":1,"a":1}',
        b"1.0",
        b"1E+21",
        b"1e21",
        b"-0",
        b"0.10",
        b"9007199254740993",
        b'"\\/"',
        b'"\\u0041"',
        b'"\\u001F"',
        b'"\\u00e9"',
        b'"\\ud83d\\ude00"',
        '{"\ufb33":3,"\U0001f600":2}'.encode(),
        b"\xef\xbb\xbf{}",
        b'"\xff"',
        b"NaN",
        b"Infinity",
        b"[1,]",
        b"",
        b'"\\ud800"',
        b"18446744073709551616",
    ],
)
def test_parse_canonical_rejects_non_canonical_bytes(data: bytes) -> None:
    with pytest.raises(CanonicalizationError) as info:
        parse_canonical(data)
    assert str(info.value).startswith("$")


def test_parse_canonical_names_the_first_difference() -> None:
    with pytest.raises(CanonicalizationError, match="first difference at byte 2"):
        parse_canonical(b'{"b":1,"a":2}')


@settings(max_examples=300)
@given(json_values(valid_text, floats=True))
def test_parse_canonical_round_trip(value: object) -> None:
    data = canonical_json(value)
    assert canonical_json(parse_canonical(data)) == data
