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

import json

from flask import Response, current_app, request

from .. import goals
from ..auth import CredentialKind
from ..errors import ApiError
from ..models import KeyScope
from ..pipedrive.api import GoalNotFound, PipedriveForbidden
from ..reference.ops import REFERENCE_OPS, ReferenceOp
from .cache import reference_cache
from .views import _caller, _read, _validated, bp

# What a read-scope key does not get of the company's users: a key with scope read may be a browser key, which
# is public (it ships in a web page), and names are all a dashboard needs. Emptied, not removed, so the answer
# keeps Pipedrive's shape.
CONTACT_FIELDS = {"email": "", "phone": None}


def _without_contacts(response: Response) -> Response:
    if response.status_code != 200:
        return response  # a 304 has no body; errors carry none of this
    body = json.loads(response.get_data())
    for user in body.get("data") or ():
        if isinstance(user, dict):
            user.update({name: empty for name, empty in CONTACT_FIELDS.items() if name in user})
    response.set_data(json.dumps(body, separators=(",", ":")))
    if response.headers.get("ETag"):
        # Another representation of the same version: its own validator, still stable across requests.
        response.headers["ETag"] = response.headers["ETag"].rstrip('"') + '-r"'
    return response


def _serve(spec: ReferenceOp) -> Response:
    principal, inst = _caller(KeyScope.READ)
    params = _validated(goals.validate_query, spec.query, request.args)
    redact = spec.op == "users" and principal.kind == CredentialKind.KEY and principal.scope == KeyScope.READ
    if redact and "HTTP_IF_NONE_MATCH" in request.environ:
        # _read compares with the full answer's validator: only this representation's (suffix `-r`) may
        # match it, so a reader cannot test a guess of the full answer's tag.
        tags = [tag.strip() for tag in request.environ["HTTP_IF_NONE_MATCH"].split(",")]
        request.environ["HTTP_IF_NONE_MATCH"] = ", ".join(
            tag[:-3] + '"' if tag.endswith('-r"') else '"-"' for tag in tags
        )
    try:
        response = _read(spec.op, inst, spec.path, params, cache=reference_cache())
        if redact:
            response = _without_contacts(response)
            if response.status_code == 304 and response.headers.get("ETag"):
                response.headers["ETag"] = response.headers["ETag"].rstrip('"') + '-r"'
        return response
    except PipedriveForbidden as exc:
        raise _missing_scope(spec, exc.message) from None
    except GoalNotFound:  # Pipedrive's 404 on a list: nothing of the sort in this company
        raise ApiError(
            404, "not_found", "Pipedrive has no such resource for this company.", "Check the query."
        ) from None


def _missing_scope(spec: ReferenceOp, upstream_message: str | None) -> ApiError:
    """Pipedrive says "Scope and URL mismatch" (its own words are kept in `error`); an HTML 403 from its edge
    says nothing, and a missing scope is still the one cause the caller can act on."""
    scopes = " or ".join(f"`{scope}`" for scope in spec.scopes if scope != "admin")
    install_url = current_app.config["SETTINGS"].public_url + "/oauth/install"
    said = f" (Pipedrive said: {upstream_message})" if upstream_message else ""
    return ApiError(
        403,
        "forbidden",
        f"Pipedrive refused {spec.path}: the installation was not granted the scope it needs{said}.",
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
