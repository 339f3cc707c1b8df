"""Pydantic models of the Goals requests: the single source of validation and of the OpenAPI schemas.

Cross-field rules (currency only with sums, params per goal type, date order) are model validators that look
at the raw input, so they are reported together with the field errors instead of only once those are fixed.

PUT bodies: every field is optional, but an object that is given is validated whole, with the POST rules
(``expected_outcome`` needs ``target`` and ``tracking_metric``, ``duration`` needs ``start`` and ``end``...).
Pipedrive documents each of these objects as one structure and does not say whether it merges a partial one;
sent whole, an update does exactly what the caller wrote, where a partial object could silently clear the
sub-fields it left out.
"""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError, PydanticKnownError

from .fields import (
    GOAL_TYPES,
    PARAMS_ALLOWED_FOR,
    AssigneeId,
    AssigneeType,
    DateStr,
    GoalTypeName,
    IdList,
    Interval,
    PositiveId,
    QueryBool,
    QueryId,
    QueryIdList,
    QueryNumber,
    Target,
    Title,
    TrackingMetric,
    is_date,
)

# (location inside the model, error code, predicate sentence)
Problem = tuple[tuple[str, ...], str, str]


def one_of(choices: tuple[str, ...]) -> str:
    """'a' / one of 'a' or 'b' / one of 'a', 'b' or 'c'."""
    quoted = [f"'{choice}'" for choice in choices]
    if len(quoted) == 1:
        return quoted[0]
    return "one of " + ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _tidy_schema(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)  # "Expected Outcome.Target": generated from the name, says nothing more
        # "default: null" on a field that must not be null would mislead: omitted is not null.
        if "default" in prop and prop["default"] is None:
            del prop["default"]


def _non_empty_object(schema: dict[str, Any]) -> None:
    _tidy_schema(schema)
    schema["minProperties"] = 1


def _as_init_error(err: ErrorDetails) -> InitErrorDetails:
    try:
        PydanticKnownError(err["type"], err.get("ctx"))
    except KeyError:  # one of our own codes
        kind = PydanticCustomError(err["type"], err["msg"])
        return InitErrorDetails(type=kind, loc=err["loc"], input=err["input"])
    return InitErrorDetails(type=err["type"], loc=err["loc"], input=err["input"], ctx=err.get("ctx", {}))


class RequestModel(BaseModel):
    """Base of every request model: strict types, unknown keys rejected, cross-field rules collected."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_tidy_schema)

    @classmethod
    def cross_field_problems(cls, data: dict[str, Any]) -> list[Problem]:
        """Problems that involve more than one field, judged on the raw input."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _collect_cross_field_problems(cls, data: Any, handler: Any) -> Any:
        problems = cls.cross_field_problems(data) if isinstance(data, dict) else []
        errors: list[InitErrorDetails] = []
        try:
            model = handler(data)
        except ValidationError as exc:
            if not problems:
                raise
            errors = [_as_init_error(err) for err in exc.errors(include_url=False)]
        if not problems:
            return model
        for loc, code, predicate in problems:
            value = data.get(loc[0]) if len(loc) == 1 else None
            errors.append(InitErrorDetails(type=PydanticCustomError(code, predicate), loc=loc, input=value))
        raise ValidationError.from_exception_data(cls.__name__, errors)


class Assignee(RequestModel):
    """Who the goal is assigned to."""

    id: AssigneeId = Field(description="The id of the person, company or team.")
    type: AssigneeType = Field(description="What kind of assignee `id` refers to.")


class GoalParams(RequestModel):
    """Filters of the goal type. Omit a key, or set an array key to null, to track everything."""

    pipeline_id: IdList | None = Field(
        None, description="Pipelines to track; null tracks all. Any goal type."
    )
    stage_id: PositiveId = Field(None, description="The stage to track. Only for deals_progressed goals.")
    activity_type_id: IdList | None = Field(
        None, description="Activity types to track; null tracks all. Only for activities_* goals."
    )


class GoalType(RequestModel):
    """What the goal counts."""

    name: GoalTypeName = Field(description="The goal type.")
    params: GoalParams = Field(
        default_factory=GoalParams, description="Filters of the goal type; an omitted params is `{}`."
    )

    @classmethod
    def cross_field_problems(cls, data: dict[str, Any]) -> list[Problem]:
        name, params = data.get("name"), data.get("params")
        if name not in GOAL_TYPES:
            return []  # an unknown name is reported by the field itself
        if not isinstance(params, dict):
            return []
        problems = []
        for key, allowed in PARAMS_ALLOWED_FOR.items():
            if key in params and name not in allowed:
                predicate = f"is only allowed when type.name is {one_of(allowed)}"
                problems.append((("params", key), "not_allowed", predicate))
        return problems


class ExpectedOutcome(RequestModel):
    """The target of the goal and how progress towards it is measured."""

    target: Target = Field(description="The number to reach (a count, or an amount for sum goals).")
    tracking_metric: TrackingMetric = Field(
        description="Count the items (quantity) or add up their value (sum)."
    )
    currency_id: PositiveId = Field(
        None, description="The currency of a sum goal. Not allowed for quantity goals."
    )

    @classmethod
    def cross_field_problems(cls, data: dict[str, Any]) -> list[Problem]:
        if data.get("tracking_metric") == "quantity" and "currency_id" in data:
            return [(("currency_id",), "not_allowed", "is only allowed when tracking_metric is 'sum'")]
        return []


class Duration(RequestModel):
    """When the goal runs."""

    start: DateStr = Field(description="The first day of the goal (YYYY-MM-DD).")
    end: DateStr | None = Field(
        description="The last day of the goal (YYYY-MM-DD), not before `start`; null for an open-ended goal."
    )

    @classmethod
    def cross_field_problems(cls, data: dict[str, Any]) -> list[Problem]:
        start, end = data.get("start"), data.get("end")
        if is_date(start) and is_date(end) and end < start:
            return [(("end",), "invalid_range", "must not be before duration.start")]
        return []


_TITLE = "The title of the goal."
_ASSIGNEE = 'Who the goal is assigned to, e.g. `{"id": 1, "type": "person"}`.'
_TYPE = 'What the goal counts, e.g. `{"name": "deals_won", "params": {"pipeline_id": [1, 2]}}`.'
_OUTCOME = 'The target, e.g. `{"target": 50, "tracking_metric": "sum", "currency_id": 1}`.'
_DURATION = 'When the goal runs, e.g. `{"start": "2025-01-01", "end": null}`.'
_INTERVAL = "The period over which progress is counted."


class AddGoalRequest(RequestModel):
    """The body of `POST /api/v1/goals`."""

    title: Title = Field(None, description=_TITLE)
    assignee: Assignee = Field(description=_ASSIGNEE)
    type: GoalType = Field(description=_TYPE)
    expected_outcome: ExpectedOutcome = Field(description=_OUTCOME)
    duration: Duration = Field(description=_DURATION)
    interval: Interval = Field(description=_INTERVAL)


class UpdateGoalRequest(RequestModel):
    """The body of `PUT /api/v1/goals/{id}`: any of the goal's fields; each object given is replaced whole."""

    title: Title = Field(None, description=_TITLE)
    assignee: Assignee = Field(None, description=_ASSIGNEE)
    type: GoalType = Field(None, description=_TYPE)
    expected_outcome: ExpectedOutcome = Field(None, description=_OUTCOME)
    duration: Duration = Field(None, description=_DURATION)
    interval: Interval = Field(None, description=_INTERVAL)

    model_config = ConfigDict(json_schema_extra=_non_empty_object)

    @classmethod
    def cross_field_problems(cls, data: dict[str, Any]) -> list[Problem]:
        if data.keys() & cls.model_fields.keys():
            return []
        names = ", ".join(cls.model_fields)
        return [((), "empty", f"must contain at least one of {names}: there is nothing to update")]


class QueryModel(RequestModel):
    """A query string: every field is optional and named by its dotted key."""

    # Keys whose value is an array, given by repeating the key (?k=1&k=2).
    array_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def cross_field_problems(cls, data: dict[str, Any]) -> list[Problem]:
        start, end = data.get("period.start"), data.get("period.end")
        if start is not None and end is None:
            return [(("period.end",), "required", "is required when period.start is given")]
        if end is not None and start is None:
            return [(("period.start",), "required", "is required when period.end is given")]
        if is_date(start) and is_date(end) and end < start:
            return [(("period.end",), "invalid_range", "must not be before period.start")]
        return []


_EVERYONE = " If given, everyone's goals are searched, not only the caller's."


class FindGoalsQuery(QueryModel):
    """The query of `GET /api/v1/goals/find`."""

    array_keys: ClassVar[frozenset[str]] = frozenset(
        {"type.params.pipeline_id", "type.params.activity_type_id"}
    )

    type_name: GoalTypeName = Field(None, alias="type.name", description="The goal type." + _EVERYONE)
    title: Title = Field(None, description="The title of the goal.")
    is_active: QueryBool = Field(
        None,
        description="Active (true) or inactive (false) goals; `1` and `0` work too. Upstream default: true.",
        json_schema_extra={"default": True},
    )
    assignee_id: QueryId = Field(
        None,
        alias="assignee.id",
        description="The assignee's id. When omitted, only the caller's goals are found.",
    )
    assignee_type: AssigneeType = Field(
        None, alias="assignee.type", description="The assignee type." + _EVERYONE
    )
    target: QueryNumber = Field(None, alias="expected_outcome.target", description="The target." + _EVERYONE)
    tracking_metric: TrackingMetric = Field(
        None, alias="expected_outcome.tracking_metric", description="The tracking metric." + _EVERYONE
    )
    currency_id: QueryId = Field(
        None, alias="expected_outcome.currency_id", description="The currency of sum goals." + _EVERYONE
    )
    pipeline_id: QueryIdList = Field(
        None,
        alias="type.params.pipeline_id",
        description="Pipeline ids; repeat the key for several." + _EVERYONE,
    )
    stage_id: QueryId = Field(
        None, alias="type.params.stage_id", description="The stage id (deals_progressed goals)." + _EVERYONE
    )
    activity_type_id: QueryIdList = Field(
        None,
        alias="type.params.activity_type_id",
        description="Activity type ids (activities_* goals); repeat the key for several." + _EVERYONE,
    )
    period_start: DateStr = Field(
        None,
        alias="period.start",
        description="The first day of the period to find goals in; needs period.end.",
    )
    period_end: DateStr = Field(
        None,
        alias="period.end",
        description="The last day of the period to find goals in: needs period.start, not before it.",
    )


class GoalResultsQuery(QueryModel):
    """The query of `GET /api/v1/goals/{id}/results`."""

    period_start: DateStr = Field(
        alias="period.start", description="The first day of the period; not before the goal's start."
    )
    period_end: DateStr = Field(
        alias="period.end",
        description="The last day of the period, not before period.start; not after the goal's end.",
    )
