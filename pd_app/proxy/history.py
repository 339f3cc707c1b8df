"""GET /api/v1/goals/{id}/history: a goal's progress over time, from the app's own snapshots only (the
worker takes them, jobs/snapshots.py). Sends nothing to Pipedrive; the credential's company decides whose
snapshots are read."""

from __future__ import annotations

from datetime import date, timedelta

from flask import jsonify, request
from sqlalchemy import select

from .. import goals
from ..db import get_session
from ..errors import ApiError
from ..models import GoalSnapshot, KeyScope, utcnow
from .views import _caller, _validated, bp

DEFAULT_DAYS = 90
MAX_DAYS = 3660  # ten years: a bound on one answer's size


def _day(name: str, problems: list[dict]) -> date | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        problems.append({"field": name, "message": "must be a date as YYYY-MM-DD", "code": "invalid_date"})
        return None


def _window() -> tuple[date, date]:
    problems: list[dict] = []
    unknown = sorted(set(request.args) - {"from", "to"})
    for name in unknown:
        problems.append({"field": name, "message": "is not a parameter of this endpoint", "code": "unknown"})
    start, end = _day("from", problems), _day("to", problems)
    if not problems:
        end = end or utcnow().date()
        try:
            start = start or end - timedelta(days=DEFAULT_DAYS - 1)
        except OverflowError:  # `to` in the first days of year 1
            start = date.min
        if start > end:
            problems.append({"field": "from", "message": "must not be after `to`", "code": "invalid_range"})
        elif (end - start).days >= MAX_DAYS:
            problems.append(
                {
                    "field": "from",
                    "message": f"the window may span at most {MAX_DAYS} days",
                    "code": "too_long",
                }
            )
    if problems:
        raise ApiError(
            400,
            "validation_failed",
            f"The request has {len(problems)} problem{'s' if len(problems) != 1 else ''}.",
            "Fix each entry of `details` and send it again.",
            details=problems,
        )
    assert start is not None and end is not None
    return start, end


@bp.get("/v1/goals/<goal_id>/history")
def goal_history(goal_id: str):
    principal, _inst = _caller(KeyScope.READ)
    goal_id = _validated(goals.validate_goal_id, goal_id)
    start, end = _window()
    rows = get_session().execute(
        select(GoalSnapshot.day, GoalSnapshot.actual, GoalSnapshot.target, GoalSnapshot.progress)
        .where(
            GoalSnapshot.company_id == principal.company_id,
            GoalSnapshot.goal_id == goal_id,
            GoalSnapshot.day >= start,
            GoalSnapshot.day <= end,
        )
        .order_by(GoalSnapshot.day)
    )
    points = [
        {"date": day.isoformat(), "actual": actual, "target": target, "progress": progress}
        for day, actual, target, progress in rows
    ]
    return jsonify({"success": True, "data": {"goal_id": goal_id, "points": points}})
