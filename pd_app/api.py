"""The Pipedrive-compatible proxy under /api/v1, the caller's installation, and the OpenAPI document."""

from __future__ import annotations

import functools

from flask import Blueprint, Flask, current_app, jsonify, render_template, request

from . import goals
from .auth import authenticate, require_scope
from .db import get_session
from .errors import ApiError, invalid, request_json
from .proxy import forward, installation_for
from .tokens import expires_in_s

bp = Blueprint("api", __name__, url_prefix="/api")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _validated(fn, *args):  # noqa: ANN001, ANN202
    try:
        return fn(*args)
    except goals.ValidationFailed as exc:
        problems = len(exc.details)
        raise ApiError(
            400,
            "validation_failed",
            f"The request has {problems} problem{'s' if problems != 1 else ''}.",
            "Fix each entry of `details` and send it again.",
            details=exc.details,
        ) from None


def _json_body() -> object:
    """The request's JSON body; the media type must say JSON, and the body must parse."""
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", "The body must be JSON.", "Send `Content-Type: application/json`."
        )
    body = request_json()
    if body is None and request.get_data(cache=True).strip() != b"null":
        raise invalid(
            "The body is not valid JSON.",
            "Send a JSON object.",
            "body",
            "The body is not valid JSON.",
            "invalid_json",
        )
    return body


def _caller(scope: str):  # noqa: ANN202
    session = get_session()
    principal = authenticate(session)
    require_scope(principal, scope)
    return session, principal


@bp.get("/v1/goals/find")
def find_goals():
    session, principal = _caller("read")
    params = _validated(goals.validate_find, request.args)
    body, status = forward(session, principal, "find", "GET", "/api/v1/goals/find", params=params)
    return jsonify(body), status


@bp.get("/v1/goals/<goal_id>/results")
def goal_results(goal_id: str):
    session, principal = _caller("read")
    goal_id = _validated(goals.validate_goal_id, goal_id)
    params = _validated(goals.validate_results, goal_id, request.args)
    body, status = forward(
        session, principal, "results", "GET", f"/api/v1/goals/{goal_id}/results", params=params
    )
    return jsonify(body), status


@bp.post("/v1/goals")
def add_goal():
    session, principal = _caller("full")
    payload = _validated(goals.validate_add, _json_body())
    body, status = forward(session, principal, "add", "POST", "/api/v1/goals", json=payload)
    return jsonify(body), status


@bp.put("/v1/goals/<goal_id>")
def update_goal(goal_id: str):
    session, principal = _caller("full")
    goal_id = _validated(goals.validate_goal_id, goal_id)
    payload = _validated(goals.validate_update, goal_id, _json_body())
    body, status = forward(session, principal, "update", "PUT", f"/api/v1/goals/{goal_id}", json=payload)
    return jsonify(body), status


@bp.delete("/v1/goals/<goal_id>")
def delete_goal(goal_id: str):
    session, principal = _caller("full")
    goal_id = _validated(goals.validate_goal_id, goal_id)
    body, status = forward(session, principal, "delete", "DELETE", f"/api/v1/goals/{goal_id}")
    return jsonify(body), status


@bp.get("/v1/app/installation")
def show_installation():
    session, principal = _caller("read")
    inst = installation_for(session, principal)
    return jsonify(
        {
            "success": True,
            "data": {
                "company_id": inst.company_id,
                "company_name": inst.company_name,
                "company_domain": inst.company_domain,
                "user_id": inst.user_id,
                "user_name": inst.user_name,
                "is_admin": inst.is_admin,
                "status": inst.status,
                "scopes": inst.scope_list,
                "api_domain": inst.api_domain,
                "access_token_expires_at": _iso(inst.access_token_expires_at),
                "access_token_expires_in": expires_in_s(inst),
                "installed_at": _iso(inst.installed_at),
                "last_refreshed_at": _iso(inst.last_refreshed_at),
                "rate_limit": inst.rate_limit,
                "credential": {
                    "kind": principal.kind,
                    "scope": principal.scope,
                    "user_bound": principal.user_id is not None,
                },
            },
        }
    )


def _iso(value) -> str | None:  # noqa: ANN001
    if value is None:
        return None
    return value.isoformat()


@functools.lru_cache(maxsize=4)
def _openapi(public_url: str) -> dict:
    return goals.openapi_document(public_url)


@bp.get("/openapi.json")
def openapi():
    return jsonify(_openapi(current_app.config["SETTINGS"].public_url))


@bp.get("/docs")
def docs():
    return render_template("api_docs.html")
