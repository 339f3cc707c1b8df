"""One upstream call for many readers: identical concurrent reads (same installation, same normalized query,
same cache generation) wait for the first one's answer instead of each calling Pipedrive.

Within a process the followers wait on the leader's event and get its outcome, an error included. With
REDIS_URL, processes and hosts coordinate too: the leader holds a short Redis lock and leaves its answer
under a result key for a few seconds; a follower elsewhere polls for it, and calls Pipedrive itself only if
the leader's lock disappears without an answer (the leader failed or died) or its wait runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app

log = logging.getLogger(__name__)

WAIT_S = 15.0  # a follower's longest wait: more than one upstream attempt, less than gunicorn's timeout
LOCK_MS = 15_000
RESULT_MS = 3_000
POLL_S = 0.02

Result = tuple[bytes, int]


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None
    followers: int = 0


class Flights:
    def __init__(self, redis_url: str | None) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self.redis = None
        self.redis_errors: tuple[type[Exception], ...] = ()
        if redis_url:
            import redis  # only with REDIS_URL

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=0.5)
            self.redis_errors = (redis.RedisError,)

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
            if flight.done.wait(WAIT_S):
                if flight.error is not None:
                    raise flight.error
                assert flight.result is not None
                return flight.result, True
            return call(), False  # the leader is stuck: do not wait for ever
        try:
            flight.result, shared = self._across_processes(key, call)
            return flight.result, shared
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    # -- across processes (REDIS_URL) --------------------------------------------------------------------
    def _across_processes(self, key: str, call: Callable[[], Result]) -> tuple[Result, bool]:
        if self.redis is None:
            return call(), False
        lock, answer = f"pd_app:flight:lock:{key}", f"pd_app:flight:result:{key}"
        token = str(time.monotonic_ns())
        try:
            if not self.redis.set(lock, token, nx=True, px=LOCK_MS):
                shared = self._wait_for(lock, answer)
                if shared is not None:
                    return shared, True
                # The leader went away without an answer, or took too long: call ourselves.
        except self.redis_errors:
            log.warning("REDIS_URL is not answering: reads are coalesced within each process only")
            return call(), False
        result = call()
        try:
            body, status = result
            pipe = self.redis.pipeline()
            pipe.set(answer, str(status).encode() + b" " + body, px=RESULT_MS)
            pipe.delete(lock)
            pipe.execute()
        except self.redis_errors:
            log.warning("could not share a read's answer through Redis", exc_info=True)
        return result, False

    def _wait_for(self, lock: str, answer: str) -> Result | None:
        deadline = time.monotonic() + WAIT_S
        assert self.redis is not None
        while time.monotonic() < deadline:
            pipe = self.redis.pipeline()
            pipe.get(answer)
            pipe.exists(lock)
            found, locked = pipe.execute()
            if found is not None:
                status, _, body = found.partition(b" ")
                return body, int(status)
            if not locked:
                return None
            time.sleep(POLL_S)
        return None

    def in_flight(self) -> int:
        return len(self._flights)


def init_app(app: Flask) -> None:
    app.extensions["pd_flights"] = Flights(app.config["SETTINGS"].redis_url)


def flights() -> Flights:
    return current_app.extensions["pd_flights"]
