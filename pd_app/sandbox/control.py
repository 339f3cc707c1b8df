"""The sandbox's control surface (/_sandbox/*) and the call recorder that feeds it.

The same operations exist as methods on SandboxState for in-process tests; these endpoints are for a
sandbox running in another process.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .state import SandboxState, fingerprint

bp = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")

TOKEN_KINDS = {"authorization_code": "code", "refresh_token": "refresh"}


def _state() -> SandboxState:
    return current_app.extensions["pd_sandbox"]


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def record_call(response: Response) -> Response:
    """After every request except the control surface's own: what was asked, with what, and the answer."""
    if request.path.startswith("/_sandbox"):
        return response
    grant_type = None
    if request.path.startswith("/oauth/token") and request.mimetype == "application/x-www-form-urlencoded":
        grant_type = request.form.get("grant_type")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    state = _state()
    state.record(
        {
            "method": request.method,
            "path": request.path,
            "query": request.args.to_dict(flat=False),
            "grant_type": grant_type,
            "token_kind": TOKEN_KINDS.get(grant_type or ""),
            "authorization_present": "Authorization" in request.headers,
            "access_token_fp": fingerprint(token.strip())
            if scheme.lower() == "bearer" and token.strip()
            else None,
            "status": response.status_code,
            "at": state.clock(),
        }
    )
    return response


@bp.get("/calls")
def list_calls() -> Response:
    return jsonify(_state().calls)


@bp.delete("/calls")
def clear_calls() -> Response:
    _state().clear_calls()
    return jsonify({"cleared": True})


@bp.post("/reset")
def reset() -> Response:
    _state().reset()
    return jsonify({"reset": True})


@bp.get("/knobs")
def show_knobs() -> Response:
    return jsonify(_state().knobs)


@bp.post("/knobs")
def set_knobs() -> Response | tuple[Response, int]:
    try:
        return jsonify(_state().set_knobs(**_json_object()))
    except ValueError as exc:
        return jsonify({"error": "bad_knob", "message": str(exc)}), 400


@bp.post("/tokens/expire")
def expire_tokens() -> Response | tuple[Response, int]:
    body = _json_object()
    company_id, user_id = body.get("company_id"), body.get("user_id")
    if not isinstance(company_id, int) or not isinstance(user_id, int):
        return jsonify(
            {"error": "bad_request", "message": "company_id and user_id (integers) are required"}
        ), 400
    return jsonify({"expired": _state().expire_access_tokens(company_id, user_id)})


@bp.post("/install")
def install() -> Response | tuple[Response, int]:
    """Skip the browser: mint an installation's tokens for a seeded user (tests of other processes)."""
    body = _json_object()
    try:
        return jsonify(_state().install(int(body["company_id"]), int(body["user_id"])))
    except (KeyError, TypeError, ValueError) as exc:
        return jsonify(
            {"error": "bad_request", "message": f"company_id and user_id of a seeded user: {exc}"}
        ), 400


@bp.get("/state")
def show_state() -> Response:
    return jsonify(_state().summary())
