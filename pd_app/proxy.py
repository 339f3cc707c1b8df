"""Forwarding one validated Goals request to Pipedrive for the caller's installation, and mapping the answer.

Successful answers keep Pipedrive's envelope untouched; every failure becomes the contract's error envelope.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import current_app
from sqlalchemy import case, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import metrics
from .auth import Principal
from .cache import goals_cache
from .errors import ApiError
from .models import Installation
from .pipedrive import DomainNotAllowed, UpstreamResponse, UpstreamUnreachable, client
from .tokens import (
    NotInstalled,
    ReauthRequired,
    TokenDecryptError,
    TokenServiceUnavailable,
    record_rate_limit,
    refresh,
    usable_access_token,
)

log = logging.getLogger(__name__)

TOKEN_RETRY_AFTER_S = 30
UPSTREAM_RETRY_AFTER_S = 5


def installation_for(session: Session, principal: Principal) -> Installation:
    """The installation whose token serves this caller.

    A user-bound credential uses that user's installation. A company-wide key uses an active installation of
    the company: an admin's first, then the most recently refreshed; with none active, one that needs
    reauthorization (so the caller learns that), else `not_installed`.
    """
    query = select(Installation).where(Installation.company_id == principal.company_id)
    if principal.user_id is not None:
        inst = session.scalar(query.where(Installation.user_id == principal.user_id))
    else:
        # Active ones first, so a company whose only installations need reauthorization is told so.
        inst = session.scalar(
            query.where(Installation.status != "uninstalled")
            .order_by(
                case((Installation.status == "active", 0), else_=1),
                case((Installation.is_admin, 0), else_=1),
                Installation.last_refreshed_at.desc().nulls_last(),
                Installation.installed_at.desc(),
            )
            .limit(1)
        )
    if inst is None or inst.status == "uninstalled":
        raise not_installed()
    return inst


def not_installed() -> ApiError:
    url = current_app.config["SETTINGS"].public_url + "/oauth/install"
    return ApiError(
        409,
        "not_installed",
        "The app is not installed for this Pipedrive user or company.",
        f"A Pipedrive user of the company must install the app: {url}",
    )


def reauth_required() -> ApiError:
    url = current_app.config["SETTINGS"].public_url + "/oauth/install"
    return ApiError(
        401,
        "reauth_required",
        "Pipedrive no longer accepts this installation's authorization.",
        f"The user must install the app again: {url}",
    )


def _token(session: Session, inst: Installation, *, forced_from: int | None = None) -> str:
    try:
        if forced_from is not None:
            return refresh(session, inst, seen_version=forced_from, force=True)
        return usable_access_token(session, inst)
    except NotInstalled:
        raise not_installed() from None
    except ReauthRequired:
        raise reauth_required() from None
    except TokenServiceUnavailable:
        raise ApiError(
            503,
            "upstream_unavailable",
            "Pipedrive's sign-in service is not answering right now.",
            "Retry later; the installation is kept.",
            retry_after=TOKEN_RETRY_AFTER_S,
        ) from None
    except TokenDecryptError:
        log.error("stored token does not decrypt", extra={"fields": {"installation_id": inst.id}})
        raise ApiError(
            500,
            "internal_error",
            "This installation's credentials cannot be read.",
            "The operator must check TOKEN_ENCRYPTION_KEYS.",
        ) from None


def forward(
    session: Session,
    principal: Principal,
    op: str,
    method: str,
    path: str,
    *,
    params: list[tuple[str, str]] | None = None,
    json: Any = None,
) -> tuple[Any, int]:
    """Send one request upstream; on a 401 refresh once and retry once. Returns (body, status) for 2xx.

    Reads (GET) may be answered from the goals cache; every write invalidates the company's cached reads.
    """
    inst = installation_for(session, principal)
    if method == "GET":
        cache_key = _cached_key(session, inst, path, params)
        hit = _cache_call(goals_cache().get, cache_key) if cache_key is not None else None
        if hit is not None:
            metrics.cache_hit(op)
            return hit, 200
        body, status = _forward_upstream(session, inst, op, method, path, params, json)
        if cache_key is not None and status == 200:
            _cache_call(goals_cache().put, cache_key, body)
        return body, status
    # A write invalidates the company's cached reads before it goes out and again once it has an outcome of
    # any kind: a read racing the write, or a write that timed out but happened, must not stay cached.
    _cache_call(goals_cache().invalidate, session, inst.company_id)
    try:
        return _forward_upstream(session, inst, op, method, path, params, json)
    finally:
        _cache_call(goals_cache().invalidate, session, inst.company_id)


def _forward_upstream(
    session: Session,
    inst: Installation,
    op: str,
    method: str,
    path: str,
    params: list[tuple[str, str]] | None,
    json: Any,
) -> tuple[Any, int]:
    token = _token(session, inst)
    # Give the connection back to the pool while Pipedrive answers (100-300 ms, sometimes seconds).
    session.commit()
    resp = _send(op, method, inst, path, token, params, json)
    if resp.status == 401:
        token = _token(session, inst, forced_from=inst.version)
        session.commit()
        resp = _send(op, method, inst, path, token, params, json)
    record_rate_limit(session, inst, resp.rate_limit)
    if 200 <= resp.status < 300:
        if not isinstance(resp.body, dict):
            raise ApiError(
                502, "upstream_error", "Pipedrive answered with a body that is not JSON.", "Retry later."
            )
        return resp.body, resp.status
    raise _map_error(resp, method)


def _cached_key(
    session: Session, inst: Installation, path: str, params: list[tuple[str, str]] | None
) -> str | None:
    """The read's cache key: the upstream path (so each goal's results are their own entry) and query."""
    cache = goals_cache()
    if not cache.enabled or inst.status != "active":
        return None
    return _cache_call(cache.key_for, session, inst.company_id, inst.id, path, params or [])


def _cache_call(fn, *args):  # noqa: ANN001, ANN202
    """The cache is an optimisation: when its store fails, answer from Pipedrive instead of failing."""
    try:
        return fn(*args)
    except (redis.RedisError, SQLAlchemyError):
        log.warning("goals cache unavailable", exc_info=True)
        return None


def _send(
    op: str,
    method: str,
    inst: Installation,
    path: str,
    token: str,
    params: list[tuple[str, str]] | None,
    json: Any,
) -> UpstreamResponse:
    started = time.perf_counter()
    try:
        resp = client().call(method, inst.api_domain, path, token, params=params, json=json)
    except DomainNotAllowed:
        log.error(
            "stored api_domain is outside the allow-list",
            extra={"fields": {"installation_id": inst.id, "company_id": inst.company_id}},
        )
        metrics.upstream(op, "refused", time.perf_counter() - started)
        raise ApiError(
            502,
            "upstream_error",
            "This installation's Pipedrive address is not allowed.",
            "The operator must check PIPEDRIVE_API_DOMAINS.",
        ) from None
    except UpstreamUnreachable as exc:
        metrics.upstream(op, "unreachable", time.perf_counter() - started)
        if method != "GET" and exc.sent:
            raise ApiError(
                504,
                "outcome_unknown",
                "Pipedrive did not answer in time; the change may or may not have been made.",
                "Check with GET /api/v1/goals/find before retrying.",
            ) from None
        raise ApiError(
            503,
            "upstream_unavailable",
            "Pipedrive is not reachable right now.",
            "Retry later.",
            retry_after=UPSTREAM_RETRY_AFTER_S,
        ) from None
    metrics.upstream(op, str(resp.status), time.perf_counter() - started)
    return resp


def _upstream_message(resp: UpstreamResponse, default: str) -> str:
    body = resp.body if isinstance(resp.body, dict) else {}
    message = body.get("error") or body.get("message")
    return str(message)[:500] if message else default


def _map_error(resp: UpstreamResponse, method: str) -> ApiError:
    status = resp.status
    if status == 400:
        message = _upstream_message(resp, "Pipedrive refused the request.")
        return ApiError(
            400,
            "validation_failed",
            message,
            "Pipedrive refused the request; see details.",
            details=[{"field": "body", "message": message, "code": "upstream_rejected"}],
        )
    if status == 401:
        return reauth_required()
    if status == 402:
        return ApiError(
            402,
            "forbidden",
            "The company's Pipedrive account is not active.",
            "The company must settle its Pipedrive subscription.",
        )
    if status == 403:
        return ApiError(
            403,
            "forbidden",
            _upstream_message(resp, "Pipedrive refused access."),
            "The installation may lack the goals scope: reinstall the app to grant it.",
        )
    if status == 404:
        return ApiError(
            404, "not_found", "No such goal in this company.", "Find goal ids with /api/v1/goals/find."
        )
    if status == 429:
        retry = resp.retry_after or resp.rate_limit.get("ratelimit-reset") or 2
        return ApiError(
            429,
            "rate_limited",
            "Pipedrive's rate limit for this company was reached.",
            "Retry after the number of seconds in Retry-After.",
            retry_after=retry,
        )
    if status == 503:
        return ApiError(
            503,
            "upstream_unavailable",
            "Pipedrive is unavailable (maintenance).",
            "Retry later.",
            retry_after=resp.retry_after or UPSTREAM_RETRY_AFTER_S,
        )
    if status >= 500 and method != "GET":
        return ApiError(
            502,
            "outcome_unknown",
            f"Pipedrive failed ({status}); the change may or may not have been made.",
            "Check with GET /api/v1/goals/find before retrying.",
        )
    return ApiError(502, "upstream_error", f"Pipedrive answered {status}.", "Retry later.")
