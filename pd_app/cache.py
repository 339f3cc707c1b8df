"""Short-lived cache of goals reads (GOALS_CACHE_TTL seconds), invalidated per company by writes.

Each company has a generation number; a cached read is filed under the generation current when it was made,
and a write through the proxy bumps the generation, so the company's next read from any process misses.
With REDIS_URL the entries and generations live in Redis and are shared by every host. Without it the
generation lives in the database (shared by every process on any host) and entries stay in each process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

import redis
from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import CacheGeneration

LOCAL_MAX_ENTRIES = 5000


def _key(
    company_id: int, installation_id: int, generation: int, path: str, params: list[tuple[str, str]]
) -> str:
    digest = hashlib.sha256(json.dumps([path, params]).encode()).hexdigest()[:32]
    return f"pd_app:goals:{company_id}:{generation}:{installation_id}:{digest}"


class GoalsCache:
    def __init__(self, ttl: int, redis_url: str | None) -> None:
        self.ttl = ttl
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=0.5) if redis_url and ttl else None
        self._local: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    # -- generations --------------------------------------------------------------------------------------
    def generation(self, session: Session, company_id: int) -> int:
        if self.redis is not None:
            return int(self.redis.get(f"pd_app:goals:gen:{company_id}") or 0)
        value = session.scalar(
            select(CacheGeneration.generation).where(CacheGeneration.company_id == company_id)
        )
        return value or 0

    def invalidate(self, session: Session, company_id: int) -> None:
        if not self.enabled:
            return
        if self.redis is not None:
            self.redis.incr(f"pd_app:goals:gen:{company_id}")
            return
        bumped = session.execute(
            update(CacheGeneration)
            .where(CacheGeneration.company_id == company_id)
            .values(generation=CacheGeneration.generation + 1)
        )
        if bumped.rowcount == 0:
            session.add(CacheGeneration(company_id=company_id, generation=1))
            try:
                session.commit()
                return
            except IntegrityError:  # another process created it first: bump theirs
                session.rollback()
                session.execute(
                    update(CacheGeneration)
                    .where(CacheGeneration.company_id == company_id)
                    .values(generation=CacheGeneration.generation + 1)
                )
        session.commit()

    # -- entries ----------------------------------------------------------------------------------------
    def get(self, key: str) -> Any | None:
        if self.redis is not None:
            raw = self.redis.get(key)
            return json.loads(raw) if raw is not None else None
        with self._lock:
            hit = self._local.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._local[key]
                return None
            self._local.move_to_end(key)
            return hit[1]

    def put(self, key: str, body: Any) -> None:
        if self.redis is not None:
            self.redis.set(key, json.dumps(body), ex=self.ttl)
            return
        with self._lock:
            self._local[key] = (time.monotonic() + self.ttl, body)
            self._local.move_to_end(key)
            while len(self._local) > LOCAL_MAX_ENTRIES:
                self._local.popitem(last=False)

    def key_for(
        self,
        session: Session,
        company_id: int,
        installation_id: int,
        path: str,
        params: list[tuple[str, str]],
    ) -> str:
        return _key(company_id, installation_id, self.generation(session, company_id), path, params)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.extensions["pd_goals_cache"] = GoalsCache(settings.goals_cache_ttl, settings.redis_url)


def goals_cache() -> GoalsCache:
    return current_app.extensions["pd_goals_cache"]
