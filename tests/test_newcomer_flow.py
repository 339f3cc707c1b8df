"""The README's newcomer flow, over real HTTP, in the same configuration as `make run` (PD_SANDBOX=1):
start page → install → sandbox consent → installed page → `keys create` (the real CLI) → find, add, results,
update, delete through the proxy."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from pd_app import create_app
from pd_app.db import get_session
from pd_app.models import Installation
from pd_app.tokens.cipher import cipher

from .conftest import ENCRYPTION_KEY, LiveServer, close_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo(clean_db):
    holder = {}
    server = LiveServer(lambda environ, start_response: holder["app"](environ, start_response))
    environ = {
        "PD_APP_ENV": "development",
        "PD_SANDBOX": "1",
        "PUBLIC_URL": server.url,
        "SECRET_KEY": "newcomer-flow-secret-key",
        "TOKEN_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "DATABASE_URL": clean_db,
    }
    app = create_app(environ=environ)
    holder["app"] = app.wsgi_app
    http = requests.Session()
    yield server.url, environ, http, app
    http.close()
    server.stop()
    close_app(app)


def _cli(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environ}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_newcomer_flow_end_to_end(demo):
    base, environ, http, app = demo

    # 1-2. The start page explains the app and links to the install.
    page = http.get(base + "/", timeout=5)
    assert page.status_code == 200
    assert "Goals for Pipedrive" in page.text and 'href="/oauth/install"' in page.text

    # 3. The sandbox's consent page names the app and its scopes.
    start = http.get(base + "/oauth/install", allow_redirects=False, timeout=5)
    assert start.status_code == 302
    authorize = start.headers["Location"]
    assert authorize.startswith(base + "/sandbox/oauth/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    assert query["client_id"] and query["redirect_uri"] == base + "/oauth/callback" and query["state"]
    consent = http.get(authorize, timeout=5)
    assert consent.status_code == 200
    assert "Allow and install" in consent.text and "Cancel" in consent.text and "goals:full" in consent.text

    # 4. Allow: back on the app, installed, and the final URL carries no code or state.
    answer = http.post(
        base + "/sandbox/oauth/authorize", data={**query, "user_id": "2001", "action": "allow"}, timeout=10
    )
    assert answer.status_code == 200
    final = urlsplit(answer.url)
    assert final.path == "/installed"
    assert "code=" not in answer.url and "state=" not in answer.url
    assert "Installed for Acme Sales Ltd as Ada Admin" in answer.text

    # 5. The operator creates a partner key with the real CLI; the key is alone on the last line.
    created = _cli(environ, "keys", "create", "--company-id", "1001", "--name", "demo")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("pdk_") and " " not in key
    listed = _cli(environ, "installations", "list")
    assert "1001" in listed.stdout and "active" in listed.stdout
    assert key not in listed.stdout

    # 6. The proxy: find, add, find again, results, update, delete.
    h = {"x-api-token": key}
    found = http.get(base + "/api/v1/goals/find", params={"is_active": "true"}, headers=h, timeout=10)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["success"] is True and body["service"] == "statistics-goals-api"
    before = {g["id"] for g in body["data"]["goals"]}
    assert before, "the sandbox seeds goals for Ada"

    today = date.today()
    new_goal = {
        "title": "Newcomer goal",
        "assignee": {"id": 2001, "type": "person"},
        "type": {"name": "deals_won", "params": {"pipeline_id": [1]}},
        "expected_outcome": {"target": 20, "tracking_metric": "quantity"},
        "duration": {"start": today.replace(day=1).isoformat(), "end": None},
        "interval": "monthly",
    }
    added = http.post(base + "/api/v1/goals", json=new_goal, headers=h, timeout=10)
    assert added.status_code == 200, added.text
    goal = added.json()["data"]["goal"]
    assert goal["title"] == "Newcomer goal" and isinstance(goal["id"], str)

    again = http.get(base + "/api/v1/goals/find", headers=h, timeout=10).json()["data"]["goals"]
    assert {g["id"] for g in again} == before | {goal["id"]}

    period = {
        "period.start": today.replace(day=1).isoformat(),
        "period.end": (today + timedelta(days=1)).isoformat(),
    }
    results = http.get(f"{base}/api/v1/goals/{goal['id']}/results", params=period, headers=h, timeout=10)
    assert results.status_code == 200, results.text
    data = results.json()["data"]
    assert data["goal"]["id"] == goal["id"] and isinstance(data["progress"], int | float)

    updated = http.put(f"{base}/api/v1/goals/{goal['id']}", json={"title": "Renamed"}, headers=h, timeout=10)
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["goal"]["title"] == "Renamed"

    deleted = http.delete(f"{base}/api/v1/goals/{goal['id']}", headers=h, timeout=10)
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    after = http.get(base + "/api/v1/goals/find", headers=h, timeout=10).json()["data"]["goals"]
    assert goal["id"] not in {g["id"] for g in after}

    gone = http.get(f"{base}/api/v1/goals/{goal['id']}/results", params=period, headers=h, timeout=10)
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"

    # The caller can see its installation, never a token.
    status = http.get(base + "/api/v1/app/installation", headers=h, timeout=10)
    assert status.status_code == 200
    info = status.json()["data"]
    assert info["company_id"] == 1001 and info["status"] == "active" and "goals:full" in info["scopes"]
    with app.app_context():
        inst = get_session().scalar(select(Installation).where(Installation.user_id == 2001))
        secrets = [
            cipher().decrypt(inst, f, getattr(inst, f + "_enc")) for f in ("access_token", "refresh_token")
        ]
    assert not any(secret in status.text for secret in secrets)


def test_readyz_and_metrics_in_the_demo(demo):
    base, _environ, http, _app = demo
    assert http.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = http.get(base + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "migrations": "ok"}
    http.get(base + "/", timeout=5)
    metrics = http.get(base + "/metrics", timeout=5)
    assert "pd_app_http_requests_total" in metrics.text
