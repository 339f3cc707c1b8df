"""Mounting the built-in Pipedrive sandbox at /sandbox when PD_SANDBOX=1 (never in production)."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .config import SANDBOX_PREFIX


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if not settings.sandbox or settings.production:
        return
    from .sandbox import SandboxSettings, create_sandbox_app

    sandbox = create_sandbox_app(
        SandboxSettings(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            redirect_uris=[settings.redirect_uri],
            base_url=settings.sandbox_url,
            jwt_secret=settings.jwt_secret,
            panel_url=settings.public_url + "/ui/panel",
            settings_url=settings.public_url + "/ui/settings",
        )
    )
    app.extensions["pd_sandbox_app"] = sandbox
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {SANDBOX_PREFIX: sandbox})  # type: ignore[method-assign]
