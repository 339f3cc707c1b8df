"""The OpenAPI 3.1 document of everything under /api.

Parameters and request bodies are generated from the pydantic models that validate them (models.py), so the
document cannot drift from what the proxy accepts; responses come from responses.py.
"""

from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from ..proxy import idempotency
from ..settings_page.openapi import settings_paths, settings_schemas
from .fields import GoalId
from .models import AddGoalRequest, FindGoalsQuery, GoalResultsQuery, QueryModel, UpdateGoalRequest
from .responses import ERROR_RESPONSES, IDEMPOTENT_REPLAYED, RESPONSE_SCHEMAS, RETRY_AFTER, VALIDATION_EXAMPLE

REF = "#/components/schemas/{model}"

_ADD_EXAMPLE = {
    "title": "New deals in Q1",
    "assignee": {"id": 1, "type": "person"},
    "type": {"name": "deals_won", "params": {"pipeline_id": [1]}},
    "expected_outcome": {"target": 50000, "tracking_metric": "sum", "currency_id": 1},
    "duration": {"start": "2025-01-01", "end": "2025-03-31"},
    "interval": "monthly",
}


def _query_parameters(model: type[QueryModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    schemas.update(schema.get("$defs", {}))
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        parameter = {"in": "query", "name": name, "required": name in required}
        parameter["description"] = prop.pop("description", "")
        parameter["schema"] = prop
        if prop.get("type") == "array":
            parameter.update(style="form", explode=True)  # ?k=1&k=2
        parameters.append(parameter)
    return parameters


_SERVER_TIMING = {
    "Server-Timing": {
        "description": "`app;dur=` (ms in pd_app), `upstream;dur=` (ms waiting for Pipedrive, when called), "
        '`cache;desc="hit|miss|shared"` on reads.',
        "schema": {"type": "string"},
    }
}
_READ_HEADERS = {
    "ETag": {"description": "A strong validator of the body.", "schema": {"type": "string"}},
    "X-Cache": {"description": "Whether the app's cache answered.", "schema": {"enum": ["HIT", "MISS"]}},
    "Cache-Control": {
        "description": "`private, no-cache`: no shared cache may keep it.",
        "schema": {"type": "string"},
    },
}
_READ_PARAMETERS = [
    {
        "in": "header",
        "name": "If-None-Match",
        "required": False,
        "description": "An ETag of an earlier answer: 304 without a body when it is still current.",
        "schema": {"type": "string"},
    },
    {
        "in": "header",
        "name": "Cache-Control",
        "required": False,
        "description": "`no-cache` skips the app's cache (the call costs Pipedrive tokens).",
        "schema": {"type": "string"},
    },
]


def _responses(success: str, *statuses: str, read: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "Success.",
            "headers": {**_SERVER_TIMING, **(_READ_HEADERS if read else {})},
            "content": {"application/json": {"schema": {"$ref": success}}},
        }
    }
    if read:
        responses["304"] = {
            "description": "Not modified: the `If-None-Match` ETag is still current. No body.",
            "headers": _READ_HEADERS,
        }
    for status in sorted(statuses):
        responses[status] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    return responses


def _created(success: str, *statuses: str) -> dict[str, Any]:
    responses = _responses(success, *statuses)
    responses["201"] = {**responses.pop("200"), "description": "Created."}
    del responses["201"]["headers"]
    return responses


def _error_responses() -> dict[str, Any]:
    responses = {}
    for status, (name, when, codes) in ERROR_RESPONSES.items():
        response: dict[str, Any] = {
            "description": f"{when} `code`: {', '.join(codes)}.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if status in ("409", "429", "503"):
            response["headers"] = RETRY_AFTER
        if status == "400":
            response["content"]["application/json"]["example"] = VALIDATION_EXAMPLE
        responses[name] = response
    return responses


def _operation(
    op_id: str, summary: str, cost: int, success: str, statuses: tuple[str, ...], **extra: Any
) -> dict[str, Any]:
    operation = {
        "operationId": op_id,
        "tags": ["Goals"],
        "summary": summary,
        "description": f"Forwarded to Pipedrive's `{op_id}` after validation (upstream token cost {cost}).",
        "x-token-cost": cost,
        "responses": _responses(f"#/components/schemas/{success}", *statuses, read=op_id.startswith("get")),
    }
    operation.update(extra)
    return operation


def _takes_idempotency_key(operation: dict[str, Any]) -> None:
    """A write takes `Idempotency-Key`, and a replayed answer says so."""
    operation["parameters"] = [{"$ref": "#/components/parameters/IdempotencyKey"}]
    operation["responses"]["200"]["headers"] = IDEMPOTENT_REPLAYED


def openapi_document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of /api, served at `/api/openapi.json`."""
    refs, top = models_json_schema(
        [(AddGoalRequest, "validation"), (UpdateGoalRequest, "validation")], ref_template=REF
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    find_parameters = _query_parameters(FindGoalsQuery, schemas)
    results_parameters = _query_parameters(GoalResultsQuery, schemas)
    schemas.update(RESPONSE_SCHEMAS)
    schemas.update(settings_schemas())

    goal_id = {"$ref": "#/components/parameters/GoalId"}
    reads = ("400", "401", "402", "403", "409", "429", "500", "502", "503")
    writes = reads + ("422", "504")  # only a write takes an Idempotency-Key or can leave its outcome unknown
    body_errors = ("413", "415")

    def body(model: type, example: dict[str, Any] | None = None) -> dict[str, Any]:
        media: dict[str, Any] = {"schema": refs[(model, "validation")]}
        if example:
            media["example"] = example
        return {"required": True, "content": {"application/json": media}}

    paths = {
        "/api/v1/goals": {
            "post": _operation(
                "addGoal",
                "Add a goal",
                10,
                "GoalResponse",
                writes + body_errors,
                requestBody=body(AddGoalRequest, _ADD_EXAMPLE),
            ),
        },
        "/api/v1/goals/find": {
            "get": _operation(
                "getGoals",
                "Find goals",
                20,
                "GoalsResponse",
                reads,
                parameters=find_parameters + _READ_PARAMETERS,
            ),
        },
        "/api/v1/goals/{id}": {
            "parameters": [goal_id],
            "put": _operation(
                "updateGoal",
                "Update a goal",
                10,
                "GoalResponse",
                writes + ("404",) + body_errors,
                requestBody=body(UpdateGoalRequest, {"title": "New deals in Q1 (stretch)"}),
            ),
            "delete": _operation("deleteGoal", "Delete a goal", 6, "DeleteGoalResponse", writes + ("404",)),
        },
        "/api/v1/goals/{id}/results": {
            "parameters": [goal_id],
            "get": _operation(
                "getGoalResult",
                "Get the progress of a goal",
                20,
                "GoalResultResponse",
                reads + ("404",),
                parameters=results_parameters + _READ_PARAMETERS,
            ),
        },
        "/api/v1/app/installation": {
            "get": {
                "operationId": "getInstallation",
                "tags": ["App"],
                "summary": "The caller's installation",
                "description": "Company, user, status, scopes and last known rate-limit figures. No token.",
                "responses": _responses(
                    "#/components/schemas/InstallationResponse", "401", "409", "429", "500", "503"
                ),
            }
        },
        "/api/v1/goals/{id}/history": {
            "parameters": [goal_id],
            "get": {
                "operationId": "getGoalHistory",
                "tags": ["App"],
                "summary": "A goal's progress over time",
                "description": "From the app's own daily snapshots (taken by its worker), oldest first. "
                "Sends nothing to Pipedrive (no token cost). Default window: the last 90 days; `from` not "
                "after `to`, at most 3660 days apart (`to` defaults to today).",
                "parameters": [
                    {
                        "in": "query",
                        "name": name,
                        "required": False,
                        "description": description,
                        "schema": {"type": "string", "format": "date"},
                    }
                    for name, description in (
                        ("from", "First day (UTC), YYYY-MM-DD; default: 89 days before `to`."),
                        ("to", "Last day (UTC), YYYY-MM-DD; default: today."),
                    )
                ],
                "responses": _responses(
                    "#/components/schemas/GoalHistoryResponse", "400", "401", "429", "500", "503"
                ),
            },
        },
        "/api/v1/app/webhooks": {
            "post": {
                "operationId": "addWebhook",
                "tags": ["App"],
                "summary": "Register a webhook",
                "description": "Scope full. The answer carries the signing secret: the only time it is "
                "shown. In production the URL must be https:// and resolve to public addresses only. A "
                "company may have at most 20 webhooks.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/WebhookRequest"},
                            "example": {
                                "url": "https://partner.example.com/pd-hooks",
                                "events": ["goal.reached"],
                            },
                        }
                    },
                },
                "responses": _created(
                    "#/components/schemas/WebhookCreatedResponse",
                    "400",
                    "401",
                    "403",
                    "413",
                    "415",
                    "429",
                    "500",
                    "503",
                ),
            },
            "get": {
                "operationId": "listWebhooks",
                "tags": ["App"],
                "summary": "The company's webhooks",
                "description": "Scope full. Each with its health (`failing`) and its last delivery attempts; "
                "never its secret.",
                "responses": _responses(
                    "#/components/schemas/WebhooksResponse", "401", "403", "429", "500", "503"
                ),
            },
        },
        "/api/v1/app/webhooks/{id}": {
            "parameters": [
                {
                    "in": "path",
                    "name": "id",
                    "required": True,
                    "description": "The webhook's id.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "delete": {
                "operationId": "deleteWebhook",
                "tags": ["App"],
                "summary": "Remove a webhook",
                "description": "Scope full. Its pending deliveries go with it.",
                "responses": _responses(
                    "#/components/schemas/WebhookDeletedResponse", "401", "403", "404", "429", "500", "503"
                ),
            },
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "tags": ["Documentation"],
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    # Imported here: the reference package's query models import this package (goals.models).
    from ..reference.openapi import reference_paths
    from ..reference.schemas import REFERENCE_SCHEMAS

    schemas.update(REFERENCE_SCHEMAS)
    paths.update(
        reference_paths(
            _query_parameters,
            lambda success, statuses: _responses(success, *statuses, read=True),
            _READ_PARAMETERS,
            schemas,
        )
    )
    paths.update(settings_paths(_responses, _created))
    # The server answers these before the app runs, whatever the path: a request line or headers too large.
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters":
                for status in ("414", "431"):
                    ref = f"#/components/responses/{ERROR_RESPONSES[status][0]}"
                    operation["responses"][status] = {"$ref": ref}
    for path, method in (
        ("/api/v1/goals", "post"),
        ("/api/v1/goals/{id}", "put"),
        ("/api/v1/goals/{id}", "delete"),
    ):
        _takes_idempotency_key(paths[path][method])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Goals for Pipedrive API",
            "version": "1.0.0",
            "description": "Pipedrive-compatible Goals API, and the reference data goal forms need: "
            "requests are validated here before they reach Pipedrive, with the caller's installation's "
            "OAuth token.",
        },
        "servers": [{"url": public_url}],
        "security": [{"partnerKey": []}, {"bearer": []}],
        "tags": [
            {"name": "Goals", "description": "Pipedrive's v1 Goals operations, same paths and bodies."},
            {
                "name": "Reference",
                "description": "What goals refer to by id (pipelines, stages, activity types, users, "
                "currencies): Pipedrive's own read operations, same paths and answers, cached.",
            },
            {
                "name": "App",
                "description": "The caller's installation of the app, goal history, webhooks, and the "
                "settings page's endpoints (partner keys, installations, budget; a Pipedrive admin only).",
            },
            {"name": "Documentation"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {
                "GoalId": {
                    "in": "path",
                    "name": "id",
                    "required": True,
                    "description": "The goal's id (Pipedrive's goal ids are strings).",
                    "schema": TypeAdapter(GoalId).json_schema(),
                },
                "IdempotencyKey": {
                    "in": "header",
                    "name": idempotency.HEADER,
                    "required": False,
                    "description": "Makes a write safe to send again: the same key from the same "
                    "credential with the same method, path and body within 24 hours gets the first answer "
                    "again (any status, with `Idempotent-Replayed: true`) and sends nothing to Pipedrive. "
                    "Another request with a used key: 422 `idempotency_key_reused`; while the first is "
                    "running: 409 `idempotency_key_in_progress`. A new UUID per intended change is a good "
                    "choice.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": idempotency.MAX_KEY_LENGTH,
                        "pattern": idempotency.KEY_PATTERN,
                    },
                },
            },
            "responses": _error_responses(),
            "securitySchemes": {
                "partnerKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-token",
                    "description": "A partner key (what Pipedrive's SDKs send when set up with `apiKey`).",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A partner key, or the custom UI SDK's JWT (GET_SIGNED_TOKEN).",
                },
            },
        },
    }
