"""Prometheus metrics (GET /metrics).

Two modes, chosen by prometheus_client when it is first imported:

- normal (no PROMETHEUS_MULTIPROC_DIR: the Flask test client, `flask run`): one registry per app, so the many
  apps a test run creates never see each other's figures;
- multiprocess (gunicorn: gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before anything imports
  prometheus_client): every worker writes its figures to its own files in that directory, and /metrics sums
  the files of all workers, live and dead, so one scrape is the whole server whichever worker answers it.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as _values
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

# Label values come from the request, so only a closed set may become one: anything a client invents
# (PROPFIND, FOO...) would otherwise add a time series per invented method.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def multiprocess_mode() -> bool:
    """Whether prometheus_client writes values to PROMETHEUS_MULTIPROC_DIR. Asked of the library rather than
    of the environment: it decided once, at import, and setting the variable later changes nothing."""
    return bool(getattr(_values.ValueClass, "_multiprocess", False))


class Metrics:
    """The app's metric objects. `registry` is None in multiprocess mode: the values live in files and
    /metrics reads them with a MultiProcessCollector."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.requests = Counter(
            "pd_app_http_requests_total",
            "HTTP requests served",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        # The default 15 buckets (5 ms to 10 s) are kept: observe() increments one bucket whatever their
        # number, so they cost the scrape (15 lines per endpoint), not the request.
        self.latency = Histogram(
            "pd_app_http_request_seconds",
            "Time to serve a request",
            ["endpoint"],
            registry=registry,
        )
        self.upstream_calls = Counter(
            "pd_app_upstream_calls_total",
            "Calls to Pipedrive's API",
            ["op", "outcome"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "pd_app_upstream_seconds",
            "Time Pipedrive took to answer",
            ["op"],
            registry=registry,
        )
        self.tokens = Counter(
            "pd_app_pipedrive_tokens_total",
            "Pipedrive API tokens charged to the companies' daily budgets, by operation",
            ["op"],
            registry=registry,
        )
        self.refusals = Counter(
            "pd_app_refusals_total",
            "Requests the app refused itself, sending nothing to Pipedrive, by reason",
            ["reason"],
            registry=registry,
        )
        self.upstream_retries = Counter(
            "pd_app_upstream_retries_total",
            "Reads sent to Pipedrive again after a 502/503/504 or no answer",
            ["op"],
            registry=registry,
        )
        # Summed over the live workers: each has its own breakers (pipedrive/breaker.py).
        self.breakers_open = Gauge(
            "pd_app_upstream_breakers_open",
            "Pipedrive hosts whose circuit breaker is open, counted in each worker process",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Label children by label tuple: a dict lookup instead of `.labels()` (which validates, stringifies
        # and takes a lock) on every request. Every key is from a closed set (endpoints, KNOWN_METHODS,
        # the status codes the app answers with, the ops and outcomes in the code), so these stay small.
        # A race between two threads on a new key is harmless: `.labels()` returns the same child to both.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._upstream_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._cache_hit_children: dict[str, Counter] = {}
        self._token_children: dict[str, Counter] = {}
        self._refusal_children: dict[str, Counter] = {}
        self._retry_children: dict[str, Counter] = {}

    def request_children(self, endpoint: str, method: str, status: int) -> tuple[Counter, Histogram]:
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(endpoint, method, str(status)), self.latency.labels(endpoint))
            self._request_children[key] = children
        return children

    def upstream_children(self, op: str, outcome: str) -> tuple[Counter, Histogram]:
        key = (op, outcome)
        children = self._upstream_children.get(key)
        if children is None:
            children = (self.upstream_calls.labels(op, outcome), self.upstream_latency.labels(op))
            self._upstream_children[key] = children
        return children

    def cache_hit_child(self, op: str) -> Counter:
        child = self._cache_hit_children.get(op)
        if child is None:
            child = self._cache_hit_children[op] = self.upstream_calls.labels(op, "cache_hit")
        return child

    def retry_child(self, op: str) -> Counter:
        child = self._retry_children.get(op)
        if child is None:
            child = self._retry_children[op] = self.upstream_retries.labels(op)
        return child


# Multiprocess mode: one Metrics per process, shared by every app the process creates. Two metric objects
# of the same name in one process would each keep their own copy of a value and overwrite each other's
# writes to the process's file (lost counts), and a second registration in one registry would raise.
_shared: Metrics | None = None
_shared_lock = threading.Lock()


def _metrics_for_new_app() -> Metrics:
    global _shared
    if not multiprocess_mode():
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            log.warning(
                "PROMETHEUS_MULTIPROC_DIR is set but prometheus_client was imported before it was: "
                "/metrics reports this process only"
            )
        return Metrics(CollectorRegistry())
    with _shared_lock:
        if _shared is None:
            _shared = Metrics(None)
        return _shared


def upstream(op: str, outcome: str, seconds: float) -> None:
    calls, latency = current_app.extensions["pd_metrics"].upstream_children(op, outcome)
    calls.inc()
    latency.observe(seconds)


def tokens_spent(op: str, tokens: int) -> None:
    m: Metrics = current_app.extensions["pd_metrics"]
    child = m._token_children.get(op)
    if child is None:
        child = m._token_children[op] = m.tokens.labels(op)
    child.inc(tokens)


def refused(reason: str) -> None:
    m: Metrics = current_app.extensions["pd_metrics"]
    child = m._refusal_children.get(reason)
    if child is None:
        child = m._refusal_children[reason] = m.refusals.labels(reason)
    child.inc()


def cache_hit(op: str) -> None:
    current_app.extensions["pd_metrics"].cache_hit_child(op).inc()


def upstream_retry(op: str) -> None:
    current_app.extensions["pd_metrics"].retry_child(op).inc()


def breakers_open(app: Flask, count: int) -> None:
    """Called by the app's breakers (pipedrive/breaker.py) when one opens or closes, from any thread."""
    app.extensions["pd_metrics"].breakers_open.set(count)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _finish(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        count, latency = current_app.extensions["pd_metrics"].request_children(
            request.endpoint or "unmatched", method_label(request.method), response.status_code
        )
        count.inc()
        latency.observe(time.perf_counter() - started)
    return response


def export() -> Response:
    m: Metrics = current_app.extensions["pd_metrics"]
    if m.registry is None:
        # The files of every worker, read afresh at each scrape.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = m.registry
    # content_type, not mimetype: CONTENT_TYPE_LATEST already names its charset and Flask would add another.
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.extensions["pd_metrics"] = _metrics_for_new_app()
    app.before_request(_start)
    app.after_request(_finish)
