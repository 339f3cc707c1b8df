"""The one error envelope. Every /api error leaves through `handle_error`; HTML routes get a readable page."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, current_app, jsonify, make_response, render_template, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .auth import NotAuthenticated, ScopeTooNarrow
from .bodies import InvalidFields
from .gunicorn_errors import CODES as GUNICORN_CODES
from .keys import KeyNotFound
from .pipedrive.api import (
    AccountInactive,
    DomainNotAllowed,
    GoalNotFound,
    OutcomeUnknown,
    PipedriveCircuitOpen,
    PipedriveError,
    PipedriveForbidden,
    PipedriveRejected,
    PipedriveThrottled,
    PipedriveUnauthorized,
    PipedriveUnavailable,
    UpstreamFailed,
)
from .proxy.budget import BudgetExhausted
from .proxy.idempotency import IdempotencyKeyInProgress, IdempotencyKeyReused, InvalidIdempotencyKey
from .proxy.keylimit import KeyRateLimited
from .proxy.throttle import InstallationThrottled
from .settings_page.admin import AdminOnly
from .tokens.cipher import TokenDecryptError
from .tokens.refresh import TokenServiceUnavailable
from .tokens.store import NotInstalled, ReauthRequired
from .webhooks.registry import WebhookNotFound

log = logging.getLogger(__name__)

# Codes of HTTP errors Flask raises on its own (routing, body size, media type).
_HTTP_CODES = {
    400: "validation_failed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    """An error for the caller, in the contract's envelope (docs/interface.md §3)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        error_info: str = "",
        *,
        details: list[dict] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_info = error_info
        self.details = details or []
        self.retry_after = retry_after


class PageError(Exception):
    """An error for a person in a browser (install flow): a page with what happened and what to do."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        action_url: str | None = None,
        action_label: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.action_url = action_url
        self.action_label = action_label


@dataclass(frozen=True)
class Envelope:
    """How callers see one domain exception: status, code, message and what to do (`{install_url}` is
    filled in). `message=None` takes the exception's own message."""

    status: int
    code: str
    message: str | None
    error_info: str
    retry_after: int | None = None


# The one table from domain exception to the contract's envelope. Domain code (tokens, the Pipedrive
# client, the proxy) raises these; nothing outside this module builds an HTTP error for them.
_REAUTH = Envelope(
    401,
    "reauth_required",
    "Pipedrive no longer accepts this installation's authorization.",
    "The user must install the app again: {install_url}",
)
DATABASE_RETRY_AFTER_S = 5
_DATABASE_DOWN = Envelope(
    503,
    "upstream_unavailable",
    "The app's database is not answering right now.",
    "Retry later; nothing was sent to Pipedrive.",
    retry_after=DATABASE_RETRY_AFTER_S,
)
DOMAIN_ERRORS: dict[type[Exception], Envelope] = {
    NotAuthenticated: Envelope(
        401,
        "unauthorized",
        None,
        "Send one credential: the header `x-api-token: <partner key>`, or "
        "`Authorization: Bearer <partner key or Pipedrive custom UI JWT>`.",
    ),
    ScopeTooNarrow: Envelope(
        403,
        "forbidden",
        "This partner key may only read goals.",
        "Ask the app's operator for a key with scope `full`.",
    ),
    NotInstalled: Envelope(
        409,
        "not_installed",
        "The app is not installed for this Pipedrive user or company.",
        "A Pipedrive user of the company must install the app: {install_url} "
        "(a partner key stays with the installation it is bound to; the app's operator can move it).",
    ),
    ReauthRequired: _REAUTH,
    PipedriveUnauthorized: _REAUTH,  # a 401 even after a refresh
    TokenServiceUnavailable: Envelope(
        503,
        "upstream_unavailable",
        "Pipedrive's sign-in service is not answering right now.",
        "Retry later; the installation is kept.",
        retry_after=30,
    ),
    TokenDecryptError: Envelope(
        500,
        "internal_error",
        "This installation's credentials cannot be read.",
        "The operator must check TOKEN_ENCRYPTION_KEYS.",
    ),
    DomainNotAllowed: Envelope(
        502,
        "upstream_error",
        "This installation's Pipedrive address is not allowed.",
        "The operator must check PIPEDRIVE_API_DOMAINS.",
    ),
    PipedriveRejected: Envelope(
        400, "validation_failed", None, "Pipedrive refused the request; see details."
    ),
    AccountInactive: Envelope(
        402,
        "forbidden",
        "The company's Pipedrive account is not active.",
        "The company must settle its Pipedrive subscription.",
    ),
    PipedriveForbidden: Envelope(
        403,
        "forbidden",
        "Pipedrive refused access.",
        "The installation may lack the goals scope: reinstall the app to grant it.",
    ),
    GoalNotFound: Envelope(
        404, "not_found", "No such goal in this company.", "Find goal ids with /api/v1/goals/find."
    ),
    PipedriveThrottled: Envelope(
        429,
        "rate_limited",
        "Pipedrive's rate limit for this company was reached.",
        "Retry after the number of seconds in Retry-After.",
        retry_after=2,
    ),
    InstallationThrottled: Envelope(
        429,
        "rate_limited",
        "Pipedrive asked this app to slow down for this installation.",
        "Retry after the number of seconds in Retry-After; nothing was sent to Pipedrive.",
        retry_after=2,
    ),
    KeyRateLimited: Envelope(
        429,
        "rate_limited",
        "This credential's own request limit was reached.",
        "Retry after the number of seconds in Retry-After; nothing was sent to Pipedrive.",
        retry_after=1,
    ),
    BudgetExhausted: Envelope(
        429,
        "budget_exhausted",
        "The company has spent today's Pipedrive budget for this app (COMPANY_DAILY_TOKEN_CAP).",
        "It resets at midnight UTC, in the number of seconds in Retry-After; nothing was sent to Pipedrive.",
    ),
    PipedriveUnavailable: Envelope(
        503, "upstream_unavailable", "Pipedrive is unavailable (maintenance).", "Retry later.", retry_after=5
    ),
    PipedriveCircuitOpen: Envelope(
        503,
        "upstream_unavailable",
        None,
        "Retry after the number of seconds in Retry-After; nothing was sent to Pipedrive.",
        retry_after=10,
    ),
    OutcomeUnknown: Envelope(
        504,
        "outcome_unknown",
        "Pipedrive did not answer in time; the change may or may not have been made.",
        "Check with GET /api/v1/goals/find before retrying.",
    ),
    PipedriveError: Envelope(502, "upstream_error", None, "Retry later."),
    InvalidIdempotencyKey: Envelope(
        400,
        "validation_failed",
        None,
        "Send 1 to 255 printable ASCII characters in `Idempotency-Key` (a UUID is a good choice), or leave "
        "the header out.",
    ),
    IdempotencyKeyReused: Envelope(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was used for a different request (method, path or body) in the last 24 hours.",
        "Send a new key with a new request; repeat a key only to repeat the same request.",
    ),
    IdempotencyKeyInProgress: Envelope(
        409,
        "idempotency_key_in_progress",
        "The first request with this Idempotency-Key is still running.",
        "Send it again after the number of seconds in Retry-After to get its answer.",
        retry_after=1,
    ),
    InvalidFields: Envelope(400, "validation_failed", None, "Fix each entry of `details` and send it again."),
    WebhookNotFound: Envelope(
        404, "not_found", "No such webhook in this company.", "List them with GET /api/v1/app/webhooks."
    ),
    KeyNotFound: Envelope(
        404, "not_found", "No such partner key in this company.", "List them with GET /api/v1/app/keys."
    ),
    AdminOnly: Envelope(
        403,
        "forbidden",
        None,
        "Open the app's settings page inside Pipedrive as an admin of the company "
        "(Tools and apps > Marketplace apps).",
    ),
    # The app's own database: down, restarting, or every pooled connection busy.
    OperationalError: _DATABASE_DOWN,
    InterfaceError: _DATABASE_DOWN,
    PoolTimeout: Envelope(
        503,
        "upstream_unavailable",
        "The app is too busy to answer right now.",
        "Retry later; nothing was sent to Pipedrive.",
        retry_after=2,
    ),
}


def as_api_error(exc: Exception) -> ApiError:
    """The envelope of a domain exception, from `DOMAIN_ERRORS` (the most specific class listed)."""
    spec = next(DOMAIN_ERRORS[cls] for cls in type(exc).__mro__ if cls in DOMAIN_ERRORS)
    own_message = (
        UpstreamFailed
        | NotAuthenticated
        | NotInstalled
        | ReauthRequired
        | KeyRateLimited
        | InstallationThrottled
        | AdminOnly
    )
    message = getattr(exc, "message", None) if isinstance(exc, own_message) else None
    message = message or spec.message or str(exc)
    install_url = current_app.config["SETTINGS"].public_url + "/oauth/install"
    details = None
    if isinstance(exc, PipedriveRejected):
        details = [{"field": "body", "message": message, "code": "upstream_rejected"}]
    elif isinstance(exc, InvalidIdempotencyKey):
        details = [exc.detail]
    elif isinstance(exc, InvalidFields):
        details = exc.details
        message = f"The request has {len(details)} problem{'s' if len(details) != 1 else ''}."
    return ApiError(
        getattr(exc, "status", None) or spec.status,
        spec.code,
        message,
        spec.error_info.format(install_url=install_url),
        details=details,
        retry_after=getattr(exc, "retry_after", None) or spec.retry_after,
    )


def domain_codes() -> list[str]:
    """Every code the domain table can answer with (feeds the OpenAPI document's error list)."""
    return sorted({spec.code for spec in DOMAIN_ERRORS.values()})


# Errors about the request's content, raised as ApiError by the views and the notices (and by
# `handle_unexpected`).
REQUEST_ERRORS = (
    (400, "validation_failed"),
    (401, "unauthorized"),
    (415, "unsupported_media_type"),
    (500, "internal_error"),
)


def error_codes_by_status() -> dict[int, list[str]]:
    """Every (status, code) the API can answer with, from the tables above: the OpenAPI document's error
    responses are built from this, so a new domain exception shows up there once it is in DOMAIN_ERRORS."""
    pairs = set(REQUEST_ERRORS) | {(status, code) for status, code in _HTTP_CODES.items()}
    pairs |= {(spec.status, spec.code) for spec in DOMAIN_ERRORS.values()}
    pairs.add((502, "outcome_unknown"))  # OutcomeUnknown's status for a write that got a 5xx
    # What gunicorn itself answers before the app runs (an over-long URL, oversized headers), in the envelope.
    pairs |= {(status, code) for status, code in GUNICORN_CODES.items() if status in (414, 431)}
    by_status: dict[int, list[str]] = {}
    for status, code in sorted(pairs):
        by_status.setdefault(status, []).append(code)
    return by_status


def invalid(message: str, error_info: str, field: str, detail: str, code: str = "invalid") -> ApiError:
    """A 400 `validation_failed` with one problem."""
    return ApiError(
        400,
        "validation_failed",
        message,
        error_info,
        details=[{"field": field, "message": detail, "code": code}],
    )


def request_json() -> object | None:
    """The request's parsed JSON body; None when it is absent, not JSON, or nested too deep to parse."""
    try:
        return request.get_json(silent=True) if request.is_json else None
    except RecursionError:
        return None


def envelope(err: ApiError) -> Response:
    # `errorCode` repeats the status, as Pipedrive's own errors (401, 403, 429...) carry it: its official
    # SDKs reject with the response body alone, so the body is where their callers read the status from.
    body = {
        "success": False,
        "error": err.message,
        "errorCode": err.status,
        "error_info": err.error_info,
        "code": err.code,
        "details": err.details,
    }
    resp = jsonify(body)
    resp.status_code = err.status
    if err.retry_after is not None:
        resp.headers["Retry-After"] = str(max(1, int(err.retry_after)))
    return resp


def _wants_json() -> bool:
    """The API and Pipedrive's notices (DELETE/POST on the Callback URL) speak JSON; people get pages."""
    path = request.path
    if path.startswith("/api/") or path == "/api":
        return True
    return path == "/oauth/callback" and request.method not in ("GET", "HEAD")


def _page(
    status: int, title: str, message: str, action_url: str | None = None, action_label: str | None = None
):
    return (
        render_template(
            "error.html", title=title, message=message, action_url=action_url, action_label=action_label
        ),
        status,
    )


def handle_api_error(err: ApiError):
    return envelope(err)


def handle_domain_error(exc: Exception) -> Response:
    if isinstance(exc, TokenDecryptError):
        log.error("stored token does not decrypt")
    elif isinstance(exc, DomainNotAllowed):
        log.error("stored api_domain is outside the allow-list")
    elif isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        log.error("database unavailable: %s", type(exc).__name__)
    err = as_api_error(exc)
    if not _wants_json():
        return _page(err.status, "Please try again in a moment", err.message)
    return envelope(err)


def handle_page_error(err: PageError):
    return _page(err.status, err.title, err.message, err.action_url, err.action_label)


def handle_http_exception(exc: HTTPException):
    status = exc.code or 500
    if _wants_json():
        message = exc.description or exc.name
        response = envelope(ApiError(status, _HTTP_CODES.get(status, "error"), message, _info(status)))
    else:
        response = make_response(_page(status, exc.name, exc.description or ""))
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        response.headers["Allow"] = ", ".join(valid_methods)  # RFC 9110: a 405 names what is allowed
    return response


def handle_unexpected(exc: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    message = "Something went wrong on our side. It has been logged."
    if _wants_json():
        return envelope(
            ApiError(500, "internal_error", message, "Try again; if it persists, contact the app's support.")
        )
    return _page(500, "Something went wrong", message)


def _info(status: int) -> str:
    return {
        404: "Check the path against /api/openapi.json.",
        405: "Check the method against /api/openapi.json.",
        413: "Send a smaller body.",
        415: "Send the body as application/json.",
    }.get(status, "")


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, handle_api_error)
    for exc_class in DOMAIN_ERRORS:
        app.register_error_handler(exc_class, handle_domain_error)
    app.register_error_handler(PageError, handle_page_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
