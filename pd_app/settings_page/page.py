"""/ui/settings: the app's "custom UI for app settings", the page Pipedrive frames under Tools and apps >
Marketplace apps > Goals > Settings (deep link `https://{company_domain}.pipedrive.com/settings/marketplace/
app/{client_id}/app-settings`).

The same trust rules as the panel (ui.py, whose code this reuses): the `token` JWT verified server-side, the
company and user from its claims only, the SDK from the app's own origin, the panel's CSP and frame-ancestors,
no cookie. The first screen also says whether Pipedrive confirms the user as an admin (admin.py): only then
does the page load anything, through /api/v1/app with SDK-issued JWTs, as the panel does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from .. import errors
from ..auth import installation_ref
from ..ui import framed_headers, render_framed, resolve_panel
from ..webhooks.events import EVENT_TYPES
from .admin import AdminOnly, is_admin

log = logging.getLogger(__name__)

bp = Blueprint("settings_ui", __name__, url_prefix="/ui")

# How a failed admin check shows: the codes that have a screen of their own, else "unavailable".
SCREEN_OF_CODE = {"not_installed": "install", "reauth_required": "reauth", "unauthorized": "denied"}


@dataclass(frozen=True)
class SettingsView:
    screen: str  # admin | not_admin | install | reauth | denied | unavailable | error
    status: int = 200
    company_id: int | None = None
    user_id: int | None = None
    reason: str = ""  # why the admin check could not be made (unavailable)
    retry_after: int | None = None


def _check_admin(company_id: int, user_id: int, installation_id: int) -> SettingsView:
    ref = installation_ref(installation_id)
    try:
        admin = ref is not None and is_admin(ref)
    except AdminOnly:
        admin = False
    except tuple(errors.DOMAIN_ERRORS) as exc:
        err = errors.as_api_error(exc)
        screen = SCREEN_OF_CODE.get(err.code, "unavailable")
        return SettingsView(screen, 200, company_id, user_id, err.message, err.retry_after)
    return SettingsView("admin" if admin else "not_admin", 200, company_id, user_id)


def resolve_settings() -> SettingsView:
    """The panel's verification (JWT, query ids, installation), then Pipedrive's word on the admin flag."""
    panel = resolve_panel()
    if panel.screen != "ready":
        return SettingsView(panel.screen, panel.status, panel.company_id, panel.user_id)
    assert panel.company_id is not None and panel.user_id is not None and panel.installation_id is not None
    return _check_admin(panel.company_id, panel.user_id, panel.installation_id)


def _render(view: SettingsView) -> Response:
    return render_framed("settings.html", view.status, view=view, webhook_events=EVENT_TYPES)


@bp.get("/settings")
def show_settings() -> Response:
    return _render(resolve_settings())


@bp.errorhandler(Exception)
def settings_failed(exc: Exception) -> Response:
    """Inside Pipedrive's frame a failure must still be the page (SDK initialized, readable), not a blank."""
    if isinstance(exc, HTTPException):
        return errors.handle_http_exception(exc)
    log.exception("settings page failed on %s", request.path)
    return _render(SettingsView("error", 500))


@bp.after_request
def settings_headers(response: Response) -> Response:
    return framed_headers(response, personal=True)
