"""CRM pages that play Pipedrive's part for the app's custom UI: a deal page framing the panel, and the app's
settings page (Tools and apps > Marketplace apps > the app > Settings) framing its custom UI for app settings.

Each frames the app with the query Pipedrive sends (id, userId, companyId, token, theme; a panel also
resource, view and selectedIds) and a freshly signed HS256 JWT, and static/crm.js answers the app extensions
SDK's messages the way Pipedrive's page does (initialize, GET_SIGNED_TOKEN, RESIZE, SHOW_SNACKBAR,
SHOW_CONFIRMATION, theme changes).
Which sandbox user is "logged in" is picked on the page: this is a development tool, never authentication.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import jwt
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from .state import SandboxState

bp = Blueprint("crm", __name__, url_prefix="/crm")

JWT_TTL_S = 300  # Pipedrive's custom UI tokens live 5 minutes
THEMES = ("light", "dark")


@dataclass(frozen=True)
class Deal:
    id: int
    title: str
    value: int
    stage: str
    person: str
    organization: str


# A few deals to host the panel beside; the panel itself never reads them.
DEALS = {
    1: Deal(1, "Acme rollout: 50 seats", 24000, "Proposal made", "Jane Buyer", "Northwind Traders"),
    2: Deal(2, "Renewal 2026", 8500, "Negotiations started", "Omar Ortiz", "Contoso"),
    3: Deal(3, "Pilot in Berlin", 3200, "Qualified", "Lena Vogel", "Fabrikam GmbH"),
}
STAGES = ("Qualified", "Contact made", "Proposal made", "Negotiations started")


def _state() -> SandboxState:
    return current_app.extensions["pd_sandbox"]


def _secret() -> str:
    settings = _state().settings
    # As in Developer Hub: the extension's JWT secret defaults to the app's client secret.
    return settings.jwt_secret or settings.client_secret


def extension_id() -> str:
    """The custom UI extension's id (Pipedrive sends a UUID as `id`); stable per sandbox app."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "pd-sandbox-extension:" + _state().settings.client_id))


def sign_panel_token(company_id: int, user_id: int) -> str:
    now = int(_state().clock())
    claims = {"userId": user_id, "companyId": company_id, "iat": now, "exp": now + JWT_TTL_S}
    return jwt.encode(claims, _secret(), algorithm="HS256")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def frame_src(base: str, user_id: int, company_id: int, theme: str, **record: object) -> str:
    """An iframe URL: a Developer Hub URL plus Pipedrive's query parameters (a panel's name its record)."""
    # Mounted inside the app (same origin as the sandbox), keep the page and the frame on whatever origin the
    # browser used (localhost vs 127.0.0.1), so the app's frame-ancestors 'self' matches.
    if _origin(base) == _origin(_state().settings.base_url):
        base = urlsplit(base).path
    query = {
        "id": extension_id(),
        "userId": user_id,
        "companyId": company_id,
        "token": sign_panel_token(company_id, user_id),
        **record,
        "theme": theme,
    }
    return f"{base}?{urlencode(query)}"


def panel_src(user_id: int, company_id: int, deal_id: int, theme: str) -> str:
    """The panel's iframe URL: the Developer Hub "Iframe URL" and a deal page's record."""
    record = {"resource": "deal", "view": "details", "selectedIds": deal_id}
    return frame_src(_state().settings.panel_url, user_id, company_id, theme, **record)


def _user_id(raw: object) -> int:
    try:
        user_id = int(str(raw))
    except ValueError:
        abort(400, "user must be the id of a sandbox user")
    if user_id not in _state().users:
        abort(400, "user must be the id of a sandbox user")
    return user_id


@bp.get("")
@bp.get("/")
def start() -> Response:
    return redirect(url_for("crm.show_deal", deal_id=1))


def _page(template: str, src: str, user_id: int, theme: str, **context: object) -> Response:
    """A CRM page framing the app at `src`, for the picked sandbox user."""
    state = _state()
    user = state.users[user_id]
    html = render_template(
        template,
        deals=DEALS.values(),
        user=user,
        company=state.companies[user.company_id],
        users=[(u, state.companies[u.company_id]) for u in state.users.values()],
        theme=theme,
        extension_id=extension_id(),
        client_id=state.settings.client_id,
        here=url_for(request.endpoint or "crm.start", **(request.view_args or {})),
        **context,
    )
    response = Response(html, mimetype="text/html")
    frame_origin = _origin(src) if "://" in src else "'self'"
    # The page runs only its own files; it may frame just the app, and nobody may frame it.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"frame-src {frame_origin}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"  # it carries a signed token
    return response


def _who() -> tuple[int, str]:
    user_id = _user_id(request.args.get("user", "2001"))
    theme = request.args.get("theme", "light")
    return user_id, theme if theme in THEMES else "light"


@bp.get("/deal/<int:deal_id>")
def show_deal(deal_id: int) -> Response:
    deal = DEALS.get(deal_id) or abort(404)
    user_id, theme = _who()
    src = panel_src(user_id, _state().users[user_id].company_id, deal.id, theme)
    return _page("crm.html", src, user_id, theme, deal=deal, stages=STAGES, panel_src=src)


@bp.get("/settings/marketplace/app/<client_id>/app-settings")
def show_app_settings(client_id: str) -> Response:
    """Pipedrive's deep link to an app's settings page, for the sandbox's one app."""
    state = _state()
    if client_id != state.settings.client_id:
        abort(404, "no such app in this sandbox")
    user_id, theme = _who()
    src = frame_src(state.settings.settings_url, user_id, state.users[user_id].company_id, theme)
    return _page(
        "crm_settings.html",
        src,
        user_id,
        theme,
        deal=None,
        settings_src=src,
        app_name=state.settings.app_name,
    )


@bp.post("/token")
def issue_token() -> Response:
    """GET_SIGNED_TOKEN's answer: a fresh JWT for the page's logged-in user (crm.js asks for it)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser's stack
        body = None
    if not isinstance(body, dict):
        abort(400, "the body must be a JSON object with user_id")
    user = _state().users[_user_id(body.get("user_id"))]
    response = jsonify({"token": sign_panel_token(user.company_id, user.id)})
    response.headers["Cache-Control"] = "no-store"
    return response
