"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import hmac

from flask import Blueprint, Flask, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import db, metrics, migrate
from .errors import DATABASE_RETRY_AFTER_S, ApiError, envelope

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def _operator() -> bool:
    """Whether this request may see operational detail. With METRICS_TOKEN set: only with
    `Authorization: Bearer <METRICS_TOKEN>`. Without it: anyone outside production, nobody in production."""
    settings = current_app.config["SETTINGS"]
    if not settings.metrics_token:
        return not settings.production
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), settings.metrics_token.encode()
    )


def _redis_check() -> str | None:
    """With REDIS_URL: "ok", or what the app does without it. Redis is an accelerator, not a dependency:
    while it is away every process serves on its own (cache, read coalescing, KEY_RATE_LIMIT per process)
    and picks it up again by itself, so it never makes the app not ready."""
    client = current_app.extensions.get("pd_cache_redis")
    if client is None:
        return None
    from redis import RedisError  # only with REDIS_URL (the client above imported it already)

    try:
        client.ping()
        return "ok"
    except RedisError as exc:
        return (
            f"degraded: unreachable ({type(exc).__name__}); cache, read coalescing and KEY_RATE_LIMIT "
            "are per process until it answers again"
        )


@bp.get("/readyz")
def readyz():
    """Ready or not for everyone (a load balancer reads the status code); which check failed, and why, only
    for the operator. Readiness is the database's (reachable, migrations at head); Redis, when configured,
    is reported beside it and never makes the app not ready (`_redis_check`)."""
    checks: dict[str, str] = {}
    try:
        # One connection for both checks: a probe must not need two when the pool is nearly spent.
        with db.engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            current = migrate.current_revisions(conn)
        heads = migrate.heads()
        checks["migrations"] = (
            "ok"
            if current == heads
            else (
                f"at {','.join(sorted(current)) or 'base'}, head is {','.join(sorted(heads))}: "
                "run `flask --app app db upgrade`"
            )
        )
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values()) and "migrations" in checks
    body: dict[str, object] = {"status": "ready" if ready else "not ready"}
    if _operator():
        redis = _redis_check()
        if redis is not None:
            checks["redis"] = redis
        body["checks"] = checks
    if ready:
        return jsonify(body)
    # Like every 503 of the app's: when to ask again (the database's outage answer's figure).
    return jsonify(body), 503, {"Retry-After": str(DATABASE_RETRY_AFTER_S)}


@bp.get("/metrics")
def metrics_export():
    if not _operator():
        refused = envelope(
            ApiError(
                401,
                "unauthorized",
                "The metrics are for the operator.",
                "Send `Authorization: Bearer <METRICS_TOKEN>`.",
            )
        )
        refused.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    return metrics.export()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
