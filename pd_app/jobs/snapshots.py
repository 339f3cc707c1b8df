"""Goal snapshots: each installed company's active goals and their progress in the current period, kept per
(company, goal, UTC date), and the `goal.progress` / `goal.reached` events derived from them.

One run per company: one `find` for its active goals (what the company's serving installation sees: without
`assignee.id` Pipedrive answers the token user's own goals, platform.md), then one `results` per goal that
is due (its last snapshot is SNAPSHOT_EVERY old, or it has none), for the goal's current period. Every call
goes through `forward()`: charged to the company's ledger, held back by its throttle, retried and refreshed
like a proxied read. A company whose cap, throttle or installation says no is skipped with one log line;
its goals stay due and the next run (every minute) tries again.

When a company needs its next `find` is kept in the queue's own store (one small record per company: when
its last find ran, and whether goals were left for later), so a company whose goals did not change costs
one `find` and one `results` per goal per SNAPSHOT_EVERY, never more. Losing that record (a new queue file)
costs one extra `find`: which goals are due is read from the snapshots themselves.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..auth import installation_ref
from ..db import get_session, locking_session
from ..models import GoalReached, GoalSnapshot, Installation, InstallationStatus, utcnow
from ..pipedrive.api import GoalNotFound, PipedriveRejected, UpstreamFailed
from ..proxy.budget import COSTS, BudgetExhausted
from ..proxy.forward import forward
from ..proxy.throttle import InstallationThrottled
from ..tokens.cipher import TokenDecryptError
from ..tokens.refresh import TokenServiceUnavailable
from ..tokens.store import NotInstalled, ReauthRequired
from ..webhooks.events import GOAL_PROGRESS, GOAL_REACHED, emit

log = logging.getLogger(__name__)

FIND_PATH = "/api/v1/goals/find"
RETRY_BASE_S = 300
RETRY_MAX_S = 3600
ACTIVE = [("is_active", "true")]
GOAL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the proxy accepts as a goal id (goals/validation.py)
# A company-wide refusal: nothing more is sent for the company in this run; its goals stay due.
COMPANY_REFUSALS = (
    BudgetExhausted,
    InstallationThrottled,
    UpstreamFailed,
    NotInstalled,
    ReauthRequired,
    TokenServiceUnavailable,
    TokenDecryptError,
)
# A refusal about one goal (deleted since the find, or a period Pipedrive will not take): the others go on.
GOAL_REFUSALS = (GoalNotFound, PipedriveRejected)


# -- periods ------------------------------------------------------------------------------------------------
def calendar_period(interval: str, today: date) -> tuple[date, date] | None:
    """The interval's calendar period holding `today` (weekly = ISO week, Monday to Sunday), or None."""
    if interval == "weekly":
        start = today - timedelta(days=today.weekday())
        return start, start + timedelta(days=6)
    if interval == "monthly":
        start = today.replace(day=1)
    elif interval == "quarterly":
        start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    elif interval == "yearly":
        start = date(today.year, 1, 1)
    else:
        return None
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}[interval]
    month0 = start.month - 1 + months
    following = date(start.year + month0 // 12, month0 % 12 + 1, 1)
    return start, following - timedelta(days=1)


def current_period(goal: dict[str, Any], today: date) -> tuple[date, date] | None:
    """The goal's period holding `today`, clipped to its duration; None before it starts or after it ends
    (or when the goal's interval or duration cannot be read)."""
    period = calendar_period(str(goal.get("interval")), today)
    duration = goal.get("duration")
    if period is None or not isinstance(duration, dict):
        return None
    try:
        first = date.fromisoformat(str(duration.get("start")))
        last = date.fromisoformat(duration["end"]) if duration.get("end") else None
    except (TypeError, ValueError):
        return None
    start, end = max(period[0], first), min(period[1], last) if last else period[1]
    return (start, end) if start <= today <= end else None


# -- which installation, which companies ------------------------------------------------------------------
def serving_installations(session: Session, company_id: int | None = None) -> dict[int, int | None]:
    """Per company with an installation that is not uninstalled: the id of the one that takes its snapshots
    (its active admin's, else its most recently refreshed active one), or None when none is active (they
    all need reauthorization)."""
    query = select(Installation).where(Installation.status != InstallationStatus.UNINSTALLED)
    if company_id is not None:
        query = query.where(Installation.company_id == company_id)
    active = Installation.status == InstallationStatus.ACTIVE
    rows = session.scalars(
        query.order_by(
            Installation.company_id,
            case((active, 0), else_=1),
            case((Installation.is_admin, 0), else_=1),
            case((Installation.last_refreshed_at.is_(None), 1), else_=0),
            Installation.last_refreshed_at.desc(),
            Installation.installed_at.desc(),
        )
    ).all()
    chosen: dict[int, int | None] = {}
    for inst in rows:
        if inst.company_id not in chosen:
            chosen[inst.company_id] = inst.id if inst.status == InstallationStatus.ACTIVE else None
    return chosen


# -- the record of each company's last find ---------------------------------------------------------------
def _marker_key(company_id: int) -> str:
    return f"snapshots.company.{company_id}"


def _company_due(company_id: int, now: datetime, every: int) -> bool:
    from . import jobs

    marker = jobs().huey.get(_marker_key(company_id), peek=True)
    if not isinstance(marker, dict):
        return True
    if marker.get("pending"):  # goals left for later: after the failure's backoff
        return marker.get("retry_at", 0) <= now.timestamp()
    return marker.get("found_at", 0) <= (now.timestamp() - every)


def _company_failed(company_id: int, now: datetime) -> None:
    """A run that could not finish: the company's goals stay due, tried again after a backoff that doubles
    (5 min to 1 h), so a company whose calls keep failing costs a few calls an hour, not one a minute."""
    from . import jobs

    marker = jobs().huey.get(_marker_key(company_id), peek=True)
    marker = marker if isinstance(marker, dict) else {}
    failures = int(marker.get("failures", 0)) + 1
    wait = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (failures - 1))
    jobs().huey.put(
        _marker_key(company_id),
        {
            "found_at": marker.get("found_at", 0),
            "pending": True,
            "failures": failures,
            "retry_at": now.timestamp() + wait,
        },
    )


def _company_found(company_id: int, now: datetime, pending: bool) -> None:
    from . import jobs

    jobs().huey.put(_marker_key(company_id), {"found_at": now.timestamp(), "pending": pending})


# -- taking snapshots -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a run did: snapshots taken, Pipedrive tokens its calls cost, companies skipped and why."""

    taken: int = 0
    tokens: int = 0
    companies: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def take_due(now: datetime | None = None) -> Outcome:
    """The periodic task: every company that is due, each goal of it that is due."""
    return take(now=now, only_due=True)


def take(company_id: int | None = None, *, now: datetime | None = None, only_due: bool = False) -> Outcome:
    """One run over every company (or one): with `only_due`, only what SNAPSHOT_EVERY says is due; else a
    snapshot of every active goal now (`snapshots take`). `now` is the run's time (tests move it)."""
    now = now or utcnow()
    every = current_app.config["SETTINGS"].snapshot_every
    session = get_session()
    chosen = serving_installations(session, company_id)
    session.rollback()  # no read stays open while Pipedrive answers
    outcome = Outcome()
    for company, installation_id in chosen.items():
        if installation_id is None:
            _skip(outcome, company, "its installations need reauthorization")
            continue
        if only_due and not _company_due(company, now, every):
            continue
        try:
            _take_company(installation_id, company, now, every if only_due else 0, outcome)
        except Exception:  # one company's surprise must not stop the others' snapshots
            log.exception("snapshots: company %s failed; tried again after a backoff", company)
            _company_failed(company, now)
            outcome.skipped.append((company, "failed"))
    return outcome


def _skip(outcome: Outcome, company_id: int, reason: str) -> None:
    log.warning("snapshots: company %s skipped (%s); its goals stay due", company_id, reason)
    outcome.skipped.append((company_id, reason))


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def _take_company(installation_id: int, company_id: int, now: datetime, every: int, outcome: Outcome) -> None:
    ref = installation_ref(installation_id)
    try:
        body, _status = forward(ref, "find", "GET", FIND_PATH, params=ACTIVE, use_cache=False)
    except COMPANY_REFUSALS as exc:
        _company_failed(company_id, now)
        _skip(outcome, company_id, _reason(exc))
        return
    outcome.tokens += COSTS["find"]
    outcome.companies += 1
    goals = found_goals(body)
    last_taken = _last_taken(company_id, [goal["id"] for goal in goals])
    cutoff = now - timedelta(seconds=every)
    today = now.astimezone(UTC).date()
    for goal in goals:
        taken_at = last_taken.get(goal["id"])
        if every and taken_at is not None and taken_at > cutoff:
            continue  # not due yet
        period = current_period(goal, today)
        if period is None:
            continue  # not in a period today: not started, or over
        path = f"/api/v1/goals/{goal['id']}/results"
        params = [("period.start", period[0].isoformat()), ("period.end", period[1].isoformat())]
        try:
            body, _status = forward(ref, "results", "GET", path, params=params, use_cache=False)
        except GOAL_REFUSALS as exc:
            outcome.tokens += COSTS["results"]
            log.info("snapshots: goal %s of company %s not taken (%s)", goal["id"], company_id, _reason(exc))
            continue
        except COMPANY_REFUSALS as exc:
            _company_failed(company_id, now)
            _skip(outcome, company_id, _reason(exc))
            return
        outcome.tokens += COSTS["results"]
        actual = _actual(body)
        if actual is None:
            log.warning("snapshots: goal %s of company %s: no progress in results", goal["id"], company_id)
            continue
        record(company_id, goal, actual, period, now)
        outcome.taken += 1
    _company_found(company_id, now, pending=False)


def found_goals(body: bytes) -> list[dict[str, Any]]:
    """The goals of a find answer, each with a string id that is safe in a path (others are left out)."""
    data = json.loads(body).get("data")
    goals = data.get("goals") if isinstance(data, dict) else None
    found = []
    for goal in goals if isinstance(goals, list) else []:
        value = goal.get("id") if isinstance(goal, dict) else None
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        goal_id = str(value)
        if GOAL_ID.fullmatch(goal_id):
            found.append({**goal, "id": goal_id})
    return found


def _last_taken(company_id: int, goal_ids: list[str]) -> dict[str, datetime]:
    if not goal_ids:
        return {}
    session = get_session()
    rows = session.execute(
        select(GoalSnapshot.goal_id, func.max(GoalSnapshot.taken_at))
        .where(GoalSnapshot.company_id == company_id, GoalSnapshot.goal_id.in_([str(g) for g in goal_ids]))
        .group_by(GoalSnapshot.goal_id)
    ).all()
    session.rollback()
    return dict(rows)  # max() keeps the column's type: aware UTC datetimes


def _actual(body: bytes) -> float | None:
    """What Pipedrive's results call answers as `data.progress`: the amount achieved in the period."""
    data = json.loads(body).get("data")
    value = data.get("progress") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _target(goal: dict[str, Any]) -> float | None:
    outcome = goal.get("expected_outcome")
    value = outcome.get("target") if isinstance(outcome, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def record(
    company_id: int, goal: dict[str, Any], actual: float, period: tuple[date, date], now: datetime
) -> None:
    """Store the day's snapshot (replacing an earlier one of the same UTC date) and record its events, in
    one transaction: an event exists exactly when its snapshot does."""
    goal_id = str(goal["id"])
    target = _target(goal)
    progress = actual / target if target else None
    day = now.astimezone(UTC).date()
    with locking_session() as session:
        previous = session.scalar(
            select(GoalSnapshot)
            .where(GoalSnapshot.company_id == company_id, GoalSnapshot.goal_id == goal_id)
            .order_by(GoalSnapshot.day.desc())
            .limit(1)
            .with_for_update()
        )
        data = {
            "goal_id": goal_id,
            "title": goal.get("title"),
            "actual": actual,
            "target": target,
            "progress": progress,
            "period_start": period[0].isoformat(),
            "period_end": period[1].isoformat(),
        }
        if previous is not None and (previous.actual != actual or previous.progress != progress):
            emit(session, company_id, GOAL_PROGRESS, {**data, "previous_progress": previous.progress})
        values = {
            "actual": actual,
            "target": target,
            "progress": progress,
            "period_start": period[0],
            "period_end": period[1],
            "taken_at": now,
        }
        if previous is not None and previous.day == day:
            for name, value in values.items():
                setattr(previous, name, value)
        else:
            _insert_or_replace(session, company_id, goal_id, day, values)
        if progress is not None and progress >= 1 and _first_reached(session, company_id, goal_id, period[0]):
            emit(session, company_id, GOAL_REACHED, data)
        session.commit()


def _insert_or_replace(session: Session, company_id: int, goal_id: str, day: date, values: dict) -> None:
    row = GoalSnapshot(company_id=company_id, goal_id=goal_id, day=day, **values)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another process took today's first snapshot meanwhile: replace it
        session.merge(GoalSnapshot(company_id=company_id, goal_id=goal_id, day=day, **values))


def _first_reached(session: Session, company_id: int, goal_id: str, period_start: date) -> bool:
    """Whether this is the first time the goal reached its target in this period (the row is the guard)."""
    try:
        with session.begin_nested():
            session.add(GoalReached(company_id=company_id, goal_id=goal_id, period_start=period_start))
    except IntegrityError:
        return False
    return True


# -- the periodic task and the command ------------------------------------------------------------------
def _register(jobs) -> None:
    from huey import crontab

    jobs.periodic("snapshots", crontab(minute="*"), _periodic)


def _periodic() -> None:
    outcome = take_due()
    if outcome.companies or outcome.skipped:
        log.info(
            "snapshots: %s taken, %s tokens, companies asked %s, skipped %s",
            outcome.taken,
            outcome.tokens,
            outcome.companies,
            len(outcome.skipped),
        )


snapshots_cli = AppGroup("snapshots", help="Goal progress snapshots (the worker takes them when due).")


@snapshots_cli.command("take")
@click.option("--company-id", type=click.IntRange(min=1), default=None, help="Only this company.")
def take_command(company_id: int | None) -> None:
    """Take one snapshot of every active goal (of one company) now, within the budget rules; print how many
    were taken and what they cost. Exits 1 when a company had to be skipped."""
    outcome = take(company_id)
    if company_id is not None and not outcome.companies and not outcome.skipped:
        raise click.ClickException(f"Company {company_id} has no installation.")
    for company, reason in outcome.skipped:
        click.echo(f"company {company} skipped: {reason}", err=True)
    click.echo(
        f"Took {outcome.taken} snapshot{'s' if outcome.taken != 1 else ''} of "
        f"{outcome.companies} compan{'ies' if outcome.companies != 1 else 'y'}; "
        f"cost {outcome.tokens} Pipedrive tokens."
    )
    if outcome.skipped:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(snapshots_cli)
    app.extensions["pd_jobs"].on_build(_register)
