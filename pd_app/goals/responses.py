"""Response schemas of /api: Pipedrive's Goals envelopes (passed through) and pd_app's error envelope.

These describe what comes back rather than validate anything, so they are plain JSON Schema.
"""

from typing import Any

from .validation import DETAIL_CODES

ERROR_CODES = (
    "unauthorized",
    "forbidden",
    "not_installed",
    "reauth_required",
    "validation_failed",
    "rate_limited",
    "upstream_unavailable",
    "upstream_error",
    "outcome_unknown",
    "not_found",
    "payload_too_large",
    "unsupported_media_type",
)

# HTTP status -> (component name, when, codes). Keep in step with the error handler's status table.
ERROR_RESPONSES = {
    "400": (
        "ValidationFailed",
        "The request is invalid; `details` lists every problem.",
        ["validation_failed"],
    ),
    "401": ("Unauthorized", "No credential, or one that is not valid.", ["unauthorized"]),
    "403": (
        "Forbidden",
        "The credential may not do this, the app is not installed for its company and user, or the user "
        "must install the app again.",
        ["forbidden", "not_installed", "reauth_required"],
    ),
    "404": ("NotFound", "No such goal, or no such path.", ["not_found"]),
    "413": ("PayloadTooLarge", "The request body is too large.", ["payload_too_large"]),
    "415": ("UnsupportedMediaType", "The body is not `application/json`.", ["unsupported_media_type"]),
    "429": ("RateLimited", "Too many requests: wait `Retry-After` seconds.", ["rate_limited"]),
    "502": ("UpstreamError", "Pipedrive answered with an error pd_app cannot pass on.", ["upstream_error"]),
    "503": (
        "UpstreamUnavailable",
        "Pipedrive cannot be reached: retry after `Retry-After` seconds.",
        ["upstream_unavailable"],
    ),
    "504": (
        "OutcomeUnknown",
        "Pipedrive did not answer a write in time: it may or may not have happened. Read before retrying.",
        ["outcome_unknown"],
    ),
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
}

_SERVICE_ENVELOPE = {
    "success": {"type": "boolean", "const": True},
    "statusCode": {"type": "integer", "examples": [20000]},
    "statusText": {"type": "string", "examples": ["OK"]},
    "service": {"type": "string", "examples": ["statistics-goals-api"]},
}
_ID_LIST = {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}
_NULLABLE_INT = {"type": ["integer", "null"]}
RESPONSE_SCHEMAS: dict[str, Any] = {
    "Goal": {
        "type": "object",
        "description": 'A goal as Pipedrive returns it; `type.name` may be a label ("Deals started").',
        "properties": {
            "id": {"type": "string"},
            "owner_id": {"type": "integer", "description": "The user who created the goal."},
            "title": {"type": "string"},
            "type": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "params": {
                        "type": "object",
                        "properties": {
                            "pipeline_id": _ID_LIST,
                            "stage_id": {"type": "integer"},
                            "activity_type_id": _ID_LIST,
                        },
                    },
                },
            },
            "assignee": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "type": {"type": "string"}},
            },
            "interval": {"type": "string"},
            "duration": {
                "type": "object",
                "properties": {"start": {"type": "string"}, "end": {"type": ["string", "null"]}},
            },
            "expected_outcome": {
                "type": "object",
                "properties": {
                    "target": {"type": "number"},
                    "tracking_metric": {"type": "string"},
                    "currency_id": {"type": "integer"},
                },
            },
            "is_active": {"type": "boolean"},
            "report_ids": {"type": "array", "items": {"type": "string"}},
        },
    },
    "GoalsResponse": {
        "type": "object",
        "properties": {
            **_SERVICE_ENVELOPE,
            "data": {
                "type": "object",
                "properties": {"goals": {"type": "array", "items": {"$ref": "#/components/schemas/Goal"}}},
            },
        },
    },
    "GoalResponse": {
        "type": "object",
        "properties": {
            **_SERVICE_ENVELOPE,
            "data": {"type": "object", "properties": {"goal": {"$ref": "#/components/schemas/Goal"}}},
        },
    },
    "GoalResultResponse": {
        "type": "object",
        "properties": {
            **_SERVICE_ENVELOPE,
            "data": {
                "type": "object",
                "properties": {
                    "goal": {"$ref": "#/components/schemas/Goal"},
                    "progress": {"type": "number", "description": "The progress made in the period."},
                },
            },
        },
    },
    "DeleteGoalResponse": {"type": "object", "properties": _SERVICE_ENVELOPE},
    "Installation": {
        "type": "object",
        "description": "The caller's installation. Never contains a token.",
        "properties": {
            "company_id": {"type": "integer"},
            "user_id": {"type": "integer"},
            "status": {"type": "string", "description": "The installation's lifecycle state, e.g. `active`."},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "access_token_expires_at": {"type": ["string", "null"], "format": "date-time"},
            "last_refreshed_at": {"type": ["string", "null"], "format": "date-time"},
            "rate_limit": {"$ref": "#/components/schemas/RateLimit"},
        },
    },
    "RateLimit": {
        "type": "object",
        "description": "The last rate-limit figures Pipedrive sent for this installation (null: none yet).",
        "properties": {
            "limit": _NULLABLE_INT,
            "remaining": _NULLABLE_INT,
            "reset_seconds": _NULLABLE_INT,
            "daily_requests_left": _NULLABLE_INT,
            "observed_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "InstallationResponse": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "const": True},
            "data": {"$ref": "#/components/schemas/Installation"},
        },
    },
    "Error": {
        "type": "object",
        "description": "Pipedrive's error envelope plus `code` and `details`.",
        "required": ["success", "error", "code"],
        "properties": {
            "success": {"type": "boolean", "const": False},
            "error": {"type": "string", "description": "What went wrong, for people."},
            "error_info": {"type": "string", "description": "What to do about it."},
            "code": {"type": "string", "enum": list(ERROR_CODES)},
            "details": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorDetail"}},
        },
    },
    "ErrorDetail": {
        "type": "object",
        "description": "One problem of a request.",
        "required": ["field", "message", "code"],
        "properties": {
            "field": {"type": "string", "description": "Dotted path, e.g. `expected_outcome.currency_id`."},
            "message": {"type": "string", "description": "A sentence naming the field and the fix."},
            "code": {"type": "string", "enum": list(DETAIL_CODES)},
        },
    },
}

VALIDATION_EXAMPLE = {
    "success": False,
    "error": "The request is not valid.",
    "error_info": "Fix the fields listed in details and send the request again.",
    "code": "validation_failed",
    "details": [
        {
            "field": "expected_outcome.currency_id",
            "message": "expected_outcome.currency_id is only allowed when tracking_metric is 'sum'.",
            "code": "not_allowed",
        },
        {
            "field": "duration.end",
            "message": "duration.end must not be before duration.start.",
            "code": "invalid_range",
        },
    ],
}
