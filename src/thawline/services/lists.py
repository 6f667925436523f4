"""Block- and allow-lists: versioned imports, entries, removal, and matching accounts against them.

Identifiers on a list are stored only as the vault's blind index of their normalised value
(``vault.blind_index(keys, kind, value)``), so a list entry equals ``vault_value.blind_index`` of
the same identifier on any account; devices and IP addresses are hashed the same way with the
kinds ``device`` and ``ip``. Names are stored normalised, because fuzzy matching needs the text.
Every change (an import, an added entry, a removal) is a new list version, recorded in the
operation log by ids, counts and hashes, never by value.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from thawline.adapters.db.schema import freeze as freeze_table
from thawline.adapters.db.schema import list_entry, list_version, vault_value
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.domain.freezes import Freeze, FreezeStatus
from thawline.domain.lists import (
    DEFAULT_NAME_THRESHOLD,
    HASHED_KINDS,
    IDENTITY_KINDS,
    ListType,
    RowError,
    check_kind,
    check_list_type,
    check_reason,
    kinds_summary,
    mask_name,
    match_names,
    normalise,
    normalise_device,
    normalise_ip,
    normalise_name,
    parse_csv,
)
from thawline.oplog.entry import Actor, EvidenceRef, LogRecord, Subject
from thawline.oplog.pii import PersonalDataInLogError
from thawline.services import accounts, freezes, vault
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.vault import VaultKeys

ERRONEOUS_REASON = "list entry removed as erroneous"
MAX_SOURCE_NAME = 256
_CHUNK = 500  # values per IN (...) query
_PRECEDENCE: tuple[ListType, ...] = ("allow", "block")


class ListImportError(InvalidInputError):
    """Nothing in the file could be imported; ``errors`` says why, line by line."""

    def __init__(self, message: str, errors: tuple[RowError, ...]) -> None:
        super().__init__(message, field="file")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: the new version, how many entries it added, and the refused lines."""

    version: int
    list_type: ListType
    imported: int
    duplicates: int  # valid lines already on the list, or repeated in the file
    errors: tuple[RowError, ...]
    by_kind: dict[str, int]


@dataclass(frozen=True, slots=True)
class ListEntry:
    """A list entry as staff see it: never its value; a name only masked ("张*")."""

    id: str
    list_type: str
    kind: str
    reason: str
    version: int
    added_by: str
    added_at: datetime
    masked_name: str | None = None
    removed_version: int | None = None
    removed_at: datetime | None = None
    removed_by: str | None = None
    removal_reason: str | None = None
    erroneous: bool | None = None

    @property
    def active(self) -> bool:
        """True until the entry is removed."""
        return self.removed_at is None


@dataclass(frozen=True, slots=True)
class AffectedFreeze:
    """A freeze an erroneous entry had caused, and what its removal did to it."""

    freeze_id: str
    account_id: str
    action: Literal["rereview", "release"]


@dataclass(frozen=True, slots=True)
class RemovalResult:
    """A removed entry, the list version its removal made, and the freezes it touched."""

    entry: ListEntry
    version: int
    affected: tuple[AffectedFreeze, ...]


@dataclass(frozen=True, slots=True)
class ListMatch:
    """One list entry an account or event matched; ``score`` is 100 for exact (hash) matches."""

    entry_id: str
    kind: str
    list_type: ListType
    score: float = 100.0


class ListIndex:
    """The active entries of both lists in memory, for matching without the database.

    Identifiers are looked up by blind index (a dict per list type and kind); names are compared
    fuzzily (rapidfuzz ``token_sort_ratio`` on normalised names) against the name entries only.
    Built by :func:`load_index`; immutable afterwards, so one index may serve many threads.
    """

    __slots__ = ("_hashes", "_keys", "_names", "size", "threshold", "version")

    def __init__(
        self,
        keys: VaultKeys,
        rows: Iterable[tuple[str, str, str, bytes, str | None]] = (),
        *,
        version: int = 0,
        threshold: float = DEFAULT_NAME_THRESHOLD,
    ) -> None:
        """Index ``rows`` of (entry id, list type, kind, value hash, normalised name or None)."""
        self._keys = keys
        self.version = version
        self.threshold = threshold
        self._hashes: dict[str, dict[str, dict[bytes, str]]] = {"block": {}, "allow": {}}
        self._names: dict[str, tuple[list[str], list[str]]] = {"block": ([], []), "allow": ([], [])}
        self.size = 0
        for entry_id, list_type, kind, value_hash, name in rows:
            self.size += 1
            if kind == "name":
                if name:
                    names, ids = self._names[list_type]
                    names.append(name)
                    ids.append(entry_id)
                continue
            self._hashes[list_type].setdefault(kind, {})[bytes(value_hash)] = entry_id

    def hash(self, kind: str, value: str) -> bytes:
        """The blind index of an already normalised value (what list entries and the vault store)."""
        return vault.blind_index(self._keys, kind, value)

    def match(
        self,
        identity_hashes: Mapping[str, Iterable[bytes]] | None = None,
        name: str | None = None,
        device: str | None = None,
        ip: str | None = None,
    ) -> list[ListMatch]:
        """Every entry matching these identifiers; allow-list matches first.

        ``identity_hashes`` maps a kind (resident_id, phone, bank_card, and also device or ip if
        already hashed) to blind indexes, as in ``vault_value.blind_index``. ``name`` is fuzzy
        matched; ``device`` and ``ip`` are raw values, normalised and hashed here (an invalid one
        matches nothing). An allow-list match removes the block-list matches of the same kind.
        """
        hashes: dict[str, set[bytes]] = {}
        for kind, values in (identity_hashes or {}).items():
            if kind in HASHED_KINDS:
                hashes.setdefault(kind, set()).update(values)
        for kind, raw in (("device", device), ("ip", ip)):
            if raw:
                try:
                    value = normalise_device(raw) if kind == "device" else normalise_ip(raw)
                except InvalidInputError:
                    continue
                hashes.setdefault(kind, set()).add(self.hash(kind, value))
        found: dict[str, list[ListMatch]] = {"allow": [], "block": []}
        for list_type in _PRECEDENCE:
            by_kind = self._hashes[list_type]
            for kind, values in hashes.items():
                entries = by_kind.get(kind)
                if not entries:
                    continue
                for h in values:
                    entry_id = entries.get(h)
                    if entry_id is not None:
                        found[list_type].append(ListMatch(entry_id, kind, list_type))
        normalised = normalise_name(name) if name else ""
        if normalised:
            for list_type in _PRECEDENCE:
                found[list_type].extend(self._match_name(list_type, normalised))
        allowed = {m.kind for m in found["allow"]}
        allow = sorted(found["allow"], key=_order)
        block = sorted((m for m in found["block"] if m.kind not in allowed), key=_order)
        return [*allow, *block]

    def _match_name(self, list_type: ListType, name: str) -> list[ListMatch]:
        names, ids = self._names[list_type]
        return [
            ListMatch(ids[i], "name", list_type, score)
            for i, score in match_names(name, names, threshold=self.threshold)
        ]


def _order(m: ListMatch) -> tuple[str, float, str]:
    return (m.kind, -m.score, m.entry_id)


def load_index(uow: UnitOfWork, *, threshold: float = DEFAULT_NAME_THRESHOLD) -> ListIndex:
    """Build a :class:`ListIndex` of every active entry (compare ``version`` with current_version)."""
    version = current_version(uow)
    rows = uow.conn.execute(
        select(
            list_entry.c.id,
            list_entry.c.list_type,
            list_entry.c.kind,
            list_entry.c.value_hash,
            list_entry.c.name,
        ).where(list_entry.c.removed_at.is_(None))
    )
    return ListIndex(
        vault.derive_keys(uow.runtime.vault_master_key),
        ((r.id, r.list_type, r.kind, bytes(r.value_hash), r.name) for r in rows),
        version=version,
        threshold=threshold,
    )


@dataclass(frozen=True, slots=True)
class ListVersion:
    """One change to either list: an import, an added or a removed entry — who, when, how many."""

    version: int
    list_type: str
    change: str
    source_name: str
    entries: int
    duplicates: int
    rejected: int
    created_by: str
    created_at: datetime


def versions(uow: UnitOfWork, *, limit: int = 50) -> list[ListVersion]:
    """The newest list versions first."""
    rows = uow.conn.execute(select(list_version).order_by(list_version.c.version.desc()).limit(limit))
    return [
        ListVersion(
            r.version,
            r.list_type,
            r.change,
            r.source_name,
            r.entries,
            r.duplicates,
            r.rejected,
            r.created_by,
            r.created_at,
        )
        for r in rows
    ]


def current_version(uow: UnitOfWork) -> int:
    """The newest list version (0 before the first change): a cached index is stale when it differs."""
    return int(uow.conn.execute(select(func.coalesce(func.max(list_version.c.version), 0))).scalar_one())


def account_matches(
    uow: UnitOfWork, account_id: str, index: ListIndex, *, device: str | None = None, ip: str | None = None
) -> list[ListMatch]:
    """The entries of ``index`` that the account's identifiers (and optionally a device or IP) match.

    Reads the blind indexes of the account's vault values and decrypts its holder name for fuzzy
    matching; an erased holder matches nothing by identifier or name.
    """
    view = accounts.get(uow, account_id)
    value_ids = [v for vs in view.identity_refs.values() for v in vs]
    hashes: dict[str, set[bytes]] = {}
    if value_ids:
        rows = uow.conn.execute(
            select(vault_value.c.kind, vault_value.c.blind_index).where(vault_value.c.id.in_(value_ids))
        )
        for r in rows:
            if r.kind in IDENTITY_KINDS and r.blind_index is not None:
                hashes.setdefault(r.kind, set()).add(bytes(r.blind_index))
    name_refs = view.identity_refs.get("name") or []
    name = vault.reveal(uow, name_refs[0]) if name_refs else None
    return index.match(hashes, name=name, device=device, ip=ip)


def _new_version(
    uow: UnitOfWork,
    list_type: ListType,
    change: str,
    source_name: str,
    actor: Actor,
    *,
    entries: int,
    duplicates: int = 0,
    rejected: int = 0,
) -> int:
    result = uow.conn.execute(
        insert(list_version).values(
            list_type=list_type,
            change=change,
            source_name=source_name,
            entries=entries,
            duplicates=duplicates,
            rejected=rejected,
            created_by=actor.ref,
            created_at=uow.runtime.clock.now(),
        )
    )
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - both backends return the new key
        raise RuntimeError("the list version was not numbered")
    uow.mark_changed()
    return int(key[0])


def _record(uow: UnitOfWork, field: str, **kwargs: Any) -> None:
    """Queue a log record; a personal identifier in free text is the caller's input error."""
    try:
        record = LogRecord(**kwargs)
    except PersonalDataInLogError as exc:
        raise InvalidInputError(
            "must not contain personal identifiers (it is written to the operation log)", field=field
        ) from exc
    uow.record(record)


def _active_hashes(uow: UnitOfWork, list_type: str, hashes: list[bytes]) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for i in range(0, len(hashes), _CHUNK):
        rows = uow.conn.execute(
            select(list_entry.c.value_hash, list_entry.c.id).where(
                list_entry.c.list_type == list_type,
                list_entry.c.removed_at.is_(None),
                list_entry.c.value_hash.in_(hashes[i : i + _CHUNK]),
            )
        )
        out.update((bytes(r.value_hash), r.id) for r in rows)
    return out


def _source(source_name: str) -> str:
    source = " ".join(source_name.split())
    if not source:
        raise InvalidInputError("name the source of the list (e.g. the file name)", field="source_name")
    if len(source) > MAX_SOURCE_NAME:
        raise InvalidInputError(f"longer than {MAX_SOURCE_NAME} characters", field="source_name")
    return source


def _insert_entries(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    try:
        uow.conn.execute(insert(list_entry), rows)
    except IntegrityError as exc:  # a concurrent change listed one of these values first
        raise ConflictError("the list changed meanwhile; retry") from exc


def import_csv(uow: UnitOfWork, text: str, list_type: str, actor: Actor, source_name: str) -> ImportResult:
    """Import ``kind,value,reason`` lines into the block or allow list as a new version.

    Every value is normalised and validated; bad lines are reported (line number and field) and
    skipped, values already on the list are counted as duplicates. Raises :class:`ListImportError`
    when no line is valid. One log entry records the version and the counts, never a value.
    """
    lt = check_list_type(list_type)
    source = _source(source_name)
    parsed = parse_csv(text)
    if not parsed.rows:
        refused = len(parsed.errors)
        message = f"no valid entries; {refused} line(s) refused" if refused else "the file has no entries"
        raise ListImportError(message, parsed.errors)
    keys = vault.derive_keys(uow.runtime.vault_master_key)
    hashed = [(row, vault.blind_index(keys, row.kind, row.value)) for row in parsed.rows]
    listed = _active_hashes(uow, lt, [h for _r, h in hashed])
    fresh = [(row, h) for row, h in hashed if h not in listed]
    duplicates = parsed.duplicates + len(hashed) - len(fresh)
    version = _new_version(
        uow,
        lt,
        "import",
        source,
        actor,
        entries=len(fresh),
        duplicates=duplicates,
        rejected=len(parsed.errors),
    )
    now = uow.runtime.clock.now()
    who = actor.ref
    new = [("le_" + secrets.token_hex(8), row, h) for row, h in fresh]
    if new:
        _insert_entries(
            uow,
            [
                {
                    "id": entry_id,
                    "list_type": lt,
                    "kind": row.kind,
                    "value_hash": h,
                    "name": row.value if row.kind == "name" else None,
                    "reason": row.reason,
                    "version": version,
                    "added_by": who,
                    "added_at": now,
                }
                for entry_id, row, h in new
            ],
        )
    by_kind = kinds_summary(row for _id, row, _h in new)
    # A digest over the new entries' ids and keyed hashes: the log pins what this version added.
    ordered = sorted(new, key=lambda n: n[0])
    digest = hashlib.sha256(b"".join(i.encode() + b"\x00" + h for i, _row, h in ordered)).hexdigest()
    _record(
        uow,
        "source_name",
        action="list.imported",
        actor=actor,
        subject=Subject(ref=f"list_version:{version}"),
        state_after={"version": version},
        details={
            "list_type": lt,
            "source_name": source,
            "imported": len(new),
            "duplicates": duplicates,
            "rejected": len(parsed.errors),
            "by_kind": by_kind,
            "entries_sha256": digest,
        },
    )
    return ImportResult(version, lt, len(new), duplicates, parsed.errors, by_kind)


def add_entry(
    uow: UnitOfWork,
    list_type: str,
    kind: str,
    value: str,
    *,
    reason: str,
    actor: Actor,
    source_name: str = "manual",
) -> ListEntry:
    """Put one value on a list (a new version); ConflictError if it is already there."""
    lt = check_list_type(list_type)
    k = check_kind(kind)
    normalised = normalise(k, value)
    why = check_reason(reason)
    source = _source(source_name)
    value_hash = vault.blind_index(vault.derive_keys(uow.runtime.vault_master_key), k, normalised)
    existing = _active_hashes(uow, lt, [value_hash])
    if existing:
        raise ConflictError(f"this value is already on the {lt} list as {existing[value_hash]}")
    version = _new_version(uow, lt, "add", source, actor, entries=1)
    entry_id = "le_" + secrets.token_hex(8)
    _insert_entries(
        uow,
        [
            {
                "id": entry_id,
                "list_type": lt,
                "kind": k,
                "value_hash": value_hash,
                "name": normalised if k == "name" else None,
                "reason": why,
                "version": version,
                "added_by": actor.ref,
                "added_at": uow.runtime.clock.now(),
            }
        ],
    )
    _record(
        uow,
        "source_name",
        action="list.entry_added",
        actor=actor,
        subject=Subject(ref=f"list_entry:{entry_id}"),
        state_after={"version": version, "active": True},
        details={"list_type": lt, "kind": k, "source_name": source},
    )
    return get_entry(uow, entry_id)


def get_entry(uow: UnitOfWork, entry_id: str) -> ListEntry:
    """One entry (without its value), or NotFoundError."""
    row = uow.conn.execute(select(list_entry).where(list_entry.c.id == entry_id)).first()
    if row is None:
        raise NotFoundError(f"list entry {entry_id} does not exist")
    return _entry(row)


def list_entries(
    uow: UnitOfWork,
    *,
    list_type: str | None = None,
    kind: str | None = None,
    include_removed: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[ListEntry]:
    """Entries, newest version first, without values (names masked)."""
    query = select(list_entry)
    if list_type is not None:
        query = query.where(list_entry.c.list_type == check_list_type(list_type))
    if kind is not None:
        query = query.where(list_entry.c.kind == check_kind(kind))
    if not include_removed:
        query = query.where(list_entry.c.removed_at.is_(None))
    query = query.order_by(list_entry.c.version.desc(), list_entry.c.id).limit(limit).offset(offset)
    return [_entry(r) for r in uow.conn.execute(query)]


def _entry(r: Row[Any]) -> ListEntry:
    return ListEntry(
        id=r.id,
        list_type=r.list_type,
        kind=r.kind,
        reason=r.reason,
        version=r.version,
        added_by=r.added_by,
        added_at=r.added_at,
        masked_name=mask_name(r.name) if r.kind == "name" else None,
        removed_version=r.removed_version,
        removed_at=r.removed_at,
        removed_by=r.removed_by,
        removal_reason=r.removal_reason,
        erroneous=r.erroneous,
    )


def caused_freezes(uow: UnitOfWork, entry_id: str) -> list[Freeze]:
    """Active freezes whose evidence names this list entry (``list_entry:<id>``)."""
    ref = f"list_entry:{entry_id}"
    rows = uow.conn.execute(
        select(freeze_table.c.id)
        .where(
            freeze_table.c.status == FreezeStatus.ACTIVE.value,
            freeze_table.c.evidence.contains(ref, autoescape=True),
        )
        .order_by(freeze_table.c.created_at, freeze_table.c.id)
    )
    found = [freezes.get(uow, r.id) for r in rows]
    return [f for f in found if ref in f.evidence]


def _still_supported(uow: UnitOfWork, f: Freeze, removed: str) -> bool:
    """True when another active list entry is also evidence for the freeze."""
    others = [e.removeprefix("list_entry:") for e in f.evidence if e.startswith("list_entry:")]
    others = [o for o in others if o != removed]
    if not others:
        return False
    row = uow.conn.execute(
        select(list_entry.c.id).where(list_entry.c.id.in_(others), list_entry.c.removed_at.is_(None))
    ).first()
    return row is not None


def remove_entry(
    uow: UnitOfWork, entry_id: str, *, erroneous: bool, reason: str, actor: Actor
) -> RemovalResult:
    """Take an entry off its list (a new version); the entry stays for the audit trail, a name is cleared.

    Removed as ``erroneous`` (bad third-party data), every active freeze it caused — evidence
    ``list_entry:<id>`` — is, per ``list_removal_action``, flagged for re-review now or released
    (even a blacklist freeze: its cause is proven wrong). A freeze another active list entry still
    supports is only flagged for re-review.
    """
    why = check_reason(reason)
    current = get_entry(uow, entry_id)
    if not current.active:
        raise ConflictError(f"list entry {entry_id} was already removed")
    lt = check_list_type(current.list_type)
    version = _new_version(uow, lt, "remove", "removal", actor, entries=1)
    now = uow.runtime.clock.now()
    removed = uow.conn.execute(
        update(list_entry)
        .where(list_entry.c.id == entry_id, list_entry.c.removed_at.is_(None))
        .values(
            removed_version=version,
            removed_at=now,
            removed_by=actor.ref,
            removal_reason=why,
            erroneous=erroneous,
            name=None,
        )
    )
    if removed.rowcount != 1:
        raise ConflictError(f"list entry {entry_id} was removed meanwhile")
    plan: list[tuple[Freeze, Literal["rereview", "release"]]] = []
    if erroneous:
        setting = uow.runtime.settings.list_removal_action
        for f in caused_freezes(uow, entry_id):
            release = setting == "release" and not _still_supported(uow, f, entry_id)
            plan.append((f, "release" if release else "rereview"))
    affected = tuple(AffectedFreeze(f.id, f.account_id, action) for f, action in plan)
    _record(
        uow,
        "reason",
        action="list.entry_removed",
        actor=actor,
        subject=Subject(ref=f"list_entry:{entry_id}"),
        state_before={"active": True},
        state_after={"active": False, "version": version},
        details={
            "list_type": lt,
            "kind": current.kind,
            "erroneous": erroneous,
            "reason": why,
            "freezes": [{"freeze_id": a.freeze_id, "action": a.action} for a in affected],
        },
    )
    for f, action in plan:
        if action == "release":
            freezes.end(
                uow,
                f,
                FreezeStatus.RELEASED,
                actor,
                ERRONEOUS_REASON,
                details={"list_entry": entry_id, "note": why},
            )
        else:
            _flag_for_rereview(uow, f, entry_id, why, actor)
    return RemovalResult(get_entry(uow, entry_id), version, affected)


def _flag_for_rereview(uow: UnitOfWork, f: Freeze, entry_id: str, note: str, actor: Actor) -> None:
    """Make the freeze due for re-review now and flag it, as the scheduler does when its date passes."""
    now = uow.runtime.clock.now()
    # Due now, but never at or before the freeze's start (a freeze's invariant).
    review_by = max(min(f.review_by, now), f.created_at + timedelta(microseconds=1))
    flagged = uow.conn.execute(
        update(freeze_table)
        .where(freeze_table.c.id == f.id, freeze_table.c.status == FreezeStatus.ACTIVE.value)
        .values(review_by=review_by, rereview_flagged_at=now)
    )
    if flagged.rowcount != 1:
        raise ConflictError(f"freeze {f.id} is no longer active")
    _record(
        uow,
        "reason",
        action="freeze.rereview_due",
        actor=actor,
        subject=Subject(account_id=f.account_id, freeze_id=f.id),
        evidence=(EvidenceRef("list_entry", entry_id),),
        state_before={"review_by": f.review_by.isoformat()},
        state_after={"review_by": review_by.isoformat()},
        details={"reason": ERRONEOUS_REASON, "list_entry": entry_id, "note": note},
    )
