"""Webhooks: registration (API and CLI), the signed delivery to a real receiver, retries and the failing
state, the delivery log, the production URL rules (SSRF), the installation events, a real Huey consumer
(and its SIGTERM), and the README's receiver run against a real delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import select, update

from pd_app import create_app
from pd_app.db import get_session, transaction
from pd_app.install.identity import Identity
from pd_app.models import Installation, Webhook, WebhookAttempt, WebhookDelivery, utcnow
from pd_app.tokens.store import save_grant
from pd_app.webhooks import delivery, events, registry, safety

from .conftest import CLIENT_ID, CLIENT_SECRET, ENCRYPTION_KEY, LiveServer, app_environ, close_app
from .procs import ROOT, Proc, wait_until

HOOKS = "/api/v1/app/webhooks"
REDIS_URL = os.environ.get("PD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


# -- a receiver: a real HTTP server in a thread --------------------------------------------------------------
class QuietServer(ThreadingHTTPServer):
    """A receiver the app hung up on (a slow one, cut off at the delivery timeout) fails to write its late
    answer: expected, and not worth a traceback on the test run's output."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Receiver:
    """Records every POST; answers with `status` (after `delay` seconds), or a redirect to `location`."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0
        self.location: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"x" * 3000 if receiver.status >= 500 else b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02})
        self.thread.start()

    def events(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


# -- apps ----------------------------------------------------------------------------------------------------
@pytest.fixture
def make_app(clean_db, sandbox_server, sandbox, tmp_path) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(overrides: dict | None = None, **extra: str) -> Flask:
        # The job queue in this test's folder, not the instance folder's.
        overrides = {"queue_path": str(tmp_path / "queue.sqlite3"), **(overrides or {})}
        app = create_app(overrides, environ=app_environ(clean_db, sandbox_server.url, **extra))
        made.append(app)
        return app

    yield make
    for app in made:
        close_app(app)


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def key(app, installer, make_key) -> str:
    installer.install(user_id=2001)
    return make_key()


def auth(key: str) -> dict[str, str]:
    return {"x-api-token": key}


def register(client, key: str, url: str, events_: list[str] | None = None):
    return client.post(
        HOOKS, json={"url": url, "events": events_ or list(events.EVENT_TYPES)}, headers=auth(key)
    )


def emit(
    app: Flask, company_id: int = 1001, type_: str = events.GOAL_REACHED, data: dict | None = None
) -> int:
    with app.app_context(), transaction() as session:
        return events.emit(session, company_id, type_, data or {"goal_id": "g1"})


def deliver(app: Flask, **kwargs) -> delivery.Summary:
    with app.app_context():
        return delivery.deliver_due(**kwargs)


def rows(app: Flask, model, *where):
    with app.app_context():
        found = get_session().scalars(select(model).where(*where).order_by(model.id)).all()
        get_session().expunge_all()
        return found


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


# -- registration --------------------------------------------------------------------------------------------
def test_register_shows_the_secret_once_and_stores_it_only_encrypted(app, client, key, clean_db):
    resp = register(client, key, "https://partner.example.com/hooks", ["goal.reached", "goal.progress"])
    assert resp.status_code == 201, resp.get_json()
    assert resp.headers["Cache-Control"] == "no-store"  # no cache, not even the browser's, keeps the secret
    data = resp.get_json()["data"]
    secret = data["secret"]
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{40,}", secret)
    assert data["url"] == "https://partner.example.com/hooks"
    assert data["events"] == ["goal.progress", "goal.reached"]  # the contract's order, each once
    assert data["failing"] is False and data["id"] >= 1
    # Stored encrypted: the secret appears nowhere in the row, and decrypts only for this row.
    (hook,) = rows(app, Webhook)
    assert secret not in json.dumps([hook.secret_enc, hook.url, hook.events, hook.created_by])
    assert hook.created_by.startswith("key:")
    with app.app_context():
        assert registry.secret_of(hook) == secret
        hook.id += 1000  # a ciphertext copied to another row does not decrypt there
        with pytest.raises(Exception, match="belongs to another"):
            registry.secret_of(hook)
    # Never shown again.
    listed = client.get(HOOKS, headers=auth(key)).get_json()["data"]
    assert [h["id"] for h in listed] == [data["id"]]
    assert "secret" not in listed[0] and secret not in json.dumps(listed)
    assert set(listed[0]) >= {
        "id",
        "url",
        "events",
        "created_at",
        "failing",
        "failing_since",
        "last_attempts",
    }


def test_a_read_scope_key_may_not_manage_webhooks(app, client, key, make_key):
    reader = make_key(scope="read")
    assert register(client, reader, "https://partner.example.com/hooks").status_code == 403
    assert client.get(HOOKS, headers=auth(reader)).get_json()["code"] == "forbidden"
    assert client.post(HOOKS, json={}).status_code == 401
    assert rows(app, Webhook) == []


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "ftp://partner.example.com/x", "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "/relative/path", "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "https://user:pw@partner.example.com/", "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "https://partner.example.com/" + "a" * 2000, "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "https://partner.example.com:99999/", "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "https://partner.example.com/a b", "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "https://partner.example.com/ü", "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": 5, "events": ["goal.reached"]}, "url", "invalid"),
        ({"url": "https://partner.example.com/"}, "events", "invalid_type"),
        ({"url": "https://partner.example.com/", "events": []}, "events", "required"),
        ({"url": "https://partner.example.com/", "events": "goal.reached"}, "events", "invalid_type"),
        ({"url": "https://partner.example.com/", "events": ["goal.missed"]}, "events[0]", "invalid_choice"),
        (
            {"url": "https://partner.example.com/", "events": [["goal.reached"]]},
            "events[0]",
            "invalid_choice",
        ),
        ({"url": "https://partner.example.com/", "events": ["goal.reached"], "x": 1}, "x", "unknown_field"),
        (["https://partner.example.com/"], "body", "invalid_type"),
    ],
)
def test_bad_registrations_are_400_with_details(app, client, key, body, field, code):
    resp = client.post(HOOKS, json=body, headers=auth(key))
    assert resp.status_code == 400, resp.get_json()
    payload = resp.get_json()
    assert payload["success"] is False and payload["code"] == "validation_failed"
    assert (field, code) in [(d["field"], d["code"]) for d in payload["details"]], payload["details"]
    assert rows(app, Webhook) == []


def test_a_body_that_is_not_json_is_415(app, client, key):
    resp = client.post(HOOKS, data="url=x", headers={**auth(key), "Content-Type": "text/plain"})
    assert resp.status_code == 415 and resp.get_json()["code"] == "unsupported_media_type"


def test_webhooks_are_the_credentials_company_only(app, client, key, installer, make_key):
    installer.install(user_id=2101)  # Globex, another company
    other = make_key(company_id=1002)
    mine = register(client, key, "https://acme.example.com/hooks").get_json()["data"]["id"]
    theirs = register(client, other, "https://globex.example.com/hooks").get_json()["data"]["id"]
    assert [h["id"] for h in client.get(HOOKS, headers=auth(key)).get_json()["data"]] == [mine]
    assert [h["id"] for h in client.get(HOOKS, headers=auth(other)).get_json()["data"]] == [theirs]
    # Another company's id is not found, and stays.
    resp = client.delete(f"{HOOKS}/{theirs}", headers=auth(key))
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"
    assert {h.id for h in rows(app, Webhook)} == {mine, theirs}
    # An event of one company reaches only its own webhooks.
    assert emit(app, 1001) == 1
    assert [d.webhook_id for d in rows(app, WebhookDelivery)] == [mine]


def test_delete_removes_the_webhook_and_its_pending_deliveries(app, client, key):
    hook_id = register(client, key, "https://acme.example.com/hooks").get_json()["data"]["id"]
    emit(app)
    assert len(rows(app, WebhookDelivery)) == 1
    resp = client.delete(f"{HOOKS}/{hook_id}", headers=auth(key))
    assert resp.status_code == 200 and resp.get_json() == {"success": True, "data": {"id": hook_id}}
    assert rows(app, Webhook) == [] and rows(app, WebhookDelivery) == []
    assert client.delete(f"{HOOKS}/{hook_id}", headers=auth(key)).status_code == 404
    assert client.delete(f"{HOOKS}/abc", headers=auth(key)).status_code == 404


def test_an_event_named_twice_counts_once_as_the_document_says(app, client, key):
    # Found by tests/test_fuzz.py: the document said uniqueItems, the API took duplicates; it takes them.
    events_schema = app.test_client().get("/api/openapi.json").get_json()["components"]["schemas"]
    assert "uniqueItems" not in events_schema["WebhookRequest"]["properties"]["events"]
    resp = register(client, key, "https://partner.example.com/hooks", ["goal.reached", "goal.reached"])
    assert resp.status_code == 201 and resp.get_json()["data"]["events"] == ["goal.reached"]


def test_concurrent_registrations_never_meet_a_locked_database(app, key):
    """Found by tests/test_fuzz.py: on SQLite two adds at once answered 503 ("database is locked"), the
    count's read transaction unable to write after the other's commit; on PostgreSQL both counted and the
    company passed its limit. Over a threaded server, 30 adds at once: exactly 20 created (the company's
    limit), 10 refused as too many, none locked out."""
    server = LiveServer(app)
    try:

        def add(i: int) -> tuple[int, str | None]:
            resp = requests.post(
                server.url + "/api/v1/app/webhooks",
                headers=auth(key),
                json={"url": f"https://hooks.example.com/{i}", "events": ["goal.reached"]},
                timeout=30,
            )
            return resp.status_code, (resp.json().get("details") or [{}])[0].get("code")

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(add, range(registry.MAX_PER_COMPANY + 10)))
    finally:
        server.stop()
    assert outcomes.count((201, None)) == registry.MAX_PER_COMPANY
    assert [o for o in outcomes if o[0] != 201] == [(400, "too_many")] * 10
    assert len(rows(app, Webhook)) == registry.MAX_PER_COMPANY


def test_cli_add_list_remove(app, receiver):
    cli = app.test_cli_runner()
    result = cli.invoke(args=["webhooks", "add", "--company-id", "1001", "--url", receiver.url])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and result.stdout.strip() == secret  # alone, on stdout
    (hook,) = rows(app, Webhook)
    assert hook.events == list(events.EVENT_TYPES) and hook.created_by == "cli"  # default: every event
    result = cli.invoke(
        args=["webhooks", "add", "--company-id", "1001", "--url", receiver.url, "--event", "goal.reached"]
    )
    assert result.exit_code == 0
    assert rows(app, Webhook)[1].events == ["goal.reached"]
    bad = cli.invoke(args=["webhooks", "add", "--company-id", "1001", "--url", "ftp://x"])
    assert bad.exit_code != 0 and "url must be an absolute http" in bad.output
    no_such = ["webhooks", "add", "--company-id", "1", "--url", "https://x.example", "--event", "goal.missed"]
    assert cli.invoke(args=no_such).exit_code == 2
    listing = cli.invoke(args=["webhooks", "list"])
    assert listing.exit_code == 0 and receiver.url in listing.output and "ok" in listing.output
    assert secret not in listing.output
    removed = cli.invoke(args=["webhooks", "remove", str(hook.id)])
    assert removed.exit_code == 0 and len(rows(app, Webhook)) == 1
    assert cli.invoke(args=["webhooks", "remove", str(hook.id)]).exit_code != 0


# -- delivery ------------------------------------------------------------------------------------------------
def add_hook(
    app: Flask, url: str, events_: list[str] | None = None, company_id: int = 1001
) -> tuple[int, str]:
    with app.app_context():
        hook, secret = registry.add(
            get_session(),
            company_id,
            url,
            events_ or list(events.EVENT_TYPES),
            created_by="cli",
            production=False,
        )
        return hook.id, secret


def test_a_real_receiver_gets_a_signed_delivery_once(app, receiver):
    hook_id, secret = add_hook(app, receiver.url + "?source=pd")
    assert emit(app, data={"goal_id": "g1", "progress": 1.0}) == 1
    summary = deliver(app)
    assert (summary.attempted, summary.delivered) == (1, 1)
    (got,) = receiver.requests
    assert got["path"] == "/hooks?source=pd"
    assert got["headers"]["Content-Type"] == "application/json"
    assert got["headers"]["User-Agent"].startswith("pd_app-webhooks/")
    event = json.loads(got["body"])
    assert event["type"] == "goal.reached" and event["company_id"] == 1001
    assert event["id"].startswith("evt_") and event["data"] == {"goal_id": "g1", "progress": 1.0}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", event["created_at"])
    # The signature verifies over these exact bytes, and not over a tampered body.
    header = got["headers"]["Pd-App-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert abs(int(header.split(",")[0][2:]) - time.time()) < 60
    assert verify(secret, header, got["body"])
    assert not verify(secret, header, got["body"].replace(b"g1", b"g2"))
    assert not verify("whsec_other", header, got["body"])
    # Delivered once: nothing more to send, and the attempt is logged.
    assert deliver(app).attempted == 0 and len(receiver.requests) == 1
    (d,) = rows(app, WebhookDelivery)
    assert d.delivered_at is not None and d.attempts == 1
    (attempt,) = rows(app, WebhookAttempt)
    assert (attempt.webhook_id, attempt.status, attempt.error) == (hook_id, 200, None)
    assert attempt.event_id == event["id"] and attempt.response_excerpt == "ok"


def test_a_receiver_that_answers_500_gets_it_again_later_and_attempts_are_logged(app, receiver):
    add_hook(app, receiver.url)
    emit(app)
    receiver.status = 500
    start = utcnow()
    assert deliver(app, now=start).failed == 1
    (d,) = rows(app, WebhookDelivery)
    assert d.delivered_at is None and d.attempts == 1
    wait = d.next_attempt_at - start
    assert timedelta(seconds=45) <= wait <= timedelta(seconds=60)  # 1 min, jittered
    # Not due yet: nothing is sent.
    assert deliver(app, now=start + timedelta(seconds=30)).attempted == 0
    assert len(receiver.requests) == 1
    # Due again: sent again (the same event), and the backoff doubles.
    later = d.next_attempt_at + timedelta(seconds=1)
    assert deliver(app, now=later).failed == 1
    (d,) = rows(app, WebhookDelivery)
    assert timedelta(seconds=95) <= d.next_attempt_at - later <= timedelta(seconds=120)
    receiver.status = 204
    assert deliver(app, now=d.next_attempt_at).delivered == 1
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == 3 and len(set(ids)) == 1  # at least once: the receiver dedupes by id
    log = rows(app, WebhookAttempt)
    assert [a.status for a in log] == [500, 500, 204]
    assert log[0].error == "HTTP 500" and len(log[0].response_excerpt) == 1024  # cut to 1 KB
    # The API shows the log, newest first.
    with app.app_context():
        (shown,) = registry.listing(get_session(), 1001)
    assert [a["status"] for a in shown["last_attempts"]] == [204, 500, 500]


def test_backoff_grows_to_an_hour_and_retries_last_beyond_24_hours():
    waits = [delivery.backoff(n).total_seconds() for n in range(1, 40)]
    assert 48 <= waits[0] <= 60 and all(w <= 3600 for w in waits) and waits[-1] >= 2880
    # The longest possible schedule of tries (no jitter) still keeps trying after 24 h.
    assert sum(min(3600, 60 * 2 ** (n - 1)) * 0.8 for n in range(1, 40)) > 24 * 3600


def test_after_24_hours_of_failures_the_webhook_is_failing_and_later_events_are_kept(app, receiver):
    hook_id, _ = add_hook(app, receiver.url)
    emit(app, data={"n": 1})
    receiver.status = 503
    with app.app_context(), transaction() as session:
        session.execute(update(WebhookDelivery).values(created_at=utcnow() - timedelta(hours=24, minutes=1)))
    now = utcnow()
    assert deliver(app, now=now).failed == 1
    (hook,) = rows(app, Webhook)
    assert hook.failing_since == now
    with app.app_context():
        (shown,) = registry.listing(get_session(), 1001)
    assert shown["failing"] is True and shown["failing_since"]
    # Later events are recorded but kept: only the oldest is tried, hourly.
    emit(app, data={"n": 2})
    emit(app, data={"n": 3})
    later = now + timedelta(hours=2)
    assert deliver(app, now=later).attempted == 1
    assert [e["data"]["n"] for e in receiver.events()] == [1, 1]
    assert len([d for d in rows(app, WebhookDelivery) if d.delivered_at is None]) == 3
    # Fixed: the next try succeeds, the webhook is healthy, and everything kept is sent, in order.
    receiver.status = 200
    with app.app_context():
        total = delivery.deliver_all(now=later + timedelta(hours=2))
    assert (total.attempted, total.delivered) == (3, 3)
    assert [e["data"]["n"] for e in receiver.events()] == [1, 1, 1, 2, 3]
    assert rows(app, Webhook)[0].failing_since is None
    assert all(d.delivered_at for d in rows(app, WebhookDelivery))
    assert hook_id


def test_redirects_are_not_followed(app, receiver):
    elsewhere = Receiver()
    try:
        add_hook(app, receiver.url)
        receiver.status, receiver.location = 302, elsewhere.url
        emit(app)
        assert deliver(app).failed == 1
        assert elsewhere.requests == []
        (attempt,) = rows(app, WebhookAttempt)
        assert attempt.status == 302 and "redirect" in attempt.error and elsewhere.url in attempt.error
        assert rows(app, WebhookDelivery)[0].delivered_at is None
    finally:
        elsewhere.stop()


def test_a_slow_receiver_times_out(make_app, receiver):
    app = make_app({"webhook_timeout_s": 0.3})
    add_hook(app, receiver.url)
    receiver.delay = 2
    emit(app)
    assert deliver(app).failed == 1
    (attempt,) = rows(app, WebhookAttempt)
    assert attempt.status is None and attempt.error.startswith("timeout")
    assert rows(app, WebhookDelivery)[0].delivered_at is None
    assert app.config["SETTINGS"].webhook_timeout_s == 0.3
    assert make_app().config["SETTINGS"].webhook_timeout_s == 5.0  # the contract's 5 s


def test_a_closed_port_is_a_failed_attempt_not_an_error(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    add_hook(app, f"http://127.0.0.1:{port}/")
    emit(app)
    assert deliver(app).failed == 1
    assert rows(app, WebhookAttempt)[0].error.startswith("connection failed")


def test_the_log_keeps_the_last_100_attempts(app, receiver):
    hook_id, _ = add_hook(app, receiver.url)
    with app.app_context(), transaction() as session:
        for n in range(100):
            session.add(WebhookAttempt(webhook_id=hook_id, event_id=f"evt_old{n}", status=500, duration_ms=1))
    emit(app)
    deliver(app)
    log = rows(app, WebhookAttempt)
    assert len(log) == 100
    assert log[0].event_id == "evt_old1" and log[-1].status == 200


def test_delivered_rows_are_forgotten_after_a_week_but_the_log_stays(app, receiver):
    add_hook(app, receiver.url)
    emit(app)
    deliver(app)
    with app.app_context():
        assert delivery.prune_delivered(utcnow() + timedelta(days=6)) == 0
        assert delivery.prune_delivered(utcnow() + timedelta(days=8)) == 1
    assert rows(app, WebhookDelivery) == [] and len(rows(app, WebhookAttempt)) == 1


def test_two_workers_never_send_one_delivery_twice(app, receiver):
    add_hook(app, receiver.url)
    for n in range(10):
        emit(app, data={"n": n})
    receiver.delay = 0.05
    results: list[delivery.Summary] = []

    def work() -> None:
        with app.app_context():
            results.append(delivery.deliver_due())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r.delivered for r in results) == 10
    assert sorted(e["data"]["n"] for e in receiver.events()) == list(range(10))


def test_the_cli_delivers_every_due_delivery_and_exits(app, receiver):
    add_hook(app, receiver.url)
    for n in range(3):
        emit(app, data={"n": n})
    result = app.test_cli_runner().invoke(args=["webhooks", "deliver"])
    assert result.exit_code == 0 and "delivered 3" in result.output
    assert sorted(e["data"]["n"] for e in receiver.events()) == [0, 1, 2]


def test_delivery_connects_to_the_address_it_resolved_with_the_hosts_name(app, receiver, monkeypatch):
    looked_up: list[str] = []

    def fake_dns(host, port, *args, **kwargs):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(safety, "getaddrinfo", fake_dns)
    add_hook(app, f"http://hooks.partner.test:{receiver.port}/in")
    emit(app)
    assert deliver(app).delivered == 1
    assert looked_up == ["hooks.partner.test"]  # once, at delivery
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.partner.test:{receiver.port}"


# -- the events the app emits --------------------------------------------------------------------------------
def test_uninstall_and_reauth_are_events(app, client, installer, sandbox, receiver):
    import base64

    installer.install(user_id=2001)
    installer.install(user_id=2002)
    add_hook(app, receiver.url, ["installation.uninstalled", "installation.reauth_required"])
    add_hook(app, receiver.url, ["goal.reached"])  # not subscribed: gets nothing
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    notice = {"client_id": CLIENT_ID, "company_id": 1001, "user_id": 2001, "timestamp": "1700000000"}
    resp = client.delete("/oauth/callback", json=notice, headers={"Authorization": "Basic " + basic})
    assert resp.status_code == 200
    # Repeating the notice changes nothing and records nothing.
    client.delete("/oauth/callback", json=notice, headers={"Authorization": "Basic " + basic})
    # Sam's refresh token is refused: reauthorization required.
    sandbox.set_knobs(refresh_error="invalid_grant")
    with app.app_context():
        from pd_app import lifecycle

        with transaction() as session:
            session.execute(update(Installation).values(refresh_token_used_at=None))
        outcome = lifecycle.refresh_due(get_session(), timedelta(days=30))
    assert outcome.reauth == [(1001, 2002)]
    deliveries = rows(app, WebhookDelivery)
    assert [d.event_type for d in deliveries] == ["installation.uninstalled", "installation.reauth_required"]
    deliver(app)
    got = receiver.events()
    assert [(e["type"], e["data"]) for e in got] == [
        ("installation.uninstalled", {"company_id": 1001, "user_id": 2001}),
        ("installation.reauth_required", {"company_id": 1001, "user_id": 2002}),
    ]


def test_committing_an_event_queues_a_delivery_run(app, receiver, monkeypatch):
    queued: list[str] = []
    jobs = app.extensions["pd_jobs"]
    monkeypatch.setattr(jobs, "enqueue", lambda name, *args: queued.append(name))
    emit(app)  # no webhook: nothing recorded, nothing queued
    assert queued == []
    add_hook(app, receiver.url)
    with app.app_context():
        with pytest.raises(RuntimeError), transaction() as session:
            events.emit(session, 1001, events.GOAL_REACHED, {})
            raise RuntimeError("rolled back")
        assert queued == []
        emit(app)
    assert queued == ["deliver_now"]


# -- production: where a webhook may point -------------------------------------------------------------------
PRODUCTION = {
    "PD_APP_ENV": "production",
    "SECRET_KEY": "s" * 40,
    "TOKEN_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    "PIPEDRIVE_CLIENT_ID": CLIENT_ID,
    "PIPEDRIVE_CLIENT_SECRET": CLIENT_SECRET,
    "PUBLIC_URL": "https://goals.example.com",
}


@pytest.fixture
def production(clean_db, tmp_path, monkeypatch) -> Iterator[Flask]:
    app = create_app(
        {"queue_path": str(tmp_path / "q.sqlite3")}, environ={**PRODUCTION, "DATABASE_URL": clean_db}
    )
    dns = {
        "hooks.partner.example": "93.184.216.34",
        "internal.partner.example": "10.1.2.3",
        "metadata.partner.example": "169.254.169.254",
        "v6.partner.example": "::ffff:127.0.0.1",
    }

    def fake_dns(host, port, *args, **kwargs):
        if host in dns:
            family = socket.AF_INET6 if ":" in dns[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (dns[host], port))]
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        raise socket.gaierror("unknown host")

    monkeypatch.setattr(safety, "getaddrinfo", fake_dns)
    app.extensions["test_dns"] = dns
    yield app
    app.extensions["pd_db"]["engine"].dispose()


def production_key(app: Flask) -> str:
    identity = Identity(1001, 2001, "acme", "Acme Sales Ltd", "Ada Admin", None, True)
    token = {
        "access_token": "a" * 20,
        "refresh_token": "r" * 20,
        "expires_in": 3600,
        "api_domain": "https://acme.pipedrive.com",
        "scope": "goals:full",
    }
    with app.app_context():
        save_grant(get_session(), identity, token)
    result = app.test_cli_runner().invoke(args=["keys", "create", "--company-id", "1001", "--name", "p"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://hooks.partner.example/in", "must use https://"),
        ("https://localhost/in", "127.0.0.1"),
        ("https://127.0.0.1/in", "127.0.0.1"),
        ("https://10.0.0.1/in", "10.0.0.1"),
        ("https://192.168.1.20/in", "192.168.1.20"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://[::1]/in", "::1"),
        ("https://[fe80::1]/in", "fe80::1"),
        ("https://[fd00::5]/in", "fd00::5"),
        ("https://[::ffff:10.0.0.1]/in", "::ffff:a00:1"),
        ("https://0.0.0.0/in", "0.0.0.0"),
        ("https://224.0.0.1/in", "224.0.0.1"),
        ("https://internal.partner.example/in", "10.1.2.3"),
        ("https://metadata.partner.example/in", "169.254.169.254"),
        ("https://v6.partner.example/in", "::ffff:7f00:1"),
        ("https://nowhere.partner.example/in", "does not resolve"),
    ],
)
def test_production_refuses_unsafe_webhook_urls_at_registration(production, url, says):
    client = production.test_client()
    key = production_key(production)
    resp = register(client, key, url)
    assert resp.status_code == 400, resp.get_json()
    payload = resp.get_json()
    assert payload["code"] == "validation_failed"
    (detail,) = payload["details"]
    assert detail["field"] == "url" and says in detail["message"]
    cli = production.test_cli_runner().invoke(args=["webhooks", "add", "--company-id", "1001", "--url", url])
    assert cli.exit_code != 0 and says in cli.output
    assert rows(production, Webhook) == []


def test_production_accepts_a_public_https_url(production):
    resp = register(production.test_client(), production_key(production), "https://hooks.partner.example/in")
    assert resp.status_code == 201 and resp.get_json()["data"]["secret"].startswith("whsec_")


def test_production_checks_again_at_every_delivery(production, receiver):
    # Registered while its name pointed at a public address; now it points at loopback (DNS rebinding).
    resp = register(production.test_client(), production_key(production), "https://hooks.partner.example/in")
    assert resp.status_code == 201
    production.extensions["test_dns"]["hooks.partner.example"] = "127.0.0.1"
    # And one stored as plain http to a loopback receiver (say, registered before the rules).
    with production.app_context(), transaction() as session:
        hook = session.get(Webhook, resp.get_json()["data"]["id"])
        twin = Webhook(
            company_id=1001, url=receiver.url, events=list(events.EVENT_TYPES), secret_enc=hook.secret_enc
        )
        twin.created_by = "test"
        session.add(twin)
    emit(production)
    assert deliver(production).failed == 2
    errors = sorted(a.error for a in rows(production, WebhookAttempt))
    assert errors[0].startswith("refused: url must use https://")
    assert errors[1].startswith("refused: url the host 'hooks.partner.example' resolves to 127.0.0.1")
    assert receiver.requests == []
    assert all(d.delivered_at is None for d in rows(production, WebhookDelivery))


# -- a real Huey consumer ------------------------------------------------------------------------------------
@pytest.fixture
def redis_queue():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


def worker_env(database_url: str, sandbox_url: str, redis_url: str) -> dict[str, str]:
    return {**app_environ(database_url, sandbox_url), "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}


def start_worker(tmp_path: Path, env: dict[str, str], name: str) -> Proc:
    flask = str(Path(sys.executable).parent / "flask")
    return Proc([flask, "--app", "app", "worker", "--threads", "1"], env, tmp_path / f"{name}.log")


def test_a_real_huey_consumer_delivers_what_was_queued(
    make_app, clean_db, sandbox_server, redis_queue, receiver, tmp_path
):
    app = make_app(REDIS_URL=redis_queue)
    add_hook(app, receiver.url)
    emit(app, data={"n": 1})  # committed: deliver_now is queued in Redis
    worker = start_worker(tmp_path, worker_env(clean_db, sandbox_server.url, redis_queue), "worker")
    try:
        wait_until(lambda: receiver.requests, 30, what="the delivery")
        wait_until(lambda: rows(app, WebhookDelivery)[0].delivered_at, 10, what="delivered_at")
        assert [e["data"] for e in receiver.events()] == [{"n": 1}]
    finally:
        worker.stop(signal.SIGTERM)
    assert worker.popen.returncode == 0, worker.tail()


def test_the_worker_stops_on_sigterm_without_losing_a_queued_delivery(
    make_app, clean_db, sandbox_server, redis_queue, receiver, tmp_path
):
    app = make_app(REDIS_URL=redis_queue)
    add_hook(app, receiver.url)
    receiver.delay = 2  # the first delivery is still being answered when SIGTERM comes
    env = worker_env(clean_db, sandbox_server.url, redis_queue)
    emit(app, data={"n": 1})
    first = start_worker(tmp_path, env, "first")
    try:
        wait_until(lambda: receiver.requests, 30, what="the first delivery to arrive")
        emit(app, data={"n": 2})  # queued while the worker's only thread is busy
        first.popen.send_signal(signal.SIGTERM)
        first.popen.wait(20)
    finally:
        first.stop()
    assert first.popen.returncode == 0, first.tail()
    # The running delivery finished before it exited; the queued one is still there.
    by_n = {json.loads(d.body)["data"]["n"]: d for d in rows(app, WebhookDelivery)}
    assert by_n[1].delivered_at is not None
    assert by_n[2].delivered_at is None
    # And its task is still in the queue, for the next worker to take (not only the row for a later sweep).
    assert app.extensions["pd_jobs"].huey.pending_count() >= 1
    receiver.delay = 0
    second = start_worker(tmp_path, env, "second")
    try:
        wait_until(lambda: len(receiver.requests) >= 2, 30, what="the queued delivery")
    finally:
        second.stop(signal.SIGTERM)
    assert [e["data"]["n"] for e in receiver.events()] == [1, 2]


# -- the README's receiver -----------------------------------------------------------------------------------
def readme_receiver() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Webhooks") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the Webhooks section has a python block"
    return match.group(1)


def test_the_readme_receiver_is_ten_lines_or_so():
    code = readme_receiver()
    assert len(code.strip().splitlines()) <= 14
    assert "Pd-App-Signature" in code and "hmac" in code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_receiver_accepts_a_real_delivery_and_rejects_a_tampered_one(app, tmp_path):
    import requests

    script = tmp_path / "receiver.py"
    script.write_text(readme_receiver())
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    hook_id, secret = add_hook(app, url)
    env = {"PD_APP_WEBHOOK_SECRET": secret, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    proc = Proc([sys.executable, str(script)], env, tmp_path / "receiver.log")
    try:

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        wait_until(up, 10, what="the README receiver")
        emit(app, data={"goal_id": "g1"})
        assert deliver(app).delivered == 1
        (attempt,) = rows(app, WebhookAttempt)
        assert 200 <= attempt.status < 300
        # A tampered body, an old timestamp, another secret, no header: refused.
        body = rows(app, WebhookDelivery)[0].body
        now = int(time.time())
        good = delivery.sign(secret, body, now)
        for data, header in [
            (body.replace(b"g1", b"g2"), good),
            (body, delivery.sign(secret, body, now - 600)),
            (body, delivery.sign("whsec_other", body, now)),
            (body, None),
            (body, "garbage"),
        ]:
            headers = {"Content-Type": "application/json"} | ({"Pd-App-Signature": header} if header else {})
            assert requests.post(url, data=data, headers=headers, timeout=5).status_code == 400, header
        assert requests.post(url, data=body, headers={"Pd-App-Signature": good}, timeout=5).status_code < 300
        assert hook_id
    finally:
        proc.stop()


def test_tokens_reencrypt_moves_webhook_secrets_to_the_new_key(make_app, receiver):
    from cryptography.fernet import Fernet

    app = make_app()
    _, secret = add_hook(app, receiver.url)
    new_key = Fernet.generate_key().decode()
    rotated = make_app(TOKEN_ENCRYPTION_KEYS=f"{new_key},{ENCRYPTION_KEY}")
    result = rotated.test_cli_runner().invoke(args=["tokens", "reencrypt"])
    assert result.exit_code == 0 and "Re-encrypted 1 webhook secret(s); 0 failed." in result.output
    new_only = make_app(TOKEN_ENCRYPTION_KEYS=new_key)
    with new_only.app_context():
        (hook,) = get_session().scalars(select(Webhook)).all()
        assert registry.secret_of(hook) == secret
    emit(new_only)
    assert deliver(new_only).delivered == 1
    assert verify(secret, receiver.requests[0]["headers"]["Pd-App-Signature"], receiver.requests[0]["body"])


# -- what the review found ----------------------------------------------------------------------------------
def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout(make_app):
    """A header line every 0.2 s, for ever: each read is quick, the whole answer never ends. Without a
    deadline on the whole exchange this delivery would hold its worker until the receiver stops."""
    stop = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.2):
            try:
                conn.sendall(b"X-Slow: y\r\n")
            except OSError:
                break
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    app = make_app({"webhook_timeout_s": 1.0})
    try:
        add_hook(app, f"http://127.0.0.1:{server.getsockname()[1]}/slow")
        emit(app)
        assert deliver(app).failed == 1
        (attempt,) = rows(app, WebhookAttempt)
        assert attempt.status is None and attempt.error.startswith("timeout")
    finally:
        stop.set()
        server.close()
        thread.join(5)


def test_what_a_receiver_answers_is_stored_clean_and_short(app, receiver):
    receiver.status, receiver.location = 302, "https://elsewhere.example/" + "a" * 3000
    add_hook(app, receiver.url)
    emit(app)
    deliver(app)
    (attempt,) = rows(app, WebhookAttempt)
    assert len(attempt.error) <= 500 and attempt.error.startswith("redirect to")


def test_a_panel_user_who_is_not_an_admin_may_not_manage_webhooks(make_app, sandbox_server, sandbox):
    import jwt as pyjwt

    from .conftest import Installer

    app = make_app({"jwt_secret": "panel-jwt-secret-" + "x" * 32})
    client = app.test_client()
    installer = Installer(client, sandbox_server.url)
    installer.install(user_id=2002)  # a seeded non-admin user of company 1001
    installer.close()
    secret = app.config["SETTINGS"].jwt_secret
    claims = {"companyId": 1001, "userId": 2002, "exp": int(time.time()) + 600}
    headers = {"Authorization": "Bearer " + pyjwt.encode(claims, secret, algorithm="HS256")}
    refused = client.post("/api/v1/app/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=headers)
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
    assert client.get("/api/v1/app/webhooks", headers=headers).status_code == 403
    assert rows(app, Webhook) == []


def test_an_id_too_large_for_the_column_is_not_found(app, client, key):
    resp = client.delete("/api/v1/app/webhooks/9223372036854775808", headers=auth(key))
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"
