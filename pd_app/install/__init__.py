"""Installing the app: the OAuth flow (`flow`), who installed it (`identity`), and Pipedrive's uninstall and
sharing notices (`notices`), all on one blueprint."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("oauth", __name__)


def init_app(app: Flask) -> None:
    from . import flow, notices  # noqa: F401 (their views register on `bp`)

    app.register_blueprint(bp)
