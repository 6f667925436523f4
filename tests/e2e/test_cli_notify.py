"""``thawline webhook`` and ``thawline outbox`` from the shell, against a real receiver."""

from __future__ import annotations

import json
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from tests.e2e.test_cli import thawline
from tests.receivers import HttpReceiver
from thawline.config import Settings
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, freezes
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork

OPS = Actor(ActorKind.SYSTEM, "ops")


def _freeze(workdir: Path) -> None:
    rt = build_runtime(
        Settings(database_url=f"sqlite:///{workdir / 'thawline.db'}", data_dir=workdir / "thawline-data")
    )
    try:
        with UnitOfWork(rt) as uow:
            accounts.register(uow, accounts.RegisterAccount("acc_1", "王芳", integrator="ak_gw"), OPS)
            cmd = freezes.FreezeAccount(
                "acc_1",
                Restriction(FreezeScope.DEBIT),
                ReasonCategory.MANUAL,
                ("CODE",),
                SourceKind.REVIEWER,
                "rv_1",
                "terms",
                "internal",
                "holder reason",
            )
            freezes.freeze_account(uow, cmd, OPS)
            uow.commit()
    finally:
        rt.close()


def test_a_subscription_is_created_pinged_and_its_dead_letters_replayed_from_the_shell(
    tmp_path: Path,
) -> None:
    with HttpReceiver() as receiver:
        created = json.loads(
            thawline(
                tmp_path,
                "webhook",
                "create",
                "--integrator",
                "ak_gw",
                "--url",
                receiver.url,
                "--event",
                "account.*",
            ).stdout
        )
        assert created["secret"].startswith("whsec_")
        pinged = json.loads(thawline(tmp_path, "webhook", "ping", created["id"]).stdout)
        assert pinged["status"] == "delivered"
        (got,) = receiver.received
        assert Webhook(created["secret"]).verify(got.body, got.headers)["type"] == "webhook.ping"

        receiver.status = 500
        _freeze(tmp_path)
        shown = json.loads(thawline(tmp_path, "outbox", "dispatch").stdout)
        assert (shown["claimed"], shown["retrying"]) == (1, 1)
        rows = json.loads(thawline(tmp_path, "outbox", "list", "--channel", "webhook", "--json").stdout)
        restricted = next(r for r in rows if r["event_type"] == "account.restricted")  # a debit-only freeze
        assert (restricted["status"], restricted["last_status"]) == ("pending", 500)
        assert restricted["attempts"] == 1
        receiver.status = 200
        assert "still pending" in thawline(tmp_path, "outbox", "replay", restricted["id"], ok=False).stderr
        assert thawline(tmp_path, "outbox", "replay", ok=False).returncode == 2  # an id or --dead
        assert "0 message(s)" in thawline(tmp_path, "outbox", "replay", "--dead").stderr
