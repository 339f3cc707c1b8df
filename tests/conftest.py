"""Fixtures: a migrated database (SQLite, or PostgreSQL via TEST_DATABASE_URL), the sandbox over real HTTP,
the app, and helpers that install a Pipedrive user the way a browser would. Any real network access fails."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.fernet import Fernet
from werkzeug.serving import WSGIRequestHandler, make_server

from pd_app import create_app
from pd_app.sandbox import SandboxSettings, create_sandbox_app

from . import logscan
from .procs import SandboxProcess, empty_tables, migrated_database

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"
PUBLIC_URL = "http://app.localhost"
ENCRYPTION_KEY = Fernet.generate_key().decode()
SECRET_KEY = "test-secret-key-0123456789"


# -- no secret in any log line (tests/logscan.py) ------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    logscan.SCAN.install(fixed=(CLIENT_SECRET, ENCRYPTION_KEY, SECRET_KEY))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    scan = logscan.SCAN
    scan.uninstall()
    hits = scan.hits()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    summary = (
        f"log scan: {len(scan.lines)} log records and {len(scan.files)} process outputs searched for "
        f"{len(scan.secrets_made)} secrets made during the run: {len(hits)} hits"
    )
    if reporter is not None:
        reporter.write_line(summary)
        for hit in hits[:20]:
            reporter.write_line("  secret in a log line: " + hit, red=True)
    if hits and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- no real network -------------------------------------------------------------------------------------
class NetworkGuard:
    """Refuses connections to anything but loopback and records who tried."""

    def __init__(self) -> None:
        self.blocked: list[object] = []
        self._connect = socket.socket.connect
        self._getaddrinfo = socket.getaddrinfo

    @staticmethod
    def _local(host: object) -> bool:
        if not isinstance(host, str):
            return False
        if host in {"localhost"} or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def install(self) -> None:
        guard = self

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not guard._local(address[0]):
                guard.blocked.append(address)
                raise ConnectionRefusedError(f"test network guard: {address!r} is not loopback")
            return guard._connect(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            if host is not None and not guard._local(host if isinstance(host, str) else host.decode()):
                guard.blocked.append(host)
                raise socket.gaierror(f"test network guard: {host!r} is not loopback")
            if isinstance(host, str) and host.endswith(".localhost"):
                host = "127.0.0.1"
            return guard._getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]

    def uninstall(self) -> None:
        socket.socket.connect = self._connect  # type: ignore[method-assign]
        socket.getaddrinfo = self._getaddrinfo  # type: ignore[assignment]


@pytest.fixture(scope="session", autouse=True)
def network_guard() -> Iterator[NetworkGuard]:
    guard = NetworkGuard()
    guard.install()
    yield guard
    guard.uninstall()


@pytest.fixture(autouse=True)
def _no_blocked_calls(network_guard: NetworkGuard) -> Iterator[None]:
    network_guard.blocked.clear()
    yield
    assert network_guard.blocked == [], f"a test tried to reach the network: {network_guard.blocked}"


# -- servers -----------------------------------------------------------------------------------------------
class QuerylessRequestHandler(WSGIRequestHandler):
    """Werkzeug's request line without its query string, as gunicorn's access log is configured: the panel's
    URL carries a JWT and the OAuth callback a code (the suite's log scan would report them)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)


class LiveServer:
    def __init__(self, wsgi_app, host: str = "127.0.0.1") -> None:
        self.server = make_server(host, 0, wsgi_app, threaded=True, request_handler=QuerylessRequestHandler)
        self.url = f"http://{host}:{self.server.server_port}"
        # stop() waits for the serving loop to notice, so poll often: the default 0.5 s cost every test that
        # starts a server half a second in teardown.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[LiveServer]:
    # The sandbox learns its own URL only after binding, so bind first and point the settings at it.
    holder: dict[str, object] = {}

    def late_app(environ, start_response):
        return holder["app"](environ, start_response)

    server = LiveServer(late_app)
    holder["app"] = create_sandbox_app(
        SandboxSettings(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[PUBLIC_URL + "/oauth/callback"],
            base_url=server.url,
            jwt_secret=CLIENT_SECRET,
        )
    )
    server.sandbox_app = holder["app"]  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: LiveServer):
    """The sandbox's state, reseeded for each test."""
    state = sandbox_server.sandbox_app.extensions["pd_sandbox"]  # type: ignore[attr-defined]
    state.reset()
    yield state
    state.reset()


# -- database ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_database(os.environ.get("TEST_DATABASE_URL"), tmp_path_factory.mktemp("db"))


@pytest.fixture
def clean_db(database_url: str) -> str:
    empty_tables(database_url)
    return database_url


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """The sandbox as a process of its own (`python -m pd_app.sandbox`), for the tests that start the app
    under gunicorn: one per test module."""
    proc = SandboxProcess(
        tmp_path_factory.mktemp("sandbox") / "sandbox.log",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=PUBLIC_URL + "/oauth/callback",
    )
    yield proc
    proc.stop()


def close_app(app) -> None:
    """What a test's app holds open: its upstream connection pools, its database engine, and (with REDIS_URL)
    its Redis connections."""
    app.extensions["pd_client"].close()
    app.extensions["pd_db"]["engine"].dispose()
    flights = app.extensions.get("pd_flights")
    if flights is not None and flights.redis is not None:
        flights.redis.close()  # the goals cache's client too, when it shares it
    cache = app.extensions.get("pd_goals_cache")
    if cache is not None and cache.redis is not None:
        cache.redis.close()
    jobs = app.extensions.get("pd_jobs")
    if jobs is not None and jobs._huey is not None and hasattr(jobs._huey.storage, "pool"):
        jobs._huey.storage.pool.disconnect()


def app_environ(database_url: str, oauth_url: str, **extra: str) -> dict[str, str]:
    env = {
        "PD_APP_ENV": "test",
        "PUBLIC_URL": PUBLIC_URL,
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "PIPEDRIVE_CLIENT_ID": CLIENT_ID,
        "PIPEDRIVE_CLIENT_SECRET": CLIENT_SECRET,
        "PIPEDRIVE_OAUTH_URL": oauth_url,
        "PIPEDRIVE_API_DOMAINS": oauth_url,
        # Most tests check what reaches Pipedrive on every call; tests/test_cache.py turns the cache on (and
        # tests/test_reference.py the reference cache).
        "GOALS_CACHE_TTL": "0",
        "REFERENCE_CACHE_TTL": "0",
    }
    env.update(extra)
    return env


@pytest.fixture
def app(clean_db: str, sandbox_server: LiveServer, sandbox):
    app = create_app(environ=app_environ(clean_db, sandbox_server.url))
    yield app
    close_app(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# -- acting as a Pipedrive user ------------------------------------------------------------------------------
class Installer:
    """Drives the install the way a browser does: app → sandbox consent → app callback."""

    def __init__(self, client, sandbox_url: str) -> None:
        self.client = client
        self.sandbox_url = sandbox_url
        self.http = requests.Session()

    def consent(self, user_id: int = 2001, allow: bool = True) -> str:
        """Start at /oauth/install and answer the sandbox's consent page; returns where Pipedrive sends the
        browser back to."""
        start = self.client.get("/oauth/install")
        assert start.status_code == 302, start.data
        authorize_url = start.headers["Location"]
        assert authorize_url.startswith(self.sandbox_url + "/oauth/authorize?")
        page = self.http.get(authorize_url, timeout=5)
        assert page.status_code == 200
        return self.answer(authorize_url, user_id=user_id, allow=allow)

    def answer(self, authorize_url: str, *, user_id: int = 2001, allow: bool = True) -> str:
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        form = {
            "client_id": query["client_id"],
            "redirect_uri": query["redirect_uri"],
            "user_id": str(user_id),
            "action": "allow" if allow else "cancel",
        }
        if "state" in query:
            form["state"] = query["state"]
        resp = self.http.post(
            self.sandbox_url + "/oauth/authorize", data=form, allow_redirects=False, timeout=5
        )
        assert resp.status_code == 302, resp.text
        return resp.headers["Location"]

    def callback(self, location: str):
        assert location.startswith(PUBLIC_URL + "/oauth/callback")
        return self.client.get(location[len(PUBLIC_URL) :])

    def install(self, user_id: int = 2001):
        resp = self.callback(self.consent(user_id))
        assert resp.status_code == 302, resp.data
        return resp

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def installer(client, sandbox_server: LiveServer) -> Iterator[Installer]:
    helper = Installer(client, sandbox_server.url)
    yield helper
    helper.close()


@pytest.fixture
def make_key(app):
    """Create a partner key through the real CLI; returns the printed key."""

    def make(company_id: int = 1001, user_id: int | None = None, scope: str = "full") -> str:
        args = ["keys", "create", "--company-id", str(company_id), "--name", "test", "--scope", scope]
        if user_id is not None:
            args += ["--user-id", str(user_id)]
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, result.output
        return result.stdout.strip().splitlines()[-1]

    return make


def store_snapshot(
    app,
    goal_id: str,
    day,
    actual: float,
    target: float,
    *,
    company_id: int = 1001,
    period: tuple | None = None,
) -> None:
    """Store a goal's snapshot for one day, as the worker would have taken it (the same day replaces)."""
    from pd_app.db import get_session
    from pd_app.models import GoalSnapshot

    start, end = period or (day, day)
    with app.app_context():
        session = get_session()
        session.merge(
            GoalSnapshot(
                company_id=company_id,
                goal_id=goal_id,
                day=day,
                actual=actual,
                target=target,
                progress=actual / target if target else None,
                period_start=start,
                period_end=end,
            )
        )
        session.commit()
