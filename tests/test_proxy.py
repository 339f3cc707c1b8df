"""The Goals proxy: credentials, validation before anything goes upstream, refresh, and error mapping."""

from __future__ import annotations

import time
from datetime import date

import pytest
from sqlalchemy import select

from pd_app.db import get_session
from pd_app.models import Installation
from pd_app.sandbox import fingerprint
from pd_app.tokens.cipher import cipher

from .test_lifecycle import basic, notice

TODAY = date.today().isoformat()
GOAL = {
    "title": "Q goal",
    "assignee": {"id": 2001, "type": "person"},
    "type": {"name": "deals_won", "params": {"pipeline_id": [1, 2]}},
    "expected_outcome": {"target": 10, "tracking_metric": "sum", "currency_id": 1},
    "duration": {"start": TODAY, "end": None},
    "interval": "monthly",
}


def with_(**changes):
    """GOAL with dotted-path changes; a value of ... deletes the key."""
    import copy

    body = copy.deepcopy(GOAL)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = body
        for p in parents:
            node = node[p]
        if value is ...:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return body


@pytest.fixture
def key(installer, make_key, sandbox):
    installer.install(user_id=2001)
    sandbox.clear_calls()
    return make_key(company_id=1001)


def api_calls(sandbox) -> int:
    return sandbox.count("/api/") + sandbox.count("/oauth/token")


# -- 30+ bad requests: 400 validation_failed, the field named, zero upstream calls ---------------------------
BAD_REQUESTS = [
    # (method, path, query, body, offending field)
    ("GET", "/api/v1/goals/find", {"type.name": "deals_lost"}, None, "type.name"),
    ("GET", "/api/v1/goals/find", {"assignee.type": "robot"}, None, "assignee.type"),
    ("GET", "/api/v1/goals/find", {"assignee.id": "abc"}, None, "assignee.id"),
    ("GET", "/api/v1/goals/find", {"is_active": "maybe"}, None, "is_active"),
    ("GET", "/api/v1/goals/find", {"period.start": TODAY}, None, "period.end"),
    ("GET", "/api/v1/goals/find", {"period.end": TODAY}, None, "period.start"),
    (
        "GET",
        "/api/v1/goals/find",
        {"period.start": "2025-02-30", "period.end": "2025-03-01"},
        None,
        "period.start",
    ),
    ("GET", "/api/v1/goals/find", {"period.start": "2025-03-02", "period.end": "2025-03-01"}, None, "period"),
    (
        "GET",
        "/api/v1/goals/find",
        {"expected_outcome.tracking_metric": "count"},
        None,
        "expected_outcome.tracking_metric",
    ),
    ("GET", "/api/v1/goals/find", {"type.params.pipeline_id": "one"}, None, "type.params.pipeline_id"),
    ("GET", "/api/v1/goals/find", {"company_id": "1002"}, None, "company_id"),
    ("GET", "/api/v1/goals/abc/results", {}, None, "period.start"),
    (
        "GET",
        "/api/v1/goals/abc/results",
        {"period.start": "01-01-2025", "period.end": "2025-01-31"},
        None,
        "period.start",
    ),
    (
        "GET",
        "/api/v1/goals/abc/results",
        {"period.start": "2025-02-01", "period.end": "2025-01-31"},
        None,
        "period",
    ),
    ("GET", "/api/v1/goals/a%20b/results", {"period.start": TODAY, "period.end": TODAY}, None, "id"),
    ("POST", "/api/v1/goals", {}, {}, "assignee"),
    ("POST", "/api/v1/goals", {}, [], "body"),
    ("POST", "/api/v1/goals", {}, with_(assignee=...), "assignee"),
    ("POST", "/api/v1/goals", {}, with_(type=...), "type"),
    ("POST", "/api/v1/goals", {}, with_(expected_outcome=...), "expected_outcome"),
    ("POST", "/api/v1/goals", {}, with_(duration=...), "duration"),
    ("POST", "/api/v1/goals", {}, with_(interval=...), "interval"),
    ("POST", "/api/v1/goals", {}, with_(interval="daily"), "interval"),
    ("POST", "/api/v1/goals", {}, with_(type__name="deals_lost"), "type.name"),
    ("POST", "/api/v1/goals", {}, with_(assignee__type="robot"), "assignee.type"),
    ("POST", "/api/v1/goals", {}, with_(assignee__id=True), "assignee.id"),
    ("POST", "/api/v1/goals", {}, with_(assignee__id=-3), "assignee.id"),
    (
        "POST",
        "/api/v1/goals",
        {},
        with_(expected_outcome__tracking_metric="count"),
        "expected_outcome.tracking_metric",
    ),
    (
        "POST",
        "/api/v1/goals",
        {},
        with_(expected_outcome__tracking_metric="quantity"),
        "expected_outcome.currency_id",
    ),
    ("POST", "/api/v1/goals", {}, with_(expected_outcome__target="lots"), "expected_outcome.target"),
    ("POST", "/api/v1/goals", {}, with_(type__params={"stage_id": 3}), "type.params.stage_id"),
    (
        "POST",
        "/api/v1/goals",
        {},
        with_(type__params={"activity_type_id": [1]}),
        "type.params.activity_type_id",
    ),
    ("POST", "/api/v1/goals", {}, with_(type__params={"pipeline_id": ["a"]}), "type.params.pipeline_id"),
    ("POST", "/api/v1/goals", {}, with_(type__params={"pipeline_id": 5}), "type.params.pipeline_id"),
    ("POST", "/api/v1/goals", {}, with_(duration__start="2025/01/01"), "duration.start"),
    (
        "POST",
        "/api/v1/goals",
        {},
        with_(duration={"start": "2025-02-01", "end": "2025-01-01"}),
        "duration.end",
    ),
    ("POST", "/api/v1/goals", {}, with_(colour="red"), "colour"),
    ("PUT", "/api/v1/goals/abc", {}, {}, "body"),
    ("PUT", "/api/v1/goals/abc", {}, {"interval": "hourly"}, "interval"),
    (
        "PUT",
        "/api/v1/goals/abc",
        {},
        {"expected_outcome": {"target": 5, "tracking_metric": "quantity", "currency_id": 2}},
        "expected_outcome.currency_id",
    ),
    ("PUT", "/api/v1/goals/abc", {}, "a string", "body"),
    ("DELETE", "/api/v1/goals/" + "x" * 65, {}, None, "id"),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "field"),
    BAD_REQUESTS,
    ids=[f"{m} {f}" for m, _, _, _, f in BAD_REQUESTS],
)
def test_bad_request_is_refused_with_details_and_no_upstream_call(
    client, key, sandbox, method, path, query, body, field
):
    kwargs = {"headers": {"x-api-token": key}, "query_string": query}
    if body is not None:
        kwargs["json"] = body
    resp = client.open(path, method=method, **kwargs)
    assert resp.status_code == 400, resp.get_json()
    payload = resp.get_json()
    assert payload["success"] is False and payload["code"] == "validation_failed"
    fields = [d["field"] for d in payload["details"]]
    assert any(f == field or f.startswith(field + ".") or f.startswith(field + "[") for f in fields), fields
    assert all(d["message"] for d in payload["details"])
    assert api_calls(sandbox) == 0


def test_many_problems_are_reported_together(client, key, sandbox):
    body = with_(interval="daily", assignee__type="robot", type__name="nope")
    resp = client.post("/api/v1/goals", json=body, headers={"x-api-token": key})
    fields = {d["field"] for d in resp.get_json()["details"]}
    assert {"interval", "assignee.type", "type.name"} <= fields
    assert api_calls(sandbox) == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "validation_failed"),
        ("title=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("x" * 70_000, "application/json", 413, "payload_too_large"),
    ],
)
def test_bodies_that_cannot_be_read(client, key, sandbox, data, content_type, status, code):
    resp = client.post("/api/v1/goals", data=data, content_type=content_type, headers={"x-api-token": key})
    assert resp.status_code == status
    assert resp.get_json()["code"] == code
    assert api_calls(sandbox) == 0


# -- credentials ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-token": "pdk_00000000.nope"},
        {"x-api-token": "garbage"},
        {"Authorization": "Bearer pdk_00000000.nope"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not.a.jwt"},
    ],
)
def test_requests_without_a_valid_credential_are_refused(client, key, sandbox, headers):
    resp = client.get("/api/v1/goals/find", headers=headers)
    assert resp.status_code == 401
    body = resp.get_json()
    assert body["code"] == "unauthorized" and body["success"] is False and body["error_info"]
    assert body["errorCode"] == 401  # as in Pipedrive's 401, where its SDKs' callers read the status
    assert api_calls(sandbox) == 0


def test_both_header_forms_work_but_not_together(client, key, sandbox):
    assert client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code == 200
    assert client.get("/api/v1/goals/find", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    both = client.get("/api/v1/goals/find", headers={"x-api-token": key, "Authorization": f"Bearer {key}"})
    assert both.status_code == 401


def test_a_tampered_key_secret_is_refused(client, key):
    prefix, _, secret = key.partition(".")
    tampered = f"{prefix}.{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    assert client.get("/api/v1/goals/find", headers={"x-api-token": tampered}).status_code == 401


def test_revoked_key_is_refused(client, key, runner):
    listing = runner.invoke(args=["keys", "list"]).output
    key_id = listing.strip().splitlines()[-1].split()[0]
    assert key not in listing
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 0
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == 401 and "revoked" in resp.get_json()["error"]


def test_read_key_cannot_write(client, installer, make_key, sandbox):
    installer.install(user_id=2001)
    read_key = make_key(company_id=1001, scope="read")
    sandbox.clear_calls()
    assert client.get("/api/v1/goals/find", headers={"x-api-token": read_key}).status_code == 200
    resp = client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": read_key})
    assert resp.status_code == 403 and resp.get_json()["code"] == "forbidden"
    assert sandbox.count("/api/v1/goals", method="POST") == 0


def test_the_credential_alone_decides_the_company(app, client, installer, make_key, sandbox):
    installer.install(user_id=2001)
    installer.install(user_id=2101)  # Globex's admin
    acme_key = make_key(company_id=1001)
    acme = client.get(
        "/api/v1/goals/find", headers={"x-api-token": acme_key}, query_string={"assignee.type": "company"}
    )
    assert acme.status_code == 200
    # It reached Pipedrive with Acme's access token, not Globex's.
    fingerprints = {}
    with app.app_context():
        for inst in get_session().scalars(select(Installation)).all():
            token = cipher().decrypt(inst, "access_token", inst.access_token_enc)
            fingerprints[inst.company_id] = fingerprint(token)
    sent = [c["access_token_fp"] for c in sandbox.calls if c["path"] == "/api/v1/goals/find"]
    assert sent == [fingerprints[1001]] and fingerprints[1001] != fingerprints[1002]
    # Query parameters cannot pick another company; unknown ones are refused outright.
    sneaky = client.get("/api/v1/goals/find?companyId=1002", headers={"x-api-token": acme_key})
    assert sneaky.status_code == 400
    status = client.get("/api/v1/app/installation?company_id=1002", headers={"x-api-token": acme_key})
    assert status.get_json()["data"]["company_id"] == 1001


def test_company_without_installation_gets_not_installed(client, installer, make_key, sandbox):
    # A key is created only for an installed company; this one's company uninstalled the app since.
    installer.install(user_id=2101)
    lonely = make_key(company_id=1002)
    client.delete("/oauth/callback", json=notice(1002, 2101), headers=basic())
    sandbox.clear_calls()
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": lonely})
    assert resp.status_code == 409
    body = resp.get_json()
    assert body["code"] == "not_installed" and "/oauth/install" in body["error_info"]
    assert api_calls(sandbox) == 0


def test_user_bound_key_uses_that_users_token(client, installer, make_key, sandbox):
    installer.install(user_id=2001)
    installer.install(user_id=2002)
    sam_key = make_key(company_id=1001, user_id=2002)
    sandbox.clear_calls()
    goals = client.get("/api/v1/goals/find", headers={"x-api-token": sam_key}).get_json()["data"]["goals"]
    assert all(g["assignee"] == {"id": 2002, "type": "person"} for g in goals)
    info = client.get("/api/v1/app/installation", headers={"x-api-token": sam_key}).get_json()["data"]
    assert info["user_id"] == 2002


# -- tokens: refresh before expiry, one retry on 401 --------------------------------------------------------
def _expire_locally(app, user_id=2001):
    from datetime import timedelta

    from pd_app.models import utcnow

    with app.app_context():
        session = get_session()
        inst = session.scalar(select(Installation).where(Installation.user_id == user_id))
        inst.access_token_expires_at = utcnow() + timedelta(seconds=60)
        session.commit()


def test_token_near_expiry_is_refreshed_before_the_call(app, client, key, sandbox):
    _expire_locally(app)
    sandbox.expire_access_tokens(1001, 2001)
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == 200
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1
    assert sandbox.count("/api/v1/goals/find", status=401) == 0
    with app.app_context():
        inst = get_session().scalar(select(Installation).where(Installation.user_id == 2001))
        assert inst.last_refreshed_at is not None and inst.status == "active"
    # The next call uses the new token without refreshing again.
    assert client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code == 200
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1


def test_upstream_401_refreshes_once_and_retries_once(client, key, sandbox):
    sandbox.set_knobs(force_api_status={"status": 401, "count": 1})
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == 200
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1
    assert sandbox.count("/api/v1/goals/find") == 2


def test_second_401_goes_to_the_caller(client, key, sandbox):
    sandbox.set_knobs(force_api_status={"status": 401, "count": 5})
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == 401 and resp.get_json()["code"] == "reauth_required"
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1
    assert sandbox.count("/api/v1/goals/find") == 2


def test_invalid_grant_marks_reauth_required(app, client, key, sandbox):
    _expire_locally(app)
    sandbox.set_knobs(refresh_error="invalid_grant")
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == 401
    assert resp.get_json()["code"] == "reauth_required" and "/oauth/install" in resp.get_json()["error_info"]
    sandbox.clear_calls()
    again = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert again.status_code == 401 and api_calls(sandbox) == 0


def test_token_endpoint_outage_is_transient(app, client, key, sandbox):
    _expire_locally(app)
    sandbox.set_knobs(refresh_error=500)
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert resp.get_json()["code"] == "upstream_unavailable"
    with app.app_context():
        inst = get_session().scalar(select(Installation).where(Installation.user_id == 2001))
        assert inst.status == "active" and inst.refresh_token_enc


# -- upstream answers mapped to the contract ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "html", "expected", "code"),
    [
        (402, False, 402, "forbidden"),
        (403, False, 403, "forbidden"),
        (403, True, 403, "forbidden"),
        (404, False, 404, "not_found"),
        (429, False, 429, "rate_limited"),
        (500, False, 502, "upstream_error"),
        (503, False, 503, "upstream_unavailable"),
    ],
)
def test_upstream_errors_map_to_contract_codes(client, key, sandbox, status, html, expected, code):
    sandbox.set_knobs(force_api_status={"status": status, "count": 1, "html": html})
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == expected
    body = resp.get_json()
    assert body["code"] == code and body["success"] is False and body["error"]
    if expected in (429, 503):
        assert int(resp.headers["Retry-After"]) >= 1


def test_write_that_fails_upstream_is_reported_as_outcome_unknown(client, key, sandbox):
    sandbox.set_knobs(force_api_status={"status": 500, "count": 1})
    resp = client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key})
    assert resp.status_code == 502 and resp.get_json()["code"] == "outcome_unknown"


def test_timeouts_are_unavailable_for_reads_and_unknown_for_writes(app, client, key, sandbox, monkeypatch):
    from dataclasses import replace

    pd_client = app.extensions["pd_client"]
    monkeypatch.setattr(pd_client, "settings", replace(pd_client.settings, upstream_timeout=0.2))
    sandbox.set_knobs(api_delay_s=1.0)
    read = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert read.status_code == 503 and read.get_json()["code"] == "upstream_unavailable"
    write = client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key})
    assert write.status_code == 504 and write.get_json()["code"] == "outcome_unknown"
    # Let the sandbox finish the delayed calls (the read's three attempts, the write's one), or they land in
    # the next test's call log.
    deadline = time.monotonic() + 5
    while sandbox.count("/api/v1/goals") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_daily_budget_exhaustion_is_rate_limited(client, key, sandbox):
    sandbox.set_knobs(daily_budget=25)
    assert client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code == 200
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": key})
    assert resp.status_code == 429 and resp.get_json()["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1


def test_rate_limit_figures_are_remembered(client, key):
    client.get("/api/v1/goals/find", headers={"x-api-token": key})
    info = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]
    assert info["rate_limit"]["daily-ratelimit-token-remaining"] > 0


def test_unknown_api_paths_and_methods_use_the_envelope(client, key):
    missing = client.get("/api/v1/deals", headers={"x-api-token": key})
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"
    wrong = client.patch("/api/v1/goals/abc", headers={"x-api-token": key})
    assert wrong.status_code == 405 and wrong.get_json()["success"] is False


def test_openapi_document_is_served(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    methods = {"get", "post", "put", "delete", "patch"}
    ops = {op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m in methods}
    assert {"getGoals", "getGoalResult", "addGoal", "updateGoal", "deleteGoal"} <= ops
    assert client.get("/api/docs").status_code == 200
