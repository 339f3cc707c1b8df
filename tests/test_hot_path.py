"""Guards for the proxy's hot path that do not time anything: what one steady-state read may cost in SQL
statements, writes, connections, decryptions and Python function calls, counted, so a regression fails here
deterministically (the timings themselves live in bench/)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.fernet import MultiFernet
from sqlalchemy import Engine, event, update

from pd_app import create_app
from pd_app.auth import create_key
from pd_app.db import get_session
from pd_app.install.identity import Identity
from pd_app.models import Installation, utcnow
from pd_app.tokens.store import save_grant

from .conftest import app_environ, close_app

ROOT = Path(__file__).resolve().parent.parent
FIND = "/api/v1/goals/find"
JWT_SECRET = "hot-path-jwt-secret-0123456789abcdef"
GOALS = b'{"success":true,"data":[{"id":"g1","title":"Won deals"}],"additional_data":{}}'


@dataclass
class Seen:
    statements: list[str] = field(default_factory=list)
    commits: int = 0
    checkouts: int = 0

    @property
    def writes(self) -> list[str]:
        verbs = ("INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "SAVEPOINT")
        return [s for s in self.statements if s.lstrip().upper().startswith(verbs)]


@contextmanager
def counting(engine: Engine) -> Iterator[Seen]:
    seen = Seen()

    def statement(_conn, _cursor, sql, *_args):
        seen.statements.append(sql)

    def commit(_conn):
        seen.commits += 1

    def checkout(*_args):
        seen.checkouts += 1

    listeners = [("before_cursor_execute", statement), ("commit", commit), ("checkout", checkout)]
    for name, fn in listeners:
        event.listen(engine, name, fn)
    try:
        yield seen
    finally:
        for name, fn in listeners:
            event.remove(engine, name, fn)


class Upstream:
    """A Pipedrive stand-in that keeps connections alive (HTTP/1.1, as Pipedrive does; werkzeug's development
    server closes each one), answers every Goals read, and records which TCP connection each came on."""

    def __init__(self) -> None:
        self.client_ports: list[int] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []  # lower-cased names
        recorder, paths, headers = self.client_ports, self.paths, self.headers

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                recorder.append(self.client_address[1])
                paths.append(self.path)
                headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(GOALS)))
                self.send_header("x-ratelimit-remaining", "79")
                self.end_headers()
                self.wfile.write(GOALS)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


def _serve(clean_db: str, upstream: Upstream, api_path: str = "", **env: str):
    """An app whose one installation (company 1001, user 2001) lives at the stand-in; returns (app, key)."""
    api_domain = upstream.url + api_path
    env = {"PIPEDRIVE_JWT_SECRET": JWT_SECRET, **env}
    app = create_app(environ=app_environ(clean_db, api_domain, **env))
    token = {
        "access_token": "a" * 40,
        "refresh_token": "r" * 40,
        "api_domain": api_domain,
        "expires_in": 86400,
        "scope": "base,goals:full",
    }
    with app.app_context():
        save_grant(get_session(), Identity(1001, 2001, "acme", "Acme", "Ada", None, True), token)
        _row, key = create_key(get_session(), company_id=1001, name="guard")
    return app, key


def _panel_jwt() -> str:
    claims = {"companyId": 1001, "userId": 2001, "exp": int(time.time()) + 600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.fixture
def served(clean_db, upstream) -> Iterator[tuple]:
    app, key = _serve(clean_db, upstream)
    yield app, key
    close_app(app)


@pytest.mark.parametrize("credential", ["x-api-token", "bearer-key", "panel-jwt"])
def test_a_steady_state_read_is_one_statement_and_writes_nothing(served, upstream, credential):
    app, key = served
    headers = {
        "x-api-token": {"x-api-token": key},
        "bearer-key": {"Authorization": f"Bearer {key}"},
        "panel-jwt": {"Authorization": f"Bearer {_panel_jwt()}"},
    }[credential]
    client = app.test_client()
    assert client.get(FIND, headers=headers).status_code == 200  # warm: pools, memo, compiled statement
    with counting(app.extensions["pd_db"]["engine"]) as seen:
        resp = client.get(FIND, headers=headers)
    assert resp.status_code == 200 and resp.data == GOALS
    # credential -> installation -> token (and the cache generation) in one SELECT, on one connection
    assert len(seen.statements) == 1 and seen.statements[0].lstrip().startswith("SELECT"), seen.statements
    assert seen.writes == [] and seen.commits == 0
    assert seen.checkouts == 1
    assert len(upstream.client_ports) == 2


def test_a_cache_hit_is_one_statement_and_never_reaches_pipedrive(clean_db, upstream):
    app, key = _serve(clean_db, upstream, GOALS_CACHE_TTL="30")
    client = app.test_client()
    try:
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
        with counting(app.extensions["pd_db"]["engine"]) as seen:
            resp = client.get(FIND, headers={"x-api-token": key})
        assert resp.status_code == 200 and resp.data == GOALS
        assert len(seen.statements) == 1 and seen.writes == [] and seen.checkouts == 1
        assert len(upstream.client_ports) == 1
    finally:
        close_app(app)


def test_sequential_calls_reuse_one_upstream_connection(served, upstream):
    app, key = served
    client = app.test_client()
    for _ in range(20):
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert len(upstream.client_ports) == 20
    assert len(set(upstream.client_ports)) == 1, "each call should reuse the kept-alive connection"
    pool = app.extensions["pd_client"].pool.connection_from_url(upstream.url)
    assert pool.num_connections == 1


def test_an_api_domain_with_a_path_keeps_it(clean_db, upstream):
    """The built-in sandbox's api_domain is `{PUBLIC_URL}/sandbox`: calls go under that path."""
    app, key = _serve(clean_db, upstream, api_path="/sandbox")
    try:
        resp = app.test_client().get(FIND + "?is_active=true", headers={"x-api-token": key})
        assert resp.status_code == 200
        assert upstream.paths == ["/sandbox/api/v1/goals/find?is_active=true"]
    finally:
        close_app(app)


def test_a_steady_state_read_decrypts_nothing_and_reads_no_environment(served, upstream, monkeypatch):
    app, key = served
    client = app.test_client()
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    decrypts: list[int] = []
    real_decrypt = MultiFernet.decrypt
    monkeypatch.setattr(
        MultiFernet, "decrypt", lambda self, *a, **k: decrypts.append(1) or real_decrypt(self, *a, **k)
    )

    def no_proxy_lookup() -> dict:
        raise AssertionError("proxy settings are read once, at start, not per call")

    monkeypatch.setattr("urllib.request.getproxies", no_proxy_lookup)
    for _ in range(5):
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert decrypts == []


def _python_calls(fn) -> int:
    calls = 0

    def profile(_frame, event_name, _arg):
        nonlocal calls
        if event_name in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


# Python and C function calls one steady-state proxied read makes, through Flask's test client (which adds
# its own share). Counted with this test when it was written: 4,774 on the code before the hot-path work
# (two ORM queries, `requests`, a commit), 2,496 after. The ceiling leaves about 20% for small changes; a
# return of per-call ORM queries, `requests`, or environment scans goes through it.
CALL_BUDGET = 3_000


def test_a_steady_state_read_stays_within_its_function_call_budget(served, upstream):
    app, key = served
    client = app.test_client()
    for _ in range(3):
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    calls = _python_calls(lambda: client.get(FIND, headers={"x-api-token": key}))
    assert calls <= CALL_BUDGET, f"{calls} function calls for one proxied read (budget {CALL_BUDGET})"


def _modules_after(code: str, environ: dict[str, str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environ},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_memory_what_a_process_loads_only_when_it_needs_it(clean_db, upstream):
    """Each worker holds its own copy of everything it imports (bench/RESULTS.md: the instance's RSS)."""
    # gunicorn's master imports the package for its logger class: not the application.
    master = _modules_after("import pd_app.gunicorn_logging", {})
    assert not {"flask", "sqlalchemy", "pydantic"} & master
    # A worker that serves proxied reads: no OAuth client, no migrations, no Redis client without REDIS_URL.
    environ = {k: v for k, v in app_environ(clean_db, upstream.url).items() if k != "REDIS_URL"}
    worker = _modules_after("from pd_app import create_app; create_app()", environ)
    assert "flask" in worker and "sqlalchemy" in worker
    assert not {"requests", "authlib", "alembic", "redis"} & worker, sorted(
        {"requests", "authlib", "alembic", "redis"} & worker
    )


def test_a_dropped_database_connection_is_retried_once(served, upstream, monkeypatch):
    """After a database restart the pooled connection fails once: the read is sent again, not failed."""
    from sqlalchemy.exc import OperationalError

    from pd_app import auth

    app, key = served
    real_fetch_calls: list[int] = []
    real_connect = auth.db.read_connection

    def flaky_connection():  # the first checkout hands out a connection the server has dropped
        conn = real_connect()
        if not real_fetch_calls:
            real_fetch_calls.append(1)
            conn.invalidate()  # what SQLAlchemy does when it sees the disconnect
            err = OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
            err.connection_invalidated = True
            conn.close()
            raise err
        return conn

    monkeypatch.setattr(auth.db, "read_connection", flaky_connection)
    resp = app.test_client().get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 200 and real_fetch_calls == [1]


def test_a_database_that_does_not_answer_is_a_503_not_a_500(served, upstream, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from pd_app import auth

    app, key = served

    def down():
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(auth.db, "read_connection", down)
    resp = app.test_client().get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    body = resp.get_json()
    assert body["code"] == "upstream_unavailable" and "database" in body["error"]
    assert upstream.client_ports == []


def test_an_egress_proxy_gets_the_absolute_url_and_its_credentials(clean_db, upstream, monkeypatch):
    proxy = Upstream()  # as a forwarding proxy: it answers for the upstream and keeps what it was sent
    monkeypatch.setenv("HTTP_PROXY", f"http://egress:s%40cret@{proxy.url.removeprefix('http://')}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    app, key = _serve(clean_db, upstream)
    try:
        resp = app.test_client().get(FIND + "?is_active=true", headers={"x-api-token": key})
        assert resp.status_code == 200
        assert proxy.paths == [f"{upstream.url}/api/v1/goals/find?is_active=true"]
        credentials = proxy.headers[0]["proxy-authorization"]
        assert credentials == "Basic " + base64.b64encode(b"egress:s@cret").decode()
        assert upstream.client_ports == []  # the proxy answered; nothing went around it
    finally:
        proxy.stop()
        close_app(app)


def test_the_token_memo_holds_one_token_per_installation_and_follows_the_row(served, upstream):
    """A new ciphertext (a refresh) replaces the remembered token; a ciphertext presented by another row
    identity is decrypted (and refused) again rather than served from memory."""
    from pd_app.auth import InstallationRef
    from pd_app.tokens.cipher import TokenDecryptError, cipher

    app, _key = served
    with app.app_context():
        c = cipher()
        row = InstallationRef(1, 1001, 2001, "active", upstream.url, None, True, None, 1, 0)
        first = c.encrypt(row, "access_token", "first-token")
        second = c.encrypt(row, "access_token", "second-token")
        assert c.decrypt_memo(row, "access_token", first) == "first-token"
        assert c.decrypt_memo(row, "access_token", second) == "second-token"
        assert [p for _, p in c._memo.values()].count("first-token") == 0
        other = InstallationRef(2, 1002, 2101, "active", upstream.url, None, True, None, 1, 0)
        with pytest.raises(TokenDecryptError):
            c.decrypt_memo(other, "access_token", second)


def test_what_a_read_notes_in_memory_reaches_the_database(served, upstream):
    """Key last-use and Pipedrive's rate-limit figures: nothing written by the read, both stored by the
    process's flush thread on its own."""
    from sqlalchemy import select

    from pd_app.models import Installation, PartnerKey

    app, key = served
    recorder = app.extensions["pd_usage"]
    recorder.every_s = 0.05  # the thread, started by the first note, wakes this often
    assert app.test_client().get(FIND, headers={"x-api-token": key}).status_code == 200

    def stored() -> tuple:
        with app.extensions["pd_db"]["engine"].connect() as conn:
            used = conn.scalar(select(PartnerKey.last_used_at))
            figures = conn.scalar(select(Installation.rate_limit))
        return used, figures

    # The two notes are made at different moments of the read (the key's use before the upstream call, the
    # figures after it), so a flush may store one before the other: wait for both.
    deadline = time.monotonic() + 5
    while None in stored() and time.monotonic() < deadline:
        time.sleep(0.05)
    used, figures = stored()
    assert used is not None
    assert figures["ratelimit-remaining"] == 79 and not recorder.pending()


def test_after_a_refresh_the_call_goes_where_the_new_grant_says(clean_db, upstream):
    """A refresh may move the installation to another api_domain (and always bumps its version): the call
    that triggered it must use the row as it is now, not the copy read before."""
    moved = Upstream()
    allowed = f"{upstream.url},{moved.url}"
    app, key = _serve(clean_db, upstream, PIPEDRIVE_API_DOMAINS=allowed)
    with app.extensions["pd_db"]["engine"].begin() as conn:  # the access token is due for a refresh
        conn.execute(update(Installation).values(access_token_expires_at=utcnow() - timedelta(seconds=5)))
    pd_client = app.extensions["pd_client"]
    pd_client.refresh = lambda _refresh_token: {
        "access_token": "b" * 40,
        "refresh_token": "s" * 40,
        "api_domain": moved.url,
        "expires_in": 3600,
    }
    try:
        assert app.test_client().get(FIND, headers={"x-api-token": key}).status_code == 200
        assert upstream.paths == [] and len(moved.paths) == 1
        assert moved.headers[0]["authorization"] == "Bearer " + "b" * 40
    finally:
        moved.stop()
        pd_client.close()
        app.extensions["pd_db"]["engine"].dispose()
