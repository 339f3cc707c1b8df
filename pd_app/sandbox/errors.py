"""Every error leaves the sandbox in the shape Pipedrive uses on that path; chosen here, once."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

ERROR_INFO = "Please check developers.pipedrive.com"


def api_error(status: int, message: str) -> tuple[Response, int]:
    """Pipedrive's generic error envelope (bad input, unknown goal, unknown path)."""
    body = {
        "success": False,
        "error": message,
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
    }
    return jsonify(body), status


def coded_error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    """The shorter envelope Pipedrive's gateway uses for 401/402/403/429/5xx, with `errorCode`."""
    return jsonify(
        {"success": False, "error": message, "errorCode": status, "error_info": ERROR_INFO, **extra}
    ), status


def oauth_error(status: int, error: str, message: str) -> tuple[Response, int]:
    # Pipedrive's OAuth server sends success as the string "false" (invalid_client is the exception).
    success: str | bool = False if error == "invalid_client" else "false"
    response = jsonify({"success": success, "error": error, "message": message})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="oauth"'
    return response, status


def handle_http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    message = exc.name if status >= 500 else (exc.description or exc.name)
    if request.path.startswith("/api/"):
        return api_error(status, exc.name)
    if request.path.startswith("/oauth/token") or request.path.startswith("/oauth/revoke"):
        return oauth_error(status, "invalid_request" if status < 500 else "server_error", exc.name)
    if request.path.startswith("/_sandbox/"):
        return jsonify({"error": exc.name, "message": message}), status
    return render_template("error.html", message=message, status=status), status
