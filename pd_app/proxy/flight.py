"""One upstream call for many readers: identical concurrent reads (same installation, same normalized query,
same cache generation) wait for the first one's answer instead of each calling Pipedrive.

Within a process the followers wait on the leader's event and get its outcome, a failure included. With
REDIS_URL, processes and hosts coordinate too: the leader holds a short Redis lock (released only by its
owner) and leaves its outcome under a result key for a few seconds, an answer or Pipedrive's refusal; a
follower elsewhere polls for it. A follower calls Pipedrive itself only when the leader's lock disappears
with no outcome (the leader's process died); a follower that waited as long as a leader may take gets 503.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from ..pipedrive import api
from ..pipedrive.api import PipedriveUnavailable, UpstreamFailed
from .cache import RedisGate

log = logging.getLogger(__name__)

RESULT_MS = 3_000
POLL_S = 0.02
WARN_EVERY_S = 60.0
# Deletes the lock only if it is still ours: a lock that expired may already be another leader's.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

Result = tuple[bytes, int]


class LeaderTooSlow(PipedriveUnavailable):
    """A follower waited as long as a leader may take; it does not call too (that would be the stampede)."""


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: Exception | None = None
    followers: int = 0


class Flights:
    def __init__(
        self, redis_url: str | None, longest_call_s: float, client: Any = None, gate: RedisGate | None = None
    ) -> None:
        # A leader may take a token refresh plus the read's whole deadline; waits and locks outlast that.
        self.wait_s = longest_call_s + 5
        self.lock_ms = int((longest_call_s + 10) * 1000)
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._warned_at = 0.0
        self.redis = None
        self.redis_errors: tuple[type[Exception], ...] = ()
        self.gate = gate or RedisGate()  # the caches' (cache.py): Redis failed moments ago, leave it alone
        if redis_url:
            import redis  # only with REDIS_URL

            from .cache import redis_client

            # The goals cache's client when it has one (one connection pool a process, not two).
            self.redis = client or redis_client(redis_url)
            self.redis_errors = (redis.RedisError,)
            self._release = self.redis.register_script(_RELEASE)

    def run(self, key: str, call: Callable[[], Result]) -> tuple[Result, bool]:
        """`call()`'s result, or the result of the identical call already running; (result, shared)."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            else:
                flight.followers += 1
        assert flight is not None
        if not leader:
            if not flight.done.wait(self.wait_s):
                raise LeaderTooSlow("Pipedrive is answering too slowly right now.", retry_after=5)
            if flight.error is not None:
                raise flight.error
            if flight.result is None:  # the leader was stopped (not a failure of the call): call ourselves
                return call(), False
            return flight.result, True
        try:
            flight.result, shared = self._across_processes(key, call)
            return flight.result, shared
        except Exception as exc:  # shared with the followers; BaseException (a worker's abort) is not
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    # -- across processes (REDIS_URL) --------------------------------------------------------------------
    def _across_processes(self, key: str, call: Callable[[], Result]) -> tuple[Result, bool]:
        if self.redis is None or self.gate.is_shut:
            return call(), False
        lock, answer = f"pd_app:flight:lock:{key}", f"pd_app:flight:result:{key}"
        token = uuid.uuid4().hex
        try:
            while not self.redis.set(lock, token, nx=True, px=self.lock_ms):
                shared = self._wait_for(lock, answer)
                if shared is not None:
                    return shared, True
                # The lock went away with no outcome (its holder died): try to lead in its place.
        except self.redis_errors:
            self.gate.shut()
            self._warn("REDIS_URL is not answering: reads are coalesced within each process only")
            return call(), False
        self.gate.opened()
        outcome = b""
        try:
            result = call()
            outcome = str(result[1]).encode() + b" " + result[0]
            return result, False
        except UpstreamFailed as exc:  # Pipedrive's refusal: the followers get it too, without calling
            refusal = {"type": type(exc).__name__, "message": exc.message, "retry_after": exc.retry_after}
            outcome = b"! " + json.dumps(refusal).encode()
            raise
        finally:
            try:
                pipe = self.redis.pipeline()
                if outcome:
                    pipe.set(answer, outcome, px=RESULT_MS)
                self._release(keys=[lock], args=[token], client=pipe)
                pipe.execute()
            except self.redis_errors:
                self.gate.shut()
                self._warn("could not share a read's outcome through Redis")

    def _wait_for(self, lock: str, answer: str) -> Result | None:
        """The leader's answer; raises its refusal; None when its lock went away with no outcome."""
        assert self.redis is not None
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            pipe = self.redis.pipeline()
            pipe.get(answer)
            pipe.exists(lock)
            found, locked = pipe.execute()
            if found is not None:
                head, _, rest = found.partition(b" ")
                if head == b"!":
                    raise _refusal(json.loads(rest))
                return rest, int(head)
            if not locked:
                return None
            time.sleep(POLL_S)
        raise LeaderTooSlow("Pipedrive is answering too slowly right now.", retry_after=5)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(message, exc_info=True)


def _refusal(data: dict) -> UpstreamFailed:
    """Rebuild the leader's refusal (an UpstreamFailed subclass of pipedrive/api.py) from its record."""
    cls = getattr(api, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, UpstreamFailed)):
        cls = PipedriveUnavailable
    retry_after = data.get("retry_after")
    return cls(data.get("message"), retry_after=retry_after if isinstance(retry_after, int) else None)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    longest = settings.token_timeout + settings.upstream_deadline_s
    cache_client = app.extensions["pd_cache_redis"]  # cache.init_app runs first
    gate = app.extensions["pd_redis_gate"]
    app.extensions["pd_flights"] = Flights(settings.redis_url, longest, cache_client, gate)


def flights() -> Flights:
    return current_app.extensions["pd_flights"]
