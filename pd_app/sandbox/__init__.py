"""A stateful, in-memory emulator of the parts of Pipedrive that pd_app uses: its OAuth server, /users/me,
the Goals API and the reference reads (pipelines, stages, activity types, users, currencies), answering as
Pipedrive's OpenAPI file says, a CRM deal page that hosts the app's custom UI panel the way Pipedrive does,
plus a control surface for tests.

    app = create_sandbox_app(SandboxSettings(...))
    state = app.extensions["pd_sandbox"]
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from . import api, control, crm, oauth, reference
from .errors import handle_http_error
from .settings import SandboxSettings
from .state import SandboxState, fingerprint

__all__ = ["SandboxSettings", "SandboxState", "create_sandbox_app", "fingerprint"]

# The app's icon (one file, pd_app/static/favicon.svg), on the sandbox's pages too: the sandbox plays
# Pipedrive for this app, and its tabs are told apart from others by it.
APP_FAVICON = Path(__file__).resolve().parents[1] / "static" / "favicon.svg"


def favicon() -> Response:
    response = Response(APP_FAVICON.read_bytes(), mimetype="image/svg+xml")
    response.cache_control.max_age = 3600
    return response


def create_sandbox_app(settings: SandboxSettings | None = None) -> Flask:
    settings = settings or SandboxSettings()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep Pipedrive's field order
    app.extensions["pd_sandbox"] = SandboxState(settings)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(reference.bp)
    app.register_blueprint(crm.bp)
    app.add_url_rule("/favicon.svg", "favicon", favicon)
    if settings.control:
        app.register_blueprint(control.bp)
    app.after_request(control.record_call)
    app.register_error_handler(HTTPException, handle_http_error)
    return app
