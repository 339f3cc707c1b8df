"""GET /metrics: the whole server's figures under gunicorn (prometheus_client's multiprocess mode, one file
per worker, summed at each scrape), a closed set of method labels, one charset in the Content-Type; and, in
a process without PROMETHEUS_MULTIPROC_DIR (the test client, `flask run`), one registry per app as before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from pd_app import create_app, metrics

from .conftest import ENCRYPTION_KEY, app_environ, close_app
from .procs import ROOT, GunicornProcess, wait_until

REQUESTS = "pd_app_http_requests_total"
HEALTHZ = ("ops.healthz", "GET", "200")


def by_labels(families) -> dict[tuple[str, str, str], float]:
    """pd_app_http_requests_total by (endpoint, method, status)."""
    return {
        (s.labels["endpoint"], s.labels["method"], s.labels["status"]): s.value
        for family in families
        for s in family.samples
        if s.name == REQUESTS
    }


def request_counts(text: str) -> dict[tuple[str, str, str], float]:
    return by_labels(text_string_to_metric_families(text))


def assert_one_charset(content_type: str) -> None:
    assert content_type == CONTENT_TYPE_LATEST
    assert content_type.lower().count("charset") == 1, content_type


# -- one process, no PROMETHEUS_MULTIPROC_DIR: a registry per app --------------------------------------------
def test_this_process_is_in_normal_mode():
    assert not metrics.multiprocess_mode()


def test_unknown_methods_are_counted_as_other(client):
    for method in ("PROPFIND", "FOO", "PROPFIND"):
        assert client.open("/healthz", method=method).status_code == 405
    assert client.open("/healthz", method="OPTIONS").status_code < 400
    client.get("/healthz")
    counts = request_counts(client.get("/metrics").get_data(as_text=True))
    assert counts[("unmatched", "other", "405")] == 2 + 1
    assert counts[HEALTHZ] == 1
    assert any(method == "OPTIONS" for _, method, _ in counts)
    assert {method for _, method, _ in counts} <= metrics.KNOWN_METHODS | {"other"}


def test_content_type_names_its_charset_once(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert_one_charset(resp.headers["Content-Type"])


def test_two_apps_in_one_process_keep_their_own_figures(app, client, clean_db, sandbox_server):
    other = create_app(environ=app_environ(clean_db, sandbox_server.url))
    try:
        for _ in range(3):
            client.get("/healthz")
        other_client = other.test_client()
        other_client.get("/healthz")
        assert request_counts(client.get("/metrics").get_data(as_text=True))[HEALTHZ] == 3
        assert request_counts(other_client.get("/metrics").get_data(as_text=True))[HEALTHZ] == 1
    finally:
        close_app(other)


# -- one process in multiprocess mode: several apps share one set of metric objects --------------------------
TWO_APPS = """
import json, sys
from pd_app import create_app, metrics
environ = json.loads(sys.argv[1])
first, second = create_app(environ=environ), create_app(environ=environ)
assert metrics.multiprocess_mode()
for _ in range(3):
    first.test_client().get("/healthz")
for _ in range(2):
    second.test_client().get("/healthz")
resp = first.test_client().get("/metrics")
print(json.dumps({"text": resp.get_data(as_text=True), "content_type": resp.headers["Content-Type"],
                  "shared": first.extensions["pd_metrics"] is second.extensions["pd_metrics"]}))
"""


def test_multiprocess_mode_with_two_apps_in_one_process(clean_db, sandbox_server, tmp_path):
    # Created twice in one process, the metrics must neither raise (duplicate names) nor lose counts (two
    # copies of one value overwriting each other in the process's file).
    environ = app_environ(clean_db, sandbox_server.url)
    result = subprocess.run(
        [sys.executable, "-c", TWO_APPS, json.dumps(environ)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["shared"]
    assert request_counts(out["text"])[HEALTHZ] == 5
    assert_one_charset(out["content_type"])


# -- the gunicorn config's hooks -----------------------------------------------------------------------------
def load_gunicorn_config(monkeypatch: pytest.MonkeyPatch, multiproc_dir: Path) -> dict:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc_dir))
    # on_starting reads the settings first: valid ones, which generate nothing into the instance folder.
    monkeypatch.setenv("PD_APP_ENV", "test")
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEYS", ENCRYPTION_KEY)
    namespace: dict = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), namespace)  # our own config file
    return namespace


def test_the_master_wipes_an_operators_directory_at_start(monkeypatch, tmp_path):
    (tmp_path / "counter_4242.db").write_bytes(b"old")
    (tmp_path / "histogram_4242.db").write_bytes(b"old")
    (tmp_path / "README").write_text("not ours")
    config = load_gunicorn_config(monkeypatch, tmp_path)
    config["on_starting"](None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README"]


def test_a_dead_worker_is_marked_dead(monkeypatch, tmp_path):
    # mark_process_dead drops the worker's live-gauge files; its counters stay and keep being summed.
    for name in ("gauge_livesum_4242.db", "gauge_liveall_4242.db", "counter_4242.db", "gauge_livesum_7.db"):
        (tmp_path / name).write_bytes(b"")
    config = load_gunicorn_config(monkeypatch, tmp_path)
    config["child_exit"](None, SimpleNamespace(pid=4242))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_7.db"]


def test_the_private_directory_is_removed_at_exit(monkeypatch, tmp_path):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the directory it first chose
    namespace: dict = {}
    try:
        exec((ROOT / "gunicorn.conf.py").read_text(), namespace)  # our own config file
        private = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert private.parent == tmp_path and private.is_dir()
        (private / "counter_4242.db").write_bytes(b"")
        namespace["on_exit"](None)
        assert not private.exists()
    finally:
        # The config set these in our environment; monkeypatch restores what it knows of.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        os.environ.pop("PD_APP_PRIVATE_PROMETHEUS_DIR", None)


def test_an_operators_directory_is_kept_at_exit(monkeypatch, tmp_path):
    config = load_gunicorn_config(monkeypatch, tmp_path)
    config["on_exit"](None)
    assert tmp_path.is_dir()


# -- real gunicorn, 4 workers --------------------------------------------------------------------------------
@pytest.fixture
def tmpdir_for_gunicorn(tmp_path: Path) -> Path:
    path = tmp_path / "tmp"
    path.mkdir()
    return path


@pytest.fixture
def server(clean_db: str, sandbox_server, tmp_path: Path, tmpdir_for_gunicorn: Path):
    # No PROMETHEUS_MULTIPROC_DIR (procs.Proc passes only PATH, HOME, LANG, LC_ALL, TMPDIR): the config makes
    # a private directory, here under our TMPDIR so that the test can look at it.
    environ = {**app_environ(clean_db, sandbox_server.url), "TMPDIR": str(tmpdir_for_gunicorn)}
    proc = GunicornProcess(tmp_path / "gunicorn.log", environ, workers=4, threads=4)
    yield proc
    proc.stop()


def healthz_by_worker(multiproc_dir: Path) -> dict[int, float]:
    """GET /healthz 200s in each worker's own file (counter_<pid>.db)."""
    counts = {}
    for path in multiproc_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        counts[pid] = by_labels(MultiProcessCollector.merge([str(path)])).get(HEALTHZ, 0.0)
    return counts


def fire(url: str, n: int, method: str = "GET") -> list[int]:
    """n concurrent requests, released together, each on a connection of its own."""
    barrier = threading.Barrier(n)

    def one(_: int) -> int:
        with requests.Session() as http:
            barrier.wait(10)
            return http.request(method, url, headers={"Connection": "close"}, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n), timeout=30))


def scrape(server: GunicornProcess) -> dict[tuple[str, str, str], float]:
    resp = requests.get(server.url + "/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    assert_one_charset(resp.headers["Content-Type"])
    return request_counts(resp.text)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers")
def test_one_scrape_sums_all_workers(server: GunicornProcess, tmpdir_for_gunicorn: Path):
    (multiproc_dir,) = tmpdir_for_gunicorn.glob("pd_app-prometheus-*")
    # GunicornProcess polled /healthz until the server answered: those count too, so start from here.
    before_scrape = scrape(server)[HEALTHZ]
    before_files = healthz_by_worker(multiproc_dir)
    assert sum(before_files.values()) == before_scrape

    # Which worker accepts a connection is the kernel's choice: on a busy machine one worker can take a
    # whole batch. Send batches of 40 (at most 20) until more than one worker has served some; every batch
    # must show up, exactly, in one scrape.
    sent = 0
    for _ in range(20):
        assert fire(server.url + "/healthz", 40) == [200] * 40
        sent += 40
        after_files = healthz_by_worker(multiproc_dir)
        served = {pid: after_files[pid] - before_files.get(pid, 0) for pid in after_files}
        served = {pid: n for pid, n in served.items() if n}
        if len(served) > 1:
            break
    assert fire(server.url + "/healthz", 2, method="PROPFIND") == [405] * 2

    counts = scrape(server)
    assert counts[HEALTHZ] - before_scrape == sent
    assert counts[("unmatched", "other", "405")] == 2
    # The requests were served by several workers, each writing its own file: the scrape is their sum, not
    # the count of whichever worker answered it.
    assert set(served) <= server.worker_pids()
    assert sum(served.values()) == sent
    assert len(served) > 1, f"all {sent} requests went to one worker: {served}"

    # A worker dies and gunicorn replaces it: its figures stay in the sum.
    victim = max(served, key=served.__getitem__)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 4, 20, 0.1, "a new worker"
    )
    assert scrape(server)[HEALTHZ] - before_scrape == sent

    # The private directory goes with the server (on_exit, once the master has reaped its workers). Its quick
    # shutdown takes 2-10 s on a busy machine, up to graceful_timeout (30 s) if a worker lingers: wait for it
    # rather than SIGKILL it after procs' default 5 s, which would skip on_exit.
    server.stop(grace=60)
    assert server.popen.returncode == 0, server.tail()
    assert not multiproc_dir.exists()


# -- who may read them ---------------------------------------------------------------------------------------
def test_with_a_metrics_token_only_its_bearer_sees_metrics_and_readiness_detail(clean_db, sandbox_server):
    guarded = create_app(environ=app_environ(clean_db, sandbox_server.url, METRICS_TOKEN="m" * 40))
    try:
        client = guarded.test_client()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + "m" * 40}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401 and refused.get_json()["code"] == "unauthorized"
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert client.get("/readyz", headers=headers).get_json() == {"status": "ready"}
        operator = {"Authorization": "Bearer " + "m" * 40}
        shown = client.get("/metrics", headers=operator)
        assert shown.status_code == 200 and b"pd_app_http_requests_total" in shown.data
        ready = client.get("/readyz", headers=operator).get_json()
        assert ready["checks"] == {"database": "ok", "migrations": "ok"}
        # /healthz is public and says nothing else.
        assert client.get("/healthz").get_json() == {"status": "ok"}
    finally:
        close_app(guarded)


def test_production_without_a_metrics_token_shows_nobody(tmp_path, clean_db):
    from cryptography.fernet import Fernet

    production = create_app(
        environ={
            "DATABASE_URL": clean_db,
            "SECRET_KEY": "s" * 40,
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "PIPEDRIVE_CLIENT_ID": "id",
            "PIPEDRIVE_CLIENT_SECRET": "secret",
            "PUBLIC_URL": "https://goals.example.com",
        }
    )
    try:
        assert production.config["SETTINGS"].production
        client = production.test_client()
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
        assert "checks" not in client.get("/readyz").get_json()
    finally:
        close_app(production)
