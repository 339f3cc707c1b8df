"""The Pipedrive sandbox on its own, over real HTTP: OAuth, users/me, Goals, limits, knobs, control."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.test import Client

from pd_app.sandbox import SandboxSettings, SandboxState, create_sandbox_app, fingerprint

from .conftest import QuerylessRequestHandler

CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"
REDIRECT_URI = "http://app.test/oauth/callback"
BASIC = (CLIENT_ID, CLIENT_SECRET)
UNAUTHORIZED = {
    "success": False,
    "error": "unauthorized access",
    "errorCode": 401,
    "error_info": "Please check developers.pipedrive.com",
}
RATE_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-daily-requests-left",
    "x-daily-ratelimit-token-limit",
    "x-daily-ratelimit-token-remaining",
)
# Field names and types of the Goal object as openapi-v1.yaml declares it for all five operations.
GOAL_FIELDS = {
    "id": str,
    "owner_id": int,
    "title": str,
    "type": dict,
    "assignee": dict,
    "interval": str,
    "duration": dict,
    "expected_outcome": dict,
    "is_active": bool,
    "report_ids": list,
}
# BaseUser in openapi-v1.yaml: an item of getUsers, and getCurrentUser's data without the company fields.
USER_FIELDS = {
    "id": int,
    "name": str,
    "default_currency": str,
    "locale": str,
    "lang": int,
    "email": str,
    "phone": (str, type(None)),
    "activated": bool,
    "last_login": str,
    "created": str,
    "modified": (str, type(None)),
    "has_created_company": bool,
    "access": list,
    "active_flag": bool,
    "timezone_name": str,
    "timezone_offset": str,
    "role_id": int,
    "icon_url": (str, type(None)),
    "is_you": bool,
    "is_deleted": bool,
}
# getCurrentUser's data: BaseUser and the company fields.
ME_FIELDS = {
    **USER_FIELDS,
    "company_id": int,
    "company_name": str,
    "company_domain": str,
    "company_country": str,
    "company_industry": str,
    "language": dict,
}
GOALS_ENVELOPE = {"success": True, "statusCode": 20000, "statusText": "OK", "service": "statistics-goals-api"}
NEW_GOAL: dict[str, Any] = {
    "title": "Demo calls",
    "assignee": {"id": 2002, "type": "person"},
    "type": {"name": "activities_added", "params": {"pipeline_id": [1], "activity_type_id": [3]}},
    "expected_outcome": {"target": 25, "tracking_metric": "quantity"},
    "duration": {"start": "2025-01-06", "end": None},
    "interval": "weekly",
}


def placeholder_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not the sandbox"]


@dataclass
class Sandbox:
    url: str
    state: SandboxState


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # Bind first: the sandbox must know its own URL (its api_domain) before it is created.
    server = make_server(
        "127.0.0.1", 0, placeholder_app, threaded=True, request_handler=QuerylessRequestHandler
    )
    url = f"http://127.0.0.1:{server.port}"
    settings = SandboxSettings(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[REDIRECT_URI], base_url=url
    )
    app = create_sandbox_app(settings)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Sandbox(url, app.extensions["pd_sandbox"])
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def fresh(sandbox: Sandbox) -> Iterator[None]:
    sandbox.state.clock = time.time
    sandbox.state.reset()
    yield
    sandbox.state.clock = time.time


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# --- helpers --------------------------------------------------------------------------------------
def authorize(http: requests.Session, sb: Sandbox, user_id: int = 2001, **extra: str) -> requests.Response:
    form = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "user_id": str(user_id), "action": "allow"}
    return http.post(f"{sb.url}/oauth/authorize", data={**form, **extra}, allow_redirects=False)


def redirect_params(response: requests.Response) -> dict[str, list[str]]:
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return parse_qs(urlsplit(location).query)


def get_code(http: requests.Session, sb: Sandbox, user_id: int = 2001) -> str:
    return redirect_params(authorize(http, sb, user_id, state="s1"))["code"][0]


def token_call(
    http: requests.Session, sb: Sandbox, auth: Any = BASIC, path: str = "/oauth/token", **form: str
):
    return http.post(f"{sb.url}{path}", data=form, auth=auth)


def exchange(http: requests.Session, sb: Sandbox, code: str) -> requests.Response:
    return token_call(http, sb, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)


def refresh(http: requests.Session, sb: Sandbox, refresh_token: str, **kw: Any) -> requests.Response:
    return http.post(
        f"{sb.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=BASIC,
        **kw,
    )


def install(http: requests.Session, sb: Sandbox, user_id: int = 2001) -> dict[str, Any]:
    response = exchange(http, sb, get_code(http, sb, user_id))
    assert response.status_code == 200, response.text
    return response.json()


def api(http: requests.Session, tokens: dict[str, Any] | str, method: str, path: str, **kw: Any):
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    base = "" if isinstance(tokens, str) else tokens["api_domain"]
    return http.request(method, f"{base}/api/v1{path}", headers={"Authorization": f"Bearer {token}"}, **kw)


def find(http: requests.Session, tokens: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    response = api(http, tokens, "GET", "/goals/find", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]["goals"]


def assert_goal_shape(goal: dict[str, Any]) -> None:
    assert set(goal) == set(GOAL_FIELDS)
    for name, kind in GOAL_FIELDS.items():
        assert isinstance(goal[name], kind), name
    assert len(goal["id"]) == 32 and int(goal["id"], 16) >= 0
    assert set(goal["type"]) == {"name", "params"} and isinstance(goal["type"]["params"], dict)
    assert isinstance(goal["assignee"]["id"], int)
    assert goal["assignee"]["type"] in ("person", "company", "team")
    assert set(goal["duration"]) == {"start", "end"}
    assert isinstance(goal["expected_outcome"]["target"], int | float)
    assert goal["expected_outcome"]["tracking_metric"] in ("quantity", "sum")
    assert all(isinstance(r, str) and len(r) == 32 for r in goal["report_ids"])


def assert_generic_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"success", "error", "error_info", "data", "additional_data"}
    assert body["success"] is False and isinstance(body["error"], str) and body["error"]
    assert body["data"] is None and body["additional_data"] is None


# --- OAuth: consent -------------------------------------------------------------------------------
def test_consent_page_shows_app_scopes_and_sandbox_users(http, sandbox):
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "abc"}
    page = http.get(f"{sandbox.url}/oauth/authorize", params=params)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for text in (
        "Goals for Pipedrive",
        "goals:full",
        "Create, read, update and delete goals",
        "Ada Admin",
        "Gil Globex",
        "Allow and install",
        "Cancel",
        'name="state" value="abc"',
    ):
        assert text in page.text
    assert '<option value="2001" selected>' in page.text
    preselected = http.get(f"{sandbox.url}/oauth/authorize", params={**params, "user_id": "2101"})
    assert '<option value="2101" selected>' in preselected.text
    assert "http://" not in page.text.replace(REDIRECT_URI, "")  # no external assets


@pytest.mark.parametrize(
    "client_id, redirect_uri",
    [("someone-else", REDIRECT_URI), (CLIENT_ID, "http://evil.test/cb"), (CLIENT_ID, REDIRECT_URI + "/")],
)
def test_authorize_never_redirects_for_unknown_client_or_uri(http, sandbox, client_id, redirect_uri):
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "state": "x"}
    page = http.get(f"{sandbox.url}/oauth/authorize", params=params, allow_redirects=False)
    assert page.status_code == 400 and "Location" not in page.headers
    assert page.headers["Content-Type"].startswith("text/html")
    posted = authorize(http, sandbox, client_id=client_id, redirect_uri=redirect_uri)
    assert posted.status_code == 400 and "Location" not in posted.headers


def test_allow_redirects_with_code_and_state(http, sandbox):
    params = redirect_params(authorize(http, sandbox, state="st-1"))
    assert params["state"] == ["st-1"] and len(params["code"][0]) >= 20


def test_allow_without_state_leaves_state_out(http, sandbox):
    params = redirect_params(authorize(http, sandbox))
    assert set(params) == {"code"}


@pytest.mark.parametrize(
    "state, expected",
    [("st-2", {"error": ["user_denied"], "state": ["st-2"]}), ("", {"error": ["user_denied"]})],
)
def test_cancel_redirects_with_user_denied(http, sandbox, state, expected):
    assert redirect_params(authorize(http, sandbox, action="cancel", state=state)) == expected


# --- OAuth: token endpoint ------------------------------------------------------------------------
def test_code_exchange_returns_pipedrive_token_response(http, sandbox):
    response = exchange(http, sandbox, get_code(http, sandbox, 2002))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope", "api_domain"}
    assert len(body["access_token"]) >= 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert body["refresh_token"].startswith("1001:2002:")
    assert body["scope"] == "base,goals:full,deals:read,activities:read,users:read"
    assert body["api_domain"] == sandbox.url
    assert api(http, body, "GET", "/users/me").json()["data"]["id"] == 2002


def test_code_works_once(http, sandbox):
    code = get_code(http, sandbox)
    assert exchange(http, sandbox, code).status_code == 200
    again = exchange(http, sandbox, code)
    assert again.status_code == 400
    assert again.json() == {
        "success": "false",
        "message": "Invalid grant: authorization code is invalid",
        "error": "invalid_grant",
    }


def test_code_expires_after_five_minutes(http, sandbox):
    code = get_code(http, sandbox)
    later = time.time() + 301
    sandbox.state.clock = lambda: later
    assert exchange(http, sandbox, code).json()["error"] == "invalid_grant"


def test_unknown_code_and_other_redirect_uri_are_invalid_grant(http, sandbox):
    assert exchange(http, sandbox, "not-a-code").json()["error"] == "invalid_grant"
    other = token_call(
        http,
        sandbox,
        grant_type="authorization_code",
        code=get_code(http, sandbox),
        redirect_uri="http://app.test/other",
    )
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("auth", [None, (CLIENT_ID, "wrong"), ("other", CLIENT_SECRET)])
def test_token_endpoint_requires_basic_client_auth(http, sandbox, auth):
    response = token_call(
        http,
        sandbox,
        auth=auth,
        grant_type="authorization_code",
        code=get_code(http, sandbox),
        redirect_uri=REDIRECT_URI,
    )
    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False and body["error"] == "invalid_client" and body["message"]


def test_client_credentials_in_the_body_are_not_enough(http, sandbox):
    response = token_call(
        http,
        sandbox,
        auth=None,
        grant_type="authorization_code",
        code=get_code(http, sandbox),
        redirect_uri=REDIRECT_URI,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    assert response.status_code == 401


def test_token_endpoint_rejects_a_json_body(http, sandbox):
    body = {"grant_type": "authorization_code", "code": get_code(http, sandbox), "redirect_uri": REDIRECT_URI}
    response = http.post(f"{sandbox.url}/oauth/token", json=body, auth=BASIC)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_unsupported_grant_type(http, sandbox):
    response = token_call(http, sandbox, grant_type="password", username="a", password="b")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_refresh_keeps_the_refresh_token_and_old_access_tokens_live(http, sandbox):
    tokens = install(http, sandbox)
    for path in ("/oauth/token", "/oauth/token/"):
        response = token_call(
            http, sandbox, path=path, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert response.status_code == 200
        renewed = response.json()
        assert renewed["refresh_token"] == tokens["refresh_token"]
        assert renewed["access_token"] != tokens["access_token"]
        assert set(renewed) == set(tokens)
    assert api(http, tokens, "GET", "/users/me").status_code == 200
    assert api(http, renewed, "GET", "/users/me").status_code == 200


def test_rotation_knob_kills_the_old_refresh_token(http, sandbox):
    tokens = install(http, sandbox)
    sandbox.state.set_knobs(rotate_refresh_tokens=True)
    renewed = refresh(http, sandbox, tokens["refresh_token"]).json()
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert renewed["refresh_token"].startswith("1001:2001:")
    stale = refresh(http, sandbox, tokens["refresh_token"])
    assert stale.status_code == 400 and stale.json()["message"] == "Invalid grant: refresh token is invalid"
    assert refresh(http, sandbox, renewed["refresh_token"]).status_code == 200
    assert api(http, tokens, "GET", "/users/me").status_code == 200  # access tokens live on until expiry


def test_refresh_tokens_lapse_after_60_days_unused(http, sandbox):
    tokens = install(http, sandbox)
    start = time.time()
    sandbox.state.clock = lambda: start + 59 * 86400
    assert refresh(http, sandbox, tokens["refresh_token"]).status_code == 200  # resets the clock
    sandbox.state.clock = lambda: start + 118 * 86400
    assert refresh(http, sandbox, tokens["refresh_token"]).status_code == 200
    sandbox.state.clock = lambda: start + 179 * 86400
    assert refresh(http, sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_error_knobs(http, sandbox):
    tokens = install(http, sandbox)
    sandbox.state.set_knobs(refresh_error="invalid_grant")
    failed = refresh(http, sandbox, tokens["refresh_token"])
    assert failed.status_code == 400 and failed.json()["error"] == "invalid_grant"
    sandbox.state.set_knobs(refresh_error=500)
    assert refresh(http, sandbox, tokens["refresh_token"]).status_code == 500
    sandbox.state.set_knobs(refresh_error=None)
    assert refresh(http, sandbox, tokens["refresh_token"]).status_code == 200


def test_refresh_timeout_knob_hangs_then_refreshes_anyway(http, sandbox):
    tokens = install(http, sandbox)
    sandbox.state.set_knobs(refresh_error="timeout", hang_s=0.8)
    with pytest.raises(requests.exceptions.ReadTimeout):
        refresh(http, sandbox, tokens["refresh_token"], timeout=0.2)
    deadline = time.time() + 5
    while sandbox.state.count("/oauth/token", grant_type="refresh_token") == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert sandbox.state.calls[-1]["status"] == 200  # it happened; the client just never heard


def test_token_delay_and_api_domain_override_knobs(http, sandbox):
    sandbox.state.set_knobs(token_delay_s=0.3, api_domain_override="https://acme.pipedrive.example")
    started = time.monotonic()
    body = exchange(http, sandbox, get_code(http, sandbox)).json()
    assert time.monotonic() - started >= 0.3
    assert body["api_domain"] == "https://acme.pipedrive.example"


def test_revoking_the_refresh_token_uninstalls(http, sandbox):
    tokens = install(http, sandbox)
    other = install(http, sandbox, 2002)
    response = token_call(
        http, sandbox, path="/oauth/revoke", token=tokens["refresh_token"], token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    assert api(http, tokens, "GET", "/users/me").json() == UNAUTHORIZED
    assert refresh(http, sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert api(http, other, "GET", "/users/me").status_code == 200  # one user's uninstall only


def test_revoking_an_access_token_or_an_unknown_token(http, sandbox):
    tokens = install(http, sandbox)
    for token in (tokens["access_token"], "nothing-like-it"):
        revoked = token_call(http, sandbox, path="/oauth/revoke", token=token, token_type_hint="access_token")
        assert revoked.status_code == 200
    assert api(http, tokens, "GET", "/users/me").status_code == 401
    assert refresh(http, sandbox, tokens["refresh_token"]).status_code == 200
    assert token_call(http, sandbox, path="/oauth/revoke", auth=None, token="x").status_code == 401


# --- API: authentication, /users/me ---------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dGVzdDp0ZXN0", "Bearer "])
def test_api_without_a_valid_token_is_401_with_rate_headers(http, sandbox, header):
    headers = {"Authorization": header} if header else {}
    response = http.get(f"{sandbox.url}/api/v1/goals/find", headers=headers)
    assert response.status_code == 401 and response.json() == UNAUTHORIZED
    assert all(name in response.headers for name in RATE_HEADERS)


def test_expired_access_tokens_are_401_until_refreshed(http, sandbox):
    tokens, other = install(http, sandbox), install(http, sandbox, 2002)
    assert sandbox.state.expire_access_tokens(1001, 2001) == 1
    assert api(http, tokens, "GET", "/users/me").json() == UNAUTHORIZED
    assert api(http, other, "GET", "/users/me").status_code == 200
    renewed = refresh(http, sandbox, tokens["refresh_token"]).json()
    assert api(http, renewed, "GET", "/users/me").status_code == 200
    expired = http.post(f"{sandbox.url}/_sandbox/tokens/expire", json={"company_id": 1001, "user_id": 2001})
    assert expired.json() == {"expired": 1}
    assert api(http, renewed, "GET", "/users/me").status_code == 401


def test_access_tokens_expire_after_their_ttl(http, sandbox):
    tokens = install(http, sandbox)
    later = time.time() + 3600
    sandbox.state.clock = lambda: later
    assert api(http, tokens, "GET", "/users/me").status_code == 401


def test_users_me_has_the_openapi_shape(http, sandbox):
    response = api(http, install(http, sandbox, 2003), "GET", "/users/me")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    for name, kind in ME_FIELDS.items():
        assert isinstance(data[name], kind), name
    assert (data["id"], data["name"], data["email"]) == (2003, "Rita Rep", "rita@acme.example")
    company = (data["company_id"], data["company_name"], data["company_domain"])
    assert company == (1001, "Acme Sales Ltd", "acme")
    assert data["is_you"] is True and data["is_admin"] == 0
    for entry in data["access"]:
        assert entry["app"] in ("global", "sales", "campaigns", "projects", "account_settings", "partnership")
        assert isinstance(entry["admin"], bool) and isinstance(entry["permission_set_id"], str)
    admin = api(http, install(http, sandbox, 2101), "GET", "/users/me").json()["data"]
    assert admin["is_admin"] == 1 and admin["company_id"] == 1002
    assert any(entry["admin"] for entry in admin["access"])


# --- API: goals -----------------------------------------------------------------------------------
def test_find_envelope_and_goal_shape(http, sandbox):
    response = api(http, install(http, sandbox), "GET", "/goals/find", params={"assignee.type": "person"})
    body = response.json()
    assert {k: body[k] for k in GOALS_ENVELOPE} == GOALS_ENVELOPE and set(body) == {*GOALS_ENVELOPE, "data"}
    assert len(body["data"]["goals"]) == 3
    for goal in body["data"]["goals"]:
        assert_goal_shape(goal)


def test_find_without_filters_returns_only_the_callers_goals(http, sandbox):
    ada = install(http, sandbox)
    assert [g["title"] for g in find(http, ada)] == ["Calls and meetings"]
    assert [g["title"] for g in find(http, ada, is_active="false")] == ["Deals won last year"]
    assert [g["title"] for g in find(http, install(http, sandbox, 2003))] == ["New deals every week"]


def test_find_with_assignee_id_or_everyone_filters(http, sandbox):
    ada = install(http, sandbox)
    assert [g["title"] for g in find(http, ada, **{"assignee.id": 2002})] == ["Won revenue per month"]
    company = find(http, ada, **{"assignee.id": 1001, "assignee.type": "company"})
    assert [g["type"]["name"] for g in company] == ["revenue_forecast"]
    assert len(find(http, ada, **{"type.name": "deals_won"})) == 1  # everyone's, active only
    assert len(find(http, ada, **{"expected_outcome.tracking_metric": "sum"})) == 2
    assert len(find(http, ada, **{"expected_outcome.currency_id": 1})) == 2
    team_goals = find(http, ada, **{"type.params.stage_id": 3})
    assert [g["assignee"] for g in team_goals] == [{"id": 1, "type": "team"}]
    assert len(find(http, ada, **{"type.params.activity_type_id": [1, 2]})) == 1
    assert find(http, ada, **{"type.params.activity_type_id": [9]}) == []
    in_pipeline = find(http, ada, **{"type.params.pipeline_id": 1, "type.name": "deals_won"})
    assert [g["title"] for g in in_pipeline] == ["Won revenue per month"]


def test_find_by_title_and_period(http, sandbox):
    ada = install(http, sandbox)
    assert len(find(http, ada, title="Calls and meetings")) == 1
    assert find(http, ada, title="Calls and") == []  # exact match
    assert find(http, ada, title="Won revenue per month") == []  # not Ada's own
    today = date.today()
    now = {"period.start": today.isoformat(), "period.end": today.isoformat()}
    assert len(find(http, ada, **now)) == 1
    future = (today + timedelta(days=3 * 365)).isoformat()
    assert find(http, ada, **{"period.start": future, "period.end": future}) == []
    last_year = {"period.start": f"{today.year - 1}-06-01", "period.end": f"{today.year - 1}-06-30"}
    assert [g["title"] for g in find(http, ada, is_active="false", **last_year)] == ["Deals won last year"]


def test_find_sees_only_the_token_company(http, sandbox):
    gil = install(http, sandbox, 2101)
    goals = find(http, gil, **{"assignee.type": "person"}) + find(http, gil, **{"assignee.id": 2002})
    assert [g["title"] for g in goals] == ["Globex monthly wins"]


@pytest.mark.parametrize(
    "params",
    [
        {"type.name": "deals_lost"},
        {"assignee.type": "robot"},
        {"assignee.id": "ada"},
        {"is_active": "maybe"},
        {"expected_outcome.tracking_metric": "count"},
        {"expected_outcome.target": "lots"},
        {"type.params.pipeline_id": "one"},
        {"period.start": "2025-01-01"},
        {"period.end": "2025-01-31"},
        {"period.start": "2025-13-01", "period.end": "2025-12-31"},
        {"period.start": "2025-02-01", "period.end": "2025-01-01"},
    ],
)
def test_find_rejects_bad_query(http, sandbox, params):
    assert_generic_error(api(http, install(http, sandbox), "GET", "/goals/find", params=params), 400)


def test_goal_lifecycle(http, sandbox):
    ada = install(http, sandbox)
    created = api(http, ada, "POST", "/goals", json=NEW_GOAL)
    assert created.status_code == 200
    body = created.json()
    assert set(body) == {*GOALS_ENVELOPE, "data"} and body["success"] is True
    goal = body["data"]["goal"]
    assert_goal_shape(goal)
    assert goal["owner_id"] == 2001 and goal["is_active"] is True and goal["assignee"] == NEW_GOAL["assignee"]
    assert goal["type"] == NEW_GOAL["type"] and goal["duration"] == NEW_GOAL["duration"]
    assert goal in find(http, ada, **{"assignee.id": 2002})

    changes = {
        "title": "More demo calls",
        "expected_outcome": {"target": 30},
        "duration": {"end": "2025-12-28"},
    }
    updated = api(http, ada, "PUT", f"/goals/{goal['id']}", json=changes).json()["data"]["goal"]
    assert updated["title"] == "More demo calls"
    assert updated["expected_outcome"] == {"target": 30, "tracking_metric": "quantity"}
    assert updated["duration"] == {"start": "2025-01-06", "end": "2025-12-28"}
    assert updated["id"] == goal["id"] and updated["type"] == goal["type"]

    period = {"period.start": "2025-01-06", "period.end": "2025-03-30"}
    results = api(http, ada, "GET", f"/goals/{goal['id']}/results", params=period).json()
    assert set(results) == {*GOALS_ENVELOPE, "data"} and results["data"]["goal"] == updated
    progress = results["data"]["progress"]
    assert isinstance(progress, int) and 0.5 * 30 * 12 <= progress <= 1.3 * 30 * 13  # 12 weeks elapsed

    deleted = api(http, ada, "DELETE", f"/goals/{goal['id']}")
    assert deleted.status_code == 200 and deleted.json() == GOALS_ENVELOPE
    assert goal["id"] not in [g["id"] for g in find(http, ada, **{"assignee.id": 2002})]
    assert_generic_error(api(http, ada, "GET", f"/goals/{goal['id']}/results", params=period), 404)
    assert_generic_error(api(http, ada, "DELETE", f"/goals/{goal['id']}"), 404)


def test_update_can_change_the_goal_type_and_metric(http, sandbox):
    ada = install(http, sandbox)
    goal_id = find(http, ada, **{"type.name": "deals_won"})[0]["id"]
    body = {
        "type": {"name": "deals_started"},
        "expected_outcome": {"tracking_metric": "quantity", "target": 9},
    }
    goal = api(http, ada, "PUT", f"/goals/{goal_id}", json=body).json()["data"]["goal"]
    assert goal["type"] == {"name": "deals_started", "params": {"pipeline_id": None}}
    assert goal["expected_outcome"] == {"target": 9, "tracking_metric": "quantity"}  # currency dropped


def test_sum_goal_results_use_the_currency_target(http, sandbox):
    ada = install(http, sandbox)
    goal = find(http, ada, **{"assignee.type": "company"})[0]
    period = {"period.start": goal["duration"]["start"], "period.end": goal["duration"]["end"]}
    first = api(http, ada, "GET", f"/goals/{goal['id']}/results", params=period).json()["data"]["progress"]
    second = api(http, ada, "GET", f"/goals/{goal['id']}/results", params=period).json()["data"]["progress"]
    assert first == second and isinstance(first, int | float)
    elapsed = (date.today() - date.fromisoformat(goal["duration"]["start"])).days + 1
    assert 0.5 * 1_200_000 * elapsed / 366 <= first <= 1.3 * 1_200_000 * elapsed / 365


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"period.start": "2000-01-01", "period.end": "2000-01-31"},
        {"period.start": "x", "period.end": "y"},
    ],
)
def test_results_need_a_period_inside_the_goal(http, sandbox, params):
    ada = install(http, sandbox)
    goal_id = find(http, ada)[0]["id"]
    assert_generic_error(api(http, ada, "GET", f"/goals/{goal_id}/results", params=params), 400)


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in NEW_GOAL.items() if k != key}


@pytest.mark.parametrize(
    "body",
    [
        _without("assignee"),
        _without("type"),
        _without("expected_outcome"),
        _without("duration"),
        _without("interval"),
        {**NEW_GOAL, "interval": "daily"},
        {**NEW_GOAL, "type": {"name": "calls_made", "params": {}}},
        {**NEW_GOAL, "type": {"name": "deals_won", "params": {"stage_id": 2}}},
        {**NEW_GOAL, "type": {"name": "deals_won", "params": {"activity_type_id": [1]}}},
        {**NEW_GOAL, "type": {"name": "deals_won", "params": {"pipeline_id": 5}}},
        {**NEW_GOAL, "expected_outcome": {"target": 5, "tracking_metric": "quantity", "currency_id": 1}},
        {**NEW_GOAL, "expected_outcome": {"target": "many", "tracking_metric": "quantity"}},
        {**NEW_GOAL, "assignee": {"id": 2101, "type": "person"}},  # another company's user
        {**NEW_GOAL, "assignee": {"id": 1002, "type": "company"}},
        {**NEW_GOAL, "assignee": {"id": 2002, "type": "robot"}},
        {**NEW_GOAL, "duration": {"start": "06/01/2025", "end": None}},
        {**NEW_GOAL, "duration": {"start": "2025-02-01", "end": "2025-01-01"}},
        {**NEW_GOAL, "title": 42},
        [NEW_GOAL],
    ],
)
def test_add_goal_rejects_bad_bodies(http, sandbox, body):
    assert_generic_error(api(http, install(http, sandbox), "POST", "/goals", json=body), 400)


def test_add_goal_accepts_the_spec_example_forms(http, sandbox):
    body = {
        "assignee": {"id": "1001", "type": "company"},
        "type": {"name": "deals_won", "params": {"pipeline_id": None}},
        "expected_outcome": {"target": "50", "tracking_metric": "sum", "currency_id": 1},
        "duration": {"start": "2025-01-01", "end": None},
        "interval": "monthly",
    }
    goal = api(http, install(http, sandbox), "POST", "/goals", json=body).json()["data"]["goal"]
    assert goal["assignee"] == {"id": 1001, "type": "company"} and goal["title"] == "Deals won"
    assert goal["expected_outcome"] == {"target": 50, "tracking_metric": "sum", "currency_id": 1}


@pytest.mark.parametrize("data, content_type", [("{not json", "application/json"), ("a=b", "text/plain")])
def test_write_bodies_must_be_json(http, sandbox, data, content_type):
    ada = install(http, sandbox)
    headers = {"Authorization": f"Bearer {ada['access_token']}", "Content-Type": content_type}
    response = http.post(f"{sandbox.url}/api/v1/goals", data=data, headers=headers)
    assert_generic_error(response, 400)


def test_goals_of_other_companies_and_unknown_ids_are_404(http, sandbox):
    ada, gil = install(http, sandbox), install(http, sandbox, 2101)
    globex_goal = find(http, gil)[0]["id"]
    period = {"period.start": "2025-01-01", "period.end": "2025-01-31"}
    for goal_id in (globex_goal, "0" * 32, "nope"):
        assert_generic_error(api(http, ada, "PUT", f"/goals/{goal_id}", json={"title": "x"}), 404)
        assert_generic_error(api(http, ada, "DELETE", f"/goals/{goal_id}"), 404)
        assert_generic_error(api(http, ada, "GET", f"/goals/{goal_id}/results", params=period), 404)
    assert find(http, gil)[0]["title"] == "Globex monthly wins"


def test_unknown_api_path_is_a_404_envelope(http, sandbox):
    assert_generic_error(api(http, install(http, sandbox), "GET", "/deals"), 404)


def test_goal_ids_are_stable_across_resets(http, sandbox):
    ada = install(http, sandbox)
    before = [g["id"] for g in find(http, ada, **{"assignee.type": "person"})]
    created = api(http, ada, "POST", "/goals", json=NEW_GOAL).json()["data"]["goal"]["id"]
    sandbox.state.reset()
    ada = install(http, sandbox)
    assert [g["id"] for g in find(http, ada, **{"assignee.type": "person"})] == before
    assert api(http, ada, "POST", "/goals", json=NEW_GOAL).json()["data"]["goal"]["id"] == created


# --- limits ---------------------------------------------------------------------------------------
def test_rate_limit_headers_count_the_budget(http, sandbox):
    ada = install(http, sandbox)
    me = api(http, ada, "GET", "/users/me")
    assert all(name in me.headers for name in RATE_HEADERS)
    assert me.headers["x-ratelimit-limit"] == "80" and me.headers["x-ratelimit-remaining"] == "79"
    assert me.headers["x-daily-ratelimit-token-limit"] == "90000"  # 30,000 x 3 seats
    assert me.headers["x-daily-ratelimit-token-remaining"] == "89998"
    costs = [("GET", "/goals/find", 20), ("POST", "/goals", 10)]
    remaining = 89998
    for method, path, cost in costs:
        response = api(http, ada, method, path, json=NEW_GOAL if method == "POST" else None)
        remaining -= cost
        assert response.headers["x-daily-ratelimit-token-remaining"] == str(remaining)
    goal_id = response.json()["data"]["goal"]["id"]
    bad = api(http, ada, "PUT", f"/goals/{goal_id}", json={"interval": "hourly"})
    assert bad.status_code == 400 and bad.headers["x-daily-ratelimit-token-remaining"] == str(remaining - 10)
    deleted = api(http, ada, "DELETE", f"/goals/{goal_id}")
    assert deleted.headers["x-daily-ratelimit-token-remaining"] == str(remaining - 16)


def test_spent_daily_budget_gives_429_until_midnight(http, sandbox):
    ada, gil = install(http, sandbox), install(http, sandbox, 2101)
    requests_left = http.post(f"{sandbox.url}/_sandbox/knobs", json={"daily_budget": 40})
    assert requests_left.json()["daily_budget"] == 40
    assert api(http, ada, "GET", "/goals/find").status_code == 200
    last = api(http, ada, "GET", "/goals/find")
    assert last.status_code == 200 and last.headers["x-daily-ratelimit-token-remaining"] == "0"
    for path in ("/goals/find", "/users/me"):
        refused = api(http, ada, "GET", path)
        assert refused.status_code == 429
        body = refused.json()
        assert body["success"] is False and body["error"] == "Request over limit" and body["errorCode"] == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 86400
    assert api(http, gil, "GET", "/users/me").status_code == 200  # budgets are per company
    summary = http.get(f"{sandbox.url}/_sandbox/state").json()
    acme = next(c for c in summary["companies"] if c["id"] == 1001)
    assert acme["budget"] == {"limit": 40, "used": 40, "remaining": 0}


def test_burst_limit_per_token_in_a_two_second_window(http, sandbox):
    ada, sam = install(http, sandbox), install(http, sandbox, 2002)
    frozen = time.time()
    sandbox.state.clock = lambda: frozen
    for _ in range(80):
        assert api(http, ada, "GET", "/users/me").status_code == 200
    burst = api(http, ada, "GET", "/users/me")
    assert burst.status_code == 429 and burst.headers["x-ratelimit-remaining"] == "0"
    assert burst.headers["Retry-After"] == burst.headers["x-ratelimit-reset"] == "2"
    assert api(http, sam, "GET", "/users/me").status_code == 200  # another token, another window
    sandbox.state.clock = lambda: frozen + 2.01
    assert api(http, ada, "GET", "/users/me").status_code == 200


def test_parallel_calls_are_all_counted(http, sandbox):
    ada = install(http, sandbox)

    def one_find(_: int) -> int:
        with requests.Session() as own:
            return api(own, ada, "GET", "/goals/find").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one_find, range(40)))
    assert statuses == [200] * 40
    assert sandbox.state.count("/api/v1/goals/find", method="GET", status=200) == 40
    remaining = api(http, ada, "GET", "/users/me").headers["x-daily-ratelimit-token-remaining"]
    assert remaining == str(90000 - 40 * 20 - 2)


# --- knobs on the API -----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 402, 403, 404, 429, 500, 502, 503, 504])
def test_forced_api_status_answers_the_next_calls(http, sandbox, status):
    ada = install(http, sandbox)
    sandbox.state.set_knobs(force_api_status={"status": status, "count": 2})
    for _ in range(2):
        forced = api(http, ada, "GET", "/goals/find")
        assert forced.status_code == status
        assert forced.json()["success"] is False
        assert all(name in forced.headers for name in RATE_HEADERS)
        if status in (429, 503):
            assert int(forced.headers["Retry-After"]) > 0
    assert api(http, ada, "GET", "/goals/find").status_code == 200
    assert sandbox.state.knobs["force_api_status"] is None


@pytest.mark.parametrize(("status", "retry_after"), [(503, 0), (503, 3600), (502, 7), (504, 1), (429, 5)])
def test_forced_api_status_can_name_its_retry_after(http, sandbox, status, retry_after):
    ada = install(http, sandbox)
    sandbox.state.set_knobs(force_api_status={"status": status, "retry_after": retry_after})
    forced = api(http, ada, "GET", "/goals/find")
    assert forced.status_code == status and forced.headers["Retry-After"] == str(retry_after)


@pytest.mark.parametrize("status", [502, 504])
def test_forced_gateway_errors_carry_no_retry_after_unless_asked(http, sandbox, status):
    sandbox.state.set_knobs(force_api_status={"status": status})
    assert "Retry-After" not in api(http, install(http, sandbox), "GET", "/goals/find").headers


def test_forced_403_can_be_an_html_page(http, sandbox):
    http.post(f"{sandbox.url}/_sandbox/knobs", json={"force_api_status": {"status": 403, "html": True}})
    response = api(http, install(http, sandbox), "GET", "/users/me")
    assert response.status_code == 403 and response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text


def test_api_delay_knob(http, sandbox):
    ada = install(http, sandbox)
    sandbox.state.set_knobs(api_delay_s=0.3)
    started = time.monotonic()
    assert api(http, ada, "GET", "/users/me").status_code == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    "knobs",
    [
        {"no_such_knob": 1},
        {"refresh_error": 418},
        {"force_api_status": {"status": 418}},
        {"force_api_status": {"status": 503, "retry_after": -1}},
        {"force_api_status": {"status": 503, "retry_after": "soon"}},
        {"force_api_status": {"status": 503, "retry_after": 1.5}},
        {"daily_budget": -1},
        {"burst_limit": None},
    ],
)
def test_bad_knobs_are_refused_whole(http, sandbox, knobs):
    response = http.post(f"{sandbox.url}/_sandbox/knobs", json={"token_delay_s": 5, **knobs})
    assert response.status_code == 400
    assert sandbox.state.knobs["token_delay_s"] == 0.0


# --- control surface ------------------------------------------------------------------------------
def test_calls_are_recorded_without_tokens(http, sandbox):
    tokens = install(http, sandbox)
    refresh(http, sandbox, tokens["refresh_token"])
    api(http, tokens, "GET", "/goals/find", params={"assignee.id": "2002"})
    calls = http.get(f"{sandbox.url}/_sandbox/calls").json()
    assert [(c["method"], c["path"]) for c in calls] == [
        ("POST", "/oauth/authorize"),
        ("POST", "/oauth/token"),
        ("POST", "/oauth/token"),
        ("GET", "/api/v1/goals/find"),
    ]
    code_call, refresh_call, find_call = calls[1:]
    assert (code_call["grant_type"], code_call["token_kind"]) == ("authorization_code", "code")
    assert (refresh_call["grant_type"], refresh_call["token_kind"]) == ("refresh_token", "refresh")
    assert code_call["authorization_present"] is True and code_call["access_token_fp"] is None
    assert find_call["query"] == {"assignee.id": ["2002"]} and find_call["status"] == 200
    assert find_call["access_token_fp"] == fingerprint(tokens["access_token"])
    assert set(find_call) == {
        "method",
        "path",
        "query",
        "grant_type",
        "token_kind",
        "authorization_present",
        "access_token_fp",
        "status",
        "at",
    }
    raw = json.dumps(calls)
    assert tokens["access_token"] not in raw and tokens["refresh_token"] not in raw
    assert sandbox.state.count("/oauth/token", grant_type="refresh_token") == 1
    assert sandbox.state.count("/api/", method="get") == 1
    assert http.delete(f"{sandbox.url}/_sandbox/calls").status_code == 200
    assert sandbox.state.calls == []


def test_state_summary_and_reset(http, sandbox):
    tokens = install(http, sandbox)
    api(http, tokens, "POST", "/goals", json=NEW_GOAL)
    summary = http.get(f"{sandbox.url}/_sandbox/state").json()
    assert tokens["access_token"] not in json.dumps(summary)
    assert summary["live_access_tokens"] == 1 and summary["live_refresh_tokens"] == 1
    acme = next(c for c in summary["companies"] if c["id"] == 1001)
    assert acme["goals"] == {"active": 6, "inactive": 1, "deleted": 0}
    assert [u["id"] for u in acme["users"]] == [2001, 2002, 2003]
    assert http.post(f"{sandbox.url}/_sandbox/reset").status_code == 200
    summary = http.get(f"{sandbox.url}/_sandbox/state").json()
    assert summary["live_access_tokens"] == 0
    assert next(c for c in summary["companies"] if c["id"] == 1001)["goals"]["active"] == 5
    assert api(http, tokens, "GET", "/users/me").status_code == 401


def test_install_shortcut_for_other_processes(http, sandbox):
    response = http.post(f"{sandbox.url}/_sandbox/install", json={"company_id": 1002, "user_id": 2101})
    assert api(http, response.json(), "GET", "/users/me").json()["data"]["company_id"] == 1002
    wrong = http.post(f"{sandbox.url}/_sandbox/install", json={"company_id": 1001, "user_id": 2101})
    assert wrong.status_code == 400


def test_control_surface_can_be_left_out():
    app = create_sandbox_app(SandboxSettings(control=False))
    client = app.test_client()
    assert client.get("/_sandbox/state").status_code == 404
    assert client.post("/_sandbox/reset").status_code == 404
    assert client.get("/oauth/authorize").status_code == 400  # the rest is still there


def test_works_mounted_under_a_prefix():
    # How `make run` serves it: inside the main app's process, under /sandbox.
    sandbox_app = create_sandbox_app(SandboxSettings(base_url="http://localhost:5000/sandbox"))
    client = Client(DispatcherMiddleware(placeholder_app, {"/sandbox": sandbox_app}))
    query = "client_id=sandbox-client&redirect_uri=http://localhost:5000/oauth/callback"
    page = client.get(f"/sandbox/oauth/authorize?{query}")
    assert 'action="/sandbox/oauth/authorize"' in page.get_data(as_text=True)
    tokens = sandbox_app.extensions["pd_sandbox"].install(1001, 2001)
    me = client.get("/sandbox/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200 and me.json["data"]["id"] == 2001


@pytest.mark.slow
def test_runs_as_its_own_process():
    root = Path(__file__).resolve().parents[1]
    options = "--port 0 --client-id cli-id --client-secret cli-secret --redirect-uri http://x.test/cb"
    command = [sys.executable, "-m", "pd_app.sandbox", *options.split()]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            line = process.stdout.readline() if process.stdout else ""
            url = line.strip().rsplit(" ", 1)[-1]
            assert url.startswith("http://127.0.0.1:")
            with requests.Session() as session:
                installed = session.post(
                    f"{url}/_sandbox/install", json={"company_id": 1001, "user_id": 2002}
                )
                tokens = installed.json()
                assert tokens["api_domain"] == url
                assert api(session, tokens, "GET", "/users/me").json()["data"]["id"] == 2002
                wrong = session.post(f"{url}/oauth/token", data={"grant_type": "refresh_token"}, auth=BASIC)
                assert wrong.status_code == 401
        finally:
            process.terminate()
            process.wait(timeout=10)
