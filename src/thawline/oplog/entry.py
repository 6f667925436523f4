"""Operation-log entries: what one recorded step says, and its canonical bytes.

The canonical bytes (RFC 8785) are the entry. Columns stored beside them are a projection for
querying; hashes are always taken over the stored bytes, never over a re-serialisation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from thawline.oplog.canonical import canonical_json, parse_canonical
from thawline.oplog.pii import assert_no_identifiers, find_identifiers

ENTRY_VERSION = 1
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,128}$")

JSONValue = Any


class ActorKind(StrEnum):
    """Who made a change happen."""

    SYSTEM = "system"
    RULE = "rule"
    HOLDER = "holder"
    REVIEWER = "reviewer"
    INTEGRATOR = "integrator"
    SCHEDULER = "scheduler"


@dataclass(frozen=True, slots=True)
class Actor:
    """An actor: its kind and a stable id (never a personal identifier)."""

    kind: ActorKind
    id: str

    def as_json(self) -> dict[str, str]:
        """Return the JSON form."""
        return {"kind": self.kind.value, "id": self.id}

    @property
    def ref(self) -> str:
        """``kind:id``, how records name who created or ended them."""
        return f"{self.kind.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class Subject:
    """What an entry is about: an account and, where relevant, its freeze, case or appeal."""

    account_id: str | None = None
    freeze_id: str | None = None
    case_id: str | None = None
    appeal_id: str | None = None
    ref: str | None = None  # any other object, e.g. "apikey:ak_123"

    def as_json(self) -> dict[str, str]:
        """Return the JSON form without empty fields."""
        pairs = (
            ("account_id", self.account_id),
            ("freeze_id", self.freeze_id),
            ("case_id", self.case_id),
            ("appeal_id", self.appeal_id),
            ("ref", self.ref),
        )
        return {k: v for k, v in pairs if v is not None}


@dataclass(frozen=True, slots=True)
class RuleRef:
    """The rule (and its version) that caused a change."""

    id: str
    version: int


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """A pointer to evidence: an event, transaction, device, IP, document or list entry."""

    kind: str
    id: str


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One step to record; sequence number and time are assigned when it is appended."""

    action: str
    actor: Actor
    subject: Subject = field(default_factory=Subject)
    reason_codes: tuple[str, ...] = ()
    rule: RuleRef | None = None
    evidence: tuple[EvidenceRef, ...] = ()
    state_before: Mapping[str, JSONValue] | None = None
    state_after: Mapping[str, JSONValue] | None = None
    details: Mapping[str, JSONValue] | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    _parts: tuple[bytes, bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _ACTION.match(self.action):
            raise ValueError(f"action {self.action!r} must be dotted lowercase, e.g. 'account.frozen'")
        for name, token in (
            ("actor.id", self.actor.id),
            *((f"subject.{k}", v) for k, v in self.subject.as_json().items()),
            ("correlation_id", self.correlation_id),
            ("idempotency_key", self.idempotency_key),
            *(("reason_codes", code) for code in self.reason_codes),
        ):
            if token is not None and not _TOKEN.match(token):
                raise ValueError(f"{name} must be 1-128 characters of [A-Za-z0-9_.:@/+-]")
        # Validate and encode once, here, where an error points at the caller; appending then only
        # splices in the sequence number and time (see encode_entry).
        object.__setattr__(self, "_parts", _encode_parts(self.as_json(0, "")))

    def as_json(self, seq: int, ts_text: str) -> dict[str, JSONValue]:
        """Return the JSON object that is canonicalised into the entry bytes (``ts_text`` from format_ts)."""
        doc: dict[str, JSONValue] = {
            "v": ENTRY_VERSION,
            "seq": seq,
            "ts": ts_text,
            "action": self.action,
            "actor": self.actor.as_json(),
            "subject": self.subject.as_json(),
        }
        if self.reason_codes:
            doc["reason_codes"] = list(self.reason_codes)
        if self.rule is not None:
            doc["rule"] = {"id": self.rule.id, "version": self.rule.version}
        if self.evidence:
            doc["evidence"] = [{"kind": e.kind, "id": e.id} for e in self.evidence]
        if self.state_before is not None:
            doc["state_before"] = dict(self.state_before)
        if self.state_after is not None:
            doc["state_after"] = dict(self.state_after)
        if self.details is not None:
            doc["details"] = dict(self.details)
        if self.correlation_id is not None:
            doc["correlation_id"] = self.correlation_id
        if self.idempotency_key is not None:
            doc["idempotency_key"] = self.idempotency_key
        return doc


def format_ts(ts: datetime) -> str:
    """Format a UTC-aware time as RFC 3339 with microseconds and 'Z'."""
    if ts.tzinfo is None:
        raise ValueError("log timestamps must be timezone-aware")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    """Parse a timestamp written by :func:`format_ts`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _encode_parts(doc: dict[str, JSONValue]) -> tuple[bytes, bytes, bytes]:
    """Canonicalise an entry without ``seq`` and ``ts`` into the three runs of keys around them.

    RFC 8785 orders keys by UTF-16 code units; every entry has "action" (< "seq"), "subject"
    (between "seq" and "ts") and "v" (> "ts"), so each run is non-empty and the entry is
    head + seq + middle + ts + tail.
    """
    body = {k: v for k, v in doc.items() if k not in ("seq", "ts")}
    head = canonical_json({k: v for k, v in body.items() if k < "seq"}, allow_floats=False)[:-1]
    middle = canonical_json({k: v for k, v in body.items() if "seq" < k < "ts"}, allow_floats=False)[1:-1]
    tail = canonical_json({k: v for k, v in body.items() if k > "ts"}, allow_floats=False)[1:]
    # One cheap scan of the whole text; the slow walk only runs to name the offending field.
    if find_identifiers(b"\n".join((head, middle, tail)).decode("utf-8")):
        assert_no_identifiers(body, where="log entry")
        raise ValueError("log entry contains a personal identifier")
    return head, middle, tail


def encode_entry(record: LogRecord, seq: int, ts_text: str) -> bytes:
    """Return the canonical (RFC 8785) bytes of ``record`` as entry ``seq`` at ``ts_text``."""
    head, middle, tail = record._parts
    return b"".join(
        (head, b',"seq":', str(seq).encode(), b",", middle, b',"ts":"', ts_text.encode(), b'",', tail)
    )


def decode_entry(data: bytes) -> dict[str, JSONValue]:
    """Parse stored entry bytes, checking they are canonical."""
    doc = parse_canonical(data)
    if not isinstance(doc, dict):
        raise ValueError("a log entry must be a JSON object")
    return doc
