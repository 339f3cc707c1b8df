"""Goal snapshots against the sandbox: what is sent (one find per company, one results per due goal), what is
stored, when a goal is due, the budget rules, the events, and the worker: two at once take one snapshot per
goal, and SIGTERM stops it cleanly.

The sandbox's progress figure is replaced per test (`actuals`) so that the stored values are known."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, update
from werkzeug.datastructures import MultiDict

from pd_app import create_app
from pd_app.db import get_session
from pd_app.jobs import jobs
from pd_app.jobs.snapshots import calendar_period, current_period, found_goals, take, take_due
from pd_app.models import GoalReached, GoalSnapshot, Installation, Webhook, WebhookDelivery
from pd_app.sandbox import queries

from .conftest import app_environ, close_app
from .procs import Proc, wait_until
from .test_budget import install

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a Tuesday


@pytest.fixture
def make_app(clean_db, sandbox_server, sandbox, tmp_path) -> Iterator[Callable[..., Flask]]:
    """Apps on the test database whose job queue (and its record of each company's last find) is a file of
    this test's own."""
    made: list[Flask] = []

    def make(**extra: str) -> Flask:
        app = create_app(
            overrides={"queue_path": str(tmp_path / "queue.sqlite3")},
            environ=app_environ(clean_db, sandbox_server.url, **extra),
        )
        made.append(app)
        return app

    yield make
    for app in made:
        close_app(app)


@pytest.fixture
def actuals(monkeypatch) -> dict[str, float]:
    """What the sandbox answers as a goal's results `progress`, by goal id (3 when not given)."""
    values: dict[str, float] = {}
    monkeypatch.setattr(queries, "progress", lambda goal, period, today: values.get(goal["id"], 3))
    return values


def goal_body(title: str, interval: str = "monthly", target: float = 10, start: str = "2025-01-01", end=None):
    return {
        "title": title,
        "assignee": {"id": 2001, "type": "person"},  # the installing user's own goal: what its find sees
        "type": {"name": "deals_won", "params": {"pipeline_id": None}},
        "expected_outcome": {"target": target, "tracking_metric": "quantity"},
        "duration": {"start": start, "end": end},
        "interval": interval,
    }


def only_goals(sandbox, *bodies: dict) -> list[str]:
    """Replace the goals user 2001 of company 1001 sees with these; returns their ids."""
    for goal in sandbox.find_goals(1001, 2001, MultiDict()):
        sandbox.delete_goal(1001, goal["id"])
    return [sandbox.add_goal(1001, 2001, body)["id"] for body in bodies]


def finds(sandbox) -> int:
    return sandbox.count("/api/v1/goals/find")


def results_calls(sandbox) -> list[dict]:
    return [c for c in sandbox.calls if c["path"].endswith("/results")]


def run(app: Flask, now: datetime | None = None, due: bool = True):
    with app.app_context():
        return take_due(now) if due else take(now=now)


def rows(app: Flask) -> list[GoalSnapshot]:
    with app.app_context():
        return list(
            get_session().scalars(select(GoalSnapshot).order_by(GoalSnapshot.goal_id, GoalSnapshot.day))
        )


# -- periods ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("interval", "today", "period"),
    [
        ("weekly", date(2026, 3, 10), (date(2026, 3, 9), date(2026, 3, 15))),
        ("weekly", date(2026, 3, 15), (date(2026, 3, 9), date(2026, 3, 15))),  # Sunday ends the ISO week
        ("weekly", date(2026, 1, 1), (date(2025, 12, 29), date(2026, 1, 4))),
        ("monthly", date(2024, 2, 29), (date(2024, 2, 1), date(2024, 2, 29))),
        ("monthly", date(2026, 12, 31), (date(2026, 12, 1), date(2026, 12, 31))),
        ("quarterly", date(2026, 5, 20), (date(2026, 4, 1), date(2026, 6, 30))),
        ("quarterly", date(2026, 12, 1), (date(2026, 10, 1), date(2026, 12, 31))),
        ("yearly", date(2026, 7, 4), (date(2026, 1, 1), date(2026, 12, 31))),
        ("daily", date(2026, 7, 4), None),
    ],
)
def test_calendar_periods(interval, today, period):
    assert calendar_period(interval, today) == period


@pytest.mark.parametrize(
    ("duration", "today", "period"),
    [
        ({"start": "2026-03-05", "end": None}, date(2026, 3, 10), (date(2026, 3, 5), date(2026, 3, 31))),
        (
            {"start": "2026-01-01", "end": "2026-03-20"},
            date(2026, 3, 10),
            (date(2026, 3, 1), date(2026, 3, 20)),
        ),
        ({"start": "2026-04-01", "end": None}, date(2026, 3, 10), None),  # not started
        ({"start": "2026-01-01", "end": "2026-03-09"}, date(2026, 3, 10), None),  # over
        ({"start": "soon", "end": None}, date(2026, 3, 10), None),
    ],
)
def test_the_current_period_is_clipped_to_the_duration(duration, today, period):
    assert current_period({"interval": "monthly", "duration": duration}, today) == period


def test_only_goals_with_a_usable_id_are_taken_from_a_find_answer():
    goals = [{"id": "ab12"}, {"id": 7}, {"id": "../users"}, {"id": True}, {"id": ""}, "junk", {"title": "x"}]
    body = json.dumps({"success": True, "data": {"goals": goals}}).encode()
    assert [g["id"] for g in found_goals(body)] == ["ab12", "7"]
    assert found_goals(b'{"success": true, "data": {"goals": null}}') == []
    assert found_goals(b'{"success": true, "data": null}') == []


# -- what is sent and stored -------------------------------------------------------------------------------
def test_one_find_and_one_results_per_goal_and_the_values_stored(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    monthly, weekly = only_goals(sandbox, goal_body("Monthly"), goal_body("Weekly", "weekly", target=4))
    actuals.update({monthly: 3, weekly: 4.5})
    outcome = run(app, NOON)
    assert (outcome.taken, outcome.tokens, outcome.skipped) == (2, 60, [])
    assert finds(sandbox) == 1
    find = next(c for c in sandbox.calls if c["path"] == "/api/v1/goals/find")
    assert find["query"] == {"is_active": ["true"]}
    periods = {c["path"].split("/")[4]: c["query"] for c in results_calls(sandbox)}
    assert periods == {
        monthly: {"period.start": ["2026-03-01"], "period.end": ["2026-03-31"]},
        weekly: {"period.start": ["2026-03-09"], "period.end": ["2026-03-15"]},
    }
    stored = {r.goal_id: r for r in rows(app)}
    assert set(stored) == {monthly, weekly}
    m, w = stored[monthly], stored[weekly]
    assert (m.day, m.actual, m.target, m.progress) == (date(2026, 3, 10), 3, 10, pytest.approx(0.3))
    assert (m.period_start, m.period_end) == (date(2026, 3, 1), date(2026, 3, 31))
    assert (w.actual, w.target, w.progress) == (4.5, 4, pytest.approx(1.125))
    assert (w.period_start, w.period_end) == (date(2026, 3, 9), date(2026, 3, 15))


def test_a_goal_with_a_zero_target_has_no_progress(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    (goal,) = only_goals(sandbox, goal_body("Nothing to reach", target=0))
    actuals[goal] = 2
    run(app, NOON)
    ((row),) = rows(app)
    assert (row.actual, row.target, row.progress) == (2, 0, None)


def test_nothing_is_sent_until_snapshot_every_has_passed(make_app, sandbox_server, sandbox, actuals):
    app = make_app(SNAPSHOT_EVERY="86400")
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("A"), goal_body("B"), goal_body("C"))
    run(app, NOON)
    assert (finds(sandbox), len(results_calls(sandbox))) == (1, 3)
    # Every minute of the day after: nothing is due, nothing is sent.
    for minutes in (1, 60, 24 * 60 - 1):
        assert run(app, NOON + timedelta(minutes=minutes)).tokens == 0
    assert (finds(sandbox), len(results_calls(sandbox))) == (1, 3)
    # A day later: the same small amount again (find 20 + 3 x results 20), never more.
    assert run(app, NOON + timedelta(days=1)).tokens == 80
    assert run(app, NOON + timedelta(days=1, minutes=1)).tokens == 0
    assert (finds(sandbox), len(results_calls(sandbox))) == (2, 6)
    assert [r.day for r in rows(app)] == [date(2026, 3, 10), date(2026, 3, 11)] * 3


def test_a_later_snapshot_on_the_same_date_replaces_the_earlier_one(
    make_app, sandbox_server, sandbox, actuals
):
    app = make_app(SNAPSHOT_EVERY="3600")
    install(app, sandbox_server, sandbox)
    (goal,) = only_goals(sandbox, goal_body("Today"))
    actuals[goal] = 2
    run(app, NOON.replace(hour=9))
    actuals[goal] = 6
    run(app, NOON.replace(hour=15))
    assert len(results_calls(sandbox)) == 2
    ((row),) = rows(app)
    assert (row.day, row.actual, row.progress) == (date(2026, 3, 10), 6, pytest.approx(0.6))
    assert row.taken_at == NOON.replace(hour=15)


def test_a_goal_whose_period_rolls_over_gets_the_new_period(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    (goal,) = only_goals(sandbox, goal_body("Monthly"))
    actuals[goal] = 9
    run(app, datetime(2026, 1, 31, 18, 0, tzinfo=UTC))
    actuals[goal] = 1
    run(app, datetime(2026, 2, 1, 18, 0, tzinfo=UTC))
    assert [c["query"]["period.start"] for c in results_calls(sandbox)] == [["2026-01-01"], ["2026-02-01"]]
    jan, feb = rows(app)
    assert (jan.day, jan.period_start, jan.period_end, jan.actual) == (
        date(2026, 1, 31),
        date(2026, 1, 1),
        date(2026, 1, 31),
        9,
    )
    assert (feb.day, feb.period_start, feb.period_end, feb.actual) == (
        date(2026, 2, 1),
        date(2026, 2, 1),
        date(2026, 2, 28),
        1,
    )


def test_a_goal_outside_its_duration_is_not_asked_for(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("Later", start="2026-04-01"), goal_body("Over", end="2026-02-28"))
    outcome = run(app, NOON)
    assert (finds(sandbox), results_calls(sandbox), outcome.taken) == (1, [], 0)


def test_the_admins_installation_takes_them(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox, user_id=2001)
    install(app, sandbox_server, sandbox, user_id=2002)  # the more recent one, not an admin
    (mine,) = only_goals(sandbox, goal_body("Mine"))
    run(app, NOON)
    # 2002's find would have answered 2002's own goal (the seed's "Won revenue per month").
    assert finds(sandbox) == 1
    assert [r.goal_id for r in rows(app)] == [mine]


# -- the budget rules -------------------------------------------------------------------------------------
def test_a_company_over_its_cap_is_skipped_and_taken_later(
    make_app, sandbox_server, sandbox, actuals, caplog
):
    # find (20) + one results (20) fit under 50; the second results does not.
    small = make_app(COMPANY_DAILY_TOKEN_CAP="50")
    install(small, sandbox_server, sandbox)
    first, second = only_goals(sandbox, goal_body("First"), goal_body("Second"))
    outcome = run(small, NOON)
    assert outcome.taken == 1 and [company for company, _ in outcome.skipped] == [1001]
    assert (finds(sandbox), len(results_calls(sandbox))) == (1, 1)
    assert [r.goal_id for r in rows(small)] == [first]
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "1001" in skipped[0].getMessage()
    # A minute later it is not due yet (a failed run waits 5 minutes, then 10, ... up to an hour).
    assert run(small, NOON + timedelta(minutes=1)).skipped == []
    # After that wait it is due again, but the cap refuses the find: nothing is sent.
    assert run(small, NOON + timedelta(minutes=6)).skipped
    assert (finds(sandbox), len(results_calls(sandbox))) == (1, 1)
    # Once the cap allows (and the doubled wait has passed), the goal left over is taken, and only that one.
    roomy = make_app(COMPANY_DAILY_TOKEN_CAP="1000")
    assert run(roomy, NOON + timedelta(minutes=15)).skipped == []  # still waiting: 10 minutes this time
    outcome = run(roomy, NOON + timedelta(minutes=17))
    assert (outcome.taken, outcome.skipped) == (1, [])
    assert (finds(sandbox), len(results_calls(sandbox))) == (2, 2)
    assert results_calls(sandbox)[-1]["path"] == f"/api/v1/goals/{second}/results"
    assert sorted(r.goal_id for r in rows(roomy)) == sorted([first, second])
    # And then it waits for SNAPSHOT_EVERY like any other company.
    assert run(roomy, NOON + timedelta(minutes=18)).tokens == 0
    assert finds(sandbox) == 2


def test_a_cap_below_one_find_sends_nothing(make_app, sandbox_server, sandbox, actuals):
    app = make_app(COMPANY_DAILY_TOKEN_CAP="10")
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("A"))
    outcome = run(app, NOON)
    assert outcome.taken == 0 and outcome.skipped[0][0] == 1001
    assert sandbox.count("/api/") == 0 and rows(app) == []


def test_a_throttled_installation_is_skipped_without_calling(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("A"))
    with app.app_context():
        session = get_session()
        session.execute(update(Installation).values(throttled_until=datetime.now(UTC) + timedelta(minutes=5)))
        session.commit()
    outcome = run(app)
    assert outcome.skipped and sandbox.count("/api/") == 0


def test_pipedrives_429_skips_the_company_until_its_reset(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("A"), goal_body("B"))
    sandbox.set_knobs(force_api_status={"status": 429, "count": 1, "retry_after": 30})
    outcome = run(app, NOON)
    assert outcome.skipped and outcome.taken == 0
    assert run(app, NOON + timedelta(minutes=1)).skipped == []  # not due: the failure's 5-minute wait
    assert run(app, NOON + timedelta(minutes=6)).skipped  # due, but throttled: nothing sent
    assert finds(sandbox) == 1
    with app.app_context():  # Pipedrive's reset has passed
        session = get_session()
        session.execute(update(Installation).values(throttled_until=None))
        session.commit()
    outcome = run(app, NOON + timedelta(minutes=17))  # past the doubled wait
    assert (outcome.taken, outcome.skipped) == (2, [])


def test_an_installation_that_needs_reauthorization_is_skipped(
    make_app, sandbox_server, sandbox, actuals, caplog
):
    app = make_app()
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("A"))
    with app.app_context():
        session = get_session()
        session.execute(update(Installation).values(status="reauth_required"))
        session.commit()
    outcome = run(app, NOON)
    assert outcome.skipped == [(1001, "its installations need reauthorization")]
    assert sandbox.count("/api/") == 0 and rows(app) == []
    assert sum("1001 skipped" in r.getMessage() for r in caplog.records) == 1


# -- events -------------------------------------------------------------------------------------------------
def subscribe(app: Flask) -> None:
    with app.app_context():
        session = get_session()
        session.add(
            Webhook(
                company_id=1001,
                url="https://hooks.example/pd",
                events=["goal.progress", "goal.reached"],
                secret_enc="unused here",
                created_by="cli",
            )
        )
        session.commit()


def events(app: Flask) -> list[dict]:
    with app.app_context():
        bodies = get_session().scalars(select(WebhookDelivery.body).order_by(WebhookDelivery.id))
        return [json.loads(body) for body in bodies]


def test_progress_and_reached_events_are_recorded_once_per_period(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    subscribe(app)
    (goal,) = only_goals(sandbox, goal_body("Ten deals"))
    actuals[goal] = 5
    run(app, NOON)
    assert events(app) == []  # a first snapshot changed nothing
    run(app, NOON + timedelta(days=1))  # unchanged
    assert events(app) == []
    actuals[goal] = 10
    run(app, NOON + timedelta(days=2))
    actuals[goal] = 12
    run(app, NOON + timedelta(days=3))
    recorded = events(app)
    assert [e["type"] for e in recorded] == ["goal.progress", "goal.reached", "goal.progress"]
    assert all(e["company_id"] == 1001 for e in recorded)
    assert recorded[0]["data"] == {
        "goal_id": goal,
        "title": "Ten deals",
        "actual": 10,
        "target": 10,
        "progress": 1.0,
        "previous_progress": 0.5,
        "period_start": "2026-03-01",
        "period_end": "2026-03-31",
    }
    assert recorded[1]["data"]["progress"] == 1.0 and recorded[1]["data"]["period_start"] == "2026-03-01"
    assert recorded[2]["data"]["previous_progress"] == 1.0
    # The next period it may be reached again.
    run(app, datetime(2026, 4, 1, 12, tzinfo=UTC))
    assert [e["type"] for e in events(app)][3:] == ["goal.reached"]  # 12/10 again: no change in actual
    with app.app_context():
        reached = get_session().scalars(select(GoalReached.period_start).order_by(GoalReached.period_start))
        assert list(reached) == [date(2026, 3, 1), date(2026, 4, 1)]


def test_two_snapshots_of_one_day_record_reached_once(make_app, sandbox_server, sandbox, actuals):
    app = make_app(SNAPSHOT_EVERY="60")
    install(app, sandbox_server, sandbox)
    subscribe(app)
    (goal,) = only_goals(sandbox, goal_body("Two"))
    actuals[goal] = 20
    run(app, NOON)
    run(app, NOON + timedelta(minutes=5))
    assert [e["type"] for e in events(app)] == ["goal.reached"]


# -- the command --------------------------------------------------------------------------------------------
def test_snapshots_take_takes_every_goal_now_and_prints_the_cost(make_app, sandbox_server, sandbox, actuals):
    app = make_app()
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("A"), goal_body("B"))
    for _ in range(2):  # not "due": taken each time it is asked
        result = app.test_cli_runner().invoke(args=["snapshots", "take", "--company-id", "1001"])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "Took 2 snapshots of 1 company; cost 60 Pipedrive tokens."
    assert (finds(sandbox), len(results_calls(sandbox))) == (2, 4)
    # Having just taken them, the worker has nothing due.
    assert run(app).tokens == 0


def test_snapshots_take_says_when_a_company_is_skipped(make_app, sandbox_server, sandbox, actuals):
    app = make_app(COMPANY_DAILY_TOKEN_CAP="10")
    install(app, sandbox_server, sandbox)
    result = app.test_cli_runner().invoke(args=["snapshots", "take"])
    assert result.exit_code == 1
    assert "company 1001 skipped" in result.stderr
    assert "Took 0 snapshots of 0 companies; cost 0 Pipedrive tokens." in result.stdout
    unknown = app.test_cli_runner().invoke(args=["snapshots", "take", "--company-id", "4242"])
    assert unknown.exit_code == 1 and "Company 4242 has no installation" in unknown.output


# -- the worker ---------------------------------------------------------------------------------------------
def start_worker(tmp_path: Path, name: str, environ: dict[str, str], queue: Path) -> Proc:
    factory = f"pd_app:create_app({{'queue_path': {str(queue)!r}}})"
    argv = [sys.executable, "-m", "flask", "--app", factory, "worker", "--threads", "1"]
    return Proc(argv, {**environ, "PYTHONUNBUFFERED": "1"}, tmp_path / f"{name}.log")


@pytest.mark.slow
def test_two_workers_at_once_take_one_snapshot_per_goal_and_stop_on_sigterm(
    make_app, clean_db, sandbox_server, sandbox, actuals, tmp_path
):
    environ = app_environ(clean_db, sandbox_server.url, SNAPSHOT_EVERY="3600")
    app = make_app(SNAPSHOT_EVERY="3600")
    install(app, sandbox_server, sandbox)
    goals = only_goals(sandbox, *(goal_body(f"Goal {n}") for n in range(3)))
    sandbox.set_knobs(api_delay_s=0.2)  # a run lasts long enough for the other worker to try one too
    queue = tmp_path / "queue.sqlite3"
    workers = [start_worker(tmp_path, f"worker{n}", environ, queue) for n in range(2)]
    try:
        with app.app_context():
            huey = jobs().huey
            for _ in range(6):
                jobs().enqueue("snapshots")
        wait_until(lambda: huey.pending_count() == 0, 30, what="the workers to take every queued run")
        wait_until(lambda: len(results_calls(sandbox)) >= len(goals), 30, what="the goals' results")
    finally:
        for worker in workers:
            worker.stop(signal.SIGTERM, grace=10)
    # SIGTERM is a clean stop: whatever ran finished, and each worker exited 0 by itself.
    assert [w.popen.returncode for w in workers] == [0, 0], [w.tail() for w in workers]
    assert finds(sandbox) == 1
    assert sorted(c["path"] for c in results_calls(sandbox)) == sorted(
        f"/api/v1/goals/{goal}/results" for goal in goals
    )
    assert sorted(r.goal_id for r in rows(app)) == sorted(goals)


def test_a_company_whose_calls_keep_failing_is_asked_less_and_less(
    make_app, sandbox_server, sandbox, actuals
):
    """Each failed run is charged (Pipedrive answered): retrying every minute would spend the company's whole
    day. The wait doubles from 5 minutes to an hour."""
    app = make_app()
    install(app, sandbox_server, sandbox)
    only_goals(sandbox, goal_body("A"))
    sandbox.set_knobs(force_api_status={"status": 403, "count": 1000})
    asked = [minute for minute in range(0, 61) if run(app, NOON + timedelta(minutes=minute)).skipped]
    assert asked == [0, 5, 15, 35]  # waits of 5, 10, 20 minutes, then 40
    assert finds(sandbox) == 4
