"""The Pipedrive-compatible proxy under /api: its views (`views`), forwarding a request upstream
(`forward`), the goals read cache (`cache`), CORS for partner keys (`cors`), idempotency keys on writes
(`idempotency`), and the bookkeeping kept off the hot path (`usage`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    # Imported here, not at the top: auth.py (which the views use) notes key use through `usage`.
    from . import cache, cors, idempotency, usage, views

    usage.init_app(app)
    cache.init_app(app)
    cors.init_app(app)
    idempotency.init_app(app)
    views.init_app(app)
