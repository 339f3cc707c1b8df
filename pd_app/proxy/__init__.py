"""The Pipedrive-compatible proxy under /api: its views (`views`, and `reference` for the reference reads),
forwarding a request upstream (`forward`), the goals and reference read caches (`cache`), CORS for partner
keys (`cors`), idempotency keys on writes (`idempotency`), the bookkeeping kept off the hot path (`usage`),
and the rules that guard each company's Pipedrive budget: per-credential limits (`keylimit`), the daily
ledger (`budget`), Pipedrive's throttle (`throttle`), one call for identical concurrent reads (`flight`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    # Imported here, not at the top: auth.py (which the views use) notes key use through `usage`.
    from . import budget, cache, cors, flight, history, idempotency, keylimit, reference, usage, views  # noqa: F401

    usage.init_app(app)
    budget.init_app(app)
    keylimit.init_app(app)
    cache.init_app(app)
    flight.init_app(app)
    cors.init_app(app)
    idempotency.init_app(app)
    views.init_app(app)
