"""The five Goals operations' requests: validation and OpenAPI generated from the same pydantic models.

Modules: ``fields`` (value types and bounds), ``models`` (request models and cross-field rules),
``validation`` (the validate_* functions and the ``details`` format), ``responses`` and ``openapi``
(the document served at /api/openapi.json).
"""

from .fields import ASSIGNEE_TYPES, GOAL_TYPES, INTERVALS, TRACKING_METRICS
from .openapi import openapi_document
from .responses import ERROR_CODES
from .validation import (
    DETAIL_CODES,
    ValidationFailed,
    validate_add,
    validate_find,
    validate_goal_id,
    validate_query,
    validate_results,
    validate_update,
)

__all__ = [
    "ASSIGNEE_TYPES",
    "DETAIL_CODES",
    "ERROR_CODES",
    "GOAL_TYPES",
    "INTERVALS",
    "TRACKING_METRICS",
    "ValidationFailed",
    "openapi_document",
    "validate_add",
    "validate_find",
    "validate_goal_id",
    "validate_query",
    "validate_results",
    "validate_update",
]
