"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import hmac

from flask import Blueprint, Flask, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import db, metrics, migrate
from .errors import ApiError, envelope

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


@bp.get("/readyz")
def readyz():
    """Ready or not for everyone (a load balancer reads the status code); which check failed, and why, only
    for the operator."""
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
        body["checks"] = checks
    return jsonify(body), 200 if ready else 503


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
