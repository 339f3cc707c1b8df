"""Background jobs on Huey: the queue, the periodic tasks, and `flask --app app worker`.

The queue is a SQLite file in the instance folder by default (like the app's own database) and Redis when
REDIS_URL is set, so any number of workers on any number of hosts share it. Tasks are registered on each
app's Huey object under fixed names and run inside that app's context; a periodic task holds a Huey lock
while it runs, so two workers never run the same one at once.

What runs when (each also runs from the CLI in the foreground):
- `keep_alive`, hourly at :07: refresh every installation whose refresh token would otherwise lapse
  (`tokens refresh-due`);
- `snapshots`, every minute: a progress snapshot of each goal whose last one is SNAPSHOT_EVERY old
  (`snapshots take`; jobs/snapshots.py);
- `deliveries`, every minute, and at once after events are recorded: webhook deliveries that are due
  (`webhooks deliver`; webhooks/delivery.py).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask, current_app

log = logging.getLogger(__name__)

KEEP_ALIVE_DAYS = 30
LOCK_TTL_S = 30 * 60  # longer than a run of a periodic task is expected to take


class Jobs:
    """The app's Huey object and its tasks, by name. Built on first use: importing Huey imports the Redis
    client (about 20 MB a web worker would otherwise carry without needing it)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.tasks: dict[str, Any] = {}
        self._huey: Any = None
        self._registrars: list[Callable[[Jobs], None]] = [_register_keep_alive]
        self._lock = threading.Lock()

    def on_build(self, registrar: Callable[[Jobs], None]) -> None:
        """Have `registrar(jobs)` register its tasks when the queue is built (modules with tasks call this
        from their init_app)."""
        self._registrars.append(registrar)

    @property
    def huey(self) -> Any:
        if self._huey is None:
            with self._lock:
                if self._huey is None:
                    self._huey = self._build()
        return self._huey

    def _build(self) -> Any:
        from huey import RedisHuey, SqliteHuey

        settings = self.app.config["SETTINGS"]
        if settings.redis_url:
            from redis import ConnectionPool

            # A web process queues a task inside a request (webhooks' deliver_now, best effort): a Redis that
            # is away costs that request at most a second. The consumer's blocking pop waits 1 s at a time,
            # well within the 5 s read timeout.
            pool = ConnectionPool.from_url(settings.redis_url, socket_connect_timeout=1.0, socket_timeout=5.0)
            huey = RedisHuey("pd_app", connection_pool=pool)
        else:
            huey = SqliteHuey("pd_app", filename=settings.queue_path)
        self._huey = huey
        for registrar in self._registrars:
            registrar(self)
        return huey

    def _in_app(self, name: str, fn: Callable[..., Any], locked: bool) -> Callable[..., Any]:
        app, huey = self.app, self._huey

        def run(*args: Any) -> Any:
            with app.app_context():
                if not locked:
                    return fn(*args)
                # Another worker already runs it: this turn is skipped, the next one comes round anyway.
                token = _acquire(huey, name)
                if token is None:
                    log.info("periodic task %s is running on another worker; skipped", name)
                    return None
                try:
                    return fn(*args)
                finally:
                    _release(huey, name, token)

        run.__name__ = name
        return run

    def periodic(self, name: str, schedule: Any, fn: Callable[[], Any]) -> None:
        self.tasks[name] = self._huey.periodic_task(schedule, name=name)(self._in_app(name, fn, locked=True))

    def task(self, name: str, fn: Callable[..., Any], **options: Any) -> Any:
        self.tasks[name] = self._huey.task(name=name, **options)(self._in_app(name, fn, locked=False))
        return self.tasks[name]

    def enqueue(self, name: str, *args: Any) -> None:
        """Queue a task by name (building the queue if this process has not yet)."""
        huey = self.huey  # built on first use, which registers the tasks
        huey.enqueue(self.tasks[name].s(*args))

    def consumer(self, workers: int) -> Any:
        # SIGTERM (what a platform sends to stop a process) is a graceful stop: running tasks finish, queued
        # ones stay in the queue for the next worker. SIGINT stops at once.
        return self.huey.create_consumer(
            workers=workers, worker_type="thread", periodic=True, graceful_signal="TERM", flush_locks=False
        )


def _lock_key(name: str) -> str:
    return f"pd_app.periodic-lock.{name}"


def _acquire(huey: Any, name: str) -> str | None:
    """Take the task's lock, shared by every worker through the queue's store; returns its token, or None
    when another worker holds it. The lock holds its token and the time it was taken: one older than
    LOCK_TTL_S is taken over, so a worker killed while holding it (SIGKILL, out of memory) does not stop the
    task for good. (Huey's own lock_task cannot expire on its SQLite store, and on Redis needs 7.4.)"""
    key, token = _lock_key(name), uuid.uuid4().hex
    if huey.put_if_empty(key, {"token": token, "at": time.time()}):
        return token
    held = huey.get(key, peek=True)
    taken_at = held.get("at") if isinstance(held, dict) else None
    if not isinstance(taken_at, float) or time.time() - taken_at <= LOCK_TTL_S:
        return None
    log.warning("periodic task %s: taking over a lock held for more than %s s", name, LOCK_TTL_S)
    huey.delete(key)
    if not huey.put_if_empty(key, {"token": token, "at": time.time()}):
        return None  # another worker took it over first
    mine = huey.get(key, peek=True)
    return token if isinstance(mine, dict) and mine.get("token") == token else None


def _release(huey: Any, name: str, token: str) -> None:
    """Free the lock if it is still this run's (one that was taken over is the new holder's)."""
    key = _lock_key(name)
    held = huey.get(key, peek=True)
    if isinstance(held, dict) and held.get("token") == token:
        huey.delete(key)


def _register_keep_alive(jobs: Jobs) -> None:
    from huey import crontab

    jobs.periodic("keep_alive", crontab(minute="7"), keep_alive)


def keep_alive() -> None:
    from ..db import get_session
    from ..lifecycle import refresh_due

    outcome = refresh_due(get_session(), timedelta(days=KEEP_ALIVE_DAYS))
    log.info("keep-alive: %s", outcome)


def init_app(app: Flask) -> None:
    from . import snapshots

    app.extensions["pd_jobs"] = Jobs(app)
    snapshots.init_app(app)


def jobs() -> Jobs:
    return current_app.extensions["pd_jobs"]
