"""The reference reads in the OpenAPI document: parameters from the query models that validate them
(queries.py), responses from schemas.py. goals/openapi.py builds the document and lends its helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .ops import REFERENCE_OPS, ReferenceOp

# The reads' error statuses: like the Goals reads, and 404 when Pipedrive has no such resource.
STATUSES = ("400", "401", "402", "403", "404", "409", "429", "500", "502", "503")


def _description(spec: ReferenceOp) -> str:
    scopes = " or ".join(f"`{scope}`" for scope in spec.scopes if scope != "admin")
    version = "v2" if spec.path.startswith("/api/v2/") else "v1"
    return (
        f"Forwarded to Pipedrive's `{spec.operation_id}` (API {version}) after validation, at the same path "
        f"and with Pipedrive's answer passed on (upstream token cost {spec.cost}). The installation needs "
        f"Pipedrive's {scopes} scope: without it the answer is 403 `forbidden`, naming the scope to grant. "
        "Answers are cached per company and user for `REFERENCE_CACHE_TTL` seconds (default 600); goal "
        "writes do not clear them."
    )


def reference_paths(
    query_parameters: Callable[[type, dict[str, Any]], list[dict[str, Any]]],
    read_responses: Callable[[str, tuple[str, ...]], dict[str, Any]],
    read_parameters: list[dict[str, Any]],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    """The five paths, each with its one GET operation."""
    return {
        spec.path: {
            "get": {
                "operationId": spec.operation_id,
                "tags": ["Reference"],
                "summary": spec.summary,
                "description": _description(spec),
                "x-token-cost": spec.cost,
                "parameters": query_parameters(spec.query, schemas) + read_parameters,
                "responses": read_responses(f"#/components/schemas/{spec.schema}", STATUSES),
            }
        }
        for spec in REFERENCE_OPS
    }
