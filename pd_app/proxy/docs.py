"""The API's documentation page (/api/docs): the whole OpenAPI document (/api/openapi.json) rendered by
Swagger UI, whose files come from node_modules (swagger-ui-dist, pinned in package.json) and are served from
the app's own origin: no CDN, no external font.

Swagger UI runs under a CSP as strict as the panel's (scripts and styles from 'self' only, no 'unsafe-eval',
no 'unsafe-inline'): it styles through its stylesheet and the CSSOM, which a CSP does not restrict, and the
page's configuration is an external script reading data-* attributes."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, render_template, request

log = logging.getLogger(__name__)

bp = Blueprint("api_docs", __name__, url_prefix="/api/docs")

PACKAGE = "swagger-ui-dist"
# The files the page loads (and their source maps, which only a browser's developer tools ask for).
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-bundle.js.map": "application/json",
    "swagger-ui.css": "text/css",
    "swagger-ui.css.map": "application/json",
}
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # Swagger UI's stylesheet draws its icons as data: SVGs
        "font-src 'self'",
        "connect-src 'self'",  # the document itself, and "Try it out" against this app
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def package_dir(app: Flask) -> Path:
    """Where `npm ci` puts swagger-ui-dist: node_modules beside the pd_app package."""
    return Path(app.root_path).parent / "node_modules" / PACKAGE


@functools.lru_cache(maxsize=len(FILES))
def _read(path: Path) -> tuple[bytes, str]:
    """A vendor file and its ETag, read once per process (npm ci writes them before the app starts)."""
    content = path.read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:32]


@bp.get("")
def show_docs() -> str:
    return render_template("api_docs.html")


@bp.get("/vendor/<name>")
def vendor_file(name: str) -> Response:
    if name not in FILES:
        abort(404)
    path = package_dir(current_app) / name
    try:
        content, etag = _read(path)
    except OSError:
        log.error(
            "the API docs viewer is missing: run `npm ci` (make deps)", extra={"fields": {"path": str(path)}}
        )
        abort(404)
    response = Response(content, mimetype=FILES[name])
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    response.set_etag(etag)
    return response.make_conditional(request)


@bp.after_request
def docs_headers(response: Response) -> Response:
    """Runs before the app-wide defaults (web.add_security_headers), which only fill in what is unset."""
    response.headers["Content-Security-Policy"] = CSP
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
