"""Short-lived caches of proxied reads: goals reads (GOALS_CACHE_TTL seconds), invalidated per company by
writes, and the reference data (REFERENCE_CACHE_TTL seconds: pipelines, stages, activity types, users,
currencies), which goal writes do not touch and which simply expires.

Each company has a generation number in the database, read with the credential in the request's one
statement (auth.py); a cached goals read is filed under the generation current when it was made, and a write
through the proxy bumps it, so the company's next read from any process on any host misses. With REDIS_URL
the entries live in Redis, shared by every host; without it, in each process. The generation stays in the
database with Redis too: a write must reach every reader even when Redis cannot be reached from the writer
(a partition, a hung server), and no read pays a Redis round trip for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ..models import CacheGeneration

if TYPE_CHECKING:
    from ..auth import InstallationRef

log = logging.getLogger(__name__)

LOCAL_MAX_ENTRIES = 5000
# After Redis fails, a process leaves it alone this long before asking again (see RedisGate).
REDIS_PAUSE_S = 5.0


class StoreSkipped(Exception):
    """Redis failed moments ago in this process: not asked this time (the caller goes on without it)."""


class RedisGate:
    """One per process, shared by the caches and the read coalescing (flight.py). A Redis that refuses
    connections costs nothing to ask, but one that hangs (a partition, a paused server) costs each call its
    whole timeout: without the gate a read would wait that out twice (the cache entry, the shared-read lock)
    on every request for as long as it hangs. After a failure the gate is shut for REDIS_PAUSE_S: reads do
    without Redis at once, then the next one asks again. (Writes never need Redis: the generations they
    bump are in the database.)"""

    def __init__(self, pause_s: float = REDIS_PAUSE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.pause_s = pause_s
        self.clock = clock
        self.shut_until = 0.0

    def check(self) -> None:
        if self.is_shut:
            raise StoreSkipped()

    def shut(self) -> bool:
        """Shut the gate after a failure; whether it was open (the first failure of an outage: worth a log
        line, the failures while it is probed again are not)."""
        was_open = not self.shut_until
        self.shut_until = self.clock() + self.pause_s
        return was_open

    def opened(self) -> None:
        if self.shut_until:
            self.shut_until = 0.0
            log.info("Redis answers again")

    @property
    def is_shut(self) -> bool:
        return bool(self.shut_until) and self.clock() < self.shut_until


def _key(
    namespace: str,
    company_id: int,
    installation_id: int,
    generation: int,
    path: str,
    params: list[tuple[str, str]],
) -> str:
    digest = hashlib.sha256(json.dumps([path, params]).encode()).hexdigest()[:32]
    return f"pd_app:{namespace}:{company_id}:{generation}:{installation_id}:{digest}"


class GoalsCache:
    """Cached reads are the exact bytes Pipedrive answered. `namespace` keeps two caches' entries apart;
    a cache that is not `versioned` has no generations (its entries only expire)."""

    def __init__(
        self,
        ttl: int,
        client: Any,
        engine: Engine,
        namespace: str = "goals",
        versioned: bool = True,
        gate: RedisGate | None = None,
    ) -> None:
        self.ttl = ttl
        self.engine = engine
        self.namespace = namespace
        self.versioned = versioned
        self.redis = client if ttl else None
        self.gate = gate or RedisGate()
        # What a failing store raises: the proxy then answers from Pipedrive instead (forward.py).
        self.errors: tuple[type[Exception], ...] = (SQLAlchemyError, StoreSkipped)
        self._redis_errors: tuple[type[Exception], ...] = ()
        if self.redis is not None:
            import redis

            self._redis_errors = (redis.RedisError,)
            self.errors = (SQLAlchemyError, StoreSkipped, redis.RedisError)
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def _redis_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.gate.check()
        try:
            result = fn(*args, **kwargs)
        except self._redis_errors as exc:
            if self.gate.shut():
                raise  # the first failure of an outage: the caller logs it
            raise StoreSkipped() from exc  # still failing: said already
        if self.gate.shut_until:
            self.gate.opened()
        return result

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    # -- generations --------------------------------------------------------------------------------------
    def generation(self, inst: InstallationRef) -> int:
        """The company's generation, as read with the credential (auth.py)."""
        return inst.generation if self.versioned else 0

    def invalidate(self, company_id: int) -> None:
        """Bump the company's generation, in a transaction of its own (the write's unit of work). Also with
        the cache off: reads share upstream calls by generation (flight.py), and a read that starts after a
        write must not join one that started before it."""
        bump = (
            update(CacheGeneration)
            .where(CacheGeneration.company_id == company_id)
            .values(generation=CacheGeneration.generation + 1)
        )
        with Session(self.engine) as session:
            with session.begin():
                if session.execute(bump).rowcount:
                    return
            try:
                with session.begin():
                    session.add(CacheGeneration(company_id=company_id, generation=1))
            except IntegrityError:  # another process created it first: bump theirs
                with session.begin():
                    session.execute(bump)

    # -- entries ----------------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        if self.redis is not None:
            return self._redis_call(self.redis.get, key)
        with self._lock:
            hit = self._local.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._local[key]
                return None
            self._local.move_to_end(key)
            return hit[1]

    def put(self, key: str, body: bytes) -> None:
        if self.redis is not None:
            self._redis_call(self.redis.set, key, body, ex=self.ttl)
            return
        with self._lock:
            self._local[key] = (time.monotonic() + self.ttl, body)
            self._local.move_to_end(key)
            while len(self._local) > LOCAL_MAX_ENTRIES:
                self._local.popitem(last=False)

    def key_for(self, inst: InstallationRef, path: str, params: list[tuple[str, str]]) -> str:
        return _key(self.namespace, inst.company_id, inst.id, self.generation(inst), path, params)


# A request never waits long for Redis: an answer, or a refused or dropped connection, within half a second;
# then the caller goes on without it (each part says how). A Redis that went away and came back is used again
# on the next call: the pool opens a new connection.
REDIS_TIMEOUT_S = 0.5


def redis_client(url: str) -> Any:
    import redis  # only with REDIS_URL: about 20 MB a process that does not need it

    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    engine = app.extensions["pd_db"]["engine"]
    # One client (one connection pool) with REDIS_URL, for both caches, the shared reads (flight.py) and
    # /readyz's check (ops.py).
    client = redis_client(settings.redis_url) if settings.redis_url else None
    gate = RedisGate()
    app.extensions["pd_cache_redis"] = client
    app.extensions["pd_redis_gate"] = gate
    app.extensions["pd_goals_cache"] = GoalsCache(settings.goals_cache_ttl, client, engine, gate=gate)
    # Reference data is per installation too (`/users` marks the caller with `is_you`), and goal writes
    # do not change it: its entries expire, nothing invalidates them.
    app.extensions["pd_reference_cache"] = GoalsCache(
        settings.reference_cache_ttl, client, engine, namespace="reference", versioned=False, gate=gate
    )


def goals_cache() -> GoalsCache:
    return current_app.extensions["pd_goals_cache"]


def reference_cache() -> GoalsCache:
    return current_app.extensions["pd_reference_cache"]
