"""The staff console's audit pages: search the operation log, read one entry with its inclusion proof,
and download that proof as a bundle ``thawline log check`` verifies offline.

Read-only. The search needs ``log:read``, an entry and its proof ``proofs:read`` (auditors and
admins). Entries are listed oldest first (ascending ``seq``); ``from_seq`` pages forward.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response

from thawline.api.deps import RuntimeDep
from thawline.api.downloads import export_file
from thawline.api.pages import page
from thawline.api.routes import console_auth
from thawline.api.routes.console_auth import STATUS_OF, Lang, denied, gate, language_of, see_other
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError, ThawlineError
from thawline.domain.staff import Permission
from thawline.i18n import t
from thawline.oplog.bundles import BundleError, check_inclusion
from thawline.oplog.entry import LogRecord, Subject, decode_entry
from thawline.oplog.merkle import leaf_hash
from thawline.services import export as exports
from thawline.services import proofs
from thawline.services.analytics import Period
from thawline.services.runtime import Runtime
from thawline.services.staff_sessions import StaffSession
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

router = console_auth.router  # the console's one router; ``thawline.api.app`` imports this module
LogReader = Annotated[StaffSession | Response, Depends(gate(Permission.LOG_READ))]
Verifier = Annotated[StaffSession | Response, Depends(gate(Permission.LOG_READ, form=True))]
Exporter = Annotated[StaffSession | Response, Depends(gate(Permission.LOG_EXPORT))]
ProofReader = Annotated[StaffSession | Response, Depends(gate(Permission.PROOFS_READ))]
MAX_LIMIT = 200
# An actor filter is applied after decoding, so one page reads at most this many entries.
SCAN_LIMIT = 5000
Seq = Annotated[int, Path(ge=0)]
Text = Annotated[str, Query(max_length=64)]


def _row(seq: int, data: bytes) -> dict[str, Any]:
    entry = decode_entry(data)
    actor = entry.get("actor")
    subject = entry.get("subject")
    codes = entry.get("reason_codes")
    return {
        "seq": seq,
        "ts": entry.get("ts", ""),
        "action": entry.get("action", ""),
        "actor": f"{actor.get('kind')}:{actor.get('id')}" if isinstance(actor, dict) else "",
        "subject": " ".join(f"{k}={v}" for k, v in subject.items()) if isinstance(subject, dict) else "",
        "reason_codes": list(codes) if isinstance(codes, list) else [],
    }


def _ts(uow: UnitOfWork, seq: int) -> str:
    data = uow.oplog.entry_data(seq)
    return str(decode_entry(bytes(data)).get("ts", "")) if data is not None else ""


def first_seq_at(uow: UnitOfWork, when: datetime, tree_size: int) -> int:
    """The first entry stamped at or after ``when`` (binary search: entries are appended in time
    order), or ``tree_size`` if there is none."""
    wanted = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    lo, hi = 0, tree_size
    while lo < hi:
        mid = (lo + hi) // 2
        if _stamp(_ts(uow, mid)) < _stamp(wanted):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _stamp(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else datetime.min.replace(tzinfo=UTC)


def search(
    uow: UnitOfWork,
    *,
    from_seq: int,
    limit: int,
    account_id: str | None,
    action: str | None,
    actor: str | None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Matching entries from ``from_seq`` on (at most ``limit``, stamped before ``until``), and where the
    next page starts (or None)."""
    rows: list[dict[str, Any]] = []
    last = from_seq - 1
    store_limit = None if actor or until else limit + 1  # one more tells whether there is a next page
    found = uow.oplog.entries(start=from_seq, account_id=account_id, action=action, limit=store_limit)
    for scanned, (seq, data, _chain) in enumerate(found):
        if len(rows) == limit:
            return rows, rows[-1]["seq"] + 1
        if scanned == SCAN_LIMIT:
            return rows, last + 1
        last = seq
        row = _row(seq, bytes(data))
        if until is not None and _stamp(row["ts"]) >= until:
            return rows, None
        if actor is None or row["actor"] == actor:
            rows.append(row)
    return rows, None


def _day(value: str, field: str, *, end: bool) -> datetime | None:
    """A UTC day from the form (``until`` is inclusive: its end is the next midnight)."""
    if not value:
        return None
    try:
        day = datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInputError("give a day such as 2026-11-25", field=field) from None
    return day + timedelta(days=1) if end else day


@router.get("/audit")
def audit_page(
    *,
    request: Request,
    runtime: RuntimeDep,
    who: LogReader,
    account_id: Text = "",
    action: Text = "",
    actor: Annotated[str, Query(max_length=100)] = "",
    from_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    verified: Annotated[int | None, Query(ge=0)] = None,
    lang: Lang = None,
) -> Response:
    """Log search by account, action, actor (``kind:id``) and UTC days, oldest first, with the head and
    the latest checkpoint."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    filters = {
        "account_id": account_id.strip(),
        "action": action.strip(),
        "actor": actor.strip(),
        "since": since,
        "until": until,
    }
    try:
        start_day, end_day = _day(since, "since", end=False), _day(until, "until", end=True)
    except InvalidInputError as exc:
        return denied(language, who, str(exc), 422)
    with UnitOfWork(runtime, read_only=True) as uow:
        head = uow.oplog.head()
        checkpoint = uow.oplog.checkpoint()
        if start_day is not None:
            from_seq = max(from_seq, first_seq_at(uow, start_day, head.tree_size))
        check = _verification(uow, verified) if verified is not None else None
        rows, next_seq = search(
            uow,
            from_seq=from_seq,
            limit=limit,
            account_id=filters["account_id"] or None,
            action=filters["action"] or None,
            actor=filters["actor"] or None,
            until=end_day,
        )
    return page(
        "console_audit.html",
        language,
        session=who,
        path="/console/audit",
        rows=rows,
        next_seq=next_seq,
        filters=filters,
        from_seq=from_seq,
        limit=limit,
        tree_size=head.tree_size,
        checkpoint=checkpoint,
        datasets=[d.value for d in exports.Dataset],
        formats=[f.value for f in exports.Format],
        may_export=who.may(Permission.LOG_EXPORT),
        check=check,
    )


def _inclusion(runtime: Runtime, seq: int) -> tuple[bytes, dict[str, Any] | None]:
    """The entry's bytes and its inclusion bundle against the first checkpoint covering it (or None)."""
    with UnitOfWork(runtime, read_only=True) as uow:
        data = uow.oplog.entry_data(seq)
        if data is None:
            raise NotFoundError(f"log entry {seq} does not exist")
        try:
            bundle = proofs.inclusion(uow, seq)
        except ConflictError:
            return bytes(data), None
    return bytes(data), bundle


def _verification(uow: UnitOfWork, seq: int) -> dict[str, Any] | None:
    """The result a ``log.verified`` entry records (None if ``seq`` is not one)."""
    data = uow.oplog.entry_data(seq)
    entry = decode_entry(bytes(data)) if data is not None else {}
    if entry.get("action") != "log.verified":
        return None
    return {"seq": seq, "ts": entry.get("ts", "")} | dict(entry.get("details") or {})


@router.post("/audit/verify")
def verify_now(runtime: RuntimeDep, who: Verifier, lang: Lang = None) -> Response:
    """Verify the whole log now (chains, Merkle roots, every checkpoint signature, consistency between
    them, the stored tree) and record the outcome under the auditor's id; the page then shows it."""
    if isinstance(who, Response):
        return who
    report = verify_log(runtime)
    details: dict[str, Any] = {
        "ok": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "root": report.root.hex(),
    }
    if report.problem is not None:
        details["problem"] = {"seq": report.problem.seq, "what": report.problem.what}
    with UnitOfWork(runtime) as uow:
        uow.record(
            LogRecord(
                action="log.verified", actor=who.user.actor, subject=Subject(ref="log"), details=details
            )
        )
        seq = uow.commit()[0]
    return see_other(f"/console/audit?verified={seq}" + (f"&lang={lang}" if lang else ""), None)


@router.get("/audit/entries/{seq}")
def entry_page(
    request: Request, runtime: RuntimeDep, who: ProofReader, seq: Seq, lang: Lang = None
) -> Response:
    """One entry: canonical JSON, its leaf hash, and its inclusion proof (checked here with the log's key)."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    try:
        data, bundle = _inclusion(runtime, seq)
    except NotFoundError as exc:
        return denied(language, who, str(exc), 404)
    verified: str | None = None
    if bundle is not None:
        try:
            check_inclusion(bundle, [runtime.verifier])
            verified = ""
        except BundleError as exc:
            verified = str(exc)
    return page(
        "console_entry.html",
        language,
        session=who,
        path=f"/console/audit/entries/{seq}",
        seq=seq,
        pretty=json.dumps(decode_entry(data), indent=2, ensure_ascii=False),
        leaf_hash=leaf_hash(data).hex(),
        bundle=bundle,
        verified=verified,
    )


@router.get("/audit/entries/{seq}/inclusion.json")
def inclusion_download(
    request: Request, runtime: RuntimeDep, who: ProofReader, seq: Seq, lang: Lang = None
) -> Response:
    """The inclusion bundle (``thawline.inclusion.v1``) as a file, for ``thawline log check``."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    try:
        _data, bundle = _inclusion(runtime, seq)
    except NotFoundError as exc:
        return denied(language, who, str(exc), 404)
    if bundle is None:
        return denied(language, who, t("console.audit.not_covered", language), 409)
    return Response(
        orjson.dumps(bundle, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="thawline-inclusion-{seq}.json"'},
    )


@router.get("/audit/export")
def audit_export(
    *,
    request: Request,
    runtime: RuntimeDep,
    who: Exporter,
    dataset: Annotated[str, Query(max_length=16)] = "log",
    fmt: Annotated[str, Query(alias="format", max_length=8)] = "jsonl",
    from_seq: Annotated[int, Query(ge=0)] = 0,
    to_seq: Annotated[int | None, Query(ge=1)] = None,
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    lang: Lang = None,
) -> Response:
    """Download a log range with its proofs (JSON Lines: checkable offline with ``thawline log check``)
    or the accounts, cases or appeals of a period — ids, codes, times and hashes, never personal data.
    The export itself is logged under the auditor's id."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    try:
        chosen, form = exports.Dataset(dataset), exports.Format(fmt)
    except ValueError:
        return denied(language, who, f"unknown dataset or format: {dataset} / {fmt}", 422)
    try:
        period = None
        if chosen is not exports.Dataset.LOG:
            start, end = _day(since, "since", end=False), _day(until, "until", end=True)
            now = runtime.clock.now()
            period = Period(
                since=start or datetime(1970, 1, 1, tzinfo=UTC), until=end or now + timedelta(seconds=1)
            )
        return export_file(runtime, chosen, form, who.user.actor, period=period, start=from_seq, stop=to_seq)
    except ThawlineError as exc:
        status = next((s for kind, s in STATUS_OF.items() if isinstance(exc, kind)), 409)
        return denied(language, who, str(exc), status)
