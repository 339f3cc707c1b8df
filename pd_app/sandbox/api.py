"""The API half of the sandbox: /api/v1/users/me and the five Goals operations, behind Pipedrive's gate
(knobs, bearer token, burst and daily limits, scopes) and with its rate-limit headers on every answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request

from .errors import api_error, coded_error
from .goals import GoalError
from .state import GoalNotFound, SandboxState, fingerprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

READ_GOALS = ("goals:read", "goals:full")
WRITE_GOALS = ("goals:full",)
FORCED_MESSAGES = {
    401: "unauthorized access",
    402: "Payment required: the company account is not active",
    403: "Scope and URL mismatch",
    429: "Request over limit",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable: scheduled maintenance",
    504: "Gateway timeout",
}
FORBIDDEN_HTML = (
    "<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center>"
    "<hr><center>cloudflare</center></body></html>"
)

View = TypeVar("View", bound=Callable[..., Any])


def operation(cost: int, scopes: tuple[str, ...]) -> Callable[[View], View]:
    """Mark a view with its token cost and the scopes that may call it (read by the gate)."""

    def mark(view: View) -> View:
        view.token_cost = cost  # type: ignore[attr-defined]
        view.scopes = scopes  # type: ignore[attr-defined]
        return view

    return mark


def _state() -> SandboxState:
    return current_app.extensions["pd_sandbox"]


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def goals_ok(data: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {
        "success": True,
        "statusCode": 20000,
        "statusText": "OK",
        "service": "statistics-goals-api",
    }
    if data is not None:
        body["data"] = data
    return jsonify(body)


def too_many(retry_after: int) -> tuple[Response, int]:
    response, status = coded_error(429, FORCED_MESSAGES[429])
    response.headers["Retry-After"] = str(retry_after)
    return response, status


def _forced_answer(forced: dict[str, Any]) -> Any:
    status = forced["status"]
    if status == 403 and forced.get("html"):
        # Pipedrive's edge sometimes answers with an HTML page: clients must not assume JSON.
        return Response(FORBIDDEN_HTML, 403, mimetype="text/html")
    if status == 404:
        return api_error(404, "Not found")
    response, _ = coded_error(status, FORCED_MESSAGES[status])
    if status in (429, 503) or "retry_after" in forced:
        response.headers["Retry-After"] = str(forced.get("retry_after", 2 if status == 429 else 30))
    return response, status


@bp.before_app_request
def gate() -> Any:
    """Runs for every /api/ path (unknown ones too): a non-None return answers instead of the view."""
    if not request.path.startswith("/api/"):
        return None
    state = _state()
    token = _bearer_token()
    g.pd_token_fp = fingerprint(token) if token else "-"
    knobs = state.knobs
    if knobs["api_delay_s"]:
        time.sleep(knobs["api_delay_s"])
    forced = state.take_forced_status()
    if forced:
        return _forced_answer(forced)
    access = state.authenticate(token) if token else None
    if access is None:
        return coded_error(401, FORCED_MESSAGES[401])
    g.pd_company, g.pd_user = access.company_id, access.user_id
    view = current_app.view_functions.get(request.endpoint or "")
    verdict = state.admit(g.pd_token_fp, access.company_id, getattr(view, "token_cost", 0))
    g.pd_rate_headers = verdict.headers
    if verdict.retry_after is not None:
        return too_many(verdict.retry_after)
    allowed = getattr(view, "scopes", None)
    if allowed is not None and not set(allowed) & set(access.scope.split(",")):
        return coded_error(403, FORCED_MESSAGES[403])
    return None


@bp.after_app_request
def add_rate_headers(response: Response) -> Response:
    if request.path.startswith("/api/"):
        headers = g.get("pd_rate_headers") or _state().rate_headers(
            g.get("pd_token_fp", "-"), g.get("pd_company")
        )
        response.headers.update(headers)
    return response


@bp.errorhandler(GoalError)
def reject_input(exc: GoalError) -> tuple[Response, int]:
    return api_error(400, str(exc))


@bp.errorhandler(GoalNotFound)
def reject_unknown_goal(exc: GoalNotFound) -> tuple[Response, int]:
    return api_error(404, "Goal not found")


def _json_body() -> Any:
    if not request.is_json:
        raise GoalError("Request body must be JSON (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if body is None:
        raise GoalError("Request body is not valid JSON")
    return body


@bp.get("/users/me")
@operation(cost=2, scopes=("base",))
def show_me() -> Response:
    return jsonify({"success": True, "data": _state().me(g.pd_user)})


@bp.get("/goals/find")
@operation(cost=20, scopes=READ_GOALS)
def find_goals() -> Response:
    return goals_ok({"goals": _state().find_goals(g.pd_company, g.pd_user, request.args)})


@bp.get("/goals/<goal_id>/results")
@operation(cost=20, scopes=READ_GOALS)
def show_results(goal_id: str) -> Response:
    return goals_ok(_state().goal_results(g.pd_company, goal_id, request.args))


@bp.post("/goals")
@operation(cost=10, scopes=WRITE_GOALS)
def add_goal() -> Response:
    return goals_ok({"goal": _state().add_goal(g.pd_company, g.pd_user, _json_body())})


@bp.put("/goals/<goal_id>")
@operation(cost=10, scopes=WRITE_GOALS)
def update_goal(goal_id: str) -> Response:
    return goals_ok({"goal": _state().update_goal(g.pd_company, goal_id, _json_body())})


@bp.delete("/goals/<goal_id>")
@operation(cost=6, scopes=WRITE_GOALS)
def delete_goal(goal_id: str) -> Response:
    _state().delete_goal(g.pd_company, goal_id)
    return goals_ok()
