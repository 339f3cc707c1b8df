"""The start page for people: what the app is, and the Install button."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, render_template

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    return render_template("index.html", settings=current_app.config["SETTINGS"])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def add_security_headers(response: Response) -> Response:
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
