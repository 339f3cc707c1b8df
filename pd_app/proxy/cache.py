"""Short-lived caches of proxied reads: goals reads (GOALS_CACHE_TTL seconds), invalidated per company by
writes, and the reference data (REFERENCE_CACHE_TTL seconds: pipelines, stages, activity types, users,
currencies), which goal writes do not touch and which simply expires.

Each company has a generation number; a cached goals read is filed under the generation current when it was
made, and a write through the proxy bumps the generation, so the company's next read from any process misses.
With REDIS_URL the entries and generations live in Redis and are shared by every host. Without it the
generation lives in the database (shared by every process on any host) and entries stay in each process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ..models import CacheGeneration

if TYPE_CHECKING:
    from ..auth import InstallationRef

LOCAL_MAX_ENTRIES = 5000


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
        self, ttl: int, client: Any, engine: Engine, namespace: str = "goals", versioned: bool = True
    ) -> None:
        self.ttl = ttl
        self.engine = engine
        self.namespace = namespace
        self.versioned = versioned
        self.redis = client if ttl else None
        # What a failing store raises: the proxy then answers from Pipedrive instead (forward.py).
        self.errors: tuple[type[Exception], ...] = (SQLAlchemyError,)
        if self.redis is not None:
            import redis

            self.errors = (SQLAlchemyError, redis.RedisError)
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    # -- generations --------------------------------------------------------------------------------------
    def generation(self, inst: InstallationRef) -> int:
        """The company's generation: from Redis, or the one read with the credential (auth.py)."""
        if not self.versioned:
            return 0
        if self.redis is not None:
            return int(self.redis.get(f"pd_app:goals:gen:{inst.company_id}") or 0)
        return inst.generation

    def invalidate(self, company_id: int) -> None:
        """Bump the company's generation, in a transaction of its own (the write's unit of work). Also with
        the cache off: reads share upstream calls by generation (flight.py), and a read that starts after a
        write must not join one that started before it."""
        if self.redis is not None:
            self.redis.incr(f"pd_app:goals:gen:{company_id}")
            return
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
            return self.redis.get(key)
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
            self.redis.set(key, body, ex=self.ttl)
            return
        with self._lock:
            self._local[key] = (time.monotonic() + self.ttl, body)
            self._local.move_to_end(key)
            while len(self._local) > LOCAL_MAX_ENTRIES:
                self._local.popitem(last=False)

    def key_for(self, inst: InstallationRef, path: str, params: list[tuple[str, str]]) -> str:
        return _key(self.namespace, inst.company_id, inst.id, self.generation(inst), path, params)

    def local_key_for(self, inst: InstallationRef, path: str, params: list[tuple[str, str]]) -> str:
        """A read's name without the store (it is down): the generation read with the credential."""
        generation = inst.generation if self.versioned else 0
        return "local:" + _key(self.namespace, inst.company_id, inst.id, generation, path, params)


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
    app.extensions["pd_cache_redis"] = client
    app.extensions["pd_goals_cache"] = GoalsCache(settings.goals_cache_ttl, client, engine)
    # Reference data is per installation too (`/users` marks the caller with `is_you`), and goal writes
    # do not change it: its entries expire, nothing invalidates them.
    app.extensions["pd_reference_cache"] = GoalsCache(
        settings.reference_cache_ttl, client, engine, namespace="reference", versioned=False
    )


def goals_cache() -> GoalsCache:
    return current_app.extensions["pd_goals_cache"]


def reference_cache() -> GoalsCache:
    return current_app.extensions["pd_reference_cache"]
