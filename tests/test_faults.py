"""Faults under a steady load: nothing lost, no 500 (issue 11, item 2).

Each test runs one scenario of tests/faults.py (the app under real gunicorn, the sandbox as a process of
its own, a load of a few requests a second from tests/steady.py) and checks, request by request, what the
fault did: every request answered, no 5xx but a PostgreSQL outage's 503 with Retry-After, no connection
reset, no goal made or lost behind the caller's back, and recovery without restarting anything. Redis and
PostgreSQL are private servers the tests stop and start (tests/services.py), never the machine's. The
figures of one run are in bench/RESULTS.md ("Faults under load"; `make bench-faults`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import faults
from .faults import Report, Rig
from .procs import SandboxProcess
from .services import PostgresServer, RedisServer
from .steady import Shot, Tally

pytestmark = [
    pytest.mark.scale,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers"),
]


@pytest.fixture
def rig(clean_db: str, sandbox_process: SandboxProcess, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(sandbox_process, tmp_path, clean_db)
    try:
        yield rig
    finally:
        rig.close()
        sandbox_process.knobs(token_delay_s=0.0, api_delay_s=0.0)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_server(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.close()


def show(report: Report, shots: list[Shot] | Tally, limit: int = 12) -> str:
    """The shots that broke a rule, and the end of the app's log, for the failure message."""
    listed = shots.shots if isinstance(shots, Tally) else shots
    start = min(report.marks.values(), default=0.0)
    lines = [
        f"  {s.label} #{s.index} sent at {s.sent - start:+.2f} s, ended at {s.ended - start:+.2f} s: "
        f"{s.status or s.error} {s.code or ''} retry-after={s.retry_after}"
        for s in listed[:limit]
    ]
    tail = "\n".join(report.app_log.splitlines()[-25:])
    return f"{report.tally.summary()}\nmarks: {report.marks}\n" + "\n".join(lines) + f"\n--- app log:\n{tail}"


# A kill's mark is taken just before the signal is sent: a request the load sent on a kept-alive connection
# of that worker in the instant between the two (or before its client could see the connection close) is lost
# to the kill as surely as one that was already in flight.
KILL_SETTLE_S = 0.05


def in_flight_at(shot: Shot, moment: float) -> bool:
    return shot.sent <= moment + KILL_SETTLE_S and moment <= shot.ended


# -- Redis ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pause", [False, True], ids=["killed", "hung"])
def test_redis_away_and_back_costs_no_request(rig: Rig, redis_server: RedisServer, pause: bool):
    """Redis killed and started again (back empty), or hung (SIGSTOP: connections open, no answer) and
    continued: each Redis call gives up within its timeout and the process goes on without it."""
    report = faults.redis_restart(rig, redis_server, pause=pause)
    tally = report.tally
    not_ok = tally.where(lambda s: s.status != 200)
    # Every request answered, and answered well: the cache, the shared reads and the key limit fall back
    # to each process's own while Redis is away. (Hung, each Redis call first waits its 0.5 s: fewer
    # requests go out in the same time, none fails.)
    assert not_ok.sent == 0, show(report, not_ok)
    during = tally.sent_between(report.marks["down"], report.marks["up"])
    assert during.sent >= (8 if pause else 20) and during.by_status == {200: during.sent}
    assert {label for label in (s.label for s in during.shots)} == {"find", "add"}

    # /readyz stayed ready (200) throughout and said what it was doing without Redis, to the operator.
    readiness = report.seen["readiness"]
    assert {status for _, status, _ in readiness} == {200}
    assert report.seen["redis_before"] == "ok"
    degraded = [state for _, _, state in readiness if state != "ok"]
    assert degraded and all(state.startswith("degraded: unreachable") for state in degraded), degraded
    assert readiness[-1][2] == "ok"

    # Nothing restarted: the same two workers served before, during and after, and the job worker (its
    # queue is in Redis) lived through it and takes tasks again.
    assert report.seen["workers_after"] == report.seen["workers_before"]
    assert report.seen["worker_alive"] and report.seen["worker_took_task"]
    # Every goal the callers were told was added exists at Pipedrive.
    assert faults.add_titles(tally, lambda s: s.status == 200) <= report.seen["sandbox_titles"]
    # The operator's log says it, without a line per request.
    assert "REDIS_URL is not answering" in report.app_log
    assert '"level": "ERROR"' not in report.app_log, show(report, [])


# -- PostgreSQL ----------------------------------------------------------------------------------------------
def test_postgresql_restarted_gives_503_with_retry_after_then_recovers_by_itself(
    rig: Rig, postgres_server: PostgresServer
):
    report = faults.postgres_restart(rig, postgres_server)
    tally, marks = report.tally, report.marks
    assert tally.unanswered == {}, show(report, tally.where(lambda s: not s.answered))
    refused = tally.where(lambda s: s.status != 200)
    assert set(refused.by_status) == {503}, show(report, refused.where(lambda s: s.status != 503))
    # Every 503 says when to come back; the API's in its envelope.
    assert all(s.retry_after and int(s.retry_after) >= 1 for s in refused.shots), show(report, refused)
    api = refused.where(lambda s: s.label != "readyz")
    assert {s.code for s in api.shots} == {"upstream_unavailable"}, show(report, api)
    assert api.sent >= 5, "the outage was not seen"
    # Only while the database was away: nothing refused before it stopped, nor once the app had recovered.
    assert all(s.ended >= marks["down"] and s.sent <= marks["recovered"] for s in refused.shots), show(
        report, refused
    )
    after = tally.where(lambda s: s.sent > marks["recovered"])
    assert after.sent >= 10 and after.by_status == {200: after.sent}, show(report, after)

    status, body = report.seen["readyz_down"]
    assert status == 503 and body["status"] == "not ready"
    assert body["checks"]["database"].startswith("unreachable"), body
    ready = {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}
    assert report.seen["readyz_up"] == (200, ready)
    # Recovered by itself: the same workers, no restart.
    assert report.seen["workers_after"] == report.seen["workers_before"]
    # Nothing lost, nothing done behind a 503 ("nothing was sent to Pipedrive" is true).
    titles = report.seen["sandbox_titles"]
    assert faults.add_titles(tally, lambda s: s.status == 200) <= titles
    assert faults.add_titles(tally, lambda s: s.status == 503) & titles == set()


# -- SIGTERM ---------------------------------------------------------------------------------------------
def test_sigterm_lets_requests_in_flight_finish_and_resets_no_connection(rig: Rig):
    report = faults.sigterm(rig)
    tally, term = report.tally, report.marks["term"]
    assert report.seen["exit_code"] == 0, report.app_log[-2000:]

    # A shot's `sent` is stamped before it connects: a new client stamped just before the signal may reach the
    # server just after it, and be refused, as one sent after it is. Judged with those (below).
    def after_signal(s: Shot) -> bool:
        return s.sent >= term or (s.error == "refused" and s.ended >= term)

    before = tally.where(lambda s: not after_signal(s))
    in_flight = before.where(lambda s: s.ended > term)
    # The pipeline was full (one slow request per load thread) and every one of them was answered in full.
    assert in_flight.sent >= 4, show(report, before)
    assert before.by_status == {200: before.sent}, show(report, before.where(lambda s: s.status != 200))
    api = before.where(lambda s: s.label != "healthz")
    assert all(isinstance(s.body, dict) and s.body.get("success") is True for s in api.shots)
    # After the signal: answered in full on a connection that was already open, or refused (the listening
    # socket is closed: nothing was read, nothing was done). Never a reset, nor a connection dropped
    # mid-answer: not even for the new clients (a health check each on a new connection, ten a second),
    # whose connections would otherwise wait, never accepted, and be reset when the workers exit.
    after = tally.where(after_signal)
    assert set(after.by_status) <= {200}, show(report, after)
    assert set(after.unanswered) <= {"refused"}, show(report, after.where(lambda s: not s.answered))
    arrivals = after.where(lambda s: s.label == "healthz")
    assert arrivals.sent >= 20 and arrivals.unanswered["refused"] >= 10, show(report, arrivals)
    # No partial write: exactly the adds answered 200 exist at Pipedrive; none that got no answer.
    titles = {t for t in report.seen["sandbox_titles"] if t.startswith("fault-add-")}
    assert titles == faults.add_titles(tally, lambda s: s.status == 200)


# -- SIGKILL of a worker ---------------------------------------------------------------------------------
def assert_only_the_killed_lost(report: Report, kills: list[float]) -> None:
    """Requests of the load that were in the killed worker at a kill got no answer (closed or reset); every
    other one was answered 200."""
    tally = report.tally
    lost = tally.where(lambda s: not s.answered)
    assert all(any(in_flight_at(s, k) for k in kills) for s in lost.shots), show(report, lost)
    assert set(lost.unanswered) <= {"closed", "reset"}, show(report, lost)
    answered = tally.where(lambda s: s.answered)
    assert answered.by_status == {200: answered.sent}, show(report, answered.where(lambda s: s.status != 200))
    later = tally.where(lambda s: s.sent > max(kills))
    assert later.sent >= 5 and later.by_status == {200: later.sent}


def test_a_worker_killed_mid_install_stores_nothing_half_and_the_next_install_works(rig: Rig):
    report = faults.kill_mid_install(rig)
    seen = report.seen
    # Killed while Pipedrive's token endpoint answered: the caller got no answer, the installation that
    # existed is exactly as it was (same row version, same encrypted tokens).
    assert "error" in seen["exchange_doomed"], seen["exchange_doomed"]
    assert seen["after"] == seen["before"]
    # The link's state was spent before the exchange: the same callback again is refused, with a page.
    again = seen["same_callback_again"]
    assert again.status_code == 400 and "already used" in again.text
    # Killed while /users/me answered: Pipedrive had granted tokens, the app stored no row.
    assert "error" in seen["users_me_doomed"], seen["users_me_doomed"]
    assert seen["new_user_after_kill"] is None
    # The next install works, and so does a key it serves.
    install = seen["install_again"]
    assert install.status_code == 302 and install.headers["Location"].startswith("/installed?"), install.text
    assert seen["new_user_installed"] == "active" and seen["new_key_find"] == 200
    assert_only_the_killed_lost(report, [report.marks["kill_exchange"], report.marks["kill_users_me"]])


def test_a_worker_killed_mid_refresh_under_load_loses_only_its_own_requests(rig: Rig):
    report = faults.kill_mid_refresh(rig)
    assert "error" in report.seen["doomed"], report.seen["doomed"]
    assert_only_the_killed_lost(report, [report.marks["kill"]])
    # The killed worker's refresh (answered into a closed socket) and the survivor's; neither refused,
    # the row written once.
    assert report.seen["refresh_statuses"] == [200, 200]
    assert report.seen["installation"] == ("active", 1)
    assert report.app_log.count('"event": "token_refreshed"') == 1
