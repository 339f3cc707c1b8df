"""The OAuth server half of the sandbox: consent page, token endpoint, revocation."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request

from .errors import oauth_error
from .state import SandboxState
from .tokens import GrantError

bp = Blueprint("oauth", __name__)

SCOPE_LABELS = {
    "base": "Read your user details and company name (always included)",
    "goals:read": "Read goals",
    "goals:full": "Create, read, update and delete goals",
    "deals:read": "Read deals, their participants and followers",
    "activities:read": "Read activities, its fields and types; all files and filters",
    "users:read": "Read data about users (people with access to the Pipedrive account)",
}
FORM = "application/x-www-form-urlencoded"


def _state() -> SandboxState:
    return current_app.extensions["pd_sandbox"]


def _client_problem(params: Mapping[str, str]) -> str | None:
    """Why an authorize request must not go on; checked before anything could redirect."""
    settings = _state().settings
    if params.get("client_id") != settings.client_id:
        return "The app you are trying to install is unknown (client_id does not match any app)."
    # Never redirect to an unregistered URI: that would make the consent page an open redirector.
    if params.get("redirect_uri") not in settings.redirect_uris:
        return "The redirect_uri does not match the Callback URL registered for this app."
    return None


def _error_page(message: str, status: int = 400) -> tuple[str, int]:
    return render_template("error.html", message=message, status=status), status


def _with_query(uri: str, **params: str | None) -> str:
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


@bp.get("/oauth/authorize")
def show_consent() -> str | tuple[str, int]:
    problem = _client_problem(request.args)
    if problem:
        return _error_page(problem)
    state = _state()
    users = sorted(state.users.values(), key=lambda u: (u.company_id, u.id))
    wanted = request.args.get("user_id", type=int)  # sandbox convenience: preselect a user
    return render_template(
        "consent.html",
        app_name=state.settings.app_name,
        scopes=[(scope, SCOPE_LABELS.get(scope, scope)) for scope in state.granted_scopes()],
        users=[(u, state.companies[u.company_id]) for u in users],
        selected=wanted if wanted in state.users else users[0].id,
        client_id=request.args["client_id"],
        redirect_uri=request.args["redirect_uri"],
        oauth_state=request.args.get("state", ""),
    )


@bp.post("/oauth/authorize")
def answer_consent() -> Response | tuple[str, int]:
    problem = _client_problem(request.form)
    if problem:
        return _error_page(problem)
    redirect_uri = request.form["redirect_uri"]
    oauth_state = request.form.get("state") or None  # omitted from the redirect when none was given
    if request.form.get("action") != "allow":
        return redirect(_with_query(redirect_uri, error="user_denied", state=oauth_state))
    user_id = request.form.get("user_id", type=int)
    if user_id not in _state().users:
        return _error_page("Choose which sandbox user is logged in.")
    code = _state().issue_code(user_id, redirect_uri)
    return redirect(_with_query(redirect_uri, code=code, state=oauth_state))


def _client_authenticated() -> bool:
    settings = _state().settings
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.username is None or auth.password is None:
        return False
    id_ok = hmac.compare_digest(auth.username.encode(), settings.client_id.encode())
    secret_ok = hmac.compare_digest(auth.password.encode(), settings.client_secret.encode())
    return id_ok and secret_ok


def _client_and_form_problem() -> tuple[Response, int] | None:
    if not _client_authenticated():
        return oauth_error(401, "invalid_client", "Invalid client: client authentication failed")
    if request.mimetype != FORM:
        return oauth_error(400, "invalid_request", f"Invalid request: content type must be {FORM}")
    return None


@bp.post("/oauth/token")
@bp.post("/oauth/token/")
def issue_tokens() -> Response | tuple[Response, int]:
    state = _state()
    knobs = state.knobs
    if knobs["token_delay_s"]:
        time.sleep(knobs["token_delay_s"])
    problem = _client_and_form_problem()
    if problem:
        return problem
    # The OpenAPI file gives each of the two paths its own default grant type.
    default_grant = "refresh_token" if request.path.endswith("/") else "authorization_code"
    grant_type = request.form.get("grant_type", default_grant)
    try:
        if grant_type == "authorization_code":
            code, redirect_uri = request.form.get("code"), request.form.get("redirect_uri")
            if not code or not redirect_uri:
                return oauth_error(
                    400, "invalid_request", "Invalid request: code and redirect_uri are required"
                )
            body = state.exchange_code(code, redirect_uri)
        elif grant_type == "refresh_token":
            refresh_token = request.form.get("refresh_token")
            if not refresh_token:
                return oauth_error(400, "invalid_request", "Invalid request: refresh_token is required")
            failure = knobs["refresh_error"]
            if failure == "invalid_grant":
                raise GrantError("Invalid grant: refresh token is invalid")
            if failure == 500:
                return oauth_error(500, "server_error", "Internal server error")
            if failure == "timeout":
                # The refresh still happens after the hang: the client cannot know whether it did.
                time.sleep(knobs["hang_s"])
            body = state.refresh(refresh_token)
        else:
            return oauth_error(400, "unsupported_grant_type", "Unsupported grant type: grant_type is invalid")
    except GrantError as exc:
        return oauth_error(400, "invalid_grant", str(exc))
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.post("/oauth/revoke")
def revoke_token() -> Response | tuple[Response, int]:
    problem = _client_and_form_problem()
    if problem:
        return problem
    token = request.form.get("token")
    if not token:
        return oauth_error(400, "invalid_request", "Invalid request: token is required")
    # token_type_hint is only a hint (RFC 7009): both kinds are looked up, and unknown tokens are fine.
    _state().revoke(token)
    return jsonify({"success": True})
