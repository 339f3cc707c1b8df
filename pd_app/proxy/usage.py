"""Bookkeeping the proxy's reads would otherwise write on every call: a partner key's last use and the last
rate-limit figures Pipedrive sent for an installation.

A request only notes them in this process's memory (a dict assignment). A daemon thread per process writes
what is pending every `FLUSH_EVERY_S` seconds in one short transaction, so steady-state reads write nothing
and the database sees at most one small write per process per interval, whatever the request rate. Anything
that shows the figures (`/api/v1/app/installation`, `installations list`) flushes this process first.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session

from ..models import Installation, utcnow
from ..pipedrive.api import parse_rate_limit

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 10.0


class UsageRecorder:
    def __init__(self, engine: Engine, every_s: float = FLUSH_EVERY_S) -> None:
        self.engine = engine
        self.every_s = every_s
        self._keys: dict[int, datetime] = {}
        # installation id -> the last upstream answer's headers; parsed only when flushed
        self._rate_limits: dict[int, Any] = {}
        self._guard = threading.Lock()
        self._flushing = threading.Lock()
        self._started = False
        self._hooks_registered = False
        self._stop = threading.Event()
        self._tasks: list[Callable[[], None]] = []  # other flushes on the same thread (the budget ledger)

    def add_task(self, task: Callable[[], None]) -> None:
        self._tasks.append(task)

    # -- on the request path: memory only ----------------------------------------------------------------
    def key_used(self, key_id: int) -> None:
        self._keys[key_id] = utcnow()
        self.ensure_thread()

    def rate_limit_seen(self, installation_id: int, headers: Any) -> None:
        """Remember the headers of the installation's latest answer from Pipedrive (read at flush time)."""
        if "x-ratelimit-remaining" in headers or "x-daily-requests-left" in headers:
            self._rate_limits[installation_id] = headers
            self.ensure_thread()

    def ensure_thread(self) -> None:
        # Started on first use, not at app creation; a process forked after that starts its own (the
        # fork hook below), so the request path checks one attribute, not the process id.
        if self._started:
            return
        with self._guard:
            if self._started:
                return
            self._started = True
            me = weakref.ref(self)
            if not self._hooks_registered:
                self._hooks_registered = True
                atexit.register(_flush_if_alive, me)  # a worker that exits writes what it noted
                os.register_at_fork(after_in_child=lambda: _forked(me))
            threading.Thread(target=_flush_loop, args=(me, self._stop, self.every_s), daemon=True).start()

    # -- off the request path ----------------------------------------------------------------------------
    def pending(self) -> bool:
        return bool(self._keys or self._rate_limits)

    def flush(self) -> None:
        """Write what is pending, then run the other flushes (each keeps what it could not write)."""
        if self._stop.is_set():
            return
        self._flush_usage()
        for task in self._tasks:
            try:
                task()
            except Exception:  # noqa: BLE001 (a failed flush must never take a worker down)
                log.warning("a background flush failed", exc_info=True)

    def _flush_usage(self) -> None:
        """Write what is pending, in one transaction; on failure keep nothing (it is bookkeeping)."""
        from ..auth import touch_keys  # auth notes key use here; the write lives with the keys

        with self._flushing:
            with self._guard:
                # Copies: a request thread may still write to the dict it fetched just before the swap.
                keys, self._keys = dict(self._keys), {}
                figures, self._rate_limits = dict(self._rate_limits), {}
            if not keys and not figures:
                return
            try:
                with Session(self.engine) as session, session.begin():
                    touch_keys(session, keys)
                    at = utcnow().isoformat(timespec="seconds")
                    for installation_id, headers in figures.items():
                        values = parse_rate_limit(headers)
                        if not values:
                            continue
                        session.execute(
                            update(Installation)
                            .where(Installation.id == installation_id)
                            .values(rate_limit=dict(values, at=at))
                            .execution_options(synchronize_session=False)
                        )
            except Exception:  # noqa: BLE001 (a failed flush must never take a worker down)
                log.warning("could not store usage figures", exc_info=True)

    def close(self) -> None:
        self._stop.set()


def _flush_if_alive(ref: weakref.ref[UsageRecorder]) -> None:
    recorder = ref()
    if recorder is not None:
        recorder.flush()


def _forked(ref: weakref.ref[UsageRecorder]) -> None:
    recorder = ref()
    if recorder is not None:  # the flush thread did not come along: the next note starts one here
        recorder._started = False
        recorder._guard = threading.Lock()
        recorder._flushing = threading.Lock()


def _flush_loop(ref: weakref.ref[UsageRecorder], stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        recorder = ref()
        if recorder is None:  # its app is gone
            return
        recorder.flush()
        del recorder


def init_app(app: Flask) -> None:
    engine = app.extensions["pd_db"]["engine"]
    recorder = UsageRecorder(engine)
    # An engine that is disposed (a test's teardown, a shutdown) gets no more flushes: one would open a
    # fresh connection that nobody closes.
    event.listen(engine, "engine_disposed", lambda _engine: recorder.close())
    app.extensions["pd_usage"] = recorder


def usage() -> UsageRecorder:
    return current_app.extensions["pd_usage"]


def usage_of(app: Flask) -> UsageRecorder:
    return app.extensions["pd_usage"]
