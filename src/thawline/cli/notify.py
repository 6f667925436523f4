"""``thawline outbox`` and ``thawline webhook``: dead letters, replays, one dispatch round, subscriptions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.services import outbox, webhooks
from thawline.services.dispatcher import Dispatcher
from thawline.services.unit_of_work import UnitOfWork

outbox_app = typer.Typer(help="Outgoing email, SMS and webhooks. / 通知发件箱。", no_args_is_help=True)
webhook_app = typer.Typer(help="Integrators' webhook subscriptions. / Webhook 订阅。", no_args_is_help=True)


def _json(value: Any) -> Any:
    data = asdict(value)
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data.items()}


@outbox_app.command("list")
def list_cmd(
    status: Annotated[str | None, typer.Option(help="pending, delivered, dead or suppressed.")] = None,
    channel: Annotated[str | None, typer.Option(help="email, sms or webhook.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List messages, newest first (``--status dead`` for dead letters). / 列出消息。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        found = outbox.list_messages(uow, status=status, channel=channel, limit=limit)
    if as_json:
        print_json([_json(m) for m in found])
        return
    table = Table("id", "channel", "what", "status", "attempts", "last error")
    for m in found:
        table.add_row(
            m.id, m.channel, m.event_type or m.template or "", m.status, str(m.attempts), m.last_error or ""
        )
    console.print(table)


@outbox_app.command("replay")
def replay_cmd(
    message_id: Annotated[str | None, typer.Argument(help="One message id.")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Replay every dead letter.")] = False,
) -> None:
    """Queue a dead (or delivered) message again, with the same idempotency key. / 重新投递。"""
    if (message_id is None) == (not dead):
        console.print("[red]error:[/red] give a message id or --dead")
        raise typer.Exit(2)
    with runtime() as rt, UnitOfWork(rt) as uow:
        if message_id is not None:
            outbox.replay(uow, message_id, CLI_ACTOR)
            count = 1
        else:
            count = outbox.replay_dead(uow, CLI_ACTOR)
        uow.commit()
    console.print(f"{count} message(s) queued again")


@outbox_app.command("dispatch")
def dispatch_cmd() -> None:
    """Run one dispatcher round now and print its counts. / 立即投递一轮。"""
    with runtime() as rt:
        print_json(Dispatcher(rt).run_once().as_json())


@webhook_app.command("create")
def create_cmd(
    integrator: Annotated[str, typer.Option(help="Whose accounts: the API key id that registers them.")],
    url: Annotated[str, typer.Option(help="The receiver's https:// URL.")],
    event: Annotated[
        list[str], typer.Option(help="Event type or pattern (repeat): account.frozen, appeal.*, *")
    ],
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Subscribe a URL; prints the signing secret once. / 创建订阅。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        sub, secret = webhooks.create(
            uow, integrator, url=url, event_types=event, description=description, actor=CLI_ACTOR
        )
        uow.commit()
    print_json(_json(sub) | {"secret": secret})


@webhook_app.command("list")
def list_webhooks() -> None:
    """Every subscription (never the secrets). / 列出订阅。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        print_json([_json(s) for s in webhooks.list_subscriptions(uow)])


@webhook_app.command("rotate")
def rotate_cmd(subscription_id: str) -> None:
    """New secret; the old one keeps signing during the overlap. / 轮换密钥。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        sub, secret = webhooks.rotate(uow, subscription_id, CLI_ACTOR)
        uow.commit()
    print_json(_json(sub) | {"secret": secret})


@webhook_app.command("ping")
def ping_cmd(subscription_id: str) -> None:
    """Send a webhook.ping now and print how it went. / 发送测试事件。"""
    with runtime() as rt:
        with UnitOfWork(rt) as uow:
            msg_id = webhooks.ping(uow, subscription_id, CLI_ACTOR)
            uow.commit()
        with UnitOfWork(rt, read_only=True) as uow:
            print_json(_json(outbox.get(uow, msg_id)))


@webhook_app.command("disable")
def disable_cmd(subscription_id: str) -> None:
    """Stop queuing events for a subscription. / 停用订阅。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        sub = webhooks.set_status(uow, subscription_id, "disabled", CLI_ACTOR)
        uow.commit()
    print_json(_json(sub))
