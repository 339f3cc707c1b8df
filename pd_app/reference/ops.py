"""The five reference reads: one row each, read by the proxy's views, the budget's cost table, the OpenAPI
document and the tests. Paths are Pipedrive's own, so a partner's Pipedrive client works unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from ..goals.models import QueryModel
from .costs import COSTS
from .queries import ActivityTypesQuery, CurrenciesQuery, PipelinesQuery, StagesQuery, UsersQuery


@dataclass(frozen=True)
class ReferenceOp:
    op: str  # the ledger's and the metrics' name
    operation_id: str  # Pipedrive's operationId
    path: str  # the same path here and upstream
    summary: str
    cost: int  # Pipedrive API tokens per call
    scopes: tuple[str, ...]  # Pipedrive OAuth scopes that allow it (any one)
    query: type[QueryModel]
    schema: str  # the response schema's name in the OpenAPI document


# Costs: costs.py says where each comes from. Scopes: the operation's `security` in openapi-v1.yaml; for
# v2, the scopes the `pipedrive` npm package's v2 client names for PipelinesApi.getPipelines and
# StagesApi.getStages.
REFERENCE_OPS: tuple[ReferenceOp, ...] = (
    ReferenceOp(
        "pipelines",
        "getPipelines",
        "/api/v2/pipelines",
        "All pipelines",
        COSTS["pipelines"],
        ("deals:read", "deals:full", "admin"),
        PipelinesQuery,
        "PipelinesResponse",
    ),
    ReferenceOp(
        "stages",
        "getStages",
        "/api/v2/stages",
        "All stages, or a pipeline's",
        COSTS["stages"],
        ("deals:read", "deals:full", "admin"),
        StagesQuery,
        "StagesResponse",
    ),
    ReferenceOp(
        "activity_types",
        "getActivityTypes",
        "/api/v1/activityTypes",
        "All activity types",
        COSTS["activity_types"],
        ("activities:read", "activities:full", "admin"),
        ActivityTypesQuery,
        "ActivityTypesResponse",
    ),
    ReferenceOp(
        "users",
        "getUsers",
        "/api/v1/users",
        "All users of the company",
        COSTS["users"],
        ("users:read",),
        UsersQuery,
        "UsersResponse",
    ),
    ReferenceOp(
        "currencies",
        "getCurrencies",
        "/api/v1/currencies",
        "All supported currencies",
        COSTS["currencies"],
        ("base",),
        CurrenciesQuery,
        "CurrenciesResponse",
    ),
)
BY_OP = {spec.op: spec for spec in REFERENCE_OPS}
