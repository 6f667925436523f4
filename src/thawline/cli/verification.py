"""``thawline verification`` (second verification after approval) and ``thawline dev`` helpers.

``dev face-result`` plays the face provider against a running server: it posts a callback signed
with the same key a real provider would hold. ``dev sms-outbox`` reads the local SMS carrier.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer

from thawline.adapters.face import callback_request
from thawline.adapters.sms import LocalSmsOutbox
from thawline.cli.common import CLI_ACTOR, console, print_json, runtime
from thawline.services import verification
from thawline.services.unit_of_work import UnitOfWork

verification_app = typer.Typer(
    help="Second verification before an approved appeal releases its freeze. / 解冻前的二次验证。",
    no_args_is_help=True,
)
dev_app = typer.Typer(
    help="Development helpers: the local SMS outbox and face provider. / 开发辅助工具。", no_args_is_help=True
)

AppealArg = Annotated[str, typer.Argument(help="The approved appeal's id. / 已批准的申诉编号。")]


def verification_json(v: verification.Verification) -> dict[str, Any]:
    """Where a second verification stands, as JSON."""
    return {
        "appeal_id": v.appeal_id,
        "freeze_id": v.freeze_id,
        "account_id": v.account_id,
        "status": v.status,
        "required": list(v.required),
        "passed": sorted(v.done),
        "sms_verified": v.sms_verified,
        "face_verified": v.face_verified,
        "code_expires_at": v.code_expires_at.isoformat() if v.code_expires_at else None,
        "attempts_left": v.attempts_left,
        "resend_after": v.resend_after.isoformat() if v.resend_after else None,
        "face_session": v.face_session,
        "completed_at": v.completed_at.isoformat() if v.completed_at else None,
    }


def _outcome(v: verification.Verification) -> None:
    if v.status == "completed":
        console.print(f"second verification completed; freeze {v.freeze_id} released into probation")
    else:
        left = [s for s in v.required if s not in v.done]
        console.print(f"still to pass: {', '.join(left)}")


@verification_app.command("show")
def show(appeal_id: AppealArg) -> None:
    """Where the second verification of an approved appeal stands. / 查看二次验证状态。"""
    with runtime() as rt, UnitOfWork(rt, read_only=True) as uow:
        v = verification.get(uow, appeal_id)
    print_json(verification_json(v))


@verification_app.command("send-code")
def send_code(appeal_id: AppealArg) -> None:
    """Send a fresh six-digit code to the holder's verified phone (throttled). / 发送短信验证码。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        v = verification.send_code(uow, appeal_id, CLI_ACTOR)
        uow.commit()  # the code is handed to the carrier only after this commit
    expires = f"{v.code_expires_at:%Y-%m-%d %H:%M:%S}Z" if v.code_expires_at else "?"
    console.print(f"code sent to the phone of {v.account_id}; it expires at {expires}")


@verification_app.command("check-code")
def check_code(
    appeal_id: AppealArg,
    code: Annotated[str, typer.Argument(help="The six digits the holder received. / 短信验证码。")],
) -> None:
    """Check a code the holder read out; exit status 1 on a wrong code. / 校验短信验证码。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        result = verification.check_code(uow, appeal_id, code.strip(), CLI_ACTOR)
        uow.commit()  # a wrong code is recorded and counts against the attempts: commit either way
    if not result.passed:
        console.print(f"[red]wrong code:[/red] {result.attempts_left} attempt(s) left")
        raise typer.Exit(1)
    console.print("code accepted")
    _outcome(result.verification)


@verification_app.command("face-start")
def face_start(appeal_id: AppealArg) -> None:
    """Open a face-verification session; prints the session and where the holder goes. / 发起人脸验证。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        v, url = verification.start_face(uow, appeal_id, CLI_ACTOR)
        uow.commit()
    print_json({"appeal_id": v.appeal_id, "session": v.face_session, "url": url})


@verification_app.command("face-reset")
def face_reset(
    appeal_id: AppealArg,
    reason: Annotated[str, typer.Option("--reason", help="Why new attempts are given. / 原因。")],
) -> None:
    """Give new face-check attempts after three failures (a lead's act). / 重置人脸核验次数。"""
    with runtime() as rt, UnitOfWork(rt) as uow:
        verification.reset_face(uow, appeal_id, CLI_ACTOR, reason)
        uow.commit()
    typer.echo(f"face check attempts reset for {appeal_id}")


@dev_app.command("face-result")
def face_result(
    session_id: Annotated[str, typer.Argument(help="The face session, e.g. fs_0123…. / 人脸会话编号。")],
    *,
    passed: Annotated[bool, typer.Option("--pass/--fail", help="The provider's verdict. / 验证结果。")],
    score: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Match score (default 0.98 pass, 0.12 fail). / 相似度。"),
    ] = None,
    url: Annotated[str, typer.Option(help="The running server. / 服务地址。")] = "http://127.0.0.1:8000",
) -> None:
    """Post a signed face-provider callback to a running server. / 模拟人脸服务商回调。"""
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter("use an http:// or https:// URL", param_hint="--url")
    with runtime() as rt:
        key = rt.face_callback_key
    body, headers = callback_request(
        key,
        session_id=session_id,
        passed=passed,
        score=score if score is not None else (0.98 if passed else 0.12),
        timestamp=int(time.time()),
    )
    target = url.rstrip("/") + "/v1/callbacks/face"
    request = urllib.request.Request(target, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        # The scheme is checked above: only http(s) reaches urlopen.
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, reply = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, reply = exc.code, exc.read()
    except urllib.error.URLError as exc:
        console.print(f"[red]error:[/red] cannot reach {target}: {exc.reason}")
        raise typer.Exit(1) from exc
    text = reply.decode("utf-8", "replace")
    if text:
        print(text)
    if not 200 <= status < 300:
        console.print(f"[red]error:[/red] {target} answered {status}")
        raise typer.Exit(1)
    console.print(f"callback delivered ({status})")


@dev_app.command("sms-outbox")
def sms_outbox(
    account_id: Annotated[str | None, typer.Argument(help="Only this account's messages. / 账户。")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output. / JSON 输出。")] = False,
) -> None:
    """What the local SMS carrier has sent, oldest first. / 查看本地短信发件箱。"""
    with runtime() as rt:
        sms = rt.sms
        if not isinstance(sms, LocalSmsOutbox):
            console.print("[red]error:[/red] the configured SMS carrier has no local outbox")
            raise typer.Exit(1)
        messages = sms.messages(account_id)
    if json_out:
        print_json(
            [
                {"id": m.id, "account_id": m.account_id, "to": m.to_masked, "text": m.text, "at": m.at}
                for m in messages
            ]
        )
        return
    for m in messages:
        print(f"{m.at}  {m.account_id}  {m.to_masked}  {m.text}")
