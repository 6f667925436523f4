"""``thawline staff``: console staff accounts — create, list, disable, enrol a TOTP second factor."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.domain.staff import Role
from thawline.services import staff
from thawline.services.unit_of_work import UnitOfWork

staff_app = typer.Typer(
    help="Console staff: accounts, roles, second factor. / 控制台员工账户：角色与二次验证。",
    no_args_is_help=True,
)
out = Console()

UsernameArg = Annotated[str, typer.Argument(help="The staff member's sign-in name. / 登录用户名。")]


def _user_json(u: staff.StaffUser) -> dict[str, object]:
    return {
        "id": u.id,
        "username": u.username,
        "roles": [r.value for r in u.roles],
        "totp": u.totp_enrolled,
        "disabled": u.disabled,
        "created_at": u.created_at.isoformat(),
        "last_sign_in_at": u.last_sign_in_at.isoformat() if u.last_sign_in_at else None,
    }


@staff_app.command("create")
def create(
    username: UsernameArg,
    role: Annotated[
        list[Role],
        typer.Option("--role", help="Repeat for several roles. / 可重复指定多个角色。"),
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a staff member (argon2id password hash; at least 12 characters)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password / 密码", hide_input=True, confirmation_prompt=True)
    with runtime() as rt, UnitOfWork(rt) as uow:
        made = staff.create_user(uow, username, [r.value for r in role], password, CLI_ACTOR)
        uow.commit()
    print_json(_user_json(made))


@staff_app.command("list")
def list_staff(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List staff members with their roles, second factor and last sign-in."""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        users = staff.list_users(uow)
    if as_json:
        print_json([_user_json(u) for u in users])
        return
    table = Table("id", "username", "roles", "totp", "disabled", "last sign-in")
    for u in users:
        table.add_row(
            u.id,
            u.username,
            " ".join(u.roles),
            "yes" if u.totp_enrolled else "no",
            "yes" if u.disabled else "no",
            u.last_sign_in_at.isoformat() if u.last_sign_in_at else "—",
        )
    out.print(table)


@staff_app.command("disable")
def disable(username: UsernameArg) -> None:
    """Disable a staff member: sign-in refused, open sessions ended at once."""
    with runtime() as rt, UnitOfWork(rt) as uow:
        done = staff.disable(uow, username, CLI_ACTOR)
        uow.commit()
    console.print(f"disabled {done.username} ({done.id})")


@staff_app.command("totp")
def totp(username: UsernameArg) -> None:
    """Enrol (or replace) the TOTP second factor; prints the otpauth URI for an authenticator app, once."""
    with runtime() as rt, UnitOfWork(rt) as uow:
        _user, uri = staff.enrol_totp(uow, username, CLI_ACTOR)
        uow.commit()
    sys.stdout.write(uri + "\n")
    console.print(
        "Add this URI to the authenticator app now; it is not shown again. From now on sign-in needs a code."
    )
