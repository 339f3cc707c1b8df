"""The one error envelope. Every /api error leaves through `handle_error`; HTML routes get a readable page."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

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
    body = {
        "success": False,
        "error": err.message,
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
    return request.path.startswith("/api/") or request.path == "/api"


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


def handle_page_error(err: PageError):
    return _page(err.status, err.title, err.message, err.action_url, err.action_label)


def handle_http_exception(exc: HTTPException):
    status = exc.code or 500
    if _wants_json():
        message = exc.description or exc.name
        return envelope(ApiError(status, _HTTP_CODES.get(status, "error"), message, _info(status)))
    return _page(status, exc.name, exc.description or "")


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
    app.register_error_handler(PageError, handle_page_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
