"""The fault scenarios, shared by tests/test_faults.py (which asserts on them) and bench/faults.py (which
prints their figures): each starts the app under real gunicorn against the sandbox, puts it under a steady
load (tests/steady.py), makes one fault and repairs it, and returns what happened, request by request.

- Redis stopped and started again (a private redis-server, tests/services.py);
- PostgreSQL restarted (a private cluster);
- SIGTERM to gunicorn's master while requests are in flight (slow Pipedrive answers);
- SIGKILL of the worker in the middle of an install (OAuth callback) and in the middle of a token refresh.

Nothing here asserts what the app must do: a scenario records, the test decides.
"""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
import requests
from sqlalchemy import func, select

from pd_app.db import get_session
from pd_app.migrate import upgrade
from pd_app.models import Installation, OAuthState

from .conftest import PUBLIC_URL, app_environ
from .procs import AppDatabase, GunicornProcess, Proc, SandboxProcess, pid_serving, wait_until
from .services import PostgresServer, RedisServer
from .steady import Request, Shot, SteadyLoad, Tally, rotate

COMPANY, USER = 1001, 2001
FIND = "/api/v1/goals/find"
GOALS = "/api/v1/goals"
_runs = itertools.count(1)


# -- what a scenario returns -------------------------------------------------------------------------------
@dataclass
class Report:
    """One scenario's run: every request of the load, the moments that matter (time.monotonic()), and what
    the scenario observed besides (readiness answers, worker pids, rows, counts)."""

    name: str
    tally: Tally
    marks: dict[str, float] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)
    app_log: str = ""


# -- the rig: the sandbox, a database, gunicorn --------------------------------------------------------------
@dataclass
class Rig:
    """What every scenario needs: the sandbox (a process of its own), a directory for logs, the app's usual
    database, and the processes to stop at the end."""

    pd: SandboxProcess
    logs: Path
    database_url: str
    started: list[Any] = field(default_factory=list)

    def environ(self, database_url: str | None = None, **extra: str) -> dict[str, str]:
        # No cap of the app's own and a sandbox budget the load cannot spend: the faults are the subject.
        env = {"COMPANY_DAILY_TOKEN_CAP": "0", "KEY_RATE_LIMIT": "100000/minute", **extra}
        return app_environ(database_url or self.database_url, self.pd.url, **env)

    def installed(self, environ: dict[str, str], user_id: int = USER) -> tuple[AppDatabase, str, dict]:
        """An installation of (COMPANY, user_id) stored the way an install stores it, and a key it serves."""
        db = AppDatabase(environ)
        self.started.append(db)
        grant = self.pd.install(COMPANY, user_id)
        db.install(grant, COMPANY, user_id)
        return db, db.create_key(COMPANY, user_id), grant

    def serve(self, environ: dict[str, str], workers: int = 2, threads: int = 8) -> GunicornProcess:
        proc = GunicornProcess(
            self.logs / f"gunicorn-{next(_runs)}.log", environ, workers=workers, threads=threads
        )
        self.started.append(proc)
        return proc

    def worker(self, environ: dict[str, str]) -> Proc:
        """`flask --app app worker` (the job queue's consumer), as the Procfile would run it."""
        flask = str(Path(sys.executable).parent / "flask")
        argv = [flask, "--app", "app", "worker", "--threads", "1"]
        proc = Proc(argv, {**environ, "PYTHONUNBUFFERED": "1"}, self.logs / f"worker-{next(_runs)}.log")
        self.started.append(proc)
        return proc

    def reset_sandbox(self) -> None:
        self.pd.reset()
        self.pd.knobs(daily_budget=10**9)

    def close(self) -> None:
        for thing in reversed(self.started):
            if isinstance(thing, AppDatabase):
                thing.close()
            elif isinstance(thing, GunicornProcess):
                thing.stop()
            else:
                thing.stop(signal.SIGTERM)  # the job worker: its graceful stop
        self.started.clear()


# -- requests of the load ----------------------------------------------------------------------------------
def find(key: str, titles: int | None = None) -> Callable[[int], Request]:
    """GET find: `titles` distinct queries in turn (cache hits and shared calls), or a new one each time."""

    def build(i: int) -> Request:
        title = f"t{i % titles}" if titles else f"fault-read-{i}"
        return "GET", f"{FIND}?title={title}", {"headers": {"x-api-token": key}}

    return build


def add_title(i: int) -> str:
    return f"fault-add-{i}"


def add(key: str) -> Callable[[int], Request]:
    """POST a goal whose title names the request, so the sandbox's goals say which adds were made."""

    def build(i: int) -> Request:
        body = {
            "title": add_title(i),
            "assignee": {"id": USER, "type": "person"},
            "type": {"name": "deals_won", "params": {"pipeline_id": None}},
            "expected_outcome": {"target": 20, "tracking_metric": "quantity"},
            "duration": {"start": "2026-11-01", "end": None},
            "interval": "monthly",
        }
        return "POST", GOALS, {"headers": {"x-api-token": key}, "json": body}

    return build


def readyz(_i: int) -> Request:
    return "GET", "/readyz", {}


def healthz(_i: int) -> Request:
    return "GET", "/healthz", {}


def sandbox_goal_titles(pd: SandboxProcess, access_token: str) -> set[str]:
    """The titles of every goal the sandbox holds for the installation (asked of the sandbox directly)."""
    resp = requests.get(pd.url + FIND, headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return {g["title"] for g in resp.json()["data"]["goals"]}


def add_titles(tally: Tally, predicate: Callable[[Shot], bool] = lambda s: True) -> set[str]:
    """The titles of the adds among `tally`'s shots that satisfy `predicate`."""
    return {add_title(s.index) for s in tally.shots if s.label == "add" and predicate(s)}


def _operator_readyz(url: str) -> tuple[int, dict]:
    try:
        resp = requests.get(url + "/readyz", timeout=5)
    except requests.RequestException as exc:
        return 0, {"error": repr(exc)}
    return resp.status_code, resp.json()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # the load runs meanwhile: this is the fault's (or the calm's) duration


@contextmanager
def _loaded(load: SteadyLoad) -> Iterator[SteadyLoad]:
    load.start()
    try:
        yield load
    finally:
        load.stop()


# -- Redis stopped and started again -------------------------------------------------------------------------
def redis_restart(
    rig: Rig, server: RedisServer, down_s: float = 4.0, calm_s: float = 2.0, pause: bool = False
) -> Report:
    """Goals reads through the cache (30 s, a few queries in turn) and adds, with Redis shared by two workers;
    Redis is killed (SIGKILL, no persistence: it comes back empty) and started again on the same port, or,
    with `pause`, stopped with SIGSTOP and continued (it hangs: connections neither answer nor close)."""
    rig.reset_sandbox()
    shared = redis.Redis.from_url(server.url(0), socket_timeout=2)
    shared.flushdb()
    environ = rig.environ(REDIS_URL=server.url(0), GOALS_CACHE_TTL="30")
    db, key, grant = rig.installed(environ)
    app = rig.serve(environ)
    workers = app.worker_pids()
    # The job worker too: its queue is in Redis.
    worker = rig.worker(environ)
    report = Report("redis-pause" if pause else "redis", Tally())
    make = rotate([("find", find(key, 5)), ("find", find(key, 5)), ("add", add(key))])
    load = SteadyLoad(app.url, make, rate=15, threads=4)
    readiness: list[tuple[float, int, str]] = []

    def probe() -> str:
        status, body = _operator_readyz(app.url)
        state = body.get("checks", {}).get("redis", "?")
        readiness.append((time.monotonic(), status, state))
        return state

    try:
        with _loaded(load):
            _sleep(calm_s)
            report.seen["redis_before"] = probe()
            report.marks["down"] = time.monotonic()
            if pause:
                server.pause()
            else:
                server.stop()
            wait_until(lambda: probe().startswith("degraded"), 10, 0.2, "/readyz to report Redis degraded")
            report.marks["degraded_reported"] = time.monotonic()
            _sleep(down_s)
            if pause:
                server.resume()
                # A paused Redis comes back with everything it held: emptied, so that what is found in it
                # below was written after it came back (a killed one comes back empty by itself).
                shared.flushdb()
            else:
                server.start()
            report.marks["up"] = time.monotonic()
            wait_until(lambda: probe() == "ok", 10, 0.2, "/readyz to report Redis ok again")
            report.marks["ok_reported"] = time.monotonic()

            # Shared again: cache entries and KEY_RATE_LIMIT counts written to Redis since it came back.
            def shared_again() -> bool:
                return bool(shared.keys("pd_app:goals:*")) and bool(shared.keys("LIMITS*"))

            wait_until(shared_again, 25, 0.2, "the cache and the key limit to use Redis again")
            report.marks["shared_again"] = time.monotonic()
            # The job worker lived through it and takes what is queued now.
            report.seen["worker_alive"] = worker.popen.poll() is None
            jobs = db.app.extensions["pd_jobs"]
            try:
                jobs.enqueue("deliver_now")
                wait_until(lambda: jobs.huey.pending_count() == 0, 15, 0.1, "the worker to take a task")
                report.seen["worker_took_task"] = True
            finally:
                jobs.huey.storage.pool.disconnect()
            _sleep(calm_s)
        report.tally = load.snapshot()
        report.seen["readiness"] = readiness
        report.seen["workers_before"], report.seen["workers_after"] = workers, app.worker_pids()
        report.seen["sandbox_titles"] = sandbox_goal_titles(rig.pd, grant["access_token"])
        report.app_log = app.output()
    finally:
        shared.close()
    return report


# -- PostgreSQL restarted ------------------------------------------------------------------------------------
def postgres_restart(rig: Rig, server: PostgresServer, down_s: float = 3.0, calm_s: float = 2.0) -> Report:
    """Reads and adds (each its own query or title) and /readyz probes, the app's database on a private
    PostgreSQL that is stopped (fast shutdown: every open session ended) and started again."""
    rig.reset_sandbox()
    url = server.create_database(f"pd_app_{next(_runs)}")
    upgrade(url)
    environ = rig.environ(database_url=url, GOALS_CACHE_TTL="0")
    db, key, grant = rig.installed(environ)
    db.close()  # holds no connection across the restart
    rig.started.remove(db)
    app = rig.serve(environ)
    workers = app.worker_pids()
    report = Report("postgres", Tally())
    make = rotate([("find", find(key)), ("add", add(key)), ("readyz", readyz)])
    load = SteadyLoad(app.url, make, rate=15, threads=4)
    probe_http = requests.Session()

    def recovered() -> bool:
        # Several fresh reads in a row: each worker has dropped its stale connections and opened new ones.
        for n in range(6):
            path = f"{FIND}?title=probe-{time.monotonic()}-{n}"
            resp = probe_http.get(app.url + path, headers={"x-api-token": key}, timeout=10)
            if resp.status_code != 200:
                return False
        return True

    try:
        with _loaded(load):
            _sleep(calm_s)
            report.marks["down"] = time.monotonic()
            server.stop()
            wait_until(lambda: _operator_readyz(app.url)[0] == 503, 10, 0.2, "/readyz to say not ready")
            report.seen["readyz_down"] = _operator_readyz(app.url)
            _sleep(down_s)
            report.marks["restarting"] = time.monotonic()
            server.start()
            report.marks["up"] = time.monotonic()
            wait_until(recovered, 30, 0.2, "the app to answer from the database again")
            report.marks["recovered"] = time.monotonic()
            report.seen["readyz_up"] = _operator_readyz(app.url)
            _sleep(calm_s)
        report.tally = load.snapshot()
        report.seen["workers_before"], report.seen["workers_after"] = workers, app.worker_pids()
        report.seen["sandbox_titles"] = sandbox_goal_titles(rig.pd, grant["access_token"])
        report.app_log = app.output()
    finally:
        probe_http.close()
    return report


# -- SIGTERM to the master -----------------------------------------------------------------------------------
def sigterm(rig: Rig, upstream_delay_s: float = 1.5, after_s: float = 4.0) -> Report:
    """Reads and adds while every Pipedrive call takes `upstream_delay_s`, so requests are in flight when
    the master gets SIGTERM (a deploy); the load goes on for `after_s` after it."""
    rig.reset_sandbox()
    environ = rig.environ(GOALS_CACHE_TTL="0")
    _db, key, grant = rig.installed(environ)
    app = rig.serve(environ, workers=2, threads=8)
    report = Report("sigterm", Tally())
    make = rotate([("find", find(key)), ("add", add(key))])
    rig.pd.knobs(api_delay_s=upstream_delay_s)
    load = SteadyLoad(app.url, make, rate=10, threads=8, timeout=40)
    # And new clients all along: each request on a connection of its own (a health check needs no Pipedrive).
    arrivals = SteadyLoad(app.url, rotate([("healthz", healthz)]), rate=10, threads=1, keep_alive=False)
    exited = threading.Event()
    threading.Thread(target=lambda: (app.popen.wait(), exited.set()), daemon=True).start()
    with _loaded(load), _loaded(arrivals):
        _sleep(upstream_delay_s + 1.0)  # the pipeline is full: every thread has a request in flight
        report.marks["term"] = time.monotonic()
        os.kill(app.pid, signal.SIGTERM)
        if exited.wait(after_s):
            report.marks["master_exited"] = time.monotonic()
        _sleep(max(0.0, report.marks["term"] + after_s - time.monotonic()))
        report.marks["load_stopped"] = time.monotonic()
    report.seen["exit_code"] = app.popen.wait(45)  # graceful_timeout (30 s) and then some
    report.marks.setdefault("master_exited", time.monotonic())
    rig.pd.knobs(api_delay_s=0.0)
    report.tally = Tally(load.snapshot().shots + arrivals.snapshot().shots)
    report.seen["sandbox_titles"] = sandbox_goal_titles(rig.pd, grant["access_token"])
    report.app_log = app.output()
    return report


# -- SIGKILL of a worker mid-install -------------------------------------------------------------------------
def consent(app_url: str, pd: SandboxProcess, user_id: int) -> str:
    """/oauth/install on the app, then the sandbox's consent answered for user_id: the callback's path and
    query, as Pipedrive sends the browser back with them."""
    with requests.Session() as browser:
        start = browser.get(app_url + "/oauth/install", allow_redirects=False, timeout=10)
        assert start.status_code == 302, start.text
        authorize = start.headers["Location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        form = {
            "client_id": query["client_id"],
            "redirect_uri": query["redirect_uri"],
            "state": query["state"],
            "user_id": str(user_id),
            "action": "allow",
        }
        answer = browser.post(pd.url + "/oauth/authorize", data=form, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text
        location = answer.headers["Location"]
    assert location.startswith(PUBLIC_URL + "/oauth/callback?")
    return location[len(PUBLIC_URL) :]


class Doomed:
    """One request on a connection of its own, whose serving worker can be found (and killed)."""

    def __init__(self, app: GunicornProcess, path: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(app.url)
        self.app, self.port = app, parts.port
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.conn.connect()
        self.client_port = self.conn.sock.getsockname()[1]
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._send, args=(path, headers or {}), daemon=True)
        self.thread.start()

    def _send(self, path: str, headers: dict[str, str]) -> None:
        try:
            self.conn.request("GET", path, headers=headers)
            self.outcome["status"] = self.conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            self.outcome["error"] = type(exc).__name__

    def kill_worker(self) -> int:
        holder = pid_serving(self.app.worker_pids(), self.port, self.client_port)
        assert holder is not None, f"no worker serves client port {self.client_port}"
        os.kill(holder, signal.SIGKILL)
        self.thread.join(10)
        self.conn.close()
        return holder


def _states(db: AppDatabase) -> int:
    with db.app.app_context():
        return get_session().scalar(select(func.count()).select_from(OAuthState)) or 0


def _installation(db: AppDatabase, user_id: int) -> Installation | None:
    with db.app.app_context():
        session = get_session()
        inst = session.scalar(
            select(Installation).where(Installation.company_id == COMPANY, Installation.user_id == user_id)
        )
        if inst is not None:
            session.expunge(inst)
        return inst


def _grant_of(inst: Installation) -> tuple[Any, ...]:
    """What an install writes: the row's version, its encrypted tokens, status and install time."""
    return (inst.version, inst.access_token_enc, inst.refresh_token_enc, inst.status, inst.installed_at)


def kill_mid_install(rig: Rig, hold_s: float = 4.0) -> Report:
    """An installed user keeps reading through a key while two installs die with their worker: user 2001
    installing again, killed while Pipedrive's token endpoint answers, and a new user (2002), killed while
    /users/me answers (tokens granted, nothing stored yet). Then user 2002 installs again, to the end."""
    rig.reset_sandbox()
    environ = rig.environ(GOALS_CACHE_TTL="0")
    db, key, _grant = rig.installed(environ)
    app = rig.serve(environ)
    report = Report("kill-install", Tally())
    before = _installation(db, USER)
    assert before is not None
    report.seen["before"] = _grant_of(before)
    load = SteadyLoad(app.url, rotate([("find", find(key))]), rate=8, threads=4)
    with _loaded(load):
        _sleep(1.0)
        # 1. Installing again, killed during the code exchange: the state is spent, nothing else written.
        callback = consent(app.url, rig.pd, USER)
        rig.pd.knobs(token_delay_s=hold_s)
        states = _states(db)
        doomed = Doomed(app, callback)
        wait_until(lambda: _states(db) > states, 10, 0.05, "the callback to spend its state")
        _sleep(0.5)  # inside the token request now (the sandbox holds it for hold_s)
        report.marks["kill_exchange"] = time.monotonic()
        report.seen["killed"] = [doomed.kill_worker()]
        report.seen["exchange_doomed"] = doomed.outcome
        rig.pd.knobs(token_delay_s=0.0)
        after = _installation(db, USER)
        assert after is not None
        report.seen["after"] = _grant_of(after)
        again = requests.get(app.url + callback, allow_redirects=False, timeout=10)
        report.seen["same_callback_again"] = again

        # 2. A new user, killed while /users/me answers: Pipedrive granted tokens, the app stored nothing.
        callback = consent(app.url, rig.pd, 2002)
        rig.pd.knobs(api_delay_s=hold_s)
        rig.pd.control("DELETE", "/calls")
        doomed = Doomed(app, callback)

        def exchanged() -> bool:
            return bool(rig.pd.calls("/oauth/token", grant_type="authorization_code", status=200))

        wait_until(exchanged, 10, 0.05, "the code exchange")
        _sleep(0.5)  # inside GET /users/me now
        report.marks["kill_users_me"] = time.monotonic()
        report.seen["killed"].append(doomed.kill_worker())
        report.seen["users_me_doomed"] = doomed.outcome
        rig.pd.knobs(api_delay_s=0.0)
        report.seen["new_user_after_kill"] = _installation(db, 2002)

        # 3. The same user installs again: the next request works.
        wait_until(lambda: len(app.worker_pids()) == 2, 15, 0.1, "gunicorn to replace the workers")
        callback = consent(app.url, rig.pd, 2002)
        report.seen["install_again"] = requests.get(app.url + callback, allow_redirects=False, timeout=20)
        new = _installation(db, 2002)
        report.seen["new_user_installed"] = new.status if new is not None else None
        new_key = db.create_key(COMPANY, 2002)
        report.seen["new_key_find"] = requests.get(
            app.url + FIND, headers={"x-api-token": new_key}, timeout=20
        ).status_code
        _sleep(1.0)
        report.marks["done"] = time.monotonic()
    report.tally = load.snapshot()
    report.app_log = app.output()
    return report


# -- SIGKILL of a worker mid-refresh -------------------------------------------------------------------------
def kill_mid_refresh(rig: Rig, hold_s: float = 4.0, calm_s: float = 1.5) -> Report:
    """Reads through two workers; the access token becomes due, one request takes the refresh lock and waits
    on a slow token endpoint, the load's requests queue behind it on both workers, and that worker is
    killed. (tests/test_stampede.py kills the lock holder without the load around it.)"""
    from .test_stampede import refresh_lock_is_held, refreshes

    rig.reset_sandbox()
    environ = rig.environ(GOALS_CACHE_TTL="0")
    db, key, _grant = rig.installed(environ)
    app = rig.serve(environ)
    inst_id = _installation(db, USER).id  # type: ignore[union-attr]
    report = Report("kill-refresh", Tally())
    make = rotate([("find", find(key))])
    calm = SteadyLoad(app.url, make, rate=8, threads=4)
    with _loaded(calm):
        _sleep(calm_s)
    # The token is due now; the first request to see it (ours, alone) takes the lock and waits on Pipedrive.
    db.make_due(COMPANY, USER)
    rig.pd.expire(COMPANY, USER)
    rig.pd.control("DELETE", "/calls")
    version = _installation(db, USER).version  # type: ignore[union-attr]
    rig.pd.knobs(token_delay_s=hold_s)
    doomed = Doomed(app, f"{FIND}?title=doomed", {"x-api-token": key})
    wait_until(lambda: refresh_lock_is_held(rig.database_url, inst_id), 10, 0.05, "the refresh lock")
    queued = SteadyLoad(app.url, make, rate=8, threads=4)
    with _loaded(queued):
        _sleep(1.0)  # requests of the load wait behind the lock, in the doomed worker and the other
        report.marks["kill"] = time.monotonic()
        report.seen["killed"] = [doomed.kill_worker()]
        report.seen["doomed"] = doomed.outcome
        rig.pd.knobs(token_delay_s=0.0)
        wait_until(lambda: not refresh_lock_is_held(rig.database_url, inst_id), 10, 0.05, "the lock to go")
        wait_until(lambda: len(app.worker_pids()) == 2, 15, 0.1, "gunicorn to replace the worker")
        _sleep(calm_s)
    report.tally = Tally(calm.snapshot().shots + queued.snapshot().shots)
    wait_until(lambda: len(refreshes(rig.pd)) >= 2, 10, 0.1, "the killed worker's refresh to be recorded")
    report.seen["refresh_statuses"] = [c["status"] for c in refreshes(rig.pd)]
    after = _installation(db, USER)
    report.seen["installation"] = (after.status, after.version - version) if after else None
    report.app_log = app.output()
    return report
