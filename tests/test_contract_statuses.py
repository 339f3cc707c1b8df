"""Every status /api/openapi.json documents for an operation is one the app really answers with: each is
reached by a targeted request (the sandbox's knobs play Pipedrive failing; the app's own failures are made
for real: a broken database, a token that no longer decrypts), and each answer is checked against the
document by schemathesis (status, media type, headers, body). What no request can produce is explained in
UNREACHABLE, and only there: an explanation for a status that is reached fails too, so the table stays true.
The fuzzing itself is tests/test_fuzz.py."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update

from pd_app import create_app
from pd_app.db import get_session
from pd_app.goals import openapi_document
from pd_app.models import Installation

from .conftest import PUBLIC_URL, app_environ, close_app
from .test_proxy import GOAL

JWT_SECRET = "statuses-jwt-secret-0123456789abcdefghijkl"
ACME, ADA = 1001, 2001
# Not not_a_server_error: the 5xx here are provoked on purpose (Pipedrive failing, the database gone), to
# see each answered as documented; tests/test_fuzz.py holds that no request makes one by itself.
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Documented on purpose, reached by no request: 500 is the envelope of an unexpected failure, documented on
# every operation so that a client knows its shape; where the operation reads no token (the only stored
# secret that can fail to decrypt), only a bug in pd_app can produce it.
_BUG_ONLY = (
    "500 `internal_error` would be a bug: this operation decrypts no token, the one failure of stored data"
)
# The valid request of each operation: method, path (with {goal}, {webhook}, {key} filled in), JSON body.
REQUESTS: dict[str, tuple[str, str, Any]] = {
    "getGoals": ("GET", "/api/v1/goals/find", None),
    "getGoalResult": ("GET", "/api/v1/goals/{goal}/results?period.start={start}&period.end={start}", None),
    "addGoal": ("POST", "/api/v1/goals", GOAL),
    "updateGoal": ("PUT", "/api/v1/goals/{goal}", {"title": "Renamed"}),
    "deleteGoal": ("DELETE", "/api/v1/goals/{goal}", None),
    "getInstallation": ("GET", "/api/v1/app/installation", None),
    "getGoalHistory": ("GET", "/api/v1/goals/{goal}/history", None),
    "addWebhook": (
        "POST",
        "/api/v1/app/webhooks",
        {"url": "https://hooks.example.com/a", "events": ["goal.reached"]},
    ),
    "listWebhooks": ("GET", "/api/v1/app/webhooks", None),
    "deleteWebhook": ("DELETE", "/api/v1/app/webhooks/{webhook}", None),
    "getOpenApi": ("GET", "/api/openapi.json", None),
    "getPipelines": ("GET", "/api/v2/pipelines", None),
    "getStages": ("GET", "/api/v2/stages", None),
    "getActivityTypes": ("GET", "/api/v1/activityTypes", None),
    "getUsers": ("GET", "/api/v1/users", None),
    "getCurrencies": ("GET", "/api/v1/currencies", None),
    "getAppSettings": ("GET", "/api/v1/app/settings", None),
    "listKeys": ("GET", "/api/v1/app/keys", None),
    "createKey": ("POST", "/api/v1/app/keys", {"name": "Sales dashboard"}),
    "revokeKey": ("DELETE", "/api/v1/app/keys/{key}", None),
}
# gunicorn answers an over-long request line (414) or oversized headers (431) before the app runs, so the
# Flask test client, which has no such limits, cannot meet them: tests/test_hardening.py reaches both under
# gunicorn (in the envelope), and tests/test_fuzz.py's long generated queries meet 414 there and check it
# against the document.
_SERVER_LIMIT = "gunicorn's own limit, before the app: reached under gunicorn by test_hardening.py"
UNREACHABLE: dict[tuple[str, str], str] = {
    ("getInstallation", "500"): _BUG_ONLY,
    ("getGoalHistory", "500"): _BUG_ONLY,
    **{(op_id, status): _SERVER_LIMIT for op_id in REQUESTS for status in ("414", "431")},
}

ADMIN_ONLY = {"getAppSettings", "listKeys", "createKey", "revokeKey"}
UPSTREAM = {"getGoals", "getGoalResult", "addGoal", "updateGoal", "deleteGoal"} | {
    "getPipelines",
    "getStages",
    "getActivityTypes",
    "getUsers",
    "getCurrencies",
}
WRITES = {"addGoal", "updateGoal", "deleteGoal"}


def _document() -> dict[str, Any]:
    return openapi_document(PUBLIC_URL)


def documented() -> list[tuple[str, str]]:
    pairs = []
    for item in _document()["paths"].values():
        for method, operation in item.items():
            if method != "parameters":
                pairs += [(operation["operationId"], status) for status in operation["responses"]]
    return sorted(pairs)


# -- the world the requests are made in -----------------------------------------------------------------
@dataclass
class World:
    app: Any
    client: Any
    sandbox: Any
    key: str
    read_key: str
    make_app: Callable[..., Any]
    schema: Any

    def admin(self) -> dict[str, str]:
        now = int(time.time())
        token = jwt.encode(
            {"userId": ADA, "companyId": ACME, "iat": now, "exp": now + 300}, JWT_SECRET, "HS256"
        )
        return {"Authorization": "Bearer " + token}

    def credential(self, op_id: str, key: str | None = None) -> dict[str, str]:
        if key is not None:
            return {"x-api-token": key}
        return self.admin() if op_id in ADMIN_ONLY else {"x-api-token": self.key}

    def path(self, op_id: str) -> str:
        """The operation's path, with a goal of the caller's (a new one: a delete may take it), a webhook or
        a key of its company made for it."""
        template = REQUESTS[op_id][1]
        values: dict[str, str] = {}
        if "{goal}" in template:
            made = self.client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": self.key})
            goal = made.get_json()["data"]["goal"]
            values.update(goal=goal["id"], start=goal["duration"]["start"])
        if "{webhook}" in template:
            body = {"url": "https://hooks.example.com/t", "events": ["goal.reached"]}
            made = self.client.post("/api/v1/app/webhooks", json=body, headers={"x-api-token": self.key})
            values["webhook"] = str(made.get_json()["data"]["id"])
        if "{key}" in template:
            made = self.client.post("/api/v1/app/keys", json={"name": "t"}, headers=self.admin())
            values["key"] = str(made.get_json()["data"]["id"])
        return template.format(**values)

    def send(self, op_id: str, *, client: Any = None, headers: dict[str, str] | None = None, **changes: Any):
        """The operation's valid request, with `changes`: path, query (appended), body, content_type
        (type, bytes); `headers` replace the credential's when they name one."""
        method, _template, body = REQUESTS[op_id]
        path = changes.get("path") or self.path(op_id)
        path += changes.get("query", "")
        body = changes.get("body", body)
        chosen = headers if headers and {"Authorization", "x-api-token"} & set(headers) else None
        kwargs: dict[str, Any] = {"headers": {**(chosen or self.credential(op_id)), **(headers or {})}}
        if "content_type" in changes:
            kwargs.update(content_type=changes["content_type"][0], data=changes["content_type"][1])
        elif body is not None:
            kwargs["json"] = body
        response = (client or self.client).open(path, method=method, **kwargs)
        self.check(op_id, response)
        return response

    def check(self, op_id: str, response: Any) -> None:
        operation = self.schema.find_operation_by_id(op_id)
        case = operation.Case(path_parameters={"id": "1"} if "{id}" in operation.path else None)
        case.validate_response(response, checks=CHECKS)


@pytest.fixture
def world(clean_db, sandbox_server, sandbox, installer, make_key, app) -> Iterator[World]:
    installer.install(ADA)
    schema = schemathesis.openapi.from_dict(copy.deepcopy(_document()))
    apps = []

    def make_app(**extra: str):
        other = create_app(
            environ=app_environ(clean_db, sandbox_server.url, PIPEDRIVE_JWT_SECRET=JWT_SECRET, **extra)
        )
        apps.append(other)
        return other

    yield World(app, app.test_client(), sandbox, make_key(), make_key(scope="read"), make_app, schema)
    for other in apps:
        close_app(other)


@pytest.fixture
def app(clean_db, sandbox_server, sandbox):
    app = create_app(
        environ=app_environ(
            clean_db, sandbox_server.url, PIPEDRIVE_JWT_SECRET=JWT_SECRET, UPSTREAM_RETRIES="0"
        )
    )
    yield app
    close_app(app)


# -- how each status is reached ----------------------------------------------------------------------------
def _forced(status: int) -> Callable[[World, str], Any]:
    def way(world: World, op_id: str):
        if op_id not in UPSTREAM and op_id not in ADMIN_ONLY:
            return None
        path = world.path(op_id)
        world.sandbox.set_knobs(force_api_status={"status": status, "count": 1, "retry_after": 1})
        try:
            return world.send(op_id, path=path)
        finally:
            world.sandbox.set_knobs(force_api_status=None)

    return way


def _ok(world: World, op_id: str):
    return world.send(op_id)


def _not_modified(world: World, op_id: str):
    path = world.path(op_id)
    first = world.send(op_id, path=path)
    return world.send(op_id, path=path, headers={"If-None-Match": first.headers.get("ETag", "")})


def _invalid(world: World, op_id: str):
    method = REQUESTS[op_id][0]
    if method == "GET":
        return world.send(op_id, query=("&" if "?" in REQUESTS[op_id][1] else "?") + "bogus=1")
    if method == "POST":
        return world.send(op_id, body={"bogus": 1})
    if op_id in WRITES:
        return world.send(op_id, path="/api/v1/goals/not%20an%20id")
    return None


def _no_credential(world: World, op_id: str):
    method, _template, body = REQUESTS[op_id]
    response = world.client.open(world.path(op_id), method=method, json=body)
    world.check(op_id, response)
    return response


def _not_allowed(world: World, op_id: str):
    if op_id in ADMIN_ONLY:  # keys do not mint keys: a partner key, even of scope full
        return _as(world, op_id, world.key)
    if REQUESTS[op_id][0] != "GET" or op_id in {"listWebhooks"}:
        return _as(world, op_id, world.read_key)
    return _forced(403)(world, op_id)


def _as(world: World, op_id: str, key: str):
    method, _template, body = REQUESTS[op_id]
    response = world.client.open(world.path(op_id), method=method, json=body, headers={"x-api-token": key})
    world.check(op_id, response)
    return response


def _missing(world: World, op_id: str):
    paths = {
        "deleteWebhook": "/api/v1/app/webhooks/999999",
        "revokeKey": "/api/v1/app/keys/999999",
        "getGoalResult": "/api/v1/goals/nosuchgoal/results?period.start=2026-01-01&period.end=2026-01-02",
        "updateGoal": "/api/v1/goals/nosuchgoal",
        "deleteGoal": "/api/v1/goals/nosuchgoal",
    }
    if op_id in paths:
        return world.send(op_id, path=paths[op_id])
    return _forced(404)(world, op_id)


def _not_installed(world: World, op_id: str):
    path = world.path(op_id)
    with world.app.app_context():
        session = get_session()
        session.execute(update(Installation).values(status="uninstalled"))
        session.commit()
    try:
        return world.send(op_id, path=path)
    finally:
        with world.app.app_context():
            session = get_session()
            session.execute(update(Installation).values(status="active"))
            session.commit()


def _too_large(world: World, op_id: str):
    if REQUESTS[op_id][2] is None:
        return None
    return world.send(op_id, content_type=("application/json", b'{"a": "' + b"x" * 70_000 + b'"}'))


def _not_json(world: World, op_id: str):
    if REQUESTS[op_id][2] is None:
        return None
    return world.send(op_id, content_type=("text/plain", b"title=x"))


def _key_reused(world: World, op_id: str):
    if op_id not in WRITES:
        return None
    path = world.path(op_id)
    world.send(op_id, path=path, headers={"Idempotency-Key": "reuse-" + op_id})
    body = {"addGoal": {**GOAL, "title": "Other"}, "updateGoal": {"title": "Other"}}.get(op_id)
    other_path = path if op_id != "deleteGoal" else world.path(op_id)
    return world.send(op_id, path=other_path, body=body, headers={"Idempotency-Key": "reuse-" + op_id})


def _over_the_limit(world: World, op_id: str):
    limited = world.make_app(KEY_RATE_LIMIT="1/minute")
    client = limited.test_client()
    path = world.path(op_id)
    world.send(op_id, client=client, path=path)
    return world.send(op_id, client=client, path=path)


def _undecryptable(world: World, op_id: str):
    path = world.path(op_id)
    with world.app.app_context():
        session = get_session()
        session.execute(update(Installation).values(access_token_enc="gAAAAA-not-a-token"))
        session.commit()
    other = world.make_app()
    # Webhooks read no token for a key; for a panel JWT they ask Pipedrive whether its user is an admin.
    by_jwt = op_id in ADMIN_ONLY or "Webhook" in op_id
    return world.send(op_id, client=other.test_client(), path=path, headers=world.admin() if by_jwt else None)


def _upstream_error(world: World, op_id: str):
    return _forced(500)(world, op_id)


def _database_down(world: World, op_id: str):
    path = world.path(op_id)
    broken = world.make_app(DATABASE_URL="sqlite:////nonexistent-directory/pd_app.sqlite3")
    return world.send(op_id, client=broken.test_client(), path=path)


def _write_timed_out(world: World, op_id: str):
    if op_id not in WRITES:
        return None
    pd_client = world.app.extensions["pd_client"]
    saved = pd_client.settings
    path = world.path(op_id)
    pd_client.settings = replace(saved, upstream_timeout=0.2)
    world.sandbox.set_knobs(api_delay_s=0.5)
    try:
        return world.send(op_id, path=path)
    finally:
        pd_client.settings = saved
        world.sandbox.set_knobs(api_delay_s=0.0)
        time.sleep(0.5)  # the sandbox finishes the delayed call before the next request


WAYS: dict[str, list[Callable[[World, str], Any]]] = {
    "200": [_ok],
    "201": [_ok],
    "304": [_not_modified],
    "400": [_invalid],
    "401": [_no_credential],
    "402": [_forced(402)],
    "403": [_not_allowed],
    "404": [_missing],
    "409": [_not_installed],
    "413": [_too_large],
    "415": [_not_json],
    "422": [_key_reused],
    "429": [_forced(429), _over_the_limit],
    "500": [_undecryptable],
    "502": [_upstream_error],
    "503": [_forced(503), _database_down],
    "504": [_write_timed_out],
}


@pytest.mark.parametrize(("op_id", "status"), documented(), ids=lambda v: v)
def test_every_documented_status_is_reached_or_explained(world: World, op_id: str, status: str):
    if (op_id, status) in UNREACHABLE:
        for way in WAYS.get(status, []):
            response = way(world, op_id)
            assert response is None or str(response.status_code) != status, "reached: drop the explanation"
        return
    seen = []
    for way in WAYS[status]:
        response = way(world, op_id)
        if response is not None:
            seen.append(f"{way.__name__}: {response.status_code} {response.get_data(as_text=True)[:200]}")
            if str(response.status_code) == status:
                return
    pytest.fail(f"{op_id} documents {status}, reached by no request: {seen}")


def test_the_explanations_are_of_documented_statuses():
    assert set(UNREACHABLE) <= set(documented())
