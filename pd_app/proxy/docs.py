"""The API's documentation page (/api/docs): the whole OpenAPI document (/api/openapi.json) rendered by
Swagger UI, whose files come from node_modules (swagger-ui-dist, pinned in package.json) and are served from
the app's own origin: no CDN, no external font.

Swagger UI runs under a CSP as strict as the panel's (scripts and styles from 'self' only, no 'unsafe-eval',
no 'unsafe-inline'): it styles through its stylesheet and the CSSOM, which a CSP does not restrict, and the
page's configuration is an external script reading data-* attributes."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, render_template

from .. import vendor
from ..ui import strict_csp

bp = Blueprint("api_docs", __name__, url_prefix="/api/docs")

PACKAGE = "swagger-ui-dist"
# The files the page loads (and their source maps, which only a browser's developer tools ask for).
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-bundle.js.map": "application/json",
    "swagger-ui.css": "text/css",
    "swagger-ui.css.map": "application/json",
}
# The panel's policy, not framed by anyone.
CSP = strict_csp("'none'")


def package_dir(app: Flask) -> Path:
    return vendor.package_dir(app, PACKAGE)


@bp.get("")
def show_docs() -> str:
    return render_template("api_docs.html")


@bp.get("/vendor/<name>")
def vendor_file(name: str) -> Response:
    return vendor.serve(PACKAGE, "", FILES, name, "the API docs viewer")


@bp.after_request
def docs_headers(response: Response) -> Response:
    """Runs before the app-wide defaults (web.add_security_headers), which only fill in what is unset."""
    response.headers["Content-Security-Policy"] = CSP
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
