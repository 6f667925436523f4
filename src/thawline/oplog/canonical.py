"""RFC 8785 JSON Canonicalization Scheme (JCS): the one byte form every log entry is hashed in.

Three ways produce the bytes, and the unit tests check the first two byte-for-byte against the third:

* orjson alone, when the value is made of exact built-in JSON types, holds no floats and has no
  character outside the Basic Multilingual Plane. Its key order, string escaping and integer
  output are then exactly those of JCS. This is the hot path: one type-only walk plus one orjson
  call, because orjson itself refuses lone surrogates, integers beyond 2**53-1
  (OPT_STRICT_INTEGER) and non-str keys.
* orjson with every float replaced by an ``orjson.Fragment`` holding its JCS text, when floats are
  the only obstacle (orjson's own float format differs from ES6: 1.0, 1e21, 1e-07).
* a pure-Python serialiser for everything else: str/int/dict/list/tuple subclasses (StrEnum,
  IntEnum, namedtuple) and dict keys outside the BMP, which JCS orders by UTF-16 code unit.

Only when the type walk or orjson objects does a second, detailed scan run; it validates
everything, picks between the last two ways and names the JSON path of any offending value."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import orjson

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "CanonicalizationError",
    "canonical_json",
    "format_json_path",
    "parse_canonical",
]

# I-JSON (RFC 7493) and JCS treat every number as an IEEE-754 double; larger integers would be
# silently rounded by other verifiers, so they are refused rather than written.
MAX_SAFE_INTEGER = 2**53 - 1
# Deep enough for any real entry, shallow enough that a cycle fails fast with a readable path.
MAX_DEPTH = 64

_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")
# A UTF-8 lead byte of a 4-byte sequence: the output holds a character outside the BMP somewhere.
_UTF8_NON_BMP = re.compile(b"[\xf0-\xf4]")
_PLAIN_LEAVES = frozenset({str, int, bool, type(None)})
# What the detailed scan reports: floats need JCS number formatting (inserted into orjson's output
# as pre-formatted fragments); subclasses and keys outside the BMP need the pure serialiser.
_HAS_FLOAT = 1
_NEEDS_PURE = 2
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_isfinite = math.isfinite

# JCS §3.2.2.2: only '"', '\\' and C0 controls are escaped; the five short forms are used where
# they exist and everything else is \u00xx with lowercase hex. DEL, U+2028 etc. stay literal.
_ESCAPES: dict[int, str] = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})
_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\"})
_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f]')

# Below 2**53 every integral double is printed by ES6 as its exact integer value.
_EXACT_INT_FLOAT = float(2**53)


class CanonicalizationError(ValueError):
    """A value cannot be written as canonical JSON; the message starts with its JSON path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _InvalidValueError(Exception):
    """Raised deep in the scan; each container on the way out adds its key to the path."""

    def __init__(self, reason: str, *, at_container: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.parts: list[str | int] = []
        # A bad dict key is reported at the dict's own path, not at a path containing the key.
        self.skip_next = at_container


def format_json_path(parts: list[str | int]) -> str:
    """Format keys and indexes (outermost first) as a JSONPath such as ``$.a.b[2]["x y"]``."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


def _error(exc: _InvalidValueError) -> CanonicalizationError:
    exc.parts.reverse()
    return CanonicalizationError(format_json_path(exc.parts), exc.reason)


def _check_key(key: Any) -> int:
    """Validate a dict key; return _NEEDS_PURE when orjson could order it wrongly."""
    if type(key) is not str:
        if isinstance(key, str):
            _check_key(str.__str__(key))
            return _NEEDS_PURE  # a subclass could override comparison; the pure path normalises it
        raise _InvalidValueError(f"dict key of type {type(key).__name__} is not a string", at_container=True)
    if key.isascii():
        return 0
    if _SURROGATE.search(key):
        raise _InvalidValueError(
            "a dict key contains a lone surrogate (not valid Unicode)", at_container=True
        )
    # orjson orders keys by code point, JCS by UTF-16 code unit: they differ only past the BMP.
    return _NEEDS_PURE if _NON_BMP.search(key) else 0


def _scan(value: Any, depth: int, allow_floats: bool) -> int:
    """Validate ``value``; return which of _HAS_FLOAT and _NEEDS_PURE apply to it."""
    t = type(value)
    if t is dict:
        return _scan_dict(value, depth, allow_floats)
    if t is list or t is tuple:
        return _scan_array(value, depth, allow_floats)
    return _scan_scalar(value, t, depth, allow_floats)


def _scan_scalar(value: Any, t: type, depth: int, allow_floats: bool) -> int:
    if t is str:
        if not value.isascii() and _SURROGATE.search(value):
            raise _InvalidValueError("string contains a lone surrogate (not valid Unicode)")
        return 0
    if t is int:
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _InvalidValueError("integer outside the I-JSON safe range ±(2**53-1)")
        return 0
    if value is None or t is bool:
        return 0
    if t is float:
        if not _isfinite(value):
            raise _InvalidValueError("NaN and Infinity have no JSON representation")
        if not allow_floats:
            raise _InvalidValueError(
                "floats are not allowed here; write amounts as integer minor units or strings"
            )
        return _HAS_FLOAT
    return _scan_subclass(value, depth, allow_floats)


def _scan_dict(value: dict[Any, Any], depth: int, allow_floats: bool) -> int:
    if depth >= MAX_DEPTH:
        raise _InvalidValueError(f"nested deeper than {MAX_DEPTH} levels (or contains a cycle)")
    flags = 0
    for k, v in value.items():
        try:
            flags |= _check_key(k) | _scan(v, depth + 1, allow_floats)
        except _InvalidValueError as exc:
            if exc.skip_next:
                exc.skip_next = False
            else:
                exc.parts.append(k)
            raise
    return flags


def _scan_array(value: list[Any] | tuple[Any, ...], depth: int, allow_floats: bool) -> int:
    if depth >= MAX_DEPTH:
        raise _InvalidValueError(f"nested deeper than {MAX_DEPTH} levels (or contains a cycle)")
    flags = 0
    for i, v in enumerate(value):
        try:
            flags |= _scan(v, depth + 1, allow_floats)
        except _InvalidValueError as exc:
            exc.parts.append(i)
            raise
    return flags


def _scan_subclass(value: Any, depth: int, allow_floats: bool) -> int:
    """Validate subclasses (StrEnum, IntEnum, namedtuple, ...) by their base value; never fast.

    orjson serialises str/int/dict/list subclasses by their underlying value but refuses tuple
    subclasses, and it also serialises types JSON does not have (Enum, datetime, UUID, dataclass).
    Routing every non-exact type to the pure path keeps orjson to what is proven identical.
    """
    if isinstance(value, str):
        _scan(str.__str__(value), depth, allow_floats)
    elif isinstance(value, int):
        _scan(int.__index__(value), depth, allow_floats)
    elif isinstance(value, float):
        _scan(float.__float__(value), depth, allow_floats)
    elif isinstance(value, dict):
        _scan(dict(dict.items(value)), depth, allow_floats)
    elif isinstance(value, list):
        _scan(list(list.__iter__(value)), depth, allow_floats)
    elif isinstance(value, tuple):
        _scan(list(tuple.__iter__(value)), depth, allow_floats)
    else:
        raise _InvalidValueError(f"values of type {type(value).__name__} have no canonical JSON form")
    return _NEEDS_PURE


def _format_float(x: float) -> str:
    """Format a finite double as ES6 Number.prototype.toString does (RFC 8785 §3.2.2.3)."""
    if x.is_integer() and -_EXACT_INT_FLOAT < x < _EXACT_INT_FLOAT:
        return str(int(x))  # also maps -0.0 to "0"
    # repr() gives the shortest digit string that round-trips, choosing the closest one on ties,
    # which is exactly the digit string ES6 prescribes; only the layout rules differ.
    r = float.__repr__(x)
    sign = ""
    if r[0] == "-":
        sign = "-"
        r = r[1:]
    mantissa, _, exp_text = r.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    # Value = 0.<digits> x 10**n, normalised so that digits has no leading or trailing zeros.
    n = len(int_part) + (int(exp_text) if exp_text else 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _utf16_key(item: tuple[str, object]) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like the sequence of UTF-16 code units (§3.2.3).
    return item[0].encode("utf-16-be")


def _emit(value: Any, out: list[str]) -> None:
    """Append the JCS text of an already validated value to ``out``."""
    # Base-class methods are called unbound so that subclass overrides cannot change the output.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_format_float(float.__float__(value)))
    elif isinstance(value, dict):
        _emit_object(value, out)
    else:
        _emit_array(list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value), out)


def _quote(text: str) -> str:
    if _NEEDS_ESCAPE.search(text):
        return '"' + str.translate(text, _ESCAPES) + '"'
    return '"' + str.__str__(text) + '"'


def _emit_object(value: dict[Any, Any], out: list[str]) -> None:
    items = [(str.__str__(k), v) for k, v in dict.items(value)]
    if any(not k.isascii() and _NON_BMP.search(k) for k, _ in items):
        items.sort(key=_utf16_key)
    else:
        # Without surrogate pairs, code point order is UTF-16 code unit order; keys are unique,
        # so the tuple comparison never reaches the values.
        items.sort()
    out.append("{")
    first = True
    for k, v in items:
        if not first:
            out.append(",")
        first = False
        out.append(_quote(k))
        out.append(":")
        _emit(v, out)
    out.append("}")


def _emit_array(items: Iterator[Any], out: list[str]) -> None:
    out.append("[")
    first = True
    for v in items:
        if not first:
            out.append(",")
        first = False
        _emit(v, out)
    out.append("]")


def _plain(value: Any, depth: int) -> bool:
    """Return True if the dict/list/tuple ``value`` holds only exact JSON types and no floats.

    Only types are checked here; string contents, integer ranges and keys are left to orjson,
    which raises rather than writing anything JCS would not.
    """
    for v in value.values() if type(value) is dict else value:
        t = type(v)
        if t in _PLAIN_LEAVES:
            continue
        if t is dict or t is list or t is tuple:
            if depth + 1 >= MAX_DEPTH or not _plain(v, depth + 1):
                return False
        else:
            return False
    return True


def _with_fragments(value: Any) -> Any:
    """Copy a validated value of exact types, replacing each float with its JCS text."""
    t = type(value)
    if t is dict:
        return {k: _with_fragments(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [_with_fragments(v) for v in value]
    if t is float:
        return orjson.Fragment(_format_float(value))
    return value


def _validate(value: object, allow_floats: bool) -> int:
    try:
        return _scan(value, 0, allow_floats)
    except _InvalidValueError as exc:
        raise _error(exc) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps the scan far from the limit
        raise CanonicalizationError("$", "nested too deeply") from None


def _canonical_pure(value: object, *, allow_floats: bool = True) -> bytes:
    """Serialise with the pure-Python path only (the reference the other paths are tested against)."""
    _validate(value, allow_floats)
    out: list[str] = []
    _emit(value, out)
    return "".join(out).encode("utf-8")


def canonical_json(value: object, *, allow_floats: bool = True) -> bytes:
    """Return the RFC 8785 canonical JSON bytes of ``value`` or raise CanonicalizationError."""
    t = type(value)
    if (t is dict or t is list or t is tuple) and _plain(value, 0):
        try:
            data = orjson.dumps(value, option=_ORJSON_OPTIONS)
        except TypeError:
            pass  # a surrogate, a too-large integer or a bad key: the detailed scan names it
        else:
            # orjson orders keys by code point, JCS by UTF-16 unit, which differs only for keys
            # outside the BMP. Any such character anywhere sends the value the careful way.
            if data.isascii() or not _UTF8_NON_BMP.search(data):
                return data
    flags = _validate(value, allow_floats)
    if not flags:
        return orjson.dumps(value, option=_ORJSON_OPTIONS)
    if flags == _HAS_FLOAT:
        return orjson.dumps(_with_fragments(value), option=_ORJSON_OPTIONS)
    out: list[str] = []
    _emit(value, out)
    return "".join(out).encode("utf-8")


def _parse_int(text: str) -> int | float:
    # JCS numbers are doubles: a canonical integer literal beyond 2**53 (e.g. "1e20" is written
    # "100000000000000000000") must be read back as the double it denotes to round-trip.
    if len(text) <= 17:
        number = int(text)
        if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            return number
    return float(text)


def _reject_constant(name: str) -> object:
    raise CanonicalizationError("$", f"{name} is not JSON")


def parse_canonical(data: bytes) -> object:
    """Parse JSON bytes and raise CanonicalizationError unless they are exactly canonical."""
    data = bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanonicalizationError("$", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_constant=_reject_constant)
    except CanonicalizationError:
        raise
    except json.JSONDecodeError as exc:
        raise CanonicalizationError("$", f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    again = canonical_json(value)
    if again != data:
        at = next((i for i, (a, b) in enumerate(zip(again, data, strict=False)) if a != b), None)
        if at is None:
            at = min(len(again), len(data))
        raise CanonicalizationError("$", f"bytes are not in canonical form (first difference at byte {at})")
    return value
