"""A failing token endpoint: one attempt per installation per process, then immediate 503s for a while."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from pd_app.db import get_session
from pd_app.lifecycle import refresh_due
from pd_app.models import Installation, utcnow

from .conftest import close_app


def _make_due(app) -> None:
    with app.app_context():
        session = get_session()
        inst = session.scalar(select(Installation).where(Installation.user_id == 2001))
        inst.access_token_expires_at = utcnow() + timedelta(seconds=30)
        session.commit()


def test_concurrent_requests_during_an_outage_ask_the_token_endpoint_once(app, installer, make_key, sandbox):
    installer.install(user_id=2001)
    key = make_key(user_id=2001)
    _make_due(app)
    sandbox.set_knobs(refresh_error=500, token_delay_s=0.3)
    sandbox.clear_calls()
    statuses: list[int] = []
    barrier = threading.Barrier(10)

    def call() -> None:
        client = app.test_client()
        barrier.wait(5)
        resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
        statuses.append(resp.status_code)
        assert resp.get_json()["code"] == "upstream_unavailable" and resp.headers["Retry-After"]

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [503] * 10
    # Without the gate, each request would have queued for the lock and tried again.
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1
    assert sandbox.count("/api/") == 0


def test_after_the_backoff_a_recovered_endpoint_is_used_again(app, installer, make_key, sandbox):
    installer.install(user_id=2001)
    key = make_key(user_id=2001)
    _make_due(app)
    sandbox.set_knobs(refresh_error=500)
    client = app.test_client()
    assert client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code == 503
    sandbox.set_knobs(refresh_error=None)
    # Still inside the backoff: answered at once, Pipedrive not asked.
    assert client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code == 503
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1
    gate = app.extensions["pd_refresh_gate"]
    now = gate.clock()
    gate.clock = lambda: now + 11  # past the 10 s backoff
    assert client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code == 200
    assert sandbox.count("/oauth/token", grant_type="refresh_token", status=200) == 1


def test_other_installations_are_not_held_back(app, installer, make_key, sandbox):
    installer.install(user_id=2001)
    installer.install(user_id=2002)
    ada, sam = make_key(user_id=2001), make_key(user_id=2002)
    _make_due(app)
    sandbox.set_knobs(refresh_error=500)
    client = app.test_client()
    assert client.get("/api/v1/goals/find", headers={"x-api-token": ada}).status_code == 503
    assert client.get("/api/v1/goals/find", headers={"x-api-token": sam}).status_code == 200


def test_refresh_due_on_two_instances_at_once_refreshes_each_installation_once(
    clean_db, sandbox_server, installer, make_key, sandbox
):
    """The cron line runs on every instance: two app instances (own gates, one database) at the same time."""
    from pd_app import create_app

    from .conftest import app_environ

    installer.install(user_id=2001)
    installer.install(user_id=2002)
    instances = [create_app(environ=app_environ(clean_db, sandbox_server.url)) for _ in range(2)]
    with instances[0].app_context():
        session = get_session()
        for inst in session.scalars(select(Installation)).all():
            inst.refresh_token_used_at = utcnow() - timedelta(days=40)
        session.commit()
    sandbox.set_knobs(token_delay_s=0.5)  # long enough for the two runs to overlap
    sandbox.clear_calls()
    outcomes = []
    barrier = threading.Barrier(2)

    def run(app) -> None:
        # What `flask tokens refresh-due` calls (click's test runner swaps sys.stdout: not for threads).
        with app.app_context():
            barrier.wait(5)
            outcomes.append(refresh_due(get_session(), timedelta(days=30)))

    threads = [threading.Thread(target=run, args=(app,)) for app in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 2 and all(not o.failed and not o.reauth for o in outcomes)
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 2
    for app in instances:
        close_app(app)


def test_concurrent_calls_write_the_rate_limit_figures_once(app, installer, make_key, sandbox):
    """The hot path: many calls at once for one installation write nothing; their figures are stored once,
    by the process's flush (here the one the installation endpoint does before it answers)."""
    from sqlalchemy import event

    installer.install(user_id=2001)
    key = make_key(user_id=2001)
    writes: list[str] = []
    engine = app.extensions["pd_db"]["engine"]

    def count(conn, cursor, statement, *args):
        if statement.startswith("UPDATE installations SET rate_limit"):
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def call() -> None:
        client = app.test_client()
        barrier.wait(5)
        statuses.append(client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200] * 12
    assert writes == []
    info = app.test_client().get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]
    event.remove(engine, "before_cursor_execute", count)
    assert len(writes) == 1
    assert info["rate_limit"]["daily-ratelimit-token-remaining"] > 0
