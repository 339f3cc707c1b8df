"""The reference reads of the sandbox's API, behind the same gate as the rest (api.py: token, limits, each
operation's token cost and scopes): v2 pipelines and stages, v1 activity types, users and currencies.
A company sees its own pipelines, stages, activity types and users only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from . import refdata, seed
from .api import operation
from .errors import api_error
from .state import SandboxState

bp = Blueprint("reference", __name__)

# Scopes as openapi-v1.yaml's `security` says (v2: as the `pipedrive` npm package's v2 client names them).
DEALS_READ = ("deals:read", "deals:full", "admin")
ACTIVITIES_READ = ("activities:read", "activities:full", "admin")
# openapi-v1.yaml lists `users:read` only; `users:full` is accepted too (it can only be wider).
USERS_READ = ("users:read", "users:full")


def _state() -> SandboxState:
    return current_app.extensions["pd_sandbox"]


def _list(data: list[dict[str, Any]], next_cursor: str | None = None, v2: bool = False) -> Response:
    body: dict[str, Any] = {"success": True, "data": data}
    if v2:
        body["additional_data"] = {"next_cursor": next_cursor}
    return jsonify(body)


@bp.errorhandler(refdata.QueryError)
def reject_query(exc: refdata.QueryError) -> tuple[Response, int]:
    return api_error(400, str(exc))


# v2 costs: see pd_app/reference/costs.py (half of the deprecated v1 operations' 10).
@bp.get("/api/v2/pipelines")
@operation(cost=5, scopes=DEALS_READ)
def list_pipelines() -> Response:
    items = refdata.pipelines(g.pd_company)
    page, cursor = refdata.page(items, request.args, ("id", "update_time", "add_time"))
    return _list(page, cursor, v2=True)


@bp.get("/api/v2/stages")
@operation(cost=5, scopes=DEALS_READ)
def list_stages() -> Response:
    items = refdata.stages(g.pd_company, refdata.pipeline_filter(request.args))
    page, cursor = refdata.page(items, request.args, ("id", "update_time", "add_time", "order_nr"))
    return _list(page, cursor, v2=True)


@bp.get("/api/v1/activityTypes")
@operation(cost=20, scopes=ACTIVITIES_READ)
def list_activity_types() -> Response:
    return _list(refdata.activity_types(g.pd_company))


@bp.get("/api/v1/users")
@operation(cost=20, scopes=USERS_READ)
def list_users() -> Response:
    users = sorted((u for u in _state().users.values() if u.company_id == g.pd_company), key=lambda u: u.id)
    return _list([seed.base_user(u, g.pd_user) for u in users])


@bp.get("/api/v1/currencies")
@operation(cost=20, scopes=("base",))
def list_currencies() -> Response:
    return _list(refdata.currencies(request.args.get("term")))
