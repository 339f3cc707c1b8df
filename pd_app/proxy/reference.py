"""The reference reads through the proxy: `GET /api/v2/pipelines`, `/api/v2/stages`, `/api/v1/activityTypes`,
`/api/v1/users`, `/api/v1/currencies`, at Pipedrive's own paths and passed on as Pipedrive answers.

The same pipeline as the Goals reads (views.py `_caller` and `_read`: any credential's scope, KEY_RATE_LIMIT,
Pipedrive's throttle, the company's ledger charged with the operation's cost, one upstream call for
identical concurrent reads, ETag / 304 / X-Cache / Server-Timing), with a cache of its own: per company and
installation (`/users` marks the caller with `is_you`) for REFERENCE_CACHE_TTL seconds, which goal writes
do not invalidate. Pipedrive's 403 (the installation was granted without the scope the read needs) is the
contract's 403 `forbidden`, naming the scope to add; like every error, it is never cached.
"""

from __future__ import annotations

from flask import Response, current_app, request

from .. import goals
from ..errors import ApiError
from ..models import KeyScope
from ..pipedrive.api import GoalNotFound, PipedriveForbidden
from ..reference.ops import REFERENCE_OPS, ReferenceOp
from .cache import reference_cache
from .views import _caller, _read, _validated, bp


def _serve(spec: ReferenceOp) -> Response:
    _principal, inst = _caller(KeyScope.READ)
    params = _validated(goals.validate_query, spec.query, request.args)
    try:
        return _read(spec.op, inst, spec.path, params, cache=reference_cache())
    except PipedriveForbidden:
        raise _missing_scope(spec) from None
    except GoalNotFound:  # Pipedrive's 404 on a list: nothing of the sort in this company
        raise ApiError(
            404, "not_found", "Pipedrive has no such resource for this company.", "Check the query."
        ) from None


def _missing_scope(spec: ReferenceOp) -> ApiError:
    scopes = " or ".join(f"`{scope}`" for scope in spec.scopes if scope != "admin")
    install_url = current_app.config["SETTINGS"].public_url + "/oauth/install"
    return ApiError(
        403,
        "forbidden",
        f"Pipedrive refused {spec.path}: the installation was not granted the scope it needs.",
        f"The app needs Pipedrive's {scopes} scope for this: a Pipedrive user of the company must install "
        f"the app again to grant it: {install_url}",
    )


def _view(spec: ReferenceOp):
    def view() -> Response:
        return _serve(spec)

    view.__name__ = f"reference_{spec.op}"
    view.__doc__ = f"{spec.summary}: Pipedrive's {spec.operation_id}, `GET {spec.path}`."
    return view


for _spec in REFERENCE_OPS:
    bp.add_url_rule(_spec.path.removeprefix("/api"), view_func=_view(_spec), methods=["GET"])
