"""The rules that guard a company's Pipedrive budget, in one process (tests/test_budget_processes.py runs
them across gunicorn workers): KEY_RATE_LIMIT, COMPANY_DAILY_TOKEN_CAP and its ledger, throttled means
throttled, one upstream call for identical concurrent reads, the caching headers and Server-Timing.

Each test counts what reached the sandbox: a refusal must send nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, update

from pd_app import create_app
from pd_app.models import BudgetDay, Installation, utcnow
from pd_app.proxy.budget import Ledger, next_midnight

from .conftest import Installer, app_environ, close_app

FIND = "/api/v1/goals/find"
GOAL = {
    "title": "Budgeted",
    "assignee": {"id": 2001, "type": "person"},
    "type": {"name": "deals_started", "params": {}},
    "expected_outcome": {"target": 5, "tracking_metric": "quantity"},
    "duration": {"start": "2026-01-01", "end": None},
    "interval": "monthly",
}


@pytest.fixture
def make_app(clean_db, sandbox_server, sandbox) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(**extra: str) -> Flask:
        app = create_app(environ=app_environ(clean_db, sandbox_server.url, **extra))
        made.append(app)
        return app

    yield make
    for app in made:
        close_app(app)


def install(app: Flask, sandbox_server, sandbox, user_id: int = 2001) -> None:
    helper = Installer(app.test_client(), sandbox_server.url)
    helper.install(user_id=user_id)
    helper.close()
    sandbox.clear_calls()


def new_key(app: Flask, company_id: int = 1001, *args: str) -> str:
    result = app.test_cli_runner().invoke(
        args=["keys", "create", "--company-id", str(company_id), "--name", "t", *args]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def read_together(app: Flask, key: str, reads: list[tuple[str, dict]]) -> list:
    """Each (query, headers) read from its own thread and client, released together; their responses."""
    barrier = threading.Barrier(len(reads))

    def read(one: tuple[str, dict]):
        client = app.test_client()
        barrier.wait(5)
        return client.get(FIND + one[0], headers={"x-api-token": key, **one[1]})

    with ThreadPoolExecutor(len(reads)) as pool:
        return list(pool.map(read, reads))


def envelope_code(resp) -> str:
    return resp.get_json()["code"]


# -- KEY_RATE_LIMIT ---------------------------------------------------------------------------------------
def test_a_key_over_its_own_limit_gets_429_and_nothing_reaches_pipedrive(make_app, sandbox_server, sandbox):
    app = make_app(KEY_RATE_LIMIT="3/minute")
    install(app, sandbox_server, sandbox)
    key, other = new_key(app), new_key(app)
    client = app.test_client()
    answers = [client.get(FIND, headers={"x-api-token": key}) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert envelope_code(refused) == "rate_limited"
    assert "3 per 1 minute" in refused.get_json()["error"] or "3/minute" in refused.get_json()["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert sandbox.count(FIND) == 3
    # Another key of the same company has its own count.
    assert client.get(FIND, headers={"x-api-token": other}).status_code == 200
    assert sandbox.count(FIND) == 4


def test_the_limit_counts_requests_that_fail_validation_too(make_app, sandbox_server, sandbox):
    app = make_app(KEY_RATE_LIMIT="2/minute")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    assert client.get(FIND + "?is_active=maybe", headers={"x-api-token": key}).status_code == 400
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert envelope_code(client.get(FIND, headers={"x-api-token": key})) == "rate_limited"
    assert sandbox.count(FIND) == 1


def test_panel_callers_are_limited_by_company_and_user(make_app, sandbox_server, sandbox):
    import jwt

    app = make_app(KEY_RATE_LIMIT="2/minute", PIPEDRIVE_JWT_SECRET="panel-secret-" + "x" * 32)
    install(app, sandbox_server, sandbox)
    claims = {"companyId": 1001, "userId": 2001, "exp": int(datetime.now(UTC).timestamp()) + 600}
    token = jwt.encode(claims, app.config["SETTINGS"].jwt_secret, algorithm="HS256")
    client = app.test_client()
    ada = {"Authorization": "Bearer " + token}
    codes = [client.get(FIND, headers=ada).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert sandbox.count(FIND) == 2


def test_an_unauthenticated_request_is_told_so_not_rate_limited(make_app, sandbox_server, sandbox):
    app = make_app(KEY_RATE_LIMIT="1/minute")
    client = app.test_client()
    codes = {client.get(FIND, headers={"x-api-token": "pdk_nope.x"}).status_code for _ in range(3)}
    assert codes == {401}


# -- COMPANY_DAILY_TOKEN_CAP --------------------------------------------------------------------------------
def test_the_cap_refuses_before_sending_and_the_installation_shows_the_budget(
    make_app, sandbox_server, sandbox
):
    # The install's /users/me (2), two finds (20 each) and one add (10) fit; a third find does not.
    app = make_app(COMPANY_DAILY_TOKEN_CAP="52")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    codes = [client.get(FIND, headers={"x-api-token": key}).status_code for _ in range(2)]
    refused = client.get(FIND, headers={"x-api-token": key})
    assert codes == [200, 200] and refused.status_code == 429
    assert envelope_code(refused) == "budget_exhausted"
    to_midnight = (next_midnight(utcnow()) - utcnow()).total_seconds()
    assert abs(int(refused.headers["Retry-After"]) - to_midnight) <= 5
    assert sandbox.count(FIND) == 2
    # A write of 10 still fits in what is left; then nothing does.
    assert client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key}).status_code == 200
    assert envelope_code(client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key})) == (
        "budget_exhausted"
    )
    assert sandbox.count("/api/v1/goals", method="POST") == 1
    budget = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]["budget"]
    assert budget["spent_today"] == 52 and budget["cap"] == 52
    assert budget["resets_at"] == next_midnight(utcnow()).isoformat().replace("+00:00", "Z")


def test_a_cap_of_zero_counts_but_never_refuses(make_app, sandbox_server, sandbox):
    app = make_app(COMPANY_DAILY_TOKEN_CAP="0")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    assert all(client.get(FIND, headers={"x-api-token": key}).status_code == 200 for _ in range(12))
    budget = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]["budget"]
    assert budget == {**budget, "spent_today": 2 + 12 * 20, "cap": 0}


def test_the_install_users_me_call_is_charged_to_the_company(make_app, sandbox_server, sandbox):
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    budget = app.test_client().get("/api/v1/app/installation", headers={"x-api-token": key})
    assert budget.get_json()["data"]["budget"]["spent_today"] == 2  # GET /users/me costs 2


def test_the_tokens_spent_are_counted_in_metrics_by_operation(make_app, sandbox_server, sandbox):
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    client.get(FIND, headers={"x-api-token": key})
    client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'pd_app_pipedrive_tokens_total{op="find"} 20.0' in text
    assert 'pd_app_pipedrive_tokens_total{op="add"} 10.0' in text
    assert 'pd_app_pipedrive_tokens_total{op="users_me"} 2.0' in text
    assert "company" not in "".join(line for line in text.splitlines() if "tokens_total" in line)


# The ledger itself: two Ledger objects on one database are two processes of a deployment.
@pytest.fixture
def engine(clean_db):
    engine = create_engine(clean_db)
    yield engine
    engine.dispose()


def _ledger(engine, cap: int, chunk: int = 200) -> Ledger:
    return Ledger(engine, cap, chunk)


def _row(engine, company_id: int = 7) -> BudgetDay | None:
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        return session.scalar(select(BudgetDay).where(BudgetDay.company_id == company_id))


def test_two_processes_never_spend_more_than_the_cap_together(engine, app):
    with app.app_context():  # the ledger counts into the app's metrics
        first, second = _ledger(engine, cap=300), _ledger(engine, cap=300)
        spent, refused = 0, 0
        for i in range(40):
            book = (first, second)[i % 2]
            try:
                spent += book.charge(7, "find").cost
            except Exception as exc:  # noqa: BLE001
                assert type(exc).__name__ == "BudgetExhausted"
                refused += 1
        # Each process holds at most one unspent chunk; settling gives it back and the other can use it.
        assert spent <= 300
        first.settle()
        second.settle()
        while True:
            try:
                spent += second.charge(7, "find").cost
            except Exception:  # noqa: BLE001
                break
        second.settle()
    assert spent == 300
    row = _row(engine)
    assert row is not None and row.spent == 300 and row.reserved == 300


def test_claims_are_chunks_and_writes_are_rare(engine, app):
    with app.app_context():
        book = _ledger(engine, cap=100_000, chunk=200)
        for _ in range(10):
            book.charge(7, "find")  # 10 x 20 = the first chunk
        row = _row(engine)
        assert row is not None and row.reserved == 200 and row.spent == 0  # one claim, nothing settled yet
        book.charge(7, "find")
        assert _row(engine).reserved == 600  # a busy process claims twice as much the next time
        for _ in range(20):
            book.charge(7, "find")  # 31 x 20 = 620: a third claim, of 800
        assert _row(engine).reserved == 1400
        book.settle()
    row = _row(engine)
    assert row.spent == 620 and row.reserved == 620  # the unused 780 went back
    with app.app_context():
        book.charge(7, "find")  # after a settle, chunks start small again
    assert _row(engine).reserved == 820


def test_a_chunk_that_does_not_fit_under_the_cap_is_not_taken(engine, app):
    with app.app_context():
        book = _ledger(engine, cap=250, chunk=200)
        for _ in range(12):
            try:
                book.charge(7, "find")
            except Exception:  # noqa: BLE001
                break
        book.settle()
    row = _row(engine)
    assert row.spent == 240 and row.reserved == 240  # 12 finds fit in 250: 200 + 20 + 20, then none


def test_a_call_that_never_left_is_refunded(engine, app):
    with app.app_context():
        book = _ledger(engine, cap=100)
        charge = book.charge(7, "find")
        book.refund(charge)
        book.settle()
    row = _row(engine)
    assert row is not None and row.spent == 0 and row.reserved == 0


def test_yesterdays_spending_does_not_count_today(engine, app):
    from sqlalchemy.orm import Session

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    with Session(engine) as session, session.begin():
        session.add(BudgetDay(company_id=7, day=yesterday, reserved=100, spent=100))
    with app.app_context():
        book = _ledger(engine, cap=100)
        assert book.charge(7, "find").cost == 20


# -- throttled means throttled -------------------------------------------------------------------------------
def test_after_a_pipedrive_429_the_proxy_answers_429_itself_until_the_reset(
    make_app, sandbox_server, sandbox
):
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    sandbox.set_knobs(force_api_status={"status": 429, "count": 1, "retry_after": 40})
    first = client.get(FIND, headers={"x-api-token": key})
    assert first.status_code == 429 and envelope_code(first) == "rate_limited"
    assert sandbox.count(FIND) == 1
    # Pipedrive would answer again now (its forced 429 is spent), but the reset it gave is 40 s away.
    held = [client.get(FIND, headers={"x-api-token": key}) for _ in range(3)]
    held.append(client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key}))
    assert {r.status_code for r in held} == {429}
    assert {envelope_code(r) for r in held} == {"rate_limited"}
    assert all(35 <= int(r.headers["Retry-After"]) <= 40 for r in held)
    assert sandbox.count(FIND) == 1 and sandbox.count("/api/v1/goals", method="POST") == 0
    shown = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]
    assert shown["throttled_until"] is not None
    # Once the reset has passed, calls go out again.
    with app.app_context():
        from pd_app.db import get_session, transaction

        with transaction() as session:
            session.execute(update(Installation).values(throttled_until=utcnow() - timedelta(seconds=1)))
        get_session().close()
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert sandbox.count(FIND) == 2


def test_the_reset_is_the_later_of_retry_after_and_x_ratelimit_reset():
    from pd_app.pipedrive.api import THROTTLE_DEFAULT_WAIT_S, UpstreamResponse

    def wait(**headers: str) -> int:  # what the throttle stores and the first 429 says (raise_for_status)
        return UpstreamResponse(429, b"{}", headers).throttle_wait

    assert wait(**{"retry-after": "7", "x-ratelimit-reset": "12"}) == 12
    assert wait(**{"retry-after": "9"}) == 9
    assert wait(**{"x-ratelimit-reset": "3"}) == 3
    assert wait() == THROTTLE_DEFAULT_WAIT_S
    assert wait(**{"retry-after": "soon"}) == THROTTLE_DEFAULT_WAIT_S


def test_a_throttle_is_per_installation(make_app, sandbox_server, sandbox):
    app = make_app()
    install(app, sandbox_server, sandbox, user_id=2001)
    install(app, sandbox_server, sandbox, user_id=2002)
    ada, bob = new_key(app, 1001, "--user-id", "2001"), new_key(app, 1001, "--user-id", "2002")
    client = app.test_client()
    sandbox.set_knobs(force_api_status={"status": 429, "count": 1, "retry_after": 30})
    assert client.get(FIND, headers={"x-api-token": ada}).status_code == 429
    assert client.get(FIND, headers={"x-api-token": bob}).status_code == 200
    assert client.get(FIND, headers={"x-api-token": ada}).status_code == 429
    assert sandbox.count(FIND) == 2


# -- one upstream call for many readers ---------------------------------------------------------------------
def test_identical_concurrent_reads_share_one_upstream_call(make_app, sandbox_server, sandbox):
    app = make_app()  # the cache is off (GOALS_CACHE_TTL=0): only the sharing can save calls
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    sandbox.set_knobs(api_delay_s=1.5)  # every reader arrives while the call is out, even on a busy machine
    responses = read_together(app, key, [("", {})] * 8)
    answers = [(r.status_code, r.data, r.headers.get("Server-Timing", "")) for r in responses]
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, body, _ in answers}) == 1
    assert sandbox.count(FIND) == 1
    timings = [timing for _, _, timing in answers]
    assert sum("upstream;dur=" in t for t in timings) == 1  # only the leader called Pipedrive
    assert sum('cache;desc="shared"' in t for t in timings) == 7


def test_different_queries_are_not_shared(make_app, sandbox_server, sandbox):
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    sandbox.set_knobs(api_delay_s=0.3)
    answers = read_together(app, key, [("?is_active=true", {}), ("?is_active=false", {})])
    assert [r.status_code for r in answers] == [200, 200]
    assert sandbox.count(FIND) == 2


def test_a_shared_failure_reaches_every_waiting_reader_once(make_app, sandbox_server, sandbox):
    app = make_app(UPSTREAM_RETRIES="0")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    sandbox.set_knobs(api_delay_s=1.5, force_api_status={"status": 404, "count": 5})
    assert {r.status_code for r in read_together(app, key, [("", {})] * 4)} == {404}
    assert sandbox.count(FIND) == 1


# -- caching headers and Server-Timing ----------------------------------------------------------------------
def test_reads_carry_x_cache_etag_and_private_no_cache(make_app, sandbox_server, sandbox):
    app = make_app(GOALS_CACHE_TTL="30")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    first = client.get(FIND, headers={"x-api-token": key})
    second = client.get(FIND, headers={"x-api-token": key})
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.headers["ETag"] == second.headers["ETag"] and first.headers["ETag"].startswith('"')
    assert first.headers["Cache-Control"] == "private, no-cache"
    assert sandbox.count(FIND) == 1
    # A conditional read: 304, no body, same validators.
    again = client.get(FIND, headers={"x-api-token": key, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == first.headers["ETag"]
    weak = client.get(
        FIND, headers={"x-api-token": key, "If-None-Match": 'W/"x", W/' + first.headers["ETag"]}
    )
    assert weak.status_code == 304
    other = client.get(FIND, headers={"x-api-token": key, "If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data


def test_cache_control_no_cache_from_the_caller_skips_the_cache(make_app, sandbox_server, sandbox):
    app = make_app(GOALS_CACHE_TTL="30")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    client.get(FIND, headers={"x-api-token": key})
    fresh = client.get(FIND, headers={"x-api-token": key, "Cache-Control": "no-cache"})
    assert fresh.status_code == 200 and fresh.headers["X-Cache"] == "MISS"
    assert sandbox.count(FIND) == 2
    assert client.get(FIND, headers={"x-api-token": key}).headers["X-Cache"] == "HIT"  # the fresh one


def test_the_etag_changes_when_the_goals_do(make_app, sandbox_server, sandbox):
    app = make_app(GOALS_CACHE_TTL="30")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    before = client.get(FIND, headers={"x-api-token": key}).headers["ETag"]
    assert client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key}).status_code == 200
    after = client.get(FIND, headers={"x-api-token": key, "If-None-Match": before})
    assert after.status_code == 200 and after.headers["ETag"] != before


def test_server_timing_says_where_the_time_went(make_app, sandbox_server, sandbox):
    app = make_app(GOALS_CACHE_TTL="30")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    miss = client.get(FIND, headers={"x-api-token": key}).headers["Server-Timing"]
    hit = client.get(FIND, headers={"x-api-token": key}).headers["Server-Timing"]
    write = client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key}).headers["Server-Timing"]
    refused = client.get(FIND, headers={"x-api-token": "pdk_bad.x"}).headers["Server-Timing"]
    assert miss.startswith("app;dur=") and "upstream;dur=" in miss and 'cache;desc="miss"' in miss
    assert "upstream;dur=" not in hit and 'cache;desc="hit"' in hit
    assert "app;dur=" in write and "upstream;dur=" in write
    assert refused.startswith("app;dur=") and "upstream" not in refused
    assert "Server-Timing" not in client.get("/api/openapi.json").headers


# -- what the review of the rules found ---------------------------------------------------------------------
def test_a_key_limit_with_two_windows_holds_across_pruning():
    from limits import parse_many

    from pd_app.proxy.keylimit import LocalWindows

    windows = LocalWindows()
    windows.PRUNE_EVERY = 3  # prune often: each entry must keep its own window's end
    second, minute = parse_many("1000/second;5/minute")
    allowed = 0
    for _ in range(40):
        if windows.hit(second, "key", "1") is None and windows.hit(minute, "key", "1") is None:
            allowed += 1
    assert allowed == 5


def test_a_call_refused_before_sending_is_not_charged(make_app, sandbox_server, sandbox):
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    with app.app_context():
        from pd_app.db import get_session

        session = get_session()
        session.execute(update(Installation).values(api_domain="https://elsewhere.example.com"))
        session.commit()
    client = app.test_client()
    refused = client.get(FIND, headers={"x-api-token": key})
    assert refused.status_code == 502 and envelope_code(refused) == "upstream_error"
    assert "upstream" not in refused.headers["Server-Timing"]  # nothing was sent
    budget = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]["budget"]
    assert budget["spent_today"] == 2  # the install's /users/me only


def test_the_first_429_says_the_wait_the_throttle_holds(make_app, sandbox_server, sandbox):
    app = make_app()
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    client = app.test_client()
    sandbox.set_knobs(force_api_status={"status": 429, "count": 1, "retry_after": 25})
    first = client.get(FIND, headers={"x-api-token": key})
    held = client.get(FIND, headers={"x-api-token": key})
    assert int(first.headers["Retry-After"]) == 25
    assert 24 <= int(held.headers["Retry-After"]) <= int(first.headers["Retry-After"])


def test_a_no_cache_read_never_joins_a_read_that_may_use_the_cache(make_app, sandbox_server, sandbox):
    app = make_app(GOALS_CACHE_TTL="30")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    sandbox.set_knobs(api_delay_s=1.5)  # every reader arrives while the call is out, even on a busy machine
    answers = read_together(app, key, [("", {}), ("", {"Cache-Control": "no-cache"})])
    timings = [r.headers["Server-Timing"] for r in answers]
    assert sandbox.count(FIND) == 2
    assert all("upstream;dur=" in t for t in timings)


def test_with_the_cache_off_a_write_still_starts_a_new_generation(
    make_app, sandbox_server, sandbox, clean_db
):
    from sqlalchemy.orm import Session

    from pd_app.models import CacheGeneration

    app = make_app(GOALS_CACHE_TTL="0")
    install(app, sandbox_server, sandbox)
    key = new_key(app)
    assert app.test_client().post("/api/v1/goals", json=GOAL, headers={"x-api-token": key}).status_code == 200
    engine = create_engine(clean_db)
    with Session(engine) as session:
        assert session.get(CacheGeneration, 1001).generation == 2  # before and after the write
    engine.dispose()
