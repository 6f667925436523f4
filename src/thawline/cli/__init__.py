"""The ``thawline`` command line: serve, worker, review, verification, the log, the vault and more."""

from __future__ import annotations

import typer

from thawline.cli import (
    accounts,
    admin,
    demo,
    export,
    logcmd,
    notify,
    report,
    rescreen,
    review,
    simulate,
    staff,
    verification,
    worker,
)
from thawline.cli import backtest as backtest_cli
from thawline.cli import lists as list_cli

app = typer.Typer(
    help="Thawline — freeze risky accounts, explain why, release safely, prove every step. / 冻结与解封平台",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(admin.serve)
app.command("worker")(worker.worker)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.apikey_app, name="apikey")
app.add_typer(admin.vault_app, name="vault")
app.add_typer(logcmd.log_app, name="log")
app.add_typer(accounts.account_app, name="account")
app.add_typer(accounts.freeze_app, name="freeze")
app.add_typer(review.review_app, name="review")
app.add_typer(verification.verification_app, name="verification")
app.add_typer(verification.dev_app, name="dev")
app.command("simulate")(simulate.simulate)
app.command("rescreen")(rescreen.rescreen)
app.command("demo")(demo.demo)
app.add_typer(list_cli.lists_app, name="lists")
app.add_typer(notify.outbox_app, name="outbox")
app.add_typer(notify.webhook_app, name="webhook")
app.add_typer(staff.staff_app, name="staff")
app.command("backtest")(backtest_cli.backtest)
app.command("report")(report.report)
app.add_typer(export.export_app, name="export")


def main() -> None:
    """Console-script entry point."""
    app()
