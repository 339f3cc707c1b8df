"""GET /api/v1/goals/{id}/history: from the app's snapshots only, tenant-scoped, never calling Pipedrive."""

from __future__ import annotations

from datetime import timedelta

from pd_app.models import utcnow

from .conftest import store_snapshot
from .test_budget import install, make_app, new_key  # noqa: F401 (make_app is a fixture)

GOAL_ID = "a1b2c3"


def _snapshot(app, company_id: int, goal_id: str, days_ago: int, actual: float, target: float = 10) -> None:
    day = utcnow().date() - timedelta(days=days_ago)
    store_snapshot(app, goal_id, day, actual, target, company_id=company_id, period=(day.replace(day=1), day))


def test_history_is_the_snapshots_oldest_first_and_calls_nothing(make_app, sandbox_server, sandbox):  # noqa: F811
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    for days_ago, actual in ((100, 1), (10, 2), (3, 4), (0, 5)):
        _snapshot(app, 1001, GOAL_ID, days_ago, actual)
    _snapshot(app, 1001, "other", 1, 9)
    _snapshot(app, 2002, GOAL_ID, 1, 7)  # another company's goal with the same id
    resp = app.test_client().get(f"/api/v1/goals/{GOAL_ID}/history", headers={"x-api-token": key})
    assert resp.status_code == 200
    data = resp.get_json()["data"]
    assert data["goal_id"] == GOAL_ID
    today = utcnow().date()
    assert data["points"] == [
        {"date": (today - timedelta(days=10)).isoformat(), "actual": 2, "target": 10, "progress": 0.2},
        {"date": (today - timedelta(days=3)).isoformat(), "actual": 4, "target": 10, "progress": 0.4},
        {"date": today.isoformat(), "actual": 5, "target": 10, "progress": 0.5},
    ]
    assert sandbox.count("/api/") == 0


def test_history_takes_a_window(make_app, sandbox_server, sandbox):  # noqa: F811
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    for days_ago in (5, 4, 3, 2):
        _snapshot(app, 1001, GOAL_ID, days_ago, days_ago)
    today = utcnow().date()
    query = f"?from={(today - timedelta(days=4)).isoformat()}&to={(today - timedelta(days=3)).isoformat()}"
    resp = app.test_client().get(f"/api/v1/goals/{GOAL_ID}/history{query}", headers={"x-api-token": key})
    assert [p["actual"] for p in resp.get_json()["data"]["points"]] == [4, 3]


def test_bad_windows_are_400_with_every_problem(make_app, sandbox_server, sandbox):  # noqa: F811
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    bad = client.get(
        f"/api/v1/goals/{GOAL_ID}/history?from=2026-13-01&to=tomorrow&x=1", headers={"x-api-token": key}
    )
    assert bad.status_code == 400 and bad.get_json()["code"] == "validation_failed"
    assert {d["field"] for d in bad.get_json()["details"]} == {"from", "to", "x"}
    reversed_ = client.get(
        f"/api/v1/goals/{GOAL_ID}/history?from=2026-05-02&to=2026-05-01", headers={"x-api-token": key}
    )
    assert reversed_.status_code == 400 and reversed_.get_json()["details"][0]["code"] == "invalid_range"
    assert client.get("/api/v1/goals/bad%20id/history", headers={"x-api-token": key}).status_code == 400
    assert client.get(f"/api/v1/goals/{GOAL_ID}/history").status_code == 401


def test_dates_at_the_edge_of_the_calendar_are_400_not_500(make_app, sandbox_server, sandbox):  # noqa: F811
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    url = f"/api/v1/goals/{GOAL_ID}/history?to=0001-01-01"
    resp = app.test_client().get(url, headers={"x-api-token": key})
    # 90 days back from 0001-01-01 would be before the first day there is: the window starts there instead.
    assert resp.status_code == 200 and resp.get_json()["data"]["points"] == []
