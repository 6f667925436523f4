"""The staff console's admin pages: staff members (create, roles, disable and enable, end a lockout,
set a password) and API keys (create — the key is shown once —, revoke).

Members need ``users:admin``, keys ``apikeys:admin`` (admins). Every change is one unit of work with
its log entry naming the admin; the log never holds a username, a password or a key's secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Form, Path, Request
from fastapi.responses import Response
from sqlalchemy import make_url

from thawline.api.deps import RuntimeDep
from thawline.api.pages import page
from thawline.api.routes import console_auth
from thawline.api.routes.console_auth import Lang, gate, language_of, run_step, see_other
from thawline.config import Settings
from thawline.domain.apikeys import Scope
from thawline.domain.errors import InvalidInputError
from thawline.domain.staff import Permission, Role
from thawline.services import apikeys, staff
from thawline.services.runtime import Runtime
from thawline.services.staff_sessions import StaffSession
from thawline.services.unit_of_work import UnitOfWork

router = console_auth.router  # the console's one router; ``thawline.api.app`` imports this module
UsersReader = Annotated[StaffSession | Response, Depends(gate(Permission.USERS_ADMIN))]
UsersWriter = Annotated[StaffSession | Response, Depends(gate(Permission.USERS_ADMIN, form=True))]
SettingsReader = Annotated[StaffSession | Response, Depends(gate(Permission.SETTINGS_ADMIN))]
KeysReader = Annotated[StaffSession | Response, Depends(gate(Permission.APIKEYS_ADMIN))]
KeysWriter = Annotated[StaffSession | Response, Depends(gate(Permission.APIKEYS_ADMIN, form=True))]
Username = Annotated[str, Path(max_length=64)]
KeyId = Annotated[str, Path(max_length=40)]
Roles = Annotated[list[str] | None, Form()]
Password = Annotated[str, Form(max_length=256)]


# -- staff members ----------------------------------------------------------------------------------


def _users_page(
    runtime: Runtime, who: StaffSession, lang: str, status: int = 200, error: str = ""
) -> Response:
    with UnitOfWork(runtime, read_only=True) as uow:
        members = staff.list_users(uow)
    return page(
        "console_users.html",
        lang,
        status,
        session=who,
        path="/console/admin/users",
        error=error,
        members=members,
        roles=list(Role),
        now=runtime.clock.now(),
    )


@router.get("/admin/users")
def users_page(request: Request, runtime: RuntimeDep, who: UsersReader, lang: Lang = None) -> Response:
    """Every staff member with roles, second factor, lockout and last sign-in; the forms to manage them."""
    if isinstance(who, Response):
        return who
    return _users_page(runtime, who, language_of(request, runtime, lang))


def _on_member(
    request: Request,
    runtime: Runtime,
    who: StaffSession,
    lang: str | None,
    step: Callable[[UnitOfWork], object],
) -> Response:
    failed = run_step(runtime, step)
    if failed is None:
        return see_other("/console/admin/users", lang)
    return _users_page(runtime, who, language_of(request, runtime, lang), failed[0], str(failed[1]))


@router.post("/admin/users")
def create_user(
    request: Request,
    runtime: RuntimeDep,
    who: UsersWriter,
    *,
    username: Annotated[str, Form(max_length=64)] = "",
    roles: Roles = None,
    password: Password = "",
    lang: Lang = None,
) -> Response:
    """Create a member with roles and a first password (the password policy applies)."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _on_member(
        request,
        runtime,
        who,
        lang,
        lambda uow: staff.create_user(uow, username, roles or [], password, actor),
    )


@router.post("/admin/users/{username}/roles")
def set_roles(
    username: Username,
    request: Request,
    runtime: RuntimeDep,
    who: UsersWriter,
    *,
    roles: Roles = None,
    lang: Lang = None,
) -> Response:
    """Replace a member's roles (never your own admin role)."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _on_member(
        request, runtime, who, lang, lambda uow: staff.set_roles(uow, username, roles or [], actor)
    )


@router.post("/admin/users/{username}/disable")
def disable_user(
    username: Username, request: Request, runtime: RuntimeDep, who: UsersWriter, lang: Lang = None
) -> Response:
    """Disable a member: their sessions end at once (never yourself)."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _on_member(request, runtime, who, lang, lambda uow: staff.disable(uow, username, actor))


@router.post("/admin/users/{username}/enable")
def enable_user(
    username: Username, request: Request, runtime: RuntimeDep, who: UsersWriter, lang: Lang = None
) -> Response:
    """Let a disabled member sign in again."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _on_member(request, runtime, who, lang, lambda uow: staff.enable(uow, username, actor))


@router.post("/admin/users/{username}/unlock")
def unlock_user(
    username: Username, request: Request, runtime: RuntimeDep, who: UsersWriter, lang: Lang = None
) -> Response:
    """End a sign-in lockout now."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _on_member(request, runtime, who, lang, lambda uow: staff.unlock(uow, username, actor))


@router.post("/admin/users/{username}/password")
def set_password(
    username: Username,
    request: Request,
    runtime: RuntimeDep,
    who: UsersWriter,
    *,
    password: Password = "",
    lang: Lang = None,
) -> Response:
    """Give a member a new password; their open sessions end."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _on_member(
        request, runtime, who, lang, lambda uow: staff.set_password(uow, username, password, actor)
    )


# -- API keys ---------------------------------------------------------------------------------------


def _keys_page(
    runtime: Runtime,
    who: StaffSession,
    lang: str,
    status: int = 200,
    error: str = "",
    *,
    created: tuple[apikeys.ApiKeyInfo, str] | None = None,
) -> Response:
    with UnitOfWork(runtime, read_only=True) as uow:
        keys = apikeys.list_keys(uow)
    return page(
        "console_apikeys.html",
        lang,
        status,
        session=who,
        path="/console/admin/apikeys",
        error=error,
        keys=keys,
        scopes=list(Scope),
        created=created,
    )


@router.get("/admin/apikeys")
def keys_page(request: Request, runtime: RuntimeDep, who: KeysReader, lang: Lang = None) -> Response:
    """Every API key (never a secret) with its scopes, and the form to create one."""
    if isinstance(who, Response):
        return who
    return _keys_page(runtime, who, language_of(request, runtime, lang))


@router.post("/admin/apikeys")
def create_key(
    request: Request,
    runtime: RuntimeDep,
    who: KeysWriter,
    *,
    name: Annotated[str, Form(max_length=100)] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    lang: Lang = None,
) -> Response:
    """Create a key with the scopes ticked; the page shows the key once (it is stored only hashed)."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    actor = who.user.actor
    made: list[tuple[apikeys.ApiKeyInfo, str]] = []

    def step(uow: UnitOfWork) -> None:
        if not name.strip():
            raise InvalidInputError("give the key a name (who or what uses it)", field="name")
        if not scopes:
            raise InvalidInputError("tick at least one scope", field="scopes")
        made.append(apikeys.create_key(uow, name.strip(), scopes, actor))

    failed = run_step(runtime, step)
    if failed is not None:
        return _keys_page(runtime, who, language, failed[0], str(failed[1]))
    response = _keys_page(runtime, who, language, created=made[0])
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/admin/apikeys/{key_id}/revoke")
def revoke_key(
    key_id: KeyId, request: Request, runtime: RuntimeDep, who: KeysWriter, lang: Lang = None
) -> Response:
    """Revoke a key: refused at once by this process, within a second by every other."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    failed = run_step(runtime, lambda uow: apikeys.revoke_key(uow, key_id, actor))
    if failed is None:
        return see_other("/console/admin/apikeys", lang)
    return _keys_page(runtime, who, language_of(request, runtime, lang), failed[0], str(failed[1]))


# -- settings ---------------------------------------------------------------------------------------

SECRET_WORDS = ("secret", "password", "token")


def setting_rows(settings: Settings) -> list[dict[str, str]]:
    """Every setting with its environment variable, value and description; secrets are never shown
    and a database URL is shown without its password."""
    rows = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if any(word in name for word in SECRET_WORDS):
            shown = "••••" if value else "—"
        elif name == "database_url":
            shown = make_url(str(value)).render_as_string(hide_password=True)
        else:
            shown = "—" if value is None else str(value)
        rows.append(
            {
                "name": name,
                "env": f"THAWLINE_{name.upper()}",
                "value": shown,
                "about": field.description or "",
            }
        )
    return rows


@router.get("/admin/settings")
def settings_page(request: Request, runtime: RuntimeDep, who: SettingsReader, lang: Lang = None) -> Response:
    """The settings this process runs with (read-only: they come from the environment at start)."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    return page(
        "console_settings.html",
        language,
        session=who,
        path="/console/admin/settings",
        rows=setting_rows(runtime.settings),
    )
