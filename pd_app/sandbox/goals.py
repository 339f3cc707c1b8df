"""Goals as Pipedrive's statistics-goals-api validates them: the add body, and a PUT merged into a goal.

Pure functions over plain dicts (the JSON shape of a goal); the state module stores them under its lock.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

GOAL_TYPES = (
    "deals_won",
    "deals_progressed",
    "activities_completed",
    "activities_added",
    "deals_started",
    "revenue_forecast",
)
DEFAULT_TITLES = {
    "deals_won": "Deals won",
    "deals_progressed": "Deals progressed",
    "activities_completed": "Activities completed",
    "activities_added": "Activities added",
    "deals_started": "Deals started",
    "revenue_forecast": "Revenue forecast",
}
ASSIGNEE_TYPES = ("person", "company", "team")
INTERVALS = ("weekly", "monthly", "quarterly", "yearly")
METRICS = ("quantity", "sum")
EDITABLE = ("title", "assignee", "type", "expected_outcome", "duration", "interval")
REQUIRED = ("type", "assignee", "expected_outcome", "duration", "interval")
AssigneeCheck = Callable[[int, str], bool]


class GoalError(ValueError):
    """Bad input: answered as 400 with the message in `error`."""


def parse_date(value: Any, name: str) -> date:
    if not isinstance(value, str):
        raise GoalError(f"{name} must be a date in format YYYY-MM-DD")
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise GoalError(f"{name} must be a date in format YYYY-MM-DD") from None


def as_int(value: Any, name: str) -> int:
    # The spec's own examples send ids as strings ("id": "1"), so digit strings are accepted too.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise GoalError(f"{name} must be an integer")


def as_number(value: Any, name: str) -> int | float:
    if isinstance(value, bool):
        raise GoalError(f"{name} must be a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise GoalError(f"{name} must be a number") from None
    if not isinstance(value, int | float) or value != value or value in (float("inf"), float("-inf")):
        raise GoalError(f"{name} must be a number")
    return int(value) if float(value).is_integer() else value


def int_list(value: Any, name: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise GoalError(f"{name} must be an array of integers or null")
    return [as_int(item, name) for item in value]


def one_of(value: Any, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise GoalError(f"{name} must be one of: {', '.join(allowed)}")
    return value


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise GoalError(f"{key} must be an object")
    return value


def _clean_type(body: Mapping[str, Any]) -> dict[str, Any]:
    raw = _object(body, "type")
    name = one_of(raw.get("name"), GOAL_TYPES, "type.name")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise GoalError("type.params must be an object")
    # openapi-v1.yaml (addGoal, `type`): stage_id only for deals_progressed, activity_type_id only for
    # activities_*; pipeline_id is tied to no type, so every type takes it.
    allowed = {"pipeline_id"}
    if name == "deals_progressed":
        allowed.add("stage_id")
    if name.startswith("activities_"):
        allowed.add("activity_type_id")
    unexpected = sorted(set(params) - allowed)
    if unexpected:
        raise GoalError(f"type.params.{unexpected[0]} is not applicable to goals of type {name}")
    clean: dict[str, Any] = {"pipeline_id": int_list(params.get("pipeline_id"), "type.params.pipeline_id")}
    if "stage_id" in allowed:
        stage = params.get("stage_id")
        clean["stage_id"] = None if stage is None else as_int(stage, "type.params.stage_id")
    if "activity_type_id" in allowed:
        clean["activity_type_id"] = int_list(params.get("activity_type_id"), "type.params.activity_type_id")
    return {"name": name, "params": clean}


def _clean_outcome(body: Mapping[str, Any]) -> dict[str, Any]:
    raw = _object(body, "expected_outcome")
    target = as_number(raw.get("target"), "expected_outcome.target")
    if target < 0:
        raise GoalError("expected_outcome.target must not be negative")
    metric = one_of(raw.get("tracking_metric"), METRICS, "expected_outcome.tracking_metric")
    clean: dict[str, Any] = {"target": target, "tracking_metric": metric}
    currency = raw.get("currency_id")
    if currency is not None:
        if metric != "sum":
            raise GoalError("expected_outcome.currency_id is only allowed when tracking_metric is sum")
        clean["currency_id"] = as_int(currency, "expected_outcome.currency_id")
    return clean


def _clean_duration(body: Mapping[str, Any]) -> dict[str, Any]:
    raw = _object(body, "duration")
    start = parse_date(raw.get("start"), "duration.start")
    end = raw.get("end")
    if end is not None and parse_date(end, "duration.end") < start:
        raise GoalError("duration.end must not be before duration.start")
    return {"start": start.isoformat(), "end": end}


def clean_fields(body: Mapping[str, Any], assignee_ok: AssigneeCheck) -> dict[str, Any]:
    """The editable fields of a goal, validated and normalised; raises GoalError."""
    assignee = _object(body, "assignee")
    assignee_id = as_int(assignee.get("id"), "assignee.id")
    assignee_type = one_of(assignee.get("type"), ASSIGNEE_TYPES, "assignee.type")
    if not assignee_ok(assignee_id, assignee_type):
        raise GoalError(f"assignee {assignee_type} {assignee_id} was not found")
    goal_type = _clean_type(body)
    title = body.get("title")
    if title is None:
        title = DEFAULT_TITLES[goal_type["name"]]
    if not isinstance(title, str):
        raise GoalError("title must be a string")
    return {
        "title": title,
        "type": goal_type,
        "assignee": {"id": assignee_id, "type": assignee_type},
        "interval": one_of(body.get("interval"), INTERVALS, "interval"),
        "duration": _clean_duration(body),
        "expected_outcome": _clean_outcome(body),
    }


def new_goal_fields(body: Any, assignee_ok: AssigneeCheck) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GoalError("Request body must be a JSON object")
    missing = [key for key in REQUIRED if body.get(key) is None]
    if missing:
        raise GoalError(f"Missing required field(s): {', '.join(missing)}")
    return clean_fields(body, assignee_ok)


def updated_goal_fields(goal: Mapping[str, Any], body: Any, assignee_ok: AssigneeCheck) -> dict[str, Any]:
    """Merge a PUT body into a stored goal (objects key by key) and validate the result."""
    if not isinstance(body, dict):
        raise GoalError("Request body must be a JSON object")
    merged = copy.deepcopy({key: goal[key] for key in EDITABLE})
    for key in EDITABLE:
        if key not in body:
            continue
        new = body[key]
        if not isinstance(new, dict) or key == "title":
            merged[key] = new
        elif key == "type":
            name = new.get("name", merged["type"]["name"])
            # A changed type makes the old params meaningless (stage_id only fits deals_progressed, ...).
            same = name == merged["type"]["name"]
            params = new.get("params", merged["type"]["params"] if same else {})
            merged[key] = {"name": name, "params": params}
        else:
            merged[key] = {**merged[key], **new}
            if (
                key == "expected_outcome"
                and merged[key].get("tracking_metric") != "sum"
                and ("currency_id" not in new)
            ):
                merged[key].pop("currency_id", None)
    return clean_fields(merged, assignee_ok)
