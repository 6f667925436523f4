"""Second verification over HTTP: the SMS code, the face match and the provider's signed callback."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from thawline.adapters import face
from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.api.problems import problem
from thawline.domain.apikeys import Scope
from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import verification
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["second verification"])
CanAppeal = Annotated[ApiKeyInfo, Depends(require(Scope.APPEALS_WRITE))]
CanLead = Annotated[ApiKeyInfo, Depends(require(Scope.REVIEWS_LEAD))]


def _actor(key: ApiKeyInfo) -> Actor:
    # The integrator acts on the holder's behalf.
    return Actor(ActorKind.INTEGRATOR, key.id)


class VerificationOut(BaseModel):
    """Where the second verification of an approved appeal stands."""

    appeal_id: str
    freeze_id: str
    account_id: str
    required: list[str] = Field(description="The steps to pass: sms_code, face.")
    status: str = Field(description="pending, then completed (the freeze is released).")
    sms_verified: bool
    face_verified: bool
    code_expires_at: datetime | None
    attempts_left: int = Field(description="Wrong codes still allowed for the current code.")
    resend_after: datetime | None = Field(description="No new code may be sent before then.")
    face_session: str | None
    completed_at: datetime | None

    @classmethod
    def of(cls, v: verification.Verification) -> VerificationOut:
        """Render a verification."""
        return cls(
            appeal_id=v.appeal_id,
            freeze_id=v.freeze_id,
            account_id=v.account_id,
            required=list(v.required),
            status=v.status,
            sms_verified=v.sms_verified,
            face_verified=v.face_verified,
            code_expires_at=v.code_expires_at,
            attempts_left=v.attempts_left,
            resend_after=v.resend_after,
            face_session=v.face_session,
            completed_at=v.completed_at,
        )


@router.get("/appeals/{appeal_id}/verification", response_model=VerificationOut)
def get_verification(appeal_id: str, uow: ReadUow, _key: CanAppeal) -> VerificationOut:
    """The second verification of an approved appeal (404 before approval)."""
    return VerificationOut.of(verification.get(uow, appeal_id))


@router.post(
    "/appeals/{appeal_id}/verification/sms",
    response_model=VerificationOut,
    responses={409: {"description": "Throttled (Retry-After says how long), passed, or not required."}},
)
def send_code(appeal_id: str, request: Request, runtime: RuntimeDep, key: CanAppeal) -> JSONResponse:
    """Send (or resend) a six-digit code to the holder's phone on file; valid 5 minutes."""
    try:
        with UnitOfWork(runtime) as uow:
            sent = verification.send_code(uow, appeal_id, _actor(key))
            uow.commit()
    except ConflictError as exc:
        with UnitOfWork(runtime, read_only=True) as uow:
            now = verification.get(uow, appeal_id)
        headers = None
        if now.status == "pending" and not now.sms_verified and now.resend_after is not None:
            wait = (now.resend_after - runtime.clock.now()).total_seconds()
            headers = {"Retry-After": str(max(math.ceil(wait), 1))}
        return problem(request, 409, str(exc), headers=headers)
    return JSONResponse(VerificationOut.of(sent).model_dump(mode="json"))


class CodeIn(BaseModel):
    """The code the holder received."""

    code: str = Field(max_length=16, description="Six digits.")


@router.post(
    "/appeals/{appeal_id}/verification/sms/check",
    response_model=VerificationOut,
    responses={422: {"description": "Wrong code: errors[0] names 'code' and gives attempts_left."}},
)
def check_code(
    appeal_id: str, body: CodeIn, request: Request, runtime: RuntimeDep, key: CanAppeal
) -> JSONResponse:
    """Check the code; five wrong tries use it up. Passing the last step releases the freeze."""
    with UnitOfWork(runtime) as uow:
        result = verification.check_code(uow, appeal_id, body.code, _actor(key))
        uow.commit()  # a wrong code is recorded and counts, so commit either way
    if not result.passed:
        message = f"the code is wrong; {result.attempts_left} attempt(s) left"
        return problem(
            request,
            422,
            message,
            slug="wrong-code",
            errors=[{"field": "code", "message": message, "attempts_left": result.attempts_left}],
        )
    return JSONResponse(VerificationOut.of(result.verification).model_dump(mode="json"))


class FaceStartOut(BaseModel):
    """Where the holder goes to show their face; the result arrives by the provider's callback."""

    session_id: str
    url: str
    verification: VerificationOut


@router.post("/appeals/{appeal_id}/verification/face", response_model=FaceStartOut)
def start_face(appeal_id: str, runtime: RuntimeDep, key: CanAppeal) -> FaceStartOut:
    """Open a face-verification session with the provider (a new one supersedes the last)."""
    with UnitOfWork(runtime) as uow:
        view, url = verification.start_face(uow, appeal_id, _actor(key))
        uow.commit()
    return FaceStartOut(session_id=view.face_session or "", url=url, verification=VerificationOut.of(view))


class FaceResetIn(BaseModel):
    """Why a review lead gives the holder new face-check attempts."""

    reason: str = Field(min_length=1, max_length=2000)


@router.post("/appeals/{appeal_id}/verification/face/reset", response_model=VerificationOut)
def reset_face(appeal_id: str, body: FaceResetIn, runtime: RuntimeDep, key: CanLead) -> VerificationOut:
    """After three failed face checks the holder is stuck; a review lead can give new attempts."""
    with UnitOfWork(runtime) as uow:
        view = verification.reset_face(uow, appeal_id, Actor(ActorKind.REVIEWER, key.id), body.reason)
        uow.commit()
    return VerificationOut.of(view)


class FaceResultIn(BaseModel):
    """The provider's result for a session."""

    session_id: str = Field(min_length=1, max_length=64)
    passed: bool
    score: float = Field(ge=0, le=1)
    provider_ref: str = Field(default="", max_length=128)


class FaceResultOut(BaseModel):
    """Acknowledgement to the provider."""

    session_id: str
    status: str = Field(description="The verification's status: pending or completed.")
    face_verified: bool


@router.post(
    "/callbacks/face",
    response_model=FaceResultOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": FaceResultIn.model_json_schema()}},
        }
    },
    responses={401: {"description": "Bad or stale signature; nothing changed."}},
)
async def face_callback(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """The face provider's result. No API key: X-Thawline-Signature is an HMAC of the raw body.

    X-Thawline-Timestamp must be within five minutes; a repeated callback changes nothing.
    """
    raw = await request.body()
    refused = face.check_signature(
        runtime.face_callback_key,
        signature=request.headers.get(face.SIGNATURE_HEADER, ""),
        timestamp=request.headers.get(face.TIMESTAMP_HEADER, ""),
        body=raw,
        now=runtime.clock.now().timestamp(),
    )
    if refused is not None:
        return problem(request, 401, f"callback refused: {refused}", slug="bad-signature")
    try:
        body = FaceResultIn.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInputError(f"{field}: {first['msg']}", field=field) from exc

    def record() -> verification.Verification:
        with UnitOfWork(runtime) as uow:
            view = verification.face_result(
                uow, body.session_id, passed=body.passed, score=body.score, provider_ref=body.provider_ref
            )
            uow.commit()
        return view

    view = await run_in_threadpool(record)
    out = FaceResultOut(session_id=body.session_id, status=view.status, face_verified=view.face_verified)
    return JSONResponse(out.model_dump(mode="json"))
