"""A small, bounded, steady load for the fault tests and bench/faults.py: a few threads, each with its own
keep-alive `requests.Session`, sending requests at a fixed total rate while a fault is made and repaired,
and a record of every request: when it was sent, when it ended, and its status or why there was none.

The rate is an upper bound, not a promise: a thread whose request is slow sends its next one when that one
ends (no burst to catch up), so at most `threads` requests are in flight. With `keep_alive=False` every
request opens a connection of its own (what a load balancer's new clients do). Nothing here asserts: the tests
decide what each fault may do to the figures.
"""

from __future__ import annotations

import errno
import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

# What one request is: method, path (with its query), and keyword arguments for requests (headers, json).
Request = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class Shot:
    """One request of the load and its fate."""

    label: str  # what kind of request (the tests' own name: "find", "add", ...)
    index: int  # the number `make` built it from (an add's title is made from it)
    sent: float  # time.monotonic() when it was sent
    ended: float
    status: int | None = None  # None: no HTTP answer; `error` says why
    code: str | None = None  # the error envelope's code, when there is one
    retry_after: str | None = None
    error: str | None = None  # "refused", "reset", "closed", "timeout" or another short description
    body: Any = None  # the answer's JSON, when it has one

    @property
    def answered(self) -> bool:
        return self.status is not None


def classify(exc: BaseException) -> str:
    """Why a request got no answer, in one word where the cause is one of the usual ones."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or getattr(cur, "errno", None) == errno.ECONNREFUSED:
            return "refused"
        if isinstance(cur, ConnectionResetError) or getattr(cur, "errno", None) == errno.ECONNRESET:
            return "reset"
        if isinstance(cur, http.client.RemoteDisconnected):
            return "closed"  # the server closed the connection without answering
        if isinstance(cur, requests.Timeout | TimeoutError):
            return "timeout"
        todo += [cur.__cause__, cur.__context__, *[a for a in cur.args if isinstance(a, BaseException)]]
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return type(exc).__name__


@dataclass
class Tally:
    """The figures of a set of shots: sent, answered, by status, and what the unanswered met."""

    shots: list[Shot] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.shots)

    @property
    def answered(self) -> int:
        return sum(1 for s in self.shots if s.answered)

    @property
    def by_status(self) -> Counter:
        return Counter(s.status for s in self.shots if s.answered)

    @property
    def unanswered(self) -> Counter:
        return Counter(s.error for s in self.shots if not s.answered)

    def where(self, predicate: Callable[[Shot], bool]) -> Tally:
        return Tally([s for s in self.shots if predicate(s)])

    def sent_between(self, start: float, end: float) -> Tally:
        return self.where(lambda s: start <= s.sent < end)

    def first(self, predicate: Callable[[Shot], bool], after: float = 0.0) -> Shot | None:
        in_order = sorted(self.shots, key=lambda s: s.sent)
        return next((s for s in in_order if s.sent >= after and predicate(s)), None)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        missing = ", ".join(f"{k}: {v}" for k, v in sorted(self.unanswered.items()))
        return f"sent {self.sent}, answered {self.answered} ({statuses})" + (
            f", no answer ({missing})" if missing else ""
        )


class SteadyLoad:
    """`make(i)` builds the i-th request (labelled); `rate` requests per second in all, over `threads`."""

    def __init__(
        self,
        base_url: str,
        make: Callable[[int], tuple[str, Request]],
        *,
        rate: float = 20.0,
        threads: int = 4,
        timeout: float = 40.0,
        keep_alive: bool = True,
    ) -> None:
        self.base_url = base_url
        self.make = make
        self.interval = threads / rate  # each thread's own pace
        self.threads_n = threads
        self.timeout = timeout
        self.keep_alive = keep_alive  # False: every request on a new connection, closed after its answer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._shots: list[Shot] = []
        self._counter = 0
        self._threads: list[threading.Thread] = []
        self.started = 0.0

    def _next_index(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _run(self, offset: float) -> None:
        due = self.started + offset
        with requests.Session() as http:
            while not self._stop.is_set():
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                due = max(due + self.interval, time.monotonic())
                index = self._next_index()
                label, (method, path, kwargs) = self.make(index)
                if self.keep_alive:
                    shot = self._send(http, label, index, method, path, kwargs)
                else:
                    with requests.Session() as fresh:
                        shot = self._send(fresh, label, index, method, path, kwargs)
                with self._lock:
                    self._shots.append(shot)

    def _send(
        self, http: requests.Session, label: str, index: int, method: str, path: str, kwargs: dict
    ) -> Shot:
        sent = time.monotonic()
        try:
            resp = http.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            return Shot(label, index, sent, time.monotonic(), error=classify(exc))
        body = None
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            try:
                body = resp.json()
            except ValueError:
                body = None
        code = body.get("code") if isinstance(body, dict) else None
        return Shot(
            label,
            index,
            sent,
            time.monotonic(),
            resp.status_code,
            code if isinstance(code, str) else None,
            resp.headers.get("Retry-After"),
            body=body,
        )

    def start(self) -> SteadyLoad:
        self.started = time.monotonic()
        for k in range(self.threads_n):
            offset = k * self.interval / self.threads_n  # spread the threads over one interval
            thread = threading.Thread(target=self._run, args=(offset,), daemon=True, name=f"steady-{k}")
            self._threads.append(thread)
            thread.start()
        return self

    def snapshot(self) -> Tally:
        with self._lock:
            return Tally(list(self._shots))

    def stop(self) -> Tally:
        """Stop sending; wait for the requests in flight (each is bounded by `timeout`)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        assert not any(t.is_alive() for t in self._threads), "a load thread did not finish"
        return self.snapshot()

    def __enter__(self) -> SteadyLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)


def rotate(kinds: Iterable[tuple[str, Callable[[int], Request]]]) -> Callable[[int], tuple[str, Request]]:
    """A `make` that cycles through the given kinds of request: the i-th request is kind i mod n."""
    kinds = list(kinds)

    def make(i: int) -> tuple[str, Request]:
        label, build = kinds[i % len(kinds)]
        return label, build(i)

    return make
