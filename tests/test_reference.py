"""The reference reads through the proxy (GET /api/v2/pipelines, /api/v2/stages, /api/v1/activityTypes,
/api/v1/users, /api/v1/currencies): credentials, Pipedrive's shapes, tenant isolation, REFERENCE_CACHE_TTL,
the ledger, a missing scope, bad queries; and the sandbox's side of them (costs and scopes at its gate)."""

from __future__ import annotations

import time

import jwt
import pytest
import redis

from pd_app import create_app
from pd_app.reference.ops import BY_OP

from .conftest import Installer, app_environ, close_app
from .test_cache import backends
from .test_sandbox import USER_FIELDS

JWT_SECRET = "reference-jwt-secret-0123456789abcdefghijkl"
# v2 shapes: the `pipedrive` npm package's v2 typings (GetPipelinesResponseAllOfDataInner, StageItem).
PIPELINE_FIELDS = {
    "id": int,
    "name": str,
    "order_nr": int,
    "is_deleted": bool,
    "is_deal_probability_enabled": bool,
    "add_time": str,
    "update_time": str,
}
STAGE_FIELDS = {
    "id": int,
    "order_nr": int,
    "name": str,
    "is_deleted": bool,
    "deal_probability": int,
    "pipeline_id": int,
    "is_deal_rot_enabled": bool,
    "days_to_rotten": (int, type(None)),
    "add_time": str,
    "update_time": str,
}
# v1 shapes: every field openapi-v1.yaml lists (ActivityType, BaseUser, getCurrencies' items).
ACTIVITY_TYPE_FIELDS = {
    "id": int,
    "name": str,
    "icon_key": str,
    "color": str,
    "order_nr": int,
    "key_string": str,
    "active_flag": bool,
    "is_custom_flag": bool,
    "add_time": str,
    "update_time": str,
}
CURRENCY_FIELDS = {
    "id": int,
    "code": str,
    "name": str,
    "decimal_points": int,
    "symbol": str,
    "active_flag": bool,
    "is_custom_flag": bool,
}
SHAPES = {
    "/api/v2/pipelines": PIPELINE_FIELDS,
    "/api/v2/stages": STAGE_FIELDS,
    "/api/v1/activityTypes": ACTIVITY_TYPE_FIELDS,
    "/api/v1/users": USER_FIELDS,
    "/api/v1/currencies": CURRENCY_FIELDS,
}
PATHS = list(SHAPES)


def reference_app(database_url: str, sandbox_url: str, **extra: str):
    env = {"PIPEDRIVE_JWT_SECRET": JWT_SECRET, "REFERENCE_CACHE_TTL": "600", **extra}
    return create_app(environ=app_environ(database_url, sandbox_url, **env))


@pytest.fixture(params=backends())
def app(request, clean_db, sandbox_server, sandbox):
    """The reference cache on (its default), with and without Redis."""
    extra = {}
    if request.param:
        redis.Redis.from_url(request.param).flushdb()
        extra["REDIS_URL"] = request.param
    app = reference_app(clean_db, sandbox_server.url, **extra)
    yield app
    close_app(app)


def install(app, sandbox_url: str, user_id: int) -> None:
    helper = Installer(app.test_client(), sandbox_url)
    helper.install(user_id=user_id)
    helper.close()


def new_key(app, company_id: int, scope: str = "read") -> str:
    args = ["keys", "create", "--company-id", str(company_id), "--name", "ref", "--scope", scope]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def panel_jwt(company_id: int, user_id: int) -> str:
    claims = {"companyId": company_id, "userId": user_id, "exp": int(time.time()) + 300}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.fixture
def acme(app, sandbox_server, sandbox):
    """Ada (admin of Acme, 1001) installed; a read key of Acme's."""
    install(app, sandbox_server.url, 2001)
    key = new_key(app, 1001)
    sandbox.clear_calls()
    return {"x-api-token": key}


@pytest.fixture
def globex(app, sandbox_server, sandbox):
    install(app, sandbox_server.url, 2101)
    key = new_key(app, 1002)
    sandbox.clear_calls()
    return {"x-api-token": key}


def check_shape(items: list, fields: dict) -> None:
    assert items, "an empty list proves nothing about its shape"
    for item in items:
        assert set(item) == set(fields), item
        for name, kind in fields.items():
            value = item[name]
            if kind is bool:
                assert isinstance(value, bool), (name, value)
            else:
                assert isinstance(value, kind) and not isinstance(value, bool), (name, value)


# -- credentials and shapes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("credential", ["partner key", "panel JWT"])
def test_each_read_answers_pipedrives_shape(app, acme, sandbox, path, credential):
    headers = acme if credential == "partner key" else {"Authorization": "Bearer " + panel_jwt(1001, 2001)}
    resp = app.test_client().get(path, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["success"] is True
    check_shape(body["data"], SHAPES[path])
    if path.startswith("/api/v2/"):
        assert body["additional_data"] == {"next_cursor": None}
    assert sandbox.count(path) == 1


def test_the_seed_goals_ids_name_things(app, acme):
    client = app.test_client()
    pipelines = client.get("/api/v2/pipelines", headers=acme).get_json()["data"]
    assert [p["name"] for p in pipelines] == ["Sales pipeline", "Partnerships", "Renewals"]
    stages = client.get("/api/v2/stages?pipeline_id=1", headers=acme).get_json()["data"]
    assert {s["pipeline_id"] for s in stages} == {1}
    assert {s["id"]: s["name"] for s in stages}[3] == "Proposal made"
    types = client.get("/api/v1/activityTypes", headers=acme).get_json()["data"]
    assert [t["key_string"] for t in types] == ["call", "meeting", "task", "deadline", "email", "lunch"]
    assert [t["id"] for t in types[:2]] == [1, 2]
    currencies = client.get("/api/v1/currencies", headers=acme).get_json()["data"]
    assert currencies[0]["id"] == 1 and currencies[0]["code"] == "EUR"
    euro = client.get("/api/v1/currencies?term=eur", headers=acme).get_json()["data"]
    assert [c["code"] for c in euro] == ["EUR"]


def test_stages_of_another_pipeline_and_pages_with_a_cursor(app, acme, sandbox):
    client = app.test_client()
    partnerships = client.get("/api/v2/stages?pipeline_id=2", headers=acme).get_json()["data"]
    assert [s["name"] for s in partnerships] == ["Lead in", "Discovery call", "Agreement sent"]
    first = client.get("/api/v2/stages?limit=4&sort_by=order_nr&sort_direction=desc", headers=acme)
    body = first.get_json()
    assert len(body["data"]) == 4 and body["data"][0]["order_nr"] == 4
    cursor = body["additional_data"]["next_cursor"]
    assert cursor
    rest = client.get(
        f"/api/v2/stages?limit=4&sort_by=order_nr&sort_direction=desc&cursor={cursor}", headers=acme
    )
    seen = {s["id"] for s in body["data"]} | {s["id"] for s in rest.get_json()["data"]}
    assert len(seen) == 8  # no stage twice across the two pages
    # What went upstream: the normalized query, Pipedrive's own parameter names.
    last = [c for c in sandbox.calls if c["path"] == "/api/v2/stages"][-1]
    assert last["query"] == {
        "sort_by": ["order_nr"],
        "sort_direction": ["desc"],
        "limit": ["4"],
        "cursor": [cursor],
    }


# -- tenant isolation ----------------------------------------------------------------------------------------
def test_users_of_one_company_are_never_visible_to_another(app, acme, globex):
    client = app.test_client()
    acme_users = client.get("/api/v1/users", headers=acme).get_json()["data"]
    globex_users = client.get("/api/v1/users", headers=globex).get_json()["data"]
    assert {u["id"] for u in acme_users} == {2001, 2002, 2003}
    assert {u["id"] for u in globex_users} == {2101}
    assert [u["id"] for u in acme_users if u["is_you"]] == [2001]
    assert [u["id"] for u in acme_users if any(a["admin"] for a in u["access"])] == [2001]
    # The panel of Globex's user: the JWT decides the company, whatever the query says.
    jwt_headers = {"Authorization": "Bearer " + panel_jwt(1002, 2101)}
    via_panel = client.get("/api/v1/users?company_id=1001", headers=jwt_headers)
    assert via_panel.status_code == 400  # not a parameter of getUsers: refused, never forwarded
    assert {u["id"] for u in client.get("/api/v1/users", headers=jwt_headers).get_json()["data"]} == {2101}


def test_the_cache_is_per_company(app, acme, globex, sandbox):
    client = app.test_client()
    first = client.get("/api/v2/pipelines", headers=acme)
    other = client.get("/api/v2/pipelines", headers=globex)
    assert first.headers["X-Cache"] == other.headers["X-Cache"] == "MISS"
    assert [p["name"] for p in other.get_json()["data"]] == ["Globex pipeline", "Distributors"]
    again = client.get("/api/v2/pipelines", headers=globex)
    assert again.headers["X-Cache"] == "HIT"
    assert again.get_json() == other.get_json()
    acme_again = client.get("/api/v2/pipelines", headers=acme)
    assert acme_again.headers["X-Cache"] == "HIT"
    assert acme_again.get_json() == first.get_json()
    assert sandbox.count("/api/v2/pipelines") == 2


# -- the cache -----------------------------------------------------------------------------------------------
def test_reads_are_cached_and_revalidated(app, acme, sandbox):
    client = app.test_client()
    miss = client.get("/api/v1/activityTypes", headers=acme)
    hit = client.get("/api/v1/activityTypes", headers=acme)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert hit.headers["Cache-Control"] == "private, no-cache"
    assert hit.headers["ETag"] == miss.headers["ETag"]
    assert "app;dur=" in miss.headers["Server-Timing"] and "upstream;dur=" in miss.headers["Server-Timing"]
    assert 'cache;desc="hit"' in hit.headers["Server-Timing"]
    not_modified = client.get(
        "/api/v1/activityTypes", headers={**acme, "If-None-Match": miss.headers["ETag"]}
    )
    assert not_modified.status_code == 304 and not_modified.data == b""
    # Another query is another entry; `Cache-Control: no-cache` skips the cache.
    client.get("/api/v1/currencies?term=US", headers=acme)
    client.get("/api/v1/activityTypes", headers={**acme, "Cache-Control": "no-cache"})
    assert sandbox.count("/api/v1/activityTypes") == 2
    assert sandbox.count("/api/v1/currencies") == 1


def test_goal_writes_leave_the_reference_cache_alone(app, sandbox_server, sandbox):
    install(app, sandbox_server.url, 2001)
    key = {"x-api-token": new_key(app, 1001, scope="full")}
    client = app.test_client()
    client.get("/api/v2/stages", headers=key)
    goal = {
        "title": "Written",
        "assignee": {"id": 2001, "type": "person"},
        "type": {"name": "deals_progressed", "params": {"pipeline_id": [1], "stage_id": 3}},
        "expected_outcome": {"target": 3, "tracking_metric": "quantity"},
        "duration": {"start": "2026-01-01", "end": None},
        "interval": "monthly",
    }
    assert client.post("/api/v1/goals", json=goal, headers=key).status_code == 200
    after = client.get("/api/v2/stages", headers=key)
    assert after.headers["X-Cache"] == "HIT"
    assert sandbox.count("/api/v2/stages") == 1


def test_a_ttl_of_zero_sends_every_read(clean_db, sandbox_server, sandbox):
    app = reference_app(clean_db, sandbox_server.url, REFERENCE_CACHE_TTL="0", GOALS_CACHE_TTL="30")
    try:
        install(app, sandbox_server.url, 2001)
        key = {"x-api-token": new_key(app, 1001)}
        sandbox.clear_calls()
        client = app.test_client()
        answers = [client.get("/api/v1/users", headers=key) for _ in range(2)]
        assert [a.headers["X-Cache"] for a in answers] == ["MISS", "MISS"]
        assert sandbox.count("/api/v1/users") == 2
    finally:
        close_app(app)


# -- the budget ----------------------------------------------------------------------------------------------
def spent(client, headers) -> int:
    return client.get("/api/v1/app/installation", headers=headers).get_json()["data"]["budget"]["spent_today"]


@pytest.mark.parametrize(
    "path,op,cost",
    [
        (p, BY_OP[o].op, BY_OP[o].cost)
        for o, p in (
            ("pipelines", "/api/v2/pipelines"),
            ("stages", "/api/v2/stages"),
            ("activity_types", "/api/v1/activityTypes"),
            ("users", "/api/v1/users"),
            ("currencies", "/api/v1/currencies"),
        )
    ],
)
def test_each_read_is_charged_its_cost_once(app, acme, sandbox, path, op, cost):
    client = app.test_client()
    before = spent(client, acme)
    assert client.get(path, headers=acme).status_code == 200
    assert client.get(path, headers=acme).headers["X-Cache"] == "HIT"  # a hit costs nothing
    assert spent(client, acme) - before == cost
    # Pipedrive charged the same: the sandbox's ledger for the company moved by the cost too.
    remaining = [c for c in sandbox.summary()["companies"] if c["id"] == 1001][0]["budget"]
    assert remaining["used"] == before + cost  # the install's /users/me (2) is `before`
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'pd_app_pipedrive_tokens_total{{op="{op}"}} {float(cost)}' in metrics


def test_costs_match_the_sandbox_gate():
    """The proxy's cost table and the sandbox's operations agree (the ledger charges what Pipedrive does)."""
    from pd_app.sandbox import reference as sandbox_reference

    views = {
        "pipelines": sandbox_reference.list_pipelines,
        "stages": sandbox_reference.list_stages,
        "activity_types": sandbox_reference.list_activity_types,
        "users": sandbox_reference.list_users,
        "currencies": sandbox_reference.list_currencies,
    }
    for op, view in views.items():
        assert view.token_cost == BY_OP[op].cost, op
        assert set(view.scopes) >= set(BY_OP[op].scopes), op


# -- a missing scope -----------------------------------------------------------------------------------------
def test_a_missing_scope_is_forbidden_naming_the_scope_and_never_cached(app, sandbox_server, sandbox):
    sandbox.set_knobs(granted_scopes=["goals:full"])  # an install from before the app asked for more
    install(app, sandbox_server.url, 2001)
    key = {"x-api-token": new_key(app, 1001)}
    sandbox.clear_calls()
    client = app.test_client()
    for path, scope in (
        ("/api/v2/pipelines", "deals:read"),
        ("/api/v2/stages", "deals:read"),
        ("/api/v1/activityTypes", "activities:read"),
        ("/api/v1/users", "users:read"),
    ):
        for _ in range(2):
            resp = client.get(path, headers=key)
            assert resp.status_code == 403, resp.get_json()
            body = resp.get_json()
            assert body["success"] is False and body["code"] == "forbidden"
            assert f"`{scope}`" in body["error_info"] and "/oauth/install" in body["error_info"]
            assert "Scope and URL mismatch" in body["error"]
        assert sandbox.count(path, status=403) == 2, path  # not cached: asked again
    # `base` is always granted: currencies still work.
    assert client.get("/api/v1/currencies", headers=key).status_code == 200
    installation = client.get("/api/v1/app/installation", headers=key).get_json()["data"]
    assert installation["scopes"] == ["base", "goals:full"]


def test_the_installation_tells_the_users_locale_currency_and_role(app, acme, sandbox_server):
    client = app.test_client()
    admin = client.get("/api/v1/app/installation", headers=acme).get_json()["data"]
    assert (admin["user_id"], admin["is_admin"]) == (2001, True)
    assert (admin["locale"], admin["default_currency"], admin["timezone_name"]) == (
        "en_GB",
        "EUR",
        "Europe/London",
    )
    assert admin["budget"]["spent_today"] == 2 and admin["company_name"] == "Acme Sales Ltd"  # kept
    install(app, sandbox_server.url, 2002)
    seller = {"Authorization": "Bearer " + panel_jwt(1001, 2002)}
    other = client.get("/api/v1/app/installation", headers=seller).get_json()["data"]
    assert (other["user_id"], other["is_admin"], other["locale"]) == (2002, False, "en_GB")


def test_a_new_install_is_granted_the_reference_scopes(app, acme):
    scopes = app.test_client().get("/api/v1/app/installation", headers=acme).get_json()["data"]["scopes"]
    assert scopes == ["base", "goals:full", "deals:read", "activities:read", "users:read"]


# -- the OpenAPI document ------------------------------------------------------------------------------------
def test_the_document_describes_each_read_as_served(app, acme):
    document = app.test_client().get("/api/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    queries = {
        "/api/v2/pipelines": {"sort_by", "sort_direction", "limit", "cursor"},
        "/api/v2/stages": {"pipeline_id", "sort_by", "sort_direction", "limit", "cursor"},
        "/api/v1/activityTypes": set(),
        "/api/v1/users": set(),
        "/api/v1/currencies": {"term"},
    }
    for spec in BY_OP.values():
        operation = document["paths"][spec.path]["get"]
        assert operation["x-token-cost"] == spec.cost and operation["tags"] == ["Reference"]
        assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == queries[spec.path]
        assert {"200", "304", "400", "401", "403", "429", "503"} <= set(operation["responses"])
        response = schemas[spec.schema]
        item = response["properties"]["data"]["items"]["$ref"].rsplit("/", 1)[-1]
        # The documented fields are exactly what the sandbox (answering as Pipedrive) sends.
        assert set(schemas[item]["properties"]) == set(SHAPES[spec.path]), spec.path
        assert ("additional_data" in response["properties"]) == spec.path.startswith("/api/v2/")
    stages = document["paths"]["/api/v2/stages"]["get"]["parameters"]
    limit = next(p for p in stages if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
    sort_by = next(p for p in stages if p["name"] == "sort_by")
    assert sort_by["schema"]["enum"] == ["id", "update_time", "add_time", "order_nr"]
    installation = schemas["Installation"]["properties"]
    assert {"locale", "default_currency", "timezone_name", "is_admin"} <= set(installation)


# -- bad queries: 400 in the contract's envelope, nothing sent -----------------------------------------------
@pytest.mark.parametrize(
    "path,query,field",
    [
        ("/api/v2/pipelines", "limit=0", "limit"),
        ("/api/v2/pipelines", "limit=501", "limit"),
        ("/api/v2/pipelines", "limit=ten", "limit"),
        ("/api/v2/pipelines", "sort_by=name", "sort_by"),
        ("/api/v2/pipelines", "sort_direction=up", "sort_direction"),
        ("/api/v2/pipelines", "cursor=%21%21", "cursor"),
        ("/api/v2/pipelines", "pipeline_id=1", "pipeline_id"),
        ("/api/v2/stages", "pipeline_id=abc", "pipeline_id"),
        ("/api/v2/stages", "pipeline_id=0", "pipeline_id"),
        ("/api/v2/stages", "pipeline_id=1&pipeline_id=2", "pipeline_id"),
        ("/api/v2/stages", "sort_by=name", "sort_by"),
        ("/api/v1/activityTypes", "limit=5", "limit"),
        ("/api/v1/users", "id=2001", "id"),
        ("/api/v1/currencies", "term=", "term"),
        ("/api/v1/currencies", "term=" + "e" * 101, "term"),
    ],
)
def test_bad_queries_are_refused_before_anything_is_sent(app, acme, sandbox, path, query, field):
    resp = app.test_client().get(f"{path}?{query}", headers=acme)
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["code"] == "validation_failed" and body["success"] is False
    assert field in {d["field"] for d in body["details"]}
    assert sandbox.count("/api/") == 0


def test_reads_need_a_credential(app, acme, sandbox):
    for path in PATHS:
        resp = app.test_client().get(path)
        assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"
    assert sandbox.count("/api/") == 0


# -- the sandbox's own gate ----------------------------------------------------------------------------------
def test_the_sandbox_charges_and_checks_scopes_at_its_gate(sandbox_server, sandbox):
    import requests

    def remaining(resp) -> int:
        return int(resp.headers["x-daily-ratelimit-token-remaining"])

    with requests.Session() as http:

        def get(path: str, token: str) -> requests.Response:
            headers = {"Authorization": "Bearer " + token}
            return http.get(sandbox_server.url + path, headers=headers, timeout=5)

        token = sandbox.install(1001, 2002)["access_token"]
        last = get("/api/v1/currencies", token)
        for path, cost in (("/api/v2/pipelines", 5), ("/api/v2/stages", 5), ("/api/v1/users", 20)):
            resp = get(path, token)
            assert resp.status_code == 200
            assert remaining(resp) == remaining(last) - cost, path
            last = resp
        users = get("/api/v1/users", token).json()["data"]
        assert [u["id"] for u in users if u["is_you"]] == [2002]
        bad = get("/api/v2/pipelines?limit=0", token)
        assert bad.status_code == 400 and bad.json()["success"] is False
        sandbox.set_knobs(granted_scopes=["goals:read"])
        narrow = sandbox.install(1001, 2003)
        assert narrow["scope"] == "base,goals:read"
        refused = get("/api/v1/activityTypes", narrow["access_token"])
        assert refused.status_code == 403 and refused.json()["error"] == "Scope and URL mismatch"
        assert get("/api/v1/currencies", narrow["access_token"]).status_code == 200


def test_a_read_scope_key_gets_the_users_without_their_email_and_phone(app, acme):
    # A read key may be a browser key, public by design: names for a dashboard, no contact details.
    client = app.test_client()
    full = client.get("/api/v1/users", headers={"x-api-token": new_key(app, 1001, "full")})
    reader = acme  # scope read
    redacted = client.get("/api/v1/users", headers=reader)
    assert full.status_code == redacted.status_code == 200
    by_id = {u["id"]: u for u in full.get_json()["data"]}
    assert any(u["email"] for u in by_id.values()) and any(u["phone"] for u in by_id.values())
    for user in redacted.get_json()["data"]:
        assert user["email"] == "" and user["phone"] is None
        assert user["name"] == by_id[user["id"]]["name"]
    # Its own validator, and a 304 against it.
    assert redacted.headers["ETag"] != full.headers["ETag"]
    again = client.get("/api/v1/users", headers={**reader, "If-None-Match": redacted.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == redacted.headers["ETag"]
    # The full answer's validator does not match the redacted one, and other reads are untouched.
    other = client.get("/api/v1/users", headers={**reader, "If-None-Match": full.headers["ETag"]})
    assert other.status_code == 200 and other.get_json()["data"][0]["email"] == ""
    assert client.get("/api/v1/currencies", headers=reader).get_json()["data"]
