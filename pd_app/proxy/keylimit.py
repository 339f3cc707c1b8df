"""KEY_RATE_LIMIT: each credential's own request rate, so that no one partner key can spend its company's
shared Pipedrive budget alone.

Counted with `limits`, the rate-limiting engine of Flask-Limiter (same notation, same storages), after the
credential is verified: a partner key by its id, a panel JWT by company and user. Flask-Limiter's own hooks
run before the view, that is before the credential is known, and cost about 490 Python calls a request
against about 40 for one counter hit here (measured with cProfile on a bare Flask route).

Storage: Redis with REDIS_URL (one count across every process and host, limits' fixed window), else this
process's memory. When Redis stops answering, each process counts on its own and asks Redis again every
REDIS_RETRY_S seconds, so shared counting resumes within that of Redis's return (logged at most once a
minute). The in-memory count is a few lines here rather than limits' MemoryStorage, which starts a
timer thread to expire its keys every 10 ms while requests keep coming: a thread start per request or so.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .. import metrics
from ..auth import CredentialKind, Principal

log = logging.getLogger(__name__)

REDIS_RETRY_S = 10.0  # one failing call per process this often while Redis is away
WARN_EVERY_S = 60.0


class KeyRateLimited(Exception):
    """The credential sent more requests than KEY_RATE_LIMIT allows."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"over {limit}")
        self.message = f"This credential's own request limit ({limit}) was reached."
        self.retry_after = retry_after


class LocalWindows:
    """Fixed-window counts in this process's memory: windows aligned to the epoch, one (window end, count)
    per credential and limit, windows that ended dropped now and then."""

    PRUNE_EVERY = 10_000

    def __init__(self) -> None:
        self._counts: dict[tuple[str, ...], tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._hits = 0

    def hit(self, item: RateLimitItem, *ident: str) -> float | None:
        """Count one hit; None when it fits, else when the window ends (epoch seconds)."""
        length = item.get_expiry()
        now = time.time()
        start = now - now % length
        key = (item.key_for(), *ident)
        end = start + length
        with self._lock:
            ends, count = self._counts.get(key, (end, 0))
            if ends != end:
                count = 0
            if count >= item.amount:
                return end
            self._counts[key] = (end, count + 1)
            self._hits += 1
            if self._hits % self.PRUNE_EVERY == 0:  # each entry knows its own window's end
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
        return None


class KeyLimits:
    def __init__(self, limit: str, redis_url: str | None) -> None:
        self.limit = limit
        self.items: list[RateLimitItem] = parse_many(limit)
        self._local = LocalWindows()
        self._shared = None
        self._redis_errors: tuple[type[Exception], ...] = ()
        if redis_url:
            from redis import RedisError  # only with REDIS_URL: about 20 MB a process that does not need it

            from .cache import REDIS_TIMEOUT_S

            storage = storage_from_string(
                redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
            self._shared = FixedWindowRateLimiter(storage)
            self._redis_errors = (RedisError, OSError)
        self._shared_down_until = 0.0
        self._warned_at = -WARN_EVERY_S
        self._lock = threading.Lock()

    def hit(self, principal: Principal) -> None:
        """Count one request of the credential; KeyRateLimited when it is over any of the limits."""
        if principal.kind is CredentialKind.KEY:
            ident = ("key", str(principal.key_id))
        else:
            ident = ("user", str(principal.company_id), str(principal.user_id))
        ends: list[float] = []
        shared = self._shared if time.monotonic() >= self._shared_down_until else None
        if shared is not None:
            try:
                for item in self.items:
                    if not shared.hit(item, *ident):
                        ends.append(shared.get_window_stats(item, *ident).reset_time)
            except self._redis_errors:
                now = time.monotonic()
                with self._lock:
                    self._shared_down_until = now + REDIS_RETRY_S
                    warn = now - self._warned_at >= WARN_EVERY_S
                    if warn:
                        self._warned_at = now
                if warn:
                    log.warning("REDIS_URL is not answering: KEY_RATE_LIMIT counted per process until it is")
                shared, ends = None, []
        if shared is None:
            ends = [end for item in self.items if (end := self._local.hit(item, *ident)) is not None]
        if ends:
            metrics.refused("key_rate_limit")
            raise KeyRateLimited(self.limit, max(1, int(max(ends) - time.time()) + 1))


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.extensions["pd_key_limits"] = KeyLimits(settings.key_rate_limit, settings.redis_url)


def key_limits() -> KeyLimits:
    return current_app.extensions["pd_key_limits"]
