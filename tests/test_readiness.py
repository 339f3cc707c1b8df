"""/readyz: ready is the database's word (reachable, migrations at head); Redis, when configured, is reported
beside it to the operator and never makes the app not ready, since the app serves without it (each process on
its own). Not ready is a 503 with Retry-After, like the app's other 503s. The same under real faults and load:
tests/test_faults.py."""

from __future__ import annotations

import os

import pytest
import redis

from pd_app import create_app

from .conftest import app_environ, close_app
from .services import free_port

REDIS_TEST_URL = os.environ.get("PD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_answers() -> bool:
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture
def make(clean_db, sandbox_server):
    apps = []

    def make(**extra: str):
        app = create_app(environ=app_environ(clean_db, sandbox_server.url, **extra))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        close_app(app)


def test_without_redis_url_there_is_no_redis_check(make):
    ready = make().get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


def test_redis_unreachable_is_degraded_not_unready(make):
    client = make(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", GOALS_CACHE_TTL="30")
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "Retry-After" not in ready.headers
    body = ready.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "ok"
    assert body["checks"]["redis"].startswith("degraded: unreachable (ConnectionError)"), body
    assert "per process" in body["checks"]["redis"]


def test_the_redis_detail_is_for_the_operator_only(make):
    client = make(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", METRICS_TOKEN="m" * 40)
    assert client.get("/readyz").get_json() == {"status": "ready"}
    operator = client.get("/readyz", headers={"Authorization": "Bearer " + "m" * 40}).get_json()
    assert operator["checks"]["redis"].startswith("degraded")


def test_redis_answering_is_ok(make):
    if not redis_answers():
        # CI has Redis and must test with it: there a missing server fails instead of skipping.
        if os.environ.get("CI"):
            pytest.fail(f"no Redis at {REDIS_TEST_URL}", pytrace=False)
        pytest.skip(f"no Redis at {REDIS_TEST_URL}")
    # Also with both caches off: the check does not depend on them.
    client = make(REDIS_URL=REDIS_TEST_URL, GOALS_CACHE_TTL="0", REFERENCE_CACHE_TTL="0")
    assert client.get("/readyz").get_json()["checks"]["redis"] == "ok"


def test_database_unreachable_is_503_with_retry_after(make, tmp_path):
    client = make(DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    body = ready.get_json()
    assert body["status"] == "not ready" and body["checks"]["database"] == "unreachable: OperationalError"
