"""proxy/flight.py across processes: two Flights objects on one Redis are two processes of a deployment.
Each test counts the calls each side made."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from pd_app.pipedrive.api import PipedriveThrottled
from pd_app.proxy.flight import Flights

from .procs import wait_until
from .test_budget_processes import redis_param

KEY = "pd_app:goals:1001:0:1:test"
LOCK = f"pd_app:flight:lock:{KEY}"


@pytest.fixture(params=redis_param())
def pair(request):
    client = redis.Redis.from_url(request.param)
    client.flushdb()
    first, second = Flights(request.param, 5.0), Flights(request.param, 5.0)
    yield first, second, client
    client.flushdb()
    for redis_client in (client, first.redis, second.redis):
        redis_client.close()


def _later(delay: float, fn):
    """Run fn in a thread after `delay` seconds; returns (thread, box) where box gets its result or error."""
    box: dict = {}

    def run():
        time.sleep(delay)
        try:
            box["result"] = fn()
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def _until_locked(client) -> None:
    """The leader holds the lock (a busy machine may start the follower's thread first otherwise)."""
    wait_until(lambda: client.exists(LOCK), 5, 0.005, "the leader's lock")


def test_a_follower_elsewhere_gets_the_leaders_answer_without_calling(pair):
    first, second, client = pair
    calls = {"first": 0, "second": 0}

    def slow(side: str):
        def call():
            calls[side] += 1
            time.sleep(0.4)
            return b'{"success":true}', 200

        return call

    leader, led = _later(0, lambda: first.run(KEY, slow("first")))
    _until_locked(client)
    follower, followed = _later(0, lambda: second.run(KEY, slow("second")))
    leader.join(5)
    follower.join(5)
    assert led["result"] == ((b'{"success":true}', 200), False)
    assert followed["result"] == ((b'{"success":true}', 200), True)
    assert calls == {"first": 1, "second": 0}


def test_a_leaders_refusal_reaches_followers_elsewhere_and_frees_the_lock(pair):
    first, second, client = pair
    calls = {"second": 0}

    def refused():
        time.sleep(0.4)
        raise PipedriveThrottled("Request over limit", retry_after=9)

    def follower_call():
        calls["second"] += 1
        return b"{}", 200

    leader, led = _later(0, lambda: first.run(KEY, refused))
    _until_locked(client)
    follower, followed = _later(0, lambda: second.run(KEY, follower_call))
    leader.join(5)
    follower.join(5)
    assert isinstance(led["error"], PipedriveThrottled)
    error = followed["error"]
    assert (
        isinstance(error, PipedriveThrottled)
        and error.retry_after == 9
        and error.message == "Request over limit"
    )
    assert calls["second"] == 0  # the refusal was shared: nothing more was sent
    assert client.exists(LOCK) == 0


def test_a_lock_whose_holder_died_without_an_outcome_is_taken_over(pair):
    _first, second, client = pair
    client.set(LOCK, "a-process-that-died", px=60_000)
    follower, followed = _later(0, lambda: second.run(KEY, lambda: (b"{}", 200)))
    time.sleep(0.2)
    assert followed == {}  # still waiting on the lock
    client.delete(LOCK)  # what its expiry does
    follower.join(5)
    assert followed["result"] == ((b"{}", 200), False)


def test_a_leader_releases_only_its_own_lock(pair):
    first, _second, client = pair

    def call():
        client.set(LOCK, "the-next-leader", px=60_000)  # ours expired meanwhile and another took it
        return b"{}", 200

    first.run(KEY, call)
    assert client.get(LOCK) == b"the-next-leader"


def test_a_follower_in_the_process_gets_the_leaders_failure_once(pair):
    first, _second, _client = pair
    calls = {"n": 0}

    def failing():
        calls["n"] += 1
        # Answer only once the three others wait on this call (however slowly a busy machine starts them).
        wait_until(lambda: first._flights[KEY].followers == 3, 5, 0.005, "three followers")
        raise PipedriveThrottled("Request over limit", retry_after=3)

    threads = [_later(0.05 * i, lambda: first.run(KEY, failing)) for i in range(4)]
    for thread, _ in threads:
        thread.join(5)
    assert calls["n"] == 1
    assert all(isinstance(box["error"], PipedriveThrottled) for _, box in threads)
