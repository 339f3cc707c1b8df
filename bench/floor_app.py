"""The floor the issue measures pd_app against: a bare Flask view that forwards GET /api/v1/goals/find to the
upstream stand-in over one pooled urllib3 PoolManager, with no credential, no database and no validation.

Run by `bench/proxy_bench.py` under the same `gunicorn.conf.py` as the app (same worker model, same access
log), so the gap between its rows and the app's is what pd_app's own work costs.
"""

from __future__ import annotations

import os

import urllib3
from flask import Flask, Response, request

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:9")
HEADERS = {"Authorization": "Bearer bench-access-token", "Accept": "application/json"}

pool = urllib3.PoolManager(num_pools=10, maxsize=int(os.environ.get("GUNICORN_THREADS", "64")), retries=False)
app = Flask(__name__)


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/api/v1/goals/find")
def find() -> Response:
    url = UPSTREAM + request.full_path
    upstream = pool.urlopen("GET", url, headers=HEADERS, retries=False, redirect=False, preload_content=True)
    return Response(upstream.data, upstream.status, content_type="application/json")
