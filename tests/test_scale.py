"""The deployment shape, for real: two gunicorn instances with two workers each and one job worker, on one
PostgreSQL database and one Redis, the sandbox as Pipedrive. Each test alternates its requests between the
instances (and so between their workers) and checks that what is shared is shared:

- a write through A is in the next read through B, with the goals cache on;
- KEY_RATE_LIMIT is one count across both; the company's daily cap is one ledger;
- an expired token refreshed by a stampede on both instances is refreshed once;
- identical concurrent reads on both share one upstream call;
- an Idempotency-Key replays, and is seen in progress, across instances;
- a 429 learnt by A is honoured by B without calling Pipedrive;
- an event recorded by an instance is delivered by the job worker, once.

PostgreSQL and Redis are the machine's (PD_TEST_POSTGRES_URL, PD_TEST_SCALE_REDIS_URL): the test makes a
database of its own there and uses a Redis database of its own. Where either is missing (a laptop without
them) the module is skipped; under CI a missing one fails it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from pd_app.config import normalize_database_url
from pd_app.migrate import upgrade
from pd_app.models import BudgetDay, utcnow
from pd_app.sandbox import fingerprint

from .conftest import CLIENT_ID, CLIENT_SECRET, app_environ
from .procs import AppDatabase, GunicornProcess, Proc, SandboxProcess, empty_tables, wait_until

pytestmark = [
    pytest.mark.scale,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to count workers"),
]

POSTGRES_URL = os.environ.get("PD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PD_TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/14")
DATABASE = "pd_app_scale"
ACME, ADA = 1001, 2001
GLOBEX, GIL = 1002, 2101
FIND = "/api/v1/goals/find"
GOALS = "/api/v1/goals"
RATE_LIMIT = 60  # KEY_RATE_LIMIT, per hour: a fixed window no test run is likely to straddle (see below)
CAP = 10_000
GOAL = {
    "title": "Scale",
    "assignee": {"id": ADA, "type": "person"},
    "type": {"name": "deals_won", "params": {"pipeline_id": [1]}},
    "expected_outcome": {"target": 10, "tracking_metric": "quantity"},
    "duration": {"start": "2026-01-01", "end": "2026-12-31"},
    "interval": "monthly",
}


# -- the services --------------------------------------------------------------------------------------------
def _missing() -> str | None:
    """Why PostgreSQL or Redis cannot be used here, or None."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2):
            pass
    except psycopg.Error as exc:
        return f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} is not reachable: {exc}"
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} is not reachable: {exc}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    """A fresh, migrated PostgreSQL database of the module's own, and its Redis database."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the scale tests: {missing}")
        pytest.skip(f"the scale tests need PostgreSQL and Redis: {missing}")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    database_url = normalize_database_url(
        make_url(POSTGRES_URL).set(database=DATABASE).render_as_string(hide_password=False)
    )
    upgrade(database_url)
    yield database_url, REDIS_URL
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


@dataclass
class Deployment:
    pd: SandboxProcess
    db: AppDatabase
    database_url: str
    a: GunicornProcess
    b: GunicornProcess
    worker: Proc
    key: str  # Acme's, scope full
    first_access_token: str
    http: requests.Session = field(default_factory=requests.Session)

    def instances(self) -> tuple[GunicornProcess, GunicornProcess]:
        return self.a, self.b

    def send(self, server: GunicornProcess, method: str, path: str, key: str | None = None, **kw):
        headers = {"x-api-token": key or self.key, **kw.pop("headers", {})}
        return self.http.request(method, server.url + path, headers=headers, timeout=20, **kw)


@pytest.fixture
def deployment(
    services: tuple[str, str], sandbox_process: SandboxProcess, tmp_path: Path
) -> Iterator[Deployment]:
    """Both instances and the worker, started anew for each test on emptied tables and an emptied Redis
    database: no process carries memory of an earlier test (claimed budget, cached keys)."""
    database_url, redis_url = services
    pd = sandbox_process
    empty_tables(database_url)
    redis_client = redis.Redis.from_url(redis_url)
    redis_client.flushdb()
    pd.reset()
    environ = app_environ(
        database_url,
        pd.url,
        REDIS_URL=redis_url,
        GOALS_CACHE_TTL="30",
        KEY_RATE_LIMIT=f"{RATE_LIMIT}/hour",
        COMPANY_DAILY_TOKEN_CAP=str(CAP),
    )
    db = AppDatabase(environ)
    grant = pd.install(ACME, ADA)
    db.install(grant, ACME, ADA)
    key = db.create_key(ACME)
    flask = str(Path(sys.executable).parent / "flask")
    worker = Proc(
        [flask, "--app", "app", "worker", "--threads", "2"],
        {**environ, "PYTHONUNBUFFERED": "1"},
        tmp_path / "worker.log",
    )
    servers: list[GunicornProcess] = []
    try:
        with ThreadPoolExecutor(2) as pool:
            servers = list(
                pool.map(
                    lambda name: GunicornProcess(tmp_path / f"{name}.log", environ, workers=2, threads=8),
                    ("a", "b"),
                )
            )
        a, b = servers
        assert len(a.worker_pids()) == 2 and len(b.worker_pids()) == 2
        yield Deployment(pd, db, database_url, a, b, worker, key, grant["access_token"])
    finally:
        for proc in servers:
            proc.stop()
        worker.stop()
        db.close()
        redis_client.close()


def alternate(dep: Deployment, n: int) -> Iterator[tuple[int, GunicornProcess]]:
    for i in range(n):
        yield i, dep.instances()[i % 2]


def concurrently(calls: list, timeout: float = 30) -> list[requests.Response | Exception]:
    """Run the zero-argument callables at once (released together) and return what each gave."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(10)
        try:
            return call()
        except requests.RequestException as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls, timeout=timeout))


def statuses(answers: list) -> dict[object, int]:
    counts: dict[object, int] = {}
    for answer in answers:
        label = answer.status_code if isinstance(answer, requests.Response) else repr(answer)
        counts[label] = counts.get(label, 0) + 1
    return counts


def finds(dep: Deployment, **query: str) -> list[dict]:
    """The find calls Pipedrive got with exactly this query: the job worker's own snapshot reads, which it
    makes every minute (`is_active=true`), are not the test's."""
    want = {k: [v] for k, v in query.items()}
    return [c for c in dep.pd.calls(FIND) if c["query"] == want]


def sandbox_spent(dep: Deployment, company_id: int) -> int:
    """What Pipedrive itself charged the company today."""
    companies = dep.pd.control("GET", "/state")["companies"]
    return next(c["budget"]["used"] for c in companies if c["id"] == company_id)


def goal_ids(resp: requests.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {g["id"] for g in resp.json()["data"]["goals"] or []}


# -- what a write does to the next read ----------------------------------------------------------------------
def test_a_write_through_one_instance_is_in_the_next_read_through_the_other(deployment: Deployment):
    dep = deployment
    a, b = dep.instances()
    before = dep.send(b, "GET", FIND)
    again = dep.send(b, "GET", FIND)
    assert again.headers["X-Cache"] == "HIT", "the goals cache must be on for this test to mean anything"
    dep.pd.control("DELETE", "/calls")

    added = dep.send(a, "POST", GOALS, json=GOAL)
    assert added.status_code == 200, added.text
    goal_id = added.json()["data"]["goal"]["id"]
    after_add = dep.send(b, "GET", FIND)
    assert after_add.headers["X-Cache"] == "MISS" and goal_ids(after_add) == goal_ids(before) | {goal_id}

    updated = dep.send(b, "PUT", f"{GOALS}/{goal_id}", json={"title": "Scale, renamed"})
    assert updated.status_code == 200, updated.text
    titles = {g["id"]: g["title"] for g in dep.send(a, "GET", FIND).json()["data"]["goals"]}
    assert titles[goal_id] == "Scale, renamed"

    assert dep.send(a, "DELETE", f"{GOALS}/{goal_id}").status_code == 200
    assert goal_ids(dep.send(b, "GET", FIND)) == goal_ids(before)
    # Each write reached Pipedrive once; each read after a write did too (a miss), no more.
    writes = [(c["method"], c["path"]) for c in dep.pd.calls("/api/v1/goals") if c["method"] != "GET"]
    assert writes == [("POST", GOALS), ("PUT", f"{GOALS}/{goal_id}"), ("DELETE", f"{GOALS}/{goal_id}")]
    assert len(finds(dep)) == 3


# -- one count, one ledger -----------------------------------------------------------------------------------
def test_key_rate_limit_is_one_count_across_both_instances(deployment: Deployment):
    dep = deployment
    # The limit is a fixed window of an hour: a run that began in the last seconds of one would be counted
    # in two. Waiting for the next hour then is cheaper than a flaky test.
    now = datetime.now(UTC)
    if now.minute == 59 and now.second > 50:
        time.sleep(61 - now.second)
    answers = [
        dep.send(server, "GET", FIND + "?title=rate") for _i, server in alternate(dep, RATE_LIMIT + 20)
    ]
    codes = [r.status_code for r in answers]
    # Counted per process, each of the four workers would have let up to 60 through: all 80 would pass.
    assert codes == [200] * RATE_LIMIT + [429] * 20, codes
    refused = answers[-1]
    assert refused.json()["code"] == "rate_limited" and int(refused.headers["Retry-After"]) > 0
    # Both instances refuse, and the refusals sent nothing upstream (the 60 reads: one miss, then hits).
    assert {r.url.split("/api")[0] for r in answers[RATE_LIMIT:]} == {dep.a.url, dep.b.url}
    assert len(finds(dep, title="rate")) == 1
    # Another key of the same company has its own count.
    other = dep.db.create_key(ACME)
    assert dep.send(dep.b, "GET", FIND, key=other).status_code == 200


def test_the_company_ledger_is_one_across_both_instances(deployment: Deployment):
    dep = deployment
    a, b = dep.instances()

    def spent(server: GunicornProcess, key: str) -> int:
        resp = dep.send(server, "GET", "/api/v1/app/installation", key=key)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]["budget"]["spent_today"]

    # Reads that skip the cache, alternating between the instances, each charged 20 tokens; the job worker
    # takes its snapshots meanwhile, on the same ledger. Every process settles its claims within a few
    # seconds: then both instances show one total, and it is what Pipedrive itself counted.
    for _i, server in alternate(dep, 6):
        assert dep.send(server, "GET", FIND, headers={"Cache-Control": "no-cache"}).status_code == 200
    assert len(finds(dep)) == 6
    wait_until(
        lambda: spent(a, dep.key) == spent(b, dep.key) == sandbox_spent(dep, ACME) >= 6 * 20,
        15,
        0.5,
        "both instances to show what Pipedrive charged",
    )

    # The cap, with the ledger 100 tokens short of it: five calls of 20 pass, whichever process makes them
    # (these reads, or the worker's snapshots), and then both instances refuse, sending nothing.
    globex = dep.pd.install(GLOBEX, GIL)
    dep.db.install(globex, GLOBEX, GIL)
    globex_key = dep.db.create_key(GLOBEX)
    engine = create_engine(dep.database_url)
    with engine.begin() as conn:
        conn.execute(
            insert(BudgetDay).values(
                company_id=GLOBEX, day=utcnow().date(), spent=CAP - 100, reserved=CAP - 100
            )
        )
    engine.dispose()
    charged_before = sandbox_spent(dep, GLOBEX)
    answers = [
        dep.send(server, "GET", FIND, key=globex_key, headers={"Cache-Control": "no-cache"})
        for _i, server in alternate(dep, 10)
    ]
    codes = [r.status_code for r in answers]
    passed = codes.count(200)
    assert 0 < passed <= 5 and codes == [200] * passed + [429] * (10 - passed), codes
    assert {r.json()["code"] for r in answers[passed:]} == {"budget_exhausted"}
    assert int(answers[-1].headers["Retry-After"]) > 0
    wait_until(
        lambda: spent(a, globex_key) == spent(b, globex_key) == CAP,
        15,
        0.5,
        "both instances to show the cap spent",
    )
    assert sandbox_spent(dep, GLOBEX) - charged_before == 100, "Pipedrive was charged past the cap"


# -- one refresh, one upstream call --------------------------------------------------------------------------
def test_a_refresh_stampede_on_both_instances_refreshes_once(deployment: Deployment):
    dep = deployment
    dep.db.make_due(ACME, ADA)
    dep.pd.expire(ACME, ADA)
    dep.pd.knobs(token_delay_s=1.0)
    dep.pd.control("DELETE", "/calls")
    version = dep.db.installation(ACME, ADA).version
    # Distinct queries (identical ones would share one call), 20 on each instance, all released together.
    calls = [
        (lambda s=server, i=i: dep.send(s, "GET", f"{FIND}?title=stampede-{i}", key=dep.key))
        for i, server in alternate(dep, 40)
    ]
    answers = concurrently(calls)
    assert statuses(answers) == {200: 40}, statuses(answers)
    refreshes = dep.pd.calls("/oauth/token", grant_type="refresh_token")
    assert [c["status"] for c in refreshes] == [200], refreshes
    finds = dep.pd.calls(FIND)
    assert len(finds) == 40
    used = {c["access_token_fp"] for c in finds}
    assert len(used) == 1 and used != {fingerprint(dep.first_access_token)}
    assert dep.db.installation(ACME, ADA).version == version + 1
    logs = dep.a.output() + dep.b.output()
    assert logs.count('"event": "token_refreshed"') == 1


def test_identical_reads_on_both_instances_share_one_upstream_call(deployment: Deployment):
    dep = deployment
    dep.pd.knobs(api_delay_s=1.0)
    dep.pd.control("DELETE", "/calls")
    calls = [
        (lambda s=server: dep.send(s, "GET", f"{FIND}?title=shared")) for _i, server in alternate(dep, 12)
    ]
    answers = concurrently(calls)
    assert statuses(answers) == {200: 12}, statuses(answers)
    assert len({a.content for a in answers}) == 1
    assert len(dep.pd.calls(FIND)) == 1, "Pipedrive was called more than once for one read"


# -- idempotency across instances ----------------------------------------------------------------------------
def claimed(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM idempotency_keys"))
    finally:
        engine.dispose()


def test_an_idempotency_key_replays_and_is_seen_in_progress_across_instances(deployment: Deployment):
    dep = deployment
    a, b = dep.instances()
    dep.pd.knobs(api_delay_s=1.5)
    dep.pd.control("DELETE", "/calls")
    first: dict[str, requests.Response] = {}
    thread = threading.Thread(
        target=lambda: first.update(
            r=dep.send(a, "POST", GOALS, json=GOAL, headers={"Idempotency-Key": "scale-1"})
        )
    )
    thread.start()
    wait_until(lambda: claimed(dep.database_url), 5, 0.02, "A's claim on the key")
    time.sleep(0.3)  # A's request is past its claim and waiting on the slow sandbox
    during = dep.send(b, "POST", GOALS, json=GOAL, headers={"Idempotency-Key": "scale-1"})
    thread.join(20)
    assert during.status_code == 409 and during.json()["code"] == "idempotency_key_in_progress"
    assert during.headers["Retry-After"]
    assert first["r"].status_code == 200, first["r"].text
    dep.pd.knobs(api_delay_s=0.0)
    replay = dep.send(b, "POST", GOALS, json=GOAL, headers={"Idempotency-Key": "scale-1"})
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == first["r"].content
    other = dep.send(
        b, "POST", GOALS, json={**GOAL, "title": "Other"}, headers={"Idempotency-Key": "scale-1"}
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert len(dep.pd.calls(GOALS, method="POST")) == 1


# -- throttling learnt by one, honoured by the other ---------------------------------------------------------
def test_a_429_learnt_by_one_instance_is_honoured_by_the_other(deployment: Deployment):
    dep = deployment
    a, b = dep.instances()
    dep.pd.knobs(force_api_status={"status": 429, "count": 1, "retry_after": 30})
    dep.pd.control("DELETE", "/calls")
    learnt = dep.send(a, "GET", FIND, headers={"Cache-Control": "no-cache"})
    assert learnt.status_code == 429 and learnt.json()["code"] == "rate_limited", learnt.text
    assert len(dep.pd.calls(FIND)) == 1
    # The other instance (and the other worker of A, when the four reads reach it) answers 429 itself,
    # from the throttle stored with the installation: four reads, nothing sent.
    honoured = [
        dep.send(s, "GET", FIND, headers={"Cache-Control": "no-cache"}) for _i, s in alternate(dep, 4)
    ]
    assert [r.status_code for r in honoured] == [429] * 4
    assert all(0 < int(r.headers["Retry-After"]) <= 30 for r in honoured)
    assert len(dep.pd.calls(FIND)) == 1, "a throttled installation's request reached Pipedrive"
    # Writes too: the budget is the company's, whichever instance spends it.
    assert dep.send(b, "POST", GOALS, json=GOAL).status_code == 429
    assert dep.pd.calls(GOALS, method="POST") == []


# -- the job worker ------------------------------------------------------------------------------------------
class Receiver:
    """A webhook receiver: records every POST and answers 204."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.bodies.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_event_recorded_by_an_instance_is_delivered_by_the_worker_once(deployment: Deployment):
    dep = deployment
    a, b = dep.instances()
    receiver = Receiver()
    try:
        events = ["installation.uninstalled"]
        made = dep.send(a, "POST", "/api/v1/app/webhooks", json={"url": receiver.url, "events": events})
        assert made.status_code == 201, made.text
        secret = made.json()["data"]["secret"]
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        notice = {"client_id": CLIENT_ID, "company_id": ACME, "user_id": ADA, "timestamp": "1700000000"}
        gone = dep.http.delete(
            b.url + "/oauth/callback", json=notice, headers={"Authorization": "Basic " + basic}, timeout=10
        )
        assert gone.status_code == 200, gone.text
        wait_until(lambda: receiver.bodies, 20, 0.1, "the worker to deliver the uninstall event")
        time.sleep(1.0)  # a second delivery, if one were coming, would come now
        assert len(receiver.bodies) == 1, receiver.bodies
        headers, body = receiver.bodies[0]
        event = json.loads(body)
        assert event["type"] == "installation.uninstalled"
        assert event["data"] == {"company_id": ACME, "user_id": ADA}
        t, v1 = (part.split("=", 1)[1] for part in headers["Pd-App-Signature"].split(","))
        expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1, expected)
        # And the company's key stops working on both instances: no installation is left.
        refused = [dep.send(s, "GET", FIND) for s in (a, b)]
        assert [(r.status_code, r.json()["code"]) for r in refused] == [(409, "not_installed")] * 2
    finally:
        receiver.stop()
