"""Block- and allow-lists: what a list entry is, how its value is normalised, CSV rows, fuzzy names.

Pure rules only. Identifiers are normalised exactly as accounts' identifiers are (see
:mod:`thawline.domain.identity`), so that the keyed hash of a list value equals the vault's blind
index of the same identifier on an account. Errors never repeat the value they are about.
"""

from __future__ import annotations

import csv
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from rapidfuzz import fuzz, process

from thawline.domain import identity
from thawline.domain.errors import InvalidInputError

ListType = Literal["block", "allow"]
LIST_TYPES: tuple[ListType, ...] = get_args(ListType)
Kind = Literal["resident_id", "phone", "bank_card", "device", "ip", "name"]
KINDS: tuple[Kind, ...] = get_args(Kind)
# Kinds an account holds in the vault (matched by blind index) and kinds events carry.
IDENTITY_KINDS: frozenset[str] = frozenset({"resident_id", "phone", "bank_card"})
HASHED_KINDS: frozenset[str] = frozenset({"resident_id", "phone", "bank_card", "device", "ip"})

DEFAULT_NAME_THRESHOLD = 90.0
MAX_VALUE_LENGTH = 256
MAX_REASON_LENGTH = 500
MAX_ROWS = 200_000
CSV_HEADER = ("kind", "value", "reason")

_DEVICE = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,128}$")  # the event schema's device ids
_SPACE = re.compile(r"\s+")
_SEPARATORS = re.compile(r"[\s-]+")
# Middle dots written in minority and transliterated names (after NFKC): all become "·".
_NAME_DOTS = str.maketrans(dict.fromkeys("・•‧", "·"))
# Characters that glue two halves of one name, or separate its parts, but carry no meaning.
_NAME_PUNCTUATION = re.compile(r"[\s,，、;；\"'`()（）\[\]【】<>《》_-]+")


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x3400 <= code <= 0x4DBF  # extension A
        or 0x4E00 <= code <= 0x9FFF  # unified ideographs
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x20000 <= code <= 0x3134F  # extensions B-G
        or ch == "·"
    )


def normalise_name(value: str) -> str:
    """A name in the form lists store and compare: NFKC, case-folded, single spaces.

    Spaces next to Chinese characters are dropped ("张 三" is "张三"); other punctuation becomes a
    space, so "Smith, John" and "John Smith" have the same tokens.
    """
    text = unicodedata.normalize("NFKC", value).translate(_NAME_DOTS).casefold()
    text = _NAME_PUNCTUATION.sub(" ", text).strip()
    if not text:
        return ""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == " " and (_is_cjk(text[i - 1]) or _is_cjk(text[i + 1])):
            continue  # never the first or last character: the text is stripped
        out.append(ch)
    return _SPACE.sub(" ", "".join(out))


def normalise_ip(value: str, *, field: str = "value") -> str:
    """An IPv4 or IPv6 address in its canonical text (an IPv4-mapped IPv6 address as IPv4)."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError as exc:
        raise InvalidInputError("not an IPv4 or IPv6 address", field=field) from exc
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def normalise_device(value: str, *, field: str = "value") -> str:
    """A device id as events carry it: 1-128 characters of [A-Za-z0-9_.:@/+-], kept as is."""
    compact = value.strip()
    if not _DEVICE.match(compact):
        raise InvalidInputError("a device id is 1-128 characters of A-Z a-z 0-9 _ . : @ / + -", field=field)
    return compact


def normalise(kind: str, value: str, *, field: str = "value") -> str:
    """Validate and normalise one list value of ``kind``; InvalidInputError names ``field``."""
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidInputError(f"longer than {MAX_VALUE_LENGTH} characters", field=field)
    if kind == "resident_id":
        # Lists often group the digits; the result is the same normal form accounts are stored in.
        return identity.resident_id(_SEPARATORS.sub("", value), field=field)
    if kind == "phone":
        return identity.phone(value, field=field)
    if kind == "bank_card":
        return identity.bank_card(value, field=field)
    if kind == "device":
        return normalise_device(value, field=field)
    if kind == "ip":
        return normalise_ip(value, field=field)
    if kind == "name":
        name = normalise_name(value)
        if not name:
            raise InvalidInputError("the name is empty", field=field)
        return name
    raise InvalidInputError(f"unknown kind; one of {', '.join(KINDS)}", field="kind")


def check_list_type(value: str) -> ListType:
    """``value`` as a list type, or InvalidInputError."""
    for t in LIST_TYPES:
        if value == t:
            return t
    raise InvalidInputError("the list type is 'block' or 'allow'", field="list_type")


def check_kind(value: str, *, field: str = "kind") -> Kind:
    """``value`` as a list kind, or InvalidInputError."""
    for k in KINDS:
        if value == k:
            return k
    raise InvalidInputError(f"unknown kind; one of {', '.join(KINDS)}", field=field)


def check_reason(value: str, *, field: str = "reason") -> str:
    """A non-empty reason of at most MAX_REASON_LENGTH characters, stripped."""
    reason = value.strip()
    if not reason:
        raise InvalidInputError("a reason is required", field=field)
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInputError(f"the reason is longer than {MAX_REASON_LENGTH} characters", field=field)
    return reason


def mask_name(name: str | None) -> str | None:
    """A name as lists show it: its first character and a star ("张三" → "张*")."""
    if not name:
        return None
    return name[0] + "*"


@dataclass(frozen=True, slots=True)
class ListRow:
    """One valid CSV line: its number, the kind, the normalised value and the reason."""

    line: int
    kind: Kind
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class RowError:
    """A refused CSV line: its number, the field at fault and why (never the value itself)."""

    line: int
    field: str
    message: str

    def as_json(self) -> dict[str, str | int]:
        """The JSON form."""
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class ParsedCsv:
    """What a CSV file held: the valid rows (first of each value) and the errors, by line."""

    rows: tuple[ListRow, ...]
    errors: tuple[RowError, ...]
    duplicates: int  # valid lines repeating an earlier line's value


def _records(text: str) -> Iterable[tuple[int, list[str] | None, str | None]]:
    """(line the record starts on, its cells or None, a CSV error or None); quoted fields may span lines."""
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, str(exc)
        else:
            yield start, record, None
        start = reader.line_num + 1


def parse_csv(text: str) -> ParsedCsv:
    """Parse ``kind,value,reason`` lines (a header line is optional); every value is normalised.

    Bad lines are reported with their line number and field, and skipped. Blank lines and lines
    starting with ``#`` are ignored. A value repeated in the file counts once.
    """
    text = text.removeprefix("\ufeff")
    rows: list[ListRow] = []
    errors: list[RowError] = []
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for line, record, problem in _records(text):
        if record is None:
            errors.append(RowError(line, "line", f"not valid CSV: {problem}"))
            continue
        if all(not cell.strip() for cell in record) or record[0].lstrip().startswith("#"):
            continue
        if not rows and not errors and tuple(c.strip().lower() for c in record) == CSV_HEADER:
            continue
        if len(rows) + len(errors) >= MAX_ROWS:
            errors.append(RowError(line, "line", f"more than {MAX_ROWS} lines; the rest was not read"))
            break
        if len(record) != len(CSV_HEADER):
            errors.append(
                RowError(line, "line", f"expected 3 columns (kind,value,reason), found {len(record)}")
            )
            continue
        raw_kind, raw_value, raw_reason = record
        try:
            kind = check_kind(raw_kind.strip().lower())
            value = normalise(kind, raw_value)
            reason = check_reason(raw_reason)
        except InvalidInputError as exc:
            errors.append(RowError(line, exc.field or "line", str(exc)))
            continue
        if (kind, value) in seen:
            duplicates += 1
            continue
        seen.add((kind, value))
        rows.append(ListRow(line, kind, value, reason))
    return ParsedCsv(tuple(rows), tuple(errors), duplicates)


def name_score(a: str, b: str) -> float:
    """How alike two normalised names are, 0-100 (token order does not matter)."""
    return float(fuzz.token_sort_ratio(a, b))


def match_names(
    name: str, candidates: Sequence[str], *, threshold: float = DEFAULT_NAME_THRESHOLD
) -> list[tuple[int, float]]:
    """(position in ``candidates``, score) of each normalised candidate scoring ``threshold`` or more.

    ``name`` must already be normalised (see :func:`normalise_name`); best matches first.
    """
    if not name or not candidates:
        return []
    found = process.extract(
        name, candidates, scorer=fuzz.token_sort_ratio, score_cutoff=threshold, limit=None
    )
    return sorted(((int(index), float(score)) for _c, score, index in found), key=lambda m: (-m[1], m[0]))


def kinds_summary(rows: Iterable[ListRow]) -> dict[str, int]:
    """How many rows there are of each kind (for the import's log entry)."""
    out: dict[str, int] = {}
    for r in rows:
        out[r.kind] = out.get(r.kind, 0) + 1
    return dict(sorted(out.items()))
