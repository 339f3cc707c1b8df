"""Pipedrive, as the app calls it: `api` holds the one client (token endpoint and API, pooled, with timeouts
and the domain exceptions for Pipedrive's errors), `allowlist` the api_domain check, `breaker` the circuit
breaker per Pipedrive host."""

from __future__ import annotations

from functools import partial

from flask import Flask, current_app

from .. import metrics
from .api import PipedriveClient


def init_app(app: Flask) -> None:
    pd_client = PipedriveClient(app.config["SETTINGS"])
    pd_client.breakers.on_change = partial(metrics.breakers_open, app)
    app.extensions["pd_client"] = pd_client


def client() -> PipedriveClient:
    return current_app.extensions["pd_client"]
