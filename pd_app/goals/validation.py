"""Validation of the five Goals requests, with every problem reported as one entry of ``details``."""

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from werkzeug.datastructures import MultiDict

from .fields import GoalId
from .models import AddGoalRequest, FindGoalsQuery, GoalResultsQuery, QueryModel, UpdateGoalRequest

# A hostile request can hold thousands of unknown keys: list this many problems, then say how many more.
MAX_DETAILS = 50
MAX_FIELD_LENGTH = 100

# pydantic's error types -> our code and a predicate completing "<field> ...". Placeholders come from ctx.
_PYDANTIC_ERRORS = {
    "missing": ("required", "is required"),
    "extra_forbidden": ("unknown_field", "is not a known field; check its spelling"),
    "model_type": ("invalid_type", "must be a JSON object"),
    "model_attributes_type": ("invalid_type", "must be a JSON object"),
    "dict_type": ("invalid_type", "must be a JSON object"),
    "string_type": ("invalid_type", "must be a string"),
    "int_type": ("invalid_type", "must be an integer"),
    "int_parsing": ("invalid_type", "must be an integer"),
    "int_from_float": ("invalid_type", "must be an integer"),
    "float_type": ("invalid_type", "must be a number"),
    "float_parsing": ("invalid_type", "must be a number"),
    "finite_number": ("invalid_type", "must be a finite number"),
    "bool_type": ("invalid_type", "must be true or false"),
    "bool_parsing": ("invalid_type", "must be true or false"),
    "list_type": ("invalid_type", "must be an array"),
    "literal_error": ("invalid_choice", "must be one of {expected}"),
    "greater_than_equal": ("too_small", "must be at least {ge}"),
    "greater_than": ("too_small", "must be greater than {gt}"),
    "less_than_equal": ("too_large", "must be at most {le}"),
    "less_than": ("too_large", "must be less than {lt}"),
    "string_too_short": ("empty", "must not be empty"),
    "string_too_long": ("too_long", "must be at most {max_length} characters long"),
    "too_long": ("too_many_items", "must have at most {max_length} items"),
}
# Codes raised by our own rules (fields.py, models.py, this module); their message is already a predicate.
OWN_CODES = frozenset(
    {"required", "duplicate", "empty", "invalid_date", "invalid_format", "invalid_range", "not_allowed"}
    | {"too_many_items"}
)
DETAIL_CODES = tuple(
    sorted({code for code, _ in _PYDANTIC_ERRORS.values()} | OWN_CODES | {"invalid", "too_many_problems"})
)

_goal_id_adapter = TypeAdapter(GoalId)


class ValidationFailed(Exception):
    """The request is invalid; ``details`` lists every problem as ``{"field", "message", "code"}``."""

    def __init__(self, details: list[dict[str, str]]):
        super().__init__(f"The request has {len(details)} problem(s).")
        self.details = details


def _detail(field: str, code: str, predicate: str) -> dict[str, str]:
    return {"field": field, "message": f"{field} {predicate}.", "code": code}


def _path(loc: Iterable[int | str], root: str) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if len(path) > MAX_FIELD_LENGTH:  # an unknown key is the caller's text: do not echo a megabyte of it
        path = path[:MAX_FIELD_LENGTH] + "…"
    return path or root


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _details_of(exc: ValidationError, root: str) -> list[dict[str, str]]:
    details = []
    for err in exc.errors(include_url=False):
        details.append(_describe(err, root))
    return details


def _describe(err: ErrorDetails, root: str) -> dict[str, str]:
    field = _path(err["loc"], root)
    kind = err["type"]
    if kind == "extra_forbidden" and root == "query":
        return _detail(
            field, "unknown_field", "is not a query parameter of this operation; check its spelling"
        )
    if kind in _PYDANTIC_ERRORS:
        code, predicate = _PYDANTIC_ERRORS[kind]
        ctx = {key: _number(value) for key, value in err.get("ctx", {}).items()}
        return _detail(field, code, predicate.format(**ctx))
    if kind in OWN_CODES:
        return _detail(field, kind, err["msg"])
    return {"field": field, "message": f"{field}: {err['msg']}.", "code": "invalid"}


def _fail_if_any(details: list[dict[str, str]], root: str) -> None:
    unique = list({(d["field"], d["code"], d["message"]): d for d in details}.values())
    if not unique:
        return
    if len(unique) > MAX_DETAILS:
        more = len(unique) - MAX_DETAILS
        unique = unique[:MAX_DETAILS] + [
            _detail(root, "too_many_problems", f"has {more} more problem(s) not listed; fix these first")
        ]
    raise ValidationFailed(unique)


def _goal_id_details(goal_id: object) -> list[dict[str, str]]:
    try:
        _goal_id_adapter.validate_python(goal_id)
    except ValidationError as exc:
        return _details_of(exc, "id")
    return []


def validate_goal_id(goal_id: str) -> str:
    """Pipedrive goal ids are strings (hex in practice): 1-64 of [A-Za-z0-9_-]."""
    _fail_if_any(_goal_id_details(goal_id), "id")
    return goal_id


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10f}".rstrip("0").rstrip(".")
    return str(value)


def _check_query(
    model: type[QueryModel], args: MultiDict, details: list[dict[str, str]]
) -> list[tuple[str, str]]:
    known = {field.alias or name for name, field in model.model_fields.items()}
    data: dict[str, Any] = {}
    for key, values in args.lists():
        if key in model.array_keys:
            data[key] = values
        else:
            if key in known and len(values) > 1:
                details.append(_detail(key, "duplicate", "is given more than once; give it at most once"))
            # The first value is still checked; an unknown key is left to the model (extras are forbidden).
            data[key] = values[0]
    try:
        query = model.model_validate(data)
    except ValidationError as exc:
        details.extend(_details_of(exc, "query"))
        return []
    normalized = []
    for key, value in query.model_dump(by_alias=True, exclude_unset=True).items():
        normalized.extend(
            (key, _query_value(item)) for item in (value if isinstance(value, list) else [value])
        )
    return normalized


def validate_find(args: MultiDict) -> list[tuple[str, str]]:
    """The query of getGoals, normalized for upstream: known keys only, arrays as repeated keys."""
    details: list[dict[str, str]] = []
    normalized = _check_query(FindGoalsQuery, args, details)
    _fail_if_any(details, "query")
    return normalized


def validate_query(model: type[QueryModel], args: MultiDict) -> list[tuple[str, str]]:
    """Any operation's query string checked against its model (the reference reads use this), normalized
    for upstream: known keys only, arrays as repeated keys."""
    details: list[dict[str, str]] = []
    normalized = _check_query(model, args, details)
    _fail_if_any(details, "query")
    return normalized


def validate_results(goal_id: str, args: MultiDict) -> list[tuple[str, str]]:
    """The query of getGoalResult: period.start and period.end, start not after end."""
    details = _goal_id_details(goal_id)
    normalized = _check_query(GoalResultsQuery, args, details)
    _fail_if_any(details, "query")
    return normalized


def _check_body(model: type[BaseModel], body: object, details: list[dict[str, str]]) -> dict[str, Any]:
    if body is None:
        details.append(_detail("body", "required", "is required: send a JSON object"))
        return {}
    try:
        goal = model.model_validate(body)
    except ValidationError as exc:
        details.extend(_details_of(exc, "body"))
        return {}
    normalized = goal.model_dump(mode="json", exclude_unset=True)
    if "type" in normalized:
        normalized["type"].setdefault("params", {})  # Pipedrive wants type.params; omitted means no filter
    return normalized


def validate_add(body: object) -> dict[str, Any]:
    """The JSON body of addGoal, normalized for upstream (numeric strings become numbers)."""
    details: list[dict[str, str]] = []
    normalized = _check_body(AddGoalRequest, body, details)
    _fail_if_any(details, "body")
    return normalized


def validate_update(goal_id: str, body: object) -> dict[str, Any]:
    """The JSON body of updateGoal: any of addGoal's fields, at least one; given objects whole."""
    details = _goal_id_details(goal_id)
    normalized = _check_body(UpdateGoalRequest, body, details)
    _fail_if_any(details, "body")
    return normalized
