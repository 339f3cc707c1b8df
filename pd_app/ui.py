"""The custom UI panel that Pipedrive frames in the sidebar of deals, people and organizations (/ui/panel).

Trust comes from Pipedrive's `token` JWT alone: the page verifies it server-side and takes the company and
user from its claims, never from the query. The page then talks to the /api/v1 proxy with SDK-issued JWTs as
bearer credentials, so it needs no cookie and no session (third-party cookies are blocked in many browsers).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
from flask import Blueprint, Flask, Response, current_app, render_template, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from . import errors, vendor
from .auth import verify_panel_jwt
from .config import Settings
from .db import get_session
from .models import Installation, InstallationStatus

log = logging.getLogger(__name__)

bp = Blueprint("ui", __name__, url_prefix="/ui")

PIPEDRIVE_FRAME_ANCESTOR = "https://*.pipedrive.com"
SDK_PACKAGE = "@pipedrive/app-extensions-sdk"
# The SDK's UMD build (global `AppExtensionsSDK`) and its source map, served from the app's own origin: the
# panel's CSP allows scripts from 'self' only, and a CDN would be one more party that can run code in it.
SDK_FILES = {"index.umd.js": "text/javascript", "index.umd.js.map": "application/json"}
THEMES = ("light", "dark")


@dataclass(frozen=True)
class PanelView:
    """What the panel's first screen is, and for whom (ids only from a verified token)."""

    screen: str  # ready | install | reauth | denied | error
    status: int = 200
    company_id: int | None = None
    user_id: int | None = None
    installation_id: int | None = None  # when ready: the row found, so a caller need not look it up again


def _query_ids_match(company_id: int, user_id: int) -> bool:
    """The query's own companyId/userId are untrusted copies: when present they must equal the token's."""
    for name, verified in (("companyId", company_id), ("userId", user_id)):
        given = request.args.get(name)
        if given is not None and given.strip() != str(verified):
            return False
    return True


def resolve_panel() -> PanelView:
    """Verify the request's JWT, then find that exact (company, user) installation."""
    token = request.args.get("token", "")
    try:
        company_id, user_id = verify_panel_jwt(token)
    except jwt.InvalidTokenError as exc:
        # The reason is for the log only: a person gets one plain message whatever was wrong.
        log.info("panel token refused", extra={"fields": {"reason": type(exc).__name__}})
        return PanelView("denied", 401)
    if not _query_ids_match(company_id, user_id):
        log.info("panel query ids differ from the token's", extra={"fields": {"company_id": company_id}})
        return PanelView("denied", 401)
    inst = get_session().scalar(
        select(Installation).where(Installation.company_id == company_id, Installation.user_id == user_id)
    )
    if inst is None or inst.status == InstallationStatus.UNINSTALLED:
        return PanelView("install", 200, company_id, user_id)
    if inst.status == InstallationStatus.REAUTH_REQUIRED:
        return PanelView("reauth", 200, company_id, user_id)
    return PanelView("ready", 200, company_id, user_id, inst.id)


def render_framed(template: str, status: int, **context: object) -> Response:
    """A page Pipedrive frames (the panel, the settings page): the theme Pipedrive asked for, the install link
    and the proxy's base as this request reaches it (a mount prefix included)."""
    settings: Settings = current_app.config["SETTINGS"]
    theme = request.args.get("theme", "light")
    html = render_template(
        template,
        theme=theme if theme in THEMES else "light",
        install_url=settings.public_url + "/oauth/install",
        api_base=url_for("api.find_goals").removesuffix("/goals/find"),
        **context,
    )
    return Response(html, status, mimetype="text/html")


def _render(view: PanelView) -> Response:
    return render_framed("panel.html", view.status, view=view)


@bp.get("/panel")
def show_panel() -> Response:
    return _render(resolve_panel())


@bp.errorhandler(Exception)
def panel_failed(exc: Exception) -> Response:
    """Inside Pipedrive's frame a failure must still be the panel (SDK initialized, readable), not a blank."""
    if isinstance(exc, HTTPException):
        return errors.handle_http_exception(exc)
    log.exception("panel failed on %s", request.path)
    return _render(PanelView("error", 500))


@bp.get("/vendor/app-extensions-sdk/<name>")
def sdk_file(name: str) -> Response:
    # Without it the panel never initializes and Pipedrive hides it after 10 s: the log says why.
    return vendor.serve(SDK_PACKAGE, "dist", SDK_FILES, name, "the panel")


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def frame_ancestors(settings: Settings) -> str:
    """Who may frame the panel: Pipedrive; outside production also the sandbox that plays Pipedrive."""
    sources = [PIPEDRIVE_FRAME_ANCESTOR]
    if not settings.production:
        if settings.sandbox:
            sources.append("'self'")  # the mounted sandbox's CRM page is on the app's own origin
        oauth = urlsplit(settings.oauth_url)
        if oauth.scheme == "http" and _loopback(oauth.hostname or ""):
            origin = f"http://{oauth.netloc}"
            if origin not in sources:
                sources.append(origin)
    return " ".join(sources)


def strict_csp(ancestors: str) -> str:
    """The policy of every page the app draws with its own scripts (panel, settings page, API docs):
    everything from the app's origin only, no 'unsafe-inline' anywhere (data reaches the scripts through
    data-* attributes and the API), and `ancestors` as who may frame it."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {ancestors}",
        )
    )


def panel_csp(settings: Settings) -> str:
    return strict_csp(frame_ancestors(settings))


def framed_headers(response: Response, personal: bool) -> Response:
    """The headers of a page Pipedrive frames. An after_request of its blueprint: it runs before the app-wide
    defaults (web.add_security_headers), which only fill in what is unset. `personal`: the answer reflects one
    user's installation, so no cache keeps it."""
    response.headers["Content-Security-Policy"] = panel_csp(current_app.config["SETTINGS"])
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.pop("X-Frame-Options", None)  # it would override frame-ancestors in old browsers
    if personal:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.after_request
def panel_headers(response: Response) -> Response:
    return framed_headers(response, personal=request.endpoint == "ui.show_panel")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
