"""The settings page's endpoints in the OpenAPI document (goals/openapi.py adds these paths and schemas)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ..keys import MAX_NAME, MAX_ORIGINS, name_pattern
from ..models import KeyScope
from ..proxy.cors import ORIGIN_PATTERN
from .overview import BUDGET_DAYS

ADMIN_ONLY = (
    "Only the JWT of a Pipedrive admin of the company (the settings page's, or the panel's), checked with "
    "Pipedrive's /users/me (at most once a minute per user; 2 tokens); a partner key, whatever its scope, "
    "gets 403."
)
_TIME = {"type": ["string", "null"], "format": "date-time"}
_OK = {"type": "boolean", "const": True}

_SCHEMAS: dict[str, Any] = {
    "KeyRequest": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_NAME,
                "pattern": "",  # keys.name_pattern(), filled in by settings_schemas()
                "description": "Who it is for: no control or formatting characters, not only spaces "
                "(surrounding spaces are trimmed).",
            },
            "scope": {
                "enum": [*KeyScope, None],
                "description": "Default (left out or null): `read` when `origins` are given (a browser key "
                "is public), else `full`.",
            },
            "origins": {
                "type": ["array", "null"],
                "maxItems": MAX_ORIGINS,
                "items": {
                    "type": "string",
                    "pattern": ORIGIN_PATTERN,
                    "examples": ["https://dashboard.example.com"],
                },
                "description": "Web origins (scheme, host, port) that may use the key from a browser (CORS); "
                "null is none.",
            },
        },
    },
    "PartnerKey": {
        "type": "object",
        "description": "A partner key, never the key itself.",
        "properties": {
            "id": {"type": "integer"},
            "prefix": {"type": "string", "description": "The key's visible start (`pdk_` and 8 hex digits)."},
            "name": {"type": "string"},
            "scope": {"enum": list(KeyScope)},
            "origins": {"type": "array", "items": {"type": "string"}},
            "user_bound": {"type": "boolean"},
            "served_by": {
                "type": ["object", "null"],
                "description": "The installation whose token serves the key.",
                "properties": {
                    "user_id": {"type": "integer"},
                    "user_name": {"type": ["string", "null"]},
                    "status": {"type": "string"},
                },
            },
            "created_at": _TIME,
            "last_used_at": _TIME,
            "revoked_at": _TIME,
            "active": {"type": "boolean"},
        },
    },
    "KeysResponse": {
        "type": "object",
        "properties": {
            "success": _OK,
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/PartnerKey"}},
        },
    },
    "KeyResponse": {
        "type": "object",
        "properties": {"success": _OK, "data": {"$ref": "#/components/schemas/PartnerKey"}},
    },
    "KeyCreatedResponse": {
        "type": "object",
        "properties": {
            "success": _OK,
            "data": {
                "allOf": [
                    {"$ref": "#/components/schemas/PartnerKey"},
                    {
                        "type": "object",
                        "required": ["key"],
                        "properties": {"key": {"type": "string", "description": "The key, shown only here."}},
                    },
                ]
            },
        },
    },
    "SettingsResponse": {
        "type": "object",
        "properties": {
            "success": _OK,
            "data": {
                "type": "object",
                "properties": {
                    "company": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "integer"},
                            "name": {"type": ["string", "null"]},
                            "domain": {"type": ["string", "null"]},
                        },
                    },
                    "installations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "user_id": {"type": "integer"},
                                "user_name": {"type": ["string", "null"]},
                                "is_admin": {"type": "boolean", "description": "As Pipedrive last said."},
                                "status": {"enum": ["active", "reauth_required", "uninstalled"]},
                                "installed_at": _TIME,
                                "last_refreshed_at": _TIME,
                                "reconnect_url": {
                                    "type": ["string", "null"],
                                    "description": "When the installation needs reauthorization: where its "
                                    "user installs the app again.",
                                },
                            },
                        },
                    },
                    "budget": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Budget"},
                            {
                                "type": "object",
                                "properties": {
                                    "days": {
                                        "type": "array",
                                        "minItems": BUDGET_DAYS,
                                        "maxItems": BUDGET_DAYS,
                                        "description": f"The last {BUDGET_DAYS} UTC days, oldest first, "
                                        "today last; a day without spending is 0.",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "date": {"type": "string", "format": "date"},
                                                "spent": {"type": "integer", "minimum": 0},
                                            },
                                        },
                                    }
                                },
                            },
                        ]
                    },
                    "limits": {
                        "type": "array",
                        "description": "The app's cache and limit settings, read-only.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "examples": ["GOALS_CACHE_TTL"]},
                                "value": {"type": ["integer", "string"]},
                                "unit": {"type": "string"},
                                "description": {"type": "string"},
                            },
                        },
                    },
                    "install_url": {"type": "string"},
                },
            },
        },
    },
}


def settings_schemas() -> dict[str, Any]:
    """The schemas of these endpoints, with the key name's pattern (computed on first use: it lists every
    code point of a few Unicode categories)."""
    key_request = copy.deepcopy(_SCHEMAS["KeyRequest"])
    key_request["properties"]["name"]["pattern"] = name_pattern()
    return {**_SCHEMAS, "KeyRequest": key_request}


def settings_paths(
    responses: Callable[..., dict[str, Any]], created: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """The paths, built with the document's own response helpers (`_responses`, `_created`)."""
    ref = "#/components/schemas/{}".format
    return {
        "/api/v1/app/settings": {
            "get": {
                "operationId": "getAppSettings",
                "tags": ["App"],
                "summary": "What the settings page shows",
                "description": "The company's installations (with a reconnect link where one needs it), its "
                f"Pipedrive budget today and over the last {BUDGET_DAYS} days, and the app's cache and limit "
                f"settings. {ADMIN_ONLY}",
                "responses": responses(ref("SettingsResponse"), "401", "403", "409", "429", "500", "503"),
            }
        },
        "/api/v1/app/keys": {
            "get": {
                "operationId": "listKeys",
                "tags": ["App"],
                "summary": "The company's partner keys",
                "description": f"Active ones first; never a key itself. {ADMIN_ONLY}",
                "responses": responses(ref("KeysResponse"), "401", "403", "409", "429", "500", "503"),
            },
            "post": {
                "operationId": "createKey",
                "tags": ["App"],
                "summary": "Create a partner key",
                "description": "Bound to the company's admin installation (else its most recent active "
                "one), like `flask keys create` without `--user-id`. The answer (`Cache-Control: no-store`) "
                f"carries the key: the only time it is shown. The key works at once. {ADMIN_ONLY}",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": ref("KeyRequest")},
                            "example": {"name": "Sales dashboard", "origins": ["https://dash.example.com"]},
                        }
                    },
                },
                "responses": created(
                    ref("KeyCreatedResponse"), "400", "401", "403", "409", "413", "415", "429", "500", "503"
                ),
            },
        },
        "/api/v1/app/keys/{id}": {
            "parameters": [
                {
                    "in": "path",
                    "name": "id",
                    "required": True,
                    "description": "The key's id.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "delete": {
                "operationId": "revokeKey",
                "tags": ["App"],
                "summary": "Revoke a partner key",
                "description": "It stops working at once, in every process (no credential is remembered). "
                f"Revoking a revoked key changes nothing. {ADMIN_ONLY}",
                "responses": responses(ref("KeyResponse"), "401", "403", "404", "409", "429", "500", "503"),
            },
        },
    }
