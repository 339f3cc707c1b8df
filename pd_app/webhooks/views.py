"""/api/v1/app/webhooks: a partner registers, lists and removes its company's webhooks. Scope full (a
read-scope key may be a public browser key, and a webhook's URL and log are the company's own business);
the credential's company is the only company these see."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..auth import CredentialKind, Principal
from ..bodies import object_fields
from ..db import get_session
from ..models import KeyScope
from ..proxy.views import _caller, _json_body
from ..settings_page.admin import require_admin
from . import registry

bp = Blueprint("webhooks_api", __name__, url_prefix="/api/v1/app/webhooks")


def _manager() -> Principal:
    """A credential that may manage the company's webhooks: scope full, and from Pipedrive (a panel or the
    settings page) an admin only, as Pipedrive says now (settings_page/admin.py): any Pipedrive user of the
    company can open the panel, and webhooks send every goal's progress out of it."""
    principal, inst = _caller(KeyScope.FULL)
    if principal.kind is CredentialKind.JWT:
        require_admin(principal, inst)
    return principal


def _created_by(principal: Principal) -> str:
    if principal.key_id is not None:
        return f"key:{principal.key_id}"
    return f"jwt:{principal.company_id}:{principal.user_id}"


@bp.post("")
def add_webhook():
    principal = _manager()
    fields = object_fields(_json_body(), ("url", "events"), "a webhook", registry.InvalidWebhook)
    hook, secret = registry.add(
        get_session(),
        principal.company_id,
        fields.get("url"),
        fields.get("events"),
        created_by=_created_by(principal),
        production=current_app.config["SETTINGS"].production,
    )
    data = registry.describe(hook, [], 0, secret=secret)
    response = jsonify({"success": True, "data": data})
    response.headers["Cache-Control"] = "no-store"  # the signing secret is in it, this once
    return response, 201


@bp.get("")
def list_webhooks():
    principal = _manager()
    return jsonify({"success": True, "data": registry.listing(get_session(), principal.company_id)})


@bp.delete("/<int:webhook_id>")
def remove_webhook(webhook_id: int):
    principal = _manager()
    registry.remove(get_session(), webhook_id, principal.company_id)
    return jsonify({"success": True, "data": {"id": webhook_id}})
