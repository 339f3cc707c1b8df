"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import db, metrics, migrate

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
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
    return jsonify({"status": "ready" if ready else "not ready", "checks": checks}), 200 if ready else 503


@bp.get("/metrics")
def metrics_export():
    return metrics.export()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
