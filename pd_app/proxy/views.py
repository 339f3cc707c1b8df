"""The Pipedrive-compatible proxy under /api/v1, the caller's installation, and the OpenAPI document."""

from __future__ import annotations

import functools
import hashlib
import time

from flask import Blueprint, Flask, Response, current_app, g, jsonify, render_template, request

from .. import goals
from ..auth import InstallationRef, Principal, authenticate, require_scope
from ..db import get_session
from ..errors import ApiError, invalid, request_json
from ..models import Installation, KeyScope
from ..reference.ops import BY_OP as REFERENCE_BY_OP
from ..tokens.store import NotInstalled, ensure_installed, expires_in_s
from .budget import ledger
from .cache import GoalsCache
from .forward import forward
from .idempotency import idempotent
from .keylimit import key_limits
from .usage import usage

bp = Blueprint("api", __name__, url_prefix="/api")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _validated(fn, *args):
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


def _caller(scope: KeyScope) -> tuple[Principal, InstallationRef | None]:
    principal, inst = authenticate()
    key_limits().hit(principal)  # KEY_RATE_LIMIT, before anything else is done for the request
    require_scope(principal, scope)
    return principal, inst


def _proxied(result: tuple[bytes, int]) -> Response:
    body, status = result
    return Response(body, status, content_type="application/json")


def _read(
    op: str,
    inst: InstallationRef | None,
    path: str,
    params: list[tuple[str, str]],
    cache: GoalsCache | None = None,
) -> Response:
    """A proxied read, with its caching headers: X-Cache, a strong ETag of the body, 304 for a matching
    If-None-Match, and `Cache-Control: private, no-cache` (a shared cache must not keep it; the caller
    revalidates with the ETag). `Cache-Control: no-cache` on the request skips the app's cache (`cache`:
    the goals cache unless another is given)."""
    use_cache = "no-cache" not in request.headers.get("Cache-Control", "").lower()
    body, status = forward(inst, op, "GET", path, params=params, use_cache=use_cache, cache=cache)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "X-Cache": "HIT" if g.get("pd_cache") == "hit" else "MISS",
    }
    if status == 200 and _etag_matches(request.headers.get("If-None-Match"), etag):
        return Response(status=304, headers=headers)
    return Response(body, status, headers=headers, content_type="application/json")


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): `*`, or any listed tag with or without `W/`."""
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


@bp.after_request
def _server_timing(response: Response) -> Response:
    """Where a proxied request's time went: `app` (all of it), `upstream` (Pipedrive, when called) and how
    the cache answered. On every answer of the Goals and reference endpoints, errors included."""
    if request.endpoint not in _PROXIED:
        return response
    started = g.get("metrics_started")
    parts = []
    if started is not None:
        parts.append(f"app;dur={(time.perf_counter() - started) * 1000:.1f}")
    upstream_s = g.get("pd_upstream_s")
    if upstream_s is not None:
        parts.append(f"upstream;dur={upstream_s * 1000:.1f}")
    cache = g.get("pd_cache")
    if cache is not None:
        parts.append(f'cache;desc="{cache}"')
    if parts:
        response.headers["Server-Timing"] = ", ".join(parts)
    return response


def _write(
    principal: Principal,
    inst: InstallationRef | None,
    op: str,
    method: str,
    path: str,
    payload: object = None,
) -> Response:
    """A write forwarded under the request's Idempotency-Key, if any (idempotency.py)."""
    return idempotent(principal, lambda: _proxied(forward(inst, op, method, path, json_body=payload)))


@bp.get("/v1/goals/find")
def find_goals():
    _principal, inst = _caller(KeyScope.READ)
    params = _validated(goals.validate_find, request.args)
    return _read("find", inst, "/api/v1/goals/find", params)


@bp.get("/v1/goals/<goal_id>/results")
def goal_results(goal_id: str):
    _principal, inst = _caller(KeyScope.READ)
    goal_id = _validated(goals.validate_goal_id, goal_id)
    params = _validated(goals.validate_results, goal_id, request.args)
    return _read("results", inst, f"/api/v1/goals/{goal_id}/results", params)


@bp.post("/v1/goals")
def add_goal():
    principal, inst = _caller(KeyScope.FULL)
    payload = _validated(goals.validate_add, _json_body())
    return _write(principal, inst, "add", "POST", "/api/v1/goals", payload)


@bp.put("/v1/goals/<goal_id>")
def update_goal(goal_id: str):
    principal, inst = _caller(KeyScope.FULL)
    goal_id = _validated(goals.validate_goal_id, goal_id)
    payload = _validated(goals.validate_update, goal_id, _json_body())
    return _write(principal, inst, "update", "PUT", f"/api/v1/goals/{goal_id}", payload)


@bp.delete("/v1/goals/<goal_id>")
def delete_goal(goal_id: str):
    principal, inst = _caller(KeyScope.FULL)
    goal_id = _validated(goals.validate_goal_id, goal_id)
    return _write(principal, inst, "delete", "DELETE", f"/api/v1/goals/{goal_id}")


@bp.get("/v1/app/installation")
def show_installation():
    principal, ref = _caller(KeyScope.READ)
    ref = ensure_installed(ref)  # one that needs reauthorization is shown, with that status
    usage().flush()  # this process's pending rate-limit figures, so the answer is current
    inst = get_session().get(Installation, ref.id)
    if inst is None:
        raise NotInstalled()
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
                "locale": inst.locale,
                "default_currency": inst.default_currency,
                "timezone_name": inst.timezone_name,
                "status": inst.status,
                "scopes": inst.scope_list,
                "api_domain": inst.api_domain,
                "access_token_expires_at": _iso(inst.access_token_expires_at),
                "access_token_expires_in": expires_in_s(inst),
                "installed_at": _iso(inst.installed_at),
                "last_refreshed_at": _iso(inst.last_refreshed_at),
                "rate_limit": inst.rate_limit,
                "throttled_until": _iso(inst.throttled_until),
                "budget": ledger().spent_today(inst.company_id),
                "credential": {
                    "kind": principal.kind,
                    "scope": principal.scope,
                    "user_bound": principal.user_id is not None,
                    "installation_id": inst.id,
                },
            },
        }
    )


_PROXIED = frozenset(
    f"api.{name}"
    for name in (
        "find_goals",
        "goal_results",
        "add_goal",
        "update_goal",
        "delete_goal",
        *(f"reference_{op}" for op in REFERENCE_BY_OP),
    )
)


def _iso(value) -> str | None:
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
