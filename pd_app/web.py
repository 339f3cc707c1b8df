"""The start page for people: what the app is, and the Install button."""

from __future__ import annotations

from flask import Blueprint, Flask, Request, Response, current_app, render_template, request
from flask.sessions import SessionInterface

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    return render_template("index.html", settings=current_app.config["SETTINGS"])


class NoSessions(SessionInterface):
    """The app keeps no cookie session (the install flow signs its own state, the panel and the API send
    credentials on every request): Flask's default would still build a signing serializer per request."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None  # Flask then uses a null session, which refuses writes

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


def init_app(app: Flask) -> None:
    app.session_interface = NoSessions()
    app.register_blueprint(bp)


HSTS = "max-age=31536000; includeSubDomains"


def add_security_headers(response: Response) -> Response:
    """App-wide defaults; a blueprint's own after_request (the panel's CSP, a proxied read's caching) runs
    first, so only what it left unset is filled in here."""
    if request.path.startswith("/oauth/"):
        # The install flow's pages and redirects carry one person's state, tickets and results: no cache may
        # keep them, not even the browser's.
        response.headers["Cache-Control"] = "no-store"
    if current_app.config["SETTINGS"].public_url.startswith("https://"):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
