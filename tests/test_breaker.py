"""The circuit breaker per Pipedrive host: its state machine on a clock the test moves, then the proxy with it
(calls counted at the sandbox: an open breaker sends nothing)."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from pd_app import create_app
from pd_app.db import get_session, transaction
from pd_app.models import Installation
from pd_app.pipedrive.breaker import Breakers

from .conftest import app_environ, close_app
from .test_retries import closed_port_url, install_and_key

FIND = "/api/v1/goals/find"
HOST = "acme.pipedrive.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[int]:
    return []


@pytest.fixture
def breakers(clock, changes) -> Breakers:
    return Breakers(threshold=3, cool_off_s=10.0, clock=clock, on_change=changes.append)


def fail(breakers: Breakers, times: int, host: str = HOST) -> None:
    for _ in range(times):
        verdict = breakers.admit(host)
        assert verdict.go
        breakers.record(host, failed=True, probe=verdict.probe)


# -- the state machine ---------------------------------------------------------------------------------------
def test_it_opens_after_threshold_consecutive_failures(breakers, changes):
    fail(breakers, 2)
    assert breakers.state(HOST) == "closed" and breakers.admit(HOST).go
    breakers.record(HOST, failed=True)
    assert breakers.state(HOST) == "open"
    verdict = breakers.admit(HOST)
    assert not verdict.go and verdict.retry_after == 10
    assert changes == [1]


def test_a_success_in_between_starts_the_count_again(breakers):
    fail(breakers, 2)
    breakers.record(HOST, failed=False)
    fail(breakers, 2)
    assert breakers.state(HOST) == "closed"
    fail(breakers, 1)
    assert breakers.state(HOST) == "open"


def test_retry_after_is_the_cool_off_left_rounded_up(breakers, clock):
    fail(breakers, 3)
    clock.now += 3.2
    assert breakers.admit(HOST).retry_after == 7
    clock.now += 6.5
    assert breakers.admit(HOST).retry_after == 1


def test_after_the_cool_off_exactly_one_probe_goes(breakers, clock):
    fail(breakers, 3)
    clock.now += 10
    assert breakers.state(HOST) == "half_open"
    probe = breakers.admit(HOST)
    assert probe.go and probe.probe
    for _ in range(5):  # while the probe is out, everyone else is still refused
        other = breakers.admit(HOST)
        assert not other.go and other.retry_after == 1


def test_a_successful_probe_closes_it(breakers, clock, changes):
    fail(breakers, 3)
    clock.now += 10
    probe = breakers.admit(HOST)
    breakers.record(HOST, failed=False, probe=probe.probe)
    assert breakers.state(HOST) == "closed"
    assert all(breakers.admit(HOST) == (True, False, 0) for _ in range(5))
    assert changes == [1, 0]
    fail(breakers, 2)  # and the count starts from nothing
    assert breakers.state(HOST) == "closed"


def test_a_failed_probe_opens_it_for_another_cool_off(breakers, clock, changes):
    fail(breakers, 3)
    clock.now += 10
    probe = breakers.admit(HOST)
    clock.now += 4  # the probe took a while
    breakers.record(HOST, failed=True, probe=probe.probe)
    assert breakers.state(HOST) == "open"
    assert breakers.admit(HOST).retry_after == 10  # counted from the probe's failure
    clock.now += 10
    assert breakers.admit(HOST).probe
    assert changes == [1, 1]


def test_late_answers_of_calls_sent_before_it_opened_do_not_count(breakers, clock):
    early = [breakers.admit(HOST) for _ in range(2)]  # on their way while the others fail
    fail(breakers, 3)
    clock.now += 10
    probe = breakers.admit(HOST)
    breakers.record(HOST, failed=False, probe=early[0].probe)
    breakers.record(HOST, failed=True, probe=early[1].probe)
    assert breakers.state(HOST) == "half_open" and not breakers.admit(HOST).go
    breakers.record(HOST, failed=False, probe=probe.probe)
    assert breakers.state(HOST) == "closed"


def test_each_host_has_its_own_breaker(breakers, changes):
    fail(breakers, 3, "acme.pipedrive.com")
    assert not breakers.admit("acme.pipedrive.com").go
    assert breakers.admit("globex.pipedrive.com").go
    fail(breakers, 3, "globex.pipedrive.com")
    assert breakers.open_count() == 2 and changes == [1, 2]


def test_opening_and_closing_are_logged_once_each(breakers, clock, caplog):
    caplog.set_level(logging.INFO, logger="pd_app.pipedrive.breaker")
    early = [breakers.admit(HOST) for _ in range(2)]
    fail(breakers, 3)
    for verdict in early:  # late failures while open: no second line
        breakers.record(HOST, failed=True, probe=verdict.probe)
    clock.now += 10
    probe = breakers.admit(HOST)
    breakers.record(HOST, failed=False, probe=probe.probe)
    lines = [r for r in caplog.records if r.name == "pd_app.pipedrive.breaker"]
    assert [r.getMessage().split(":")[0] for r in lines] == [
        "circuit breaker opened",
        "circuit breaker closed",
    ]
    assert lines[0].fields["host"] == HOST and lines[0].fields["consecutive_failures"] == 3


def test_admit_and_record_from_many_threads_keep_one_probe(breakers, clock):
    fail(breakers, 3)
    clock.now += 10
    verdicts = []
    start = threading.Barrier(16)

    def ask() -> None:
        start.wait()
        verdicts.append(breakers.admit(HOST))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(v.probe for v in verdicts) == 1 and sum(v.go for v in verdicts) == 1


# -- the proxy with it ---------------------------------------------------------------------------------------
@pytest.fixture
def app(clean_db, sandbox_server, sandbox):
    # One attempt per request (UPSTREAM_RETRIES=0), so each request is one failure or one refusal.
    app = create_app(
        overrides={"breaker_failures": 5, "breaker_cool_off_s": 10.0},
        environ=app_environ(clean_db, sandbox_server.url, UPSTREAM_RETRIES="0"),
    )
    yield app
    close_app(app)


@pytest.fixture
def key(installer, make_key, sandbox):
    installer.install(user_id=2001)
    sandbox.clear_calls()
    return make_key(company_id=1001)


@pytest.fixture
def proxy_clock(app) -> Clock:
    clock = Clock()
    app.extensions["pd_client"].breakers.clock = clock
    return clock


def sandbox_host(sandbox_server) -> str:
    return urlsplit(sandbox_server.url).netloc


def open_breakers(client) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    [value] = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "pd_app_upstream_breakers_open"
    ]
    return value


def test_after_five_failures_the_next_call_sends_nothing(client, key, sandbox, proxy_clock):
    sandbox.set_knobs(force_api_status={"status": 502, "count": 100})
    for _ in range(5):
        resp = client.get(FIND, headers={"x-api-token": key})
        assert resp.status_code == 502 and resp.get_json()["code"] == "upstream_error"
    assert sandbox.count(FIND) == 5
    proxy_clock.now += 2.5
    for _ in range(3):
        refused = client.get(FIND, headers={"x-api-token": key})
        assert refused.status_code == 503 and refused.get_json()["code"] == "upstream_unavailable"
        assert refused.headers["Retry-After"] == "8"  # the cool-off left
    assert sandbox.count(FIND) == 5
    # Writes too: nothing is sent, so their outcome is known (not made).
    refused_write = client.delete("/api/v1/goals/1", headers={"x-api-token": key})
    assert refused_write.status_code == 503 and refused_write.headers["Retry-After"] == "8"
    assert sandbox.count("/api/") == 5
    assert open_breakers(client) == 1


def test_only_failures_in_a_row_count_and_4xx_answers_are_not_failures(
    app, client, key, sandbox, proxy_clock
):
    sandbox.set_knobs(force_api_status={"status": 503, "count": 4, "retry_after": 0})
    for _ in range(4):
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 503
    for status in (404, 403, 429):  # Pipedrive answered: the host is up
        sandbox.set_knobs(force_api_status={"status": status, "count": 1})
        assert client.get(FIND, headers={"x-api-token": key}).status_code == status
    with app.app_context():  # the 429's throttle (proxy/throttle.py) is not what this test is about
        with transaction() as session:
            session.execute(update(Installation).values(throttled_until=None))
    sandbox.set_knobs(force_api_status={"status": 500, "count": 4})
    for _ in range(4):
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 502
    assert sandbox.count(FIND) == 11  # never 5 in a row: every one was sent


def test_half_open_lets_one_probe_through_and_its_success_closes(
    app, client, key, sandbox, sandbox_server, proxy_clock
):
    sandbox.set_knobs(force_api_status={"status": 504, "count": 5})
    for _ in range(5):
        client.get(FIND, headers={"x-api-token": key})
    proxy_clock.now += 10
    # The probe is slow; while it is out, another reader is refused at once and sends nothing.
    sandbox.set_knobs(api_delay_s=0.5)
    probe_answer = {}
    probe = threading.Thread(
        target=lambda: probe_answer.update(resp=app.test_client().get(FIND, headers={"x-api-token": key}))
    )
    probe.start()
    circuits = app.extensions["pd_client"].breakers._circuits
    host = sandbox_host(sandbox_server)
    deadline = time.monotonic() + 5
    while not circuits[host].probing and time.monotonic() < deadline:
        time.sleep(0.005)
    # Another query: the same one would share the probe's call (proxy/flight.py) and get its answer.
    meanwhile = client.get(FIND + "?title=other", headers={"x-api-token": key})
    assert meanwhile.status_code == 503 and meanwhile.headers["Retry-After"] == "1"
    probe.join(5)
    assert probe_answer["resp"].status_code == 200
    assert sandbox.count(FIND) == 6  # five failures and the probe
    sandbox.set_knobs(api_delay_s=0.0)
    for _ in range(3):
        assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert sandbox.count(FIND) == 9
    assert open_breakers(client) == 0


def test_a_failed_probe_opens_it_again(client, key, sandbox, proxy_clock):
    sandbox.set_knobs(force_api_status={"status": 503, "count": 6, "retry_after": 0})
    for _ in range(5):
        client.get(FIND, headers={"x-api-token": key})
    proxy_clock.now += 10
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 503  # the probe, sent and failed
    assert sandbox.count(FIND) == 6
    refused = client.get(FIND, headers={"x-api-token": key})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "10"
    assert sandbox.count(FIND) == 6


def test_an_unreachable_host_opens_it_too(clean_db, sandbox_server, sandbox):
    closed = closed_port_url()
    app = create_app(
        overrides={"breaker_failures": 5},
        environ=app_environ(
            clean_db,
            sandbox_server.url,
            UPSTREAM_RETRIES="0",
            PIPEDRIVE_API_DOMAINS=f"{sandbox_server.url},{closed}",
        ),
    )
    try:
        key = install_and_key(app, sandbox_server, sandbox)
        with app.app_context():
            get_session().execute(update(Installation).values(api_domain=closed))
            get_session().commit()
        client = app.test_client()
        for _ in range(5):
            assert client.get(FIND, headers={"x-api-token": key}).status_code == 503
        refused = client.get(FIND, headers={"x-api-token": key})
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 9
        text = client.get("/metrics").get_data(as_text=True)
        outcomes = {
            s.labels["outcome"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "pd_app_upstream_calls_total" and s.labels.get("op") == "find"
        }
        assert outcomes == {"unreachable": 5, "circuit_open": 1}
    finally:
        close_app(app)


def test_an_open_breaker_stops_a_read_between_its_retries(clean_db, sandbox_server, sandbox):
    """Retries stop as soon as the breaker opens: the refusal is answered at once, not waited out."""
    app = create_app(
        overrides={"breaker_failures": 2, "upstream_backoff_s": 0.001},
        environ=app_environ(clean_db, sandbox_server.url),
    )
    try:
        key = install_and_key(app, sandbox_server, sandbox)
        sandbox.set_knobs(force_api_status={"status": 502, "count": 10})
        resp = app.test_client().get(FIND, headers={"x-api-token": key})
        assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 9
        assert sandbox.count(FIND) == 2  # UPSTREAM_RETRIES=2 would have made it 3
    finally:
        close_app(app)
