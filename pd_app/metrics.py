"""Prometheus metrics, one registry per app (GET /metrics). Each process reports its own figures."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pd_app_http_requests_total",
            "HTTP requests served",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pd_app_http_request_seconds",
            "Time to serve a request",
            ["endpoint"],
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "pd_app_upstream_calls_total",
            "Calls to Pipedrive's API",
            ["op", "outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "pd_app_upstream_seconds",
            "Time Pipedrive took to answer",
            ["op"],
            registry=self.registry,
        )


def upstream(op: str, outcome: str, seconds: float) -> None:
    m: Metrics = current_app.extensions["pd_metrics"]
    m.upstream_calls.labels(op, outcome).inc()
    m.upstream_latency.labels(op).observe(seconds)


def cache_hit(op: str) -> None:
    m: Metrics = current_app.extensions["pd_metrics"]
    m.upstream_calls.labels(op, "cache_hit").inc()


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _finish(response):  # noqa: ANN001, ANN202
    started = g.pop("metrics_started", None)
    if started is not None:
        m: Metrics = current_app.extensions["pd_metrics"]
        endpoint = request.endpoint or "unmatched"
        m.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        m.latency.labels(endpoint).observe(time.perf_counter() - started)
    return response


def export() -> Response:
    m: Metrics = current_app.extensions["pd_metrics"]
    return Response(generate_latest(m.registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.extensions["pd_metrics"] = Metrics()
    app.before_request(_start)
    app.after_request(_finish)
