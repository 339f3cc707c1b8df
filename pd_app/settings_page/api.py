"""The settings page's own endpoints under /api/v1/app: the company's partner keys (list, create, revoke) and
what else the page shows (installations, budget, limits). Only a Pipedrive admin's JWT is accepted, checked
live (admin.py); a partner key, even of scope full, gets 403: keys do not mint keys."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .. import keys
from ..auth import CannotBind, Principal, authenticate
from ..bodies import object_fields
from ..db import get_session
from ..errors import ApiError
from ..proxy.keylimit import key_limits
from ..proxy.usage import usage
from ..proxy.views import _json_body
from .admin import require_admin
from .overview import overview

bp = Blueprint("settings_api", __name__, url_prefix="/api/v1/app")

KEY_FIELDS = {"name", "scope", "origins"}


def _admin() -> Principal:
    principal, ref = authenticate()
    key_limits().hit(principal)  # KEY_RATE_LIMIT first, as for every credential
    require_admin(principal, ref)
    return principal


def _by(principal: Principal) -> str:
    return f"jwt:{principal.company_id}:{principal.user_id}"


def _private(response: Response) -> Response:
    """A key (once), or the company's settings: no cache anywhere may keep them."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/settings")
def show_settings():
    principal = _admin()
    data = overview(get_session(), current_app.config["SETTINGS"], principal.company_id)
    return _private(jsonify({"success": True, "data": data}))


@bp.get("/keys")
def list_keys():
    principal = _admin()
    usage().flush()  # this process's pending last-use times, so `last_used_at` is current
    return _private(jsonify({"success": True, "data": keys.listing(get_session(), principal.company_id)}))


@bp.post("/keys")
def create_key():
    principal = _admin()
    fields = object_fields(_json_body(), KEY_FIELDS, "a key", keys.InvalidKey)
    wanted = keys.validate(fields.get("name"), fields.get("scope"), fields.get("origins"))
    try:
        row, key, served_by = keys.create(get_session(), principal.company_id, wanted, by=_by(principal))
    except CannotBind as exc:  # the caller is installed, so only a race with an uninstall gets here
        raise ApiError(409, "not_installed", exc.message, "Install the app again, then retry.") from None
    data = {**keys.describe(row, served_by), "key": key}
    return _private(jsonify({"success": True, "data": data})), 201


@bp.delete("/keys/<int:key_id>")
def revoke_key(key_id: int):
    principal = _admin()
    row = keys.revoke(get_session(), key_id, by=_by(principal), company_id=principal.company_id)
    return _private(jsonify({"success": True, "data": keys.describe(row, None)}))
