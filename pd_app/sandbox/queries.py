"""Reading goals: the find filters, the period of a results call, and a believable progress figure."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from werkzeug.datastructures import MultiDict

from .goals import ASSIGNEE_TYPES, GOAL_TYPES, METRICS, GoalError, as_int, as_number, one_of, parse_date

INTERVAL_DAYS = {"weekly": 7.0, "monthly": 365.25 / 12, "quarterly": 365.25 / 4, "yearly": 365.25}


def _int_array(args: MultiDict[str, str], name: str) -> list[int]:
    # Arrays arrive as a repeated key; a comma-separated value is accepted as well.
    return [as_int(part, name) for raw in args.getlist(name) for part in raw.split(",") if part.strip()]


# Every find filter with its parser; all but title (and is_active, period) switch the answer from the
# caller's own goals to everyone's, as the parameter descriptions in the OpenAPI file say.
FIND_FILTERS: dict[str, Callable[[MultiDict[str, str], str], Any]] = {
    "title": lambda args, name: args[name],
    "assignee.id": lambda args, name: as_int(args[name], name),
    "type.name": lambda args, name: one_of(args[name], GOAL_TYPES, name),
    "assignee.type": lambda args, name: one_of(args[name], ASSIGNEE_TYPES, name),
    "expected_outcome.target": lambda args, name: as_number(args[name], name),
    "expected_outcome.tracking_metric": lambda args, name: one_of(args[name], METRICS, name),
    "expected_outcome.currency_id": lambda args, name: as_int(args[name], name),
    "type.params.pipeline_id": _int_array,
    "type.params.stage_id": lambda args, name: as_int(args[name], name),
    "type.params.activity_type_id": _int_array,
}
OWN_GOAL_FILTERS = ("title", "assignee.id")


@dataclass(frozen=True)
class FindQuery:
    is_active: bool
    everyone: bool
    filters: dict[str, Any]
    period: tuple[date, date] | None


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise GoalError(f"{name} must be true or false")


def parse_period(args: MultiDict[str, str]) -> tuple[date, date] | None:
    """period.start and period.end as dates, or None when neither is given."""
    start, end = args.get("period.start"), args.get("period.end")
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise GoalError("period.start and period.end must be provided together")
    first, last = parse_date(start, "period.start"), parse_date(end, "period.end")
    if last < first:
        raise GoalError("period.end must not be before period.start")
    return first, last


def parse_find(args: MultiDict[str, str]) -> FindQuery:
    filters = {name: parse(args, name) for name, parse in FIND_FILTERS.items() if name in args}
    is_active = _bool(args["is_active"], "is_active") if "is_active" in args else True
    everyone = any(name not in OWN_GOAL_FILTERS for name in filters)
    return FindQuery(is_active, everyone, filters, parse_period(args))


def _lookup(goal: Mapping[str, Any], dotted: str) -> Any:
    value: Any = goal
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(goal: Mapping[str, Any], query: FindQuery, user_id: int) -> bool:
    """Whether a (not deleted, same-company) goal is part of a find answer for this user."""
    if goal["is_active"] != query.is_active:
        return False
    if "assignee.id" not in query.filters and not query.everyone:
        if goal["assignee"] != {"id": user_id, "type": "person"}:
            return False
    for name, wanted in query.filters.items():
        actual = _lookup(goal, name)
        if isinstance(wanted, list):
            # Array filters match goals that list at least the given ids (a goal tracking all, null, does
            # not list them).
            if not isinstance(actual, list) or not set(wanted) <= set(actual):
                return False
        elif actual != wanted:
            return False
    if query.period is not None:
        start = date.fromisoformat(goal["duration"]["start"])
        end = goal["duration"]["end"]
        first, last = query.period
        if start > last or (end is not None and date.fromisoformat(end) < first):
            return False
    return True


def check_results_period(goal: Mapping[str, Any], period: tuple[date, date]) -> None:
    first, last = period
    if first < date.fromisoformat(goal["duration"]["start"]):
        raise GoalError("period.start must be the same or after the goal duration start date")
    end = goal["duration"]["end"]
    if end is not None and last > date.fromisoformat(end):
        raise GoalError("period.end must be the same or before the goal duration end date")


def progress(goal: Mapping[str, Any], period: tuple[date, date], today: date) -> int | float:
    """A believable, deterministic progress: target per interval x intervals elapsed x a per-goal factor."""
    first, last = period
    elapsed_days = max(0, (min(today, last) - first).days + 1)
    intervals = elapsed_days / INTERVAL_DAYS[goal["interval"]]
    digest = hashlib.sha256(goal["id"].encode()).hexdigest()
    factor = 0.5 + 0.8 * int(digest[:8], 16) / 0xFFFFFFFF
    outcome = goal["expected_outcome"]
    value = outcome["target"] * intervals * factor
    if outcome["tracking_metric"] == "quantity":
        return round(value)
    value = round(value, 2)
    return int(value) if value.is_integer() else value
