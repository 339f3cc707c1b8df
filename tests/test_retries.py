"""Retried reads (UPSTREAM_RETRIES): a read that met 502/503/504 or no answer is sent again after a jittered
backoff or Pipedrive's Retry-After, within the request's deadline; a write is sent once. Counted at the
sandbox (or, for a closed port, in the app's own upstream metrics)."""

from __future__ import annotations

import socket
import time
from datetime import date
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from pd_app import create_app
from pd_app.db import get_session
from pd_app.models import Installation
from pd_app.proxy import forward as forward_module

from .conftest import Installer, app_environ, close_app
from .test_proxy import GOAL

FIND = "/api/v1/goals/find"
# Tests do not wait out real backoffs: the knob is a setting, as upstream_timeout is.
FAST = {"upstream_backoff_s": 0.001, "upstream_backoff_max_s": 0.002}


def build_app(clean_db, sandbox_url, overrides=None, **env):
    return create_app(
        overrides={**FAST, **(overrides or {})}, environ=app_environ(clean_db, sandbox_url, **env)
    )


@pytest.fixture
def app(clean_db, sandbox_server, sandbox):
    app = build_app(clean_db, sandbox_server.url)
    yield app
    close_app(app)


@pytest.fixture
def key(installer, make_key, sandbox):
    installer.install(user_id=2001)
    sandbox.clear_calls()
    return make_key(company_id=1001)


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The retry loop's sleeps, recorded instead of slept; its clock moves on by what it "slept"."""
    slept: list[float] = []
    fake_time = SimpleNamespace(
        monotonic=lambda: time.monotonic() + sum(slept), perf_counter=time.perf_counter, sleep=slept.append
    )
    monkeypatch.setattr(forward_module, "time", fake_time)
    return slept


def finds(sandbox) -> int:
    return sandbox.count(FIND)


def metric(client, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


# -- reads ---------------------------------------------------------------------------------------------------
def test_a_read_that_meets_one_503_is_sent_again_and_answered(client, key, sandbox):
    sandbox.set_knobs(force_api_status={"status": 503, "count": 1, "retry_after": 0})
    resp = client.get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 200 and resp.get_json()["success"] is True
    assert finds(sandbox) == 2
    assert metric(client, "pd_app_upstream_retries_total", op="find") == 1
    assert metric(client, "pd_app_upstream_calls_total", op="find", outcome="503") == 1
    assert metric(client, "pd_app_upstream_calls_total", op="find", outcome="200") == 1


@pytest.mark.parametrize("status", [502, 504])
def test_a_read_that_meets_a_gateway_error_is_sent_again(client, key, sandbox, status):
    today = date.today().isoformat()
    goal_id = client.get(FIND, headers={"x-api-token": key}).get_json()["data"]["goals"][0]["id"]
    sandbox.clear_calls()
    sandbox.set_knobs(force_api_status={"status": status, "count": 1})  # no Retry-After: the backoff's turn
    resp = client.get(
        f"/api/v1/goals/{goal_id}/results",
        query_string={"period.start": today, "period.end": today},
        headers={"x-api-token": key},
    )
    assert resp.status_code == 200
    assert sandbox.count(f"/api/v1/goals/{goal_id}/results") == 2


def test_a_read_that_keeps_failing_is_tried_one_plus_upstream_retries_times(client, key, sandbox, waits):
    sandbox.set_knobs(force_api_status={"status": 503, "count": 50, "retry_after": 0})
    resp = client.get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 503 and resp.get_json()["code"] == "upstream_unavailable"
    assert resp.headers["Retry-After"]
    assert finds(sandbox) == 1 + 2  # UPSTREAM_RETRIES defaults to 2
    assert waits == [0, 0]  # Pipedrive's Retry-After: 0, honoured


def test_without_retry_after_the_backoff_grows_with_full_jitter(
    clean_db, sandbox_server, sandbox, waits, monkeypatch
):
    import random

    ceilings: list[float] = []

    def highest(low: float, high: float) -> float:  # the jitter's upper bound, to see the schedule
        ceilings.append(high)
        return high

    monkeypatch.setattr(random, "uniform", highest)
    app = build_app(
        clean_db,
        sandbox_server.url,
        {"upstream_backoff_s": 0.2, "upstream_backoff_max_s": 0.3},
        UPSTREAM_RETRIES="3",
    )
    try:
        key = install_and_key(app, sandbox_server, sandbox)
        sandbox.set_knobs(force_api_status={"status": 502, "count": 50})
        resp = app.test_client().get(FIND, headers={"x-api-token": key})
        assert resp.status_code == 502 and resp.get_json()["code"] == "upstream_error"
        assert finds(sandbox) == 4
        # base x 2^n (0.2, 0.4, 0.8) capped at 0.3, each wait drawn from [0, that]
        assert waits == [0.2, 0.3, 0.3] and ceilings[:3] == [0.2, 0.3, 0.3]
    finally:
        _close(app)


def test_upstream_retries_zero_sends_a_read_once(clean_db, sandbox_server, sandbox):
    app = build_app(clean_db, sandbox_server.url, UPSTREAM_RETRIES="0")
    try:
        key = install_and_key(app, sandbox_server, sandbox)
        sandbox.set_knobs(force_api_status={"status": 503, "count": 5, "retry_after": 0})
        resp = app.test_client().get(FIND, headers={"x-api-token": key})
        assert resp.status_code == 503
        assert finds(sandbox) == 1
    finally:
        _close(app)


def test_a_retry_after_that_fits_the_deadline_is_waited_for(client, key, sandbox, waits):
    # deadline 20 s, upstream_timeout 10 s: a wait of 7 s still leaves room for a whole attempt
    sandbox.set_knobs(force_api_status={"status": 503, "count": 1, "retry_after": 7})
    resp = client.get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 200
    assert waits == [7] and finds(sandbox) == 2


@pytest.mark.parametrize("retry_after", [11, 30, 3600])
def test_a_retry_after_beyond_the_deadline_is_not_waited_for(client, key, sandbox, waits, retry_after):
    sandbox.set_knobs(force_api_status={"status": 503, "count": 3, "retry_after": retry_after})
    resp = client.get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 503 and resp.get_json()["code"] == "upstream_unavailable"
    assert resp.headers["Retry-After"] == str(retry_after)  # Pipedrive's own, passed on at once
    assert waits == [] and finds(sandbox) == 1


def test_the_deadline_counts_a_whole_attempt_after_each_wait(clean_db, sandbox_server, sandbox, waits):
    """With room for two attempts only, the third is not started even though UPSTREAM_RETRIES allows it."""
    app = build_app(clean_db, sandbox_server.url, {"upstream_deadline_s": 5.0, "upstream_timeout": 2.0})
    try:
        key = install_and_key(app, sandbox_server, sandbox)
        sandbox.set_knobs(force_api_status={"status": 503, "count": 50, "retry_after": 2})
        resp = app.test_client().get(FIND, headers={"x-api-token": key})
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
        # first at ~0 s; wait 2 + attempt 2 ends by ~4 s < 5 s: sent; a second wait would end past 5 s
        assert waits == [2] and finds(sandbox) == 2
    finally:
        _close(app)


def test_an_unreachable_pipedrive_is_tried_again_then_503(clean_db, sandbox_server, sandbox):
    closed = closed_port_url()
    app = build_app(clean_db, sandbox_server.url, PIPEDRIVE_API_DOMAINS=f"{sandbox_server.url},{closed}")
    try:
        key = install_and_key(app, sandbox_server, sandbox)
        with app.app_context():
            get_session().execute(update(Installation).values(api_domain=closed))
            get_session().commit()
        client = app.test_client()
        resp = client.get(FIND, headers={"x-api-token": key})
        assert resp.status_code == 503 and resp.get_json()["code"] == "upstream_unavailable"
        assert int(resp.headers["Retry-After"]) >= 1
        assert metric(client, "pd_app_upstream_calls_total", op="find", outcome="unreachable") == 3
        assert metric(client, "pd_app_upstream_retries_total", op="find") == 2
        # A write to it is not retried either way (here it was surely never sent: still one attempt).
        write = client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key})
        assert write.status_code == 503
        assert metric(client, "pd_app_upstream_calls_total", op="add", outcome="unreachable") == 1
        assert finds(sandbox) == 0
    finally:
        _close(app)


# -- writes: sent once, whatever the answer ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "status", "expected", "code"),
    [
        ("POST", 503, 503, "upstream_unavailable"),
        ("POST", 502, 502, "outcome_unknown"),
        ("PUT", 504, 502, "outcome_unknown"),
        ("DELETE", 503, 503, "upstream_unavailable"),
    ],
)
def test_a_write_is_never_sent_again(client, key, sandbox, method, status, expected, code):
    goal_id = client.get(FIND, headers={"x-api-token": key}).get_json()["data"]["goals"][0]["id"]
    sandbox.clear_calls()
    sandbox.set_knobs(force_api_status={"status": status, "count": 5, "retry_after": 0})
    path = "/api/v1/goals" if method == "POST" else f"/api/v1/goals/{goal_id}"
    resp = client.open(
        path, method=method, json=None if method == "DELETE" else GOAL, headers={"x-api-token": key}
    )
    assert resp.status_code == expected and resp.get_json()["code"] == code
    assert sandbox.count("/api/v1/goals", method=method) == 1
    assert metric(client, "pd_app_upstream_retries_total") == 0


# -- helpers -------------------------------------------------------------------------------------------------
def install_and_key(app, sandbox_server, sandbox) -> str:
    """Install user 2001 of company 1001 into `app` and return a new partner key of that company."""
    installer = Installer(app.test_client(), sandbox_server.url)
    try:
        installer.install(user_id=2001)
    finally:
        installer.close()
    sandbox.clear_calls()
    result = app.test_cli_runner().invoke(
        args=["keys", "create", "--company-id", "1001", "--name", "test", "--scope", "full"]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def _close(app) -> None:
    close_app(app)


def closed_port_url() -> str:
    """An address on loopback where nothing listens: the connection is refused, nothing is sent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
