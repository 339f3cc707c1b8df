"""Pipedrive, as the app calls it: `api` holds the one client (token endpoint and API, pooled, with timeouts
and the domain exceptions for Pipedrive's errors), `allowlist` the api_domain check."""

from __future__ import annotations

from flask import Flask, current_app

from .api import PipedriveClient


def init_app(app: Flask) -> None:
    app.extensions["pd_client"] = PipedriveClient(app.config["SETTINGS"])


def client() -> PipedriveClient:
    return current_app.extensions["pd_client"]
