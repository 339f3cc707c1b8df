"""pd_app: the backend of a Pipedrive Marketplace app about sales Goals."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def create_app(
    overrides: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
) -> Flask:
    # Imported here, as in Flask's tutorial, so that importing the package (gunicorn's master does, for its
    # logger class) does not load the whole application: about 60 MB the master never uses.
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from . import (
        cli,
        db,
        errors,
        install,
        jobs,
        logs,
        metrics,
        ops,
        pipedrive,
        proxy,
        sandbox_mount,
        settings_page,
        tokens,
        ui,
        web,
        webhooks,
    )
    from .config import load_settings, production_warnings

    app = Flask(__name__, instance_relative_config=True)
    settings = load_settings(os.environ if environ is None else environ, Path(app.instance_path), overrides)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=64 * 1024,
        TESTING=settings.env == "test",
    )
    # Behind one proxy: trust its client address and scheme. Not its Host: every URL the app hands out is
    # built from PUBLIC_URL, and a forged X-Forwarded-Host must not change request.host.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    logs.init_app(app)
    for warning in production_warnings(settings):
        app.logger.warning(warning)
    db.init_app(app)
    tokens.init_app(app)
    pipedrive.init_app(app)
    metrics.init_app(app)
    errors.init_app(app)
    proxy.init_app(app)
    jobs.init_app(app)
    webhooks.init_app(app)
    for module in (web, install, ops, cli, ui, settings_page):
        module.init_app(app)
    app.after_request(web.add_security_headers)
    sandbox_mount.init_app(app)
    return app
