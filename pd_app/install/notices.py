"""Pipedrive's notices on the same Callback URL: uninstall (DELETE) and app sharing (POST)."""

from __future__ import annotations

import hmac
from typing import Annotated, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from ..db import get_session
from ..errors import ApiError, invalid, request_json
from ..lifecycle import record_sharing, uninstall
from ..logs import audit
from . import bp

PipedriveId = Annotated[StrictInt, Field(gt=0, lt=2**63)]  # JSON numbers only: no `true`, `1.0`, "1"


class UninstallNotice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    client_id: str
    company_id: PipedriveId
    user_id: PipedriveId
    timestamp: str | int | None = None


class SharingNoticeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    company_id: PipedriveId
    user_id: PipedriveId
    isShared: StrictBool  # noqa: N815 (Pipedrive's field name)


NoticeT = TypeVar("NoticeT", bound=BaseModel)


def _client_credentials_match() -> bool:
    """HTTP Basic `client_id:client_secret`, compared in constant time (both parts, always)."""
    settings = current_app.config["SETTINGS"]
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    id_ok = hmac.compare_digest((auth.username or "").encode(), settings.client_id.encode())
    secret_ok = hmac.compare_digest((auth.password or "").encode(), settings.client_secret.encode())
    return id_ok & secret_ok


def _notice_body(model: type[NoticeT]) -> NoticeT:
    body = request_json()
    if not isinstance(body, dict):
        raise invalid(
            "The notice must be a JSON object.", "Send Pipedrive's JSON.", "body", "must be a JSON object"
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "code": "invalid"}
            for e in exc.errors(include_url=False)
        ]
        raise ApiError(
            400, "validation_failed", "The notice is not valid.", "Send Pipedrive's JSON.", details=details
        ) from None


def _unauthorized_notice() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "Bad client credentials.",
        "Pipedrive signs notices with HTTP Basic client_id:client_secret.",
    )


@bp.delete("/oauth/callback")
def uninstall_notice():
    if not _client_credentials_match():
        raise _unauthorized_notice()
    notice = _notice_body(UninstallNotice)
    if not hmac.compare_digest(notice.client_id.encode(), current_app.config["SETTINGS"].client_id.encode()):
        raise invalid(
            "The notice is for another app.", "Check client_id.", "client_id", "does not match this app"
        )
    uninstall(get_session(), notice.company_id, notice.user_id)
    return {"success": True}


@bp.post("/oauth/callback")
def sharing_notice():
    # Whether Pipedrive signs this notice is unconfirmed: credentials are checked when they are sent.
    authenticated = request.authorization is not None
    if authenticated and not _client_credentials_match():
        raise _unauthorized_notice()
    notice = _notice_body(SharingNoticeBody)
    if not authenticated:
        # Anyone could have sent it: keep it in the log only, so strangers cannot fill the database.
        audit(
            "app_sharing",
            company_id=notice.company_id,
            user_id=notice.user_id,
            is_shared=notice.isShared,
            authenticated=False,
        )
        return {"success": True}
    record_sharing(get_session(), notice.company_id, notice.user_id, notice.isShared)
    return {"success": True}
