"""A guard that keeps personal identifiers out of the immutable, hashed operation log.

The log can never be edited, so a resident ID, card number or phone number written into it could
never be erased again. Findings carry only a kind and a position, never the matched text, so that
reporting a problem cannot leak the very value it is about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric

from thawline.oplog.canonical import MAX_DEPTH, canonical_json, format_json_path

__all__ = [
    "Finding",
    "IdentifierKind",
    "PersonalDataInLogError",
    "assert_no_identifiers",
    "find_identifiers",
]

IdentifierKind = Literal["resident_id", "bank_card", "phone"]

_LABELS: dict[str, str] = {
    "resident_id": "resident ID number",
    "bank_card": "bank card number",
    "phone": "phone number",
}

# The prefilter works on a one-byte-per-character copy of the text mapped to classes: digit -> "0",
# space or hyphen -> "-", "+" -> "+", anything else -> "x". Every identifier the classifier accepts
# contains 8 digits in a row (IDs, plain cards and phones), two 4-digit groups (grouped cards,
# 138-1234-5678) or "+" before a digit (E.164), so when none of these three substrings occurs there
# is nothing to find. bytes.translate and bytes.find run at memory speed, where even the simplest
# regex scan costs several microseconds per log entry, and an ISO date like 2025-03-14 (8 digits
# joined by hyphens) in every entry would make a looser digit-run prefilter fire every time.
_CLASSES = bytes.maketrans(
    b"0123456789 -+" + bytes(c for c in range(256) if c not in b"0123456789 -+"),
    b"0000000000--+" + b"x" * (256 - 13),
)
_HITS = (b"00000000", b"0000-0000", b"+0")
# Full-width digits, plus and X in UTF-8 (EF BC 8B/90-99/B8, EF BD 98); other full-width
# punctuation (，：（) shares the EF BC prefix and is common in Chinese text, so match exactly.
_FULL_WIDTH_UTF8 = re.compile(b"\xef\xbc[\x8b\x90-\x99\xb8]|\xef\xbd\x98")

# Around each prefilter hit, this finds the candidates exactly: 8+ digits, optionally led by "+",
# optionally grouped by single spaces or hyphens, optionally ending in X (the resident ID check
# character). The first character is consumed before the boundary lookbehinds run, so that sre
# can skip ahead to digits instead of evaluating lookbehinds at every position.
#
# Boundaries are ASCII alphanumerics and "_" rather than \w, so that "电话13812345678" is still found
# while hex digests, UUIDs and ids like acc_0001 are not. A digit run next to "<digit>." is part of
# a decimal amount. The text is often canonical JSON (the log encoder scans the whole entry at
# once), so a JSON escape such as \n or \u0010 right before the digits counts as a boundary too.
_BOUNDARY_BEFORE = r"""
    (?:
        (?<![0-9A-Za-z_].)(?<![0-9]\..)
      | (?<=\\[bfnrt].)
      | (?<=\\u00[0-9a-fA-F]{2}.)
    )"""
_CANDIDATE = re.compile(
    rf"""
    (?: \+ {_BOUNDARY_BEFORE} [0-9] | [0-9] {_BOUNDARY_BEFORE} )
    (?:[ -]?[0-9]){{7,}}[Xx]?
    (?![0-9A-Za-z_]|\.[0-9])
    """,
    re.VERBOSE,
)
_SEPARATOR = re.compile(r"[ -]")
_WORD = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_CN_MOBILE = re.compile(r"1[3-9][0-9]{9}\Z")
# Card layouts other than plain groups of four: Amex (4-6-5) and Diners (4-6-4).
_CARD_LAYOUTS = ((4, 6, 5), (4, 6, 4))
# Full-width digits are common in Chinese text; the mapping is one character to one, so positions
# found in the translated text are positions in the original.
_FULL_WIDTH = str.maketrans("０１２３４５６７８９＋Ｘｘ", "0123456789+Xx")


@dataclass(frozen=True, slots=True)
class Finding:
    """Where a personal identifier of some kind sits in a text (the value itself is not kept)."""

    kind: IdentifierKind
    start: int
    end: int


class PersonalDataInLogError(ValueError):
    """A value bound for the operation log holds a personal identifier; names its path, not value."""

    def __init__(self, where: str, path: str, kind: IdentifierKind, *, in_key: bool = False) -> None:
        place = f"a key of {path}" if in_key else path
        super().__init__(
            f"{where}: {place} holds what looks like a {_LABELS[kind]}; "
            "personal identifiers must not be written to the operation log"
        )
        self.where = where
        self.path = path
        self.kind = kind
        self.in_key = in_key


def _is_resident_id(text: str) -> bool:
    if len(text) != 18:
        return False
    try:
        return bool(ric.is_valid(text))
    except KeyError:
        # python-stdnum 2.2 raises KeyError('county') instead of returning False when the region
        # code matches a province but no county; a crash here would refuse the whole log append.
        return False


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and bool(luhn.is_valid(digits))


def _mobile_groups(groups: list[tuple[int, str]], i: int) -> int:
    """Return how many groups from ``i`` form a CN mobile (11 digits or 3-4-4), else 0."""
    first = groups[i][1]
    if len(first) == 11:
        return 1 if _CN_MOBILE.match(first) else 0
    if len(first) == 3 and i + 2 < len(groups):
        second, third = groups[i + 1][1], groups[i + 2][1]
        if len(second) == 4 and len(third) == 4 and _CN_MOBILE.match(first + second + third):
            return 3
    return 0


def _card_groups(groups: list[tuple[int, str]], i: int) -> int:
    """Return how many groups from ``i`` form a grouped Luhn-valid card number, else 0."""
    n = len(groups)
    # Groups of four with a shorter last group; the longest layout wins.
    for size in (5, 4):
        if i + size > n:
            continue
        window = [g for _, g in groups[i : i + size]]
        if all(len(g) == 4 for g in window[:-1]) and 1 <= len(window[-1]) <= 4 and _is_card("".join(window)):
            return size
    for layout in _CARD_LAYOUTS:
        if i + len(layout) <= n:
            window = [g for _, g in groups[i : i + len(layout)]]
            if tuple(len(g) for g in window) == layout and _is_card("".join(window)):
                return len(layout)
    return 0


def _is_e164(digits: str) -> bool:
    if not 8 <= len(digits) <= 15:
        return False
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return False
    # "Local only" lengths are not complete international numbers, so they do not count.
    result = phonenumbers.is_possible_number_with_reason(number)
    return bool(result == phonenumbers.ValidationResult.IS_POSSIBLE)


def _leading_international(groups: list[tuple[int, str]], start: int, out: list[Finding]) -> int:
    """Record the longest run of leading groups that is a possible E.164 number; return its size."""
    for j in range(len(groups) - 1, -1, -1):
        if _is_e164("".join(g for _, g in groups[: j + 1])):
            out.append(Finding("phone", start, groups[j][0] + len(groups[j][1])))
            return j + 1
    return 0


def _classify(token: str, start: int, out: list[Finding]) -> None:
    """Append the identifiers found in one candidate token starting at ``start``."""
    plus = token.startswith("+")
    skip = 1 if plus else 0
    groups: list[tuple[int, str]] = []
    pos = start + skip
    for part in _SEPARATOR.split(token[skip:]):
        groups.append((pos, part))
        pos += len(part) + 1
    last_pos, last = groups[-1]
    if last[-1] in "Xx":
        # The X binds the last group to a letter, so it can only be a resident ID.
        if _is_resident_id(last):
            out.append(Finding("resident_id", last_pos, last_pos + 18))
        groups.pop()
        if not groups:
            return

    def end_of(j: int) -> int:
        return groups[j][0] + len(groups[j][1])

    i = _leading_international(groups, start, out) if plus else 0
    n = len(groups)
    while i < n:
        pos, group = groups[i]
        if group == "86" and i + 1 < n and (used := _mobile_groups(groups, i + 1)):
            out.append(Finding("phone", pos, end_of(i + used)))
            i += 1 + used
            continue
        if used := _mobile_groups(groups, i):
            out.append(Finding("phone", pos, end_of(i + used - 1)))
            i += used
            continue
        if used := _card_groups(groups, i):
            out.append(Finding("bank_card", pos, end_of(i + used - 1)))
            i += used
            continue
        if _is_resident_id(group):
            out.append(Finding("resident_id", pos, pos + 18))
        elif len(group) == 13 and group.startswith("86") and _CN_MOBILE.match(group, 2):
            out.append(Finding("phone", pos, pos + 13))
        elif _is_card(group):
            out.append(Finding("bank_card", pos, pos + len(group)))
        i += 1


def find_identifiers(text: str) -> list[Finding]:
    """Return the positions and kinds of personal identifiers in ``text`` (never their values)."""
    if len(text) < 8:
        return []
    if text.isascii():
        raw = text.encode("ascii")
    else:
        if _FULL_WIDTH_UTF8.search(text.encode("utf-8", "surrogatepass")):
            text = text.translate(_FULL_WIDTH)
        # "replace" writes one "?" per character, so byte offsets stay character offsets.
        raw = text.encode("ascii", "replace")
    classes = raw.translate(_CLASSES)
    found: list[Finding] = []
    size = len(classes)
    nexts = [classes.find(needle) for needle in _HITS]
    while True:
        hit = min([at for at in nexts if at >= 0], default=-1)
        if hit < 0:
            return found
        # A candidate never crosses an "x" character (it may only end in one, the ID's X), so the
        # exact regex only needs the stretch around the hit.
        lo = classes.rfind(b"x", 0, hit) + 1
        hi = classes.find(b"x", hit)
        if hi < 0:
            hi = size
        if not _blocked_digit_run(text, classes, lo, hi):
            # 3 characters past the stretch: the ID's X, then what the end lookahead inspects.
            for match in _CANDIDATE.finditer(text, lo, hi + 3):
                _classify(match.group(), match.start(), found)
        for i, at in enumerate(nexts):
            if 0 <= at < hi:
                nexts[i] = classes.find(_HITS[i], hi)


def _blocked_digit_run(text: str, classes: bytes, lo: int, hi: int) -> bool:
    """Tell cheaply that a stretch is one digit run glued to a letter, so it cannot match.

    That is what most prefilter hits in log entries are: ids like acc_000123456 and digit runs
    inside hex digests and UUIDs. Anything less plain is left to the exact regex.
    """
    while lo < hi and classes[lo] == 0x2D:  # leading separators are themselves boundaries
        lo += 1
    if classes.find(b"-", lo, hi) >= 0 or classes.find(b"+", lo, hi) >= 0:
        return False
    after = text[hi : hi + 1]
    if after in _WORD and after not in ("X", "x"):
        return True
    before = text[lo - 1 : lo] if lo else ""
    escaped = text[lo - 2 : lo - 1] == "\\" or text[lo - 6 : lo - 5] == "\\"
    return before in _WORD and not escaped


def assert_no_identifiers(value: object, *, where: str) -> None:
    """Raise PersonalDataInLogError if any string, key or number in ``value`` holds an identifier."""
    _walk(value, [], where, 0)


def _walk(value: object, path: list[str | int], where: str, depth: int) -> None:
    if isinstance(value, str):
        findings = find_identifiers(value)
        if findings:
            raise PersonalDataInLogError(where, format_json_path(path), findings[0].kind)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        _check_number(value, path, where)
    elif depth >= MAX_DEPTH:
        raise ValueError(f"{where}: {format_json_path(path)} is nested deeper than {MAX_DEPTH} levels")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                findings = find_identifiers(key)
                if findings:
                    # The path stops at the mapping: naming the key would print the identifier.
                    raise PersonalDataInLogError(where, format_json_path(path), findings[0].kind, in_key=True)
            path.append(key if isinstance(key, str) else repr(key))
            _walk(item, path, where, depth + 1)
            path.pop()
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            path.append(index)
            _walk(item, path, where, depth + 1)
            path.pop()


def _check_number(value: float, path: list[str | int], where: str) -> None:
    # The log encoder scans the canonical text, where numbers appear as digits too; check them
    # here the same way so that its error can name the field. Fewer than 8 integer digits (or a
    # fraction or exponent) can never form an identifier.
    if -10_000_000 < value < 10_000_000:
        return
    try:
        text = canonical_json(value).decode("ascii")
    except ValueError:
        return  # not representable: canonical_json refuses the entry on its own
    findings = find_identifiers(text)
    if findings:
        raise PersonalDataInLogError(where, format_json_path(path), findings[0].kind)
