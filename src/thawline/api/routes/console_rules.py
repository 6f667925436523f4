"""The staff console's pages for risk analysts: ruleset versions with their diff and what each rule did
(shadow-mode statistics), loading and restoring a version, per-account suppressions, and the block- and
allow-lists (versions, entries, CSV import, removal as erroneous).

Rules need ``rules:write``, suppressions ``suppressions:write``, lists ``lists:write`` (risk analysts).
Every change goes through the same services as the API, so each is one unit of work with its log
entry, naming the staff member.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import Response

from thawline.api.deps import RuntimeDep
from thawline.api.pages import page
from thawline.api.routes import console_auth
from thawline.api.routes.console_auth import Lang, gate, language_of, run_step, see_other
from thawline.domain.errors import InvalidInputError
from thawline.domain.lists import KINDS, RowError
from thawline.domain.staff import Permission
from thawline.services import lists, rulesets
from thawline.services.engine import default_ruleset_text, load_ruleset
from thawline.services.runtime import Runtime
from thawline.services.staff_sessions import StaffSession
from thawline.services.unit_of_work import UnitOfWork

router = console_auth.router  # the console's one router; ``thawline.api.app`` imports this module
RulesReader = Annotated[StaffSession | Response, Depends(gate(Permission.RULES_WRITE))]
RulesWriter = Annotated[StaffSession | Response, Depends(gate(Permission.RULES_WRITE, form=True))]
SuppressReader = Annotated[StaffSession | Response, Depends(gate(Permission.SUPPRESSIONS_WRITE))]
SuppressWriter = Annotated[StaffSession | Response, Depends(gate(Permission.SUPPRESSIONS_WRITE, form=True))]
ListsReader = Annotated[StaffSession | Response, Depends(gate(Permission.LISTS_WRITE))]
ListsWriter = Annotated[StaffSession | Response, Depends(gate(Permission.LISTS_WRITE, form=True))]
Version = Annotated[int, Path(ge=1)]
MAX_RULESET_CHARS = 200_000


# -- rules ------------------------------------------------------------------------------------------


def _rules_values(runtime: Runtime) -> dict[str, Any]:
    now = runtime.clock.now()
    with UnitOfWork(runtime, read_only=True) as uow:
        history = rulesets.versions(uow)
        active = next((v for v in history if v.active), None)
        text = rulesets.source(uow, active.version) if active else default_ruleset_text()
        stats = rulesets.rule_stats(uow, rulesets.default_since(now))
    rules = rulesets.rule_rows(text)
    return {"history": history, "active": active, "rules": rules, "stats": stats, "source": text}


def _rules_page(
    runtime: Runtime, who: StaffSession, lang: str, status: int = 200, error: str = ""
) -> Response:
    values = _rules_values(runtime)
    return page("console_rules.html", lang, status, session=who, path="/console/rules", error=error, **values)


@router.get("/rules")
def rules_page(request: Request, runtime: RuntimeDep, who: RulesReader, lang: Lang = None) -> Response:
    """The active ruleset, what each rule did in the last seven days, and every earlier version."""
    if isinstance(who, Response):
        return who
    return _rules_page(runtime, who, language_of(request, runtime, lang))


@router.get("/rules/versions/{version}")
def version_page(
    version: Version, request: Request, runtime: RuntimeDep, who: RulesReader, lang: Lang = None
) -> Response:
    """One version: what changed against the version before it, and its full text."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    with UnitOfWork(runtime, read_only=True) as uow:
        history = rulesets.versions(uow)
        found = next((v for v in history if v.version == version), None)
        if found is None:
            return console_auth.denied(language, who, f"ruleset version {version} does not exist", 404)
        change = rulesets.diff(uow, version)
        text = rulesets.source(uow, version)
    return page(
        "console_ruleset.html",
        language,
        session=who,
        path=f"/console/rules/versions/{version}",
        version=found,
        change=change,
        source=text,
    )


@router.post("/rules")
def load_rules(
    request: Request,
    runtime: RuntimeDep,
    who: RulesWriter,
    *,
    source: Annotated[str, Form(max_length=MAX_RULESET_CHARS)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
    lang: Lang = None,
) -> Response:
    """Load a new ruleset version from the pasted YAML and make it active (it must compile)."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor

    def step(uow: UnitOfWork) -> None:
        if not source.strip():
            raise InvalidInputError("paste the ruleset YAML", field="source")
        load_ruleset(uow, source, actor, note=note)

    return _after(request, runtime, who, lang, step, "/console/rules", _rules_page)


@router.post("/rules/versions/{version}/restore")
def restore_version(
    version: Version, request: Request, runtime: RuntimeDep, who: RulesWriter, lang: Lang = None
) -> Response:
    """Make an earlier version active again (as a new version: the history only grows)."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _after(
        request,
        runtime,
        who,
        lang,
        lambda uow: rulesets.restore(uow, version, actor),
        "/console/rules",
        _rules_page,
    )


def _after(  # noqa: PLR0917 — private helper, called positionally from the routes here
    request: Request,
    runtime: Runtime,
    who: StaffSession,
    lang: str | None,
    step: Callable[[UnitOfWork], object],
    done: str,
    again: Callable[..., Response],
) -> Response:
    """Run ``step`` in one unit of work: on success see ``done``, else re-render with the error."""
    failed = run_step(runtime, step)
    if failed is None:
        return see_other(done, lang)
    status, error = failed
    return again(runtime, who, language_of(request, runtime, lang), status, str(error))


# -- suppressions -----------------------------------------------------------------------------------


def _suppressions_page(
    runtime: Runtime, who: StaffSession, lang: str, status: int = 200, error: str = ""
) -> Response:
    with UnitOfWork(runtime, read_only=True) as uow:
        active = rulesets.suppressions(uow)
        history = rulesets.versions(uow)
        text = rulesets.source(uow, history[0].version) if history else default_ruleset_text()
    rule_ids = [r["id"] for r in rulesets.rule_rows(text)]
    default_until = (runtime.clock.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    return page(
        "console_suppressions.html",
        lang,
        status,
        session=who,
        path="/console/suppressions",
        error=error,
        rows=active,
        rule_ids=rule_ids,
        default_until=default_until,
    )


@router.get("/suppressions")
def suppressions_page(
    request: Request, runtime: RuntimeDep, who: SuppressReader, lang: Lang = None
) -> Response:
    """Rules suppressed for single accounts (known false positives), and the form to add one."""
    if isinstance(who, Response):
        return who
    return _suppressions_page(runtime, who, language_of(request, runtime, lang))


def _utc(value: str, field: str) -> datetime:
    """A ``datetime-local`` form value, read as UTC (the console shows times in UTC)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError("give a date and time such as 2026-12-31T18:00", field=field) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@router.post("/suppressions")
def add_suppression(
    request: Request,
    runtime: RuntimeDep,
    who: SuppressWriter,
    *,
    account_id: Annotated[str, Form(max_length=64)] = "",
    rule_id: Annotated[str, Form(max_length=64)] = "",
    until: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=rulesets.MAX_REASON)] = "",
    lang: Lang = None,
) -> Response:
    """Stop one rule acting on one account until a time, with a reason."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor

    def step(uow: UnitOfWork) -> None:
        rulesets.suppress(
            uow, account_id.strip(), rule_id, until=_utc(until, "until"), reason=reason, actor=actor
        )

    return _after(request, runtime, who, lang, step, "/console/suppressions", _suppressions_page)


@router.post("/suppressions/lift")
def lift_suppression(
    request: Request,
    runtime: RuntimeDep,
    who: SuppressWriter,
    *,
    account_id: Annotated[str, Form(max_length=64)] = "",
    rule_id: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=rulesets.MAX_REASON)] = "",
    lang: Lang = None,
) -> Response:
    """End a suppression now."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _after(
        request,
        runtime,
        who,
        lang,
        lambda uow: rulesets.lift(uow, account_id, rule_id, reason, actor),
        "/console/suppressions",
        _suppressions_page,
    )


# -- lists ------------------------------------------------------------------------------------------


def _lists_page(  # noqa: PLR0917 — same shape as the other re-render helpers
    runtime: Runtime,
    who: StaffSession,
    lang: str,
    status: int = 200,
    error: str = "",
    imported: lists.ImportResult | None = None,
    line_errors: tuple[RowError, ...] = (),
) -> Response:
    with UnitOfWork(runtime, read_only=True) as uow:
        history = lists.versions(uow, limit=50)
        entries = lists.list_entries(uow, limit=200)
    return page(
        "console_lists.html",
        lang,
        status,
        session=who,
        path="/console/lists",
        error=error,
        history=history,
        entries=entries,
        kinds=KINDS,
        imported=imported,
        line_errors=imported.errors if imported else line_errors,
    )


@router.get("/lists")
def lists_page(request: Request, runtime: RuntimeDep, who: ListsReader, lang: Lang = None) -> Response:
    """List versions (who imported what, when), the newest entries, and the import form."""
    if isinstance(who, Response):
        return who
    return _lists_page(runtime, who, language_of(request, runtime, lang))


@router.post("/lists/import")
async def import_list(
    request: Request,
    runtime: RuntimeDep,
    who: ListsWriter,
    *,
    list_type: Annotated[str, Form(max_length=8)] = "",
    file: Annotated[UploadFile | None, File()] = None,
    lang: Lang = None,
) -> Response:
    """Import a CSV (``kind,value,reason``) into the block or allow list; bad lines are listed."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    limit = runtime.settings.max_upload_bytes
    data = await file.read(limit + 1) if file is not None else b""
    name = (file.filename or "upload.csv") if file is not None else ""
    actor = who.user.actor
    result: list[lists.ImportResult] = []

    def step(uow: UnitOfWork) -> None:
        if not data:
            raise InvalidInputError("choose a CSV file to import", field="file")
        if len(data) > limit:
            raise InvalidInputError(
                f"the file is larger than the {limit // (1024 * 1024)} MB limit", field="file"
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInputError("the file is not UTF-8 text", field="file") from None
        result.append(lists.import_csv(uow, text, list_type, actor, name[:256]))

    failed = run_step(runtime, step)
    if failed is not None:
        status, error = failed
        lines = error.errors if isinstance(error, lists.ListImportError) else ()
        return _lists_page(runtime, who, language, status, str(error), line_errors=lines)
    return _lists_page(runtime, who, language, imported=result[0])


@router.post("/lists/entries/{entry_id}/remove")
def remove_entry(
    entry_id: Annotated[str, Path(max_length=40)],
    request: Request,
    runtime: RuntimeDep,
    who: ListsWriter,
    *,
    reason: Annotated[str, Form(max_length=1000)] = "",
    erroneous: Annotated[bool, Form()] = False,
    lang: Lang = None,
) -> Response:
    """Take an entry off its list; as erroneous, the freezes it caused are re-reviewed or released."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _after(
        request,
        runtime,
        who,
        lang,
        lambda uow: lists.remove_entry(uow, entry_id, erroneous=erroneous, reason=reason, actor=actor),
        "/console/lists",
        _lists_page,
    )
