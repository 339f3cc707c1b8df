"""Response schemas of /api: Pipedrive's Goals envelopes (passed through) and pd_app's error envelope.

These describe what comes back rather than validate anything, so they are plain JSON Schema.
"""

from typing import Any

from ..errors import error_codes_by_status
from ..webhooks.events import EVENT_TYPES
from .validation import DETAIL_CODES

_BY_STATUS = error_codes_by_status()
ERROR_CODES = tuple(sorted({code for codes in _BY_STATUS.values() for code in codes}))

# HTTP status -> (component name, when); the codes of each come from errors.py's tables.
_ERROR_DOCS = {
    400: (
        "ValidationFailed",
        "The request is invalid (or Pipedrive refused it); `details` lists every problem.",
    ),
    401: (
        "Unauthorized",
        "No valid credential, or Pipedrive no longer accepts the installation: the user must install again.",
    ),
    402: ("PaymentRequired", "The company's Pipedrive account is not active."),
    403: ("Forbidden", "The credential may not do this, or the installation lacks a scope."),
    404: ("NotFound", "No such goal (or webhook, in this company)."),
    405: ("MethodNotAllowed", "The path does not take this method."),
    409: (
        "Conflict",
        "The app is not installed for the credential's company and user, or (a write) the first request with "
        "this `Idempotency-Key` is still running: send it again after `Retry-After` seconds.",
    ),
    413: ("PayloadTooLarge", "The request body is too large."),
    414: ("UriTooLong", "The URL is longer than the server takes (answered before the app runs)."),
    415: ("UnsupportedMediaType", "The body is not `application/json`."),
    422: (
        "IdempotencyKeyReused",
        "The `Idempotency-Key` was used for a different request (method, path or body) in the last 24 hours.",
    ),
    431: (
        "HeadersTooLarge",
        "The request's headers are larger than the server takes (answered before the app runs).",
    ),
    429: (
        "RateLimited",
        "Over the credential's own limit or held back by Pipedrive's throttle (`rate_limited`), or the "
        "company's daily budget is spent (`budget_exhausted`): wait `Retry-After` seconds. Nothing was sent "
        "to Pipedrive.",
    ),
    500: ("InternalError", "pd_app failed unexpectedly."),
    502: (
        "UpstreamError",
        "Pipedrive answered with an error; for a write, whether it happened is unknown (`outcome_unknown`).",
    ),
    503: ("UpstreamUnavailable", "Pipedrive cannot be reached: retry after `Retry-After` seconds."),
    504: (
        "OutcomeUnknown",
        "Pipedrive did not answer a write in time: it may or may not have happened. Read before retrying.",
    ),
}
ERROR_RESPONSES = {
    str(status): (*_ERROR_DOCS[status], codes)
    for status, codes in _BY_STATUS.items()
    if status in _ERROR_DOCS
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
}
IDEMPOTENT_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` on the stored answer to an earlier request with the same `Idempotency-Key` "
        "(any status): nothing was sent to Pipedrive this time.",
        "schema": {"type": "string", "const": "true"},
    }
}

_SERVICE_ENVELOPE = {
    "success": {"type": "boolean", "const": True},
    "statusCode": {"type": "integer", "examples": [20000]},
    "statusText": {"type": "string", "examples": ["OK"]},
    "service": {"type": "string", "examples": ["statistics-goals-api"]},
}
_ID_LIST = {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
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
                            "stage_id": {"type": ["integer", "null"]},
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
                    "currency_id": {"type": ["integer", "null"]},
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
            "company_name": {"type": ["string", "null"]},
            "company_domain": {"type": ["string", "null"]},
            "user_id": {"type": "integer"},
            "user_name": {"type": ["string", "null"]},
            "is_admin": {
                "type": ["boolean", "null"],
                "description": "Whether `/users/me` said the user is an admin (`access` or `is_admin`).",
            },
            "locale": {
                "type": ["string", "null"],
                "description": "The user's locale from `/users/me` at install, e.g. `en_GB` (null: unknown).",
            },
            "default_currency": {
                "type": ["string", "null"],
                "description": "The user's default currency code from `/users/me` at install, e.g. `EUR`.",
            },
            "timezone_name": {
                "type": ["string", "null"],
                "description": "The user's time zone from `/users/me` at install, e.g. `Europe/London`.",
            },
            "status": {"type": "string", "enum": ["active", "reauth_required", "uninstalled"]},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "api_domain": {"type": ["string", "null"], "description": "The company's Pipedrive API address."},
            "access_token_expires_at": _NULLABLE_TIME,
            "access_token_expires_in": {
                **_NULLABLE_INT,
                "description": "Seconds until the access token expires.",
            },
            "installed_at": _NULLABLE_TIME,
            "last_refreshed_at": _NULLABLE_TIME,
            "rate_limit": {
                "anyOf": [{"$ref": "#/components/schemas/RateLimit"}, {"type": "null"}],
                "description": "The last rate-limit figures Pipedrive sent (null: none yet).",
            },
            "throttled_until": {
                **_NULLABLE_TIME,
                "description": "After Pipedrive's 429: until when the app answers `rate_limited` itself.",
            },
            "budget": {"$ref": "#/components/schemas/Budget"},
            "credential": {
                "type": "object",
                "description": "The credential of this request.",
                "properties": {
                    "kind": {"type": "string", "enum": ["key", "jwt"]},
                    "scope": {"type": "string"},
                    "user_bound": {"type": "boolean"},
                    "installation_id": {
                        "type": "integer",
                        "description": "The installation serving this credential (`user_id`, `status` "
                        "above are its own). A partner key's never changes by itself.",
                    },
                },
            },
        },
    },
    "GoalHistoryResponse": {
        "type": "object",
        "required": ["success", "data"],
        "properties": {
            "success": {"type": "boolean", "const": True},
            "data": {
                "type": "object",
                "required": ["goal_id", "points"],
                "properties": {
                    "goal_id": {"type": "string"},
                    "points": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["date", "actual", "target", "progress"],
                            "properties": {
                                "date": {"type": "string", "format": "date", "description": "UTC day"},
                                "actual": {
                                    "type": "number",
                                    "description": "What Pipedrive's results call "
                                    "`progress`: the amount achieved.",
                                },
                                "target": {"type": ["number", "null"]},
                                "progress": {
                                    "type": ["number", "null"],
                                    "description": "actual / target (0.4 = 40 %).",
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "WebhookRequest": {
        "type": "object",
        "required": ["url", "events"],
        "additionalProperties": False,
        "properties": {
            "url": {
                "type": "string",
                "format": "uri",
                "maxLength": 2000,
                "description": "Absolute http(s) URL without credentials; https:// and a public host in "
                "production.",
            },
            "events": {
                "type": "array",
                "minItems": 1,
                "description": "The events to deliver; a name given twice counts once.",
                "items": {"type": "string", "enum": list(EVENT_TYPES)},
            },
        },
    },
    "Webhook": {
        "type": "object",
        "description": "A registered webhook; never its secret.",
        "required": ["id", "url", "events", "created_at", "failing"],
        "properties": {
            "id": {"type": "integer"},
            "company_id": {"type": "integer"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
            "created_at": {"type": "string", "format": "date-time"},
            "failing": {
                "type": "boolean",
                "description": "A delivery kept failing for 24 h: later events are kept, and only the oldest "
                "is retried (hourly) until one succeeds.",
            },
            "failing_since": _NULLABLE_TIME,
            "pending_deliveries": {"type": "integer", "minimum": 0},
            "last_attempts": {
                "type": "array",
                "description": "The latest delivery attempts, newest first.",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "event_id": {"type": "string"},
                        "status": {
                            **_NULLABLE_INT,
                            "description": "The receiver's HTTP status (null: none).",
                        },
                        "duration_ms": {"type": "integer"},
                        "error": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "WebhookCreatedResponse": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "const": True},
            "data": {
                "allOf": [
                    {"$ref": "#/components/schemas/Webhook"},
                    {
                        "type": "object",
                        "required": ["secret"],
                        "properties": {
                            "secret": {
                                "type": "string",
                                "description": "The signing secret (`whsec_…`), shown only here.",
                            }
                        },
                    },
                ]
            },
        },
    },
    "WebhooksResponse": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "const": True},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}},
        },
    },
    "WebhookDeletedResponse": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "const": True},
            "data": {"type": "object", "properties": {"id": {"type": "integer"}}},
        },
    },
    "Budget": {
        "type": "object",
        "description": "The company's Pipedrive tokens spent by this app today (UTC), against its daily cap.",
        "required": ["spent_today", "cap", "resets_at"],
        "properties": {
            "spent_today": {"type": "integer", "minimum": 0},
            "cap": {"type": "integer", "minimum": 0, "description": "COMPANY_DAILY_TOKEN_CAP; 0: no cap."},
            "resets_at": {"type": "string", "format": "date-time", "description": "The next midnight UTC."},
        },
    },
    "RateLimit": {
        "type": "object",
        "description": "Pipedrive's rate-limit headers without the `x-` prefix (each only when it was sent).",
        "properties": {
            "ratelimit-limit": {"type": "integer"},
            "ratelimit-remaining": {"type": "integer"},
            "ratelimit-reset": {"type": "integer", "description": "Seconds until the burst window resets."},
            "daily-requests-left": {"type": "integer"},
            "daily-ratelimit-token-limit": {"type": "integer"},
            "daily-ratelimit-token-remaining": {"type": "integer"},
            "at": {"type": "string", "format": "date-time", "description": "When these figures were seen."},
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
            "errorCode": {
                "type": "integer",
                "description": "The HTTP status again, as Pipedrive's errors carry it (its SDKs pass on "
                "only the body).",
            },
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
            "code": {
                "type": "string",
                "description": "A short machine code. From request validation: "
                + ", ".join(DETAIL_CODES)
                + "; `invalid_json`: the body does not parse; `upstream_rejected`: Pipedrive refused it.",
            },
        },
    },
}

VALIDATION_EXAMPLE = {
    "success": False,
    "error": "The request has 2 problems.",
    "errorCode": 400,
    "error_info": "Fix each entry of `details` and send it again.",
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
