"""KEY_RATE_LIMIT: each credential's own request rate, so that no one partner key can spend its company's
shared Pipedrive budget alone.

Counted with `limits`, the rate-limiting engine of Flask-Limiter (same notation, same storages), after the
credential is verified: a partner key by its id, a panel JWT by company and user. Flask-Limiter's own hooks
run before the view, that is before the credential is known, and cost about 490 Python calls a request
against about 40 for one counter hit here (measured with cProfile on a bare Flask route).

Storage: Redis with REDIS_URL (one count across every process and host), else this process's memory. When
Redis stops answering, each process counts on its own until it answers again (logged once a minute).
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .. import metrics
from ..auth import CredentialKind, Principal

log = logging.getLogger(__name__)

REDIS_RETRY_S = 60.0


class KeyRateLimited(Exception):
    """The credential sent more requests than KEY_RATE_LIMIT allows."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"over {limit}")
        self.message = f"This credential's own request limit ({limit}) was reached."
        self.retry_after = retry_after


class KeyLimits:
    def __init__(self, limit: str, redis_url: str | None) -> None:
        self.limit = limit
        self.items: list[RateLimitItem] = parse_many(limit)
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._shared = None
        self._redis_errors: tuple[type[Exception], ...] = ()
        if redis_url:
            from redis import RedisError  # only with REDIS_URL: about 20 MB a process that does not need it

            self._shared = FixedWindowRateLimiter(storage_from_string(redis_url, socket_timeout=0.5))
            self._redis_errors = (RedisError, OSError)
        self._shared_down_until = 0.0
        self._lock = threading.Lock()

    def _strategy(self) -> FixedWindowRateLimiter:
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            return self._shared
        return self._local

    def hit(self, principal: Principal) -> None:
        """Count one request of the credential; KeyRateLimited when it is over any of the limits."""
        if principal.kind is CredentialKind.KEY:
            ident = ("key", str(principal.key_id))
        else:
            ident = ("user", str(principal.company_id), str(principal.user_id))
        strategy = self._strategy()
        try:
            over = [item for item in self.items if not strategy.hit(item, *ident)]
        except self._redis_errors:
            with self._lock:
                self._shared_down_until = time.monotonic() + REDIS_RETRY_S
            log.warning("REDIS_URL is not answering: counting KEY_RATE_LIMIT per process for a minute")
            strategy = self._local
            over = [item for item in self.items if not strategy.hit(item, *ident)]
        if over:
            reset = max(strategy.get_window_stats(item, *ident).reset_time for item in over)
            metrics.refused("key_rate_limit")
            raise KeyRateLimited(self.limit, max(1, int(reset - time.time()) + 1))


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.extensions["pd_key_limits"] = KeyLimits(settings.key_rate_limit, settings.redis_url)


def key_limits() -> KeyLimits:
    return current_app.extensions["pd_key_limits"]
