"""The app's settings page inside Pipedrive (the "custom UI for app settings"): the page at /ui/settings
(`page`), its endpoints under /api/v1/app (`api`: partner keys, and the installations, budget and limits it
shows, from `overview`), and who may use them: a Pipedrive admin of the company, as Pipedrive says now
(`admin`). Webhooks are managed through /api/v1/app/webhooks (pd_app/webhooks), with the same admin rule."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    # Imported here: errors.py imports `admin`, and this package must not load the views with it.
    from . import admin, api, page

    admin.init_app(app)
    app.register_blueprint(page.bp)
    app.register_blueprint(api.bp)
