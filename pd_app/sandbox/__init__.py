"""A stateful, in-memory emulator of the parts of Pipedrive that pd_app uses: its OAuth server, /users/me,
the Goals API and the reference reads (pipelines, stages, activity types, users, currencies), answering as
Pipedrive's OpenAPI file says, a CRM deal page that hosts the app's custom UI panel the way Pipedrive does,
plus a control surface for tests.

    app = create_sandbox_app(SandboxSettings(...))
    state = app.extensions["pd_sandbox"]
"""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import HTTPException

from . import api, control, crm, oauth, reference
from .errors import handle_http_error
from .settings import SandboxSettings
from .state import SandboxState, fingerprint

__all__ = ["SandboxSettings", "SandboxState", "create_sandbox_app", "fingerprint"]


def create_sandbox_app(settings: SandboxSettings | None = None) -> Flask:
    settings = settings or SandboxSettings()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep Pipedrive's field order
    app.extensions["pd_sandbox"] = SandboxState(settings)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(reference.bp)
    app.register_blueprint(crm.bp)
    if settings.control:
        app.register_blueprint(control.bp)
    app.after_request(control.record_call)
    app.register_error_handler(HTTPException, handle_http_error)
    return app
