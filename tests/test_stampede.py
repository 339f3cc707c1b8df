"""Single-flight refresh across processes: the app under real gunicorn, the sandbox as a process of its own.

Many requests on several workers find the same access token expired: exactly one refresh reaches Pipedrive,
every request uses its result, nobody gets `invalid_grant` (even when the old refresh token dies on use), and
a worker killed while it holds the refresh lock leaves nothing locked. Run on SQLite, and on PostgreSQL when
TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy.engine import make_url

from pd_app.sandbox import fingerprint

from .conftest import app_environ
from .procs import AppDatabase, GunicornProcess, SandboxProcess, pid_serving, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers"),
]

COMPANY, USER = 1001, 2001
FIND = "/api/v1/goals/find"


# -- fixtures ------------------------------------------------------------------------------------------------
@dataclass
class Stack:
    """The sandbox, the app's database with one installation and a company-wide key, and a way to start
    gunicorn on them."""

    pd: SandboxProcess
    db: AppDatabase
    environ: dict[str, str]
    database_url: str
    key: str
    first_access_token: str
    serve: Callable[..., GunicornProcess]


@pytest.fixture
def stack(clean_db: str, sandbox_process: SandboxProcess, tmp_path: Path) -> Iterator[Stack]:
    pd = sandbox_process
    pd.reset()
    environ = app_environ(clean_db, pd.url, GOALS_CACHE_TTL="0")
    db = AppDatabase(environ)
    grant = pd.install(COMPANY, USER)
    db.install(grant, COMPANY, USER)
    key = db.create_key(COMPANY)
    started: list[GunicornProcess] = []

    def serve(workers: int = 4, threads: int = 16) -> GunicornProcess:
        proc = GunicornProcess(
            tmp_path / f"gunicorn-{len(started)}.log", environ, workers=workers, threads=threads
        )
        started.append(proc)
        return proc

    try:
        yield Stack(pd, db, environ, clean_db, key, grant["access_token"], serve)
    finally:
        for proc in started:
            proc.stop()
        db.close()


# -- helpers -------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: int | None  # None: no HTTP answer (the error says why)
    code: str | None
    started: float
    ended: float
    error: str | None = None


def fire(url: str, key: str, n: int, timeout: float = 20.0) -> list[Outcome]:
    """n concurrent GET /api/v1/goals/find, released together by a barrier, each on its own connection."""
    barrier = threading.Barrier(n)

    def one(i: int) -> Outcome:
        with requests.Session() as http:
            barrier.wait(10)
            started = time.monotonic()
            try:
                # A distinct query each: identical concurrent reads would share one upstream call
                # (proxy/flight.py), and these tests check that every request's own call used a good token.
                query = f"?title=stampede-{i}"
                resp = http.get(url + FIND + query, headers={"x-api-token": key}, timeout=timeout)
            except requests.RequestException as exc:
                return Outcome(None, None, started, time.monotonic(), repr(exc))
            body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else {}
            return Outcome(resp.status_code, body.get("code"), started, time.monotonic(), None)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n), timeout=timeout + 15))


def max_in_flight(outcomes: list[Outcome]) -> int:
    edges = sorted([(o.started, 1) for o in outcomes] + [(o.ended, -1) for o in outcomes])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def summary(outcomes: list[Outcome]) -> dict[object, int]:
    counts: dict[object, int] = {}
    for o in outcomes:
        label = o.status if o.status is not None else o.error
        counts[label] = counts.get(label, 0) + 1
    return counts


def refreshes(pd: SandboxProcess) -> list[dict]:
    return pd.calls("/oauth/token", grant_type="refresh_token")


def assert_one_good_refresh(
    stack: Stack, server: GunicornProcess, outcomes: list[Outcome], version: int
) -> None:
    pd = stack.pd
    assert summary(outcomes) == {200: len(outcomes)}, f"{summary(outcomes)}\n{server.tail()}"
    assert [c["status"] for c in refreshes(pd)] == [200], refreshes(pd)
    assert pd.calls("/oauth/token", status=400) == [], "invalid_grant (or another 400) at the token endpoint"
    finds = pd.calls(FIND)
    assert len(finds) == len(outcomes) and {c["status"] for c in finds} == {200}
    # Every request used the one refreshed token, none the dead one (no upstream 401, no second refresh).
    used = {c["access_token_fp"] for c in finds}
    assert len(used) == 1 and used != {fingerprint(stack.first_access_token)}
    inst = stack.db.installation(COMPANY, USER)
    assert inst.status == "active" and inst.last_refreshed_at is not None
    assert inst.version == version + 1, "the row was written more than once"
    assert server.output().count('"event": "token_refreshed"') == 1


def make_due(stack: Stack) -> int:
    """Expire the access token on both sides (the app's clock and the sandbox's); returns the row version."""
    stack.db.make_due(COMPANY, USER)
    stack.pd.expire(COMPANY, USER)
    stack.pd.control("DELETE", "/calls")
    return stack.db.installation(COMPANY, USER).version


# -- the stampede --------------------------------------------------------------------------------------------
def test_stampede_on_an_expired_token_refreshes_once(stack: Stack):
    server = stack.serve(workers=4, threads=16)
    version = make_due(stack)
    outcomes = fire(server.url, stack.key, 50)
    assert_one_good_refresh(stack, server, outcomes, version)


def test_stampede_with_a_slow_token_endpoint_still_refreshes_once(stack: Stack):
    server = stack.serve(workers=4, threads=16)
    version = make_due(stack)
    stack.pd.knobs(token_delay_s=2.0)
    outcomes = fire(server.url, stack.key, 50)
    assert_one_good_refresh(stack, server, outcomes, version)
    # All 50 were in flight together while the one refresh took its 2 s, and all waited for it.
    assert max_in_flight(outcomes) == 50
    assert min(o.ended - o.started for o in outcomes) >= 1.0


def test_stampede_larger_than_the_connection_pool_on_one_worker(stack: Stack):
    # Production's 64 threads in one worker, all queued on the lock while the refresh takes a second: more
    # than the worker's database pool holds (SQLite 15, PostgreSQL 10). Whoever holds the lock must not
    # need a second connection, or it waits for the pool while the pool waits for the lock.
    server = stack.serve(workers=1, threads=64)
    version = make_due(stack)
    stack.pd.knobs(token_delay_s=1.0)
    outcomes = fire(server.url, stack.key, 64)
    assert_one_good_refresh(stack, server, outcomes, version)
    assert max(o.ended - o.started for o in outcomes) < 10


def test_stampede_with_refresh_token_rotation_loses_nothing(stack: Stack):
    server = stack.serve(workers=4, threads=16)
    version = make_due(stack)
    stack.pd.knobs(rotate_refresh_tokens=True)
    outcomes = fire(server.url, stack.key, 50)
    assert_one_good_refresh(stack, server, outcomes, version)
    # The rotated refresh token was stored: the next expiry is refreshed with it, again exactly once.
    version = make_due(stack)
    outcomes = fire(server.url, stack.key, 20)
    assert summary(outcomes) == {200: 20}
    assert [c["status"] for c in refreshes(stack.pd)] == [200]
    assert stack.db.installation(COMPANY, USER).version == version + 1


# -- many installations refreshing at once in one process ----------------------------------------------------
def test_concurrent_refreshes_of_different_installations_get_their_own_tokens(app, sandbox, monkeypatch):
    grants = {user: sandbox.install(company, user) for company, user in ((1001, 2001), (1002, 2101))}
    # Hold each token response right after Authlib has parsed it (and kept it on its session), until the
    # other thread's has been parsed too: the interleaving in which a session shared by the threads hands
    # each caller the token last stored on it, i.e. one installation's tokens to another.
    barrier = threading.Barrier(len(grants))
    parse = OAuth2Session.parse_response_token

    def parse_then_wait(self, resp):
        token = parse(self, resp)
        try:
            barrier.wait(5)
        except threading.BrokenBarrierError:
            pass
        return token

    monkeypatch.setattr(OAuth2Session, "parse_response_token", parse_then_wait)
    pd_client = app.extensions["pd_client"]
    with ThreadPoolExecutor(len(grants)) as pool:
        answers = dict(
            zip(
                grants,
                pool.map(lambda g: pd_client.refresh(g["refresh_token"]), grants.values()),
                strict=True,
            )
        )
    for user, grant in grants.items():
        assert answers[user]["refresh_token"] == grant["refresh_token"], f"user {user} got another's tokens"
        assert sandbox.authenticate(answers[user]["access_token"]).user_id == user


# -- a worker killed while it holds the refresh lock ---------------------------------------------------------
def refresh_lock_is_held(database_url: str, installation_id: int) -> bool:
    """Whether another writer holds what refresh() locks: SQLite's write lock, or PostgreSQL's row lock."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc) or "busy" in str(exc), exc
            return True
        finally:
            conn.close()
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        try:
            conn.execute("SELECT id FROM installations WHERE id = %s FOR UPDATE NOWAIT", (installation_id,))
            return False
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            conn.rollback()


def test_worker_killed_while_holding_the_refresh_lock_leaves_nothing_locked(stack: Stack):
    server = stack.serve(workers=2, threads=4)
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    inst_id = stack.db.installation(COMPANY, USER).id
    # A first call on the valid token, so the request below writes nothing before it takes the lock.
    assert requests.get(server.url + FIND, headers={"x-api-token": stack.key}, timeout=10).status_code == 200
    version = make_due(stack)
    stack.pd.knobs(token_delay_s=4.0)

    conn = http.client.HTTPConnection(host, port, timeout=15)
    conn.connect()
    client_port = conn.sock.getsockname()[1]
    doomed: dict[str, object] = {}

    def doomed_request() -> None:
        try:
            conn.request("GET", FIND, headers={"x-api-token": stack.key})
            doomed["status"] = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            doomed["error"] = exc

    thread = threading.Thread(target=doomed_request, daemon=True)
    thread.start()
    try:
        # The worker is inside refresh(): lock taken, waiting on the slow token endpoint.
        wait_until(lambda: refresh_lock_is_held(stack.database_url, inst_id), 5, what="the refresh lock")
        time.sleep(0.3)
        assert refresh_lock_is_held(stack.database_url, inst_id)
        workers = server.worker_pids()
        holder = pid_serving(workers, port, client_port)
        assert holder is not None, f"no worker among {workers} serves client port {client_port}"
        os.kill(holder, signal.SIGKILL)
        thread.join(10)
        assert "error" in doomed, f"the killed worker's request was answered: {doomed}"
    finally:
        conn.close()
    stack.pd.knobs(token_delay_s=0.0)

    # The OS released the lock with the process (SQLite) or its connection (PostgreSQL).
    wait_until(lambda: not refresh_lock_is_held(stack.database_url, inst_id), 5, what="the lock to go")
    started = time.monotonic()
    after = requests.get(server.url + FIND, headers={"x-api-token": stack.key}, timeout=15)
    assert after.status_code == 200, after.text
    assert time.monotonic() - started < 10
    outcomes = fire(server.url, stack.key, 10)
    assert summary(outcomes) == {200: 10}, f"{summary(outcomes)}\n{server.tail()}"
    wait_until(lambda: len(server.worker_pids() - {holder}) == 2, 15, what="gunicorn to replace the worker")

    # Two refreshes reached the sandbox: the killed worker's (answered into a closed socket after its 4 s)
    # and the one that served the requests above. Neither was refused; the row was written once.
    wait_until(lambda: len(refreshes(stack.pd)) == 2, 8, what="the killed worker's refresh to be recorded")
    assert [c["status"] for c in refreshes(stack.pd)] == [200, 200]
    assert stack.pd.calls("/oauth/token", status=400) == []
    inst = stack.db.installation(COMPANY, USER)
    assert inst.status == "active" and inst.version == version + 1
    assert server.output().count('"event": "token_refreshed"') == 1


# -- two installations refreshing at once inside one worker ---------------------------------------------
def test_two_companies_refreshing_in_one_worker_do_not_wait_on_each_other(stack):
    """A refresh holds the database's write lock while Pipedrive's token endpoint answers. Another company's
    refresh in the same worker must wait for it without stopping the worker: under an event-loop worker
    model, a writer blocked inside SQLite's busy handler would also stop the first one (until the 30 s busy
    timeout)."""
    pd, db = stack.pd, stack.db
    other = pd.install(1002, 2101)
    db.install(other, 1002, 2101)
    other_key = db.create_key(1002)
    db.make_due(COMPANY, USER)
    db.make_due(1002, 2101)
    pd.knobs(token_delay_s=0.8)
    server = stack.serve(workers=1, threads=8)
    outcomes: dict[str, list[Outcome]] = {}

    def run(name: str, key: str) -> None:
        outcomes[name] = fire(server.url, key, 3, timeout=25.0)

    threads = [
        threading.Thread(target=run, args=(n, k)) for n, k in (("acme", stack.key), ("globex", other_key))
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    took = time.monotonic() - started
    statuses = {name: [o.status for o in runs] for name, runs in outcomes.items()}
    assert statuses == {"acme": [200] * 3, "globex": [200] * 3}, (statuses, outcomes)
    # Two refreshes of 0.8 s each, one after the other at worst: far from SQLite's 30 s busy timeout.
    assert took < 10, f"took {took:.1f} s"
    assert pd.calls("/oauth/token") and len(pd.calls("/oauth/token")) == 2
