"""A Redis that hangs costs each request nothing after the first: the gate (pd_app/proxy/cache.py RedisGate).

A hung Redis (a partition, a paused server) accepts connections and never answers, so every call waits out its
0.5 s timeout. Without the gate a cached read asks Redis twice (the entry, the shared-read lock) on every
request for as long as it hangs; with it, the first failure shuts the gate and
reads go without Redis at once until the pause is over, when one asks again. Counted here in Redis commands
sent, not timed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
import redis

from pd_app import create_app
from pd_app.proxy.cache import GoalsCache, RedisGate, StoreSkipped

from .conftest import Installer, app_environ, close_app
from .test_breaker import Clock

FIND = "/api/v1/goals/find"


class FailingRedis:
    """A client whose every call fails the way a hung server's does, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = True
        self.stored: dict[str, bytes] = {}

    def _call(self, key: str) -> bytes | None:
        self.calls += 1
        if self.failing:
            raise redis.TimeoutError("Timeout reading from socket")
        return self.stored.get(key)

    def get(self, key: str) -> bytes | None:
        return self._call(key)

    def set(self, key: str, value: bytes, ex: int) -> None:
        self._call(key)
        self.stored[key] = value


@pytest.fixture
def gated(tmp_path) -> Iterator[tuple[GoalsCache, FailingRedis, Clock]]:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    clock = Clock()
    client = FailingRedis()
    yield GoalsCache(30, client, engine, gate=RedisGate(5.0, clock)), client, clock
    engine.dispose()


def test_after_a_failure_reads_leave_redis_alone_until_the_pause_is_over(gated):
    cache, client, clock = gated
    with pytest.raises(redis.TimeoutError):  # the first failure is the caller's to log
        cache.get("k")
    assert client.calls == 1
    for _ in range(10):
        with pytest.raises(StoreSkipped):
            cache.get("k")
        with pytest.raises(StoreSkipped):
            cache.put("k", b"v")
    assert client.calls == 1, "Redis was asked while the gate was shut"
    clock.now += 5.0
    with pytest.raises(StoreSkipped):  # asked again, failing still: quiet, and shut for another pause
        cache.get("k")
    assert client.calls == 2
    with pytest.raises(StoreSkipped):
        cache.get("k")
    assert client.calls == 2
    clock.now += 5.0
    client.failing = False
    assert cache.get("k") is None and client.calls == 3
    cache.put("k", b"v")
    assert cache.get("k") == b"v" and client.calls == 5 and not cache.gate.is_shut


# -- through the proxy, against a Redis that hangs -----------------------------------------------------------
@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A port that completes connections (the kernel's backlog) and never answers on them."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def test_reads_against_a_hung_redis_ask_it_once_per_pause(
    clean_db, sandbox_server, sandbox, hung_redis, caplog, monkeypatch
):
    app = create_app(
        environ=app_environ(clean_db, sandbox_server.url, REDIS_URL=hung_redis, GOALS_CACHE_TTL="30")
    )
    try:
        installer = Installer(app.test_client(), sandbox_server.url)
        installer.install(user_id=2001)
        installer.close()
        made = app.test_cli_runner().invoke(args=["keys", "create", "--company-id", "1001", "--name", "g"])
        key = made.stdout.strip().splitlines()[-1]
        # Every command of the client the caches, the shared reads and /readyz use takes a connection from its
        # pool (KEY_RATE_LIMIT has a client of its own, with its own pause: keylimit.py).
        pool = app.extensions["pd_cache_redis"].connection_pool
        commands: list[str] = []
        take = pool.get_connection

        def counted(*args, **kwargs):
            commands.append(str(args[:1]))
            return take(*args, **kwargs)

        monkeypatch.setattr(pool, "get_connection", counted)
        gate = app.extensions["pd_redis_gate"]
        gate.pause_s = 3600.0  # no pause ends during the test: the count does not depend on its speed
        client = app.test_client()
        sandbox.clear_calls()
        commands.clear()
        with caplog.at_level(logging.WARNING, logger="pd_app"):
            answers = [client.get(FIND, headers={"x-api-token": key}) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 6
        assert {a.headers["X-Cache"] for a in answers} == {"MISS"}
        assert sandbox.count(FIND) == 6  # no cache without Redis: each read went to Pipedrive
        assert len(commands) == 1, f"Redis asked {len(commands)} times: {commands}"
        warnings = [r for r in caplog.records if "cache unavailable" in r.getMessage()]
        assert len(warnings) == 1
        # The pause is over: the next read asks again (and, Redis still hanging, goes on without it).
        gate.shut_until = gate.clock() - 1
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
        assert len(commands) == 2
        # /readyz asks Redis itself, whatever the gate says, and tells the operator.
        checks = client.get("/readyz").get_json()["checks"]
        assert checks["redis"].startswith("degraded") and len(commands) == 3
    finally:
        close_app(app)
