"""The value types of Goals requests: enums, ids, numbers, dates and titles.

Each type is an ``Annotated`` pydantic type, so the rule that validates a value is also what its JSON Schema
(and so the OpenAPI document) is generated from. Custom errors carry a predicate ("must be ...") that
``validation.py`` prefixes with the field's dotted path.
"""

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer
from pydantic_core import PydanticCustomError

GOAL_TYPES = (
    "deals_won",
    "deals_progressed",
    "activities_completed",
    "activities_added",
    "deals_started",
    "revenue_forecast",
)
ASSIGNEE_TYPES = ("person", "company", "team")
TRACKING_METRICS = ("quantity", "sum")
INTERVALS = ("weekly", "monthly", "quarterly", "yearly")

# Which type.params keys go with which goal type. openapi-v1.yaml (addGoal and updateGoal, `type`) ties
# stage_id to deals_progressed and activity_type_id to activities_*; pipeline_id to none: every type takes it.
ACTIVITY_GOAL_TYPES = ("activities_completed", "activities_added")
PARAMS_ALLOWED_FOR = {
    "pipeline_id": GOAL_TYPES,
    "stage_id": ("deals_progressed",),
    "activity_type_id": ACTIVITY_GOAL_TYPES,
}

# Bounds so that nothing a caller sends can overflow a database column or a report upstream.
MAX_ID = 2**31 - 1
MAX_TARGET = 10**15
MAX_ITEMS = 100
MAX_TITLE = 255


def numerals_up_to(limit: int) -> str:
    """A regular expression (JSON Schema's and Python's) of the decimal numerals of 1..limit, no leading zero:
    the document's pattern for an id given as a string says exactly which strings the validator takes."""
    digits = str(limit)
    alternatives = ["[1-9]" + (f"[0-9]{{{n - 1}}}" if n > 1 else "") for n in range(1, len(digits))]
    for i, digit in enumerate(digits):  # as long as limit: its first i digits, a smaller one, any rest
        low, high, rest = (1 if i == 0 else 0), int(digit) - 1, len(digits) - i - 1
        if high >= low:
            smaller = str(low) if low == high else f"[{low}-{high}]"
            alternatives.append(digits[:i] + smaller + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(digits)
    return "^(?:" + "|".join(alternatives) + ")$"


DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
GOAL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DIGITS_PATTERN = r"^[0-9]{1,10}$"  # a query string's id: its value is then checked as a number
ID_STRING_PATTERN = numerals_up_to(MAX_ID)  # a body's id given as a string: 1..MAX_ID exactly
# A body's target given as a string: at most 15 digits before the point, so never over MAX_TARGET.
DECIMAL_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,10})?$"
# A query string's number: what a JSON number looks like (a client's float may come as 2.5e-05).
QUERY_NUMBER_PATTERN = r"^-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?$"
# Python's re: explicit ASCII classes, used with fullmatch (no "$"-before-newline surprise).
_DATE_RE = re.compile(DATE_PATTERN.strip("^$"))
_GOAL_ID_RE = re.compile(GOAL_ID_PATTERN.strip("^$"))
_DIGITS_RE = re.compile(DIGITS_PATTERN.strip("^$"))
_ID_STRING_RE = re.compile(ID_STRING_PATTERN.strip("^$"))
_DECIMAL_RE = re.compile(DECIMAL_PATTERN.strip("^$"))
_QUERY_NUMBER_RE = re.compile(QUERY_NUMBER_PATTERN.strip("^$"))


GoalTypeName = Literal[GOAL_TYPES]
AssigneeType = Literal[ASSIGNEE_TYPES]
TrackingMetric = Literal[TRACKING_METRICS]
Interval = Literal[INTERVALS]


def _digits_to_int(value: Any) -> Any:
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value):
        return int(value)
    return value


def _id_string_to_int(value: Any) -> Any:
    if isinstance(value, str) and _ID_STRING_RE.fullmatch(value):
        return int(value)
    return value


def _integral_to_int(value: Any) -> Any:
    # JSON Schema's integer is any number without a fractional part: 30805686.0 is one.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _decimal_to_number(value: Any) -> Any:
    if isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        return float(value)
    return value


def _query_number(value: Any) -> Any:
    if isinstance(value, str) and _QUERY_NUMBER_RE.fullmatch(value):
        return float(value)
    return value


def _integral(value: float) -> int | float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _query_bool(value: Any) -> Any:
    if isinstance(value, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(value.lower(), value)
    return value


def _at_most_items(value: Any) -> Any:
    # Checked before the items are, so a huge array costs one error, not one per item.
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        raise PydanticCustomError("too_many_items", f"must have at most {MAX_ITEMS} items")
    return value


def _calendar_date(value: str) -> str:
    if not _DATE_RE.fullmatch(value):
        raise PydanticCustomError("invalid_date", "must be a date in YYYY-MM-DD format")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("invalid_date", "is not a real calendar date") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "must not be blank")
    return value


def _goal_id(value: str) -> str:
    if not _GOAL_ID_RE.fullmatch(value):
        raise PydanticCustomError("invalid_format", "must be 1 to 64 letters, digits, '_' or '-'")
    return value


def _or_string(pattern: str, note: str):
    """json_schema_extra: the value may also be given as a string matching ``pattern``."""

    def extend(schema: dict[str, Any]) -> None:
        typed = {key: schema.pop(key) for key in ("type", "minimum", "maximum") if key in schema}
        schema["anyOf"] = [typed, {"type": "string", "pattern": pattern, "description": note}]

    return extend


def is_date(value: Any) -> bool:
    """True when ``value`` passes the date rule (used by cross-field rules on raw input)."""
    try:
        return isinstance(value, str) and _calendar_date(value) == value
    except PydanticCustomError:
        return False


# Field constraints come before any BeforeValidator so that they bind to the number itself and reach the JSON
# Schema as minimum/maximum.
PositiveId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_integral_to_int)]
# The spec's own example sends assignee.id as "1": accept a digit string, normalize to an int.
AssigneeId = Annotated[
    PositiveId,
    BeforeValidator(_id_string_to_int),
    Field(json_schema_extra=_or_string(ID_STRING_PATTERN, "The same id as a digit string.")),
]
IdList = Annotated[list[PositiveId], Field(max_length=MAX_ITEMS), BeforeValidator(_at_most_items)]
Number = Annotated[
    float,
    Field(ge=0, le=MAX_TARGET, allow_inf_nan=False),
    AfterValidator(_integral),
    PlainSerializer(_integral),
]
# The spec's description shows target as "50": accept a decimal string, normalize to a number.
Target = Annotated[
    Number,
    BeforeValidator(_decimal_to_number),
    Field(json_schema_extra=_or_string(DECIMAL_PATTERN, "The same number as a decimal string.")),
]
QueryNumber = Annotated[Number, BeforeValidator(_query_number)]
DateStr = Annotated[str, AfterValidator(_calendar_date), Field(json_schema_extra={"format": "date"})]
Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE), AfterValidator(_not_blank)]
GoalId = Annotated[str, AfterValidator(_goal_id), Field(json_schema_extra={"pattern": GOAL_ID_PATTERN})]

# A query string carries only strings: these parse them, and document the logical type.
QueryId = Annotated[PositiveId, BeforeValidator(_digits_to_int)]
QueryIdList = Annotated[list[QueryId], Field(max_length=MAX_ITEMS), BeforeValidator(_at_most_items)]
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]
