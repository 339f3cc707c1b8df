"""Inputs and answers nobody sends on purpose: bodies that break parsers, a Pipedrive that answers oddly
(redirects, cookies, malformed tokens, strange identities), concurrent key use, the readiness probe."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import urllib3.exceptions
from sqlalchemy import event, select, update
from werkzeug.wrappers import Request, Response

from pd_app import create_app
from pd_app.auth import touch_keys
from pd_app.db import get_session
from pd_app.models import Installation, PartnerKey, utcnow
from pd_app.pipedrive import client
from pd_app.pipedrive.api import TokenEndpointUnavailable, maybe_sent

from .conftest import CLIENT_ID, CLIENT_SECRET, LiveServer, app_environ, close_app

ROOT = Path(__file__).resolve().parent.parent
DEEP_JSON = "[" * 50000


def basic() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()}


# -- a Pipedrive that answers what the test says -------------------------------------------------------------
class FakePipedrive:
    """Token endpoint and API on 127.0.0.1; each path answers a handler's Response, every request is kept."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[Request], Response]] = {}
        self.requests: list[Request] = []
        self.server = LiveServer(self._wsgi)
        self.url = self.server.url

    @Request.application
    def _wsgi(self, request: Request) -> Response:
        request.get_data()  # read the body while the connection is open
        self.requests.append(request)
        handler = self.handlers.get(request.path)
        return handler(request) if handler else Response("{}", 404, mimetype="application/json")

    def answer(self, path: str, body: object, status: int = 200, **headers: str) -> None:
        import json

        self.handlers[path] = lambda _request: Response(
            json.dumps(body), status, headers=headers, mimetype="application/json"
        )

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


@pytest.fixture
def fake() -> Iterator[FakePipedrive]:
    pipedrive = FakePipedrive()
    yield pipedrive
    pipedrive.server.stop()


@pytest.fixture
def fake_app(clean_db, fake):
    """The app with the fake as its OAuth server and its only allowed api_domain."""
    app = create_app(environ=app_environ(clean_db, fake.url))
    yield app
    close_app(app)


def _token(fake: FakePipedrive, **changes: object) -> dict:
    token = {
        "access_token": "a" * 64,
        "refresh_token": "r" * 64,
        "token_type": "Bearer",
        "expires_in": 3599,
        "scope": "base,goals:full",
        "api_domain": fake.url,
    }
    token.update(changes)
    return {k: v for k, v in token.items() if v is not ...}


ME = {"id": 2001, "company_id": 1001, "name": "Ada", "email": "ada@acme.example", "company_name": "Acme"}


def _installations(app) -> list[Installation]:
    with app.app_context():
        return list(get_session().scalars(select(Installation)).all())


# -- bodies nested deeper than the parser goes ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "auth"),
    [
        ("POST", "/api/v1/goals", "key"),
        ("DELETE", "/oauth/callback", "basic"),
        ("POST", "/oauth/callback", "basic"),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_500(client, installer, make_key, method, path, auth):
    if auth == "key":
        installer.install(user_id=2001)  # a key is bound to an installation when it is created
    headers = {"x-api-token": make_key()} if auth == "key" else basic()
    resp = client.open(path, method=method, data=DEEP_JSON, content_type="application/json", headers=headers)
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["code"] == "validation_failed"
    assert [d["field"] for d in body["details"]] == ["body"]


def test_sandbox_crm_token_wants_a_json_object(sandbox_server):
    crm = sandbox_server.sandbox_app.test_client()  # type: ignore[attr-defined]
    for body in ([2001], "2001", 2001):
        assert crm.post("/crm/token", json=body).status_code == 400
    assert crm.post("/crm/token", data=DEEP_JSON, content_type="application/json").status_code == 400


# -- the install, when Pipedrive's answers are odd -----------------------------------------------------------
@pytest.mark.parametrize(
    "me",
    [
        {"success": True, "data": []},
        {"success": True, "data": "Ada"},
        {"success": False, "error": "unauthorized"},
        {"success": True, "data": {**ME, "company_id": 2**64}},
    ],
)
def test_users_me_that_names_nobody_is_a_readable_page(fake_app, fake, me):
    fake.answer("/oauth/token", _token(fake))
    fake.answer("/api/v1/users/me", me, status=200 if me.get("success") else 401)
    resp = fake_app.test_client().get("/oauth/callback?code=abc")
    assert resp.status_code == 502
    assert "Pipedrive did not tell who you are" in resp.get_data(as_text=True)
    assert _installations(fake_app) == []


def test_names_longer_than_the_columns_are_cut_to_fit(fake_app, fake):
    fake.answer("/oauth/token", _token(fake))
    me = {
        **ME,
        "name": "N" * 1000,
        "company_name": "C" * 1000,
        "company_domain": "d" * 1000,
        "email": "e" * 1000 + "@acme.example",
    }
    fake.answer("/api/v1/users/me", {"success": True, "data": me})
    assert fake_app.test_client().get("/oauth/callback?code=abc").status_code == 302
    [inst] = _installations(fake_app)
    assert inst.user_name == "N" * 255 and inst.company_name == "C" * 255
    assert inst.company_domain == "d" * 255 and inst.user_email == "e" * 320


@pytest.mark.parametrize(
    "changes",
    [
        {"expires_in": "soon"},
        {"expires_in": {"seconds": 3599}},
        {"expires_in": 10**12},
        {"expires_in": True},
        {"expires_in": 3599.5},
        {"expires_in": "³⁵⁹⁹"},
        {"access_token": ...},
        {"refresh_token": ""},
        {"api_domain": 5},
        {"scope": ["goals:full"]},
    ],
)
def test_malformed_token_response_is_a_readable_page_and_stores_nothing(fake_app, fake, changes):
    fake.answer("/oauth/token", _token(fake, **changes))
    fake.answer("/api/v1/users/me", {"success": True, "data": ME})
    resp = fake_app.test_client().get("/oauth/callback?code=abc")
    assert resp.status_code == 502
    assert "answer was incomplete" in resp.get_data(as_text=True)
    assert "/api/v1/users/me" not in fake.paths()
    assert _installations(fake_app) == []


def test_token_response_that_is_not_an_object_is_a_readable_page(fake_app, fake):
    fake.answer("/oauth/token", [_token(fake)])
    resp = fake_app.test_client().get("/oauth/callback?code=abc")
    assert resp.status_code == 502
    assert _installations(fake_app) == []


# -- the HTTP client: no redirects to token endpoints, no cookies, pools, "never sent" -----------------------
def test_token_and_revoke_calls_do_not_follow_redirects(fake_app, fake):
    for path in ("/oauth/token", "/oauth/revoke"):
        fake.answer(path, {}, status=307, Location=fake.url + "/elsewhere")
    fake.answer("/elsewhere", _token(fake))
    with fake_app.app_context():
        with pytest.raises(TokenEndpointUnavailable):
            client().exchange_code("abc")
        with pytest.raises(TokenEndpointUnavailable):
            client().refresh("r" * 64)
        with pytest.raises(TokenEndpointUnavailable):
            client().revoke("r" * 64)
    assert fake.paths() == ["/oauth/token", "/oauth/token", "/oauth/revoke"]
    # In the install, the redirect is Pipedrive being unavailable: a readable page, nothing stored.
    resp = fake_app.test_client().get("/oauth/callback?code=abc")
    assert resp.status_code == 503 and "/elsewhere" not in fake.paths()


def test_a_cookie_set_by_one_call_is_never_sent_on_the_next(fake_app, fake):
    fake.answer("/api/v1/set", {"success": True}, **{"Set-Cookie": "sid=acme-session; Path=/"})
    fake.answer("/api/v1/echo", {"success": True})
    with fake_app.app_context():
        client().call("GET", fake.url, "/api/v1/set", "acme-token")
        client().call("GET", fake.url, "/api/v1/echo", "globex-token")
    echo = fake.requests[-1]
    assert echo.path == "/api/v1/echo" and "Cookie" not in echo.headers


def test_one_pool_per_company_host(app):
    pool = app.extensions["pd_client"].pool
    assert pool.pools._maxsize == 1000 and pool.connection_pool_kw["maxsize"] == 256


def _connection_error(reason: Exception) -> requests.ConnectionError:
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/api/v1/goals", reason))  # type: ignore[arg-type]


def test_never_sent_is_told_by_urllib3s_exception_types():
    unresolved = urllib3.exceptions.NameResolutionError("acme.pipedrive.com", None, socket.gaierror(-2, "no"))  # type: ignore[arg-type]
    assert maybe_sent(_connection_error(unresolved)) is False
    assert maybe_sent(_connection_error(urllib3.exceptions.ConnectTimeoutError("connect timed out"))) is False
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get("http://127.0.0.1:9/", timeout=2)
    assert maybe_sent(refused.value) is False
    # A message that merely mentions a type proves nothing: the request may have left.
    lookalike = urllib3.exceptions.ProtocolError("peer reset after NewConnectionError(...) was logged")
    assert maybe_sent(_connection_error(lookalike)) is True
    assert maybe_sent(requests.ReadTimeout("read timed out")) is True
    # The API client sees urllib3's own exceptions, unwrapped.
    assert maybe_sent(unresolved) is False
    assert maybe_sent(urllib3.exceptions.ReadTimeoutError(None, "/api/v1/goals", "read timed out")) is True  # type: ignore[arg-type]


# -- partner key last use, readiness -------------------------------------------------------------------------
def test_last_use_is_written_only_over_an_older_time(app, installer, make_key):
    installer.install(user_id=2001)
    make_key()
    recent = utcnow() - timedelta(seconds=5)
    with app.app_context():
        with app.extensions["pd_db"]["engine"].begin() as conn:
            conn.execute(update(PartnerKey).values(last_used_at=recent))
        session = get_session()
        key_id = session.scalar(select(PartnerKey.id))
        # A process that noted an older use flushes late: the newer time stays.
        touch_keys(session, {key_id: recent - timedelta(seconds=30)})
        session.commit()
        assert session.scalar(select(PartnerKey.last_used_at)) == recent
        later = utcnow()
        touch_keys(session, {key_id: later})
        session.commit()
        assert session.scalar(select(PartnerKey.last_used_at)) == later


def test_readyz_uses_one_connection(app, client):
    engine = app.extensions["pd_db"]["engine"]
    checkouts = []
    listener = lambda *_args: checkouts.append(1)  # noqa: E731
    event.listen(engine, "checkout", listener)
    try:
        resp = client.get("/readyz")
    finally:
        event.remove(engine, "checkout", listener)
    assert resp.status_code == 200 and resp.get_json()["status"] == "ready"
    assert len(checkouts) == 1


def test_ci_never_skips_the_redis_tests_silently():
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    export = script.index('export CI="${CI:-true}"')
    assert export < next(i for i, line in enumerate(script) if line.strip() == "make test")


def test_install_flow_answers_are_never_cached(app, client, installer):
    # The install redirect, the callback's redirect and its pages carry one person's state and ticket.
    start = client.get("/oauth/install")
    assert start.status_code == 302 and start.headers["Cache-Control"] == "no-store"
    refused = client.get("/oauth/callback?error=access_denied")
    assert refused.headers["Cache-Control"] == "no-store"
    done = installer.callback(installer.consent())
    assert done.status_code == 302 and done.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in done.headers  # PUBLIC_URL is http:// here


def test_hsts_only_when_the_public_url_is_https(clean_db, sandbox_server):
    https_app = create_app(
        environ=app_environ(clean_db, sandbox_server.url, PUBLIC_URL="https://goals.example")
    )
    try:
        for path in ("/", "/healthz", "/api/v1/goals/find", "/oauth/install"):
            resp = https_app.test_client().get(path)
            assert resp.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains", path
    finally:
        close_app(https_app)


@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_an_oversized_notice_is_a_413_envelope_not_a_page(client, method):
    resp = client.open(
        "/oauth/callback",
        method=method,
        data=b"{" + b" " * (3 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json", "Authorization": _basic(CLIENT_ID, CLIENT_SECRET)},
    )
    assert resp.status_code == 413
    assert resp.is_json
    assert resp.get_json()["code"] == "payload_too_large" and resp.get_json()["success"] is False


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("method", "path", "allowed", "json"),
    [
        ("PATCH", "/oauth/callback", {"GET", "POST", "DELETE"}, True),
        ("PATCH", "/api/v1/goals/abc", {"PUT", "DELETE"}, True),
        ("POST", "/api/v1/goals/find", {"GET"}, True),
        ("POST", "/oauth/install", {"GET"}, False),
    ],
)
def test_a_405_names_the_allowed_methods(client, method, path, allowed, json):
    resp = client.open(path, method=method)
    assert resp.status_code == 405
    assert resp.is_json is json
    assert set(resp.headers["Allow"].split(", ")) >= allowed


@pytest.mark.slow
def test_gunicorns_own_refusals_are_envelopes(tmp_path, clean_db, sandbox_server):
    # Answered by gunicorn before the app runs: an over-long request line (414) and oversized headers (431).
    from .procs import GunicornProcess

    server = GunicornProcess(
        tmp_path / "gunicorn.log", app_environ(clean_db, sandbox_server.url), workers=1, threads=2
    )
    try:
        long_line = requests.get(f"{server.url}/api/v1/goals/{'a' * 9000}/results", timeout=10)
        big_header = requests.get(
            f"{server.url}/api/v1/goals/find", headers={"X-Big": "b" * 9000}, timeout=10
        )
        # Just under gunicorn's limit, the app answers for itself: a 5,000-character goal id is its envelope.
        long_id = requests.delete(
            f"{server.url}/api/v1/goals/{'a' * 5000}", headers={"x-api-token": "pdk_nope"}, timeout=10
        )
    finally:
        server.stop()
    for resp, status, code in ((long_line, 414, "uri_too_long"), (big_header, 431, "headers_too_large")):
        assert resp.status_code == status
        assert resp.headers["Content-Type"] == "application/json"
        body = resp.json()
        assert body["success"] is False and body["code"] == code and body["error_info"]
        assert body["errorCode"] == status
    assert long_id.status_code == 401 and long_id.json()["code"] == "unauthorized"
