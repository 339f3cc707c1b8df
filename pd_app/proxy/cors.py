"""CORS for partner frontends in browsers: a key's `--origin` list says which web origins may use it.

A preflight carries no credential, so it is answered for any origin that some active key lists; the real
request then gets `Access-Control-Allow-Origin` only when its own key lists that origin.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from sqlalchemy import select

from ..db import get_session
from ..models import PartnerKey

ALLOWED_HEADERS = "x-api-token, authorization, content-type, idempotency-key, if-none-match, cache-control"
EXPOSED_HEADERS = "Retry-After, Idempotent-Replayed, ETag, X-Cache, Server-Timing"
MAX_AGE_S = "600"


# A web origin as a browser sends it: http(s), a DNS name or IPv4 address, a port (1-65535), nothing else
# (a trailing "/" is forgiven). The validator and the OpenAPI document use this one pattern.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ORIGIN_PATTERN = rf"^https?://{_LABEL}(?:\.{_LABEL})*(?::{_PORT})?/?$"
_ORIGIN_RE = re.compile(ORIGIN_PATTERN.removeprefix("^").removesuffix("$"))


def normalize_origin(value: str) -> str:
    """`https://dash.example.com` form, or ValueError: scheme, host and port only, no path, query or
    credentials."""
    if not _ORIGIN_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an origin like https://dashboard.example.com (scheme, host and port only)"
        )
    parts = urlsplit(value)
    # A browser's Origin never names the scheme's default port: kept, it would never match.
    default = {"http": 80, "https": 443}[parts.scheme.lower()]
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def _listed_by_any_key(origin: str) -> bool:
    rows = get_session().scalars(select(PartnerKey.origins).where(PartnerKey.revoked_at.is_(None))).all()
    return any(origin in (origins or []) for origins in rows)


def preflight() -> Response | None:
    if request.method != "OPTIONS" or not request.path.startswith(("/api/v1/", "/api/v2/")):
        return None
    response = Response(status=204)
    origin = request.headers.get("Origin")
    if origin and _listed_by_any_key(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE"
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE_S
    response.headers["Vary"] = "Origin"
    return response


def allow_origin(response: Response) -> Response:
    origin = request.headers.get("Origin")
    principal = g.get("principal")
    if origin and principal is not None and origin in principal.origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Timing-Allow-Origin"] = origin  # Server-Timing readable by the page's timing API
        response.headers.add("Vary", "Origin")
    return response


def init_app(app: Flask) -> None:
    app.before_request(preflight)
    app.after_request(allow_origin)
