"""The settings page's endpoints (/api/v1/app/settings, /api/v1/app/keys) and its entry (/ui/settings): only
a Pipedrive admin's JWT, checked with Pipedrive (/users/me, charged, remembered a minute); keys created and
revoked there work and stop through the proxy at once, in another app process too; bad input 400s; one
company never sees another's; every change audited. The page in a browser: tests/browser/test_settings.py."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from html import unescape

import jwt
import pytest
from sqlalchemy import select

from pd_app import create_app, keys
from pd_app.db import get_session
from pd_app.goals import openapi_document
from pd_app.models import BudgetDay, Installation, PartnerKey, utcnow

from .conftest import app_environ, close_app

JWT_SECRET = "settings-jwt-secret-0123456789abcdefghijkl"
ADA, SAM, GIL = 2001, 2002, 2101  # Acme's admin, an Acme seller, Globex's admin
ACME, GLOBEX = 1001, 1002
FIND = "/api/v1/goals/find"
USERS_ME = "/api/v1/users/me"


@pytest.fixture
def app(clean_db, sandbox_server, sandbox):
    app = create_app(environ=app_environ(clean_db, sandbox_server.url, PIPEDRIVE_JWT_SECRET=JWT_SECRET))
    yield app
    close_app(app)


def panel_jwt(user_id: int = ADA, company_id: int = ACME) -> str:
    now = int(time.time())
    claims = {"userId": user_id, "companyId": company_id, "iat": now, "exp": now + 300}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def as_user(user_id: int = ADA, company_id: int = ACME) -> dict[str, str]:
    return {"Authorization": "Bearer " + panel_jwt(user_id, company_id)}


@pytest.fixture
def acme(installer):
    installer.install(ADA)
    installer.install(SAM)


def create(client, body: dict, user_id: int = ADA, company_id: int = ACME):
    return client.post("/api/v1/app/keys", json=body, headers=as_user(user_id, company_id))


def later(app, seconds: float = 61.0) -> None:
    """Move the app's admin-check clock past what it remembers."""
    checks = app.extensions["pd_admin_checks"]
    base, shift = checks.clock, seconds
    checks.clock = lambda: base() + shift


def set_admin(sandbox, user_id: int, is_admin: bool) -> None:
    """What Pipedrive says of the user from now on (the sandbox's directory is replaced whole, never
    mutated)."""
    sandbox.users = {**sandbox.users, user_id: replace(sandbox.users[user_id], is_admin=is_admin)}


# -- who may ----------------------------------------------------------------------------------------------
def test_an_admin_sees_the_companys_settings_and_pipedrive_is_asked_once_a_minute(client, acme, sandbox, app):
    sandbox.clear_calls()
    resp = client.get("/api/v1/app/settings", headers=as_user())
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    data = resp.get_json()["data"]
    assert data["company"] == {"id": ACME, "name": "Acme Sales Ltd", "domain": "acme"}
    users = {i["user_id"]: i for i in data["installations"]}
    assert set(users) == {ADA, SAM}
    assert (users[ADA]["is_admin"], users[ADA]["status"], users[ADA]["reconnect_url"]) == (
        True,
        "active",
        None,
    )
    assert users[SAM]["user_name"] == "Sam Seller" and users[SAM]["is_admin"] is False
    assert not any("token" in field for field in users[ADA])
    assert [limit["name"] for limit in data["limits"]][:1] == ["GOALS_CACHE_TTL"]
    assert {"KEY_RATE_LIMIT", "COMPANY_DAILY_TOKEN_CAP", "UPSTREAM_RETRIES", "SNAPSHOT_EVERY"} <= {
        limit["name"] for limit in data["limits"]
    }
    assert sandbox.count(USERS_ME) == 1  # the admin check, with Ada's own token
    # Within the minute, the page's other calls find the answer remembered: nothing more is asked.
    for path in ("/api/v1/app/settings", "/api/v1/app/keys", "/api/v1/app/webhooks"):
        assert client.get(path, headers=as_user()).status_code == 200
    assert sandbox.count(USERS_ME) == 1
    later(app)
    assert client.get("/api/v1/app/keys", headers=as_user()).status_code == 200
    assert sandbox.count(USERS_ME) == 2


def test_the_admin_check_is_charged_to_the_companys_budget(client, acme, app):
    with app.app_context():
        before = get_session().scalar(select(BudgetDay.spent).where(BudgetDay.company_id == ACME))
    budget = client.get("/api/v1/app/settings", headers=as_user()).get_json()["data"]["budget"]
    assert budget["spent_today"] == before + 2  # /users/me costs 2 tokens
    assert budget["cap"] == app.config["SETTINGS"].company_daily_token_cap


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/app/settings", None),
        ("GET", "/api/v1/app/keys", None),
        ("POST", "/api/v1/app/keys", {"name": "mine"}),
        ("DELETE", "/api/v1/app/keys/1", None),
    ],
)
def test_a_user_who_is_not_an_admin_gets_403_and_no_data(client, acme, app, method, path, body):
    resp = client.open(path, method=method, json=body, headers=as_user(SAM))
    assert resp.status_code == 403
    answer = resp.get_json()
    assert answer["code"] == "forbidden" and "admin" in answer["error"] and "data" not in answer
    with app.app_context():
        assert get_session().scalars(select(PartnerKey)).all() == []


@pytest.mark.parametrize("scope", ["full", "read"])
@pytest.mark.parametrize("header", ["x-api-token", "bearer"])
def test_a_partner_key_even_of_scope_full_gets_403(client, acme, make_key, scope, header):
    key = make_key(scope=scope)
    headers = {"x-api-token": key} if header == "x-api-token" else {"Authorization": f"Bearer {key}"}
    for method, path in (
        ("GET", "/api/v1/app/settings"),
        ("GET", "/api/v1/app/keys"),
        ("POST", "/api/v1/app/keys"),
        ("DELETE", "/api/v1/app/keys/1"),
    ):
        resp = client.open(path, method=method, json={"name": "minted"}, headers=headers)
        assert resp.status_code == 403, (method, path)
        assert resp.get_json()["code"] == "forbidden" and "Partner keys" in resp.get_json()["error"]
    assert client.get(FIND, headers=headers).status_code == 200  # the key itself still works


def test_a_demoted_admin_loses_access_within_the_minute(client, acme, sandbox, app, caplog):
    caplog.set_level(logging.INFO, logger="pd_app.audit")
    assert client.get("/api/v1/app/keys", headers=as_user()).status_code == 200
    set_admin(sandbox, ADA, False)
    later(app)
    resp = client.get("/api/v1/app/keys", headers=as_user())
    assert resp.status_code == 403 and resp.get_json()["code"] == "forbidden"
    with app.app_context():  # what Pipedrive said is stored, for key binding and snapshots
        ada = get_session().scalar(select(Installation).where(Installation.user_id == ADA))
        assert ada.is_admin is False
    changed = [
        r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "admin_status_changed"
    ]
    assert changed == [
        {"event": "admin_status_changed", "company_id": ACME, "user_id": ADA, "is_admin": False}
    ]
    # Promoted in Pipedrive: the page opens for the seller as soon as the check is due.
    set_admin(sandbox, SAM, True)
    assert client.get("/api/v1/app/keys", headers=as_user(SAM)).status_code == 200


@pytest.mark.parametrize(
    ("knobs", "status", "code"),
    [
        ({"force_api_status": {"status": 503, "count": 9}}, 503, "upstream_unavailable"),
        ({"force_api_status": {"status": 429, "count": 1, "retry_after": 30}}, 429, "rate_limited"),
    ],
)
def test_when_pipedrive_cannot_confirm_the_admin_the_answer_says_so(
    client, acme, sandbox, knobs, status, code
):
    sandbox.set_knobs(**knobs)
    resp = client.get("/api/v1/app/keys", headers=as_user())
    assert resp.status_code == status and resp.get_json()["code"] == code
    assert "data" not in resp.get_json() and "Retry-After" in resp.headers


def test_over_the_days_cap_nothing_is_asked_and_nothing_is_shown(client, acme, sandbox, app):
    cap = app.config["SETTINGS"].company_daily_token_cap
    with app.app_context():
        session = get_session()
        session.merge(BudgetDay(company_id=ACME, day=utcnow().date(), reserved=cap, spent=cap))
        session.commit()
    sandbox.clear_calls()
    resp = client.get("/api/v1/app/settings", headers=as_user())
    assert resp.status_code == 429 and resp.get_json()["code"] == "budget_exhausted"
    assert sandbox.count(USERS_ME) == 0


def test_an_admin_without_a_usable_installation_is_told_which_step_is_missing(client, installer, app):
    assert client.get("/api/v1/app/keys", headers=as_user()).get_json()["code"] == "not_installed"
    installer.install(ADA)
    with app.app_context():
        session = get_session()
        session.scalar(select(Installation)).status = "reauth_required"
        session.commit()
    resp = client.get("/api/v1/app/keys", headers=as_user())
    assert resp.status_code == 401 and resp.get_json()["code"] == "reauth_required"


# -- keys -------------------------------------------------------------------------------------------------
def test_a_key_created_on_the_page_is_shown_once_works_at_once_and_stops_at_once(client, acme, sandbox):
    resp = create(client, {"name": "Dashboard", "scope": "full"})
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    made = resp.get_json()["data"]
    key = made["key"]
    assert re.fullmatch(r"pdk_[0-9a-f]{8}\.[\w-]{43}", key) and made["prefix"] == key.partition(".")[0]
    assert (made["name"], made["scope"], made["origins"], made["active"]) == ("Dashboard", "full", [], True)
    assert made["served_by"] == {"user_id": ADA, "user_name": "Ada Admin", "status": "active"}

    listed = client.get("/api/v1/app/keys", headers=as_user())
    assert key not in listed.get_data(as_text=True) and key.partition(".")[2] not in listed.get_data(
        as_text=True
    )
    (row,) = listed.get_json()["data"]
    assert (row["id"], row["prefix"], row["active"], row["last_used_at"]) == (
        made["id"],
        made["prefix"],
        True,
        None,
    )

    sandbox.clear_calls()
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert sandbox.count("/api/v1/goals/find") == 1
    (row,) = client.get("/api/v1/app/keys", headers=as_user()).get_json()["data"]
    assert row["last_used_at"] is not None  # flushed before listing

    revoked = client.delete(f"/api/v1/app/keys/{made['id']}", headers=as_user())
    assert revoked.status_code == 200
    assert revoked.get_json()["data"]["active"] is False and revoked.get_json()["data"]["revoked_at"]
    refused = client.get(FIND, headers={"x-api-token": key})
    assert refused.status_code == 401 and refused.get_json()["error"] == "The partner key has been revoked."
    assert sandbox.count("/api/v1/goals/find") == 1
    # Revoking again changes nothing; the list keeps it, revoked.
    assert client.delete(f"/api/v1/app/keys/{made['id']}", headers=as_user()).status_code == 200
    (row,) = client.get("/api/v1/app/keys", headers=as_user()).get_json()["data"]
    assert row["active"] is False


def test_a_key_made_in_one_process_serves_in_another_and_its_revocation_is_seen_there_at_once(
    client, acme, clean_db, sandbox_server
):
    other = create_app(environ=app_environ(clean_db, sandbox_server.url, PIPEDRIVE_JWT_SECRET=JWT_SECRET))
    try:
        elsewhere = other.test_client()
        made = create(client, {"name": "Cross"}).get_json()["data"]
        assert elsewhere.get(FIND, headers={"x-api-token": made["key"]}).status_code == 200
        assert elsewhere.get(FIND, headers={"x-api-token": made["key"]}).status_code == 200
        assert client.delete(f"/api/v1/app/keys/{made['id']}", headers=as_user()).status_code == 200
        assert elsewhere.get(FIND, headers={"x-api-token": made["key"]}).status_code == 401
    finally:
        close_app(other)


@pytest.mark.parametrize(
    ("body", "scope"),
    [
        ({"name": "server"}, "full"),
        ({"name": "browser", "origins": ["https://Dash.Example.com/"]}, "read"),
        ({"name": "browser", "origins": ["https://dash.example.com"], "scope": "full"}, "full"),
        ({"name": "server", "scope": "read"}, "read"),
    ],
)
def test_scope_defaults_as_in_the_cli(client, acme, body, scope):
    made = create(client, body).get_json()["data"]
    assert made["scope"] == scope
    if "origins" in body:
        assert made["origins"] == ["https://dash.example.com"]


def test_a_browser_key_made_on_the_page_may_be_used_from_its_origin(client, acme):
    made = create(client, {"name": "dash", "origins": ["https://dash.example.com"]}).get_json()["data"]
    resp = client.get(FIND, headers={"x-api-token": made["key"], "Origin": "https://dash.example.com"})
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://dash.example.com"
    write = client.post("/api/v1/goals", json={}, headers={"x-api-token": made["key"]})
    assert write.status_code == 403  # a browser key is read-only unless asked otherwise


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ([], "body", "invalid_type"),
        ({}, "name", "required"),
        ({"name": "   "}, "name", "invalid_length"),
        ({"name": "x" * 201}, "name", "invalid_length"),
        ({"name": "tab\there"}, "name", "invalid"),
        ({"name": 7}, "name", "required"),
        ({"name": "k", "scope": "admin"}, "scope", "invalid_choice"),
        ({"name": "k", "scope": ["full"]}, "scope", "invalid_choice"),
        ({"name": "k", "origins": "https://dash.example.com"}, "origins", "invalid_type"),
        ({"name": "k", "origins": ["dash.example.com"]}, "origins[0]", "invalid_origin"),
        (
            {"name": "k", "origins": ["https://ok.example.com", "https://x.example.com/path"]},
            "origins[1]",
            "invalid_origin",
        ),
        ({"name": "k", "origins": [42]}, "origins[0]", "invalid_origin"),
        ({"name": "k", "origins": [f"https://d{i}.example.com" for i in range(21)]}, "origins", "too_many"),
        ({"name": "k", "user_id": 2002}, "user_id", "unknown_field"),
    ],
)
def test_bad_key_requests_are_400_with_each_problem_named(client, acme, app, body, field, code):
    resp = create(client, body)
    assert resp.status_code == 400
    answer = resp.get_json()
    assert answer["code"] == "validation_failed" and answer["success"] is False
    assert {"field": field, "code": code} in [
        {"field": d["field"], "code": d["code"]} for d in answer["details"]
    ]
    with app.app_context():
        assert get_session().scalars(select(PartnerKey)).all() == []


# Found by tests/test_fuzz.py: the document allowed names and origins the validator refused, and refused a
# null scope the validator took. Now one rule each, in both: a pattern the validator itself applies.
NAMES = [
    "Sales dashboard",
    " padded ",
    "Zoë's \u00a0board",
    "\u00a0",
    "  ",
    "zero\u200bwidth",
    "a\u2028b",
    "bell\x07",
    "\u202eevil",
    "x" * 200,
    "x" * 201,
    "\U0001f600",
]
ORIGINS = [
    "https://dash.example.com",
    "http://localhost:3000",
    "https://a.b.c/",
    "HTTPS://dash.example.com",
    " https://dash.example.com",
    "https://dash.example.com:65535",
    "https://dash.example.com:65536",
    "https://dash.example.com:0",
    "https://under_score.example.com",
    "https://x.example.com/path",
    "https://[::1]",
    "https://dash.example.com.",
    "https://-dash.example.com",
    "ftp://x.example",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_name_is_taken_exactly_when_the_document_says_so(name, document_schemas):
    rule = document_schemas["KeyRequest"]["properties"]["name"]
    documented = 1 <= len(name) <= rule["maxLength"] and re.search(rule["pattern"], name) is not None
    try:
        keys.validate(name)
        accepted = True
    except keys.InvalidKey:
        accepted = False
    assert accepted is documented


@pytest.mark.parametrize("origin", ORIGINS)
def test_an_origin_is_taken_exactly_when_the_document_says_so(origin, document_schemas):
    pattern = document_schemas["KeyRequest"]["properties"]["origins"]["items"]["pattern"]
    try:
        keys.validate("k", origins=[origin])
        accepted = True
    except keys.InvalidKey:
        accepted = False
    assert accepted is (re.search(pattern, origin) is not None)


def test_a_null_scope_or_origins_is_the_default_as_documented(client, acme, document_schemas):
    request = document_schemas["KeyRequest"]["properties"]
    assert None in request["scope"]["enum"] and "null" in request["origins"]["type"]
    resp = create(client, {"name": "k", "scope": None, "origins": None})
    assert resp.status_code == 201 and resp.get_json()["data"]["scope"] == "full"


@pytest.fixture(scope="module")
def document_schemas():
    return openapi_document("http://app.localhost")["components"]["schemas"]


def test_every_problem_is_named_at_once(client, acme):
    resp = create(client, {"name": "", "scope": "x", "origins": ["nope"]})
    fields = sorted(d["field"] for d in resp.get_json()["details"])
    assert resp.status_code == 400 and fields == ["name", "origins[0]", "scope"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"data": "name=x", "content_type": "application/x-www-form-urlencoded"}, 415),
        ({"data": "{not json", "content_type": "application/json"}, 400),
    ],
)
def test_a_body_that_is_not_json_is_refused(client, acme, kwargs, expected):
    resp = client.post("/api/v1/app/keys", headers=as_user(), **kwargs)
    assert resp.status_code == expected


def test_unknown_and_out_of_range_key_ids_are_404(client, acme):
    for key_id in ("999", "9223372036854775808"):
        resp = client.delete(f"/api/v1/app/keys/{key_id}", headers=as_user())
        assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"
    assert client.delete("/api/v1/app/keys/abc", headers=as_user()).status_code == 404


def test_the_cli_and_the_page_refuse_the_same_origin_with_the_same_words(client, acme, runner):
    api = create(client, {"name": "k", "origins": ["https://dash.example.com/path"]}).get_json()["details"][0]
    cli = runner.invoke(
        args=[
            "keys",
            "create",
            "--company-id",
            "1001",
            "--name",
            "k",
            "--origin",
            "https://dash.example.com/path",
        ]
    )
    assert cli.exit_code == 2 and api["message"] in " ".join(cli.output.split())


# -- tenants and audit ------------------------------------------------------------------------------------
def test_an_admin_of_one_company_never_sees_nor_revokes_anothers_keys(client, acme, installer):
    installer.install(GIL)
    acme_key = create(client, {"name": "acme dash"}).get_json()["data"]
    globex_key = create(client, {"name": "globex dash"}, GIL, GLOBEX).get_json()["data"]
    assert globex_key["served_by"]["user_id"] == GIL
    globex_view = client.get("/api/v1/app/keys", headers=as_user(GIL, GLOBEX)).get_json()["data"]
    assert [k["name"] for k in globex_view] == ["globex dash"]
    settings = client.get("/api/v1/app/settings", headers=as_user(GIL, GLOBEX)).get_json()["data"]
    assert [i["user_id"] for i in settings["installations"]] == [GIL]
    refused = client.delete(f"/api/v1/app/keys/{acme_key['id']}", headers=as_user(GIL, GLOBEX))
    assert refused.status_code == 404
    assert client.get(FIND, headers={"x-api-token": acme_key["key"]}).status_code == 200
    # A JWT naming another company is signed for that company only: Ada cannot claim Globex.
    assert client.get("/api/v1/app/keys", headers=as_user(ADA, GLOBEX)).get_json()["code"] == "not_installed"


def test_key_changes_from_the_page_are_audited_with_who_made_them(client, acme, caplog):
    caplog.set_level(logging.INFO, logger="pd_app.audit")
    made = create(client, {"name": "Audited", "origins": ["https://dash.example.com"]}).get_json()["data"]
    client.delete(f"/api/v1/app/keys/{made['id']}", headers=as_user())
    events = {r.fields["event"]: r.fields for r in caplog.records if hasattr(r, "fields")}
    created, revoked = events["key_created"], events["key_revoked"]
    assert (created["key_id"], created["company_id"], created["bound_user_id"]) == (made["id"], ACME, ADA)
    assert (created["scope"], created["origins"], created["by"]) == (
        "read",
        ["https://dash.example.com"],
        "jwt:1001:2001",
    )
    assert (revoked["key_id"], revoked["by"]) == (made["id"], "jwt:1001:2001")
    assert made["key"] not in caplog.text and made["key"].partition(".")[2] not in caplog.text


def test_a_reconnect_link_is_offered_for_an_installation_that_needs_it(client, acme, app):
    with app.app_context():
        session = get_session()
        session.scalar(select(Installation).where(Installation.user_id == SAM)).status = "reauth_required"
        session.commit()
    users = {
        i["user_id"]: i
        for i in client.get("/api/v1/app/settings", headers=as_user()).get_json()["data"]["installations"]
    }
    assert users[SAM]["reconnect_url"] == "http://app.localhost/oauth/install"
    assert users[ADA]["reconnect_url"] is None


def test_the_budget_shows_the_last_14_utc_days_with_zeros_for_days_without_spending(client, acme, app):
    today = utcnow().date()
    from datetime import timedelta

    with app.app_context():
        session = get_session()
        for back, spent in ((3, 400), (13, 120), (14, 9999)):  # 14 days back is outside the window
            session.merge(
                BudgetDay(company_id=ACME, day=today - timedelta(days=back), reserved=spent, spent=spent)
            )
        session.merge(BudgetDay(company_id=GLOBEX, day=today - timedelta(days=2), reserved=50, spent=50))
        session.commit()
    budget = client.get("/api/v1/app/settings", headers=as_user()).get_json()["data"]["budget"]
    days = budget["days"]
    assert len(days) == 14 and days[-1]["date"] == today.isoformat()
    assert days[0] == {"date": (today - timedelta(days=13)).isoformat(), "spent": 120}
    assert days[-4]["spent"] == 400 and days[-3]["spent"] == 0  # another company's day is not this one's
    assert days[-1]["spent"] == budget["spent_today"] > 0
    assert budget["resets_at"].endswith("T00:00:00Z")


# -- the page's entry -------------------------------------------------------------------------------------
def _page(client, user_id: int = ADA, company_id: int = ACME, **query):
    query = {
        "token": panel_jwt(user_id, company_id),
        "userId": user_id,
        "companyId": company_id,
        "id": "ext",
        "theme": "dark",
        **query,
    }
    return client.get("/ui/settings", query_string=query)


def _screen(resp) -> str:
    return re.search(r'data-screen="([a-z_]+)"', resp.get_data(as_text=True)).group(1)


def test_the_page_opens_for_an_admin_with_the_panels_headers(client, acme, app):
    resp = _page(client)
    assert resp.status_code == 200 and _screen(resp) == "loading"  # then the script loads the data
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors https://*.pipedrive.com" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "X-Frame-Options" not in resp.headers
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in resp.headers
    html = resp.get_data(as_text=True)
    assert 'class="theme-dark"' in html and "/ui/vendor/app-extensions-sdk/index.umd.js" in html
    assert 'data-api-base="/api/v1"' in html
    assert (
        unescape(re.search(r'data-webhook-events="([^"]+)"', html).group(1)).split(",")[0] == "goal.progress"
    )


def test_a_non_admin_gets_the_explanation_and_no_data(client, acme, app):
    create(client, {"name": "Secret dashboard"})  # something to leak, if the page leaked
    resp = _page(client, SAM)
    assert resp.status_code == 200 and _screen(resp) == "not_admin"
    html = resp.get_data(as_text=True)
    assert "Only admins can open these settings" in html and "Secret dashboard" not in html


@pytest.mark.parametrize(
    ("change", "screen", "status"),
    [
        ("bad token", "denied", 401),
        ("other company in the query", "denied", 401),
        ("not installed", "install", 200),
        ("pipedrive down", "unavailable", 200),
    ],
)
def test_the_page_has_a_screen_for_each_state(client, installer, sandbox, change, screen, status):
    installer.install(ADA)
    who, query = (ADA, ACME), {}
    if change == "bad token":
        query["token"] = panel_jwt()[:-4] + "AAAA"
    elif change == "other company in the query":
        query["companyId"] = GLOBEX
    elif change == "not installed":
        who = (GIL, GLOBEX)
    else:
        sandbox.set_knobs(force_api_status={"status": 503, "count": 9})
    resp = _page(client, *who, **query)
    assert (resp.status_code, _screen(resp)) == (status, screen)
    if screen == "unavailable":
        assert "Pipedrive could not confirm that you are an admin" in resp.get_data(as_text=True)


# -- the document -----------------------------------------------------------------------------------------
def test_the_openapi_document_describes_the_settings_endpoints(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert set(paths["/api/v1/app/keys"]) >= {"get", "post"}
    assert "delete" in paths["/api/v1/app/keys/{id}"] and "get" in paths["/api/v1/app/settings"]
    post = paths["/api/v1/app/keys"]["post"]
    assert "201" in post["responses"] and "403" in post["responses"] and "400" in post["responses"]
