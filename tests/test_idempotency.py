"""Idempotency keys on the proxy's writes: the first answer is kept 24 h per credential and replayed byte
for byte, the same key on another request is 422, a running one 409; refusals that executed nothing keep no
answer. Counted at the sandbox: a replay sends nothing upstream. The last tests run the app under real
gunicorn with 2 workers (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
from sqlalchemy import select, update

from pd_app.db import get_session
from pd_app.models import IdempotencyRecord, Installation, utcnow
from pd_app.pipedrive.api import UpstreamUnreachable
from pd_app.proxy.idempotency import idempotency_store

from .conftest import app_environ
from .procs import AppDatabase, GunicornProcess, pid_serving, wait_until
from .test_proxy import GOAL

GOALS = "/api/v1/goals"
COMPANY, USER = 1001, 2001
JWT_SECRET = "idempotency-jwt-secret-0123456789abcdef"


@pytest.fixture
def key(installer, make_key, sandbox):
    installer.install(user_id=USER)
    sandbox.clear_calls()
    return make_key(company_id=COMPANY)


def headers(key: str, idempotency_key: str | None = "order-42") -> dict[str, str]:
    found = {"x-api-token": key}
    if idempotency_key is not None:
        found["Idempotency-Key"] = idempotency_key
    return found


def posts(sandbox) -> int:
    return sandbox.count(GOALS, method="POST")


def active_goals(sandbox) -> int:
    company = next(c for c in sandbox.summary()["companies"] if c["id"] == COMPANY)
    return company["goals"]["active"]


def records(app) -> list[IdempotencyRecord]:
    with app.app_context():
        return list(get_session().scalars(select(IdempotencyRecord)).all())


def change_records(app, **values) -> None:
    with app.app_context():
        session = get_session()
        session.execute(update(IdempotencyRecord).values(**values))
        session.commit()


def new_goal_id(client, key) -> str:
    resp = client.post(GOALS, json=GOAL, headers=headers(key, None))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["data"]["goal"]["id"]


# -- replay ------------------------------------------------------------------------------------------------
def test_a_repeated_add_is_replayed_and_creates_one_goal(app, client, key, sandbox):
    goals_before = active_goals(sandbox)
    first = client.post(GOALS, json=GOAL, headers=headers(key))
    assert first.status_code == 200, first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    again = client.post(GOALS, json=GOAL, headers=headers(key))
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data and again.content_type == first.content_type
    assert posts(sandbox) == 1
    assert active_goals(sandbox) == goals_before + 1
    [row] = records(app)
    assert row.state == "done" and row.status == 200 and row.body == first.data


def test_without_a_key_every_write_is_sent(client, key, sandbox):
    goals_before = active_goals(sandbox)
    for _ in range(2):
        resp = client.post(GOALS, json=GOAL, headers=headers(key, None))
        assert resp.status_code == 200 and "Idempotent-Replayed" not in resp.headers
    assert posts(sandbox) == 2 and active_goals(sandbox) == goals_before + 2


def test_the_same_body_in_another_key_order_or_spacing_is_the_same_request(client, key, sandbox):
    first = client.post(GOALS, json=GOAL, headers=headers(key))
    reordered = dict(reversed(list(GOAL.items())))
    spaced = json.dumps(reordered, indent=4)
    again = client.post(GOALS, data=spaced, content_type="application/json", headers=headers(key))
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data and posts(sandbox) == 1


def test_update_and_delete_are_replayed(client, key, sandbox):
    goal_id = new_goal_id(client, key)
    sandbox.clear_calls()
    renamed = [client.put(f"{GOALS}/{goal_id}", json={"title": "Renamed"}, headers=headers(key, "put-1"))]
    renamed.append(client.put(f"{GOALS}/{goal_id}", json={"title": "Renamed"}, headers=headers(key, "put-1")))
    assert [r.status_code for r in renamed] == [200, 200] and renamed[0].data == renamed[1].data
    deleted = [client.delete(f"{GOALS}/{goal_id}", headers=headers(key, "delete-1")) for _ in range(2)]
    # Sent twice, the second delete would be a 404 from Pipedrive: the replay is the first answer.
    assert [r.status_code for r in deleted] == [200, 200] and deleted[0].data == deleted[1].data
    assert [r.headers.get("Idempotent-Replayed") for r in renamed + deleted] == [None, "true", None, "true"]
    assert sandbox.count(GOALS, method="PUT") == 1 and sandbox.count(GOALS, method="DELETE") == 1


def test_reads_ignore_the_header(app, client, key, sandbox):
    for value in ("", "order-42"):
        resp = client.get(f"{GOALS}/find", headers=headers(key, value))
        assert resp.status_code == 200 and "Idempotent-Replayed" not in resp.headers
    assert sandbox.count(f"{GOALS}/find") == 2 and records(app) == []


# -- another request with the same key ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", GOALS, {**GOAL, "title": "Another goal"}),
        ("PUT", f"{GOALS}/1", {"title": "Another goal"}),
        ("DELETE", f"{GOALS}/1", None),
    ],
    ids=["another body", "another method and path", "a delete"],
)
def test_the_same_key_on_another_request_is_refused(client, key, sandbox, method, path, body):
    assert client.post(GOALS, json=GOAL, headers=headers(key)).status_code == 200
    sandbox.clear_calls()
    resp = client.open(path, method=method, json=body, headers=headers(key))
    assert resp.status_code == 422, resp.get_json()
    payload = resp.get_json()
    assert payload["code"] == "idempotency_key_reused" and payload["success"] is False
    assert "Idempotency-Key" in payload["error"] and payload["error_info"]
    assert sandbox.calls == []


# -- the first request still running -------------------------------------------------------------------------
def test_a_request_while_the_first_is_running_gets_409(app, client, key, sandbox):
    sandbox.set_knobs(api_delay_s=1.0)
    first: dict[str, object] = {}

    def send_first() -> None:
        resp = app.test_client().post(GOALS, json=GOAL, headers=headers(key))
        first.update(status=resp.status_code, body=resp.data)

    thread = threading.Thread(target=send_first)
    thread.start()
    try:
        wait_until(lambda: records(app), 5, what="the first request's claim")
        assert records(app)[0].state == "in_progress"
        second = client.post(GOALS, json=GOAL, headers=headers(key))
        assert second.status_code == 409, second.get_json()
        assert second.get_json()["code"] == "idempotency_key_in_progress"
        assert second.headers["Retry-After"] == "1"
    finally:
        thread.join(10)
    assert first["status"] == 200
    sandbox.set_knobs(api_delay_s=0.0)
    third = client.post(GOALS, json=GOAL, headers=headers(key))
    assert third.status_code == 200 and third.headers["Idempotent-Replayed"] == "true"
    assert third.data == first["body"]
    assert posts(sandbox) == 1


def test_a_stale_lock_is_taken_over(app, client, key, sandbox):
    first = client.post(GOALS, json=GOAL, headers=headers(key))
    # As if the request were still running in another process...
    change_records(app, state="in_progress", status=None, body=None, locked_at=utcnow())
    assert client.post(GOALS, json=GOAL, headers=headers(key)).status_code == 409
    # ...whose process died long ago: the next request takes the key over and runs.
    change_records(app, locked_at=utcnow() - timedelta(minutes=3))
    taken = client.post(GOALS, json=GOAL, headers=headers(key))
    assert taken.status_code == 200 and "Idempotent-Replayed" not in taken.headers
    assert taken.data != first.data  # a new goal: the dead request's outcome was unknown
    assert posts(sandbox) == 2
    [row] = records(app)
    assert row.state == "done" and row.body == taken.data


# -- error answers: kept when the request executed, released when it was refused before ---------------------
def test_an_upstream_error_answer_is_replayed(client, key, sandbox):
    goal_id = new_goal_id(client, key)
    sandbox.clear_calls()
    sandbox.set_knobs(force_api_status={"status": 404, "count": 1})
    first = client.put(f"{GOALS}/{goal_id}", json={"title": "Renamed"}, headers=headers(key))
    assert first.status_code == 404 and first.get_json()["code"] == "not_found"
    again = client.put(f"{GOALS}/{goal_id}", json={"title": "Renamed"}, headers=headers(key))
    assert again.status_code == 404 and again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert sandbox.count(GOALS, method="PUT") == 1


def test_an_unknown_outcome_is_replayed(client, key, sandbox):
    sandbox.set_knobs(force_api_status={"status": 500, "count": 1})
    first = client.post(GOALS, json=GOAL, headers=headers(key))
    assert first.status_code == 502 and first.get_json()["code"] == "outcome_unknown"
    again = client.post(GOALS, json=GOAL, headers=headers(key))
    assert again.status_code == 502 and again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data and posts(sandbox) == 1


def test_a_write_that_timed_out_is_replayed_as_outcome_unknown(app, client, key, sandbox, monkeypatch):
    pd_client = app.extensions["pd_client"]
    monkeypatch.setattr(pd_client, "settings", replace(pd_client.settings, upstream_timeout=0.2))
    sandbox.set_knobs(api_delay_s=1.0)
    first = client.post(GOALS, json=GOAL, headers=headers(key))
    assert first.status_code == 504 and first.get_json()["code"] == "outcome_unknown"
    wait_until(lambda: posts(sandbox) == 1, 5, what="the sandbox to finish the delayed add")
    sandbox.set_knobs(api_delay_s=0.0)
    again = client.post(GOALS, json=GOAL, headers=headers(key))
    assert again.status_code == 504 and again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data and posts(sandbox) == 1


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (503, "upstream_unavailable")])
def test_a_refusal_that_executed_nothing_releases_the_key(app, client, key, sandbox, status, code):
    sandbox.set_knobs(force_api_status={"status": status, "count": 1})
    refused = client.post(GOALS, json=GOAL, headers=headers(key))
    assert refused.status_code == status and refused.get_json()["code"] == code
    assert records(app) == []
    if (
        status == 429
    ):  # Pipedrive's throttle holds (proxy/throttle.py): refused here, kept nowhere, until its reset
        held = client.post(GOALS, json=GOAL, headers=headers(key))
        assert held.status_code == 429 and records(app) == [] and posts(sandbox) == 1
        with app.app_context():
            session = get_session()
            session.execute(update(Installation).values(throttled_until=None))
            session.commit()
    retried = client.post(GOALS, json=GOAL, headers=headers(key))
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert posts(sandbox) == 2 and sandbox.count(GOALS, method="POST", status=200) == 1


def test_pipedrive_unreachable_before_sending_releases_the_key(app, client, key, sandbox, monkeypatch):
    pd_client = app.extensions["pd_client"]
    real_call = pd_client.call

    def unreachable(*args, **kwargs):
        monkeypatch.setattr(pd_client, "call", real_call)
        raise UpstreamUnreachable("NewConnectionError", sent=False)

    monkeypatch.setattr(pd_client, "call", unreachable)
    refused = client.post(GOALS, json=GOAL, headers=headers(key))
    assert refused.status_code == 503 and refused.get_json()["code"] == "upstream_unavailable"
    assert records(app) == [] and posts(sandbox) == 0
    retried = client.post(GOALS, json=GOAL, headers=headers(key))
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert posts(sandbox) == 1


def test_a_validation_failure_is_not_kept(app, client, key, sandbox):
    bad = client.post(GOALS, json={**GOAL, "interval": "daily"}, headers=headers(key))
    assert bad.status_code == 400 and bad.get_json()["code"] == "validation_failed"
    assert records(app) == []
    good = client.post(GOALS, json=GOAL, headers=headers(key))
    assert good.status_code == 200 and "Idempotent-Replayed" not in good.headers
    assert posts(sandbox) == 1


def test_refusals_about_the_caller_are_not_kept(app, client, key, make_key, sandbox):
    read_key = make_key(company_id=COMPANY, scope="read")
    assert client.post(GOALS, json=GOAL, headers=headers(read_key)).status_code == 403
    with app.app_context():  # the key's installation goes away (an uninstall)
        session = get_session()
        session.execute(update(Installation).values(status="uninstalled"))
        session.commit()
    resp = client.post(GOALS, json=GOAL, headers=headers(key))
    assert resp.status_code == 409 and resp.get_json()["code"] == "not_installed"
    assert records(app) == [] and posts(sandbox) == 0


# -- the header itself -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "empty"),
        ("k" * 256, "too_long"),
        ("clé", "invalid_format"),  # Latin-1 on the wire
        ("cl\u00c3\u00a9", "invalid_format"),  # UTF-8 bytes, as a WSGI server decodes them
        ("tab\tinside", "invalid_format"),
        ("del\x7f", "invalid_format"),
    ],
    ids=["empty", "256 characters", "latin-1", "utf-8", "tab", "DEL"],
)
def test_a_bad_key_is_refused(app, client, key, sandbox, value, code):
    resp = client.post(GOALS, json=GOAL, headers=headers(key, value))
    assert resp.status_code == 400, resp.get_json()
    payload = resp.get_json()
    assert payload["code"] == "validation_failed" and "Idempotency-Key" in payload["error"]
    assert "Idempotency-Key" in payload["error_info"]
    assert payload["details"] == [{"field": "Idempotency-Key", "message": payload["error"], "code": code}]
    assert posts(sandbox) == 0 and records(app) == []


@pytest.mark.parametrize("value", ["k" * 255, "a", " spaces and ~punctuation! ", "3f2b8e1c-6a4d-4f0e-9b7a"])
def test_any_printable_ascii_key_up_to_255_characters_works(client, key, sandbox, value):
    first = client.post(GOALS, json=GOAL, headers=headers(key, value))
    again = client.post(GOALS, json=GOAL, headers=headers(key, value))
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and posts(sandbox) == 1


# -- whose key, and for how long -----------------------------------------------------------------------------
def test_keys_belong_to_one_credential(app, client, key, make_key, sandbox, monkeypatch):
    other_key = make_key(company_id=COMPANY)
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], jwt_secret=JWT_SECRET))
    claims = {"companyId": COMPANY, "userId": USER, "exp": int(time.time()) + 600}
    panel = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    goals_before = active_goals(sandbox)
    answers = []
    for credential in (
        {"x-api-token": key},
        {"x-api-token": other_key},
        {"Authorization": f"Bearer {panel}"},
    ):
        first = client.post(GOALS, json=GOAL, headers={**credential, "Idempotency-Key": "shared"})
        again = client.post(GOALS, json=GOAL, headers={**credential, "Idempotency-Key": "shared"})
        assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
        assert again.headers["Idempotent-Replayed"] == "true" and again.data == first.data
        answers.append(first.get_json()["data"]["goal"]["id"])
    assert len(set(answers)) == 3
    assert posts(sandbox) == 3 and active_goals(sandbox) == goals_before + 3


def test_a_key_expires_after_24_hours(app, client, key, sandbox):
    assert client.post(GOALS, json=GOAL, headers=headers(key)).status_code == 200
    change_records(app, created_at=utcnow() - timedelta(hours=24, seconds=1))
    # Expired: as if never used, even for another request.
    other = client.post(GOALS, json={**GOAL, "title": "Next year"}, headers=headers(key))
    assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers
    assert posts(sandbox) == 2
    [row] = records(app)
    assert row.state == "done" and row.body == other.data


def test_expired_keys_are_purged_now_and_then_on_keyed_writes(app, client, key, sandbox):
    store = app.extensions["pd_idempotency"]
    for name in ("old-1", "old-2"):
        assert client.post(GOALS, json=GOAL, headers=headers(key, name)).status_code == 200
    change_records(app, created_at=utcnow() - timedelta(hours=25))
    # A write without a key, and a read, do no housekeeping.
    client.post(GOALS, json=GOAL, headers=headers(key, None))
    client.get(f"{GOALS}/find", headers=headers(key, None))
    assert len(records(app)) == 2
    # This process purged a moment ago: the next keyed write does not purge again...
    assert client.post(GOALS, json=GOAL, headers=headers(key, "new-1")).status_code == 200
    assert {r.key for r in records(app)} == {"old-1", "old-2", "new-1"}
    # ...until the interval has passed.
    store._purged_at -= store.purge_every_s
    assert client.post(GOALS, json=GOAL, headers=headers(key, "new-2")).status_code == 200
    assert {r.key for r in records(app)} == {"new-1", "new-2"}
    with app.app_context():
        assert idempotency_store().purge() == 0


# -- browsers and the document ---------------------------------------------------------------------------
def test_a_browser_may_send_the_key_and_read_the_replay_header(app, client, key, sandbox):
    dash = "https://dash.example.com"
    args = ["keys", "create", "--company-id", str(COMPANY), "--name", "dash", "--scope", "full"]
    result = app.test_cli_runner().invoke(args=[*args, "--origin", dash])
    browser_key = result.stdout.strip().splitlines()[-1]
    preflight = client.options(
        GOALS,
        headers={
            "Origin": dash,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-token, content-type, idempotency-key",
        },
    )
    assert "idempotency-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    client.post(GOALS, json=GOAL, headers={**headers(browser_key), "Origin": dash})
    again = client.post(GOALS, json=GOAL, headers={**headers(browser_key), "Origin": dash})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Access-Control-Allow-Origin"] == dash
    assert "Idempotent-Replayed" in again.headers["Access-Control-Expose-Headers"]


def test_the_document_names_the_header_and_its_answers(client):
    doc = client.get("/api/openapi.json").get_json()
    parameter = doc["components"]["parameters"]["IdempotencyKey"]
    assert parameter["in"] == "header" and parameter["name"] == "Idempotency-Key"
    assert parameter["required"] is False
    assert parameter["schema"]["minLength"] == 1 and parameter["schema"]["maxLength"] == 255
    writes = [
        doc["paths"][GOALS]["post"],
        doc["paths"][f"{GOALS}/{{id}}"]["put"],
        doc["paths"][f"{GOALS}/{{id}}"]["delete"],
    ]
    for operation in writes:
        assert {"$ref": "#/components/parameters/IdempotencyKey"} in operation["parameters"]
        assert "Idempotent-Replayed" in operation["responses"]["200"]["headers"]
        assert {"409", "422"} <= set(operation["responses"])
    for path, method in ((f"{GOALS}/find", "get"), (f"{GOALS}/{{id}}/results", "get")):
        parameters = doc["paths"][path][method].get("parameters", [])
        assert {"$ref": "#/components/parameters/IdempotencyKey"} not in parameters
        assert "422" not in doc["paths"][path][method]["responses"]
    conflict = doc["components"]["responses"]["Conflict"]
    assert "idempotency_key_in_progress" in conflict["description"] and "Retry-After" in conflict["headers"]
    assert "idempotency_key_reused" in doc["components"]["responses"]["IdempotencyKeyReused"]["description"]
    codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert {"idempotency_key_reused", "idempotency_key_in_progress"} <= set(codes)


# -- under real gunicorn: 2 workers, one database ----------------------------------------------------------
@pytest.fixture
def served(
    clean_db, sandbox_server, sandbox, tmp_path: Path
) -> Iterator[tuple[GunicornProcess, str, object]]:
    environ = app_environ(clean_db, sandbox_server.url)
    db = AppDatabase(environ)
    server = None
    try:
        db.install(sandbox.install(COMPANY, USER), COMPANY, USER)
        api_key = db.create_key(COMPANY)
        server = GunicornProcess(tmp_path / "gunicorn.log", environ, workers=2, threads=4)
        sandbox.clear_calls()
        yield server, api_key, db.app
    finally:
        if server is not None:
            server.stop()
        db.close()


class Connection:
    """One kept-alive HTTP connection to gunicorn, and the worker that accepted it."""

    def __init__(self, server: GunicornProcess) -> None:
        parts = urlsplit(server.url)
        self.server = server
        self.port = parts.port
        self.http = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
        self.http.connect()

    def worker(self) -> int:
        client_port = self.http.sock.getsockname()[1]
        return wait_until(
            lambda: pid_serving(self.server.worker_pids(), self.port, client_port), 5, what="its worker"
        )

    def send(self, method: str, path: str, api_key: str, idempotency_key: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"x-api-token": api_key, "Idempotency-Key": idempotency_key}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        self.http.request(method, path, body=data, headers=hdrs)
        resp = self.http.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()

    def close(self) -> None:
        self.http.close()


def send_elsewhere(server, stopped: int, api_key: str, idempotency_key: str):
    """POST the goal through another worker: with `stopped` stopped (SIGSTOP), only the other one can accept
    the connection. Returns (status, headers, body)."""
    os.kill(stopped, signal.SIGSTOP)
    try:
        other = Connection(server)
        answer = other.send("POST", GOALS, api_key, idempotency_key, GOAL)
        assert other.worker() != stopped
        other.close()
    finally:
        os.kill(stopped, signal.SIGCONT)
    return answer


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers")
def test_a_replay_comes_from_another_worker(served, sandbox):
    server, api_key, _app = served
    first_conn = Connection(server)
    status, first_headers, first_body = first_conn.send("POST", GOALS, api_key, "across", GOAL)
    assert status == 200, first_body
    first_worker = first_conn.worker()
    first_conn.close()
    status, again_headers, again_body = send_elsewhere(server, first_worker, api_key, "across")
    assert status == 200 and again_headers.get("Idempotent-Replayed") == "true"
    assert again_body == first_body and "Idempotent-Replayed" not in first_headers
    assert posts(sandbox) == 1


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers")
def test_another_worker_sees_the_first_request_running(served, sandbox):
    server, api_key, app = served
    sandbox.set_knobs(api_delay_s=2.0)
    first_conn = Connection(server)
    first: dict[str, object] = {}

    def send_first() -> None:
        status, _headers, body = first_conn.send("POST", GOALS, api_key, "slow", GOAL)
        first.update(status=status, body=body)

    thread = threading.Thread(target=send_first)
    thread.start()
    try:
        wait_until(lambda: records(app), 5, what="the first request's claim")
        # Past its short transactions and waiting on the slow sandbox: stopped there, it holds no database
        # lock, and its request stays claimed for as long as it is stopped.
        time.sleep(0.3)
        status, hdrs, body = send_elsewhere(server, first_conn.worker(), api_key, "slow")
    finally:
        thread.join(20)
        first_conn.close()
    assert status == 409, body
    assert json.loads(body)["code"] == "idempotency_key_in_progress" and hdrs["Retry-After"] == "1"
    assert first["status"] == 200
    sandbox.set_knobs(api_delay_s=0.0)
    last = Connection(server)
    status, hdrs, body = last.send("POST", GOALS, api_key, "slow", GOAL)
    last.close()
    assert status == 200 and hdrs.get("Idempotent-Replayed") == "true" and body == first["body"]
    assert posts(sandbox) == 1
