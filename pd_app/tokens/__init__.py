"""The token store: encryption at rest (`cipher`), stored grants and their statuses (`store`), and refresh
that never races (`refresh`)."""

from __future__ import annotations

from flask import Flask

from .cipher import TokenCipher
from .refresh import RefreshGate


def init_app(app: Flask) -> None:
    app.extensions["pd_cipher"] = TokenCipher(app.config["SETTINGS"].token_encryption_keys)
    app.extensions["pd_refresh_gate"] = RefreshGate()
