"""The install flow: /oauth/install, GET /oauth/callback (code exchange, identity, storing the grant) and the
page after it."""

from __future__ import annotations

import logging
import re
import secrets
from datetime import timedelta

from flask import current_app, redirect, render_template, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..config import SANDBOX_PREFIX
from ..db import get_session, transaction
from ..errors import PageError
from ..logs import audit
from ..models import Installation, InstallationStatus, OAuthState, utcnow
from ..pipedrive import client
from ..pipedrive.api import (
    DomainNotAllowed,
    TokenEndpointError,
    TokenEndpointUnavailable,
    TokenResponseMalformed,
    UpstreamUnreachable,
)
from ..proxy.budget import ledger
from ..tokens.store import check_token_response, save_grant
from . import bp
from .identity import identity_from_users_me

log = logging.getLogger(__name__)

STATE_SALT = "pd-app/oauth-state"
TICKET_SALT = "pd-app/installed-ticket"
TICKET_MAX_AGE_S = 600
PIPEDRIVE_WEB = "https://app.pipedrive.com"  # when the company's own domain is unknown
COMPANY_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)  # one DNS label


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SETTINGS"].secret_key, salt=salt)


def _restart(title: str, message: str, status: int = 400) -> PageError:
    return PageError(status, title, message, url_for("oauth.install"), "Start the installation again")


@bp.get("/oauth/install")
def install():
    state = _serializer(STATE_SALT).dumps({"n": secrets.token_urlsafe(24)})
    return redirect(client().authorize_url(state), code=302)


def _consume_state(state: str) -> None:
    """Verify the signed state and spend it; the database makes it single-use across workers and hosts."""
    max_age = current_app.config["SETTINGS"].state_max_age_s
    try:
        payload = _serializer(STATE_SALT).loads(state, max_age=max_age)
    except SignatureExpired:
        raise _restart("This installation link has expired", "It is valid for 10 minutes.") from None
    except BadSignature:
        raise _restart("This installation link is not valid", "It was not issued by this app.") from None
    nonce = payload.get("n") if isinstance(payload, dict) else None
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise _restart("This installation link is not valid", "It was not issued by this app.")
    # A state spent longer ago than a state lives has expired anyway: its row guards nothing any more.
    spent_before = utcnow() - timedelta(seconds=max_age)
    try:
        with transaction() as session:
            session.add(OAuthState(nonce=nonce))
            session.flush()
            session.execute(
                delete(OAuthState).where(OAuthState.used_at < spent_before),
                execution_options={"synchronize_session": False},
            )
    except IntegrityError:
        raise _restart("This installation link was already used", "Each link works once.") from None


def _incomplete_answer() -> PageError:
    return _restart("Pipedrive's answer was incomplete", "Nothing was stored. Please try again.", 502)


def _finish_install(code: str) -> Installation:
    try:
        token = client().exchange_code(code)
    except TokenResponseMalformed:
        audit("install_failed", reason="malformed_token_response")
        raise _incomplete_answer() from None
    except TokenEndpointError as exc:
        audit("install_failed", reason=exc.error)
        raise _restart(
            "Pipedrive did not accept the authorization",
            "The authorization code has expired or was already used.",
        ) from None
    except TokenEndpointUnavailable:
        audit("install_failed", reason="token_endpoint_unavailable")
        raise _restart(
            "Pipedrive is not reachable right now", "Nothing was stored. Please try again in a minute.", 503
        ) from None
    try:
        check_token_response(token, new_grant=True)
    except ValueError:
        audit("install_failed", reason="incomplete_token_response")
        raise _incomplete_answer() from None
    api_domain = token["api_domain"]
    try:
        client().check_domain(api_domain)
    except DomainNotAllowed:
        audit("install_refused", reason="api_domain_not_allowed", api_domain=api_domain[:200])
        raise PageError(
            400,
            "Installation refused",
            "Pipedrive's answer named an address this app does not trust. Nothing was stored.",
        ) from None
    try:
        me = client().call("GET", api_domain, "/api/v1/users/me", token["access_token"])
    except UpstreamUnreachable:
        raise _restart(
            "Pipedrive is not reachable right now", "Nothing was stored. Please try again in a minute.", 503
        ) from None
    data = me.body.get("data") if me.status == 200 and isinstance(me.body, dict) else None
    try:
        identity = identity_from_users_me(data)
    except (TypeError, KeyError, ValueError, OverflowError):
        audit("install_failed", reason="users_me", status=me.status)
        raise _restart(
            "Pipedrive did not tell who you are", "Nothing was stored. Please try again.", 502
        ) from None
    inst = save_grant(get_session(), identity, token)
    # Charged once the company is known from the answer and the grant is stored: an install is never refused
    # for the budget, nor lost for the ledger's sake.
    try:
        ledger().record(identity.company_id, "users_me")
    except SQLAlchemyError:
        log.warning("could not charge the install's /users/me to company %s", identity.company_id)
    audit("installed", company_id=inst.company_id, user_id=inst.user_id, scopes=inst.scopes)
    return inst


@bp.get("/oauth/callback")
def callback():
    error = request.args.get("error")
    if error is not None:
        raise PageError(
            400,
            "Installation cancelled",
            "The app was not installed (Pipedrive said: "
            f"{error[:100]}). You can start again whenever you like.",
            url_for("oauth.install"),
            "Install the app",
        )
    code = request.args.get("code", "")
    if not code or len(code) > 2048:
        raise _restart(
            "Nothing to install",
            "This address is where Pipedrive sends you after you approve "
            "the app; it came without an authorization code.",
        )
    state = request.args.get("state")
    if state is not None:
        _consume_state(state)
    inst = _finish_install(code)
    # The ticket lets the next page say what was installed. Started in the Marketplace (no state), this
    # browser proved nothing, so its ticket confirms the install without naming the company or the user.
    ticket = _serializer(TICKET_SALT).dumps({"i": inst.id, "named": state is not None})
    return redirect(url_for("oauth.installed", ticket=ticket), code=302)


def _ticket_installation(ticket: str) -> tuple[Installation | None, bool]:
    """The installation a ticket confirms (None when forged, expired or since uninstalled), and whether the
    page may name its company and user."""
    try:
        payload = _serializer(TICKET_SALT).loads(ticket, max_age=TICKET_MAX_AGE_S)
        inst_id = int(payload["i"])
        named = payload.get("named") is True
    except (BadSignature, KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None, False
    # Signed by this app, so an id it issued; the bound keeps any other number away from the database.
    inst = get_session().get(Installation, inst_id) if 0 < inst_id < 2**31 else None
    if inst is None or inst.status == InstallationStatus.UNINSTALLED:
        return None, False
    return inst, named


def next_steps(inst: Installation, named: bool) -> dict[str, str | None]:
    """Where the installed page sends a person: Pipedrive (in the sandbox, its CRM deal page) and the app's
    settings in Pipedrive, where an admin creates partner keys. Unnamed, the company's domain is not shown."""
    settings = current_app.config["SETTINGS"]
    if settings.sandbox:
        deal_page = f"{settings.public_url}{SANDBOX_PREFIX}/crm/deal/1?user={inst.user_id}"
        return {"open_url": deal_page, "settings_url": None}
    domain = (inst.company_domain if named else None) or ""
    # From /users/me, but it becomes a link's host: one DNS label or nothing.
    host = f"https://{domain}.pipedrive.com" if COMPANY_DOMAIN.fullmatch(domain) else PIPEDRIVE_WEB
    return {
        "open_url": host + "/",
        "settings_url": f"{host}/settings/marketplace/app/{settings.client_id}/app-settings",
    }


@bp.get("/installed")
def installed():
    """The page after an install. Only a valid ticket (signed by the callback, 10 minutes) says the app is
    installed; without one the page claims nothing and offers to install."""
    ticket = request.args.get("ticket")
    inst, named = _ticket_installation(ticket) if ticket else (None, False)
    if inst is None:
        return render_template("installed.html", inst=None, bad_ticket=bool(ticket)), 400 if ticket else 200
    return render_template("installed.html", inst=inst, named=named, **next_steps(inst, named))
